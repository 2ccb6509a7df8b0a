//! The evaluation grid of `sift eval`: which queries are evaluated, and every (recall mode ×
//! reranker) run of them through the pipeline, scored with trec_eval's metrics.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Instant;

use sift_models::rerank::score_documents;
use sift_models::Reranker;
use sift_pipeline::{Pipeline, SearchMode, SearchOptions};

use crate::beir::Dataset;
use crate::metrics::{evaluate, Evaluation, Metric};
use crate::split::{DevSplit, Split, SplitRule};
use crate::trec::{Qrels, Run};

/// The metrics `sift eval` reports, in table order.
pub const METRICS: [Metric; 8] = [
    Metric::Ndcg(10),
    Metric::ReciprocalRank(10),
    Metric::Recall(10),
    Metric::Recall(100),
    Metric::Success(1),
    Metric::Success(5),
    Metric::Success(10),
    Metric::AveragePrecision(100),
];

/// The queries to evaluate and their judgements, with what could not be evaluated (reported,
/// not fatal).
#[derive(Debug, Clone)]
pub struct QuerySet {
    /// (query id, text), by id.
    pub queries: Vec<(String, String)>,
    pub qrels: Qrels,
    pub judged_without_text: usize,
    /// Judged queries whose text is empty: kept in the judgements, so they count as 0.
    pub empty_queries: usize,
}

impl QuerySet {
    /// The judged queries of `split` under `rule`, by id: the first `skip` left out, then at
    /// most `max_queries`.
    pub fn select(
        data: &Dataset,
        split: Split,
        rule: SplitRule,
        skip: usize,
        max_queries: Option<usize>,
    ) -> QuerySet {
        let sides = DevSplit::new(&data.qrels, rule);
        let mut qrels = data.qrels.clone();
        qrels.judgements.retain(|q, _| sides.contains(split, q));
        let judged_without_text = qrels
            .judgements
            .keys()
            .filter(|q| !data.queries.contains_key(*q))
            .count();
        qrels.judgements.retain(|q, _| data.queries.contains_key(q));
        let mut empty_queries = 0;
        let mut queries = Vec::new();
        for q in qrels.judgements.keys() {
            let text = &data.queries[q];
            if sift_models::is_blank(text) {
                empty_queries += 1;
            } else {
                queries.push((q.clone(), text.clone()));
            }
        }
        if skip > 0 || max_queries.is_some() {
            queries.drain(..skip.min(queries.len()));
            queries.truncate(max_queries.unwrap_or(usize::MAX));
            let kept: HashSet<&String> = queries.iter().map(|(q, _)| q).collect();
            qrels.judgements.retain(|q, _| {
                kept.contains(q)
                    || data
                        .queries
                        .get(q)
                        .is_some_and(|t| sift_models::is_blank(t))
            });
        }
        QuerySet {
            queries,
            qrels,
            judged_without_text,
            empty_queries,
        }
    }

    /// Judged documents that `pipeline`'s collection does not hold (one batched read).
    pub fn documents_missing_from(&self, pipeline: &Pipeline) -> sift_pipeline::Result<usize> {
        let judged: Vec<&str> = self
            .qrels
            .judgements
            .values()
            .flat_map(|d| d.keys().map(String::as_str))
            .collect();
        Ok(pipeline
            .backend()
            .documents(&judged)?
            .iter()
            .filter(|d| d.is_none())
            .count())
    }
}

/// One run of the grid.
#[derive(Debug, Clone)]
pub struct GridRow {
    /// `bm25`, `dense(model)` or `hybrid(bm25+model)`.
    pub retriever: String,
    /// The reranker's name, or `none`.
    pub reranker: String,
    pub evaluation: Evaluation,
    pub ms_per_query: f64,
    /// Median time of the rerank stage alone per query, milliseconds; `None` without a
    /// reranker.
    pub rerank_ms_p50: Option<f64>,
    /// File-name-safe name of the run (`hybrid-all-MiniLM-L6-v2+my-reranker`).
    pub name: String,
    pub run: Run,
}

/// The recall depth and candidates of every run, and the first-stage weights swept.
#[derive(Debug, Clone, Default)]
pub struct GridOptions {
    pub depth: usize,
    pub candidates: usize,
    /// Weights of the first stage's ranking in the reranked order evaluated for every reranker,
    /// besides 0 (the reranker alone) and the weight the model recommends
    /// ([`Reranker::first_stage_weight`]). Scores are computed once and reused for each.
    pub first_stage_weights: Vec<f32>,
    /// How hybrid runs fuse their legs.
    pub fusion: sift_pipeline::fusion::Fusion,
}

/// The weights evaluated for `reranker`: 0, its recommendation, then `extra`, each once.
fn weights_for(reranker: &dyn Reranker, extra: &[f32]) -> Vec<f32> {
    let mut weights = vec![0.0];
    for w in std::iter::once(reranker.first_stage_weight()).chain(extra.iter().copied()) {
        if !weights.iter().any(|x| (x - w).abs() < 1e-6) {
            weights.push(w);
        }
    }
    weights
}

/// The reranker column of a row: its name, and the blend weight when the first stage keeps one.
fn reranker_label(name: &str, weight: f32) -> String {
    if weight > 0.0 {
        format!("{name} ⊕ first stage {weight:.2}")
    } else {
        name.to_string()
    }
}

/// Runs `queries` through `pipeline` for every reranker (`None`: no reranking) × mode × blend
/// weight. `progress(1)` after each query of each (reranker, mode).
pub fn run_grid(
    pipeline: &Pipeline,
    queries: &QuerySet,
    modes: &[SearchMode],
    rerankers: &[(String, Option<Arc<dyn Reranker>>)],
    options: GridOptions,
    progress: &mut dyn FnMut(usize),
) -> sift_pipeline::Result<Vec<GridRow>> {
    let embedding_name = pipeline.backend().manifest().embedding.name.clone();
    let mut rows = Vec::new();
    for (reranker_name, reranker) in rerankers {
        let weights = match reranker {
            Some(r) => weights_for(r.as_ref(), &options.first_stage_weights),
            None => vec![0.0],
        };
        for &mode in modes {
            let retriever = match mode {
                SearchMode::Bm25 => "bm25".to_string(),
                SearchMode::Dense => format!("dense({embedding_name})"),
                SearchMode::Hybrid => format!("hybrid(bm25+{embedding_name})"),
            };
            let search = SearchOptions {
                mode,
                depth: options.depth,
                candidates: options.candidates,
                top_k: 100,
                rerank: reranker.is_some(),
                first_stage_weight: None,
                fusion: options.fusion,
                query_vector: None,
            };
            let started = Instant::now();
            let mut runs = vec![Run::default(); weights.len()];
            let mut rerank_ms = Vec::with_capacity(queries.queries.len());
            for (qid, text) in &queries.queries {
                let candidates = pipeline.candidates(text, &search, reranker.is_some())?;
                let scores = match reranker {
                    Some(r) if candidates.wants_rerank() => {
                        let t = Instant::now();
                        let scores = score_documents(
                            r.as_ref(),
                            candidates.query(),
                            candidates.rerank_texts(),
                            pipeline.policy(),
                            &mut |_| {},
                        )?;
                        rerank_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                        Some(scores)
                    }
                    _ => None,
                };
                for (run, &w) in runs.iter_mut().zip(&weights) {
                    let hits = candidates
                        .clone()
                        .with_first_stage_weight(w)
                        .finish(reranker.as_deref().zip(scores.clone()), 0.0)?
                        .hits;
                    let n = hits.len();
                    // Rank-derived scores keep sift's order under trec_eval's tie rule.
                    run.results.insert(
                        qid.clone(),
                        hits.into_iter()
                            .enumerate()
                            .map(|(i, h)| (h.id, (n - i) as f64))
                            .collect(),
                    );
                }
                progress(1);
            }
            let secs = started.elapsed().as_secs_f64();
            let mode_part = match mode {
                SearchMode::Bm25 => "bm25".to_string(),
                SearchMode::Dense => format!("dense-{}", sanitize(&embedding_name)),
                SearchMode::Hybrid => format!("hybrid-{}", sanitize(&embedding_name)),
            };
            for (run, &w) in runs.into_iter().zip(&weights) {
                let rerank_part = match reranker {
                    Some(_) if w > 0.0 => format!("+{}+first{w:.2}", sanitize(reranker_name)),
                    Some(_) => format!("+{}", sanitize(reranker_name)),
                    None => String::new(),
                };
                rows.push(GridRow {
                    retriever: retriever.clone(),
                    reranker: reranker_label(reranker_name, w),
                    evaluation: evaluate(&queries.qrels, &run, &METRICS),
                    ms_per_query: secs / queries.queries.len().max(1) as f64 * 1000.0,
                    rerank_ms_p50: median(&rerank_ms),
                    name: format!("{mode_part}{rerank_part}"),
                    run,
                });
            }
        }
    }
    Ok(rows)
}

/// The middle value (the mean of the two middle ones for an even count); `None` when empty.
fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// File-name-safe form of a model or run name.
pub fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// One run's metrics on the queries a training set could have taught it ("seen": a relevant
/// document was a training positive) and on the others ("unseen").
#[derive(Debug, Clone)]
pub struct SeenUnseen {
    pub retriever: String,
    pub reranker: String,
    pub seen: Evaluation,
    pub unseen: Evaluation,
    pub seen_queries: usize,
    pub unseen_queries: usize,
}

/// Splits every row's evaluation by `seen` (see [`crate::split::seen_queries`]): a reranker
/// that learned which documents are relevant, rather than what relevance is, gains on the
/// seen queries and loses on the unseen ones, and the mean over both hides it.
pub fn seen_unseen(rows: &[GridRow], qrels: &Qrels, seen: &BTreeSet<String>) -> Vec<SeenUnseen> {
    let part = |keep_seen: bool| {
        let mut q = qrels.clone();
        q.judgements.retain(|id, _| seen.contains(id) == keep_seen);
        q
    };
    let (seen_qrels, unseen_qrels) = (part(true), part(false));
    rows.iter()
        .map(|r| SeenUnseen {
            retriever: r.retriever.clone(),
            reranker: r.reranker.clone(),
            seen: evaluate(&seen_qrels, &r.run, &METRICS),
            unseen: evaluate(&unseen_qrels, &r.run, &METRICS),
            seen_queries: seen_qrels.judgements.len(),
            unseen_queries: unseen_qrels.judgements.len(),
        })
        .collect()
}
