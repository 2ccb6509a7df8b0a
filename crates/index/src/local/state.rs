//! The local backend's in-memory contents: documents, chunk slots and their vectors. Applying
//! an operation here cannot fail, which is what lets a commit apply a durable batch to memory
//! entirely before touching the fallible BM25 index.

use std::collections::HashMap;
use std::sync::Arc;

use super::snapshot::Snapshot;
use super::vectors::{AnnParams, VectorIndex};
use crate::document::{Chunk, Document, IndexedDocument, Operation};

pub struct StoredDoc {
    pub document: Document,
    pub hash: u64,
    /// Vector slots of the document's chunks, in chunk order.
    pub slots: Vec<u32>,
}

pub struct SlotInfo {
    pub doc_id: Arc<str>,
    pub ordinal: u32,
    pub text: String,
}

pub struct Contents {
    pub docs: HashMap<String, StoredDoc>,
    /// Indexed by vector slot; `None` for deleted chunks until the next compaction.
    pub slots: Vec<Option<SlotInfo>>,
    pub vectors: VectorIndex,
}

impl Contents {
    pub fn new(ann: AnnParams) -> Self {
        Contents {
            docs: HashMap::new(),
            slots: Vec::new(),
            vectors: VectorIndex::new(ann),
        }
    }

    /// Replaces everything with `snapshot`, numbering slots densely in snapshot order.
    pub fn from_snapshot(snapshot: Snapshot, ann: AnnParams) -> Self {
        let mut c = Contents::new(ann);
        for d in snapshot.docs {
            c.insert(d);
        }
        c
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
    pub fn chunk_texts<'a>(&'a self, doc: &StoredDoc) -> Vec<&'a str> {
        doc.slots
            .iter()
            .filter_map(|&slot| self.slots.get(slot as usize)?.as_ref())
            .map(|info| info.text.as_str())
            .collect()
    }

    pub fn chunk_text(&self, doc_id: &str, ordinal: u32) -> Option<&str> {
        let slot = *self.docs.get(doc_id)?.slots.get(ordinal as usize)?;
        self.slots
            .get(slot as usize)?
            .as_ref()
            .map(|s| s.text.as_str())
    }

    /// Every document with its chunks, sorted by id: the content of a snapshot.
    pub fn to_snapshot(&self, seq: u64) -> Snapshot {
        let mut ids: Vec<&String> = self.docs.keys().collect();
        ids.sort();
        let docs = ids
            .iter()
            .map(|id| {
                let d = &self.docs[*id];
                IndexedDocument {
                    document: d.document.clone(),
                    chunks: d
                        .slots
                        .iter()
                        .map(|&s| Chunk {
                            text: self.slots[s as usize]
                                .as_ref()
                                .map(|i| i.text.clone())
                                .unwrap_or_default(),
                            vector: self.vectors.get(s).map(|v| v.to_vec()).unwrap_or_default(),
                        })
                        .collect(),
                }
            })
            .collect();
        Snapshot { seq, docs }
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

    fn insert(&mut self, d: IndexedDocument) {
        let id: Arc<str> = Arc::from(d.document.id.as_str());
        let mut slots = Vec::with_capacity(d.chunks.len());
        for (ordinal, chunk) in d.chunks.into_iter().enumerate() {
            let slot = self.vectors.push(&chunk.vector);
            debug_assert_eq!(slot as usize, self.slots.len());
            self.slots.push(Some(SlotInfo {
                doc_id: id.clone(),
                ordinal: ordinal as u32,
                text: chunk.text,
            }));
            slots.push(slot);
        }
        let hash = d.document.content_hash();
        self.docs.insert(
            d.document.id.clone(),
            StoredDoc {
                document: d.document,
                hash,
                slots,
            },
        );
    }
}
