//! Crashes, restarts and the first start.

use std::os::unix::fs::PermissionsExt;

use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn after_a_sigkill_a_restarted_server_resumes_the_upload() {
    let options =
        || Options { bootstrap_key: Some(ferry_core::api_key::ApiKey::generate().to_string()), ..Options::default() };
    let first_options = options();
    let key = first_options.bootstrap_key.clone();
    let mut server = Server::start_with(first_options);
    let client = server.client();
    let data = bytes(4 * PART + 99, 70);
    let upload = client.start_upload("crash.bin", data.len()).await;
    let mut done = Vec::new();
    for part in &upload.parts()[..2] {
        let token = put_part(part, &data).await;
        done.push(json!({"part_number": part["part_number"], "part_token": token}));
    }
    client.checkpoint(upload.id(), json!(done)).await.assert_ok();
    // Part 4 is written but not checkpointed when the server dies.
    put_part(&upload.parts()[4], &data).await;

    server.kill();
    let temp = server.take_dir();
    let restarted = Server::start_in(&server.dir, Options { bootstrap_key: key, ..options() }, temp);
    let client = restarted.client();
    let resumed = Upload(client.resume("crash.bin", data.len()).await.assert_ok());
    assert_eq!(resumed.id(), upload.id());
    assert_eq!(resumed.0["is_resume"], true);
    let remaining: Vec<u64> = resumed.parts().iter().map(|p| p["part_number"].as_u64().unwrap()).collect();
    assert_eq!(remaining, [2, 3, 4]);
    let tokens = resumed.put_all(&data).await;
    client.complete_checked(&resumed, tokens, &data).await.assert_ok();
    assert_eq!(sha256(&client.download("crash.bin").await.body), sha256(&data));
}

#[tokio::test]
async fn the_first_start_creates_the_data_dir_and_prints_a_key_once() {
    // This is about the embedded default, whatever layout the suite runs in.
    let embedded = || Options { bootstrap_key: None, layout: Layout::Embedded, ..Options::default() };
    let mut server = Server::start_with(embedded());
    assert!(server.key.starts_with("fry_"), "no key printed: {:?}", server.stdout());
    server.client().initiate("a.bin", 10).await.assert_ok();
    let data = server.data_dir();
    assert!(data.join("ferry.db-wal").exists(), "the database is not in WAL mode");
    let mode = std::fs::metadata(data.join("server-secret")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(!server.log().contains(&server.key[31..]));

    let key = server.key.clone();
    server.kill();
    let temp = server.take_dir();
    let again = Server::start_in(&server.dir, embedded(), temp);
    assert!(again.stdout().iter().all(|l| !l.contains("fry_")), "a second key was printed");
    again.client_with_key(&key).initiate("a.bin", 10).await.assert_ok();
}
