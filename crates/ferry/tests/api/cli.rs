//! The `ferry` client commands against a real server: uploads that survive
//! being killed, expired URLs, a server restart and a changed file, and
//! downloads that resume and verify.

use std::path::Path;
use std::process::{Output, Stdio};

use futures_util::StreamExt;
use serde_json::Value;

use crate::harness::*;

fn json_lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[track_caller]
fn succeeded(output: &Output) {
    assert!(
        output.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[tokio::test]
async fn upload_sends_small_files_whole_and_large_ones_in_parts() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let small = write(work.path(), "small.csv", b"a,b\n1,2\n");
    let large_bytes = bytes(3 * PART + 5, 120);
    let large = write(work.path(), "large.bin", &large_bytes);
    let output = cli(&server, work.path(), &["upload", "--json", "--simple-threshold", "1000"])
        .args([&small, &large])
        .output()
        .unwrap();
    succeeded(&output);
    let results = json_lines(&output);
    assert_eq!(results[0]["method"], "simple");
    assert_eq!((results[1]["method"].as_str(), results[1]["parts_total"].as_u64()), (Some("direct"), Some(4)));
    let client = server.client();
    assert_eq!(client.download("large.bin").await.body, large_bytes);
    assert_eq!(client.metadata("small.csv").await.assert_ok()["file_type"], "text/csv");
    let status = cli(&server, work.path(), &["status"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&status.stdout).trim(), "no interrupted uploads");
}

/// `kill -9` the CLI mid-upload; the next run sends only what is missing,
/// as the server's own counter of stored parts shows.
#[tokio::test]
async fn a_killed_upload_resumes_and_sends_only_the_missing_parts() {
    if Layout::current().lacks(Needs::FerryTakesParts) {
        return;
    }
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let data = bytes(8 * PART, 121);
    let path = write(work.path(), "resume.bin", &data);
    let mut first = cli(&server, work.path(), &["upload", "--quiet", "--parallel", "2", "--limit-rate", "10485760"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually("three parts are stored", || async { parts_stored(&server).await >= 3 }).await;
    first.kill().unwrap();
    first.wait().unwrap();
    let stored_before = parts_stored(&server).await;

    let status = cli(&server, work.path(), &["status", "--json"]).output().unwrap();
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status[0]["parts_total"], 8, "{status}");

    let second = cli(&server, work.path(), &["upload", "--json"]).arg(&path).output().unwrap();
    succeeded(&second);
    let result = &json_lines(&second)[0];
    let sent_now = parts_stored(&server).await - stored_before;
    assert_eq!(result["resumed"], true, "{result}");
    assert_eq!(result["parts_sent"], sent_now, "the server stored other parts than the client says it sent");
    // Only parts the first run had not stored, plus at most the two that
    // were in flight when it died, are sent again.
    assert!(sent_now <= 8 - stored_before + 2, "sent {sent_now} parts after {stored_before} were stored");
    assert!(sent_now < 8, "the upload started over");
    assert_eq!(sha256(&server.client().download("resume.bin").await.body), sha256(&data));
}

/// URLs live 2 seconds and the client is slow: parts whose URL expired get
/// fresh ones and the upload completes. (With an S3 store the expired URL
/// is the store's, refused in its own words; the client knows those too.)
#[tokio::test]
async fn an_upload_slower_than_its_urls_still_completes() {
    let mut options = Options::default();
    options.args.extend(["--url-ttl", "2"].map(String::from));
    let server = Server::start_with(options);
    let work = tempfile::tempdir().unwrap();
    let data = bytes(4 * PART, 122);
    let path = write(work.path(), "slow.bin", &data);
    let output = cli(&server, work.path(), &["upload", "--parallel", "1", "--limit-rate", "4194304"])
        .arg(&path)
        .output()
        .unwrap();
    succeeded(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("expired; asking for a fresh one"), "no URL expired: the test proved nothing\n{stderr}");
    assert_eq!(sha256(&server.client().download("slow.bin").await.body), sha256(&data));
}

/// The server is killed and started again mid-upload; the CLI rides it out.
#[tokio::test]
async fn an_upload_survives_a_server_restart_without_a_rerun() {
    if Layout::current().lacks(Needs::FerryTakesParts) {
        return;
    }
    let key = ferry_core::api_key::ApiKey::generate().to_string();
    let options = |listen: &str| Options {
        args: ["--part-size", "5242880", "--listen", listen].map(String::from).to_vec(),
        bootstrap_key: Some(key.clone()),
        ..Options::default()
    };
    let mut server = Server::start_with(options("127.0.0.1:0"));
    let port = server.port();
    let work = tempfile::tempdir().unwrap();
    let data = bytes(6 * PART, 123);
    let path = write(work.path(), "restart.bin", &data);
    let upload = cli(&server, work.path(), &["upload", "--json", "--parallel", "2", "--limit-rate", "10485760"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    eventually("two parts are stored", || async { parts_stored(&server).await >= 2 }).await;
    server.kill();
    let temp = server.take_dir();
    let restarted = Server::start_in(&server.dir, options(&format!("127.0.0.1:{port}")), temp);
    let output = upload.wait_with_output().unwrap();
    succeeded(&output);
    assert_eq!(json_lines(&output)[0]["status"], "uploaded");
    assert_eq!(sha256(&restarted.client().download("restart.bin").await.body), sha256(&data));
    // One line when the server went away and one when it came back, not
    // one per part that waited.
    let notes = String::from_utf8_lossy(&output.stderr);
    assert_eq!(notes.matches("retrying until it answers").count(), 1, "{notes}");
    assert_eq!(notes.matches("the server answers again").count(), 1, "{notes}");
}

/// A file changed between runs is uploaded anew, never resumed into a mix.
#[tokio::test]
async fn a_file_changed_between_runs_is_not_resumed() {
    if Layout::current().lacks(Needs::FerryTakesParts) {
        return;
    }
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let path = write(work.path(), "changing.bin", &bytes(6 * PART, 124));
    let mut first = cli(&server, work.path(), &["upload", "--quiet", "--parallel", "1", "--limit-rate", "10485760"])
        .arg(&path)
        .spawn()
        .unwrap();
    eventually("two parts are stored", || async { parts_stored(&server).await >= 2 }).await;
    first.kill().unwrap();
    first.wait().unwrap();

    let changed = bytes(6 * PART, 125);
    std::fs::write(&path, &changed).unwrap();
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5)).unwrap();
    let second = cli(&server, work.path(), &["upload", "--json"]).arg(&path).output().unwrap();
    succeeded(&second);
    assert_eq!(json_lines(&second)[0]["resumed"], false);
    assert!(String::from_utf8_lossy(&second.stderr).contains("changed since"), "no note about the change");
    assert_eq!(sha256(&server.client().download("changing.bin").await.body), sha256(&changed));
}

#[tokio::test]
async fn errors_that_retrying_cannot_fix_end_the_command_with_the_servers_words() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let path = write(work.path(), "page.html", b"<html>");
    let output = cli(&server, work.path(), &["upload"]).arg(&path).env("FERRY_API_KEY", "fry_bad").output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid_api_key") && stderr.contains("err-"), "{stderr}");
    let output = cli(&server, work.path(), &["upload", "--type", "text/html"]).arg(&path).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid_file_type") && stderr.contains("Use one of"), "{stderr}");
}

#[tokio::test]
async fn a_cut_off_download_resumes_with_a_range_and_is_verified() {
    let server = Server::start();
    let client = server.client();
    let data = bytes(3 * MIB, 126);
    let uploaded = client.simple_upload("get.bin", data.clone(), None).await.assert_ok();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("get.bin");
    // What a download cut off after 1 MiB leaves behind.
    std::fs::write(work.path().join("get.bin.ferry-partial"), &data[..MIB]).unwrap();
    let marker = serde_json::json!({"file_uid": uploaded["file_uid"]}).to_string();
    std::fs::write(work.path().join("get.bin.ferry-partial.json"), marker).unwrap();

    let output = cli(&server, work.path(), &["download", "get.bin", "--json", "-o"]).arg(&out).output().unwrap();
    succeeded(&output);
    assert_eq!(json_lines(&output)[0]["resumed_from"], MIB);
    assert_eq!(std::fs::read(&out).unwrap(), data);
    assert!(!work.path().join("get.bin.ferry-partial").exists());
    // The rest was fetched with a Range.
    server.log_line(&["status=206"]).await;
}

#[tokio::test]
async fn a_corrupted_partial_download_is_caught_and_never_renamed() {
    let server = Server::start();
    let client = server.client();
    let data = bytes(2 * MIB, 127);
    let uploaded = client.simple_upload("bad.bin", data.clone(), None).await.assert_ok();
    let work = tempfile::tempdir().unwrap();
    let mut partial = data[..MIB].to_vec();
    partial[1000] ^= 0xff;
    std::fs::write(work.path().join("bad.bin.ferry-partial"), partial).unwrap();
    let marker = serde_json::json!({"file_uid": uploaded["file_uid"]}).to_string();
    std::fs::write(work.path().join("bad.bin.ferry-partial.json"), marker).unwrap();

    let out = work.path().join("bad.bin");
    let output = cli(&server, work.path(), &["download", "bad.bin", "-o"]).arg(&out).output().unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("checksum"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!out.exists(), "a corrupt file was put in place");
    // The next run starts over and gets it right.
    succeeded(&cli(&server, work.path(), &["download", "bad.bin", "-o"]).arg(&out).output().unwrap());
    assert_eq!(std::fs::read(&out).unwrap(), data);
}

#[tokio::test]
async fn ls_info_and_rm_show_and_delete_files() {
    let server = Server::start();
    let client = server.client();
    client.simple_upload("listed.csv", b"x\n1\n".to_vec(), None).await.assert_ok();
    let work = tempfile::tempdir().unwrap();
    let ls = cli(&server, work.path(), &["ls"]).output().unwrap();
    succeeded(&ls);
    let table = String::from_utf8_lossy(&ls.stdout);
    assert!(table.starts_with("NAME") && table.contains("listed.csv") && table.contains("text/csv"), "{table}");
    let info = cli(&server, work.path(), &["info", "listed.csv", "--json"]).output().unwrap();
    let info: Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["file_id"], "listed.csv");
    succeeded(&cli(&server, work.path(), &["rm", "listed.csv"]).output().unwrap());
    client.metadata("listed.csv").await.assert_error(404, "file_not_found");
    let totals = cli(&server, work.path(), &["info", "--json"]).output().unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&totals.stdout).unwrap()["num_files"], 0);
}

/// `ferry ls` walks the cursor pages: newest first, as many as asked for,
/// past the 1,000 one page holds.
#[tokio::test]
async fn ls_walks_the_pages_newest_first() {
    let server = Server::start();
    let client = server.client();
    let upload = |i: usize| {
        let client = client.clone();
        let file_type = if i.is_multiple_of(500) { "text/csv" } else { "text/plain" };
        async move { client.simple_upload(&format!("f{i:04}"), vec![b'x'], Some(file_type)).await.assert_ok() }
    };
    // The first thousand in any order, the last three in turn (the newest).
    futures_util::stream::iter((0..1000).map(upload)).buffer_unordered(8).collect::<Vec<_>>().await;
    for i in 1000..1003 {
        upload(i).await;
    }
    let work = tempfile::tempdir().unwrap();
    let ls = |args: &[&str]| {
        let output = cli(&server, work.path(), &[&["ls"], args].concat()).output().unwrap();
        succeeded(&output);
        let stdout = String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect::<Vec<_>>();
        (stdout, String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let newest = |lines: &[String]| lines.iter().map(|l| l.split(' ').next().unwrap().to_owned()).collect::<Vec<_>>();

    let (lines, hint) = ls(&["--limit", "2"]);
    assert_eq!(newest(&lines[1..]), ["f1002", "f1001"]);
    assert!(hint.contains("--all"), "{hint}");
    let (lines, hint) = ls(&[]);
    assert_eq!((lines.len(), lines[1].starts_with("f1002")), (1 + 100, true));
    assert!(hint.contains("--limit"), "{hint}");
    let (lines, hint) = ls(&["--all", "--json"]);
    let files: Vec<Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(files.len(), 1003, "one JSON object a line, every file");
    let indexes: Vec<u64> = files.iter().map(|f| f["file_index"].as_u64().unwrap()).collect();
    assert!(indexes.windows(2).all(|w| w[0] > w[1]), "newest first");
    assert!(hint.is_empty(), "{hint}");
    let (lines, _) = ls(&["--type", "text/csv", "--limit", "1001"]);
    let csv = newest(&lines[1..]);
    assert!(csv.len() == 3 && csv[0] == "f1000" && csv.contains(&"f0500".into()), "{csv:?}");
}

#[test]
fn every_command_has_help_with_an_example() {
    let commands =
        ["serve", "admin", "upload", "download", "ls", "info", "rm", "status", "abort", "completions", "man"];
    for command in commands.into_iter().chain(["openapi"]) {
        let output = ferry().args([command, "--help"]).output().unwrap();
        let help = String::from_utf8_lossy(&output.stdout);
        let example = help.contains("Example:") || help.contains("Examples:");
        assert!(output.status.success() && example, "`ferry {command} --help`:\n{help}");
    }
}
