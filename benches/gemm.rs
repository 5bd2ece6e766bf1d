//! GEMM throughput on the shapes the zoo's models run, uerzoo's path (the `gemm` crate that
//! Flex uses, through `kernels::cpu::gemm`) against PyTorch's `@` on the same shapes when
//! `python3` has torch — the evidence for where the CPU time goes in `docs/performance.md`.
//!
//! Run: `cargo bench --bench gemm` (`UERZOO_BENCH_TORCH=0` skips PyTorch).

use std::time::Instant;
use uerzoo::kernels::cpu::{MatRef, gemm};

#[global_allocator]
static ALLOCATOR: uerzoo::alloc::Allocator = uerzoo::alloc::Allocator;

/// (name, m, k, n, a transposed, b transposed)
#[rustfmt::skip]
const SHAPES: [(&str, usize, usize, usize, bool, bool); 12] = [
    ("base q/k/v/o 1024×768·768", 1024, 768, 768, false, false),
    ("base ff1 1024×768·3072", 1024, 768, 3072, false, false),
    ("base ff2 1024×3072·768", 1024, 3072, 768, false, false),
    ("base ff1 dW 768×1024·3072 (Aᵀ)", 768, 1024, 3072, true, false),
    ("base ff1 dx 1024×3072·768 (Bᵀ)", 1024, 3072, 768, false, true),
    ("base ff2 dW 3072×1024·768 (Aᵀ)", 3072, 1024, 768, true, false),
    ("tiny q/k/v/o 4096×128·128", 4096, 128, 128, false, false),
    ("tiny ff1 4096×128·512", 4096, 128, 512, false, false),
    ("tiny ff1 dW 128×4096·512 (Aᵀ)", 128, 4096, 512, true, false),
    ("tiny ff1 dx 4096×512·128 (Bᵀ)", 4096, 512, 128, false, true),
    ("mlm vocab 585×128·21128", 585, 128, 21128, false, false),
    ("square 1024", 1024, 1024, 1024, false, false),
];

fn main() {
    uerzoo::alloc::configure();
    let threads = rayon::current_num_threads();
    let torch = std::env::var("UERZOO_BENCH_TORCH").as_deref() != Ok("0");
    println!("GEMM GFLOP/s (median of 15), {threads} threads");
    println!(
        "{:<34} {:>9} {:>9} {:>7}",
        "shape", "uerzoo", "torch", "ratio"
    );
    for (name, m, k, n, at, bt) in SHAPES {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 * 0.01).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32 * 0.01).collect();
        let mut c = vec![0f32; m * n];
        let am = if at {
            MatRef::row_major(&a, k, m).t()
        } else {
            MatRef::row_major(&a, m, k)
        };
        let bm = if bt {
            MatRef::row_major(&b, n, k).t()
        } else {
            MatRef::row_major(&b, k, n)
        };
        let flops = 2.0 * (m * n * k) as f64;
        let reps = ((2e9 / flops) as usize).clamp(1, 200);
        gemm(&mut c, false, am, bm);
        let mut runs: Vec<f64> = (0..15)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..reps {
                    gemm(&mut c, false, am, bm);
                }
                t.elapsed().as_secs_f64() / reps as f64
            })
            .collect();
        runs.sort_by(f64::total_cmp);
        let ours = flops / runs[7] / 1e9;
        let theirs = if torch {
            torch_gflops(m, k, n, at, bt, reps, threads)
        } else {
            None
        };
        match theirs {
            Some(t) => println!("{name:<34} {ours:>9.1} {t:>9.1} {:>6.2}×", ours / t),
            None => println!("{name:<34} {ours:>9.1} {:>9} {:>7}", "-", "-"),
        }
    }
}

/// PyTorch's GFLOP/s for one shape (median of 15), or `None` without torch.
fn torch_gflops(
    m: usize,
    k: usize,
    n: usize,
    at: bool,
    bt: bool,
    reps: usize,
    threads: usize,
) -> Option<f64> {
    let script = format!(
        "import torch,time,statistics\n\
         torch.set_num_threads({threads})\n\
         a=torch.rand({k},{m}).t() if {at} else torch.rand({m},{k})\n\
         b=torch.rand({n},{k}).t() if {bt} else torch.rand({k},{n})\n\
         c=a@b\n\
         r=[]\n\
         for _ in range(15):\n  t=time.perf_counter()\n  [a@b for _ in range({reps})]\n  r.append((time.perf_counter()-t)/{reps})\n\
         print(2*{m}*{n}*{k}/statistics.median(r)/1e9)\n",
        at = if at { "True" } else { "False" },
        bt = if bt { "True" } else { "False" },
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}
