//! Hugging Face text-embeddings-inference: `/embed`, `/embed_all`, `/similarity`, `/rerank`,
//! `/predict`, `/tokenize`, `/decode`, and `POST /` (`/invocations`), which TEI routes by the
//! loaded model's task. Shapes and status codes follow TEI's router; errors keep sift's body.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sift_models::{Embedder, TextRole};
use utoipa::ToSchema;

use super::inputs::{encode_for_embedding, vocabulary_size, ModelInput, ModelInputs};
use super::{
    blocking, check_items, embedder, l2_normalize, rerank_documents, reranker, too_long, OneOrMany,
    ScoringOverrides,
};
use crate::batcher::{BatchModel, Batcher};
use crate::error::{ApiError, ErrorBody};
use crate::json::ApiJson;
use crate::AppState;

fn yes() -> bool {
    true
}

/// The prompt a TEI `prompt_name` selects: the model's sentence-transformers `query` or
/// `passage`/`document` prompt (empty when the model defines none, so a client that always
/// names one still works); any other name is refused.
fn role_of(prompt_name: Option<&str>) -> Result<TextRole, ApiError> {
    match prompt_name {
        None => Ok(TextRole::Raw),
        Some("query") => Ok(TextRole::Query),
        Some("passage" | "document") => Ok(TextRole::Passage),
        Some(other) => Err(ApiError::invalid(format!(
            "prompt_name {other:?} is not one of the model's prompts: query, passage (or document)"
        ))),
    }
}

/// Prepends the prompt of `role` to the text inputs (token ids are taken as they are).
fn with_prompt(embedder: &Embedder, role: TextRole, inputs: Vec<ModelInput>) -> Vec<ModelInput> {
    let prompt = embedder.prompt(role);
    if prompt.is_empty() {
        return inputs;
    }
    inputs
        .into_iter()
        .map(|i| match i {
            ModelInput::Text(t) => ModelInput::Text(format!("{prompt}{t}")),
            ids => ids,
        })
        .collect()
}

/// Tokenizes `inputs` (with `role`'s prompt) for the embedder and runs them through `queue`:
/// the pooled-vector queue or the token-state one.
async fn through_queue<M: BatchModel>(
    state: &AppState,
    queue: &Batcher<M>,
    inputs: Vec<ModelInput>,
    role: TextRole,
    truncate: bool,
) -> Result<Vec<M::Output>, ApiError> {
    let model = embedder(state)?.model().clone();
    let encoded = blocking(move || {
        let inputs = with_prompt(&model, role, inputs);
        encode_for_embedding(&model, &inputs, truncate)
    })
    .await?;
    queue
        .submit(encoded)
        .await
        .map_err(|e| ApiError::from_batch("embedding", e))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbedRequest {
    /// A text, a list of token ids, or a list of either.
    inputs: ModelInputs,
    /// L2-normalise the vectors (default true).
    #[serde(default = "yes")]
    normalize: bool,
    /// Cut inputs longer than the model's limit instead of answering 413 (default: the server's
    /// --auto-truncate).
    #[serde(default)]
    truncate: Option<bool>,
    /// `query` or `passage`: prepend the model's sentence-transformers prompt of that name.
    #[serde(default)]
    prompt_name: Option<String>,
    /// Accepted for compatibility; inputs are cut on the right.
    #[serde(default)]
    #[allow(dead_code)]
    truncation_direction: Option<String>,
    /// Keep the first `dimensions` components (Matryoshka), normalised after the cut.
    #[serde(default)]
    dimensions: Option<i64>,
}

/// Checks a requested output size against the model's.
pub(crate) fn output_dimensions(
    requested: Option<i64>,
    dim: usize,
) -> Result<Option<usize>, ApiError> {
    match requested {
        None => Ok(None),
        Some(d) if d >= 1 && (d as usize) <= dim => Ok(Some(d as usize)),
        Some(d) => Err(ApiError::invalid(format!(
            "dimensions must be between 1 and {dim}, got {d}"
        ))),
    }
}

pub(crate) async fn embed_request(
    state: &AppState,
    req: EmbedRequest,
) -> Result<Vec<Vec<f32>>, ApiError> {
    let dim = embedder(state)?.model().dim();
    let dimensions = output_dimensions(req.dimensions, dim)?;
    let role = role_of(req.prompt_name.as_deref())?;
    let truncate = req.truncate.unwrap_or(state.inner.limits.auto_truncate);
    let inputs = req.inputs.into_vec();
    check_items(state, inputs.len(), "inputs")?;
    let queue = embedder(state)?;
    let mut vectors = through_queue(state, queue, inputs, role, truncate).await?;
    for v in &mut vectors {
        if let Some(d) = dimensions {
            v.truncate(d);
        }
        if req.normalize {
            l2_normalize(v);
        }
    }
    Ok(vectors)
}

/// One vector per input, in input order.
#[utoipa::path(post, path = "/embed", tag = "TEI", request_body = EmbedRequest,
    responses(
        (status = 200, description = "one vector per input", body = Vec<Vec<f32>>),
        (status = 413, description = "too many inputs, body too large, or an input too long", body = ErrorBody),
        (status = 422, description = "invalid request, or a token id outside the vocabulary", body = ErrorBody),
        (status = 429, description = "queue full; see Retry-After", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn embed(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<EmbedRequest>,
) -> Result<Json<Vec<Vec<f32>>>, ApiError> {
    Ok(Json(embed_request(&state, req).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbedAllRequest {
    inputs: ModelInputs,
    #[serde(default)]
    truncate: Option<bool>,
    #[serde(default)]
    prompt_name: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    truncation_direction: Option<String>,
}

/// Every token's last-layer state (special tokens included), not pooled or normalised: one
/// `[tokens][hidden]` matrix per input.
#[utoipa::path(post, path = "/embed_all", tag = "TEI", request_body = EmbedAllRequest,
    responses(
        (status = 200, description = "one matrix of token vectors per input", body = Vec<Vec<Vec<f32>>>),
        (status = 413, description = "too many inputs, body too large, or an input too long", body = ErrorBody),
        (status = 422, description = "invalid request", body = ErrorBody),
        (status = 429, description = "queue full; see Retry-After", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn embed_all(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<EmbedAllRequest>,
) -> Result<Json<Vec<Vec<Vec<f32>>>>, ApiError> {
    let queue = state
        .inner
        .token_states
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("embedding model"))?;
    let role = role_of(req.prompt_name.as_deref())?;
    let inputs = req.inputs.into_vec();
    check_items(&state, inputs.len(), "inputs")?;
    let truncate = req.truncate.unwrap_or(state.inner.limits.auto_truncate);
    Ok(Json(
        through_queue(&state, queue, inputs, role, truncate).await?,
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SimilarityInputs {
    source_sentence: String,
    sentences: Vec<String>,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct SimilarityParameters {
    #[serde(default)]
    truncate: Option<bool>,
    #[serde(default)]
    prompt_name: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    truncation_direction: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SimilarityRequest {
    inputs: SimilarityInputs,
    #[serde(default)]
    parameters: Option<SimilarityParameters>,
}

pub(crate) async fn similarity_request(
    state: &AppState,
    req: SimilarityRequest,
) -> Result<Vec<f32>, ApiError> {
    let params = req.parameters.unwrap_or_default();
    let role = role_of(params.prompt_name.as_deref())?;
    let truncate = params.truncate.unwrap_or(state.inner.limits.auto_truncate);
    let n = req.inputs.sentences.len();
    check_items(state, n, "sentences")?;
    // The source sentence rides along: the item limit counts the sentences alone.
    let mut texts = Vec::with_capacity(n + 1);
    texts.push(ModelInput::Text(req.inputs.source_sentence));
    texts.extend(req.inputs.sentences.into_iter().map(ModelInput::Text));
    let queue = embedder(state)?;
    let mut vectors = through_queue(state, queue, texts, role, truncate).await?;
    vectors.iter_mut().for_each(|v| l2_normalize(v));
    let (source, others) = vectors
        .split_first()
        .ok_or_else(|| ApiError::internal("the embedding queue returned no vectors"))?;
    Ok(others
        .iter()
        .map(|v| v.iter().zip(source).map(|(a, b)| a * b).sum())
        .collect())
}

/// Cosine similarity of `source_sentence` to each of `sentences` (Hugging Face's
/// sentence-similarity task).
#[utoipa::path(post, path = "/similarity", tag = "TEI", request_body = SimilarityRequest,
    responses(
        (status = 200, description = "one cosine per sentence, in input order", body = Vec<f32>),
        (status = 413, description = "too many sentences, body too large, or a text too long", body = ErrorBody),
        (status = 422, description = "invalid request", body = ErrorBody),
        (status = 429, description = "queue full; see Retry-After", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn similarity(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SimilarityRequest>,
) -> Result<Json<Vec<f32>>, ApiError> {
    Ok(Json(similarity_request(&state, req).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RerankRequest {
    query: String,
    texts: Vec<String>,
    /// Return logits instead of sigmoid probabilities.
    #[serde(default)]
    raw_scores: bool,
    #[serde(default)]
    return_text: bool,
    /// Accept documents of which some text goes unscored (beyond the server's long-document
    /// limits, or past the window under `--long-documents truncate`) instead of answering 413
    /// (default: the server's --auto-truncate).
    #[serde(default)]
    truncate: Option<bool>,
    #[serde(default)]
    #[allow(dead_code)]
    truncation_direction: Option<String>,
    /// LLM rerankers (sift's extension): this request's instruction (qwen3-reranker) or prompt
    /// (bge-llm) instead of the recipe's default or the server's --rerank-prompt.
    #[serde(default)]
    prompt: Option<String>,
    /// Layerwise cross-encoders (sift's extension): score with this many layers.
    #[serde(default)]
    rerank_layer: Option<usize>,
    /// Cross-encoders (sift's extension): `EXIT:KEEP`, score every text after layer EXIT
    /// of a layerwise model and finish the best KEEP; EXIT 0 scores the first KEEP in the
    /// order given and returns the rest after them, `dropped`.
    #[serde(default)]
    rerank_cascade: Option<String>,
    /// Cross-encoders (sift's extension): a latency budget in milliseconds for this request's
    /// reranking, as `--rerank-budget-ms`: the server picks how many candidates the full model
    /// scores (the rest keep their order) or, for a layerwise model, an exit or cascade.
    #[serde(default)]
    rerank_budget_ms: Option<f64>,
    /// Layerwise LLM rerankers (sift's extension): stop after this many layers and score with
    /// that layer's head, as `--cutoff-layer`.
    #[serde(default)]
    cutoff_layer: Option<usize>,
    /// Lightweight LLM rerankers (sift's extension): average the document's tokens in groups
    /// of this many (1, 2, 4 or 8; 1 turns compression off), as `--compress-ratio`.
    #[serde(default)]
    compress_ratio: Option<usize>,
    /// ... before each of these layers, as `--compress-layers`.
    #[serde(default)]
    compress_layers: Option<Vec<usize>>,
}

#[derive(Serialize, ToSchema)]
pub struct Rank {
    index: usize,
    score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
}

pub(crate) async fn rerank_request(
    state: &AppState,
    req: RerankRequest,
) -> Result<Vec<Rank>, ApiError> {
    check_items(state, req.texts.len(), "texts")?;
    let truncate = req.truncate.unwrap_or(state.inner.limits.auto_truncate);
    let texts = Arc::new(req.texts);
    let policy = state.inner.long_documents;
    // TEI's `truncate: false` refuses what the model cannot score whole; under the windows
    // rule a long text is scored whole (by windows), so only text beyond the window limits is.
    let (mut scores, _) = rerank_documents(
        state,
        req.query,
        texts.clone(),
        policy,
        !truncate,
        ScoringOverrides::new(
            req.prompt,
            req.rerank_layer,
            req.rerank_cascade,
            req.rerank_budget_ms,
            sift_models::rerank::LlmDepth {
                cutoff_layer: req.cutoff_layer,
                compress_ratio: req.compress_ratio,
                compress_layers: req.compress_layers,
            },
        )?,
    )
    .await?;
    sift_models::rerank::sort_by_score(&mut scores);
    Ok(scores
        .into_iter()
        .map(|s| Rank {
            index: s.index,
            score: if req.raw_scores { s.logit } else { s.score },
            text: req.return_text.then(|| texts[s.index].clone()),
        })
        .collect())
}

/// Scores every text against the query; sorted by descending score.
#[utoipa::path(post, path = "/rerank", tag = "TEI", request_body = RerankRequest,
    responses(
        (status = 200, description = "texts by descending score", body = Vec<Rank>),
        (status = 413, description = "too many texts, body too large, or a pair too long", body = ErrorBody),
        (status = 422, description = "invalid request", body = ErrorBody),
        (status = 429, description = "queue full; see Retry-After", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn rerank(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RerankRequest>,
) -> Result<Json<Vec<Rank>>, ApiError> {
    Ok(Json(rerank_request(&state, req).await?))
}

/// TEI's predict input: one text, one `[text, text]` pair, or a batch of `[text]` /
/// `[text, text]` lists. A rerank model scores pairs only.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum PredictInputs {
    Text(#[allow(dead_code)] String),
    Pair(Vec<String>),
    Batch(Vec<Vec<String>>),
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PredictRequest {
    inputs: PredictInputs,
    /// Cut pairs longer than the model's limit (the document side) instead of answering 413.
    #[serde(default)]
    truncate: Option<bool>,
    #[serde(default)]
    #[allow(dead_code)]
    truncation_direction: Option<String>,
    /// Return the logit instead of the probability.
    #[serde(default)]
    raw_scores: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Prediction {
    score: f32,
    label: String,
}

/// A single input gets a flat list of predictions, a batch one list per input (TEI's shapes).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum PredictResponse {
    Single(Vec<Prediction>),
    Batch(Vec<Vec<Prediction>>),
}

fn single_text(i: usize) -> ApiError {
    ApiError::invalid(format!(
        "input {i} is a single text; the loaded rerank model (a cross-encoder) scores [query, document] pairs"
    ))
}

fn pair_of(i: usize, texts: Vec<String>) -> Result<(String, String), ApiError> {
    match <[String; 2]>::try_from(texts) {
        Ok([query, document]) => Ok((query, document)),
        Err(texts) if texts.len() == 1 => Err(single_text(i)),
        Err(texts) => Err(ApiError::invalid(format!(
            "input {i} has {} texts; send one text or a [query, document] pair",
            texts.len()
        ))),
    }
}

pub(crate) async fn predict_request(
    state: &AppState,
    req: PredictRequest,
) -> Result<PredictResponse, ApiError> {
    let batcher = reranker(state)?;
    let (pairs, single) = match req.inputs {
        PredictInputs::Text(_) => return Err(single_text(0)),
        PredictInputs::Pair(texts) => (vec![pair_of(0, texts)?], true),
        PredictInputs::Batch(batch) => (
            batch
                .into_iter()
                .enumerate()
                .map(|(i, t)| pair_of(i, t))
                .collect::<Result<Vec<_>, _>>()?,
            false,
        ),
    };
    check_items(state, pairs.len(), "inputs")?;
    let truncate = req.truncate.unwrap_or(state.inner.limits.auto_truncate);
    let model = batcher.model().0.clone();
    let label = {
        let labels = &model.model_dir().config.labels;
        // The relevant label: the only one of a one-label head, label 1 of a two-label head.
        let at = usize::from(labels.len() >= 2);
        labels
            .get(at)
            .cloned()
            .unwrap_or_else(|| format!("LABEL_{at}"))
    };
    let encoded = blocking(move || {
        pairs
            .iter()
            .enumerate()
            .map(|(i, (q, d))| {
                let (encoded, cut) = model.encode_pair(q, d)?;
                if cut && !truncate {
                    let tokens = model.tokenizer().pair_len_untruncated(q, d)?;
                    return Err(too_long(i, tokens, model.max_length()));
                }
                Ok(encoded)
            })
            .collect::<Result<Vec<_>, ApiError>>()
    })
    .await?;
    let scores = batcher
        .submit(encoded)
        .await
        .map_err(|e| ApiError::from_batch("rerank", e))?;
    let mut predictions: Vec<Vec<Prediction>> = scores
        .into_iter()
        .map(|s| {
            vec![Prediction {
                score: if req.raw_scores { s.logit } else { s.score },
                label: label.clone(),
            }]
        })
        .collect();
    Ok(match (single, predictions.pop()) {
        (true, Some(one)) => PredictResponse::Single(one),
        (false, Some(last)) => {
            predictions.push(last);
            PredictResponse::Batch(predictions)
        }
        (_, None) => return Err(ApiError::internal("the rerank queue returned no scores")),
    })
}

/// The rerank model's relevance prediction for `[query, document]` pairs, under its relevant
/// label.
#[utoipa::path(post, path = "/predict", tag = "TEI", request_body = PredictRequest,
    responses(
        (status = 200, description = "predictions per input", body = PredictResponse),
        (status = 413, description = "too many inputs, body too large, or a pair too long", body = ErrorBody),
        (status = 422, description = "invalid request (e.g. a single text for a cross-encoder)", body = ErrorBody),
        (status = 429, description = "queue full; see Retry-After", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn predict(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<PredictRequest>,
) -> Result<Json<PredictResponse>, ApiError> {
    Ok(Json(predict_request(&state, req).await?))
}

/// The model whose tokenizer `/tokenize` and `/decode` use: the embedding model, else the
/// rerank model. Holds the model (an `Arc`), not a copy of its tokenizer: copying a tokenizer
/// copies its whole vocabulary, per request.
enum TokenizerSource {
    Embedder(Arc<Embedder>),
    Reranker(Arc<dyn sift_models::Reranker>),
}

impl TokenizerSource {
    fn of(state: &AppState) -> Result<Self, ApiError> {
        match (&state.inner.embedder, &state.inner.reranker) {
            (Some(e), _) => Ok(Self::Embedder(e.model().clone())),
            (None, Some(r)) => Ok(Self::Reranker(r.model().0.clone())),
            (None, None) => Err(ApiError::unavailable("embedding model")),
        }
    }

    fn tokenizer(&self) -> &sift_models::TextTokenizer {
        match self {
            Self::Embedder(e) => e.tokenizer(),
            Self::Reranker(r) => r.tokenizer(),
        }
    }

    /// Ids the model can look up ([`vocabulary_size`]).
    fn vocabulary(&self) -> usize {
        let dir = match self {
            Self::Embedder(e) => e.model_dir(),
            Self::Reranker(r) => r.model_dir(),
        };
        vocabulary_size(self.tokenizer(), dir.config.vocab_size)
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenizeRequest {
    inputs: OneOrMany,
    #[serde(default = "yes")]
    add_special_tokens: bool,
    #[serde(default)]
    #[allow(dead_code)]
    prompt_name: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SimpleToken {
    id: u32,
    text: String,
    special: bool,
    /// Byte offset of the token's first byte in the input (absent for special tokens).
    start: Option<usize>,
    /// Byte offset one past the token's last byte.
    stop: Option<usize>,
}

/// Every token of each input, **not truncated** (as TEI): the count is the input's real length,
/// of which the model sees the first `max_input_length` (`GET /info`). The embedding model's
/// tokenizer, else the rerank model's.
#[utoipa::path(post, path = "/tokenize", tag = "TEI", request_body = TokenizeRequest,
    responses(
        (status = 200, description = "tokens per input", body = Vec<Vec<SimpleToken>>),
        (status = 413, description = "too many inputs or body too large", body = ErrorBody),
        (status = 422, description = "invalid request", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn tokenize(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<TokenizeRequest>,
) -> Result<Json<Vec<Vec<SimpleToken>>>, ApiError> {
    let source = TokenizerSource::of(&state)?;
    let texts = req.inputs.into_vec();
    check_items(&state, texts.len(), "inputs")?;
    let add_special = req.add_special_tokens;
    let out = blocking(move || {
        texts
            .iter()
            .map(|t| {
                let enc = source
                    .tokenizer()
                    .untruncated()
                    .encode(t.as_str(), add_special)
                    .map_err(|e| ApiError::invalid(format!("tokenizer: {e}")))?;
                Ok(enc
                    .get_ids()
                    .iter()
                    .zip(enc.get_tokens())
                    .zip(enc.get_offsets())
                    .zip(enc.get_special_tokens_mask())
                    .map(|(((&id, token), &(start, stop)), &special)| {
                        let special = special == 1;
                        SimpleToken {
                            id,
                            text: if special {
                                token.clone()
                            } else {
                                t.get(start..stop).unwrap_or(token).to_owned()
                            },
                            special,
                            start: (!special).then_some(start),
                            stop: (!special).then_some(stop),
                        }
                    })
                    .collect())
            })
            .collect::<Result<Vec<_>, ApiError>>()
    })
    .await?;
    Ok(Json(out))
}

/// One list of ids, or a batch of them.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum DecodeIds {
    One(Vec<i64>),
    Many(Vec<Vec<i64>>),
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecodeRequest {
    ids: DecodeIds,
    #[serde(default = "yes")]
    skip_special_tokens: bool,
}

/// Token ids back to text, one string per list of ids (the same tokenizer as `/tokenize`).
#[utoipa::path(post, path = "/decode", tag = "TEI", request_body = DecodeRequest,
    responses(
        (status = 200, description = "one text per list of ids", body = Vec<String>),
        (status = 413, description = "too many lists or body too large", body = ErrorBody),
        (status = 422, description = "an empty list, or an id outside the vocabulary", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn decode(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<DecodeRequest>,
) -> Result<Json<Vec<String>>, ApiError> {
    let source = TokenizerSource::of(&state)?;
    let lists = match req.ids {
        DecodeIds::One(ids) => vec![ids],
        DecodeIds::Many(lists) => lists,
    };
    check_items(&state, lists.len(), "ids")?;
    let skip = req.skip_special_tokens;
    let out = blocking(move || {
        let vocabulary = source.vocabulary();
        lists
            .iter()
            .enumerate()
            .map(|(i, ids)| {
                // Checked like an input to embed, without a length limit.
                let ids = super::inputs::encode_ids(i, ids, vocabulary, usize::MAX, false)?.ids;
                source
                    .tokenizer()
                    .untruncated()
                    .decode(&ids, skip)
                    .map_err(|e| ApiError::invalid(format!("tokenizer: {e}")))
            })
            .collect::<Result<Vec<String>, ApiError>>()
    })
    .await?;
    Ok(Json(out))
}

/// `POST /` and `POST /invocations` (SageMaker), which TEI sends to its one model's task.
///
/// sift may hold an embedding and a rerank model at once, so the body decides, and it is
/// unambiguous because the tasks' shapes differ: a `query` is a rerank; `inputs` holding
/// `source_sentence` is a similarity; other `inputs` are embedded — or, on a server with only a
/// rerank model, predicted (TEI's classifier route).
#[utoipa::path(post, path = "/", tag = "TEI", request_body = Object,
    responses(
        (status = 200, description = "the answer of /rerank, /similarity, /embed or /predict", body = Object),
        (status = 413, description = "too many inputs, body too large, or an input too long", body = ErrorBody),
        (status = 422, description = "a body no task accepts", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn root(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    fn parse<T: serde::de::DeserializeOwned>(body: Value) -> Result<T, ApiError> {
        serde_json::from_value(body).map_err(|e| ApiError::invalid(e.to_string()))
    }
    // Each answer is serialized by its own type, as on its own route (f32 stays f32).
    if body.get("query").is_some() {
        return Ok(Json(rerank_request(&state, parse(body)?).await?).into_response());
    }
    let inputs = body.get("inputs");
    if inputs.is_some_and(|i| i.get("source_sentence").is_some()) {
        return Ok(Json(similarity_request(&state, parse(body)?).await?).into_response());
    }
    if inputs.is_none() {
        return Err(ApiError::invalid(
            "the body has neither `inputs` (embed, similarity, predict) nor `query` (rerank)",
        ));
    }
    if state.inner.embedder.is_none() && state.inner.reranker.is_some() {
        return Ok(Json(predict_request(&state, parse(body)?).await?).into_response());
    }
    Ok(Json(embed_request(&state, parse(body)?).await?).into_response())
}

/// `POST /invocations`: the same as `POST /` (the route SageMaker sends to).
#[utoipa::path(post, path = "/invocations", tag = "TEI", request_body = Object,
    responses(
        (status = 200, description = "the answer of /rerank, /similarity, /embed or /predict", body = Object),
        (status = 413, description = "too many inputs, body too large, or an input too long", body = ErrorBody),
        (status = 422, description = "a body no task accepts", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn invocations(
    state: State<AppState>,
    body: ApiJson<Value>,
) -> Result<Response, ApiError> {
    root(state, body).await
}
