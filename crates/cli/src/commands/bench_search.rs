//! `sift bench --task search`: the local collection at scale — ingest, ANN recall, hybrid search
//! latency, memory, disk and open time for N synthetic chunks (docs/performance.md, "A million
//! chunks").
//!
//! Chunks are what a real collection of brought vectors holds: clustered unit vectors (real
//! embeddings are clustered, and uniform random vectors are the worst case for HNSW, not the
//! usual one) and text of two sentences drawn from a real corpus, so BM25's postings and
//! document lengths look like the corpus's. Queries are vectors near a cluster centre with a
//! few words of a sentence as text: hybrid search with the query vector given, so embedding is
//! excluded and what is measured is the collection.
//!
//! The query phase runs in a fresh process (the same binary with `--query-only`), so its memory
//! and open time are what a server opening the collection would see, not the build's leftovers.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};
use sift_index::local::{AnnParams, LocalCollection, OpenMode, Quantization};
use sift_index::postgres::{PgAddress, PostgresCollection};
use sift_index::store::{Access, Location};
use sift_index::synthetic::Workload;
use sift_index::CollectionBackend;
use sift_pipeline::{Pipeline, SearchMode, SearchOptions};

use super::memory;

/// Flags of the search benchmark.
#[derive(Args, Clone)]
pub struct ScaleFlags {
    /// Chunks in the benchmark collection (search task).
    #[arg(long, default_value_t = 10_000)]
    pub chunks: usize,

    /// Vector dimension (search task).
    #[arg(long, default_value_t = 384)]
    pub dim: usize,

    /// Queries timed and checked for recall (search task).
    #[arg(long, default_value_t = 200)]
    pub queries: usize,

    /// Chunks added to the built collection to time an incremental update (search task;
    /// default: 10,000, at most the collection's size).
    #[arg(long)]
    pub add_chunks: Option<usize>,

    /// Chunks per committed batch while building (search task).
    #[arg(long, default_value_t = 10_000)]
    pub batch_chunks: usize,

    /// A JSONL corpus ({"text": …} per line) whose sentences make the chunk texts (search task;
    /// default: a built-in vocabulary).
    #[arg(long)]
    pub sentences: Option<PathBuf>,

    /// Where the collection is built (search task; must not exist; default: a temporary
    /// directory, removed after).
    #[arg(long)]
    pub dir: Option<PathBuf>,

    /// The graph's vector storage: i8 (default) or f32 (search task).
    #[arg(long, default_value = "i8", value_parser = parse_quantization)]
    pub quantization: Quantization,

    /// Below this many chunks search is exact (search task; the collection's default is
    /// 20,000).
    #[arg(long, default_value_t = AnnParams::default().exact_below)]
    pub exact_below: usize,

    /// Candidates kept while inserting into the graph (HNSW's ef_construction; search task):
    /// what an insert costs against how well the graph is connected.
    #[arg(long, default_value_t = AnnParams::default().ef_construction)]
    pub ef_construction: usize,

    /// Links per graph node (HNSW's M; search task).
    #[arg(long, default_value_t = AnnParams::default().connectivity)]
    pub connectivity: usize,

    /// Build the benchmark collection in PostgreSQL instead of a directory:
    /// postgres://USER@HOST/DB?collection=NAME (must not exist unless --query-only). Several
    /// hosts (primary,replica,…) send the searches to the replicas.
    #[arg(long, value_parser = crate::location_arg::LocationParser)]
    pub collection: Option<Location>,

    /// Concurrent clients for the throughput phase (PostgreSQL only; 0 skips it).
    #[arg(long, default_value_t = 4)]
    pub clients: usize,

    /// Run only the query phase on the collection in --dir (the benchmark runs itself so).
    #[arg(long, hide = true)]
    pub query_only: bool,
}

fn parse_quantization(s: &str) -> std::result::Result<Quantization, String> {
    match s {
        "i8" | "int8" => Ok(Quantization::I8),
        "f32" => Ok(Quantization::F32),
        other => Err(format!(
            "unknown quantization {other:?}; expected i8 or f32"
        )),
    }
}

fn ann_params(flags: &ScaleFlags) -> AnnParams {
    AnnParams {
        exact_below: flags.exact_below,
        quantization: flags.quantization,
        ef_construction: flags.ef_construction,
        connectivity: flags.connectivity,
        ..AnnParams::default()
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

fn disk_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => disk_bytes(&e.path()),
                    _ => e.metadata().map_or(0, |m| m.len()),
                })
                .sum()
        })
        .unwrap_or(0)
}

fn manifest(dim: usize) -> Result<sift_index::Manifest> {
    Ok(sift_pipeline::ingest::manifest_external(
        "bench-synthetic",
        dim,
        sift_index::Analyzer::English,
    )?)
}

/// Commits chunks `range` in batches, compacting when the collection's policy says so (as
/// `sift index` and the server do). Returns the seconds spent in all, and in compactions.
fn ingest(
    c: &mut dyn CollectionBackend,
    w: &Workload,
    range: std::ops::Range<usize>,
    batch: usize,
) -> Result<(f64, f64)> {
    let bar = super::progress_bar(range.len(), "chunks");
    let started = Instant::now();
    let mut compacting = 0.0;
    let mut at = range.start;
    while at < range.end {
        let end = (at + batch).min(range.end);
        c.commit((at..end).map(|i| w.document(i)).collect())?;
        let t = Instant::now();
        c.compact_if_due()?;
        compacting += t.elapsed().as_secs_f64();
        bar.inc((end - at) as u64);
        at = end;
    }
    bar.finish_and_clear();
    Ok((started.elapsed().as_secs_f64(), compacting))
}

fn build(flags: &ScaleFlags, dir: &Path, w: &Workload) -> Result<Value> {
    let params = ann_params(flags);
    let mut c = LocalCollection::open_or_create(dir, manifest(flags.dim)?, params)?;
    let n = flags.chunks;
    let batch = flags.batch_chunks.max(1);
    eprintln!("building {n} chunks in {}", dir.display());
    let (ingest_s, ingest_compaction_s) = ingest(&mut c, w, 0..n, batch)?;
    let t = Instant::now();
    c.compact()?;
    let compaction_s = t.elapsed().as_secs_f64();
    let add = flags.add_chunks.unwrap_or(10_000).min(n);
    eprintln!("adding {add} chunks");
    let (add_s, _) = ingest(&mut c, w, n..n + add, batch)?;
    let t = Instant::now();
    c.compact()?;
    let add_compaction_s = t.elapsed().as_secs_f64();
    let uses_ann = c.uses_ann();
    drop(c);
    let peak = mib(memory::resident().peak);
    Ok(json!({
        "ingest_chunks_per_s": n as f64 / ingest_s,
        "ingest_s": ingest_s,
        // Of ingest_s, the compactions the default policy ran on the way (snapshot writes).
        "ingest_compaction_s": ingest_compaction_s,
        "commit_chunks_per_s": n as f64 / (ingest_s - ingest_compaction_s).max(1e-9),
        "compaction_s": compaction_s,
        "add_chunks": add,
        "add_s": add_s,
        "add_compaction_s": add_compaction_s,
        "graph": uses_ann,
        "disk_mib": mib(disk_bytes(dir)),
        "build_peak_rss_mib": peak,
    }))
}

/// Recall@10 of the dense search `ann` against the exact search `exact` over the queries'
/// vectors, and each `ann` call's time (ms).
fn dense_recall(
    queries: &[(String, Vec<f32>)],
    exact: impl Fn(&[f32]) -> sift_index::Result<Vec<sift_index::ChunkHit>>,
    ann: impl Fn(&[f32]) -> sift_index::Result<Vec<sift_index::ChunkHit>>,
) -> Result<(f64, Vec<f64>)> {
    let mut found = 0;
    let mut ms = Vec::with_capacity(queries.len());
    for (_, v) in queries {
        let truth = exact(v)?;
        let t = Instant::now();
        let hits = ann(v)?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        found += truth
            .iter()
            .filter(|e| hits.iter().any(|h| h.doc_id == e.doc_id))
            .count();
    }
    Ok((found as f64 / (10 * queries.len().max(1)) as f64, ms))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn query(flags: &ScaleFlags, dir: &Path, w: &Workload) -> Result<Value> {
    let params = ann_params(flags);
    let t = Instant::now();
    let c = LocalCollection::open(dir, OpenMode::ReadOnly, params)?;
    let open_s = t.elapsed().as_secs_f64();
    let rss_open = mib(memory::resident().now);
    let chunks = c.num_chunks();
    let bm25_segments = c.bm25_segments();
    let queries: Vec<(String, Vec<f32>)> = (0..flags.queries.max(1)).map(|q| w.query(q)).collect();

    // Hybrid search first, so the memory it needs is seen before the recall check's exact scans
    // read every vector.
    let pipeline = Pipeline::new(None, None, Box::new(c))?;
    let mut hybrid_ms = Vec::new();
    let mut bm25_ms = Vec::new();
    // The first queries warm the page cache and the allocator; they are not timed.
    for (i, (text, v)) in queries.iter().chain(queries.iter().take(10)).enumerate() {
        let options = SearchOptions {
            mode: SearchMode::Hybrid,
            rerank: false,
            query_vector: Some(v.clone()),
            ..SearchOptions::default()
        };
        let t = Instant::now();
        let results = pipeline.search(text, &options)?;
        if i >= 10 {
            hybrid_ms.push(t.elapsed().as_secs_f64() * 1e3);
            bm25_ms.push(results.timings.bm25_ms);
        }
    }
    let searched = memory::resident();

    drop(pipeline);
    // The recall check needs the collection's exact search, which the pipeline does not offer.
    let c = LocalCollection::open(dir, OpenMode::ReadOnly, params)?;
    let (recall, mut dense_ms) = dense_recall(
        &queries,
        |v| c.exact_dense_search(v, 10),
        |v| c.dense_search(v, 10),
    )?;
    for v in [&mut dense_ms, &mut hybrid_ms, &mut bm25_ms] {
        v.sort_by(f64::total_cmp);
    }
    let scanned = memory::resident();
    Ok(json!({
        "chunks": chunks,
        "open_s": open_s,
        "ann_recall_at_10": recall,
        "dense_p50_ms": percentile(&dense_ms, 0.5),
        "hybrid_p50_ms": percentile(&hybrid_ms, 0.5),
        "hybrid_p99_ms": percentile(&hybrid_ms, 0.99),
        "bm25_p50_ms": percentile(&bm25_ms, 0.5),
        "bm25_segments": bm25_segments,
        "rss_after_open_mib": rss_open,
        // After the hybrid searches: all resident, and of it the process's own memory (the
        // rest is pages of mapped files: vectors and the keyword index).
        "rss_after_search_mib": mib(searched.now),
        "anon_rss_after_search_mib": mib(searched.anonymous),
        // After the recall check, whose exact scans read every vector of the file.
        "rss_after_exact_scans_mib": mib(scanned.now),
        "peak_rss_mib": mib(scanned.peak),
    }))
}

pub fn run(flags: &ScaleFlags) -> Result<()> {
    if flags.chunks == 0 || flags.dim == 0 {
        bail!("--chunks and --dim must be at least 1");
    }
    if let Some(location) = &flags.collection {
        let Location::Postgres(address) = location else {
            bail!("--collection takes a postgres:// address (a directory is --dir)");
        };
        return run_postgres(flags, address);
    }
    // usearch reads 0 as "its default", which the report would then misname.
    if flags.connectivity < 2 || flags.ef_construction == 0 {
        bail!("--connectivity must be at least 2 and --ef-construction at least 1");
    }
    let sentences = match &flags.sentences {
        Some(path) => sift_index::synthetic::read_sentences(path)?,
        None => sift_index::synthetic::builtin_sentences(),
    };
    let w = Workload::new(flags.chunks, flags.dim, sentences);
    if flags.query_only {
        let dir = flags.dir.as_ref().context("--query-only needs --dir")?;
        println!("{}", query(flags, dir, &w)?);
        return Ok(());
    }
    let temp;
    let dir = match &flags.dir {
        Some(d) => {
            if d.exists() {
                bail!(
                    "{} exists; the benchmark builds a new collection there",
                    d.display()
                );
            }
            d.clone()
        }
        None => {
            temp = tempfile::tempdir()?;
            temp.path().join("collection")
        }
    };
    let mut report = build(flags, &dir, &w)?;
    // The query phase in a fresh process: its memory is the collection's, not the build's.
    let mut child = std::process::Command::new(std::env::current_exe()?);
    child.args(std::env::args_os().skip(1)).arg("--query-only");
    if flags.dir.is_none() {
        child.arg("--dir").arg(&dir);
    }
    let out = child.stderr(std::process::Stdio::inherit()).output()?;
    if !out.status.success() {
        bail!("the query phase failed");
    }
    let queried: Value = serde_json::from_slice(&out.stdout).context("query phase output")?;
    if let (Some(r), Value::Object(q)) = (report.as_object_mut(), queried) {
        r.extend(q);
        r.insert("dim".into(), json!(flags.dim));
        r.insert(
            "quantization".into(),
            json!(format!("{:?}", flags.quantization).to_lowercase()),
        );
        r.insert("exact_below".into(), json!(flags.exact_below));
        r.insert("ef_construction".into(), json!(flags.ef_construction));
        r.insert("connectivity".into(), json!(flags.connectivity));
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// The same benchmark against PostgreSQL: build (unless --query-only), then open time, hybrid
/// and dense latency, the HNSW index's recall against an exact scan, and the throughput of
/// `--clients` concurrent hybrid searches. Runs in one process: the collection's memory is the
/// database server's, not sift's.
fn run_postgres(flags: &ScaleFlags, address: &PgAddress) -> Result<()> {
    address.require_collection()?;
    let sentences = match &flags.sentences {
        Some(path) => sift_index::synthetic::read_sentences(path)?,
        None => sift_index::synthetic::builtin_sentences(),
    };
    let w = Workload::new(flags.chunks, flags.dim, sentences);
    let location = Location::Postgres(address.clone());
    let mut report = serde_json::Map::new();
    if !flags.query_only {
        if sift_index::store::exists(&location)? {
            bail!("{address} exists; the benchmark builds a new collection there");
        }
        let mut c = sift_index::store::open_or_create(&location, manifest(flags.dim)?)?;
        let n = flags.chunks;
        let batch = flags.batch_chunks.max(1);
        eprintln!("building {n} chunks in {address}");
        let (ingest_s, ingest_compaction_s) = ingest(c.as_mut(), &w, 0..n, batch)?;
        let t = Instant::now();
        c.compact()?;
        let compaction_s = t.elapsed().as_secs_f64();
        let add = flags.add_chunks.unwrap_or(10_000).min(n);
        let (add_s, _) = ingest(c.as_mut(), &w, n..n + add, batch)?;
        report.extend([
            ("ingest_chunks_per_s".into(), json!(n as f64 / ingest_s)),
            ("ingest_s".into(), json!(ingest_s)),
            ("ingest_compaction_s".into(), json!(ingest_compaction_s)),
            ("compaction_s".into(), json!(compaction_s)),
            ("add_chunks".into(), json!(add)),
            ("add_s".into(), json!(add_s)),
        ]);
    }
    let t = Instant::now();
    let c = PostgresCollection::open(address, Access::Search)?;
    report.insert("open_s".into(), json!(t.elapsed().as_secs_f64()));
    let queries: Vec<(String, Vec<f32>)> = (0..flags.queries.max(1)).map(|q| w.query(q)).collect();
    let (recall, mut dense_ms) = dense_recall(
        &queries,
        |v| c.exact_dense_search(v, 10),
        |v| c.dense_search(v, 10),
    )?;
    let pipeline = Pipeline::new(None, None, Box::new(c))?;
    let search = |text: &str, v: &[f32]| -> Result<()> {
        let options = SearchOptions {
            mode: SearchMode::Hybrid,
            rerank: false,
            query_vector: Some(v.to_vec()),
            ..SearchOptions::default()
        };
        pipeline.search(text, &options)?;
        Ok(())
    };
    let mut hybrid_ms = Vec::new();
    for (i, (text, v)) in queries.iter().chain(queries.iter().take(10)).enumerate() {
        let t = Instant::now();
        search(text, v)?;
        if i >= 10 {
            hybrid_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    for v in [&mut dense_ms, &mut hybrid_ms] {
        v.sort_by(f64::total_cmp);
    }
    report.extend([
        ("chunks".into(), json!(pipeline.backend().stats()?.chunks)),
        ("ann_recall_at_10".into(), json!(recall)),
        ("dense_p50_ms".into(), json!(percentile(&dense_ms, 0.5))),
        ("hybrid_p50_ms".into(), json!(percentile(&hybrid_ms, 0.5))),
        ("hybrid_p99_ms".into(), json!(percentile(&hybrid_ms, 0.99))),
    ]);
    if flags.clients > 0 {
        // Each client runs the query list round-robin for a fixed time.
        let seconds = 10.0;
        let done = std::sync::atomic::AtomicUsize::new(0);
        let started = Instant::now();
        std::thread::scope(|scope| -> Result<()> {
            let handles: Vec<_> = (0..flags.clients)
                .map(|client| {
                    let (queries, search, done) = (&queries, &search, &done);
                    scope.spawn(move || -> Result<()> {
                        let mut i = client;
                        while started.elapsed().as_secs_f64() < seconds {
                            let (text, v) = &queries[i % queries.len()];
                            search(text, v)?;
                            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            i += flags.clients;
                        }
                        Ok(())
                    })
                })
                .collect();
            for h in handles {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
            }
            Ok(())
        })?;
        let qps = done.load(std::sync::atomic::Ordering::Relaxed) as f64
            / started.elapsed().as_secs_f64();
        report.insert("clients".into(), json!(flags.clients));
        report.insert("hybrid_qps".into(), json!(qps));
    }
    report.insert("dim".into(), json!(flags.dim));
    report.insert("backend".into(), json!("postgres"));
    println!("{}", serde_json::to_string_pretty(&Value::Object(report))?);
    Ok(())
}
