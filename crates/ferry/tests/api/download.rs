//! Spec §4.4: downloads, ranges and HEAD.

use reqwest::Method;

use crate::harness::*;

#[tokio::test]
async fn ranges_are_served_with_206_and_the_edges_hold() {
    let server = Server::start();
    let client = server.client();
    let data = bytes(1000, 100);
    client.simple_upload("ranged.bin", data.clone(), None).await.assert_ok();
    let path = "/v0.5/files/download/ranged.bin";

    let whole = client.get(path).await;
    assert_eq!((whole.status.as_u16(), whole.header("accept-ranges")), (200, Some("bytes")));
    for (range, expected, content_range) in [
        ("bytes=0-0", &data[..1], "bytes 0-0/1000"),
        ("bytes=10-19", &data[10..20], "bytes 10-19/1000"),
        ("bytes=990-", &data[990..], "bytes 990-999/1000"),
        ("bytes=-5", &data[995..], "bytes 995-999/1000"),
        ("bytes=900-5000", &data[900..], "bytes 900-999/1000"),
        ("bytes=-5000", &data[..], "bytes 0-999/1000"),
    ] {
        let reply = client.get_with(path, &[("range", range)]).await;
        assert_eq!(reply.status.as_u16(), 206, "{range}");
        assert_eq!(reply.body, expected, "{range}");
        assert_eq!(reply.header("content-range"), Some(content_range), "{range}");
        assert_eq!(reply.header("content-length"), Some(expected.len().to_string().as_str()));
    }
    for range in ["bytes=1000-", "bytes=5000-6000", "bytes=-0"] {
        let reply = client.get_with(path, &[("range", range)]).await;
        reply.assert_error(416, "range_not_satisfiable");
        assert_eq!(reply.header("content-range"), Some("bytes */1000"), "{range}");
    }
    // What is not one well-formed byte range gets the whole file.
    for range in ["bytes=0-1,5-6", "bytes=9-2", "lines=1-2", "bytes=x-"] {
        let reply = client.get_with(path, &[("range", range)]).await;
        assert_eq!((reply.status.as_u16(), reply.body.len()), (200, 1000), "{range}");
    }
}

#[tokio::test]
async fn head_gives_the_headers_alone() {
    let server = Server::start();
    let client = server.client();
    let data = bytes(1234, 101);
    let uploaded = client.simple_upload("données 1.csv", data, Some("text/csv")).await.assert_ok();
    let head = client.call(Method::HEAD, "/v0.5/files/download/donn%C3%A9es%201.csv", None).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length"), Some("1234"));
    assert_eq!(head.header("content-type"), Some("text/csv"));
    assert_eq!(head.header("etag").map(|e| e.trim_matches('"')), uploaded["file_uid"].as_str());
    assert_eq!(head.header("content-disposition"), Some("attachment; filename*=UTF-8''donn%C3%A9es%201.csv"));
    let ranged = client.get_with("/v0.5/files/download/donn%C3%A9es%201.csv", &[("range", "bytes=0-9")]).await;
    assert_eq!(ranged.body.len(), 10);
}

/// `If-Range`: a range is served only while its validator is the file's
/// ETag; a stale one (the name now holds other bytes) or a date gets the
/// whole file, 200, so a download manager never splices new bytes onto old.
#[tokio::test]
async fn if_range_serves_the_range_only_for_the_current_file() {
    let server = Server::start();
    let client = server.client();
    let old = bytes(1000, 90);
    client.simple_upload("moving.bin", old.clone(), None).await.assert_ok();
    let old_etag = client.download("moving.bin").await.header("etag").unwrap().to_owned();
    let range = [("Range", "bytes=100-199"), ("If-Range", old_etag.as_str())];
    let reply = client.get_with("/v0.5/files/download/moving.bin", &range).await;
    assert_eq!((reply.status.as_u16(), &reply.body[..]), (206, &old[100..200]));

    let new = bytes(1000, 91);
    client.simple_upload("moving.bin", new.clone(), None).await.assert_ok();
    let reply = client.get_with("/v0.5/files/download/moving.bin", &range).await;
    assert_eq!(reply.status, 200, "a stale If-Range got a range");
    assert!(reply.body == new);
    let dated = [("Range", "bytes=100-199"), ("If-Range", "Wed, 02 Dec 2026 05:00:00 GMT")];
    assert_eq!(client.get_with("/v0.5/files/download/moving.bin", &dated).await.status, 200);
}

/// A browser's preflight names `Authorization`, which `*` does not cover
/// under the Fetch standard: it is allowed by name, with `Content-Type`.
#[tokio::test]
async fn browsers_may_send_the_api_key_from_any_origin() {
    let server = Server::start();
    let preflight = http()
        .request(reqwest::Method::OPTIONS, format!("{}/v0.5/files/metadata", server.url))
        .header("Origin", "https://app.example.com")
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "authorization,content-type")
        .send()
        .await
        .unwrap();
    let preflight = reply(preflight).await;
    assert!(preflight.status.is_success(), "{:?}", preflight.status);
    let allowed = preflight.header("access-control-allow-headers").unwrap_or_default().to_ascii_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"), "{allowed}");
    assert_eq!(preflight.header("access-control-allow-origin"), Some("*"));
}
