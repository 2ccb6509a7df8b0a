//! The machine's f32 peak: fused multiply-adds from registers on every core, nothing from
//! memory. The bench reports linear-layer throughput as a share of this number.

use std::time::Instant;

/// Measured f32 GFLOP/s over `threads` threads during ~`millis` ms, and the instruction set used.
pub fn f32_peak_gflops(threads: usize, millis: u64) -> (f64, &'static str) {
    let isa = isa();
    let start = Instant::now();
    let flops: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|_| s.spawn(move || spin(isa, millis)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    (
        flops as f64 / start.elapsed().as_secs_f64() / 1e9,
        isa.name(),
    )
}

#[derive(Clone, Copy)]
enum Isa {
    Avx512,
    Avx2,
    Scalar,
}

impl Isa {
    fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512f fma",
            Isa::Avx2 => "avx2 fma",
            Isa::Scalar => "scalar",
        }
    }
}

fn isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Isa::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Isa::Avx2;
        }
    }
    Isa::Scalar
}

/// Runs FMA blocks until `millis` have passed; returns the FLOPs done.
fn spin(isa: Isa, millis: u64) -> u64 {
    let start = Instant::now();
    let mut flops = 0u64;
    while start.elapsed().as_millis() < millis as u128 {
        flops += match isa {
            // SAFETY: the instruction set was detected at run time just above.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { fma_block_avx512() },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { fma_block_avx2() },
            _ => fma_block_scalar(),
        };
    }
    flops
}

const ITERS: u64 = 100_000;

/// 12 independent accumulators hide the FMA latency (4 cycles × 2 ports + slack).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_block_avx512() -> u64 {
    use std::arch::x86_64::*;
    let a = _mm512_set1_ps(0.999_999);
    let b = _mm512_set1_ps(1e-7);
    let mut acc = [_mm512_set1_ps(1.0); 12];
    for _ in 0..ITERS {
        for x in acc.iter_mut() {
            *x = _mm512_fmadd_ps(*x, a, b);
        }
    }
    let mut sum = _mm512_setzero_ps();
    for x in acc {
        sum = _mm512_add_ps(sum, x);
    }
    std::hint::black_box(sum);
    ITERS * 12 * 16 * 2
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_block_avx2() -> u64 {
    use std::arch::x86_64::*;
    let a = _mm256_set1_ps(0.999_999);
    let b = _mm256_set1_ps(1e-7);
    let mut acc = [_mm256_set1_ps(1.0); 12];
    for _ in 0..ITERS {
        for x in acc.iter_mut() {
            *x = _mm256_fmadd_ps(*x, a, b);
        }
    }
    let mut sum = _mm256_setzero_ps();
    for x in acc {
        sum = _mm256_add_ps(sum, x);
    }
    std::hint::black_box(sum);
    ITERS * 12 * 8 * 2
}

fn fma_block_scalar() -> u64 {
    let mut acc = [1.0f32; 8];
    for _ in 0..ITERS {
        for x in acc.iter_mut() {
            *x = x.mul_add(0.999_999, 1e-7);
        }
    }
    std::hint::black_box(acc);
    ITERS * 8 * 2
}
