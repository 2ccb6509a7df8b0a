//! The local collection's storage layer at scale, on the synthetic workload of
//! `sift bench --task search` (clustered vectors, corpus sentences):
//! `cargo run --release -p sift-index --example scale -- CHUNKS [SENTENCES.jsonl]`.
//!
//! It uses only the backend API that every version of the local collection has, so the same file
//! measures an older version side by side (docs/performance.md, "A million chunks", has the
//! commands): ingest with the default compaction policy, a final compaction, 10,000 chunks added
//! and compacted, reopening, dense search latency and recall@10 against exact search.

use std::time::Instant;

use sift_index::local::{AnnParams, LocalCollection, OpenMode};
use sift_index::synthetic::{builtin_sentences, read_sentences, Workload};
use sift_index::{CollectionBackend, EmbeddingModelInfo, Manifest, FORMAT_VERSION};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let chunks: usize = args.next().map_or(Ok(100_000), |a| a.parse())?;
    let sentences = match args.next() {
        Some(path) => read_sentences(path.as_ref())?,
        None => builtin_sentences(),
    };
    let dim = 384;
    let w = Workload::new(chunks, dim, sentences);
    let dir = tempfile::tempdir()?;
    let manifest = Manifest {
        format: FORMAT_VERSION,
        embedding: EmbeddingModelInfo {
            name: "bench".into(),
            fingerprint: "external:bench".into(),
            dim,
            path: None,
        },
        chunking: None,
        analyzer: sift_index::Analyzer::English,
        bm25: Default::default(),
    };
    let params = AnnParams::default();
    let mut c = LocalCollection::open_or_create(dir.path(), manifest, params)?;
    let ingest = |c: &mut LocalCollection, range: std::ops::Range<usize>| {
        let t = Instant::now();
        let mut at = range.start;
        while at < range.end {
            let end = (at + 10_000).min(range.end);
            c.commit((at..end).map(|i| w.document(i)).collect())?;
            c.compact_if_due()?;
            at = end;
        }
        Ok::<f64, sift_index::IndexError>(t.elapsed().as_secs_f64())
    };
    let ingest_s = ingest(&mut c, 0..chunks)?;
    let t = Instant::now();
    c.compact()?;
    let compaction_s = t.elapsed().as_secs_f64();
    let add_s = ingest(&mut c, chunks..chunks + 10_000)?;
    let t = Instant::now();
    c.compact()?;
    let add_compaction_s = t.elapsed().as_secs_f64();
    drop(c);
    let t = Instant::now();
    let c = LocalCollection::open(dir.path(), OpenMode::ReadOnly, params)?;
    let open_s = t.elapsed().as_secs_f64();
    let mut ms = Vec::new();
    let mut found = 0;
    for q in 0..200 {
        let (_, v) = w.query(q);
        let exact: Vec<String> = c
            .exact_dense_search(&v, 10)?
            .into_iter()
            .map(|h| h.doc_id)
            .collect();
        let t = Instant::now();
        let ann = c.dense_search(&v, 10)?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        found += exact
            .iter()
            .filter(|id| ann.iter().any(|h| &h.doc_id == *id))
            .count();
    }
    ms.sort_by(f64::total_cmp);
    println!(
        "{{\"chunks\": {chunks}, \"ingest_chunks_per_s\": {:.0}, \"compaction_s\": {compaction_s:.2}, \
         \"add_10k_s\": {add_s:.2}, \"add_compaction_s\": {add_compaction_s:.2}, \"open_s\": {open_s:.2}, \
         \"dense_p50_ms\": {:.3}, \"ann_recall_at_10\": {:.4}, \"graph\": {}}}",
        chunks as f64 / ingest_s,
        ms[ms.len() / 2],
        found as f64 / 2000.0,
        c.uses_ann()
    );
    Ok(())
}
