//! Spec §3.5: complete.

use serde_json::{Value, json};

use crate::harness::*;

#[tokio::test]
async fn complete_registers_the_file_and_it_downloads_byte_for_byte() {
    let server = Server::start();
    let client = server.client();
    let data = bytes(2 * PART + 777, 30);
    let upload = client.start_upload("whole.bin", data.len()).await;
    let tokens = upload.put_all(&data).await;
    let reply = client.complete_checked(&upload, tokens, &data).await.assert_ok();
    assert_eq!(
        reply,
        json!({"file_uid": upload.0["file_uid"], "file_name": "whole.bin", "num_bytes": data.len(),
               "file_status": "Registered", "file_attributes": {"metadata_status": "not_extracted"}})
    );
    let download = client.download("whole.bin").await;
    assert_eq!(download.status, 200);
    assert_eq!(download.header("content-length"), Some(data.len().to_string().as_str()));
    assert_eq!(download.header("content-type"), Some("application/octet-stream"));
    assert_eq!(download.header("content-disposition"), Some("attachment; filename*=UTF-8''whole.bin"));
    assert!(download.header("etag").is_some());
    assert_eq!(sha256(&download.body), sha256(&data));
    // The upload became the file: nothing is left in progress.
    assert!(server.blobs("staging").await.is_empty());
}

#[tokio::test]
async fn complete_takes_tokens_from_checkpoints_with_an_empty_list() {
    let server = Server::start();
    let client = server.client();
    let data = bytes(2 * PART, 31);
    let upload = client.start_upload("checkpointed.bin", data.len()).await;
    let tokens = upload.put_all(&data).await;
    client.checkpoint(upload.id(), json!([tokens[0]])).await.assert_ok();
    // Part 0 from the checkpoint, part 1 from the request...
    client.complete(upload.id(), json!([tokens[1]])).await.assert_ok();
    assert_eq!(client.download("checkpointed.bin").await.body, data);

    let other = client.start_upload("all-checkpointed.bin", data.len()).await;
    let tokens = other.put_all(&data).await;
    client.checkpoint(other.id(), tokens).await.assert_ok();
    // ...or every part from checkpoints.
    client.complete(other.id(), json!([])).await.assert_ok();
}

#[tokio::test]
async fn complete_lists_the_missing_parts() {
    let server = Server::start();
    let client = server.client();
    let data = bytes(3 * PART, 32);
    let upload = client.start_upload("missing.bin", data.len()).await;
    let t1 = put_part(&upload.parts()[1], &data).await;
    let reply = client.complete(upload.id(), json!([{"part_number": 1, "part_token": t1}])).await;
    reply.assert_error(400, "missing_parts");
    assert!(reply.json()["errors"][0]["message"].as_str().unwrap().contains("part(s) 0, 2 "), "{}", reply.json());
    // Nothing was registered.
    client.download("missing.bin").await.assert_error(404, "file_not_found");
}

#[tokio::test]
async fn complete_refuses_a_token_that_is_not_the_parts() {
    let server = Server::start();
    let client = server.client();
    let data = bytes(2 * PART, 33);
    let upload = client.start_upload("wrong-token.bin", data.len()).await;
    let tokens = upload.put_all(&data).await;
    let swapped = json!([{"part_number": 0, "part_token": tokens[1]["part_token"]},
                         {"part_number": 1, "part_token": tokens[1]["part_token"]}]);
    client.complete(upload.id(), swapped).await.assert_error(400, "invalid_part_token");
    // A valid checkpoint does not excuse a wrong token in the request.
    client.checkpoint(upload.id(), tokens.clone()).await.assert_ok();
    let wrong = json!([{"part_number": 0, "part_token": "\"0000\""}]);
    client.complete(upload.id(), wrong).await.assert_error(400, "invalid_part_token");
    client.complete(upload.id(), tokens).await.assert_ok();
}

#[tokio::test]
async fn a_checksum_mismatch_registers_a_corrupt_file_that_cannot_be_downloaded() {
    if Layout::current().lacks(Needs::StoreVerifiesCrc32c) {
        return;
    }
    let server = Server::start();
    let client = server.client();
    let data = bytes(PART + 5, 34);
    let upload = client.start_upload("corrupt.bin", data.len()).await;
    let tokens = upload.put_all(&data).await;
    let wrong = crc32c_base64(b"not the file");
    let reply = client.complete_with_checksum(upload.id(), tokens.clone(), &wrong).await;
    reply.assert_error(400, "integrity_check_failed");
    client.download("corrupt.bin").await.assert_error(400, "file_not_downloadable");
    // The upload is over either way.
    client.complete(upload.id(), tokens).await.assert_error(409, "upload_completed");
}

#[tokio::test]
async fn a_corrupt_upload_never_displaces_a_good_file() {
    if Layout::current().lacks(Needs::StoreVerifiesCrc32c) {
        return;
    }
    let server = Server::start();
    let client = server.client();
    let good = bytes(100, 35);
    client.upload("keep.bin", &good).await;
    let upload = client.start_upload("keep.bin", 100).await;
    let tokens = upload.put_all(&bytes(100, 36)).await;
    let reply = client.complete_with_checksum(upload.id(), tokens, &crc32c_base64(b"x")).await;
    reply.assert_error(400, "integrity_check_failed");
    assert_eq!(client.download("keep.bin").await.body, good);
}

#[tokio::test]
async fn a_malformed_checksum_is_integrity_not_supported() {
    let server = Server::start();
    let client = server.client();
    let data = bytes(10, 37);
    let upload = client.start_upload("short-crc.bin", data.len()).await;
    let tokens = upload.put_all(&data).await;
    for bad in ["AAAA", "AAAAAAAAAAAA", "!!!!!!!!"] {
        client
            .complete_with_checksum(upload.id(), tokens.clone(), bad)
            .await
            .assert_error(400, "integrity_not_supported");
    }
    client.complete_checked(&upload, tokens, &data).await.assert_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_racing_completes_exactly_one_succeeds() {
    let server = Server::start();
    let client = server.client();
    for round in 0..10 {
        let data = bytes(PART + 100, 40 + round);
        let upload = client.start_upload("race.bin", data.len()).await;
        let tokens = upload.put_all(&data).await;
        let racers: Vec<_> = (0..8)
            .map(|_| {
                let (client, id, tokens) = (client.clone(), upload.id().to_owned(), tokens.clone());
                tokio::spawn(async move { client.complete(&id, tokens).await })
            })
            .collect();
        let mut statuses = Vec::new();
        for racer in racers {
            let reply = racer.await.unwrap();
            if reply.status != 200 {
                assert_eq!(reply.error_codes(), ["upload_completed"], "round {round}");
            }
            statuses.push(reply.status.as_u16());
        }
        assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 1, "round {round}: {statuses:?}");
        assert_eq!(client.download("race.bin").await.body, data);
    }
}

#[tokio::test]
async fn a_second_complete_is_409() {
    let server = Server::start();
    let client = server.client();
    let data = bytes(10, 38);
    let upload = client.start_upload("twice.bin", data.len()).await;
    let tokens = upload.put_all(&data).await;
    client.complete(upload.id(), tokens.clone()).await.assert_ok();
    client.complete(upload.id(), tokens).await.assert_error(409, "upload_completed");
}

#[tokio::test]
async fn completing_under_a_taken_name_replaces_the_file() {
    let server = Server::start();
    let client = server.client();
    let first = client.upload("report.csv", &bytes(300, 1)).await;
    let second = client.upload("report.csv", &bytes(200, 2)).await;
    assert_ne!(first["file_uid"], second["file_uid"]);
    let download = client.download("report.csv").await;
    assert_eq!(download.body, bytes(200, 2));
    let etag: Value = download.header("etag").unwrap().trim_matches('"').into();
    assert_eq!(etag, second["file_uid"]);
}
