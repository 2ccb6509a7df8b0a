//! The conformance suite: what every [`CollectionBackend`] must do, as one set of checks run
//! against each implementation (the local backend's run is `tests/conformance.rs`; a database
//! backend runs the same [`run_all`] against its own addresses).
//!
//! Each check panics (with the check's name and the difference) when the backend breaks the
//! contract written on [`CollectionBackend`]; it is meant to be called from a `#[test]`.

use crate::analysis::Analyzer;
use crate::backend::CollectionBackend;
use crate::document::{Chunk, Document, IndexedDocument, Operation};
use crate::error::IndexError;
use crate::manifest::{Bm25Params, ChunkingConfig, EmbeddingModelInfo, Manifest, FORMAT_VERSION};
use crate::store::{self, Access, Location};

/// Dimension of the suite's vectors.
pub const DIM: usize = 4;

/// The manifest the suite creates collections with (a made-up model).
pub fn manifest(fingerprint: &str) -> Manifest {
    Manifest {
        format: FORMAT_VERSION,
        embedding: EmbeddingModelInfo {
            name: format!("conformance-{fingerprint}"),
            fingerprint: fingerprint.into(),
            dim: DIM,
            path: None,
        },
        chunking: Some(ChunkingConfig {
            max_tokens: 64,
            overlap_tokens: 8,
        }),
        analyzer: Analyzer::English,
        bm25: Default::default(),
    }
}

fn unit(v: [f32; DIM]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

/// A document whose chunks point along the given axes (one chunk per axis).
pub fn upsert(id: &str, title: Option<&str>, chunks: &[(&str, usize)]) -> Operation {
    Operation::Upsert(IndexedDocument {
        document: Document {
            id: id.into(),
            text: chunks.iter().map(|c| c.0).collect::<Vec<_>>().join(" "),
            title: title.map(str::to_owned),
            metadata: Some(serde_json::json!({"id": id})),
        },
        chunks: chunks
            .iter()
            .map(|&(text, axis)| {
                let mut v = [0.05; DIM];
                v[axis % DIM] = 1.0;
                Chunk {
                    text: text.into(),
                    vector: unit(v),
                }
            })
            .collect(),
    })
}

fn document(op: &Operation) -> Document {
    match op {
        Operation::Upsert(d) => d.document.clone(),
        Operation::Delete(_) => unreachable!("the suite builds upserts only here"),
    }
}

fn ids(hits: &[crate::ChunkHit]) -> Vec<&str> {
    hits.iter().map(|h| h.doc_id.as_str()).collect()
}

/// Runs every check; `fresh()` must return a location where no collection exists yet (a new
/// one per call).
pub fn run_all(fresh: &mut dyn FnMut() -> Location) {
    upserts_are_visible_at_once_and_numbered(&fresh());
    upsert_replaces_every_chunk(&fresh());
    deletes_remove_from_both_legs(&fresh());
    bad_batches_are_refused_whole(&fresh());
    committed_batches_survive_reopening(&fresh());
    commits_during_a_compaction_are_kept(&fresh());
    search_orders_best_first(&fresh());
    another_model_is_refused(&fresh());
    reads_are_batched_in_request_order(&fresh());
    export_gives_back_every_document_with_its_chunks(&fresh());
    the_analyzer_is_the_manifests_and_can_change(&fresh());
    bm25_parameters_are_the_manifests_and_can_change(&fresh());
}

fn create(location: &Location) -> Box<dyn CollectionBackend> {
    store::open_or_create(location, manifest("m1")).expect("creating a collection")
}

/// Sequence numbers start at 1, grow by one per non-empty batch; empty batches write nothing;
/// a commit is visible to the same handle when it returns.
pub fn upserts_are_visible_at_once_and_numbered(location: &Location) {
    let mut c = create(location);
    assert_eq!(c.seq().unwrap(), 0, "a new collection is at batch 0");
    assert!(c.is_empty().unwrap());
    let a = upsert("a", Some("Penguins"), &[("penguins live in the south", 0)]);
    assert_eq!(c.commit(vec![a.clone()]).unwrap(), 1);
    assert_eq!(
        c.commit(Vec::new()).unwrap(),
        1,
        "an empty batch is no batch"
    );
    let b = upsert("b", None, &[("glaciers melt", 1)]);
    assert_eq!(c.commit(vec![b]).unwrap(), 2);
    assert_eq!(c.seq().unwrap(), 2);
    assert_eq!(c.len().unwrap(), 2);
    let docs = c.documents(&["a", "zzz"]).unwrap();
    assert_eq!(docs[0].as_ref(), Some(&document(&a)));
    assert_eq!(docs[1], None);
    let mut changed = document(&a);
    changed.text.push('!');
    assert_eq!(
        c.unchanged(&[&document(&a), &changed]).unwrap(),
        vec![true, false],
        "unchanged compares the whole content"
    );
    assert_eq!(ids(&c.keyword_search("penguin", 10).unwrap()), vec!["a"]);
    c.verify().unwrap();
}

/// An upsert of a stored id replaces its document and all its chunks in both legs.
pub fn upsert_replaces_every_chunk(location: &Location) {
    let mut c = create(location);
    c.commit(vec![upsert(
        "a",
        None,
        &[("volcanoes erupt", 0), ("lava flows", 1)],
    )])
    .unwrap();
    c.commit(vec![upsert("a", None, &[("tides rise", 2)])])
        .unwrap();
    assert_eq!(c.len().unwrap(), 1);
    assert!(c.keyword_search("lava", 10).unwrap().is_empty());
    assert_eq!(ids(&c.keyword_search("tides", 10).unwrap()), vec!["a"]);
    let dense = c.dense_search(&unit([0.0, 1.0, 0.0, 0.0]), 10).unwrap();
    assert_eq!(dense.len(), 1, "old chunk vectors are gone: {dense:?}");
    assert_eq!(dense[0].chunk, 0);
    assert!(c.hit_details(&[("a", 1)]).unwrap()[0].is_none());
    c.verify().unwrap();
}

/// A delete removes the document from documents, dense and keyword search; absent ids are
/// no-ops.
pub fn deletes_remove_from_both_legs(location: &Location) {
    let mut c = create(location);
    c.commit(vec![
        upsert("a", None, &[("comets have tails", 0)]),
        upsert("b", None, &[("comets are icy", 1)]),
    ])
    .unwrap();
    c.commit(vec![
        Operation::Delete("a".into()),
        Operation::Delete("never-there".into()),
    ])
    .unwrap();
    assert_eq!(c.len().unwrap(), 1);
    assert_eq!(ids(&c.keyword_search("comets", 10).unwrap()), vec!["b"]);
    let dense = c.dense_search(&unit([1.0, 0.0, 0.0, 0.0]), 10).unwrap();
    assert_eq!(ids(&dense), vec!["b"]);
    assert_eq!(c.documents(&["a"]).unwrap(), vec![None]);
    c.verify().unwrap();
}

/// Every invalid batch is refused as `InvalidInput` and changes nothing.
pub fn bad_batches_are_refused_whole(location: &Location) {
    let mut c = create(location);
    c.commit(vec![upsert("a", None, &[("kept", 0)])]).unwrap();
    let wrong_dim = Operation::Upsert(IndexedDocument {
        document: document(&upsert("w", None, &[])),
        chunks: vec![Chunk {
            text: "w".into(),
            vector: vec![1.0; DIM + 1],
        }],
    });
    let nan = Operation::Upsert(IndexedDocument {
        document: document(&upsert("n", None, &[])),
        chunks: vec![Chunk {
            text: "n".into(),
            vector: vec![f32::NAN; DIM],
        }],
    });
    let no_chunks = upsert("e", None, &[]);
    let empty_id = upsert("", None, &[("x", 0)]);
    let long_id = upsert(&"é".repeat(crate::MAX_ID_BYTES / 2 + 1), None, &[("x", 0)]);
    let good = upsert("g", None, &[("good", 1)]);
    let batches = vec![
        vec![good.clone(), good.clone()],
        vec![good.clone(), wrong_dim],
        vec![good.clone(), nan],
        vec![good.clone(), no_chunks],
        vec![good.clone(), empty_id],
        vec![good.clone(), long_id],
        vec![Operation::Delete("x".repeat(crate::MAX_ID_BYTES + 1))],
    ];
    for (i, batch) in batches.into_iter().enumerate() {
        match c.commit(batch) {
            Err(IndexError::InvalidInput(_)) => {}
            other => panic!("bad batch {i}: expected InvalidInput, got {other:?}"),
        }
    }
    assert_eq!(c.seq().unwrap(), 1);
    assert_eq!(c.len().unwrap(), 1);
    assert!(c.keyword_search("good", 10).unwrap().is_empty());
    assert!(matches!(
        c.dense_search(&[1.0; DIM + 1], 3),
        Err(IndexError::InvalidInput(_))
    ));
    c.verify().unwrap();
    // The longest id allowed works everywhere, deletion included.
    let longest = "x".repeat(crate::MAX_ID_BYTES);
    c.commit(vec![upsert(&longest, None, &[("longest", 2)])])
        .unwrap();
    assert_eq!(
        ids(&c.keyword_search("longest", 3).unwrap()),
        [longest.as_str()]
    );
    c.commit(vec![Operation::Delete(longest.clone())]).unwrap();
    assert!(c.keyword_search("longest", 3).unwrap().is_empty());
    assert_eq!(c.documents(&[&longest]).unwrap(), [None]);
    c.verify().unwrap();
}

/// Everything acknowledged is there after the handle goes away, before and after compaction,
/// for writers and searchers.
pub fn committed_batches_survive_reopening(location: &Location) {
    let mut c = create(location);
    for i in 0..5 {
        c.commit(vec![upsert(
            &format!("d{i}"),
            Some("reef"),
            &[(&format!("coral number{i} bleaching"), i)],
        )])
        .unwrap();
    }
    c.commit(vec![Operation::Delete("d0".into())]).unwrap();
    drop(c);
    let check = |c: &dyn CollectionBackend, when: &str| {
        assert_eq!(c.seq().unwrap(), 6, "{when}");
        assert_eq!(c.len().unwrap(), 4, "{when}");
        assert_eq!(c.keyword_search("coral", 10).unwrap().len(), 4, "{when}");
        assert_eq!(ids(&c.keyword_search("number3", 10).unwrap()), vec!["d3"]);
        assert!(c.documents(&["d0"]).unwrap()[0].is_none(), "{when}");
        c.verify().unwrap();
    };
    let mut c = store::open(location, Access::Write).unwrap();
    check(c.as_ref(), "reopened for writing");
    c.compact_if_due().unwrap();
    check(c.as_ref(), "after compaction when due");
    c.compact().unwrap();
    check(c.as_ref(), "after compaction");
    drop(c);
    let c = store::open(location, Access::Search).unwrap();
    check(c.as_ref(), "reopened for searching after compaction");
}

/// The split compaction: batches committed between `begin_compaction` and
/// `finish_compaction` (upserts, a replacement and a delete of documents the job copied) are
/// all there after it, and after reopening; one compaction at a time per handle, and a job
/// that is dropped unfinished blocks nothing.
pub fn commits_during_a_compaction_are_kept(location: &Location) {
    let mut c = create(location);
    for i in 0..4 {
        c.commit(vec![upsert(
            &format!("d{i}"),
            None,
            &[(&format!("kelp{i} forest"), i)],
        )])
        .unwrap();
    }
    let mut job = c
        .begin_compaction(false)
        .unwrap()
        .expect("there is a log to compact");
    assert!(
        c.begin_compaction(false).unwrap().is_none(),
        "a second compaction while one is in flight"
    );
    c.commit(vec![upsert("d4", None, &[("kelp4 forest", 0)])])
        .unwrap();
    c.commit(vec![
        upsert("d1", None, &[("urchin barren", 1)]),
        Operation::Delete("d2".into()),
    ])
    .unwrap();
    job.run().unwrap();
    // The job's files are on disk; this handle still answers from its own state.
    assert_eq!(c.len().unwrap(), 4);
    c.commit(vec![upsert("d5", None, &[("kelp5 forest", 2)])])
        .unwrap();
    c.finish_compaction(job).unwrap();
    let check = |c: &dyn CollectionBackend, when: &str| {
        assert_eq!(c.seq().unwrap(), 7, "{when}");
        assert_eq!(c.len().unwrap(), 5, "{when}");
        let mut forest = ids(&c.keyword_search("forest", 10).unwrap())
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>();
        forest.sort();
        assert_eq!(forest, ["d0", "d3", "d4", "d5"], "{when}");
        assert_eq!(
            ids(&c.keyword_search("urchin", 10).unwrap()),
            ["d1"],
            "{when}"
        );
        assert!(c.documents(&["d2"]).unwrap()[0].is_none(), "{when}");
        let dense = c.dense_search(&unit([0.0, 1.0, 0.0, 0.0]), 1).unwrap();
        assert_eq!(ids(&dense), ["d1"], "{when}");
        c.verify().unwrap();
    };
    check(c.as_ref(), "after the compaction finished");
    // Abandoned after begin, and after run: neither blocks the next compaction.
    drop(c.begin_compaction(false).unwrap());
    let mut abandoned = c.begin_compaction(false).unwrap();
    if let Some(job) = abandoned.as_mut() {
        job.run().unwrap();
    }
    drop(abandoned);
    c.commit(vec![Operation::Delete("d5".into())]).unwrap();
    c.compact().unwrap();
    drop(c);
    let c = store::open(location, Access::Search).unwrap();
    assert_eq!(c.seq().unwrap(), 8);
    assert_eq!(c.len().unwrap(), 4);
    assert!(c.documents(&["d5"]).unwrap()[0].is_none());
    c.verify().unwrap();
    drop(c);
    // And a compaction whose job was run but never finished left files that open correctly.
    let mut c = store::open(location, Access::Write).unwrap();
    c.commit(vec![upsert("d6", None, &[("kelp6 forest", 3)])])
        .unwrap();
    let mut job = c.begin_compaction(false).unwrap().unwrap();
    job.run().unwrap();
    c.commit(vec![upsert("d7", None, &[("kelp7 forest", 3)])])
        .unwrap();
    drop(job);
    drop(c);
    let c = store::open(location, Access::Search).unwrap();
    assert_eq!(c.seq().unwrap(), 10);
    assert_eq!(c.len().unwrap(), 6);
    c.verify().unwrap();
}

/// Dense results by descending cosine, keyword results by descending BM25, at most k.
pub fn search_orders_best_first(location: &Location) {
    let mut c = create(location);
    c.commit(vec![
        upsert("x", None, &[("storm storm storm", 0)]),
        upsert("y", None, &[("storm at sea", 1)]),
        upsert(
            "z",
            None,
            &[("calm day with one storm among many other words", 2)],
        ),
    ])
    .unwrap();
    let q = unit([1.0, 0.4, 0.0, 0.0]);
    let dense = c.dense_search(&q, 10).unwrap();
    assert_eq!(ids(&dense)[..2], ["x", "y"]);
    assert!(
        dense.windows(2).all(|w| w[0].score >= w[1].score),
        "{dense:?}"
    );
    assert_eq!(c.dense_search(&q, 1).unwrap().len(), 1);
    let kw = c.keyword_search("storm", 10).unwrap();
    assert_eq!(kw.len(), 3);
    assert_eq!(kw[0].doc_id, "x");
    assert!(kw.windows(2).all(|w| w[0].score >= w[1].score), "{kw:?}");
    assert_eq!(c.keyword_search("storm", 2).unwrap().len(), 2);
    // Query syntax is not an error.
    assert!(c.keyword_search("storm AND (\"unbalanced", 10).is_ok());
    assert!(c.keyword_search("absentword", 10).unwrap().is_empty());
}

/// A collection refuses to be opened for another embedding model's vectors.
pub fn another_model_is_refused(location: &Location) {
    drop(create(location));
    match store::open_or_create(location, manifest("m2")) {
        Err(IndexError::ModelMismatch { .. }) => {}
        other => panic!(
            "expected ModelMismatch, got {:?}",
            other.map(|c| c.location())
        ),
    }
}

/// Batched reads answer in request order, `None` for what does not exist.
pub fn reads_are_batched_in_request_order(location: &Location) {
    let mut c = create(location);
    c.commit(vec![
        upsert("a", Some("A"), &[("first", 0), ("second", 1)]),
        upsert("b", None, &[("third", 2)]),
    ])
    .unwrap();
    let details = c
        .hit_details(&[("b", 0), ("a", 1), ("a", 7), ("q", 0), ("a", 0)])
        .unwrap();
    let texts: Vec<Option<&str>> = details
        .iter()
        .map(|d| d.as_ref().map(|d| d.chunk_text.as_str()))
        .collect();
    assert_eq!(
        texts,
        vec![Some("third"), Some("second"), None, None, Some("first")]
    );
    assert_eq!(
        details[1].as_ref().unwrap().document.title.as_deref(),
        Some("A")
    );
    let docs = c.documents(&["b", "a", "b"]).unwrap();
    let got: Vec<Option<&str>> = docs
        .iter()
        .map(|d| d.as_ref().map(|d| d.id.as_str()))
        .collect();
    assert_eq!(got, vec![Some("b"), Some("a"), Some("b")]);
}

/// Keyword search cuts queries and documents with the manifest's analyzer; changing it
/// re-cuts what is stored (documents, vectors and the batch number untouched) and survives
/// reopening.
pub fn the_analyzer_is_the_manifests_and_can_change(location: &Location) {
    let mut c = create(location);
    let zh = upsert("zh", Some("北京大学"), &[("我们在北京大学学习自然科学", 0)]);
    let en = upsert(
        "en",
        None,
        &[("The patients' vaccinations were delayed", 1)],
    );
    c.commit(vec![zh, en]).unwrap();
    assert_eq!(c.manifest().analyzer, Analyzer::English);
    assert_eq!(
        ids(&c.keyword_search("vaccination delays", 10).unwrap()),
        vec!["en"],
        "English terms are stemmed"
    );
    c.set_analyzer(Analyzer::Chinese).unwrap();
    assert_eq!(c.manifest().analyzer, Analyzer::Chinese);
    assert_eq!(ids(&c.keyword_search("自然科学", 10).unwrap()), vec!["zh"]);
    assert_eq!(c.seq().unwrap(), 1, "changing the analyzer is not a batch");
    c.set_analyzer(Analyzer::Chinese).unwrap();
    drop(c);
    let c = store::open(location, Access::Search).unwrap();
    assert_eq!(c.manifest().analyzer, Analyzer::Chinese);
    assert_eq!(ids(&c.keyword_search("北京", 10).unwrap()), vec!["zh"]);
    assert_eq!(c.len().unwrap(), 2);
    assert!(
        c.keyword_search("vaccination", 10).unwrap().is_empty(),
        "the Chinese analyzer does not stem English"
    );
    c.verify().unwrap();
}

/// Keyword scores are BM25 with the manifest's k1 and b, to the formula (Lucene's idf; both
/// backends give the same number); changing them applies to the next query, is not a batch,
/// survives reopening, and invalid values are refused without changing anything.
pub fn bm25_parameters_are_the_manifests_and_can_change(location: &Location) {
    let mut c = create(location);
    assert_eq!(c.manifest().bm25, Bm25Params::default());
    c.commit(vec![
        upsert("short", None, &[("coral reef", 0)]),
        upsert(
            "long",
            None,
            &[("coral reef ocean tide storm fish algae warming", 1)],
        ),
    ])
    .unwrap();
    // 2 passages of 2 and 8 terms (average 5); "reef" is in both: idf = ln(1 + 0.5 / 2.5).
    let expected = |p: Bm25Params, length: f32| {
        let idf = (1.0f32 + 0.5 / 2.5).ln();
        idf * (p.k1 + 1.0) / (1.0 + p.k1 * (1.0 - p.b + p.b * length / 5.0))
    };
    let check = |c: &dyn CollectionBackend, p: Bm25Params| {
        let hits = c.keyword_search("reef", 10).unwrap();
        assert_eq!(hits.len(), 2);
        for h in hits {
            let length = if h.doc_id == "short" { 2.0 } else { 8.0 };
            let want = expected(p, length);
            assert!(
                (h.score - want).abs() <= 1e-5 * want,
                "{p:?} {}: {} vs the formula's {want}",
                h.doc_id,
                h.score
            );
        }
    };
    check(c.as_ref(), Bm25Params::default());
    let flat = Bm25Params { k1: 2.0, b: 0.0 };
    c.set_bm25(flat).unwrap();
    check(c.as_ref(), flat);
    assert_eq!(
        c.seq().unwrap(),
        1,
        "changing BM25's parameters is not a batch"
    );
    for bad in [
        Bm25Params { k1: -0.5, b: 0.5 },
        Bm25Params { k1: 1.2, b: 1.01 },
        Bm25Params {
            k1: f32::INFINITY,
            b: 0.5,
        },
    ] {
        assert!(
            matches!(c.set_bm25(bad), Err(IndexError::InvalidInput(_))),
            "{bad:?} is refused"
        );
    }
    assert_eq!(c.manifest().bm25, flat);
    drop(c);
    let c = store::open(location, Access::Search).unwrap();
    assert_eq!(c.manifest().bm25, flat, "the parameters survive reopening");
    check(c.as_ref(), flat);
}

/// `export` yields every live document once, with its chunks' texts and (unit) vectors as
/// committed, and none that was deleted or replaced.
pub fn export_gives_back_every_document_with_its_chunks(location: &Location) {
    let mut c = create(location);
    let a = upsert("a", Some("A"), &[("first", 0), ("second", 1)]);
    let b = upsert("b", None, &[("third", 2)]);
    c.commit(vec![a.clone(), b, upsert("gone", None, &[("x", 3)])])
        .unwrap();
    c.commit(vec![
        Operation::Delete("gone".into()),
        upsert("b", None, &[("fourth", 3)]),
    ])
    .unwrap();
    let mut seen = Vec::new();
    c.export(&mut |d| {
        seen.push(d);
        Ok(())
    })
    .unwrap();
    seen.sort_by(|x, y| x.document.id.cmp(&y.document.id));
    assert_eq!(seen.len(), 2, "{seen:?}");
    let Operation::Upsert(a) = a else {
        unreachable!()
    };
    assert_eq!(seen[0].document, a.document);
    assert_eq!(seen[0].chunks.len(), 2);
    for (got, want) in seen[0].chunks.iter().zip(&a.chunks) {
        assert_eq!(got.text, want.text);
        for (x, y) in got.vector.iter().zip(&want.vector) {
            assert!(
                (x - y).abs() < 1e-6,
                "{:?} vs {:?}",
                got.vector,
                want.vector
            );
        }
    }
    assert_eq!(seen[1].document.id, "b");
    assert_eq!(seen[1].chunks.len(), 1);
    assert_eq!(seen[1].chunks[0].text, "fourth");
    // An error from the callback stops the export and comes back.
    let mut calls = 0;
    let stopped = c.export(&mut |_| {
        calls += 1;
        Err(IndexError::InvalidInput("stop".into()))
    });
    assert!(matches!(stopped, Err(IndexError::InvalidInput(_))));
    assert_eq!(calls, 1);
}
