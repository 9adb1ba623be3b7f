//! The OpenAPI document: generated from the handlers and their types (utoipa), served at
//! `/api/openapi.json`, browsable at `/api/docs`, and checked in at `openapi/openapi.json`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Studio API",
        description = "A self-hostable video platform that speaks the Livepeer Studio REST API. \
            Authenticate with `Authorization: Bearer <API key>`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    servers((url = "/api", description = "This server")),
    modifiers(&BearerAuth),
    security(("apiKey" = [])),
    tags(
        (name = "stream", description = "Live streams"),
        (name = "session", description = "Live sessions: one per publish of a stream"),
        (name = "asset", description = "Video on demand: recordings of sessions"),
        (name = "multistream", description = "Re-publishing streams to other services"),
        (name = "webhook", description = "Event subscriptions and their delivery logs"),
        (name = "accessControl", description = "Signing keys for gated playback"),
        (name = "task", description = "Background work: recordings, imports, exports"),
        (name = "playback", description = "Where to play a playback id"),
        (name = "admin", description = "Projects and API keys (admin keys only)"),
        (name = "system", description = "Health"),
    ),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key"))
                    .build(),
            ),
        );
    }
}

/// Component names as Studio's spec spells them (utoipa derives Rust-style names).
const STUDIO_SCHEMA_NAMES: &[(&str, &str)] = &[
    ("Error", "error"),
    ("Stream", "stream"),
    ("NewStreamPayload", "new-stream-payload"),
    ("StreamPatchPayload", "stream-patch-payload"),
    ("FfmpegProfile", "ffmpeg-profile"),
    ("TranscodeProfile", "transcode-profile"),
    ("PlaybackPolicy", "playback-policy"),
    ("CreatorId", "creator-id"),
    ("TargetAddPayload", "target-add-payload"),
    ("MultistreamTarget", "multistream-target"),
    (
        "MultistreamTargetPatchPayload",
        "multistream-target-patch-payload",
    ),
    ("Webhook", "webhook"),
    ("WebhookLog", "webhook-log"),
    ("SigningKey", "signing-key"),
    ("PlaybackInfo", "playback-info"),
    ("Session", "session"),
    ("Asset", "asset"),
    ("Task", "task"),
];

/// The complete document, as served and checked in.
pub fn document() -> utoipa::openapi::OpenApi {
    let (_, doc) = crate::app::api_router()
        .merge(crate::assets::routes::upload_router())
        .split_for_parts();
    rename_schemas(doc)
}

/// Renames component schemas to [`STUDIO_SCHEMA_NAMES`], rewriting every `$ref` to them.
fn rename_schemas(doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let mut value = serde_json::to_value(&doc).expect("the OpenAPI document serializes");
    if let Some(schemas) = value
        .pointer_mut("/components/schemas")
        .and_then(|s| s.as_object_mut())
    {
        let renamed: serde_json::Map<String, serde_json::Value> = std::mem::take(schemas)
            .into_iter()
            .map(|(name, schema)| (studio_name(&name).unwrap_or(&name).to_string(), schema))
            .collect();
        *schemas = renamed;
    }
    rewrite_refs(&mut value);
    document_bad_urls(&mut value);
    serde_json::from_value(value).expect("renaming keeps the document valid")
}

/// Every operation may answer 400 to a URL it cannot take (one carrying `%00`, see
/// `http::guard`); operations whose own errors do not include 400 get it documented here.
fn document_bad_urls(doc: &mut serde_json::Value) {
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    for operations in paths.values_mut().filter_map(|p| p.as_object_mut()) {
        for operation in operations.values_mut() {
            let Some(responses) = operation
                .get_mut("responses")
                .and_then(|r| r.as_object_mut())
            else {
                continue;
            };
            responses.entry("400").or_insert_with(|| {
                serde_json::json!({
                    "description": "The URL cannot be used (for example, it contains NUL characters)",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/error"}}}
                })
            });
        }
    }
}

fn studio_name(name: &str) -> Option<&'static str> {
    STUDIO_SCHEMA_NAMES
        .iter()
        .find(|(ours, _)| *ours == name)
        .map(|(_, studio)| *studio)
}

fn rewrite_refs(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if key == "$ref" {
                    if let Some(name) = v
                        .as_str()
                        .and_then(|r| r.strip_prefix("#/components/schemas/"))
                        && let Some(studio) = studio_name(name)
                    {
                        *v = serde_json::Value::String(format!("#/components/schemas/{studio}"));
                    }
                } else {
                    rewrite_refs(v);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

/// The document as pretty JSON with a trailing newline (the checked-in form).
pub fn document_json() -> String {
    let mut text = document()
        .to_pretty_json()
        .expect("the OpenAPI document serializes");
    text.push('\n');
    text
}
