//! `sift eval`: retrieval quality on BEIR-layout data.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use sift_eval::{evaluate, Dataset, Metric, Run, Split};
use sift_index::{AnnParams, Collection};
use sift_models::{CrossEncoder, CrossEncoderOptions, Embedder, EmbedderOptions};
use sift_pipeline::{Pipeline, SearchMode, SearchOptions};

use crate::model_path::resolve;

/// Evaluate retrieval on BEIR-layout data (corpus.jsonl, queries*.jsonl, qrels*.tsv): runs the
/// queries through each recall mode and each reranker, and reports nDCG@10, MRR@10, Recall@10,
/// Recall@100, hit rate@1/5/10 and MAP@100 (trec_eval definitions). Writes one TREC run file per
/// configuration and summary.json to --out.
///
/// The collection is built from the corpus when it does not exist yet. --split dev evaluates
/// sift's dev carve of a train set (query ids divisible by 5), which training never sees.
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

    /// Collection of the corpus (built if missing). With --matrix: a folder holding one
    /// collection per embedding model.
    #[arg(long, short)]
    collection: PathBuf,

    /// Compare several embedding models: bm25 once, dense and hybrid per model, each crossed
    /// with every reranker, in one table (plus report.html).
    #[arg(long)]
    matrix: bool,

    /// Embedding models for --matrix (repeatable; default all-MiniLM-L6-v2).
    #[arg(long)]
    embed_model: Vec<String>,

    /// Queries to evaluate: all, dev or train.
    #[arg(long, default_value = "all")]
    split: Split,

    /// Recall modes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "bm25,dense,hybrid")]
    modes: Vec<SearchMode>,

    /// Cross-encoders to compare (repeatable); every mode also runs without reranking.
    #[arg(long)]
    rerank_model: Vec<String>,

    /// Documents each recall leg returns.
    #[arg(long, default_value_t = 100)]
    depth: usize,

    /// Candidates the reranker scores.
    #[arg(long, default_value_t = 100)]
    candidates: usize,

    /// Evaluate at most this many queries (the first by id), for quick runs.
    #[arg(long)]
    max_queries: Option<usize>,

    /// Folder for TREC run files and summary.json.
    #[arg(long, default_value = "eval-out")]
    out: PathBuf,
}

const METRICS: [Metric; 8] = [
    Metric::Ndcg(10),
    Metric::ReciprocalRank(10),
    Metric::Recall(10),
    Metric::Recall(100),
    Metric::Success(1),
    Metric::Success(5),
    Metric::Success(10),
    Metric::AveragePrecision(100),
];

pub fn run(args: EvalArgs) -> Result<()> {
    let data = Dataset::load(&args.data, args.files.as_deref())?;
    // (collection dir, embedding model to build it with)
    let targets: Vec<(PathBuf, Option<String>)> = if args.matrix {
        let models = if args.embed_model.is_empty() {
            vec!["all-MiniLM-L6-v2".to_string()]
        } else {
            args.embed_model.clone()
        };
        models
            .iter()
            .map(|m| (args.collection.join(sanitize(m)), Some(m.clone())))
            .collect()
    } else {
        vec![(args.collection.clone(), args.embed_model.first().cloned())]
    };
    // A collection missing documents of the corpus (an interrupted build) is completed first:
    // evaluating it as it stands would count the missing documents as misses.
    let corpus_docs = std::fs::read_to_string(&data.corpus)
        .with_context(|| data.corpus.display().to_string())?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count();
    for (dir, model) in &targets {
        let exists = dir.join("collection.json").is_file();
        let complete =
            exists && Collection::open_for_search(dir, AnnParams::default())?.len() >= corpus_docs;
        if !complete {
            eprintln!(
                "{} {} from {}",
                if exists { "completing" } else { "building" },
                dir.display(),
                data.corpus.display()
            );
            super::index::run(super::index::IndexArgs {
                inputs: vec![data.corpus.clone()],
                collection: dir.clone(),
                embed_model: model.clone(),
                batch_size: 64,
                chunk_tokens: None,
                chunk_overlap: sift_pipeline::ingest::DEFAULT_OVERLAP_TOKENS,
                skip_invalid: false,
            })?;
        }
    }
    let collection = Collection::open_for_search(&targets[0].0, AnnParams::default())?;

    // Queries to run, and what cannot be evaluated (reported, not fatal).
    let mut qrels = data.qrels.clone();
    qrels.judgements.retain(|q, _| args.split.contains(q));
    let unknown_queries: Vec<String> = qrels
        .judgements
        .keys()
        .filter(|q| !data.queries.contains_key(*q))
        .cloned()
        .collect();
    let missing_docs: usize = qrels
        .judgements
        .values()
        .flat_map(|d| d.keys())
        .filter(|d| collection.get(d).is_none())
        .count();
    qrels.judgements.retain(|q, _| data.queries.contains_key(q));
    let mut empty_queries = 0;
    let mut queries: Vec<(String, String)> = Vec::new();
    for q in qrels.judgements.keys() {
        let text = &data.queries[q];
        if text.trim().is_empty() {
            empty_queries += 1;
        } else {
            queries.push((q.clone(), text.clone()));
        }
    }
    if let Some(n) = args.max_queries {
        queries.truncate(n);
        let kept: std::collections::HashSet<&String> = queries.iter().map(|(q, _)| q).collect();
        qrels.judgements.retain(|q, _| {
            kept.contains(q) || data.queries.get(q).is_some_and(|t| t.trim().is_empty())
        });
    }
    if queries.is_empty() {
        bail!(
            "no queries to evaluate (split {:?}, {} judged queries)",
            args.split,
            data.qrels.judgements.len()
        );
    }
    eprintln!(
        "{} queries ({:?} split); {} judged query ids without query text; {} judged documents not in the collection; {} empty queries",
        queries.len(),
        args.split,
        unknown_queries.len(),
        missing_docs,
        empty_queries
    );

    let mut rerankers: Vec<(String, Option<Arc<CrossEncoder>>)> = vec![("none".into(), None)];
    for name in &args.rerank_model {
        let dir = resolve(name)?;
        let model = CrossEncoder::load(&dir, CrossEncoderOptions::default())
            .with_context(|| format!("loading {}", dir.display()))?;
        rerankers.push((model.model_dir().name(), Some(Arc::new(model))));
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;

    let mut rows = Vec::new();
    let mut collection = Some(collection);
    for (index, (dir, _)) in targets.iter().enumerate() {
        let collection = match collection.take() {
            Some(c) => c,
            None => Collection::open_for_search(dir, AnnParams::default())?,
        };
        // BM25 does not depend on the embedding model: run it for the first collection only.
        let modes: Vec<SearchMode> = args
            .modes
            .iter()
            .copied()
            .filter(|m| index == 0 || *m != SearchMode::Bm25)
            .collect();
        let embedding_name = collection.manifest().embedding.name.clone();
        let embedder = if modes.iter().any(|m| *m != SearchMode::Bm25) {
            let model_dir = resolve(&embedding_name)?;
            Some(Arc::new(
                Embedder::load(&model_dir, EmbedderOptions::default())
                    .with_context(|| format!("loading {}", model_dir.display()))?,
            ))
        } else {
            None
        };
        let mut pipeline = Pipeline::new(embedder, None, collection)?;
        for (reranker_name, reranker) in &rerankers {
            pipeline.set_reranker(reranker.clone());
            for &mode in &modes {
                let label = match mode {
                    SearchMode::Bm25 => "bm25".to_string(),
                    SearchMode::Dense => format!("dense({embedding_name})"),
                    SearchMode::Hybrid => format!("hybrid(bm25+{embedding_name})"),
                };
                let options = SearchOptions {
                    mode,
                    depth: args.depth,
                    candidates: args.candidates,
                    top_k: 100,
                    rerank: reranker.is_some(),
                };
                let bar = super::progress_bar(queries.len(), "queries");
                let started = Instant::now();
                let mut run = Run::default();
                for (qid, text) in &queries {
                    let hits = pipeline.search(text, &options)?.hits;
                    let n = hits.len();
                    // Rank-derived scores keep sift's order under trec_eval's tie rule.
                    run.results.insert(
                        qid.clone(),
                        hits.into_iter()
                            .enumerate()
                            .map(|(i, h)| (h.id, (n - i) as f64))
                            .collect(),
                    );
                    bar.inc(1);
                }
                bar.finish_and_clear();
                let secs = started.elapsed().as_secs_f64();
                let eval = evaluate(&qrels, &run, &METRICS);
                let model_part = if mode == SearchMode::Bm25 {
                    String::new()
                } else {
                    format!("-{}", sanitize(&embedding_name))
                };
                let rerank_part = if reranker.is_some() {
                    format!("+{}", sanitize(reranker_name))
                } else {
                    String::new()
                };
                let file = format!("{}{model_part}{rerank_part}.trec", mode_file(mode));
                std::fs::write(args.out.join(&file), run.to_trec("sift"))
                    .with_context(|| format!("writing {file}"))?;
                rows.push((
                    label,
                    reranker_name.clone(),
                    eval,
                    secs / queries.len() as f64 * 1000.0,
                    file,
                ));
            }
        }
    }

    print_table(&rows);
    let summary = serde_json::json!({
        "data": args.data.display().to_string(),
        "collection": args.collection.display().to_string(),
        "split": format!("{:?}", args.split).to_lowercase(),
        "queries": queries.len(),
        "judged_queries_without_text": unknown_queries.len(),
        "judged_documents_not_in_collection": missing_docs,
        "empty_queries": empty_queries,
        "depth": args.depth,
        "candidates": args.candidates,
        "runs": rows.iter().map(|(retriever, reranker, eval, ms, file)| serde_json::json!({
            "retriever": retriever,
            "reranker": reranker,
            "run_file": file,
            "ms_per_query": ms,
            "metrics": eval.mean,
        })).collect::<Vec<_>>(),
    });
    let path = args.out.join("summary.json");
    std::fs::write(&path, serde_json::to_string_pretty(&summary)?)?;
    let report = args.out.join("report.html");
    std::fs::write(
        &report,
        html_report(&rows, queries.len(), &args.data.display().to_string()),
    )?;
    eprintln!(
        "wrote {}, {} and {} run file(s)",
        path.display(),
        report.display(),
        rows.len()
    );
    Ok(())
}

fn mode_file(mode: SearchMode) -> &'static str {
    match mode {
        SearchMode::Bm25 => "bm25",
        SearchMode::Dense => "dense",
        SearchMode::Hybrid => "hybrid",
    }
}

type Row = (String, String, sift_eval::Evaluation, f64, String);

/// What the tables call a metric: MRR and hit rate, as RAG evaluations name them.
fn label(m: Metric) -> String {
    match m {
        Metric::ReciprocalRank(k) => format!("MRR@{k}"),
        Metric::Success(k) => format!("Hit@{k}"),
        Metric::AveragePrecision(k) => format!("MAP@{k}"),
        other => other.name(),
    }
}

fn print_table(rows: &[Row]) {
    print!("| retriever | reranker |");
    for m in METRICS {
        print!(" {} |", label(m));
    }
    println!(" ms/query |");
    println!("|---|---|{}---|", "---|".repeat(METRICS.len()));
    for (retriever, reranker, eval, ms, _) in rows {
        print!("| {retriever} | {reranker} |");
        for m in METRICS {
            print!(" {:.4} |", eval.mean[&m.name()]);
        }
        println!(" {ms:.1} |");
    }
}

/// File-name-safe form of a model or run name.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One self-contained HTML page: the table and a horizontal bar chart per metric (inline SVG,
/// no scripts or external assets).
fn html_report(rows: &[Row], queries: usize, data: &str) -> String {
    let mut html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>sift eval</title><style>\
body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse}}\
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child,td:nth-child(2){{text-align:left}}\
h2{{margin-top:1.5em;font-size:1.1em}}</style></head><body><h1>sift eval</h1>\
<p>{} — {queries} queries. Metrics use trec_eval's definitions.</p><table><tr><th>retriever</th><th>reranker</th>",
        escape(data)
    );
    for m in METRICS {
        html.push_str(&format!("<th>{}</th>", escape(&label(m))));
    }
    html.push_str("<th>ms/query</th></tr>");
    for (retriever, reranker, eval, ms, _) in rows {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td>",
            escape(retriever),
            escape(reranker)
        ));
        for m in METRICS {
            html.push_str(&format!("<td>{:.4}</td>", eval.mean[&m.name()]));
        }
        html.push_str(&format!("<td>{ms:.1}</td></tr>"));
    }
    html.push_str("</table>");
    let (label_w, bar_w, row_h) = (360.0, 400.0, 22.0);
    for m in METRICS {
        let name = m.name();
        let title = label(m);
        let height = row_h * rows.len() as f64 + 10.0;
        html.push_str(&format!(
            "<h2>{}</h2><svg width=\"{}\" height=\"{height}\" role=\"img\" aria-label=\"{}\">",
            escape(&title),
            label_w + bar_w + 70.0,
            escape(&title)
        ));
        for (i, (retriever, reranker, eval, _, _)) in rows.iter().enumerate() {
            let v = eval.mean[&name];
            let y = i as f64 * row_h + 5.0;
            let label = if reranker == "none" {
                retriever.clone()
            } else {
                format!("{retriever} → {reranker}")
            };
            html.push_str(&format!(
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"12\">{}</text>\
<rect x=\"{label_w}\" y=\"{y}\" width=\"{:.1}\" height=\"{}\" fill=\"#4a7fb5\"/>\
<text x=\"{:.1}\" y=\"{}\" font-size=\"12\">{v:.4}</text>",
                label_w - 6.0,
                y + 14.0,
                escape(&label),
                v * bar_w,
                row_h - 6.0,
                label_w + v * bar_w + 4.0,
                y + 14.0
            ));
        }
        html.push_str("</svg>");
    }
    html.push_str("</body></html>\n");
    html
}
