//! Spec §4.1 and §4.2: simple and base64 uploads.

use base64::Engine;
use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn a_simple_upload_stores_the_first_named_part_and_registers_it() {
    let server = Server::start();
    let client = server.client();
    let data = bytes(3 * MIB + 17, 80);
    let reply = client.simple_upload("simple.bin", data.clone(), Some("application/octet-stream")).await;
    let body = reply.assert_ok();
    assert_eq!(body["is_valid"], true);
    assert_eq!(body["file_id"], "simple.bin");
    assert!(body["file_uid"].as_str().unwrap().starts_with("fil_"));
    assert_eq!(client.download("simple.bin").await.body, data);
    let metadata = client.metadata("simple.bin").await.assert_ok();
    assert_eq!(metadata["checksum_crc32c"], crc32c_base64(&data));
    assert_eq!(metadata["num_bytes"], data.len());
    assert!(server.blobs("staging").await.is_empty());
}

#[tokio::test]
async fn the_type_comes_from_the_part_or_else_from_the_extension() {
    let server = Server::start();
    let client = server.client();
    client.simple_upload("declared.bin", b"a,b\n".to_vec(), Some("text/csv")).await.assert_ok();
    client.simple_upload("guessed.csv", b"a,b\n".to_vec(), None).await.assert_ok();
    client.simple_upload("octet.jsonl", b"{}\n".to_vec(), Some("application/octet-stream")).await.assert_ok();
    client.simple_upload("unknown.xyz", b"?".to_vec(), None).await.assert_ok();
    for (name, expected) in [
        ("declared.bin", "text/csv"),
        ("guessed.csv", "text/csv"),
        ("octet.jsonl", "application/x-ndjson"),
        ("unknown.xyz", "application/octet-stream"),
    ] {
        assert_eq!(client.metadata(name).await.assert_ok()["file_type"], expected, "{name}");
    }
}

#[tokio::test]
async fn a_refused_type_or_name_keeps_nothing() {
    let server = Server::start();
    let client = server.client();
    let reply = client.simple_upload("page.html", b"<html>".to_vec(), Some("text/html")).await;
    reply.assert_error(400, "invalid_file_type");
    assert!(reply.json()["errors"][0]["suggestion"].as_str().unwrap().contains("text/csv"));
    client.simple_upload("..", b"x".to_vec(), Some("text/plain")).await.assert_error(400, "invalid_parameter");
    // A client's path keeps only its last component.
    client.simple_upload("C:\\data\\rows.csv", b"a\n".to_vec(), None).await.assert_ok();
    client.metadata("rows.csv").await.assert_ok();
    let info = client.get("/v0.5/files/info").await.assert_ok();
    assert_eq!(info["num_files"], 1);
    assert!(server.blobs("staging").await.is_empty());
}

#[tokio::test]
async fn a_body_without_a_file_part_or_not_multipart_is_refused() {
    let server = Server::start();
    let client = server.client();
    let form = reqwest::multipart::Form::new().text("just", "text");
    let request = client.http.post(format!("{}/v0.5/files", client.url)).bearer_auth(&client.key).multipart(form);
    reply(request.send().await.unwrap()).await.assert_error(400, "missing_parameter");
    let json = client.post("/v0.5/files", json!({"file": "x"})).await;
    json.assert_error(400, "invalid_parameter");
}

#[tokio::test]
async fn a_base64_upload_is_decoded_as_it_streams() {
    let server = Server::start();
    let client = server.client();
    let data = bytes(MIB + 3, 81);
    let mut text = base64::engine::general_purpose::STANDARD.encode(&data).into_bytes();
    // Line breaks, as many encoders write them, are fine.
    text.splice(76..76, b"\r\n".iter().copied());
    let reply = client.multipart_upload("/v0.5/files/base64", "decoded.bin", text, None).await;
    assert_eq!(reply.assert_ok()["file_id"], "decoded.bin");
    assert_eq!(client.download("decoded.bin").await.body, data);
}

#[tokio::test]
async fn invalid_base64_is_refused_and_nothing_is_kept() {
    let server = Server::start();
    let client = server.client();
    for bad in [&b"aGVsbG8"[..], b"aGV!bG8=", b"aGVsbG8=aGVs"] {
        let reply = client.multipart_upload("/v0.5/files/base64", "bad.bin", bad.to_vec(), None).await;
        reply.assert_error(400, "invalid_parameter");
    }
    client.metadata("bad.bin").await.assert_error(404, "file_not_found");
    assert!(server.blobs("staging").await.is_empty() && server.blobs("files").await.is_empty());
}

fn small_limit() -> Options {
    let mut options = Options::default();
    options.args.extend(["--max-simple-upload".into(), MIB.to_string()]);
    options
}

#[tokio::test]
async fn an_upload_over_the_limit_is_413_even_for_a_client_that_sends_everything_first() {
    let server = Server::start_with(small_limit());
    let client = server.client();
    // reqwest writes the whole body before it reads the answer.
    let reply = client.simple_upload("big.bin", bytes(3 * MIB, 82), None).await;
    reply.assert_error(413, "invalid_file_size");
    // Without a Content-Length (chunked), the limit is found while streaming.
    let stream = futures_util::stream::iter((0..24).map(|i| Ok::<_, std::io::Error>(bytes(128 * 1024, i))));
    let part = reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(stream)).file_name("chunked.bin");
    let form = reqwest::multipart::Form::new().part("file", part);
    let request = client.http.post(format!("{}/v0.5/files", client.url)).bearer_auth(&client.key).multipart(form);
    reply_of(request).await.assert_error(413, "invalid_file_size");
    // Base64 counts the encoded size.
    let text = base64::engine::general_purpose::STANDARD.encode(bytes(800 * 1024, 83)).into_bytes();
    let reply = client.multipart_upload("/v0.5/files/base64", "b64.bin", text, None).await;
    reply.assert_error(413, "invalid_file_size");

    for name in ["big.bin", "chunked.bin", "b64.bin"] {
        client.metadata(name).await.assert_error(404, "file_not_found");
    }
    assert!(server.blobs("staging").await.is_empty() && server.blobs("files").await.is_empty());
    // Just under the limit is fine.
    client.simple_upload("fits.bin", bytes(MIB - 200, 84), None).await.assert_ok();
}

#[tokio::test]
async fn a_refused_key_is_answered_even_to_a_client_that_sends_everything_first() {
    let server = Server::start();
    let port = server.port();
    for path in ["/v0.5/files", "/v0.5/files/base64"] {
        // 32 MiB is more than the socket buffers hold: a server that answered
        // without reading would leave this writer facing a closed connection.
        let answer =
            tokio::task::spawn_blocking(move || send_everything_then_read(port, path, 32 * MIB)).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
        assert!(answer.contains("invalid_api_key"), "{answer}");
    }
    assert!(server.blobs("staging").await.is_empty() && server.blobs("files").await.is_empty());
}

/// A client of the kind the spec warns of: it writes the whole request, an
/// upload of `len` bytes under a key that does not exist, then reads.
fn send_everything_then_read(port: u16, path: &str, len: usize) -> String {
    use std::io::{Read, Write};
    let key = ferry_core::api_key::ApiKey::generate().to_string();
    let mut body = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n\r\n".to_vec();
    body.extend(bytes(len, 85));
    body.extend(b"\r\n--b--\r\n");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body).expect("the server closed the connection before it read the body");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("the answer was lost");
    String::from_utf8_lossy(&answer).into_owned()
}

async fn reply_of(request: reqwest::RequestBuilder) -> Reply {
    reply(request.send().await.unwrap()).await
}

/// The server streams a simple upload to disk: its peak memory hardly moves
/// while 400 MiB go through it.
#[tokio::test]
async fn a_large_simple_upload_streams_in_small_memory() {
    let server = Server::start();
    let client = server.client();
    // Warm up the allocator and the connection pool with a small upload.
    client.simple_upload("warm.bin", bytes(4 * MIB, 85), None).await.assert_ok();
    let before = server.memory_kib("VmHWM:");
    let chunk = bytes(MIB, 86);
    let chunks = (0..400).map(move |_| Ok::<_, std::io::Error>(chunk.clone()));
    let part = reqwest::multipart::Part::stream_with_length(
        reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)),
        400 * MIB as u64,
    )
    .file_name("large.bin");
    let form = reqwest::multipart::Form::new().part("file", part);
    let request = client.http.post(format!("{}/v0.5/files", client.url)).bearer_auth(&client.key).multipart(form);
    reply_of(request).await.assert_ok();
    let after = server.memory_kib("VmHWM:");
    let growth_mib = (after.saturating_sub(before)) as f64 / 1024.0;
    println!("server peak RSS: {} KiB before, {} KiB after 400 MiB; growth {growth_mib:.1} MiB", before, after);
    assert!(growth_mib < 16.0, "the server's peak memory grew by {growth_mib:.1} MiB");
    let metadata = client.metadata("large.bin").await.assert_ok();
    assert_eq!(metadata["num_bytes"], 400 * MIB);
}
