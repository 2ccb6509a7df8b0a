//! `sift serve`: the HTTP server.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use sift_index::Location;
use sift_server::{AppState, BatcherConfig, Limits, ServerConfig};

use crate::inference::{
    EmbedPrecisionFlag, EngineFlags, LongDocumentFlags, RerankPrecisionFlag, RerankScoringFlags,
};
use crate::model_path::{load_embedder, load_reranker};

/// Serve embedding, rerank and collection search over HTTP.
///
/// Routes: TEI (POST /embed, /rerank, /tokenize; GET /info, /health), OpenAI (POST
/// /v1/embeddings), Cohere/Jina (POST /v1/rerank, /v2/rerank), collections (GET /collections,
/// POST /collections/{name}/documents, DELETE /collections/{name}/documents/{id}, POST
/// /collections/{name}/search), GET /metrics (Prometheus) and GET /openapi.json. Any model may be
/// omitted; its routes then answer 404 with a JSON error. Texts from concurrent requests are
/// batched together; when a model's queue is full, requests get 429 with Retry-After. Stops on
/// Ctrl-C or SIGTERM after finishing in-flight requests.
#[derive(Args)]
#[command(after_help = "Examples:\n  \
sift serve --embed-model all-MiniLM-L6-v2 --rerank-model ./my-reranker --collections ./collections\n  \
curl -s localhost:8080/embed -H 'content-type: application/json' -d '{\"inputs\": \"hello\"}'\n  \
SIFT_API_KEYS=k1,k2 sift serve --embed-model all-MiniLM-L6-v2 --host 0.0.0.0\n\n\
Logs: one line per request with its id (x-request-id); SIFT_LOG=debug for more, SIFT_LOG_FORMAT=json for JSON lines.")]
pub struct ServeArgs {
    /// Embedding model (directory or name).
    #[arg(long, env = "SIFT_EMBED_MODEL")]
    embed_model: Option<String>,

    /// Rerank model (directory or name).
    #[arg(long, env = "SIFT_RERANK_MODEL")]
    rerank_model: Option<String>,

    /// Collections served under /collections/{name}: a directory of them (created if missing;
    /// the server holds each collection it opens exclusively), or a PostgreSQL database,
    /// postgres://USER@HOST/DB (every collection in it; any number of servers may share it).
    #[arg(long, env = "SIFT_COLLECTIONS", value_parser = crate::location_arg::LocationParser)]
    collections: Option<Location>,

    /// Address to listen on; 0.0.0.0 exposes the server to the network.
    #[arg(long, env = "SIFT_HOST", default_value = "127.0.0.1")]
    host: String,

    #[arg(long, env = "SIFT_PORT", default_value_t = 8080)]
    port: u16,

    /// Require `Authorization: Bearer KEY` (repeatable; env: comma-separated). /health stays open.
    #[arg(
        long = "api-key",
        env = "SIFT_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    api_keys: Vec<String>,

    /// File with one API key per line (blank lines and lines starting with # are skipped).
    #[arg(long, env = "SIFT_API_KEY_FILE")]
    api_key_file: Option<PathBuf>,

    /// Allow browser requests from this origin (repeatable; `*` for any). Off by default.
    #[arg(long = "cors-origin", env = "SIFT_CORS_ORIGINS", value_delimiter = ',')]
    cors_origins: Vec<String>,

    /// Largest request body, in bytes (1 KiB–1 GiB).
    #[arg(long, env = "SIFT_MAX_BODY_BYTES", default_value_t = 2 * 1024 * 1024, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1024..=1 << 30))]
    max_body_bytes: usize,

    /// Most texts or documents in one request (1–100,000).
    #[arg(long, env = "SIFT_MAX_ITEMS", default_value_t = 2048, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    max_items: usize,

    /// Cut inputs longer than the model's limit instead of answering 413 (TEI's `truncate`
    /// field overrides this per request).
    #[arg(long, env = "SIFT_AUTO_TRUNCATE")]
    auto_truncate: bool,

    /// Most inputs waiting per model before requests get 429 (1–1,000,000).
    #[arg(long, env = "SIFT_MAX_QUEUED_INPUTS", default_value_t = 4096, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    max_queued_inputs: usize,

    /// Most tokens (unpadded) in one forward pass of the batching worker (1–1,048,576).
    #[arg(long, env = "SIFT_MAX_BATCH_TOKENS", default_value_t = 16384, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1 << 20))]
    max_batch_tokens: usize,

    /// Requests running longer get 503, in seconds (0.001–86,400). Writes are checked at their
    /// commit point: a timed-out write wrote nothing.
    #[arg(long, env = "SIFT_REQUEST_TIMEOUT", default_value_t = 60.0)]
    request_timeout: f64,

    /// Collection requests (indexing, search) running at once; more get 429 (1–1,024).
    #[arg(long, env = "SIFT_MAX_COLLECTION_REQUESTS", default_value_t = 4, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    max_collection_requests: usize,

    /// Collections kept open at once; opening another closes the least recently used idle one.
    #[arg(long, env = "SIFT_MAX_OPEN_COLLECTIONS", default_value_t = 64,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    max_open_collections: usize,

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

fn api_keys(args: &ServeArgs) -> Result<Vec<String>> {
    let mut keys: Vec<String> = args
        .api_keys
        .iter()
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty())
        .collect();
    if let Some(path) = &args.api_key_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading API keys from {}", path.display()))?;
        keys.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned),
        );
        if keys.is_empty() {
            bail!("{} holds no API keys", path.display());
        }
    }
    Ok(keys)
}

pub fn run(args: ServeArgs) -> Result<()> {
    // Collections of brought vectors need no model: their searches bring query vectors.
    if args.embed_model.is_none() && args.rerank_model.is_none() && args.collections.is_none() {
        bail!("give --embed-model, --rerank-model, --collections, or several");
    }
    if !(0.001..=86_400.0).contains(&args.request_timeout) {
        bail!("--request-timeout must be between 0.001 and 86400 seconds");
    }
    if args.max_items == 0 || args.max_queued_inputs == 0 || args.max_batch_tokens == 0 {
        bail!("--max-items, --max-queued-inputs and --max-batch-tokens must be at least 1");
    }
    let config = ServerConfig {
        limits: Limits {
            max_body_bytes: args.max_body_bytes,
            max_items: args.max_items,
            auto_truncate: args.auto_truncate,
            request_timeout: Duration::from_secs_f64(args.request_timeout),
            max_concurrent_collection_requests: args.max_collection_requests.max(1),
            max_open_collections: args.max_open_collections,
        },
        batching: BatcherConfig {
            // A request may carry max_items inputs; the queue must admit at least one such.
            max_queued_inputs: args.max_queued_inputs.max(args.max_items),
            max_batch_tokens: args.max_batch_tokens,
        },
        api_keys: api_keys(&args)?,
        cors_origins: args.cors_origins.clone(),
        collections: args.collections.clone(),
        long_documents: args.long_documents.policy()?,
    };
    let embedder = match &args.embed_model {
        Some(m) => Some(load_embedder(
            m,
            args.engine.options(args.embed_precision.get()),
        )?),
        None => None,
    };
    let reranker = match &args.rerank_model {
        Some(m) => Some(load_reranker(
            m,
            args.scoring
                .options(args.engine.options(args.rerank_precision.get())),
        )?),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let state = AppState::new(embedder, reranker, &config)?;
        let addr = format!("{}:{}", args.host, args.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        eprintln!("listening on http://{}", listener.local_addr()?);
        if !config.api_keys.is_empty() {
            eprintln!("{} API key(s) required", config.api_keys.len());
        }
        sift_server::serve(listener, state, &config, shutdown_signal()).await?;
        eprintln!("stopped");
        Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
