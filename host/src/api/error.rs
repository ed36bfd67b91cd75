//! [`ApiError`]: an HTTP status with the Web API's error body `{"error":{"code":"0x…","message":"…"}}`.
//!
//! Owns the mapping from pipeline failures to HTTP statuses. The message is what the caller may see: plug-in
//! messages verbatim, never trace-log details or secrets.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use weft_store::StoreError;

use crate::pipeline::PipelineError;

/// Dataverse's code for a payload it cannot read (malformed JSON, unknown attribute, wrong type).
pub const BAD_PAYLOAD: &str = "0x80048d19";
/// Dataverse's (OData's) code for an unknown segment or property in the URL or query options.
pub const BAD_URL: &str = "0x80060888";

/// A failed request, ready to be answered.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Dataverse error code, `0x…`.
    pub code: String,
    /// Text for the caller.
    pub message: String,
}

impl ApiError {
    /// 400 with [`BAD_PAYLOAD`].
    pub fn payload(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, BAD_PAYLOAD, message)
    }

    /// 400 with [`BAD_URL`] (query options, keys, headers).
    pub fn url(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, BAD_URL, message)
    }

    /// Any status and code.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    /// The answer to a failed operation.
    pub fn from_pipeline(e: &PipelineError) -> Self {
        let status = match e {
            // Dataverse answers an InvalidPluginExecutionException with 400.
            PipelineError::Plugin { .. } | PipelineError::Invalid(_) => StatusCode::BAD_REQUEST,
            PipelineError::Store(StoreError::NotFound { .. }) => StatusCode::NOT_FOUND,
            PipelineError::Store(
                StoreError::DuplicateId { .. } | StoreError::DuplicateKey { .. },
            )
            | PipelineError::RowVersionMismatch => StatusCode::PRECONDITION_FAILED,
            PipelineError::Store(
                StoreError::UnknownTable(_)
                | StoreError::UnknownAttribute { .. }
                | StoreError::UnknownRelationship(_)
                | StoreError::TypeMismatch { .. }
                | StoreError::Invalid(_),
            ) => StatusCode::BAD_REQUEST,
            PipelineError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            // The host's capacity, not the caller's or the plug-in's fault: retry later.
            PipelineError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, &e.code(), e.to_string())
    }
}

impl From<PipelineError> for ApiError {
    fn from(e: PipelineError) -> Self {
        ApiError::from_pipeline(&e)
    }
}

impl From<weft_odata::MetadataError> for ApiError {
    fn from(e: weft_odata::MetadataError) -> Self {
        let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
        ApiError::new(status, e.code, e.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        let mut response = (self.status, axum::Json(body)).into_response();
        // A 503 is the host at capacity: tell the caller when to come back.
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(crate::pipeline::BUSY_RETRY_AFTER_SECS),
            );
        }
        // A 413 or 408 leaves the request body unread, so the connection cannot carry another request and
        // the server closes it: say so, or a client that pools connections sends its next request on one
        // being closed and sees it fail (`IncompleteMessage` in hyper-based clients).
        if matches!(
            self.status,
            StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT
        ) {
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        response
    }
}
