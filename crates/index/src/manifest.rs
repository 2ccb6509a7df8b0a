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
