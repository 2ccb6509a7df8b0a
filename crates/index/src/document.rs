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

/// Most bytes of text in one keyword passage (about 1,200 English words or 2,700 Chinese
/// characters), title excluded.
pub const PASSAGE_BYTES: usize = 8192;

/// One unit the keyword index scores: a document's title with a span of its text, and the
/// first chunk that span covers (what a keyword hit points at).
#[derive(Debug, Clone, PartialEq)]
pub struct KeywordPassage {
    pub chunk: u32,
    pub text: String,
}

/// The passages BM25 scores for a document whose chunks are `chunks` (in order, each a span of
/// `document.text`, consecutive ones overlapping).
///
/// Why passages and not the embedding chunks: BM25's length normalization was designed for, and
/// the references apply it to, whole documents. Scoring SciFact's abstracts in the embedder's
/// ~150-word windows instead cost 0.007 nDCG@10 on all 809 labelled claims (docs/quality.md):
/// a window that holds half the query's words is normalized as if it held the whole abstract's.
/// But a book as one unit would match every query a little, so documents longer than
/// [`PASSAGE_BYTES`] are cut at chunk boundaries into passages of at most that size (a passage
/// never splits a chunk; one chunk longer than the budget is a passage of its own).
pub fn keyword_passages(document: &Document, chunks: &[&str]) -> Vec<KeywordPassage> {
    let with_title = |span: &str| match document.title.as_deref() {
        Some(title) if !title.trim().is_empty() => format!("{title}\n{span}"),
        _ => span.to_owned(),
    };
    let text = document.text.as_str();
    if text.len() <= PASSAGE_BYTES || chunks.len() <= 1 {
        return vec![KeywordPassage {
            chunk: 0,
            text: with_title(text),
        }];
    }
    // Where each chunk lies in the text: chunks are spans of it in order, so each is found at or
    // after the previous one's start.
    let mut spans = Vec::with_capacity(chunks.len());
    let mut from = 0;
    for chunk in chunks {
        match text.get(from..).and_then(|rest| rest.find(chunk)) {
            Some(at) => {
                let start = from + at;
                spans.push(Some((start, start + chunk.len())));
                from = start;
            }
            None => spans.push(None),
        }
    }
    let mut passages = Vec::new();
    let mut i = 0;
    while i < chunks.len() {
        let first = i;
        let mut bytes = chunks[i].len();
        i += 1;
        while i < chunks.len() && bytes + chunks[i].len() <= PASSAGE_BYTES {
            bytes += chunks[i].len();
            i += 1;
        }
        let body = match (spans[first], spans[i - 1]) {
            // The text from the first chunk's start to the last one's end: overlaps once.
            (Some((start, _)), Some((_, end))) if start < end => text[start..end].to_owned(),
            // Not spans of the text (a backend that stores chunks otherwise): joined.
            _ => chunks[first..i].join(" "),
        };
        passages.push(KeywordPassage {
            chunk: first as u32,
            text: with_title(&body),
        });
    }
    passages
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

#[cfg(test)]
mod tests {
    use super::*;

    fn document(text: String) -> Document {
        Document {
            id: "d".into(),
            text,
            title: Some("Title".into()),
            metadata: None,
        }
    }

    #[test]
    fn a_short_document_is_one_passage() {
        let d = document("alpha beta gamma delta".into());
        let passages = keyword_passages(&d, &["alpha beta", "beta gamma delta"]);
        assert_eq!(
            passages,
            vec![KeywordPassage {
                chunk: 0,
                text: "Title\nalpha beta gamma delta".into()
            }]
        );
    }

    #[test]
    fn a_long_document_is_cut_at_chunk_boundaries_without_repeating_overlaps() {
        let words: Vec<String> = (0..3000).map(|i| format!("w{i:04}")).collect();
        let text = words.join(" ");
        // Chunks of 100 words overlapping by 10, as spans of the text.
        let mut chunks = Vec::new();
        let mut start = 0;
        while start < words.len() {
            let end = (start + 100).min(words.len());
            chunks.push(words[start..end].join(" "));
            if end == words.len() {
                break;
            }
            start += 90;
        }
        let refs: Vec<&str> = chunks.iter().map(String::as_str).collect();
        let passages = keyword_passages(&document(text.clone()), &refs);
        assert!(passages.len() > 1);
        assert_eq!(passages[0].chunk, 0);
        let mut covered = 0;
        for (p, next) in passages.iter().zip(passages.iter().skip(1)) {
            assert!(p.text.len() <= PASSAGE_BYTES + "Title\n".len());
            assert!(p.chunk < next.chunk);
            covered += 1;
        }
        let last = passages.last().unwrap();
        assert!(last.text.ends_with("w2999"));
        assert!(covered + 1 == passages.len());
        // Every word is in some passage, and a passage holds each of its words once.
        for w in &words {
            assert!(passages.iter().any(|p| p.text.contains(w.as_str())), "{w}");
        }
        assert_eq!(passages[0].text.matches("w0095").count(), 1);
    }
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
