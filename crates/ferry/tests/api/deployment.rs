//! Running ferry for a team: part URLs that work from the machine that asked
//! for them, behind a proxy or not, and a start that leaves nothing half-made.

use serde_json::{Value, json};

use crate::harness::*;

/// A POST of `body` to an API route with extra headers (`Host` among them).
async fn post_with(server: &Server, path: &str, headers: &[(&str, &str)], body: Value) -> Reply {
    let client = server.client();
    let mut request = client.http.post(format!("{}{path}", client.url)).bearer_auth(&client.key).json(&body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    reply(request.send().await.unwrap()).await
}

/// Initiates a 2-part upload with extra headers; its part URLs.
async fn urls_for(server: &Server, headers: &[(&str, &str)]) -> Vec<String> {
    let body = json!({"filename": "where.bin", "file_type": "application/octet-stream", "num_bytes": 2 * PART});
    let reply = post_with(server, "/v0.5/files/uploads/initiate", headers, body).await.assert_ok();
    reply["parts"].as_array().unwrap().iter().map(|p| p["url"].as_str().unwrap().to_owned()).collect()
}

fn all_start_with(urls: &[String], base: &str) -> bool {
    !urls.is_empty() && urls.iter().all(|u| u.starts_with(&format!("{base}/parts/")))
}

#[tokio::test]
async fn part_urls_use_the_host_the_client_asked_for() {
    if Layout::current().lacks(Needs::FerryTakesParts) {
        return;
    }
    // Listening on every address, as on a VM: the URLs must not say 0.0.0.0.
    let mut options = Options::default();
    options.args.extend(["--listen".into(), "0.0.0.0:0".into()]);
    let server = Server::start_with(options);
    let port = server.url.rsplit(':').next().unwrap().to_owned();
    let stdout = server.stdout().join("\n");
    assert!(server.log().contains("without --public-url"), "no warning about 0.0.0.0:\n{}", server.log());
    let urls = urls_for(&server, &[("host", &format!("files.example.test:{port}"))]).await;
    assert!(all_start_with(&urls, &format!("http://files.example.test:{port}")), "{urls:?}\n{stdout}");
    // Forwarding headers from a peer that is not a trusted proxy change nothing.
    let urls = urls_for(&server, &[("x-forwarded-proto", "https"), ("x-forwarded-host", "evil.example")]).await;
    assert!(all_start_with(&urls, &server.url), "{urls:?}");
    let urls = urls_for(&server, &[("forwarded", "proto=https;host=evil.example")]).await;
    assert!(urls.iter().all(|u| !u.contains("evil")), "{urls:?}");
    // Part URLs asked for later follow the asking request too.
    let upload = server.client().start_upload("later.bin", PART).await;
    let path = format!("/v0.5/files/uploads/{}/parts/urls", upload.id());
    let later = post_with(&server, &path, &[("host", "other.example.test")], json!({"part_numbers": [0]})).await;
    let later = later.assert_ok();
    assert!(later["parts"][0]["url"].as_str().unwrap().starts_with("http://other.example.test/parts/"), "{later}");
    // A host that is not one is refused in the envelope.
    let bad = post_with(&server, "/v0.5/files/uploads/initiate", &[("host", "a b")], json!({})).await;
    bad.assert_error(400, "invalid_parameter");
}

#[tokio::test]
async fn behind_a_trusted_proxy_part_urls_say_what_the_proxy_forwarded() {
    if Layout::current().lacks(Needs::FerryTakesParts) {
        return;
    }
    let mut options = Options::default();
    options.args.extend(["--trusted-proxy".into(), "10.0.0.0/8,127.0.0.1/32".into()]);
    let server = Server::start_with(options);
    let urls = urls_for(&server, &[("x-forwarded-proto", "https"), ("x-forwarded-host", "files.example.com")]).await;
    assert!(all_start_with(&urls, "https://files.example.com"), "{urls:?}");
    let urls =
        urls_for(&server, &[("forwarded", "for=192.0.2.1;proto=https;host=\"f.example:8443\", for=10.1.1.1")]).await;
    assert!(all_start_with(&urls, "https://f.example:8443"), "{urls:?}");
    // A scheme that is not http(s) is refused, never put into a URL.
    let body = json!({"filename": "x.bin", "file_type": "application/octet-stream", "num_bytes": 1});
    let bad = post_with(&server, "/v0.5/files/uploads/initiate", &[("x-forwarded-proto", "javascript")], body).await;
    bad.assert_error(400, "invalid_parameter");
    // And the URL a proxy would pass on still takes the part.
    let client = server.client();
    let upload = client.start_upload("through.bin", PART).await;
    let data = bytes(PART, 9);
    let part: Value = upload.parts()[0].clone();
    put_part(&part, &data).await;
}

#[tokio::test]
async fn a_public_url_fixes_the_base_whatever_the_request_says() {
    if Layout::current().lacks(Needs::FerryTakesParts) {
        return;
    }
    let mut options = Options::default();
    options.args.extend(["--public-url".into(), "https://files.example.org/".into()]);
    let server = Server::start_with(options);
    assert!(server.stdout().join("\n").contains("https://files.example.org"), "{:?}", server.stdout());
    let urls = urls_for(&server, &[("host", "elsewhere.example")]).await;
    assert!(all_start_with(&urls, "https://files.example.org"), "{urls:?}");
}

/// A first start that cannot bind its port creates nothing, so the next
/// start still makes the org `default` and shows its key.
#[test]
fn a_start_that_cannot_bind_makes_no_org_and_no_key() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let output = ferry()
        .args(["serve", "--listen", &address, "--data-dir"])
        .arg(dir.path())
        .env_remove("FERRY_BOOTSTRAP_KEY")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains(&address), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(!dir.path().join("ferry.db").exists(), "a database was made by a start that could not listen");
    drop(taken);
    // One node on that port, whatever the layout of the run.
    let mut options = Options { bootstrap_key: None, layout: Layout::Embedded, ..Options::default() };
    options.args.extend(["--listen".into(), address]);
    let server = Server::start_in(dir.path(), options, None);
    let shown = server.stdout().join("\n");
    assert!(shown.contains("Its API key, shown only this once") && shown.contains("fry_"), "{shown}");
}

/// `ferry admin` pointed at a dir without a database (a wrong --data-dir)
/// says where it looked and makes nothing there.
#[test]
fn admin_on_a_dir_without_a_database_says_where_it_looked_and_makes_none() {
    let dir = tempfile::tempdir().unwrap();
    let output = ferry()
        .args(["admin", "--data-dir"])
        .arg(dir.path())
        .args(["org", "create", "research"])
        .env_remove("FERRY_DATABASE_URL")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no ferry database") && stderr.contains(&dir.path().display().to_string()), "{stderr}");
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "admin made something in the dir");
}
