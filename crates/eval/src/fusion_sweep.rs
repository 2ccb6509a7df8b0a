//! The fusion sweep of `sift eval --fusion-sweep`: every way of fusing the two recall legs
//! ([`Fusion`]: RRF over a grid of k and leg weights, a convex combination of normalized
//! scores over a grid of weights), each at several per-leg depths, scored on the same
//! retrieved lists.
//!
//! Why offline: the expensive part of hybrid search is the two legs (query embedding, ANN,
//! BM25); fusing is microseconds. Each leg runs once per query at the largest depth, and every
//! setting fuses prefixes of those lists with the pipeline's own [`fuse`], so a row means at
//! search time what it meant here.

use std::collections::BTreeMap;

use sift_pipeline::fusion::{fuse, Fusion, Leg};
use sift_pipeline::{Pipeline, SearchMode, SearchOptions};

use crate::experiment::{QuerySet, METRICS};
use crate::metrics::{evaluate, Evaluation, Metric};
use crate::trec::{Qrels, Run};

/// One query's two recall legs, best first, with each leg's own scores (cosine, BM25).
#[derive(Debug, Clone, Default)]
pub struct QueryLegs {
    pub dense: Vec<String>,
    pub dense_scores: Vec<f32>,
    pub bm25: Vec<String>,
    pub bm25_scores: Vec<f32>,
}

/// Runs each leg once per query, `depth` documents deep (at most
/// [`sift_pipeline::search::MAX_TOP_K`]). `progress(1)` after each query.
pub fn retrieve_legs(
    pipeline: &Pipeline,
    queries: &QuerySet,
    depth: usize,
    progress: &mut dyn FnMut(usize),
) -> sift_pipeline::Result<BTreeMap<String, QueryLegs>> {
    let depth = depth.min(sift_pipeline::search::MAX_TOP_K);
    let leg = |mode: SearchMode, text: &str| -> sift_pipeline::Result<(Vec<String>, Vec<f32>)> {
        let options = SearchOptions {
            mode,
            depth,
            candidates: 0,
            top_k: depth,
            rerank: false,
            ..Default::default()
        };
        Ok(pipeline
            .search(text, &options)?
            .hits
            .into_iter()
            .map(|h| (h.id, h.score))
            .unzip())
    };
    let mut out = BTreeMap::new();
    for (qid, text) in &queries.queries {
        let (dense, dense_scores) = leg(SearchMode::Dense, text)?;
        let (bm25, bm25_scores) = leg(SearchMode::Bm25, text)?;
        out.insert(
            qid.clone(),
            QueryLegs {
                dense,
                dense_scores,
                bm25,
                bm25_scores,
            },
        );
        progress(1);
    }
    Ok(out)
}

/// The settings a sweep tries.
#[derive(Debug, Clone)]
pub struct SweepGrid {
    /// RRF k values, each tried at every RRF leg weight.
    pub rrf_ks: Vec<f32>,
    /// Dense-leg weights for weighted RRF (0.5 = plain RRF).
    pub rrf_dense_weights: Vec<f32>,
    /// Dense-leg weights for the convex combination.
    pub convex_dense_weights: Vec<f32>,
    /// Documents each leg contributes before fusing.
    pub depths: Vec<usize>,
}

impl Default for SweepGrid {
    /// Coarse steps on purpose: a dev split of ~100 queries cannot tell finer ones apart, and a
    /// finer grid only finds the noise of that split.
    fn default() -> Self {
        SweepGrid {
            rrf_ks: vec![5.0, 10.0, 20.0, 40.0, 60.0, 100.0, 200.0],
            rrf_dense_weights: vec![0.3, 0.4, 0.5, 0.6, 0.7],
            convex_dense_weights: (1..10).map(|i| i as f32 / 10.0).collect(),
            depths: vec![20, 50, 100],
        }
    }
}

impl SweepGrid {
    /// Every (fusion, depth) of the grid, depths within `max_depth` (the legs' depth; the
    /// largest is always included).
    pub fn settings(&self, max_depth: usize) -> Vec<(Fusion, usize)> {
        let mut fusions = Vec::new();
        for &k in &self.rrf_ks {
            for &dense_weight in &self.rrf_dense_weights {
                fusions.push(Fusion::Rrf { k, dense_weight });
            }
        }
        for &dense_weight in &self.convex_dense_weights {
            fusions.push(Fusion::Convex { dense_weight });
        }
        let mut depths: Vec<usize> = self
            .depths
            .iter()
            .copied()
            .filter(|&d| d < max_depth)
            .collect();
        depths.push(max_depth);
        depths
            .iter()
            .flat_map(|&d| fusions.iter().map(move |&f| (f, d)))
            .collect()
    }
}

/// One setting of the sweep and its metrics.
#[derive(Debug, Clone)]
pub struct SweepRow {
    pub fusion: Fusion,
    /// Documents each leg contributed.
    pub depth: usize,
    pub evaluation: Evaluation,
}

impl SweepRow {
    pub fn ndcg_at_10(&self) -> f64 {
        self.evaluation
            .mean
            .get(&Metric::Ndcg(10).name())
            .copied()
            .unwrap_or(0.0)
    }
}

/// The run of `fusion` over each query's legs cut to `depth`, top 100 (what `sift eval`
/// scores).
pub fn fused_run(legs: &BTreeMap<String, QueryLegs>, fusion: Fusion, depth: usize) -> Run {
    let mut run = Run::default();
    for (qid, l) in legs {
        let cut = |ids: &[String], scores: &[f32]| (ids.len().min(depth), scores.len().min(depth));
        let (d, ds) = cut(&l.dense, &l.dense_scores);
        let (b, bs) = cut(&l.bm25, &l.bm25_scores);
        let fused = fuse(
            Leg {
                ids: &l.dense[..d],
                scores: &l.dense_scores[..ds],
            },
            Leg {
                ids: &l.bm25[..b],
                scores: &l.bm25_scores[..bs],
            },
            fusion,
        );
        let n = fused.len().min(100);
        // Rank-derived scores keep the fused order under trec_eval's tie rule.
        run.results.insert(
            qid.clone(),
            fused
                .into_iter()
                .take(n)
                .enumerate()
                .map(|(i, (id, _))| (id.to_owned(), (n - i) as f64))
                .collect(),
        );
    }
    run
}

/// Every setting of `grid`, best nDCG@10 first (ties: the grid's order, plain settings first).
pub fn sweep(
    qrels: &Qrels,
    legs: &BTreeMap<String, QueryLegs>,
    grid: &SweepGrid,
    max_depth: usize,
) -> Vec<SweepRow> {
    let mut rows: Vec<SweepRow> = grid
        .settings(max_depth)
        .into_iter()
        .map(|(fusion, depth)| SweepRow {
            fusion,
            depth,
            evaluation: evaluate(qrels, &fused_run(legs, fusion, depth), &METRICS),
        })
        .collect();
    rows.sort_by(|a, b| b.ndcg_at_10().total_cmp(&a.ndcg_at_10()));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_grid_covers_plain_rrf_at_the_full_depth_and_no_deeper_cut() {
        let settings = SweepGrid::default().settings(60);
        assert!(settings.contains(&(Fusion::PLAIN_RRF, 60)));
        assert!(settings.contains(&(Fusion::default(), 60)));
        assert!(settings.iter().all(|&(_, d)| d <= 60));
        assert!(settings.iter().any(|&(_, d)| d == 20));
    }

    #[test]
    fn a_sweep_ranks_the_setting_that_finds_the_relevant_document_first() {
        // q1's relevant document is first in BM25 and last in dense: BM25-heavy settings win.
        let mut legs = BTreeMap::new();
        legs.insert(
            "q1".to_string(),
            QueryLegs {
                dense: ids(&["a", "b", "c", "rel"]),
                dense_scores: vec![0.9, 0.8, 0.7, 0.6],
                bm25: ids(&["rel", "a"]),
                bm25_scores: vec![12.0, 3.0],
            },
        );
        let qrels = Qrels::parse("q", "q1\t0\trel\t1\n").unwrap();
        let rows = sweep(&qrels, &legs, &SweepGrid::default(), 4);
        let best = &rows[0];
        assert!((best.ndcg_at_10() - 1.0).abs() < 1e-9, "{:?}", best.fusion);
        let plain = rows
            .iter()
            .find(|r| r.fusion == Fusion::PLAIN_RRF && r.depth == 4)
            .unwrap();
        assert!(plain.ndcg_at_10() < 1.0);
        // Cut to 2 per leg, dense no longer holds "rel" but BM25 still ranks it first.
        let cut = fused_run(&legs, Fusion::PLAIN_RRF, 2);
        let has = |id: &str| cut.results["q1"].iter().any(|(d, _)| d == id);
        assert!(has("rel") && !has("c"));
    }
}
