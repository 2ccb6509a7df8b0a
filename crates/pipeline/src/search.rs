//! The two-stage search: recall (dense ANN + BM25, fused by RRF), then cross-encoder rerank.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use sift_index::ChunkHit;
use sift_models::{CrossEncoder, Embedder, TextRole};

use crate::backend::SearchBackend;
use crate::error::{PipelineError, Result};
use crate::fusion::{reciprocal_rank_fusion, RRF_K};
use crate::ingest::{check_model, embedding_text, ingest, IngestReport};

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
    /// Rerank when the pipeline has a reranker.
    pub rerank: bool,
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions {
            mode: SearchMode::Hybrid,
            depth: 100,
            candidates: 100,
            top_k: 10,
            rerank: true,
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
    /// The score that ordered this list: rerank probability, else RRF score (hybrid), cosine
    /// similarity (dense) or BM25 score.
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
}

/// A collection with the models that search it.
pub struct Pipeline<B> {
    embedder: Option<Arc<Embedder>>,
    reranker: Option<Arc<CrossEncoder>>,
    backend: B,
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

impl<B: SearchBackend> Pipeline<B> {
    /// Checks that `embedder` (when given) is the model the collection was built with.
    pub fn new(
        embedder: Option<Arc<Embedder>>,
        reranker: Option<Arc<CrossEncoder>>,
        backend: B,
    ) -> Result<Self> {
        if let Some(e) = &embedder {
            check_model(e, backend.manifest())?;
        }
        Ok(Pipeline {
            embedder,
            reranker,
            backend,
        })
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    pub fn into_backend(self) -> B {
        self.backend
    }

    /// Swaps the rerank stage (evaluation compares several rerankers over one collection).
    pub fn set_reranker(&mut self, reranker: Option<Arc<CrossEncoder>>) {
        self.reranker = reranker;
    }

    pub fn has_reranker(&self) -> bool {
        self.reranker.is_some()
    }

    fn embedder(&self) -> Result<&Embedder> {
        self.embedder.as_deref().ok_or_else(|| {
            PipelineError::InvalidInput("this search needs the collection's embedding model".into())
        })
    }

    /// Embeds and stores documents; see [`ingest`].
    pub fn ingest(
        &mut self,
        docs: Vec<sift_index::Document>,
        batch_docs: usize,
        on_commit: &mut dyn FnMut(usize, usize),
    ) -> Result<IngestReport> {
        let embedder = self.embedder.clone().ok_or_else(|| {
            PipelineError::InvalidInput("indexing needs an embedding model".into())
        })?;
        ingest(&embedder, &mut self.backend, docs, batch_docs, on_commit)
    }

    /// Deletes documents by id in one batch; returns how many existed.
    pub fn delete(&mut self, ids: &[String]) -> Result<usize> {
        let existing: Vec<String> = ids
            .iter()
            .filter(|id| self.backend.document(id).is_some())
            .cloned()
            .collect();
        let n = existing.len();
        self.backend.commit(
            existing
                .into_iter()
                .map(sift_index::Operation::Delete)
                .collect(),
        )?;
        Ok(n)
    }

    pub fn search(&self, query: &str, options: &SearchOptions) -> Result<SearchResults> {
        let started = Instant::now();
        if query.trim().is_empty() {
            return Err(PipelineError::InvalidInput("the query is empty".into()));
        }
        if options.top_k == 0 || options.depth == 0 {
            return Err(PipelineError::InvalidInput(
                "top_k and depth must be at least 1".into(),
            ));
        }
        let mut timings = Timings::default();
        let fetch = options.depth.saturating_mul(CHUNK_OVERFETCH);

        let (dense_order, dense) = if options.mode != SearchMode::Bm25 {
            let t = Instant::now();
            let vector = self.embedder()?.embed(&[query], TextRole::Query)?.remove(0);
            timings.query_embedding_ms = ms(t);
            let t = Instant::now();
            let hits = self.backend.dense_search(&vector, fetch)?;
            timings.ann_ms = ms(t);
            by_document(hits, options.depth)
        } else {
            Default::default()
        };
        let (bm25_order, bm25) = if options.mode != SearchMode::Dense {
            let t = Instant::now();
            let hits = self.backend.keyword_search(query, fetch)?;
            timings.bm25_ms = ms(t);
            by_document(hits, options.depth)
        } else {
            Default::default()
        };

        let t = Instant::now();
        let fused: Vec<(String, f32)> = match options.mode {
            SearchMode::Hybrid => reciprocal_rank_fusion(&[&dense_order, &bm25_order], RRF_K)
                .into_iter()
                .map(|(id, s)| (id.to_owned(), s))
                .collect(),
            SearchMode::Dense => dense_order
                .iter()
                .map(|id| (id.clone(), dense[id].score))
                .collect(),
            SearchMode::Bm25 => bm25_order
                .iter()
                .map(|id| (id.clone(), bm25[id].score))
                .collect(),
        };
        let mut hits: Vec<SearchHit> = Vec::new();
        let keep = if options.rerank && self.reranker.is_some() {
            options.candidates.max(options.top_k)
        } else {
            options.top_k
        };
        for (i, (id, fused_score)) in fused.into_iter().take(keep).enumerate() {
            let d = dense.get(&id).copied();
            let b = bm25.get(&id).copied();
            // The snippet comes from the leg that ranked the document higher.
            let chunk = match (d, b) {
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
            let doc = self.backend.document(&id);
            hits.push(SearchHit {
                rank: i + 1,
                snippet: self.backend.chunk_text(&id, chunk).unwrap_or_default(),
                title: doc.as_ref().and_then(|d| d.title.clone()),
                metadata: doc.and_then(|d| d.metadata),
                id,
                score: fused_score,
                dense_rank: d.map(|x| x.rank),
                dense_score: d.map(|x| x.score),
                bm25_rank: b.map(|x| x.rank),
                bm25_score: b.map(|x| x.score),
                fused_rank: i + 1,
                fused_score,
                rerank_score: None,
            });
        }
        timings.fusion_ms = ms(t);

        let mut reranked = false;
        if let (true, Some(reranker)) = (options.rerank, &self.reranker) {
            if !hits.is_empty() {
                let t = Instant::now();
                let texts: Vec<String> = hits
                    .iter()
                    .map(|h| embedding_text(h.title.as_deref(), &h.snippet))
                    .collect();
                let scores = reranker.score(query, &texts)?;
                for (h, s) in hits.iter_mut().zip(&scores) {
                    h.rerank_score = Some(s.score);
                    h.score = s.score;
                }
                let logits: Vec<f32> = scores.iter().map(|s| s.logit).collect();
                let mut order: Vec<usize> = (0..hits.len()).collect();
                order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
                let mut slots: Vec<Option<SearchHit>> = hits.into_iter().map(Some).collect();
                hits = order.into_iter().filter_map(|i| slots[i].take()).collect();
                timings.rerank_ms = ms(t);
                reranked = true;
            }
        }
        hits.truncate(options.top_k);
        for (i, h) in hits.iter_mut().enumerate() {
            h.rank = i + 1;
        }
        timings.total_ms = ms(started);
        Ok(SearchResults {
            hits,
            timings,
            reranked,
        })
    }
}
