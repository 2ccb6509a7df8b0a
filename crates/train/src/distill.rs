//! Distillation: a teacher scores every training group, and the student learns the teacher's
//! distribution over the group besides the labels. The teacher is a stronger reranker
//! ([`Teacher`]) or, for a bi-encoder, the first stage itself ([`FirstStageScores`]).
//!
//! Why listwise KL rather than margin-MSE: the student already learns with a listwise loss over
//! the same groups, and KL between the two softmaxes compares rankings without asking the
//! student to match the teacher's logit scale (a sift-trained MPNet and a MiniLM student put
//! their logits on different scales; margin-MSE would spend capacity on the scale).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use candle_core::Tensor;
use sift_models::rerank::load_reranker;
use sift_models::{Reranker, RerankerOptions};

use crate::error::{Result, TrainError};

/// The teacher model with the logits it has given so far: groups recur across epochs (the
/// same positives, overlapping hard negatives), and scoring a pair once is enough.
pub struct Teacher {
    model: Arc<dyn Reranker>,
    memo: HashMap<(String, String), f32>,
}

impl Teacher {
    /// Loads the rerank model at `path`, cutting pairs at `max_length` tokens as the student's
    /// are.
    pub fn load(path: &Path, max_length: usize) -> Result<Self> {
        let options = RerankerOptions {
            max_length: Some(max_length),
            ..RerankerOptions::default()
        };
        let model = load_reranker(path, options)
            .map_err(|e| TrainError::Invalid(format!("teacher {}: {e}", path.display())))?;
        Ok(Teacher {
            model,
            memo: HashMap::new(),
        })
    }

    /// The teacher's logits for each (query, document), in order.
    pub fn logits(&mut self, pairs: &[(&str, &str)]) -> Result<Vec<f32>> {
        let missing: Vec<(&str, &str)> = pairs
            .iter()
            .filter(|(q, d)| !self.memo.contains_key(&(q.to_string(), d.to_string())))
            .copied()
            .collect();
        if !missing.is_empty() {
            let encoded = missing
                .iter()
                .map(|(q, d)| Ok(self.model.encode_pair(q, d)?.0))
                .collect::<Result<Vec<_>>>()?;
            let scores = self.model.score_pairs(&encoded, &mut |_| {})?;
            for ((q, d), s) in missing.iter().zip(scores) {
                self.memo.insert((q.to_string(), d.to_string()), s.logit);
            }
        }
        Ok(pairs
            .iter()
            .map(|(q, d)| self.memo[&(q.to_string(), d.to_string())])
            .collect())
    }
}

/// The first stage as a bi-encoder's teacher: what the search that mined the hard negatives
/// scored each (query, document), min–max normalized per query over the documents it returned
/// (best 1, last 0), a document it did not return 0 — the convex fusion's own rule for a
/// document missing from a leg.
///
/// Why a teacher at all when it is the first stage: on SciFact's families dev split hybrid
/// recall ranks 0.7749 nDCG@10 against the dense leg's 0.7239 (docs/quality.md), so the fused
/// order is the strongest scorer this machine has, and it was not trained on the training
/// queries (a cross-encoder teacher trained on them has seen their labels). Its order among a
/// group's hard negatives — which ones share the claim's rare terms — is what the labels do
/// not say. Normalized because the raw scores' scale depends on the mode and the
/// fusion (BM25 tens, RRF hundredths); the trainer puts them on the student's scale (× the
/// contrastive `scale`, like a cosine).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FirstStageScores {
    by_query: BTreeMap<String, HashMap<String, f32>>,
}

impl FirstStageScores {
    /// From each query's first-stage hits (document id, score), best first.
    pub fn from_hits(hits: &BTreeMap<String, Vec<(String, f32)>>) -> Self {
        let by_query = hits
            .iter()
            .map(|(query, hits)| {
                let (lo, hi) = hits
                    .iter()
                    .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), (_, s)| {
                        (lo.min(*s), hi.max(*s))
                    });
                let normalized = hits
                    .iter()
                    .map(|(id, s)| {
                        // One hit, or all alike: every returned document is the first stage's best.
                        let x = if hi > lo { (s - lo) / (hi - lo) } else { 1.0 };
                        (id.clone(), x)
                    })
                    .collect();
                (query.clone(), normalized)
            })
            .collect();
        FirstStageScores { by_query }
    }

    /// The normalized score of `document` for `query` (0 where not returned).
    pub fn score(&self, query: &str, document: &str) -> f32 {
        self.by_query
            .get(query)
            .and_then(|h| h.get(document))
            .copied()
            .unwrap_or(0.0)
    }

    /// Queries scored.
    pub fn len(&self) -> usize {
        self.by_query.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_query.is_empty()
    }
}

/// KL(teacher ‖ student) over each group's softmax at temperature `t`, times t² (so the
/// gradient's scale does not shrink as t grows, as Hinton et al. scale it), averaged over
/// groups. `student` and `teacher` are `[groups, group_size]`.
pub fn distillation_loss(
    student: &Tensor,
    teacher: &Tensor,
    t: f64,
) -> candle_core::Result<Tensor> {
    let groups = student.dim(0)? as f64;
    let target = candle_nn::ops::softmax_last_dim(&(teacher / t)?)?;
    let log_target = candle_nn::ops::log_softmax(&(teacher / t)?, 1)?;
    let log_student = candle_nn::ops::log_softmax(&(student / t)?, 1)?;
    let kl = (target * (log_target - log_student)?)?.sum_all()?;
    kl * (t * t / groups)
}

/// `label` mixed with the distillation term of `student` against `teacher` (both
/// `[groups, group_size]`): `(1 − weight) · label + weight · KL` — the one rule both trainers
/// apply.
pub fn mix_with_label(
    label: Tensor,
    student: &Tensor,
    teacher: &Tensor,
    d: &crate::recipe::Distillation,
) -> candle_core::Result<Tensor> {
    let kl = distillation_loss(student, teacher, d.temperature)?;
    (label * (1.0 - d.weight))? + (kl * d.weight)?
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    fn kl(student: &[[f32; 3]], teacher: &[[f32; 3]], t: f64) -> f32 {
        let tensor = |rows: &[[f32; 3]]| {
            Tensor::from_vec(rows.concat(), (rows.len(), 3), &Device::Cpu).unwrap()
        };
        let (s, tt) = (tensor(student), tensor(teacher));
        distillation_loss(&s, &tt, t)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    #[test]
    fn first_stage_scores_are_normalized_per_query_and_zero_where_not_returned() {
        let hits = BTreeMap::from([
            (
                "q1".to_string(),
                vec![("a".into(), 30.0), ("b".into(), 20.0), ("c".into(), 10.0)],
            ),
            ("q2".to_string(), vec![("a".into(), 0.016)]),
        ]);
        let scores = FirstStageScores::from_hits(&hits);
        let of = |q: &str, ds: &[&str]| ds.iter().map(|d| scores.score(q, d)).collect::<Vec<_>>();
        assert_eq!(of("q1", &["c", "a", "b", "z"]), [0.0, 1.0, 0.5, 0.0]);
        // A lone hit is the best; a query never searched scores nothing.
        assert_eq!(of("q2", &["a", "b"]), [1.0, 0.0]);
        assert_eq!(of("q3", &["a"]), [0.0]);
        assert_eq!(scores.len(), 2);
    }

    #[test]
    fn the_loss_is_zero_at_the_teacher_and_matches_the_formula() {
        // Shifted logits give the same distribution: nothing to learn.
        assert!(kl(&[[1.0, 2.0, 3.0]], &[[11.0, 12.0, 13.0]], 1.0).abs() < 1e-6);
        let softmax = |x: [f32; 3], t: f32| {
            let e: Vec<f32> = x.iter().map(|v| (v / t).exp()).collect();
            let z: f32 = e.iter().sum();
            e.into_iter().map(|v| v / z).collect::<Vec<f32>>()
        };
        let (s, te) = ([0.0f32, 1.0, -1.0], [2.0f32, 0.0, 0.5]);
        for t in [1.0f32, 2.0] {
            let (p, q) = (softmax(te, t), softmax(s, t));
            let want: f32 = p.iter().zip(&q).map(|(p, q)| p * (p / q).ln()).sum::<f32>() * t * t;
            // Two identical groups average to one group's value.
            let got = kl(&[s, s], &[te, te], t as f64);
            assert!((got - want).abs() < 1e-5, "t={t}: {got} vs {want}");
            assert!(got > 0.0);
        }
    }
}
