//! The OpenAPI 3.1 document of the API, generated from the handlers and
//! wire types, served at `/openapi.json` and committed as `openapi.json`
//! (a test keeps the two equal, so API changes show in review).

use axum::Json;
use utoipa::openapi::RefOr;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{files, parts, uploads};

struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// Which answer feeds which next request: an upload's id from initiate to
/// the calls on that upload, a file's name from the calls that create it
/// to those that read and delete it. Clients and tools that walk the
/// document (schemathesis, for one) follow these to exercise whole flows.
struct Links;

impl Modify for Links {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use ferry_api::paths;
        let upload_calls = ["part_urls", "checkpoint", "complete", "abort"];
        let file_calls = ["file_metadata", "download", "delete"];
        let flows: [(&str, &[&str], &str, &str); 4] = [
            (paths::INITIATE_UPLOAD, &upload_calls, "upload_id", "$response.body#/upload_id"),
            (paths::SIMPLE_UPLOAD, &file_calls, "file_id", "$response.body#/file_id"),
            (paths::BASE64_UPLOAD, &file_calls, "file_id", "$response.body#/file_id"),
            (paths::COMPLETE_UPLOAD, &file_calls, "file_id", "$response.body#/file_name"),
        ];
        for (path, next_calls, parameter, value) in flows {
            let Some(RefOr::T(done)) = openapi
                .paths
                .paths
                .get_mut(path)
                .and_then(|item| item.post.as_mut())
                .and_then(|operation| operation.responses.responses.get_mut("200"))
            else {
                panic!("{path} has no documented 200 answer to link from");
            };
            for next in next_calls {
                let link = LinkBuilder::new().operation_id(*next).parameter(parameter, value).build();
                done.links.insert(next.to_string(), RefOr::T(link));
            }
        }
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
    modifiers(&BearerKey, &Links),
    security(("bearer" = [])),
    tags(
        (name = "uploads", description = "Direct-to-cloud uploads (files-api §3)"),
        (name = "files", description = "Files (files-api §4)"),
        (name = "operations", description = "Health, metrics and this document (files-api §6)"),
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
