//! What only the S3-compatible store does, against the Garage scripts/test
//! starts: it follows pagination markers, and it rides out a busy store.
//! The busy store is that Garage behind a TCP proxy of the test's own that
//! answers the next connections itself, as S3 does when asked too fast.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_blob::{BlobError, BlobStore, S3, S3Config, StoreUpload};
use ferry_core::ids::{FileUid, UploadId};
use ferry_core::plan::PartPlan;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MIB: usize = 1024 * 1024;

fn env(name: &str) -> Option<String> {
    let value = std::env::var(name).ok();
    if value.is_none() && std::env::var("FERRY_TEST_INTEGRATION").is_ok_and(|v| v == "1") {
        panic!("{name} is not set: run ./scripts/test, which starts Garage");
    }
    value
}

/// The store on the bucket scripts/test set up, under a prefix of its own,
/// reached at `endpoint` (Garage itself, or the proxy in front of it).
/// `None`, saying so, outside scripts/test.
fn store(endpoint: Option<String>, page_size: u16, retry_for: Duration) -> Option<S3> {
    let Some(garage) = env("FERRY_TEST_S3_ENDPOINT") else {
        eprintln!("skipped: FERRY_TEST_S3_ENDPOINT is not set (./scripts/test starts Garage)");
        return None;
    };
    let s3 = S3::new(S3Config {
        endpoint: endpoint.unwrap_or(garage),
        region: env("FERRY_TEST_S3_REGION")?,
        bucket: env("FERRY_TEST_S3_BUCKET")?,
        prefix: format!("s3-store-{}/", FileUid::generate()),
        access_key_id: env("FERRY_TEST_S3_ACCESS_KEY_ID")?,
        secret_access_key: env("FERRY_TEST_S3_SECRET_ACCESS_KEY")?,
        url_ttl: Duration::from_secs(600),
        page_size,
        retry_for,
    });
    Some(s3.unwrap())
}

#[tokio::test]
async fn listings_follow_the_pagination_markers() {
    let Some(s3) = store(None, 10, S3Config::DEFAULT_RETRY_FOR) else { return };
    // 25 uploads in progress and 25 files: three pages of each.
    let mut uploads = Vec::new();
    for _ in 0..25 {
        let (upload_id, file_uid) = (UploadId::generate(), FileUid::generate());
        let id = s3.create_upload(&upload_id, &file_uid, 100).await.unwrap();
        uploads.push((upload_id, file_uid, id));
        let file = FileUid::generate();
        let body = Box::pin(futures_util::stream::iter([Ok(Bytes::from_static(b"hello"))]));
        s3.write_file(&file, 5, body).await.unwrap();
    }
    let inventory = s3.inventory().await.unwrap();
    assert_eq!((inventory.uploads_of_files.len(), inventory.files.len()), (25, 25));
    assert!(inventory.strangers.is_empty(), "{:?}", inventory.strangers);

    // An upload of 12 parts: two pages of parts.
    let (upload_id, file_uid, id) = &uploads[0];
    let plan = PartPlan::new(11 * 5 * MIB as u64 + 1, 5 * MIB as u64).unwrap();
    assert_eq!(plan.num_parts, 12);
    let upload = StoreUpload { upload_id: *upload_id, file_uid: *file_uid, store_upload_id: id.as_deref() };
    let http = reqwest::Client::new();
    for range in plan.parts() {
        let url = s3.part_url(upload, range.part_number, now() + 600).unwrap();
        let response = http.put(url).body(vec![7u8; range.length as usize]).send().await.unwrap();
        assert!(response.status().is_success());
    }
    let stored = s3.stored_parts(upload).await.unwrap();
    assert_eq!(stored.keys().copied().collect::<Vec<_>>(), (0..12).collect::<Vec<_>>());
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// A TCP proxy to `upstream` that answers the next `busy` connections
/// itself with 503 SlowDown, hangs up on the next `hang_ups` after reading
/// their request, and forwards the rest byte for byte.
struct BusyProxy {
    url: String,
    busy: Arc<AtomicUsize>,
    hang_ups: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
}

impl BusyProxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (busy, hang_ups, refused) =
            (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let upstream = upstream.strip_prefix("http://").unwrap().to_owned();
        let (busy_in, hang_ups_in, refused_in) = (busy.clone(), hang_ups.clone(), refused.clone());
        tokio::spawn(async move {
            loop {
                let (mut client, _) = listener.accept().await.unwrap();
                let take =
                    |n: &AtomicUsize| n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
                let (slow, hang_up) = (take(&busy_in), take(&hang_ups_in));
                let (upstream, refused) = (upstream.clone(), refused_in.clone());
                tokio::spawn(async move {
                    if slow {
                        slow_down(&mut client).await;
                        refused.fetch_add(1, Ordering::SeqCst);
                    } else if hang_up {
                        read_head(&mut client).await;
                        refused.fetch_add(1, Ordering::SeqCst);
                    } else if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Self { url, busy, hang_ups, refused }
    }

    fn busy_for(&self, connections: usize) {
        self.busy.store(connections, Ordering::SeqCst);
    }
}

async fn read_head(client: &mut TcpStream) {
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") && client.read(&mut byte).await.is_ok_and(|n| n == 1) {
        head.push(byte[0]);
    }
}

/// Reads a request head and answers as S3 does when asked too fast.
async fn slow_down(client: &mut TcpStream) {
    read_head(client).await;
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
                <Message>Please reduce your request rate.</Message></Error>";
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.write_all(answer.as_bytes()).await;
}

#[tokio::test]
async fn a_busy_store_is_retried_until_it_answers() {
    let Some(garage) = env("FERRY_TEST_S3_ENDPOINT") else { return };
    let proxy = BusyProxy::start(garage).await;
    let Some(s3) = store(Some(proxy.url.clone()), 1000, Duration::from_secs(10)) else { return };
    proxy.busy_for(3);
    let (upload_id, file_uid) = (UploadId::generate(), FileUid::generate());
    let id = s3.create_upload(&upload_id, &file_uid, 100).await.unwrap();
    assert!(id.is_some_and(|id| !id.is_empty()));
    assert_eq!(proxy.refused.load(Ordering::SeqCst), 3, "the busy answers were not all retried");
}

#[tokio::test]
async fn a_store_busy_for_longer_than_the_retries_is_unavailable_and_nothing_is_left() {
    let Some(garage) = env("FERRY_TEST_S3_ENDPOINT") else { return };
    let proxy = BusyProxy::start(garage).await;
    let Some(s3) = store(Some(proxy.url.clone()), 1000, Duration::from_secs(1)) else { return };
    proxy.busy_for(usize::MAX);
    let started = Instant::now();
    let (upload_id, file_uid) = (UploadId::generate(), FileUid::generate());
    let refused = s3.create_upload(&upload_id, &file_uid, 100).await;
    assert!(matches!(refused, Err(BlobError::Unavailable(_))), "{refused:?}");
    // Bounded: the retry budget plus one request.
    assert!(started.elapsed() < Duration::from_secs(10), "gave up after {:?}", started.elapsed());
    assert!(proxy.refused.load(Ordering::SeqCst) > 1, "nothing was retried");
    proxy.busy_for(0);
    let inventory = s3.inventory().await.unwrap();
    assert!(inventory.uploads_of_files.is_empty() && inventory.files.is_empty(), "{inventory:?}");
}

/// A request the store may have received but never answered (the
/// connection was cut after it was sent) is not sent again when a second
/// one could leave something behind (CreateMultipartUpload), but it is
/// still the store being unreachable: a 503 to retry, not a fault.
#[tokio::test]
async fn a_request_cut_off_unanswered_is_unavailable_not_a_fault() {
    let Some(garage) = env("FERRY_TEST_S3_ENDPOINT") else { return };
    let proxy = BusyProxy::start(garage).await;
    let Some(s3) = store(Some(proxy.url.clone()), 1000, Duration::from_secs(10)) else { return };
    proxy.hang_ups.store(1, Ordering::SeqCst);
    let cut = s3.create_upload(&UploadId::generate(), &FileUid::generate(), 100).await;
    assert!(matches!(cut, Err(BlobError::Unavailable(_))), "{cut:?}");
    assert_eq!(proxy.refused.load(Ordering::SeqCst), 1, "a create was sent twice");
    // Reads are safe to send again, and are: a hang-up costs nothing.
    proxy.hang_ups.store(1, Ordering::SeqCst);
    assert!(s3.inventory().await.is_ok());
}
