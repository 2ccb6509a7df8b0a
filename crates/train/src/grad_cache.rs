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
//! pass per step, and the peak memory is one pass of [`ROWS_PER_PASS`] sequences.

use candle_core::{Device, Tensor, Var};
use sift_models::batch::Batch;
use sift_models::Encoded;

use crate::bi_encoder::{contrastive_loss_of_scores, TrainableBiEncoder};
use crate::error::Result;
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
}

/// The loss and the gradient of every variable in `vars` (None where the loss does not reach
/// it), for `step` through `model`.
pub fn contrastive_gradients(
    model: &TrainableBiEncoder,
    vars: &[Var],
    step: &ContrastiveStep,
) -> Result<(f64, Vec<Option<Tensor>>)> {
    let query_passes = passes(step.queries);
    let unit_passes = passes(step.units);

    // 1. Embeddings without a graph (the fused kernels over the same weights).
    let cached_q = Var::from_tensor(&embed_rows(model, step.queries, &query_passes, false)?)?;
    let cached_d = Var::from_tensor(&embed_rows(model, step.units, &unit_passes, false)?)?;

    // 2. The loss and its gradient with respect to the embeddings only.
    let cosines = cached_q.as_tensor().matmul(&cached_d.as_tensor().t()?)?;
    let scores = max_per_document(&cosines, step.spans)?;
    let loss = contrastive_loss_of_scores(&scores, step.scale, step.not_negatives)?;
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
    for (encoded, pass_list, grad) in [
        (step.queries, &query_passes, &grad_q),
        (step.units, &unit_passes, &grad_d),
    ] {
        for rows in pass_list {
            let embedded = embed_pass(model, encoded, rows, true)?;
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
) -> Result<Tensor> {
    let rows: Vec<&Encoded> = rows.iter().map(|&i| &encoded[i]).collect();
    let batch = Batch::new(&rows, model.config.pad_token_id, &Device::Cpu)?;
    model.embed(&batch, for_training)
}

/// Embeddings `[n, hidden]` of all of `encoded`, in input order, pass by pass.
fn embed_rows(
    model: &TrainableBiEncoder,
    encoded: &[Encoded],
    passes: &[Vec<usize>],
    for_training: bool,
) -> Result<Tensor> {
    let mut parts = Vec::with_capacity(passes.len());
    for rows in passes {
        parts.push(embed_pass(model, encoded, rows, for_training)?);
    }
    let sorted = Tensor::cat(&parts, 0)?;
    // Input row `i` sits at position `position[i]` of the concatenated passes.
    let mut position = vec![0u32; encoded.len()];
    for (k, &i) in passes.iter().flatten().enumerate() {
        position[i] = k as u32;
    }
    let index = Tensor::from_vec(position, encoded.len(), &Device::Cpu)?;
    Ok(sorted.index_select(&index, 0)?.detach())
}
