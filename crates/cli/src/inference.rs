//! The inference settings a subcommand takes (`--engine`, `--threads`, `--embed-precision`,
//! `--rerank-precision`), parsed into typed values by clap and handed to the model loaders as
//! [`EngineOptions`]. Nothing here writes the process environment: the loaders get values, so a
//! shell variable changes a run only through clap's `env` fallbacks, visibly, in `--help`.
//!
//! Each subcommand flattens only the groups it uses, so its `--help` lists only flags that
//! matter to it. The same flags are still accepted before the subcommand (`sift --engine candle
//! embed …`, as earlier releases documented); a value given after the subcommand wins.

use std::num::NonZeroUsize;

use clap::Args;
use sift_models::rerank::Cascade;
use sift_models::{
    EngineChoice, EngineOptions, LongDocumentMode, LongDocumentPolicy, Precision, RerankTemplate,
    RerankerOptions,
};

/// Engine and threads, for every subcommand that runs a model.
#[derive(Args, Debug, Clone, Default)]
pub struct EngineFlags {
    /// Threads for inference [default: one per physical core].
    #[arg(long, env = "SIFT_THREADS")]
    pub threads: Option<NonZeroUsize>,

    /// Inference engine: auto (ONNX Runtime when its library is installed, else candle), candle
    /// or onnx [default: auto].
    #[arg(long, env = "SIFT_ENGINE")]
    pub engine: Option<EngineChoice>,
}

/// Precision of the embedding model.
#[derive(Args, Debug, Clone, Default)]
pub struct EmbedPrecisionFlag {
    /// Precision of the embedding model: f32, or int8 (ONNX Runtime; cosine to f32 ≥ 0.995)
    /// [default: f32].
    #[arg(long, env = "SIFT_EMBED_PRECISION")]
    pub embed_precision: Option<Precision>,
}

/// Precision of the rerank model.
#[derive(Args, Debug, Clone, Default)]
pub struct RerankPrecisionFlag {
    /// Precision of the rerank model: f32, or int8 (cross-encoders: ONNX Runtime, measured in
    /// docs/quality.md; LLM rerankers: candle's int8 block kernels where the layer's shape has
    /// one, a GGUF file's Q4_K/Q6_K/Q8_0 blocks as stored, docs/performance.md) [default: f32].
    #[arg(long, env = "SIFT_RERANK_PRECISION")]
    pub rerank_precision: Option<Precision>,
}

/// How a rerank model scores: the prompt an LLM reranker (a decoder: Qwen3-Reranker,
/// bge-reranker-v2-gemma, …) builds, and where a layerwise model stops. A flag that does not
/// apply to the model loaded is an error, never ignored.
#[derive(Args, Debug, Clone, Default)]
pub struct RerankScoringFlags {
    /// LLM rerankers: the scoring recipe, qwen3-reranker or bge-llm [default: the one the
    /// model was published with: Qwen3 models → qwen3-reranker, other decoders → bge-llm].
    #[arg(long, env = "SIFT_RERANK_TEMPLATE", value_name = "NAME")]
    pub rerank_template: Option<RerankTemplate>,

    /// LLM rerankers: the recipe's instruction (qwen3-reranker: "Given a web search query,
    /// retrieve relevant passages that answer the query") or prompt (bge-llm: "Given a query A
    /// and a passage B, determine whether the passage contains an answer to the query by
    /// providing a prediction of either 'Yes' or 'No'.").
    #[arg(long, env = "SIFT_RERANK_PROMPT", value_name = "TEXT")]
    pub rerank_prompt: Option<String>,

    /// Layerwise LLM rerankers (bge-reranker-v2-minicpm-layerwise): stop after layer N and
    /// score with its head; fewer layers, less time [default: all layers].
    #[arg(long, env = "SIFT_CUTOFF_LAYER", value_name = "N")]
    pub cutoff_layer: Option<usize>,

    /// Lightweight LLM rerankers (bge-reranker-v2.5-gemma2-lightweight): average the
    /// document's tokens in groups of this many, 1 (off), 2, 4 or 8 [default: 1].
    #[arg(long, env = "SIFT_COMPRESS_RATIO", value_name = "R")]
    pub compress_ratio: Option<usize>,

    /// Lightweight LLM rerankers: compress before these layers [default: 8].
    #[arg(long, value_delimiter = ',', value_name = "LAYERS")]
    pub compress_layers: Option<Vec<usize>>,

    /// Layerwise cross-encoders (`sift train-reranker --layerwise`): score with the first N
    /// layers and that layer's head; fewer layers, less time [default: all layers].
    #[arg(long, env = "SIFT_RERANK_LAYER", value_name = "N")]
    pub rerank_layer: Option<usize>,

    /// Score every candidate after layer EXIT of a layerwise cross-encoder, then run the
    /// remaining layers for the best KEEP only (from the states the first stage kept); the
    /// others rank below them by their early score. E.g. `2:20`. EXIT 0 is the candidates' own
    /// order (the first stage's) and suits every cross-encoder: `0:20` scores the leading 20
    /// and keeps the rest in order after them.
    #[arg(
        long,
        env = "SIFT_RERANK_CASCADE",
        value_name = "EXIT:KEEP",
        conflicts_with = "rerank_layer"
    )]
    pub rerank_cascade: Option<Cascade>,

    /// Cross-encoders: a latency budget per query, in milliseconds. Each query's candidates get
    /// the deepest plan whose estimated time fits — every layer, else (layerwise models) a
    /// cascade from the deepest early exit that can still finish 20 or more, else the full
    /// model on as many leading candidates as fit (the rest keep their order), else the
    /// deepest early exit alone — by a cost model (ms per token and per token-layer) measured
    /// when the model loads.
    #[arg(long, env = "SIFT_RERANK_BUDGET_MS", value_name = "MS", conflicts_with_all = ["rerank_layer", "rerank_cascade"])]
    pub rerank_budget_ms: Option<f64>,

    /// Longest query–document pair the reranker reads, in tokens [default: the model's
    /// max_seq_length, e.g. 160 for a model `sift train-reranker` wrote]. Longer documents are
    /// scored by windows of what fits (see --long-documents); a longer pair costs more than
    /// linearly (attention), and a model reads best at the length it was trained at.
    #[arg(long, env = "SIFT_RERANK_MAX_LENGTH", value_name = "TOKENS")]
    pub rerank_max_length: Option<usize>,

    /// LLM rerankers: recompute the query's shared prompt prefix with every document instead of
    /// once per batch (only to measure what sharing saves; scores are the same).
    #[arg(long, hide = true)]
    pub no_shared_prefix: bool,
}

impl RerankScoringFlags {
    /// Loader options with these flags and `engine`; length and batch size left to the model.
    pub fn options(&self, engine: EngineOptions) -> RerankerOptions {
        RerankerOptions {
            engine,
            template: self.rerank_template,
            prompt: self.rerank_prompt.clone(),
            share_prefix: self.no_shared_prefix.then_some(false),
            cutoff_layer: self.cutoff_layer,
            compress_ratio: self.compress_ratio,
            compress_layers: self.compress_layers.clone(),
            exit_layer: self.rerank_layer,
            cascade: self.rerank_cascade,
            budget_ms: self.rerank_budget_ms,
            max_length: self.rerank_max_length,
            ..Default::default()
        }
    }
}

/// The same flags before the subcommand, kept for compatibility and hidden from help.
#[derive(Args, Debug, Clone, Default)]
pub struct LeadingFlags {
    #[arg(long = "threads", hide = true)]
    pub threads: Option<NonZeroUsize>,
    #[arg(long = "engine", hide = true)]
    pub engine: Option<EngineChoice>,
    #[arg(long = "embed-precision", hide = true)]
    pub embed_precision: Option<Precision>,
    #[arg(long = "rerank-precision", hide = true)]
    pub rerank_precision: Option<Precision>,
}

impl EngineFlags {
    /// Fills what the subcommand left unset from the flags given before it.
    pub fn inherit(&mut self, leading: &LeadingFlags) {
        self.threads = self.threads.or(leading.threads);
        self.engine = self.engine.or(leading.engine);
    }

    pub fn options(&self, precision: Precision) -> EngineOptions {
        EngineOptions {
            engine: self.engine.unwrap_or_default(),
            precision,
            threads: self.threads.map(NonZeroUsize::get),
        }
    }
}

impl EmbedPrecisionFlag {
    pub fn inherit(&mut self, leading: &LeadingFlags) {
        self.embed_precision = self.embed_precision.or(leading.embed_precision);
    }
    pub fn get(&self) -> Precision {
        self.embed_precision.unwrap_or_default()
    }
}

impl RerankPrecisionFlag {
    pub fn inherit(&mut self, leading: &LeadingFlags) {
        self.rerank_precision = self.rerank_precision.or(leading.rerank_precision);
    }
    pub fn get(&self) -> Precision {
        self.rerank_precision.unwrap_or_default()
    }
}

/// The long-document rule of the rerank stage (`sift_models::LongDocumentPolicy`): the same
/// flags for `sift rerank`, `sift search`, `sift eval` and `sift serve`.
#[derive(Args, Debug, Clone)]
pub struct LongDocumentFlags {
    /// Documents longer than the reranker's window: "windows" scores every window and keeps
    /// the best (max over windows), "best" only the --max-windows windows sharing the most
    /// query tokens (e.g. `--long-documents best --max-windows 1`), "truncate" only the
    /// beginning that fits.
    #[arg(long, default_value = "windows", value_name = "RULE")]
    pub long_documents: LongDocumentMode,

    /// Document tokens per window [default: all that fit beside the query].
    #[arg(long, value_name = "TOKENS")]
    pub window_tokens: Option<NonZeroUsize>,

    /// Tokens from one window's start to the next [default: 7/8 of the window].
    #[arg(long, value_name = "TOKENS")]
    pub window_stride: Option<NonZeroUsize>,

    /// Most windows scored per document.
    #[arg(long, default_value_t = sift_models::rerank::DEFAULT_MAX_WINDOWS)]
    pub max_windows: usize,

    /// Most tokens of each document considered at all.
    #[arg(long, default_value_t = sift_models::rerank::DEFAULT_MAX_DOCUMENT_TOKENS)]
    pub max_document_tokens: usize,
}

impl LongDocumentFlags {
    pub fn policy(&self) -> sift_models::Result<LongDocumentPolicy> {
        let policy = LongDocumentPolicy {
            mode: self.long_documents,
            window_tokens: self.window_tokens.map(NonZeroUsize::get),
            stride_tokens: self.window_stride.map(NonZeroUsize::get),
            max_windows: self.max_windows,
            max_document_tokens: self.max_document_tokens,
        };
        policy.validate()?;
        Ok(policy)
    }
}
