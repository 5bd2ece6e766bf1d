//! Forward-pass benchmark: RoBERTa-base-sized model (12 layers, hidden 768, 12 heads,
//! feed-forward 3072, vocab 21128) with random weights, batch 8 × 128 tokens, on the CPU
//! (Flex) — or CUDA with `--features cuda` and `UERZOO_BENCH_DEVICE=cuda`.
//!
//! Run: `cargo bench --bench forward` (NdArray instead of Flex: `--features ndarray` and
//! `UERZOO_BENCH_BACKEND=ndarray`; env `UERZOO_BENCH_BATCH`, `UERZOO_BENCH_SEQ`,
//! `UERZOO_BENCH_ITERS`, `UERZOO_BENCH_DEVICE`). Prints the median of the timed runs for
//! the encoder alone (`hidden`) and encoder + MLM head (`hidden` + `logits`, what
//! `uerzoo forward` computes), after one warm-up run.

use burn::tensor::backend::Backend;
use std::time::Instant;
use uerzoo::model::backend::{BackendJob, run_on};
use uerzoo::model::{load_model, random_checkpoint};

mod common;
use common::{env_usize, median};

struct Bench {
    batch: usize,
    seq: usize,
    iters: usize,
}

impl BackendJob for Bench {
    type Output = ();
    fn run<B: Backend>(self, device: B::Device) {
        let cfg = common::bert(12, 768, 12, 3072);
        let ckpt = random_checkpoint(&cfg, 1);
        let (model, _) = load_model::<B>(&ckpt, &cfg, &device).expect("load");
        drop(ckpt);
        let n = self.batch * self.seq;
        let ids: Vec<i64> = (0..n).map(|i| (i * 7919 % 21000 + 100) as i64).collect();
        let seg = vec![1i64; n];
        let tokens = n as f64;
        // Calibration on this (shared) machine: one 1024×768×3072 matmul.
        let a = burn::tensor::Tensor::<B, 2>::ones([1024, 768], &device);
        let w = burn::tensor::Tensor::<B, 2>::ones([768, 3072], &device);
        let mut mm = Vec::new();
        for _ in 0..5 {
            let start = Instant::now();
            let _ = a.clone().matmul(w.clone()).into_data();
            mm.push(start.elapsed().as_secs_f64());
        }
        let mm = median(mm);
        println!(
            "calibration: matmul 1024x768x3072 {:.1} ms = {:.0} GFLOP/s",
            mm * 1e3,
            2.0 * 1024.0 * 768.0 * 3072.0 / mm / 1e9
        );
        // Encoder FLOPs: 2 × tokens × (4h² + 2hf) per layer + attention (2 × 2 × b·s²·h).
        let (h, f, l) = (768.0, 3072.0, 12.0);
        let enc_flop = l
            * (2.0 * tokens * (4.0 * h * h + 2.0 * h * f)
                + 4.0 * self.batch as f64 * (self.seq * self.seq) as f64 * h);
        for (label, with_head) in [
            ("encoder (hidden)", false),
            ("encoder + MLM head (hidden + logits)", true),
        ] {
            let mut times = Vec::new();
            for i in 0..=self.iters {
                let (t_ids, t_seg) = model
                    .inputs(&ids, &seg, self.batch, self.seq, &device)
                    .expect("inputs");
                let start = Instant::now();
                if with_head {
                    let out = model.forward(t_ids, t_seg);
                    let _ = out.logits.expect("mlm").into_data();
                } else {
                    let _ = model.encode(t_ids, t_seg).into_data();
                }
                if i > 0 {
                    times.push(start.elapsed().as_secs_f64());
                }
            }
            let m = median(times);
            println!(
                "forward base {}x{} {label}: median {:.1} ms over {} runs, {:.0} tokens/s, encoder at {:.0} GFLOP/s",
                self.batch,
                self.seq,
                m * 1e3,
                self.iters,
                tokens / m,
                enc_flop / m / 1e9
            );
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    uerzoo::alloc::configure();
    let device = common::bench_device();
    let bench = Bench {
        batch: env_usize("UERZOO_BENCH_BATCH").unwrap_or(8),
        seq: env_usize("UERZOO_BENCH_SEQ").unwrap_or(128),
        iters: env_usize("UERZOO_BENCH_ITERS").unwrap_or(5),
    };
    println!("device {device}, threads {}", rayon::current_num_threads());
    #[cfg(feature = "ndarray")]
    if std::env::var("UERZOO_BENCH_BACKEND").is_ok_and(|b| b == "ndarray") {
        println!("backend NdArray");
        return bench.run::<burn::backend::NdArray>(Default::default());
    }
    println!("backend Flex (CPU) or CUDA");
    run_on(device, bench).expect("backend");
}
