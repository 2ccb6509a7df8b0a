//! `sift index`: build or update a collection.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use sift_index::store::{self, Location};
use sift_index::{Analyzer, ChunkingConfig};
use sift_models::{Embedder, EmbedderOptions};
use sift_pipeline::build::IndexOptions;

use crate::documents::{attach_npy_vectors, read_documents};
use crate::inference::{EmbedPrecisionFlag, EngineFlags};
use crate::model_path::resolve;

/// Index documents into a collection (a local directory), creating it if needed.
///
/// Inputs: BEIR corpus.jsonl ({"_id", "title", "text"}), JSONL ({"id", "text", "title"?,
/// "metadata"?}), .txt and .md files (one document each, id = path), or directories of them.
/// Documents are upserted by id; unchanged documents are skipped, so re-running is cheap.
/// Long documents are split into overlapping token windows.
///
/// Bring your own embeddings: a JSONL line may carry its document's vector ("vector" or
/// "embedding": an array of numbers), or --vectors gives a .npy matrix with one row per
/// document. A brought vector stands for the whole document (one chunk). Without an embedding
/// model, the new collection records "external model, dimension d": every document must then
/// bring a vector, and searches bring a query vector (`sift search --query-vector`). Vectors
/// are checked before anything is written: one dimension for all, finite numbers, not all zero
/// (they are stored L2-normalized; similarity is cosine).
///
/// Input is validated first: by default any malformed line or duplicate id stops the command
/// before anything is written (--skip-invalid indexes the rest). Writes are committed in batches
/// of --batch-size documents; a committed batch survives a crash or kill at any moment.
#[derive(Args)]
#[command(after_help = "Examples:\n  \
sift index --collection scifact ../shared/data/scifact/corpus.jsonl\n  \
sift index --collection notes ~/notes --embed-model all-mpnet-base-v2 --chunk-tokens 200\n  \
sift index --collection mine docs.jsonl --vectors docs.npy --vector-model text-embedding-3-small")]
pub struct IndexArgs {
    /// Files or directories to index.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,

    /// Collection (created if missing): a directory, or postgres://USER@HOST/DB?collection=NAME (PostgreSQL + pgvector).
    #[arg(long, short, value_parser = crate::location_arg::LocationParser)]
    pub collection: Location,

    /// Embedding model (default: the collection's, or all-MiniLM-L6-v2 for a new one).
    #[arg(long)]
    pub embed_model: Option<String>,

    /// Documents per committed batch (the crash-safety unit).
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,

    /// Tokens per chunk window (new collections; default: model max length − 34).
    #[arg(long)]
    pub chunk_tokens: Option<usize>,

    /// Tokens shared by consecutive windows (new collections).
    #[arg(long, default_value_t = sift_pipeline::ingest::DEFAULT_OVERLAP_TOKENS)]
    pub chunk_overlap: usize,

    /// How BM25 cuts text into terms: english (stop words, Snowball stemmer), chinese (jieba
    /// dictionary words), neutral (any language: words, CJK character bigrams), or auto (new
    /// collections: chosen from the documents' script and function words). Recorded in the
    /// collection; giving another for an existing collection rebuilds its BM25 index only.
    #[arg(long, default_value = "auto")]
    pub language: Language,

    /// BM25's k1: how fast repeats of a query term in a passage stop adding score (0: one
    /// occurrence counts as much as many). Recorded in the collection; default 1.5 for a new
    /// collection (the reference bm25s's; docs/quality.md), the collection's own for an existing
    /// one (1.2, Lucene's, in collections made before it was recorded).
    /// Changing it re-indexes nothing.
    #[arg(long, value_name = "K1")]
    pub bm25_k1: Option<f32>,

    /// BM25's b, 0–1: how much a passage's length (relative to the average) discounts its term
    /// counts. Default 0.75 for a new collection; as --bm25-k1 otherwise.
    #[arg(long, value_name = "B")]
    pub bm25_b: Option<f32>,

    /// Index the valid documents even if some lines are malformed (they are reported).
    #[arg(long)]
    pub skip_invalid: bool,

    /// A .npy matrix (float16/32/64, one row per document, in the order the documents are read)
    /// of the documents' own vectors.
    #[arg(long, value_name = "FILE.npy")]
    pub vectors: Option<PathBuf>,

    /// What a new collection of brought vectors calls the model that made them (recorded in
    /// the collection; later batches must say the same). Default: external.
    #[arg(long, conflicts_with = "embed_model")]
    pub vector_model: Option<String>,

    #[command(flatten)]
    pub engine: EngineFlags,

    #[command(flatten)]
    pub embed_precision: EmbedPrecisionFlag,
}

/// `--language`: `auto` (`None`: detected for a new collection, kept for an existing one) or
/// an analyzer.
#[derive(Debug, Clone, Copy)]
pub struct Language(pub Option<Analyzer>);

impl std::str::FromStr for Language {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s.trim().eq_ignore_ascii_case("auto") {
            return Ok(Language(None));
        }
        s.parse().map(|a| Language(Some(a)))
    }
}

pub fn run(args: IndexArgs) -> Result<()> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    // Refused before any document is read or model loaded (the defaults stand in for the
    // collection's own where one is not given: any valid pair would do).
    sift_index::Bm25Params::default()
        .overridden(args.bm25_k1, args.bm25_b)
        .validate()
        .map_err(|e| anyhow::anyhow!("--bm25-k1/--bm25-b: {e}"))?;
    let mut parsed = read_documents(&args.inputs)?;
    if !parsed.errors.is_empty() {
        for e in parsed.errors.iter().take(20) {
            eprintln!("invalid: {e}");
        }
        if parsed.errors.len() > 20 {
            eprintln!("… and {} more", parsed.errors.len() - 20);
        }
        if !args.skip_invalid {
            bail!(
                "{} invalid input line(s); nothing was indexed (fix them, or pass --skip-invalid to index the {} valid documents)",
                parsed.errors.len(),
                parsed.docs.len()
            );
        }
        eprintln!("skipping {} invalid line(s)", parsed.errors.len());
    }
    if parsed.docs.is_empty() {
        bail!("no documents to index");
    }

    if let Some(npy) = &args.vectors {
        if !parsed.errors.is_empty() {
            // Rows are matched to documents by position: a skipped line would shift them all.
            bail!("--vectors needs every input line to be valid (rows are matched by position)");
        }
        attach_npy_vectors(npy, &mut parsed.docs)?;
    }

    let manifest = store::read_manifest(&args.collection)?;
    let all_brought = parsed.docs.iter().all(|d| d.vector.is_some());
    // A model is loaded only when some document needs embedding (or one is named).
    let model_name = match (&args.embed_model, &manifest) {
        (Some(m), _) => Some(m.clone()),
        (None, Some(m)) if m.embedding.is_external() || all_brought => None,
        (None, Some(m)) => Some(crate::model_path::collection_embedder(&m.embedding)),
        (None, None) if all_brought => None,
        (None, None) => Some("all-MiniLM-L6-v2".to_string()),
    };
    let embedder = match model_name {
        Some(name) => {
            let model_dir = resolve(&name)?;
            Some(Arc::new(
                Embedder::load(
                    &model_dir,
                    EmbedderOptions {
                        engine: args.engine.options(args.embed_precision.get()),
                        ..Default::default()
                    },
                )
                .with_context(|| format!("loading {}", model_dir.display()))?,
            ))
        }
        None => None,
    };
    let options = IndexOptions {
        chunking: args.chunk_tokens.map(|t| ChunkingConfig {
            max_tokens: t,
            overlap_tokens: args.chunk_overlap,
        }),
        analyzer: args.language.0,
        vector_model: args.vector_model.clone(),
        bm25_k1: args.bm25_k1,
        bm25_b: args.bm25_b,
    };
    let total = parsed.docs.len();
    let bar = super::progress_bar(total, "docs");
    let plain_log = !std::io::stderr().is_terminal();
    let started = Instant::now();
    let (pipeline, report) = sift_pipeline::build::index_documents(
        &args.collection,
        embedder,
        &options,
        parsed.docs,
        args.batch_size,
        &mut |done, total| {
            bar.set_position(done as u64);
            if plain_log {
                eprintln!("committed {done}/{total} documents");
            }
        },
    )?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let stats = pipeline.backend().stats()?;
    let embedded = report.added + report.updated;
    eprintln!(
        "indexed {total} documents into {} in {secs:.1}s: {} added, {} updated, {} unchanged; {} chunks written ({:.1} docs/s); collection: {} documents, {} chunks, {} keyword analyzer (BM25 k1 {}, b {}){}",
        args.collection,
        report.added,
        report.updated,
        report.unchanged,
        report.chunks,
        embedded as f64 / secs.max(1e-9),
        stats.documents,
        stats.chunks,
        pipeline.backend().manifest().analyzer,
        pipeline.backend().manifest().bm25.k1,
        pipeline.backend().manifest().bm25.b,
        if stats.approximate_vectors { ", HNSW graph built" } else { ", exact vector search" },
    );
    Ok(())
}
