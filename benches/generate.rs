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
//! and how many prompts' tokens differ between the two (0 expected). `UERZOO_BENCH_BATCH`
//! may list several sizes (`4,8,16`): each is timed in every round.
//!
//! First, low precision (CPU only): the same weights loaded as f32, `--dtype int8` and
//! `--dtype bf16` (linear layers and LM head), batch 1, the 8-token prompt and
//! `UERZOO_BENCH_DTYPE_NEW` greedy new tokens [64], the three models taking turns in each of
//! `UERZOO_BENCH_DTYPE_ITERS` rounds [3; 0 skips it]: new tokens/s of each (median), and
//! each round's ratio to f32 with their median (`UERZOO_BENCH_DTYPES` [f32,int8,bf16]).
//!
//! Then concurrent sequences per step: `UERZOO_BENCH_SEQS` [8] sequences of an 8-token
//! prompt decoding `UERZOO_BENCH_BATCH_NEW` tokens together in one batch, against one
//! sequence alone, interleaved over `UERZOO_BENCH_BATCH_ITERS` rounds: total new tokens/s
//! of each (median) and the ratio.

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
    batches: Vec<usize>,
    seqs: usize,
    batch_new: usize,
    batch_iters: usize,
    dtypes: Vec<uerzoo::model::Dtype>,
    dtype_new: usize,
    dtype_iters: usize,
}

impl BackendJob for Bench {
    type Output = ();
    fn run<B: Backend>(self, device: B::Device) {
        let cfg = common::gpt2(12, 768, 12, 3072, 1024);
        let ckpt = random_checkpoint(&cfg, 1);
        if self.dtype_iters > 0 && uerzoo::kernels::runs_int8::<B>() {
            self.low_precision::<B>(&ckpt, &cfg, &device);
        }
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
            self.concurrent(&model);
        }
    }
}

impl Bench {
    /// f32 against `--dtype int8` and `bf16`, batch 1, the models taking turns each round.
    fn low_precision<B: Backend>(
        &self,
        ckpt: &uerzoo::checkpoint::Checkpoint,
        cfg: &uerzoo::model::ModelConfig,
        device: &B::Device,
    ) {
        let prompt: Vec<u32> = [101u32, 791, 1921, 1921, 3698, 2523, 1962, 4638].to_vec();
        let opts = |new: usize| GenerateOptions {
            max_length: prompt.len() + new,
            sampling: Sampling::greedy(),
            ..GenerateOptions::default()
        };
        let models: Vec<_> = self
            .dtypes
            .iter()
            .map(|&dtype| {
                let mut cfg = cfg.clone();
                cfg.dtype = dtype;
                let (model, report) = load_model::<B>(ckpt, &cfg, device).expect("load");
                let path = report.int8_path.or(report.bf16_path).unwrap_or("f32");
                println!("{dtype}: kernel path {path}");
                generate::generate(&model, &prompt, &opts(8), &mut |_, _| {}).expect("warm-up");
                model
            })
            .collect();
        let mut times = vec![Vec::new(); models.len()];
        for _ in 0..self.dtype_iters {
            for (t, model) in times.iter_mut().zip(&models) {
                let start = Instant::now();
                let out = generate::generate(model, &prompt, &opts(self.dtype_new), &mut |_, _| {})
                    .expect("generate");
                t.push(start.elapsed().as_secs_f64());
                assert_eq!(out[0].continuation().len(), self.dtype_new);
            }
        }
        for (dtype, t) in self.dtypes.iter().zip(&times) {
            let m = median(t.clone());
            print!(
                "generate gpt2 12x768 batch 1 --dtype {dtype}, {} new tokens: median {:.3} s over {} runs, {:.1} tokens/s",
                self.dtype_new,
                m,
                self.dtype_iters,
                self.dtype_new as f64 / m
            );
            if let Some(base) = self
                .dtypes
                .iter()
                .position(|d| *d == uerzoo::model::Dtype::F32)
            {
                let ratios: Vec<f64> = times[base].iter().zip(t).map(|(b, x)| b / x).collect();
                let shown: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
                print!(
                    "; × f32 per round {}, median {:.2}",
                    shown.join(" "),
                    median(ratios)
                );
            }
            println!();
        }
    }

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
        let batched = |batch: usize| {
            generate::generate_batched(model, &jobs, batch, &mut |_, _, _| {}).expect("generate")
        };
        let mut single_t = Vec::new();
        let mut batch_t = vec![Vec::new(); self.batches.len()];
        let mut differ = vec![0; self.batches.len()];
        for _ in 0..self.batch_iters {
            let start = Instant::now();
            let a = one_by_one();
            single_t.push(start.elapsed().as_secs_f64());
            for (k, &batch) in self.batches.iter().enumerate() {
                let start = Instant::now();
                let b = batched(batch);
                batch_t[k].push(start.elapsed().as_secs_f64());
                differ[k] = a.iter().zip(&b).filter(|(a, b)| a != b).count();
            }
        }
        let tokens = (self.prompts * self.batch_new) as f64;
        let mut medians = Vec::new();
        let labels = std::iter::once("one by one".to_string())
            .chain(self.batches.iter().map(|b| format!("batch {b}")));
        for (label, times) in labels.zip(std::iter::once(single_t).chain(batch_t)) {
            let m = median(times);
            medians.push(m);
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
        for (k, batch) in self.batches.iter().enumerate() {
            println!(
                "batch {batch} speed-up: {:.2}x; prompts whose tokens differ from one by one: {} of {}",
                medians[0] / medians[k + 1],
                differ[k],
                self.prompts
            );
        }
    }

    /// `self.seqs` sequences decoding together against one alone: total new tokens/s.
    fn concurrent<B: Backend>(&self, model: &uerzoo::model::Model<B>) {
        let job = |i: usize| {
            let prompt: Vec<u32> = std::iter::once(101u32)
                .chain((0..7).map(|t| 700 + ((i * 131 + t * 17) % 6000) as u32))
                .collect();
            generate::Job {
                opts: GenerateOptions {
                    max_length: prompt.len() + self.batch_new,
                    sampling: Sampling::greedy(),
                    ..GenerateOptions::default()
                },
                prompt,
                constraint: None,
            }
        };
        let sizes = [1, self.seqs];
        let mut times = vec![Vec::new(); sizes.len()];
        for _ in 0..self.batch_iters {
            for (k, &n) in sizes.iter().enumerate() {
                let jobs: Vec<generate::Job> = (0..n).map(job).collect();
                let start = Instant::now();
                let out = generate::generate_batched(model, &jobs, n, &mut |_, _, _| {})
                    .expect("generate");
                times[k].push(start.elapsed().as_secs_f64());
                assert_eq!(out.len(), n);
            }
        }
        let mut rates = Vec::new();
        for (&n, t) in sizes.iter().zip(times) {
            let m = median(t);
            let rate = (n * self.batch_new) as f64 / m;
            rates.push(rate);
            println!(
                "generate gpt2 12x768, {n} concurrent sequences x {} new tokens: median {:.2} s over {} runs, {:.1} tokens/s in all",
                self.batch_new, m, self.batch_iters, rate
            );
        }
        println!(
            "{} concurrent sequences: {:.2}x the tokens/s of one",
            self.seqs,
            rates[1] / rates[0]
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
        batches: match std::env::var("UERZOO_BENCH_BATCH") {
            Ok(v) => v
                .split(',')
                .map(|b| {
                    b.trim()
                        .parse()
                        .expect("UERZOO_BENCH_BATCH: sizes like 4,8,16")
                })
                .collect(),
            Err(_) => vec![8],
        },
        seqs: env_usize("UERZOO_BENCH_SEQS").unwrap_or(8),
        batch_new: env_usize("UERZOO_BENCH_BATCH_NEW").unwrap_or(32),
        batch_iters: env_usize("UERZOO_BENCH_BATCH_ITERS").unwrap_or(2),
        dtypes: std::env::var("UERZOO_BENCH_DTYPES")
            .unwrap_or_else(|_| "f32,int8,bf16".into())
            .split(',')
            .map(|d| {
                d.trim()
                    .parse()
                    .expect("UERZOO_BENCH_DTYPES: f32,int8,bf16")
            })
            .collect(),
        dtype_new: env_usize("UERZOO_BENCH_DTYPE_NEW").unwrap_or(64),
        dtype_iters: env_usize("UERZOO_BENCH_DTYPE_ITERS").unwrap_or(3),
    };
    println!("device {device}, threads {}", rayon::current_num_threads());
    run_on(device, bench).expect("backend");
}
