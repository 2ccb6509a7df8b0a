//! `sift serve`: the HTTP server.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use sift_models::{CrossEncoder, CrossEncoderOptions, Embedder, EmbedderOptions};
use sift_server::{AppState, Limits};

use crate::model_path::resolve;

/// Serve embedding and rerank APIs over HTTP: TEI (POST /embed, /rerank; GET /info, /health),
/// OpenAI (POST /v1/embeddings) and Cohere/Jina (POST /v1/rerank, /v2/rerank). Either model may
/// be omitted; its routes then answer 404 with a JSON error. Stops on Ctrl-C or SIGTERM after
/// finishing in-flight requests.
#[derive(Args)]
#[command(after_help = "Examples:\n  \
sift serve --embed-model all-MiniLM-L6-v2 --rerank-model ./my-reranker\n  \
curl -s localhost:8080/embed -H 'content-type: application/json' -d '{\"inputs\": \"hello\"}'")]
pub struct ServeArgs {
    /// Embedding model (directory or name).
    #[arg(long, env = "SIFT_EMBED_MODEL")]
    embed_model: Option<String>,

    /// Cross-encoder (directory or name).
    #[arg(long, env = "SIFT_RERANK_MODEL")]
    rerank_model: Option<String>,

    /// Address to listen on; 0.0.0.0 exposes the server to the network.
    #[arg(long, env = "SIFT_HOST", default_value = "127.0.0.1")]
    host: String,

    #[arg(long, env = "SIFT_PORT", default_value_t = 8080)]
    port: u16,

    /// Largest request body, in bytes.
    #[arg(long, env = "SIFT_MAX_BODY_BYTES", default_value_t = 2 * 1024 * 1024)]
    max_body_bytes: usize,

    /// Most texts or documents in one request.
    #[arg(long, env = "SIFT_MAX_ITEMS", default_value_t = 2048)]
    max_items: usize,
}

pub fn run(args: ServeArgs) -> Result<()> {
    if args.embed_model.is_none() && args.rerank_model.is_none() {
        bail!("give --embed-model, --rerank-model or both");
    }
    let embedder = match &args.embed_model {
        Some(m) => {
            let dir = resolve(m)?;
            Some(Arc::new(
                Embedder::load(&dir, EmbedderOptions::default())
                    .with_context(|| format!("loading {}", dir.display()))?,
            ))
        }
        None => None,
    };
    let reranker = match &args.rerank_model {
        Some(m) => {
            let dir = resolve(m)?;
            Some(Arc::new(
                CrossEncoder::load(&dir, CrossEncoderOptions::default())
                    .with_context(|| format!("loading {}", dir.display()))?,
            ))
        }
        None => None,
    };
    let state = AppState {
        embedder,
        reranker,
        limits: Arc::new(Limits {
            max_body_bytes: args.max_body_bytes,
            max_items: args.max_items,
        }),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let addr = format!("{}:{}", args.host, args.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        eprintln!("listening on http://{}", listener.local_addr()?);
        sift_server::serve(listener, state, shutdown_signal()).await?;
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
