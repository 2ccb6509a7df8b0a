//! `sift rerank`: score documents against a query with a cross-encoder or an LLM reranker.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use sift_models::rerank::{plan_for, prepare, score_planned, sort_by_score, RerankPlan};
use sift_models::RerankerOptions;

use crate::inference::{EngineFlags, LongDocumentFlags, RerankPrecisionFlag, RerankScoringFlags};
use crate::input::{read_texts, InputFormat};
use crate::model_path::load_reranker;

/// Rerank documents for a query with a cross-encoder or an LLM reranker; prints a JSON array
/// sorted by score: [{"index", "score", "logit", "text", "id"?}].
///
/// "score" is the probability of relevance (sigmoid of the logit; for two-label models the
/// softmax of label 1), "logit" the raw model output; for LLM rerankers the logit is the
/// recipe's (bge-llm: the "Yes" token's logit; qwen3-reranker: logit(yes) − logit(no), so the
/// score is P(yes)). Query and document are encoded together;
/// a document longer than the model's window is scored by windows and gets its best window's
/// score (--long-documents truncate scores only its beginning); the query is never cut unless
/// it alone exceeds the window.
#[derive(Args)]
#[command(after_help = "Examples:\n  \
sift rerank --model ./ms-marco-MiniLM-L-6-v2 --query \"capital of France\" \"Paris is the capital\" \"Berlin is in Germany\"\n  \
sift rerank --model bge-reranker-base --query \"q\" --file candidates.jsonl --top-k 10\n  \
sift rerank --model ./Qwen3-Reranker-0.6B --rerank-prompt \"Given a claim, find abstracts that support or refute it\" --query \"q\" --file candidates.jsonl")]
pub struct RerankArgs {
    /// Documents to score (omit to read --file or stdin).
    documents: Vec<String>,

    /// The query.
    #[arg(long, short)]
    query: String,

    /// Rerank model directory or name: a cross-encoder (*ForSequenceClassification) or a
    /// decoder LLM reranker (Qwen3-Reranker, bge-reranker-v2-gemma, any *ForCausalLM of the
    /// families in `sift models --help`).
    #[arg(long, short, env = "SIFT_RERANK_MODEL")]
    model: String,

    /// Read documents from this file (`-` for stdin).
    #[arg(long, short)]
    file: Option<PathBuf>,

    /// How to read --file/stdin.
    #[arg(long, value_enum, default_value_t = InputFormat::Auto)]
    format: InputFormat,

    /// Return only the best K.
    #[arg(long, short = 'k')]
    top_k: Option<usize>,

    /// Max tokens per query–document pair (as --rerank-max-length).
    #[arg(long, conflicts_with = "rerank_max_length")]
    max_length: Option<usize>,

    /// Padded tokens per forward pass.
    #[arg(long)]
    batch_tokens: Option<usize>,

    #[command(flatten)]
    long_documents: LongDocumentFlags,

    #[command(flatten)]
    scoring: RerankScoringFlags,

    #[command(flatten)]
    pub engine: EngineFlags,

    #[command(flatten)]
    pub rerank_precision: RerankPrecisionFlag,
}

pub fn run(args: RerankArgs) -> Result<()> {
    let docs = read_texts(&args.documents, args.file.as_deref(), args.format)?;
    let policy = args.long_documents.policy()?;
    let model = load_reranker(
        &args.model,
        RerankerOptions {
            max_length: args.max_length.or(args.scoring.rerank_max_length),
            max_batch_tokens: args.batch_tokens,
            ..args
                .scoring
                .options(args.engine.options(args.rerank_precision.get()))
        },
    )?;
    let strings: Vec<&str> = docs.iter().map(|d| d.text.as_str()).collect();
    let prepared = prepare(model.as_ref(), &args.query, &strings, &policy)?;
    let choice = plan_for(model.as_ref(), &prepared);
    if let Some(budget) = model.budget() {
        eprintln!(
            "budget {} ms: {choice} (cost model: {:.4} ms per token, {:.4} ms per token and layer)",
            budget.ms, budget.cost.ms_per_token, budget.cost.ms_per_token_layer
        );
    }
    // A cascade from an early exit scores every pair once and its kept documents' pairs a
    // second time; from exit 0, the kept ones only.
    let pairs = prepared.pairs().len();
    let work = match choice.plan {
        RerankPlan::Cascade(c) if c.exit == 0 => c.keep.min(pairs),
        RerankPlan::Cascade(c) => pairs + c.keep.min(pairs),
        _ => pairs,
    };
    let bar = super::progress_bar(work, "pairs");
    let mut scores = score_planned(model.as_ref(), &prepared, choice, &mut |n| {
        bar.inc(n as u64)
    })?;
    bar.finish_and_clear();
    sort_by_score(&mut scores);
    if let Some(k) = args.top_k {
        scores.truncate(k);
    }
    let ranked: Vec<serde_json::Value> = scores
        .iter()
        .map(|s| {
            let mut v = serde_json::json!({
                "index": s.index,
                "score": s.score,
                "logit": s.logit,
                "text": docs[s.index].text,
            });
            if let Some(id) = &docs[s.index].id {
                v["id"] = id.clone();
            }
            if s.dropped {
                // A cascade scored it at its early exit only.
                v["dropped"] = true.into();
            }
            v
        })
        .collect();
    println!("{}", serde_json::to_string_pretty(&ranked)?);
    Ok(())
}
