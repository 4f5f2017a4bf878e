//! Route paths, relative to the server's root.

/// The API version every API route is under.
pub const BASE: &str = "/v0.5";

pub const INITIATE_UPLOAD: &str = "/v0.5/files/uploads/initiate";
pub const PART_URLS: &str = "/v0.5/files/uploads/{upload_id}/parts/urls";
pub const CHECKPOINT: &str = "/v0.5/files/uploads/{upload_id}/parts/checkpoint";
pub const COMPLETE_UPLOAD: &str = "/v0.5/files/uploads/{upload_id}/complete";
pub const ABORT_UPLOAD: &str = "/v0.5/files/uploads/{upload_id}/abort";
pub const DOWNLOAD: &str = "/v0.5/files/download/{file_id}";
pub const SIMPLE_UPLOAD: &str = "/v0.5/files";
pub const BASE64_UPLOAD: &str = "/v0.5/files/base64";
pub const LIST_METADATA: &str = "/v0.5/files/metadata";
pub const FILE_METADATA: &str = "/v0.5/files/metadata/{file_id}";
pub const DELETE_FILE: &str = "/v0.5/files/delete/{file_id}";
pub const FILES_INFO: &str = "/v0.5/files/info";
/// Where presigned part URLs of the embedded store point. Not under the
/// API base: the URL's signature, not an API key, authorizes it.
pub const PART_DATA: &str = "/parts/{upload_id}/{part_number}";
pub const HEALTH: &str = "/health";
pub const METRICS: &str = "/metrics";
pub const OPENAPI: &str = "/openapi.json";

/// Fills `{upload_id}` in a path template.
pub fn for_upload(template: &str, upload_id: &str) -> String {
    template.replace("{upload_id}", upload_id)
}
