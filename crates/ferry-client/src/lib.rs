//! The ferry client: typed calls to the Files API, and uploads and
//! downloads a person can trust on a bad network (design §9).
//!
//! - [`Client`]: one method per route, retrying what retrying can fix;
//! - [`upload::upload_file`]: parallel, resumable, checksummed uploads;
//! - [`download::download_file`]: resumable downloads verified by CRC32C;
//! - [`journal::Journal`]: the local record that lets an upload resume
//!   after a crash, a reboot or Ctrl-C.

mod client;
pub mod download;
mod error;
pub mod journal;
pub mod progress;
mod rate;
pub mod retry;
pub mod upload;

pub use client::Client;
pub use error::{ClientError, Result, Transport};
pub use progress::{NoProgress, Progress};
pub use retry::{RetryEvent, RetryPolicy};
