//! Dropout for training (Srivastava et al., 2014) at the sites transformers applies it in the
//! BERT family: after the embeddings' layer norm, on the attention probabilities, and on each
//! sublayer's output before its residual add. Inference never builds one.
//!
//! Masks come from a seeded ChaCha generator, not candle's CPU random source (which cannot be
//! seeded): gradient caching embeds every sequence twice — once without a graph, once with —
//! and the cached gradient is the true one only when both passes drop the same units. A
//! [`Dropout`] made with the same rates and seed, over the same batch, draws the same masks.

use candle_core::Tensor;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The dropout probabilities of a forward pass and the generator of its masks.
pub struct Dropout {
    rng: ChaCha8Rng,
    /// On the embeddings and on each sublayer's output (`hidden_dropout_prob`).
    hidden: f32,
    /// On the attention probabilities (`attention_probs_dropout_prob`).
    attention: f32,
}

impl Dropout {
    /// Rates in `[0, 1)`; anything else is an error (a rate of 1 drops everything and the
    /// inverted scaling `1 / (1 − p)` is infinite).
    pub fn new(hidden: f32, attention: f32, seed: u64) -> candle_core::Result<Self> {
        for (name, p) in [("hidden", hidden), ("attention", attention)] {
            if !(0.0..1.0).contains(&p) {
                candle_core::bail!("{name} dropout {p} must be in [0, 1)");
            }
        }
        Ok(Dropout {
            rng: ChaCha8Rng::seed_from_u64(seed),
            hidden,
            attention,
        })
    }

    pub(crate) fn hidden(&mut self, x: &Tensor) -> candle_core::Result<Tensor> {
        let p = self.hidden;
        self.apply(x, p)
    }

    pub(crate) fn attention(&mut self, x: &Tensor) -> candle_core::Result<Tensor> {
        let p = self.attention;
        self.apply(x, p)
    }

    /// Inverted dropout: each element kept with probability `1 − p` and scaled by `1 / (1 − p)`,
    /// so expectations match the pass without dropout that inference runs.
    fn apply(&mut self, x: &Tensor, p: f32) -> candle_core::Result<Tensor> {
        if p == 0.0 {
            return Ok(x.clone());
        }
        // P(draw < threshold) = threshold / 2³² = p, to within 2⁻³².
        let threshold = (f64::from(p) * 4_294_967_296.0) as u64;
        let keep = 1.0 / (1.0 - p);
        let mask: Vec<f32> = (0..x.elem_count())
            .map(|_| {
                if u64::from(self.rng.next_u32()) < threshold {
                    0.0
                } else {
                    keep
                }
            })
            .collect();
        let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
        x * mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn a_rate_drops_that_share_and_scales_the_rest_to_keep_the_mean() {
        let ones = Tensor::ones((64, 1024), candle_core::DType::F32, &Device::Cpu).unwrap();
        let mut d = Dropout::new(0.1, 0.0, 7).unwrap();
        let out = d.hidden(&ones).unwrap();
        let values: Vec<f32> = out.flatten_all().unwrap().to_vec1().unwrap();
        let dropped = values.iter().filter(|&&v| v == 0.0).count() as f64 / values.len() as f64;
        assert!((dropped - 0.1).abs() < 0.005, "{dropped}");
        assert!(values
            .iter()
            .all(|&v| v == 0.0 || (v - 1.0 / 0.9).abs() < 1e-6));
        let mean: f32 = out.mean_all().unwrap().to_scalar().unwrap();
        assert!((mean - 1.0).abs() < 0.01, "{mean}");
        // Rate 0 is the identity, and draws nothing.
        assert_eq!(
            d.attention(&ones)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
            vec![1f32; 64 * 1024]
        );
    }

    #[test]
    fn the_same_seed_draws_the_same_masks_and_another_seed_others() {
        let ones = Tensor::ones((8, 256), candle_core::DType::F32, &Device::Cpu).unwrap();
        let draw = |seed| -> Vec<Vec<f32>> {
            let mut d = Dropout::new(0.5, 0.5, seed).unwrap();
            (0..2)
                .map(|_| {
                    d.hidden(&ones)
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1()
                        .unwrap()
                })
                .collect()
        };
        let (a, b, c) = (draw(1), draw(1), draw(2));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a[0], a[1], "successive sites draw fresh masks");
    }

    #[test]
    fn rates_outside_zero_to_one_are_refused() {
        assert!(Dropout::new(1.0, 0.0, 0).is_err());
        assert!(Dropout::new(0.0, -0.1, 0).is_err());
        assert!(Dropout::new(f32::NAN, 0.0, 0).is_err());
    }
}
