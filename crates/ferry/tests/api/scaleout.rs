//! Several nodes on one database and one bucket (design §2): any node
//! serves any request, races resolve in the database, and losing a node
//! loses nothing. In the single-node layouts the same tests hold on one node.

use serde_json::{Value, json};

use crate::harness::*;
use crate::services::OwnGarage;

#[tokio::test]
async fn each_step_of_an_upload_may_go_to_a_different_node() {
    let server = Server::start();
    let client = server.client();
    let data = bytes(3 * PART + 11, 130);
    // The client alternates nodes: initiate, URLs, checkpoint and complete
    // each land on the node after the previous one's.
    let upload = client.start_upload("roaming.bin", data.len()).await;
    let fresh = client.part_urls(upload.id(), json!([0, 1, 2, 3])).await.assert_ok();
    let mut tokens = Vec::new();
    for part in fresh["parts"].as_array().unwrap() {
        let token = put_part(part, &data).await;
        tokens.push(json!({"part_number": part["part_number"], "part_token": token}));
    }
    client.checkpoint(upload.id(), json!(tokens[..2])).await.assert_ok();
    client.complete_checked(&upload, json!(tokens[2..]), &data).await.assert_ok();
    for _ in 0..server.node_count() {
        assert_eq!(sha256(&client.download("roaming.bin").await.body), sha256(&data));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_complete_racing_an_abort_has_exactly_one_winner() {
    let server = Server::start();
    let client = server.client();
    for round in 0..20u64 {
        let name = format!("contest-{round}.bin");
        let data = bytes(1000, 140 + round);
        let upload = client.start_upload(&name, data.len()).await;
        let tokens = upload.put_all(&data).await;
        let (completer, aborter, id) = (client.clone(), client.clone(), upload.id().to_owned());
        let id2 = id.clone();
        let (completed, aborted) = tokio::join!(
            tokio::spawn(async move { completer.complete(&id, tokens).await }),
            tokio::spawn(async move { aborter.abort(&id2).await }),
        );
        let (completed, aborted) = (completed.unwrap(), aborted.unwrap());
        match (completed.status.as_u16(), aborted.status.as_u16()) {
            (200, 409) => {
                aborted.assert_error(409, "upload_completed");
                assert_eq!(client.download(&name).await.body, data, "round {round}");
            }
            (404, 200) => {
                completed.assert_error(404, "upload_not_found");
                client.download(&name).await.assert_error(404, "file_not_found");
            }
            other => panic!("round {round}: complete and abort answered {other:?}"),
        }
    }
    // Whatever each race decided, no storage of an aborted upload is left.
    eventually("aborted uploads' storage is freed", || async { server.blobs("staging").await.is_empty() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_resumes_at_once_get_the_same_upload() {
    let server = Server::start();
    let client = server.client();
    let data = bytes(2 * PART, 150);
    let first = client.start_upload("twice-resumed.bin", data.len()).await;
    let token = put_part(&first.parts()[0], &data).await;
    client.checkpoint(first.id(), json!([{"part_number": 0, "part_token": token}])).await.assert_ok();
    for _ in 0..5 {
        let (a, b, len) = (client.clone(), client.clone(), data.len());
        let (ra, rb) = tokio::join!(
            tokio::spawn(async move { a.resume("twice-resumed.bin", len).await }),
            tokio::spawn(async move { b.resume("twice-resumed.bin", len).await }),
        );
        for reply in [ra.unwrap().assert_ok(), rb.unwrap().assert_ok()] {
            assert_eq!((reply["upload_id"].as_str(), reply["is_resume"].as_bool()), (Some(first.id()), Some(true)));
            let remaining: Vec<&Value> = reply["parts"].as_array().unwrap().iter().collect();
            assert_eq!(remaining.len(), 1);
            assert_eq!(remaining[0]["part_number"], 1);
        }
    }
}

/// A node dies mid-upload; the client carries on with the other one (in the
/// single-node layouts, with the same node restarted).
#[tokio::test]
async fn losing_a_node_mid_upload_loses_nothing() {
    let key = ferry_core::api_key::ApiKey::generate().to_string();
    let options = || Options { bootstrap_key: Some(key.clone()), ..Options::default() };
    let mut server = Server::start_with(options());
    let data = bytes(4 * PART + 3, 160);
    let upload = server.client().start_upload("survivor.bin", data.len()).await;
    let mut tokens = Vec::new();
    for part in &upload.parts()[..2] {
        let token = put_part(part, &data).await;
        tokens.push(json!({"part_number": part["part_number"], "part_token": token}));
    }
    server.client().checkpoint(upload.id(), json!(tokens)).await.assert_ok();

    server.kill_node(0);
    let _restarted;
    let client = if server.node_count() > 1 {
        server.client()
    } else {
        let temp = server.take_dir();
        _restarted = Server::start_in(&server.dir, options(), temp);
        _restarted.client()
    };
    let resumed = Upload(client.resume("survivor.bin", data.len()).await.assert_ok());
    assert_eq!(resumed.id(), upload.id());
    let remaining: Vec<u64> = resumed.parts().iter().map(|p| p["part_number"].as_u64().unwrap()).collect();
    assert_eq!(remaining, [2, 3, 4]);
    let rest = resumed.put_all(&data).await;
    client.complete_checked(&resumed, rest, &data).await.assert_ok();
    assert_eq!(sha256(&client.download("survivor.bin").await.body), sha256(&data));
}

/// A three-node Garage keeping every object on all three loses a node
/// mid-upload: writes still reach a quorum of two, so the uploads under way
/// complete, new ones (the real client's too) go through, and every file
/// reads back whole. The test brings its own cluster, so it runs two nodes
/// on it whatever the suite's layout.
#[tokio::test]
async fn a_garage_node_lost_mid_upload_loses_nothing() {
    let Some(garage) = OwnGarage::start(3) else { return };
    let options = Options { layout: Layout::ScaleOut, s3: Some(garage.store.clone()), ..Options::default() };
    let server = Server::start_with(options);
    let client = server.client();
    let mut under_way = Vec::new();
    for i in 0..4u64 {
        let data = bytes(2 * PART + 7, 300 + i);
        let upload = client.start_upload(&format!("cluster-{i}.bin"), data.len()).await;
        let first = json!({"part_number": 0, "part_token": put_part(&upload.parts()[0], &data).await});
        under_way.push((upload, data, vec![first]));
    }

    garage.kill_node(2);
    for (upload, data, tokens) in &mut under_way {
        for part in &upload.parts()[1..] {
            tokens.push(json!({"part_number": part["part_number"], "part_token": put_part(part, data).await}));
        }
        client.complete_checked(upload, json!(tokens), data).await.assert_ok();
    }
    let small = bytes(1000, 310);
    client.simple_upload("cluster-small.bin", small.clone(), None).await.assert_ok();
    let work = tempfile::tempdir().unwrap();
    let fresh = bytes(3 * PART, 311);
    std::fs::write(work.path().join("cluster-fresh.bin"), &fresh).unwrap();
    let output = cli(&server, work.path(), &["upload"]).arg(work.path().join("cluster-fresh.bin")).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let mut expected: Vec<(String, &[u8])> =
        under_way.iter().enumerate().map(|(i, (_, data, _))| (format!("cluster-{i}.bin"), &data[..])).collect();
    expected.extend([("cluster-small.bin".to_owned(), &small[..]), ("cluster-fresh.bin".to_owned(), &fresh[..])]);
    for (name, data) in expected {
        for _ in 0..server.node_count() {
            assert_eq!(sha256(&client.download(&name).await.body), sha256(data), "{name}");
        }
    }
    let (consistent, report) = server.check();
    assert!(consistent, "{report}");
}
