//! `sift embed`: texts → JSONL vectors.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use sift_models::{Embedder, EmbedderOptions, Pooling, TextRole};

use crate::input::{read_texts, InputFormat};
use crate::model_path::resolve;

/// Embed texts with a bi-encoder; prints one JSON line per text: {"index", "id"?, "embedding"}.
///
/// Texts come from the arguments, from --file, or from stdin as JSONL (each line a JSON string
/// or an object with "text" and optional "id"). Texts longer than the model's max length
/// (sentence-transformers' max_seq_length, e.g. 256 tokens for all-MiniLM-L6-v2) are truncated.
#[derive(Args)]
#[command(after_help = "Examples:\n  \
sift embed \"first text\" \"second text\"\n  \
sift embed --file corpus.jsonl > vectors.jsonl\n  \
sift embed --model bge-small-en-v1.5 --pooling cls --query \\\n      --query-prefix \"Represent this sentence for searching relevant passages: \" \"what is sift?\"")]
pub struct EmbedArgs {
    /// Texts to embed (omit to read --file or stdin).
    texts: Vec<String>,

    /// Model directory or name under the models folder.
    #[arg(
        long,
        short,
        default_value = "all-MiniLM-L6-v2",
        env = "SIFT_EMBED_MODEL"
    )]
    model: String,

    /// Read texts from this file (`-` for stdin).
    #[arg(long, short)]
    file: Option<PathBuf>,

    /// How to read --file/stdin.
    #[arg(long, value_enum, default_value_t = InputFormat::Auto)]
    format: InputFormat,

    /// Treat the texts as search queries (applies the query prefix).
    #[arg(long, conflicts_with = "passage")]
    query: bool,

    /// Treat the texts as passages (applies the passage prefix).
    #[arg(long)]
    passage: bool,

    /// Prefix for queries, e.g. "query: " for E5 (default: the model's prompts config).
    #[arg(long)]
    query_prefix: Option<String>,

    /// Prefix for passages, e.g. "passage: " for E5.
    #[arg(long)]
    passage_prefix: Option<String>,

    /// Override the pooling: cls, mean or last-token.
    #[arg(long)]
    pooling: Option<Pooling>,

    /// Do not L2-normalise, even if the model does.
    #[arg(long)]
    no_normalize: bool,

    /// Max tokens per text (special tokens included).
    #[arg(long)]
    max_length: Option<usize>,

    /// Padded tokens per forward pass.
    #[arg(long)]
    batch_tokens: Option<usize>,

    #[command(flatten)]
    pub engine: crate::inference::EngineFlags,

    #[command(flatten)]
    pub embed_precision: crate::inference::EmbedPrecisionFlag,
}

pub fn run(args: EmbedArgs) -> Result<()> {
    let texts = read_texts(&args.texts, args.file.as_deref(), args.format)?;
    let dir = resolve(&args.model)?;
    let embedder = Embedder::load(
        &dir,
        EmbedderOptions {
            max_length: args.max_length,
            pooling: args.pooling,
            normalize: args.no_normalize.then_some(false),
            query_prefix: args.query_prefix,
            passage_prefix: args.passage_prefix,
            max_batch_tokens: args.batch_tokens,
            engine: args.engine.options(args.embed_precision.get()),
        },
    )
    .with_context(|| format!("loading {}", dir.display()))?;
    let role = if args.query {
        TextRole::Query
    } else if args.passage {
        TextRole::Passage
    } else {
        TextRole::Raw
    };
    let strings: Vec<&str> = texts.iter().map(|t| t.text.as_str()).collect();
    let bar = super::progress_bar(strings.len(), "texts");
    let vectors = embedder.embed_with_progress(&strings, role, &mut |n| bar.inc(n as u64))?;
    bar.finish_and_clear();

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for (i, (text, vector)) in texts.iter().zip(vectors).enumerate() {
        let mut line = serde_json::json!({ "index": i, "embedding": vector });
        if let Some(id) = &text.id {
            line["id"] = id.clone();
        }
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}
