//! The one error shape of the native API, `{"error":{"code","message"}}`, and its HTTP status.
//! Codes are stable snake_case strings that clients switch on; messages are for people.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::signer::{MultipartError, SignerError};
use crate::store::DbError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    /// 422: the request was understood but cannot be honoured.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 400: the request is not what the route accepts (unreadable JSON, missing fields).
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn body(&self) -> serde_json::Value {
        json!({ "error": { "code": self.code, "message": self.message } })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<DbError> for ApiError {
    fn from(error: DbError) -> Self {
        tracing::error!(%error, "records database failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "The backend could not read or write its records database; try again, and tell the operator if it persists.",
        )
    }
}

impl From<SignerError> for ApiError {
    fn from(error: SignerError) -> Self {
        tracing::error!(%error, "S3 call failed");
        match error {
            SignerError::Presign { .. } => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "presign_failed",
                "The backend could not sign an upload URL; tell the operator (its S3 settings or credentials are wrong).",
            ),
            SignerError::Head { .. } => Self::new(
                StatusCode::BAD_GATEWAY,
                "storage_unavailable",
                "The backend could not reach the bucket to check the upload; report it again later.",
            ),
            SignerError::Storage { .. } => Self::new(
                StatusCode::BAD_GATEWAY,
                "storage_unavailable",
                "The backend could not reach the bucket; try again later.",
            ),
        }
    }
}

impl From<MultipartError> for ApiError {
    /// The general mapping; routes that give S3's refusal a meaning of their own (complete,
    /// abort) match on the error before falling back to this.
    fn from(error: MultipartError) -> Self {
        match error {
            MultipartError::NoSuchUpload { key, upload_id } => Self::new(
                StatusCode::NOT_FOUND,
                "upload_not_found",
                format!(
                    "S3 has no multipart upload {upload_id} for {key}: it was completed, aborted or never created. \
                     Start a new one with POST /api/v1/multipart."
                ),
            ),
            MultipartError::Refused { operation, key, code, message } => {
                tracing::warn!(%key, %code, %message, "S3 refused to {operation} an object");
                Self::unprocessable("storage_rejected", format!("S3 refused to {operation} {key}: {code}: {message}"))
            }
            MultipartError::Signer(error) => error.into(),
        }
    }
}
