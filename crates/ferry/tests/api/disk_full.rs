//! Design §4: a disk that fills up mid-upload. The data dir sits on a small
//! tmpfs made by the test (mounting one needs root; without it the test
//! fails and says so).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::harness::*;

/// A tmpfs of a given size, unmounted on drop.
struct SmallDisk {
    point: PathBuf,
    /// Where the mount point lives; removed after the unmount.
    _parent: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let point = dir.path().join("disk");
        std::fs::create_dir(&point).unwrap();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&point)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "mounting a {size}-byte tmpfs for the disk-full test failed (it needs root): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Self { point, _parent: dir }
    }

    fn path(&self) -> &Path {
        &self.point
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.point).status();
    }
}

#[tokio::test]
async fn a_full_disk_answers_507_keeps_nothing_partial_and_recovers_once_space_is_freed() {
    // With an S3 store the bytes are not on this disk.
    if Layout::current().lacks(Needs::FerryTakesParts) || !needs_integration("root, to mount a tmpfs") {
        return;
    }
    let disk = SmallDisk::mount(40 * MIB);
    let server = Server::start_in(disk.path(), Options::default(), None);
    let client = server.client();
    let filler = disk.path().join("filler");
    std::fs::write(&filler, vec![0u8; 22 * MIB]).unwrap();

    let data = bytes(4 * PART, 180);
    let upload = client.start_upload("big.bin", data.len()).await;
    let mut statuses = Vec::new();
    let mut tokens = Vec::new();
    for part in upload.parts() {
        let reply = put(part["url"].as_str().unwrap(), slice(part, &data).to_vec()).await;
        if reply.status == 200 {
            tokens.push(json!({"part_number": part["part_number"], "part_token": reply.header("etag").unwrap()}));
        } else {
            reply.assert_error(507, "capacity_reached");
        }
        statuses.push(reply.status.as_u16());
    }
    assert!(statuses.contains(&507), "the disk never filled: {statuses:?}");
    // The server is up, and nothing partial was registered.
    reply(http().get(format!("{}/health", server.url)).send().await.unwrap()).await.assert_ok_empty_or_text();
    client.complete(upload.id(), json!(tokens)).await.assert_error(400, "missing_parts");
    client.metadata("big.bin").await.assert_error(404, "file_not_found");
    let whole = client.simple_upload("small.bin", bytes(12 * MIB, 181), None).await;
    whole.assert_error(507, "capacity_reached");
    client.metadata("small.bin").await.assert_error(404, "file_not_found");

    // Space comes back: the same uploads complete.
    std::fs::remove_file(&filler).unwrap();
    let resumed = Upload(client.resume("big.bin", data.len()).await.assert_ok());
    assert_eq!(resumed.id(), upload.id());
    let rest = resumed.put_all(&data).await;
    let mut all = tokens.clone();
    all.extend(rest.as_array().unwrap().iter().cloned());
    client.complete_checked(&resumed, json!(all), &data).await.assert_ok();
    assert_eq!(sha256(&client.download("big.bin").await.body), sha256(&data));
    client.simple_upload("small.bin", bytes(12 * MIB, 181), None).await.assert_ok();
    drop(server);
}
