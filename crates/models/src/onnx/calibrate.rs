//! Calibration for the int8 graph: how large each linear layer's input channels get.
//!
//! BERT-family encoders route much of their signal through a few hidden channels whose
//! activations are far larger than the rest, and int8 with one scale per token row gives those
//! channels the levels every other channel then lacks. SmoothQuant's remedy (Xiao et al., 2023)
//! is applied before quantizing: channel `j` of a layer's input is divided by
//! `s_j = sqrt(max|x_j| / max|W_j|)` and row `j` of the weight multiplied by it, which leaves the
//! product unchanged in exact arithmetic and splits the range between activations and weights.
//! `max|x_j|` comes from one f32 forward pass over a short built-in text sample
//! (`crate::calibration_text`) when the model loads. The outlier channels are a property
//! of the trained weights, not of the text, so a generic sample finds them; the per-token scales
//! at run time still follow the real inputs.
//!
//! α = 0.5 (the square root) was chosen by simulation on the SciFact reranker: searching α per
//! layer for the least output error did no better end to end (docs/performance.md).

use super::linear_roles::LINEAR_ROLES;

/// Per layer, per linear role ([`LINEAR_ROLES`] order), the largest `|x_j|` seen on each input
/// channel over the calibration tokens (padding excluded).
#[derive(Debug, Clone, Default)]
pub(crate) struct Calibration {
    pub layers: Vec<[Vec<f32>; LINEAR_ROLES]>,
}

impl Calibration {
    pub fn new(layers: usize) -> Self {
        Calibration {
            layers: (0..layers).map(|_| Default::default()).collect(),
        }
    }

    /// Folds one probe output `[b, t, channels]` (row-major) into the running maxima; rows past
    /// each sequence's `lengths[i]` are padding and skipped.
    pub fn observe(
        &mut self,
        layer: usize,
        role: usize,
        data: &[f32],
        seq_len: usize,
        lengths: &[usize],
    ) {
        let slots = &mut self.layers[layer][role];
        let channels = if lengths.is_empty() || seq_len == 0 {
            return;
        } else {
            data.len() / (lengths.len() * seq_len)
        };
        if slots.is_empty() {
            slots.resize(channels, 0.0);
        }
        for (i, &len) in lengths.iter().enumerate() {
            for t in 0..len.min(seq_len) {
                let row = &data[(i * seq_len + t) * channels..][..channels];
                for (m, &v) in slots.iter_mut().zip(row) {
                    if v.is_finite() {
                        *m = m.max(v.abs());
                    }
                }
            }
        }
    }
}

/// SmoothQuant divisors for a linear layer with input-channel maxima `act_max` and weight
/// `w` stored `[in, out]` row-major. Channels never seen active, or with an all-zero weight
/// row, keep divisor 1.
pub(crate) fn smoothing(act_max: &[f32], w: &[f32], out_dim: usize) -> Vec<f32> {
    let in_dim = w.len() / out_dim.max(1);
    (0..in_dim)
        .map(|j| {
            let a = act_max.get(j).copied().unwrap_or(0.0);
            let wmax = w[j * out_dim..(j + 1) * out_dim]
                .iter()
                .fold(0f32, |m, v| m.max(v.abs()));
            if a > 0.0 && wmax > 0.0 {
                (a / wmax).sqrt()
            } else {
                1.0
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_rows_are_ignored() {
        let mut c = Calibration::new(1);
        // b = 2, t = 2, channels = 2; the second sequence has one real token.
        let data = [1.0, -3.0, 2.0, 0.5, -4.0, 1.0, 100.0, 100.0];
        c.observe(0, 1, &data, 2, &[2, 1]);
        assert_eq!(c.layers[0][1], vec![4.0, 3.0]);
        assert!(c.layers[0][0].is_empty());
    }

    #[test]
    fn smoothing_balances_activation_and_weight_ranges() {
        // in = 2, out = 2: channel 0 has activations 16× its weights, channel 1 is balanced.
        let w = [0.5f32, -0.25, 1.0, 0.0];
        let s = smoothing(&[8.0, 1.0], &w, 2);
        assert!(
            (s[0] - 4.0).abs() < 1e-6 && (s[1] - 1.0).abs() < 1e-6,
            "{s:?}"
        );
        // After smoothing both sides of channel 0 peak at 2.
        assert!((8.0 / s[0] - 0.5 * s[0]).abs() < 1e-6);
        assert_eq!(
            smoothing(&[0.0, 1.0], &[0.0, 0.0, 1.0, 1.0], 2),
            vec![1.0, 1.0]
        );
    }
}
