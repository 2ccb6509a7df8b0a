//! Decoder LLMs (Llama/Mistral, Qwen2/3, Gemma 1–3): their configuration and the network.
//! sift runs them as rerankers ([`crate::llm_reranker`]), reading one position's logits.

mod config;
mod gguf;
mod model;
mod weights;

pub use config::{DecoderConfig, DecoderFamily, HeadIndexing, LayerSpec, LayerwiseHeads, Rope};
pub use gguf::{GgufModel, GgufSummary};
pub use model::{Decoder, PrefixCache, TokenCompression};
pub use weights::DecoderWeights;
