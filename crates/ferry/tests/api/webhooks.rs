//! Webhooks, received by a real receiver that verifies every delivery with
//! the `standardwebhooks` package from PyPI (`webhook_receiver.py`). In the
//! scale-out layout two nodes deliver, so "once" there is once between them.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use crate::harness::*;

/// The receiver process and the files it reads and writes.
struct Receiver {
    python: String,
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Receiver {
    fn start(python: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mode"), "ok").unwrap();
        std::fs::write(dir.path().join("secret"), "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
        std::fs::write(dir.path().join("log"), "").unwrap();
        let (child, port) = Self::spawn(python, &dir, None);
        Self { python: python.to_owned(), child, port, dir }
    }

    fn spawn(python: &str, dir: &tempfile::TempDir, port: Option<u16>) -> (Child, u16) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/webhook_receiver.py");
        let mut command = Command::new(python);
        command.arg(script).args(["secret", "mode", "log"].map(|f| dir.path().join(f)));
        if let Some(port) = port {
            command.arg(port.to_string());
        }
        let mut child = command.stdout(Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| panic!("the receiver said {line:?}"));
        (child, port)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks", self.port)
    }

    fn set(&self, file: &str, text: &str) {
        std::fs::write(self.dir.path().join(file), text).unwrap();
    }

    /// Every request it got, in order.
    fn requests(&self) -> Vec<Value> {
        let log = std::fs::read_to_string(self.dir.path().join("log")).unwrap();
        log.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// Waits for a request that `matches`.
    async fn wait_for(&self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        eventually(what, || std::future::ready(self.requests().iter().any(&matches))).await;
        self.requests().into_iter().find(matches).unwrap()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Listening again on the same port.
    fn restart(&mut self) {
        self.stop();
        let (child, _) = Self::spawn(&self.python, &self.dir, Some(self.port));
        self.child = child;
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A server whose deliveries may go to loopback and retry after 200 ms.
fn webhook_options(extra: &[&str]) -> Options {
    let mut options = Options::default();
    options.args.extend(["--webhook-allow-private", "--webhook-first-retry", "200ms"].map(String::from));
    options.args.extend(extra.iter().map(|a| a.to_string()));
    options
}

/// `ferry admin webhook add` for the org `default`: the endpoint's id and secret.
fn add_webhook(server: &Server, url: &str, events: Option<&str>) -> (String, String) {
    let mut args = vec!["webhook", "add", "--org", "default", url, "--allow-private"];
    if let Some(events) = events {
        args.extend(["--events", events]);
    }
    let output = server.admin(&args);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("whk_") && lines.last().unwrap().starts_with("whsec_"), "{stdout}");
    (lines[0].to_owned(), lines.last().unwrap().to_string())
}

fn event_is(request: &Value, event_type: &str, file_id: &str) -> bool {
    request["verified"] == true
        && request["event"]["type"] == event_type
        && (request["event"]["data"]["file_id"] == file_id || request["event"]["data"]["file_name"] == file_id)
}

/// Each kind of event, from each kind of change, arrives once, signed so
/// that the Standard Webhooks library verifies it, with the file's record
/// as the metadata route gives it.
#[tokio::test]
async fn every_event_arrives_once_and_verifies() {
    let Some(python) = needs("FERRY_TEST_PYTHON") else { return };
    let receiver = Receiver::start(&python);
    let server = Server::start_with(webhook_options(&["--upload-expiry", "3s", "--janitor-interval", "1"]));
    let (_, secret) = add_webhook(&server, &receiver.url(), None);
    receiver.set("secret", &secret);
    let client = server.client();

    let first = client.simple_upload("a.csv", b"t,x\n1,2\n".to_vec(), Some("text/csv")).await.assert_ok();
    let registered = receiver.wait_for("a.csv registered", |r| event_is(r, "file.registered", "a.csv")).await;
    let record = client.metadata("a.csv").await.assert_ok();
    for field in ["file_id", "file_uid", "file_type", "num_bytes", "file_index", "created_at", "checksum_crc32c"] {
        assert_eq!(registered["event"]["data"][field], record[field], "{field}");
    }
    let ingested = receiver.wait_for("a.csv ingested", |r| event_is(r, "file.ingested", "a.csv")).await;
    assert_eq!(ingested["event"]["data"]["file_attributes"]["column_headers"], json!(["t", "x"]));

    client.upload("b.bin", &bytes(2 * PART, 180)).await;
    receiver.wait_for("b.bin ingested", |r| event_is(r, "file.ingested", "b.bin")).await;
    client.simple_upload("a.csv", b"t,x\n3,4\n".to_vec(), Some("text/csv")).await.assert_ok();
    let replaced = receiver.wait_for("the first a.csv replaced", |r| event_is(r, "file.deleted", "a.csv")).await;
    assert_eq!(replaced["event"]["data"]["reason"], "replaced");
    assert_eq!(replaced["event"]["data"]["file_uid"], first["file_uid"]);
    receiver
        .wait_for("the second a.csv ingested", |r| {
            event_is(r, "file.ingested", "a.csv") && r["event"]["data"]["file_uid"] != first["file_uid"]
        })
        .await;
    client.delete("b.bin").await.assert_ok();
    let deleted = receiver.wait_for("b.bin deleted", |r| event_is(r, "file.deleted", "b.bin")).await;
    assert_eq!(deleted["event"]["data"]["reason"], "deleted");
    let aborted = client.start_upload("c.bin", PART).await;
    client.abort(aborted.id()).await.assert_ok_empty();
    let event = receiver.wait_for("c.bin aborted", |r| event_is(r, "upload.aborted", "c.bin")).await;
    assert_eq!(event["event"]["data"]["upload_id"], aborted.id());
    let idle = client.start_upload("d.bin", PART).await;
    let event = receiver.wait_for("d.bin expired", |r| event_is(r, "upload.expired", "d.bin")).await;
    assert_eq!(event["event"]["data"]["upload_id"], idle.id());

    // Every request verified, and each event came once (one webhook-id a change).
    let requests = receiver.requests();
    assert!(requests.iter().all(|r| r["verified"] == true), "{requests:#?}");
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for r in &requests {
        *seen.entry(r["webhook_id"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    assert!(seen.values().all(|&n| n == 1), "an event came more than once: {requests:#?}");
    let kinds: Vec<(String, String)> = requests
        .iter()
        .map(|r| {
            let data = &r["event"]["data"];
            let name = data["file_id"].as_str().or(data["file_name"].as_str()).unwrap();
            (r["event"]["type"].as_str().unwrap().to_owned(), name.to_owned())
        })
        .collect();
    let expected = [
        ("file.registered", "a.csv"),
        ("file.ingested", "a.csv"),
        ("file.registered", "b.bin"),
        ("file.ingested", "b.bin"),
        ("file.deleted", "a.csv"),
        ("file.registered", "a.csv"),
        ("file.ingested", "a.csv"),
        ("file.deleted", "b.bin"),
        ("upload.aborted", "c.bin"),
        ("upload.expired", "d.bin"),
    ];
    let mut kinds_sorted = kinds.clone();
    kinds_sorted.sort();
    let mut expected: Vec<(String, String)> = expected.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    expected.sort();
    assert_eq!(kinds_sorted, expected, "in the order received: {kinds:?}");
}

/// A receiver answering 500 is tried again with the same webhook-id until
/// it takes the event; one that is down gets it once it is back.
#[tokio::test]
async fn a_failing_or_absent_receiver_gets_the_event_later_with_the_same_id() {
    let Some(python) = needs("FERRY_TEST_PYTHON") else { return };
    let mut receiver = Receiver::start(&python);
    let server = Server::start_with(webhook_options(&[]));
    let (_, secret) = add_webhook(&server, &receiver.url(), Some("file.registered"));
    receiver.set("secret", &secret);
    receiver.set("mode", "fail");
    let client = server.client();

    client.simple_upload("retried.txt", b"again".to_vec(), Some("text/plain")).await.assert_ok();
    eventually("three failed attempts", || {
        std::future::ready(receiver.requests().iter().filter(|r| r["mode"] == "fail").count() >= 3)
    })
    .await;
    receiver.set("mode", "ok");
    let taken = receiver.wait_for("the delivery that succeeds", |r| r["mode"] == "ok").await;
    let requests = receiver.requests();
    assert!(requests.iter().all(|r| r["verified"] == true && r["webhook_id"] == taken["webhook_id"]), "{requests:#?}");
    assert!(event_is(&taken, "file.registered", "retried.txt"), "{taken}");

    // Down: nothing listens on its port while the event happens.
    receiver.stop();
    client.simple_upload("later.txt", b"later".to_vec(), Some("text/plain")).await.assert_ok();
    server.log_line(&["webhook attempt", "could not connect"]).await;
    receiver.restart();
    receiver.wait_for("the event once it is back", |r| event_is(r, "file.registered", "later.txt")).await;
}

/// Past --webhook-retry-for a delivery is given up on and listed; the
/// operator sends it again, with its id, once the receiver is fixed.
#[tokio::test]
async fn a_delivery_given_up_on_is_listed_and_can_be_sent_again() {
    let Some(python) = needs("FERRY_TEST_PYTHON") else { return };
    let receiver = Receiver::start(&python);
    // Events are timed to the second, so 3 s leaves between 2 and 3 s of
    // retries, room for at least two attempts.
    let server = Server::start_with(webhook_options(&["--webhook-retry-for", "3s"]));
    let (endpoint_id, secret) = add_webhook(&server, &receiver.url(), Some("file.registered"));
    receiver.set("secret", &secret);
    receiver.set("mode", "fail");
    server.client().simple_upload("doomed.txt", b"x".to_vec(), Some("text/plain")).await.assert_ok();
    let failed = || String::from_utf8(server.admin(&["webhook", "failed", "--org", "default"]).stdout).unwrap();
    eventually("the delivery to be given up on", || std::future::ready(failed().contains(&endpoint_id))).await;
    let listed = failed();
    let event_id = listed.split_whitespace().find(|w| w.starts_with("evt_")).unwrap().to_owned();
    assert!(listed.contains("file.registered") && listed.contains("500"), "{listed}");
    let tries = receiver.requests().len();
    assert!(tries >= 2, "{tries} attempts");

    receiver.set("mode", "ok");
    let again = server.admin(&["webhook", "redeliver", &event_id]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    let taken = receiver.wait_for("the delivery sent again", |r| r["mode"] == "ok").await;
    assert_eq!(taken["webhook_id"], event_id.as_str());
    assert!(event_is(&taken, "file.registered", "doomed.txt"));
    eventually("the list to be empty", || std::future::ready(!failed().contains(&event_id))).await;
}

/// A receiver that never answers holds up no upload: completes go on at
/// once while its deliveries wait for their timeout.
#[tokio::test]
async fn a_hanging_receiver_does_not_hold_up_uploads() {
    let Some(python) = needs("FERRY_TEST_PYTHON") else { return };
    let receiver = Receiver::start(&python);
    let server = Server::start_with(webhook_options(&[]));
    let (_, secret) = add_webhook(&server, &receiver.url(), None);
    receiver.set("secret", &secret);
    receiver.set("mode", "hang");
    let client = server.client();
    client.upload("first.bin", &bytes(PART, 181)).await;
    receiver.wait_for("a delivery in the hanging receiver", |r| r["mode"] == "hang").await;
    for i in 0..5 {
        let name = format!("next-{i}.bin");
        let done = client.upload(&name, &bytes(PART + i, 182)).await;
        assert_eq!(done["file_name"], name.as_str());
    }
    assert!(receiver.requests().iter().all(|r| r["mode"] == "hang"));
}

/// A SIGKILL right after a complete's 200: the event was committed with the
/// file, so the restarted server delivers it.
#[tokio::test]
async fn an_event_survives_a_crash_right_after_the_complete() {
    let Some(python) = needs("FERRY_TEST_PYTHON") else { return };
    let receiver = Receiver::start(&python);
    let options =
        || Options { bootstrap_key: Some(ferry_core::api_key::ApiKey::generate().to_string()), ..webhook_options(&[]) };
    let first = options();
    let key = first.bootstrap_key.clone();
    let mut server = Server::start_with(first);
    let (_, secret) = add_webhook(&server, &receiver.url(), Some("file.registered"));
    receiver.set("secret", &secret);
    // Refused until after the crash, so it cannot have been delivered before.
    receiver.set("mode", "fail");
    server.client().upload("crash.bin", &bytes(2 * PART, 183)).await;
    server.kill();
    receiver.set("mode", "ok");
    let temp = server.take_dir();
    let restarted = Server::start_in(&server.dir, Options { bootstrap_key: key, ..options() }, temp);
    receiver.wait_for("crash.bin registered, after the restart", |r| r["mode"] == "ok").await;
    let requests = receiver.requests();
    assert!(requests.iter().all(|r| event_is(r, "file.registered", "crash.bin")), "{requests:#?}");
    drop(restarted);
}

/// Without --webhook-allow-private, no endpoint may be a loopback or
/// private address, named or by number: the admin command refuses one, and
/// a delivery to a name that resolves to one is refused at delivery.
#[tokio::test]
async fn private_addresses_need_the_operators_leave() {
    let Some(python) = needs("FERRY_TEST_PYTHON") else { return };
    let receiver = Receiver::start(&python);
    let server = Server::start_with(Options::default());
    for url in ["http://127.0.0.1:9/hooks", "http://10.0.0.7/hooks", "http://[::1]/hooks", "http://169.254.169.254/"] {
        let output = server.admin(&["webhook", "add", "--org", "default", url]);
        assert!(!output.status.success(), "{url} was taken");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--webhook-allow-private"), "{stderr}");
    }
    let output = server.admin(&["webhook", "add", "--org", "default", "ftp://example.com/x"]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("http:// or https://"));

    // A name is checked where it is resolved, at each delivery.
    let named = format!("http://localhost:{}/hooks", receiver.port);
    let (_, secret) = add_webhook(&server, &named, None);
    receiver.set("secret", &secret);
    server.client().simple_upload("probe.txt", b"x".to_vec(), Some("text/plain")).await.assert_ok();
    server.log_line(&["webhook attempt", "loopback, private or reserved"]).await;
    assert_eq!(receiver.requests(), Vec::<Value>::new());
}

/// The endpoints an org has, and never their secrets.
#[tokio::test]
async fn endpoints_are_listed_without_secrets_and_removed() {
    let server = Server::start_with(webhook_options(&[]));
    let (id, secret) = add_webhook(&server, "https://hooks.example.com/ferry", Some("file.registered,file.deleted"));
    let list = String::from_utf8(server.admin(&["webhook", "list", "--org", "default"]).stdout).unwrap();
    assert!(list.contains(&id) && list.contains("file.registered,file.deleted"), "{list}");
    assert!(!list.contains(&secret[6..]), "the secret is listed");
    let output = server.admin(&["webhook", "add", "--org", "default", "https://x.example/", "--events", "file.moved"]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("not an event type"));
    assert!(server.admin(&["webhook", "remove", &id]).status.success());
    let list = String::from_utf8(server.admin(&["webhook", "list", "--org", "default"]).stdout).unwrap();
    assert!(!list.contains(&id), "{list}");
    assert!(!server.admin(&["webhook", "remove", &id]).status.success());
}
