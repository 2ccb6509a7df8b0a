//! `sift models`: what is installed.

use anyhow::{Context, Result};
use clap::Args;
use sift_models::{Head, ModelDir};

use crate::model_path::models_dir;

/// List the models in the models folder ($SIFT_MODELS_DIR, default ./models, and its gguf/):
/// architecture, role (embedder, cross-encoder, llm-reranker), width, layers, max length in
/// tokens, pooling (embedders) or scoring recipe (LLM rerankers; layerwise heads), stored weight
/// type (dtype, or a GGUF file's quantization types) and size on disk.
#[derive(Args)]
pub struct ModelsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: ModelsArgs) -> Result<()> {
    let root = models_dir();
    let mut entries: Vec<_> = std::fs::read_dir(&root)
        .with_context(|| {
            format!(
                "cannot read the models folder {} (run scripts/setup.sh)",
                root.display()
            )
        })?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir() && p.join("config.json").is_file())
        .collect();
    // GGUF files, in the folder or in its gguf/ (where scripts/setup.sh --gguf puts them).
    for dir in [root.clone(), root.join("gguf")] {
        if let Ok(read) = std::fs::read_dir(&dir) {
            entries.extend(
                read.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.is_file() && crate::model_path::is_gguf(p)),
            );
        }
    }
    entries.sort();

    let mut rows = Vec::new();
    for path in entries {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let mut weights = String::new();
        let opened = if path.is_file() {
            sift_models::decoder::GgufModel::inspect(&path).map(|summary| {
                weights = format!("gguf {}", summary.tensor_types.join("+"));
                let c = summary.config;
                let name = format!("{} (GGUF)", c.model_type);
                ModelDir::for_gguf(&path, sift_models::ModelConfig::for_decoder(c, name))
            })
        } else {
            ModelDir::open(&path).inspect(|dir| {
                weights = dir
                    .config
                    .stored_dtype
                    .clone()
                    .unwrap_or_else(|| "-".into());
            })
        };
        let row = match opened {
            Ok(dir) => {
                let st = &dir.sentence_transformers;
                let c = &dir.config;
                serde_json::json!({
                    "name": name,
                    "path": path.display().to_string(),
                    "architecture": c.architecture_name,
                    "role": match c.head { Head::Encoder => "embedder", Head::SequenceClassification => "cross-encoder", Head::CausalLm => "llm-reranker" },
                    "dims": c.hidden_size,
                    "max_length": st.max_seq_length.unwrap_or(c.max_tokens()).min(c.max_tokens()),
                    "pooling": match c.head {
                        Head::Encoder => st.pooling.map(|p| p.name()).unwrap_or("mean (default)"),
                        Head::SequenceClassification | Head::CausalLm => "-",
                    },
                    "normalized": st.normalize,
                    "layers": c.num_layers,
                    "weights": weights,
                    "recipe": c.decoder.as_ref().map(|d| sift_models::RerankTemplate::for_model_type(&d.model_type).name()),
                    "layerwise_heads": c.decoder.as_ref().and_then(|d| d.layerwise).map(|lw| format!("{}..={}", lw.start_layer, c.num_layers)),
                    "size_bytes": dir.weights_bytes().unwrap_or(0),
                })
            }
            Err(e) => {
                serde_json::json!({ "name": name, "path": path.display().to_string(), "error": e.to_string() })
            }
        };
        rows.push(row);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("no models in {} (run scripts/setup.sh)", root.display());
        return Ok(());
    }
    println!(
        "{:<24} {:<30} {:<13} {:>5} {:>6} {:>7} {:<15} {:<26} {:>9}",
        "NAME",
        "ARCHITECTURE",
        "ROLE",
        "DIMS",
        "LAYERS",
        "MAX_LEN",
        "POOLING/RECIPE",
        "WEIGHTS",
        "SIZE"
    );
    for r in rows {
        if let Some(err) = r.get("error") {
            println!(
                "{:<24} error: {}",
                r["name"].as_str().unwrap_or(""),
                err.as_str().unwrap_or("")
            );
            continue;
        }
        let how = match (r["recipe"].as_str(), r["layerwise_heads"].as_str()) {
            (Some(recipe), Some(heads)) => format!("{recipe}, heads {heads}"),
            (Some(recipe), None) => recipe.to_owned(),
            _ => r["pooling"].as_str().unwrap_or("").to_owned(),
        };
        println!(
            "{:<24} {:<30} {:<13} {:>5} {:>6} {:>7} {:<15} {:<26} {:>6} MB",
            r["name"].as_str().unwrap_or(""),
            r["architecture"].as_str().unwrap_or(""),
            r["role"].as_str().unwrap_or(""),
            r["dims"].to_string(),
            r["layers"].to_string(),
            r["max_length"].to_string(),
            how,
            r["weights"].as_str().unwrap_or(""),
            r["size_bytes"].as_u64().unwrap_or(0) / 1_000_000,
        );
    }
    Ok(())
}
