//! A cross-encoder whose weights live in a candle `VarMap`, initialised from any supported
//! encoder or cross-encoder checkpoint and saved in the Hugging Face layout of the matching
//! `*ForSequenceClassification`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde_json::{json, Value};
use sift_models::arch::{Kernels, Transformer};
use sift_models::{Architecture, Head, ModelConfig, ModelDir};

use crate::error::{Result, TrainError};
use crate::recipe::Pooler;

/// Files copied from the base model so the output tokenizes exactly as the base did.
const TOKENIZER_FILES: [&str; 7] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "sentencepiece.bpe.model",
];

/// Where checkpoints keep the encoder (see sift-models' loader).
const ENCODER_PREFIXES: [&str; 5] = ["bert.", "roberta.", "mpnet.", "model.", ""];

pub struct TrainableCrossEncoder {
    pub varmap: VarMap,
    /// Differentiable kernels: the training forward pass.
    pub train: Transformer,
    /// Fused kernels over the same variables: fast scoring for dev evaluation.
    pub infer: Transformer,
    pub config: ModelConfig,
    config_json: Value,
    /// Variables the base checkpoint did not have (a fresh classification head).
    pub fresh: Vec<String>,
}

/// BERT's pooler, under any encoder prefix (`pooler.dense.*`, `bert.pooler.dense.*`).
fn is_pooler(name: &str) -> bool {
    name.starts_with("pooler.") || name.contains(".pooler.")
}

fn task_architecture(arch: Architecture) -> Result<(&'static str, &'static str)> {
    Ok(match arch {
        Architecture::Bert => ("BertForSequenceClassification", "bert."),
        Architecture::XlmRoberta => ("XLMRobertaForSequenceClassification", "roberta."),
        Architecture::MpNet => ("MPNetForSequenceClassification", "mpnet."),
        Architecture::Decoder => return Err(decoder_base()),
    })
}

/// What training says about a decoder LLM base: sift trains encoders only.
pub(crate) fn decoder_base() -> TrainError {
    TrainError::Invalid(
        "the base is a decoder LLM; sift trains encoder models only (BERT, XLM-RoBERTa, MPNet)"
            .into(),
    )
}

/// Where the checkpoint keeps its encoder: the prefix of its word embeddings.
pub(crate) fn encoder_prefix(
    tensors: &BTreeMap<String, Tensor>,
    base: &ModelDir,
) -> Result<&'static str> {
    ENCODER_PREFIXES
        .iter()
        .find(|p| tensors.contains_key(&format!("{p}embeddings.word_embeddings.weight")))
        .copied()
        .ok_or_else(|| {
            TrainError::Invalid(format!(
                "{}: no embeddings.word_embeddings.weight in the checkpoint",
                base.path.display()
            ))
        })
}

/// Every tensor of the checkpoint, by name, as f32.
pub(crate) fn read_tensors(dir: &ModelDir) -> Result<BTreeMap<String, Tensor>> {
    let mut out = BTreeMap::new();
    let files = dir.weight_files()?;
    let wrap = |p: &Path, e: candle_core::Error| {
        TrainError::Model(sift_models::ModelError::Weights {
            path: p.to_owned(),
            reason: e.to_string(),
        })
    };
    match &files {
        sift_models::model_dir::WeightFiles::Safetensors(paths) => {
            for p in paths {
                for (name, t) in
                    candle_core::safetensors::load(p, &Device::Cpu).map_err(|e| wrap(p, e))?
                {
                    out.insert(name, t.to_dtype(DType::F32)?);
                }
            }
        }
        sift_models::model_dir::WeightFiles::Gguf(_) => return Err(decoder_base()),
        sift_models::model_dir::WeightFiles::PyTorch(p) => {
            for (name, t) in candle_core::pickle::read_all(p).map_err(|e| wrap(p, e))? {
                out.insert(name, t.to_dtype(DType::F32)?);
            }
        }
    }
    Ok(out)
}

impl TrainableCrossEncoder {
    /// Builds a one-label cross-encoder from `base`: encoder weights from the checkpoint, the
    /// head too when the base already is a one-label cross-encoder (continued training), else a
    /// fresh head drawn from N(0, 0.02) with `seed`, as transformers initialises it — with
    /// [`Pooler::Fresh`], a BERT base's pooler is drawn fresh as well (part of the head).
    ///
    /// `exit_layers` (counted from 1) makes it layerwise: each of those layers gets its own
    /// fresh head, saved as `exits.{layer}.*` and listed in config.json's `sift_layerwise`
    /// (docs/design.md); the last layer's head stays the ordinary one.
    pub fn from_base(
        base: &ModelDir,
        seed: u64,
        exit_layers: &[usize],
        pooler: Pooler,
    ) -> Result<Self> {
        let (architecture, prefix) = task_architecture(base.config.architecture)?;
        let (mut config_json, config_path) = read_config_json(base)?;
        let layers = base.config.num_layers;
        if let Some(&bad) = exit_layers.iter().find(|&&l| l == 0 || l > layers) {
            return Err(TrainError::Invalid(format!(
                "exit layer {bad} does not exist: {} has layers 1 to {layers}",
                base.name()
            )));
        }
        let mut exits: Vec<usize> = exit_layers
            .iter()
            .copied()
            .filter(|&l| l < layers)
            .collect();
        exits.sort_unstable();
        exits.dedup();
        if let Some(obj) = config_json.as_object_mut() {
            obj.remove("sift_layerwise");
            if !exits.is_empty() {
                obj.insert("sift_layerwise".into(), json!({ "exit_layers": exits }));
            }
        }
        let keeps_head =
            base.config.head == Head::SequenceClassification && base.config.labels.len() == 1;
        config_json["architectures"] = json!([architecture]);
        config_json["id2label"] = json!({"0": "LABEL_0"});
        config_json["label2id"] = json!({"LABEL_0": 0});
        if let Some(obj) = config_json.as_object_mut() {
            obj.remove("num_labels");
        }
        let config = ModelConfig::from_json(&config_json.to_string(), &config_path)?;

        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let train = Transformer::load(config.clone(), vb, true, Kernels::Differentiable)?;

        let tensors = read_tensors(base)?;
        let base_prefix = encoder_prefix(&tensors, base)?;
        let mut renamed: BTreeMap<String, Tensor> = BTreeMap::new();
        for (name, t) in tensors {
            let name = name.replace(".gamma", ".weight").replace(".beta", ".bias");
            let is_head = name.starts_with("classifier.");
            let fresh_pooler = pooler == Pooler::Fresh && is_pooler(&name);
            if (is_head || fresh_pooler) && !keeps_head {
                continue;
            }
            let target = match name.strip_prefix(base_prefix) {
                Some(rest) if !is_head => format!("{prefix}{rest}"),
                _ => name,
            };
            renamed.insert(target, t);
        }

        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let normal = Normal::new(0.0f32, 0.02).expect("valid normal");
        let mut fresh = Vec::new();
        {
            let data = varmap.data().lock().expect("varmap lock");
            let mut names: Vec<&String> = data.keys().collect();
            names.sort();
            for name in names {
                let var = &data[name];
                match renamed.get(name) {
                    Some(t) if t.dims() == var.dims() => var.set(t)?,
                    Some(t) => {
                        return Err(TrainError::Invalid(format!(
                            "{}: tensor {name} has shape {:?}, the config implies {:?}",
                            base.path.display(),
                            t.dims(),
                            var.dims()
                        )))
                    }
                    None => {
                        let head = name.starts_with("classifier.")
                            || is_pooler(name)
                            || name.starts_with("exits.");
                        if !head {
                            return Err(TrainError::Invalid(format!(
                                "{}: the checkpoint has no tensor for {name}",
                                base.path.display()
                            )));
                        }
                        let n = var.elem_count();
                        let values: Vec<f32> = if name.ends_with(".bias") {
                            vec![0.0; n]
                        } else {
                            (0..n).map(|_| normal.sample(&mut rng)).collect()
                        };
                        var.set(&Tensor::from_vec(values, var.dims(), &Device::Cpu)?)?;
                        fresh.push(name.clone());
                    }
                }
            }
        }
        let infer = evaluation_transformer(&varmap, &config, true)?;
        Ok(TrainableCrossEncoder {
            varmap,
            train,
            infer,
            config,
            config_json,
            fresh,
        })
    }

    /// Variables by name, sorted (a stable order for the optimizer and checkpoints).
    pub fn variables(&self) -> Vec<(String, Var)> {
        sorted_variables(&self.varmap)
    }

    pub fn save_weights(&self, path: &Path) -> Result<()> {
        self.varmap.save(path)?;
        Ok(())
    }

    pub fn load_weights(&mut self, path: &Path) -> Result<()> {
        self.varmap.load(path)?;
        Ok(())
    }

    /// Writes a complete Hugging Face model directory: config.json, model.safetensors, the base's
    /// tokenizer files and `sentence_bert_config.json` with the trained max length.
    pub fn save_pretrained(&self, dir: &Path, base: &Path, max_length: usize) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
        let config = serde_json::to_string_pretty(&self.config_json)
            .map_err(|e| TrainError::Invalid(e.to_string()))?;
        write_atomic(&dir.join("config.json"), config.as_bytes())?;
        save_weights_atomic(&self.varmap, dir)?;
        copy_base_files(base, dir, &[])?;
        let st = json!({"max_seq_length": max_length, "do_lower_case": false});
        write_atomic(
            &dir.join("sentence_bert_config.json"),
            st.to_string().as_bytes(),
        )?;
        Ok(())
    }
}

/// The base's `config.json` as JSON, with its path (for error messages).
pub(crate) fn read_config_json(base: &ModelDir) -> Result<(Value, PathBuf)> {
    let path = base.path.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    let json = serde_json::from_str(&text)
        .map_err(|e| TrainError::Invalid(format!("{}: {e}", path.display())))?;
    Ok((json, path))
}

/// Variables by name, sorted (a stable order for the optimizer and checkpoints).
pub(crate) fn sorted_variables(varmap: &VarMap) -> Vec<(String, Var)> {
    let data = varmap.data().lock().expect("varmap lock");
    let mut vars: Vec<(String, Var)> = data.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// The fused-kernel model for dev evaluation, reading `varmap`'s storage through detached
/// tensors: the optimizer's in-place updates reach it, but its forward pass records no autograd
/// graph. Built on the variables themselves, one dev evaluation of SciFact (5,183 abstracts)
/// kept every intermediate of every batch alive: ~11 GB resident and several times slower.
pub(crate) fn evaluation_transformer(
    varmap: &VarMap,
    config: &ModelConfig,
    with_head: bool,
) -> Result<Transformer> {
    let detached: HashMap<String, Tensor> = varmap
        .data()
        .lock()
        .expect("varmap lock")
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().detach()))
        .collect();
    let vb = VarBuilder::from_tensors(detached, DType::F32, &Device::Cpu);
    Ok(Transformer::load(
        config.clone(),
        vb,
        with_head,
        Kernels::Fused,
    )?)
}

/// Writes `varmap` as `dir/model.safetensors` through a temporary file and a rename.
pub(crate) fn save_weights_atomic(varmap: &VarMap, dir: &Path) -> Result<()> {
    let tmp = dir.join("model.safetensors.tmp");
    varmap.save(&tmp)?;
    std::fs::rename(&tmp, dir.join("model.safetensors")).map_err(|e| TrainError::io(&tmp, e))
}

/// Copies the base's tokenizer files (and `extra` files, where present) into `dir`.
pub(crate) fn copy_base_files(base: &Path, dir: &Path, extra: &[&str]) -> Result<()> {
    for f in TOKENIZER_FILES.iter().chain(extra) {
        let src = base.join(f);
        if src.is_file() {
            std::fs::copy(&src, dir.join(f)).map_err(|e| TrainError::io(&src, e))?;
        }
    }
    Ok(())
}

/// Writes via a temporary file and rename, so a crash never leaves half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| TrainError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| TrainError::io(path, e))
}
