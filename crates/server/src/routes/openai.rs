//! OpenAI `POST /v1/embeddings`.

use axum::extract::State;
use axum::Json;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{blocking, check_items, embedder, encode_texts, l2_normalize};
use crate::error::{ApiError, ErrorBody};
use crate::json::ApiJson;
use crate::AppState;

/// `input` as OpenAI accepts it; token-id arrays are refused with a clear message.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
    #[schema(value_type = Vec<Vec<u32>>)]
    Tokens(#[allow(dead_code)] Value),
}

#[derive(Deserialize, ToSchema)]
pub struct EmbeddingsRequest {
    input: EmbeddingInput,
    /// Echoed back; the server embeds with the model it was started with.
    #[serde(default)]
    model: Option<String>,
    /// `float` (default) or `base64` (little-endian f32 bytes).
    #[serde(default)]
    encoding_format: Option<String>,
    /// Keep the first `dimensions` components, re-normalised (as OpenAI's shortened embeddings).
    #[serde(default)]
    dimensions: Option<i64>,
    #[serde(default)]
    #[allow(dead_code)]
    user: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct EmbeddingObject {
    object: &'static str,
    index: usize,
    /// A list of floats, or a base64 string with `encoding_format: base64`.
    #[schema(value_type = Object)]
    embedding: Value,
}

#[derive(Serialize, ToSchema)]
pub struct Usage {
    prompt_tokens: usize,
    total_tokens: usize,
}

#[derive(Serialize, ToSchema)]
pub struct EmbeddingsResponse {
    object: &'static str,
    data: Vec<EmbeddingObject>,
    model: String,
    usage: Usage,
}

/// Embeddings in OpenAI's shape.
#[utoipa::path(post, path = "/v1/embeddings", tag = "OpenAI", request_body = EmbeddingsRequest,
    responses(
        (status = 200, body = EmbeddingsResponse),
        (status = 413, description = "too many inputs, body too large, or an input too long", body = ErrorBody),
        (status = 422, description = "invalid request", body = ErrorBody),
        (status = 429, description = "queue full; see Retry-After", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn embeddings(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<EmbeddingsRequest>,
) -> Result<Json<EmbeddingsResponse>, ApiError> {
    let batcher = embedder(&state)?;
    let texts =
        match req.input {
            EmbeddingInput::One(s) => vec![s],
            EmbeddingInput::Many(v) => v,
            EmbeddingInput::Tokens(_) => return Err(ApiError::invalid(
                "input must be a string or a list of strings; token-id arrays are not supported",
            )),
        };
    check_items(&state, texts.len(), "input")?;
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "encoding_format {other:?}: expected \"float\" or \"base64\""
            )))
        }
    };
    let model = batcher.model().clone();
    let dim = model.dim();
    let dimensions = match req.dimensions {
        None => None,
        Some(d) if d >= 1 && (d as usize) <= dim => Some(d as usize),
        Some(d) => {
            return Err(ApiError::invalid(format!(
                "dimensions must be between 1 and {dim}, got {d}"
            )))
        }
    };
    let model_name = req.model.unwrap_or_else(|| model.model_dir().name());
    let normalize = model.normalizes();
    let truncate = state.inner.limits.auto_truncate;
    let encoded = blocking(move || encode_texts(&model, &texts, truncate)).await?;
    let tokens: usize = encoded.iter().map(|e| e.len()).sum();
    let vectors = batcher
        .submit(encoded)
        .await
        .map_err(|e| ApiError::from_batch("embedding", e))?;
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(index, mut v)| {
            if normalize {
                l2_normalize(&mut v);
            }
            if let Some(d) = dimensions {
                v.truncate(d);
                l2_normalize(&mut v);
            }
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                serde_json::json!(v)
            };
            EmbeddingObject {
                object: "embedding",
                index,
                embedding,
            }
        })
        .collect();
    Ok(Json(EmbeddingsResponse {
        object: "list",
        data,
        model: model_name,
        usage: Usage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    }))
}
