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
//!
//! Then `generate --input`'s two ways through a prompts file, interleaved in the same run:
//! `UERZOO_BENCH_PROMPTS` prompts [64] of 2 to 17 tokens (`[CLS]` included), each
//! `UERZOO_BENCH_BATCH_NEW` greedy new tokens [32], one after the other (`--batch-size 1`)
//! and batched (`UERZOO_BENCH_BATCH` [8], the CLI's default on a GPU), `UERZOO_BENCH_BATCH_ITERS`
//! timed rounds [2; 0 skips it]; prompts/s and new tokens/s of each (median), the speed-up,
//! and how many prompts' tokens differ between the two (0 expected).

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
    prompts: usize,
    batch: usize,
    batch_new: usize,
    batch_iters: usize,
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
        if self.batch_iters > 0 {
            self.input_file(&model);
        }
    }
}

impl Bench {
    /// `generate --input`: the prompts one by one vs batched, interleaved.
    fn input_file<B: Backend>(&self, model: &uerzoo::model::Model<B>) {
        let jobs: Vec<generate::Job> = (0..self.prompts)
            .map(|i| {
                let len = 1 + (i * 7) % 16;
                let mut prompt = vec![101u32];
                prompt.extend((0..len).map(|t| 670 + ((i * 31 + t * 17) % 6000) as u32));
                generate::Job {
                    opts: GenerateOptions {
                        max_length: prompt.len() + self.batch_new,
                        sampling: Sampling::greedy(),
                        ..GenerateOptions::default()
                    },
                    prompt,
                    constraint: None,
                }
            })
            .collect();
        let one_by_one = || -> Vec<Vec<generate::Generated>> {
            jobs.iter()
                .map(|j| {
                    generate::generate_constrained(model, &j.prompt, &j.opts, None, &mut |_, _| {})
                        .expect("generate")
                })
                .collect()
        };
        let batched = || {
            generate::generate_batched(model, &jobs, self.batch, &mut |_, _, _| {})
                .expect("generate")
        };
        let (mut single_t, mut batch_t) = (Vec::new(), Vec::new());
        let mut differ = 0;
        for _ in 0..self.batch_iters {
            let start = Instant::now();
            let a = one_by_one();
            single_t.push(start.elapsed().as_secs_f64());
            let start = Instant::now();
            let b = batched();
            batch_t.push(start.elapsed().as_secs_f64());
            differ = a.iter().zip(&b).filter(|(a, b)| a != b).count();
        }
        let tokens = (self.prompts * self.batch_new) as f64;
        let mut rates = Vec::new();
        for (label, times) in [
            ("one by one".to_string(), single_t),
            (format!("batch {}", self.batch), batch_t),
        ] {
            let m = median(times);
            rates.push(m);
            println!(
                "generate --input gpt2 12x768, {} prompts x {} new tokens, {label}: median {:.2} s over {} runs, {:.2} prompts/s, {:.1} tokens/s",
                self.prompts,
                self.batch_new,
                m,
                self.batch_iters,
                self.prompts as f64 / m,
                tokens / m
            );
        }
        println!(
            "batched speed-up: {:.2}x; prompts whose tokens differ from one by one: {differ} of {}",
            rates[0] / rates[1],
            self.prompts
        );
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
        prompts: env_usize("UERZOO_BENCH_PROMPTS").unwrap_or(64),
        batch: env_usize("UERZOO_BENCH_BATCH").unwrap_or(8),
        batch_new: env_usize("UERZOO_BENCH_BATCH_NEW").unwrap_or(32),
        batch_iters: env_usize("UERZOO_BENCH_BATCH_ITERS").unwrap_or(2),
    };
    println!("device {device}, threads {}", rayon::current_num_threads());
    run_on(device, bench).expect("backend");
}
