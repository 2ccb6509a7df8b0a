//! The two-stage search: recall (dense ANN + BM25, fused by RRF), then rerank.
//!
//! [`Pipeline::search`] runs both stages in process. The stages are also exposed apart —
//! [`Pipeline::candidates`], then [`Candidates::finish`] with scores from anywhere — so that the
//! server can score candidates on its shared batching queue instead of a second scheduler.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use sift_index::{ChunkHit, CollectionBackend};
use sift_models::rerank::{plan_for, score_planned, PreparedPairs};
use sift_models::{Embedder, LongDocumentPolicy, RerankScore, Reranker, TextRole};

use crate::error::{PipelineError, Result};
use crate::fusion::{blend_with_first_stage, fuse, Fusion, Leg};
use crate::ingest::{check_model, embedding_text, ingest, IngestReport, NewDocument};

/// Which recall legs run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// Embedding similarity only.
    Dense,
    /// Keyword (BM25) only; needs no embedding model.
    Bm25,
    /// Both, fused with reciprocal rank fusion.
    Hybrid,
}

impl std::str::FromStr for SearchMode {
    type Err = PipelineError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "dense" => Ok(SearchMode::Dense),
            "bm25" => Ok(SearchMode::Bm25),
            "hybrid" => Ok(SearchMode::Hybrid),
            other => Err(PipelineError::InvalidInput(format!(
                "unknown mode {other:?}; expected dense, bm25 or hybrid"
            ))),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SearchOptions {
    pub mode: SearchMode,
    /// Documents each recall leg returns.
    pub depth: usize,
    /// Fused documents the reranker scores.
    pub candidates: usize,
    /// Documents returned.
    pub top_k: usize,
    /// Rerank when a reranker is available.
    pub rerank: bool,
    /// Weight of the first stage's ranking in the reranked order
    /// ([`crate::fusion::blend_with_first_stage`]); `None`: what the rerank model recommends
    /// ([`Reranker::first_stage_weight`], 0 unless `sift train-reranker` chose one).
    pub first_stage_weight: Option<f32>,
    /// How hybrid search fuses its legs.
    pub fusion: Fusion,
    /// The query's own vector (brought by the caller, like a collection's brought vectors):
    /// dense recall uses it instead of embedding the query text. With it, the text may be empty
    /// in dense mode (nothing is then reranked: a reranker reads text).
    pub query_vector: Option<Vec<f32>>,
}

/// Most documents one recall leg may return. Why a bound: each leg fetches several chunks per
/// document and keeps them in memory, and a number from a request or a flag must not decide how
/// much memory is allocated (an unbounded `--depth` once aborted on a 72 GB allocation).
pub const MAX_DEPTH: usize = 10_000;
/// Most candidates the reranker may score for one query (a top-1,000 rerank is ~13 s on 2 CPU
/// cores with MiniLM-L6; more is a batch job, not a search).
pub const MAX_CANDIDATES: usize = 1_000;
/// Most documents one search may return.
pub const MAX_TOP_K: usize = 1_000;

impl SearchOptions {
    /// Refuses values outside `1..=`[`MAX_DEPTH`], `1..=`[`MAX_TOP_K`] and `0..=`
    /// [`MAX_CANDIDATES`], before any work.
    pub fn validate(&self) -> Result<()> {
        let check = |name: &str, value: usize, min: usize, max: usize| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(PipelineError::InvalidInput(format!(
                    "{name} is {value}; it must be between {min} and {max}"
                )))
            }
        };
        check("depth", self.depth, 1, MAX_DEPTH)?;
        check("top_k", self.top_k, 1, MAX_TOP_K)?;
        check("candidates", self.candidates, 0, MAX_CANDIDATES)?;
        self.fusion.validate()?;
        match self.first_stage_weight {
            Some(w) if !(0.0..=1.0).contains(&w) => Err(PipelineError::InvalidInput(format!(
                "first_stage_weight is {w}; it must be between 0 and 1"
            ))),
            _ => Ok(()),
        }
    }
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions {
            mode: SearchMode::Hybrid,
            depth: 100,
            candidates: 100,
            top_k: 10,
            rerank: true,
            first_stage_weight: None,
            fusion: Fusion::default(),
            query_vector: None,
        }
    }
}

/// One result, with where it came from so users can see what each stage did.
#[derive(Debug, Clone, Serialize)]
pub struct SearchHit {
    pub rank: usize,
    pub id: String,
    pub title: Option<String>,
    /// The document's best-matching chunk.
    pub snippet: String,
    /// The score that ordered this list: rerank probability (or, when the first stage keeps a
    /// weight in the order, the blended RRF score), else RRF score (hybrid), cosine similarity
    /// (dense) or BM25 score.
    pub score: f32,
    pub dense_rank: Option<usize>,
    pub dense_score: Option<f32>,
    pub bm25_rank: Option<usize>,
    pub bm25_score: Option<f32>,
    pub fused_rank: usize,
    pub fused_score: f32,
    pub rerank_score: Option<f32>,
    pub metadata: Option<serde_json::Value>,
}

/// Wall time of each stage, in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    pub query_embedding_ms: f64,
    pub ann_ms: f64,
    pub bm25_ms: f64,
    pub fusion_ms: f64,
    pub rerank_ms: f64,
    pub total_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SearchResults {
    pub hits: Vec<SearchHit>,
    pub timings: Timings,
    pub reranked: bool,
    /// How the reranker scored this query's candidates ("every layer", "cascade 0:24
    /// (estimated 290 ms)", …): what a latency budget chose, for `--explain`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rerank_plan: Option<String>,
}

/// A collection with the models that search it.
pub struct Pipeline {
    embedder: Option<Arc<Embedder>>,
    reranker: Option<Arc<dyn Reranker>>,
    policy: LongDocumentPolicy,
    backend: Box<dyn CollectionBackend>,
    /// Compact (when due) at the end of each write, under the caller's `&mut`; off for callers
    /// that compact in the background ([`Pipeline::with_background_compaction`]).
    inline_compaction: bool,
}

/// A document's best chunk in one recall leg.
#[derive(Clone, Copy)]
struct LegHit {
    rank: usize,
    chunk: u32,
    score: f32,
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

/// Chunk hits → one entry per document (its best chunk), in rank order, at most `depth`.
fn by_document(hits: Vec<ChunkHit>, depth: usize) -> (Vec<String>, HashMap<String, LegHit>) {
    let mut order = Vec::new();
    let mut best = HashMap::new();
    for h in hits {
        if order.len() == depth {
            break;
        }
        if !best.contains_key(&h.doc_id) {
            best.insert(
                h.doc_id.clone(),
                LegHit {
                    rank: order.len() + 1,
                    chunk: h.chunk,
                    score: h.score,
                },
            );
            order.push(h.doc_id);
        }
    }
    (order, best)
}

/// Chunks fetched per wanted document, so that documents with several matching chunks still
/// leave `depth` distinct documents.
const CHUNK_OVERFETCH: usize = 3;

/// The first stage's result: fused hits (best first) and, when they are to be reranked, the
/// text the reranker reads for each (title and the whole document; the long-document policy
/// decides what of it is scored).
#[derive(Clone)]
pub struct Candidates {
    query: String,
    hits: Vec<SearchHit>,
    rerank_texts: Vec<String>,
    top_k: usize,
    first_stage_weight: Option<f32>,
    timings: Timings,
    started: Instant,
}

impl Candidates {
    pub fn query(&self) -> &str {
        &self.query
    }

    /// Sets the first stage's weight in the reranked order, whatever the search options said
    /// (evaluation scores candidates once and finishes them under several weights).
    pub fn with_first_stage_weight(mut self, weight: f32) -> Self {
        self.first_stage_weight = Some(weight);
        self
    }

    /// Whether these candidates were gathered for reranking (and there is anything to rerank).
    pub fn wants_rerank(&self) -> bool {
        !self.rerank_texts.is_empty()
    }

    /// The document texts the reranker scores, in candidate order.
    pub fn rerank_texts(&self) -> &[String] {
        &self.rerank_texts
    }

    /// Tokenized pairs for `reranker` under `policy`.
    pub fn prepare(
        &self,
        reranker: &dyn Reranker,
        policy: &LongDocumentPolicy,
    ) -> Result<PreparedPairs> {
        Ok(sift_models::rerank::prepare(
            reranker,
            &self.query,
            &self.rerank_texts,
            policy,
        )?)
    }

    /// The final list: reordered by the scores `reranker` gave (one per entry of
    /// [`Candidates::rerank_texts`], in candidate order) when given — blended with the first
    /// stage's order by the search's `first_stage_weight`, else the reranker's recommended one —
    /// cut to `top_k`. `rerank_ms` is the time the scores took.
    pub fn finish(
        self,
        reranked_by: Option<(&dyn Reranker, Vec<RerankScore>)>,
        rerank_ms: f64,
    ) -> Result<SearchResults> {
        let Candidates {
            mut hits,
            rerank_texts,
            top_k,
            first_stage_weight,
            mut timings,
            started,
            ..
        } = self;
        let mut reranked = false;
        if let Some((reranker, scores)) = reranked_by {
            if scores.len() != rerank_texts.len() {
                return Err(PipelineError::Internal(format!(
                    "{} rerank scores for {} candidates",
                    scores.len(),
                    rerank_texts.len()
                )));
            }
            let weight = first_stage_weight.unwrap_or_else(|| reranker.first_stage_weight());
            // The reranked candidates lead, in their new order; hits past them (kept because
            // more were asked for than were reranked) follow in first-stage order.
            let tail = hits.split_off(scores.len());
            for (h, s) in hits.iter_mut().zip(&scores) {
                h.rerank_score = Some(s.score);
                h.score = s.score;
            }
            let order = blend_with_first_stage(&scores, weight);
            let mut slots: Vec<Option<SearchHit>> = hits.into_iter().map(Some).collect();
            hits = order
                .iter()
                .filter_map(|&(index, blended)| {
                    let mut hit = slots.get_mut(index).and_then(Option::take)?;
                    if weight > 0.0 {
                        hit.score = blended;
                    }
                    Some(hit)
                })
                .collect();
            hits.extend(tail);
            timings.rerank_ms = rerank_ms;
            reranked = true;
        }
        hits.truncate(top_k);
        for (i, h) in hits.iter_mut().enumerate() {
            h.rank = i + 1;
        }
        timings.total_ms = ms(started);
        Ok(SearchResults {
            hits,
            timings,
            reranked,
            rerank_plan: None,
        })
    }
}

impl Pipeline {
    /// Checks that `embedder` (when given) is the model the collection was built with.
    pub fn new(
        embedder: Option<Arc<Embedder>>,
        reranker: Option<Arc<dyn Reranker>>,
        backend: Box<dyn CollectionBackend>,
    ) -> Result<Self> {
        if let Some(e) = &embedder {
            let manifest = backend.manifest();
            if !manifest.embedding.is_external() {
                check_model(e, manifest)?;
            } else if e.dim() != manifest.embedding.dim {
                // A model named for a collection of brought vectors embeds its queries: the
                // caller vouches that it made those vectors; only the dimension can be checked.
                return Err(manifest.mismatch(&crate::ingest::model_info(e)?).into());
            }
        }
        Ok(Pipeline {
            embedder,
            reranker,
            policy: LongDocumentPolicy::default(),
            backend,
            inline_compaction: true,
        })
    }

    /// The long-document rule the rerank stage applies (default: windows, best window).
    pub fn with_policy(mut self, policy: LongDocumentPolicy) -> Result<Self> {
        policy.validate()?;
        self.policy = policy;
        Ok(self)
    }

    /// Writes no longer compact: the caller runs the split compaction
    /// ([`CollectionBackend::begin_compaction`]) itself, its expensive part outside whatever
    /// lock it shares the pipeline behind (the server: a write lock held through a compaction
    /// stalled every request to the collection, ~57 s at 20k chunks).
    pub fn with_background_compaction(mut self) -> Self {
        self.inline_compaction = false;
        self
    }

    /// Lets the backend compact when its policy says so, after committed writes. A failure is
    /// logged, not returned: the writes are committed, and compaction leaves them in place.
    fn compact_if_due(&mut self) {
        if !self.inline_compaction {
            return;
        }
        match self.backend.compact_if_due() {
            Ok(true) => tracing::info!("{}: compacted", self.backend.location()),
            Ok(false) => {}
            Err(e) => tracing::warn!("{}: compaction failed: {e}", self.backend.location()),
        }
    }

    pub fn policy(&self) -> &LongDocumentPolicy {
        &self.policy
    }

    pub fn backend(&self) -> &dyn CollectionBackend {
        self.backend.as_ref()
    }

    pub fn backend_mut(&mut self) -> &mut dyn CollectionBackend {
        self.backend.as_mut()
    }

    pub fn into_backend(self) -> Box<dyn CollectionBackend> {
        self.backend
    }

    pub fn reranker(&self) -> Option<&Arc<dyn Reranker>> {
        self.reranker.as_ref()
    }

    pub fn has_reranker(&self) -> bool {
        self.reranker.is_some()
    }

    fn query_embedder(&self) -> Result<&Embedder> {
        self.embedder.as_deref().ok_or_else(|| {
            let embedding = &self.backend.manifest().embedding;
            PipelineError::InvalidInput(if embedding.is_external() {
                format!(
                    "this collection holds vectors made outside sift ({}, {} dimensions): a dense \
                     or hybrid search needs a query vector (or a model named to embed queries)",
                    embedding.name, embedding.dim
                )
            } else {
                "this search needs the collection's embedding model".into()
            })
        })
    }

    /// Refuses a query vector that cannot be compared with the collection's.
    fn check_query_vector(&self, v: &[f32]) -> Result<()> {
        let dim = self.backend.manifest().embedding.dim;
        if v.len() != dim {
            return Err(PipelineError::InvalidInput(format!(
                "the query vector has {} dimensions; the collection's have {dim}",
                v.len()
            )));
        }
        match sift_index::batch::vector_problem(v) {
            Some(problem) => Err(PipelineError::InvalidInput(format!(
                "the query vector {problem}"
            ))),
            None => Ok(()),
        }
    }

    /// Embeds (unless they bring vectors) and stores documents; see [`ingest`].
    pub fn ingest(
        &mut self,
        docs: Vec<NewDocument>,
        batch_docs: usize,
        on_commit: &mut dyn FnMut(usize, usize),
    ) -> Result<IngestReport> {
        let embedder = self.ingest_embedder();
        let report = ingest(
            embedder.as_deref(),
            self.backend.as_mut(),
            docs,
            batch_docs,
            None,
            on_commit,
        )?;
        if report.batches > 0 {
            self.compact_if_due();
        }
        Ok(report)
    }

    /// Embeds and stores `docs` as one batch, committed only if the embedding ends before
    /// `deadline` (what a server does for a request: all of it or none, and an answer that says
    /// which).
    pub fn ingest_one_batch(
        &mut self,
        docs: Vec<NewDocument>,
        deadline: Option<std::time::Instant>,
    ) -> Result<IngestReport> {
        let batch = docs.len().max(1);
        let embedder = self.ingest_embedder();
        let report = ingest(
            embedder.as_deref(),
            self.backend.as_mut(),
            docs,
            batch,
            deadline,
            &mut |_, _| {},
        )?;
        if report.batches > 0 {
            self.compact_if_due();
        }
        Ok(report)
    }

    /// The model that embeds documents: none for a collection of brought vectors, whatever model
    /// was named for its queries.
    fn ingest_embedder(&self) -> Option<Arc<Embedder>> {
        self.embedder
            .clone()
            .filter(|_| !self.backend.manifest().embedding.is_external())
    }

    /// Deletes documents by id in one batch; returns the ids that existed (each once) and the
    /// batch's number (the collection's current one when none existed: nothing was written).
    pub fn delete(&mut self, ids: &[String]) -> Result<(Vec<String>, u64)> {
        let mut seen = std::collections::HashSet::new();
        let unique: Vec<&str> = ids
            .iter()
            .map(String::as_str)
            .filter(|id| seen.insert(*id))
            .collect();
        let stored = self.backend.documents(&unique)?;
        let existing: Vec<String> = unique
            .iter()
            .zip(stored)
            .filter(|(_, d)| d.is_some())
            .map(|(id, _)| (*id).to_owned())
            .collect();
        let seq = self.backend.commit(
            existing
                .iter()
                .cloned()
                .map(sift_index::Operation::Delete)
                .collect(),
        )?;
        self.compact_if_due();
        Ok((existing, seq))
    }

    /// Both stages: recall, then (when `options.rerank` and a reranker is set) rerank.
    pub fn search(&self, query: &str, options: &SearchOptions) -> Result<SearchResults> {
        let reranker = self.reranker.as_deref().filter(|_| options.rerank);
        let candidates = self.candidates(query, options, reranker.is_some())?;
        match reranker {
            Some(r) if candidates.wants_rerank() => {
                let t = Instant::now();
                let prepared = candidates.prepare(r, &self.policy)?;
                let choice = plan_for(r, &prepared);
                let scores = score_planned(r, &prepared, choice, &mut |_| {})?;
                let mut results = candidates.finish(Some((r, scores)), ms(t))?;
                results.rerank_plan = Some(choice.to_string());
                Ok(results)
            }
            _ => candidates.finish(None, 0.0),
        }
    }

    /// The first stage: dense and BM25 recall fused by reciprocal rank fusion. With `for_rerank`
    /// it keeps `max(options.candidates, top_k)` hits (else `top_k`) and the text the reranker
    /// reads for the first `options.candidates` of them.
    pub fn candidates(
        &self,
        query: &str,
        options: &SearchOptions,
        for_rerank: bool,
    ) -> Result<Candidates> {
        let started = Instant::now();
        let blank = sift_models::is_blank(query);
        if blank && (options.query_vector.is_none() || options.mode != SearchMode::Dense) {
            return Err(PipelineError::InvalidInput(
                "the query is empty (only a dense search with a query vector needs no text)".into(),
            ));
        }
        options.validate()?;
        let for_rerank = for_rerank && !blank;
        let mut timings = Timings::default();
        let fetch = options.depth.saturating_mul(CHUNK_OVERFETCH);

        let vector = if options.mode != SearchMode::Bm25 {
            let t = Instant::now();
            let vector = match &options.query_vector {
                Some(v) => {
                    self.check_query_vector(v)?;
                    v.clone()
                }
                None => self
                    .query_embedder()?
                    .embed(&[query], TextRole::Query)?
                    .pop()
                    .ok_or_else(|| PipelineError::Internal("no query embedding".into()))?,
            };
            timings.query_embedding_ms = ms(t);
            Some(vector)
        } else {
            None
        };
        let (dense_hits, bm25_hits) = match (options.mode, vector) {
            // Both legs from one committed state (see CollectionBackend::hybrid_search).
            (SearchMode::Hybrid, Some(vector)) => {
                let legs = self.backend.hybrid_search(&vector, query, fetch)?;
                timings.ann_ms = legs.dense_ms;
                timings.bm25_ms = legs.keyword_ms;
                (Some(legs.dense), Some(legs.keyword))
            }
            (_, Some(vector)) => {
                let t = Instant::now();
                let hits = self.backend.dense_search(&vector, fetch)?;
                timings.ann_ms = ms(t);
                (Some(hits), None)
            }
            (_, None) => {
                let t = Instant::now();
                let hits = self.backend.keyword_search(query, fetch)?;
                timings.bm25_ms = ms(t);
                (None, Some(hits))
            }
        };
        let (dense_order, dense) = dense_hits
            .map(|hits| by_document(hits, options.depth))
            .unwrap_or_default();
        let (bm25_order, bm25) = bm25_hits
            .map(|hits| by_document(hits, options.depth))
            .unwrap_or_default();

        let t = Instant::now();
        let fused: Vec<(String, f32)> = match options.mode {
            SearchMode::Hybrid => {
                let scores = |order: &[String], leg: &HashMap<String, LegHit>| -> Vec<f32> {
                    order.iter().map(|id| leg[id].score).collect()
                };
                let (dense_scores, bm25_scores) =
                    (scores(&dense_order, &dense), scores(&bm25_order, &bm25));
                fuse(
                    Leg {
                        ids: &dense_order,
                        scores: &dense_scores,
                    },
                    Leg {
                        ids: &bm25_order,
                        scores: &bm25_scores,
                    },
                    options.fusion,
                )
                .into_iter()
                .map(|(id, s)| (id.to_owned(), s))
                .collect()
            }
            SearchMode::Dense => dense_order
                .iter()
                .map(|id| (id.clone(), dense[id].score))
                .collect(),
            SearchMode::Bm25 => bm25_order
                .iter()
                .map(|id| (id.clone(), bm25[id].score))
                .collect(),
        };
        let keep = if for_rerank {
            options.candidates.max(options.top_k)
        } else {
            options.top_k
        };
        let fused: Vec<(String, f32)> = fused.into_iter().take(keep).collect();
        let legs: Vec<(Option<LegHit>, Option<LegHit>)> = fused
            .iter()
            .map(|(id, _)| (dense.get(id).copied(), bm25.get(id).copied()))
            .collect();
        // The snippet comes from the leg that ranked the document higher.
        let snippet_chunks: Vec<(&str, u32)> = fused
            .iter()
            .zip(&legs)
            .map(|((id, _), leg)| {
                let chunk = match *leg {
                    (Some(d), Some(b)) => {
                        if d.rank <= b.rank {
                            d.chunk
                        } else {
                            b.chunk
                        }
                    }
                    (Some(x), None) | (None, Some(x)) => x.chunk,
                    (None, None) => 0,
                };
                (id.as_str(), chunk)
            })
            .collect();
        let details = self.backend.hit_details(&snippet_chunks)?;
        let mut hits = Vec::with_capacity(fused.len());
        let mut rerank_texts = Vec::new();
        for (i, (((id, fused_score), (d, b)), detail)) in
            fused.iter().zip(legs).zip(details).enumerate()
        {
            let (title, snippet, metadata, text) = match detail {
                Some(x) => (
                    x.document.title,
                    x.chunk_text,
                    x.document.metadata,
                    x.document.text,
                ),
                // Deleted between the search and this read: skip rather than show nothing.
                None => continue,
            };
            if for_rerank && rerank_texts.len() < options.candidates {
                rerank_texts.push(embedding_text(title.as_deref(), &text));
            }
            hits.push(SearchHit {
                rank: i + 1,
                id: id.clone(),
                title,
                snippet,
                score: *fused_score,
                dense_rank: d.map(|x| x.rank),
                dense_score: d.map(|x| x.score),
                bm25_rank: b.map(|x| x.rank),
                bm25_score: b.map(|x| x.score),
                fused_rank: i + 1,
                fused_score: *fused_score,
                rerank_score: None,
                metadata,
            });
        }
        timings.fusion_ms = ms(t);
        Ok(Candidates {
            query: query.to_owned(),
            hits,
            rerank_texts,
            top_k: options.top_k,
            first_stage_weight: options.first_stage_weight,
            timings,
            started,
        })
    }
}
