//! `sift bench`: forward-pass throughput of one model on one engine, for side-by-side runs
//! against other runtimes (scripts/bench/inference.py drives it; see docs/performance.md).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use sift_models::{Embedder, EmbedderOptions, Encoded, EngineOptions, RerankerOptions};

use crate::model_path::resolve;

#[derive(Clone, Copy, ValueEnum)]
pub enum Task {
    /// Bi-encoder: token states pooled into vectors.
    Embed,
    /// Cross-encoder: one relevance logit per pair.
    Rerank,
    /// The local collection at scale: ingest, ANN recall, hybrid search latency, memory, disk
    /// and open time for --chunks synthetic chunks (no model).
    Search,
}

/// Measure inference throughput: tokens per second over pre-tokenized inputs, model loading
/// and tokenization excluded. Prints one JSON object.
///
/// Inputs come from --input (a JSON file `{"sequences": [{"ids": [...], "type_ids": [...]}]}`,
/// as scripts/bench/inference.py writes so every runtime sees identical tokens) or are
/// synthetic (--synthetic 32x128: 32 sequences of 128 random tokens). Throughput counts real
/// tokens only, so time spent on padding counts against the engine.
#[derive(Args)]
#[command(after_help = "Examples:\n  \
sift bench --model all-MiniLM-L6-v2 --task embed --synthetic 32x128 --runs 5\n  \
sift bench --model ./reranker --task rerank --input target/bench/rerank.json --precision int8\n  \
sift bench --task search --chunks 1000000 --sentences ../shared/data/scifact/corpus.jsonl\n  \
scripts/bench/inference.py   # sift against ONNX Runtime and PyTorch, alternating")]
pub struct BenchArgs {
    /// Model directory or name (embed and rerank tasks).
    #[arg(long, short)]
    model: Option<String>,

    #[arg(long, value_enum, required_unless_present = "peak")]
    task: Option<Task>,

    /// Measure the machine's f32 peak (FMA from registers on every thread) and exit.
    #[arg(long)]
    peak: bool,

    /// Pre-tokenized sequences (JSON).
    #[arg(long, conflicts_with = "synthetic")]
    input: Option<PathBuf>,

    /// Synthetic fixed-shape input, `ROWSxTOKENS` (special tokens included).
    #[arg(long)]
    synthetic: Option<String>,

    /// Timed passes over the whole input (after one untimed warm-up pass).
    #[arg(long, default_value_t = 3)]
    runs: usize,

    /// Padded tokens per forward pass (sift's length-sorted batching).
    #[arg(long)]
    batch_tokens: Option<usize>,

    /// LLM rerankers: recompute the prefix the pairs share with every pair (to measure what
    /// sharing it saves).
    #[arg(long)]
    no_shared_prefix: bool,

    /// Layerwise LLM rerankers: stop after this layer (to time what a cutoff saves).
    #[arg(long)]
    cutoff_layer: Option<usize>,

    /// f32, or int8 (ONNX Runtime only).
    #[arg(long, default_value = "f32")]
    precision: sift_models::Precision,

    #[command(flatten)]
    pub engine: crate::inference::EngineFlags,

    #[command(flatten)]
    pub scale: super::bench_search::ScaleFlags,
}

#[derive(Deserialize)]
struct Workload {
    sequences: Vec<Encoded>,
}

#[derive(Serialize)]
struct Report {
    model: String,
    task: &'static str,
    engine: &'static str,
    threads: usize,
    sequences: usize,
    /// Real (unpadded) tokens per pass.
    tokens: usize,
    /// Seconds of each timed pass.
    seconds: Vec<f64>,
    /// Real tokens per second, median over passes.
    tokens_per_second: f64,
}

pub fn run(args: BenchArgs) -> Result<()> {
    let threads = args
        .engine
        .threads
        .map_or_else(sift_models::engine::default_threads, |t| t.get());
    if args.peak {
        let (gflops, isa) = super::peak::f32_peak_gflops(threads, 2000);
        println!(
            "{}",
            serde_json::json!({"f32_peak_gflops": gflops, "threads": threads, "instructions": isa})
        );
        return Ok(());
    }
    if matches!(args.task, Some(Task::Search)) {
        return super::bench_search::run(&args.scale);
    }
    let (Some(model_arg), Some(task)) = (&args.model, args.task) else {
        bail!("--model and --task are required (--task search needs no model)");
    };
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let dir = resolve(model_arg)?;
    let engine = args.engine.options(args.precision);
    let model = Model::load(
        &dir,
        task,
        engine,
        args.batch_tokens,
        !args.no_shared_prefix,
        args.cutoff_layer,
    )?;
    let sequences = match (&args.input, &args.synthetic) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let w: Workload = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a bench workload", path.display()))?;
            w.sequences
        }
        (None, Some(shape)) => synthetic(shape, model.vocab_size())?,
        (None, None) => bail!("give --input FILE or --synthetic ROWSxTOKENS"),
    };
    if sequences.is_empty() {
        bail!("the workload has no sequences");
    }
    for (i, s) in sequences.iter().enumerate() {
        if s.ids.is_empty() || s.ids.len() != s.type_ids.len() {
            bail!("sequence {i}: ids and type_ids must be non-empty and of equal length");
        }
        if s.ids.len() > model.max_tokens() {
            bail!(
                "sequence {i} has {} tokens; the model takes at most {}",
                s.ids.len(),
                model.max_tokens()
            );
        }
    }
    let tokens: usize = sequences.iter().map(Encoded::len).sum();

    model.pass(&sequences)?; // warm-up: first-touch allocations, weight pre-packing
    let mut seconds = Vec::with_capacity(args.runs);
    for _ in 0..args.runs {
        let start = Instant::now();
        model.pass(&sequences)?;
        seconds.push(start.elapsed().as_secs_f64());
    }
    let mut sorted = seconds.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let report = Report {
        model: dir.display().to_string(),
        task: match task {
            Task::Embed => "embed",
            Task::Rerank => "rerank",
            Task::Search => "search",
        },
        engine: model.engine_name(),
        threads,
        sequences: sequences.len(),
        tokens,
        seconds,
        tokens_per_second: tokens as f64 / median,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

enum Model {
    Embed(Box<Embedder>),
    Rerank(std::sync::Arc<dyn sift_models::Reranker>),
}

impl Model {
    fn load(
        dir: &std::path::Path,
        task: Task,
        engine: EngineOptions,
        batch_tokens: Option<usize>,
        share_prefix: bool,
        cutoff_layer: Option<usize>,
    ) -> Result<Self> {
        Ok(match task {
            Task::Embed => Model::Embed(Box::new(Embedder::load(
                dir,
                EmbedderOptions {
                    engine,
                    max_batch_tokens: batch_tokens,
                    ..Default::default()
                },
            )?)),
            Task::Rerank => Model::Rerank(sift_models::load_reranker(
                dir,
                RerankerOptions {
                    engine,
                    max_batch_tokens: batch_tokens,
                    share_prefix: Some(share_prefix),
                    cutoff_layer,
                    ..Default::default()
                },
            )?),
            Task::Search => bail!("the search benchmark loads no model"),
        })
    }

    fn config(&self) -> &sift_models::ModelConfig {
        match self {
            Model::Embed(m) => &m.model_dir().config,
            Model::Rerank(m) => &m.model_dir().config,
        }
    }

    fn vocab_size(&self) -> usize {
        self.config().vocab_size
    }

    fn max_tokens(&self) -> usize {
        self.config().max_tokens()
    }

    fn engine_name(&self) -> &'static str {
        match self {
            Model::Embed(m) => m.engine().name(),
            Model::Rerank(m) => m.engine_name(),
        }
    }

    fn pass(&self, sequences: &[Encoded]) -> Result<()> {
        match self {
            Model::Embed(m) => {
                m.embed_encoded(sequences, &mut |_| {})?;
            }
            Model::Rerank(m) => {
                m.score_pairs(sequences, &mut |_| {})?;
            }
        }
        Ok(())
    }
}

/// `rows` sequences of `tokens` ids drawn from the vocabulary (a fixed LCG, so every run and
/// engine sees the same ones); token type 0 throughout.
fn synthetic(shape: &str, vocab: usize) -> Result<Vec<Encoded>> {
    let (rows, tokens) = shape
        .split_once(['x', 'X'])
        .and_then(|(r, t)| Some((r.parse::<usize>().ok()?, t.parse::<usize>().ok()?)))
        .filter(|&(r, t)| r > 0 && t > 0)
        .with_context(|| format!("--synthetic {shape:?}: expected ROWSxTOKENS, e.g. 32x128"))?;
    // Skip the first 999 ids (special and unused tokens in BERT vocabularies) when there are
    // enough others.
    let first = if vocab > 2000 { 999 } else { 0 };
    let mut state: u64 = 0x5eed;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as usize % (vocab - first).max(1) + first) as u32
    };
    Ok((0..rows)
        .map(|_| Encoded {
            ids: (0..tokens).map(|_| next()).collect(),
            type_ids: vec![0; tokens],
        })
        .collect())
}
