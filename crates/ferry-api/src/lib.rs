//! The wire format of the ferry Files API v0.5 (`docs/files-api.md`):
//! request and response bodies, error codes and route paths. Shared by the
//! server and the client, so that both spell every field the same way.
//!
//! Integers that a client could send negative (part numbers, sizes) are
//! `i64` here so that the server can answer with the contract's specific
//! error (`invalid_part_number`, `invalid_file_size`) rather than a type error.

pub mod error;
pub mod files;
pub mod paths;
pub mod uploads;

pub use error::{ErrorCode, ErrorEntry, ErrorResponse};
