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
                let mime = v
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                mime == "application/json" || mime.ends_with("+json")
            });
        if !is_json {
            return Err(ApiError::invalid(
                "the request body must be JSON, sent with Content-Type: application/json",
            ));
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

/// Deserializes `bytes` into `T`, naming the path of the first problem. Every body of this API is
/// an object; serde would otherwise also read a struct from an array of its fields.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        None => {
            return Err(ApiError::invalid(
                "the request body is empty: send a JSON object",
            ));
        }
        Some(_) if serde_json::from_slice::<serde_json::Value>(bytes).is_err() => {
            return Err(ApiError::invalid("the request body is not valid JSON"));
        }
        Some(_) => return Err(ApiError::invalid("the request body must be a JSON object")),
    }
    if has_nul_escape(bytes) {
        return Err(ApiError::invalid(
            "text fields must not contain NUL characters (\\u0000)",
        ));
    }
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
    de.end().map_err(|_| {
        ApiError::invalid("the request body has trailing characters after the JSON value")
    })?;
    Ok(value)
}

/// True when the JSON text has a `\u0000` escape (raw NUL bytes are invalid JSON anyway). A
/// backslash escaped by another one does not start an escape.
fn has_nul_escape(bytes: &[u8]) -> bool {
    let mut backslashes = 0usize;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\\' {
            backslashes += 1;
            continue;
        }
        if b == b'u' && backslashes % 2 == 1 && bytes.get(i + 1..i + 5) == Some(b"0000".as_slice())
        {
            return true;
        }
        backslashes = 0;
    }
    false
}

/// Reads an integer that may be written as an integral float (`1280.0`): JSON Schema counts it as
/// an integer, and some clients (the Python SDK) send every number that way.
pub fn integer<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    use serde::Deserialize;
    let n = serde_json::Number::deserialize(d)?;
    number_to_i64(&n)
        .ok_or_else(|| serde::de::Error::custom(format!("invalid value: {n}, expected an integer")))
}

/// [`integer`] for optional fields (use with `#[serde(default)]`).
pub fn opt_integer<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    use serde::Deserialize;
    match Option::<serde_json::Number>::deserialize(d)? {
        None => Ok(None),
        Some(n) => number_to_i64(&n).map(Some).ok_or_else(|| {
            serde::de::Error::custom(format!("invalid value: {n}, expected an integer"))
        }),
    }
}

fn number_to_i64(n: &serde_json::Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    (f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64).then_some(f as i64)
}

/// serde_json appends " at line L column C", which says nothing to an API user once the field is named.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// Query parameters deserialized into `T`; a malformed query string is a 422 with a JSON body.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| Query(q.0))
            .map_err(|rejection| {
                ApiError::invalid(format!(
                    "the query string is not valid: {}",
                    rejection.body_text()
                ))
            })
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
        assert_eq!(
            message(r#"{"name":"a","profiles":[{"width":"x"}]}"#),
            "profiles[0].width: invalid type: string \"x\", expected i64"
        );
        let unknown = message(r#"{"name":"a","foo":1}"#);
        assert!(unknown.starts_with("unknown field `foo`"), "{unknown}");
        let nested = message(r#"{"name":"a","profiles":[{"width":1,"wide":2}]}"#);
        assert!(
            nested.starts_with("profiles[0]: unknown field `wide`"),
            "{nested}"
        );
        assert_eq!(message(r#"{}"#), "missing field `name`");
        assert!(message(r#"{"name":"#).starts_with("the request body is not valid JSON"));
        assert_eq!(
            message("[null, null]"),
            "the request body must be a JSON object"
        );
        assert!(message(r#"{"name":"a\u0000b"}"#).contains("NUL"));
        assert!(
            parse::<Body>(br#"{"name":"a\\u0000b"}"#).is_ok(),
            "an escaped backslash is not a NUL"
        );
        assert_eq!(
            message("  "),
            "the request body is empty: send a JSON object"
        );
    }
}
