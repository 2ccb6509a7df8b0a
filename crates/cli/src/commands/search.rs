//! `sift search`: hybrid recall, optional rerank.

use std::time::Instant;

use anyhow::Result;
use clap::Args;
use sift_index::store::{self, Access, Location};
use sift_pipeline::{Pipeline, SearchMode, SearchOptions, SearchResults};

use crate::inference::{
    EmbedPrecisionFlag, EngineFlags, LongDocumentFlags, RerankPrecisionFlag, RerankScoringFlags,
};
use crate::model_path::{load_embedder, load_reranker};

/// Search a collection: recall candidates with embeddings (dense) and BM25, fuse them (an even
/// convex combination of their normalized scores; see --fusion), optionally rerank the top candidates with a rerank model
/// (each candidate's title and whole text, long ones scored by windows: see --long-documents).
#[derive(Args)]
#[command(after_help = "Examples:\n  \
sift search --collection scifact \"vitamin D lowers cancer risk\"\n  \
sift search --collection scifact --mode bm25 --top-k 5 \"BRCA1 mutations\"\n  \
sift search --collection scifact --rerank-model my-reranker --explain --timings \"statins and dementia\"\n  \
sift search --collection mine --query-vector @query.json \"statins and dementia\"\n  \
sift search --collection mine --mode dense --query-vector '[0.12, -0.03, ...]'")]
pub struct SearchArgs {
    /// The query text (may be left out in dense mode with --query-vector; BM25 and reranking
    /// read the text).
    #[arg(required_unless_present = "query_vector", default_value = "")]
    query: String,

    /// The query's own vector, for a collection of brought vectors (or to skip embedding the
    /// query): a JSON array of numbers, or @FILE holding one (JSON, or a .npy vector). It must
    /// have the collection's dimension.
    #[arg(long, value_name = "JSON|@FILE")]
    query_vector: Option<String>,

    /// Collection: a directory, or postgres://USER@HOST/DB?collection=NAME (PostgreSQL + pgvector).
    #[arg(long, short, value_parser = crate::location_arg::LocationParser)]
    collection: Location,

    /// Recall legs: dense, bm25 or hybrid.
    #[arg(long, default_value = "hybrid")]
    mode: SearchMode,

    /// Documents each recall leg returns (1–10,000).
    #[arg(long, default_value_t = 100, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=sift_pipeline::search::MAX_DEPTH as u64))]
    depth: usize,

    /// Fused documents the reranker scores (0–1,000).
    #[arg(long, default_value_t = 100, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=sift_pipeline::search::MAX_CANDIDATES as u64))]
    candidates: usize,

    /// Documents to return (1–1,000).
    #[arg(long, short = 'k', default_value_t = 10, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=sift_pipeline::search::MAX_TOP_K as u64))]
    top_k: usize,

    /// Cross-encoder to rerank with (directory or name).
    #[arg(long, env = "SIFT_RERANK_MODEL")]
    rerank_model: Option<String>,

    /// Weight of the first stage's ranking blended into the reranked order, 0–1 (default: what
    /// the rerank model's sift_rerank.json recommends, else 0 — the reranker alone).
    #[arg(long, value_parser = super::eval::parse_weight)]
    first_stage_weight: Option<f32>,

    /// How hybrid search fuses the dense and BM25 legs: convex:dense=W (min–max normalized
    /// scores; the default, W = 0.5, is what `sift eval --fusion-sweep` chose on SciFact), rrf
    /// (plain reciprocal rank fusion, k = 60) or rrf:k=K,dense=W (weighted RRF).
    #[arg(long, default_value_t = sift_pipeline::fusion::Fusion::default())]
    fusion: sift_pipeline::fusion::Fusion,

    /// Embedding model (default: the one the collection was built with).
    #[arg(long)]
    embed_model: Option<String>,

    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,

    /// Show each hit's dense, BM25, fused and rerank positions.
    #[arg(long)]
    explain: bool,

    /// Print the time of each stage.
    #[arg(long)]
    timings: bool,

    #[command(flatten)]
    long_documents: LongDocumentFlags,

    #[command(flatten)]
    pub engine: EngineFlags,

    #[command(flatten)]
    pub embed_precision: EmbedPrecisionFlag,

    #[command(flatten)]
    pub rerank_precision: RerankPrecisionFlag,

    #[command(flatten)]
    scoring: RerankScoringFlags,
}

pub fn run(args: SearchArgs) -> Result<()> {
    let load_started = Instant::now();
    let policy = args.long_documents.policy()?;
    let collection = store::open(&args.collection, Access::Search)?;
    let query_vector = args
        .query_vector
        .as_deref()
        .map(crate::documents::read_query_vector)
        .transpose()?;
    let external = collection.manifest().embedding.is_external();
    let embedder = if args.mode == SearchMode::Bm25
        || query_vector.is_some()
        || (external && args.embed_model.is_none())
    {
        None
    } else {
        let name = args.embed_model.clone().unwrap_or_else(|| {
            crate::model_path::collection_embedder(&collection.manifest().embedding)
        });
        Some(load_embedder(
            &name,
            args.engine.options(args.embed_precision.get()),
        )?)
    };
    let reranker = match &args.rerank_model {
        Some(name) => Some(load_reranker(
            name,
            args.scoring
                .options(args.engine.options(args.rerank_precision.get())),
        )?),
        None => None,
    };
    let pipeline = Pipeline::new(embedder, reranker, collection)?.with_policy(policy)?;
    let load_ms = load_started.elapsed().as_secs_f64() * 1000.0;
    let options = SearchOptions {
        mode: args.mode,
        depth: args.depth,
        candidates: args.candidates,
        top_k: args.top_k,
        rerank: true,
        first_stage_weight: args.first_stage_weight,
        fusion: args.fusion,
        query_vector,
    };
    let results = pipeline.search(&args.query, &options)?;
    if args.json {
        let mut v = serde_json::to_value(&results)?;
        if !args.timings {
            if let Some(o) = v.as_object_mut() {
                o.remove("timings");
            }
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_table(&results, args.explain);
    }
    if args.timings {
        let t = &results.timings;
        eprintln!(
            "timings (ms): query embedding {:.1} | ANN {:.1} | BM25 {:.1} | fusion {:.1} | rerank {:.1} | total {:.1}   (open collection + load models: {:.0})",
            t.query_embedding_ms, t.ann_ms, t.bm25_ms, t.fusion_ms, t.rerank_ms, t.total_ms, load_ms
        );
    }
    Ok(())
}

fn clip(s: &str, width: usize) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= width {
        flat
    } else {
        let mut out: String = flat.chars().take(width.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

fn rank(r: Option<usize>) -> String {
    r.map(|r| r.to_string()).unwrap_or_else(|| "-".into())
}

fn print_table(results: &SearchResults, explain: bool) {
    if results.hits.is_empty() {
        println!("no results");
        return;
    }
    if explain {
        println!(
            "{:>4} {:>8} {:<14} {:>5} {:>5} {:>5} {:>7}  {:<36} SNIPPET",
            "RANK", "SCORE", "ID", "DENSE", "BM25", "FUSED", "RERANK", "TITLE"
        );
    } else {
        println!(
            "{:>4} {:>8} {:<14} {:<36} SNIPPET",
            "RANK", "SCORE", "ID", "TITLE"
        );
    }
    for h in &results.hits {
        let title = clip(h.title.as_deref().unwrap_or(""), 36);
        let snippet = clip(&h.snippet, 70);
        if explain {
            let rerank = h
                .rerank_score
                .map(|s| format!("{s:.4}"))
                .unwrap_or_else(|| "-".into());
            println!(
                "{:>4} {:>8.4} {:<14} {:>5} {:>5} {:>5} {:>7}  {:<36} {}",
                h.rank,
                h.score,
                clip(&h.id, 14),
                rank(h.dense_rank),
                rank(h.bm25_rank),
                h.fused_rank,
                rerank,
                title,
                snippet
            );
        } else {
            println!(
                "{:>4} {:>8.4} {:<14} {:<36} {}",
                h.rank,
                h.score,
                clip(&h.id, 14),
                title,
                snippet
            );
        }
    }
    if explain && results.reranked {
        let moved = results
            .hits
            .iter()
            .filter(|h| h.fused_rank != h.rank)
            .count();
        println!(
            "reranking moved {moved} of the top {} hits",
            results.hits.len()
        );
        if let Some(plan) = &results.rerank_plan {
            println!("rerank plan: {plan}");
        }
    }
}
