//! Nearest-neighbour search over chunk embeddings: exact below a size threshold, HNSW above it.
//!
//! Vectors live at **stable slots**: a chunk keeps its slot from insert to delete, and a slot is
//! never given to another vector (only a compaction that renumbers starts a new slot epoch,
//! [`super::snapshot`]). That is what lets the HNSW graph (usearch, keyed by slot) be updated in
//! place — an insert adds one node, a delete removes one — instead of being rebuilt whenever the
//! collection changes (instant-distance, used before, could only rebuild: ~7.5 s per 10k vectors
//! on 2 cores, over ten minutes per compaction at a million chunks).
//!
//! A deleted chunk stays in the graph as a tombstone — still a waypoint for searches, never a
//! result (hits are looked up in the live vectors) — until a renumbering compaction rebuilds the
//! graph. usearch's own `remove` is not used: measured here (usearch 2.26.6), removing 10 of 40
//! entries and adding 15 left 10 live entries unreachable by any search, so a graph maintained
//! with it silently loses recall. hnswlib's `mark_deleted` works the same way as the tombstones.
//!
//! The graph may store vectors as int8 ([`Quantization::I8`]: a quarter of f32's memory) or as
//! f32; either way the candidates it returns are rescored with the exact f32 vectors, so
//! similarities are exact cosines and ranks among the candidates are exact.
//!
//! Similarity is cosine: vectors are L2-normalised on insert.

use memmap2::Mmap;
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use super::vector_file::VectorFile;
use crate::error::{IndexError, Result};

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

/// How the graph stores its copy of the vectors. The f32 vectors are kept beside it for exact
/// rescoring either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantization {
    F32,
    /// One byte per dimension, each vector scaled to its largest component ([`quantize`]).
    I8,
}

impl Quantization {
    fn scalar_kind(self) -> ScalarKind {
        match self {
            Quantization::F32 => ScalarKind::F32,
            Quantization::I8 => ScalarKind::I8,
        }
    }
}

/// Tuning of the HNSW graph.
#[derive(Debug, Clone, Copy)]
pub struct AnnParams {
    /// Below this many live vectors search is exact (a 20k × 384 scan takes a few ms) and no
    /// graph is kept; a graph is built once the collection reaches it and dropped below half.
    pub exact_below: usize,
    /// Links per node (HNSW's M).
    pub connectivity: usize,
    pub ef_construction: usize,
    /// Candidates kept while searching.
    pub ef_search: usize,
    pub quantization: Quantization,
    /// Graph candidates fetched per wanted result before exact rescoring (at least `k` + 16), so
    /// that quantization noise near the cut does not drop a true neighbour.
    pub rescore_factor: usize,
}

impl Default for AnnParams {
    fn default() -> Self {
        AnnParams {
            exact_below: 20_000,
            connectivity: 16,
            ef_construction: 128,
            ef_search: 256,
            quantization: Quantization::I8,
            rescore_factor: 2,
        }
    }
}

fn usearch_error(context: &str, e: impl std::fmt::Display) -> IndexError {
    IndexError::Internal(format!("ANN graph: {context}: {e}"))
}

/// An HNSW graph over live slots (usearch): inner product on unit f32 vectors, or cosine on
/// int8 ones ([`quantize`]).
pub struct AnnGraph {
    index: Index,
    quantization: Quantization,
    /// The mapped file a graph viewed in place reads (`None`: the graph owns its memory).
    /// Declared after `index`, so it is unmapped only after the index is gone.
    backing: Option<Mmap>,
}

/// `v` as int8 with its largest component at ±127, rounded to nearest.
///
/// Why not usearch's own cast: it scales by the L2 norm, so a unit vector of 384 dimensions
/// (components around ±0.05) uses about a dozen of the 255 levels, and it truncates instead of
/// rounding; ANN recall@10 at 100k clustered chunks was 0.97 with it. Scaling each vector by its
/// own maximum changes its length, which cosine (the int8 graph's metric) ignores.
fn quantize(v: &[f32]) -> Vec<i8> {
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    if max == 0.0 || !max.is_finite() {
        return vec![0; v.len()];
    }
    let scale = 127.0 / max;
    v.iter().map(|x| (x * scale).round() as i8).collect()
}

impl AnnGraph {
    fn options(dim: usize, params: AnnParams) -> IndexOptions {
        IndexOptions {
            dimensions: dim,
            metric: match params.quantization {
                Quantization::F32 => MetricKind::IP,
                Quantization::I8 => MetricKind::Cos,
            },
            quantization: params.quantization.scalar_kind(),
            connectivity: params.connectivity,
            expansion_add: params.ef_construction,
            expansion_search: params.ef_search,
            multi: false,
        }
    }

    fn empty(dim: usize, params: AnnParams, capacity: usize) -> Result<AnnGraph> {
        let index =
            Index::new(&Self::options(dim, params)).map_err(|e| usearch_error("create", e))?;
        let graph = AnnGraph {
            index,
            quantization: params.quantization,
            backing: None,
        };
        graph.reserve(capacity)?;
        Ok(graph)
    }

    /// Restores a graph saved by [`AnnGraph::to_bytes`], if it was made with `dim` and `params`'
    /// storage (another quantization or connectivity means it must be rebuilt).
    pub fn from_bytes(bytes: &[u8], dim: usize, params: AnnParams) -> Result<AnnGraph> {
        let index = Self::index_for(bytes, dim, params)?;
        index
            .load_from_buffer(bytes)
            .map_err(|e| usearch_error("load", e))?;
        Self::opened(index, params, None)
    }

    /// A graph read in place from `map[offset..]` (saved by [`AnnGraph::to_bytes`]) instead of
    /// copied: opening costs no allocation, and its pages are the file's, which the kernel may
    /// drop and read again. It cannot change: for handles that never write.
    #[allow(unsafe_code)]
    pub fn view(map: Mmap, offset: usize, dim: usize, params: AnnParams) -> Result<AnnGraph> {
        let bytes = map
            .get(offset..)
            .ok_or_else(|| usearch_error("view", "the file ends before the graph"))?;
        let index = Self::index_for(bytes, dim, params)?;
        // SAFETY: `bytes` lie in `map`, which the graph keeps until after the index is dropped
        // (field order), and whose file sift never changes (`files::map_read_only`).
        unsafe { index.view_from_buffer(bytes) }.map_err(|e| usearch_error("view", e))?;
        Self::opened(index, params, Some(map))
    }

    pub fn is_view(&self) -> bool {
        self.backing.is_some()
    }

    /// An empty index for the saved graph `bytes`, once its header shows `dim` and `params`'
    /// storage.
    fn index_for(bytes: &[u8], dim: usize, params: AnnParams) -> Result<Index> {
        let meta = Index::metadata_from_buffer(bytes).map_err(|e| usearch_error("header", e))?;
        if meta.dimensions != dim as u64 || meta.quantization != params.quantization.scalar_kind() {
            return Err(usearch_error(
                "load",
                format!(
                    "saved with {} dimensions and {:?}; wanted {dim} and {:?}",
                    meta.dimensions, meta.quantization, params.quantization
                ),
            ));
        }
        Index::new(&Self::options(dim, params)).map_err(|e| usearch_error("create", e))
    }

    fn opened(index: Index, params: AnnParams, backing: Option<Mmap>) -> Result<AnnGraph> {
        if index.connectivity() != params.connectivity {
            return Err(usearch_error("load", "built with another connectivity"));
        }
        index.change_expansion_add(params.ef_construction);
        index.change_expansion_search(params.ef_search);
        Ok(AnnGraph {
            index,
            quantization: params.quantization,
            backing,
        })
    }

    /// The graph in usearch's own format (bytes).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut bytes = vec![0u8; self.index.serialized_length()];
        self.index
            .save_to_buffer(&mut bytes)
            .map_err(|e| usearch_error("save", e))?;
        Ok(bytes)
    }

    pub fn len(&self) -> usize {
        self.index.size()
    }

    /// Room for `entries` in all (growing by doubling at least, so reallocation stays
    /// amortized O(1) per insert).
    fn reserve(&self, entries: usize) -> Result<()> {
        let capacity = self.index.capacity();
        if entries <= capacity {
            return Ok(());
        }
        self.index
            .reserve(entries.max(capacity * 2).max(1024))
            .map_err(|e| usearch_error("reserve", e))
    }

    fn add(&self, slot: u32, v: &[f32]) -> Result<()> {
        if self.index.size() + 1 > self.index.capacity() {
            self.reserve(self.index.size() + 1)?;
        }
        let added = match self.quantization {
            Quantization::F32 => self.index.add(u64::from(slot), v),
            Quantization::I8 => self.index.add(u64::from(slot), &quantize(v)),
        };
        added.map_err(|e| usearch_error("add", e))
    }

    fn contains(&self, slot: u32) -> bool {
        self.index.contains(u64::from(slot))
    }

    fn search(&self, q: &[f32], count: usize) -> Result<Vec<u32>> {
        let matches = match self.quantization {
            Quantization::F32 => self.index.search(q, count),
            Quantization::I8 => self.index.search(&quantize(q), count),
        }
        .map_err(|e| usearch_error("search", e))?;
        Ok(matches
            .keys
            .into_iter()
            .filter_map(|k| u32::try_from(k).ok())
            .collect())
    }
}

/// Vectors by stable slot plus the graph when the collection is large.
///
/// Slots below the vector file's rows are read from the file (mapped, [`VectorFile`]); later
/// ones — added since the last compaction — are held here in `tail`. A compaction appends the
/// tail to the file and [`VectorIndex::adopt_file`] then drops it from memory.
pub struct VectorIndex {
    file: VectorFile,
    /// Rows of slots `file.rows()..`, in slot order (deleted ones too, until a compaction).
    tail: Vec<f32>,
    /// Whether each slot ever used in this epoch holds a live vector.
    alive: Vec<bool>,
    live: usize,
    dim: usize,
    graph: Option<AnnGraph>,
    params: AnnParams,
}

impl VectorIndex {
    pub fn new(dim: usize, params: AnnParams) -> Self {
        VectorIndex::with_file(VectorFile::empty(dim), dim, params)
    }

    /// Vectors whose first slots are `file`'s rows, none of them live yet
    /// ([`VectorIndex::revive`] marks the snapshot's).
    pub fn with_file(file: VectorFile, dim: usize, params: AnnParams) -> Self {
        VectorIndex {
            alive: vec![false; file.rows() as usize],
            file,
            tail: Vec::new(),
            live: 0,
            dim,
            graph: None,
            params,
        }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Live vectors.
    pub fn len(&self) -> usize {
        self.live
    }

    /// The slot the next [`VectorIndex::push`] takes: one past every slot ever used in this
    /// slot epoch.
    pub fn next_slot(&self) -> u32 {
        self.alive.len() as u32
    }

    /// Slots that held a vector since removed: what a renumbering compaction reclaims.
    pub fn dead(&self) -> usize {
        self.alive.len() - self.live
    }

    /// Stores `v` (normalised) at the next slot and returns the slot.
    pub fn push(&mut self, v: &[f32]) -> u32 {
        let slot = self.next_slot();
        self.insert_at(slot, v);
        slot
    }

    /// Stores `v` (normalised) at the free slot `slot` at or past the file's rows (snapshots
    /// without a vector file list slots in document order, not slot order). Cannot fail: a
    /// graph that refuses the vector is dropped (search turns exact until the next compaction
    /// builds one), so a durable batch always applies.
    pub fn insert_at(&mut self, slot: u32, v: &[f32]) {
        let at = slot as usize;
        let Some(row) = at.checked_sub(self.file.rows() as usize) else {
            debug_assert!(false, "slot {slot} is in the vector file");
            return;
        };
        if at >= self.alive.len() {
            self.alive.resize(at + 1, false);
        }
        let end = (row + 1) * self.dim;
        if self.tail.len() < end {
            self.tail.resize(end, 0.0);
        }
        let v = normalized(v);
        self.tail[end - self.dim..end].copy_from_slice(&v);
        if let Some(graph) = &self.graph {
            if let Err(e) = graph.add(slot, &v) {
                self.drop_graph(e);
            }
        }
        if !std::mem::replace(&mut self.alive[at], true) {
            self.live += 1;
        }
    }

    /// Marks `slot`, a row of the vector file, live (a snapshot's chunk).
    pub fn revive(&mut self, slot: u32) {
        if let Some(a) = self.alive.get_mut(slot as usize) {
            if slot < self.file.rows() && !std::mem::replace(a, true) {
                self.live += 1;
            }
        }
    }

    /// Marks every slot below `next_slot` as used (a snapshot records how far its epoch got, so
    /// slots of chunks deleted before it are not handed out again).
    pub fn reserve_slots(&mut self, next_slot: u32) {
        if (next_slot as usize) > self.alive.len() {
            self.alive.resize(next_slot as usize, false);
            let rows = next_slot.saturating_sub(self.file.rows()) as usize;
            self.tail.resize(rows * self.dim, 0.0);
        }
    }

    /// Frees `slot` (for good: it is not reused). In the graph it becomes a tombstone.
    pub fn remove(&mut self, slot: u32) {
        if let Some(a) = self.alive.get_mut(slot as usize) {
            if std::mem::replace(a, false) {
                self.live -= 1;
            }
        }
    }

    fn drop_graph(&mut self, e: IndexError) {
        tracing::warn!("{e}; searching exactly until the next compaction rebuilds the graph");
        self.graph = None;
    }

    pub fn get(&self, slot: u32) -> Option<&[f32]> {
        if !*self.alive.get(slot as usize)? {
            return None;
        }
        match (slot as usize).checked_sub(self.file.rows() as usize) {
            None => self.file.row(slot),
            Some(row) => self.tail.get(row * self.dim..(row + 1) * self.dim),
        }
    }

    /// Live slots, ascending.
    fn live_slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.alive
            .iter()
            .enumerate()
            .filter(|(_, &a)| a)
            .map(|(s, _)| s as u32)
    }

    /// Every live vector, in slot order.
    pub fn live_vectors(&self) -> impl Iterator<Item = &[f32]> + '_ {
        self.live_slots().filter_map(|slot| self.get(slot))
    }

    /// The vector file's rows.
    pub fn file(&self) -> &VectorFile {
        &self.file
    }

    /// The rows past the vector file, deleted slots' too (a row is always written with the
    /// same bytes, [`super::vector_file`]): what a compaction writes to the file next (a copy:
    /// commits go on while it is written).
    pub fn rows_past_file(&self) -> Vec<f32> {
        self.tail.clone()
    }

    /// The vectors of `slots`, one row each in that order (a renumbering compaction's file).
    pub fn rows_of(&self, slots: impl Iterator<Item = u32>) -> Vec<f32> {
        let mut rows = Vec::with_capacity(self.live * self.dim);
        for slot in slots {
            match self.get(slot) {
                Some(v) => rows.extend_from_slice(v),
                None => rows.resize(rows.len() + self.dim, 0.0),
            }
        }
        rows
    }

    /// Reads the slots below `file.rows()` from `file` — the current file with the tail
    /// appended, so the same vectors — and frees their copies in memory.
    pub fn adopt_file(&mut self, file: VectorFile) {
        let old = self.file.rows() as usize;
        let new = (file.rows() as usize).clamp(old, self.alive.len());
        self.tail
            .drain(..((new - old) * self.dim).min(self.tail.len()));
        self.tail.shrink_to_fit();
        self.file = file;
    }

    pub fn params(&self) -> AnnParams {
        self.params
    }

    pub fn has_graph(&self) -> bool {
        self.graph.is_some()
    }

    pub fn graph(&self) -> Option<&AnnGraph> {
        self.graph.as_ref()
    }

    /// Builds the graph when the collection reached the size that needs one, drops it when it
    /// shrank below half that (the gap keeps a collection near the threshold from building and
    /// dropping it at every write). Returns whether a graph was built.
    pub fn fit_graph(&mut self) -> Result<bool> {
        if self.graph.is_some() && self.live < self.params.exact_below / 2 {
            self.graph = None;
        }
        if self.graph.is_none() && self.live >= self.params.exact_below {
            self.graph = Some(self.build_graph()?);
            return Ok(true);
        }
        Ok(false)
    }

    /// A graph over every live vector, built from scratch.
    ///
    /// One insert at a time: usearch's concurrent inserts (thread-safe by its documentation)
    /// left a node unreachable by any search in 12 of 300 builds of 40 vectors on 2 threads
    /// here, and 0 of 300 sequential ones; an unreachable chunk is never found again, so the
    /// graph is built and updated on one thread.
    pub fn build_graph(&self) -> Result<AnnGraph> {
        let graph = AnnGraph::empty(self.dim, self.params, self.live)?;
        for slot in self.live_slots() {
            if let Some(v) = self.get(slot) {
                graph.add(slot, v)?;
            }
        }
        Ok(graph)
    }

    /// Adopts `graph` (loaded from disk) after making it agree with the vectors here, which
    /// come from the snapshot and the log — the source of truth. Slots are never reused within
    /// an epoch, so a slot in both holds the same vector: only membership can differ (a graph
    /// saved before or after some batches). Live slots it lacks are added; deleted slots it has
    /// are tombstones already. Returns how many entries were added.
    pub fn adopt_graph(&mut self, graph: AnnGraph) -> Result<usize> {
        let mut added = 0;
        for slot in self.live_slots() {
            if let Some(v) = self.get(slot) {
                if !graph.contains(slot) {
                    if graph.is_view() {
                        return Err(usearch_error(
                            "repair",
                            "a graph viewed in place cannot change",
                        ));
                    }
                    graph.add(slot, v)?;
                    added += 1;
                }
            }
        }
        if graph.len() > self.alive.len() {
            // More entries than slots this epoch ever had: not this collection's history.
            return Err(usearch_error(
                "repair",
                format!("{} entries for {} slots", graph.len(), self.alive.len()),
            ));
        }
        self.graph = Some(graph);
        Ok(added)
    }

    /// A live slot the graph lacks, if there is a graph and such a slot (what
    /// [`VectorIndex::adopt_graph`] repairs; never true of a graph kept up to date).
    pub fn missing_from_graph(&self) -> Option<u32> {
        let graph = self.graph.as_ref()?;
        self.live_slots().find(|&slot| !graph.contains(slot))
    }

    /// The `k` most similar live vectors, best first. Through the graph when there is one: its
    /// candidates (`rescore_factor` × `k`, at least `k` + 16, scaled up by the share of
    /// tombstones) are rescored exactly. A graph that fails to answer is bypassed (exact
    /// search), not trusted.
    pub fn search(&self, query: &[f32], k: usize) -> Vec<VectorHit> {
        let Some(graph) = &self.graph else {
            return self.exact_search(query, k);
        };
        let q = normalized(query);
        let wanted = (k * self.params.rescore_factor).max(k + 16);
        let fetch = wanted * graph.len().max(1) / self.live.max(1);
        match graph.search(&q, fetch) {
            Ok(slots) => {
                let mut row = vec![0f32; self.dim];
                let hits = slots
                    .into_iter()
                    .filter_map(|slot| {
                        Some(VectorHit {
                            slot,
                            similarity: self.similarity(&q, slot, &mut row)?,
                        })
                    })
                    .collect();
                top_k(hits, k)
            }
            Err(e) => {
                tracing::warn!("{e}; answering by exact search");
                self.exact_search(query, k)
            }
        }
    }

    /// The cosine of unit `q` with live slot `slot`'s vector; rows of the file are read into
    /// `row` ([`VectorFile::read_row`] says why not through the map).
    fn similarity(&self, q: &[f32], slot: u32, row: &mut [f32]) -> Option<f32> {
        if !*self.alive.get(slot as usize)? {
            return None;
        }
        if slot >= self.file.rows() {
            return self.get(slot).map(|v| dot(q, v));
        }
        match self.file.read_row(slot, row) {
            Ok(()) => Some(dot(q, row)),
            Err(e) => {
                tracing::warn!("reading vector {slot}: {e}; reading it through the map");
                self.get(slot).map(|v| dot(q, v))
            }
        }
    }

    /// Exact search over every live vector (the reference for recall measurements).
    pub fn exact_search(&self, query: &[f32], k: usize) -> Vec<VectorHit> {
        let q = normalized(query);
        let hits = self
            .live_slots()
            .filter_map(|slot| {
                self.get(slot).map(|v| VectorHit {
                    slot,
                    similarity: dot(&q, v),
                })
            })
            .collect();
        top_k(hits, k)
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
        let mut idx = VectorIndex::new(2, AnnParams::default());
        let a = idx.push(&[1.0, 0.0]);
        let b = idx.push(&[0.7, 0.7]);
        let c = idx.push(&[0.0, 2.0]);
        let hits = idx.search(&[1.0, 0.1], 2);
        assert_eq!(hits.iter().map(|h| h.slot).collect::<Vec<_>>(), vec![a, b]);
        idx.remove(a);
        let hits = idx.search(&[1.0, 0.1], 5);
        assert_eq!(hits.iter().map(|h| h.slot).collect::<Vec<_>>(), vec![b, c]);
        assert_eq!(idx.len(), 2);
        // Slots are not reused.
        assert_eq!(idx.push(&[1.0, 1.0]), 3);
    }

    /// Every live vector can be found: a search for as many results as there are entries returns
    /// all of them (what usearch's `remove` and its concurrent inserts each broke, measured).
    #[test]
    fn every_live_vector_stays_reachable() {
        let params = AnnParams {
            exact_below: 10,
            quantization: Quantization::F32,
            ..AnnParams::default()
        };
        let vector = |i: usize| {
            let a = i as f32 * 0.37;
            vec![a.cos(), a.sin()]
        };
        let mut idx = VectorIndex::new(2, params);
        for i in 0..40 {
            idx.push(&vector(i));
        }
        assert!(idx.fit_graph().unwrap());
        for slot in 0..10 {
            idx.remove(slot);
        }
        for i in 40..55 {
            idx.push(&vector(i));
        }
        for q in 0..55 {
            let hits = idx.search(&vector(q), idx.len());
            assert_eq!(hits.len(), idx.len(), "query {q}");
        }
    }

    #[test]
    fn dot_matches_the_naive_sum() {
        let a: Vec<f32> = (0..37).map(|i| i as f32 * 0.1).collect();
        let b: Vec<f32> = (0..37).map(|i| 1.0 - i as f32 * 0.05).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-4);
    }

    /// `n` unit vectors around 50 random centres in 32 dimensions (deterministic).
    fn clustered(n: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut state = seed;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f32 / (1u64 << 53) as f32 - 0.5
        };
        let centres: Vec<Vec<f32>> = (0..50).map(|_| (0..32).map(|_| next()).collect()).collect();
        (0..n)
            .map(|i| {
                let c = &centres[i % centres.len()];
                normalized(&c.iter().map(|x| x + 0.15 * next()).collect::<Vec<_>>())
            })
            .collect()
    }

    fn recall_at_10(idx: &VectorIndex, queries: &[Vec<f32>]) -> f64 {
        let mut found = 0;
        for q in queries {
            let truth: Vec<u32> = idx.exact_search(q, 10).iter().map(|h| h.slot).collect();
            let got = idx.search(q, 10);
            found += got.iter().filter(|h| truth.contains(&h.slot)).count();
        }
        found as f64 / (10 * queries.len()) as f64
    }

    #[test]
    fn the_graph_follows_inserts_and_deletes_and_survives_a_save() {
        let params = AnnParams {
            exact_below: 500,
            ..AnnParams::default()
        };
        let data = clustered(3_000, 7);
        let mut idx = VectorIndex::new(32, params);
        for v in &data[..400] {
            idx.push(v);
        }
        assert!(!idx.fit_graph().unwrap(), "below the threshold");
        for v in &data[400..2_000] {
            idx.push(v);
        }
        assert!(idx.fit_graph().unwrap());
        // Grows and shrinks in place.
        for v in &data[2_000..] {
            idx.push(v);
        }
        for slot in (0..3_000).step_by(3) {
            idx.remove(slot);
        }
        let queries = clustered(100, 99);
        assert_eq!(
            idx.graph().unwrap().len(),
            3_000,
            "deleted entries stay as tombstones"
        );
        assert_eq!(idx.len(), 2_000);
        assert!(recall_at_10(&idx, &queries) >= 0.95);
        let removed = idx.search(&data[0], 5);
        assert!(removed.iter().all(|h| h.slot % 3 != 0), "{removed:?}");

        // A graph saved earlier is repaired to the current vectors when adopted.
        let bytes = idx.graph().unwrap().to_bytes().unwrap();
        for slot in (1..3_000).step_by(3) {
            idx.remove(slot);
        }
        idx.push(&data[5]);
        let old = AnnGraph::from_bytes(&bytes, 32, params).unwrap();
        let added = idx.adopt_graph(old).unwrap();
        assert_eq!(added, 1);
        assert_eq!(idx.graph().unwrap().len(), 3_001);
        assert!(recall_at_10(&idx, &queries) >= 0.95);
        // Another storage is refused, not misread.
        let f32_params = AnnParams {
            quantization: Quantization::F32,
            ..params
        };
        assert!(AnnGraph::from_bytes(&bytes, 32, f32_params).is_err());
        assert!(AnnGraph::from_bytes(&bytes, 16, params).is_err());
    }
}
