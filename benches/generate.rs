//! Generation benchmark: a 12-layer, 768-hidden GPT-2 (12 heads, feed-forward 3072, vocab
//! 21128, 1024 positions) with random weights, batch 1, a `[CLS]` + 7-token prompt and 256
//! new tokens (greedy), with the KV cache and without it (UER-py's way: the whole prefix
//! per token). On the CPU (Flex), or CUDA with `--features cuda` and
//! `UERZOO_BENCH_DEVICE=cuda`.
//!
//! Run: `cargo bench --bench generate`, or `cargo bench --profile dev --bench generate` on a
//! machine without a release build of the dependencies (they are built at opt-level 3 in dev
//! too; only uerzoo's own glue is unoptimised), with env `UERZOO_BENCH_NEW` new tokens [256],
//! `UERZOO_BENCH_ITERS` timed runs with the cache [3], `UERZOO_BENCH_NOCACHE_ITERS` timed
//! runs without it [1; 0 skips it], `UERZOO_BENCH_DEVICE`. Prints the median of the timed runs after one
//! warm-up run of 8 tokens, as new tokens per second, and the speed-up of the cache.

use burn::tensor::backend::Backend;
use std::time::Instant;
use uerzoo::generate::{self, GenerateOptions, Sampling};
use uerzoo::model::backend::{BackendJob, run_on};
use uerzoo::model::{load_model, random_checkpoint};

mod common;
use common::{env_usize, median};

struct Bench {
    new_tokens: usize,
    iters: usize,
    nocache_iters: usize,
}

impl BackendJob for Bench {
    type Output = ();
    fn run<B: Backend>(self, device: B::Device) {
        let cfg = common::gpt2(12, 768, 12, 3072, 1024);
        let ckpt = random_checkpoint(&cfg, 1);
        let (model, _) = load_model::<B>(&ckpt, &cfg, &device).expect("load");
        drop(ckpt);
        let prompt: Vec<u32> = [101u32, 791, 1921, 1921, 3698, 2523, 1962, 4638].to_vec();
        let opts = |use_cache, new: usize| GenerateOptions {
            max_length: prompt.len() + new,
            sampling: Sampling::greedy(),
            use_cache,
            ..GenerateOptions::default()
        };
        let mut rates = Vec::new();
        for (label, use_cache, iters) in [
            ("KV cache", true, self.iters),
            ("no cache", false, self.nocache_iters),
        ] {
            if iters == 0 {
                continue;
            }
            generate::generate(&model, &prompt, &opts(use_cache, 8), &mut |_, _| {})
                .expect("warm-up");
            let mut times = Vec::new();
            for _ in 0..iters {
                let start = Instant::now();
                let out = generate::generate(
                    &model,
                    &prompt,
                    &opts(use_cache, self.new_tokens),
                    &mut |_, _| {},
                )
                .expect("generate");
                times.push(start.elapsed().as_secs_f64());
                assert_eq!(out[0].continuation().len(), self.new_tokens);
            }
            let m = median(times);
            let rate = self.new_tokens as f64 / m;
            rates.push(rate);
            println!(
                "generate gpt2 12x768 batch 1, {} new tokens, {label}: median {:.2} s over {} runs, {:.1} tokens/s",
                self.new_tokens, m, iters, rate
            );
        }
        if let [cached, uncached] = rates[..] {
            println!("KV cache speed-up: {:.1}x", cached / uncached);
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    uerzoo::alloc::configure();
    let device = common::bench_device();
    let bench = Bench {
        new_tokens: env_usize("UERZOO_BENCH_NEW").unwrap_or(256),
        iters: env_usize("UERZOO_BENCH_ITERS").unwrap_or(3),
        nocache_iters: env_usize("UERZOO_BENCH_NOCACHE_ITERS").unwrap_or(1),
    };
    println!("device {device}, threads {}", rayon::current_num_threads());
    run_on(device, bench).expect("backend");
}
