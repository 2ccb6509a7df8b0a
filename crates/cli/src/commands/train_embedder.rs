//! `sift train-embedder`: fine-tune a bi-encoder (embedding model) on labelled query–document
//! pairs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use sift_eval::{Dataset, Split, SplitRule};
use sift_index::store::{self, Access, Location};
use sift_models::{Head, ModelDir, TextTokenizer};
use sift_pipeline::{Pipeline, SearchMode};
use sift_train::bi_encoder::DropoutRates;
use sift_train::distill::FirstStageScores;
use sift_train::embedder_trainer::{
    train_embedder, EmbedderDev, EmbedderEvent, EmbedderRecipe, EmbedderState,
};
use sift_train::trainer::recent_loss;
use sift_train::units::DocumentUnit;
use sift_train::{GroupRecipe, TeacherModel};

use super::distill_flags::{check_teacher, DistillFlags, Student};
use super::memory::peak_rss_bytes;
use super::progress_bar;
use crate::model_path::{load_embedder, resolve};

/// Fine-tune an embedding model (bi-encoder) on labelled pairs, on CPU.
///
/// Each step embeds --batch-size queries, their relevant documents and negatives: every other
/// query's positive (in-batch), --hard-negatives drawn from sift's own recall over the corpus
/// (the top --negative-depth of the collection's first stage, judged-relevant documents
/// excluded) and --random-negatives; the loss is the contrastive (InfoNCE) cross-entropy of
/// the query's positive against all of them. A document is the token windows the index will
/// embed, scored by its best one (--document-unit). The query split is sift's (--split-rule);
/// after each epoch the model retrieves the dev queries over the whole corpus the same way, and
/// the best epoch by dev nDCG@10 is written to --out as a sentence-transformers directory (sift index --embed-model,
/// sift embed and sentence-transformers load it). --out/checkpoint holds the latest state: rerun
/// with --resume after an interruption. A collection must be re-indexed with the new model.
#[derive(Args)]
#[command(after_help = "Example:\n  \
sift train-embedder --base all-MiniLM-L6-v2 --data ../shared/data/scifact --collection scifact --out scifact-embedder\n  \
sift index --collection scifact-ft --embed-model scifact-embedder ../shared/data/scifact/corpus.jsonl\n  \
sift eval --data ../shared/data/scifact --collection scifact-ft --split dev")]
pub struct TrainEmbedderArgs {
    /// Embedding model to start from: a directory or a name under $SIFT_MODELS_DIR.
    #[arg(long)]
    base: String,

    /// BEIR dataset folder (corpus.jsonl, queries*.jsonl, qrels*.tsv).
    #[arg(long)]
    data: PathBuf,

    /// Collection of the corpus whose recall mines the hard negatives (built if missing): a
    /// directory or a postgres:// address.
    #[arg(long, short, value_parser = crate::location_arg::LocationParser)]
    collection: Location,

    /// Embedding model of that collection (default: the one it was built with; for a new
    /// collection: all-MiniLM-L6-v2). Not the model trained: mining uses the collection as is.
    #[arg(long)]
    embed_model: Option<String>,

    /// Output directory (must not exist, unless --resume).
    #[arg(long)]
    out: PathBuf,

    /// Continue an interrupted run from --out/checkpoint (same flags required).
    #[arg(long)]
    resume: bool,

    /// First stage that mines hard negatives.
    #[arg(long, default_value = "hybrid")]
    first_stage: SearchMode,

    /// Hard negatives per query: documents in the first stage's top --negative-depth that are
    /// not judged relevant. Each one adds its windows to every query's group, so a step's time
    /// grows with it (7 took ~3× the default's time per step on SciFact).
    #[arg(long, default_value_t = 1)]
    hard_negatives: usize,

    /// Random negatives per query.
    #[arg(long, default_value_t = 1)]
    random_negatives: usize,

    /// Inverse-cloze examples added to the labelled ones: a sentence of a corpus document as
    /// the query, the rest of the document as its positive (each document at most once; never
    /// a document relevant to a dev query), so the domain's text, not only the few labelled
    /// claims, shapes the embedding space. 0 trains on the labelled pairs alone.
    #[arg(long, default_value_t = 0)]
    synthetic_queries: usize,

    /// Hard negatives are drawn from this many top first-stage results.
    #[arg(long, default_value_t = 30, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=sift_pipeline::search::MAX_DEPTH as u64))]
    negative_depth: usize,

    /// Queries per optimizer step (each one's positive is the others' in-batch negative).
    #[arg(long, default_value_t = 16)]
    batch_size: usize,

    /// Passes over the training pairs. The epoch with the best dev nDCG@10 is written (the
    /// last one with --dev-queries 0).
    #[arg(long, default_value_t = 1)]
    epochs: usize,

    /// Peak learning rate (after warmup; decays linearly to 0).
    #[arg(long, default_value_t = 2e-5)]
    learning_rate: f64,

    /// AdamW's decoupled weight decay (biases and layer-norm weights are not decayed).
    #[arg(long, default_value_t = 0.01)]
    weight_decay: f64,

    /// Share of the steps over which the learning rate rises linearly from 0 to its peak.
    #[arg(long, default_value_t = 0.1)]
    warmup_ratio: f64,

    /// Tokens per query or document.
    #[arg(long, default_value_t = 256)]
    max_length: usize,

    /// What a document is to the loss and the dev evaluation: windows (the token windows a
    /// collection built for the trained model embeds — title + ~max-length window — each
    /// document scored by its best one, as the index scores it) or whole (title + text cut at
    /// --max-length, the first recipe).
    #[arg(long, value_enum, default_value_t = UnitArg::Windows)]
    document_unit: UnitArg,

    /// Inverse temperature of the contrastive loss (sentence-transformers' default).
    #[arg(long, default_value_t = 20.0)]
    scale: f64,

    /// Fixes the draw: each group's negatives, the groups' order and dropout's masks. On
    /// SciFact's dev split seeds of one recipe differ by up to ~0.02 nDCG@10: compare recipes
    /// over several seeds.
    #[arg(long, default_value_t = 42)]
    seed: u64,

    /// Save a resumable checkpoint every N optimizer steps.
    #[arg(long, default_value_t = 20)]
    checkpoint_every: usize,

    /// Stop after N optimizer steps (the schedule still spans the full run; --resume goes on).
    #[arg(long)]
    max_steps: Option<usize>,

    /// How dev queries are held out: families (default: no dev query's relevant document is
    /// a training positive), documents, or ids-leaky.
    #[arg(long, default_value = "families")]
    split_rule: SplitRule,

    /// Dropout probability of training forward passes, on the embeddings, attention
    /// probabilities and every sublayer's output (default: the base's own config.json rates,
    /// as transformers fine-tunes it — 0.1 for BERT-family models). 0 trains without dropout
    #[arg(long)]
    dropout: Option<f32>,

    #[command(flatten)]
    distill: DistillFlags,

    /// Dev queries evaluated after each epoch (the first by id); 0 disables evaluation.
    #[arg(long, default_value_t = usize::MAX, hide_default_value = true)]
    dev_queries: usize,

    #[command(flatten)]
    pub engine: crate::inference::EngineFlags,

    #[command(flatten)]
    pub embed_precision: crate::inference::EmbedPrecisionFlag,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum UnitArg {
    Windows,
    Whole,
}

pub fn run(args: TrainEmbedderArgs) -> Result<()> {
    // Everything checkable is checked before the long work starts.
    if args.out.exists() && !args.resume {
        bail!(
            "{} already exists; choose a new --out, or pass --resume to continue an interrupted run there",
            args.out.display()
        );
    }
    if args.resume && !args.out.join("checkpoint/state.json").is_file() {
        bail!("--resume: {} holds no checkpoint", args.out.display());
    }
    let base_dir = resolve(&args.base)?;
    let base =
        ModelDir::open(&base_dir).with_context(|| format!("base model {}", base_dir.display()))?;
    if base.config.head != Head::Encoder {
        bail!(
            "{} is a {} (a cross-encoder); train-embedder starts from an embedding model (use train-reranker for rerankers)",
            base_dir.display(),
            base.config.architecture_name
        );
    }
    let recipe = EmbedderRecipe {
        epochs: args.epochs,
        batch_size: args.batch_size,
        groups: GroupRecipe {
            hard_negatives: args.hard_negatives,
            random_negatives: args.random_negatives,
            negative_depth: args.negative_depth,
            prior_negatives: 0,
        },
        learning_rate: args.learning_rate,
        weight_decay: args.weight_decay,
        warmup_ratio: args.warmup_ratio,
        max_grad_norm: 1.0,
        max_length: args.max_length,
        scale: args.scale,
        seed: args.seed,
        max_steps: args.max_steps,
        synthetic_queries: args.synthetic_queries,
        unit: match args.document_unit {
            UnitArg::Whole => DocumentUnit::Whole,
            // The windows the output's collection will get: the output model reads at most
            // --max-length tokens (or the base's own limit, if lower).
            UnitArg::Windows => DocumentUnit::Windows(sift_pipeline::default_chunking(
                args.max_length.min(base.config.max_tokens()),
            )),
        },
        dropout: match args.dropout {
            Some(p) => DropoutRates {
                hidden: p,
                attention: p,
            },
            None => DropoutRates::of_base(&base)?,
        },
        distillation: args.distill.distillation()?,
    };
    recipe.validate()?;
    check_teacher(recipe.distillation.as_ref(), Student::Embedder)?;
    let dataset = Dataset::load(&args.data, None)?;
    let corpus = sift_train::read_corpus(&dataset.corpus)?;
    let train_queries =
        sift_train::labelled_queries(&dataset, &corpus, Split::Train, args.split_rule)?;
    let mut dev_queries =
        sift_train::labelled_queries(&dataset, &corpus, Split::Dev, args.split_rule)?;
    dev_queries.truncate(args.dev_queries);
    if train_queries.is_empty() {
        bail!(
            "no training pairs: no query on the training side of {} has a relevant document",
            args.data.display()
        );
    }
    let synthetic = sift_train::inverse_cloze(
        &corpus,
        &sift_train::held_out_documents(&dataset, args.split_rule),
        recipe.synthetic_queries,
        args.seed,
    );
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

    // Hard negatives, mined once and saved so a resumed run trains on the same ones; with the
    // first stage as teacher, its scores too (over a default search's depth, so that positives
    // ranked below the negatives' pool still get theirs).
    let first_stage_teaches = matches!(
        recipe.distillation.as_ref().map(|d| &d.teacher),
        Some(TeacherModel::FirstStage(_))
    );
    let mined_path = args.out.join("first_stage.json");
    let scores_path = args.out.join("first_stage_scores.json");
    let saved =
        args.resume && mined_path.is_file() && (!first_stage_teaches || scores_path.is_file());
    let (mined, scores): (BTreeMap<String, Vec<String>>, Option<FirstStageScores>) = if saved {
        let text = std::fs::read_to_string(&mined_path)?;
        let mined =
            serde_json::from_str(&text).with_context(|| mined_path.display().to_string())?;
        let scores = if first_stage_teaches {
            let text = std::fs::read_to_string(&scores_path)?;
            Some(serde_json::from_str(&text).with_context(|| scores_path.display().to_string())?)
        } else {
            None
        };
        (mined, scores)
    } else {
        let engine = args.engine.options(args.embed_precision.get());
        crate::documents::ensure_collection(
            &args.collection,
            &dataset.corpus,
            args.embed_model.as_deref(),
            engine,
        )?;
        let collection = store::open(&args.collection, Access::Search)?;
        let name = args.embed_model.clone().unwrap_or_else(|| {
            crate::model_path::collection_embedder(&collection.manifest().embedding)
        });
        let embedder = load_embedder(&name, engine)?;
        let pipeline = Pipeline::new(Some(embedder), None, collection)?;
        let bar = progress_bar(train_queries.len() + synthetic_queries.len(), "queries");
        bar.set_message("mining hard negatives");
        let mut tick = |n: usize| bar.inc(n as u64);
        let depth = if first_stage_teaches {
            args.negative_depth
                .max(sift_pipeline::SearchOptions::default().depth)
        } else {
            args.negative_depth
        };
        let mut hits = sift_train::first_stage_scored(
            &pipeline,
            &train_queries,
            depth,
            args.first_stage,
            &mut tick,
        )?;
        // Synthetic ids carry their own prefix, so one map holds both.
        hits.extend(sift_train::first_stage_scored(
            &pipeline,
            &synthetic_queries,
            depth,
            args.first_stage,
            &mut tick,
        )?);
        bar.finish_and_clear();
        let mined: BTreeMap<String, Vec<String>> = hits
            .iter()
            .map(|(q, h)| {
                let ids = h.iter().take(args.negative_depth).map(|(id, _)| id.clone());
                (q.clone(), ids.collect())
            })
            .collect();
        std::fs::create_dir_all(&args.out)?;
        std::fs::write(&mined_path, serde_json::to_string(&mined)?)?;
        let scores = first_stage_teaches.then(|| FirstStageScores::from_hits(&hits));
        if let Some(scores) = &scores {
            std::fs::write(&scores_path, serde_json::to_string(scores)?)?;
        }
        (mined, scores)
    };
    let windows = match recipe.unit {
        DocumentUnit::Whole => None,
        DocumentUnit::Windows(chunking) => {
            let tokenizer = TextTokenizer::from_dir(
                &base.path,
                args.max_length,
                base.config.type_vocab_size > 1,
            )?;
            Some(sift_train::units::corpus_windows(
                &dataset.corpus,
                &tokenizer,
                chunking,
            )?)
        }
    };
    let mut data = sift_train::TrainingSet::new(corpus.clone(), &train_queries, mined)?
        .with_synthetic(synthetic, BTreeMap::new());
    if let Some(scores) = scores {
        data = data.with_first_stage_scores(scores);
    }
    if let Some(w) = windows {
        data = data.with_windows(w);
    }
    let dev = EmbedderDev {
        queries: &dev_queries,
        corpus: &corpus,
        windows: data.windows(),
    };
    let total = recipe.steps_per_epoch(data.examples.len()) * recipe.epochs;
    let stop_at = recipe.max_steps.map_or(total, |m| m.min(total));
    let teacher = recipe.distillation.as_ref().map_or(String::new(), |d| {
        format!(
            ", distilling {} (weight {}, temperature {})",
            d.teacher, d.weight, d.temperature
        )
    });
    eprintln!(
        "training {stop_at} steps of {} queries × {} documents ({} epoch(s)), documents as {}, dropout {} (attention {}){teacher}; dev retrieval over {} documents after each",
        recipe.batch_size,
        sift_train::TrainingSet::group_size(&recipe.groups),
        recipe.epochs,
        recipe.unit,
        recipe.dropout.hidden,
        recipe.dropout.attention,
        corpus.len()
    );
    let bar = progress_bar(stop_at, "steps");
    let quiet = !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut losses = Vec::new();
    let mut on_event = |e: EmbedderEvent| match e {
        EmbedderEvent::Evaluating { documents } => {
            let line = format!("dev retrieval: embedding {documents} documents");
            if quiet {
                eprintln!("{line}");
            } else {
                bar.set_message(line);
            }
        }
        EmbedderEvent::Step { step, total, loss } => {
            losses.push(loss);
            bar.set_position(step as u64);
            bar.set_message(format!("loss {:.4}", recent_loss(&losses, 20)));
            if quiet && (step % 10 == 0 || step == total) {
                eprintln!("step {step}/{total} loss {:.4}", recent_loss(&losses, 20));
            }
        }
        EmbedderEvent::Evaluated { eval, best } => {
            let line = format!(
                "epoch {}: dev nDCG@10 {:.4}  R@100 {:.4}{}",
                eval.epoch,
                eval.metrics.ndcg_at_10,
                eval.metrics.recall_at_100,
                if best { "  (best so far: saved)" } else { "" }
            );
            if quiet {
                eprintln!("{line}");
            } else {
                bar.println(line);
            }
        }
    };
    let state: EmbedderState = train_embedder(
        &base,
        &data,
        &dev,
        recipe.clone(),
        &args.out,
        args.resume,
        args.checkpoint_every,
        &mut on_event,
    )?;
    bar.finish_and_clear();
    let summary = serde_json::json!({
        "base": base.path.display().to_string(),
        "recipe": recipe,
        "split_rule": format!("{:?}", args.split_rule).to_lowercase(),
        "steps": state.step,
        "total_steps": state.total_steps,
        "training_seconds": state.seconds,
        "wall_seconds_this_run": started.elapsed().as_secs_f64(),
        "peak_rss_bytes": peak_rss_bytes(),
        "dev_base_model": state.baseline,
        "dev_evals": state.evals,
        "best": state.best,
        "final_loss": recent_loss(&state.losses, 20),
    });
    std::fs::write(
        args.out.join("training.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    eprintln!(
        "done: {} of {} steps in {:.0} s of training; model in {}",
        state.step,
        state.total_steps,
        state.seconds,
        args.out.display()
    );
    if let (Some(b), Some(best)) = (&state.baseline, &state.best) {
        eprintln!(
            "dev nDCG@10 (exact dense retrieval over the corpus): base {:.4} → fine-tuned {:.4} (epoch {})",
            b.ndcg_at_10, best.metrics.ndcg_at_10, best.epoch
        );
        if best.metrics.ndcg_at_10 <= b.ndcg_at_10 {
            eprintln!("warning: no epoch beat the base model on dev; keep using the base");
        }
    }
    Ok(())
}
