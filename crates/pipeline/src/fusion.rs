//! Fusion of the recall legs (reciprocal rank fusion — Cormack, Clarke & Büttcher, SIGIR 2009 —
//! or a convex combination of normalized scores), and of the reranker with the first stage.

use std::collections::HashMap;

use sift_models::rerank::sort_by_score;
use sift_models::RerankScore;

/// The `k` of RRF. 60 is the value of the original paper and of most search engines: it damps
/// the advantage of the very first ranks so that agreement between lists matters more.
pub const RRF_K: f32 = 60.0;

/// How the two recall legs become one ranking. Every variant is what `sift eval --fusion-sweep`
/// measures; [`Fusion::default`] is the one the sweep chose (docs/quality.md, "Fusion").
/// Either way the blend of the reranker with the first stage stays rank-based
/// ([`blend_with_first_stage`]).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "method", rename_all = "lowercase")]
pub enum Fusion {
    /// Weighted reciprocal rank fusion: `Σ w_leg / (k + rank)`, with the dense leg weighted
    /// `2·dense_weight` and BM25 `2·(1 − dense_weight)` (so 0.5 is plain RRF and a score keeps
    /// plain RRF's scale).
    Rrf { k: f32, dense_weight: f32 },
    /// Convex combination of per-query min–max normalized scores,
    /// `dense_weight · dense + (1 − dense_weight) · bm25`, a document missing from a leg scoring
    /// that leg's 0 (Bruch et al., "An Analysis of Fusion Functions for Hybrid Retrieval", 2023).
    Convex { dense_weight: f32 },
}

impl Fusion {
    /// Reciprocal rank fusion as published: k = 60, both legs weighted alike.
    pub const PLAIN_RRF: Fusion = Fusion::Rrf {
        k: RRF_K,
        dense_weight: 0.5,
    };
}

impl Default for Fusion {
    /// An even convex combination of min–max normalized scores. Measured with
    /// `sift eval --fusion-sweep` (docs/quality.md, "Fusion"): on the SciFact families dev split
    /// (167 queries) it led every RRF setting, +0.036 nDCG@10 over plain RRF, and on the 642
    /// train-side queries the choice never saw it kept +0.012. Why it can beat RRF: ranks
    /// throw away how far ahead a leg's first document is, and on a query where BM25 finds one
    /// exact match far above the rest that margin is the signal.
    fn default() -> Self {
        Fusion::Convex { dense_weight: 0.5 }
    }
}

impl Fusion {
    /// Refuses a non-positive or non-finite `k` and a dense weight outside 0–1.
    pub fn validate(&self) -> crate::Result<()> {
        let (k, w) = match *self {
            Fusion::Rrf { k, dense_weight } => (k, dense_weight),
            Fusion::Convex { dense_weight } => (1.0, dense_weight),
        };
        if !(k.is_finite() && k > 0.0) {
            return Err(crate::PipelineError::InvalidInput(format!(
                "fusion: the RRF k is {k}; it must be a positive number"
            )));
        }
        if !(0.0..=1.0).contains(&w) {
            return Err(crate::PipelineError::InvalidInput(format!(
                "fusion: the dense leg's weight is {w}; it must be between 0 and 1"
            )));
        }
        Ok(())
    }
}

impl std::str::FromStr for Fusion {
    type Err = crate::PipelineError;

    /// `rrf` (plain: k = 60, even weights), `rrf:k=20,dense=0.6`, `convex:dense=0.7`; what
    /// [`Fusion`]'s `Display` writes reads back.
    fn from_str(s: &str) -> crate::Result<Self> {
        let bad = |why: String| {
            crate::PipelineError::InvalidInput(format!(
                "fusion {s:?}: {why} (expected rrf, rrf:k=60,dense=0.5 or convex:dense=0.5)"
            ))
        };
        let s = s.trim();
        let (method, params) = s.split_once([':', ' ']).unwrap_or((s, ""));
        let mut k = RRF_K;
        let mut dense = None;
        for pair in params.split([',', ' ']).filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| bad(format!("{pair:?} is not key=value")))?;
            let value: f32 = value
                .parse()
                .map_err(|_| bad(format!("{value:?} is not a number")))?;
            match key {
                "k" if method == "rrf" => k = value,
                "dense" => dense = Some(value),
                other => return Err(bad(format!("unknown setting {other:?}"))),
            }
        }
        let fusion = match method {
            "rrf" => Fusion::Rrf {
                k,
                dense_weight: dense.unwrap_or(0.5),
            },
            "convex" => Fusion::Convex {
                dense_weight: dense.ok_or_else(|| bad("convex needs dense=".into()))?,
            },
            other => return Err(bad(format!("unknown method {other:?}"))),
        };
        fusion.validate()?;
        Ok(fusion)
    }
}

impl std::fmt::Display for Fusion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fusion::Rrf { k, dense_weight } => write!(f, "rrf:k={k},dense={dense_weight}"),
            Fusion::Convex { dense_weight } => write!(f, "convex:dense={dense_weight}"),
        }
    }
}

/// One recall leg: document ids best first, with the leg's own scores (cosine, BM25).
#[derive(Debug, Clone, Copy)]
pub struct Leg<'a> {
    pub ids: &'a [String],
    pub scores: &'a [f32],
}

/// Fuses the dense and BM25 legs under `fusion`. Returns ids by descending fused score; ties
/// keep first-seen order (dense first).
pub fn fuse<'a>(dense: Leg<'a>, bm25: Leg<'a>, fusion: Fusion) -> Vec<(&'a str, f32)> {
    let mut scores: HashMap<&str, (f32, usize)> = HashMap::new();
    let mut add = |leg: Leg<'a>, value: &dyn Fn(usize, f32) -> f32| {
        for (rank, id) in leg.ids.iter().enumerate() {
            let next = scores.len();
            let entry = scores.entry(id.as_str()).or_insert((0.0, next));
            entry.0 += value(rank, leg.scores.get(rank).copied().unwrap_or(0.0));
        }
    };
    match fusion {
        Fusion::Rrf { k, dense_weight } => {
            let w = dense_weight.clamp(0.0, 1.0);
            for (leg, weight) in [(dense, 2.0 * w), (bm25, 2.0 * (1.0 - w))] {
                add(leg, &|rank, _| weight / (k + rank as f32 + 1.0));
            }
        }
        Fusion::Convex { dense_weight } => {
            let w = dense_weight.clamp(0.0, 1.0);
            for (leg, weight) in [(dense, w), (bm25, 1.0 - w)] {
                let finite = leg.scores.iter().copied().filter(|s| s.is_finite());
                let (lo, hi) = finite.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), s| {
                    (lo.min(s), hi.max(s))
                });
                let span = hi - lo;
                add(leg, &|_, s| {
                    let unit = if !s.is_finite() {
                        0.0
                    } else if span > 0.0 {
                        (s - lo) / span
                    } else {
                        1.0
                    };
                    weight * unit
                });
            }
        }
    }
    let mut fused: Vec<(&str, f32, usize)> =
        scores.into_iter().map(|(id, (s, o))| (id, s, o)).collect();
    fused.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.2.cmp(&b.2)));
    fused.into_iter().map(|(id, s, _)| (id, s)).collect()
}

/// The reranked order when the first stage keeps a say: weighted RRF of the reranker's ranking
/// and the first stage's, `(1 − w) / (k + rerank rank) + w / (k + first-stage rank)` with
/// `w = first_stage_weight` and k = [`RRF_K`].
///
/// `scores` are the reranker's, one per candidate, in first-stage order (`index` = position, so
/// the first-stage rank is `index + 1`). Returns `(index, blended score)` best first; ties keep
/// first-stage order. `w = 0` is the reranker's own order ([`sort_by_score`]).
///
/// Why ranks and not scores: the reranker's logits and the first stage's scores (RRF, cosine or
/// BM25, by mode) live on unrelated scales that shift per query, and ranks need no per-query
/// normalization to be comparable. Why at all: a reranker fine-tuned on a few hundred queries can
/// be confidently wrong on queries unlike its training ones, and the first stage's ranking is a
/// prior that training cannot destroy (issue #15; the weight is chosen on the dev split).
pub fn blend_with_first_stage(
    scores: &[RerankScore],
    first_stage_weight: f32,
) -> Vec<(usize, f32)> {
    let w = first_stage_weight.clamp(0.0, 1.0);
    let mut by_rerank = scores.to_vec();
    sort_by_score(&mut by_rerank);
    let mut blended: Vec<(usize, f32)> = by_rerank
        .iter()
        .enumerate()
        .map(|(rerank_rank, s)| {
            let r = rerank_rank as f32 + 1.0;
            let f = s.index as f32 + 1.0;
            (s.index, (1.0 - w) / (RRF_K + r) + w / (RRF_K + f))
        })
        .collect();
    if w > 0.0 {
        blended.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    }
    blended
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(logits: &[f32]) -> Vec<RerankScore> {
        logits
            .iter()
            .enumerate()
            .map(|(index, &logit)| RerankScore {
                index,
                logit,
                score: logit,
                dropped: false,
            })
            .collect()
    }

    fn order(blended: &[(usize, f32)]) -> Vec<usize> {
        blended.iter().map(|b| b.0).collect()
    }

    #[test]
    fn weight_zero_is_the_rerankers_order_and_one_the_first_stages() {
        let s = scores(&[0.1, 0.9, f32::NAN, 0.5]);
        assert_eq!(order(&blend_with_first_stage(&s, 0.0)), vec![1, 3, 0, 2]);
        assert_eq!(order(&blend_with_first_stage(&s, 1.0)), vec![0, 1, 2, 3]);
    }

    #[test]
    fn an_even_blend_lets_agreement_win() {
        // The reranker puts candidate 3 first and candidate 0 second; the first stage had 0
        // first and 3 last. Candidate 0 is near the top of both lists, so it leads the blend.
        let s = scores(&[0.8, 0.1, 0.2, 0.9]);
        let blended = blend_with_first_stage(&s, 0.5);
        assert_eq!(order(&blended)[0], 0);
        let expected = 0.5 / (RRF_K + 2.0) + 0.5 / (RRF_K + 1.0);
        assert!((blended[0].1 - expected).abs() < 1e-7);
    }

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn rrf(dense: &[String], bm25: &[String]) -> Vec<(String, f32)> {
        let none = vec![0.0; dense.len().max(bm25.len())];
        fuse(
            Leg {
                ids: dense,
                scores: &none,
            },
            Leg {
                ids: bm25,
                scores: &none,
            },
            Fusion::PLAIN_RRF,
        )
        .into_iter()
        .map(|(id, s)| (id.to_owned(), s))
        .collect()
    }

    #[test]
    fn agreement_beats_a_single_first_place() {
        let fused = rrf(&ids(&["a", "b", "c"]), &ids(&["d", "b", "a"]));
        let order: Vec<&str> = fused.iter().map(|f| f.0.as_str()).collect();
        // b: 1/62 + 1/62; a: 1/61 + 1/63; a is slightly ahead (1/61+1/63 > 2/62).
        assert_eq!(order, ["a", "b", "d", "c"]);
        assert!((fused[0].1 - (1.0 / 61.0 + 1.0 / 63.0)).abs() < 1e-6);
    }

    #[test]
    fn one_list_keeps_its_order() {
        let fused = rrf(&ids(&["x", "y"]), &[]);
        assert_eq!(
            fused.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(),
            vec!["x", "y"]
        );
    }

    #[test]
    fn a_leg_weight_of_one_is_that_leg_alone() {
        let (dense, bm25) = (ids(&["a", "b"]), ids(&["c", "b"]));
        let none = [0.0; 2];
        let leg = |ids| Leg { ids, scores: &none };
        let order = |w: f32| -> Vec<String> {
            fuse(
                leg(&dense),
                leg(&bm25),
                Fusion::Rrf {
                    k: 60.0,
                    dense_weight: w,
                },
            )
            .into_iter()
            .filter(|f| f.1 > 0.0)
            .map(|f| f.0.to_owned())
            .collect()
        };
        assert_eq!(order(1.0), ["a", "b"]);
        assert_eq!(order(0.0), ["c", "b"]);
    }

    #[test]
    fn the_convex_combination_normalizes_each_leg_per_query() {
        // BM25 scores are ~30× the cosines; after min–max both legs span 0–1, so at an even
        // weight a document first in one leg and absent from the other (0.5) ties with its
        // mirror, and a document at 3/4 of both legs' spans (0.75) beats both.
        let (dense, bm25) = (ids(&["a", "b", "z"]), ids(&["c", "b", "y"]));
        let fused = fuse(
            Leg {
                ids: &dense,
                scores: &[0.9, 0.8, 0.5],
            },
            Leg {
                ids: &bm25,
                scores: &[30.0, 25.0, 10.0],
            },
            Fusion::Convex { dense_weight: 0.5 },
        );
        assert_eq!(fused[0].0, "b");
        assert!((fused[0].1 - 0.75).abs() < 1e-6);
        assert_eq!((fused[1].0, fused[2].0), ("a", "c"));
        assert!((fused[1].1 - fused[2].1).abs() < 1e-6);
    }

    #[test]
    fn fusion_settings_parse_and_print_back() {
        assert_eq!("rrf".parse::<Fusion>().unwrap(), Fusion::PLAIN_RRF);
        for f in [
            Fusion::Rrf {
                k: 20.0,
                dense_weight: 0.6,
            },
            Fusion::Convex { dense_weight: 0.7 },
        ] {
            assert_eq!(f.to_string().parse::<Fusion>().unwrap(), f);
        }
        for bad in [
            "",
            "rrf:k=0",
            "convex",
            "convex:k=3,dense=0.5",
            "rrf:dense",
            "bm25",
        ] {
            assert!(bad.parse::<Fusion>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn fusion_settings_are_validated() {
        assert!(Fusion::default().validate().is_ok() && Fusion::PLAIN_RRF.validate().is_ok());
        for bad in [
            Fusion::Rrf {
                k: 0.0,
                dense_weight: 0.5,
            },
            Fusion::Rrf {
                k: f32::NAN,
                dense_weight: 0.5,
            },
            Fusion::Rrf {
                k: 60.0,
                dense_weight: 1.5,
            },
            Fusion::Convex { dense_weight: -0.1 },
        ] {
            assert!(bad.validate().is_err(), "{bad}");
        }
    }
}
