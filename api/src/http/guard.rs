//! Request checks that apply before routing.

use axum::extract::Request;
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Refuses URLs carrying an encoded NUL (`%00`): no id, key or filter contains one, and the
/// databases cannot store it.
pub async fn reject_nul_in_uri(request: Request, next: Next) -> Response {
    let uri = request.uri();
    let has_nul = |s: &str| s.as_bytes().windows(3).any(|w| w == b"%00");
    if has_nul(uri.path()) || uri.query().is_some_and(has_nul) {
        return ApiError::BadRequest("the URL must not contain NUL characters (%00)".into())
            .into_response();
    }
    next.run(request).await
}

/// Refuses a request with more than one `Authorization` header. Authentication reads the first;
/// a proxy or a cache in front may read another, so a request whose credentials depend on who
/// reads it is ambiguous, and refused whatever the route.
pub async fn reject_repeated_authorization(request: Request, next: Next) -> Response {
    if request
        .headers()
        .get_all(header::AUTHORIZATION)
        .iter()
        .nth(1)
        .is_some()
    {
        return ApiError::BadRequest("send one Authorization header, not several".into())
            .into_response();
    }
    next.run(request).await
}
