//! The JSON request body extractor: every problem is a 422 whose message names the field.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body deserialized into `T`, strictly: unknown fields and wrong types are refused with
/// the path of the offending field (`profiles[0].width: invalid type: ...`).
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                let mime = v.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
                mime == "application/json" || mime.ends_with("+json")
            });
        if !is_json {
            return Err(ApiError::invalid("the request body must be JSON, sent with Content-Type: application/json"));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            let status = rejection.status();
            if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::invalid("the request body is too large")
            } else {
                ApiError::BadRequest(format!("could not read the request body: {rejection}"))
            }
        })?;
        parse(&bytes).map(JsonBody)
    }
}

/// Deserializes `bytes` into `T`, naming the path of the first problem.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let mut path = err.path().to_string();
        let inner = err.into_inner();
        let message = strip_position(&inner.to_string());
        // For an unknown field the path ends with that field; the message already names it.
        if message.starts_with("unknown field") {
            path = match path.rfind(['.', '[']) {
                Some(i) if path[i..].starts_with('.') => path[..i].to_string(),
                _ => ".".to_string(),
            };
        }
        if inner.is_syntax() || inner.is_eof() {
            ApiError::invalid(format!("the request body is not valid JSON: {message}"))
        } else if path == "." {
            ApiError::invalid(message)
        } else {
            ApiError::invalid(format!("{path}: {message}"))
        }
    })?;
    de.end().map_err(|_| ApiError::invalid("the request body has trailing characters after the JSON value"))?;
    Ok(value)
}

/// serde_json appends " at line L column C", which says nothing to an API user once the field is named.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Profile {
        width: i64,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        #[serde(default)]
        profiles: Vec<Profile>,
    }

    fn message(body: &str) -> String {
        match parse::<Body>(body.as_bytes()) {
            Err(ApiError::Invalid(messages)) => messages.join("|"),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(message(r#"{"name":"a","profiles":[{"width":"x"}]}"#), "profiles[0].width: invalid type: string \"x\", expected i64");
        let unknown = message(r#"{"name":"a","foo":1}"#);
        assert!(unknown.starts_with("unknown field `foo`"), "{unknown}");
        let nested = message(r#"{"name":"a","profiles":[{"width":1,"wide":2}]}"#);
        assert!(nested.starts_with("profiles[0]: unknown field `wide`"), "{nested}");
        assert_eq!(message(r#"{}"#), "missing field `name`");
        assert!(message(r#"{"name":"#).starts_with("the request body is not valid JSON"));
    }
}
