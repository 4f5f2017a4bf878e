//! Names of stored bytes, as the deletion queue records them.
//!
//! The metadata store queues a key in the transaction that stops
//! referencing the bytes; the blob store later deletes what it names.
//! Keys are built from typed ids only, never from user input.

use std::fmt;
use std::str::FromStr;

use crate::ids::{FileUid, UploadId};
use crate::secret::{decode_hex, encode_hex};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobKey {
    /// An upload's storage, and the file it may have turned into if a
    /// complete got as far as the store but was never committed. The store's
    /// own id of the upload (an S3 multipart upload id) when it has one.
    Upload { upload_id: UploadId, file_uid: FileUid, store_upload_id: Option<String> },
    /// A registered file's bytes.
    File(FileUid),
}

impl BlobKey {
    pub fn upload(upload_id: UploadId, file_uid: FileUid, store_upload_id: Option<&str>) -> Self {
        Self::Upload { upload_id, file_uid, store_upload_id: store_upload_id.map(str::to_owned) }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a blob key")]
pub struct InvalidBlobKey(pub String);

impl fmt::Display for BlobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Upload { upload_id, file_uid, store_upload_id: None } => write!(f, "upload/{upload_id}/{file_uid}"),
            // The store's id is hex-encoded: it may hold any character.
            Self::Upload { upload_id, file_uid, store_upload_id: Some(id) } => {
                write!(f, "upload/{upload_id}/{file_uid}/{}", encode_hex(id.as_bytes()))
            }
            Self::File(file) => write!(f, "file/{file}"),
        }
    }
}

impl FromStr for BlobKey {
    type Err = InvalidBlobKey;

    fn from_str(text: &str) -> Result<Self, InvalidBlobKey> {
        let invalid = || InvalidBlobKey(text.to_owned());
        let fields: Vec<&str> = text.split('/').collect();
        let upload = |upload: &str, file: &str, store: Option<String>| -> Result<Self, InvalidBlobKey> {
            Ok(Self::Upload {
                upload_id: upload.parse().map_err(|_| invalid())?,
                file_uid: file.parse().map_err(|_| invalid())?,
                store_upload_id: store,
            })
        };
        match fields.as_slice() {
            ["upload", upload_id, file_uid] => upload(upload_id, file_uid, None),
            ["upload", upload_id, file_uid, store] => {
                let bytes = decode_hex(store).ok_or_else(invalid)?;
                upload(upload_id, file_uid, Some(String::from_utf8(bytes).map_err(|_| invalid())?))
            }
            ["file", file] => Ok(Self::File(file.parse().map_err(|_| invalid())?)),
            _ => Err(invalid()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_strangers_are_refused() {
        let (upload, file) = (UploadId::generate(), FileUid::generate());
        for key in [
            BlobKey::upload(upload, file, None),
            BlobKey::upload(upload, file, Some("2~x/y.z=Q")),
            BlobKey::File(FileUid::generate()),
        ] {
            assert_eq!(key.to_string().parse(), Ok(key.clone()));
        }
        for bad in ["", "file", "file/../x", "upload/x/y", "file/fil_0/extra", &format!("upload/{upload}/{file}/zz")] {
            assert!(bad.parse::<BlobKey>().is_err(), "{bad}");
        }
    }
}
