//! Uploads one file through the direct-to-cloud workflow with N parts in
//! flight and reports the wall time and the complete call's latency.
//! Run by `bench/run`, which needs the complete call timed on its own and
//! 64 part PUTs in flight from one process.
//!
//! Usage: bench_upload URL API_KEY FILE [PARALLEL]

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Instant;

use ferry_core::checksum::Crc32c;
use futures_util::StreamExt;
use serde_json::{Value, json};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, key, path, rest @ ..] = args.as_slice() else {
        eprintln!("usage: bench_upload URL API_KEY FILE [PARALLEL]");
        std::process::exit(2);
    };
    let parallel: usize = rest.first().map_or(8, |p| p.parse().unwrap());
    let file = Arc::new(std::fs::File::open(path).unwrap());
    let size = file.metadata().unwrap().len();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let started = Instant::now();

    let initiate: Value = http
        .post(format!("{url}/v0.5/files/uploads/initiate"))
        .bearer_auth(key)
        .json(&json!({"filename": "bench.bin", "file_type": "application/octet-stream", "num_bytes": size}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let upload_id = initiate["upload_id"].as_str().unwrap().to_owned();
    let parts = initiate["parts"].as_array().unwrap().clone();

    let results: Vec<(u64, String, Crc32c, u64)> = futures_util::stream::iter(parts)
        .map(|part| {
            let (http, file) = (http.clone(), file.clone());
            async move {
                let (offset, length) = (part["offset"].as_u64().unwrap(), part["length"].as_u64().unwrap());
                let bytes = tokio::task::spawn_blocking(move || {
                    let mut buffer = vec![0u8; length as usize];
                    file.read_exact_at(&mut buffer, offset).unwrap();
                    buffer
                })
                .await
                .unwrap();
                let crc = Crc32c::of(&bytes);
                let response = http.put(part["url"].as_str().unwrap()).body(bytes).send().await.unwrap();
                assert_eq!(response.status(), 200);
                let etag = response.headers()["etag"].to_str().unwrap().to_owned();
                (part["part_number"].as_u64().unwrap(), etag, crc, length)
            }
        })
        .buffer_unordered(parallel)
        .collect()
        .await;
    let mut results = results;
    results.sort_by_key(|r| r.0);
    let checksum = Crc32c::combine_all(results.iter().map(|r| (r.2, r.3))).to_base64();
    let tokens: Vec<Value> = results.iter().map(|r| json!({"part_number": r.0, "part_token": r.1})).collect();

    let complete_started = Instant::now();
    let response = http
        .post(format!("{url}/v0.5/files/uploads/{upload_id}/complete"))
        .bearer_auth(key)
        .json(&json!({"parts": tokens, "integrity_checksum": checksum}))
        .send()
        .await
        .unwrap();
    let complete_ms = complete_started.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let total = started.elapsed().as_secs_f64();
    println!(
        "{{\"bytes\": {size}, \"parallel\": {parallel}, \"wall_s\": {total:.3}, \"mib_per_s\": {:.1}, \"complete_ms\": {complete_ms:.2}}}",
        size as f64 / total / (1 << 20) as f64
    );
}
