//! `sift train-reranker`: fine-tune a cross-encoder on labelled query–document pairs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use sift_eval::{Dataset, Qrels, Split, SplitRule};
use sift_index::store::{self, Access, Location};
use sift_models::ModelDir;
use sift_pipeline::{Pipeline, SearchMode};
use sift_train::trainer::recent_loss;
use sift_train::{
    read_checkpoint, DevSet, Event, ExitWeighting, GroupRecipe, Job, Loss, Pooler, Recipe,
};

use super::distill_flags::{check_teacher, DistillFlags, Student};
use super::memory::peak_rss_bytes;
use super::progress_bar;
use crate::model_path::{load_embedder, resolve};

/// Fine-tune a cross-encoder (reranker) on labelled pairs, on CPU.
///
/// Starts from any supported encoder (BERT, XLM-R, MPNet; a fresh one-label head is added) or
/// cross-encoder (training continues). Each training group is a query, one relevant document
/// and negatives: hard ones from sift's first stage over the corpus (top --negative-depth of
/// hybrid recall, minus the judged-relevant), random ones and, with --prior-negatives, other
/// queries' positives. The query split is sift's (--split-rule; `sift eval --split dev`
/// evaluates the dev side). At the end of each epoch the model reranks the first stage's top
/// --dev-depth for the first --dev-queries dev queries, alone and blended with the first
/// stage's order at weights 0, 0.1, …, 1; the best model by its best blend's nDCG@10 is written
/// to --out in the Hugging Face layout, with the weight in sift_rerank.json (search applies it
/// by default). --out/checkpoint holds the latest state: rerun with --resume after an
/// interruption.
#[derive(Args)]
#[command(
    after_help = "Example (the default recipe on SciFact: ~40 min on 2 cores):\n  \
sift train-reranker --base all-MiniLM-L6-v2 --data ../shared/data/scifact \\\n    \
--collection scifact --out scifact-reranker\n  \
sift search --collection scifact --rerank-model scifact-reranker \"statins and dementia\""
)]
pub struct TrainRerankerArgs {
    /// Model to start from: a directory or a name under $SIFT_MODELS_DIR.
    #[arg(long)]
    base: String,

    /// BEIR dataset folder (corpus.jsonl, queries*.jsonl, qrels*.tsv).
    #[arg(long, required_unless_present_all = ["corpus", "queries", "qrels"])]
    data: Option<PathBuf>,

    /// Corpus file (BEIR corpus.jsonl), instead of --data.
    #[arg(long, requires_all = ["queries", "qrels"], conflicts_with = "data")]
    corpus: Option<PathBuf>,

    /// Queries file (BEIR queries.jsonl), instead of --data.
    #[arg(long)]
    queries: Option<PathBuf>,

    /// Judgements (BEIR qrels .tsv or TREC qrels), instead of --data.
    #[arg(long)]
    qrels: Option<PathBuf>,

    /// Collection of the corpus used to mine negatives and dev candidates (built if missing):
    /// a directory or a postgres:// address.
    #[arg(long, short, value_parser = crate::location_arg::LocationParser)]
    collection: Location,

    /// Embedding model of the collection (default: the one it was built with; for a new
    /// collection: all-MiniLM-L6-v2).
    #[arg(long)]
    embed_model: Option<String>,

    /// Output directory (must not exist, unless --resume).
    #[arg(long)]
    out: PathBuf,

    /// Continue an interrupted run from --out/checkpoint (same flags required).
    #[arg(long)]
    resume: bool,

    /// First stage used for hard negatives and dev candidates.
    #[arg(long, default_value = "hybrid")]
    first_stage: SearchMode,

    /// Hard negatives per group.
    #[arg(long, default_value_t = 6)]
    hard_negatives: usize,

    /// Random negatives per group.
    #[arg(long, default_value_t = 1)]
    random_negatives: usize,

    /// Negatives per group drawn from other training queries' positives, so a document that is
    /// often relevant is also often a negative (counters a learned document prior).
    #[arg(long, default_value_t = 0)]
    prior_negatives: usize,

    /// Inverse-cloze examples added to the labelled ones: a sentence of a corpus document as
    /// the query, the rest of the document as its positive (each document at most once; never
    /// a document relevant to a dev query). Default: as many as there are training queries —
    /// on SciFact this turned a reranker that lost to recall on unseen queries into one that
    /// beats it (docs/quality.md). 0 trains on the labelled queries alone.
    #[arg(long)]
    synthetic_queries: Option<usize>,

    /// Hard negatives are drawn from this many top first-stage results.
    #[arg(long, default_value_t = 30, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=sift_pipeline::search::MAX_DEPTH as u64))]
    negative_depth: usize,

    /// listwise (softmax cross-entropy over each group) or bce (pointwise).
    #[arg(long, default_value = "listwise")]
    loss: Loss,

    /// Passes over the labelled and synthetic examples (1 with the default synthetic share
    /// measured best on the leak-free split: docs/quality.md).
    #[arg(long, default_value_t = 1)]
    epochs: usize,

    /// Peak learning rate (after warmup; decays linearly to 0).
    #[arg(long, default_value_t = 1e-4)]
    learning_rate: f64,

    /// Learning-rate multiplier for a freshly initialised classification head.
    #[arg(long, default_value_t = 25.0)]
    fresh_lr_scale: f64,

    /// BERT bases: where the fresh head's pooler (dense + tanh on [CLS]) starts. `fresh` draws
    /// it like the classifier and trains it at the fresh head's rate; `base` keeps the
    /// checkpoint's, which a sentence-transformers bi-encoder never trained (a SciFact run with
    /// it sat at chance for most of its steps: docs/quality.md). No effect on XLM-R and MPNet
    /// (their head's dense layer is always fresh) or on a base that already is a cross-encoder.
    #[arg(long, default_value = "fresh")]
    pooler: Pooler,

    #[arg(long, default_value_t = 0.01)]
    weight_decay: f64,

    #[arg(long, default_value_t = 0.1)]
    warmup_ratio: f64,

    /// Groups per forward/backward pass.
    #[arg(long, default_value_t = 2)]
    groups_per_batch: usize,

    /// Passes per optimizer step (gradient accumulation).
    #[arg(long, default_value_t = 2)]
    accumulation_steps: usize,

    /// Longest query+document pair in tokens (160 keeps the default recipe within an hour on
    /// 2 cores for SciFact).
    #[arg(long, default_value_t = 160)]
    max_length: usize,

    #[arg(long, default_value_t = 42)]
    seed: u64,

    /// Save a resumable checkpoint every N optimizer steps.
    #[arg(long, default_value_t = 25)]
    checkpoint_every: usize,

    /// Train a layerwise reranker: a scoring head after every layer, all learned together
    /// (the mean of their listwise losses). `--rerank-layer N` then scores with N layers only,
    /// and `--rerank-cascade` finishes only the best candidates of an early exit. The output
    /// still loads in transformers as the ordinary model (the last layer's head).
    #[arg(long, conflicts_with = "exit_layers")]
    layerwise: bool,

    /// Layerwise with heads after these layers only (counted from 1, comma-separated, e.g.
    /// `2,4`); the last layer always has its head.
    #[arg(long, value_delimiter = ',')]
    exit_layers: Vec<usize>,

    /// Layerwise: how the exits' losses are weighed, uniform (their mean; the measured
    /// recipe, docs/quality.md) or depth (exit after layer l counts l/Σl, so the shallow heads
    /// pull the shared layers less; not measured yet).
    #[arg(long, default_value = "uniform")]
    exit_weighting: ExitWeighting,

    #[command(flatten)]
    distill: DistillFlags,

    /// Stop after N optimizer steps (the schedule still spans the full run).
    #[arg(long)]
    max_steps: Option<usize>,

    /// Dev queries evaluated after each epoch (the first by id); 0 disables evaluation.
    #[arg(long, default_value_t = 60)]
    dev_queries: usize,

    /// How dev queries are held out of training: families (default: queries sharing a relevant
    /// document stay on one side, so no dev query's relevant document is a training positive),
    /// documents (each relevant document drawn to a side; queries with both are left out) or
    /// ids-leaky (every fifth query id; lets a document prior inflate dev numbers).
    #[arg(long, default_value = "families")]
    split_rule: SplitRule,

    /// First-stage candidates reranked per dev query. The blend weight chosen on dev holds at
    /// this depth only (a reranker pushes the documents it dislikes further down a longer
    /// list, so the first stage needs more weight to bring them back): the default is search's
    /// default --candidates.
    #[arg(long, default_value_t = 100, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=sift_pipeline::search::MAX_DEPTH as u64))]
    dev_depth: usize,

    #[command(flatten)]
    pub engine: crate::inference::EngineFlags,

    #[command(flatten)]
    pub embed_precision: crate::inference::EmbedPrecisionFlag,
}

/// First-stage rankings, saved at the start so a resumed run trains on the same negatives.
#[derive(serde::Serialize, serde::Deserialize)]
struct FirstStage {
    train: BTreeMap<String, Vec<String>>,
    dev: BTreeMap<String, Vec<String>>,
    /// Of the synthetic queries (absent in runs made before they existed).
    #[serde(default)]
    synthetic: BTreeMap<String, Vec<String>>,
}

fn open_pipeline(args: &TrainRerankerArgs, corpus: &Path) -> Result<Pipeline> {
    let engine = args.engine.options(args.embed_precision.get());
    crate::documents::ensure_collection(
        &args.collection,
        corpus,
        args.embed_model.as_deref(),
        engine,
    )?;
    let collection = store::open(&args.collection, Access::Search)?;
    let name = args.embed_model.clone().unwrap_or_else(|| {
        crate::model_path::collection_embedder(&collection.manifest().embedding)
    });
    let embedder = load_embedder(&name, engine)?;
    Ok(Pipeline::new(Some(embedder), None, collection)?)
}

pub fn run(args: TrainRerankerArgs) -> Result<()> {
    // Everything checkable is checked before the long work starts.
    if args.out.exists() && !args.resume {
        bail!(
            "{} already exists; choose a new --out, or pass --resume to continue an interrupted run there",
            args.out.display()
        );
    }
    if args.resume {
        match read_checkpoint(&args.out)? {
            Some((_, state)) => eprintln!("resuming at step {}/{}", state.step, state.total_steps),
            None => bail!("--resume: {} holds no checkpoint", args.out.display()),
        }
    }
    let base_dir = resolve(&args.base)?;
    let base =
        ModelDir::open(&base_dir).with_context(|| format!("base model {}", base_dir.display()))?;
    let mut recipe = Recipe {
        max_length: args.max_length,
        epochs: args.epochs,
        learning_rate: args.learning_rate,
        fresh_lr_scale: args.fresh_lr_scale,
        weight_decay: args.weight_decay,
        warmup_ratio: args.warmup_ratio,
        groups_per_batch: args.groups_per_batch,
        accumulation_steps: args.accumulation_steps,
        groups: GroupRecipe {
            hard_negatives: args.hard_negatives,
            random_negatives: args.random_negatives,
            negative_depth: args.negative_depth,
            prior_negatives: args.prior_negatives,
        },
        loss: args.loss,
        seed: args.seed,
        max_grad_norm: 1.0,
        max_steps: args.max_steps,
        // Set once the training queries are known.
        synthetic_queries: args.synthetic_queries.unwrap_or(0),
        exit_layers: if args.layerwise {
            (1..=base.config.num_layers).collect()
        } else {
            args.exit_layers.clone()
        },
        exit_weighting: args.exit_weighting,
        pooler: args.pooler,
        distillation: args.distill.distillation()?,
    };
    recipe.validate()?;
    check_teacher(recipe.distillation.as_ref(), Student::Reranker)?;
    let layers = base.config.num_layers;
    if let Some(bad) = recipe.exit_layers.iter().find(|&&l| l == 0 || l > layers) {
        bail!(
            "--exit-layers {bad}: {} has layers 1 to {layers}",
            base_dir.display()
        );
    }
    let dataset = match &args.data {
        Some(dir) => Dataset::load(dir, None)?,
        None => Dataset::from_files(
            args.corpus.as_deref().expect("clap requires --corpus"),
            &[args.queries.clone().expect("clap requires --queries")],
            &[args.qrels.clone().expect("clap requires --qrels")],
        )?,
    };
    let corpus = sift_train::read_corpus(&dataset.corpus)?;
    let train_queries =
        sift_train::labelled_queries(&dataset, &corpus, Split::Train, args.split_rule)?;
    let mut dev_queries =
        sift_train::labelled_queries(&dataset, &corpus, Split::Dev, args.split_rule)?;
    dev_queries.truncate(args.dev_queries);
    let held_out = sift_train::held_out_documents(&dataset, args.split_rule);
    recipe.synthetic_queries = args.synthetic_queries.unwrap_or(train_queries.len());
    let synthetic =
        sift_train::inverse_cloze(&corpus, &held_out, recipe.synthetic_queries, args.seed);
    let synthetic_queries: Vec<sift_train::LabelledQuery> =
        synthetic.iter().map(|s| s.query.clone()).collect();
    eprintln!(
        "{} documents; {} training queries ({} relevant pairs); {} synthetic queries; {} dev queries",
        corpus.len(),
        train_queries.len(),
        train_queries
            .iter()
            .map(|q| q.relevant.len())
            .sum::<usize>(),
        synthetic.len(),
        dev_queries.len()
    );
    let started = Instant::now();

    let first_stage_path = args.out.join("first_stage.json");
    let first_stage: FirstStage = if args.resume && first_stage_path.is_file() {
        let text = std::fs::read_to_string(&first_stage_path)?;
        serde_json::from_str(&text).with_context(|| first_stage_path.display().to_string())?
    } else {
        let pipeline = open_pipeline(&args, &dataset.corpus)?;
        let bar = progress_bar(
            train_queries.len() + synthetic_queries.len() + dev_queries.len(),
            "queries",
        );
        bar.set_message("mining");
        let mut tick = |n: usize| bar.inc(n as u64);
        let train = sift_train::first_stage(
            &pipeline,
            &train_queries,
            args.negative_depth,
            args.first_stage,
            &mut tick,
        )?;
        let synthetic = sift_train::first_stage(
            &pipeline,
            &synthetic_queries,
            args.negative_depth,
            args.first_stage,
            &mut tick,
        )?;
        let dev = sift_train::first_stage(
            &pipeline,
            &dev_queries,
            args.dev_depth,
            args.first_stage,
            &mut tick,
        )?;
        bar.finish_and_clear();
        std::fs::create_dir_all(&args.out)?;
        let fs = FirstStage {
            train,
            dev,
            synthetic,
        };
        std::fs::write(&first_stage_path, serde_json::to_string(&fs)?)?;
        fs
    };

    let mut dev_qrels = Qrels::default();
    for q in &dev_queries {
        if let Some(j) = dataset.qrels.judgements.get(&q.id) {
            dev_qrels.judgements.insert(q.id.clone(), j.clone());
        }
    }
    let dev = DevSet {
        queries: dev_queries,
        candidates: first_stage.dev,
        qrels: dev_qrels,
    };
    let baseline = (!dev.queries.is_empty()).then(|| dev.first_stage_metrics());
    if let Some(b) = &baseline {
        eprintln!(
            "dev, first stage alone ({} queries, top {}): nDCG@10 {:.4}  MRR@10 {:.4}  R@10 {:.4}",
            dev.queries.len(),
            args.dev_depth,
            b.ndcg_at_10,
            b.mrr_at_10,
            b.recall_at_10
        );
    }
    let data = sift_train::TrainingSet::new(corpus, &train_queries, first_stage.train)?
        .with_synthetic(synthetic, first_stage.synthetic);
    let total = recipe.total_steps(data.examples.len());
    eprintln!(
        "training {} steps of {} groups × {} pairs ({} epoch(s), {:?} loss)",
        recipe.max_steps.map_or(total, |m| m.min(total)),
        recipe.groups_per_step(),
        sift_train::TrainingSet::group_size(&recipe.groups),
        recipe.epochs,
        recipe.loss
    );

    let bar = progress_bar(recipe.max_steps.map_or(total, |m| m.min(total)), "steps");
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} steps ({per_sec}, ETA {eta}) {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut losses = Vec::new();
    let quiet = !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let step_delay_ms: Option<u64> = std::env::var("SIFT_TRAIN_STEP_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok());
    let mut on_event = |e: Event| match e {
        Event::Step {
            step,
            total,
            loss,
            learning_rate,
        } => {
            losses.push(loss);
            bar.set_position(step as u64);
            if let Some(ms) = step_delay_ms {
                // Test hook: slows steps so the interruption test can kill a run mid-way.
                std::thread::sleep(std::time::Duration::from_millis(ms));
            }
            bar.set_message(format!(
                "loss {:.4} lr {learning_rate:.2e}",
                recent_loss(&losses, 20)
            ));
            if quiet && (step % 10 == 0 || step == total) {
                eprintln!(
                    "step {step}/{total} loss {:.4} lr {learning_rate:.2e}",
                    recent_loss(&losses, 20)
                );
            }
        }
        Event::Checkpoint { step } => {
            if quiet {
                eprintln!("checkpoint at step {step}");
            }
        }
        Event::Evaluated {
            epoch,
            evaluation: e,
            best,
            ..
        } => {
            let line = format!(
                "epoch {epoch}: dev nDCG@10 {:.4}  MRR@10 {:.4}  R@10 {:.4} alone; nDCG@10 {:.4} with the first stage at weight {:.1}{}",
                e.alone.ndcg_at_10,
                e.alone.mrr_at_10,
                e.alone.recall_at_10,
                e.blended.ndcg_at_10,
                e.first_stage_weight,
                if best { "  (best so far: saved)" } else { "" }
            );
            if quiet {
                eprintln!("{line}");
            } else {
                bar.println(line);
            }
        }
    };
    let job = Job {
        base: &base,
        data: &data,
        dev: &dev,
        recipe: recipe.clone(),
        out: args.out.clone(),
        resume: args.resume,
    };
    let state = sift_train::train(job, args.checkpoint_every, &mut on_event)?;
    bar.finish_and_clear();
    let peak = peak_rss_bytes();
    let summary = serde_json::json!({
        "base": base.path.display().to_string(),
        "recipe": recipe,
        "split_rule": format!("{:?}", args.split_rule).to_lowercase(),
        "steps": state.step,
        "total_steps": state.total_steps,
        "training_seconds": state.seconds,
        "wall_seconds_this_run": started.elapsed().as_secs_f64(),
        "peak_rss_bytes": peak,
        "dev_first_stage": baseline,
        "dev_evals": state.evals,
        "best": state.best,
        "final_loss": recent_loss(&state.losses, 20),
    });
    std::fs::write(
        args.out.join("training.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    eprintln!(
        "done: {} steps in {:.0} s of training, peak memory {:.0} MiB; model in {}",
        state.step,
        state.seconds,
        peak as f64 / (1024.0 * 1024.0),
        args.out.display()
    );
    if let (Some(b), Some(best)) = (&baseline, &state.best) {
        eprintln!(
            "dev nDCG@10: first stage {:.4} → reranked {:.4} alone, {:.4} blended with the first stage at weight {:.1} (the default the model's sift_rerank.json now sets)",
            b.ndcg_at_10,
            best.metrics.ndcg_at_10,
            best.delivered().ndcg_at_10,
            best.first_stage_weight
        );
    }
    Ok(())
}
