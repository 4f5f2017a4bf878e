//! Spec §3.1: initiate, part planning and resume.

use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn a_new_upload_returns_every_part_in_order() {
    let server = Server::start();
    let size = 2 * PART + 1234;
    let upload = server.client().start_upload("data.bin", size).await;
    let body = &upload.0;
    assert!(upload.id().starts_with("upl_") && upload.id().len() == 30, "{body}");
    assert!(body["file_uid"].as_str().unwrap().starts_with("fil_"));
    assert_eq!(body["file_name"], "data.bin");
    assert_eq!(body["total_bytes"], size);
    assert_eq!((body["num_parts"].as_u64(), body["part_size"].as_u64()), (Some(3), Some(PART as u64)));
    assert_eq!(body["is_resume"], false);
    // Honest about what the store verifies: an S3 store that is sent no
    // checksum headers verifies none.
    let verifies = if server.layout() == Layout::ScaleOut { "none" } else { "crc32c" };
    assert_eq!(body["integrity_algorithm"], verifies);
    let parts = upload.parts();
    let expected = [(0, 0, PART), (1, PART, PART), (2, 2 * PART, 1234)];
    for (part, (n, offset, length)) in parts.iter().zip(expected) {
        assert_eq!((part["part_number"].as_u64(), part["offset"].as_u64()), (Some(n), Some(offset as u64)));
        assert_eq!(part["length"], length);
        let expires = part["expires_at"].as_str().unwrap();
        assert!(expires.len() == 20 && expires.ends_with('Z'), "{expires}");
        // Ferry's own URL, or the store's where parts go straight to it.
        let base = match server.layout() {
            Layout::ScaleOut => std::env::var("FERRY_TEST_S3_ENDPOINT").unwrap(),
            _ => server.url.clone(),
        };
        assert!(part["url"].as_str().unwrap().starts_with(&base), "{part}");
    }
    assert_eq!(parts.len(), 3);
}

#[tokio::test]
async fn part_size_grows_so_that_250_gib_needs_at_most_10000_parts() {
    let server = Server::start_with(Options { args: vec![], ..Options::default() });
    let client = server.client();
    let gib = 1usize << 30;
    let upload = client.start_upload("huge.bin", 250 * gib).await;
    assert_eq!(upload.0["part_size"], 26 * MIB);
    assert_eq!(upload.0["num_parts"], 9847);
    assert_eq!(upload.parts().len(), 9847);
    let last = upload.parts().last().unwrap();
    assert_eq!(last["offset"].as_u64().unwrap() + last["length"].as_u64().unwrap(), 250 * gib as u64);

    let one_byte = client.start_upload("tiny.bin", 1).await;
    assert_eq!((one_byte.0["num_parts"].as_u64(), one_byte.parts()[0]["length"].as_u64()), (Some(1), Some(1)));
    client.initiate("too-big.bin", 250 * gib + 1).await.assert_error(400, "invalid_file_size");
}

#[tokio::test]
async fn a_bad_initiate_lists_every_problem_and_creates_nothing() {
    let server = Server::start();
    let client = server.client();
    let reply = client
        .post(
            "/v0.5/files/uploads/initiate",
            json!({"filename": "../etc/passwd", "file_type": "text/html", "num_bytes": 0}),
        )
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.error_codes(), ["invalid_parameter", "invalid_file_type", "invalid_file_size"]);
    assert!(reply.json()["errors"][1]["suggestion"].as_str().unwrap().contains("application/x-parquet"));
    for name in ["", ".", "..", "a/b", "a\\b", "nul\u{0}", &"x".repeat(256)] {
        let reply = client.initiate(name, 10).await;
        reply.assert_error(400, "invalid_parameter");
    }
    client.initiate("zero.bin", 0).await.assert_error(400, "invalid_file_size");
    let negative = client
        .post("/v0.5/files/uploads/initiate", json!({"filename": "n", "file_type": "text/csv", "num_bytes": -5}))
        .await;
    negative.assert_error(400, "invalid_file_size");
    assert!(server.blobs("staging").await.is_empty(), "a refused initiate left storage behind");
}

#[tokio::test]
async fn resume_returns_the_same_upload_with_only_the_parts_not_checkpointed() {
    let server = Server::start();
    let client = server.client();
    let data = bytes(3 * PART, 1);
    let first = client.start_upload("resume.bin", data.len()).await;
    let token = put_part(&first.parts()[1], &data).await;
    client.checkpoint(first.id(), json!([{"part_number": 1, "part_token": token}])).await.assert_ok();
    // Part 2 is uploaded but never checkpointed: the server returns it again.
    put_part(&first.parts()[2], &data).await;

    let resumed = client.resume("resume.bin", data.len()).await.assert_ok();
    assert_eq!(resumed["is_resume"], true);
    assert_eq!(resumed["upload_id"], first.id());
    assert_eq!(resumed["file_uid"], first.0["file_uid"]);
    assert_eq!((resumed["total_bytes"].as_u64(), resumed["num_parts"].as_u64()), (Some(3 * PART as u64), Some(3)));
    let numbers: Vec<u64> =
        resumed["parts"].as_array().unwrap().iter().map(|p| p["part_number"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [0, 2]);
}

#[tokio::test]
async fn resume_of_a_different_type_or_size_is_a_conflict() {
    let server = Server::start();
    let client = server.client();
    client.start_upload("conflict.bin", 100).await;
    for (file_type, size) in [("text/plain", 100), ("application/octet-stream", 101)] {
        let body =
            json!({"filename": "conflict.bin", "file_type": file_type, "num_bytes": size, "resume_if_started": true});
        client.post("/v0.5/files/uploads/initiate", body).await.assert_error(409, "upload_conflict");
    }
}

#[tokio::test]
async fn without_resume_every_initiate_starts_a_new_upload() {
    let server = Server::start();
    let client = server.client();
    let a = client.start_upload("twice.bin", 10).await;
    let b = client.start_upload("twice.bin", 10).await;
    assert_ne!(a.id(), b.id());
    // With resume but nothing in progress under the name: a new upload.
    let body = json!({"filename": "fresh.bin", "file_type": "text/plain", "num_bytes": 10, "resume_if_started": true});
    let fresh = client.post("/v0.5/files/uploads/initiate", body).await.assert_ok();
    assert_eq!(fresh["is_resume"], false);
    // Both side-by-side uploads of one name complete; the last one wins.
    let tokens_a = a.put_all(&bytes(10, 1)).await;
    let tokens_b = b.put_all(&bytes(10, 2)).await;
    client.complete(b.id(), tokens_b).await.assert_ok();
    client.complete(a.id(), tokens_a).await.assert_ok();
    assert_eq!(client.download("twice.bin").await.body, bytes(10, 1));
}
