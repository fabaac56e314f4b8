//! The error answers of the HTTP API, in DataKit's shape:
//! `{"error_code": "datakit.<what>", "message": "<why>"}` with a matching status.
//!
//! Clients written for DataKit read `error_code`; people read `message`, so every
//! message says what was wrong and, for points, which one.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// An error answer: status, stable code, human message.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400: the request (body, category, query or a point) is wrong.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 413: the body, or what it decompresses to, is over `[http] max_body`.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "datakit.bodyTooLarge",
            message,
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error_code": self.code,
            "message": self.message,
        });
        (self.status, Json(body)).into_response()
    }
}
