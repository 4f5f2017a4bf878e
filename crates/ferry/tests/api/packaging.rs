//! What an operator installs, each tested for real: ferry behind Debian's
//! nginx as `deploy/nginx.conf` sets it up, and the image of
//! `deploy/Containerfile` run by podman.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::clients::stage_with;
use crate::harness::*;

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy");

/// A port no one listens on right now, for the programs that cannot be
/// told to take port 0 and say which they got (nginx, a container).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until something accepts connections on `port`, or `process` gives up.
fn wait_listening(port: u16, mut exited: impl FnMut() -> Option<String>) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Some(why) = exited() {
            return Err(why);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("nothing listened on port {port} within a minute"))
}

/// `text` with `from` replaced, which must be there: a change to the
/// shipped file that the test no longer fits fails loudly.
fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "deploy file no longer holds `{from}`");
    text.replace(from, to)
}

/// Debian's nginx running `deploy/nginx.conf` with a test's certificate,
/// on a port of its own, in front of `upstream`.
struct Nginx {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
}

impl Nginx {
    fn start(upstream: &str, certificate: &TestCertificate) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let site = std::fs::read_to_string(format!("{DEPLOY}/nginx.conf")).unwrap();
        let site = replaced(&site, "server 127.0.0.1:8080;", &format!("server {upstream};"));
        let site = replaced(&site, "listen [::]:443 ssl http2;", "");
        let site = replaced(&site, "/etc/ssl/ferry/cert.pem", certificate.cert.to_str().unwrap());
        let site = replaced(&site, "/etc/ssl/ferry/key.pem", certificate.key.to_str().unwrap());
        let path = |name: &str| dir.path().join(name).display().to_string();
        // What /etc/nginx/nginx.conf holds around the sites, in the test's dir.
        let main = format!(
            "daemon off;\nworker_processes 1;\npid {pid};\nerror_log {error};\nevents {{ worker_connections 256; }}\n\
             http {{\n  log_format parts '$request_method $uri $status';\n  access_log {access} parts;\n  \
             client_body_temp_path {temp}/body;\n  proxy_temp_path {temp}/proxy;\n  fastcgi_temp_path {temp}/fastcgi;\n  \
             uwsgi_temp_path {temp}/uwsgi;\n  scgi_temp_path {temp}/scgi;\n  include {site};\n}}\n",
            pid = path("nginx.pid"),
            error = path("error.log"),
            access = path("access.log"),
            temp = dir.path().display(),
            site = path("site.conf"),
        );
        std::fs::write(dir.path().join("nginx.conf"), main).unwrap();
        // A port taken between our look and nginx's bind is tried again.
        for _ in 0..5 {
            let port = free_port();
            let site = replaced(&site, "listen 443 ssl http2;", &format!("listen 127.0.0.1:{port} ssl http2;"));
            std::fs::write(dir.path().join("site.conf"), site).unwrap();
            let mut child = Command::new("nginx")
                .args(["-e", &path("error.log"), "-p", &dir.path().display().to_string(), "-c", &path("nginx.conf")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("running nginx");
            match wait_listening(port, || child.try_wait().unwrap().map(|s| format!("nginx exited: {s}"))) {
                Ok(()) => return Self { child, url: format!("https://127.0.0.1:{port}"), dir },
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = std::fs::read_to_string(path("error.log")).unwrap_or_default();
                    assert!(log.contains("Address already in use"), "{why}:\n{log}");
                }
            }
        }
        panic!("nginx found no free port in five tries");
    }

    /// The requests nginx passed on: `METHOD PATH STATUS` a line.
    fn requests(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        log.lines().map(str::to_owned).collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The part PUTs nginx passed on and ferry stored (200).
fn proxied_part_puts(nginx: &Nginx) -> u64 {
    nginx.requests().iter().filter(|l| l.starts_with("PUT /parts/") && l.ends_with(" 200")).count() as u64
}

/// Behind nginx terminating TLS, as deploy/nginx.conf has it: the official
/// Python client and `ferry upload` both upload through the proxy, every
/// part URL they get starts with the proxy's https address, and every part
/// ferry stored came through nginx.
#[tokio::test]
async fn behind_nginx_with_tls_clients_upload_and_every_part_url_is_the_proxys() {
    if Layout::current().lacks(Needs::FerryTakesParts) {
        return;
    }
    let Some(python) = needs("FERRY_TEST_ARCHETYPEAI_PYTHON") else { return };
    if !needs_integration("nginx and openssl") {
        return;
    }
    let mut options = Options::default();
    options.args.extend(["--trusted-proxy".into(), "127.0.0.1/32".into()]);
    let server = Server::start_with(options);
    let work = tempfile::tempdir().unwrap();
    let certificate = TestCertificate::make(work.path(), "proxy");
    let nginx = Nginx::start(server.url.trim_start_matches("http://"), &certificate);

    // What a client asks for through the proxy points at the proxy.
    let through = Client::at(&nginx.url, &server.key, certificate.client());
    let upload = through.start_upload("planned.bin", 3 * PART).await;
    for part in upload.parts() {
        let url = part["url"].as_str().unwrap();
        assert!(url.starts_with(&format!("{}/parts/", nginx.url)), "{url}");
    }
    through.abort(upload.id()).await.assert_ok_empty();

    // The official Python client: simple, base64 and direct uploads,
    // cancel, pages, downloads, delete, all through nginx.
    let ca: &Path = &certificate.ca;
    let env = [("REQUESTS_CA_BUNDLE", ca), ("SSL_CERT_FILE", ca)];
    let (ok, out) = stage_with(&python, "rest", &nginx.url, &server.key, work.path(), &env);
    assert!(ok, "{out}");
    let after_python = parts_stored(&server).await;
    assert!(after_python > 5, "the Python client sent {after_python} parts");
    assert_eq!(proxied_part_puts(&nginx), after_python, "a part reached ferry without the proxy");

    // `ferry upload` of a 3-part file, trusting the test's CA.
    let file = work.path().join("through-nginx.bin");
    let data = bytes(2 * PART + 123, 14);
    std::fs::write(&file, &data).unwrap();
    let output = cli(&server, work.path(), &["upload", "--simple-threshold", "1"])
        .arg(&file)
        .env("FERRY_URL", &nginx.url)
        .env("SSL_CERT_FILE", ca)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(parts_stored(&server).await, after_python + 3);
    assert_eq!(proxied_part_puts(&nginx), after_python + 3, "a part reached ferry without the proxy");
    assert_eq!(through.download("through-nginx.bin").await.body, data);
    // A range through the proxy is the same range (nginx does not buffer it).
    let range = through.get_with("/v0.5/files/download/through-nginx.bin", &[("range", "bytes=100-199")]).await;
    assert_eq!(range.status, 206);
    assert_eq!(range.body, &data[100..200]);
}

/// `podman` with the flags this kind of machine needs (the runtime and
/// cgroup manager that work here, explicit limits the runtime cannot raise).
fn podman(args: &[&str]) -> Command {
    let mut command = Command::new("podman");
    command.args(["--cgroup-manager=cgroupfs", "--runtime=runc"]).args(args);
    command
}

fn run_ok(mut command: Command) -> String {
    let output = command.output().unwrap();
    assert!(output.status.success(), "{command:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// One run of the image, in the foreground, its data on `volume`.
struct Container {
    child: Child,
    name: String,
    url: String,
    stdout: Vec<String>,
}

impl Container {
    fn start(image: &str, volume: &str) -> Self {
        let name = format!("ferry-test-{}", ferry_core::ids::UploadId::generate());
        for _ in 0..5 {
            let port = free_port();
            let mut child = podman(&["run", "--rm", "--name", &name, "--network=host"])
                .args(["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=1024:1024"])
                .args(["--volume", &format!("{volume}:/data")])
                .args(["--env", &format!("FERRY_LISTEN=127.0.0.1:{port}"), image])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("running podman");
            let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
            let mut stdout = Vec::new();
            // ferry prints its address once it listens (and the first key before).
            let listening = loop {
                match lines.next() {
                    Some(Ok(line)) if line.starts_with("ferry listening on ") => break true,
                    Some(Ok(line)) => stdout.push(line),
                    _ => break false,
                }
            };
            std::thread::spawn(move || for _ in lines {});
            if listening {
                let stderr = child.stderr.take().unwrap();
                std::thread::spawn(move || for _ in BufReader::new(stderr).lines() {});
                return Self { child, name, url: format!("http://127.0.0.1:{port}"), stdout };
            }
            let mut stderr = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
            let _ = child.wait();
            assert!(stderr.contains("Address already in use"), "the container did not start:\n{stderr}");
        }
        panic!("the container found no free port in five tries");
    }

    /// `podman stop`: SIGTERM, which ferry answers by finishing requests
    /// and exiting 0.
    fn stop(mut self) {
        run_ok(podman(&["stop", "--time", "30", &self.name]));
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the container exited with {status} on SIGTERM");
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = podman(&["kill", &self.name]).output();
            let _ = self.child.wait();
        }
    }
}

/// The image of deploy/Containerfile (built by scripts/test with
/// deploy/build-image): a static binary on `scratch`, not run as root. Its
/// first start prints the key; an upload in parts and a simple one land on
/// the volume; after `podman stop` and a new container on the same volume,
/// the same key downloads the same bytes, and `ferry admin` run inside
/// makes a key that works.
#[tokio::test]
async fn the_container_image_serves_uploads_and_keeps_them_on_its_volume() {
    if Layout::current() != Layout::Embedded {
        // One image, one default layout: nothing here depends on the others.
        return;
    }
    let Some(image) = needs("FERRY_TEST_IMAGE") else { return };
    let inspect = run_ok(podman(&["image", "inspect", "--format", "{{.Config.User}} {{len .RootFS.Layers}}", &image]));
    assert!(inspect.starts_with("65532:65532 "), "the image does not run as its own user: {inspect}");

    let volume = format!("ferry-test-{}", ferry_core::ids::UploadId::generate());
    run_ok(podman(&["volume", "create", &volume]));
    struct Volume(String);
    impl Drop for Volume {
        fn drop(&mut self) {
            let _ = podman(&["volume", "rm", "--force", &self.0]).output();
        }
    }
    let _volume = Volume(volume.clone());

    let container = Container::start(&image, &volume);
    let key = container.stdout.iter().find_map(|l| l.trim().strip_prefix("fry_")).map(|k| format!("fry_{k}"));
    let key = key.unwrap_or_else(|| panic!("no key on the first start: {:?}", container.stdout));
    let client = Client::at(&container.url, &key, http());
    let big = bytes(2 * PART + 77, 21);
    let upload = client.start_upload("in-a-box.bin", big.len()).await;
    assert!(upload.url(0).starts_with(&format!("{}/parts/", container.url)), "{}", upload.url(0));
    let parts = upload.put_all(&big).await;
    client.complete_checked(&upload, parts, &big).await.assert_ok();
    client.simple_upload("note.txt", b"kept on the volume\n".to_vec(), Some("text/plain")).await.assert_ok();
    container.stop();

    let again = Container::start(&image, &volume);
    assert!(!again.stdout.iter().any(|l| l.contains("fry_")), "a second key on restart: {:?}", again.stdout);
    let client = Client::at(&again.url, &client.key, http());
    assert_eq!(client.download("in-a-box.bin").await.body, big);
    assert_eq!(client.download("note.txt").await.body, b"kept on the volume\n");
    assert_eq!(client.get("/v0.5/files/info").await.assert_ok()["num_files"], 2);
    // The admin command runs in the container, on its data.
    let key = run_ok(podman(&["exec", &again.name, "ferry", "admin", "key", "create", "--org", "default"]));
    let other = Client::at(&again.url, key.trim(), http());
    assert_eq!(other.download("note.txt").await.body, b"kept on the volume\n");
    again.stop();
}

/// `ferry admin backup` while the server runs: the copy holds every file
/// and key, leaves the upload in progress out (its client starts again
/// rather than resume into missing bytes), checks clean, and a server
/// started on it serves the same bytes. Outside the embedded layout it
/// says what to use instead.
#[tokio::test]
async fn a_backup_taken_while_serving_restores_to_a_server_with_the_same_files() {
    let server = Server::start();
    let backups = tempfile::tempdir().unwrap();
    let copy = backups.path().join("restored").join("data");
    let copy_text = copy.to_str().unwrap();
    if server.layout() != Layout::Embedded {
        let output = server.admin(&["backup", copy_text]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && stderr.contains("pg_dump"), "{stderr}");
        assert!(!copy.exists(), "a refused backup made its directory");
        return;
    }
    let client = server.client();
    let big = bytes(2 * PART + 9, 31);
    let upload = client.start_upload("big.bin", big.len()).await;
    let parts = upload.put_all(&big).await;
    client.complete_checked(&upload, parts, &big).await.assert_ok();
    client.simple_upload("small.txt", b"small\n".to_vec(), Some("text/plain")).await.assert_ok();
    client.simple_upload("gone.txt", b"deleted before\n".to_vec(), Some("text/plain")).await.assert_ok();
    client.delete("gone.txt").await.assert_ok();
    let unfinished = client.start_upload("unfinished.bin", 2 * PART).await;
    put_part(&unfinished.parts()[0], &bytes(PART, 5)).await;

    let output = server.admin(&["backup", copy_text]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("backed up 2 files") && stdout.contains("1 uploads in progress left out"), "{stdout}");
    let again = server.admin(&["backup", copy_text]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success() && stderr.contains("not an empty directory"), "{stderr}");
    // The server that was copied goes on as before.
    assert_eq!(client.download("big.bin").await.body, big);

    let options = Options { bootstrap_key: None, ..Options::default() };
    let restored = Server::start_in(&backups.path().join("restored"), options, None);
    let restored_client = Client::at(&restored.url, &server.key, http());
    assert_eq!(restored_client.download("big.bin").await.body, big);
    assert_eq!(restored_client.download("small.txt").await.body, b"small\n");
    restored_client.download("gone.txt").await.assert_error(404, "file_not_found");
    let resumed = restored_client.resume("unfinished.bin", 2 * PART).await.assert_ok();
    assert_eq!(resumed["is_resume"], false, "{resumed}");
    let (clean, report) = restored.check();
    assert!(clean, "{report}");
}
