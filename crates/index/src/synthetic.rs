//! A synthetic collection for benchmarks at any size (`sift bench --task search`, the `scale`
//! example): what a real collection of brought vectors holds — clustered unit vectors (real
//! embeddings are clustered; uniform random vectors are HNSW's worst case, not the usual one)
//! and text of two sentences drawn from a real corpus, so BM25's postings and document lengths
//! look like the corpus's. Deterministic: every run builds the same collection.

use std::path::Path;

use crate::document::{Chunk, Document, IndexedDocument, Operation};

/// Deterministic xorshift numbers in [-0.5, 0.5): the benchmark must build the same collection
/// every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f32 / (1u64 << 53) as f32 - 0.5
    }

    fn below(&mut self, n: usize) -> usize {
        ((self.next() + 0.5) * n as f32) as usize % n.max(1)
    }
}

/// The synthetic corpus: cluster centres and a sentence pool.
pub struct Workload {
    centres: Vec<Vec<f32>>,
    sentences: Vec<String>,
}

/// Clusters: about one per 1,000 chunks, at least 64, like topics in a corpus.
fn clusters(chunks: usize) -> usize {
    (chunks / 1_000).clamp(64, 4_096)
}

impl Workload {
    /// The workload for a collection of `chunks` chunks of `dim` dimensions, texts drawn from
    /// `sentences` (at least one).
    pub fn new(chunks: usize, dim: usize, sentences: Vec<String>) -> Workload {
        let mut rng = Rng(0x5eed_0f5c_a1e0_0001);
        let centres = (0..clusters(chunks))
            .map(|_| (0..dim).map(|_| rng.next()).collect())
            .collect();
        let sentences = if sentences.is_empty() {
            builtin_sentences()
        } else {
            sentences
        };
        Workload { centres, sentences }
    }

    /// Chunk `i`'s vector: its cluster's centre plus noise as large as the centre's spread, so
    /// neighbours within a cluster are not trivially separated.
    pub fn vector(&self, i: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng((i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seed);
        let centre = &self.centres[i % self.centres.len()];
        let v: Vec<f32> = centre.iter().map(|c| c + 0.6 * rng.next()).collect();
        let norm = v
            .iter()
            .map(|x| x * x)
            .sum::<f32>()
            .sqrt()
            .max(f32::MIN_POSITIVE);
        v.into_iter().map(|x| x / norm).collect()
    }

    pub fn text(&self, i: usize) -> String {
        let mut rng = Rng((i as u64 + 7).wrapping_mul(0xbf58_476d_1ce4_e5b9));
        let a = &self.sentences[rng.below(self.sentences.len())];
        let b = &self.sentences[rng.below(self.sentences.len())];
        format!("{a} {b}")
    }

    pub fn document(&self, i: usize) -> Operation {
        let text = self.text(i);
        Operation::Upsert(IndexedDocument {
            document: Document {
                id: format!("c{i}"),
                text: text.clone(),
                title: None,
                metadata: None,
            },
            chunks: vec![Chunk {
                text,
                vector: self.vector(i, 0),
            }],
        })
    }

    /// Query `q`: near the centre of a cluster, with three consecutive words of a sentence.
    pub fn query(&self, q: usize) -> (String, Vec<f32>) {
        let vector = self.vector(q * 7 + 3, 0xfeed);
        let sentence = &self.sentences[(q * 31) % self.sentences.len()];
        let words: Vec<&str> = sentence.split_whitespace().collect();
        let from = (q * 5) % words.len().saturating_sub(2).max(1);
        let text = words[from..(from + 3).min(words.len())].join(" ");
        (text, vector)
    }
}

pub fn read_sentences(path: &Path) -> std::io::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)?;
    let mut sentences = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: not JSONL ({e})", path.display()),
            )
        })?;
        if let Some(t) = v.get("text").and_then(serde_json::Value::as_str) {
            sentences.extend(
                t.split(". ")
                    .map(str::trim)
                    .filter(|s| s.split_whitespace().count() >= 4)
                    .map(str::to_owned),
            );
        }
    }
    if sentences.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: no sentences of four words or more", path.display()),
        ));
    }
    Ok(sentences)
}

pub fn builtin_sentences() -> Vec<String> {
    let words = [
        "protein",
        "cell",
        "gene",
        "expression",
        "patients",
        "risk",
        "increased",
        "mice",
        "tumor",
        "receptor",
        "treatment",
        "levels",
        "binding",
        "signaling",
        "response",
        "clinical",
        "mutation",
        "pathway",
        "immune",
        "growth",
        "infection",
        "insulin",
        "cancer",
        "dose",
        "trial",
        "cohort",
        "association",
        "mortality",
        "vitamin",
        "brain",
    ];
    (0..2_000)
        .map(|i| {
            let mut rng = Rng(i as u64 * 2 + 1);
            (0..12)
                .map(|_| words[rng.below(words.len())])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}
