//! Starts the real `ferry` binary on port 0 in a temp dir and talks to it
//! over HTTP, as a client would.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ferry_core::api_key::ApiKey;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Digest;

pub const MIB: usize = 1024 * 1024;
/// The smallest part size the server accepts; keeps multi-part tests small.
pub const PART: usize = 5 * MIB;

pub struct Server {
    /// One node, or two sharing one database and bucket (the scale-out
    /// layout); node 0 is the one tests address when they name one.
    nodes: Vec<Node>,
    pub url: String,
    pub key: String,
    pub dir: PathBuf,
    layout: Layout,
    /// The PostgreSQL database, in the layouts that have one.
    database_url: Option<String>,
    /// The bucket and key prefix, in the scale-out layout.
    bucket: Option<Bucket>,
    /// Keeps the temp dir alive for servers that own it.
    _temp: Option<tempfile::TempDir>,
    stdout: Vec<String>,
}

struct Node {
    child: Child,
    url: String,
    data_dir: PathBuf,
    log: PathBuf,
    alive: bool,
}

/// Where a test server keeps its metadata and bytes. The whole API suite
/// runs once per layout; `FERRY_TEST_LAYOUT` (set by scripts/test) picks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// SQLite and local disk in the data dir: what `ferry serve` does alone.
    Embedded,
    /// PostgreSQL (the one scripts/test starts) and local disk.
    Postgres,
    /// PostgreSQL and the Garage bucket scripts/test starts, behind two
    /// ferry nodes; the client alternates between them.
    ScaleOut,
}

/// What a test needs of a layout, where the contract lets layouts differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Part PUTs answered by ferry. With an S3-compatible store the part
    /// URL is the store's own, "and the store's rules apply" (files-api §3.3).
    FerryTakesParts,
    /// `integrity_algorithm: crc32c`: the store checks the whole-file CRC32C.
    StoreVerifiesCrc32c,
}

impl Layout {
    pub fn current() -> Self {
        match std::env::var("FERRY_TEST_LAYOUT").as_deref() {
            Err(_) | Ok("embedded") => Self::Embedded,
            Ok("postgres") => Self::Postgres,
            Ok("scaleout") => Self::ScaleOut,
            Ok(other) => panic!("FERRY_TEST_LAYOUT `{other}` is not one of embedded, postgres, scaleout"),
        }
    }

    /// Whether this layout lacks what a test needs; says so if it does, so
    /// that a test that does not apply is never passed over in silence.
    pub fn lacks(self, need: Needs) -> bool {
        let lacks = self == Self::ScaleOut;
        if lacks {
            let test = std::thread::current().name().unwrap_or("a test").to_owned();
            let line = format!("{test}: not run in the {self:?} layout, which lacks {need:?}");
            eprintln!("{line} (the contract gives this to the store)");
            // libtest hides a passing test's output: scripts/test lists these.
            if let Some(path) = std::env::var_os("FERRY_TEST_NOT_APPLICABLE") {
                use std::io::Write;
                let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
                writeln!(file, "{line}").unwrap();
            }
        }
        lacks
    }
}

pub struct Options {
    pub args: Vec<String>,
    pub bootstrap_key: Option<String>,
    pub layout: Layout,
    /// The scale-out layout's PostgreSQL database, if not one of its own
    /// in the PostgreSQL scripts/test starts.
    pub database_url: Option<String>,
    /// The scale-out layout's store, if not the Garage scripts/test starts.
    pub s3: Option<S3Store>,
    /// Runs the test build with failpoints ([`failpoint_binary`]).
    pub failpoints: bool,
    /// More environment for the server processes (`FAILPOINTS`, say).
    pub env: Vec<(String, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            args: vec!["--part-size".into(), PART.to_string()],
            bootstrap_key: Some(ApiKey::generate().to_string()),
            layout: Layout::current(),
            database_url: None,
            s3: None,
            failpoints: false,
            env: Vec::new(),
        }
    }
}

/// Whether the suites that need what scripts/test provides must run
/// (`FERRY_TEST_INTEGRATION=1`, which scripts/test sets): then a missing
/// service fails the test; without it such a test says it is skipped.
pub fn integration_required() -> bool {
    std::env::var("FERRY_TEST_INTEGRATION").is_ok_and(|v| v == "1")
}

/// A service's setting from the environment, which scripts/test provides.
/// Without it the test is skipped, saying so, unless the run requires
/// every service ([`integration_required`]): then it fails.
pub fn needs(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(value) => Some(value),
        Err(_) if integration_required() => panic!("{name} is not set: run ./scripts/test, which provides it"),
        Err(_) => {
            skipped(name);
            None
        }
    }
}

/// Whether a test that needs what only scripts/test arranges (root for a
/// tmpfs, curl and jq, a PostgreSQL of its own) may run; says so if not.
pub fn needs_integration(what: &str) -> bool {
    integration_required() || {
        skipped(what);
        false
    }
}

fn skipped(what: &str) {
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    eprintln!("{test}: skipped: it needs {what} (./scripts/test provides it and sets FERRY_TEST_INTEGRATION=1)");
}

/// The server built with failpoints (`cargo build -p ferry --features
/// failpoints`, copied aside by scripts/test as `FERRY_FAILPOINT_BIN`).
/// `None` (the test is skipped, saying so) when it is not there and the
/// run does not require it.
pub fn failpoint_binary() -> Option<PathBuf> {
    needs("FERRY_FAILPOINT_BIN").map(PathBuf::from)
}

impl Options {
    /// Options for the failpoint build; `None` when it is not available.
    pub fn with_failpoints() -> Option<Self> {
        failpoint_binary()?;
        Some(Self { failpoints: true, ..Self::default() })
    }
}

/// The PostgreSQL database of the server whose data dir is `dir`: one per
/// test server, the same one again when that server restarts.
fn postgres_database_for(dir: &Path) -> String {
    let admin = env("FERRY_TEST_POSTGRES_URL");
    let name = format!("api_{}", dir_hash(dir));
    let exists = psql(&admin, &format!("SELECT 1 FROM pg_database WHERE datname = '{name}'"));
    if exists.trim().is_empty() {
        psql(&admin, &format!("CREATE DATABASE {name}"));
    }
    format!("{}/{name}", admin.rsplit_once('/').unwrap().0)
}

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run ./scripts/test, which starts what tests need"))
}

fn dir_hash(dir: &Path) -> String {
    hex(&sha256(dir.as_os_str().as_encoded_bytes())[..10])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs one SQL command with psql and returns its unaligned output.
pub fn psql(url: &str, sql: &str) -> String {
    let output = Command::new("psql").args([url, "-XtAq", "-v", "ON_ERROR_STOP=1", "-c", sql]).output().unwrap();
    assert!(output.status.success(), "psql: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

pub fn ferry() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
}

/// An S3-compatible bucket and the credentials to reach it.
#[derive(Debug, Clone)]
pub struct S3Store {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl S3Store {
    /// The bucket of the Garage scripts/test starts.
    pub fn from_env() -> Self {
        Self {
            endpoint: env("FERRY_TEST_S3_ENDPOINT"),
            region: env("FERRY_TEST_S3_REGION"),
            bucket: env("FERRY_TEST_S3_BUCKET"),
            access_key_id: env("FERRY_TEST_S3_ACCESS_KEY_ID"),
            secret_access_key: env("FERRY_TEST_S3_SECRET_ACCESS_KEY"),
        }
    }
}

/// A test server's part of a bucket: its own key prefix.
struct Bucket {
    store: S3Store,
    bucket: rusty_s3::Bucket,
    credentials: rusty_s3::Credentials,
    prefix: String,
}

impl Bucket {
    fn for_dir(dir: &Path, store: S3Store) -> Self {
        let endpoint = store.endpoint.parse().unwrap();
        let bucket =
            rusty_s3::Bucket::new(endpoint, rusty_s3::UrlStyle::Path, store.bucket.clone(), store.region.clone())
                .unwrap();
        let credentials = rusty_s3::Credentials::new(&store.access_key_id, &store.secret_access_key);
        Self { store, bucket, credentials, prefix: format!("api-{}/", dir_hash(dir)) }
    }

    /// Points a `ferry serve` or `ferry admin` command at this prefix.
    fn configure(&self, command: &mut Command) {
        let store = &self.store;
        command.args(["--storage", &format!("s3://{}/{}", store.bucket, self.prefix)]);
        command.envs([
            ("FERRY_S3_ENDPOINT", &store.endpoint),
            ("FERRY_S3_REGION", &store.region),
            ("FERRY_S3_ACCESS_KEY_ID", &store.access_key_id),
            ("FERRY_S3_SECRET_ACCESS_KEY", &store.secret_access_key),
        ]);
    }

    /// The last path components of the keys under `prefix`: objects, or
    /// the keys of multipart uploads in progress.
    async fn list(&self, what: &str) -> Vec<String> {
        use rusty_s3::S3Action;
        let prefix = format!("{}files/", self.prefix);
        let url = if what == "objects" {
            let mut action = self.bucket.list_objects_v2(Some(&self.credentials));
            action.with_prefix(prefix.clone());
            action.sign(std::time::Duration::from_secs(60))
        } else {
            let ttl = std::time::Duration::from_secs(60);
            ferry_blob::s3::presign_list_multipart_uploads(&self.bucket, &self.credentials, &prefix, None, ttl)
        };
        let body = http().get(url).send().await.unwrap().text().await.unwrap();
        let mut names: Vec<String> = body
            .split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split("</Key>").next())
            // Object listings come URL-encoded.
            .map(|key| percent_encoding::percent_decode_str(key).decode_utf8_lossy().into_owned())
            .map(|key| key.rsplit('/').next().unwrap_or(&key).to_owned())
            .collect();
        names.sort();
        names
    }
}

impl Server {
    pub fn start() -> Self {
        Self::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> Self {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().to_path_buf();
        Self::start_in(&dir, options, Some(temp))
    }

    /// Starts a server on an existing dir (a restart: the same data dirs,
    /// database and bucket prefix as before).
    pub fn start_in(dir: &Path, mut options: Options, temp: Option<tempfile::TempDir>) -> Self {
        let layout = options.layout;
        let database_url = (layout != Layout::Embedded)
            .then(|| options.database_url.take().unwrap_or_else(|| postgres_database_for(dir)));
        if let Some(url) = &database_url {
            options.args.extend(["--database-url".to_owned(), url.clone()]);
        }
        let bucket = (layout == Layout::ScaleOut)
            .then(|| Bucket::for_dir(dir, options.s3.take().unwrap_or_else(S3Store::from_env)));
        let node_count = if layout == Layout::ScaleOut { 2 } else { 1 };
        let mut stdout = Vec::new();
        let nodes: Vec<Node> = (0..node_count)
            .map(|i| {
                let suffix = if i == 0 { String::new() } else { format!("-{i}") };
                let (data_dir, log) = (dir.join(format!("data{suffix}")), dir.join(format!("server{suffix}.log")));
                // An explicit --listen is node 0's; others take any port.
                let mut args = options.args.clone();
                if i > 0
                    && let Some(at) = args.iter().position(|a| a == "--listen")
                {
                    args.drain(at..at + 2);
                }
                let (node, printed) = Node::start(&data_dir, &log, &args, &options, bucket.as_ref());
                if i == 0 {
                    stdout = printed;
                }
                node
            })
            .collect();
        let key = options
            .bootstrap_key
            .or_else(|| stdout.iter().find_map(|l| l.trim().strip_prefix("fry_").map(|k| format!("fry_{k}"))))
            .unwrap_or_default();
        let url = nodes[0].url.clone();
        Server { nodes, url, key, dir: dir.to_path_buf(), layout, database_url, bucket, _temp: temp, stdout }
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    pub fn pid(&self) -> u32 {
        self.nodes[0].child.id()
    }

    /// A line of node 0's `/proc` status, in KiB (`VmRSS`, `VmHWM`).
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with(field)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Sends node 0 SIGTERM, as an operator stopping the service would.
    pub fn terminate(&self) {
        assert!(Command::new("kill").arg(self.pid().to_string()).status().unwrap().success());
    }

    /// Waits for node 0 to exit; returns whether it exited cleanly.
    pub fn wait(&mut self) -> bool {
        self.nodes[0].child.wait().unwrap().success()
    }

    /// What the blob store holds: `files` (registered bytes, by file uid)
    /// or `staging` (uploads in progress: staging files by upload id on
    /// local disk, multipart uploads by file uid in a bucket).
    pub async fn blobs(&self, kind: &str) -> Vec<String> {
        if let Some(bucket) = &self.bucket {
            return bucket.list(if kind == "files" { "objects" } else { "uploads" }).await;
        }
        let mut names: Vec<String> = std::fs::read_dir(self.data_dir().join("blobs").join(kind))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    /// What node 0 printed on stdout before its listening line.
    pub fn stdout(&self) -> &[String] {
        &self.stdout
    }

    /// Node 0's data dir.
    pub fn data_dir(&self) -> PathBuf {
        self.nodes[0].data_dir.clone()
    }

    /// Every node's log.
    pub fn log(&self) -> String {
        self.nodes.iter().map(|n| std::fs::read_to_string(&n.log).unwrap_or_default()).collect()
    }

    /// The first log line holding every one of `needles`, once it is there:
    /// a request's line is written when its response body is done, which
    /// may be just after the client has read it.
    pub async fn log_line(&self, needles: &[&str]) -> String {
        let find = || self.log().lines().find(|l| needles.iter().all(|n| l.contains(n))).map(str::to_owned);
        eventually(&format!("the log has a line with {needles:?}"), || std::future::ready(find().is_some())).await;
        find().unwrap()
    }

    /// SIGKILL to every node: no chance to clean up, as in a crash.
    pub fn kill(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill_node(i);
        }
    }

    /// SIGKILL to one node; clients stop sending to it.
    pub fn kill_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if node.alive {
            node.child.kill().unwrap();
            node.child.wait().unwrap();
            node.alive = false;
        }
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Every live node's `/metrics`, one after the other.
    pub async fn metrics(&self) -> String {
        let mut text = String::new();
        for node in self.nodes.iter().filter(|n| n.alive) {
            let reply = reply(http().get(format!("{}/metrics", node.url)).send().await.unwrap()).await;
            text.push_str(&String::from_utf8(reply.body).unwrap());
        }
        text
    }

    /// Configures failpoint `name` on node `i` (the failpoint build only),
    /// with the `fail` crate's action text: `1*return(pause)`, `return(crash)`.
    pub async fn failpoint(&self, i: usize, name: &str, actions: &str) {
        let url = format!("{}/_failpoints/{name}", self.nodes[i].url);
        let reply = reply(http().put(url).body(actions.to_owned()).send().await.unwrap()).await;
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    }

    /// Waits until a request is held at failpoint `name` on node `i`.
    pub async fn held(&self, i: usize, name: &str) {
        let url = format!("{}/_failpoints/{name}/held", self.nodes[i].url);
        let reply = reply(http().get(url).send().await.unwrap()).await;
        assert_eq!(reply.status, 200, "no request reached failpoint {name}");
    }

    /// Turns failpoint `name` off on node `i` and lets held requests go on.
    pub async fn release(&self, i: usize, name: &str) {
        let url = format!("{}/_failpoints/{name}/release", self.nodes[i].url);
        assert_eq!(http().post(url).send().await.unwrap().status(), 200);
    }

    /// Waits for node `i` to die of a `crash` failpoint; marks it dead.
    pub fn wait_crashed(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let status = node.child.wait().unwrap();
        assert!(!status.success(), "node {i} exited cleanly instead of crashing");
        node.alive = false;
    }

    /// The port node 0 listens on.
    pub fn port(&self) -> u16 {
        self.url.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// Takes the temp dir away from this server so it outlives it.
    pub fn take_dir(&mut self) -> Option<tempfile::TempDir> {
        self._temp.take()
    }

    pub fn admin(&self, args: &[&str]) -> std::process::Output {
        let mut command = ferry();
        command.arg("admin").arg("--data-dir").arg(self.data_dir());
        if let Some(url) = &self.database_url {
            command.args(["--database-url", url]);
        }
        command.args(args).output().unwrap()
    }

    /// `ferry admin check` on this server's stores: (exit success, stdout).
    pub fn check(&self) -> (bool, String) {
        let mut command = ferry();
        command.arg("admin").arg("--data-dir").arg(self.data_dir());
        if let Some(url) = &self.database_url {
            command.args(["--database-url", url]);
        }
        command.arg("check");
        if let Some(bucket) = &self.bucket {
            bucket.configure(&mut command);
        }
        let output = command.output().unwrap();
        (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Something that changes whenever the metadata store is written: the
    /// database files for SQLite; every row version (ctid, xmin) for
    /// PostgreSQL, where even an update to the same value makes a new one.
    pub fn metadata_fingerprint(&self) -> Vec<u8> {
        match &self.database_url {
            None => self.stored_metadata(),
            Some(url) => {
                let tables = ["orgs", "api_keys", "uploads", "upload_parts", "checkpoints", "files", "blob_deletions"];
                let sql = tables
                    .map(|t| format!("(SELECT count(*) || ':' || coalesce(string_agg(ctid::text || xmin::text, ','), '') FROM {t})"))
                    .join(" || '|' || ");
                psql(url, &format!("SELECT {sql}")).into_bytes()
            }
        }
    }

    /// Everything the metadata store holds, as bytes: the SQLite files, or
    /// a data dump of the PostgreSQL database.
    pub fn stored_metadata(&self) -> Vec<u8> {
        match &self.database_url {
            None => ["ferry.db", "ferry.db-wal"]
                .iter()
                .flat_map(|name| std::fs::read(self.data_dir().join(name)).unwrap_or_default())
                .collect(),
            Some(url) => {
                let output = Command::new("pg_dump").args(["--data-only", url]).output().unwrap();
                assert!(output.status.success(), "pg_dump: {}", String::from_utf8_lossy(&output.stderr));
                output.stdout
            }
        }
    }

    /// A client of the org `default`, alternating between the live nodes.
    pub fn client(&self) -> Client {
        let urls: Vec<String> = self.nodes.iter().filter(|n| n.alive).map(|n| n.url.clone()).collect();
        Client { http: http(), url: urls[0].clone(), urls: Arc::new(urls), next: Arc::default(), key: self.key.clone() }
    }

    /// A client of the org `default` that talks to node `i` alone.
    pub fn client_of(&self, i: usize) -> Client {
        let url = self.nodes[i].url.clone();
        Client { url: url.clone(), urls: Arc::new(vec![url]), ..self.client() }
    }

    /// A client of the org `default` over `http` (one that trusts a
    /// test's own CA, say).
    pub fn client_over(&self, http: reqwest::Client) -> Client {
        Client { http, ..self.client() }
    }

    pub fn client_with_key(&self, key: &str) -> Client {
        Client { key: key.into(), ..self.client() }
    }

    /// Creates another org with its own key, through the admin command.
    pub fn new_org(&self, name: &str) -> Client {
        assert!(self.admin(&["org", "create", name]).status.success());
        let out = self.admin(&["key", "create", "--org", name]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        self.client_with_key(String::from_utf8(out.stdout).unwrap().trim())
    }
}

impl Node {
    fn start(
        data_dir: &Path,
        log_path: &Path,
        args: &[String],
        options: &Options,
        bucket: Option<&Bucket>,
    ) -> (Self, Vec<String>) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log_path).unwrap();
        let mut command = match options.failpoints {
            true => Command::new(failpoint_binary().expect("checked by Options::with_failpoints")),
            false => ferry(),
        };
        command.envs(options.env.iter().map(|(k, v)| (k, v)));
        command.arg("serve");
        if !args.iter().any(|a| a == "--listen") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        command
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .env_remove("FERRY_BOOTSTRAP_KEY")
            .stdout(Stdio::piped())
            .stderr(log);
        if let Some(bucket) = bucket {
            bucket.configure(&mut command);
        }
        if let Some(key) = &options.bootstrap_key {
            command.env("FERRY_BOOTSTRAP_KEY", key);
        }
        let mut child = command.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut stdout = Vec::new();
        let url = loop {
            let Some(Ok(line)) = lines.next() else {
                let log = std::fs::read_to_string(log_path).unwrap_or_default();
                panic!("the server exited before listening; stdout {stdout:?}; log:\n{log}");
            };
            if let Some(rest) = line.strip_prefix("ferry listening on ") {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
            stdout.push(line);
        };
        // Drain stdout so that a later line can never block the server.
        std::thread::spawn(move || for _ in lines {});
        let node = Node { child, url, data_dir: data_dir.to_owned(), log: log_path.to_owned(), alive: true };
        (node, stdout)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
        let log = self.log();
        // A failing test shows what went on inside the server too: the
        // requests that led up to it, not only the warnings (a failure
        // seen once in a full run may not come back).
        if std::thread::panicking() {
            let lines: Vec<&str> = log.lines().collect();
            for line in &lines[lines.len().saturating_sub(300)..] {
                eprintln!("server: {line}");
            }
            return;
        }
        // Every test server's log, so the logs of the whole run, must hold
        // no API key, no URL signature and no store secret.
        let mut secrets = vec!["fry_".to_owned(), "signature=".to_owned(), "X-Amz-Signature".to_owned()];
        secrets.extend(std::env::var("FERRY_TEST_S3_SECRET_ACCESS_KEY").ok().filter(|s| !s.is_empty()));
        secrets.extend(self.bucket.as_ref().map(|b| b.store.secret_access_key.clone()));
        for secret in secrets {
            assert!(!log.contains(&secret), "the server's log holds `{secret}`");
        }
    }
}

pub fn http() -> reqwest::Client {
    // The workspace's reqwest is built without a TLS provider of its own
    // (the client installs ring), so tests install it too.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().timeout(std::time::Duration::from_secs(120)).build().unwrap()
}

/// A response as a test looks at it.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The codes of an error envelope, checking its shape on the way.
    pub fn error_codes(&self) -> Vec<String> {
        let json = self.json();
        let errors = json["errors"].as_array().unwrap_or_else(|| panic!("no envelope: {json}"));
        assert!(!errors.is_empty());
        errors
            .iter()
            .map(|e| {
                assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
                assert!(e["suggestion"].is_string(), "{e}");
                assert!(e["error_uid"].as_str().is_some_and(|u| u.starts_with("err-")), "{e}");
                e["code"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "{}", String::from_utf8_lossy(&self.body));
        assert_eq!(self.error_codes(), vec![code.to_owned()]);
    }

    #[track_caller]
    pub fn assert_ok(&self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "{}", String::from_utf8_lossy(&self.body));
        self.json()
    }
}

pub async fn reply(response: reqwest::Response) -> Reply {
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap().to_vec();
    assert_no_debug_text(&body);
    Reply { status, headers, body }
}

/// Every error the suite provokes passes here: its messages must read as
/// sentences, not as Rust's debug output of the server's values.
fn assert_no_debug_text(body: &[u8]) {
    let Ok(json) = serde_json::from_slice::<Value>(body) else { return };
    let Some(errors) = json["errors"].as_array() else { return };
    for error in errors {
        for field in ["message", "suggestion"] {
            let text = error[field].as_str().unwrap_or_default();
            if let Some(found) = debug_text(text) {
                panic!("the error {field} holds Rust debug text `{found}`: {text}");
            }
        }
    }
}

/// The first piece of `text` that looks like Rust debug formatting:
/// `Some(`, `None`, `Ok(`, `Err(` as words, or a struct's `Name { field: `.
pub fn debug_text(text: &str) -> Option<&str> {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    for word in ["Some(", "None", "Ok(", "Err("] {
        for (at, _) in text.match_indices(word) {
            let before = text[..at].chars().next_back();
            let after = text[at + word.len()..].chars().next();
            if !before.is_some_and(is_word) && (word.ends_with('(') || !after.is_some_and(is_word)) {
                return Some(word);
            }
        }
    }
    for (at, _) in text.match_indices(" { ") {
        let name_ends_here = text[..at].chars().next_back().is_some_and(is_word);
        let rest = &text[at + 3..];
        let field = rest.split(':').next().unwrap_or_default();
        if name_ends_here && !field.is_empty() && field.chars().all(is_word) && rest[field.len()..].starts_with(": ") {
            return Some(&text[at..at + 3 + field.len() + 2]);
        }
    }
    None
}

/// An API client holding one org's key. With several nodes it sends each
/// call to the next one in turn, as a load balancer would.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    /// Node 0, for tests that build their own requests.
    pub url: String,
    urls: Arc<Vec<String>>,
    next: Arc<AtomicUsize>,
    pub key: String,
}

impl Client {
    /// A client of the server at `url` alone (a proxy, a container), over `http`.
    pub fn at(url: &str, key: &str, http: reqwest::Client) -> Self {
        let url = url.to_owned();
        Client { http, urls: Arc::new(vec![url.clone()]), url, next: Arc::default(), key: key.to_owned() }
    }

    /// The node the next call goes to.
    pub fn pick(&self) -> &str {
        &self.urls[self.next.fetch_add(1, Ordering::Relaxed) % self.urls.len()]
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut request = self.http.request(method, format!("{}{path}", self.pick())).bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        reply(request.send().await.unwrap()).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn initiate(&self, name: &str, num_bytes: usize) -> Reply {
        self.post(
            "/v0.5/files/uploads/initiate",
            json!({"filename": name, "file_type": "application/octet-stream", "num_bytes": num_bytes}),
        )
        .await
    }

    /// An initiate with `resume_if_started`, as a client coming back after
    /// a crash sends it.
    pub async fn resume(&self, name: &str, num_bytes: usize) -> Reply {
        let body = json!({"filename": name, "file_type": "application/octet-stream",
                          "num_bytes": num_bytes, "resume_if_started": true});
        self.post("/v0.5/files/uploads/initiate", body).await
    }

    pub async fn start_upload(&self, name: &str, num_bytes: usize) -> Upload {
        Upload(self.initiate(name, num_bytes).await.assert_ok())
    }

    pub async fn part_urls(&self, upload_id: &str, part_numbers: Value) -> Reply {
        self.post(&format!("/v0.5/files/uploads/{upload_id}/parts/urls"), json!({"part_numbers": part_numbers})).await
    }

    pub async fn checkpoint(&self, upload_id: &str, parts: Value) -> Reply {
        self.post(&format!("/v0.5/files/uploads/{upload_id}/parts/checkpoint"), json!({"parts": parts})).await
    }

    pub async fn complete(&self, upload_id: &str, parts: Value) -> Reply {
        self.post(&format!("/v0.5/files/uploads/{upload_id}/complete"), json!({"parts": parts})).await
    }

    pub async fn complete_with_checksum(&self, upload_id: &str, parts: Value, checksum: &str) -> Reply {
        let body = json!({"parts": parts, "integrity_checksum": checksum});
        self.post(&format!("/v0.5/files/uploads/{upload_id}/complete"), body).await
    }

    /// Completes with the whole file's CRC32C when the server's store
    /// verifies one (`integrity_algorithm: crc32c`), as a careful client does.
    pub async fn complete_checked(&self, upload: &Upload, parts: Value, bytes: &[u8]) -> Reply {
        if upload.0["integrity_algorithm"] == "crc32c" {
            self.complete_with_checksum(upload.id(), parts, &crc32c_base64(bytes)).await
        } else {
            self.complete(upload.id(), parts).await
        }
    }

    pub async fn abort(&self, upload_id: &str) -> Reply {
        self.post(&format!("/v0.5/files/uploads/{upload_id}/abort"), json!({})).await
    }

    pub async fn download(&self, file_id: &str) -> Reply {
        self.call(Method::GET, &format!("/v0.5/files/download/{file_id}"), None).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }

    /// GET with extra headers.
    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut request = self.http.get(format!("{}{path}", self.pick())).bearer_auth(&self.key);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        reply(request.send().await.unwrap()).await
    }

    /// A simple upload (`POST /v0.5/files`) of `bytes` as one multipart part.
    pub async fn simple_upload(&self, file_name: &str, bytes: Vec<u8>, content_type: Option<&str>) -> Reply {
        self.multipart_upload("/v0.5/files", file_name, bytes, content_type).await
    }

    pub async fn multipart_upload(
        &self,
        path: &str,
        file_name: &str,
        bytes: Vec<u8>,
        content_type: Option<&str>,
    ) -> Reply {
        let mut part = reqwest::multipart::Part::bytes(bytes).file_name(file_name.to_owned());
        if let Some(content_type) = content_type {
            part = part.mime_str(content_type).unwrap();
        }
        let form = reqwest::multipart::Form::new().text("note", "ignored").part("payload", part);
        let request = self.http.post(format!("{}{path}", self.pick())).bearer_auth(&self.key).multipart(form);
        reply(request.send().await.unwrap()).await
    }

    pub async fn metadata(&self, file_id: &str) -> Reply {
        self.get(&format!("/v0.5/files/metadata/{file_id}")).await
    }

    pub async fn delete(&self, file_id: &str) -> Reply {
        self.call(Method::DELETE, &format!("/v0.5/files/delete/{file_id}"), None).await
    }

    /// Uploads `bytes` as `name` through the whole workflow.
    pub async fn upload(&self, name: &str, bytes: &[u8]) -> Value {
        let upload = self.start_upload(name, bytes.len()).await;
        let tokens = upload.put_all(bytes).await;
        self.complete(upload.id(), tokens).await.assert_ok()
    }
}

/// An initiate response.
pub struct Upload(pub Value);

impl Upload {
    pub fn id(&self) -> &str {
        self.0["upload_id"].as_str().unwrap()
    }

    pub fn parts(&self) -> &Vec<Value> {
        self.0["parts"].as_array().unwrap()
    }

    pub fn url(&self, part_number: u64) -> &str {
        let part = self.parts().iter().find(|p| p["part_number"] == part_number).unwrap();
        part["url"].as_str().unwrap()
    }

    /// PUTs every part listed in this response; returns their tokens.
    pub async fn put_all(&self, bytes: &[u8]) -> Value {
        let mut tokens = Vec::new();
        for part in self.parts() {
            let n = part["part_number"].as_u64().unwrap();
            tokens.push(json!({"part_number": n, "part_token": put_part(part, bytes).await}));
        }
        Value::Array(tokens)
    }
}

/// The slice of `bytes` a part descriptor covers.
pub fn slice<'a>(part: &Value, bytes: &'a [u8]) -> &'a [u8] {
    let offset = part["offset"].as_u64().unwrap() as usize;
    let length = part["length"].as_u64().unwrap() as usize;
    &bytes[offset..offset + length]
}

pub async fn put(url: &str, body: Vec<u8>) -> Reply {
    reply(http().put(url).body(body).send().await.unwrap()).await
}

/// PUTs a part's bytes and returns its ETag.
pub async fn put_part(part: &Value, bytes: &[u8]) -> String {
    let reply = put(part["url"].as_str().unwrap(), slice(part, bytes).to_vec()).await;
    reply.assert_ok_empty();
    reply.header("etag").unwrap().to_owned()
}

impl Reply {
    /// 200, whatever the body (health answers `ok`).
    #[track_caller]
    pub fn assert_ok_empty_or_text(&self) {
        assert_eq!(self.status, StatusCode::OK, "{}", String::from_utf8_lossy(&self.body));
    }

    #[track_caller]
    pub fn assert_ok_empty(&self) {
        assert_eq!(self.status, StatusCode::OK, "{}", String::from_utf8_lossy(&self.body));
        assert!(self.body.is_empty());
    }
}

/// Deterministic bytes that differ for each seed.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

pub fn sha256(bytes: &[u8]) -> Vec<u8> {
    sha2::Sha256::digest(bytes).to_vec()
}

pub fn crc32c_base64(bytes: &[u8]) -> String {
    ferry_core::checksum::Crc32c::of(bytes).to_base64()
}

/// Polls `condition` until it holds, for at most 30 seconds: for effects of
/// background work (the janitor, extraction) whose moment is not ours.
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !condition().await {
        assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Options for a server whose janitor works every second with no grace.
pub fn eager_janitor() -> Options {
    let mut options = Options::default();
    options.args.extend(["--janitor-interval", "1", "--deletion-grace", "0"].map(String::from));
    options
}

/// A `ferry` client command with its connection and journal set up.
pub fn cli(server: &Server, state: &Path, args: &[&str]) -> Command {
    let mut command = ferry();
    command
        .args(args)
        .env("FERRY_URL", &server.url)
        .env("FERRY_API_KEY", &server.key)
        .env("FERRY_STATE_DIR", state)
        .stdin(Stdio::null());
    command
}

/// The server's count of part PUTs it answered 200.
pub async fn parts_stored(server: &Server) -> u64 {
    let text = String::from_utf8(reply(http().get(format!("{}/metrics", server.url)).send().await.unwrap()).await.body)
        .unwrap();
    let series = r#"ferry_http_requests_total{method="PUT",route="/parts/{upload_id}/{part_number}",status="200"}"#;
    text.lines().find_map(|l| l.strip_prefix(series)).map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

/// A CA of a test's own and a certificate it signed for 127.0.0.1 and
/// localhost, made with openssl.
pub struct TestCertificate {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCertificate {
    pub fn make(dir: &Path, name: &str) -> Self {
        let path = |suffix: &str| dir.join(format!("{name}-{suffix}"));
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl").args(args).current_dir(dir).output().expect("running openssl");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        let (ca, ca_key, cert, key, csr, ext) =
            (path("ca.pem"), path("ca.key"), path("cert.pem"), path("key.pem"), path("cert.csr"), path("ext.cnf"));
        let s = |p: &PathBuf| p.to_str().unwrap().to_owned();
        let subject = format!("/CN={name} test CA");
        let ca_out = ["-keyout", &s(&ca_key), "-out", &s(&ca), "-days", "2", "-subj", &subject];
        openssl(&[&["req", "-x509"][..], &ec, &ca_out].concat());
        openssl(&[&["req"][..], &ec, &["-keyout", &s(&key), "-out", &s(&csr), "-subj", "/CN=localhost"]].concat());
        std::fs::write(
            &ext,
            "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            &s(&csr),
            "-CA",
            &s(&ca),
            "-CAkey",
            &s(&ca_key),
            "-CAcreateserial",
            "-out",
            &s(&cert),
            "-days",
            "2",
            "-extfile",
            &s(&ext),
        ]);
        Self { ca, cert, key }
    }

    /// An HTTP client that trusts this CA and nothing else.
    pub fn client(&self) -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca = reqwest::Certificate::from_pem(&std::fs::read(&self.ca).unwrap()).unwrap();
        reqwest::Client::builder().tls_certs_only([ca]).timeout(std::time::Duration::from_secs(120)).build().unwrap()
    }
}
