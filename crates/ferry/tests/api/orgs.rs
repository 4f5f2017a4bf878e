//! Orgs, keys and isolation.

use reqwest::Method;
use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn another_orgs_ids_answer_404_on_every_route() {
    let server = Server::start();
    let owner = server.client();
    let stranger = server.new_org("strangers");
    let data = bytes(2 * PART, 60);
    owner.upload("private.bin", &data).await;
    let upload = owner.start_upload("open.bin", data.len()).await;
    let tokens = upload.put_all(&data).await;
    let id = upload.id();

    stranger.part_urls(id, json!([0])).await.assert_error(404, "upload_not_found");
    stranger.checkpoint(id, tokens.clone()).await.assert_error(404, "upload_not_found");
    stranger.complete(id, tokens.clone()).await.assert_error(404, "upload_not_found");
    stranger.abort(id).await.assert_error(404, "upload_not_found");
    stranger.download("private.bin").await.assert_error(404, "file_not_found");
    let head = stranger.call(Method::HEAD, "/v0.5/files/download/private.bin", None).await;
    assert_eq!(head.status, 404);
    // Resuming by name does not reach into another org either.
    assert_eq!(stranger.resume("open.bin", data.len()).await.assert_ok()["is_resume"], false);

    // The owner's upload was untouched by all of that.
    owner.complete(id, tokens).await.assert_ok();
    assert_eq!(owner.download("open.bin").await.body, data);
}

#[tokio::test]
async fn admin_commands_manage_keys_while_the_server_runs() {
    let server = Server::start();
    let research = server.new_org("research");
    research.initiate("a.bin", 10).await.assert_ok();

    let list = server.admin(&["key", "list", "--org", "research"]);
    assert!(list.status.success());
    let listing = String::from_utf8(list.stdout).unwrap();
    let key_id = format!("key_{}", &research.key[4..30]);
    assert!(listing.contains(&key_id), "{listing}");
    assert!(!listing.contains(&research.key[31..]), "the listing shows the secret");

    let revoke = server.admin(&["key", "revoke", &key_id]);
    assert!(revoke.status.success(), "{}", String::from_utf8_lossy(&revoke.stderr));
    research.initiate("a.bin", 10).await.assert_error(401, "invalid_api_key");
    assert!(String::from_utf8(server.admin(&["key", "list", "--org", "research"]).stdout).unwrap().contains("Z"));

    let duplicate = server.admin(&["org", "create", "research"]);
    assert!(!duplicate.status.success());
    assert!(String::from_utf8_lossy(&duplicate.stderr).contains("already exists"));
    assert!(!server.admin(&["key", "create", "--org", "nobody"]).status.success());
}

#[tokio::test]
async fn keys_are_stored_only_as_hashes_and_never_logged() {
    let server = Server::start();
    let other = server.new_org("other");
    server.client().initiate("a.bin", 10).await.assert_ok();
    other.initiate("b.bin", 10).await.assert_ok();
    let stored = server.stored_metadata();
    let log = server.log();
    for key in [&server.key, &other.key] {
        let secret = &key[31..];
        assert!(!stored.windows(secret.len()).any(|w| w == secret.as_bytes()), "a key is stored in the clear");
        assert!(!log.contains(secret), "a key is in the log");
    }
}

/// Names that look like paths never reach the filesystem: they are refused,
/// or (a client's path in a simple upload) reduced to their last component,
/// and nothing is written outside the data dir.
#[tokio::test]
async fn names_that_try_to_escape_are_refused_and_nothing_lands_outside_the_data_dir() {
    let server = Server::start();
    let client = server.client();
    for name in ["../escape.bin", "../../escape.bin", "/etc/escape.bin", "a/../../escape.bin", "..\\escape.bin"] {
        client.initiate(name, 10).await.assert_error(400, "invalid_parameter");
    }
    let uploaded = client.simple_upload("../../escape.bin", b"x".to_vec(), None).await.assert_ok();
    assert_eq!(uploaded["file_id"], "escape.bin");
    for path in ["/v0.5/files/download/..%2F..%2Fescape.bin", "/v0.5/files/metadata/..%2Fescape.bin"] {
        client.get(path).await.assert_error(404, "file_not_found");
    }
    client.delete("..%2F..%2Fserver.log").await.assert_error(404, "file_not_found");
    // On disk: the test's dir holds the data dir and the log, and nothing
    // named after a client's file exists anywhere under it but as an id.
    let mut entries: Vec<String> =
        std::fs::read_dir(&server.dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    entries.sort();
    assert!(entries.iter().all(|e| e.starts_with("data") || e.starts_with("server")), "{entries:?}");
    let mut stack = vec![server.dir.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            assert!(!entry.file_name().to_string_lossy().contains("escape"), "{:?} was written", entry.path());
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            }
        }
    }
}

#[tokio::test]
async fn org_names_are_checked_before_anything_is_stored() {
    let server = Server::start();
    let long = "x".repeat(5000);
    for name in ["", "../x", "a\nb", "Research", long.as_str()] {
        let out = server.admin(&["org", "create", name]);
        assert!(!out.status.success(), "{name:?} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("org name"), "{name:?}: {stderr}");
    }
    // None of them exists; a good name still works.
    for name in ["", "../x", "Research"] {
        assert!(!server.admin(&["key", "create", "--org", name]).status.success());
    }
    assert!(server.admin(&["org", "create", "ml-team.eu_2"]).status.success());
}
