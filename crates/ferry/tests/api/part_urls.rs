//! Spec §3.2: fresh part URLs.

use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn urls_come_back_in_request_order_and_duplicates_share_one() {
    let server = Server::start();
    let client = server.client();
    let upload = client.start_upload("urls.bin", 3 * PART).await;
    let reply = client.part_urls(upload.id(), json!([2, 0, 2, 1])).await.assert_ok();
    let parts = reply["parts"].as_array().unwrap();
    let numbers: Vec<u64> = parts.iter().map(|p| p["part_number"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [2, 0, 2, 1]);
    assert_eq!(parts[0]["url"], parts[2]["url"]);
    assert_eq!((parts[0]["offset"].as_u64(), parts[0]["length"].as_u64()), (Some(2 * PART as u64), Some(PART as u64)));
    // A URL issued moments ago (far from expiry) is handed out again.
    let again = client.part_urls(upload.id(), json!([0])).await.assert_ok();
    assert_eq!(again["parts"][0]["url"], parts[1]["url"]);
    assert_eq!(again["parts"][0]["expires_at"], parts[1]["expires_at"]);
    // And it works.
    let data = bytes(3 * PART, 3);
    put_part(&parts[3], &data).await;
}

#[tokio::test]
async fn out_of_range_numbers_are_each_named_and_nothing_is_returned() {
    let server = Server::start();
    let client = server.client();
    let upload = client.start_upload("range.bin", 2 * PART).await;
    let reply = client.part_urls(upload.id(), json!([0, 2, -1, 1, 99])).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.error_codes(), ["invalid_part_number"; 3]);
    let messages: Vec<String> =
        reply.json()["errors"].as_array().unwrap().iter().map(|e| e["message"].as_str().unwrap().to_owned()).collect();
    for (message, n) in messages.iter().zip(["2", "-1", "99"]) {
        assert!(message.starts_with(&format!("part_number {n} is out of range")), "{message}");
        assert!(message.contains("(0 <= part_number < 2)"), "{message}");
    }
    assert!(reply.json().get("parts").is_none());
}

#[tokio::test]
async fn an_empty_request_gets_an_empty_list() {
    let server = Server::start();
    let client = server.client();
    let upload = client.start_upload("empty.bin", 10).await;
    assert_eq!(client.part_urls(upload.id(), json!([])).await.assert_ok(), json!({"parts": []}));
}

#[tokio::test]
async fn completed_uploads_are_409_and_aborted_or_unknown_ones_404() {
    let server = Server::start();
    let client = server.client();
    let done = client.start_upload("done.bin", 10).await;
    let tokens = done.put_all(&bytes(10, 1)).await;
    client.complete(done.id(), tokens).await.assert_ok();
    client.part_urls(done.id(), json!([0])).await.assert_error(409, "upload_completed");

    let aborted = client.start_upload("aborted.bin", 10).await;
    client.abort(aborted.id()).await.assert_ok_empty();
    client.part_urls(aborted.id(), json!([0])).await.assert_error(404, "upload_not_found");
    client.part_urls("upl_01jfz8k2m4c5v6b7n8p9q0r1s2", json!([0])).await.assert_error(404, "upload_not_found");
    client.part_urls("not-an-id", json!([0])).await.assert_error(404, "upload_not_found");
}

#[tokio::test]
async fn asking_for_urls_writes_nothing_to_the_database() {
    let server = Server::start();
    let client = server.client();
    let upload = client.start_upload("read-only.bin", 3 * PART).await;
    let before = server.metadata_fingerprint();
    for _ in 0..50 {
        client.part_urls(upload.id(), json!([0, 1, 2])).await.assert_ok();
    }
    assert!(before == server.metadata_fingerprint(), "the metadata store was written");
}
