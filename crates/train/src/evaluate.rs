//! Dev evaluation during training: rerank the first stage's candidates with the model being
//! trained and measure nDCG@10 (also MRR@10 and Recall@10) with sift-eval's trec_eval metrics.

use std::collections::BTreeMap;

use candle_core::Device;
use sift_eval::metrics::{evaluate, Metric};
use sift_eval::{Qrels, Run};
use sift_models::arch::Transformer;
use sift_models::batch::{plan_batches, Batch};
use sift_models::TextTokenizer;

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

    /// Reranks every query's candidates with `model` (padded tokens per pass: `batch_tokens`).
    pub fn rerank_metrics(
        &self,
        model: &Transformer,
        tokenizer: &TextTokenizer,
        corpus: &Corpus,
        batch_tokens: usize,
    ) -> Result<DevMetrics> {
        let mut run = Run::default();
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
            let mut scores = vec![0f64; pairs.len()];
            for group in plan_batches(&lengths, batch_tokens) {
                let rows: Vec<_> = group.iter().map(|&i| &pairs[i]).collect();
                let batch = Batch::new(&rows, model.config.pad_token_id, &Device::Cpu)?;
                let logits: Vec<Vec<f32>> = model.logits(&batch)?.to_vec2()?;
                for (&i, l) in group.iter().zip(logits) {
                    scores[i] = l[0] as f64;
                }
            }
            run.results
                .insert(q.id.clone(), ids.into_iter().cloned().zip(scores).collect());
        }
        Ok(summarise(&self.qrels, &run))
    }
}
