//! Uploading a file: small ones whole, others through the direct-to-cloud
//! flow with parts in flight, resumable from the journal and the server's
//! checkpoints, checked at complete by the whole file's CRC32C.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use ferry_api::ErrorCode;
use ferry_api::files::FileMetadata;
use ferry_api::uploads::{
    CompleteUploadRequest, InitiateUploadRequest, InitiateUploadResponse, IntegrityAlgorithm, PartDescriptor,
    PartTokenEntry,
};
use ferry_core::checksum::{Crc32c, Crc32cHasher};
use ferry_core::names::validate_file_name;
use ferry_core::upload::file_type_from_name;
use futures_util::{StreamExt, TryStreamExt};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::client::{Client, refusal};
use crate::error::{ClientError, Result};
use crate::journal::{EntryWriter, Header, Journal, PartRecord};
use crate::progress::Progress;
use crate::rate::RateLimit;

/// Bytes read from the file per chunk of a part's body.
const CHUNK: usize = 256 * 1024;
/// How many times one part may get a fresh URL before the upload gives up.
const MAX_URL_REFRESHES: usize = 100;

#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// The name on the server [default: the file's name].
    pub file_name: Option<String>,
    /// The type [default: from the extension, else application/octet-stream].
    pub file_type: Option<String>,
    /// Parts in flight at once.
    pub parallel: usize,
    /// Files smaller than this go whole, by simple upload.
    pub simple_threshold: u64,
    /// A cap on the upload rate, in bytes per second.
    pub limit_rate: Option<u64>,
    /// Send nothing when the server's file of this name has the same size
    /// and CRC32C.
    pub skip_unchanged: bool,
}

impl Default for UploadOptions {
    fn default() -> Self {
        Self {
            file_name: None,
            file_type: None,
            parallel: 8,
            simple_threshold: 16 * 1024 * 1024,
            limit_rate: None,
            skip_unchanged: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Simple,
    Direct,
    /// The server already had these bytes under this name: nothing sent.
    Unchanged,
}

/// What an upload did.
#[derive(Debug, Clone)]
pub struct Uploaded {
    pub file_id: String,
    pub file_uid: String,
    pub num_bytes: u64,
    pub method: Method,
    /// Whether it continued an interrupted upload.
    pub resumed: bool,
    pub parts_total: u32,
    /// Parts sent by this run (the others were done before).
    pub parts_sent: u32,
}

/// A file as it is on disk now; a change between runs means a new upload.
struct LocalFile {
    path: PathBuf,
    size: u64,
    modified_ns: u64,
}

impl LocalFile {
    fn stat(path: &Path) -> Result<Self> {
        let path = std::fs::canonicalize(path).map_err(ClientError::io(path))?;
        let metadata = std::fs::metadata(&path).map_err(ClientError::io(&path))?;
        if !metadata.is_file() {
            return Err(ClientError::Invalid(format!("{} is not a file", path.display())));
        }
        let modified = metadata.modified().map_err(ClientError::io(&path))?;
        let modified_ns = modified.duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
        Ok(Self { path, size: metadata.len(), modified_ns })
    }

    fn same_as(&self, other: &LocalFile) -> bool {
        self.size == other.size && self.modified_ns == other.modified_ns
    }
}

/// Uploads one file. Interrupted (Ctrl-C, `kill -9`, a reboot, a lost
/// network), it resumes on the next call for the same path, sending only
/// what the server does not have, unless the file changed meanwhile.
pub async fn upload_file(
    client: &Client,
    journal: &Journal,
    path: &Path,
    options: &UploadOptions,
    progress: Arc<dyn Progress>,
) -> Result<Uploaded> {
    let local = LocalFile::stat(path)?;
    let file_name = match &options.file_name {
        Some(name) => name.clone(),
        None => local.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
    };
    // The server would refuse the name, or (a simple upload's) keep only
    // its last segment: say so before a byte is sent.
    validate_file_name(&file_name)
        .map_err(|reason| ClientError::Invalid(format!("cannot upload as `{}`: {reason}", file_name.escape_debug())))?;
    let file_type = options
        .file_type
        .clone()
        .or_else(|| file_type_from_name(&file_name).map(str::to_owned))
        .unwrap_or_else(|| "application/octet-stream".to_owned());
    let interrupted = journal.load(client.base_url(), &local.path)?.is_some();
    if options.skip_unchanged
        && !interrupted
        && let Some(file) = unchanged_on_server(client, &local, &file_name).await?
    {
        return Ok(Uploaded {
            file_id: file.file_id,
            file_uid: file.file_uid,
            num_bytes: local.size,
            method: Method::Unchanged,
            resumed: false,
            parts_total: 0,
            parts_sent: 0,
        });
    }
    if local.size < options.simple_threshold && !interrupted {
        progress.start(local.size, 0);
        match client.simple_upload(&local.path, &file_name, &file_type).await {
            Ok(uploaded) => {
                progress.advance(local.size);
                progress.finish();
                return Ok(Uploaded {
                    file_id: uploaded.file_id,
                    file_uid: uploaded.file_uid,
                    num_bytes: local.size,
                    method: Method::Simple,
                    resumed: false,
                    parts_total: 1,
                    parts_sent: 1,
                });
            }
            // This server takes less whole than we thought: parts then
            // (an empty file cannot go in parts, and is never too large).
            Err(e) if e.status() == Some(413) && local.size > 0 => {
                progress.note("the server takes files this large only in parts: sending it in parts");
            }
            Err(e) => return Err(e),
        }
    }
    Direct { client, journal, local, file_name, file_type, options, progress }.run().await
}

/// The server's file of this name, if it holds exactly the local bytes
/// (same size, same CRC32C; the CRC is computed only when the sizes match).
async fn unchanged_on_server(client: &Client, local: &LocalFile, file_name: &str) -> Result<Option<FileMetadata>> {
    let file = match client.file_metadata(file_name).await {
        Ok(file) => file,
        Err(e) if e.code() == Some(ErrorCode::FileNotFound) => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some(remote) = file.checksum_crc32c.as_deref().and_then(|c| Crc32c::from_base64(c).ok()) else {
        return Ok(None);
    };
    if file.num_bytes != local.size || file_crc32c(&local.path).await? != remote {
        return Ok(None);
    }
    Ok(Some(file))
}

/// The CRC32C of a whole local file, read in large chunks on a blocking
/// thread (the CRC runs at memory speed; the disk sets the pace).
pub(crate) async fn file_crc32c(path: &Path) -> Result<Crc32c> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut file = std::fs::File::open(&path).map_err(ClientError::io(&path))?;
        let mut buffer = vec![0u8; 4 * 1024 * 1024];
        let mut hasher = Crc32cHasher::default();
        loop {
            let n = file.read(&mut buffer).map_err(ClientError::io(&path))?;
            if n == 0 {
                return Ok(hasher.finish());
            }
            hasher.update(&buffer[..n]);
        }
    })
    .await
    .map_err(|e| ClientError::Invalid(format!("reading the file stopped: {e}")))?
}

struct Direct<'a> {
    client: &'a Client,
    journal: &'a Journal,
    local: LocalFile,
    file_name: String,
    file_type: String,
    options: &'a UploadOptions,
    progress: Arc<dyn Progress>,
}

impl Direct<'_> {
    fn server(&self) -> &str {
        self.client.base_url()
    }

    async fn initiate(&self, resume: bool) -> Result<InitiateUploadResponse> {
        let request = InitiateUploadRequest {
            filename: self.file_name.clone(),
            file_type: self.file_type.clone(),
            num_bytes: self.local.size as i64,
            resume_if_started: resume,
        };
        self.client.initiate(&request).await
    }

    async fn run(self) -> Result<Uploaded> {
        // What an interrupted run of this same file left.
        let previous = match self.journal.load(self.server(), &self.local.path)? {
            Some(entry) => {
                let was = LocalFile {
                    path: entry.header.path.clone(),
                    size: entry.header.size,
                    modified_ns: entry.header.modified_ns,
                };
                let same = was.same_as(&self.local)
                    && entry.header.file_name == self.file_name
                    && entry.header.file_type == self.file_type;
                if same {
                    Some(entry)
                } else {
                    self.progress.note(&format!(
                        "{} changed since its upload was interrupted: uploading it anew",
                        self.local.path.display()
                    ));
                    let _ = self.client.abort(&entry.header.upload_id).await;
                    self.journal.remove(self.server(), &self.local.path)?;
                    None
                }
            }
            None => None,
        };

        let mut response = self.initiate(previous.is_some()).await?;
        let mut records = BTreeMap::new();
        let mut resumed = false;
        if let Some(entry) = previous {
            if response.is_resume && response.upload_id == entry.header.upload_id {
                records = entry.parts;
                resumed = true;
            } else {
                self.progress.note("the interrupted upload is gone from the server: uploading anew");
                if response.is_resume {
                    // Someone else's upload of the same name: never mix bytes.
                    response = self.initiate(false).await?;
                }
            }
        }
        let writer = if resumed {
            self.journal.append_to(self.server(), &self.local.path)?
        } else {
            let header = Header {
                file_name: self.file_name.clone(),
                file_type: self.file_type.clone(),
                upload_id: response.upload_id.clone(),
                file_uid: response.file_uid.clone(),
                num_parts: response.num_parts,
                part_size: response.part_size,
                ..Header::new(self.server(), &self.local.path, self.local.size, self.local.modified_ns)
            };
            self.journal.create(&header)?
        };

        // The server lists the parts it has no valid checkpoint for. Those
        // the journal has a token for were sent but not checkpointed (the run
        // died in between): checkpoint them now instead of sending them again.
        let mut todo: BTreeMap<u32, PartDescriptor> =
            response.parts.iter().map(|p| (p.part_number, p.clone())).collect();
        let recoverable: Vec<PartTokenEntry> = records
            .values()
            .filter(|r| todo.contains_key(&r.part_number))
            .map(|r| PartTokenEntry { part_number: r.part_number.into(), part_token: r.token.clone() })
            .collect();
        if !recoverable.is_empty() {
            match self.client.checkpoint(&response.upload_id, recoverable.clone()).await {
                Ok(_) => recoverable.iter().for_each(|e| {
                    todo.remove(&(e.part_number as u32));
                }),
                Err(e) if e.code() == Some(ErrorCode::InvalidPartToken) => {}
                Err(e) => return Err(e),
            }
        }
        for n in todo.keys() {
            records.remove(n);
        }

        let part_size = response.part_size;
        let length_of = |n: u32| part_size.min(self.local.size - n as u64 * part_size);
        // A part done on the server but missing from the journal (the journal
        // was lost) needs its CRC32C for the whole-file checksum: read it.
        let mut crcs: BTreeMap<u32, Crc32c> = records.values().map(|r| (r.part_number, Crc32c(r.crc32c))).collect();
        let unknown: Vec<u32> =
            (0..response.num_parts).filter(|n| !todo.contains_key(n) && !crcs.contains_key(n)).collect();
        for n in unknown {
            let crc = read_part_crc(&self.local.path, n as u64 * part_size, length_of(n)).await?;
            crcs.insert(n, crc);
        }

        let done_bytes: u64 = (0..response.num_parts).filter(|n| !todo.contains_key(n)).map(length_of).sum();
        self.progress.start(self.local.size, done_bytes);
        let parts_sent = todo.len() as u32;
        let sender = PartSender {
            client: self.client.clone(),
            path: self.local.path.clone(),
            upload_id: response.upload_id.clone(),
            rate: self.options.limit_rate.map(|r| Arc::new(RateLimit::new(r))),
            in_flight: Arc::new(AtomicUsize::new(0)),
            sending: Arc::new(tokio::sync::Semaphore::new(self.options.parallel.max(1))),
            writer,
        };
        // `parallel` parts send their bytes at once; as many again may be
        // waiting for their answer (the server syncs a part before it
        // answers), so the next part's bytes flow meanwhile.
        let sent: Vec<PartRecord> = futures_util::stream::iter(todo.into_values())
            .map(|part| sender.send(part, self.progress.clone()))
            .buffer_unordered(2 * self.options.parallel.max(1))
            .try_collect()
            .await?;
        for record in sent {
            crcs.insert(record.part_number, Crc32c(record.crc32c));
            records.insert(record.part_number, record);
        }

        // The bytes sent must be the file as it is now.
        let now = LocalFile::stat(&self.local.path)?;
        if !now.same_as(&self.local) {
            return Err(ClientError::Invalid(format!(
                "{} changed while it was being uploaded; run the upload again",
                self.local.path.display()
            )));
        }
        let checksum = Crc32c::combine_all((0..response.num_parts).map(|n| (crcs[&n], length_of(n))));
        let request = CompleteUploadRequest {
            parts: records
                .values()
                .map(|r| PartTokenEntry { part_number: r.part_number.into(), part_token: r.token.clone() })
                .collect(),
            // Only where the store verifies it; elsewhere sending one is refused.
            integrity_checksum: (response.integrity_algorithm == IntegrityAlgorithm::Crc32c)
                .then(|| checksum.to_base64()),
        };
        let completed = match self.client.complete(&response.upload_id, &request).await {
            Ok(completed) => completed.file_uid,
            // A retried complete whose first answer was lost: check it is ours.
            Err(e) if e.code() == Some(ErrorCode::UploadCompleted) => {
                let file = self.client.file_metadata(&self.file_name).await?;
                if file.file_uid != response.file_uid {
                    return Err(e);
                }
                file.file_uid
            }
            Err(e) => return Err(e),
        };
        self.journal.remove(self.server(), &self.local.path)?;
        self.progress.finish();
        Ok(Uploaded {
            file_id: self.file_name,
            file_uid: completed,
            num_bytes: self.local.size,
            method: Method::Direct,
            resumed,
            parts_total: response.num_parts,
            parts_sent,
        })
    }
}

async fn read_part_crc(path: &Path, offset: u64, length: u64) -> Result<Crc32c> {
    let mut file = tokio::fs::File::open(path).await.map_err(ClientError::io(path))?;
    file.seek(std::io::SeekFrom::Start(offset)).await.map_err(ClientError::io(path))?;
    let mut reader = file.take(length);
    let mut hasher = Crc32cHasher::default();
    let mut buffer = vec![0u8; CHUNK];
    loop {
        let n = reader.read(&mut buffer).await.map_err(ClientError::io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hasher.finish())
}

/// Sends parts of one upload; shared by the parts in flight.
struct PartSender {
    client: Client,
    path: PathBuf,
    upload_id: String,
    rate: Option<Arc<RateLimit>>,
    in_flight: Arc<AtomicUsize>,
    /// A permit a part's body holds while it streams out, released at its
    /// last byte (not at the answer): `parallel` bodies flow at once.
    sending: Arc<tokio::sync::Semaphore>,
    writer: EntryWriter,
}

impl PartSender {
    /// Sends one part until it lands: retrying what can be retried, with a
    /// fresh URL when its URL expired; then journals and checkpoints it.
    async fn send(&self, mut part: PartDescriptor, progress: Arc<dyn Progress>) -> Result<PartRecord> {
        progress.parts_in_flight(self.in_flight.fetch_add(1, Ordering::Relaxed) + 1);
        let mut refreshes = 0;
        let outcome = loop {
            let attempt = self.client.retrying(|| self.put_once(&part, progress.clone())).await;
            match attempt {
                Err(e) if e.is_url_expired() && refreshes < MAX_URL_REFRESHES => {
                    refreshes += 1;
                    progress.note(&format!("the URL of part {} expired; asking for a fresh one", part.part_number));
                    let mut fresh = self.client.part_urls(&self.upload_id, &[part.part_number]).await?;
                    part = fresh.pop().ok_or_else(|| ClientError::Invalid("the server gave no URL".into()))?;
                }
                other => break other,
            }
        };
        progress.parts_in_flight(self.in_flight.fetch_sub(1, Ordering::Relaxed) - 1);
        let (token, crc32c) = outcome?;
        let record = PartRecord { part_number: part.part_number, token, crc32c: crc32c.0 };
        // Journal first: after a crash the token is known even if the
        // checkpoint never reached the server.
        self.writer.record(record.clone()).await?;
        let entry = PartTokenEntry { part_number: part.part_number.into(), part_token: record.token.clone() };
        self.client.checkpoint(&self.upload_id, vec![entry]).await?;
        Ok(record)
    }

    /// One PUT of a part, its body streamed from the file by range.
    async fn put_once(&self, part: &PartDescriptor, progress: Arc<dyn Progress>) -> Result<(String, Crc32c)> {
        let mut permit = Some(self.sending.clone().acquire_owned().await.expect("the semaphore is never closed"));
        let mut file = tokio::fs::File::open(&self.path).await.map_err(ClientError::io(&self.path))?;
        file.seek(std::io::SeekFrom::Start(part.offset)).await.map_err(ClientError::io(&self.path))?;
        let hasher = Arc::new(std::sync::Mutex::new(Crc32cHasher::default()));
        let counted = Arc::new(AtomicU64::new(0));
        let (rate, hasher_in, counted_in, progress_in) =
            (self.rate.clone(), hasher.clone(), counted.clone(), progress.clone());
        let body = tokio_util::io::ReaderStream::with_capacity(file.take(part.length), CHUNK).then(move |chunk| {
            let (rate, hasher, counted, progress) =
                (rate.clone(), hasher_in.clone(), counted_in.clone(), progress_in.clone());
            async move {
                let chunk: Bytes = chunk?;
                if let Some(rate) = rate {
                    rate.take(chunk.len() as u64).await;
                }
                hasher.lock().unwrap_or_else(|e| e.into_inner()).update(&chunk);
                counted.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                progress.advance(chunk.len() as u64);
                Ok::<_, std::io::Error>(chunk)
            }
        });
        // Past the last byte, the permit goes to the next part.
        let body = body.chain(futures_util::stream::poll_fn(move |_| {
            permit.take();
            std::task::Poll::Ready(None)
        }));
        let sent = self
            .client
            .http
            .put(&part.url)
            .header(reqwest::header::CONTENT_LENGTH, part.length)
            .body(reqwest::Body::wrap_stream(body))
            .timeout(Duration::from_secs(3600))
            .send()
            .await;
        let outcome = match sent {
            Ok(response) if response.status().is_success() => {
                let etag =
                    response.headers().get(reqwest::header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_owned);
                etag.ok_or_else(|| ClientError::Invalid("the part PUT answered without an ETag".into()))
            }
            Ok(response) => Err(refusal(response).await),
            Err(e) => Err(e.into()),
        };
        match outcome {
            Ok(token) => {
                let hasher = hasher.lock().unwrap_or_else(|e| e.into_inner());
                if hasher.num_bytes() != part.length {
                    return Err(ClientError::Invalid("the file is shorter than when the upload began".into()));
                }
                Ok((token, hasher.finish()))
            }
            Err(e) => {
                progress.retreat(counted.load(Ordering::Relaxed));
                Err(e)
            }
        }
    }
}
