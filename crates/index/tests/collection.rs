//! Collection storage with synthetic vectors: upsert, delete, reopen, crash repair, ANN recall.

use std::path::Path;

use sift_index::local::{AnnParams, LocalCollection, OpenMode};
use sift_index::{
    Chunk, ChunkingConfig, CollectionBackend, Document, EmbeddingModelInfo, IndexError,
    IndexedDocument, Manifest, Operation,
};

const DIM: usize = 8;

fn manifest(fingerprint: &str, dim: usize) -> Manifest {
    Manifest {
        format: 1,
        embedding: EmbeddingModelInfo {
            name: "test-model".into(),
            fingerprint: fingerprint.into(),
            dim,
            path: None,
        },
        chunking: Some(ChunkingConfig {
            max_tokens: 128,
            overlap_tokens: 16,
        }),
        analyzer: sift_index::Analyzer::English,
        bm25: Default::default(),
    }
}

fn open(dir: &Path) -> LocalCollection {
    LocalCollection::open_or_create(dir, manifest("fp", DIM), AnnParams::default()).unwrap()
}

fn vector(seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..DIM)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 2000) as f32 / 1000.0 - 1.0
        })
        .collect()
}

fn doc(id: &str, text: &str, seed: u64) -> Operation {
    Operation::Upsert(IndexedDocument {
        document: Document {
            id: id.into(),
            text: text.into(),
            title: None,
            metadata: None,
        },
        chunks: vec![Chunk {
            text: text.into(),
            vector: vector(seed),
        }],
    })
}

#[test]
fn upsert_delete_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = open(dir.path());
    c.commit(vec![
        doc("a", "alpha particles", 1),
        doc("b", "beta decay", 2),
        doc("c", "gamma rays", 3),
    ])
    .unwrap();
    assert_eq!(c.len().unwrap(), 3);
    // Upsert replaces, delete removes, both visible to both legs.
    c.commit(vec![
        doc("a", "alpha helix proteins", 4),
        Operation::Delete("b".into()),
    ])
    .unwrap();
    assert_eq!(c.len().unwrap(), 2);
    assert!(c.keyword_search("decay", 10).unwrap().is_empty());
    assert_eq!(c.keyword_search("helix", 10).unwrap()[0].doc_id, "a");
    assert_eq!(c.dense_search(&vector(4), 1).unwrap()[0].doc_id, "a");
    c.verify().unwrap();
    drop(c);

    let mut c = open(dir.path());
    assert_eq!(c.len().unwrap(), 2);
    assert_eq!(
        c.documents(&["a"]).unwrap()[0].as_ref().unwrap().text,
        "alpha helix proteins"
    );
    c.verify().unwrap();
    c.compact().unwrap();
    c.verify().unwrap();
    drop(c);
    let c = open(dir.path());
    assert_eq!(c.len().unwrap(), 2);
    assert_eq!(c.dense_search(&vector(3), 1).unwrap()[0].doc_id, "c");
    c.verify().unwrap();
}

#[test]
fn bad_batches_are_rejected_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = open(dir.path());
    let err = c
        .commit(vec![doc("x", "one", 1), doc("x", "two", 2)])
        .unwrap_err();
    assert!(err.to_string().contains("twice"), "{err}");
    let wrong_dim = Operation::Upsert(IndexedDocument {
        document: Document {
            id: "y".into(),
            text: "t".into(),
            title: None,
            metadata: None,
        },
        chunks: vec![Chunk {
            text: "t".into(),
            vector: vec![1.0; DIM + 1],
        }],
    });
    assert!(matches!(
        c.commit(vec![doc("z", "ok", 1), wrong_dim]),
        Err(IndexError::InvalidInput(_))
    ));
    let nan = Operation::Upsert(IndexedDocument {
        document: Document {
            id: "n".into(),
            text: "t".into(),
            title: None,
            metadata: None,
        },
        chunks: vec![Chunk {
            text: "t".into(),
            vector: vec![f32::NAN; DIM],
        }],
    });
    assert!(matches!(
        c.commit(vec![nan]),
        Err(IndexError::InvalidInput(_))
    ));
    assert_eq!(c.len().unwrap(), 0, "nothing of a rejected batch is stored");
    assert_eq!(c.seq().unwrap(), 0);
}

#[test]
fn a_second_writer_and_another_model_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path());
    assert!(matches!(
        LocalCollection::open(dir.path(), OpenMode::Write, AnnParams::default()),
        Err(IndexError::Locked { .. })
    ));
    drop(c);
    let err =
        LocalCollection::open_or_create(dir.path(), manifest("other", DIM), AnnParams::default())
            .err()
            .unwrap();
    assert!(matches!(err, IndexError::ModelMismatch { .. }), "{err}");
    assert!(matches!(
        LocalCollection::open(
            &dir.path().join("nope"),
            OpenMode::Write,
            AnnParams::default()
        ),
        Err(IndexError::NotACollection(_))
    ));
}

#[test]
fn stale_or_broken_derived_indexes_are_rebuilt_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = open(dir.path());
    c.commit(vec![doc("a", "alpha", 1)]).unwrap();
    c.compact().unwrap();
    c.commit(vec![doc("b", "beta", 2)]).unwrap();
    drop(c);
    // A crash before the BM25 commit: simulate by wiping the BM25 index entirely.
    std::fs::remove_dir_all(dir.path().join("bm25")).unwrap();
    let c = open(dir.path());
    c.verify().unwrap();
    assert_eq!(c.keyword_search("beta", 5).unwrap()[0].doc_id, "b");
    assert_eq!(c.len().unwrap(), 2);
}

/// HNSW must find what exact search finds: recall@10 ≥ 0.95 on 20,000 clustered vectors
/// (embeddings of real text are clustered, not uniform) — after a bulk build, after inserts,
/// deletes and replacements applied to the graph in place (no compaction), and after reopening
/// with a graph file older than the log (repaired, not rebuilt).
#[test]
fn ann_recall_at_10_against_exact_search() {
    const DIM: usize = 64;
    const N: usize = 20_000;
    let mut rng = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng >> 11) as f32 / (1u64 << 53) as f32 - 0.5
    };
    let centres: Vec<Vec<f32>> = (0..200)
        .map(|_| (0..DIM).map(|_| next()).collect())
        .collect();
    let mut point = |i: usize| -> Vec<f32> {
        centres[i % centres.len()]
            .iter()
            .map(|c| c + 0.35 * next())
            .collect()
    };
    let upsert = |id: String, vector: Vec<f32>| {
        Operation::Upsert(IndexedDocument {
            document: Document {
                id: id.clone(),
                text: id.clone(),
                title: None,
                metadata: None,
            },
            chunks: vec![Chunk { text: id, vector }],
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let params = AnnParams {
        exact_below: 10_000,
        ..AnnParams::default()
    };
    let mut c = LocalCollection::open_or_create(dir.path(), manifest("fp", DIM), params).unwrap();
    let mut ops = Vec::new();
    for i in 0..N {
        ops.push(upsert(format!("d{i}"), point(i)));
        if ops.len() == 2_000 {
            c.commit(std::mem::take(&mut ops)).unwrap();
        }
    }
    c.compact().unwrap();
    assert!(c.uses_ann());
    drop(c);
    let queries: Vec<Vec<f32>> = (0..200).map(|q| point(q * 7 + 3)).collect();
    let recall = |c: &LocalCollection| {
        let mut found = 0;
        for query in &queries {
            let exact: Vec<String> = c
                .exact_dense_search(query, 10)
                .unwrap()
                .into_iter()
                .map(|h| h.doc_id)
                .collect();
            let ann: Vec<String> = c
                .dense_search(query, 10)
                .unwrap()
                .into_iter()
                .map(|h| h.doc_id)
                .collect();
            found += exact.iter().filter(|id| ann.contains(id)).count();
        }
        found as f64 / (queries.len() * 10) as f64
    };
    let mut c = LocalCollection::open(dir.path(), OpenMode::Write, params).unwrap();
    assert!(c.uses_ann(), "the graph is loaded from disk, not rebuilt");
    let built = recall(&c);
    eprintln!("ANN recall@10 after a bulk build: {built:.4}");
    assert!(built >= 0.95, "recall@10 {built}");

    // In place: 5,000 new documents, 5,000 deleted, 2,000 replaced by new vectors.
    for batch in 0..5 {
        let mut ops: Vec<Operation> = (0..1_000)
            .map(|j| {
                let i = N + batch * 1_000 + j;
                upsert(format!("d{i}"), point(i))
            })
            .collect();
        ops.extend((0..1_000).map(|j| Operation::Delete(format!("d{}", (batch * 1_000 + j) * 3))));
        ops.extend((0..400).map(|j| {
            let i = (batch * 400 + j) * 3 + 1;
            upsert(format!("d{i}"), point(i + 7))
        }));
        c.commit(ops).unwrap();
    }
    assert!(c.uses_ann(), "updates keep the graph");
    let updated = recall(&c);
    eprintln!("ANN recall@10 after in-place inserts and deletes: {updated:.4}");
    assert!(updated >= 0.95, "recall@10 {updated}");
    c.verify().unwrap();
    drop(c);

    // ann.bin reflects the compaction, the log five batches more: the open repairs the graph.
    let started = std::time::Instant::now();
    let c = LocalCollection::open(dir.path(), OpenMode::Write, params).unwrap();
    let open_ms = started.elapsed().as_millis();
    assert!(c.uses_ann());
    let reopened = recall(&c);
    eprintln!("ANN recall@10 after reopening: {reopened:.4} (open {open_ms} ms)");
    assert!(reopened >= 0.95, "recall@10 {reopened}");
    assert_eq!(c.len().unwrap(), N);
    c.verify().unwrap();
}

#[test]
fn readers_share_a_collection_and_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = open(dir.path());
    c.commit(vec![doc("a", "alpha", 1)]).unwrap();
    drop(c);
    let r1 = LocalCollection::open(dir.path(), OpenMode::ReadOnly, AnnParams::default()).unwrap();
    let mut r2 =
        LocalCollection::open(dir.path(), OpenMode::ReadOnly, AnnParams::default()).unwrap();
    assert_eq!(r1.keyword_search("alpha", 3).unwrap().len(), 1);
    assert!(matches!(
        r2.commit(vec![doc("b", "beta", 2)]),
        Err(IndexError::InvalidInput(_))
    ));
    assert!(matches!(
        LocalCollection::open(dir.path(), OpenMode::Write, AnnParams::default()),
        Err(IndexError::Locked { .. })
    ));
    drop((r1, r2));
    // A reader that finds a stale BM25 index asks for recovery; the writer repairs it.
    let mut c = open(dir.path());
    c.commit(vec![doc("b", "beta", 2)]).unwrap();
    drop(c);
    std::fs::remove_dir_all(dir.path().join("bm25")).unwrap();
    assert!(matches!(
        LocalCollection::open(dir.path(), OpenMode::ReadOnly, AnnParams::default()),
        Err(IndexError::NeedsRecovery(_))
    ));
    let c = LocalCollection::open(dir.path(), OpenMode::Search, AnnParams::default()).unwrap();
    c.verify().unwrap();
    assert_eq!(c.len().unwrap(), 2);
}

/// A manifest written before analyzers and BM25's parameters were recorded reads as English
/// with Lucene's k1 and b (what it was scored with), and a keyword index cut by another
/// analyzer than the manifest's is rebuilt from the log when the collection opens.
#[test]
fn a_manifest_without_an_analyzer_is_english_and_a_mismatched_index_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let mut neutral = manifest("fp", DIM);
    neutral.analyzer = sift_index::Analyzer::Neutral;
    let mut c = LocalCollection::open_or_create(dir.path(), neutral, AnnParams::default()).unwrap();
    c.commit(vec![doc("a", "vaccinations were delayed", 1)])
        .unwrap();
    assert!(c.keyword_search("vaccination", 10).unwrap().is_empty());
    drop(c);
    let path = dir.path().join("collection.json");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    json.as_object_mut().unwrap().remove("analyzer");
    json.as_object_mut().unwrap().remove("bm25");
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    let c = LocalCollection::open(dir.path(), OpenMode::Search, AnnParams::default()).unwrap();
    assert_eq!(c.manifest().analyzer, sift_index::Analyzer::English);
    assert_eq!(c.manifest().bm25, sift_index::Bm25Params::LUCENE);
    let hits = c.keyword_search("vaccination delay", 10).unwrap();
    assert_eq!(hits.len(), 1, "rebuilt with the English stemmer");
    c.verify().unwrap();
}
