//! The README's curl walk-through, run as written against a real server.

use std::process::Command;

use crate::harness::*;

#[tokio::test]
async fn the_readme_walk_through_works_as_written() {
    if !needs_integration("curl and jq") {
        return;
    }
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let section = readme.split("## Walk-through").nth(1).expect("the README has a walk-through");
    let script = section.split("```sh\n").nth(1).and_then(|s| s.split("```").next()).unwrap();

    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let output = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(work.path())
        .env("FERRY_URL", &server.url)
        .env("FERRY_API_KEY", &server.key)
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("\"file_status\":\"Registered\""), "{stdout}");
    assert!(stdout.ends_with("hello, ferry\n"), "{stdout}");
}
