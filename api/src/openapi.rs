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
        (name = "multistream", description = "Re-publishing streams to other services"),
        (name = "webhook", description = "Event subscriptions and their delivery logs"),
        (name = "accessControl", description = "Signing keys for gated playback"),
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
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("An API key")).build()),
        );
    }
}

/// The complete document, as served and checked in.
pub fn document() -> utoipa::openapi::OpenApi {
    let (_, doc) = crate::app::api_router().split_for_parts();
    doc
}

/// The document as pretty JSON with a trailing newline (the checked-in form).
pub fn document_json() -> String {
    let mut text = document().to_pretty_json().expect("the OpenAPI document serializes");
    text.push('\n');
    text
}
