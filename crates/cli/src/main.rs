//! `sift`: two-stage retrieval from the command line.

mod commands;
mod documents;
mod inference;
mod input;
mod location_arg;
mod model_path;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "sift",
    version,
    about = "Two-stage retrieval: recall with an embedding model, rerank with a cross-encoder",
    long_about = "sift turns text into vectors with a bi-encoder (embedding model) and scores \
query-document pairs with a cross-encoder (rerank model). Models are ordinary Hugging Face \
directories (config.json, tokenizer.json, model.safetensors); BERT, XLM-RoBERTa and MPNet are \
supported.\n\nA model argument is either a path or the name of a directory under the models \
folder ($SIFT_MODELS_DIR, default ./models, filled by scripts/setup.sh).",
    after_help = "Examples:\n  \
sift index --collection scifact ../shared/data/scifact/corpus.jsonl\n  \
sift search --collection scifact \"vitamin D and cancer\" --explain --timings\n  \
sift models\n  \
sift embed \"what is a cross-encoder?\" \"how do rerankers work\"\n  \
cat texts.jsonl | sift embed --model all-MiniLM-L6-v2 > vectors.jsonl\n  \
sift rerank --model ./my-reranker --query \"capital of France\" \"Paris is in France\" \"Berlin\""
)]
struct Cli {
    #[command(flatten)]
    leading: inference::LeadingFlags,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Index(commands::index::IndexArgs),
    Search(commands::search::SearchArgs),
    Delete(commands::delete::DeleteArgs),
    Copy(commands::copy::CopyArgs),
    Eval(commands::eval::EvalArgs),
    Serve(commands::serve::ServeArgs),
    TrainReranker(commands::train_reranker::TrainRerankerArgs),
    TrainEmbedder(commands::train_embedder::TrainEmbedderArgs),
    Embed(commands::embed::EmbedArgs),
    Rerank(commands::rerank::RerankArgs),
    Models(commands::models::ModelsArgs),
    Bench(commands::bench::BenchArgs),
}

/// Keeps freed memory in the process instead of handing it back to the kernel after every
/// tensor. Training allocates and frees activations of tens of MB per layer; with glibc's
/// defaults those above the mmap threshold are mapped, zeroed and unmapped on every use (68 s of
/// 146 s CPU was system time in a 256-token training run). Measured in docs/performance.md.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    if std::env::var_os("SIFT_DEFAULT_MALLOC").is_some() {
        return;
    }
    // SAFETY: mallopt only changes allocator parameters; called before any other thread runs.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

impl Command {
    /// Applies the flags given before the subcommand to the ones it takes; returns its engine
    /// flags (none for commands that run no model).
    fn inherit(&mut self, leading: &inference::LeadingFlags) -> Option<&inference::EngineFlags> {
        let (engine, embed, rerank) = match self {
            Command::Index(a) => (&mut a.engine, Some(&mut a.embed_precision), None),
            Command::Search(a) => (
                &mut a.engine,
                Some(&mut a.embed_precision),
                Some(&mut a.rerank_precision),
            ),
            Command::Eval(a) => (
                &mut a.engine,
                Some(&mut a.embed_precision),
                Some(&mut a.rerank_precision),
            ),
            Command::Serve(a) => (
                &mut a.engine,
                Some(&mut a.embed_precision),
                Some(&mut a.rerank_precision),
            ),
            Command::TrainReranker(a) => (&mut a.engine, Some(&mut a.embed_precision), None),
            Command::TrainEmbedder(a) => (&mut a.engine, Some(&mut a.embed_precision), None),
            Command::Embed(a) => (&mut a.engine, Some(&mut a.embed_precision), None),
            Command::Rerank(a) => (&mut a.engine, None, Some(&mut a.rerank_precision)),
            Command::Bench(a) => (&mut a.engine, None, None),
            Command::Delete(_) | Command::Copy(_) | Command::Models(_) => return None,
        };
        engine.inherit(leading);
        if let Some(e) = embed {
            e.inherit(leading);
        }
        if let Some(r) = rerank {
            r.inherit(leading);
        }
        Some(engine)
    }
}

fn main() -> ExitCode {
    tune_allocator();
    let mut cli = Cli::parse();
    // The server logs one info line per request; other commands only warnings by default.
    let filter = tracing_subscriber::EnvFilter::try_from_env("SIFT_LOG")
        .unwrap_or_else(|_| "warn,sift_server=info".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if std::env::var("SIFT_LOG_FORMAT").as_deref() == Ok("json") {
        logs.json().init();
    } else {
        logs.init();
    }
    let engine = cli.command.inherit(&cli.leading);
    if let Some(n) = engine.and_then(|e| e.threads) {
        // candle's CPU kernels size their thread pools from this variable, read once by a
        // third-party crate; it is set here, before any model work starts, and nowhere else.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    let result = match cli.command {
        Command::Index(args) => commands::index::run(args),
        Command::Search(args) => commands::search::run(args),
        Command::Delete(args) => commands::delete::run(args),
        Command::Copy(args) => commands::copy::run(args),
        Command::Eval(args) => commands::eval::run(args),
        Command::Serve(args) => commands::serve::run(args),
        Command::TrainReranker(args) => commands::train_reranker::run(args),
        Command::TrainEmbedder(args) => commands::train_embedder::run(args),
        Command::Embed(args) => commands::embed::run(args),
        Command::Rerank(args) => commands::rerank::run(args),
        Command::Models(args) => commands::models::run(args),
        Command::Bench(args) => commands::bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
