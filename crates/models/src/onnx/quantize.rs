//! The linear layers of a graph, in f32 or int8.
//!
//! With [`Precision::Int8`] every linear layer of every transformer layer runs in int8: weights
//! smoothed by the calibrated per-channel divisors ([`super::calibrate`]) and quantized here,
//! symmetrically per output column; activations quantized per token row at run time
//! (`ReduceMax`/`ReduceMin` for the row's range, then `QuantizeLinear` with one block per row);
//! the integer product and its rescaling by ONNX Runtime's `MatMulIntegerToFloat`.
//!
//! Why per row: ONNX Runtime's `DynamicQuantizeMatMul` gives a whole activation tensor one
//! uint8 scale, and in BERT-family encoders a few tokens (`[CLS]`, `[SEP]`, punctuation) carry
//! activations tens of times larger than the rest, which leaves ordinary tokens a handful of
//! levels (docs/quality.md measures the cost). With probes on, the f32 graph also outputs the
//! input of every linear layer, which is how the calibration pass observes them.

use candle_core::Tensor;
use ort::editor::ONNX_DOMAIN;
use ort::operator::Attribute;
use ort::value::{Outlet, TensorElementType};

use super::calibrate::{smoothing, Calibration};
use super::editor::{candle_err, tensor_outlet, transposed, Editor, MS_DOMAIN};
use super::linear_roles::{probe_output, Linear};

/// Numeric format of the encoder's linear layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    F32,
    /// int8 weights (per output column), int8 activations (per token row), both after
    /// calibrated SmoothQuant channel scaling.
    Int8,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Int8 => "int8",
        }
    }
}

/// The uint8 code of 0.0 for activations: codes are `round(x / scale) + 128`, symmetric so the
/// row scale alone describes the row.
const ACTIVATION_ZERO_POINT: u8 = 128;

/// How an int8 linear layer's input is smoothed (see [`super::calibrate`]).
#[derive(Clone, Copy)]
pub(crate) enum Smoothing<'s> {
    None,
    /// Divide input channel `j` by `s[j]` in the graph; weight row `j` is multiplied by it.
    Input(&'s [f32]),
    /// The producer of the input already divided channel `j` by `s[j]`; only the weight
    /// row is multiplied.
    Folded(&'s [f32]),
}

/// Writes linear layers at one precision, and the probes calibration reads.
pub(crate) struct Linears<'a> {
    precision: Precision,
    calibration: Option<&'a Calibration>,
    /// Probe outputs declared so far, when probing.
    probes: Option<Vec<Outlet>>,
    /// `[b, t, 1]` of [`ACTIVATION_ZERO_POINT`], made once and shared by every int8 layer.
    row_zero_points: Option<String>,
}

impl<'a> Linears<'a> {
    pub fn new(precision: Precision, calibration: Option<&'a Calibration>, probes: bool) -> Self {
        Linears {
            precision,
            calibration,
            probes: probes.then(Vec::new),
            row_zero_points: None,
        }
    }

    /// The probe outputs declared so far (none unless probing).
    pub fn take_probes(&mut self) -> Vec<Outlet> {
        self.probes.take().unwrap_or_default()
    }

    /// SmoothQuant divisors for linear `kind` of `layer` with weight `w_in_out` (`[in, out]`);
    /// `None` in f32 or without calibration.
    pub fn smoothing(
        &self,
        layer: usize,
        kind: Linear,
        w_in_out: &[f32],
        out_dim: usize,
    ) -> Option<Vec<f32>> {
        match (self.precision, self.calibration) {
            (Precision::Int8, Some(c)) => Some(smoothing(
                &c.layers[layer][kind as usize],
                w_in_out,
                out_dim,
            )),
            _ => None,
        }
    }

    /// `x · Wᵀ` with `weight` given as `[out, in]`; f32 `MatMul`, or the int8 route by
    /// precision. The bias is left to the caller's fused op.
    pub fn matmul(
        &mut self,
        e: &mut Editor,
        layer: usize,
        x: &str,
        weight_out_in: &Tensor,
        kind: Linear,
    ) -> ort::Result<String> {
        let (out_dim, in_dim) = weight_out_in.dims2().map_err(candle_err)?;
        let w_in_out = transposed(weight_out_in)?;
        let smooth = self.smoothing(layer, kind, &w_in_out, out_dim);
        let smooth = match &smooth {
            Some(s) => Smoothing::Input(s),
            None => Smoothing::None,
        };
        self.linear(e, layer, x, w_in_out, (in_dim, out_dim), kind, smooth)
    }

    /// `x · W` for `w_in_out` stored `[in, out]` row-major, smoothed as `smooth` says.
    #[allow(clippy::too_many_arguments)] // one linear layer's full description
    pub fn linear(
        &mut self,
        e: &mut Editor,
        layer: usize,
        x: &str,
        mut w_in_out: Vec<f32>,
        (in_dim, out_dim): (usize, usize),
        kind: Linear,
        smooth: Smoothing,
    ) -> ort::Result<String> {
        if let Some(probes) = &mut self.probes {
            let name = probe_output(layer, kind as usize);
            e.rename(x, &name)?;
            probes.push(tensor_outlet(
                &name,
                TensorElementType::Float32,
                &["batch", "seq", &in_dim.to_string()],
            ));
        }
        if self.precision == Precision::F32 {
            let w = e.constant("weight", &[in_dim as i64, out_dim as i64], &w_in_out)?;
            return e.op("MatMul", ONNX_DOMAIN, &[x, &w], vec![]);
        }
        if let Smoothing::Input(smooth) | Smoothing::Folded(smooth) = smooth {
            for (row, s) in w_in_out.chunks_exact_mut(out_dim).zip(smooth) {
                row.iter_mut().for_each(|v| *v *= s);
            }
        }
        let x = match smooth {
            Smoothing::Input(smooth) => {
                let inv: Vec<f32> = smooth.iter().map(|s| 1.0 / s).collect();
                let inv = e.constant("inv_smooth", &[in_dim as i64], &inv)?;
                e.op("Mul", ONNX_DOMAIN, &[x, &inv], vec![])?
            }
            Smoothing::None | Smoothing::Folded(_) => x.to_string(),
        };
        let (codes, row_scales) = self.quantize_rows(e, &x, in_dim)?;
        let (q, scales) = quantize_per_column(&w_in_out, in_dim, out_dim);
        let w = e.constant("weight_int8", &[in_dim as i64, out_dim as i64], &q)?;
        let s = e.constant("weight_scale", &[out_dim as i64], &scales)?;
        let zp = e.constant("codes_zero_point", &[], &[ACTIVATION_ZERO_POINT])?;
        // No bias input: given per-row `a_scale` and a bias, ONNX Runtime 1.32 returns wrong
        // rows (seen in a Python probe); the callers' fused ops add the bias.
        e.op(
            "MatMulIntegerToFloat",
            MS_DOMAIN,
            &[&codes, &w, &row_scales, &s, &zp],
            vec![],
        )
    }

    /// Symmetric uint8 codes of `x` `[b, t, k]` with one scale per token row: returns
    /// `(codes [b, t, k], scales [b, t, 1])`, `scale = max |x_row| / 127`.
    fn quantize_rows(
        &mut self,
        e: &mut Editor,
        x: &str,
        k: usize,
    ) -> ort::Result<(String, String)> {
        let last = e.constant_i64("last_axis", &[1], &[-1])?;
        let keep =
            || -> ort::Result<Vec<Attribute>> { Ok(vec![Attribute::new("keepdims", 1i64)?]) };
        let max = e.op("ReduceMax", ONNX_DOMAIN, &[x, &last], keep()?)?;
        let min = e.op("ReduceMin", ONNX_DOMAIN, &[x, &last], keep()?)?;
        let neg_min = e.op("Neg", ONNX_DOMAIN, &[&min], vec![])?;
        let abs_max = e.op("Max", ONNX_DOMAIN, &[&max, &neg_min], vec![])?;
        // An all-zero row would get scale 0; the floor keeps its codes at the zero point.
        let floor = e.constant("scale_floor", &[], &[f32::MIN_POSITIVE * 127.0])?;
        let abs_max = e.op("Max", ONNX_DOMAIN, &[&abs_max, &floor], vec![])?;
        let step = e.constant("inv_127", &[], &[1.0f32 / 127.0])?;
        let scales = e.op("Mul", ONNX_DOMAIN, &[&abs_max, &step], vec![])?;
        let zero_points = match &self.row_zero_points {
            Some(z) => z.clone(),
            None => {
                let zp = e.constant("row_zero_point", &[], &[ACTIVATION_ZERO_POINT])?;
                let shape = e.op("Shape", ONNX_DOMAIN, &[&scales], vec![])?;
                let z = e.op("Expand", ONNX_DOMAIN, &[&zp, &shape], vec![])?;
                self.row_zero_points = Some(z.clone());
                z
            }
        };
        let codes = e.op(
            "QuantizeLinear",
            ONNX_DOMAIN,
            &[x, &scales, &zero_points],
            vec![
                Attribute::new("axis", -1i64)?,
                Attribute::new("block_size", k as i64)?,
            ],
        )?;
        Ok((codes, scales))
    }
}

/// Symmetric per-column int8: column `j` of the row-major `[rows, cols]` matrix is scaled by
/// `max |w[·, j]| / 127`. Returns the quantized matrix and one scale per column.
pub(crate) fn quantize_per_column(w: &[f32], rows: usize, cols: usize) -> (Vec<i8>, Vec<f32>) {
    let mut scales = vec![0f32; cols];
    for r in 0..rows {
        for (c, s) in scales.iter_mut().enumerate() {
            *s = s.max(w[r * cols + c].abs());
        }
    }
    for s in &mut scales {
        *s = if *s > 0.0 { *s / 127.0 } else { 1.0 };
    }
    let q = w
        .iter()
        .enumerate()
        .map(|(i, &v)| (v / scales[i % cols]).round().clamp(-127.0, 127.0) as i8)
        .collect();
    (q, scales)
}

#[cfg(test)]
mod tests {
    use super::quantize_per_column;

    #[test]
    fn per_column_quantization_round_trips_within_half_a_step() {
        let w = [0.5f32, -2.0, 0.25, 1.0, 0.0, -0.001];
        let (q, s) = quantize_per_column(&w, 3, 2);
        assert_eq!(s.len(), 2);
        assert!((s[0] - 0.5 / 127.0).abs() < 1e-9 && (s[1] - 2.0 / 127.0).abs() < 1e-9);
        for (i, &v) in w.iter().enumerate() {
            let back = q[i] as f32 * s[i % 2];
            assert!((back - v).abs() <= s[i % 2] / 2.0 + 1e-7, "{v} -> {back}");
        }
        assert_eq!(q[1], -127);
    }
}
