//! Route paths, relative to the server's root.

/// The API version every API route is under.
pub const BASE: &str = "/v0.5";

pub const INITIATE_UPLOAD: &str = "/v0.5/files/uploads/initiate";
pub const PART_URLS: &str = "/v0.5/files/uploads/{upload_id}/parts/urls";
pub const CHECKPOINT: &str = "/v0.5/files/uploads/{upload_id}/parts/checkpoint";
pub const COMPLETE_UPLOAD: &str = "/v0.5/files/uploads/{upload_id}/complete";
pub const ABORT_UPLOAD: &str = "/v0.5/files/uploads/{upload_id}/abort";
pub const DOWNLOAD: &str = "/v0.5/files/download/{file_id}";
/// Where presigned part URLs of the embedded store point. Not under the
/// API base: the URL's signature, not an API key, authorizes it.
pub const PART_DATA: &str = "/parts/{upload_id}/{part_number}";
pub const HEALTH: &str = "/health";

/// Fills `{upload_id}` in a path template.
pub fn for_upload(template: &str, upload_id: &str) -> String {
    template.replace("{upload_id}", upload_id)
}
