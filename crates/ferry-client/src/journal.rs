//! The local journal: what an interrupted upload needs to resume.
//!
//! One file per (server, local path) under the state dir. Its first line,
//! the header, names the file as it was (size, modification time) and the
//! upload; the header is written to a temp file, synced and renamed into
//! place, so it is whole or absent. Each finished part then appends one
//! line (token and CRC32C) and syncs it; a line torn by a crash is ignored
//! on reading, and that part is simply sent again.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::error::{ClientError, Result};

const VERSION: u32 = 1;

/// What the journal knows of an upload before any part is done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub version: u32,
    pub server: String,
    pub path: PathBuf,
    pub size: u64,
    pub modified_ns: u64,
    pub file_name: String,
    pub file_type: String,
    pub upload_id: String,
    pub file_uid: String,
    pub num_parts: u32,
    pub part_size: u64,
    /// When the upload began (Unix seconds; 0 in entries written before
    /// this was recorded).
    #[serde(default)]
    pub started_at: u64,
}

/// A finished part: its token and the CRC32C of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    pub part_number: u32,
    pub token: String,
    pub crc32c: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub header: Header,
    /// The latest record of each finished part.
    pub parts: BTreeMap<u32, PartRecord>,
}

pub struct Journal {
    dir: PathBuf,
}

/// Appends part records to one entry; shared by the parts in flight.
#[derive(Clone)]
pub struct EntryWriter {
    file: Arc<Mutex<File>>,
    path: PathBuf,
}

impl Journal {
    /// `$FERRY_STATE_DIR`, else `$XDG_STATE_HOME/ferry`, else `~/.local/state/ferry`.
    pub fn default_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("FERRY_STATE_DIR") {
            return dir.into();
        }
        if let Some(dir) = std::env::var_os("XDG_STATE_HOME") {
            return PathBuf::from(dir).join("ferry");
        }
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| ".".into());
        home.join(".local/state/ferry")
    }

    pub fn open(dir: &Path) -> Result<Self> {
        let dir = dir.join("uploads");
        fs::create_dir_all(&dir).map_err(ClientError::io(&dir))?;
        Ok(Self { dir })
    }

    fn entry_path(&self, server: &str, path: &Path) -> PathBuf {
        let mut hash = sha2::Sha256::new();
        hash.update(server.as_bytes());
        hash.update([0]);
        hash.update(path.as_os_str().as_encoded_bytes());
        let digest = hash.finalize();
        let name: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{name}.jsonl"))
    }

    pub fn load(&self, server: &str, path: &Path) -> Result<Option<Entry>> {
        read_entry(&self.entry_path(server, path))
    }

    /// Starts an entry, replacing any older one for the same file.
    pub fn create(&self, header: &Header) -> Result<EntryWriter> {
        let path = self.entry_path(&header.server, &header.path);
        let temp = path.with_extension("tmp");
        let mut line = serde_json::to_vec(header).map_err(|e| ClientError::Invalid(e.to_string()))?;
        line.push(b'\n');
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&temp)?;
            file.write_all(&line)?;
            file.sync_all()?;
            fs::rename(&temp, &path)?;
            File::open(&self.dir)?.sync_all()
        };
        write().map_err(ClientError::io(&path))?;
        self.append_to(&header.server, &header.path)
    }

    /// Continues an existing entry.
    pub fn append_to(&self, server: &str, path: &Path) -> Result<EntryWriter> {
        let path = self.entry_path(server, path);
        let mut file = OpenOptions::new().read(true).append(true).open(&path).map_err(ClientError::io(&path))?;
        // After a torn line, start the next record on a line of its own.
        let ends_in_newline = {
            use std::io::{Read, Seek, SeekFrom};
            let mut last = [0u8];
            file.seek(SeekFrom::End(-1)).and_then(|_| file.read_exact(&mut last)).map(|()| last[0] == b'\n')
        };
        if !ends_in_newline.map_err(ClientError::io(&path))? {
            file.write_all(b"\n").map_err(ClientError::io(&path))?;
        }
        Ok(EntryWriter { file: Arc::new(Mutex::new(file)), path })
    }

    pub fn remove(&self, server: &str, path: &Path) -> Result<()> {
        let path = self.entry_path(server, path);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ClientError::io(path)(e)),
            _ => Ok(()),
        }
    }

    /// The interrupted upload with this id, if the journal holds it.
    pub fn find_upload(&self, upload_id: &str) -> Result<Option<Entry>> {
        Ok(self.list()?.into_iter().find(|e| e.header.upload_id == upload_id))
    }

    /// Every interrupted upload the journal holds.
    pub fn list(&self) -> Result<Vec<Entry>> {
        let mut entries = Vec::new();
        for item in fs::read_dir(&self.dir).map_err(ClientError::io(&self.dir))? {
            let path = item.map_err(ClientError::io(&self.dir))?.path();
            if path.extension().is_some_and(|e| e == "jsonl")
                && let Some(entry) = read_entry(&path)?
            {
                entries.push(entry);
            }
        }
        entries.sort_by(|a, b| a.header.path.cmp(&b.header.path));
        Ok(entries)
    }
}

fn read_entry(path: &Path) -> Result<Option<Entry>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ClientError::io(path)(e)),
    };
    let mut lines = BufReader::new(file).lines();
    let Some(Ok(first)) = lines.next() else { return Ok(None) };
    let Ok(header) = serde_json::from_str::<Header>(&first) else { return Ok(None) };
    if header.version != VERSION {
        return Ok(None);
    }
    let mut parts = BTreeMap::new();
    for line in lines {
        // A line torn by a crash is skipped: that part is sent again.
        if let Some(record) = line.ok().and_then(|l| serde_json::from_str::<PartRecord>(&l).ok()) {
            parts.insert(record.part_number, record);
        }
    }
    Ok(Some(Entry { header, parts }))
}

impl Header {
    pub fn new(server: &str, path: &Path, size: u64, modified_ns: u64) -> Self {
        Self {
            version: VERSION,
            server: server.to_owned(),
            path: path.to_owned(),
            size,
            modified_ns,
            file_name: String::new(),
            file_type: String::new(),
            upload_id: String::new(),
            file_uid: String::new(),
            num_parts: 0,
            part_size: 0,
            started_at: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        }
    }
}

impl Entry {
    /// The bytes of the parts already done.
    pub fn bytes_done(&self) -> u64 {
        let h = &self.header;
        self.parts.keys().map(|&n| h.part_size.min(h.size.saturating_sub(n as u64 * h.part_size))).sum()
    }
}

impl EntryWriter {
    /// Records a finished part durably.
    pub async fn record(&self, record: PartRecord) -> Result<()> {
        let (file, path) = (self.file.clone(), self.path.clone());
        tokio::task::spawn_blocking(move || {
            let mut line = serde_json::to_vec(&record).expect("a part record serializes");
            line.push(b'\n');
            let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
            file.write_all(&line).and_then(|()| file.sync_data()).map_err(ClientError::io(&path))
        })
        .await
        .map_err(|e| ClientError::Invalid(e.to_string()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(path: &str) -> Header {
        Header {
            upload_id: "upl_x".into(),
            num_parts: 3,
            part_size: 4,
            started_at: 1,
            ..Header::new("http://s", Path::new(path), 10, 7)
        }
    }

    #[tokio::test]
    async fn entries_survive_reopening_and_a_torn_last_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        let writer = journal.create(&header("/data/a.bin")).unwrap();
        writer.record(PartRecord { part_number: 2, token: "\"t2\"".into(), crc32c: 22 }).await.unwrap();
        writer.record(PartRecord { part_number: 0, token: "\"t0\"".into(), crc32c: 10 }).await.unwrap();
        // A crash in the middle of a line.
        std::fs::OpenOptions::new().append(true).open(&writer.path).unwrap().write_all(b"{\"part_num").unwrap();

        let reopened = Journal::open(dir.path()).unwrap();
        let entry = reopened.load("http://s", Path::new("/data/a.bin")).unwrap().unwrap();
        assert_eq!(entry.header, header("/data/a.bin"));
        assert_eq!(entry.parts.keys().copied().collect::<Vec<_>>(), [0, 2]);
        // Records appended after the torn line are read.
        let writer = reopened.append_to("http://s", Path::new("/data/a.bin")).unwrap();
        writer.record(PartRecord { part_number: 1, token: "\"t1\"".into(), crc32c: 11 }).await.unwrap();
        let entry = reopened.load("http://s", Path::new("/data/a.bin")).unwrap().unwrap();
        assert_eq!(entry.parts.keys().copied().collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(entry.bytes_done(), 10, "parts of 4, 4 and the last 2 bytes");
        assert_eq!(journal.list().unwrap().len(), 1);
        assert_eq!(journal.find_upload("upl_x").unwrap().unwrap().header.path, Path::new("/data/a.bin"));
        assert!(journal.find_upload("upl_y").unwrap().is_none());
        assert!(journal.load("http://other", Path::new("/data/a.bin")).unwrap().is_none());

        journal.remove("http://s", Path::new("/data/a.bin")).unwrap();
        assert!(journal.list().unwrap().is_empty());
    }
}
