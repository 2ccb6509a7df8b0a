//! Route handlers, one module per API family. Request and response shapes follow the original
//! APIs field for field (docs/api.md cites them).

pub mod cohere;
pub mod collections;
pub mod meta;
pub mod openai;
pub mod tei;

use axum::http::StatusCode;
use serde::Deserialize;
use sift_models::{CrossEncoder, Embedder, Encoded, TextRole};
use utoipa::ToSchema;

use crate::batcher::Batcher;
use crate::error::ApiError;
use crate::AppState;

/// A string or a list of strings (`inputs` / `input`).
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

fn embedder(state: &AppState) -> Result<&Batcher<Embedder>, ApiError> {
    state
        .inner
        .embedder
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("embedding model"))
}

fn reranker(state: &AppState) -> Result<&Batcher<CrossEncoder>, ApiError> {
    state
        .inner
        .reranker
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("rerank model"))
}

fn check_items(state: &AppState, n: usize, what: &str) -> Result<(), ApiError> {
    if n == 0 {
        return Err(ApiError::invalid(format!("{what} is empty")));
    }
    let max = state.inner.limits.max_items;
    if n > max {
        return Err(ApiError::too_large(format!(
            "{n} {what} in one request; the limit is {max} (max_items)"
        )));
    }
    Ok(())
}

/// Runs CPU-bound work (tokenizing, opening collections, searching) off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
}

fn too_long(i: usize, tokens: usize, max: usize) -> ApiError {
    ApiError::too_large(format!(
        "input {i} has {tokens} tokens; the model's limit is {max} (send \"truncate\": true, or start the server with --auto-truncate)"
    ))
}

/// Tokenizes texts for embedding; with `truncate` off, refuses any longer than the model's
/// maximum (413 naming the limit) instead of silently cutting it.
fn encode_texts(
    embedder: &Embedder,
    texts: &[String],
    truncate: bool,
) -> Result<Vec<Encoded>, ApiError> {
    let max = embedder.tokenizer().max_length();
    let encoded = embedder.encode(texts, TextRole::Raw)?;
    if !truncate {
        for (i, (t, e)) in texts.iter().zip(&encoded).enumerate() {
            // A full-length encoding may have been cut: count the untruncated tokens.
            if e.len() == max {
                let tokens = embedder.tokenizer().count_tokens(t)? + 2;
                if tokens > max {
                    return Err(too_long(i, tokens, max));
                }
            }
        }
    }
    Ok(encoded)
}

/// L2-normalises in place (zero vectors stay zero).
fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}
