//! A Hugging Face model directory on disk: which files it has and how to read them.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::sentence_transformers::SentenceTransformersConfig;

/// Prefix of fingerprints that hash the whole weights.
pub const FINGERPRINT_V2: &str = "v2-";

/// Weight files in the order sift prefers them.
#[derive(Debug, Clone)]
pub enum WeightFiles {
    /// `model.safetensors`, or the shards listed by `model.safetensors.index.json`.
    Safetensors(Vec<PathBuf>),
    /// `pytorch_model.bin` (a pickled state dict), read without Python.
    PyTorch(PathBuf),
    /// One GGUF file (llama.cpp's format): config, tokenizer and weights in one, read by
    /// [`crate::decoder::GgufModel`].
    Gguf(PathBuf),
}

impl WeightFiles {
    pub fn paths(&self) -> Vec<&Path> {
        match self {
            WeightFiles::Safetensors(p) => p.iter().map(|p| p.as_path()).collect(),
            WeightFiles::PyTorch(p) | WeightFiles::Gguf(p) => vec![p.as_path()],
        }
    }
}

/// A model directory whose configuration has been read; weights are only touched by
/// [`ModelDir::var_builder`].
#[derive(Debug, Clone)]
pub struct ModelDir {
    pub path: PathBuf,
    pub config: ModelConfig,
    pub sentence_transformers: SentenceTransformersConfig,
    /// sift's own notes on using the model as a reranker (`sift_rerank.json`; default if absent).
    pub rerank_settings: crate::rerank::RerankSettings,
}

impl ModelDir {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_owned();
        if !path.is_dir() {
            return Err(ModelError::DirectoryNotFound(path));
        }
        let config_path = path.join("config.json");
        if !config_path.is_file() {
            return Err(ModelError::MissingFile {
                dir: path,
                what: "model configuration",
                looked_for: "config.json".into(),
            });
        }
        let config = ModelConfig::from_file(&config_path)?;
        let sentence_transformers = SentenceTransformersConfig::from_dir(&path)?;
        let rerank_settings = crate::rerank::RerankSettings::from_dir(&path)?;
        Ok(ModelDir {
            path,
            config,
            sentence_transformers,
            rerank_settings,
        })
    }

    /// A GGUF file seen as a model "directory": its path, the config its metadata gives, no
    /// sentence-transformers or rerank settings.
    pub fn for_gguf(path: &Path, config: ModelConfig) -> Self {
        ModelDir {
            path: path.to_owned(),
            config,
            sentence_transformers: SentenceTransformersConfig::default(),
            rerank_settings: crate::rerank::RerankSettings::default(),
        }
    }

    /// True when the model is one GGUF file rather than a directory.
    pub fn is_gguf(&self) -> bool {
        self.path.is_file()
    }

    /// A short name for listings and API responses: the directory's name.
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.path.display().to_string())
    }

    pub fn weight_files(&self) -> Result<WeightFiles> {
        if self.is_gguf() {
            return Ok(WeightFiles::Gguf(self.path.clone()));
        }
        let single = self.path.join("model.safetensors");
        if single.is_file() {
            return Ok(WeightFiles::Safetensors(vec![single]));
        }
        let index = self.path.join("model.safetensors.index.json");
        if index.is_file() {
            return Ok(WeightFiles::Safetensors(self.shards(&index)?));
        }
        let bin = self.path.join("pytorch_model.bin");
        if bin.is_file() {
            return Ok(WeightFiles::PyTorch(bin));
        }
        Err(ModelError::MissingFile {
            dir: self.path.clone(),
            what: "weights",
            looked_for: "model.safetensors, model.safetensors.index.json, pytorch_model.bin".into(),
        })
    }

    /// Identifies the model's content: changes when its config, tokenizer or any byte of its
    /// weights change, not when the directory is copied or renamed. Collections record it to
    /// refuse mixing vectors from different models. `v2-` + the first 128 bits of a SHA-256 over
    /// config.json, tokenizer.json and every weight file in full (a fine-tune that froze the
    /// embeddings differs only deep inside the weights). Reads every weight byte: compute it
    /// once per loaded model ([`crate::Embedder::fingerprint`]).
    pub fn fingerprint(&self) -> Result<String> {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        let mut add_file = |path: &Path| -> Result<()> {
            let io = |e: std::io::Error| ModelError::InvalidConfig {
                path: path.to_owned(),
                reason: e.to_string(),
            };
            let mut file = std::fs::File::open(path).map_err(io)?;
            let len = file.metadata().map_err(io)?.len();
            hasher.update(len.to_le_bytes());
            let copied = std::io::copy(&mut file, &mut hasher).map_err(io)?;
            if copied != len {
                return Err(io(std::io::Error::other(
                    "the file changed while being read",
                )));
            }
            Ok(())
        };
        if !self.is_gguf() {
            add_file(&self.path.join("config.json"))?;
            let tokenizer = self.path.join("tokenizer.json");
            if tokenizer.is_file() {
                add_file(&tokenizer)?;
            }
        }
        for p in self.weight_files()?.paths() {
            add_file(p)?;
        }
        let digest = hasher.finalize();
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        Ok(format!("{FINGERPRINT_V2}{hex}"))
    }

    /// The fingerprint collections made before `v2` recorded: a CRC32 over config.json,
    /// tokenizer.json and the first MiB of each weight file. Kept only so that those
    /// collections still open with their own model ([`crate::Embedder::has_fingerprint`]).
    pub fn legacy_fingerprint(&self) -> Result<String> {
        use std::io::Read;
        let mut hasher = crc32fast::Hasher::new();
        let mut add_file = |path: &Path, limit: u64| -> Result<()> {
            let io = |e: std::io::Error| ModelError::InvalidConfig {
                path: path.to_owned(),
                reason: e.to_string(),
            };
            let file = std::fs::File::open(path).map_err(io)?;
            let len = file.metadata().map_err(io)?.len();
            hasher.update(&len.to_le_bytes());
            let mut head = Vec::new();
            file.take(limit).read_to_end(&mut head).map_err(io)?;
            hasher.update(&head);
            Ok(())
        };
        add_file(&self.path.join("config.json"), u64::MAX)?;
        let tokenizer = self.path.join("tokenizer.json");
        if tokenizer.is_file() {
            add_file(&tokenizer, u64::MAX)?;
        }
        for p in self.weight_files()?.paths() {
            add_file(p, 1 << 20)?;
        }
        Ok(format!("{:08x}", hasher.finalize()))
    }

    /// Total size of the weight files in bytes.
    pub fn weights_bytes(&self) -> Result<u64> {
        let files = self.weight_files()?;
        Ok(files
            .paths()
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum())
    }

    /// Tensors of the checkpoint, converted to f32 on load (f16/bf16 checkpoints included).
    pub fn var_builder(&self, device: &Device) -> Result<VarBuilder<'static>> {
        let files = self.weight_files()?;
        let wrap = |path: &Path, e: candle_core::Error| ModelError::Weights {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        match &files {
            WeightFiles::Safetensors(paths) => {
                // SAFETY: the files are memory-mapped read-only; like every mmap-based loader
                // (transformers, TEI) we rely on nobody truncating them while the model is loaded.
                unsafe { VarBuilder::from_mmaped_safetensors(paths, DType::F32, device) }
                    .map_err(|e| wrap(&paths[0], e))
            }
            WeightFiles::PyTorch(path) => {
                VarBuilder::from_pth(path, DType::F32, device).map_err(|e| wrap(path, e))
            }
            WeightFiles::Gguf(path) => Err(ModelError::Weights {
                path: path.clone(),
                reason: "a GGUF file is read whole by GgufModel, not through a VarBuilder".into(),
            }),
        }
    }

    fn shards(&self, index: &Path) -> Result<Vec<PathBuf>> {
        #[derive(serde::Deserialize)]
        struct Index {
            weight_map: std::collections::BTreeMap<String, String>,
        }
        let text = std::fs::read_to_string(index).map_err(|e| ModelError::InvalidConfig {
            path: index.to_owned(),
            reason: e.to_string(),
        })?;
        let parsed: Index = serde_json::from_str(&text).map_err(|e| ModelError::InvalidConfig {
            path: index.to_owned(),
            reason: e.to_string(),
        })?;
        let mut files: Vec<PathBuf> = parsed
            .weight_map
            .values()
            .map(|f| self.path.join(f))
            .collect();
        files.sort();
        files.dedup();
        if let Some(missing) = files.iter().find(|f| !f.is_file()) {
            return Err(ModelError::MissingFile {
                dir: self.path.clone(),
                what: "weight shard",
                looked_for: missing.display().to_string(),
            });
        }
        Ok(files)
    }
}
