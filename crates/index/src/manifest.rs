//! What a collection records about how its contents were made.

use serde::{Deserialize, Serialize};

use crate::analysis::Analyzer;

/// Version of the manifest and of the local backend's file formats.
pub const FORMAT_VERSION: u32 = 1;

/// Identity of the embedding model a collection's vectors come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbeddingModelInfo {
    /// Human-readable name (the model directory's name).
    pub name: String,
    /// Changes whenever the model's weights or tokenizer change.
    pub fingerprint: String,
    pub dim: usize,
    /// The model's directory when the collection was made (absolute), so that commands find a
    /// model kept outside the models directory (a fine-tune) without being told again. A hint
    /// only: the fingerprint still decides whether a model is the collection's. Absent in
    /// collections made before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// The fingerprint prefix of a collection whose vectors the user brought (made outside sift):
/// `external:NAME`, where NAME is what the user called the model (`external` by default).
const EXTERNAL_PREFIX: &str = "external:";

impl EmbeddingModelInfo {
    /// Vectors of dimension `dim` made outside sift by the model the user calls `name`. sift
    /// cannot embed text for such a collection: queries bring their own vector (or a model the
    /// user names for them), and documents without a vector are refused.
    pub fn external(name: &str, dim: usize) -> Self {
        EmbeddingModelInfo {
            name: name.to_owned(),
            fingerprint: format!("{EXTERNAL_PREFIX}{name}"),
            dim,
            path: None,
        }
    }

    /// Whether the vectors were brought by the user ([`EmbeddingModelInfo::external`]).
    pub fn is_external(&self) -> bool {
        self.fingerprint.starts_with(EXTERNAL_PREFIX)
    }
}

/// How documents are split into token windows before embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkingConfig {
    /// Tokens of text per window (special tokens excluded).
    pub max_tokens: usize,
    /// Tokens shared by consecutive windows.
    pub overlap_tokens: usize,
}

/// BM25's free parameters: `k1` (how fast a term's repeats saturate) and `b` (how much a
/// passage's length, relative to the average, discounts its term frequencies). Both backends
/// score `Σ qtf · idf · (k1 + 1) · tf / (tf + k1 · (1 − b + b · len / avglen))` with Lucene's
/// idf; these are read from the manifest at every query, so changing them needs no re-indexing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bm25Params {
    pub k1: f32,
    pub b: f32,
}

impl Bm25Params {
    /// Lucene's (and tantivy's, and Elasticsearch's) constants: what collections made before the
    /// parameters were recorded were scored with, so they rank as they always did.
    pub const LUCENE: Bm25Params = Bm25Params { k1: 1.2, b: 0.75 };

    /// Refuses values BM25 is not defined for: `k1` negative or not finite, `b` outside 0–1.
    pub fn validate(&self) -> crate::Result<()> {
        if !(self.k1.is_finite() && self.k1 >= 0.0 && (0.0..=1.0).contains(&self.b)) {
            return Err(crate::IndexError::InvalidInput(format!(
                "BM25 k1 = {} must be a finite number ≥ 0 and b = {} between 0 and 1",
                self.k1, self.b
            )));
        }
        Ok(())
    }

    /// These parameters with `k1` and `b` replaced where given: what a request that names
    /// some of them asks of a collection scored with `self`.
    pub fn overridden(self, k1: Option<f32>, b: Option<f32>) -> Self {
        Bm25Params {
            k1: k1.unwrap_or(self.k1),
            b: b.unwrap_or(self.b),
        }
    }

    fn lucene() -> Self {
        Self::LUCENE
    }
}

/// New collections: bm25s's (and rank_bm25's) defaults, k1 = 1.5 and b = 0.75, the reference
/// implementation of the first-stage-quality issue: with them sift's BM25 ranks as the
/// reference does on any corpus its analyzer cuts alike (on SciFact's 167 dev claims, the same
/// nDCG@10 to four digits and no query ranked differently). Why not a tuned pair: a k1 × b grid
/// on the 642 families-train claims (never the dev queries) is flat — every cell with k1 0.9–1.5
/// and b 0.3–0.9 within 0.005 nDCG@10 of each other, and the best train cell (1.5, 0.5) is
/// 0.006 below these on the dev claims (docs/quality.md "BM25 parameters") — so no pair earned
/// its place over the reference's.
impl Default for Bm25Params {
    fn default() -> Self {
        Bm25Params { k1: 1.5, b: 0.75 }
    }
}

/// A collection's manifest (`collection.json` in the local backend).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub embedding: EmbeddingModelInfo,
    /// How sift cut documents into windows; `None` in a collection of brought vectors, whose
    /// documents are one chunk each (the text the user's vector was made from).
    pub chunking: Option<ChunkingConfig>,
    /// How the keyword index cuts text into terms. Manifests written before analyzers were
    /// recorded have none: their collections were English-stemmed, so they read as English
    /// (their BM25 part is rebuilt with the current English analyzer when first opened).
    #[serde(default)]
    pub analyzer: Analyzer,
    /// How BM25 scores. Manifests written before it was recorded read as
    /// [`Bm25Params::LUCENE`], the constants they were scored with.
    #[serde(default = "Bm25Params::lucene")]
    pub bm25: Bm25Params,
}

impl Manifest {
    /// Whether vectors made for `other` may be mixed with this collection's: same model
    /// fingerprint and dimension. Chunking may differ only where a caller allows it.
    pub fn same_model(&self, other: &EmbeddingModelInfo) -> bool {
        self.embedding.fingerprint == other.fingerprint && self.embedding.dim == other.dim
    }

    /// The refusal for vectors of `found`.
    pub fn mismatch(&self, found: &EmbeddingModelInfo) -> crate::IndexError {
        crate::IndexError::ModelMismatch {
            expected: format!("{} (dim {})", self.embedding.name, self.embedding.dim),
            found: format!("{} (dim {})", found.name, found.dim),
        }
    }
}
