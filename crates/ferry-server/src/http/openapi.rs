//! The OpenAPI 3.1 document of the API, generated from the handlers and
//! wire types, served at `/openapi.json` and committed as `openapi.json`
//! (a test keeps the two equal, so API changes show in review).

use axum::Json;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::{files, parts, uploads};

/// The body of `POST /v0.5/files`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The file; its name is the part's file name, its type the part's
    /// Content-Type or else the name's extension.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// The body of `POST /v0.5/files/base64`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Base64UploadForm {
    /// The file's bytes as base64 text.
    file: String,
}

struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ferry Files API",
        description = "The Archetype AI Files API v0.5, as ferry serves it.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    paths(
        uploads::initiate,
        uploads::part_urls,
        uploads::checkpoint,
        uploads::complete,
        uploads::abort,
        parts::put_part,
        files::simple_upload,
        files::base64_upload,
        files::list_metadata,
        files::file_metadata,
        files::download,
        files::delete,
        files::info,
        files::health,
        files::metrics,
        openapi_json,
    ),
    modifiers(&BearerKey),
    security(("bearer" = [])),
    tags(
        (name = "uploads", description = "Direct-to-cloud uploads (spec §3)"),
        (name = "files", description = "Files (spec §4)"),
        (name = "operations", description = "Health, metrics and this document (spec §6)"),
    )
)]
struct ApiDoc;

/// The document, as JSON text with a stable layout.
pub fn document() -> String {
    let mut text = ApiDoc::openapi().to_pretty_json().expect("the document serializes");
    text.push('\n');
    text
}

#[utoipa::path(get, path = ferry_api::paths::OPENAPI, tag = "operations", security(()),
    responses((status = 200, description = "This document", content_type = "application/json", body = Object)))]
/// The OpenAPI 3.1 document of this API.
pub async fn openapi_json() -> Json<serde_json::Value> {
    Json(serde_json::to_value(ApiDoc::openapi()).expect("the document serializes"))
}
