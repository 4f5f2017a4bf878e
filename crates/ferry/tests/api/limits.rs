//! The operator's limits: per-key rate limiting, per-org quotas, and a
//! timeout on silent request bodies.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

fn with(args: &[&str]) -> Options {
    let mut options = Options::default();
    options.args.extend(args.iter().map(|a| a.to_string()));
    options
}

#[tokio::test]
async fn a_key_over_its_rate_gets_429_with_retry_after_and_part_puts_are_never_limited() {
    let server = Server::start_with(with(&["--rate-limit", "5"]));
    let client = server.client();
    let data = bytes(10, 170);
    let upload = client.start_upload("limited.bin", data.len()).await;
    let mut replies = Vec::new();
    for _ in 0..20 {
        replies.push(client.get("/v0.5/files/info").await);
    }
    let limited: Vec<&Reply> = replies.iter().filter(|r| r.status == 429).collect();
    assert!(!limited.is_empty(), "20 requests at once against 5 a second were all let through");
    limited[0].assert_error(429, "rate_limited");
    let retry_after: u64 = limited[0].header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
    // Another key has its own allowance.
    server.new_org("other").get("/v0.5/files/info").await.assert_ok();
    // Part PUTs carry no key and are never limited.
    for _ in 0..10 {
        put_part(&upload.parts()[0], &data).await;
    }
}

#[tokio::test]
async fn an_orgs_quota_counts_uploads_in_progress_and_refuses_with_507() {
    let quota = 3 * MIB;
    let server = Server::start_with(with(&["--org-quota", &quota.to_string()]));
    let client = server.client();
    let first = client.start_upload("first.bin", 2 * MIB).await;
    // 2 MiB are promised to the upload in progress: 2 more do not fit.
    client.initiate("second.bin", 2 * MIB).await.assert_error(507, "capacity_reached");
    client.simple_upload("third.bin", bytes(2 * MIB, 171), None).await.assert_error(507, "capacity_reached");
    assert_eq!(server.blobs("staging").await.len(), 1, "a refused upload kept storage");
    assert!(server.blobs("files").await.is_empty(), "a refused simple upload kept bytes");
    // Another org has its own quota.
    server.new_org("other").initiate("second.bin", 2 * MIB).await.assert_ok();
    // Freeing the upload frees its share.
    client.abort(first.id()).await.assert_ok_empty();
    client.simple_upload("third.bin", bytes(2 * MIB, 171), None).await.assert_ok();
    client.initiate("fourth.bin", MIB).await.assert_ok();
    client.initiate("fifth.bin", 1).await.assert_error(507, "capacity_reached");
}

/// A client that sends a few bytes of its body and then nothing is cut off
/// after the body timeout, with an answer, instead of holding the request.
#[tokio::test]
async fn a_silent_body_is_cut_off_after_the_body_timeout() {
    let server = Server::start_with(with(&["--body-timeout", "1"]));
    let address = server.url.strip_prefix("http://").unwrap().to_owned();
    let mut stream = TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /v0.5/files/uploads/initiate HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"filename\": ",
        server.key
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the request was still held after 30 s");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("invalid_parameter"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The server is fine.
    server.client().get("/v0.5/files/info").await.assert_ok();
}
