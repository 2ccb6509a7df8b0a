//! What a collection stores, and the operations and hits every backend speaks in.

use serde::{Deserialize, Serialize};

/// Longest document id, in bytes of UTF-8. Why a bound: an id is a key in every part of a
/// collection (tantivy refuses terms over 65,530 bytes, so a longer id could be added but never
/// deleted) and a path segment in `DELETE /collections/{name}/documents/{id}`; 1,024 bytes holds
/// any file path or URL users key documents by. Checked by [`crate::batch::validate_batch`] for
/// every backend, and by the pipeline before any embedding work.
pub const MAX_ID_BYTES: usize = 1024;

/// A document as the user gave it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub id: String,
    pub text: String,
    pub title: Option<String>,
    /// Arbitrary JSON, returned with hits. Stored as JSON text so binary encodings can hold it.
    #[serde(with = "json_text")]
    pub metadata: Option<serde_json::Value>,
}

impl Document {
    /// A stable fingerprint of the content, so re-indexing an unchanged document is a no-op.
    pub fn content_hash(&self) -> u64 {
        let mut h = crc32fast::Hasher::new();
        for part in [
            self.text.as_str(),
            self.title.as_deref().unwrap_or("\u{0}"),
            &self
                .metadata
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default(),
        ] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        let a = h.finalize() as u64;
        let mut h2 = crc32fast::Hasher::new_with_initial(0x9e37_79b9);
        h2.update(self.text.as_bytes());
        (a << 32) | h2.finalize() as u64
    }
}

/// One window of a document's text with its embedding. Hits are found per chunk and mapped back
/// to the parent document; the best chunk is shown as the snippet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    pub text: String,
    pub vector: Vec<f32>,
}

/// A document ready to store: its chunks are already embedded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexedDocument {
    pub document: Document,
    pub chunks: Vec<Chunk>,
}

/// One change to a collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Operation {
    /// Adds the document, or replaces every chunk of the stored one with the same id.
    Upsert(IndexedDocument),
    /// Removes the document and its chunks; absent ids are no-ops.
    Delete(String),
}

impl Operation {
    /// The id of the document this operation changes.
    pub fn id(&self) -> &str {
        match self {
            Operation::Upsert(d) => &d.document.id,
            Operation::Delete(id) => id,
        }
    }
}

/// A chunk matched by a search, with the leg's own score (cosine similarity or BM25).
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkHit {
    pub doc_id: String,
    /// The chunk's position in its document, from 0.
    pub chunk: u32,
    pub score: f32,
}

/// What a search shows and reranks for a hit: the whole document and the matched chunk's text.
#[derive(Debug, Clone, PartialEq)]
pub struct HitDetails {
    pub document: Document,
    pub chunk_text: String,
}

mod json_text {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(
        v: &Option<serde_json::Value>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        v.as_ref().map(|v| v.to_string()).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<serde_json::Value>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| serde_json::from_str(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}
