//! The scale-out blob store: a bucket of an S3-compatible store (Garage in
//! our tests; AWS S3, R2, Ceph RGW in the field).
//!
//! Clients PUT parts straight to the store through presigned UploadPart
//! URLs: no part byte passes through ferry. Every request ferry makes
//! itself is presigned too (rusty-s3 signs, reqwest sends), so there is no
//! SDK. Part URLs are signed as of a time fixed by their expiry, which is
//! itself rounded to a time bucket, so every request inside one bucket gets
//! the identical URL (design §5). S3 numbers parts from 1, ferry from 0;
//! the translation happens here and nowhere else.
//!
//! A busy or failing store is normal (S3 answers 503 SlowDown when asked
//! too fast): every request ferry makes is retried with exponential backoff
//! and jitter while the store answers 5xx, and while the network fails it
//! if sending it again is harmless. When the retries run out the caller
//! gets [`BlobError::Unavailable`], which clients see as 503 with
//! `Retry-After`. Listings follow the store's pagination markers.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use async_trait::async_trait;
use backon::BackoffBuilder;
use bytes::{Bytes, BytesMut};
use ferry_core::blob_key::BlobKey;
use ferry_core::checksum::{PartDigest, PartHasher};
use ferry_core::ids::{FileUid, UploadId};
use ferry_core::token::PartToken;
use ferry_core::upload::RecordedPart;
use futures_util::{StreamExt, TryStreamExt};
use instant_xml::FromXml;
use reqwest::{Method, StatusCode};
use rusty_s3::actions::{CompleteMultipartUpload, CreateMultipartUpload, ListObjectsV2, ListParts};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use crate::{BlobError, BlobInventory, BlobStore, ByteSource, ByteStream, Result, StoreUpload};

/// How long the URLs of ferry's own requests to the store live.
const OWN_REQUEST_TTL: Duration = Duration::from_secs(300);

/// A presigned ListMultipartUploads of the keys under `prefix`, which
/// rusty-s3 does not offer, from the markers of the page before (if any).
/// Public for the tests, which list what a store holds without going
/// through ferry.
pub fn presign_list_multipart_uploads(
    bucket: &Bucket,
    credentials: &Credentials,
    prefix: &str,
    page: Option<(&str, &str, usize)>,
    ttl: Duration,
) -> url::Url {
    let mut url = bucket.base_url().clone();
    url.set_query(None);
    let max_uploads;
    // The signer wants the query sorted by name.
    let mut query = vec![("prefix", prefix), ("uploads", "")];
    if let Some((key_marker, upload_id_marker, page_size)) = page {
        max_uploads = page_size.to_string();
        query.push(("max-uploads", max_uploads.as_str()));
        if !key_marker.is_empty() {
            query.push(("key-marker", key_marker));
        }
        // Garage gives no upload id marker; each key has one upload here,
        // so the key marker alone continues the listing.
        if !upload_id_marker.is_empty() {
            query.push(("upload-id-marker", upload_id_marker));
        }
    }
    query.sort();
    rusty_s3::signing::sign(
        &jiff::Timestamp::now(),
        rusty_s3::Method::Get,
        url,
        credentials.key(),
        credentials.secret(),
        None,
        bucket.region(),
        ttl.as_secs(),
        query.into_iter(),
        std::iter::empty::<(&str, &str)>(),
    )
}

const S3_XML_NS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// One page of a ListMultipartUploads answer.
#[derive(Debug, FromXml)]
#[xml(rename = "ListMultipartUploadsResult", ns(S3_XML_NS))]
struct MultipartUploads {
    uploads: Vec<MultipartUpload>,
    #[xml(rename = "IsTruncated")]
    is_truncated: Option<bool>,
    #[xml(rename = "NextKeyMarker")]
    next_key_marker: Option<String>,
    #[xml(rename = "NextUploadIdMarker")]
    next_upload_id_marker: Option<String>,
}

#[derive(Debug, FromXml)]
#[xml(rename = "Upload", ns(S3_XML_NS))]
struct MultipartUpload {
    #[xml(rename = "Key")]
    key: String,
}

/// An S3 error document; only its code matters here.
#[derive(Debug, FromXml)]
#[xml(rename = "Error")]
struct ErrorDocument {
    #[xml(rename = "Code")]
    code: String,
}

/// The `<Code>` of an S3 error document.
fn error_code(body: &str) -> Option<String> {
    instant_xml::from_str::<ErrorDocument>(body).ok().map(|e| e.code)
}

/// The part size of a simple upload sent on to the store: the smallest S3
/// takes, since a part is held in memory until it is sent.
const SIMPLE_UPLOAD_PART: usize = 5 * 1024 * 1024;

/// Where the bucket is and how to reach it.
#[derive(Debug, Clone)]
pub struct S3Config {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    /// Prepended to every key, so that several deployments (or tests) can
    /// share one bucket.
    pub prefix: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// The lifetime of part URLs (the server's `--url-ttl`).
    pub url_ttl: Duration,
    /// Entries asked for per page of a listing (S3's own default is 1,000).
    pub page_size: u16,
    /// How long to keep retrying a request the store fails, in all.
    pub retry_for: Duration,
}

impl S3Config {
    pub const DEFAULT_PAGE_SIZE: u16 = 1000;
    pub const DEFAULT_RETRY_FOR: Duration = Duration::from_secs(5);
}

pub struct S3 {
    bucket: Bucket,
    credentials: Credentials,
    prefix: String,
    url_ttl: Duration,
    page_size: u16,
    retry_for: Duration,
    http: reqwest::Client,
}

/// Whether a request may be sent again after the network failed it, when
/// it is unknown whether the store received it. Any request may be sent
/// again after the store answered 5xx: that answer changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resend {
    /// Sending it twice has the effect of sending it once.
    Always,
    /// A second one could leave something behind (a second multipart
    /// upload nobody knows of).
    OnlyIfRefused,
}

/// What a finished request gave: the answer, or why there is none.
enum Sent {
    Answer(reqwest::Response),
    Failed(reqwest::Error),
}

fn store_error(e: impl std::fmt::Display) -> BlobError {
    BlobError::Store(e.to_string())
}

/// A failed exchange with the store (refused, reset, timed out, cut off
/// mid-answer): the store cannot be reached now, which a client may retry
/// (503). Without its URL: a presigned URL carries a signature, which
/// must never reach a log or a client.
fn transport_error(e: reqwest::Error) -> BlobError {
    BlobError::Unavailable(format!("the store cannot be reached: {}", e.without_url()))
}

impl S3 {
    pub fn new(config: S3Config) -> Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let endpoint = config.endpoint.parse().map_err(store_error)?;
        // Path-style addressing works with every S3-compatible store.
        let bucket = Bucket::new(endpoint, UrlStyle::Path, config.bucket, config.region).map_err(store_error)?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(120))
            .build()
            .map_err(store_error)?;
        Ok(Self {
            bucket,
            credentials: Credentials::new(config.access_key_id, config.secret_access_key),
            prefix: config.prefix,
            url_ttl: config.url_ttl,
            page_size: config.page_size.max(1),
            retry_for: config.retry_for,
            http,
        })
    }

    fn key(&self, file_uid: &FileUid) -> String {
        format!("{}files/{file_uid}", self.prefix)
    }

    /// Sends one of ferry's own requests, retrying while the store fails
    /// it (5xx, SlowDown) or, if `resend` allows, the network does; then
    /// returns the store's answer, whatever its status.
    async fn request(
        &self,
        method: Method,
        url: url::Url,
        body: Option<Bytes>,
        headers: &[(&str, String)],
        resend: Resend,
    ) -> Result<reqwest::Response> {
        let mut delays = backon::ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(2))
            .with_total_delay(Some(self.retry_for))
            .without_max_times()
            .build();
        loop {
            let mut request = self.http.request(method.clone(), url.clone());
            for (name, value) in headers {
                request = request.header(*name, value);
            }
            if let Some(body) = &body {
                request = request.body(body.clone());
            }
            let sent = match request.send().await {
                Ok(response) => Sent::Answer(response),
                Err(e) => Sent::Failed(e.without_url()),
            };
            let transient = match &sent {
                Sent::Answer(response) => response.status().is_server_error(),
                Sent::Failed(e) => resend == Resend::Always || e.is_connect(),
            };
            let Some(delay) = delays.next().filter(|_| transient) else {
                return match sent {
                    Sent::Answer(response) if response.status().is_server_error() => {
                        let status = response.status();
                        let body = response.bytes().await.unwrap_or_default();
                        let text = String::from_utf8_lossy(&body);
                        let code = error_code(&text).unwrap_or_default();
                        Err(BlobError::Unavailable(format!("the store answered {status} {code}")))
                    }
                    Sent::Answer(response) => Ok(response),
                    // Whether or not it was sent again, the store is not
                    // answering now.
                    Sent::Failed(e) => Err(transport_error(e)),
                };
            };
            let what = match &sent {
                Sent::Answer(response) => response.status().to_string(),
                Sent::Failed(e) => e.to_string(),
            };
            tracing::debug!(%method, what, ?delay, "retrying a request the store failed");
            tokio::time::sleep(delay).await;
        }
    }

    /// [`S3::request`] for an answer whose body is small: returns its
    /// status and body.
    async fn send(&self, method: Method, url: url::Url, body: Option<Bytes>) -> Result<(StatusCode, Bytes)> {
        let response = self.request(method, url, body, &[], Resend::Always).await?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport_error)?;
        Ok((status, bytes))
    }

    fn refused(status: StatusCode, body: &[u8]) -> BlobError {
        let text = String::from_utf8_lossy(body);
        BlobError::Store(format!("{status}: {}", error_code(&text).unwrap_or_else(|| text.into_owned())))
    }

    /// A presigned URL at which clients PUT part `part_number` of `upload`
    /// straight into the store, valid until `expires` (Unix seconds).
    pub fn part_url(&self, upload: StoreUpload<'_>, part_number: u32, expires: u64) -> Option<String> {
        let key = self.key(&upload.file_uid);
        let number = u16::try_from(part_number + 1).ok()?;
        let action = self.bucket.upload_part(Some(&self.credentials), &key, number, upload.store_upload_id?);
        // Signed as of `expires - ttl`: the same expiry gives the same URL.
        let signed_at = jiff::Timestamp::from_second(expires as i64 - self.url_ttl.as_secs() as i64).ok()?;
        Some(action.sign_with_time(self.url_ttl, &signed_at).to_string())
    }

    /// The parts the store holds for `upload` (ListParts, every page): the
    /// record part tokens are checked against.
    pub async fn stored_parts(&self, upload: StoreUpload<'_>) -> Result<BTreeMap<u32, RecordedPart>> {
        let (key, Some(id)) = (self.key(&upload.file_uid), upload.store_upload_id) else {
            return Ok(BTreeMap::new());
        };
        let mut parts = BTreeMap::new();
        let mut marker = None;
        loop {
            let mut action = self.bucket.list_parts(Some(&self.credentials), &key, id);
            action.set_max_parts(self.page_size);
            if let Some(marker) = marker {
                action.set_part_number_marker(marker);
            }
            let (status, body) = self.send(Method::GET, action.sign(OWN_REQUEST_TTL), None).await?;
            if status == StatusCode::NOT_FOUND {
                return Err(BlobError::UploadGone);
            }
            if !status.is_success() {
                return Err(Self::refused(status, &body));
            }
            let listed = ListParts::parse_response(&String::from_utf8_lossy(&body)).map_err(store_error)?;
            for part in &listed.parts {
                let part_number = u32::from(part.number) - 1;
                let token = PartToken::from_wire(&part.etag);
                parts.insert(part_number, RecordedPart { part_number, token, crc32c: None, num_bytes: part.size });
            }
            // Kept by the parser only when the page is truncated.
            match listed.next_part_number_marker {
                Some(next) => marker = Some(next),
                None => return Ok(parts),
            }
        }
    }

    /// Turns an upload's parts, with exactly these tokens (ETags), into the
    /// file. Idempotent: after a crash between this and the metadata
    /// commit, calling it again is safe.
    pub async fn complete_upload(&self, upload: StoreUpload<'_>, parts: &BTreeMap<u32, PartToken>) -> Result<()> {
        let key = self.key(&upload.file_uid);
        let id = upload.store_upload_id.ok_or_else(|| BlobError::Store("the upload has no store id".into()))?;
        let etags: Vec<String> = parts.values().map(PartToken::to_etag).collect();
        let etags: Vec<&str> = etags.iter().map(String::as_str).collect();
        match self.complete_multipart(&key, id, &etags).await {
            Err(BlobError::Store(why)) if why.contains("NoSuchUpload") => {
                // Completed already by an attempt that was not committed.
                match self.object_size(&key).await? {
                    Some(_) => Ok(()),
                    None => Err(BlobError::UploadGone),
                }
            }
            other => other,
        }
    }

    async fn abort(&self, key: &str, store_upload_id: Option<&str>) -> Result<()> {
        if let Some(id) = store_upload_id {
            let url = self.bucket.abort_multipart_upload(Some(&self.credentials), key, id).sign(OWN_REQUEST_TTL);
            let (status, body) = self.send(Method::DELETE, url, None).await?;
            let gone = status == StatusCode::NOT_FOUND;
            if !status.is_success() && !gone {
                return Err(Self::refused(status, &body));
            }
        }
        self.delete_object(key).await
    }

    async fn delete_object(&self, key: &str) -> Result<()> {
        let url = self.bucket.delete_object(Some(&self.credentials), key).sign(OWN_REQUEST_TTL);
        let (status, body) = self.send(Method::DELETE, url, None).await?;
        if status.is_success() || status == StatusCode::NOT_FOUND { Ok(()) } else { Err(Self::refused(status, &body)) }
    }

    async fn object_size(&self, key: &str) -> Result<Option<u64>> {
        let url = self.bucket.head_object(Some(&self.credentials), key).sign(OWN_REQUEST_TTL);
        let response = self.request(Method::HEAD, url, None, &[], Resend::Always).await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            status if status.is_success() => Ok(response.content_length()),
            status => Err(Self::refused(status, b"")),
        }
    }

    async fn create_multipart(&self, key: &str) -> Result<String> {
        let url = self.bucket.create_multipart_upload(Some(&self.credentials), key).sign(OWN_REQUEST_TTL);
        let response = self.request(Method::POST, url, None, &[], Resend::OnlyIfRefused).await?;
        let status = response.status();
        let body = response.bytes().await.map_err(transport_error)?;
        if !status.is_success() {
            return Err(Self::refused(status, &body));
        }
        let created = CreateMultipartUpload::parse_response(&String::from_utf8_lossy(&body)).map_err(store_error)?;
        Ok(created.upload_id().to_owned())
    }

    /// Uploads one part of ferry's own (a simple upload's) and returns its ETag.
    async fn put_part(&self, key: &str, store_upload_id: &str, number: u16, bytes: Bytes) -> Result<String> {
        let action = self.bucket.upload_part(Some(&self.credentials), key, number, store_upload_id);
        let url = action.sign(OWN_REQUEST_TTL);
        let response = self.request(Method::PUT, url, Some(bytes), &[], Resend::Always).await?;
        let status = response.status();
        let etag = response.headers().get(reqwest::header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = response.bytes().await.map_err(transport_error)?;
        match etag {
            Some(etag) if status.is_success() => Ok(etag),
            _ => Err(Self::refused(status, &body)),
        }
    }

    async fn complete_multipart(&self, key: &str, store_upload_id: &str, etags: &[&str]) -> Result<()> {
        let action = CompleteMultipartUpload::new(
            &self.bucket,
            Some(&self.credentials),
            key,
            store_upload_id,
            etags.iter().copied(),
        );
        let url = action.sign(OWN_REQUEST_TTL);
        let body = Bytes::from(action.body());
        let (status, answer) = self.send(Method::POST, url, Some(body)).await?;
        let text = String::from_utf8_lossy(&answer);
        // S3 may answer 200 with an error document when it fails late.
        if status.is_success() && !text.contains("<Error>") {
            return Ok(());
        }
        match error_code(&text) {
            Some(code) if matches!(code.as_str(), "InvalidPart" | "InvalidPartOrder" | "EntityTooSmall") => {
                Err(BlobError::InvalidParts(code))
            }
            _ => Err(Self::refused(status, &answer)),
        }
    }
}

#[async_trait]
impl BlobStore for S3 {
    async fn check(&self) -> Result<()> {
        let url = self.bucket.head_bucket(Some(&self.credentials)).sign(OWN_REQUEST_TTL);
        let response = self.request(Method::HEAD, url, None, &[], Resend::Always).await?;
        if response.status().is_success() { Ok(()) } else { Err(Self::refused(response.status(), b"")) }
    }

    async fn create_upload(
        &self,
        _upload_id: &UploadId,
        file_uid: &FileUid,
        _num_bytes: u64,
    ) -> Result<Option<String>> {
        Ok(Some(self.create_multipart(&self.key(file_uid)).await?))
    }

    async fn write_file(&self, file_uid: &FileUid, max_len: u64, mut bytes: ByteSource<'_>) -> Result<PartDigest> {
        let key = self.key(file_uid);
        let mut hasher = PartHasher::default();
        let mut buffer = BytesMut::with_capacity(SIMPLE_UPLOAD_PART);
        let mut upload: Option<String> = None;
        let mut etags = Vec::new();
        let outcome: Result<()> = async {
            while let Some(chunk) = bytes.next().await {
                let chunk = chunk.map_err(BlobError::Source)?;
                if hasher.num_bytes() + chunk.len() as u64 > max_len {
                    return Err(BlobError::TooLong { expected: max_len });
                }
                hasher.update(&chunk);
                buffer.extend_from_slice(&chunk);
                while buffer.len() >= SIMPLE_UPLOAD_PART {
                    let part = buffer.split_to(SIMPLE_UPLOAD_PART).freeze();
                    if upload.is_none() {
                        upload = Some(self.create_multipart(&key).await?);
                    }
                    let id = upload.as_deref().expect("created above");
                    let number =
                        u16::try_from(etags.len() + 1).map_err(|_| BlobError::TooLong { expected: max_len })?;
                    etags.push(self.put_part(&key, id, number, part).await?);
                }
            }
            match &upload {
                // Small enough for one PUT.
                None => {
                    let url = self.bucket.put_object(Some(&self.credentials), &key).sign(OWN_REQUEST_TTL);
                    let (status, body) = self.send(Method::PUT, url, Some(buffer.split().freeze())).await?;
                    if !status.is_success() {
                        return Err(Self::refused(status, &body));
                    }
                }
                Some(id) => {
                    if !buffer.is_empty() {
                        let number =
                            u16::try_from(etags.len() + 1).map_err(|_| BlobError::TooLong { expected: max_len })?;
                        etags.push(self.put_part(&key, id, number, buffer.split().freeze()).await?);
                    }
                    let etags: Vec<&str> = etags.iter().map(String::as_str).collect();
                    self.complete_multipart(&key, id, &etags).await?;
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = outcome {
            let _ = self.abort(&key, upload.as_deref()).await;
            return Err(e);
        }
        Ok(hasher.finish())
    }

    async fn abort_upload(&self, upload: StoreUpload<'_>) -> Result<()> {
        self.abort(&self.key(&upload.file_uid), upload.store_upload_id).await
    }

    async fn delete(&self, key: &BlobKey) -> Result<()> {
        match key {
            BlobKey::File(file_uid) => self.delete_object(&self.key(file_uid)).await,
            BlobKey::Upload { file_uid, store_upload_id, .. } => {
                self.abort(&self.key(file_uid), store_upload_id.as_deref()).await
            }
        }
    }

    async fn inventory(&self) -> Result<BlobInventory> {
        let mut inventory = BlobInventory::default();
        let prefix = format!("{}files/", self.prefix);
        let mut token: Option<String> = None;
        loop {
            let mut action = self.bucket.list_objects_v2(Some(&self.credentials));
            action.with_prefix(prefix.clone());
            action.with_max_keys(self.page_size.into());
            if let Some(token) = &token {
                action.with_continuation_token(token.clone());
            }
            let (status, body) = self.send(Method::GET, action.sign(OWN_REQUEST_TTL), None).await?;
            if !status.is_success() {
                return Err(Self::refused(status, &body));
            }
            let listed = ListObjectsV2::parse_response(&String::from_utf8_lossy(&body)).map_err(store_error)?;
            for object in &listed.contents {
                let name = object.key.strip_prefix(&prefix).unwrap_or(&object.key);
                match name.parse::<FileUid>() {
                    Ok(uid) => inventory.files.push((uid, object.size.unwrap_or(0))),
                    Err(_) => inventory.strangers.push(object.key.clone()),
                }
            }
            match listed.next_continuation_token {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        let (mut key_marker, mut upload_id_marker) = (String::new(), String::new());
        loop {
            let page = Some((key_marker.as_str(), upload_id_marker.as_str(), usize::from(self.page_size)));
            let url = presign_list_multipart_uploads(&self.bucket, &self.credentials, &prefix, page, OWN_REQUEST_TTL);
            let (status, body) = self.send(Method::GET, url, None).await?;
            if !status.is_success() {
                return Err(Self::refused(status, &body));
            }
            let listed: MultipartUploads =
                instant_xml::from_str(&String::from_utf8_lossy(&body)).map_err(store_error)?;
            for upload in &listed.uploads {
                match upload.key.strip_prefix(&prefix).and_then(|name| name.parse::<FileUid>().ok()) {
                    Some(uid) => inventory.uploads_of_files.push(uid),
                    None => inventory.strangers.push(format!("(multipart upload) {}", upload.key)),
                }
            }
            match (listed.is_truncated, listed.next_key_marker) {
                (Some(true), Some(key)) if key != key_marker => {
                    (key_marker, upload_id_marker) = (key, listed.next_upload_id_marker.unwrap_or_default())
                }
                _ => break,
            }
        }
        Ok(inventory)
    }

    async fn file_size(&self, file_uid: &FileUid) -> Result<Option<u64>> {
        self.object_size(&self.key(file_uid)).await
    }

    async fn read(&self, file_uid: &FileUid, range: Range<u64>) -> Result<ByteStream> {
        if range.is_empty() {
            return Ok(Box::pin(futures_util::stream::empty()));
        }
        let url = self.bucket.get_object(Some(&self.credentials), &self.key(file_uid)).sign(OWN_REQUEST_TTL);
        let bytes = format!("bytes={}-{}", range.start, range.end - 1);
        let response = self.request(Method::GET, url, None, &[("range", bytes)], Resend::Always).await?;
        match response.status() {
            StatusCode::OK | StatusCode::PARTIAL_CONTENT => {
                Ok(Box::pin(response.bytes_stream().map_err(|e| std::io::Error::other(e.without_url()))))
            }
            StatusCode::NOT_FOUND => Err(BlobError::NotFound),
            status => Err(Self::refused(status, &response.bytes().await.unwrap_or_default())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_urls_are_the_same_for_the_same_expiry_and_number_parts_from_one() {
        let s3 = S3::new(S3Config {
            endpoint: "http://127.0.0.1:3900".into(),
            region: "garage".into(),
            bucket: "ferry".into(),
            prefix: "p/".into(),
            access_key_id: "GK1".into(),
            secret_access_key: "secret".into(),
            url_ttl: Duration::from_secs(3600),
            page_size: S3Config::DEFAULT_PAGE_SIZE,
            retry_for: S3Config::DEFAULT_RETRY_FOR,
        })
        .unwrap();
        let upload =
            StoreUpload { upload_id: UploadId::generate(), file_uid: FileUid::generate(), store_upload_id: Some("u1") };
        let a = s3.part_url(upload, 0, 1_800_000_000).unwrap();
        assert_eq!(a, s3.part_url(upload, 0, 1_800_000_000).unwrap());
        assert_ne!(a, s3.part_url(upload, 0, 1_800_000_900).unwrap());
        assert!(a.contains("partNumber=1") && a.contains("uploadId=u1") && a.contains("X-Amz-Expires=3600"), "{a}");
        assert!(a.starts_with(&format!("http://127.0.0.1:3900/ferry/p/files/{}?", upload.file_uid)), "{a}");
    }
}
