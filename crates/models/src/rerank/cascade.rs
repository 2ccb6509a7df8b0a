//! Rerank cascades for layerwise cross-encoders: every candidate of a query is scored by an
//! early exit's head, and only the best few run the remaining layers — from the token states
//! the first stage saved, so no layer runs twice for any candidate.
//!
//! Why: a cross-encoder's cost is linear in candidates × layers. Scoring 100 candidates with 2
//! of 6 layers and finishing the best 20 runs 100·2 + 20·4 = 280 layer passes instead of 600.
//!
//! Exit 0 is the ranking the candidates arrive in (the first stage's, in a search): `0:20`
//! scores the first 20 through every layer and leaves the rest in their order after them. Any
//! reranker can cascade from it, and it is what a tight budget falls back on before letting a
//! shallow head reorder every candidate: the first stage's order is a complete ranking that a
//! head trained on a few hundred queries may rank worse than (docs/quality.md).

use std::str::FromStr;

use super::{sort_by_score, PreparedPairs, RerankScore, Reranker};
use crate::batch::RowStates;
use crate::error::{ModelError, Result};

/// Score every candidate after layer `exit`, then finish the best `keep` documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cascade {
    /// The early exit, counted from 1; it must be one of the model's exit layers before the
    /// last, or 0: the order the candidates came in.
    pub exit: usize,
    /// Documents finished by the last layer; the rest keep their early score and rank below
    /// them.
    pub keep: usize,
}

impl FromStr for Cascade {
    type Err = ModelError;

    /// `EXIT:KEEP`, e.g. `2:20`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            ModelError::InvalidInput(format!(
                "bad cascade {s:?}: write EXIT:KEEP, e.g. 2:20 (score every candidate after layer 2, finish the best 20)"
            ))
        };
        let (exit, keep) = s.split_once(':').ok_or_else(bad)?;
        let exit: usize = exit.trim().parse().map_err(|_| bad())?;
        let keep: usize = keep.trim().parse().map_err(|_| bad())?;
        if keep == 0 {
            return Err(bad());
        }
        Ok(Cascade { exit, keep })
    }
}

impl std::fmt::Display for Cascade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.exit, self.keep)
    }
}

impl Cascade {
    /// Checks the cascade against a model's exit layers (the last included). Exit 0 suits
    /// every model.
    pub fn validate(&self, model: &str, exits: &[usize]) -> Result<()> {
        let last = exits.last().copied().unwrap_or(0);
        if self.exit == 0 {
            return Ok(());
        }
        if exits.len() < 2 {
            return Err(ModelError::InvalidInput(format!(
                "{model} has no early exit to cascade from: cascade from the candidates' order (0:KEEP), or train a layerwise reranker (sift train-reranker --layerwise)"
            )));
        }
        if self.exit >= last || !exits.contains(&self.exit) {
            return Err(ModelError::InvalidInput(format!(
                "cascade exit {} is not an early exit of {model}; its exits before the last layer ({last}) are {:?}",
                self.exit,
                &exits[..exits.len() - 1]
            )));
        }
        Ok(())
    }
}

/// One query's document scores through `cascade`: the first stage scores every pair at the
/// early exit, the documents ranked best by it (`keep` of them) are finished — all their
/// windows — and the rest come back `dropped` with their early scores.
pub(crate) fn cascade_document_scores(
    reranker: &dyn Reranker,
    prepared: &PreparedPairs,
    cascade: Cascade,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<RerankScore>> {
    if cascade.exit == 0 {
        return leading_document_scores(reranker, prepared, cascade.keep, progress);
    }
    let pairs = prepared.pairs();
    let (early, states) = reranker.score_pairs_partway(pairs, cascade.exit, progress)?;
    if early.len() != pairs.len() || states.len() != pairs.len() {
        return Err(ModelError::Internal(format!(
            "the cascade's first stage returned {} scores and {} states for {} pairs",
            early.len(),
            states.len(),
            pairs.len()
        )));
    }
    let mut ranked = prepared.document_scores(&early)?;
    sort_by_score(&mut ranked);
    let mut kept = vec![false; ranked.len()];
    for s in ranked.iter().take(cascade.keep) {
        kept[s.index] = true;
    }
    let finishing: Vec<usize> = (0..pairs.len())
        .filter(|&p| kept[prepared.owner(p)])
        .collect();
    let rows: Vec<&RowStates> = finishing.iter().map(|&p| &states[p]).collect();
    let finished = reranker.finish_pairs(&rows, cascade.exit, progress)?;
    prepared.document_scores(&finished_over_dropped(early, &finishing, &finished))
}

/// One score per pair: `finished[i]` for pair `finishing[i]`, and for every other pair its
/// score in `dropped`, marked dropped.
fn finished_over_dropped(
    dropped: Vec<RerankScore>,
    finishing: &[usize],
    finished: &[RerankScore],
) -> Vec<RerankScore> {
    let mut windows: Vec<RerankScore> = dropped
        .into_iter()
        .enumerate()
        .map(|(index, s)| RerankScore {
            index,
            dropped: true,
            ..s
        })
        .collect();
    for (&p, s) in finishing.iter().zip(finished) {
        windows[p] = RerankScore {
            index: p,
            dropped: false,
            ..*s
        };
    }
    windows
}

/// The cascade from exit 0: the first `keep` documents (all their windows) through the whole
/// model; the others come back `dropped`, each with the lowest score a scored window got — so
/// a client that sorts by score alone still sees them after every scored document, in the
/// order they came in ([`sort_by_score`] breaks the tie by position).
fn leading_document_scores(
    reranker: &dyn Reranker,
    prepared: &PreparedPairs,
    keep: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<RerankScore>> {
    let pairs = prepared.pairs();
    let scoring: Vec<usize> = (0..pairs.len())
        .filter(|&p| prepared.owner(p) < keep)
        .collect();
    let subset: Vec<_> = scoring.iter().map(|&p| pairs[p].clone()).collect();
    let scored = reranker.score_pairs(&subset, progress)?;
    if scored.len() != subset.len() {
        return Err(ModelError::Internal(format!(
            "{} scores for {} pairs",
            scored.len(),
            subset.len()
        )));
    }
    let lowest = scored
        .iter()
        .filter(|s| !s.logit.is_nan())
        .min_by(|a, b| a.logit.total_cmp(&b.logit))
        .copied();
    let floor = RerankScore {
        index: 0,
        logit: lowest.map_or(f32::NAN, |s| s.logit),
        score: lowest.map_or(f32::NAN, |s| s.score),
        dropped: true,
    };
    let dropped = vec![floor; pairs.len()];
    prepared.document_scores(&finished_over_dropped(dropped, &scoring, &scored))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cascades_parse_and_validate() {
        let c: Cascade = "2:20".parse().unwrap();
        assert_eq!(c, Cascade { exit: 2, keep: 20 });
        assert_eq!(c.to_string(), "2:20");
        assert_eq!(
            "0:5".parse::<Cascade>().unwrap(),
            Cascade { exit: 0, keep: 5 }
        );
        assert!(Cascade { exit: 0, keep: 5 }.validate("m", &[6]).is_ok());
        for bad in ["2", "0:0", "2:0", "a:3", "2:3:4", ""] {
            assert!(bad.parse::<Cascade>().is_err(), "{bad}");
        }
        let exits = [2, 4, 6];
        assert!(c.validate("m", &exits).is_ok());
        let err = |c: Cascade, exits: &[usize]| c.validate("m", exits).unwrap_err().to_string();
        assert!(err(Cascade { exit: 3, keep: 5 }, &exits).contains("[2, 4]"));
        assert!(err(Cascade { exit: 6, keep: 5 }, &exits).contains("not an early exit"));
        assert!(err(c, &[6]).contains("--layerwise"));
    }
}
