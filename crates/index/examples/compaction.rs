//! What compaction costs and what the default policy does, on a synthetic collection:
//! `cargo run --release -p sift-index --example compaction -- [chunks] [dim]`
//! (defaults 20,000 × 384, the size where the HNSW graph starts). Results: docs/performance.md.

use std::time::Instant;

use sift_index::local::{AnnParams, LocalCollection, OpenMode};
use sift_index::{
    Chunk, ChunkingConfig, CollectionBackend, Document, EmbeddingModelInfo, IndexedDocument,
    Manifest, Operation, FORMAT_VERSION,
};

/// A deterministic pseudo-random unit vector (xorshift), so runs are comparable.
fn vector(seed: u64, dim: usize) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v: Vec<f32> = (0..dim)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
    v.iter_mut().for_each(|a| *a /= n);
    v
}

fn doc(i: u64, version: u64, dim: usize) -> Operation {
    let text = format!(
        "document {i} version {version} {}",
        "some words of text ".repeat(12)
    );
    Operation::Upsert(IndexedDocument {
        document: Document {
            id: format!("d{i}"),
            text: text.clone(),
            title: None,
            metadata: None,
        },
        chunks: vec![Chunk {
            text,
            vector: vector(i * 1000 + version, dim),
        }],
    })
}

fn size(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let chunks: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let dim: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(384);
    let dir = tempfile::tempdir().expect("temp dir");
    let manifest = Manifest {
        format: FORMAT_VERSION,
        embedding: EmbeddingModelInfo {
            name: "synthetic".into(),
            fingerprint: "synthetic".into(),
            dim,
            path: None,
        },
        chunking: Some(ChunkingConfig {
            max_tokens: 256,
            overlap_tokens: 32,
        }),
        analyzer: sift_index::Analyzer::English,
        bm25: Default::default(),
    };
    let ann = AnnParams {
        exact_below: 20_000.min(chunks as usize),
        ..AnnParams::default()
    };
    let mut c = LocalCollection::open_or_create(dir.path(), manifest, ann).expect("create");
    let t = Instant::now();
    for start in (0..chunks).step_by(500) {
        let ops = (start..(start + 500).min(chunks))
            .map(|i| doc(i, 0, dim))
            .collect();
        c.commit(ops).expect("commit");
    }
    let ingest = t.elapsed().as_secs_f64();
    let log = c.log_bytes();
    let t = Instant::now();
    drop(c);
    let c = LocalCollection::open(dir.path(), OpenMode::Write, ann).expect("reopen");
    let reopen_log = t.elapsed().as_secs_f64();
    let mut c = c;
    let t = Instant::now();
    c.compact().expect("compact");
    let compact = t.elapsed().as_secs_f64();
    let snapshot = size(&dir.path().join("snapshot.bin"));
    let graph = size(&dir.path().join("ann.bin"));
    drop(c);
    let t = Instant::now();
    let mut c = LocalCollection::open(dir.path(), OpenMode::Write, ann).expect("reopen");
    let reopen_snapshot = t.elapsed().as_secs_f64();

    println!("{chunks} chunks × {dim} dims");
    println!("| measure | value |\n|---|---|");
    println!("| ingest (40 batches of 500, no embedding) | {ingest:.2} s |");
    println!("| log after ingest | {:.1} MiB |", log as f64 / 1048576.0);
    println!("| reopen replaying the log | {reopen_log:.2} s |");
    println!("| compaction (snapshot + graph) | {compact:.2} s |");
    println!(
        "| snapshot / graph | {:.1} / {:.1} MiB |",
        snapshot as f64 / 1048576.0,
        graph as f64 / 1048576.0
    );
    println!("| reopen from the snapshot | {reopen_snapshot:.2} s |");

    // The split compaction a server runs: what it holds the collection's lock for, with
    // writes going on while the expensive part runs on another thread.
    for u in 0..200u64 {
        c.commit(vec![doc(u % 50, u + 10_000, dim)])
            .expect("update");
    }
    let shared = std::sync::Arc::new(std::sync::RwLock::new(c));
    let t = Instant::now();
    let mut job = shared
        .read()
        .expect("lock")
        .begin_compaction(false)
        .expect("begin")
        .expect("a log to compact");
    let begin = t.elapsed().as_secs_f64();
    let worker = std::thread::spawn(move || {
        let t = Instant::now();
        job.run().expect("run");
        (job, t.elapsed().as_secs_f64())
    });
    let (mut writes, mut slowest) = (0u64, 0f64);
    while !worker.is_finished() {
        let t = Instant::now();
        shared
            .write()
            .expect("lock")
            .commit(vec![doc(writes % 50, writes + 20_000, dim)])
            .expect("update during compaction");
        slowest = slowest.max(t.elapsed().as_secs_f64());
        writes += 1;
    }
    let (job, run) = worker.join().expect("worker");
    let t = Instant::now();
    shared
        .write()
        .expect("lock")
        .finish_compaction(job)
        .expect("finish");
    let finish = t.elapsed().as_secs_f64();
    println!(
        "| split compaction: begin (read lock) / run (no lock) / finish (write lock) | {:.0} ms / {run:.2} s / {:.1} ms |",
        begin * 1000.0,
        finish * 1000.0
    );
    println!(
        "| writes while it ran | {writes}, slowest {:.1} ms |",
        slowest * 1000.0
    );
    let mut c = std::sync::Arc::into_inner(shared)
        .expect("one owner")
        .into_inner()
        .expect("lock");

    // A long-lived server's pattern: many small updates of the same documents.
    let (mut compactions, mut largest) = (0, 0);
    let t = Instant::now();
    for u in 1..=2000u64 {
        c.commit(vec![doc(u % 10, u, dim)]).expect("update");
        largest = largest.max(c.log_bytes());
        if c.compact_if_due().expect("policy") {
            compactions += 1;
        }
    }
    println!(
        "| 2,000 single-document updates under the default policy | {:.2} s, {compactions} compaction(s), log peaked at {:.2} MiB |",
        t.elapsed().as_secs_f64(),
        largest as f64 / 1048576.0
    );
}
