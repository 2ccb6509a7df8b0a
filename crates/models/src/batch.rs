//! Padded tensors for a group of encodings, and the grouping itself.

use candle_core::{Device, Tensor};

use crate::error::Result;
use crate::tokenize::Encoded;

/// One forward pass worth of inputs, right-padded to the longest member.
pub struct Batch {
    /// `[b, t]` u32.
    pub input_ids: Tensor,
    /// `[b, t]` u32.
    pub type_ids: Tensor,
    /// `[b, t]` f32, 1 for real tokens.
    pub mask: Tensor,
    /// Real length of each row in tokens.
    pub lengths: Vec<usize>,
}

impl Batch {
    pub fn new(encodings: &[&Encoded], pad_id: u32, device: &Device) -> Result<Self> {
        let b = encodings.len();
        let t = encodings.iter().map(|e| e.len()).max().unwrap_or(0).max(1);
        let mut ids = vec![pad_id; b * t];
        let mut types = vec![0u32; b * t];
        let mut mask = vec![0f32; b * t];
        for (row, e) in encodings.iter().enumerate() {
            let base = row * t;
            ids[base..base + e.len()].copy_from_slice(&e.ids);
            types[base..base + e.len()].copy_from_slice(&e.type_ids);
            mask[base..base + e.len()].fill(1.0);
        }
        Ok(Batch {
            input_ids: Tensor::from_vec(ids, (b, t), device)?,
            type_ids: Tensor::from_vec(types, (b, t), device)?,
            mask: Tensor::from_vec(mask, (b, t), device)?,
            lengths: encodings.iter().map(|e| e.len()).collect(),
        })
    }

    pub fn size(&self) -> usize {
        self.lengths.len()
    }

    /// Padded sequence length.
    pub fn seq_len(&self) -> usize {
        self.input_ids.dims()[1]
    }
}

/// Token states of a batch after some layer, `[b, t, hidden]` row-major, with each row's real
/// length: what a rerank cascade keeps from its first stage for its second. Padding positions
/// hold whatever the engine left there; every consumer masks them.
#[derive(Debug, Clone)]
pub struct SavedStates {
    pub dims: [usize; 3],
    pub data: Vec<f32>,
    pub lengths: Vec<usize>,
}

/// One row of [`SavedStates`] without its padding: `len × hidden` values.
#[derive(Debug, Clone)]
pub struct RowStates {
    pub data: Vec<f32>,
    pub len: usize,
}

impl SavedStates {
    /// Each row's real positions, in row order.
    pub fn into_rows(self) -> Vec<RowStates> {
        let [_, t, h] = self.dims;
        self.lengths
            .iter()
            .enumerate()
            .map(|(r, &len)| RowStates {
                data: self.data[r * t * h..(r * t + len) * h].to_vec(),
                len,
            })
            .collect()
    }

    /// Rows padded with zeros to the longest of them: a batch to continue.
    pub fn from_rows(rows: &[&RowStates], hidden: usize) -> Self {
        let t = rows.iter().map(|r| r.len).max().unwrap_or(0).max(1);
        let mut data = vec![0f32; rows.len() * t * hidden];
        for (r, row) in rows.iter().enumerate() {
            data[r * t * hidden..r * t * hidden + row.data.len()].copy_from_slice(&row.data);
        }
        SavedStates {
            dims: [rows.len(), t, hidden],
            data,
            lengths: rows.iter().map(|r| r.len).collect(),
        }
    }
}

/// Groups inputs into batches whose padded size (rows × longest row, in tokens) stays within
/// `max_batch_tokens`. Inputs are sorted by length first so rows of a batch have similar lengths
/// and little compute goes to padding. Returns indices into `lengths`; every index appears once.
pub fn plan_batches(lengths: &[usize], max_batch_tokens: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    let mut batches = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut longest = 0;
    for i in order {
        let len = lengths[i].max(1);
        let widest = longest.max(len);
        if !current.is_empty() && widest * (current.len() + 1) > max_batch_tokens {
            batches.push(std::mem::take(&mut current));
            longest = 0;
        }
        longest = longest.max(len);
        current.push(i);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_the_token_budget_and_cover_every_input() {
        let lengths = [5, 100, 7, 100, 3, 50, 1];
        let batches = plan_batches(&lengths, 200);
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>());
        for b in &batches {
            let widest = b.iter().map(|&i| lengths[i]).max().unwrap();
            assert!(widest * b.len() <= 200, "{b:?}");
        }
        // A single input over budget still gets a batch of its own.
        assert_eq!(plan_batches(&[500], 100), vec![vec![0]]);
        assert!(plan_batches(&[], 100).is_empty());
    }

    #[test]
    fn pads_to_the_longest_row() {
        let a = Encoded {
            ids: vec![1, 2, 3],
            type_ids: vec![0, 0, 1],
        };
        let b = Encoded {
            ids: vec![4],
            type_ids: vec![0],
        };
        let batch = Batch::new(&[&a, &b], 9, &Device::Cpu).unwrap();
        let ids: Vec<Vec<u32>> = batch.input_ids.to_vec2().unwrap();
        assert_eq!(ids, vec![vec![1, 2, 3], vec![4, 9, 9]]);
        let mask: Vec<Vec<f32>> = batch.mask.to_vec2().unwrap();
        assert_eq!(mask, vec![vec![1., 1., 1.], vec![1., 0., 0.]]);
        assert_eq!(batch.lengths, vec![3, 1]);
    }
}
