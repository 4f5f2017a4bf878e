//! The official Archetype Python client of today (`archetypeai` 26.10.14.0
//! from PyPI, in scripts/test's venv) against ferry, on every layout: the
//! calls its documentation shows, driven by `archetypeai_client.py`.

use std::path::Path;
use std::process::Command;

use crate::harness::*;

const DRIVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/archetypeai_client.py");

/// Runs one stage of the driver as `client`; its output and whether it exited 0.
fn stage(python: &str, name: &str, client: &Client, work: &Path) -> (bool, String) {
    stage_with(python, name, &client.url, &client.key, work, &[])
}

/// Runs one stage of the driver against the API at `url` (a proxy's, say)
/// with more environment (a CA to trust); its output and whether it exited 0.
pub fn stage_with(
    python: &str,
    name: &str,
    url: &str,
    key: &str,
    work: &Path,
    env: &[(&str, &Path)],
) -> (bool, String) {
    let output = Command::new(python)
        .args([DRIVER, name, &format!("{url}/v0.5"), key])
        .arg(work)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[tokio::test]
async fn the_official_python_client_of_today_uploads_lists_downloads_and_deletes() {
    let Some(python) = needs("FERRY_TEST_ARCHETYPEAI_PYTHON") else { return };
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let (ok, out) = stage(&python, "rest", &server.client(), work.path());
    assert!(ok, "{out}");
    eprintln!("{out}");
}

/// A direct upload whose process died after some parts were checkpointed
/// is resumed by the next run with `allow_resume=True`, sending only the
/// missing parts.
#[tokio::test]
async fn the_official_python_client_resumes_after_its_process_dies() {
    let Some(python) = needs("FERRY_TEST_ARCHETYPEAI_PYTHON") else { return };
    let server = Server::start();
    let client = server.client();
    let work = tempfile::tempdir().unwrap();
    let (ok, out) = stage(&python, "crash", &client, work.path());
    assert!(!ok && out.contains("crashed with"), "{out}");
    let (ok, out) = stage(&python, "resume", &client, work.path());
    assert!(ok, "{out}");
    eprintln!("{out}");
    assert_eq!(client.get("/v0.5/files/info").await.assert_ok()["num_files"], 1);
}
