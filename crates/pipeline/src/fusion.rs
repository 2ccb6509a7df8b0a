//! Reciprocal rank fusion (Cormack, Clarke & Büttcher, SIGIR 2009).

use std::collections::HashMap;

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

#[cfg(test)]
mod tests {
    use super::*;

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
