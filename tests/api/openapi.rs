//! The checked-in OpenAPI document is the one the code generates.

use studio_tests::workspace_root;

#[test]
fn checked_in_document_matches_the_code() {
    let generated = studio_api::openapi::document_json();
    let path = workspace_root().join("openapi/openapi.json");
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        generated == checked_in,
        "openapi/openapi.json is out of date: regenerate it with `cargo run -p studio-api -- openapi > openapi/openapi.json`"
    );
}

#[test]
fn document_names_studio_schemas_and_enum_values() {
    let doc: serde_json::Value =
        serde_json::from_str(&studio_api::openapi::document_json()).unwrap();
    let schemas = &doc["components"]["schemas"];
    for name in [
        "stream",
        "new-stream-payload",
        "ffmpeg-profile",
        "playback-policy",
        "webhook",
        "webhook-log",
        "signing-key",
        "multistream-target",
        "playback-info",
        "error",
    ] {
        assert!(schemas.get(name).is_some(), "schema {name} missing");
    }
    assert_eq!(
        doc["paths"]["/stream"]["post"]["responses"]["201"]["content"]["application/json"]["schema"]
            ["$ref"],
        "#/components/schemas/stream"
    );
    let events = serde_json::to_string(&schemas["WebhookEvent"]).unwrap();
    for event in studio_api::events::ALL_NAMES {
        assert!(
            events.contains(event),
            "event {event} missing from the document"
        );
    }
    let profiles = serde_json::to_string(&schemas["H264Profile"]).unwrap();
    for p in [
        "H264Baseline",
        "H264Main",
        "H264High",
        "H264ConstrainedHigh",
    ] {
        assert!(profiles.contains(p));
    }
}
