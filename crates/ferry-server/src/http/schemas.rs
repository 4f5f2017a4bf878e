//! Schemas of bodies that are not JSON wire types, for the OpenAPI document.
//! A leaf module: handlers name them, and the document collects handlers.

use utoipa::ToSchema;

/// The body of `POST /v0.5/files`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The file; its name is the part's file name, its type the part's
    /// Content-Type or else the name's extension.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

// A bare `Vec<u8>` would be described as an array of integers.
/// Raw bytes, as sent: a part's, a file's.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub struct Bytes(Vec<u8>);

/// The body of `POST /v0.5/files/base64`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Base64UploadForm {
    /// The file's bytes as base64 text.
    file: String,
}
