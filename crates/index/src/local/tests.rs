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
            path: None,
        },
        chunking: Some(ChunkingConfig {
            max_tokens: 8,
            overlap_tokens: 1,
        }),
        analyzer: crate::Analyzer::English,
        bm25: Default::default(),
    }
}

/// The top 5 documents of a dense search equal exact search's, in order.
fn assert_graph_search_is_exact(c: &LocalCollection, q: &[f32], case: &str) {
    let ids = |hits: Vec<ChunkHit>| -> Vec<String> { hits.into_iter().map(|h| h.doc_id).collect() };
    let got = ids(c.dense_search(q, 5).unwrap());
    let want = ids(c.exact_dense_search(q, 5).unwrap());
    assert_eq!(got, want, "{case}");
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

/// Point `i` of the unit circle walked `step` radians at a time: 2-D vectors that crowd each
/// other, so graph search is compared with exact search one result at a time.
fn on_circle(i: usize, step: f32) -> Vec<f32> {
    let a = i as f32 * step;
    vec![a.cos(), a.sin()]
}

/// Document `id` whose one chunk is its whole `text`, embedded as `vector`.
fn one_chunk_doc(id: String, text: String, vector: Vec<f32>) -> Operation {
    Operation::Upsert(IndexedDocument {
        document: Document {
            id,
            text: text.clone(),
            title: None,
            metadata: None,
        },
        chunks: vec![Chunk { text, vector }],
    })
}

/// A graph from `exact_below` live vectors on, storing f32: on 2-D vectors that crowd each other
/// int8 rounding ties could reorder results, so these tests, which compare graph and exact
/// search result for result, use f32 (int8 recall is measured in tests/collection.rs).
fn f32_graph(exact_below: usize) -> AnnParams {
    AnnParams {
        exact_below,
        quantization: super::Quantization::F32,
        ..AnnParams::default()
    }
}

/// A collection in `dir` holding batch 1, then batch 2 committed while BM25 adds fail as
/// `failpoint` says (adds to let pass, then adds to fail); batch 2 must still be acknowledged.
fn commit_while_bm25_fails(dir: &Path, failpoint: (usize, usize)) -> LocalCollection {
    let mut c = LocalCollection::open_or_create(dir, manifest(), AnnParams::default()).unwrap();
    c.commit(vec![doc("a", &["alpha words"])]).unwrap();
    c.bm25_failpoint = failpoint;
    let seq = c
        .commit(vec![
            doc("b", &["beta words", "gamma words"]),
            doc("a", &["delta"]),
        ])
        .unwrap();
    assert_eq!(seq, 2);
    c
}

/// A BM25 failure in the middle of a commit comes after the batch is durable: the batch is
/// committed (and answered so), the keyword index is rebuilt from memory at once, and every
/// part agrees, open or reopened.
#[test]
fn a_failed_bm25_write_is_repaired_and_the_batch_stays_committed() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = commit_while_bm25_fails(dir.path(), (1, 1));
    let check = |c: &LocalCollection| {
        c.verify().unwrap();
        assert_eq!(c.seq().unwrap(), 2);
        assert_eq!(c.len().unwrap(), 2);
        assert_eq!(c.keyword_search("gamma", 10).unwrap()[0].doc_id, "b");
        assert_eq!(c.keyword_search("delta", 10).unwrap()[0].doc_id, "a");
        assert!(c.keyword_search("alpha", 10).unwrap().is_empty());
    };
    check(&c);
    c.commit(vec![doc("c", &["epsilon"])]).unwrap();
    assert_eq!(c.keyword_search("epsilon", 10).unwrap()[0].doc_id, "c");
    drop(c);
    let c = LocalCollection::open(dir.path(), OpenMode::Write, AnnParams::default()).unwrap();
    c.verify().unwrap();
    assert_eq!(c.seq().unwrap(), 3);
}

/// When the rebuild fails too, the batch is still committed, but the handle refuses everything
/// until reopened (it cannot serve keyword results the log does not describe); reopening
/// replays the log and has the whole batch in every part.
#[test]
fn a_bm25_index_that_cannot_be_rebuilt_makes_the_handle_unusable_until_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = commit_while_bm25_fails(dir.path(), (1, usize::MAX));
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
    assert_eq!(c.keyword_search("gamma", 10).unwrap()[0].doc_id, "b");
    assert!(c.keyword_search("alpha", 10).unwrap().is_empty());
}

/// A long-lived writer's log stays bounded: 200 updates of one document (the repro grew
/// the log from 60 KB to 955 KB) compact whenever the log passes the policy's floor and ratio,
/// and nothing changes for readers.
#[test]
fn the_log_of_a_long_lived_writer_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut c =
        LocalCollection::open_or_create(dir.path(), manifest(), AnnParams::default()).unwrap();
    let policy = CompactionPolicy {
        min_log_bytes: 16 << 10,
        log_to_snapshot: 0.5,
    };
    c.set_compaction_policy(policy);
    let mut compactions = 0;
    let mut largest = 0;
    for i in 0..200 {
        let text = format!("version {i} {}", "of the same document ".repeat(10));
        c.commit(vec![doc("a", &[text.as_str()])]).unwrap();
        largest = largest.max(c.log_bytes());
        if c.compact_if_due().unwrap() {
            compactions += 1;
        }
    }
    assert!(compactions > 0);
    // One record past the floor at most.
    assert!(
        largest < policy.min_log_bytes + 1024,
        "log reached {largest} bytes"
    );
    assert_eq!(c.len().unwrap(), 1);
    assert_eq!(
        c.documents(&["a"]).unwrap()[0].as_ref().unwrap().text,
        format!("version 199 {}", "of the same document ".repeat(10))
    );
    c.verify().unwrap();
    drop(c);
    let c = LocalCollection::open(dir.path(), OpenMode::ReadOnly, AnnParams::default()).unwrap();
    assert_eq!(c.seq().unwrap(), 200);
    c.verify().unwrap();
}

/// With an HNSW graph in use, batches committed while a compaction job ran are replayed onto
/// the compacted slots: graph search finds what exact search finds, the same after reopening
/// (where the graph is read from ann.bin and the log replayed over it).
#[test]
fn a_split_compaction_keeps_the_graph_consistent_with_later_commits() {
    let dir = tempfile::tempdir().unwrap();
    let ann = f32_graph(10);
    let vector = |i: usize| on_circle(i, 0.37);
    let upsert = |id: String, i: usize| one_chunk_doc(id, format!("chunk {i}"), vector(i));
    let mut c = LocalCollection::open_or_create(dir.path(), manifest(), ann).unwrap();
    c.commit((0..40).map(|i| upsert(format!("d{i}"), i)).collect())
        .unwrap();
    let mut job = c.begin_compaction(false).unwrap().unwrap();
    // While the job runs: deletes and replacements of copied documents, and new ones.
    c.commit(
        (0..10)
            .map(|i| Operation::Delete(format!("d{i}")))
            .chain((10..15).map(|i| upsert(format!("d{i}"), i + 100)))
            .collect(),
    )
    .unwrap();
    job.run().unwrap();
    c.commit((40..50).map(|i| upsert(format!("d{i}"), i)).collect())
        .unwrap();
    c.finish_compaction(job).unwrap();
    assert!(c.uses_ann());
    let same = |c: &LocalCollection, when: &str| {
        for i in 0..60 {
            assert_graph_search_is_exact(c, &vector(i * 7), &format!("{when}, query {i}"));
        }
        assert_eq!(c.contents.docs.len(), 40, "{when}");
        c.verify().unwrap();
    };
    same(&c, "after finishing");
    drop(c);
    let c = LocalCollection::open(dir.path(), OpenMode::ReadOnly, ann).unwrap();
    assert!(c.uses_ann());
    same(&c, "reopened");
}

/// When deleted slots outnumber live ones, compaction renumbers slots densely in a new epoch and
/// rebuilds the graph; a graph file left from the old epoch (a crash between writing the
/// snapshot and the graph) is recognised as foreign and rebuilt, never read with the new slots.
#[test]
fn a_renumbering_compaction_starts_a_new_slot_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let ann = f32_graph(100);
    let vector = |i: usize| on_circle(i, 0.013);
    let upsert = |i: usize| one_chunk_doc(format!("d{i}"), format!("chunk {i}"), vector(i));
    let mut c = LocalCollection::open_or_create(dir.path(), manifest(), ann).unwrap();
    c.commit((0..3_000).map(upsert).collect()).unwrap();
    c.compact().unwrap();
    assert!(c.uses_ann());
    assert_eq!(c.contents.slot_epoch, 0);
    let old_graph = std::fs::read(dir.path().join("ann.bin")).unwrap();
    c.commit(
        (0..2_500)
            .map(|i| Operation::Delete(format!("d{i}")))
            .collect(),
    )
    .unwrap();
    assert_eq!(c.contents.vectors.dead(), 2_500);
    c.compact().unwrap();
    assert_eq!(c.contents.slot_epoch, 1);
    assert!(
        !vector_file::path(dir.path(), 0).exists(),
        "the old epoch's file is removed"
    );
    assert_eq!(c.contents.vectors.file().rows(), 500);
    assert_eq!(
        c.contents.vectors.next_slot(),
        500,
        "slots renumbered densely"
    );
    let same = |c: &LocalCollection, when: &str| {
        c.verify().unwrap();
        assert!(c.uses_ann(), "{when}");
        for i in (0..3_000).step_by(97) {
            assert_graph_search_is_exact(c, &vector(i), &format!("{when}, query {i}"));
        }
    };
    same(&c, "after compacting");
    drop(c);
    let c = LocalCollection::open(dir.path(), OpenMode::Write, ann).unwrap();
    same(&c, "reopened");
    drop(c);
    // The old epoch's graph put back: its slot numbers name other vectors now.
    std::fs::write(dir.path().join("ann.bin"), &old_graph).unwrap();
    let c = LocalCollection::open(dir.path(), OpenMode::Write, ann).unwrap();
    same(&c, "with the old epoch's graph file");
}

/// Compaction jobs that ran but were never finished (the job dropped, or its finish failed):
/// the handle's idea of the vector file is then behind the disk's. Later compactions — keeping
/// slots, then renumbering, then keeping again — rewrite rows with the same bytes and renumber
/// into unused epochs, so the collection on disk is whole after each: a copy of the directory
/// taken then (what a crash would leave) opens to the same contents.
#[test]
fn compactions_after_an_unfinished_one_keep_the_files_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let ann = f32_graph(20);
    let vector = |i: usize| on_circle(i, 0.021);
    let upsert = |i: usize| one_chunk_doc(format!("d{i}"), format!("chunk {i}"), vector(i));
    let reopened_is_same = |c: &LocalCollection, when: &str| {
        c.verify().unwrap();
        let copy = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
            }
        }
        // The keyword index is left out: it is derived, and rebuilt from the log.
        let r = LocalCollection::open(copy.path(), OpenMode::Write, ann);
        let r = r.unwrap_or_else(|e| panic!("{when}: {e}"));
        r.verify().unwrap();
        assert_eq!(r.len().unwrap(), c.len().unwrap(), "{when}");
        for i in (0..2_100).step_by(37) {
            let q = vector(i);
            let hits = |c: &LocalCollection| -> Vec<String> {
                c.exact_dense_search(&q, 3)
                    .unwrap()
                    .into_iter()
                    .map(|h| h.doc_id)
                    .collect()
            };
            assert_eq!(hits(&r), hits(c), "{when}, query {i}");
        }
    };
    let mut c = LocalCollection::open_or_create(dir.path(), manifest(), ann).unwrap();
    c.commit((0..1_500).map(upsert).collect()).unwrap();
    let mut unfinished = c.begin_compaction(false).unwrap().unwrap();
    unfinished.run().unwrap();
    drop(unfinished);
    reopened_is_same(&c, "after an unfinished compaction");
    c.commit((1_500..1_600).map(upsert).collect()).unwrap();
    c.compact().unwrap();
    reopened_is_same(&c, "after the next one");

    // An unfinished renumbering, then one that finishes.
    c.commit(
        (0..1_400)
            .map(|i| Operation::Delete(format!("d{i}")))
            .collect(),
    )
    .unwrap();
    c.commit((2_000..2_010).map(upsert).collect()).unwrap();
    let mut unfinished = c.begin_compaction(false).unwrap().unwrap();
    unfinished.run().unwrap();
    drop(unfinished);
    reopened_is_same(&c, "after an unfinished renumbering");
    c.commit((2_010..2_050).map(upsert).collect()).unwrap();
    c.compact().unwrap();
    reopened_is_same(&c, "after a finished renumbering");
    assert_eq!(c.contents.slot_epoch, 2, "epoch 1 was the unfinished job's");
    c.commit((2_050..2_100).map(upsert).collect()).unwrap();
    c.compact().unwrap();
    reopened_is_same(&c, "after keeping slots again");
    let files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("vectors-"))
        .collect();
    assert_eq!(files, ["vectors-2.f32"]);
}

/// A snapshot written before vector files (vectors inline, `SIFTSNP3`) opens to the same
/// contents, and the next compaction moves its vectors to a vector file.
#[test]
fn a_snapshot_with_inline_vectors_is_read_and_moved_to_a_vector_file() {
    let dir = tempfile::tempdir().unwrap();
    let ann = AnnParams::default();
    let mut c = LocalCollection::open_or_create(dir.path(), manifest(), ann).unwrap();
    c.commit(vec![
        doc("a", &["alpha words", "beta words"]),
        doc("b", &["gamma"]),
        doc("c", &["delta"]),
    ])
    .unwrap();
    c.commit(vec![Operation::Delete("b".into())]).unwrap();
    c.compact().unwrap();
    // The same contents as the previous format held them, slots and all.
    let docs: Vec<IndexedDocument> = ["a", "c"]
        .iter()
        .map(|id| {
            let d = &c.contents.docs[*id];
            IndexedDocument {
                document: Document::clone(&d.document),
                chunks: d
                    .slots
                    .iter()
                    .zip(c.contents.chunk_texts(d))
                    .map(|(&slot, text)| Chunk {
                        text: text.to_owned(),
                        vector: c.contents.vectors.get(slot).unwrap().to_vec(),
                    })
                    .collect(),
            }
        })
        .collect();
    let slots = ["a", "c"]
        .iter()
        .flat_map(|id| c.contents.docs[*id].slots.clone())
        .collect();
    let old = snapshot::SnapshotWithVectors {
        seq: c.seq,
        slot_epoch: 0,
        next_slot: c.contents.vectors.next_slot(),
        docs,
        slots,
    };
    drop(c);
    snapshot::write_snapshot_with_vectors(&dir.path().join("snapshot.bin"), &old);
    std::fs::remove_file(vector_file::path(dir.path(), 0)).unwrap();

    let check = |c: &LocalCollection| {
        c.verify().unwrap();
        assert_eq!(c.len().unwrap(), 2);
        assert_eq!(c.contents.chunk_text("a", 1), Some("beta words"));
        assert_eq!(c.dense_search(&[1.0, 0.0], 5).unwrap().len(), 3);
        assert_eq!(c.keyword_search("gamma", 5).unwrap().len(), 0);
        assert_eq!(c.keyword_search("delta", 5).unwrap()[0].doc_id, "c");
    };
    let mut c = LocalCollection::open(dir.path(), OpenMode::Write, ann).unwrap();
    check(&c);
    assert_eq!(c.contents.vectors.file().rows(), 0, "vectors read inline");
    c.commit(vec![doc("d", &["epsilon"])]).unwrap();
    c.compact().unwrap();
    assert_eq!(c.contents.vectors.file().rows(), 5);
    drop(c);
    let c = LocalCollection::open(dir.path(), OpenMode::ReadOnly, ann).unwrap();
    assert_eq!(c.len().unwrap(), 3);
    assert_eq!(c.contents.vectors.file().rows(), 5);
    assert_eq!(c.contents.chunk_text("d", 0), Some("epsilon"));
    c.verify().unwrap();
}

/// A reader views a current graph in place (no copy) and answers as the writer does; when
/// batches were logged after the graph was saved it loads a copy and repairs it in memory.
#[test]
fn readers_view_a_current_graph_in_place_and_repair_a_stale_one_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let ann = f32_graph(100);
    let vector = |i: usize| on_circle(i, 0.013);
    let upsert = |i: usize| one_chunk_doc(format!("d{i}"), format!("chunk {i}"), vector(i));
    let is_view = |c: &LocalCollection| c.contents.vectors.graph().is_some_and(|g| g.is_view());
    let answers = |c: &LocalCollection| -> Vec<Vec<String>> {
        (0..400)
            .step_by(13)
            .map(|i| {
                let hits = c.dense_search(&vector(i), 5).unwrap();
                hits.into_iter().map(|h| h.doc_id).collect()
            })
            .collect()
    };
    let mut c = LocalCollection::open_or_create(dir.path(), manifest(), ann).unwrap();
    c.commit((0..300).map(upsert).collect()).unwrap();
    c.compact().unwrap();
    assert!(!is_view(&c), "the writer owns its graph");
    let want = answers(&c);
    drop(c);
    let r = LocalCollection::open(dir.path(), OpenMode::ReadOnly, ann).unwrap();
    assert!(is_view(&r), "a current graph is viewed in place");
    assert_eq!(answers(&r), want);
    r.verify().unwrap();
    drop(r);

    let mut c = LocalCollection::open(dir.path(), OpenMode::Write, ann).unwrap();
    c.commit((300..400).map(upsert).collect()).unwrap();
    let want = answers(&c);
    drop(c);
    let r = LocalCollection::open(dir.path(), OpenMode::ReadOnly, ann).unwrap();
    assert!(r.uses_ann());
    assert!(
        !is_view(&r),
        "a graph behind the log is loaded and repaired"
    );
    assert_eq!(answers(&r), want);
    r.verify().unwrap();
}
