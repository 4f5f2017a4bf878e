//! Connections: slow and idle clients are cut off within ferry's bounds,
//! too many at once are refused without hurting the others, and requests
//! past ferry's limits on a head are answered in the envelope. Raw TCP, so
//! the test decides every byte and every pause.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

fn host(server: &Server) -> String {
    server.url.strip_prefix("http://").unwrap().to_owned()
}

/// Reads until the server closes the connection; returns what it sent.
async fn read_to_close(stream: &mut tokio::net::tcp::OwnedReadHalf) -> Vec<u8> {
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return answer,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
        }
    }
}

/// Writes `bytes` one at a time, `every` apart, until the server closes.
async fn drip(mut writer: tokio::net::tcp::OwnedWriteHalf, bytes: Vec<u8>, every: Duration) {
    for byte in bytes.into_iter().cycle() {
        if writer.write_all(&[byte]).await.is_err() {
            return;
        }
        tokio::time::sleep(every).await;
    }
}

#[derive(Debug, Clone, Copy)]
enum Slow {
    /// Connects and sends nothing.
    Idle,
    /// Sends a request head a byte every half second.
    DripHeaders,
    /// Sends a head for a request that is refused (no key), then its body
    /// a byte every half second.
    DripRefusedBody,
}

/// One slow client: how long until the server cut it off, and the status
/// line it was answered, if any.
async fn slow_client(host: String, kind: Slow) -> (Duration, String) {
    let stream = TcpStream::connect(&host).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let started = Instant::now();
    let every = Duration::from_millis(500);
    let dripping = match kind {
        Slow::Idle => None,
        Slow::DripHeaders => {
            let head = format!("GET /health HTTP/1.1\r\nHost: {host}\r\nX-Slow: ").into_bytes();
            Some(tokio::spawn(drip(writer, head, every)))
        }
        Slow::DripRefusedBody => {
            let head = format!(
                "POST /v0.5/files HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary=x\r\n\
                 Content-Length: 100000000\r\n\r\n"
            );
            writer.write_all(head.as_bytes()).await.unwrap();
            Some(tokio::spawn(drip(writer, b"--x\r\n".to_vec(), every)))
        }
    };
    let answer = tokio::time::timeout(Duration::from_secs(30), read_to_close(&mut reader))
        .await
        .unwrap_or_else(|_| panic!("a {kind:?} client was not cut off in 30 s"));
    let elapsed = started.elapsed();
    if let Some(dripping) = dripping {
        dripping.abort();
    }
    let text = String::from_utf8_lossy(&answer);
    (elapsed, text.lines().next().unwrap_or_default().to_owned())
}

/// 200 slow clients at once, none with a key: every one is cut off within
/// its bound, and meanwhile the server answers others at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_and_idle_clients_are_cut_off_within_the_bounds() {
    let mut options = Options::default();
    options.args.extend(
        ["--header-timeout", "2", "--idle-timeout", "3", "--drain-timeout", "2", "--body-timeout", "60"]
            .map(String::from),
    );
    let server = Server::start_with(options);
    let (host, plan) = (host(&server), [(Slow::Idle, 70), (Slow::DripHeaders, 70), (Slow::DripRefusedBody, 60)]);
    let mut clients = Vec::new();
    for (kind, count) in plan {
        for _ in 0..count {
            clients.push((kind, tokio::spawn(slow_client(host.clone(), kind))));
        }
    }
    // While they hang on, the server answers a health check at once.
    let client = server.client();
    let mut latencies = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        client.get("/health").await.assert_ok_empty_or_text();
        latencies.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    latencies.sort();
    assert!(latencies[latencies.len() / 2] < Duration::from_millis(50), "/health took {latencies:?}");

    for (kind, client) in clients {
        let (elapsed, status) = client.await.unwrap();
        // The bound, less the half second between drips, and some slack
        // for a loaded machine.
        let (bound, answer) = match kind {
            Slow::Idle => (3.0, ""),
            Slow::DripHeaders => (2.0, ""),
            Slow::DripRefusedBody => (2.0, "HTTP/1.1 401"),
        };
        let seconds = elapsed.as_secs_f64();
        assert!(seconds > bound - 0.6 && seconds < bound + 5.0, "{kind:?} was cut off after {seconds:.1} s");
        assert!(status.starts_with(answer), "{kind:?} was answered `{status}`");
    }
    let metrics = server.metrics().await;
    assert!(metrics.contains(r#"ferry_http_rejected_total{reason="header_timeout"} 70"#), "{metrics}");
}

/// Past --max-connections a new connection is closed at once; those
/// already open keep working, and once some close new ones get in.
#[tokio::test]
async fn past_max_connections_new_ones_are_refused_and_the_others_go_on() {
    let mut options = Options::default();
    options.args.extend(["--max-connections", "20"].map(String::from));
    let server = Server::start_with(options);
    let host = host(&server);
    let mut open = Vec::new();
    for _ in 0..20 {
        let mut stream = TcpStream::connect(&host).await.unwrap();
        // A request answered proves the connection is being served.
        assert!(health_on(&mut stream, &host).await.starts_with("HTTP/1.1 200"));
        open.push(stream);
    }
    let mut refused = TcpStream::connect(&host).await.unwrap();
    let mut buffer = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(10), refused.read(&mut buffer)).await.unwrap();
    assert!(matches!(closed, Ok(0) | Err(_)), "the 21st connection was served");
    for stream in &mut open {
        assert!(health_on(stream, &host).await.starts_with("HTTP/1.1 200"));
    }
    open.truncate(15);
    eventually("a connection gets in once others closed", || async {
        let mut stream = TcpStream::connect(&host).await.unwrap();
        health_on(&mut stream, &host).await.starts_with("HTTP/1.1 200")
    })
    .await;
    let metrics = server.metrics().await;
    assert!(metrics.contains(r#"ferry_http_rejected_total{reason="max_connections"}"#), "{metrics}");
}

/// Sends `GET /health` on a kept-alive connection; returns the status
/// line, or nothing if the connection was closed.
async fn health_on(stream: &mut TcpStream, host: &str) -> String {
    let request = format!("GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    // `ok`, after the head: the whole answer is small.
    while !answer.ends_with(b"ok") {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer)).await {
            Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&buffer[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_owned()
}

/// Sends raw bytes as one request and returns the whole answer.
async fn raw(server: &Server, request: String) -> (u16, Vec<u8>) {
    let (mut reader, mut writer) = TcpStream::connect(host(server)).await.unwrap().into_split();
    writer.write_all(request.as_bytes()).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(30), read_to_close(&mut reader)).await.unwrap();
    let text = String::from_utf8_lossy(&answer);
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = match answer.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(at) => answer[at + 4..].to_vec(),
        None => Vec::new(),
    };
    (status, body)
}

fn envelope_code(body: &[u8]) -> String {
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_else(|_| {
        panic!("not the envelope: {}", String::from_utf8_lossy(body));
    });
    assert!(json["errors"][0]["error_uid"].as_str().is_some_and(|u| u.starts_with("err-")), "{json}");
    json["errors"][0]["code"].as_str().unwrap().to_owned()
}

/// A URL or a head past ferry's limits is answered in the envelope, with
/// its error_uid in the log; what hyper refuses itself (a URL past its
/// hard limit, malformed framing) is counted and logged.
#[tokio::test]
async fn limits_on_a_head_answer_in_the_envelope_and_the_rest_is_counted() {
    let server = Server::start();
    let (host, key) = (host(&server), server.key.clone());
    let close = "Connection: close\r\n";

    let long_query = "x".repeat(20 * 1024);
    let request = format!(
        "GET /v0.5/files/metadata?file_type={long_query} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n{close}\r\n"
    );
    let (status, body) = raw(&server, request).await;
    assert_eq!((status, envelope_code(&body).as_str()), (414, "url_too_long"));

    let many: String = (0..110).map(|i| format!("X-Header-{i}: {i}\r\n")).collect();
    let request = format!("GET /health HTTP/1.1\r\nHost: {host}\r\n{many}{close}\r\n");
    let (status, body) = raw(&server, request).await;
    assert_eq!((status, envelope_code(&body).as_str()), (431, "headers_too_large"));
    let uid = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["errors"][0]["error_uid"].clone();
    // The 431's error_uid is in the log.
    server.log_line(&[uid.as_str().unwrap()]).await;

    // Past hyper's own limits: its bare answer, and ferry's count.
    let huge = format!("GET /health?{} HTTP/1.1\r\nHost: {host}\r\n{close}\r\n", "x".repeat(70 * 1024));
    assert_eq!(raw(&server, huge).await.0, 414);
    let very_many: String = (0..1000).map(|i| format!("X-Header-{i}: {i}\r\n")).collect();
    let request = format!("GET /health HTTP/1.1\r\nHost: {host}\r\n{very_many}{close}\r\n");
    assert_eq!(raw(&server, request).await.0, 431);
    for headers in ["Content-Length: 5\r\nContent-Length: 6\r\n", "Content-Length: -5\r\n"] {
        let request =
            format!("POST /v0.5/files/uploads/initiate HTTP/1.1\r\nHost: {host}\r\n{headers}{close}\r\nhello");
        let (status, _) = raw(&server, request).await;
        assert_eq!(status, 400, "{headers:?} was answered {status}");
    }
    // Both framings at once: hyper reads the body as chunked and closes
    // the connection after answering (RFC 9112 §6.3), so nothing can be
    // smuggled behind it; `raw` returning at all shows the close.
    let both = format!(
        "POST /v0.5/files/uploads/initiate HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\
         Content-Length: 5\r\n\r\n0\r\n\r\n"
    );
    let (status, body) = raw(&server, both).await;
    assert_eq!((status, envelope_code(&body).as_str()), (401, "invalid_api_key"));
    let metrics = server.metrics().await;
    assert!(metrics.contains(r#"ferry_http_rejected_total{reason="uri_too_long"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"ferry_http_rejected_total{reason="head_too_large"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"ferry_http_rejected_total{reason="bad_framing"} 2"#), "{metrics}");
    assert_eq!(server.log().matches("the HTTP parser refused a request").count(), 4);
}
