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
    /// Indexed by vector slot; `None` for deleted chunks (for good: slots are not reused).
    pub slots: Vec<Option<SlotInfo>>,
    pub vectors: VectorIndex,
    /// The slot epoch ([`Snapshot::slot_epoch`]).
    pub slot_epoch: u64,
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
    pub fn from_snapshot(snapshot: Snapshot, dim: usize, ann: AnnParams) -> Self {
        let mut c = Contents::new(dim, ann);
        c.slot_epoch = snapshot.slot_epoch;
        c.vectors.reserve_slots(snapshot.next_slot);
        c.slots.resize_with(snapshot.next_slot as usize, || None);
        let mut slots = snapshot.slots.into_iter();
        for d in snapshot.docs {
            let at: Vec<u32> = slots.by_ref().take(d.chunks.len()).collect();
            c.insert_at(d, Some(&at));
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

    /// Every document with its chunks, sorted by id, at their slots: the content of a snapshot.
    pub fn to_snapshot(&self, seq: u64) -> Snapshot {
        let mut ids: Vec<&String> = self.docs.keys().collect();
        ids.sort();
        let slots = ids
            .iter()
            .flat_map(|id| self.docs[*id].slots.iter().copied())
            .collect();
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
        Snapshot {
            seq,
            slot_epoch: self.slot_epoch,
            next_slot: self.vectors.next_slot(),
            docs,
            slots,
        }
    }

    /// [`Contents::to_snapshot`] with slots renumbered densely in a new epoch: what a compaction
    /// writes when deleted slots outnumber live ones.
    pub fn to_dense_snapshot(&self, seq: u64) -> Snapshot {
        let s = self.to_snapshot(seq);
        Snapshot::dense(seq, self.slot_epoch + 1, s.docs)
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
        self.insert_at(d, None);
    }

    /// Stores `d` with its chunks at slots `at` (from a snapshot), or at the next free slots.
    fn insert_at(&mut self, d: IndexedDocument, at: Option<&[u32]>) {
        let id: Arc<str> = Arc::from(d.document.id.as_str());
        let mut slots = Vec::with_capacity(d.chunks.len());
        for (ordinal, chunk) in d.chunks.into_iter().enumerate() {
            let slot = match at.and_then(|at| at.get(ordinal)) {
                Some(&slot) => {
                    self.vectors.insert_at(slot, &chunk.vector);
                    slot
                }
                None => self.vectors.push(&chunk.vector),
            };
            if self.slots.len() <= slot as usize {
                self.slots.resize_with(slot as usize + 1, || None);
            }
            self.slots[slot as usize] = Some(SlotInfo {
                doc_id: id.clone(),
                ordinal: ordinal as u32,
                text: chunk.text,
            });
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
