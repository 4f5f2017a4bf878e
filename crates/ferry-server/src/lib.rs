//! The ferry server: the HTTP API over the metadata and blob stores.
//!
//! - [`service`]: the operations of the contract, with no HTTP in them;
//! - [`http`]: routes, authentication, request parsing, logging, and the one
//!   place where errors become the contract's envelope;
//! - [`settings`]: every setting of `ferry serve`, in one struct;
//! - [`startup`]: opening the data dir, the stores and the server secret;
//! - [`backup`]: `ferry admin backup`, a copy of an embedded data dir;
//! - [`telemetry`]: the metrics behind `/metrics`;
//! - [`failpoint`]: where tests pause or crash the server (test builds only).

pub mod backup;
pub mod failpoint;
pub mod http;
pub mod service;
pub mod settings;
pub mod startup;
pub mod telemetry;
