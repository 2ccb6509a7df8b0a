//! Reciprocal rank fusion (Cormack, Clarke & Büttcher, SIGIR 2009): of the recall legs, and of
//! the reranker with the first stage.

use std::collections::HashMap;

use sift_models::rerank::sort_by_score;
use sift_models::RerankScore;

/// The `k` of RRF. 60 is the value of the original paper and of most search engines: it damps
/// the advantage of the very first ranks so that agreement between lists matters more.
pub const RRF_K: f32 = 60.0;

/// Fuses ranked lists of ids: each id scores `Σ 1 / (k + rank)` over the lists it appears in
/// (ranks from 1). Returns ids by descending fused score; ties keep first-seen order.
pub fn reciprocal_rank_fusion<'a>(lists: &[&'a [String]], k: f32) -> Vec<(&'a str, f32)> {
    let mut scores: HashMap<&str, (f32, usize)> = HashMap::new();
    let mut order = 0;
    for list in lists {
        for (rank, id) in list.iter().enumerate() {
            let entry = scores.entry(id.as_str()).or_insert_with(|| {
                order += 1;
                (0.0, order)
            });
            entry.0 += 1.0 / (k + rank as f32 + 1.0);
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

    #[test]
    fn agreement_beats_a_single_first_place() {
        let dense = ids(&["a", "b", "c"]);
        let bm25 = ids(&["d", "b", "a"]);
        let fused = reciprocal_rank_fusion(&[&dense, &bm25], RRF_K);
        let order: Vec<&str> = fused.iter().map(|f| f.0).collect();
        // b: 1/62 + 1/62; a: 1/61 + 1/63; a is slightly ahead (1/61+1/63 > 2/62).
        assert_eq!(order[..2], ["a", "b"]);
        assert!((fused[0].1 - (1.0 / 61.0 + 1.0 / 63.0)).abs() < 1e-6);
        assert_eq!(fused.len(), 4);
        assert!(fused[2].0 == "d" && fused[3].0 == "c");
    }

    #[test]
    fn one_list_keeps_its_order() {
        let only = ids(&["x", "y"]);
        let fused = reciprocal_rank_fusion(&[&only, &[]], RRF_K);
        assert_eq!(
            fused.iter().map(|f| f.0).collect::<Vec<_>>(),
            vec!["x", "y"]
        );
    }
}
