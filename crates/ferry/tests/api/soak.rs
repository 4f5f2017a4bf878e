//! The crash soak (issue 6): clients upload files of every size while the
//! server is SIGKILLed at pseudo-random moments and restarted on the same
//! data dir, again and again. At the end every upload has completed, every
//! file is byte-identical to its source, nothing is stuck or left over
//! once the janitor ran, and `ferry admin check` finds the metadata and the
//! bytes in agreement.
//!
//! CI runs a short soak. The long one (see RELIABILITY.md):
//!   FERRY_SOAK_KILLS=25 FERRY_SOAK_UPLOADS=16 ./scripts/test
//! or just this test with the services scripts/test starts.

use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A small deterministic generator, so a failing soak can be replayed.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uploads_survive_the_server_being_killed_again_and_again() {
    let kills = knob("FERRY_SOAK_KILLS", 5);
    let uploads = knob("FERRY_SOAK_UPLOADS", 6);
    let seed = knob("FERRY_SOAK_SEED", 7);
    let mut dice = Dice(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let key = ferry_core::api_key::ApiKey::generate().to_string();
    let options = |listen: &str| Options {
        args: [
            "--part-size",
            "5242880",
            "--listen",
            listen,
            "--janitor-interval",
            "1",
            "--deletion-grace",
            "0",
            "--orphan-grace",
            "5",
        ]
        .map(String::from)
        .to_vec(),
        bootstrap_key: Some(key.clone()),
        ..Options::default()
    };
    let mut server = Server::start_with(options("127.0.0.1:0"));
    let listen = format!("127.0.0.1:{}", server.port());

    // Files from a few KiB (sent whole) to a few parts (sent in parts).
    let work = tempfile::tempdir().unwrap();
    let mut sources = Vec::new();
    let mut clients: Vec<Child> = Vec::new();
    for i in 0..uploads {
        let size = if i % 3 == 0 { 1 + dice.roll(3 * MIB as u64) } else { 6 * MIB as u64 + dice.roll(16 * MIB as u64) };
        let data = bytes(size as usize, 200 + i);
        let path = work.path().join(format!("soak-{i}.bin"));
        std::fs::write(&path, &data).unwrap();
        sources.push((format!("soak-{i}.bin"), data));
        let client = cli(&server, work.path(), &["upload", "--json", "--parallel", "3", "--simple-threshold"])
            .args([(4 * MIB).to_string(), "--limit-rate".into(), (2 * MIB).to_string()])
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        clients.push(client);
    }

    for _ in 0..kills {
        tokio::time::sleep(Duration::from_millis(200 + dice.roll(800))).await;
        server.kill();
        let temp = server.take_dir();
        server = Server::start_in(&server.dir, options(&listen), temp);
    }

    let mut bytes_verified = 0;
    for (client, (name, data)) in clients.into_iter().zip(&sources) {
        let output = client.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "uploading {name} failed:\n{stderr}");
        let result: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(result["status"], "uploaded", "{result}");
        let downloaded = server.client().download(name).await;
        assert_eq!(sha256(&downloaded.body), sha256(data), "{name} differs from its source");
        bytes_verified += data.len();
    }
    let status = cli(&server, work.path(), &["status"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&status.stdout).trim(), "no interrupted uploads");
    // Once the janitor has run, nothing but the files is left.
    eventually("nothing is left over", || async {
        server.blobs("staging").await.is_empty() && server.blobs("files").await.len() == sources.len()
    })
    .await;
    let (clean, report) = server.check();
    assert!(clean, "{report}");
    println!("soak: {kills} kills survived, {uploads} uploads checked, {bytes_verified} bytes verified, check clean");
}
