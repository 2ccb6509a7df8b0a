//! A bi-encoder (sentence embedder) whose weights live in a candle `VarMap`, initialised from
//! any supported encoder checkpoint, trained with an in-batch contrastive loss, and saved as a
//! sentence-transformers directory (Transformer → Pooling → Normalize) that `sift index`,
//! `sift embed` and sentence-transformers load.
//!
//! The building blocks of `sift train-embedder` (first-stage-quality issue): the model, its
//! pooled and normalized embeddings through either kernel set, the loss, and the output layout.

use std::path::Path;

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{VarBuilder, VarMap};
use serde_json::{json, Value};
use sift_models::arch::{Dropout, Kernels, Transformer};
use sift_models::batch::Batch;
use sift_models::pooling::{l2_normalize, Pooling};
use sift_models::{Architecture, ModelConfig, ModelDir};

use crate::error::{Result, TrainError};
use crate::model::{
    copy_base_files, encoder_prefix, evaluation_transformer, read_config_json, read_tensors,
    save_weights_atomic, sorted_variables, write_atomic,
};

/// The encoder class a sentence-transformers directory of `arch` names in `config.json`.
fn encoder_architecture(arch: Architecture) -> Result<&'static str> {
    Ok(match arch {
        Architecture::Bert => "BertModel",
        Architecture::XlmRoberta => "XLMRobertaModel",
        Architecture::MpNet => "MPNetModel",
        Architecture::Decoder => return Err(crate::model::decoder_base()),
    })
}

pub struct TrainableBiEncoder {
    pub varmap: VarMap,
    /// Differentiable kernels: the training forward pass.
    pub train: Transformer,
    /// Fused kernels over the same variables: fast embedding for dev evaluation.
    pub infer: Transformer,
    pub config: ModelConfig,
    pub pooling: Pooling,
    config_json: Value,
}

impl TrainableBiEncoder {
    /// The encoder of `base` (an embedder, or a cross-encoder whose head is dropped) with the
    /// base's pooling (mean when it names none). Every encoder tensor must be in the
    /// checkpoint: a bi-encoder has no fresh parts to initialise.
    pub fn from_base(base: &ModelDir) -> Result<Self> {
        let (mut config_json, config_path) = read_config_json(base)?;
        config_json["architectures"] = json!([encoder_architecture(base.config.architecture)?]);
        if let Some(obj) = config_json.as_object_mut() {
            for key in ["id2label", "label2id", "num_labels"] {
                obj.remove(key);
            }
        }
        let config = ModelConfig::from_json(&config_json.to_string(), &config_path)?;

        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let train = Transformer::load(config.clone(), vb, false, Kernels::Differentiable)?;

        let tensors = read_tensors(base)?;
        let prefix = encoder_prefix(&tensors, base)?;
        {
            let data = varmap.data().lock().expect("varmap lock");
            for (name, var) in data.iter() {
                let stored = [name.clone(), name.replace(".weight", ".gamma")]
                    .into_iter()
                    .chain([name.replace(".bias", ".beta")])
                    .find_map(|n| tensors.get(&format!("{prefix}{n}")));
                match stored {
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
                        return Err(TrainError::Invalid(format!(
                            "{}: the checkpoint has no tensor for {name}",
                            base.path.display()
                        )))
                    }
                }
            }
        }
        let infer = evaluation_transformer(&varmap, &config, false)?;
        Ok(TrainableBiEncoder {
            varmap,
            train,
            infer,
            config,
            pooling: base.sentence_transformers.pooling.unwrap_or(Pooling::Mean),
            config_json,
        })
    }

    /// Unit-length embeddings `[b, hidden]` of `batch`: through the differentiable kernels
    /// (`for_training`, gradients flow) or the fused ones (evaluation, and the graph-free pass
    /// of gradient caching), with `dropout` where given.
    pub fn embed(
        &self,
        batch: &Batch,
        for_training: bool,
        dropout: Option<Dropout>,
    ) -> Result<Tensor> {
        let model = if for_training {
            &self.train
        } else {
            &self.infer
        };
        let hidden = match dropout {
            Some(d) => model.hidden_states_with_dropout(batch, d)?,
            None => model.hidden_states(batch)?,
        };
        let pooled = self.pooling.pool(&hidden, &batch.mask)?;
        Ok(l2_normalize(&pooled)?)
    }

    /// Variables by name, sorted (a stable order for the optimizer and checkpoints).
    pub fn variables(&self) -> Vec<(String, Var)> {
        sorted_variables(&self.varmap)
    }

    /// Writes a sentence-transformers directory: the encoder (`config.json`,
    /// `model.safetensors` with bare `BertModel`-style names), the base's tokenizer files and
    /// prompts, and the module files — Transformer, Pooling (this model's), Normalize (sift
    /// searches by cosine; the model was trained on normalized vectors).
    pub fn save_sentence_transformers(
        &self,
        dir: &Path,
        base: &Path,
        max_length: usize,
    ) -> Result<()> {
        std::fs::create_dir_all(dir.join("1_Pooling")).map_err(|e| TrainError::io(dir, e))?;
        std::fs::create_dir_all(dir.join("2_Normalize")).map_err(|e| TrainError::io(dir, e))?;
        let config = serde_json::to_string_pretty(&self.config_json)
            .map_err(|e| TrainError::Invalid(e.to_string()))?;
        write_atomic(&dir.join("config.json"), config.as_bytes())?;
        save_weights_atomic(&self.varmap, dir)?;
        copy_base_files(base, dir, &["config_sentence_transformers.json"])?;
        let modules = json!([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ]);
        write_atomic(&dir.join("modules.json"), modules.to_string().as_bytes())?;
        let pooling = json!({
            "word_embedding_dimension": self.config.hidden_size,
            "pooling_mode_cls_token": self.pooling == Pooling::Cls,
            "pooling_mode_mean_tokens": self.pooling == Pooling::Mean,
            "pooling_mode_max_tokens": false,
            "pooling_mode_mean_sqrt_len_tokens": false,
            "pooling_mode_lasttoken": self.pooling == Pooling::LastToken,
        });
        write_atomic(
            &dir.join("1_Pooling/config.json"),
            pooling.to_string().as_bytes(),
        )?;
        let st = json!({"max_seq_length": max_length, "do_lower_case": false});
        write_atomic(
            &dir.join("sentence_bert_config.json"),
            st.to_string().as_bytes(),
        )?;
        Ok(())
    }
}

/// Dropout probabilities of a training forward pass (all zero: none).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DropoutRates {
    /// On the embeddings and each sublayer's output.
    pub hidden: f32,
    /// On the attention probabilities.
    pub attention: f32,
}

impl DropoutRates {
    /// `base`'s own rates (`hidden_dropout_prob`, `attention_probs_dropout_prob` in its
    /// config.json; transformers' default 0.1 where it names none): what transformers and
    /// sentence-transformers fine-tune the same base with.
    pub fn of_base(base: &ModelDir) -> Result<Self> {
        let (config, _) = read_config_json(base)?;
        let rate = |key: &str| {
            config
                .get(key)
                .and_then(Value::as_f64)
                .map_or(0.1, |p| p as f32)
        };
        Ok(DropoutRates {
            hidden: rate("hidden_dropout_prob"),
            attention: rate("attention_probs_dropout_prob"),
        })
    }

    pub fn is_none(&self) -> bool {
        self.hidden == 0.0 && self.attention == 0.0
    }

    /// The masks of one forward pass, drawn from `seed`; rates outside `[0, 1)` are invalid
    /// input (the only way [`Dropout::new`] fails).
    pub fn masks(&self, seed: u64) -> Result<Dropout> {
        Dropout::new(self.hidden, self.attention, seed)
            .map_err(|e| TrainError::Invalid(format!("--dropout: {e}")))
    }
}

/// In-batch contrastive loss (InfoNCE; sentence-transformers' MultipleNegativesRankingLoss):
/// `queries` `[b, d]` and `documents` `[n, d]`, unit rows, `n ≥ b`, document `i` the positive
/// of query `i` and every other row — the other queries' positives and any hard negatives
/// appended after them — a negative, except the `(query, document)` pairs in `not_negatives`
/// (another pair's positive that is also relevant to this query: a false negative, left out of
/// that query's softmax). Cross-entropy of `scale ·` cosine, averaged over queries. `scale` 20
/// is sentence-transformers' default (a temperature of 0.05).
pub fn contrastive_loss(
    queries: &Tensor,
    documents: &Tensor,
    scale: f64,
    not_negatives: &[(usize, usize)],
) -> Result<Tensor> {
    contrastive_loss_of_scores(&queries.matmul(&documents.t()?)?, scale, not_negatives)
}

/// [`contrastive_loss`] from the cosines `[b, n]` of each query with each document (document
/// `i` the positive of query `i`): for documents scored otherwise than by one vector, such as
/// their best window ([`crate::units::max_per_document`]).
pub fn contrastive_loss_of_scores(
    cosines: &Tensor,
    scale: f64,
    not_negatives: &[(usize, usize)],
) -> Result<Tensor> {
    let (b, n) = cosines.dims2()?;
    if n < b {
        return Err(TrainError::Invalid(format!(
            "{b} queries but only {n} documents: each query needs its positive"
        )));
    }
    let mut logits = (cosines * scale)?;
    if !not_negatives.is_empty() {
        let mut mask = vec![0f32; b * n];
        for &(q, d) in not_negatives {
            if q < b && d < n && q != d {
                // Large enough to vanish from the softmax, small enough to stay finite in f32.
                mask[q * n + d] = -1e4;
            }
        }
        logits = (logits + Tensor::from_vec(mask, (b, n), cosines.device())?)?;
    }
    let log_probs = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let labels = Tensor::arange(0u32, b as u32, cosines.device())?;
    let picked = log_probs.gather(&labels.unsqueeze(1)?, 1)?;
    Ok(picked.mean_all()?.neg()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loss_is_log_n_for_indistinct_vectors_and_small_when_positives_match() {
        let same = Tensor::ones((3, 4), DType::F32, &Device::Cpu).unwrap();
        let unit = l2_normalize(&same).unwrap();
        let loss: f32 = contrastive_loss(&unit, &unit, 20.0, &[])
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!((loss - 3f32.ln()).abs() < 1e-5, "{loss}");

        let eye = Tensor::eye(3, DType::F32, &Device::Cpu).unwrap();
        let loss: f32 = contrastive_loss(&eye, &eye, 20.0, &[])
            .unwrap()
            .to_scalar()
            .unwrap();
        // Each query: −log(e^20 / (e^20 + 2)) ≈ 2·e^−20.
        assert!(loss < 1e-6, "{loss}");
        assert!(contrastive_loss(&eye, &eye.narrow(0, 0, 2).unwrap(), 20.0, &[]).is_err());
        // Masking every other document of query 0 leaves only its positive: loss 0 for it.
        let masked: f32 = contrastive_loss(&unit, &unit, 20.0, &[(0, 1), (0, 2)])
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!((masked - 2.0 * 3f32.ln() / 3.0).abs() < 1e-4, "{masked}");
    }

    #[test]
    fn hard_negatives_that_look_like_the_positive_raise_the_loss() {
        let q = Tensor::new(&[[1f32, 0.0], [0.0, 1.0]], &Device::Cpu).unwrap();
        let positives = q.clone();
        let easy = Tensor::new(&[[-1f32, 0.0], [0.0, -1.0]], &Device::Cpu).unwrap();
        let hard = Tensor::new(&[[0.9f32, 0.436], [0.436, 0.9]], &Device::Cpu).unwrap();
        let with = |negatives: &Tensor| -> f32 {
            let docs = Tensor::cat(&[&positives, negatives], 0).unwrap();
            contrastive_loss(&q, &docs, 20.0, &[])
                .unwrap()
                .to_scalar()
                .unwrap()
        };
        assert!(with(&hard) > 10.0 * with(&easy));
    }
}
