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

/// `curl`'s answer about `url`: the HTTP version it spoke, trusting `ca`.
fn curl_http_version(ca: &std::path::Path, url: &str, version_flag: &str) -> String {
    let out = std::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_version}", version_flag, "--cacert"])
        .arg(ca)
        .arg(url)
        .output()
        .expect("running curl");
    assert!(out.status.success(), "curl {url}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// With a certificate ferry speaks HTTPS: HTTP/2 or HTTP/1.1 as the client
/// offers, part URLs that start with https, and after SIGHUP the renewed
/// certificate for new connections while open ones go on.
#[tokio::test]
async fn tls_serves_both_http_versions_and_reloads_its_certificate_on_sighup() {
    if Layout::current().lacks(Needs::FerryTakesParts) || !needs_integration("curl and openssl") {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    let (first, second) = (TestCertificate::make(certs.path(), "first"), TestCertificate::make(certs.path(), "second"));
    let (cert, key) = (certs.path().join("live-cert.pem"), certs.path().join("live-key.pem"));
    std::fs::copy(&first.cert, &cert).unwrap();
    std::fs::copy(&first.key, &key).unwrap();
    let mut options = Options::default();
    options.args.extend([
        "--tls-cert".into(),
        cert.display().to_string(),
        "--tls-key".into(),
        key.display().to_string(),
    ]);
    let server = Server::start_with(options);
    assert!(server.url.starts_with("https://127.0.0.1:"), "{}", server.url);
    let health = format!("{}/health", server.url);
    assert_eq!(curl_http_version(&first.ca, &health, "--http2"), "2");
    assert_eq!(curl_http_version(&first.ca, &health, "--http1.1"), "1.1");
    // A client that does not trust the CA is refused, as it should be.
    assert!(http().get(&health).send().await.is_err(), "a certificate of an unknown CA was accepted");

    // Uploads work end to end, part URLs included.
    let client = server.client_over(first.client());
    let upload = client.start_upload("secure.bin", PART + 10).await;
    assert!(upload.url(0).starts_with(&format!("{}/parts/", server.url)), "{}", upload.url(0));
    let data = bytes(PART + 10, 3);
    let mut tokens = Vec::new();
    for part in upload.parts() {
        let body = slice(part, &data).to_vec();
        let stored = reply(client.http.put(part["url"].as_str().unwrap()).body(body).send().await.unwrap()).await;
        stored.assert_ok_empty();
        tokens.push(json!({"part_number": part["part_number"], "part_token": stored.header("etag").unwrap()}));
    }
    client.complete(upload.id(), json!(tokens)).await.assert_ok();
    assert_eq!(client.download("secure.bin").await.body, data);

    // Renewed: the files change, then SIGHUP.
    std::fs::copy(&second.cert, &cert).unwrap();
    std::fs::copy(&second.key, &key).unwrap();
    let hup = std::process::Command::new("kill").args(["-HUP", &server.pid().to_string()]).status().unwrap();
    assert!(hup.success());
    server.log_line(&["reloaded the TLS certificate"]).await;
    assert_eq!(curl_http_version(&second.ca, &health, "--http2"), "2");
    let stale = std::process::Command::new("curl").args(["-sS", "--cacert"]).arg(&first.ca).arg(&health).output();
    assert!(!stale.unwrap().status.success(), "a new connection still got the old certificate");
    // The connection the client opened before the reload is still served.
    assert_eq!(client.get("/v0.5/files/info").await.assert_ok()["num_files"], 1);

    // A broken file at the next SIGHUP changes nothing.
    std::fs::write(&cert, "not a certificate").unwrap();
    let hup = std::process::Command::new("kill").args(["-HUP", &server.pid().to_string()]).status().unwrap();
    assert!(hup.success());
    server.log_line(&["did not load; keeping the one in use"]).await;
    assert_eq!(curl_http_version(&second.ca, &health, "--http1.1"), "1.1");
}

/// The command line trusts a private CA named by SSL_CERT_FILE, as curl
/// and OpenSSL do.
#[tokio::test]
async fn the_cli_trusts_the_ca_that_ssl_cert_file_names() {
    if Layout::current().lacks(Needs::FerryTakesParts) || !needs_integration("openssl") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let certificate = TestCertificate::make(work.path(), "private");
    let mut options = Options::default();
    options.args.extend(
        ["--tls-cert", certificate.cert.to_str().unwrap(), "--tls-key", certificate.key.to_str().unwrap()]
            .map(String::from),
    );
    let server = Server::start_with(options);
    let file = work.path().join("ca-trusted.bin");
    let data = bytes(2 * PART + 5, 9);
    std::fs::write(&file, &data).unwrap();
    // Without the CA the certificate is refused: at once, not after
    // minutes of retrying, with what to do.
    let started = std::time::Instant::now();
    let refused = cli(&server, work.path(), &["upload"]).arg(&file).env_remove("SSL_CERT_FILE").output().unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("TLS") && stderr.contains("SSL_CERT_FILE"), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "took {:?}", started.elapsed());
    let output =
        cli(&server, work.path(), &["upload"]).arg(&file).env("SSL_CERT_FILE", &certificate.ca).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let client = server.client_over(certificate.client());
    assert_eq!(client.download("ca-trusted.bin").await.body, data);
}
