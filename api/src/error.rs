//! API errors: one type, mapped to an HTTP status and Studio's `{"errors": [...]}` body once, here.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The error body of every failed request.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    pub errors: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: a request that is well-formed but breaks a business rule.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no credentials, or credentials that are not recognized.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: the caller is known but may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// 404: nothing of that kind exists in the caller's project.
    #[error("{0}")]
    NotFound(String),
    /// 409: conflicts with the current state of the resource.
    #[error("{0}")]
    Conflict(String),
    /// 413: the body is larger than allowed.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415: the body is not of a type the endpoint takes.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: the body does not match the schema, one message per problem.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
    /// 429: the same operation was repeated too soon.
    #[error("{0}")]
    TooManyRequests(String),
    /// 503: the server cannot take this now (full, shutting down); trying later may work.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a failure of ours; the cause is logged, never returned.
    #[error("internal error: {0}")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::Invalid(vec![message.into()])
    }

    pub fn not_found() -> ApiError {
        ApiError::NotFound("not found".into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> ApiError {
        ApiError::Internal(anyhow::Error::new(err).context("database"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let errors = match self {
            ApiError::Invalid(messages) => messages,
            ApiError::Internal(err) => {
                tracing::error!(error = format!("{err:#}"), "internal error");
                vec!["internal server error".to_string()]
            }
            other => vec![other.to_string()],
        };
        (status, axum::Json(ErrorBody { errors })).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
