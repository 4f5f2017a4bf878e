//! Spec §3.4: checkpoints.

use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn a_checkpoint_counts_distinct_parts_and_repeating_it_is_harmless() {
    let server = Server::start();
    let client = server.client();
    let data = bytes(2 * PART, 20);
    let upload = client.start_upload("cp.bin", data.len()).await;
    let tokens = upload.put_all(&data).await;
    let entries = json!([tokens[0], tokens[1], tokens[0]]);
    assert_eq!(client.checkpoint(upload.id(), entries.clone()).await.assert_ok(), json!({"num_checkpointed": 2}));
    assert_eq!(client.checkpoint(upload.id(), entries).await.assert_ok(), json!({"num_checkpointed": 2}));
    assert_eq!(client.checkpoint(upload.id(), json!([])).await.assert_ok(), json!({"num_checkpointed": 0}));
    // Tokens without their quotes are the same tokens.
    let bare = tokens[1]["part_token"].as_str().unwrap().trim_matches('"');
    let reply = client.checkpoint(upload.id(), json!([{"part_number": 1, "part_token": bare}])).await;
    assert_eq!(reply.assert_ok(), json!({"num_checkpointed": 1}));
}

#[tokio::test]
async fn a_checkpoint_with_one_bad_token_checkpoints_nothing() {
    let server = Server::start();
    let client = server.client();
    let data = bytes(3 * PART, 21);
    let upload = client.start_upload("atomic.bin", data.len()).await;
    let t0 = put_part(&upload.parts()[0], &data).await;
    let t1 = put_part(&upload.parts()[1], &data).await;
    let reply = client
        .checkpoint(
            upload.id(),
            json!([{"part_number": 0, "part_token": t0}, {"part_number": 1, "part_token": "\"bogus\""},
                   {"part_number": 2, "part_token": t1}, {"part_number": 7, "part_token": t1}]),
        )
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.error_codes(), ["invalid_part_number", "invalid_part_token"]);
    assert!(reply.json()["errors"][1]["message"].as_str().unwrap().contains("part(s) 1-2 "));
    // Nothing was checkpointed: a resume lists every part again.
    let resumed = client.resume("atomic.bin", data.len()).await.assert_ok();
    assert_eq!(resumed["parts"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn checkpoints_of_completed_uploads_are_409_and_of_unknown_ones_404() {
    let server = Server::start();
    let client = server.client();
    let data = bytes(10, 22);
    let upload = client.start_upload("cp-done.bin", data.len()).await;
    let tokens = upload.put_all(&data).await;
    client.complete(upload.id(), tokens.clone()).await.assert_ok();
    client.checkpoint(upload.id(), tokens).await.assert_error(409, "upload_completed");
    client.checkpoint("upl_01jfz8k2m4c5v6b7n8p9q0r1s2", json!([])).await.assert_error(404, "upload_not_found");
}
