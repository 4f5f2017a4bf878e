//! `ferry admin backup PATH`: a copy of an embedded server's data dir that
//! a server can start from, made while the server runs.
//!
//! The database is copied first, as of one moment ([`Sqlite::snapshot`]),
//! then the bytes of every file that copy names. A registered file's bytes
//! never change (a new version is a new file), so each is copied whole; a
//! file deleted after the moment keeps its bytes for the deletion grace,
//! and a backup that outlasts it fails rather than leave a hole. Uploads in
//! progress are left out, because their staging files change under any
//! copy: they are aborted in the copy, so after a restore their clients
//! start them again instead of resuming into bytes that are not there.
//! Last, the copy is checked as `ferry admin check` would.

use std::fs;
use std::path::Path;

use ferry_blob::LocalDisk;
use ferry_meta::Sqlite;

use crate::service::admin::Admin;
use crate::service::now_secs;
use crate::settings::StorageSettings;
use crate::startup::{
    DATABASE_FILE, Database, Missing, SECRET_FILE, StartupError, io, open_metadata, write_private_file,
};

/// What a backup holds.
#[derive(Debug, Default)]
pub struct BackupReport {
    pub files: u64,
    pub bytes: u64,
    /// Uploads in progress at the moment of the copy, aborted in it.
    pub uploads_left_out: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "backup copies the embedded layout (SQLite and the data dir's files); for PostgreSQL use pg_dump, \
         and the bucket's own replication or versioning for the bytes"
    )]
    NotEmbedded,
    #[error("{0} exists and is not an empty directory: a backup goes to a new place")]
    DestinationInUse(String),
    #[error(
        "{0} files were deleted while the backup ran (it took longer than --deletion-grace); run it again \
         into a new directory"
    )]
    FilesVanished(usize),
    #[error("the copy does not check out:\n{0}")]
    Inconsistent(String),
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error("{0}")]
    Store(String),
}

/// Backs up the server whose data dir and settings these are into `dest`.
pub async fn backup(
    data_dir: &Path,
    database_url: Option<&str>,
    storage: &StorageSettings,
    dest: &Path,
) -> Result<BackupReport, BackupError> {
    let Database::Sqlite(source_db) = Database::named(data_dir, database_url)? else {
        return Err(BackupError::NotEmbedded);
    };
    if storage.storage.as_deref().is_some_and(|s| s.starts_with("s3://")) {
        return Err(BackupError::NotEmbedded);
    }
    if !source_db.exists() {
        return Err(StartupError::NoDatabase { data_dir: data_dir.to_owned(), path: source_db }.into());
    }
    let in_use = || BackupError::DestinationInUse(dest.display().to_string());
    match fs::read_dir(dest).map(|mut entries| entries.next().is_none()) {
        Ok(true) => {}
        Ok(false) => return Err(in_use()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(dest).map_err(io(format!("creating {}", dest.display())))?;
        }
        Err(_) => return Err(in_use()),
    }

    Sqlite::snapshot(&source_db, &dest.join(DATABASE_FILE)).map_err(|e| BackupError::Store(e.to_string()))?;
    let secret = fs::read(data_dir.join(SECRET_FILE)).map_err(io("reading the server secret"))?;
    write_private_file(&dest.join(SECRET_FILE), &secret).map_err(io("writing the server secret's copy"))?;

    let meta = open_metadata(dest, None, Missing::Refuse, None).await?;
    let source = LocalDisk::open(&data_dir.join("blobs")).map_err(io("opening the blob store"))?;
    let copy = LocalDisk::open(&dest.join("blobs")).map_err(io("making the copy's blob store"))?;
    let inventory = meta.inventory().await.map_err(|e| BackupError::Store(e.to_string()))?;
    let mut report = BackupReport::default();
    for upload in &inventory.active_uploads {
        meta.abort_upload(&upload.org_id, &upload.upload_id, now_secs())
            .await
            .map_err(|e| BackupError::Store(e.to_string()))?;
        report.uploads_left_out += 1;
    }
    let mut vanished = 0;
    for (uid, _) in &inventory.named_files {
        let copied = tokio::task::block_in_place(|| copy.copy_file_from(&source, uid))
            .map_err(io(format!("copying file {uid}")))?;
        match copied {
            Some(bytes) => (report.files, report.bytes) = (report.files + 1, report.bytes + bytes),
            None => vanished += 1,
        }
    }
    copy.sync_files().map_err(io("syncing the copied files"))?;
    fs::File::open(dest).and_then(|dir| dir.sync_all()).map_err(io(format!("syncing {}", dest.display())))?;
    if vanished > 0 {
        return Err(BackupError::FilesVanished(vanished));
    }

    let checked = Admin::new(meta).check(&copy).await.map_err(|e| BackupError::Store(e.to_string()))?;
    if !checked.problems.is_empty() {
        return Err(BackupError::Inconsistent(checked.problems.join("\n")));
    }
    Ok(report)
}
