//! The server crashing at each step of a complete and of a part PUT,
//! forced with the failpoints of the test build (`return(crash)` aborts the
//! process on the spot). After the restart the upload is either completed,
//! with exactly its bytes, or resumable like any other: part PUTs, part
//! URLs, checkpoints and complete all work.

use serde_json::{Value, json};

use crate::harness::*;

/// A two-part upload with both parts sent and only part 0 checkpointed:
/// a client that crashed with the server may have lost part 1's token.
struct Interrupted {
    server: Server,
    key: Option<String>,
    upload: Upload,
    data: Vec<u8>,
    tokens: Vec<String>,
}

async fn interrupted(name: &str, seed: u64) -> Option<Interrupted> {
    let options = Options::with_failpoints()?;
    let key = options.bootstrap_key.clone();
    let server = Server::start_with(options);
    let client = server.client_of(0);
    let data = bytes(PART + 4321, seed);
    let upload = client.start_upload(name, data.len()).await;
    let mut tokens = Vec::new();
    for part in upload.parts() {
        tokens.push(put_part(part, &data).await);
    }
    client.checkpoint(upload.id(), json!([{"part_number": 0, "part_token": tokens[0]}])).await.assert_ok();
    Some(Interrupted { server, key, upload, data, tokens })
}

/// Tokens as the `parts` of a request, part `n` being `tokens[n]`.
fn parts(tokens: &[String]) -> Value {
    tokens.iter().enumerate().map(|(n, t)| json!({"part_number": n, "part_token": t})).collect()
}

impl Interrupted {
    /// Sends a complete to node 0 and expects no answer: the node crashes.
    async fn complete_into_a_crash(&mut self) {
        let client = self.server.client_of(0);
        let mut body = json!({"parts": parts(&self.tokens)});
        if self.upload.0["integrity_algorithm"] == "crc32c" {
            body["integrity_checksum"] = json!(crc32c_base64(&self.data));
        }
        let url = format!("{}/v0.5/files/uploads/{}/complete", client.url, self.upload.id());
        let sent = client.http.post(url).bearer_auth(&client.key).json(&body).send().await;
        assert!(sent.is_err(), "the complete was answered: {:?}", sent.map(|r| r.status()));
        self.server.wait_crashed(0);
    }

    /// Stops what is left of the server and starts it again, without
    /// failpoints, on the same data dirs, database and bucket.
    fn restart(mut self) -> (Server, Upload, Vec<u8>, Vec<String>) {
        self.server.kill();
        let temp = self.server.take_dir();
        let options = Options { bootstrap_key: self.key.clone(), ..Options::default() };
        let server = Server::start_in(&self.server.dir, options, temp);
        (server, self.upload, self.data, self.tokens)
    }
}

/// Checks that the upload works as any active upload does: fresh URLs,
/// part 1 sent again, a checkpoint, a resume that lists nothing left, and
/// a complete (with the whole file's CRC32C where the store checks one).
async fn resumable_to_the_end(server: &Server, upload: &Upload, data: &[u8]) {
    let client = server.client();
    let fresh = client.part_urls(upload.id(), json!([1])).await.assert_ok();
    let part = &fresh["parts"][0];
    let token = put_part(part, data).await;
    client.checkpoint(upload.id(), json!([{"part_number": 1, "part_token": token}])).await.assert_ok();
    let resumed = client.resume(upload.0["file_name"].as_str().unwrap(), data.len()).await.assert_ok();
    assert_eq!((resumed["upload_id"].as_str(), &resumed["parts"]), (Some(upload.id()), &json!([])));
    client.complete_checked(upload, json!([]), data).await.assert_ok();
    assert!(client.download(upload.0["file_name"].as_str().unwrap()).await.body == data);
}

async fn assert_clean(server: &Server) {
    let (clean, report) = server.check();
    assert!(clean, "{report}");
}

/// Before the file is placed: nothing happened; the upload goes on.
#[tokio::test]
async fn a_crash_after_completes_check_leaves_the_upload_resumable() {
    let Some(mut run) = interrupted("after-check.bin", 40).await else { return };
    run.server.failpoint(0, "complete.after_check", "return(crash)").await;
    run.complete_into_a_crash().await;
    let (server, upload, data, _) = run.restart();
    resumable_to_the_end(&server, &upload, &data).await;
    assert_clean(&server).await;
}

/// After the file is placed, before the commit. On ferry's disk the rename
/// is undone by the next PUT, so the upload goes on as before. With an
/// S3-compatible store the store assembled the file from the parts ferry
/// had checked: the next use of the upload commits it and a resume starts
/// a new upload. No complete was answered, so the client's retry of it is
/// answered 200; a complete after that, `upload_completed`.
#[tokio::test]
async fn a_crash_between_placing_the_file_and_the_commit_leaves_the_upload_whole() {
    let Some(mut run) = interrupted("after-store.bin", 50).await else { return };
    run.server.failpoint(0, "complete.after_store", "return(crash)").await;
    run.complete_into_a_crash().await;
    let (server, upload, data, tokens) = run.restart();
    let client = server.client();
    if server.layout() == Layout::ScaleOut {
        let resumed = client.resume("after-store.bin", data.len()).await.assert_ok();
        assert_ne!(resumed["upload_id"].as_str(), Some(upload.id()), "a finished upload was resumed");
        assert!(client.download("after-store.bin").await.body == data);
        let retried = client.complete(upload.id(), parts(&tokens)).await.assert_ok();
        let answered = (retried["file_name"].as_str(), retried["num_bytes"].as_u64());
        assert_eq!(answered, (Some("after-store.bin"), Some(data.len() as u64)));
        client.complete(upload.id(), parts(&tokens)).await.assert_error(409, "upload_completed");
    } else {
        resumable_to_the_end(&server, &upload, &data).await;
    }
    assert_clean(&server).await;
}

/// After the commit: the upload is completed and its file whole.
#[tokio::test]
async fn a_crash_after_the_commit_leaves_the_file_registered() {
    let Some(mut run) = interrupted("after-commit.bin", 60).await else { return };
    run.server.failpoint(0, "complete.after_commit", "return(crash)").await;
    run.complete_into_a_crash().await;
    let (server, upload, data, tokens) = run.restart();
    let client = server.client();
    assert!(client.download("after-commit.bin").await.body == data);
    client.complete(upload.id(), parts(&tokens)).await.assert_error(409, "upload_completed");
    client.part_urls(upload.id(), json!([0])).await.assert_error(409, "upload_completed");
    assert_clean(&server).await;
}

/// A PUT whose bytes are synced but whose record is not written when the
/// server dies counts as not uploaded; sending it again works.
#[tokio::test]
async fn a_crash_between_a_parts_bytes_and_its_record_leaves_the_part_to_send_again() {
    let Some(mut run) = interrupted("part-crash.bin", 70).await else { return };
    if run.server.layout().lacks(Needs::FerryTakesParts) {
        return;
    }
    run.server.failpoint(0, "part_put.before_record", "return(crash)").await;
    let other = bytes(run.data.len(), 71);
    let sent = http().put(run.upload.url(1)).body(slice(&run.upload.parts()[1], &other).to_vec()).send().await;
    assert!(sent.is_err(), "the PUT was answered");
    run.server.wait_crashed(0);
    let (server, upload, data, tokens) = run.restart();
    // Part 1's old record was dropped before its bytes were overwritten:
    // its old token no longer completes, and the part is to send again.
    let client = server.client();
    let old = json!([{"part_number": 1, "part_token": tokens[1]}]);
    client.complete(upload.id(), old).await.assert_error(400, "invalid_part_token");
    resumable_to_the_end(&server, &upload, &data).await;
    assert_clean(&server).await;
}
