//! Spec §2: every error is in the envelope, and its uid is in the log.

use reqwest::Method;
use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn every_error_uid_is_in_the_servers_log() {
    let server = Server::start();
    let client = server.client();
    let upload = client.start_upload("log.bin", 10).await;
    let mut tampered = upload.url(0).to_owned();
    tampered.push('0');
    let mut replies = vec![
        client.initiate("../x", 0).await,
        client.part_urls("upl_01jfz8k2m4c5v6b7n8p9q0r1s2", json!([0])).await,
        server.client_with_key("nope").part_urls(upload.id(), json!([0])).await,
        client.call(Method::GET, "/v0.5/nothing-here", None).await,
    ];
    // A part URL is ferry's only where ferry takes the parts.
    if server.layout() != Layout::ScaleOut {
        replies.push(put(&tampered, vec![0; 10]).await);
    }
    for reply in replies {
        assert!(reply.status.is_client_error(), "{reply:?}");
        for error in reply.json()["errors"].as_array().unwrap() {
            let line = server.log_line(&[error["error_uid"].as_str().unwrap()]).await;
            assert!(line.contains(&format!("status={}", reply.status.as_u16())), "{line}");
        }
    }
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405_in_the_envelope() {
    let server = Server::start();
    let client = server.client();
    client.call(Method::GET, "/v0.5/files/nope", None).await.assert_error(404, "route_not_found");
    client.call(Method::GET, "/nowhere", None).await.assert_error(404, "route_not_found");
    client.call(Method::GET, "/v0.5/files/uploads/initiate", None).await.assert_error(405, "method_not_allowed");
    client.call(Method::DELETE, "/v0.5/files/uploads/x/complete", None).await.assert_error(405, "method_not_allowed");
}

async fn raw_post(client: &Client, path: &str, content_type: Option<&str>, body: &str) -> Reply {
    let mut request = client.http.post(format!("{}{path}", client.url)).bearer_auth(&client.key).body(body.to_owned());
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    reply(request.send().await.unwrap()).await
}

#[tokio::test]
async fn malformed_json_and_wrong_types_are_invalid_parameter() {
    let server = Server::start();
    let client = server.client();
    let path = "/v0.5/files/uploads/initiate";
    let json = Some("application/json");
    for body in ["{", "[1,2]", "{\"filename\": \"a\"} trailing", "null", "\"text\""] {
        raw_post(&client, path, json, body).await.assert_error(400, "invalid_parameter");
    }
    let wrong_type = raw_post(&client, path, json, r#"{"filename": 5, "file_type": "text/csv", "num_bytes": 1}"#).await;
    wrong_type.assert_error(400, "invalid_parameter");
    assert!(wrong_type.json()["errors"][0]["message"].as_str().unwrap().contains("filename"));
    let fractional =
        raw_post(&client, path, json, r#"{"filename": "a", "file_type": "text/csv", "num_bytes": 1.5}"#).await;
    fractional.assert_error(400, "invalid_parameter");
}

#[tokio::test]
async fn a_missing_field_is_missing_parameter_and_names_the_field() {
    let server = Server::start();
    let client = server.client();
    let reply = client.post("/v0.5/files/uploads/initiate", json!({"filename": "a", "file_type": "text/csv"})).await;
    reply.assert_error(400, "missing_parameter");
    assert!(reply.json()["errors"][0]["message"].as_str().unwrap().contains("num_bytes"));
    let upload = client.start_upload("a.bin", 10).await;
    let empty = raw_post(&client, &format!("/v0.5/files/uploads/{}/parts/urls", upload.id()), None, "").await;
    empty.assert_error(400, "missing_parameter");
    let entry = client.checkpoint(upload.id(), json!([{"part_number": 0}])).await;
    entry.assert_error(400, "missing_parameter");
    assert!(entry.json()["errors"][0]["message"].as_str().unwrap().contains("parts[0].part_token"));
}

#[tokio::test]
async fn a_body_that_is_not_json_is_refused() {
    let server = Server::start();
    let client = server.client();
    let body = r#"{"filename": "a", "file_type": "text/csv", "num_bytes": 1}"#;
    let path = "/v0.5/files/uploads/initiate";
    raw_post(&client, path, Some("text/plain"), body).await.assert_error(400, "invalid_parameter");
    raw_post(&client, path, Some("application/x-www-form-urlencoded"), body)
        .await
        .assert_error(400, "invalid_parameter");
    raw_post(&client, path, Some("application/json; charset=utf-8"), body).await.assert_ok();
}

#[tokio::test]
async fn missing_malformed_or_unknown_keys_are_401() {
    let server = Server::start();
    let unknown = ferry_core::api_key::ApiKey::generate().to_string();
    let mut wrong_secret = server.key.clone();
    let last = wrong_secret.pop().unwrap();
    wrong_secret.push(if last == '0' { '1' } else { '0' });
    for key in ["", "garbage", &unknown, &wrong_secret] {
        server.client_with_key(key).initiate("a", 1).await.assert_error(401, "invalid_api_key");
    }
    let no_header =
        reply(http().post(format!("{}/v0.5/files/uploads/initiate", server.url)).send().await.unwrap()).await;
    no_header.assert_error(401, "invalid_api_key");
    // The scheme is case-insensitive; the key is not.
    let url = format!("{}/v0.5/files/uploads/initiate", server.url);
    let body = json!({"filename": "a", "file_type": "text/csv", "num_bytes": 1});
    let lower = http().post(&url).header("authorization", format!("bearer {}", server.key)).json(&body);
    reply(lower.send().await.unwrap()).await.assert_ok();
    let basic = http().post(&url).header("authorization", format!("Basic {}", server.key)).json(&body);
    reply(basic.send().await.unwrap()).await.assert_error(401, "invalid_api_key");
}

#[tokio::test]
async fn lists_longer_than_10000_entries_are_refused() {
    let server = Server::start();
    let client = server.client();
    let upload = client.start_upload("long.bin", 10).await;
    let numbers: Vec<u32> = vec![0; 10_001];
    client.part_urls(upload.id(), json!(numbers)).await.assert_error(400, "invalid_parameter");
    let fine: Vec<u32> = vec![0; 10_000];
    assert_eq!(client.part_urls(upload.id(), json!(fine)).await.assert_ok()["parts"].as_array().unwrap().len(), 10_000);
}

#[tokio::test]
async fn hostile_bodies_and_headers_are_refused_and_the_server_stays_up() {
    let server = Server::start();
    let client = server.client();
    let path = "/v0.5/files/uploads/initiate";
    // JSON nested deeper than any request needs.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    raw_post(&client, path, Some("application/json"), &deep).await.assert_error(400, "invalid_parameter");
    // A body past the JSON limit (4 MiB).
    let huge = format!("{{\"filename\": \"{}\"}}", "x".repeat(5 * MIB));
    raw_post(&client, path, Some("application/json"), &huge).await.assert_error(400, "invalid_parameter");
    // A flood of headers is refused by the HTTP layer before any route.
    let mut flood = http().get(format!("{}/v0.5/files/info", server.url)).bearer_auth(&server.key);
    for i in 0..500 {
        flood = flood.header(format!("x-flood-{i}"), "y".repeat(100));
    }
    match flood.send().await {
        Ok(response) => assert!(response.status().is_client_error(), "{}", response.status()),
        Err(e) => assert!(e.is_request() || e.is_connect(), "{e}"),
    }
    client.get("/v0.5/files/info").await.assert_ok();
}

#[test]
fn the_debug_text_scan_finds_what_it_looks_for() {
    assert_eq!(debug_text("the body had Some(50)"), Some("Some("));
    assert_eq!(debug_text("expected None here"), Some("None"));
    assert_eq!(debug_text("got Err(Io) back"), Some("Err("));
    assert_eq!(debug_text("a Part { number: 3 } broke"), Some(" { number: "));
    assert_eq!(debug_text("Nonexistent names and Okay words are fine"), None);
    assert_eq!(debug_text("part 0 is 5242880 bytes; the body had 12"), None);
}
