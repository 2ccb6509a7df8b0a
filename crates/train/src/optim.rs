//! AdamW with checkpointable state, and the learning-rate schedule.
//!
//! Written here rather than using `candle_nn::AdamW` because that optimizer keeps its moment
//! estimates private: they could not be saved, so `--resume` would restart Adam from zero and
//! the resumed run would differ from an uninterrupted one.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor, Var};

use crate::error::Result;

pub struct AdamW {
    vars: Vec<(String, Var)>,
    /// Per-variable multiplier of the learning rate (a fresh head learns faster than the
    /// pretrained encoder under it).
    lr_scale: Vec<f64>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Optimizer steps taken (Adam's bias correction counts from 1).
    pub steps: usize,
    pub learning_rate: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
}

/// Biases and LayerNorm parameters are not decayed (the usual BERT fine-tuning recipe).
fn decays(name: &str) -> bool {
    !(name.ends_with(".bias") || name.contains("LayerNorm") || name.contains("layer_norm"))
}

impl AdamW {
    pub fn new(vars: Vec<(String, Var)>, learning_rate: f64, weight_decay: f64) -> Result<Self> {
        let zeros = |v: &Var| v.as_tensor().zeros_like();
        Ok(AdamW {
            lr_scale: vec![1.0; vars.len()],
            m: vars
                .iter()
                .map(|(_, v)| zeros(v))
                .collect::<candle_core::Result<_>>()?,
            v: vars
                .iter()
                .map(|(_, v)| zeros(v))
                .collect::<candle_core::Result<_>>()?,
            vars,
            steps: 0,
            learning_rate,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        })
    }

    pub fn vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    /// Multiplies the learning rate of the variables named in `names` by `scale`.
    pub fn scale_learning_rate(&mut self, names: &[String], scale: f64) {
        for (i, (name, _)) in self.vars.iter().enumerate() {
            if names.contains(name) {
                self.lr_scale[i] = scale;
            }
        }
    }

    /// One update from `grads` (one per variable, in [`AdamW::vars`] order; `None` = no
    /// gradient this step).
    pub fn step(&mut self, grads: &[Option<Tensor>]) -> Result<()> {
        self.steps += 1;
        let t = self.steps as i32;
        let (b1, b2) = (self.beta1, self.beta2);
        let correction1 = 1.0 - b1.powi(t);
        let correction2 = 1.0 - b2.powi(t);
        for (i, ((name, var), grad)) in self.vars.iter().zip(grads).enumerate() {
            let Some(g) = grad else { continue };
            let m = ((&self.m[i] * b1)? + (g * (1.0 - b1))?)?;
            let v = ((&self.v[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let update = ((&m / correction1)? / ((&v / correction2)?.sqrt()? + self.eps)?)?;
            let lr = self.learning_rate * self.lr_scale[i];
            let mut theta = var.as_tensor().clone();
            if decays(name) && self.weight_decay > 0.0 {
                theta = (theta * (1.0 - lr * self.weight_decay))?;
            }
            var.set(&(theta - (update * lr)?)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for (i, (name, _)) in self.vars.iter().enumerate() {
            tensors.insert(format!("m.{name}"), self.m[i].clone());
            tensors.insert(format!("v.{name}"), self.v[i].clone());
        }
        candle_core::safetensors::save(&tensors, path)?;
        Ok(())
    }

    pub fn load(&mut self, path: &Path, steps: usize) -> Result<()> {
        let mut tensors = candle_core::safetensors::load(path, &Device::Cpu)?;
        for (i, (name, _)) in self.vars.iter().enumerate() {
            if let Some(m) = tensors.remove(&format!("m.{name}")) {
                self.m[i] = m;
            }
            if let Some(v) = tensors.remove(&format!("v.{name}")) {
                self.v[i] = v;
            }
        }
        self.steps = steps;
        Ok(())
    }
}

/// Linear warmup from 0 to `peak` over `warmup` steps, then linear decay to 0 at `total`.
pub fn learning_rate(step: usize, total: usize, warmup: usize, peak: f64) -> f64 {
    if step < warmup {
        peak * (step + 1) as f64 / warmup as f64
    } else {
        let remaining = total.saturating_sub(step) as f64;
        let span = total.saturating_sub(warmup).max(1) as f64;
        peak * (remaining / span).clamp(0.0, 1.0)
    }
}

/// Scales all gradients so their global L2 norm is at most `max_norm`; returns the norm before.
pub fn clip_grad_norm(grads: &mut [Option<Tensor>], max_norm: f64) -> Result<f64> {
    let mut sq = 0.0f64;
    for g in grads.iter().flatten() {
        sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
    }
    let norm = sq.sqrt();
    if norm > max_norm {
        let scale = max_norm / (norm + 1e-6);
        for g in grads.iter_mut().flatten() {
            *g = (&*g * scale)?;
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        assert!((learning_rate(0, 100, 10, 1.0) - 0.1).abs() < 1e-12);
        assert!((learning_rate(9, 100, 10, 1.0) - 1.0).abs() < 1e-12);
        assert!((learning_rate(55, 100, 10, 1.0) - 0.5).abs() < 1e-12);
        assert_eq!(learning_rate(100, 100, 10, 1.0), 0.0);
    }

    #[test]
    fn adamw_minimises_a_quadratic() {
        let x = Var::new(&[3.0f32, -2.0], &Device::Cpu).unwrap();
        let mut opt = AdamW::new(vec![("w".into(), x.clone())], 0.1, 0.0).unwrap();
        for _ in 0..300 {
            let loss = x.as_tensor().sqr().unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            opt.step(&[grads.get(x.as_tensor()).cloned()]).unwrap();
        }
        let v: Vec<f32> = x.as_tensor().to_vec1().unwrap();
        assert!(v.iter().all(|x| x.abs() < 1e-2), "{v:?}");
    }
}
