//! The command line as people use it next to aws-cli and rclone: folders,
//! reruns that send nothing, pipes, every size, abandoning an upload,
//! messages written for a terminal, Ctrl-C, and the shell's habits.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    path
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[track_caller]
fn succeeded(output: &Output) {
    assert!(output.status.success(), "stdout: {}\nstderr: {}", String::from_utf8_lossy(&output.stdout), stderr(output));
}

fn json_lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// File bytes every node of the server has taken in (parts and simple uploads).
async fn bytes_received(server: &Server) -> f64 {
    let text = server.metrics().await;
    text.lines().filter_map(|l| l.strip_prefix("ferry_bytes_received_total ")).map(|v| v.parse::<f64>().unwrap()).sum()
}

/// Waits until the server knows the CRC32C of every file (ingested): on an
/// S3 store it computes them then, and until then a rerun cannot know a
/// file is unchanged.
async fn all_checksums_known(server: &Server, names: &[&str]) {
    let client = server.client();
    for name in names {
        eventually(&format!("{name} has a checksum"), || async {
            client.metadata(name).await.json()["checksum_crc32c"].is_string()
        })
        .await;
    }
}

/// `ferry upload DIR`: its files (the empty one too), subfolders only with
/// -r, several in flight; the same command again sends no byte.
#[tokio::test]
async fn a_folder_uploads_every_file_and_a_rerun_sends_nothing() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let folder = work.path().join("dataset");
    let big = bytes(20 * MIB, 301);
    write(&folder, "big.bin", &big);
    write(&folder, "empty.txt", b"");
    write(&folder, "notes/readme.txt", b"read me\n");

    let flat = cli(&server, work.path(), &["upload"]).arg(&folder).output().unwrap();
    succeeded(&flat);
    assert!(stderr(&flat).contains("1 subfolders left out (-r uploads them too)"), "{}", stderr(&flat));
    let client = server.client();
    client.metadata("readme.txt").await.assert_error(404, "file_not_found");

    let all = cli(&server, work.path(), &["upload", "-r", "--jobs", "3", "--json", "--simple-threshold", "1048576"])
        .arg(&folder)
        .output()
        .unwrap();
    succeeded(&all);
    let results = json_lines(&all);
    let status_of = |name: &str| {
        let result = results.iter().find(|r| r["file_id"] == name).unwrap_or_else(|| panic!("no {name}: {results:?}"));
        result["status"].as_str().unwrap().to_owned()
    };
    assert_eq!((status_of("readme.txt").as_str(), results.len()), ("uploaded", 3), "{results:?}");
    assert_eq!(sha256(&client.download("big.bin").await.body), sha256(&big));
    assert_eq!(client.download("empty.txt").await.body, b"");
    assert_eq!(client.download("readme.txt").await.body, b"read me\n");

    all_checksums_known(&server, &["big.bin", "empty.txt", "readme.txt"]).await;
    let uid_before = client.metadata("big.bin").await.json()["file_uid"].clone();
    let received_before = bytes_received(&server).await;
    let again = cli(&server, work.path(), &["upload", "-r", "--json"]).arg(&folder).output().unwrap();
    succeeded(&again);
    assert!(
        json_lines(&again).iter().all(|r| r["status"] == "unchanged"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    assert_eq!(bytes_received(&server).await, received_before, "a rerun sent bytes");
    assert_eq!(client.metadata("big.bin").await.json()["file_uid"], uid_before, "a rerun registered a new file");
    // What a person sees: one line per file, saying nothing was sent.
    let shown = cli(&server, work.path(), &["upload", "-r"]).arg(&folder).output().unwrap();
    succeeded(&shown);
    assert_eq!(stderr(&shown).matches("nothing sent").count(), 3, "{}", stderr(&shown));

    // --force sends anyway, as a new file.
    let forced =
        cli(&server, work.path(), &["upload", "--force", "--json"]).arg(folder.join("big.bin")).output().unwrap();
    succeeded(&forced);
    assert_eq!(json_lines(&forced)[0]["status"], "uploaded");
    assert_ne!(client.metadata("big.bin").await.json()["file_uid"], uid_before);
}

/// Files take their base names: two that would take one are refused
/// before a byte is sent, naming both.
#[tokio::test]
async fn two_files_that_would_take_one_name_are_refused_before_anything_is_sent() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let first = write(work.path(), "2025/labels.csv", b"a\n");
    let second = write(work.path(), "2026/labels.csv", b"b\n");
    write(work.path(), "2026/other.csv", b"c\n");
    let output = cli(&server, work.path(), &["upload", "-r"])
        .arg(work.path().join("2025"))
        .arg(work.path().join("2026"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(text.contains(&first.display().to_string()) && text.contains(&second.display().to_string()), "{text}");
    assert!(text.contains("`labels.csv`") && text.contains("nothing was sent"), "{text}");
    assert_eq!(server.client().get("/v0.5/files/info").await.assert_ok()["num_files"], 0);
}

/// `ferry upload - --name NAME` takes standard input (here larger than a
/// part, so it goes in parts), `ferry download NAME -o -` gives it back on
/// standard output, byte for byte.
#[tokio::test]
async fn standard_input_goes_up_and_standard_output_comes_down() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let data = bytes(2 * PART + 4321, 302);
    let args = ["upload", "-", "--name", "piped.bin", "--json", "--simple-threshold", "1048576"];
    let mut upload = cli(&server, work.path(), &args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = upload.stdin.take().unwrap();
    let sent = data.clone();
    let writer = std::thread::spawn(move || stdin.write_all(&sent).unwrap());
    let output = upload.wait_with_output().unwrap();
    writer.join().unwrap();
    succeeded(&output);
    assert_eq!(json_lines(&output)[0]["method"], "direct");
    assert_eq!(sha256(&server.client().download("piped.bin").await.body), sha256(&data));
    // The spool it went through is gone, and nothing is left to resume.
    let spool: Vec<_> = std::fs::read_dir(work.path().join("spool")).unwrap().collect();
    assert!(spool.is_empty(), "{spool:?}");
    let status = cli(&server, work.path(), &["status"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&status.stdout).trim(), "no interrupted uploads");

    let down = cli(&server, work.path(), &["download", "piped.bin", "-o", "-"]).output().unwrap();
    succeeded(&down);
    assert_eq!(sha256(&down.stdout), sha256(&data));
    assert!(!work.path().join("-").exists(), "a file named `-` was written");

    let nameless = cli(&server, work.path(), &["upload", "-"]).output().unwrap();
    assert!(!nameless.status.success() && stderr(&nameless).contains("--name"), "{}", stderr(&nameless));
}

/// Every size: an empty file goes up; a file the server will not take
/// whole (its --max-simple-upload is below the CLI's threshold) goes in
/// parts; a name the server would cut down or refuse is refused here,
/// with the reason, before anything is sent.
#[tokio::test]
async fn every_size_goes_up_and_a_bad_name_is_refused_first() {
    let mut options = Options::default();
    options.args.extend(["--max-simple-upload", "100000"].map(String::from));
    let server = Server::start_with(options);
    let work = tempfile::tempdir().unwrap();
    let client = server.client();

    let empty = write(work.path(), "empty.csv", b"");
    succeeded(&cli(&server, work.path(), &["upload"]).arg(&empty).output().unwrap());
    assert_eq!(client.metadata("empty.csv").await.assert_ok()["num_bytes"], 0);

    let middling = bytes(PART + 99, 303);
    let path = write(work.path(), "middling.bin", &middling);
    let output = cli(&server, work.path(), &["upload", "--json"]).arg(&path).output().unwrap();
    succeeded(&output);
    assert_eq!(json_lines(&output)[0]["method"], "direct", "{}", stderr(&output));
    assert!(stderr(&output).contains("only in parts"), "{}", stderr(&output));
    assert_eq!(sha256(&client.download("middling.bin").await.body), sha256(&middling));

    for (name, reason) in [("a/b.txt", "`/`"), ("..", "`.` or `..`")] {
        let output = cli(&server, work.path(), &["upload", "--name", name]).arg(&empty).output().unwrap();
        assert_eq!(output.status.code(), Some(1), "{name}");
        assert!(stderr(&output).contains(reason), "{name}: {}", stderr(&output));
    }
    assert_eq!(client.get("/v0.5/files/info").await.assert_ok()["num_files"], 2);
}

/// An interrupted upload shows in `ferry status` (how much, how old) and
/// `ferry abort` abandons it, by path or by upload id, on the server and
/// in the journal.
#[tokio::test]
async fn abort_abandons_an_interrupted_upload_by_path_or_id() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let client = server.client();
    let mut interrupted = Vec::new();
    for name in ["first.bin", "second.bin"] {
        let path = write(work.path(), name, &bytes(8 * PART, 304));
        let mut upload =
            cli(&server, work.path(), &["upload", "--quiet", "--parallel", "1", "--limit-rate", "10485760"])
                .arg(&path)
                .spawn()
                .unwrap();
        eventually("two parts are journaled", || async {
            let status = cli(&server, work.path(), &["status", "--json"]).output().unwrap();
            let status: Value = serde_json::from_slice(&status.stdout).unwrap();
            status.as_array().unwrap().iter().any(|e| e["file_id"] == name && e["parts_done"].as_u64() >= Some(2))
        })
        .await;
        upload.kill().unwrap();
        upload.wait().unwrap();
        interrupted.push(path);
    }
    let status = cli(&server, work.path(), &["status"]).output().unwrap();
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(shown.contains("of 8 parts") && shown.contains("s ago") && shown.contains("ferry abort"), "{shown}");
    let listed: Value =
        serde_json::from_slice(&cli(&server, work.path(), &["status", "--json"]).output().unwrap().stdout).unwrap();
    let second_id = listed.as_array().unwrap().iter().find(|e| e["file_id"] == "second.bin").unwrap()["upload_id"]
        .as_str()
        .unwrap()
        .to_owned();

    succeeded(&cli(&server, work.path(), &["abort"]).arg(&interrupted[0]).output().unwrap());
    succeeded(&cli(&server, work.path(), &["abort", &second_id]).output().unwrap());
    let status = cli(&server, work.path(), &["status"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&status.stdout).trim(), "no interrupted uploads");
    // Gone on the server: resuming starts a new upload.
    for name in ["first.bin", "second.bin"] {
        let resumed = client.resume(name, 8 * PART).await.assert_ok();
        assert_eq!(resumed["is_resume"], false, "{name}: {resumed}");
    }
    let unknown = cli(&server, work.path(), &["abort"]).arg(work.path().join("never.bin")).output().unwrap();
    assert!(!unknown.status.success() && stderr(&unknown).contains("ferry status"), "{}", stderr(&unknown));
}

/// A download onto a local file that holds the same bytes fetches nothing;
/// one that differs is replaced.
#[tokio::test]
async fn a_download_onto_the_same_bytes_fetches_nothing() {
    let server = Server::start();
    let client = server.client();
    let data = bytes(3 * MIB, 305);
    client.simple_upload("same.bin", data.clone(), None).await.assert_ok();
    let work = tempfile::tempdir().unwrap();
    let out = write(work.path(), "same.bin", &data);
    let output = cli(&server, work.path(), &["download", "same.bin", "--json", "-o"]).arg(&out).output().unwrap();
    succeeded(&output);
    assert_eq!(json_lines(&output)[0]["status"], "unchanged");
    let mut other = data.clone();
    other[77] ^= 1;
    std::fs::write(&out, &other).unwrap();
    let output = cli(&server, work.path(), &["download", "same.bin", "--json", "-o"]).arg(&out).output().unwrap();
    succeeded(&output);
    assert_eq!(json_lines(&output)[0]["status"], "downloaded");
    assert_eq!(std::fs::read(&out).unwrap(), data);
}

/// Messages for a person at a terminal: each cause once, no Rust or HTTP
/// internals, a hint in the CLI's own terms; FERRY_URL with or without the
/// API's `/v0.5`.
#[tokio::test]
async fn messages_say_each_cause_once_in_a_terminals_terms() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| cli(&server, work.path(), args).output().unwrap();
    let internals = ["os error", "Some(", "expected i64", "ferry-partial", "Authorization", "GET /", "POST /"];
    let check = |output: &Output, wanted: &[&str]| {
        let text = stderr(output);
        assert_eq!(output.status.code(), Some(1), "{text}");
        for internal in internals {
            assert!(!text.contains(internal), "`{internal}` in:\n{text}");
        }
        for want in wanted {
            assert!(text.contains(want), "no `{want}` in:\n{text}");
        }
        // Each line once.
        let lines: Vec<&str> = text.lines().collect();
        let mut unique = lines.clone();
        unique.dedup();
        assert_eq!(lines, unique, "{text}");
        text
    };
    let missing = check(&run(&["upload", "no-such-file.bin"]), &["no-such-file.bin: No such file or directory"]);
    assert_eq!(missing.matches("No such file").count(), 1, "{missing}");
    let wrong_key = cli(&server, work.path(), &["ls"]).env("FERRY_API_KEY", "fry_not_a_key").output().unwrap();
    check(&wrong_key, &["invalid_api_key", "hint: check FERRY_API_KEY or --api-key"]);
    check(&run(&["info", "nothere.csv"]), &["not found", "hint: `ferry ls`"]);
    check(&run(&["download", "nothere.csv"]), &["hint: `ferry ls`"]);
    let with_prefix =
        cli(&server, work.path(), &["info"]).env("FERRY_URL", format!("{}/v0.5/", server.url)).output().unwrap();
    succeeded(&with_prefix);
    server.client().simple_upload("here.txt", b"x".to_vec(), None).await.assert_ok();
    check(&run(&["download", "here.txt", "-o", "/nonexistent-dir/here.txt"]), &["/nonexistent-dir/here.txt"]);
}

/// A host name that does not resolve is not worth retrying: it fails at
/// once, saying so.
#[test]
fn an_unknown_host_fails_at_once() {
    let work = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let output = ferry()
        .args(["ls"])
        .env("FERRY_URL", "http://ferry-test-host.invalid:8080")
        .env("FERRY_API_KEY", "fry_x")
        .env("FERRY_STATE_DIR", work.path())
        .output()
        .unwrap();
    let took = started.elapsed();
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("does not resolve") && stderr(&output).contains("hint:"), "{}", stderr(&output));
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

/// Ctrl-C on a terminal, mid-upload with its bars drawn: a line saying how
/// to go on, exit status 130, and the same command then resumes.
#[tokio::test]
async fn ctrl_c_says_how_to_resume_and_exits_130() {
    let Some(python) = needs("FERRY_TEST_PYTHON") else { return };
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let data = bytes(6 * PART, 306);
    let path = write(work.path(), "interrupted.bin", &data);
    let driver = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/pty_interrupt.py");
    let ferry_bin = env!("CARGO_BIN_EXE_ferry");
    let output = std::process::Command::new(&python)
        .args([driver, "in flight", ferry_bin, "upload", "--parallel", "1", "--limit-rate", "4194304"])
        .arg(&path)
        .env("FERRY_URL", &server.url)
        .env("FERRY_API_KEY", &server.key)
        .env("FERRY_STATE_DIR", work.path())
        .output()
        .unwrap();
    let terminal = String::from_utf8_lossy(&output.stdout);
    assert!(terminal.contains("pressed=True"), "the bar never showed:\n{terminal}");
    assert!(terminal.contains("interrupted: run the same command again to resume"), "{terminal}");
    assert!(terminal.trim_end().ends_with("exit=130"), "{terminal}");
    let again = cli(&server, work.path(), &["upload", "--json"]).arg(&path).output().unwrap();
    succeeded(&again);
    assert_eq!(json_lines(&again)[0]["resumed"], true);
    assert_eq!(sha256(&server.client().download("interrupted.bin").await.body), sha256(&data));
}

/// Completion scripts for three shells, a man page from the same
/// definitions, and the exit statuses in `--help`.
#[test]
fn the_shell_gets_completions_a_man_page_and_exit_statuses() {
    let run = |args: &[&str]| {
        let output = ferry().args(args).output().unwrap();
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        String::from_utf8(output.stdout).unwrap()
    };
    assert!(run(&["completions", "bash"]).contains("_ferry()"));
    assert!(run(&["completions", "zsh"]).starts_with("#compdef ferry"));
    assert!(run(&["completions", "fish"]).contains("complete -c ferry"));
    let man = run(&["man"]);
    assert!(man.contains(".TH ferry") && man.contains("upload"), "{}", &man[..man.len().min(400)]);
    for help in [run(&["--help"]), run(&["upload", "--help"])] {
        assert!(help.contains("Exit status: 0 done, 1 failed, 2 usage error, 130 interrupted"), "{help}");
    }
    let usage = ferry().args(["upload"]).output().unwrap();
    assert_eq!(usage.status.code(), Some(2), "a usage error");
}
