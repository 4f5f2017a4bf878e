//! The embedded blob store: files under `<data dir>/blobs`.
//!
//! An upload is one staging file, `staging/<upload id>`, sized at initiate.
//! Each part PUT allocates its range, writes its bytes in place at the
//! part's offset (`O_DIRECT` where it can: they are synced at once, and
//! copying them into the page cache was most of the server's CPU) and
//! `fdatasync`s before it reports success. Completing renames the staging
//! file to `files/<file uid>`: no byte is copied, so completing costs the
//! same for 1 MiB and 100 GiB.
//!
//! Which PUTs and completes are under way is kept in process memory, which
//! is right here and only here: the bytes are on this machine's disk, so
//! only this process can write them. It enforces what the metadata store
//! cannot: two PUTs of one part never interleave, and a complete seals the
//! upload from before it reads the part records until after it commits, so
//! no PUT can change a part between the check and the registration. A PUT
//! holds its claim on the part until the part is recorded.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::ops::Range;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use ferry_core::blob_key::BlobKey;
use ferry_core::checksum::{PartDigest, PartHasher};
use ferry_core::ids::{FileUid, UploadId};
use ferry_core::plan::PartRange;
use futures_util::StreamExt;
use tokio::task::spawn_blocking;

use crate::{BlobError, BlobInventory, BlobStore, ByteSource, ByteStream, Result, StoreUpload};

/// Bytes gathered before one positioned write. Bigger writes cost less
/// CPU (a fifth less at 512 KiB than at 128 KiB), but each stream into
/// the disk has two buffers (one filling, one being written): once many
/// streams run at once, new ones get small buffers, so that 64 concurrent
/// PUTs stay under the server's memory target.
const WRITE_BUFFER: usize = 512 * 1024;
const WRITE_BUFFER_WHEN_BUSY: usize = 128 * 1024;
/// Streams at once beyond which new ones get the small buffers.
const BUSY_STREAMS: usize = 16;
/// What `O_DIRECT` asks of a write's memory, offset and length (the
/// largest logical block size in common use).
const DIRECT_ALIGN: usize = 4096;
/// One positioned read when streaming a file out (512 KiB and 1 MiB sent
/// alike here; 256 KiB through a buffered reader was a third slower).
const READ_BUFFER: usize = 512 * 1024;
/// Chunks read ahead of the one being sent.
const READ_AHEAD: usize = 2;

pub struct LocalDisk {
    shared: Arc<Shared>,
}

struct Shared {
    staging: PathBuf,
    files: PathBuf,
    activity: Mutex<HashMap<UploadId, Activity>>,
    /// Streams writing into the disk right now ([`StreamSlot`]).
    streams: AtomicUsize,
}

/// What is happening to one upload's staging file right now.
#[derive(Default)]
struct Activity {
    parts_in_flight: HashSet<u32>,
    completing: bool,
    /// Taken by a part's buffered writes into the staging file (its tail,
    /// or all of it where `O_DIRECT` is refused), one at a time. The
    /// kernel runs buffered writes to one file one at a time anyway (the
    /// inode's lock), but its waiters spin: with 8 parts in flight a 4 GiB
    /// upload spent a fifth of the server's CPU spinning there, taken from
    /// the network and the CRCs. Waiting here sleeps instead.
    write_turn: Arc<Mutex<()>>,
}

impl Shared {
    fn staging_path(&self, upload_id: &UploadId) -> PathBuf {
        self.staging.join(upload_id.to_string())
    }

    fn file_path(&self, file_uid: &FileUid) -> PathBuf {
        self.files.join(file_uid.to_string())
    }

    /// Where a file written whole (a simple upload) waits until it is.
    fn staging_path_of_file(&self, file_uid: &FileUid) -> PathBuf {
        self.staging.join(file_uid.to_string())
    }

    fn activity(&self) -> std::sync::MutexGuard<'_, HashMap<UploadId, Activity>> {
        self.activity.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn release(&self, upload_id: &UploadId, change: impl FnOnce(&mut Activity)) {
        let mut map = self.activity();
        if let Some(activity) = map.get_mut(upload_id) {
            change(activity);
            if activity.parts_in_flight.is_empty() && !activity.completing {
                map.remove(upload_id);
            }
        }
    }
}

/// Makes a rename or a new directory entry durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn remove_if_present(path: &Path) -> std::io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Opens an upload's staging file for a part's writes twice: buffered,
/// and with `O_DIRECT` where the filesystem takes it (not every one does).
///
/// A part's bytes written direct skip the page cache: copying them into
/// it was most of the server's CPU while ingesting, and they are synced
/// at once anyway. Only aligned blocks can go that way, so a part's
/// unaligned tail goes through the buffered one.
fn open_for_part_writes(path: &Path) -> std::io::Result<Writable> {
    let buffered = OpenOptions::new().write(true).open(path)?;
    let direct = match OpenOptions::new().write(true).custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32).open(path)
    {
        Ok(file) => Some(file),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => None,
        Err(e) => return Err(e),
    };
    Ok(Writable { buffered, direct })
}

/// One file, open for writes: see [`open_for_part_writes`].
struct Writable {
    buffered: File,
    direct: Option<File>,
}

impl Writable {
    /// Writes `bytes` at `offset`: the aligned blocks direct, the rest
    /// buffered, under the upload's write turn.
    fn write_at(&mut self, bytes: &[u8], offset: u64, write_turn: &Mutex<()>) -> std::io::Result<()> {
        let aligned = offset.is_multiple_of(DIRECT_ALIGN as u64) && bytes.as_ptr().addr().is_multiple_of(DIRECT_ALIGN);
        let direct_len = match &self.direct {
            Some(_) if aligned => bytes.len() / DIRECT_ALIGN * DIRECT_ALIGN,
            _ => 0,
        };
        if let (Some(direct), true) = (&self.direct, direct_len > 0) {
            // Direct writes into blocks the part has allocated take the
            // inode's lock shared: they run side by side, no turn needed.
            match direct.write_all_at(&bytes[..direct_len], offset) {
                Ok(()) => {}
                // A block size above DIRECT_ALIGN: this file is written
                // buffered from now on.
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                    self.direct = None;
                    return self.write_at(bytes, offset, write_turn);
                }
                Err(e) => return Err(e),
            }
        }
        if direct_len < bytes.len() {
            let _turn = write_turn.lock().unwrap_or_else(|e| e.into_inner());
            self.buffered.write_all_at(&bytes[direct_len..], offset + direct_len as u64)?;
        }
        Ok(())
    }
}

/// A write buffer whose bytes start at an address `O_DIRECT` takes.
struct AlignedBuffer {
    storage: Box<[u8]>,
    start: usize,
    capacity: usize,
    len: usize,
}

impl AlignedBuffer {
    fn new(capacity: usize) -> Self {
        let storage = vec![0; capacity + DIRECT_ALIGN].into_boxed_slice();
        let start = storage.as_ptr().align_offset(DIRECT_ALIGN);
        Self { storage, start, capacity, len: 0 }
    }

    fn filled(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }

    fn room(&self) -> usize {
        self.capacity - self.len
    }

    /// Appends `bytes`, which must fit in [`Self::room`].
    fn fill(&mut self, bytes: &[u8]) {
        let at = self.start + self.len;
        self.storage[at..at + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    fn clear(&mut self) {
        self.len = 0;
    }
}

/// One stream's place among those writing into the disk, which sets the
/// size of its buffers; dropping it frees the place.
struct StreamSlot {
    shared: Arc<Shared>,
    buffer_size: usize,
}

impl StreamSlot {
    fn take(shared: &Arc<Shared>) -> Self {
        let before = shared.streams.fetch_add(1, Ordering::Relaxed);
        let buffer_size = if before < BUSY_STREAMS { WRITE_BUFFER } else { WRITE_BUFFER_WHEN_BUSY };
        Self { shared: shared.clone(), buffer_size }
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.shared.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    spawn_blocking(f).await.map_err(|e| BlobError::Io(std::io::Error::other(e)))?
}

impl LocalDisk {
    /// Opens the store rooted at `root`, creating its directories.
    pub fn open(root: &Path) -> std::io::Result<Self> {
        let staging = root.join("staging");
        let files = root.join("files");
        for dir in [root, &staging, &files] {
            fs::create_dir_all(dir)?;
        }
        sync_dir(root)?;
        Ok(Self {
            shared: Arc::new(Shared { staging, files, activity: Mutex::default(), streams: AtomicUsize::new(0) }),
        })
    }

    /// Bytes an unprivileged writer may still put on the files' filesystem.
    pub fn free_bytes(&self) -> std::io::Result<u64> {
        let stat = rustix::fs::statvfs(&self.shared.files)?;
        Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
    }

    /// Copies file `uid`'s bytes from `source` (another data dir's store)
    /// into this one under the same name, synced: what a backup does for
    /// each file its database copy names. `None` if `source` no longer has
    /// them (the janitor deleted the file since). Call [`Self::sync_files`]
    /// once after the last copy.
    pub fn copy_file_from(&self, source: &LocalDisk, uid: &FileUid) -> std::io::Result<Option<u64>> {
        let to = self.shared.file_path(uid);
        // `fs::copy` lets the kernel copy (copy_file_range, a reflink
        // where the filesystem has them): no byte passes through here.
        let copied = match fs::copy(source.shared.file_path(uid), &to) {
            Ok(copied) => copied,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        File::open(&to)?.sync_all()?;
        Ok(Some(copied))
    }

    /// Makes the files copied in with [`Self::copy_file_from`] durable
    /// (their directory entries).
    pub fn sync_files(&self) -> std::io::Result<()> {
        sync_dir(&self.shared.files)
    }

    /// Claims one part for a PUT: refused at once, before a byte is read,
    /// while another PUT of the part is under way or the upload is sealed
    /// by a complete. The claim lasts until the PUT has recorded the part
    /// (dropping it ends the PUT), so a complete never seals an upload
    /// between a part's bytes landing and its record being written.
    pub fn claim_part(&self, upload_id: &UploadId, part_number: u32) -> Result<PartClaim> {
        let write_turn = {
            let mut map = self.shared.activity();
            let activity = map.entry(*upload_id).or_default();
            if activity.completing {
                return Err(BlobError::UploadSealed);
            }
            if !activity.parts_in_flight.insert(part_number) {
                return Err(BlobError::PartInProgress);
            }
            activity.write_turn.clone()
        };
        Ok(PartClaim { shared: self.shared.clone(), upload_id: *upload_id, part_number, write_turn })
    }

    /// Seals an upload for a complete: refused while a part is claimed
    /// ([`BlobError::PartInProgress`]) or another complete holds the seal
    /// ([`BlobError::UploadSealed`]); while it is held no part can be
    /// claimed. The complete reads the part records, places the file and
    /// commits under it, so the bytes it registers are the ones it checked.
    pub fn seal(&self, upload_id: &UploadId) -> Result<Seal> {
        let mut map = self.shared.activity();
        let activity = map.entry(*upload_id).or_default();
        if activity.completing {
            return Err(BlobError::UploadSealed);
        }
        if !activity.parts_in_flight.is_empty() {
            return Err(BlobError::PartInProgress);
        }
        activity.completing = true;
        Ok(Seal { shared: self.shared.clone(), upload_id: *upload_id })
    }
}

/// One part's place among the PUTs in flight; dropping it frees the place.
/// Once the writer is open it lives inside the writer's sink, which travels
/// into each blocking write, so the place is held until the last write has
/// landed even if the client went away and the request was dropped
/// mid-write; [`PartWriter::finish`] hands it back to be held until the
/// part is recorded.
pub struct PartClaim {
    shared: Arc<Shared>,
    upload_id: UploadId,
    part_number: u32,
    write_turn: Arc<Mutex<()>>,
}

impl std::fmt::Debug for PartClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartClaim").field("upload_id", &self.upload_id).field("part_number", &self.part_number).finish()
    }
}

impl Drop for PartClaim {
    fn drop(&mut self) {
        let part = self.part_number;
        self.shared.release(&self.upload_id, |a| {
            a.parts_in_flight.remove(&part);
        });
    }
}

impl PartClaim {
    /// Opens the upload's staging file to write the part's `range`.
    ///
    /// A staging file found renamed to its file (`files/<file uid>`) is an
    /// interrupted complete's: a crash, or a commit that failed, after the
    /// rename. The caller has just read the upload as active, and no
    /// complete can be between its rename and its commit while a part is
    /// claimed, so the rename was never committed and is undone, which
    /// makes the upload whole again.
    pub async fn open(self, file_uid: &FileUid, range: PartRange) -> Result<PartWriter> {
        let staging = self.shared.staging_path(&self.upload_id);
        let placed = self.shared.file_path(file_uid);
        let dirs = [self.shared.staging.clone(), self.shared.files.clone()];
        let file = blocking(move || {
            let open = || {
                let file = open_for_part_writes(&staging)?;
                // The part's blocks, allocated up front (unwritten, so
                // nothing is read back as zeros): direct writes into them
                // run side by side, and a full disk is found before a
                // byte is read.
                match rustix::fs::fallocate(
                    &file.buffered,
                    rustix::fs::FallocateFlags::empty(),
                    range.offset,
                    range.length,
                ) {
                    Err(rustix::io::Errno::OPNOTSUPP) | Ok(()) => Ok(file),
                    Err(e) => Err(std::io::Error::from(e)),
                }
            };
            match open() {
                Ok(file) => return Ok(file),
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(BlobError::from_io(e)),
                Err(_) => {}
            }
            match fs::rename(&placed, &staging) {
                Ok(()) => {
                    for dir in &dirs {
                        sync_dir(dir).map_err(BlobError::from_io)?;
                    }
                    tracing::info!(path = %staging.display(), "restored the staging file of an interrupted complete");
                }
                // Another part's PUT may have restored it just now.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(BlobError::from_io(e)),
            }
            match open() {
                Ok(file) => Ok(file),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(BlobError::UploadGone),
                Err(e) => Err(BlobError::from_io(e)),
            }
        })
        .await?;
        let write_turn = self.write_turn.clone();
        let slot = StreamSlot::take(&self.shared);
        Ok(PartWriter(Writer::new(Sink::new(file, range.offset, Some(self), write_turn, slot), range.length)))
    }
}

/// An upload sealed for a complete; dropping it unseals.
pub struct Seal {
    shared: Arc<Shared>,
    upload_id: UploadId,
}

impl Drop for Seal {
    fn drop(&mut self) {
        self.shared.release(&self.upload_id, |a| a.completing = false);
    }
}

impl Seal {
    /// Turns the staging file into the file `file_uid` (a rename, made
    /// durable). Idempotent: a staging file renamed by an earlier attempt
    /// that was never committed is already in place.
    pub async fn place(&self, file_uid: &FileUid) -> Result<()> {
        let from = self.shared.staging_path(&self.upload_id);
        let to = self.shared.file_path(file_uid);
        let dir = self.shared.files.clone();
        blocking(move || {
            match fs::rename(&from, &to) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && to.exists() => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(BlobError::UploadGone),
                Err(e) => return Err(BlobError::from_io(e)),
            }
            sync_dir(&dir).map_err(BlobError::from_io)
        })
        .await
    }

    /// Undoes [`Seal::place`] for a commit that was refused, so that the
    /// upload takes parts again.
    pub async fn unplace(&self, file_uid: &FileUid) -> Result<()> {
        let from = self.shared.file_path(file_uid);
        let to = self.shared.staging_path(&self.upload_id);
        let dirs = [self.shared.staging.clone(), self.shared.files.clone()];
        blocking(move || {
            fs::rename(&from, &to).map_err(BlobError::from_io)?;
            for dir in &dirs {
                sync_dir(dir).map_err(BlobError::from_io)?;
            }
            Ok(())
        })
        .await
    }
}

/// Bytes on their way into one file at one offset: buffered, hashed and
/// written with positioned writes on a blocking thread.
struct Sink {
    file: Writable,
    offset: u64,
    written: u64,
    hasher: PartHasher,
    buffer: AlignedBuffer,
    /// A part's place among the PUTs in flight, released when the sink is.
    claim: Option<PartClaim>,
    /// The upload's write turn ([`Activity::write_turn`]); a simple
    /// upload's file has a writer of its own and a turn of its own.
    write_turn: Arc<Mutex<()>>,
    _slot: StreamSlot,
}

impl Sink {
    fn new(
        file: Writable,
        offset: u64,
        claim: Option<PartClaim>,
        write_turn: Arc<Mutex<()>>,
        slot: StreamSlot,
    ) -> Box<Self> {
        Box::new(Self {
            file,
            offset,
            written: 0,
            hasher: PartHasher::default(),
            buffer: AlignedBuffer::new(slot.buffer_size),
            claim,
            write_turn,
            _slot: slot,
        })
    }

    /// Writes the buffer at its place and hashes it.
    fn flush(&mut self) -> Result<()> {
        let bytes = self.buffer.filled();
        if bytes.is_empty() {
            return Ok(());
        }
        self.file.write_at(bytes, self.offset + self.written, &self.write_turn).map_err(BlobError::from_io)?;
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
        self.buffer.clear();
        Ok(())
    }

    /// Flushes, then syncs: the direct writes' blocks and the buffered
    /// tail alike (a direct write leaves the disk's cache and the
    /// filesystem's allocation records to the sync).
    fn flush_and_sync(&mut self) -> Result<()> {
        self.flush()?;
        self.file.buffered.sync_data().map_err(BlobError::from_io)
    }
}

/// Streams bytes into a [`Sink`], at most `limit` of them. While the sink
/// writes one buffer on a blocking thread, the next fills from the
/// network: receiving and writing overlap even for a single stream.
struct Writer {
    /// `None` while a write is in flight, or after a failure.
    sink: Option<Box<Sink>>,
    /// The write in flight; the sink comes back with its outcome.
    pending: Option<tokio::task::JoinHandle<(Box<Sink>, Result<()>)>>,
    /// Bytes gathering for the next write.
    filling: AlignedBuffer,
    received: u64,
    limit: u64,
}

impl Writer {
    fn new(sink: Box<Sink>, limit: u64) -> Self {
        let filling = AlignedBuffer::new(sink.buffer.capacity);
        Self { sink: Some(sink), pending: None, filling, received: 0, limit }
    }

    /// Takes the next chunk. A chunk that would run past the limit is
    /// refused whole: nothing is ever written past it.
    async fn write(&mut self, mut chunk: Bytes) -> Result<()> {
        self.received += chunk.len() as u64;
        if self.received > self.limit {
            // Refused once the write in flight has landed: the answer
            // comes when this PUT has stopped touching the file.
            let _ = self.settle().await;
            return Err(BlobError::TooLong { expected: self.limit });
        }
        // The buffers are filled to their capacity and never past it: a
        // Vec grown by one byte doubles, and with 64 parts in flight that
        // doubling was a third of the server's memory.
        while !chunk.is_empty() {
            let taken = chunk.split_to(self.filling.room().min(chunk.len()));
            self.filling.fill(&taken);
            if self.filling.room() == 0 {
                self.settle().await?;
                let mut sink = self.sink.take().ok_or(BlobError::UploadGone)?;
                std::mem::swap(&mut sink.buffer, &mut self.filling);
                self.pending = Some(spawn_blocking(move || {
                    let outcome = sink.flush();
                    (sink, outcome)
                }));
            }
        }
        Ok(())
    }

    /// Waits for the write in flight, if any, and takes the sink back.
    async fn settle(&mut self) -> Result<()> {
        if let Some(pending) = self.pending.take() {
            let (sink, outcome) = pending.await.map_err(|e| BlobError::Io(std::io::Error::other(e)))?;
            outcome?;
            self.sink = Some(sink);
        }
        Ok(())
    }

    /// Writes what is buffered, makes it durable and returns the digest.
    async fn finish(&mut self) -> Result<PartDigest> {
        self.settle().await?;
        let mut sink = self.sink.take().ok_or(BlobError::UploadGone)?;
        std::mem::swap(&mut sink.buffer, &mut self.filling);
        let (sink, outcome) = spawn_blocking(move || {
            let outcome = sink.flush_and_sync();
            (sink, outcome)
        })
        .await
        .map_err(|e| BlobError::Io(std::io::Error::other(e)))?;
        outcome?;
        let digest = sink.hasher.finish();
        self.sink = Some(sink);
        Ok(digest)
    }
}

/// Streams one part's bytes into place. Feed it with [`PartWriter::write`],
/// then call [`PartWriter::finish`]; dropping it without finishing leaves
/// the part not uploaded.
pub struct PartWriter(Writer);

impl PartWriter {
    /// Stops writing: waits for the write in flight to land, so that the
    /// part's claim is free when this returns (dropping a writer frees it
    /// only once that write is done).
    pub async fn abandon(mut self) {
        let _ = self.0.settle().await;
    }

    /// Takes the next chunk of the body; refuses one that would run past
    /// the part's length.
    pub async fn write(&mut self, chunk: Bytes) -> Result<()> {
        self.0.write(chunk).await
    }

    /// Writes what is buffered and makes the part durable. Checks the body
    /// was exactly the part's length. Hands back the part's claim, to be
    /// held until the part is recorded.
    pub async fn finish(mut self) -> Result<(PartDigest, PartClaim)> {
        let expected = self.0.limit;
        if self.0.received != expected {
            let _ = self.0.settle().await;
            return Err(BlobError::TooShort { received: self.0.received, expected });
        }
        let digest = self.0.finish().await?;
        let claim = self.0.sink.as_mut().and_then(|sink| sink.claim.take()).ok_or(BlobError::UploadGone)?;
        Ok((digest, claim))
    }
}

#[async_trait]
impl BlobStore for LocalDisk {
    async fn check(&self) -> Result<()> {
        let dirs = [self.shared.staging.clone(), self.shared.files.clone()];
        blocking(move || {
            for dir in dirs {
                fs::metadata(&dir).map_err(BlobError::from_io)?;
            }
            Ok(())
        })
        .await
    }

    async fn create_upload(&self, upload_id: &UploadId, _file_uid: &FileUid, num_bytes: u64) -> Result<Option<String>> {
        let (path, dir) = (self.shared.staging_path(upload_id), self.shared.staging.clone());
        blocking(move || {
            // Sparse: the length is set now, the space is taken as parts land.
            let file = OpenOptions::new().write(true).create_new(true).open(&path).map_err(BlobError::from_io)?;
            let sized = file.set_len(num_bytes).and_then(|()| file.sync_all()).and_then(|()| sync_dir(&dir));
            if let Err(e) = sized {
                let _ = fs::remove_file(&path);
                return Err(BlobError::from_io(e));
            }
            Ok(None)
        })
        .await
    }

    async fn write_file(&self, file_uid: &FileUid, max_len: u64, mut bytes: ByteSource<'_>) -> Result<PartDigest> {
        // Written aside under the file's uid, renamed into place once whole.
        let partial = self.shared.staging_path_of_file(file_uid);
        let path = partial.clone();
        // Buffered: a simple upload's file grows with each write, and direct
        // writes that extend a file wait on the disk one by one (a third
        // slower here); the one sync at the end is cheaper.
        let file =
            blocking(move || OpenOptions::new().write(true).create_new(true).open(path).map_err(BlobError::from_io))
                .await?;
        let file = Writable { buffered: file, direct: None };
        let slot = StreamSlot::take(&self.shared);
        let mut writer = Writer::new(Sink::new(file, 0, None, Arc::default(), slot), max_len);
        let written = async {
            while let Some(chunk) = bytes.next().await {
                writer.write(chunk.map_err(BlobError::Source)?).await?;
            }
            writer.finish().await
        }
        .await;
        let (to, dir) = (self.shared.file_path(file_uid), self.shared.files.clone());
        blocking(move || {
            let placed = written.and_then(|digest| {
                fs::rename(&partial, &to).and_then(|()| sync_dir(&dir)).map_err(BlobError::from_io)?;
                Ok(digest)
            });
            if placed.is_err() {
                let _ = fs::remove_file(&partial);
            }
            placed
        })
        .await
    }

    async fn abort_upload(&self, upload: StoreUpload<'_>) -> Result<()> {
        self.delete(&BlobKey::upload(upload.upload_id, upload.file_uid, None)).await
    }

    async fn delete(&self, key: &BlobKey) -> Result<()> {
        let paths = match key {
            BlobKey::Upload { upload_id, file_uid, .. } => {
                vec![self.shared.staging_path(upload_id), self.shared.file_path(file_uid)]
            }
            // A simple upload cut short leaves its bytes aside, under the uid.
            BlobKey::File(file) => vec![self.shared.file_path(file), self.shared.staging_path_of_file(file)],
        };
        let dirs = [self.shared.staging.clone(), self.shared.files.clone()];
        blocking(move || {
            let mut removed = false;
            for path in &paths {
                removed |= remove_if_present(path).map_err(BlobError::from_io)?;
            }
            if removed {
                for dir in &dirs {
                    sync_dir(dir).map_err(BlobError::from_io)?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn inventory(&self) -> Result<BlobInventory> {
        let (staging, files) = (self.shared.staging.clone(), self.shared.files.clone());
        blocking(move || {
            let mut inventory = BlobInventory::default();
            for entry in fs::read_dir(&files).map_err(BlobError::from_io)? {
                let entry = entry.map_err(BlobError::from_io)?;
                let name = entry.file_name().to_string_lossy().into_owned();
                match name.parse::<FileUid>() {
                    Ok(uid) => inventory.files.push((uid, entry.metadata().map_err(BlobError::from_io)?.len())),
                    Err(_) => inventory.strangers.push(format!("files/{name}")),
                }
            }
            for entry in fs::read_dir(&staging).map_err(BlobError::from_io)? {
                let name = entry.map_err(BlobError::from_io)?.file_name().to_string_lossy().into_owned();
                if let Ok(upload) = name.parse::<UploadId>() {
                    inventory.uploads.push(upload);
                } else if let Ok(file) = name.parse::<FileUid>() {
                    inventory.uploads_of_files.push(file);
                } else {
                    inventory.strangers.push(format!("staging/{name}"));
                }
            }
            Ok(inventory)
        })
        .await
    }

    async fn file_size(&self, file_uid: &FileUid) -> Result<Option<u64>> {
        let path = self.shared.file_path(file_uid);
        blocking(move || match fs::metadata(path) {
            Ok(metadata) => Ok(Some(metadata.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(BlobError::from_io(e)),
        })
        .await
    }

    async fn read(&self, file_uid: &FileUid, range: Range<u64>) -> Result<ByteStream> {
        let path = self.shared.file_path(file_uid);
        let file = Arc::new(blocking(move || File::open(path).map_err(BlobError::from_io)).await?);
        // Each chunk is one positioned read on a blocking thread, straight
        // into the buffer that goes out; the next ones are read while this
        // one is sent, so the socket never waits on the disk.
        let chunks = range.clone().step_by(READ_BUFFER).map(move |start| {
            let file = file.clone();
            let len = (range.end - start).min(READ_BUFFER as u64);
            async move {
                spawn_blocking(move || {
                    let mut chunk = Vec::with_capacity(len as usize);
                    PositionedReader { file: &file, position: start }.take(len).read_to_end(&mut chunk)?;
                    if (chunk.len() as u64) < len {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                    Ok(Bytes::from(chunk))
                })
                .await
                .map_err(std::io::Error::other)?
            }
        });
        Ok(Box::pin(futures_util::stream::iter(chunks).buffered(READ_AHEAD)))
    }
}

/// Reads a shared file from a position of its own, so chunks read at once
/// never move one another's cursor.
struct PositionedReader<'a> {
    file: &'a File,
    position: u64,
}

impl Read for PositionedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.file.read_at(buf, self.position)?;
        self.position += read as u64;
        Ok(read)
    }
}
