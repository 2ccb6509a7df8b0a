//! The contrastive gradient of one step with memory bounded by one forward pass.
//!
//! The in-batch loss needs every embedding of the step before it can be computed, so a plain
//! backward pass keeps the autograd graph of every sequence alive at once: on a 2-core machine
//! training all-MiniLM-L6-v2 on SciFact windows (16 queries × 3 documents ≈ 100 windows of up
//! to 256 tokens) that graph was ~20 GB of a 24 GB machine. Gradient caching (Gao et al., 2021;
//! sentence-transformers' `CachedMultipleNegativesRankingLoss`) splits the step in three: embed
//! everything without a graph, take the loss's gradient with respect to the embeddings alone,
//! then re-embed one pass at a time with a graph and back-propagate that pass's share
//! (`Σ embedding · its gradient`), summing parameter gradients. The result is the plain
//! gradient (the chain rule applied in two halves); the price is one extra graph-free forward
//! pass per step, and the peak memory is one pass of [`ROWS_PER_PASS`] sequences. With dropout
//! both forward passes of a sequence draw the same masks (seeded by step, side and pass), so
//! the identity still holds.

use candle_core::{Device, Tensor, Var};
use sift_models::batch::Batch;
use sift_models::Encoded;

use crate::bi_encoder::{contrastive_loss_of_scores, DropoutRates, TrainableBiEncoder};
use crate::distill::mix_with_label;
use crate::error::Result;
use crate::recipe::Distillation;
use crate::units::max_per_document;

/// Sequences per forward pass. Rows are sorted by length first, so a pass holds sequences of
/// similar length and a short window is not padded to the longest document of the step.
pub const ROWS_PER_PASS: usize = 16;

/// One step's inputs: queries (row `i` the query of document `i`), the documents' units
/// flattened, and each document's span of them.
pub struct ContrastiveStep<'a> {
    pub queries: &'a [Encoded],
    pub units: &'a [Encoded],
    /// Document `j` is units `spans[j].0 .. spans[j].0 + spans[j].1`, scored by its best unit.
    pub spans: &'a [(usize, usize)],
    /// (query, document) pairs left out of the query's softmax (other positives relevant to it).
    pub not_negatives: &'a [(usize, usize)],
    pub scale: f64,
    /// Dropout rates and the step's seed (every pass's masks derive from it).
    pub dropout: Option<(DropoutRates, u64)>,
    /// A teacher's logits of each query's own group, for distillation.
    pub teacher: Option<GroupTeacher<'a>>,
}

/// What a teacher says about each query's own group (its positive and negatives): the
/// distillation term compares its softmax over the group with the student's — the student's
/// logits being the contrastive loss's, `scale × cosine`.
pub struct GroupTeacher<'a> {
    /// `[queries, group size]`.
    pub logits: &'a Tensor,
    /// `[queries, group size]` (u32): the document column of the step's score matrix that each
    /// of the teacher's logits is about.
    pub columns: &'a Tensor,
    pub distillation: &'a Distillation,
}

/// Which rows a pass embeds: the masks of the two sides are drawn independently.
#[derive(Clone, Copy)]
enum Side {
    Queries = 0,
    Units = 1,
}

impl ContrastiveStep<'_> {
    /// The step's loss from its document scores `[queries, documents]`: the in-batch
    /// contrastive loss, mixed with the distillation term where a teacher is given
    /// (`(1 − weight) · contrastive + weight · KL`).
    pub fn loss_of_scores(&self, scores: &Tensor) -> Result<Tensor> {
        let contrastive = contrastive_loss_of_scores(scores, self.scale, self.not_negatives)?;
        let Some(t) = &self.teacher else {
            return Ok(contrastive);
        };
        let (b, g) = t.columns.dims2()?;
        let student = (scores.gather(t.columns, 1)?.reshape((b, g))? * self.scale)?;
        Ok(mix_with_label(
            contrastive,
            &student,
            t.logits,
            t.distillation,
        )?)
    }

    /// Query and unit embeddings through the training kernels with a graph, pass by pass with
    /// the masks the cached gradient draws: the plain forward pass whose gradient
    /// [`contrastive_gradients`] returns (a test compares the two).
    pub fn embed_with_graph(&self, model: &TrainableBiEncoder) -> Result<(Tensor, Tensor)> {
        Ok((
            self.embed_side(model, Side::Queries, true)?,
            self.embed_side(model, Side::Units, true)?,
        ))
    }

    fn rows(&self, side: Side) -> &[Encoded] {
        match side {
            Side::Queries => self.queries,
            Side::Units => self.units,
        }
    }

    /// The masks of pass `pass` of `side`.
    fn dropout_for(&self, side: Side, pass: usize) -> Result<Option<sift_models::arch::Dropout>> {
        match self.dropout {
            Some((rates, seed)) if !rates.is_none() => {
                Ok(Some(rates.masks(mix(mix(seed, side as u64), pass as u64))?))
            }
            _ => Ok(None),
        }
    }

    /// Embeddings `[n, hidden]` of all of `side`'s rows, in input order, pass by pass.
    fn embed_side(
        &self,
        model: &TrainableBiEncoder,
        side: Side,
        for_training: bool,
    ) -> Result<Tensor> {
        let encoded = self.rows(side);
        let passes = passes(encoded);
        let mut parts = Vec::with_capacity(passes.len());
        for (k, rows) in passes.iter().enumerate() {
            parts.push(embed_pass(
                model,
                encoded,
                rows,
                for_training,
                self.dropout_for(side, k)?,
            )?);
        }
        let sorted = Tensor::cat(&parts, 0)?;
        // Input row `i` sits at position `position[i]` of the concatenated passes.
        let mut position = vec![0u32; encoded.len()];
        for (k, &i) in passes.iter().flatten().enumerate() {
            position[i] = k as u32;
        }
        let index = Tensor::from_vec(position, encoded.len(), &Device::Cpu)?;
        Ok(sorted.index_select(&index, 0)?)
    }
}

/// SplitMix64 of `a` combined with `b`: distinct seeds for every (step, side, pass) from one
/// recipe seed, stable across platforms and Rust versions (a resumed run draws the same masks).
pub fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The loss and the gradient of every variable in `vars` (None where the loss does not reach
/// it), for `step` through `model`.
pub fn contrastive_gradients(
    model: &TrainableBiEncoder,
    vars: &[Var],
    step: &ContrastiveStep,
) -> Result<(f64, Vec<Option<Tensor>>)> {
    // 1. Embeddings without a graph (the fused kernels over the same weights).
    let cached_q = Var::from_tensor(&step.embed_side(model, Side::Queries, false)?.detach())?;
    let cached_d = Var::from_tensor(&step.embed_side(model, Side::Units, false)?.detach())?;

    // 2. The loss and its gradient with respect to the embeddings only.
    let cosines = cached_q.as_tensor().matmul(&cached_d.as_tensor().t()?)?;
    let scores = max_per_document(&cosines, step.spans)?;
    let loss = step.loss_of_scores(&scores)?;
    let loss_value = f64::from(loss.to_scalar::<f32>()?);
    let grads = loss.backward()?;
    let zeros = |v: &Var| v.as_tensor().zeros_like();
    let grad_q = match grads.get(cached_q.as_tensor()) {
        Some(g) => g.clone(),
        None => zeros(&cached_q)?,
    };
    let grad_d = match grads.get(cached_d.as_tensor()) {
        Some(g) => g.clone(),
        None => zeros(&cached_d)?,
    };

    // 3. One pass at a time: the pass's share of the parameter gradient.
    let mut total: Vec<Option<Tensor>> = vec![None; vars.len()];
    for (side, grad) in [(Side::Queries, &grad_q), (Side::Units, &grad_d)] {
        let encoded = step.rows(side);
        for (k, rows) in passes(encoded).iter().enumerate() {
            let embedded = embed_pass(model, encoded, rows, true, step.dropout_for(side, k)?)?;
            let index = Tensor::from_vec(
                rows.iter().map(|&r| r as u32).collect::<Vec<_>>(),
                rows.len(),
                &Device::Cpu,
            )?;
            let share = (embedded * grad.index_select(&index, 0)?)?.sum_all()?;
            let pass_grads = share.backward()?;
            for (slot, var) in total.iter_mut().zip(vars) {
                if let Some(g) = pass_grads.get(var.as_tensor()) {
                    *slot = Some(match slot.take() {
                        Some(sum) => (sum + g)?,
                        None => g.clone(),
                    });
                }
            }
        }
    }
    Ok((loss_value, total))
}

/// Row indices of `encoded` grouped into passes of similar length.
fn passes(encoded: &[Encoded]) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..encoded.len()).collect();
    order.sort_by_key(|&i| encoded[i].len());
    order.chunks(ROWS_PER_PASS).map(<[usize]>::to_vec).collect()
}

fn embed_pass(
    model: &TrainableBiEncoder,
    encoded: &[Encoded],
    rows: &[usize],
    for_training: bool,
    dropout: Option<sift_models::arch::Dropout>,
) -> Result<Tensor> {
    let rows: Vec<&Encoded> = rows.iter().map(|&i| &encoded[i]).collect();
    let batch = Batch::new(&rows, model.config.pad_token_id, &Device::Cpu)?;
    model.embed(&batch, for_training, dropout)
}
