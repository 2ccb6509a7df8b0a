//! Failure paths of the local backend that need access to its internals.

use super::*;
use crate::document::{Chunk, IndexedDocument};
use crate::manifest::{ChunkingConfig, EmbeddingModelInfo};

fn manifest() -> Manifest {
    Manifest {
        format: FORMAT_VERSION,
        embedding: EmbeddingModelInfo {
            name: "m".into(),
            fingerprint: "f".into(),
            dim: 2,
        },
        chunking: ChunkingConfig {
            max_tokens: 8,
            overlap_tokens: 1,
        },
    }
}

fn doc(id: &str, chunks: &[&str]) -> Operation {
    Operation::Upsert(IndexedDocument {
        document: Document {
            id: id.into(),
            text: chunks.join(" "),
            title: None,
            metadata: None,
        },
        chunks: chunks
            .iter()
            .map(|t| Chunk {
                text: (*t).into(),
                vector: vec![1.0, 0.0],
            })
            .collect(),
    })
}

/// A BM25 failure in the middle of a commit (after the batch is durable) must not leave the
/// open handle serving a half-applied batch: it refuses everything until reopened, and the
/// reopened collection has the whole batch in every part.
#[test]
fn a_failed_bm25_write_makes_the_handle_unusable_until_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let mut c =
        LocalCollection::open_or_create(dir.path(), manifest(), AnnParams::default()).unwrap();
    c.commit(vec![doc("a", &["alpha words"])]).unwrap();
    c.fail_bm25_add_after = Some(1);
    let err = c
        .commit(vec![
            doc("b", &["beta words", "gamma words"]),
            doc("a", &["delta"]),
        ])
        .unwrap_err();
    assert!(matches!(err, IndexError::Bm25(_)), "{err}");
    for e in [
        c.len().unwrap_err(),
        c.keyword_search("beta", 10).unwrap_err(),
        c.dense_search(&[1.0, 0.0], 10).unwrap_err(),
        c.commit(vec![doc("c", &["x"])]).unwrap_err(),
    ] {
        assert!(matches!(e, IndexError::Unusable { .. }), "{e}");
    }
    drop(c);
    let c = LocalCollection::open(dir.path(), OpenMode::Write, AnnParams::default()).unwrap();
    c.verify().unwrap();
    assert_eq!(c.seq().unwrap(), 2);
    assert_eq!(c.len().unwrap(), 2);
    let hits = c.keyword_search("gamma", 10).unwrap();
    assert_eq!(hits[0].doc_id, "b");
    assert!(c.keyword_search("alpha", 10).unwrap().is_empty());
}
