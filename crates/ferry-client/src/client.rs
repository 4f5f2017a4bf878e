//! One method per route of the Files API.

use std::path::Path;
use std::time::Duration;

use ferry_api::files::{FileIdentity, FileMetadata, FilesInfo, FilesPage, ListFilesQuery};
use ferry_api::uploads::{
    CheckpointRequest, CheckpointResponse, CompleteUploadRequest, CompleteUploadResponse, InitiateUploadRequest,
    InitiateUploadResponse, PartDescriptor, PartTokenEntry, PartUrlsRequest, PartUrlsResponse,
};
use ferry_api::{ErrorResponse, paths};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{ClientError, Result};
use crate::retry::{OnRetry, RetryEvent, RetryPolicy};

/// A connection to one ferry server with one API key. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    pub(crate) http: reqwest::Client,
    base: String,
    key: String,
    retry: RetryPolicy,
    on_retry: OnRetry,
}

/// A file name as one path segment.
fn segment(name: &str) -> String {
    utf8_percent_encode(name, NON_ALPHANUMERIC).to_string()
}

/// Turns an error response into a [`ClientError`].
pub(crate) async fn refusal(response: Response) -> ClientError {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok()?.trim().parse().ok())
        .map(Duration::from_secs);
    let body = response.bytes().await.unwrap_or_default();
    match serde_json::from_slice::<ErrorResponse>(&body) {
        Ok(envelope) => ClientError::Api { status, errors: envelope.errors, retry_after },
        Err(_) => ClientError::Unexpected { status, body: String::from_utf8_lossy(&body).chars().take(500).collect() },
    }
}

impl Client {
    pub fn new(base_url: &str, api_key: &str) -> Result<Self> {
        // HTTPS through rustls with the ring provider; the platform's
        // certificate verifier checks servers. Installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // A stalled connection is noticed and retried, not waited on forever.
            .read_timeout(Duration::from_secs(120))
            .build()?;
        let base_url = base_url.trim_end_matches('/');
        Ok(Self {
            http,
            // The API's routes carry their `/v0.5`; a base URL written the
            // way the API docs write it ends with it too.
            base: base_url.strip_suffix(paths::BASE).unwrap_or(base_url).to_owned(),
            key: api_key.to_owned(),
            retry: RetryPolicy::default(),
            on_retry: None,
        })
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Calls `on_retry` before each retry, with the failure and the wait,
    /// and when a call that had to wait succeeds.
    pub fn on_retry(mut self, on_retry: impl Fn(RetryEvent<'_>) + Send + Sync + 'static) -> Self {
        self.on_retry = Some(std::sync::Arc::new(on_retry));
        self
    }

    /// Runs `attempt` under this client's retry policy.
    pub(crate) async fn retrying<T, F, Fut>(&self, attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        self.retry.run(attempt, &self.on_retry).await
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.key)
    }

    /// Sends one API call, retrying what can be retried, and reads its JSON.
    async fn call<B: Serialize, T: DeserializeOwned>(&self, method: Method, path: &str, body: Option<&B>) -> Result<T> {
        self.retrying(|| async {
            let mut request = self.request(method.clone(), path);
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request.send().await?;
            if !response.status().is_success() {
                return Err(refusal(response).await);
            }
            Ok(response.json::<T>().await?)
        })
        .await
    }

    pub async fn initiate(&self, request: &InitiateUploadRequest) -> Result<InitiateUploadResponse> {
        self.call(Method::POST, paths::INITIATE_UPLOAD, Some(request)).await
    }

    pub async fn part_urls(&self, upload_id: &str, part_numbers: &[u32]) -> Result<Vec<PartDescriptor>> {
        let request = PartUrlsRequest { part_numbers: part_numbers.iter().map(|&n| n.into()).collect() };
        let path = paths::for_upload(paths::PART_URLS, upload_id);
        let response: PartUrlsResponse = self.call(Method::POST, &path, Some(&request)).await?;
        Ok(response.parts)
    }

    pub async fn checkpoint(&self, upload_id: &str, parts: Vec<PartTokenEntry>) -> Result<CheckpointResponse> {
        let path = paths::for_upload(paths::CHECKPOINT, upload_id);
        self.call(Method::POST, &path, Some(&CheckpointRequest { parts })).await
    }

    pub async fn complete(&self, upload_id: &str, request: &CompleteUploadRequest) -> Result<CompleteUploadResponse> {
        let path = paths::for_upload(paths::COMPLETE_UPLOAD, upload_id);
        self.call(Method::POST, &path, Some(request)).await
    }

    pub async fn abort(&self, upload_id: &str) -> Result<()> {
        let path = paths::for_upload(paths::ABORT_UPLOAD, upload_id);
        self.retrying(|| async {
            let response = self.request(Method::POST, &path).json(&serde_json::json!({})).send().await?;
            if !response.status().is_success() {
                return Err(refusal(response).await);
            }
            Ok(())
        })
        .await
    }

    pub async fn file_metadata(&self, file_id: &str) -> Result<FileMetadata> {
        let path = paths::FILE_METADATA.replace("{file_id}", &segment(file_id));
        self.call::<(), _>(Method::GET, &path, None).await
    }

    /// A page of the listing, newest first (`query` without shard fields).
    pub async fn list_files_page(&self, query: &ListFilesQuery) -> Result<FilesPage> {
        let limit = query.limit.map(|n| n.to_string());
        let fields = [
            ("limit", limit.as_deref()),
            ("after", query.after.as_deref()),
            ("before", query.before.as_deref()),
            ("file_type", query.file_type.as_deref()),
        ];
        let query: Vec<String> =
            fields.iter().filter_map(|(name, value)| Some(format!("{name}={}", segment(value.as_ref()?)))).collect();
        let path = format!("{}?{}", paths::LIST_METADATA, query.join("&"));
        self.call::<(), _>(Method::GET, &path, None).await
    }

    pub async fn info(&self) -> Result<FilesInfo> {
        self.call::<(), _>(Method::GET, paths::FILES_INFO, None).await
    }

    pub async fn delete(&self, file_id: &str) -> Result<FileIdentity> {
        let path = paths::DELETE_FILE.replace("{file_id}", &segment(file_id));
        self.call::<(), _>(Method::DELETE, &path, None).await
    }

    /// Uploads a small file whole (`POST /v0.5/files`), streaming it from disk.
    pub async fn simple_upload(&self, path: &Path, file_name: &str, file_type: &str) -> Result<FileIdentity> {
        self.retrying(|| async {
            let file = tokio::fs::File::open(path).await.map_err(ClientError::io(path))?;
            let length = file.metadata().await.map_err(ClientError::io(path))?.len();
            let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
            let part = reqwest::multipart::Part::stream_with_length(body, length)
                .file_name(file_name.to_owned())
                .mime_str(file_type)
                .map_err(|e| ClientError::Invalid(format!("file type `{file_type}`: {e}")))?;
            let form = reqwest::multipart::Form::new().part("file", part);
            let response = self.request(Method::POST, paths::SIMPLE_UPLOAD).multipart(form).send().await?;
            if !response.status().is_success() {
                return Err(refusal(response).await);
            }
            Ok(response.json().await?)
        })
        .await
    }

    /// Starts a download of `file_id` from byte `from`. Answers 200 (whole)
    /// or 206 (from `from` on); the caller streams the body.
    pub async fn download_from(&self, file_id: &str, from: u64) -> Result<Response> {
        let path = paths::DOWNLOAD.replace("{file_id}", &segment(file_id));
        self.retrying(|| async {
            let mut request = self.request(Method::GET, &path);
            if from > 0 {
                request = request.header(reqwest::header::RANGE, format!("bytes={from}-"));
            }
            let response = request.send().await?;
            match response.status() {
                StatusCode::OK | StatusCode::PARTIAL_CONTENT => Ok(response),
                _ => Err(refusal(response).await),
            }
        })
        .await
    }
}
