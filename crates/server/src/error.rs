//! Every failure becomes an HTTP status and `{"error": {"type", "message"}}`.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use sift_index::IndexError;
use sift_models::ModelError;
use sift_pipeline::PipelineError;
use utoipa::ToSchema;

use crate::batcher::BatchError;

/// The error kind of [`IndexError::Unusable`]: the request failed, and the server reopens (so
/// repairs) the collection on the next one.
pub const UNUSABLE_KIND: &str = "collection_unusable";

/// The body of every error response.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable kind: `invalid_request`, `invalid_json`, `payload_too_large`,
    /// `overloaded`, `timeout`, `unauthorized`, `not_found`, `model_not_loaded`, `conflict`, ...
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    /// Sent as `Retry-After` (whole seconds) with 429.
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    pub fn overloaded(what: &str, retry_after: Duration) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "overloaded",
            format!(
                "the {what} queue is full; retry in {} s",
                retry_after.as_secs().max(1)
            ),
        );
        e.retry_after = Some(retry_after);
        e
    }

    pub fn unavailable(what: &str) -> Self {
        let flag = if what.contains("rerank") {
            "--rerank-model"
        } else if what.contains("collection") {
            "--collections"
        } else {
            "--embed-model"
        };
        Self::new(
            StatusCode::NOT_FOUND,
            "model_not_loaded",
            format!("this server has no {what}; start it with {flag}"),
        )
    }

    /// A batcher failure for the model named `what`.
    pub fn from_batch(what: &str, e: BatchError) -> Self {
        match e {
            BatchError::Overloaded { retry_after } => Self::overloaded(what, retry_after),
            BatchError::Failed(m) => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "inference_error",
                format!("{what}: {m}"),
            ),
        }
    }
}

impl From<ModelError> for ApiError {
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::InvalidInput(m) => ApiError::invalid(m),
            ModelError::Tokenizer(m) => ApiError::invalid(format!("tokenizer: {m}")),
            other => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "inference_error",
                other.to_string(),
            ),
        }
    }
}

impl From<IndexError> for ApiError {
    fn from(e: IndexError) -> Self {
        match e {
            e @ IndexError::Unusable { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                UNUSABLE_KIND,
                e.to_string(),
            ),
            IndexError::InvalidInput(m) => ApiError::invalid(m),
            e @ IndexError::NotACollection(_) => ApiError::not_found(e.to_string()),
            e @ IndexError::ModelMismatch { .. } => {
                ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            e @ IndexError::Locked { .. } => ApiError::conflict(e.to_string()),
            // The collection's database is down or failing over: retry later.
            e @ IndexError::Unavailable(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                e.to_string(),
            ),
            IndexError::Io { path, source } if source.kind() == std::io::ErrorKind::StorageFull => {
                ApiError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "insufficient_storage",
                    format!(
                        "{}: the disk is full; nothing of this request was written",
                        path.display()
                    ),
                )
            }
            other => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage_error",
                other.to_string(),
            ),
        }
    }
}

impl From<PipelineError> for ApiError {
    fn from(e: PipelineError) -> Self {
        match e {
            PipelineError::Model(e) => e.into(),
            PipelineError::Index(e) => e.into(),
            PipelineError::InvalidInput(m) => ApiError::invalid(m),
            PipelineError::Internal(m) => ApiError::internal(m),
            e @ PipelineError::DeadlineExceeded { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                format!("the request timed out: {e}"),
            ),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status, self.kind, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                kind: self.kind.to_owned(),
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(after) = self.retry_after {
            let secs = after.as_secs().max(1).to_string();
            if let Ok(v) = HeaderValue::from_str(&secs) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Faults of sift itself are 500s; only bad input is a 4xx.
    #[test]
    fn internal_failures_are_server_errors() {
        let cases: Vec<(ApiError, u16)> = vec![
            (ModelError::Internal("poisoned".into()).into(), 500),
            (ModelError::InvalidInput("bad".into()).into(), 422),
            (IndexError::Internal("serializing".into()).into(), 500),
            (
                IndexError::Unusable {
                    path: "c".into(),
                    reason: "r".into(),
                }
                .into(),
                503,
            ),
            (PipelineError::Internal("x".into()).into(), 500),
            (IndexError::InvalidInput("bad".into()).into(), 422),
            (IndexError::Unavailable("down".into()).into(), 503),
        ];
        for (e, status) in cases {
            assert_eq!(e.status.as_u16(), status, "{e}");
        }
    }
}
