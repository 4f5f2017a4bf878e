//! Names of stored bytes, as the deletion queue records them.
//!
//! The metadata store queues a key in the transaction that stops
//! referencing the bytes; the blob store later deletes what it names.
//! Keys are built from typed ids only, never from user input.

use std::fmt;
use std::str::FromStr;

use crate::ids::{FileUid, UploadId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobKey {
    /// An upload's storage, and the file it may have turned into if a
    /// complete got as far as the store but was never committed.
    Upload(UploadId, FileUid),
    /// A registered file's bytes.
    File(FileUid),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a blob key")]
pub struct InvalidBlobKey(pub String);

impl fmt::Display for BlobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Upload(upload, file) => write!(f, "upload/{upload}/{file}"),
            Self::File(file) => write!(f, "file/{file}"),
        }
    }
}

impl FromStr for BlobKey {
    type Err = InvalidBlobKey;

    fn from_str(text: &str) -> Result<Self, InvalidBlobKey> {
        let invalid = || InvalidBlobKey(text.to_owned());
        let fields: Vec<&str> = text.split('/').collect();
        match fields.as_slice() {
            ["upload", upload, file] => {
                Ok(Self::Upload(upload.parse().map_err(|_| invalid())?, file.parse().map_err(|_| invalid())?))
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
        for key in [BlobKey::Upload(UploadId::generate(), FileUid::generate()), BlobKey::File(FileUid::generate())] {
            assert_eq!(key.to_string().parse(), Ok(key));
        }
        for bad in ["", "file", "file/../x", "upload/x/y", "file/fil_0/extra"] {
            assert!(bad.parse::<BlobKey>().is_err(), "{bad}");
        }
    }
}
