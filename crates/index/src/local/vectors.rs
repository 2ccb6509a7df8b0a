//! Nearest-neighbour search over chunk embeddings: exact below a size threshold, HNSW above it.
//!
//! The HNSW graph (instant-distance) is built over the vectors present at the last compaction;
//! vectors added since form a small tail that is scanned exactly, and removed ones are filtered
//! out, so results stay correct between rebuilds. Similarity is cosine: vectors are
//! L2-normalised on insert.

use instant_distance::{Builder, HnswMap, Point, Search};
use serde::{Deserialize, Serialize};

/// A unit-length vector; HNSW distance is `1 - cosine`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UnitVector(pub Vec<f32>);

impl Point for UnitVector {
    fn distance(&self, other: &Self) -> f32 {
        1.0 - dot(&self.0, &other.0)
    }
}

/// Dot product with independent accumulators so the compiler can vectorise it.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

pub fn normalized(v: &[f32]) -> Vec<f32> {
    let norm = dot(v, v).sqrt();
    if norm > 0.0 {
        v.iter().map(|x| x / norm).collect()
    } else {
        v.to_vec()
    }
}

/// One nearest neighbour: a chunk slot and its cosine similarity to the query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VectorHit {
    pub slot: u32,
    pub similarity: f32,
}

/// Tuning of the HNSW graph.
#[derive(Debug, Clone, Copy)]
pub struct AnnParams {
    /// Below this many live vectors search is exact (a 20k × 384 scan takes a few ms).
    pub exact_below: usize,
    pub ef_construction: usize,
    /// Candidates kept while searching; also the most results one graph search returns.
    pub ef_search: usize,
}

impl Default for AnnParams {
    fn default() -> Self {
        AnnParams {
            exact_below: 20_000,
            ef_construction: 100,
            ef_search: 256,
        }
    }
}

/// An HNSW graph over slots `0..covered`.
#[derive(Serialize, Deserialize)]
pub struct AnnGraph {
    map: HnswMap<UnitVector, u32>,
    covered: u32,
}

impl AnnGraph {
    pub fn build(vectors: &[Option<Vec<f32>>], params: AnnParams) -> AnnGraph {
        let (points, slots): (Vec<_>, Vec<_>) = vectors
            .iter()
            .enumerate()
            .filter_map(|(slot, v)| v.as_ref().map(|v| (UnitVector(v.clone()), slot as u32)))
            .unzip();
        let map = Builder::default()
            .ef_construction(params.ef_construction)
            .ef_search(params.ef_search)
            .seed(42)
            .build(points, slots);
        AnnGraph {
            map,
            covered: vectors.len() as u32,
        }
    }
}

/// Vectors by slot (`None` once removed) plus the optional graph.
pub struct VectorIndex {
    vectors: Vec<Option<Vec<f32>>>,
    live: usize,
    graph: Option<AnnGraph>,
    params: AnnParams,
}

impl VectorIndex {
    pub fn new(params: AnnParams) -> Self {
        VectorIndex {
            vectors: Vec::new(),
            live: 0,
            graph: None,
            params,
        }
    }

    pub fn len(&self) -> usize {
        self.live
    }

    /// Stores `v` (normalised) at the next slot and returns the slot.
    pub fn push(&mut self, v: &[f32]) -> u32 {
        self.vectors.push(Some(normalized(v)));
        self.live += 1;
        (self.vectors.len() - 1) as u32
    }

    pub fn remove(&mut self, slot: u32) {
        if let Some(v) = self.vectors.get_mut(slot as usize) {
            if v.take().is_some() {
                self.live -= 1;
            }
        }
    }

    pub fn get(&self, slot: u32) -> Option<&[f32]> {
        self.vectors.get(slot as usize)?.as_deref()
    }

    pub fn params(&self) -> AnnParams {
        self.params
    }

    pub fn has_graph(&self) -> bool {
        self.graph.is_some()
    }

    /// Uses a graph loaded from disk if it covers exactly these slots.
    pub fn attach_graph(&mut self, graph: AnnGraph) -> bool {
        if graph.covered as usize <= self.vectors.len()
            && graph.map.values.len() <= self.vectors.len()
        {
            self.graph = Some(graph);
            true
        } else {
            false
        }
    }

    pub fn graph(&self) -> Option<&AnnGraph> {
        self.graph.as_ref()
    }

    /// (Re)builds the graph when the collection is big enough to need one; drops it otherwise.
    pub fn rebuild_graph(&mut self) {
        self.graph = (self.live >= self.params.exact_below)
            .then(|| AnnGraph::build(&self.vectors, self.params));
    }

    /// The `k` most similar live vectors, best first.
    pub fn search(&self, query: &[f32], k: usize) -> Vec<VectorHit> {
        let q = normalized(query);
        match &self.graph {
            Some(graph) if self.live >= self.params.exact_below => {
                let mut search = Search::default();
                let mut hits: Vec<VectorHit> = graph
                    .map
                    .search(&UnitVector(q.clone()), &mut search)
                    .filter(|item| {
                        self.vectors
                            .get(*item.value as usize)
                            .is_some_and(|v| v.is_some())
                    })
                    .map(|item| VectorHit {
                        slot: *item.value,
                        similarity: 1.0 - item.distance,
                    })
                    .collect();
                hits.extend(self.scan(&q, graph.covered as usize, k));
                top_k(hits, k)
            }
            _ => top_k(self.scan(&q, 0, k), k),
        }
    }

    /// Exact search over every live vector (the reference for recall measurements).
    pub fn exact_search(&self, query: &[f32], k: usize) -> Vec<VectorHit> {
        top_k(self.scan(&normalized(query), 0, k), k)
    }

    fn scan(&self, q: &[f32], from: usize, _k: usize) -> Vec<VectorHit> {
        self.vectors[from.min(self.vectors.len())..]
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                v.as_ref().map(|v| VectorHit {
                    slot: (from + i) as u32,
                    similarity: dot(q, v),
                })
            })
            .collect()
    }
}

fn top_k(mut hits: Vec<VectorHit>, k: usize) -> Vec<VectorHit> {
    let cmp = |a: &VectorHit, b: &VectorHit| {
        b.similarity
            .total_cmp(&a.similarity)
            .then(a.slot.cmp(&b.slot))
    };
    if hits.len() > k && k > 0 {
        hits.select_nth_unstable_by(k - 1, cmp);
        hits.truncate(k);
    }
    hits.sort_by(cmp);
    hits.truncate(k);
    hits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_search_finds_the_nearest_and_skips_removed() {
        let mut idx = VectorIndex::new(AnnParams::default());
        let a = idx.push(&[1.0, 0.0]);
        let b = idx.push(&[0.7, 0.7]);
        let c = idx.push(&[0.0, 2.0]);
        let hits = idx.search(&[1.0, 0.1], 2);
        assert_eq!(hits.iter().map(|h| h.slot).collect::<Vec<_>>(), vec![a, b]);
        idx.remove(a);
        let hits = idx.search(&[1.0, 0.1], 5);
        assert_eq!(hits.iter().map(|h| h.slot).collect::<Vec<_>>(), vec![b, c]);
        assert_eq!(idx.len(), 2);
    }

    #[test]
    fn dot_matches_the_naive_sum() {
        let a: Vec<f32> = (0..37).map(|i| i as f32 * 0.1).collect();
        let b: Vec<f32> = (0..37).map(|i| 1.0 - i as f32 * 0.05).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-4);
    }
}
