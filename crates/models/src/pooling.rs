//! Token states → one vector per text.

use candle_core::{DType, Tensor, D};

use crate::error::{ModelError, Result};

/// How an embedder reduces `[batch, tokens, hidden]` states to `[batch, hidden]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The first token's state (`[CLS]` / `<s>`): BGE, most rerankers.
    Cls,
    /// Mean over real (unmasked) tokens: MiniLM, MPNet, E5.
    Mean,
    /// The last real token's state: decoder-style embedders.
    LastToken,
}

impl Pooling {
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Cls => "cls",
            Pooling::Mean => "mean",
            Pooling::LastToken => "last-token",
        }
    }

    /// `hidden`: `[b, t, h]` f32; `mask`: `[b, t]` f32 of 0/1 with real tokens first.
    pub fn pool(self, hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let pooled = match self {
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
            Pooling::Mean => {
                let m = mask.unsqueeze(D::Minus1)?;
                let summed = hidden.broadcast_mul(&m)?.sum(1)?;
                let counts = m.sum(1)?.clamp(1e-9f32, f32::MAX)?;
                summed.broadcast_div(&counts)?
            }
            Pooling::LastToken => {
                let lengths: Vec<f32> = mask.sum(1)?.to_vec1()?;
                let rows = lengths
                    .iter()
                    .enumerate()
                    .map(|(i, &len)| {
                        let last = (len as usize).max(1) - 1;
                        hidden.get(i)?.get(last)
                    })
                    .collect::<candle_core::Result<Vec<_>>>()?;
                Tensor::stack(&rows, 0)?
            }
        };
        Ok(pooled)
    }
}

impl std::str::FromStr for Pooling {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cls" => Ok(Pooling::Cls),
            "mean" => Ok(Pooling::Mean),
            "last-token" | "lasttoken" | "last" => Ok(Pooling::LastToken),
            other => Err(ModelError::InvalidInput(format!(
                "unknown pooling {other:?}; expected cls, mean or last-token"
            ))),
        }
    }
}

/// Scales each row to unit L2 norm, so dot product equals cosine similarity.
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x
        .to_dtype(DType::F32)?
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12f32, f32::MAX)?;
    Ok(x.broadcast_div(&norm)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn mean_ignores_padding_and_last_token_finds_the_end() {
        let d = Device::Cpu;
        // batch of 2, 3 tokens, hidden 1; second row has one pad token.
        let h = Tensor::new(&[[[1f32], [2.], [3.]], [[4.], [6.], [100.]]], &d).unwrap();
        let m = Tensor::new(&[[1f32, 1., 1.], [1., 1., 0.]], &d).unwrap();
        let mean: Vec<Vec<f32>> = Pooling::Mean.pool(&h, &m).unwrap().to_vec2().unwrap();
        assert_eq!(mean, vec![vec![2.0], vec![5.0]]);
        let last: Vec<Vec<f32>> = Pooling::LastToken.pool(&h, &m).unwrap().to_vec2().unwrap();
        assert_eq!(last, vec![vec![3.0], vec![6.0]]);
        let cls: Vec<Vec<f32>> = Pooling::Cls.pool(&h, &m).unwrap().to_vec2().unwrap();
        assert_eq!(cls, vec![vec![1.0], vec![4.0]]);
    }

    #[test]
    fn normalize_gives_unit_rows() {
        let x = Tensor::new(&[[3f32, 4.]], &Device::Cpu).unwrap();
        let n: Vec<Vec<f32>> = l2_normalize(&x).unwrap().to_vec2().unwrap();
        assert_eq!(n, vec![vec![0.6, 0.8]]);
    }
}
