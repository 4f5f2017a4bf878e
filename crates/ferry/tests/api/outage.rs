//! PostgreSQL restarted mid-upload: every node answers 503 meanwhile (the
//! client retries those), then requests succeed and nothing is lost. The
//! test runs its own PostgreSQL, so stopping it disturbs no other test.

use std::io::BufRead;
use std::process::Stdio;

use serde_json::json;

use crate::harness::*;
use crate::services::OwnPostgres;

#[tokio::test]
async fn a_database_restart_answers_503_meanwhile_and_loses_nothing() {
    let Some(postgres) = OwnPostgres::start() else { return };
    // Local disk on one node, or in the scale-out layout two nodes and the
    // bucket; either way on this PostgreSQL.
    let layout = if Layout::current() == Layout::ScaleOut { Layout::ScaleOut } else { Layout::Postgres };
    let server =
        Server::start_with(Options { layout, database_url: Some(postgres.database_url()), ..Options::default() });
    let client = server.client();
    let data = bytes(3 * PART + 3, 210);
    let upload = client.start_upload("outage.bin", data.len()).await;
    let mut tokens = vec![json!({"part_number": 0, "part_token": put_part(&upload.parts()[0], &data).await})];

    postgres.stop();
    for _ in 0..server.node_count() {
        let info = client.get("/v0.5/files/info").await;
        info.assert_error(503, "service_unavailable");
        assert!(info.header("retry-after").is_some());
        client.part_urls(upload.id(), json!([1])).await.assert_error(503, "service_unavailable");
    }
    let health = reply(http().get(format!("{}/health", server.url)).send().await.unwrap()).await;
    assert_eq!(health.status, 503);
    let part = &upload.parts()[1];
    if layout == Layout::ScaleOut {
        // Part bytes go to the store, which does not need the database.
        tokens.push(json!({"part_number": 1, "part_token": put_part(part, &data).await}));
    } else {
        put(part["url"].as_str().unwrap(), slice(part, &data).to_vec()).await.assert_error(503, "service_unavailable");
    }

    // The real client, started during the outage, waits it out.
    let work = tempfile::tempdir().unwrap();
    let patient = bytes(2 * PART + 5, 211);
    let path = work.path().join("patient.bin");
    std::fs::write(&path, &patient).unwrap();
    let mut uploader = cli(&server, work.path(), &["upload", "--json"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = uploader.stderr.take().unwrap();
    let (retrying, told) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("retrying") {
                let _ = retrying.send(());
            }
            lines.push(line);
        }
        lines
    });
    tokio::task::spawn_blocking(move || told.recv().expect("the client exited without retrying")).await.unwrap();

    postgres.start_again();
    let output = tokio::task::spawn_blocking(move || uploader.wait_with_output()).await.unwrap().unwrap();
    let told = reader.join().unwrap().join("\n");
    assert!(output.status.success(), "the client gave up:\n{told}");
    assert!(told.contains("503") || told.contains("unavailable"), "it retried something else:\n{told}");

    for part in &upload.parts()[tokens.len()..] {
        tokens.push(json!({"part_number": part["part_number"], "part_token": put_part(part, &data).await}));
    }
    client.complete_checked(&upload, json!(tokens), &data).await.assert_ok();
    for _ in 0..server.node_count() {
        assert_eq!(sha256(&client.download("outage.bin").await.body), sha256(&data));
        assert_eq!(sha256(&client.download("patient.bin").await.body), sha256(&patient));
    }
    let (consistent, report) = server.check();
    assert!(consistent, "{report}");
}

/// The object store gone (its one Garage node killed): after retrying for
/// its bounded while, every request that needs the store answers 503
/// service_unavailable with Retry-After, and nothing is registered. The
/// test brings its own Garage; it runs with the scale-out layout's suite.
#[tokio::test]
async fn an_object_store_that_cannot_be_reached_answers_503() {
    if Layout::current() != Layout::ScaleOut {
        return;
    }
    let Some(garage) = crate::services::OwnGarage::start(1) else { return };
    let options = Options { layout: Layout::ScaleOut, s3: Some(garage.store.clone()), ..Options::default() };
    let server = Server::start_with(options);
    let client = server.client();
    client.upload("before.bin", &bytes(1000, 220)).await;

    garage.kill_node(0);
    let initiate = client.initiate("during.bin", 10 * PART).await;
    initiate.assert_error(503, "service_unavailable");
    assert!(initiate.header("retry-after").is_some());
    client.simple_upload("during-small.bin", bytes(100, 221), None).await.assert_error(503, "service_unavailable");
    client.download("before.bin").await.assert_error(503, "service_unavailable");
    let health = reply(http().get(format!("{}/health", server.url)).send().await.unwrap()).await;
    assert_eq!(health.status, 503);
    // The metadata store still answers: one file, nothing half-made.
    assert_eq!(client.get("/v0.5/files/info").await.assert_ok()["num_files"], 1);
    client.metadata("during-small.bin").await.assert_error(404, "file_not_found");
}
