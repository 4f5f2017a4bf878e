//! Spec §3.3: the presigned part PUT.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

#[tokio::test]
async fn a_put_answers_its_token_and_same_bytes_give_the_same_token() {
    if Layout::current().lacks(Needs::FerryTakesParts) {
        return;
    }
    let server = Server::start();
    let client = server.client();
    let data = bytes(2 * PART, 5);
    let upload = client.start_upload("tokens.bin", data.len()).await;
    let part = &upload.parts()[1];
    let first = put_part(part, &data).await;
    assert!(first.starts_with('"') && first.ends_with('"') && first.len() >= 18, "{first}");
    assert_eq!(put_part(part, &data).await, first);
    let other = put(part["url"].as_str().unwrap(), bytes(PART, 6)).await;
    other.assert_ok_empty();
    assert_ne!(other.header("etag").unwrap(), first);
    // The same bytes at another position give another token.
    let shifted = put(upload.url(0), slice(part, &data).to_vec()).await;
    assert_ne!(shifted.header("etag").unwrap(), first);
}

#[tokio::test]
async fn bytes_are_written_in_place_at_the_parts_offset() {
    if Layout::current().lacks(Needs::FerryTakesParts) {
        return;
    }
    let server = Server::start();
    let client = server.client();
    let data = bytes(2 * PART + 10, 7);
    let upload = client.start_upload("in-place.bin", data.len()).await;
    put_part(&upload.parts()[1], &data).await;
    let staging = std::fs::read(server.data_dir().join("blobs/staging").join(upload.id())).unwrap();
    assert_eq!(staging.len(), data.len());
    assert_eq!(&staging[PART..2 * PART], &data[PART..2 * PART]);
}

#[tokio::test]
async fn a_body_of_the_wrong_length_is_refused_and_the_part_stays_missing() {
    if Layout::current().lacks(Needs::FerryTakesParts) {
        return;
    }
    let server = Server::start();
    let client = server.client();
    let data = bytes(2 * PART, 8);
    let upload = client.start_upload("length.bin", data.len()).await;
    let url = upload.url(0);
    let token0 = put_part(&upload.parts()[0], &data).await;
    let token1 = put_part(&upload.parts()[1], &data).await;

    // Shorter, longer, and a Content-Length that disagrees with the part.
    put(url, data[..PART - 1].to_vec()).await.assert_error(400, "invalid_part_size");
    put(url, data[..PART + 1].to_vec()).await.assert_error(400, "invalid_part_size");
    let chunked = http()
        .put(url)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(vec![
            Ok::<_, std::io::Error>(data[..PART].to_vec()),
            Ok(vec![0u8; 10]),
        ])))
        .send()
        .await
        .unwrap();
    reply(chunked).await.assert_error(400, "invalid_part_size");

    // The failed PUTs overwrote part 0's place, so its old token is void...
    let reply = client
        .complete(
            upload.id(),
            json!([{"part_number": 0, "part_token": token0}, {"part_number": 1, "part_token": token1}]),
        )
        .await;
    reply.assert_error(400, "invalid_part_token");
    assert!(reply.json()["errors"][0]["message"].as_str().unwrap().contains("part(s) 0 "));
    // ...and the part is missing until it is sent again whole.
    let reply = client.complete(upload.id(), json!([{"part_number": 1, "part_token": token1}])).await;
    reply.assert_error(400, "missing_parts");
    assert_eq!(put_part(&upload.parts()[0], &data).await, token0);
    client.checkpoint(upload.id(), json!([{"part_number": 0, "part_token": token0}])).await.assert_ok();
}

/// Sends a PUT's head with `Expect: 100-continue` and waits for the server
/// to ask for the body: by then it has checked the URL and claimed the part.
pub async fn put_head_awaiting_continue(url: &str, length: usize) -> TcpStream {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut stream = TcpStream::connect(host).await.unwrap();
    let head =
        format!("PUT {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {length}\r\nExpect: 100-continue\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let interim = read_head(&mut stream).await;
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim}");
    stream
}

pub async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "connection closed: {}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

#[tokio::test]
async fn a_second_put_of_a_part_while_one_streams_is_409() {
    if Layout::current().lacks(Needs::FerryTakesParts) {
        return;
    }
    let server = Server::start();
    let client = server.client();
    let data = bytes(2 * PART, 9);
    let upload = client.start_upload("busy.bin", data.len()).await;
    let tokens = upload.put_all(&data).await;
    let mut first = put_head_awaiting_continue(upload.url(0), PART).await;

    put(upload.url(0), data[..PART].to_vec()).await.assert_error(409, "part_upload_in_progress");
    // Another part of the same upload is not blocked.
    put_part(&upload.parts()[1], &data).await;
    // A complete while a part is being rewritten is told to retry (it was
    // 400 invalid_part_token once, which clients take as final).
    client.complete(upload.id(), tokens.clone()).await.assert_error(409, "part_upload_in_progress");

    first.write_all(&data[..PART]).await.unwrap();
    let head = read_head(&mut first).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains(tokens[0]["part_token"].as_str().unwrap()), "{head}");
    client.complete(upload.id(), tokens).await.assert_ok();
    assert_eq!(client.download("busy.bin").await.body, data);
}

#[tokio::test]
async fn a_bad_signature_is_refused_before_the_body_is_read() {
    if Layout::current().lacks(Needs::FerryTakesParts) {
        return;
    }
    let server = Server::start();
    let upload = server.client().start_upload("early.bin", PART).await;
    let mut tampered = upload.url(0).to_owned();
    let last = tampered.pop().unwrap();
    tampered.push(if last == '0' { '1' } else { '0' });
    let rest = tampered.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut stream = TcpStream::connect(host).await.unwrap();
    let head = format!("PUT {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {PART}\r\nExpect: 100-continue\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    // The final answer comes without a 100 Continue: no body byte was wanted.
    let answer = read_head(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
}

/// Every single-character change to a URL's path or query is refused, and
/// the unchanged URL still works (so the refusals are not an accident).
#[tokio::test]
async fn every_mutation_of_a_url_is_refused() {
    if Layout::current().lacks(Needs::FerryTakesParts) {
        return;
    }
    let server = Server::start();
    let data = bytes(100, 10);
    let upload = server.client().start_upload("tamper.bin", data.len()).await;
    let url = upload.url(0).to_owned();
    // From the first character after `http://host:port/`.
    let start = server.url.len() + 1;
    let http = http();
    let mut refused = 0;
    for i in start..url.len() {
        let original = url.as_bytes()[i];
        let replacement = match original {
            b'0' => b'1',
            b'a'..=b'y' | b'A'..=b'Y' | b'1'..=b'8' => original + 1,
            _ => b'0',
        };
        let mut mutated = url.clone().into_bytes();
        mutated[i] = replacement;
        let mutated = String::from_utf8(mutated).unwrap();
        let reply = reply(http.put(&mutated).body(data.clone()).send().await.unwrap()).await;
        let in_query = i > url.find('?').unwrap();
        match reply.status.as_u16() {
            403 => assert_eq!(reply.error_codes(), ["invalid_signature"], "{mutated}"),
            // Changing the fixed route text leaves no route at all.
            404 | 405 if !in_query => assert!(!reply.error_codes().is_empty()),
            other => panic!("{mutated} answered {other}: {}", String::from_utf8_lossy(&reply.body)),
        }
        refused += 1;
    }
    assert!(refused > 100);
    put(&url, data).await.assert_ok_empty();
}

#[tokio::test]
async fn a_url_for_one_part_or_upload_does_not_work_for_another() {
    if Layout::current().lacks(Needs::FerryTakesParts) {
        return;
    }
    let server = Server::start();
    let client = server.client();
    let data = bytes(2 * PART, 11);
    let a = client.start_upload("a.bin", data.len()).await;
    let b = client.start_upload("b.bin", data.len()).await;
    let url_a0 = a.url(0);
    let other_part = url_a0.replace("/0?", "/1?");
    put(&other_part, data[PART..].to_vec()).await.assert_error(403, "invalid_signature");
    let other_upload = url_a0.replace(a.id(), b.id());
    put(&other_upload, data[..PART].to_vec()).await.assert_error(403, "invalid_signature");
}

/// Other spellings of the same upload and part (a leading zero or sign,
/// percent-encoding, upper case) do not verify: one URL, one spelling.
#[tokio::test]
async fn only_the_signers_spelling_of_a_url_verifies() {
    if Layout::current().lacks(Needs::FerryTakesParts) {
        return;
    }
    let server = Server::start();
    let data = bytes(100, 12);
    let upload = server.client().start_upload("spelling.bin", data.len()).await;
    let url = upload.url(0).to_owned();
    let id = upload.id();
    let spellings = [
        url.replace("/0?", "/00?"),
        url.replace("/0?", "/+0?"),
        url.replace("/0?", "/%30?"),
        url.replace(id, &id.to_uppercase()),
        url.replace(id, &id.replacen('u', "%75", 1)),
    ];
    for spelling in spellings {
        assert_ne!(spelling, url);
        put(&spelling, data.clone()).await.assert_error(403, "invalid_signature");
    }
    put(&url, data).await.assert_ok_empty();
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Waits until the wall clock passes `expires_at` (RFC 3339, whole seconds).
async fn wait_past(expires_at: &str) {
    let deadline = humantime::parse_rfc3339(expires_at).unwrap().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    let wait = deadline - unix_now() + 0.05;
    assert!(wait < 5.0, "expires_at {expires_at} is too far for a 2-second TTL");
    if wait > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
    }
}

#[tokio::test]
async fn an_expired_url_is_refused_and_a_fresh_one_works() {
    if Layout::current().lacks(Needs::FerryTakesParts) {
        return;
    }
    let mut options = Options::default();
    options.args.extend(["--url-ttl".into(), "2".into()]);
    let server = Server::start_with(options);
    let client = server.client();
    let data = bytes(100, 12);
    let upload = client.start_upload("expiry.bin", data.len()).await;
    let part = &upload.parts()[0];
    wait_past(part["expires_at"].as_str().unwrap()).await;
    put(part["url"].as_str().unwrap(), data.clone()).await.assert_error(403, "url_expired");

    let fresh = client.part_urls(upload.id(), json!([0])).await.assert_ok();
    let fresh: &Value = &fresh["parts"][0];
    assert_ne!(fresh["url"], part["url"]);
    let token = put_part(fresh, &data).await;
    client.complete(upload.id(), json!([{"part_number": 0, "part_token": token}])).await.assert_ok();
}

#[tokio::test]
async fn puts_to_completed_uploads_are_409_and_to_aborted_ones_404() {
    if Layout::current().lacks(Needs::FerryTakesParts) {
        return;
    }
    let server = Server::start();
    let client = server.client();
    let data = bytes(100, 13);
    let done = client.start_upload("done.bin", data.len()).await;
    let tokens = done.put_all(&data).await;
    client.complete(done.id(), tokens).await.assert_ok();
    put(done.url(0), data.clone()).await.assert_error(409, "upload_completed");

    let aborted = client.start_upload("gone.bin", data.len()).await;
    client.abort(aborted.id()).await.assert_ok_empty();
    put(aborted.url(0), data).await.assert_error(404, "upload_not_found");
}

#[tokio::test]
async fn browsers_can_put_parts_and_read_the_etag() {
    let server = Server::start();
    let data = bytes(100, 14);
    let upload = server.client().start_upload("browser.bin", data.len()).await;
    let url = upload.url(0);
    let preflight = http()
        .request(reqwest::Method::OPTIONS, url)
        .header("Origin", "https://app.example.com")
        .header("Access-Control-Request-Method", "PUT")
        .header("Access-Control-Request-Headers", "content-type")
        .send()
        .await
        .unwrap();
    let preflight = reply(preflight).await;
    assert_eq!(preflight.status, 200);
    assert_eq!(preflight.header("access-control-allow-origin"), Some("*"));
    assert!(preflight.header("access-control-allow-methods").unwrap().contains("PUT"));

    let put = http().put(url).header("Origin", "https://app.example.com").body(data).send().await.unwrap();
    let put = reply(put).await;
    put.assert_ok_empty();
    assert_eq!(put.header("access-control-allow-origin"), Some("*"));
    assert!(put.header("access-control-expose-headers").unwrap().to_lowercase().contains("etag"));
}
