//! OpenAI `POST /v1/embeddings`.

use axum::extract::State;
use axum::Json;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::inputs::{encode_for_embedding, ModelInputs};
use super::tei::output_dimensions;
use super::{blocking, check_items, embedder, l2_normalize};
use crate::error::{ApiError, ErrorBody};
use crate::json::ApiJson;
use crate::AppState;

#[derive(Deserialize, ToSchema)]
pub struct EmbeddingsRequest {
    /// A string, a list of strings, a list of token ids of the loaded model, or a list of such
    /// lists.
    input: ModelInputs,
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
    embeddings_request(state, req).await.map(Json)
}

/// `POST /embeddings`: the same as `/v1/embeddings` (TEI serves both; OpenAI-compatible clients
/// given a base URL without `/v1` post here).
#[utoipa::path(post, path = "/embeddings", tag = "OpenAI", request_body = EmbeddingsRequest,
    responses(
        (status = 200, body = EmbeddingsResponse),
        (status = 413, description = "too many inputs, body too large, or an input too long", body = ErrorBody),
        (status = 422, description = "invalid request", body = ErrorBody),
        (status = 429, description = "queue full; see Retry-After", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn embeddings_unversioned(
    state: State<AppState>,
    req: ApiJson<EmbeddingsRequest>,
) -> Result<Json<EmbeddingsResponse>, ApiError> {
    embeddings(state, req).await
}

async fn embeddings_request(
    state: AppState,
    req: EmbeddingsRequest,
) -> Result<EmbeddingsResponse, ApiError> {
    let batcher = embedder(&state)?;
    let inputs = req.input.into_vec();
    check_items(&state, inputs.len(), "input")?;
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
    let dimensions = output_dimensions(req.dimensions, dim)?;
    let model_name = req.model.unwrap_or_else(|| model.model_dir().name());
    let normalize = model.normalizes();
    let truncate = state.inner.limits.auto_truncate;
    let encoded = blocking(move || encode_for_embedding(&model, &inputs, truncate)).await?;
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
    Ok(EmbeddingsResponse {
        object: "list",
        data,
        model: model_name,
        usage: Usage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    })
}
