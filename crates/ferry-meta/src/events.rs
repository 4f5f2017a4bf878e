//! Webhook events as the store keeps them: each with a snapshot of what it
//! is about, taken in the transaction that made the change, so that what a
//! receiver is told is what happened, however much later it is sent.
//! The snapshot is the store's own JSON; the server renders the wire body.

use ferry_core::checksum::Crc32c;
use ferry_core::file::{FileStatus, MetadataStatus};
use ferry_core::ids::{EndpointId, EventId, OrgId};
use ferry_core::upload::UploadState;
use ferry_core::webhook::{EventType, SigningSecret};
use serde_json::{Value, json};

use crate::{FileRecord, MetaError, Result, UploadRecord};

/// Milliseconds since the Unix epoch: delivery times need finer steps
/// than the rest of the store's seconds.
pub type UnixMillis = i64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEndpoint {
    pub endpoint_id: EndpointId,
    pub org_id: OrgId,
    pub url: String,
    pub secret: SigningSecret,
    /// The events it wants; empty for all.
    pub event_types: Vec<EventType>,
    pub created_at: crate::UnixSeconds,
}

impl WebhookEndpoint {
    pub fn wants(&self, event_type: EventType) -> bool {
        self.event_types.is_empty() || self.event_types.contains(&event_type)
    }
}

/// Why a file left its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departure {
    Deleted,
    /// A newer file took its name.
    Replaced,
}

impl Departure {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deleted => "deleted",
            Self::Replaced => "replaced",
        }
    }
}

/// What an event is about, as it was when it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    File(FileRecord),
    DepartedFile(FileRecord, Departure),
    Upload(UploadRecord),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub event_id: EventId,
    pub org_id: OrgId,
    pub event_type: EventType,
    pub created_at: UnixMillis,
    pub subject: Subject,
}

/// One event due to one endpoint, leased to the worker that claimed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub event: Event,
    pub endpoint: WebhookEndpoint,
    /// Attempts made before this one.
    pub attempts: u32,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered { status: String },
    RetryAt { at: UnixMillis, status: String },
    GaveUp { status: String },
}

/// A delivery that was given up on, for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedDelivery {
    pub event_id: EventId,
    pub endpoint_id: EndpointId,
    pub event_type: EventType,
    pub attempts: u32,
    pub last_status: Option<String>,
}

pub(crate) fn subject_to_json(subject: &Subject) -> String {
    let file = |f: &FileRecord| {
        json!({
            "file_uid": f.file_uid.to_string(), "org_id": f.org_id.to_string(), "file_name": f.file_name,
            "file_type": f.file_type, "num_bytes": f.num_bytes, "status": f.status.as_str(),
            "checksum_crc32c": f.checksum_crc32c.map(|c| c.0), "file_index": f.file_index,
            "created_at": f.created_at, "metadata_status": f.metadata_status.as_str(), "attributes": f.attributes,
        })
    };
    let value = match subject {
        Subject::File(f) => json!({ "file": file(f) }),
        Subject::DepartedFile(f, why) => json!({ "file": file(f), "departure": why.as_str() }),
        Subject::Upload(u) => json!({ "upload": {
            "upload_id": u.upload_id.to_string(), "org_id": u.org_id.to_string(), "file_uid": u.file_uid.to_string(),
            "file_name": u.file_name, "file_type": u.file_type, "num_bytes": u.num_bytes, "part_size": u.part_size,
            "state": u.state.as_str(), "created_at": u.created_at, "last_activity_at": u.last_activity_at,
            "store_upload_id": u.store_upload_id,
        }}),
    };
    value.to_string()
}

pub(crate) fn subject_from_json(text: &str) -> Result<Subject> {
    let bad = || MetaError::Backend("bad event subject in the database".into());
    let value: Value = serde_json::from_str(text).map_err(|_| bad())?;
    let text_of = |v: &Value, k: &str| v[k].as_str().map(str::to_owned).ok_or_else(bad);
    let int_of = |v: &Value, k: &str| v[k].as_i64().ok_or_else(bad);
    let parse = |v: &Value, k: &str| -> Result<String> { text_of(v, k) };
    if let Some(u) = value.get("upload") {
        return Ok(Subject::Upload(UploadRecord {
            upload_id: parse(u, "upload_id")?.parse().map_err(|_| bad())?,
            org_id: parse(u, "org_id")?.parse().map_err(|_| bad())?,
            file_uid: parse(u, "file_uid")?.parse().map_err(|_| bad())?,
            file_name: text_of(u, "file_name")?,
            file_type: text_of(u, "file_type")?,
            num_bytes: int_of(u, "num_bytes")? as u64,
            part_size: int_of(u, "part_size")? as u64,
            state: UploadState::parse(&text_of(u, "state")?).ok_or_else(bad)?,
            created_at: int_of(u, "created_at")?,
            last_activity_at: int_of(u, "last_activity_at")?,
            store_upload_id: u["store_upload_id"].as_str().map(str::to_owned),
        }));
    }
    let f = value.get("file").ok_or_else(bad)?;
    let file = FileRecord {
        file_uid: parse(f, "file_uid")?.parse().map_err(|_| bad())?,
        org_id: parse(f, "org_id")?.parse().map_err(|_| bad())?,
        file_name: text_of(f, "file_name")?,
        file_type: text_of(f, "file_type")?,
        num_bytes: int_of(f, "num_bytes")? as u64,
        status: FileStatus::parse(&text_of(f, "status")?).ok_or_else(bad)?,
        checksum_crc32c: f["checksum_crc32c"].as_u64().map(|c| Crc32c(c as u32)),
        file_index: int_of(f, "file_index")? as u64,
        created_at: int_of(f, "created_at")?,
        metadata_status: MetadataStatus::parse(&text_of(f, "metadata_status")?).ok_or_else(bad)?,
        attributes: f["attributes"].as_str().map(str::to_owned),
    };
    Ok(match value["departure"].as_str() {
        None => Subject::File(file),
        Some("deleted") => Subject::DepartedFile(file, Departure::Deleted),
        Some("replaced") => Subject::DepartedFile(file, Departure::Replaced),
        Some(_) => return Err(bad()),
    })
}
