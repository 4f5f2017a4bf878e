//! The browser page, in Debian's Chromium driven by selenium
//! (`browser.py`): what a person does on it, checked against what the
//! server then holds. Screenshots of each step go to
//! `target/tmp/browser/<layout>/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::harness::*;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// selenium's Python, a dir for the files a test chooses and one for the
/// browser's downloads.
struct Browser {
    python: String,
    work: tempfile::TempDir,
    downloads: tempfile::TempDir,
}

impl Browser {
    /// None, saying so, where scripts/test's selenium is not given.
    fn needed() -> Option<Self> {
        let python = needs("FERRY_TEST_SELENIUM_PYTHON")?;
        Some(Self { python, work: tempfile::tempdir().unwrap(), downloads: tempfile::tempdir().unwrap() })
    }

    /// A file for the page to be given.
    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        write(self.work.path(), name, bytes)
    }

    /// Runs one scenario of browser.py against `server`; its report.
    fn run(&self, server: &Server, scenario: &str, files: &[PathBuf]) -> Value {
        let driver = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/browser.py");
        let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser").join(format!("{:?}", server.layout()));
        let output = Command::new(&self.python)
            .arg(driver)
            .args([scenario, &server.url, &server.key])
            .args([&shots, self.downloads.path()])
            .args(files)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "browser.py {scenario} failed ({}); screenshots in {}:\n{}\n{stdout}",
            output.status,
            shots.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    }
}

/// What Chromium logged as errors, but for those a test brought about
/// (Chromium logs every refused or failed request).
fn unexpected_console_errors(report: &Value, expected: &[&str]) -> Vec<String> {
    report["console_errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_owned())
        .filter(|e| !expected.iter().any(|x| e.contains(x)))
        .collect()
}

/// A wrong key is refused in the server's words; then three files go up
/// through the page (the 64 MiB one in parts), their details show the
/// server's record, one comes back down through the page, one is deleted after a confirmation.
#[tokio::test]
async fn the_page_signs_in_uploads_downloads_and_deletes() {
    let Some(browser) = Browser::needed() else { return };
    let server = Server::start();
    let files = [
        browser.file("points.csv", b"t,x,y\n1,2,3\n4,5,6\n"),
        browser.file("small.bin", &bytes(3_000_000, 171)),
        browser.file("big.bin", &bytes(64 * MIB, 172)),
    ];
    let report = browser.run(&server, "upload_and_manage", &files);

    let refusal = server.client_with_key(&format!("fry_wrong_{}", "x".repeat(40))).get("/v0.5/files/info").await;
    let message = refusal.json()["errors"][0]["message"].as_str().unwrap().to_owned();
    let shown = report["wrong_key_message"].as_str().unwrap();
    assert!(shown.contains(&message) && shown.contains("error id: err-"), "{shown}");
    assert_eq!(report["signed_in_with_wrong_key"], false);
    assert_eq!(report["key_in_session_storage"], true);
    assert_eq!(report["cookies"], serde_json::json!([]), "the key must not be in a cookie");

    for name in ["points.csv", "small.bin", "big.bin"] {
        assert_eq!(report["states"][name], "done", "{report}");
    }
    let mut listed: Vec<&str> = report["listed"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    listed.sort();
    assert_eq!(listed, ["big.bin", "points.csv", "small.bin"]);

    // The details are the server's record of the file.
    let record = server.client().metadata("points.csv").await.assert_ok();
    let details = report["details"].as_str().unwrap();
    for field in ["file_uid", "checksum_crc32c"] {
        assert!(details.contains(record[field].as_str().unwrap()), "{field} not in {details}");
    }

    // The download through the page is the file.
    let downloaded = std::fs::read(report["downloaded"].as_str().unwrap()).unwrap();
    assert_eq!(sha256(&downloaded), sha256(&std::fs::read(&files[2]).unwrap()));
    for path in [&files[0], &files[2]] {
        let name = path.file_name().unwrap().to_str().unwrap();
        let stored = server.client().download(name).await;
        assert_eq!(sha256(&stored.body), sha256(&std::fs::read(path).unwrap()), "{name}");
    }
    assert_eq!(report["deleted"], "small.bin");
    server.client().metadata("small.bin").await.assert_error(404, "file_not_found");
    let wrong_key = "files/info - Failed to load resource: the server responded with a status of 401";
    assert_eq!(unexpected_console_errors(&report, &[wrong_key]), Vec::<String>::new());
}

/// A large upload paused and resumed, then the tab reloaded in the middle
/// (with parts stored that were not yet checkpointed) and the file chosen
/// again: only the parts the server did not have are sent, and the stored
/// bytes are the file's.
#[tokio::test]
async fn a_reloaded_tab_resumes_with_only_the_missing_parts() {
    let Some(browser) = Browser::needed() else { return };
    let server = Server::start();
    let data = bytes(20 * PART, 173);
    let path = browser.file("large.bin", &data);
    let report = browser.run(&server, "pause_reload_resume", &[path]);

    assert_eq!(report["state"], "done", "{report}");
    assert_eq!(report["parts_total"], 20);
    assert_eq!(report["checkpoints_while_paused"], true, "parts went on while paused: {report}");
    assert!(report["unfinished"].as_str().unwrap().contains("large.bin"), "{report}");
    let already = report["parts_already_there"].as_u64().unwrap();
    assert!(already > 0 && already < 20, "{report}");
    // Every part the server had before the reload was kept: those
    // checkpointed then, and those stored but not yet checkpointed, which
    // the tab's journal checkpoints in one request. Only the others were
    // sent after it, a checkpoint each.
    let recovered = report["parts_recovered"].as_u64().unwrap();
    assert!(recovered > 0, "the journal's tokens were not used: {report}");
    assert_eq!(report["checkpoints_before_reload"], already - recovered, "{report}");
    assert_eq!(report["checkpoints_after_resume"], 20 - already + u64::from(recovered > 0), "{report}");
    assert_eq!(report["unfinished_after"], false);
    assert_eq!(sha256(&server.client().download("large.bin").await.body), sha256(&data));
    assert_eq!(unexpected_console_errors(&report, &[]), Vec::<String>::new());
}

/// From the keyboard alone to the list; pages of files newest first by
/// cursor, a type filter; every control named; readable at 360 px wide and
/// at 200% zoom.
#[tokio::test]
async fn the_file_list_pages_filters_and_reads_on_any_screen() {
    let Some(browser) = Browser::needed() else { return };
    let server = Server::start();
    let client = server.client();
    let mut names = Vec::new();
    for i in 0..53 {
        let (name, kind) = if i % 10 == 3 {
            (format!("table-{i:02}.csv"), "text/csv")
        } else {
            (format!("note-{i:02}.txt"), "text/plain")
        };
        client.simple_upload(&name, format!("a,b\n{i},{i}\n").into_bytes(), Some(kind)).await.assert_ok();
        names.push(name);
    }
    let report = browser.run(&server, "browse", &[]);

    assert_eq!(report["focus_reached_key_field"], true);
    assert_eq!(report["focus_visible"], true, "the focused field shows no outline");
    assert_eq!(report["unnamed_controls"], serde_json::json!([]));
    let newest_first: Vec<&str> = names.iter().rev().map(String::as_str).collect();
    let page = |field: &str| -> Vec<String> {
        report[field].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(page("first_page"), newest_first[..50]);
    assert_eq!(page("second_page"), newest_first[50..]);
    assert_eq!(report["back_to_first"], true);
    let csv: Vec<&str> = newest_first.iter().copied().filter(|n| n.ends_with(".csv")).collect();
    assert_eq!(page("filtered"), csv);
    assert!(report["totals"].as_str().unwrap().starts_with("53 files"), "{report}");
    assert_eq!(report["overflows_at_360px"], serde_json::json!([]));
    assert_eq!(report["overflows_at_200_percent"], serde_json::json!([]));
    assert_eq!(unexpected_console_errors(&report, &[]), Vec::<String>::new());
}

/// The network goes away in the middle of an upload: the page says it will
/// try again, and once the network is back the upload ends with the file's
/// bytes. Another upload, cancelled part-way, leaves nothing behind.
#[tokio::test]
async fn a_lost_network_holds_an_upload_and_a_cancel_ends_one() {
    let Some(browser) = Browser::needed() else { return };
    let server = Server::start();
    let data = bytes(6 * PART, 174);
    let path = browser.file("journey.bin", &data);
    let other = browser.file("second-thoughts.bin", &bytes(6 * PART, 175));
    let report = browser.run(&server, "offline_then_online", &[path, other]);

    assert_eq!(report["state_while_offline"], "uploading", "{report}");
    assert_eq!(report["state"], "done", "{report}");
    assert_eq!(sha256(&server.client().download("journey.bin").await.body), sha256(&data));
    assert_eq!(report["unfinished_after_cancel"], false);
    // No upload of that name is left to resume.
    let again = server.client().resume("second-thoughts.bin", 6 * PART).await.assert_ok();
    assert_eq!(again["is_resume"], false, "the cancelled upload is still there");
    server.client().metadata("second-thoughts.bin").await.assert_error(404, "file_not_found");
    let offline = "Failed to load resource: net::ERR_INTERNET_DISCONNECTED";
    assert_eq!(unexpected_console_errors(&report, &[offline]), Vec::<String>::new());
}

/// A folder chosen with the folder picker goes up file by file; with part
/// URLs that live two seconds, the page gets fresh ones from the part-URL
/// endpoint before it uses them.
#[tokio::test]
async fn a_folder_goes_up_and_short_lived_part_urls_are_refreshed() {
    let Some(browser) = Browser::needed() else { return };
    let mut options = Options::default();
    options.args.extend(["--url-ttl".into(), "2s".into()]);
    let server = Server::start_with(options);
    let folder = browser.work.path().join("shoot");
    std::fs::create_dir(&folder).unwrap();
    let take = bytes(3 * PART + 17, 176);
    let notes = b"a,b\n1,2\n".to_vec();
    write(&folder, "take-1.bin", &take);
    write(&folder, "notes.csv", &notes);
    let report = browser.run(&server, "upload_folder", &[folder]);

    assert_eq!(report["states"], serde_json::json!({"notes.csv": "done", "take-1.bin": "done"}));
    assert_eq!(sha256(&server.client().download("take-1.bin").await.body), sha256(&take));
    assert_eq!(server.client().download("notes.csv").await.body, notes);
    let metrics = server.metrics().await;
    let refreshed: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("ferry_http_requests_total{") && l.contains("parts/urls") && l.contains("status=\"200\"")
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert!(refreshed >= 4.0, "{refreshed} part URLs were fetched for 4 parts:\n{metrics}");
    assert_eq!(unexpected_console_errors(&report, &[]), Vec::<String>::new());
}
