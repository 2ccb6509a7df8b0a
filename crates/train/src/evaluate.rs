//! Dev evaluation during training: rerank the first stage's candidates with the model being
//! trained and measure nDCG@10 (also MRR@10 and Recall@10) with sift-eval's trec_eval metrics,
//! for the reranker alone and blended with the first stage's order at each weight of
//! [`BLEND_WEIGHTS`].

use std::collections::BTreeMap;

use candle_core::Device;
use sift_eval::metrics::{evaluate, Metric};
use sift_eval::{Qrels, Run};
use sift_models::arch::Transformer;
use sift_models::batch::{plan_batches, Batch};
use sift_models::{RerankScore, TextTokenizer};
use sift_pipeline::fusion::blend_with_first_stage;

use crate::data::{Corpus, LabelledQuery};
use crate::error::Result;

/// Dev queries with their first-stage candidates (best first).
pub struct DevSet {
    pub queries: Vec<LabelledQuery>,
    pub candidates: BTreeMap<String, Vec<String>>,
    pub qrels: Qrels,
}

/// nDCG@10, MRR@10 (RR@10) and Recall@10, averaged over the dev queries.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct DevMetrics {
    pub ndcg_at_10: f64,
    pub mrr_at_10: f64,
    pub recall_at_10: f64,
}

/// First-stage weights tried when blending the reranker with the first stage (0: the reranker
/// alone; 1: the first stage alone, i.e. the reranker does not help). A coarse grid: the dev
/// split is a few dozen queries, and finer steps would fit its noise.
pub const BLEND_WEIGHTS: [f32; 11] = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];

/// One dev evaluation of a model: alone, and blended at the weight that did best.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct DevEvaluation {
    pub alone: DevMetrics,
    /// The best of [`BLEND_WEIGHTS`] by nDCG@10 (the smallest on ties).
    pub first_stage_weight: f32,
    pub blended: DevMetrics,
}

const METRICS: [Metric; 3] = [
    Metric::Ndcg(10),
    Metric::ReciprocalRank(10),
    Metric::Recall(10),
];

fn summarise(qrels: &Qrels, run: &Run) -> DevMetrics {
    let e = evaluate(qrels, run, &METRICS);
    let get = |m: Metric| e.mean.get(&m.name()).copied().unwrap_or(0.0);
    DevMetrics {
        ndcg_at_10: get(METRICS[0]),
        mrr_at_10: get(METRICS[1]),
        recall_at_10: get(METRICS[2]),
    }
}

impl DevSet {
    /// The first stage's own quality on these queries: what reranking must beat.
    pub fn first_stage_metrics(&self) -> DevMetrics {
        let mut run = Run::default();
        for (q, ids) in &self.candidates {
            let n = ids.len();
            run.results.insert(
                q.clone(),
                ids.iter()
                    .enumerate()
                    .map(|(i, d)| (d.clone(), (n - i) as f64))
                    .collect(),
            );
        }
        summarise(&self.qrels, &run)
    }

    /// Reranks every query's candidates with `model` (padded tokens per pass: `batch_tokens`)
    /// and measures it alone and blended with the first stage.
    pub fn rerank_metrics(
        &self,
        model: &Transformer,
        tokenizer: &TextTokenizer,
        corpus: &Corpus,
        batch_tokens: usize,
    ) -> Result<DevEvaluation> {
        let scored = self.rerank_scores(model, tokenizer, corpus, batch_tokens)?;
        let at = |w: f32| summarise(&self.qrels, &blended_run(&scored, w));
        let alone = at(0.0);
        let (mut first_stage_weight, mut blended) = (0.0, alone);
        for &w in &BLEND_WEIGHTS[1..] {
            let m = at(w);
            if m.ndcg_at_10 > blended.ndcg_at_10 {
                (first_stage_weight, blended) = (w, m);
            }
        }
        Ok(DevEvaluation {
            alone,
            first_stage_weight,
            blended,
        })
    }

    /// Each query's candidates (in first-stage order) with `model`'s logits.
    fn rerank_scores(
        &self,
        model: &Transformer,
        tokenizer: &TextTokenizer,
        corpus: &Corpus,
        batch_tokens: usize,
    ) -> Result<BTreeMap<String, Vec<(String, f32)>>> {
        let mut out = BTreeMap::new();
        for q in &self.queries {
            let Some(ids) = self.candidates.get(&q.id) else {
                continue;
            };
            // The collection may hold documents the training corpus lacks (it was built from
            // another file): they cannot be scored, and are left out as negatives are.
            let ids: Vec<&String> = ids.iter().filter(|d| corpus.contains_key(*d)).collect();
            let pairs = ids
                .iter()
                .map(|d| tokenizer.encode_pair(&q.text, &corpus[*d]))
                .collect::<sift_models::Result<Vec<_>>>()?;
            let lengths: Vec<usize> = pairs.iter().map(|p| p.len()).collect();
            let mut scores = vec![0f32; pairs.len()];
            for group in plan_batches(&lengths, batch_tokens) {
                let rows: Vec<_> = group.iter().map(|&i| &pairs[i]).collect();
                let batch = Batch::new(&rows, model.config.pad_token_id, &Device::Cpu)?;
                let logits: Vec<Vec<f32>> = model.logits(&batch)?.to_vec2()?;
                for (&i, l) in group.iter().zip(logits) {
                    scores[i] = l[0];
                }
            }
            out.insert(q.id.clone(), ids.into_iter().cloned().zip(scores).collect());
        }
        Ok(out)
    }
}

/// The run of `scored` under the pipeline's own blend ([`blend_with_first_stage`]), so that
/// the weight chosen here means at search time what it meant on dev.
fn blended_run(scored: &BTreeMap<String, Vec<(String, f32)>>, weight: f32) -> Run {
    let mut run = Run::default();
    for (q, candidates) in scored {
        let scores: Vec<RerankScore> = candidates
            .iter()
            .enumerate()
            .map(|(index, &(_, logit))| RerankScore {
                index,
                logit,
                score: logit,
                dropped: false,
            })
            .collect();
        let order = blend_with_first_stage(&scores, weight);
        let n = order.len();
        run.results.insert(
            q.clone(),
            order
                .iter()
                .enumerate()
                .map(|(rank, &(i, _))| (candidates[i].0.clone(), (n - rank) as f64))
                .collect(),
        );
    }
    run
}
