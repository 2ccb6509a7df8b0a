//! `sift eval`: retrieval quality on BEIR-layout data.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use sift_eval::experiment::{run_grid, sanitize, seen_unseen, GridOptions, GridRow, QuerySet};
use sift_eval::report::{html_report, print_seen_unseen, print_table};
use sift_eval::{Dataset, DevSplit, Qrels, Split, SplitRule};
use sift_index::store::{self, Access, Location};
use sift_models::rerank::Cascade;
use sift_models::{Reranker, RerankerOptions};
use sift_pipeline::fusion::Fusion;
use sift_pipeline::{Pipeline, SearchMode};

use crate::inference::{
    EmbedPrecisionFlag, EngineFlags, LongDocumentFlags, RerankPrecisionFlag, RerankScoringFlags,
};
use crate::model_path::{load_embedder, load_reranker};

/// Evaluate retrieval on BEIR-layout data (corpus.jsonl, queries*.jsonl, qrels*.tsv): runs the
/// queries through each recall mode and each reranker, and reports nDCG@10, MRR@10, Recall@10,
/// Recall@100, hit rate@1/5/10 and MAP@100 (trec_eval definitions). Writes one TREC run file per
/// configuration and summary.json to --out.
///
/// The collection is built from the corpus when it does not exist yet. --split dev evaluates
/// sift's dev carve of a train set (--split-rule says how it is drawn), which training never
/// trains on. A reranker trained by sift is evaluated alone and blended with the first stage
/// at the weight its training chose (sift_rerank.json).
#[derive(Args)]
#[command(after_help = "Example:\n  \
sift eval --data ../shared/data/scifact --collection scifact --split dev --modes bm25,dense,hybrid")]
pub struct EvalArgs {
    /// BEIR dataset folder.
    #[arg(long)]
    data: PathBuf,

    /// Only use query/qrels files whose name contains this (e.g. "train", "test").
    #[arg(long)]
    files: Option<String>,

    /// Collection of the corpus (built if missing): a directory, or
    /// postgres://USER@HOST/DB?collection=NAME. With --matrix: a folder holding one collection
    /// per embedding model (in PostgreSQL: collections NAME-MODEL).
    #[arg(long, short, value_parser = crate::location_arg::LocationParser)]
    collection: Location,

    /// Compare several embedding models: bm25 once, dense and hybrid per model, each crossed
    /// with every reranker, in one table (plus report.html).
    #[arg(long)]
    matrix: bool,

    /// Embedding models: with --matrix, one collection each (repeatable; default
    /// all-MiniLM-L6-v2); without, the model of --collection — a path for one outside
    /// $SIFT_MODELS_DIR (default: the name its manifest records).
    #[arg(long)]
    embed_model: Vec<String>,

    /// Queries to evaluate: all, dev or train.
    #[arg(long, default_value = "all")]
    split: Split,

    /// How dev and train queries are divided: families (default: queries sharing a relevant
    /// document stay on one side, so no dev query's relevant document is a training positive),
    /// documents (each relevant document drawn to a side; queries with both are left out), or
    /// ids-leaky (every fifth query id; lets a document prior inflate dev numbers, kept only to
    /// compare with old results).
    #[arg(long, default_value = "families")]
    split_rule: SplitRule,

    /// Qrels a reranker was trained on: every metric is then also reported for the queries with
    /// a relevant document among those training positives ("seen") and the others ("unseen").
    /// With --split dev the dataset's own train side is used when this is not given.
    #[arg(long, value_name = "QRELS")]
    train_qrels: Option<PathBuf>,

    /// Recall modes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "bm25,dense,hybrid")]
    modes: Vec<SearchMode>,

    /// Rerank models to compare (repeatable); every mode also runs without reranking.
    #[arg(long)]
    rerank_model: Vec<String>,

    /// Documents each recall leg returns (1–10,000).
    #[arg(long, default_value_t = 100, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=sift_pipeline::search::MAX_DEPTH as u64))]
    depth: usize,

    /// Candidates the reranker scores (0–1,000).
    #[arg(long, default_value_t = 100, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=sift_pipeline::search::MAX_CANDIDATES as u64))]
    candidates: usize,

    /// Weights of the first stage's ranking blended into each reranker's order, to compare
    /// (comma-separated, 0–1). Every reranker is always evaluated alone (0) and with the weight
    /// its directory recommends (sift_rerank.json, written by train-reranker); the rerank
    /// scores are computed once for all weights.
    #[arg(long, value_delimiter = ',', value_parser = parse_weight)]
    first_stage_weights: Vec<f32>,

    /// How hybrid runs fuse the dense and BM25 legs: convex:dense=W (min–max normalized
    /// scores, the default at W = 0.5, chosen by --fusion-sweep), rrf (plain reciprocal rank
    /// fusion, k = 60) or rrf:k=K,dense=W (weighted RRF).
    #[arg(long, default_value_t = Fusion::default())]
    fusion: Fusion,

    /// Instead of the grid: retrieve both legs once per query (--depth deep) and score every
    /// fusion setting on them — RRF k 5–200 × dense weight 0.3–0.7, convex combinations at
    /// dense weight 0.1–0.9, each leg cut to 20/50/100 — best first, with plain RRF's row and
    /// the default's rows and the gain over plain RRF; writes fusion_sweep.json.
    #[arg(long)]
    fusion_sweep: bool,

    /// Evaluate at most this many queries (the first by id, after --skip-queries), for quick
    /// runs.
    #[arg(long)]
    max_queries: Option<usize>,

    /// Leave out the first N queries by id. `sift train-reranker` picks its epoch and blend
    /// weight on the first --dev-queries (60) dev queries: `--split dev --skip-queries 60`
    /// evaluates the ones no step of training saw.
    #[arg(long, default_value_t = 0)]
    skip_queries: usize,

    /// Folder for TREC run files, summary.json, report.html and qrels.tsv (the judgements of
    /// the evaluated queries).
    #[arg(long, default_value = "eval-out")]
    out: PathBuf,

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

    /// Layerwise rerankers: also a row for every early exit layer of each --rerank-model
    /// that has them (the per-layer quality/latency table).
    #[arg(long)]
    rerank_every_exit: bool,

    /// Also a row for each of these cascades (EXIT:KEEP, comma-separated, e.g. `1:20,2:40`) of
    /// each --rerank-model: EXIT an early exit of a layerwise model, or 0 for any cross-encoder
    /// (the leading KEEP candidates of the first stage, the rest in its order).
    #[arg(long, value_delimiter = ',', value_name = "EXIT:KEEP")]
    rerank_cascades: Vec<Cascade>,

    /// Also a row for each of these latency budgets (milliseconds per query, comma-separated)
    /// of each cross-encoder --rerank-model.
    #[arg(long, value_delimiter = ',', value_name = "MS")]
    rerank_budgets: Vec<f64>,
}

/// A blend weight in [0, 1].
pub(crate) fn parse_weight(s: &str) -> std::result::Result<f32, String> {
    match s.trim().parse::<f32>() {
        Ok(w) if (0.0..=1.0).contains(&w) => Ok(w),
        Ok(w) => Err(format!("{w} is not between 0 and 1")),
        Err(e) => Err(format!("{s:?} is not a number: {e}")),
    }
}

/// The collection `--matrix` builds for model `m`: a folder of `--collection` (local), or the
/// collection `NAME-MODEL` of its database (`NAME` the address's collection, if it names one).
fn matrix_collection(root: &Location, m: &str) -> Location {
    match root {
        Location::Local(dir) => Location::Local(dir.join(sanitize(m))),
        Location::Postgres(a) => {
            let name = match a.collection() {
                Some(c) => format!("{c}-{}", sanitize(m)),
                None => sanitize(m),
            };
            Location::Postgres(a.with_collection(&name))
        }
    }
}

pub fn run(args: EvalArgs) -> Result<()> {
    let data = Dataset::load(&args.data, args.files.as_deref())?;
    let policy = args.long_documents.policy()?;
    let embed_engine = args.engine.options(args.embed_precision.get());
    // (collection, embedding model to build it with)
    let targets: Vec<(Location, Option<String>)> = if args.matrix {
        let models = if args.embed_model.is_empty() {
            vec!["all-MiniLM-L6-v2".to_string()]
        } else {
            args.embed_model.clone()
        };
        models
            .iter()
            .map(|m| (matrix_collection(&args.collection, m), Some(m.clone())))
            .collect()
    } else {
        vec![(args.collection.clone(), args.embed_model.first().cloned())]
    };
    for (location, model) in &targets {
        crate::documents::ensure_collection(
            location,
            &data.corpus,
            model.as_deref(),
            embed_engine,
        )?;
    }

    let queries = QuerySet::select(
        &data,
        args.split,
        args.split_rule,
        args.skip_queries,
        args.max_queries,
    );
    let training = match &args.train_qrels {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Some(Qrels::parse(&path.display().to_string(), &text)?)
        }
        None if args.split == Split::Dev => {
            let sides = DevSplit::new(&data.qrels, args.split_rule);
            let mut train = data.qrels.clone();
            train
                .judgements
                .retain(|q, _| sides.contains(Split::Train, q));
            Some(train)
        }
        None => None,
    };
    let seen = training
        .as_ref()
        .map(|t| sift_eval::seen_queries(&queries.qrels, t));
    if queries.queries.is_empty() {
        bail!(
            "no queries to evaluate (split {:?}, {} judged queries)",
            args.split,
            data.qrels.judgements.len()
        );
    }
    let mut rerankers: Vec<(String, Option<Arc<dyn Reranker>>)> = vec![("none".into(), None)];
    let options = args
        .scoring
        .options(args.engine.options(args.rerank_precision.get()));
    for name in &args.rerank_model {
        let model = load_reranker(name, options.clone())?;
        let label = model.model_dir().name();
        let exits = model.exit_layers();
        // Exit and cascade rows are views sharing the loaded weights (and the graphs compiled
        // for them); only a budget needs its own load, which measures the model's cost.
        let early = exits.len().saturating_sub(1);
        let mut views = Vec::new();
        if args.rerank_every_exit {
            for &layer in &exits[..early] {
                views.push((format!("{label}@layer{layer}"), Some(layer), None));
            }
        }
        for &cascade in &args.rerank_cascades {
            views.push((format!("{label}@cascade{cascade}"), None, Some(cascade)));
        }
        let views = views
            .into_iter()
            .map(|(row, layer, cascade)| Ok((row, Some(model.with_exit(layer, cascade)?))))
            .collect::<Result<Vec<_>>>()?;
        rerankers.push((label.clone(), Some(model)));
        rerankers.extend(views);
        for &ms in &args.rerank_budgets {
            let model = load_reranker(
                name,
                RerankerOptions {
                    budget_ms: Some(ms),
                    cascade: None,
                    exit_layer: None,
                    ..options.clone()
                },
            )?;
            rerankers.push((format!("{label}@budget{ms}ms"), Some(model)));
        }
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    // The judgements of exactly the evaluated queries, so other systems can be scored on them.
    std::fs::write(args.out.join("qrels.tsv"), queries.qrels.to_tsv())
        .context("writing qrels.tsv")?;

    if args.fusion_sweep {
        return fusion_sweep(&args, &targets, &queries, embed_engine);
    }

    let mut rows: Vec<GridRow> = Vec::new();
    let mut missing_docs = 0;
    for (index, (location, model)) in targets.iter().enumerate() {
        let collection = store::open(location, Access::Search)?;
        // BM25 does not depend on the embedding model: run it for the first collection only.
        let modes: Vec<SearchMode> = args
            .modes
            .iter()
            .copied()
            .filter(|m| index == 0 || *m != SearchMode::Bm25)
            .collect();
        let embedder = if modes.iter().any(|m| *m != SearchMode::Bm25) {
            // The model given (a path, for a model outside $SIFT_MODELS_DIR) before the name
            // the manifest records; the pipeline checks its fingerprint either way.
            let name = model.clone().unwrap_or_else(|| {
                crate::model_path::collection_embedder(&collection.manifest().embedding)
            });
            Some(load_embedder(&name, embed_engine)?)
        } else {
            None
        };
        let pipeline = Pipeline::new(embedder, None, collection)?.with_policy(policy)?;
        if index == 0 {
            missing_docs = queries.documents_missing_from(&pipeline)?;
            eprintln!(
                "{} queries ({:?} split); {} judged query ids without query text; {} judged documents not in the collection; {} empty queries",
                queries.queries.len(),
                args.split,
                queries.judged_without_text,
                missing_docs,
                queries.empty_queries
            );
        }
        let runs = modes.len() * rerankers.len();
        let bar = super::progress_bar(runs * queries.queries.len(), "queries");
        let grid = run_grid(
            &pipeline,
            &queries,
            &modes,
            &rerankers,
            GridOptions {
                depth: args.depth,
                candidates: args.candidates,
                first_stage_weights: args.first_stage_weights.clone(),
                fusion: args.fusion,
            },
            &mut |n| bar.inc(n as u64),
        )?;
        bar.finish_and_clear();
        for row in &grid {
            let file = format!("{}.trec", row.name);
            std::fs::write(args.out.join(&file), row.run.to_trec("sift"))
                .with_context(|| format!("writing {file}"))?;
        }
        rows.extend(grid);
    }

    print_table(&rows);
    let breakdown = seen
        .as_ref()
        .map(|seen| seen_unseen(&rows, &queries.qrels, seen));
    if let Some(b) = &breakdown {
        print_seen_unseen(b);
    }
    let summary = serde_json::json!({
        "data": args.data.display().to_string(),
        "collection": args.collection.to_string(),
        "split": format!("{:?}", args.split).to_lowercase(),
        "split_rule": format!("{:?}", args.split_rule).to_lowercase(),
        "seen_queries": seen.as_ref().map(|s| s.len()),
        "seen_unseen": breakdown.as_ref().map(|b| b.iter().map(|r| serde_json::json!({
            "retriever": r.retriever,
            "reranker": r.reranker,
            "seen": r.seen.mean,
            "unseen": r.unseen.mean,
        })).collect::<Vec<_>>()),
        "queries": queries.queries.len(),
        "judged_queries_without_text": queries.judged_without_text,
        "judged_documents_not_in_collection": missing_docs,
        "empty_queries": queries.empty_queries,
        "depth": args.depth,
        "candidates": args.candidates,
        "long_documents": policy,
        "rerank_max_length": args.scoring.rerank_max_length,
        "runs": rows.iter().map(|r| serde_json::json!({
            "retriever": r.retriever,
            "reranker": r.reranker,
            "run_file": format!("{}.trec", r.name),
            "ms_per_query": r.ms_per_query,
            "rerank_ms_p50": r.rerank_ms_p50,
            "metrics": r.evaluation.mean,
        })).collect::<Vec<_>>(),
    });
    let path = args.out.join("summary.json");
    std::fs::write(&path, serde_json::to_string_pretty(&summary)?)?;
    let report = args.out.join("report.html");
    std::fs::write(
        &report,
        html_report(
            &rows,
            queries.queries.len(),
            &args.data.display().to_string(),
        ),
    )?;
    eprintln!(
        "wrote {}, {} and {} run file(s)",
        path.display(),
        report.display(),
        rows.len()
    );
    Ok(())
}

/// `--fusion-sweep`: every fusion setting on each target's legs, printed best first and written
/// to fusion_sweep.json.
fn fusion_sweep(
    args: &EvalArgs,
    targets: &[(Location, Option<String>)],
    queries: &QuerySet,
    embed_engine: sift_models::EngineOptions,
) -> Result<()> {
    use sift_eval::fusion_sweep::{retrieve_legs, sweep, SweepGrid};
    let grid = SweepGrid::default();
    let mut reports = Vec::new();
    for (location, model) in targets {
        let collection = store::open(location, Access::Search)?;
        let name = model.clone().unwrap_or_else(|| {
            crate::model_path::collection_embedder(&collection.manifest().embedding)
        });
        let embedder = load_embedder(&name, embed_engine)?;
        let pipeline = Pipeline::new(Some(embedder), None, collection)?;
        let bar = super::progress_bar(queries.queries.len(), "queries");
        let legs = retrieve_legs(&pipeline, queries, args.depth, &mut |n| bar.inc(n as u64))?;
        bar.finish_and_clear();
        let depth = args.depth.min(sift_pipeline::search::MAX_TOP_K);
        let rows = sweep(&queries.qrels, &legs, &grid, depth);
        let plain = rows
            .iter()
            .find(|r| r.fusion == Fusion::PLAIN_RRF && r.depth == depth)
            .map(|r| r.ndcg_at_10())
            .unwrap_or(0.0);
        println!(
            "fusion sweep: hybrid(bm25+{name}), {} queries, legs {depth} deep",
            queries.queries.len()
        );
        println!(
            "{:<28} {:>6} {:>8} {:>8} {:>8} {:>9}",
            "fusion", "depth", "nDCG@10", "R@100", "MRR@10", "Δ plain"
        );
        let metric = |r: &sift_eval::fusion_sweep::SweepRow, m: sift_eval::Metric| {
            r.evaluation.mean.get(&m.name()).copied().unwrap_or(0.0)
        };
        let shown: Vec<_> = rows
            .iter()
            .enumerate()
            .filter(|(i, r)| {
                *i < 15
                    || (r.depth == depth
                        && (r.fusion == Fusion::PLAIN_RRF || r.fusion == Fusion::default()))
            })
            .map(|(_, r)| r)
            .collect();
        for r in shown {
            println!(
                "{:<28} {:>6} {:>8.4} {:>8.4} {:>8.4} {:>+9.4}",
                r.fusion.to_string(),
                r.depth,
                r.ndcg_at_10(),
                metric(r, sift_eval::Metric::Recall(100)),
                metric(r, sift_eval::Metric::ReciprocalRank(10)),
                r.ndcg_at_10() - plain
            );
        }
        if let Some(best) = rows.first() {
            println!(
                "best: {} with legs {} deep, nDCG@10 {:.4} ({:+.4} over plain RRF at {depth})",
                best.fusion,
                best.depth,
                best.ndcg_at_10(),
                best.ndcg_at_10() - plain
            );
        }
        reports.push(serde_json::json!({
            "collection": location.to_string(),
            "embedding_model": name,
            "queries": queries.queries.len(),
            "leg_depth": depth,
            "plain_rrf_ndcg_at_10": plain,
            // The fusion as `--fusion` spells it: copyable, and its weights read as written
            // (0.4), not as their f32 widened to f64 (0.4000000059604645).
            "rows": rows.iter().map(|r| serde_json::json!({
                "fusion": r.fusion.to_string(),
                "depth": r.depth,
                "metrics": r.evaluation.mean,
            })).collect::<Vec<_>>(),
        }));
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let path = args.out.join("fusion_sweep.json");
    std::fs::write(&path, serde_json::to_string_pretty(&reports)?)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
