//! Every failure becomes an HTTP status and `{"error": {"type", "message"}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use sift_models::ModelError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    pub fn unavailable(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "model_not_loaded",
            format!(
                "this server has no {what}; start it with --{}",
                if what.contains("rerank") {
                    "rerank-model"
                } else {
                    "embed-model"
                }
            ),
        )
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "type": self.kind, "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}
