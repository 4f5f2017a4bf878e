//! The load test (issue 6): many small uploads at once, then large uploads
//! at once from the real client, against one server. Every file must come
//! back byte-identical, and the server's peak memory must stay far below
//! what holding the parts in flight would take: bodies are streamed.
//!
//! CI runs 200 small uploads and 16 uploads of 16 MiB. The long one (see
//! RELIABILITY.md), with the services scripts/test starts:
//!   FERRY_LOAD_LARGE_MIB=256 FERRY_TEST_LAYOUT=embedded \
//!     cargo test --release -p ferry --test api load -- --nocapture

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use futures_util::future::join_all;
use serde_json::Value;
use sha2::Digest;

use crate::harness::*;

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Writes `len` deterministic bytes for `seed` to `path` without holding
/// them; returns their SHA-256.
fn write_source(path: &Path, len: usize, seed: u64) -> Vec<u8> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut hash = sha2::Sha256::new();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut chunk = vec![0u8; MIB];
    let mut left = len;
    while left > 0 {
        for word in chunk.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let n = left.min(MIB);
        file.write_all(&chunk[..n]).unwrap();
        hash.update(&chunk[..n]);
        left -= n;
    }
    file.flush().unwrap();
    hash.finalize().to_vec()
}

/// Downloads `name` a chunk at a time; returns its SHA-256 and length.
async fn download_sha256(client: &Client, name: &str) -> (Vec<u8>, usize) {
    let mut response = client
        .http
        .get(format!("{}/v0.5/files/download/{name}", client.pick()))
        .bearer_auth(&client.key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "downloading {name}");
    let mut hash = sha2::Sha256::new();
    let mut len = 0;
    while let Some(chunk) = response.chunk().await.unwrap() {
        hash.update(&chunk);
        len += chunk.len();
    }
    (hash.finalize().to_vec(), len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_uploads_at_once_all_arrive_intact_in_bounded_memory() {
    let small = knob("FERRY_LOAD_SMALL", 200);
    let large = knob("FERRY_LOAD_LARGE", 16);
    let large_mib = knob("FERRY_LOAD_LARGE_MIB", 16);
    let parallel = 4;
    let server = Server::start();
    let client = server.client();
    let idle_kib = server.memory_kib("VmRSS");

    // Small files, half sent whole and half through initiate → part →
    // complete, all at once.
    let sources: Vec<(String, Vec<u8>)> =
        (0..small).map(|i| (format!("small-{i}.bin"), bytes(1 + (i * 977) % (64 * 1024), 300 + i as u64))).collect();
    let sent = join_all(sources.iter().enumerate().map(|(i, (name, data))| {
        let client = client.clone();
        async move {
            if i % 2 == 0 {
                client.simple_upload(name, data.clone(), None).await.assert_ok();
            } else {
                let upload = client.start_upload(name, data.len()).await;
                let tokens = upload.put_all(data).await;
                client.complete_checked(&upload, tokens, data).await.assert_ok();
            }
        }
    }));
    sent.await;
    let small_peak_kib = server.memory_kib("VmHWM");
    // Resets the peak to the present, so the next one is the large uploads'.
    std::fs::write(format!("/proc/{}/clear_refs", server.pid()), "5").unwrap();
    for (name, data) in &sources {
        let downloaded = client.download(name).await;
        assert_eq!(sha256(&downloaded.body), sha256(data), "{name} differs from its source");
    }

    // Large files from the real client, `parallel` parts each in flight.
    let work = tempfile::tempdir().unwrap();
    let mut large_sources = Vec::new();
    for i in 0..large {
        let name = format!("large-{i}.bin");
        let sha = write_source(&work.path().join(&name), large_mib * MIB, 400 + i as u64);
        large_sources.push((name, sha));
    }
    let clients: Vec<_> = large_sources
        .iter()
        .map(|(name, _)| {
            cli(&server, work.path(), &["upload", "--json", "--quiet", "--parallel", &parallel.to_string()])
                .arg(work.path().join(name))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (client, (name, _)) in clients.into_iter().zip(&large_sources) {
        let output = client.wait_with_output().unwrap();
        assert!(output.status.success(), "uploading {name} failed:\n{}", String::from_utf8_lossy(&output.stderr));
        let result: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(result["status"], "uploaded", "{result}");
    }
    let peak_kib = server.memory_kib("VmHWM");
    for (name, sha) in &large_sources {
        assert_eq!(download_sha256(&client, name).await, (sha.clone(), large_mib * MIB), "{name} differs");
    }

    let listed = client.get("/v0.5/files/info").await.assert_ok();
    assert_eq!(listed["num_files"], small + large, "{listed}");
    let (clean, report) = server.check();
    assert!(clean, "{report}");

    // Holding the parts in flight whole would take large × parallel parts
    // (64 × 8 MiB = 512 MiB with the defaults); streaming takes a write
    // buffer and hyper's read buffer per PUT, under 1 MiB each.
    let in_flight_mib = large * parallel * 8;
    println!(
        "load: {small} small and {large} × {large_mib} MiB uploads verified; server RSS idle {} MiB, \
         peak {} MiB during the small uploads, {} MiB during the large ones ({} part PUTs in flight)",
        idle_kib / 1024,
        small_peak_kib / 1024,
        peak_kib / 1024,
        large * parallel
    );
    assert!(
        peak_kib < 192 * 1024,
        "the server peaked at {} MiB with {in_flight_mib} MiB of parts in flight",
        peak_kib / 1024
    );
}
