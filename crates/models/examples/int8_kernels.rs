//! One projection as candle multiplies it: an f32 GEMM against the block-quantized types, for
//! the shapes LLM rerankers have. What sift's int8 rule for decoders rests on
//! (docs/performance.md, "int8 execution").
//!
//!     cargo run --release -p sift-models --example int8_kernels -- 512 1024 3072
//!
//! Arguments: rows (tokens in a batch), input width, output width. Threads: candle's default
//! (RAYON_NUM_THREADS, else every core).

use std::time::Instant;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};

const REPEATS: u32 = 5;

fn main() -> candle_core::Result<()> {
    let dims: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| {
            a.parse()
                .expect("rows, input width and output width are numbers")
        })
        .collect();
    let [rows, inputs, outputs] = dims[..] else {
        eprintln!("usage: int8_kernels ROWS IN OUT");
        std::process::exit(2);
    };
    let device = Device::Cpu;
    let x = Tensor::randn(0f32, 1.0, (rows, inputs), &device)?;
    let w = Tensor::randn(0f32, 1.0, (outputs, inputs), &device)?;
    let wt = w.t()?;
    let f32_ms = time_ms(|| x.matmul(&wt).map(drop))?;
    println!("{rows} rows, {inputs} -> {outputs}: f32 {f32_ms:.2} ms");
    for dtype in [
        GgmlDType::Q8_0,
        GgmlDType::Q4K,
        GgmlDType::Q6K,
        GgmlDType::Q5K,
        GgmlDType::Q4_0,
        GgmlDType::Q5_0,
    ] {
        if inputs % dtype.block_size() != 0 {
            println!("{dtype:?}: rows of {inputs} are not whole blocks");
            continue;
        }
        let q = QMatMul::from_qtensor(QTensor::quantize(&w, dtype)?)?;
        q.forward(&x)?; // the first call repacks the weights for the VNNI kernels
        let ms = time_ms(|| q.forward(&x).map(drop))?;
        println!("{dtype:?}: {ms:.2} ms ({:.2}x f32)", f32_ms / ms);
    }
    Ok(())
}

fn time_ms(mut f: impl FnMut() -> candle_core::Result<()>) -> candle_core::Result<f64> {
    let start = Instant::now();
    for _ in 0..REPEATS {
        f()?;
    }
    Ok(start.elapsed().as_secs_f64() * 1e3 / f64::from(REPEATS))
}
