//! The embedded blob store on a real temp dir.

use bytes::Bytes;
use ferry_blob::{BlobError, BlobStore, LocalDisk, PartWriter, StoreUpload};
use ferry_core::blob_key::BlobKey;
use ferry_core::checksum::Crc32c;
use ferry_core::ids::{FileUid, UploadId};
use ferry_core::plan::PartPlan;
use futures_util::TryStreamExt;

const MIB: usize = 1024 * 1024;

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    disk: LocalDisk,
    upload: UploadId,
    file: FileUid,
    plan: PartPlan,
    bytes: Vec<u8>,
}

async fn fixture(len: usize) -> Fixture {
    fixture_with_parts_of(len, 5 * MIB).await
}

async fn fixture_with_parts_of(len: usize, part_size: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("blobs");
    let disk = LocalDisk::open(&root).unwrap();
    let upload = UploadId::generate();
    let file = FileUid::generate();
    disk.create_upload(&upload, &file, len as u64).await.unwrap();
    let plan = PartPlan::new(len as u64, part_size as u64).unwrap();
    Fixture { _dir: dir, root, disk, upload, file, plan, bytes: data(len) }
}

impl Fixture {
    /// Writes part `n` in uneven chunks, as a network would deliver it.
    async fn put(&self, n: u32) -> Crc32c {
        let range = self.plan.part(n).unwrap();
        let mut writer = self.writer(n).await.unwrap();
        let part = &self.bytes[range.offset as usize..range.end() as usize];
        for chunk in part.chunks(70_001) {
            writer.write(Bytes::copy_from_slice(chunk)).await.unwrap();
        }
        let (digest, _claim) = writer.finish().await.unwrap();
        assert_eq!(digest.num_bytes, range.length);
        digest.crc32c
    }

    /// Claims part `n` and opens it for writing.
    async fn writer(&self, n: u32) -> Result<PartWriter, BlobError> {
        self.disk.claim_part(&self.upload, n)?.open(&self.file, self.plan.part(n).unwrap()).await
    }

    async fn read(&self, range: std::ops::Range<u64>) -> Vec<u8> {
        let stream = self.disk.read(&self.file, range).await.unwrap();
        stream.try_collect::<Vec<Bytes>>().await.unwrap().concat()
    }

    /// What a complete does to the bytes: seal, rename, unseal.
    async fn complete(&self) {
        self.disk.seal(&self.upload).unwrap().place(&self.file).await.unwrap();
    }

    fn store_upload(&self) -> StoreUpload<'static> {
        StoreUpload { upload_id: self.upload, file_uid: self.file, store_upload_id: None }
    }

    fn staging(&self) -> std::path::PathBuf {
        self.root.join("staging").join(self.upload.to_string())
    }
}

#[tokio::test]
async fn parts_land_in_place_and_complete_turns_them_into_the_file() {
    let f = fixture(12 * MIB + 3).await;
    // Out of order, as parallel clients send them.
    let crcs = [f.put(2).await, f.put(0).await, f.put(1).await];
    assert_eq!(crcs[1], Crc32c::of(&f.bytes[..5 * MIB]));
    let combined = Crc32c::combine_all([crcs[1], crcs[2], crcs[0]].into_iter().zip(f.plan.parts().map(|r| r.length)));
    assert_eq!(combined, Crc32c::of(&f.bytes));

    f.complete().await;
    assert!(!f.staging().exists());
    assert_eq!(f.read(0..f.bytes.len() as u64).await, f.bytes);
    assert_eq!(f.read(5..5 * MIB as u64 + 7).await, &f.bytes[5..5 * MIB + 7]);
    // Completing again (a retry after a crash before the commit) is fine.
    f.complete().await;
}

/// Parts are written past the page cache in aligned blocks where the
/// filesystem allows; a part starting or ending off a block boundary
/// must land byte for byte all the same.
#[tokio::test]
async fn parts_off_block_boundaries_land_byte_for_byte() {
    let f = fixture_with_parts_of(16 * MIB + 4097, 5 * MIB + 1000).await;
    let crcs = [f.put(3).await, f.put(1).await, f.put(0).await, f.put(2).await];
    assert_eq!(crcs[2], Crc32c::of(&f.bytes[..5 * MIB + 1000]));
    f.complete().await;
    assert_eq!(f.read(0..f.bytes.len() as u64).await, f.bytes);
}

#[tokio::test]
async fn a_body_too_long_is_refused_and_nothing_lands_past_the_part() {
    let f = fixture(10 * MIB).await;
    let mut writer = f.writer(0).await.unwrap();
    writer.write(Bytes::from(vec![7u8; 5 * MIB - 1])).await.unwrap();
    let refused = writer.write(Bytes::from(vec![7u8; 2])).await;
    assert!(matches!(refused, Err(BlobError::TooLong { .. })), "{refused:?}");
    drop(writer);
    let staging = std::fs::read(f.staging()).unwrap();
    assert!(staging[5 * MIB..].iter().all(|&b| b == 0), "bytes were written past the part");
}

#[tokio::test]
async fn a_body_too_short_is_refused_at_the_end() {
    let f = fixture(10 * MIB).await;
    let mut writer = f.writer(1).await.unwrap();
    writer.write(Bytes::from(vec![1u8; 100])).await.unwrap();
    let refused = writer.finish().await;
    assert!(matches!(refused, Err(BlobError::TooShort { received: 100, .. })), "{refused:?}");
}

#[tokio::test]
async fn one_part_takes_one_writer_at_a_time_and_a_seal_waits_for_none() {
    let f = fixture(10 * MIB).await;
    let first = f.writer(0).await.unwrap();
    let second = f.disk.claim_part(&f.upload, 0);
    assert!(matches!(second, Err(BlobError::PartInProgress)));
    // Another part is free.
    drop(f.writer(1).await.unwrap());
    // A complete never seals an upload a writer is writing into...
    assert!(matches!(f.disk.seal(&f.upload), Err(BlobError::PartInProgress)));
    // ...nor one whose written part is not yet recorded: the claim comes
    // back from finish and is held until then.
    drop(first);
    let mut writer = f.writer(0).await.unwrap();
    writer.write(Bytes::copy_from_slice(&f.bytes[..5 * MIB])).await.unwrap();
    let (_, claim) = writer.finish().await.unwrap();
    assert!(matches!(f.disk.seal(&f.upload), Err(BlobError::PartInProgress)));
    drop(claim);
    f.put(1).await;
    // While sealed, no part can be claimed and no other complete seals.
    let seal = f.disk.seal(&f.upload).unwrap();
    assert!(matches!(f.disk.claim_part(&f.upload, 0), Err(BlobError::UploadSealed)));
    assert!(matches!(f.disk.seal(&f.upload), Err(BlobError::UploadSealed)));
    seal.place(&f.file).await.unwrap();
    drop(seal);
    assert_eq!(f.read(0..f.bytes.len() as u64).await, f.bytes);
}

#[tokio::test]
async fn a_placed_file_whose_commit_never_came_takes_parts_again() {
    let f = fixture(10 * MIB).await;
    f.put(0).await;
    f.put(1).await;
    // A complete renamed the staging file, then crashed or was refused.
    f.disk.seal(&f.upload).unwrap().place(&f.file).await.unwrap();
    assert!(!f.staging().exists());
    // The next PUT (whose caller read the upload as active) restores it.
    let mut writer = f.writer(1).await.unwrap();
    assert!(f.staging().exists());
    writer.write(Bytes::copy_from_slice(&f.bytes[5 * MIB..])).await.unwrap();
    drop(writer.finish().await.unwrap());
    // A refused commit undoes the rename itself.
    let seal = f.disk.seal(&f.upload).unwrap();
    seal.place(&f.file).await.unwrap();
    seal.unplace(&f.file).await.unwrap();
    drop(seal);
    assert!(f.staging().exists());
    f.complete().await;
    assert_eq!(f.read(0..f.bytes.len() as u64).await, f.bytes);
    // With neither the staging file nor the file, the upload is gone.
    f.disk.abort_upload(f.store_upload()).await.unwrap();
    assert!(matches!(f.writer(0).await, Err(BlobError::UploadGone)));
}

#[tokio::test]
async fn abort_frees_the_staging_file_and_any_uncommitted_file() {
    let f = fixture(MIB).await;
    f.put(0).await;
    f.complete().await;
    let file = f.root.join("files").join(f.file.to_string());
    assert!(file.exists());
    f.disk.abort_upload(f.store_upload()).await.unwrap();
    assert!(!file.exists() && !f.staging().exists());
    // Deleting what is gone succeeds: the deletion queue may retry.
    f.disk.delete(&BlobKey::upload(f.upload, f.file, None)).await.unwrap();
    f.disk.delete(&BlobKey::File(f.file)).await.unwrap();
}

#[tokio::test]
async fn a_new_upload_never_reuses_an_existing_staging_file() {
    let f = fixture(MIB).await;
    let again = f.disk.create_upload(&f.upload, &f.file, 10).await;
    assert!(again.is_err());
    assert_eq!(std::fs::metadata(f.staging()).unwrap().len(), MIB as u64);
}
