//! Downloading a file: into a temp name beside the target, resumed with a
//! `Range` after a cut-off, verified against the file's CRC32C, and renamed
//! into place only when whole and correct.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_api::files::FileMetadata;
use ferry_core::checksum::{Crc32c, Crc32cHasher};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::Client;
use crate::error::{ClientError, Result};
use crate::progress::Progress;
use crate::upload::file_crc32c;

/// Which file a partial download holds bytes of, so that a resume never
/// glues two different files together.
#[derive(Debug, Serialize, Deserialize)]
struct PartialOf {
    file_uid: String,
}

#[derive(Debug, Clone)]
pub struct Downloaded {
    pub path: PathBuf,
    pub num_bytes: u64,
    /// Bytes that were already there from an interrupted download.
    pub resumed_from: u64,
    /// The file at `path` already held these bytes: nothing was fetched.
    pub unchanged: bool,
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}

/// CRC32C of what is already on disk, read once (errors name `out`).
async fn crc_of(path: &Path, out: &Path) -> Result<Crc32cHasher> {
    let mut file = tokio::fs::File::open(path).await.map_err(ClientError::io(out))?;
    let mut hasher = Crc32cHasher::default();
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buffer).await.map_err(ClientError::io(out))?;
        if n == 0 {
            return Ok(hasher);
        }
        hasher.update(&buffer[..n]);
    }
}

/// The file's CRC32C as the server knows it. Unknown only for a file not
/// yet ingested whose parts went straight to an S3 store; then the length
/// is all that can be checked.
fn expected_crc(metadata: &FileMetadata, progress: &dyn Progress) -> Result<Option<Crc32c>> {
    match &metadata.checksum_crc32c {
        Some(text) => Ok(Some(
            Crc32c::from_base64(text).map_err(|e| ClientError::Invalid(format!("the server's checksum: {e}")))?,
        )),
        None => {
            progress.note("the server does not know this file's CRC32C yet: only its length is checked");
            Ok(None)
        }
    }
}

/// Downloads `file_id` to `out`. With `skip_unchanged`, a file already at
/// `out` with the server's size and CRC32C is left as it is.
pub async fn download_file(
    client: &Client,
    file_id: &str,
    out: &Path,
    skip_unchanged: bool,
    progress: Arc<dyn Progress>,
) -> Result<Downloaded> {
    let metadata = client.file_metadata(file_id).await?;
    let expected = expected_crc(&metadata, progress.as_ref())?;
    if skip_unchanged
        && let Some(expected) = expected
        && tokio::fs::metadata(out).await.is_ok_and(|m| m.is_file() && m.len() == metadata.num_bytes)
        && file_crc32c(out).await? == expected
    {
        return Ok(Downloaded {
            path: out.to_owned(),
            num_bytes: metadata.num_bytes,
            resumed_from: 0,
            unchanged: true,
        });
    }
    let partial = with_suffix(out, ".ferry-partial");
    let marker = with_suffix(out, ".ferry-partial.json");

    let same_file = tokio::fs::read(&marker)
        .await
        .ok()
        .and_then(|bytes| serde_json::from_slice::<PartialOf>(&bytes).ok())
        .is_some_and(|p| p.file_uid == metadata.file_uid);
    let mut from = match tokio::fs::metadata(&partial).await {
        Ok(m) if same_file && m.len() <= metadata.num_bytes => m.len(),
        _ => 0,
    };
    if from == 0 {
        let marked = serde_json::to_vec(&PartialOf { file_uid: metadata.file_uid.clone() }).expect("serializes");
        // The two files beside `out` are ours; an error on them is one on `out`.
        tokio::fs::write(&marker, marked).await.map_err(ClientError::io(out))?;
        tokio::fs::File::create(&partial).await.map_err(ClientError::io(out))?;
    }
    let mut hasher = if from > 0 { crc_of(&partial, out).await? } else { Crc32cHasher::default() };
    progress.start(metadata.num_bytes, from);

    if from < metadata.num_bytes {
        let response = client.download_from(file_id, from).await?;
        if response.status() == reqwest::StatusCode::OK && from > 0 {
            // The server sent the whole file after all: start over.
            from = 0;
            hasher = Crc32cHasher::default();
        }
        let mut file = tokio::fs::OpenOptions::new().write(true).open(&partial).await.map_err(ClientError::io(out))?;
        file.set_len(from).await.map_err(ClientError::io(out))?;
        use tokio::io::AsyncSeekExt;
        file.seek(std::io::SeekFrom::Start(from)).await.map_err(ClientError::io(out))?;
        // A cut-off keeps what arrived; the next run resumes from there.
        copy_body(response, &mut file, &mut hasher, progress.as_ref(), out).await?;
        file.sync_all().await.map_err(ClientError::io(out))?;
    }

    if let Err(e) = verify(&hasher, &metadata, expected) {
        // Wrong bytes can never be resumed into right ones: start over next time.
        let _ = tokio::fs::remove_file(&partial).await;
        let _ = tokio::fs::remove_file(&marker).await;
        return Err(e);
    }
    tokio::fs::rename(&partial, out).await.map_err(ClientError::io(out))?;
    let _ = tokio::fs::remove_file(&marker).await;
    progress.finish();
    Ok(Downloaded { path: out.to_owned(), num_bytes: metadata.num_bytes, resumed_from: from, unchanged: false })
}

/// Streams `file_id` into `sink` (standard output, say) and checks its
/// CRC32C at the end. What was written cannot be taken back, so a mismatch
/// is an error after the fact; nothing resumes.
pub async fn download_to(
    client: &Client,
    file_id: &str,
    sink: &mut (impl tokio::io::AsyncWrite + Unpin),
    progress: Arc<dyn Progress>,
) -> Result<u64> {
    let metadata = client.file_metadata(file_id).await?;
    let expected = expected_crc(&metadata, progress.as_ref())?;
    progress.start(metadata.num_bytes, 0);
    let response = client.download_from(file_id, 0).await?;
    let mut hasher = Crc32cHasher::default();
    let stdout = Path::new("standard output");
    copy_body(response, sink, &mut hasher, progress.as_ref(), stdout).await?;
    sink.flush().await.map_err(ClientError::io(stdout))?;
    verify(&hasher, &metadata, expected)?;
    progress.finish();
    Ok(hasher.num_bytes())
}

/// Writes a download's body into `sink`, hashing and counting it; write
/// errors name `shown`.
async fn copy_body(
    response: reqwest::Response,
    sink: &mut (impl tokio::io::AsyncWrite + Unpin),
    hasher: &mut Crc32cHasher,
    progress: &dyn Progress,
    shown: &Path,
) -> Result<()> {
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        sink.write_all(&chunk).await.map_err(ClientError::io(shown))?;
        hasher.update(&chunk);
        progress.advance(chunk.len() as u64);
    }
    Ok(())
}

/// Whether the bytes hashed are the file the server describes: its length,
/// and its CRC32C where the server knows it.
fn verify(hasher: &Crc32cHasher, metadata: &FileMetadata, expected: Option<Crc32c>) -> Result<()> {
    let (crc, num_bytes) = (hasher.finish(), hasher.num_bytes());
    if num_bytes != metadata.num_bytes || expected.is_some_and(|e| e != crc) {
        return Err(ClientError::Integrity {
            expected: expected.map_or_else(|| format!("{} bytes", metadata.num_bytes), |e| e.to_base64()),
            actual: format!("{} ({num_bytes} bytes)", crc.to_base64()),
        });
    }
    Ok(())
}
