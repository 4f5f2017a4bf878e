//! The domain of ferry, with no IO: typed ids, part planning, checksum math,
//! the presigned-URL and part-token codecs, API-key hashing and file-name rules.
//!
//! Everything here is a pure function of its inputs (the caller passes the
//! clock and the randomness where needed), so it can be tested exhaustively
//! and reused by the server, the metadata and blob stores and the client.

pub mod api_key;
pub mod base64_stream;
pub mod blob_key;
pub mod checksum;
pub mod cursor;
pub mod file;
pub mod ids;
pub mod names;
pub mod plan;
pub mod presign;
pub mod range;
pub mod secret;
pub mod token;
pub mod upload;
pub mod webhook;

/// One mebibyte, the unit part sizes grow in.
pub const MIB: u64 = 1024 * 1024;
/// One gibibyte.
pub const GIB: u64 = 1024 * MIB;
