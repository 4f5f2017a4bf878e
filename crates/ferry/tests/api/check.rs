//! `ferry admin check`: the metadata and the stored bytes agree after a
//! day's work, and every kind of disagreement is reported.

use crate::harness::*;

#[tokio::test]
async fn check_finds_nothing_after_ordinary_work_and_reports_what_goes_wrong() {
    let server = Server::start_with(eager_janitor());
    let client = server.client();
    client.upload("kept.bin", &bytes(PART + 10, 190)).await;
    client.upload("replaced.bin", b"old").await;
    client.upload("replaced.bin", b"new").await;
    client.simple_upload("gone.csv", b"a\n".to_vec(), None).await.assert_ok();
    client.delete("gone.csv").await.assert_ok();
    let open = client.start_upload("open.bin", 2 * PART).await;
    put_part(&open.parts()[0], &bytes(2 * PART, 191)).await;
    let aborted = client.start_upload("aborted.bin", 10).await;
    client.abort(aborted.id()).await.assert_ok_empty();
    eventually("the janitor deleted what was replaced and deleted", || async {
        server.blobs("files").await.len() == 2
    })
    .await;

    let (clean, report) = server.check();
    assert!(clean, "{report}");
    assert!(report.contains("checked 2 files, 1 uploads in progress"), "{report}");

    // Disagreements can only be made by hand on a local disk.
    if server.layout() == Layout::ScaleOut {
        return;
    }
    let kept = client.metadata("kept.bin").await.assert_ok()["file_uid"].as_str().unwrap().to_owned();
    let files = server.data_dir().join("blobs/files");
    std::fs::remove_file(files.join(&kept)).unwrap();
    std::fs::write(files.join("fil_01jfz8k2m4c5v6b7n8p9q0r1s2"), b"stray").unwrap();
    std::fs::write(files.join("notes.txt"), b"?").unwrap();
    std::fs::remove_file(server.data_dir().join("blobs/staging").join(open.id())).unwrap();
    let (clean, report) = server.check();
    assert!(!clean, "{report}");
    for expected in [
        format!("file {kept} holds a name but its bytes are missing"),
        "file fil_01jfz8k2m4c5v6b7n8p9q0r1s2's bytes are stored but nothing refers to them".into(),
        "`files/notes.txt` in the store is not ferry's".into(),
        format!("upload {} is in progress but has no storage", open.id()),
    ] {
        assert!(report.contains(&expected), "missing `{expected}` in\n{report}");
    }
}
