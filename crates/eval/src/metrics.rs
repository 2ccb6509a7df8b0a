//! nDCG, reciprocal rank, recall, average precision and success (hit rate), each at a cutoff k,
//! with trec_eval's conventions:
//! - documents are ranked by score descending, ties by document id descending;
//! - a document is relevant when its grade is ≥ 1; unjudged documents are non-relevant;
//! - nDCG uses the grade as gain (linear) and `log2(rank + 1)` discounts; the ideal ranking
//!   orders the judged grades;
//! - a judged query absent from the run scores 0 on every metric (trec_eval `-c`); a run query
//!   without judgements is not evaluated.

use std::collections::BTreeMap;

pub use crate::trec::ranked;
use crate::trec::{Qrels, Run};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    /// Normalised discounted cumulative gain at k.
    Ndcg(usize),
    /// Reciprocal rank of the first relevant document within k (MRR when averaged).
    ReciprocalRank(usize),
    /// Share of the relevant documents found within k.
    Recall(usize),
    /// Average precision within k (MAP when averaged).
    AveragePrecision(usize),
    /// 1 when a relevant document is within k (hit rate when averaged).
    Success(usize),
}

impl Metric {
    /// The name ir-measures gives the same measure (`nDCG@10`, `RR@10`, `R@100`, `AP@100`,
    /// `Success@5`).
    pub fn name(self) -> String {
        match self {
            Metric::Ndcg(k) => format!("nDCG@{k}"),
            Metric::ReciprocalRank(k) => format!("RR@{k}"),
            Metric::Recall(k) => format!("R@{k}"),
            Metric::AveragePrecision(k) => format!("AP@{k}"),
            Metric::Success(k) => format!("Success@{k}"),
        }
    }

    fn compute(self, ranked_grades: &[i32], judged: &BTreeMap<String, i32>) -> f64 {
        let relevant = judged.values().filter(|&&g| g >= 1).count();
        if relevant == 0 {
            return 0.0;
        }
        match self {
            Metric::Ndcg(k) => {
                let gained = dcg(ranked_grades.iter().copied().take(k));
                let mut ideal: Vec<i32> = judged.values().copied().collect();
                ideal.sort_by(|a, b| b.cmp(a));
                let idcg = dcg(ideal.into_iter().take(k));
                if idcg > 0.0 {
                    gained / idcg
                } else {
                    0.0
                }
            }
            Metric::ReciprocalRank(k) => ranked_grades
                .iter()
                .take(k)
                .position(|&g| g >= 1)
                .map_or(0.0, |i| 1.0 / (i + 1) as f64),
            Metric::Recall(k) => {
                ranked_grades.iter().take(k).filter(|&&g| g >= 1).count() as f64 / relevant as f64
            }
            Metric::AveragePrecision(k) => {
                let mut found = 0;
                let mut sum = 0.0;
                for (i, &g) in ranked_grades.iter().take(k).enumerate() {
                    if g >= 1 {
                        found += 1;
                        sum += found as f64 / (i + 1) as f64;
                    }
                }
                sum / relevant as f64
            }
            Metric::Success(k) => {
                f64::from(u8::from(ranked_grades.iter().take(k).any(|&g| g >= 1)))
            }
        }
    }
}

fn dcg(grades: impl Iterator<Item = i32>) -> f64 {
    grades
        .enumerate()
        .filter(|(_, g)| *g > 0)
        .map(|(i, g)| g as f64 / ((i + 2) as f64).log2())
        .sum()
}

/// Per-query values and their means.
#[derive(Debug, Clone, Default)]
pub struct Evaluation {
    /// query id → metric name → value.
    pub per_query: BTreeMap<String, BTreeMap<String, f64>>,
    /// metric name → mean over the judged queries.
    pub mean: BTreeMap<String, f64>,
    /// Judged queries with no relevant document (they score 0).
    pub queries_without_relevant: usize,
    /// Judged queries absent from the run (they score 0).
    pub queries_missing_from_run: usize,
    /// Run queries that have no judgements (not evaluated).
    pub unjudged_run_queries: usize,
}

pub fn evaluate(qrels: &Qrels, run: &Run, metrics: &[Metric]) -> Evaluation {
    let mut out = Evaluation::default();
    let empty = Vec::new();
    for (q, judged) in &qrels.judgements {
        let docs = match run.results.get(q) {
            Some(d) => d,
            None => {
                out.queries_missing_from_run += 1;
                &empty
            }
        };
        if !judged.values().any(|&g| g >= 1) {
            out.queries_without_relevant += 1;
        }
        let grades: Vec<i32> = ranked(docs)
            .iter()
            .map(|(d, _)| judged.get(d).copied().unwrap_or(0))
            .collect();
        let values = metrics
            .iter()
            .map(|m| (m.name(), m.compute(&grades, judged)))
            .collect();
        out.per_query.insert(q.clone(), values);
    }
    out.unjudged_run_queries = run
        .results
        .keys()
        .filter(|q| !qrels.judgements.contains_key(*q))
        .count();
    let n = out.per_query.len().max(1) as f64;
    for m in metrics {
        let name = m.name();
        let sum: f64 = out.per_query.values().map(|v| v[&name]).sum();
        out.mean.insert(name, sum / n);
    }
    out
}
