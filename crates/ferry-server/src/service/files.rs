//! File operations (spec §4). Only download so far.

use ferry_blob::ByteStream;
use ferry_core::ids::OrgId;
use ferry_meta::FileRecord;

use super::{Result, Service, ServiceError};

/// A file and its bytes, ready to stream.
pub struct Download {
    pub file: FileRecord,
    pub bytes: ByteStream,
}

impl Service {
    pub async fn download(&self, org_id: &OrgId, file_name: &str) -> Result<Download> {
        let file = self
            .meta
            .get_file(org_id, file_name)
            .await?
            .ok_or_else(|| ServiceError::FileNotFound(file_name.to_owned()))?;
        if !file.status.is_downloadable() {
            return Err(ServiceError::FileNotDownloadable(file_name.to_owned()));
        }
        let bytes = self.blob.read(&file.file_uid, 0..file.num_bytes).await?;
        Ok(Download { file, bytes })
    }
}
