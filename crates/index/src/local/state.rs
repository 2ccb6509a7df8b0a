//! The local backend's in-memory contents: documents, chunk slots and their vectors. Applying
//! an operation here cannot fail, which is what lets a commit apply a durable batch to memory
//! entirely before touching the fallible BM25 index.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::snapshot::{Snapshot, SnapshotChunk, SnapshotDoc};
use super::vector_file::VectorFile;
use super::vectors::{AnnParams, VectorIndex};
use crate::document::{Document, IndexedDocument, Operation};

pub struct StoredDoc {
    /// Shared with the snapshots compactions write, so taking one copies no text.
    pub document: Arc<Document>,
    pub hash: u64,
    /// Vector slots of the document's chunks, in chunk order.
    pub slots: Vec<u32>,
}

/// A chunk's text: nearly always a window of its document's text (the whole of it for a
/// one-chunk document), kept as byte offsets rather than a second copy — at a million chunks
/// the copies were a third of the resident memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChunkText {
    /// `document.text[start..end]`.
    Span { start: u32, end: u32 },
    /// Text that is not a window of the document's (a chunker that rewrites text).
    Own(String),
}

impl ChunkText {
    /// `chunk` as a span of `text` where it occurs there, searching from byte `from` first
    /// (chunks come in order, so the search stays linear).
    pub fn of(text: &str, chunk: String, from: usize) -> ChunkText {
        let found = if chunk == text {
            Some(0)
        } else {
            text.get(from..)
                .and_then(|rest| rest.find(chunk.as_str()))
                .map(|i| i + from)
                .or_else(|| text.find(chunk.as_str()))
        };
        match found.and_then(|start| {
            Some((
                u32::try_from(start).ok()?,
                u32::try_from(start + chunk.len()).ok()?,
            ))
        }) {
            Some((start, end)) => ChunkText::Span { start, end },
            None => ChunkText::Own(chunk),
        }
    }

    /// The text, given its document's; empty for a span that does not fit it (a snapshot is
    /// checked for those when read, so none is ever served).
    pub fn resolve<'a>(&'a self, text: &'a str) -> &'a str {
        match self {
            ChunkText::Span { start, end } => {
                text.get(*start as usize..*end as usize).unwrap_or("")
            }
            ChunkText::Own(s) => s,
        }
    }

    /// Whether the text can be taken from `text` (a span within it, on character boundaries).
    pub fn fits(&self, text: &str) -> bool {
        match self {
            ChunkText::Span { start, end } => text.get(*start as usize..*end as usize).is_some(),
            ChunkText::Own(_) => true,
        }
    }
}

pub struct SlotInfo {
    pub doc_id: Arc<str>,
    pub ordinal: u32,
    pub text: ChunkText,
}

pub struct Contents {
    pub docs: HashMap<String, StoredDoc>,
    /// Indexed by vector slot; `None` for deleted chunks (for good: slots are not reused).
    pub slots: Vec<Option<SlotInfo>>,
    pub vectors: VectorIndex,
    /// The slot epoch ([`Snapshot::slot_epoch`]).
    pub slot_epoch: u64,
}

/// Where a snapshot's vectors are.
pub enum SnapshotVectors {
    /// In the epoch's vector file, at each chunk's slot.
    File(VectorFile),
    /// Inline, one per chunk in snapshot order (snapshots written before vector files).
    Inline(Vec<Vec<f32>>),
}

impl Contents {
    pub fn new(dim: usize, ann: AnnParams) -> Self {
        Contents {
            docs: HashMap::new(),
            slots: Vec::new(),
            vectors: VectorIndex::new(dim, ann),
            slot_epoch: 0,
        }
    }

    /// The contents of `snapshot`, each chunk at the slot it records.
    pub fn from_snapshot(
        snapshot: Snapshot,
        vectors: SnapshotVectors,
        dim: usize,
        ann: AnnParams,
    ) -> Self {
        let (index, mut inline) = match vectors {
            SnapshotVectors::File(file) => (VectorIndex::with_file(file, dim, ann), None),
            SnapshotVectors::Inline(v) => (VectorIndex::new(dim, ann), Some(v.into_iter())),
        };
        let mut c = Contents {
            docs: HashMap::with_capacity(snapshot.docs.len()),
            slots: Vec::new(),
            vectors: index,
            slot_epoch: snapshot.slot_epoch,
        };
        c.vectors.reserve_slots(snapshot.next_slot);
        c.slots.resize_with(snapshot.next_slot as usize, || None);
        for d in snapshot.docs {
            let id: Arc<str> = Arc::from(d.document.id.as_str());
            let mut slots = Vec::with_capacity(d.chunks.len());
            for (ordinal, chunk) in d.chunks.into_iter().enumerate() {
                match inline.as_mut() {
                    Some(inline) => {
                        let v = inline.next().unwrap_or_default();
                        c.vectors.insert_at(chunk.slot, &v);
                    }
                    None => c.vectors.revive(chunk.slot),
                }
                c.set_slot(chunk.slot, id.clone(), ordinal, chunk.text);
                slots.push(chunk.slot);
            }
            c.store(d.document, slots);
        }
        c
    }

    pub fn apply_all(&mut self, ops: impl IntoIterator<Item = Operation>) {
        for op in ops {
            self.apply(op);
        }
    }

    pub fn apply(&mut self, op: Operation) {
        match op {
            Operation::Delete(id) => self.remove(&id),
            Operation::Upsert(d) => {
                self.remove(&d.document.id);
                self.insert(d);
            }
        }
    }

    /// The texts of `doc`'s chunks, in chunk order.
    pub fn chunk_texts<'a>(&'a self, doc: &'a StoredDoc) -> Vec<&'a str> {
        doc.slots
            .iter()
            .filter_map(|&slot| self.slots.get(slot as usize)?.as_ref())
            .map(|info| info.text.resolve(&doc.document.text))
            .collect()
    }

    pub fn chunk_text(&self, doc_id: &str, ordinal: u32) -> Option<&str> {
        let doc = self.docs.get(doc_id)?;
        let slot = *doc.slots.get(ordinal as usize)?;
        let info = self.slots.get(slot as usize)?.as_ref()?;
        Some(info.text.resolve(&doc.document.text))
    }

    /// Every document with its chunks, sorted by id, at their slots, and the vector file so
    /// far: the content of a snapshot that appends the rows past the file to it. Copies no
    /// text (documents are shared).
    pub fn to_snapshot(&self, seq: u64) -> Snapshot {
        let docs = self.sorted_docs(&self.sorted_ids(), |_, slot| slot);
        Snapshot {
            seq,
            slot_epoch: self.slot_epoch,
            next_slot: self.vectors.next_slot(),
            vector_rows: self.vectors.file().ranges().to_vec(),
            docs,
        }
    }

    /// [`Contents::to_snapshot`] with slots renumbered densely in slot epoch `epoch` (what a
    /// compaction writes when deleted slots outnumber live ones), and the vectors in that new
    /// slot order.
    pub fn to_dense_snapshot(&self, seq: u64, epoch: u64) -> (Snapshot, Vec<f32>) {
        let ids = self.sorted_ids();
        let docs = self.sorted_docs(&ids, |i, _| i as u32);
        let old_slots = ids
            .iter()
            .flat_map(|id| self.docs[*id].slots.iter().copied());
        let rows = self.vectors.rows_of(old_slots);
        let next_slot = docs.iter().map(|d| d.chunks.len() as u32).sum();
        let snapshot = Snapshot {
            seq,
            slot_epoch: epoch,
            next_slot,
            vector_rows: Vec::new(),
            docs,
        };
        (snapshot, rows)
    }

    fn sorted_ids(&self) -> Vec<&String> {
        let mut ids: Vec<&String> = self.docs.keys().collect();
        ids.sort();
        ids
    }

    /// The documents `ids` (sorted), each chunk at `slot(i, old slot)` where `i` counts chunks
    /// in that order.
    fn sorted_docs(&self, ids: &[&String], slot: impl Fn(usize, u32) -> u32) -> Vec<SnapshotDoc> {
        let mut i = 0;
        ids.iter()
            .map(|id| {
                let d = &self.docs[*id];
                let chunks = d
                    .slots
                    .iter()
                    .map(|&s| {
                        let text = self.slots[s as usize]
                            .as_ref()
                            .map_or(ChunkText::Own(String::new()), |info| info.text.clone());
                        i += 1;
                        SnapshotChunk {
                            slot: slot(i - 1, s),
                            text,
                        }
                    })
                    .collect();
                SnapshotDoc {
                    document: d.document.clone(),
                    chunks,
                }
            })
            .collect()
    }

    fn remove(&mut self, id: &str) {
        if let Some(old) = self.docs.remove(id) {
            for slot in old.slots {
                self.vectors.remove(slot);
                if let Some(s) = self.slots.get_mut(slot as usize) {
                    *s = None;
                }
            }
        }
    }

    /// Stores `d` with its chunks at the next free slots.
    fn insert(&mut self, d: IndexedDocument) {
        let id: Arc<str> = Arc::from(d.document.id.as_str());
        let mut slots = Vec::with_capacity(d.chunks.len());
        let mut from = 0;
        for (ordinal, chunk) in d.chunks.into_iter().enumerate() {
            let slot = self.vectors.push(&chunk.vector);
            let text = ChunkText::of(&d.document.text, chunk.text, from);
            if let ChunkText::Span { start, .. } = text {
                from = start as usize;
            }
            self.set_slot(slot, id.clone(), ordinal, text);
            slots.push(slot);
        }
        self.store(Arc::new(d.document), slots);
    }

    fn set_slot(&mut self, slot: u32, doc_id: Arc<str>, ordinal: usize, text: ChunkText) {
        if self.slots.len() <= slot as usize {
            self.slots.resize_with(slot as usize + 1, || None);
        }
        self.slots[slot as usize] = Some(SlotInfo {
            doc_id,
            ordinal: ordinal as u32,
            text,
        });
    }

    fn store(&mut self, document: Arc<Document>, slots: Vec<u32>) {
        let hash = document.content_hash();
        self.docs.insert(
            document.id.clone(),
            StoredDoc {
                document,
                hash,
                slots,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::ChunkText;

    #[test]
    fn chunk_texts_are_spans_of_their_document_where_they_can_be() {
        let text = "alpha beta gamma beta delta";
        let whole = ChunkText::of(text, text.to_owned(), 0);
        assert_eq!(whole, ChunkText::Span { start: 0, end: 27 });
        // Overlapping windows: the search starts at the previous window's start.
        let second = ChunkText::of(text, "beta delta".to_owned(), 6);
        assert_eq!(second.resolve(text), "beta delta");
        assert_eq!(
            ChunkText::of(text, "beta".to_owned(), 12).resolve(text),
            "beta"
        );
        let own = ChunkText::of(text, "title\nalpha".to_owned(), 0);
        assert_eq!(own, ChunkText::Own("title\nalpha".into()));
        assert!(own.fits(""));
        assert!(!ChunkText::Span { start: 3, end: 40 }.fits(text));
        let greek = "αβγ";
        assert!(!ChunkText::Span { start: 0, end: 1 }.fits(greek));
        assert_eq!(ChunkText::Span { start: 0, end: 1 }.resolve(greek), "");
    }
}
