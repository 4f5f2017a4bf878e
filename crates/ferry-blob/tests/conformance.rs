//! What every blob store must do, written once against `BlobStore` and run
//! against the local disk and an S3-compatible store (the Garage that
//! scripts/test starts). Putting a part is the one thing done differently:
//! into ferry's part writer, or to the store's presigned URL.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferry_blob::{BlobError, BlobStore, LocalDisk, S3, S3Config, StoreUpload};
use ferry_core::blob_key::BlobKey;
use ferry_core::checksum::Crc32c;
use ferry_core::ids::{FileUid, UploadId};
use ferry_core::plan::PartPlan;
use ferry_core::token::PartToken;
use futures_util::TryStreamExt;

const MIB: usize = 1024 * 1024;

enum Kind {
    Local(Arc<LocalDisk>),
    S3(Arc<S3>),
}

struct Backend {
    store: Arc<dyn BlobStore>,
    kind: Kind,
    _dir: Option<tempfile::TempDir>,
}

fn local() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let disk = Arc::new(LocalDisk::open(&dir.path().join("blobs")).unwrap());
    Backend { store: disk.clone(), kind: Kind::Local(disk), _dir: Some(dir) }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run ./scripts/test, which starts Garage"))
}

/// The bucket scripts/test set up, under a prefix of this test's own.
/// Without Garage the S3 tests are skipped, saying so, unless the run
/// requires every service (`FERRY_TEST_INTEGRATION=1`): then they fail.
fn s3() -> Option<Backend> {
    if std::env::var_os("FERRY_TEST_S3_ENDPOINT").is_none()
        && !std::env::var("FERRY_TEST_INTEGRATION").is_ok_and(|v| v == "1")
    {
        eprintln!("skipped: FERRY_TEST_S3_ENDPOINT is not set (./scripts/test starts Garage)");
        return None;
    }
    let store = S3::new(S3Config {
        endpoint: env("FERRY_TEST_S3_ENDPOINT"),
        region: env("FERRY_TEST_S3_REGION"),
        bucket: env("FERRY_TEST_S3_BUCKET"),
        prefix: format!("conformance-{}/", FileUid::generate()),
        access_key_id: env("FERRY_TEST_S3_ACCESS_KEY_ID"),
        secret_access_key: env("FERRY_TEST_S3_SECRET_ACCESS_KEY"),
        url_ttl: Duration::from_secs(600),
        page_size: S3Config::DEFAULT_PAGE_SIZE,
        retry_for: S3Config::DEFAULT_RETRY_FOR,
    })
    .unwrap();
    let store = Arc::new(store);
    Some(Backend { store: store.clone(), kind: Kind::S3(store), _dir: None })
}

macro_rules! backends {
    ($($test:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(&super::local()).await;
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test]
                async fn $test() {
                    let Some(backend) = super::s3() else { return };
                    super::$test(&backend).await;
                }
            )*
        }
    };
}

backends!(
    a_file_written_whole_reads_back_whole_and_in_ranges,
    a_file_over_its_limit_or_broken_off_leaves_nothing,
    deleting_a_file_is_idempotent,
    parts_put_in_any_order_complete_into_the_file,
    completing_twice_is_safe,
    abort_frees_the_upload_and_any_file_it_became,
);

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn source(bytes: Vec<u8>, chunk: usize) -> ferry_blob::ByteSource<'static> {
    let chunks: Vec<Result<Bytes, ferry_blob::SourceError>> =
        bytes.chunks(chunk).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    Box::pin(futures_util::stream::iter(chunks))
}

async fn read(store: &dyn BlobStore, file: &FileUid, range: std::ops::Range<u64>) -> Result<Vec<u8>, BlobError> {
    let stream = store.read(file, range).await?;
    Ok(stream.try_collect::<Vec<Bytes>>().await.map_err(BlobError::Io)?.concat())
}

async fn a_file_written_whole_reads_back_whole_and_in_ranges(b: &Backend) {
    // Big enough to go to an S3 store in several parts.
    for len in [0, 1000, 12 * MIB + 5] {
        let (file, bytes) = (FileUid::generate(), data(len, 1));
        let digest = b.store.write_file(&file, 64 * MIB as u64, source(bytes.clone(), 100_000)).await.unwrap();
        assert_eq!((digest.num_bytes, digest.crc32c), (len as u64, Crc32c::of(&bytes)));
        assert_eq!(read(b.store.as_ref(), &file, 0..len as u64).await.unwrap(), bytes);
        if len > 10 {
            assert_eq!(read(b.store.as_ref(), &file, 3..10).await.unwrap(), &bytes[3..10]);
        }
    }
}

async fn a_file_over_its_limit_or_broken_off_leaves_nothing(b: &Backend) {
    let file = FileUid::generate();
    let over = b.store.write_file(&file, 6 * MIB as u64, source(data(7 * MIB, 2), MIB)).await;
    assert!(matches!(over, Err(BlobError::TooLong { .. })), "{over:?}");
    assert!(matches!(read(b.store.as_ref(), &file, 0..1).await, Err(BlobError::NotFound)));

    let broken: ferry_blob::ByteSource<'static> = Box::pin(futures_util::stream::iter(vec![
        Ok(Bytes::from(data(6 * MIB, 3))),
        Err(ferry_blob::SourceError::BrokeOff("the client went away".into())),
    ]));
    let file = FileUid::generate();
    assert!(matches!(b.store.write_file(&file, 64 * MIB as u64, broken).await, Err(BlobError::Source(_))));
    assert!(matches!(read(b.store.as_ref(), &file, 0..1).await, Err(BlobError::NotFound)));
}

async fn deleting_a_file_is_idempotent(b: &Backend) {
    let file = FileUid::generate();
    b.store.write_file(&file, 1000, source(data(10, 4), 10)).await.unwrap();
    b.store.delete(&BlobKey::File(file)).await.unwrap();
    assert!(matches!(read(b.store.as_ref(), &file, 0..1).await, Err(BlobError::NotFound)));
    b.store.delete(&BlobKey::File(file)).await.unwrap();
}

/// An upload as a test drives it, through the store's own part path.
struct Upload {
    upload_id: UploadId,
    file_uid: FileUid,
    store_upload_id: Option<String>,
    plan: PartPlan,
    bytes: Vec<u8>,
}

impl Upload {
    async fn start(b: &Backend, len: usize) -> Self {
        let (upload_id, file_uid) = (UploadId::generate(), FileUid::generate());
        let store_upload_id = b.store.create_upload(&upload_id, &file_uid, len as u64).await.unwrap();
        let plan = PartPlan::new(len as u64, 5 * MIB as u64).unwrap();
        Self { upload_id, file_uid, store_upload_id, plan, bytes: data(len, 5) }
    }

    fn store(&self) -> StoreUpload<'_> {
        StoreUpload {
            upload_id: self.upload_id,
            file_uid: self.file_uid,
            store_upload_id: self.store_upload_id.as_deref(),
        }
    }

    async fn put(&self, b: &Backend, n: u32) -> PartToken {
        let range = self.plan.part(n).unwrap();
        let part = Bytes::copy_from_slice(&self.bytes[range.offset as usize..range.end() as usize]);
        match &b.kind {
            Kind::Local(disk) => {
                let mut writer =
                    disk.claim_part(&self.upload_id, n).unwrap().open(&self.file_uid, range).await.unwrap();
                writer.write(part).await.unwrap();
                drop(writer.finish().await.unwrap());
                // Local tokens are made by the server; the store needs none.
                PartToken::from_wire("local")
            }
            Kind::S3(s3) => {
                let url = s3.part_url(self.store(), n, now() + 600).expect("a part of the plan has a URL");
                let response = reqwest::Client::new().put(url).body(part).send().await.unwrap();
                assert!(response.status().is_success(), "{}", response.text().await.unwrap());
                PartToken::from_wire(response.headers()["etag"].to_str().unwrap())
            }
        }
    }

    /// Turns the parts into the file, as each store does at complete.
    async fn complete(&self, b: &Backend, tokens: &BTreeMap<u32, PartToken>) {
        match &b.kind {
            Kind::Local(disk) => disk.seal(&self.upload_id).unwrap().place(&self.file_uid).await.unwrap(),
            Kind::S3(s3) => s3.complete_upload(self.store(), tokens).await.unwrap(),
        }
    }

    async fn put_all(&self, b: &Backend) -> BTreeMap<u32, PartToken> {
        let mut tokens = BTreeMap::new();
        for n in (0..self.plan.num_parts).rev() {
            tokens.insert(n, self.put(b, n).await);
        }
        tokens
    }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

async fn parts_put_in_any_order_complete_into_the_file(b: &Backend) {
    let upload = Upload::start(b, 11 * MIB + 7).await;
    let tokens = upload.put_all(b).await;
    if let Kind::S3(s3) = &b.kind {
        // The store's own record of the parts, with the tokens the PUTs got.
        let stored = s3.stored_parts(upload.store()).await.unwrap();
        assert_eq!(stored.len(), 3);
        for (n, token) in &tokens {
            assert_eq!(&stored[n].token, token);
            assert_eq!(stored[n].num_bytes, upload.plan.part(*n).unwrap().length);
        }
    }
    upload.complete(b, &tokens).await;
    let read_back = read(b.store.as_ref(), &upload.file_uid, 0..upload.bytes.len() as u64).await.unwrap();
    assert!(read_back == upload.bytes, "the completed file differs from its parts");
}

async fn completing_twice_is_safe(b: &Backend) {
    let upload = Upload::start(b, 100).await;
    let tokens = upload.put_all(b).await;
    upload.complete(b, &tokens).await;
    upload.complete(b, &tokens).await;
    assert_eq!(read(b.store.as_ref(), &upload.file_uid, 0..100).await.unwrap(), upload.bytes);
}

async fn abort_frees_the_upload_and_any_file_it_became(b: &Backend) {
    let open = Upload::start(b, 6 * MIB).await;
    open.put(b, 0).await;
    b.store.abort_upload(open.store()).await.unwrap();
    b.store.abort_upload(open.store()).await.unwrap();

    // Completed in the store but never committed: the abort removes it too.
    let done = Upload::start(b, 100).await;
    let tokens = done.put_all(b).await;
    done.complete(b, &tokens).await;
    let key = BlobKey::upload(done.upload_id, done.file_uid, done.store_upload_id.as_deref());
    b.store.delete(&key).await.unwrap();
    assert!(matches!(read(b.store.as_ref(), &done.file_uid, 0..1).await, Err(BlobError::NotFound)));
}
