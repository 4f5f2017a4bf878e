//! Services of a test's own, for tests that stop them: a PostgreSQL, a
//! Garage cluster. They are started by the same shell functions
//! scripts/test uses (scripts/lib), so stopping one disturbs no other test.

use std::process::{Command, Stdio};

use crate::harness::{S3Store, psql};

/// Runs `body` in bash at the repository root with scripts/lib sourced;
/// returns its stdout.
fn shell(body: &str) -> String {
    let output = Command::new("bash")
        .args([
            "-c",
            &format!(
                "set -e; source scripts/lib/common.sh; source scripts/lib/postgres.sh; \
                 source scripts/lib/garage.sh; {body}"
            ),
        ])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(output.status.success(), "the script failed: {body}");
    String::from_utf8(output.stdout).unwrap()
}

pub struct OwnPostgres {
    url: String,
    dir: String,
    bin: String,
    port: String,
}

impl OwnPostgres {
    /// A PostgreSQL with an empty database `ferry`; `None` (the test is
    /// skipped, saying so) outside scripts/test.
    pub fn start() -> Option<Self> {
        if !crate::harness::needs_integration("a PostgreSQL of its own") {
            return None;
        }
        let out = shell(r#"start_postgres 2>/dev/null; echo "$FERRY_TEST_POSTGRES_URL|$pg_dir|$pg_bin|$pg_port""#);
        let fields: Vec<&str> = out.trim().split('|').collect();
        let own = Self { url: fields[0].into(), dir: fields[1].into(), bin: fields[2].into(), port: fields[3].into() };
        psql(&own.url, "CREATE DATABASE ferry");
        Some(own)
    }

    pub fn database_url(&self) -> String {
        format!("{}/ferry", self.url.rsplit_once('/').unwrap().0)
    }

    pub fn stop(&self) {
        shell(&format!(r#"as_postgres "{}/pg_ctl -D {}/data -m fast -w stop" >/dev/null"#, self.bin, self.dir));
    }

    pub fn start_again(&self) {
        let (bin, dir, port) = (&self.bin, &self.dir, &self.port);
        shell(&format!(
            r#"as_postgres "{bin}/pg_ctl -D {dir}/data -l {dir}/log -w -o \"-k {dir} -p {port} -c listen_addresses=127.0.0.1\" start" >/dev/null"#
        ));
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        // Not `shell`: a drop must not panic.
        let _ = Command::new("bash")
            .args([
                "-c",
                &format!("source scripts/lib/postgres.sh; pg_dir={} pg_bin={}; stop_postgres", self.dir, self.bin),
            ])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
            .status();
    }
}

/// Garage nodes on loopback, each object on every node; node 0 serves the
/// S3 API that ferry and clients use.
pub struct OwnGarage {
    dir: String,
    pids: Vec<u32>,
    pub store: S3Store,
}

impl OwnGarage {
    /// `None` (the test is skipped, saying so) outside scripts/test.
    pub fn start(nodes: usize) -> Option<Self> {
        let garage = crate::harness::needs("FERRY_TEST_GARAGE_BIN")?;
        let out = shell(&format!(
            r#"garage_bin={garage}; start_garage {nodes} 2>/dev/null
               echo "$garage_dir|${{garage_pids[*]}}|$FERRY_TEST_S3_ENDPOINT|$FERRY_TEST_S3_REGION|$FERRY_TEST_S3_BUCKET|$FERRY_TEST_S3_ACCESS_KEY_ID|$FERRY_TEST_S3_SECRET_ACCESS_KEY""#
        ));
        let fields: Vec<&str> = out.trim().split('|').collect();
        let store = S3Store {
            endpoint: fields[2].into(),
            region: fields[3].into(),
            bucket: fields[4].into(),
            access_key_id: fields[5].into(),
            secret_access_key: fields[6].into(),
        };
        Some(Self { dir: fields[0].into(), pids: fields[1].split(' ').map(|p| p.parse().unwrap()).collect(), store })
    }

    /// Stops node `i` at once, as a crash or a pulled cable would.
    pub fn kill_node(&self, i: usize) {
        let status = Command::new("kill").args(["-KILL", &self.pids[i].to_string()]).status().unwrap();
        assert!(status.success(), "Garage node {i} was not running");
    }
}

impl Drop for OwnGarage {
    fn drop(&mut self) {
        for pid in &self.pids {
            // A node a test killed already is gone: nothing to report.
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).stderr(Stdio::null()).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
