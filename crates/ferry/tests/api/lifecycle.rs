//! Design §7: replacement, deletion, the janitor and expiry.

use serde_json::json;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_two_uploads_of_one_name_completing_at_once_the_later_one_holds_it() {
    let server = Server::start_with(eager_janitor());
    let client = server.client();
    for round in 0..5u64 {
        let name = format!("race-{round}.bin");
        let (a, b) = (bytes(1000, 2 * round), bytes(1000, 2 * round + 1));
        let (upload_a, upload_b) = (client.start_upload(&name, 1000).await, client.start_upload(&name, 1000).await);
        let (tokens_a, tokens_b) = (upload_a.put_all(&a).await, upload_b.put_all(&b).await);
        let (ca, cb) = (client.clone(), client.clone());
        let (id_a, id_b) = (upload_a.id().to_owned(), upload_b.id().to_owned());
        let (ra, rb) = tokio::join!(
            tokio::spawn(async move { ca.complete(&id_a, tokens_a).await }),
            tokio::spawn(async move { cb.complete(&id_b, tokens_b).await }),
        );
        let (ra, rb) = (ra.unwrap().assert_ok(), rb.unwrap().assert_ok());
        let holder = client.metadata(&name).await.assert_ok();
        let listing = client.get("/v0.5/files/metadata").await.assert_ok();
        let named: Vec<_> =
            listing["data"].as_array().unwrap().iter().filter(|f| f["file_id"] == name.as_str()).collect();
        assert_eq!(named.len(), 1, "round {round}: {listing}");
        // The later registration (the higher file_index) holds the name.
        assert_eq!(holder["file_index"], 2 * round + 1, "round {round}");
        let winner_bytes = if holder["file_uid"] == ra["file_uid"] { &a } else { &b };
        assert!(holder["file_uid"] == ra["file_uid"] || holder["file_uid"] == rb["file_uid"]);
        assert_eq!(&client.download(&name).await.body, winner_bytes);
    }
    // The losers' bytes are deleted by the janitor; only the holders' remain.
    eventually("the displaced files are deleted", || async { server.blobs("files").await.len() == 5 }).await;
}

#[tokio::test]
async fn deleting_frees_the_name_at_once_and_the_bytes_after_the_grace() {
    let server = Server::start_with(eager_janitor());
    let client = server.client();
    let uploaded = client.upload("gone.csv", b"a,b\n1,2\n").await;
    let uid = uploaded["file_uid"].as_str().unwrap().to_owned();
    assert_eq!(server.blobs("files").await, std::slice::from_ref(&uid));

    let reply = client.delete("gone.csv").await.assert_ok();
    assert_eq!(reply, json!({"is_valid": true, "file_id": "gone.csv", "file_uid": uid}));
    client.metadata("gone.csv").await.assert_error(404, "file_not_found");
    client.download("gone.csv").await.assert_error(404, "file_not_found");
    client.delete("gone.csv").await.assert_error(404, "file_not_found");
    eventually("the deleted file's bytes are gone", || async { server.blobs("files").await.is_empty() }).await;
    // The name can be used again.
    client.upload("gone.csv", b"new").await;
    assert_eq!(client.download("gone.csv").await.body, b"new");
}

#[tokio::test]
async fn a_replaced_file_stays_readable_during_the_grace() {
    let server = Server::start(); // a grace of 10 minutes
    let client = server.client();
    let old = client.upload("kept.bin", b"old").await;
    client.upload("kept.bin", b"new").await;
    assert!(server.blobs("files").await.contains(&old["file_uid"].as_str().unwrap().to_owned()));
}

#[tokio::test]
async fn idle_uploads_expire_and_their_staging_files_go() {
    let mut options = eager_janitor();
    options.args.extend(["--upload-expiry", "1"].map(String::from));
    let server = Server::start_with(options);
    let client = server.client();
    let data = bytes(PART + 1, 90);
    let upload = client.start_upload("idle.bin", data.len()).await;
    put_part(&upload.parts()[0], &data).await;
    assert_eq!(server.blobs("staging").await.len(), 1);
    eventually("the idle upload's staging file is gone", || async { server.blobs("staging").await.is_empty() }).await;
    client.part_urls(upload.id(), json!([0])).await.assert_error(404, "upload_not_found");
    client.complete(upload.id(), json!([])).await.assert_error(404, "upload_not_found");
    let late = put(upload.url(1), data[PART..].to_vec()).await;
    if server.layout() == Layout::ScaleOut {
        // The part URL is the store's: its own refusal (NoSuchUpload) applies.
        assert_eq!(late.status, 404, "{}", String::from_utf8_lossy(&late.body));
    } else {
        late.assert_error(404, "upload_not_found");
    }
}

/// A crash between replacing a file and deleting the old bytes leaks
/// nothing: the queue entry survives, and the next janitor deletes them.
#[tokio::test]
async fn a_crash_before_the_janitor_ran_leaves_no_orphaned_bytes() {
    let key = ferry_core::api_key::ApiKey::generate().to_string();
    let options = |janitor_interval: &str| Options {
        args: ["--part-size", "5242880", "--deletion-grace", "0", "--janitor-interval", janitor_interval]
            .map(String::from)
            .to_vec(),
        bootstrap_key: Some(key.clone()),
        ..Options::default()
    };
    // The first server never gets to run its janitor after the writes.
    let slow = options("3600");
    let mut server = Server::start_with(slow);
    let client = server.client();
    client.upload("crash.bin", b"first").await;
    let second = client.upload("crash.bin", b"second").await;
    let abandoned = client.start_upload("abandoned.bin", 10).await;
    client.abort(abandoned.id()).await.assert_ok_empty();
    assert_eq!(server.blobs("files").await.len(), 2);
    server.kill();

    let temp = server.take_dir();
    let restarted = Server::start_in(&server.dir, options("1"), temp);
    let uid = second["file_uid"].as_str().unwrap().to_owned();
    eventually("only the live file's bytes remain", || async { restarted.blobs("files").await == [uid.clone()] }).await;
    assert!(restarted.blobs("staging").await.is_empty());
    assert_eq!(restarted.client().download("crash.bin").await.body, b"second");
}
