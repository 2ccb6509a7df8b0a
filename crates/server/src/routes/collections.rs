//! sift's own collection routes: upsert documents, delete one, search with the two-stage
//! pipeline (recall → fusion → rerank).

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use sift_index::Analyzer;
use sift_pipeline::fusion::Fusion;
use sift_pipeline::{SearchMode, SearchOptions};
use utoipa::ToSchema;

use std::sync::Arc;
use std::time::Instant;

use super::{blocking, check_items, rerank_documents, ScoringOverrides};
use crate::collections::Collections;
use crate::error::{ApiError, ErrorBody};
use crate::json::ApiJson;
use crate::AppState;

/// Runs `f` on the server's collections on a blocking thread, holding one of the collection
/// request permits (429 when none is free) for as long as it runs.
async fn on_collections<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Collections) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let permit = collections(state)?.permit()?;
    let app = state.clone();
    blocking(move || {
        let _permit = permit;
        f(collections(&app)?)
    })
    .await
}

fn collections(state: &AppState) -> Result<&Collections, ApiError> {
    state
        .inner
        .collections
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("collections directory"))
}

#[derive(Serialize, ToSchema)]
pub struct CollectionList {
    collections: Vec<String>,
}

/// Names of the collections the server serves (its directory's, or its database's).
#[utoipa::path(get, path = "/collections", tag = "collections",
    responses((status = 200, body = CollectionList), (status = 404, description = "collections not enabled", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list(State(state): State<AppState>) -> Result<Json<CollectionList>, ApiError> {
    // Blocking: listing may ask a database.
    let names = on_collections(&state, |cols| cols.names()).await?;
    Ok(Json(CollectionList { collections: names }))
}

#[derive(Serialize, ToSchema)]
pub struct CollectionCreated {
    name: String,
    /// False when the collection existed already (built with the server's embedding model).
    created: bool,
    /// The keyword analyzer: `english`, `chinese` or `neutral`.
    language: String,
    /// BM25's k1 and b, as the collection now scores.
    bm25_k1: f32,
    bm25_b: f32,
}

/// The optional body of `PUT /collections/{name}`.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// How BM25 cuts text into terms: `english` (stop words, Snowball stemmer), `chinese`
    /// (jieba dictionary words) or `neutral` (any language: words and CJK character bigrams,
    /// the default here since no documents are known yet; a collection created by its first
    /// upsert gets the analyzer that suits those documents). Giving another for an existing
    /// collection rebuilds its keyword index (vectors are kept); giving none keeps its own.
    #[serde(default)]
    language: Option<String>,
    /// BM25's k1 (how fast repeats of a term stop adding score; default 1.5 for a new
    /// collection, the collection's own otherwise). Applies from the next query; nothing is
    /// re-indexed.
    #[serde(default)]
    bm25_k1: Option<f32>,
    /// BM25's b, 0–1 (how much passage length discounts term counts; default 0.75).
    #[serde(default)]
    bm25_b: Option<f32>,
}

/// Creates an empty collection for the server's embedding model (upserts also create one on
/// first use). Idempotent: 200 with `created: false` when it exists with that model. The body
/// is optional.
#[utoipa::path(put, path = "/collections/{name}", tag = "collections",
    params(("name" = String, Path, description = "collection name: letters, digits, '-', '_', '.'")),
    request_body(content = Option<CreateRequest>, description = "optional"),
    responses(
        (status = 201, body = CollectionCreated),
        (status = 200, body = CollectionCreated),
        (status = 409, description = "it exists, built with another embedding model", body = ErrorBody),
        (status = 422, description = "invalid name", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<(axum::http::StatusCode, Json<CollectionCreated>), ApiError> {
    sift_index::store::validate_name(&name)?;
    let request: CreateRequest = if body.iter().all(u8::is_ascii_whitespace) {
        CreateRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid(format!("invalid request body: {e}")))?
    };
    let analyzer: Option<Analyzer> = match request.language.as_deref() {
        None => None,
        Some(language) => Some(language.parse().map_err(ApiError::invalid)?),
    };
    on_collections(&state, move |cols| {
        if cols.embedder().is_none() {
            return Err(ApiError::unavailable(
                "embedding model (creating a collection needs one)",
            ));
        }
        let (created, manifest) =
            cols.create(&name, analyzer, (request.bm25_k1, request.bm25_b))?;
        let status = if created {
            axum::http::StatusCode::CREATED
        } else {
            axum::http::StatusCode::OK
        };
        Ok((
            status,
            Json(CollectionCreated {
                name,
                created,
                language: manifest.analyzer.name().to_owned(),
                bm25_k1: manifest.bm25.k1,
                bm25_b: manifest.bm25.b,
            }),
        ))
    })
    .await
}

#[derive(Serialize, ToSchema)]
pub struct CollectionDropped {
    dropped: String,
}

/// Closes and deletes a collection with everything in it.
#[utoipa::path(delete, path = "/collections/{name}", tag = "collections",
    params(("name" = String, Path)),
    responses(
        (status = 200, body = CollectionDropped),
        (status = 404, description = "no such collection", body = ErrorBody),
        (status = 409, description = "a request is using it", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn drop_collection(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<CollectionDropped>, ApiError> {
    on_collections(&state, move |cols| {
        cols.drop_collection(&name)?;
        Ok(Json(CollectionDropped { dropped: name }))
    })
    .await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentInput {
    id: String,
    text: String,
    #[serde(default)]
    title: Option<String>,
    /// Any JSON; returned with hits.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    metadata: Option<serde_json::Value>,
    /// The document's own vector (bring your own embeddings): stored as the document's one
    /// chunk instead of embedding its text. Required in a collection of brought vectors; in a
    /// model's collection it must have the model's dimension.
    #[serde(default)]
    vector: Option<Vec<f32>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpsertRequest {
    documents: Vec<DocumentInput>,
}

#[derive(Serialize, ToSchema)]
pub struct UpsertResponse {
    added: usize,
    updated: usize,
    /// Already stored with identical content: not re-embedded.
    unchanged: usize,
    chunks: usize,
    /// The number of the batch this request committed (the collection's current one when
    /// nothing changed). Give it as a search's `min_seq` to read this write through any
    /// server of the collection, replicas included.
    seq: u64,
}

/// Adds or replaces documents by id (the collection is created, for the server's embedding
/// model, on first use). The batch is committed durably before the response.
#[utoipa::path(post, path = "/collections/{name}/documents", tag = "collections",
    params(("name" = String, Path, description = "collection name: letters, digits, '-', '_', '.'")),
    request_body = UpsertRequest,
    responses(
        (status = 200, body = UpsertResponse),
        (status = 409, description = "the collection was built with another embedding model, or is in use", body = ErrorBody),
        (status = 413, description = "too many documents or body too large", body = ErrorBody),
        (status = 422, description = "invalid documents (empty id or text, duplicate id)", body = ErrorBody),
        (status = 429, description = "too many collection requests at once", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn upsert(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<UpsertRequest>,
) -> Result<Json<UpsertResponse>, ApiError> {
    let deadline = Instant::now() + state.inner.limits.request_timeout;
    check_items(&state, req.documents.len(), "documents")?;
    let docs: Vec<sift_pipeline::NewDocument> = req
        .documents
        .into_iter()
        .map(|d| sift_pipeline::NewDocument {
            document: sift_index::Document {
                id: d.id,
                text: d.text,
                title: d.title,
                metadata: d.metadata,
            },
            vector: d.vector,
        })
        .collect();
    // Refused input creates nothing: validated before the collection is opened or created.
    sift_pipeline::ingest::validate_documents(docs.iter().map(|d| &d.document))?;
    // Used only if this upsert creates the collection.
    let analyzer = sift_pipeline::build::detect_analyzer(docs.iter().map(|d| &d.document));
    let needs_model = docs.iter().any(|d| d.vector.is_none());
    on_collections(&state, move |cols| {
        if needs_model && cols.embedder().is_none() {
            return Err(ApiError::unavailable(
                "embedding model (indexing needs one)",
            ));
        }
        cols.with(&name, Some(analyzer), |shared| {
            let mut pipeline = shared.write().unwrap_or_else(|p| p.into_inner());
            // One batch: the request is committed whole or not at all, and only if its
            // embedding ends before the request timeout.
            let report = pipeline.ingest_one_batch(docs, Some(deadline))?;
            drop(pipeline);
            Collections::compact_in_background(shared);
            Ok(Json(UpsertResponse {
                added: report.added,
                updated: report.updated,
                unchanged: report.unchanged,
                chunks: report.chunks,
                seq: match report.seq {
                    0 => pipeline_seq(shared)?,
                    seq => seq,
                },
            }))
        })
    })
    .await
}

/// The collection's last batch number (an upsert that changed nothing committed none).
fn pipeline_seq(shared: &crate::collections::SharedPipeline) -> Result<u64, ApiError> {
    let pipeline = shared.read().unwrap_or_else(|p| p.into_inner());
    Ok(pipeline.backend().seq()?)
}

#[derive(Serialize, ToSchema)]
pub struct DeleteResponse {
    deleted: String,
    /// The number of the batch that deleted it (see the upsert response's `seq`).
    seq: u64,
}

/// Removes one document (all its chunks) durably.
#[utoipa::path(delete, path = "/collections/{name}/documents/{id}", tag = "collections",
    params(("name" = String, Path), ("id" = String, Path, description = "document id")),
    responses(
        (status = 200, body = DeleteResponse),
        (status = 404, description = "no such collection or document", body = ErrorBody),
        (status = 429, description = "too many collection requests at once", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn delete_document(
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Json<DeleteResponse>, ApiError> {
    let deadline = Instant::now() + state.inner.limits.request_timeout;
    on_collections(&state, move |cols| {
        cols.with(&name, None, |shared| {
            let mut pipeline = shared.write().unwrap_or_else(|p| p.into_inner());
            // Waiting for the write lock may outlast the request; then nothing is deleted.
            if Instant::now() > deadline {
                return Err(sift_pipeline::PipelineError::DeadlineExceeded { committed: 0 }.into());
            }
            let (deleted, seq) = pipeline.delete(std::slice::from_ref(&id))?;
            drop(pipeline);
            if deleted.is_empty() {
                return Err(ApiError::not_found(format!(
                    "collection {name:?} has no document {id:?}"
                )));
            }
            Collections::compact_in_background(shared);
            Ok(Json(DeleteResponse { deleted: id, seq }))
        })
    })
    .await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// The query text; may be empty only in `dense` mode with `query_vector`.
    #[serde(default)]
    query: String,
    /// The query's own vector (a collection of brought vectors needs one for dense and hybrid
    /// search): used instead of embedding `query`. Must have the collection's dimension.
    #[serde(default)]
    query_vector: Option<Vec<f32>>,
    /// `hybrid` (default), `dense` or `bm25`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    mode: Option<SearchMode>,
    /// Results returned (default 10; 1–1,000).
    #[serde(default)]
    top_k: Option<i64>,
    /// Fused candidates the reranker scores (default 100; 0–1,000).
    #[serde(default)]
    candidates: Option<i64>,
    /// Documents each recall leg returns (default 100; 1–10,000).
    #[serde(default)]
    depth: Option<i64>,
    /// Rerank when the server has a rerank model (default true).
    #[serde(default)]
    rerank: Option<bool>,
    /// A latency budget in milliseconds for reranking this query's candidates, as `sift search
    /// --rerank-budget-ms` (cross-encoders): the full model scores as many leading candidates
    /// as fit, the rest keep the first stage's order (a layerwise model may use an exit or a
    /// cascade). Default: the server's `--rerank-budget-ms`, if any.
    #[serde(default)]
    rerank_budget_ms: Option<f64>,
    /// Weight of the first stage's ranking blended into the reranked order, 0–1 (default: what
    /// the rerank model's sift_rerank.json recommends, else 0 — the reranker alone).
    #[serde(default)]
    first_stage_weight: Option<f32>,
    /// How hybrid search fuses its legs: `convex:dense=0.5` (default), `rrf` (k = 60) or
    /// `rrf:k=K,dense=W`; as `sift search --fusion`.
    #[serde(default)]
    fusion: Option<String>,
    /// Read-your-writes: the `seq` an upsert or delete returned (through this server or any
    /// other of the collection). The search sees at least that batch — on a PostgreSQL
    /// replica that has replayed it, else on the primary. A number the collection has not
    /// reached is a 422.
    #[serde(default)]
    #[schema(minimum = 0)]
    min_seq: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct Hit {
    rank: usize,
    id: String,
    title: Option<String>,
    /// The best-matching chunk of the document.
    snippet: String,
    /// The final score: the rerank score when reranked (the blended rank score when the first
    /// stage keeps a weight), else the fused (or single-leg) score.
    score: f32,
    dense_rank: Option<usize>,
    dense_score: Option<f32>,
    bm25_rank: Option<usize>,
    bm25_score: Option<f32>,
    fused_rank: usize,
    fused_score: f32,
    rerank_score: Option<f32>,
    #[schema(value_type = Option<Object>)]
    metadata: Option<serde_json::Value>,
}

/// Stage times, in milliseconds.
#[derive(Serialize, ToSchema)]
pub struct StageTimings {
    query_embedding_ms: f64,
    ann_ms: f64,
    bm25_ms: f64,
    fusion_ms: f64,
    rerank_ms: f64,
    total_ms: f64,
}

#[derive(Serialize, ToSchema)]
pub struct SearchResponse {
    hits: Vec<Hit>,
    reranked: bool,
    timings: StageTimings,
}

/// A size from the request; its range is checked with every other option by
/// [`SearchOptions::validate`], the one definition the CLI shares.
fn bounded(name: &str, v: Option<i64>, default: usize) -> Result<usize, ApiError> {
    match v {
        None => Ok(default),
        Some(n) if n < 0 => Err(ApiError::invalid(format!(
            "{name} is {n}; it must not be negative"
        ))),
        Some(n) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
    }
}

/// Two-stage search: dense and BM25 recall, fused (by default an even convex combination of
/// min–max normalized scores), rerank (through the same
/// batching queue as `/rerank`, under the same long-document policy).
#[utoipa::path(post, path = "/collections/{name}/search", tag = "collections",
    params(("name" = String, Path)),
    request_body = SearchRequest,
    responses(
        (status = 200, body = SearchResponse),
        (status = 404, description = "no such collection", body = ErrorBody),
        (status = 409, description = "the collection was built with another embedding model", body = ErrorBody),
        (status = 422, description = "invalid request", body = ErrorBody),
        (status = 429, description = "too many collection requests at once", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn search(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<SearchRequest>,
) -> Result<Json<SearchResponse>, ApiError> {
    let defaults = SearchOptions::default();
    let options = SearchOptions {
        mode: req.mode.unwrap_or(defaults.mode),
        top_k: bounded("top_k", req.top_k, defaults.top_k)?,
        candidates: bounded("candidates", req.candidates, defaults.candidates)?,
        depth: bounded("depth", req.depth, defaults.depth)?,
        rerank: req.rerank.unwrap_or(defaults.rerank),
        first_stage_weight: req.first_stage_weight,
        fusion: match &req.fusion {
            Some(f) => f
                .parse::<Fusion>()
                .map_err(|e| ApiError::invalid(e.to_string()))?,
            None => defaults.fusion,
        },
        query_vector: req.query_vector,
    };
    options
        .validate()
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    if let Some(ms) = req.rerank_budget_ms {
        sift_models::rerank::LatencyBudget::check_ms(ms)?;
    }
    let scoring = ScoringOverrides {
        budget_ms: req.rerank_budget_ms,
        ..ScoringOverrides::default()
    };
    let permit = collections(&state)?.permit()?;
    // Rerank when asked and the server has a rerank model; through its batching queue.
    let rerank = options.rerank && state.inner.reranker.is_some();
    let app = state.clone();
    let candidates = blocking(move || {
        collections(&app)?.with(&name, None, |pipeline| {
            let pipeline = pipeline.read().unwrap_or_else(|p| p.into_inner());
            if let Some(seq) = req.min_seq {
                pipeline.backend().require_seq(seq)?;
            }
            Ok(pipeline.candidates(&req.query, &options, rerank)?)
        })
    })
    .await?;
    let results = if rerank && candidates.wants_rerank() {
        let started = std::time::Instant::now();
        let texts = Arc::new(candidates.rerank_texts().to_vec());
        let policy = state.inner.long_documents;
        let (scores, _) = rerank_documents(
            &state,
            candidates.query().to_owned(),
            texts,
            policy,
            false,
            scoring,
        )
        .await?;
        let model = state
            .inner
            .reranker
            .as_ref()
            .map(|b| b.model().0.clone())
            .ok_or_else(|| ApiError::internal("the rerank model went away".to_string()))?;
        candidates.finish(
            Some((model.as_ref(), scores)),
            started.elapsed().as_secs_f64() * 1000.0,
        )?
    } else {
        candidates.finish(None, 0.0)?
    };
    drop(permit);
    {
        let t = results.timings;
        Ok(Json(SearchResponse {
            reranked: results.reranked,
            timings: StageTimings {
                query_embedding_ms: t.query_embedding_ms,
                ann_ms: t.ann_ms,
                bm25_ms: t.bm25_ms,
                fusion_ms: t.fusion_ms,
                rerank_ms: t.rerank_ms,
                total_ms: t.total_ms,
            },
            hits: results
                .hits
                .into_iter()
                .map(|h| Hit {
                    rank: h.rank,
                    id: h.id,
                    title: h.title,
                    snippet: h.snippet,
                    score: h.score,
                    dense_rank: h.dense_rank,
                    dense_score: h.dense_score,
                    bm25_rank: h.bm25_rank,
                    bm25_score: h.bm25_score,
                    fused_rank: h.fused_rank,
                    fused_score: h.fused_score,
                    rerank_score: h.rerank_score,
                    metadata: h.metadata,
                })
                .collect(),
        }))
    }
}
