//! The models on a second backend, through the same CubeCL path CUDA takes: every fixture's
//! forward against UER-py and transformers, greedy generation against UER-py, a few
//! fine-tuning and pretraining steps against the same steps on Flex (dropout off, so both
//! backends compute the same function), all at the Flex tests' tolerance.
//!
//! `wgpu_*` run with `--features wgpu` (`.ci/run` runs them on Mesa's lavapipe, software
//! Vulkan); `cuda_*` with `--features cuda` on an NVIDIA GPU (`#[ignore]`d: run them with
//! `--ignored`, as `bench/gpu-check.sh` does). Without either feature this file is empty.
#![allow(dead_code, unused_imports)]

mod common;

use std::path::Path;
use uerzoo::checkpoint::Checkpoint;
use uerzoo::generate::{self, GenerateOptions, Sampling};
use uerzoo::model::backend::{BackendJob, run_on};
use uerzoo::model::{self, DeviceSpec, load_model, tasks::Batch};
use uerzoo::progress::NoProgress;
use uerzoo::tokenizer::{Tokenizer, TokenizerOptions};
use uerzoo::train::dataset::{self, DatasetFile, PreprocessOptions, PretrainTarget};
use uerzoo::train::pretrain::{self, PretrainOptions};
use uerzoo::train::{Dataset, FinetuneOptions, TaskData, finetune};

/// The Flex fixture tests' tolerance (tests/forward.rs).
const TOL: f32 = 1e-4;

use common::read;

fn batch_of(reference: &Checkpoint) -> Batch {
    let ids = reference.get("input_ids").unwrap();
    Batch {
        ids: ids.to_i64_vec().unwrap(),
        segment: reference.get("segment").unwrap().to_i64_vec().unwrap(),
        batch: ids.shape[0],
        seq: ids.shape[1],
    }
}

use common::max_diff_real;

/// Every fixture, UER file and HF directory, against UER-py's and transformers' outputs.
fn fixtures_forward(device: DeviceSpec) {
    for name in common::UER_FIXTURES {
        let dir = common::uer_fixture(name);
        let cases = [
            (
                model::open::open_model(
                    &dir.join("uer_model.bin"),
                    Some(&dir.join("uer_config.json")),
                ),
                read(&dir.join("uer_outputs.safetensors")),
                "UER",
            ),
            (
                model::open::open_model(&dir.join("hf_by_uer_script"), None),
                read(&dir.join("hf_outputs.safetensors")),
                "HF",
            ),
        ];
        for (opened, reference, how) in cases {
            let opened = opened.unwrap();
            let input = batch_of(&reference);
            let out = model::tasks::forward(&opened, &input, device).unwrap();
            let want = reference.get("logits").unwrap();
            let got = out.logits.expect("pretraining head");
            assert_eq!(got.shape, want.shape, "{name} ({how})");
            let d = max_diff_real(
                &got.values,
                &want.to_f32_vec(),
                &input.segment,
                want.shape[2],
            );
            eprintln!("{device} {name} ({how}): logits max diff {d:e}");
            assert!(d < TOL, "{device} {name} ({how}): logits diff {d:e}");
            if let Some(h) = reference.get("hidden") {
                let d = max_diff_real(
                    &out.hidden.values,
                    &h.to_f32_vec(),
                    &input.segment,
                    h.shape[2],
                );
                assert!(d < TOL, "{device} {name} ({how}): hidden diff {d:e}");
            }
        }
    }
}

/// Greedy generation on `gpt2_v1` with the KV cache, as UER-py's generate_lm writes it.
struct Greedy;

impl BackendJob for Greedy {
    type Output = String;
    fn run<B: burn::tensor::backend::Backend>(self, device: B::Device) -> String {
        let f = common::uer_fixture("gpt2_v1");
        let opened =
            model::open::open_model(&f.join("uer_model.bin"), Some(&f.join("uer_config.json")))
                .unwrap();
        let model = load_model::<B>(&opened.checkpoint, &opened.config, &device)
            .unwrap()
            .0;
        let tok = Tokenizer::from_vocab_file(f.join("vocab.txt"), TokenizerOptions::uer()).unwrap();
        let prompt = std::fs::read_to_string(f.join("greedy_prompt.txt")).unwrap();
        let mut lines = prompt.lines();
        let text = lines.next().unwrap().trim();
        let max_length = lines.next().unwrap().trim().parse().unwrap();
        let opts = GenerateOptions {
            max_length,
            sampling: Sampling::greedy(),
            ..GenerateOptions::default()
        };
        let ids = generate::prompt_ids(&tok, text);
        let out = generate::generate(&model, &ids, &opts, &mut |_, _| {}).unwrap();
        generate::uer_text(&tok, &out[0].ids)
    }
}

fn greedy_generation(device: DeviceSpec) {
    let f = common::uer_fixture("gpt2_v1");
    let want = std::fs::read_to_string(f.join("greedy_generation.txt")).unwrap();
    let got = run_on(device, Greedy).unwrap();
    assert_eq!(got, want.lines().nth(1).unwrap(), "{device}");
}

/// Relative difference of two losses.
fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

/// Five fine-tuning steps (40 book_review rows, batch 8, dropout 0) give Flex's losses.
fn finetune_steps(device: DeviceSpec) {
    let f = common::uer_fixture("roberta_v1");
    let opened = model::open::open_model(&f.join("uer_model.bin"), None).unwrap();
    let tok = Tokenizer::from_vocab_file(f.join("vocab.txt"), TokenizerOptions::uer()).unwrap();
    let small = common::shared().join("data/datasets/book_review_small");
    let mut train = Dataset::read(&small.join("train.tsv"), true).unwrap();
    train.examples.truncate(40);
    let dev = Dataset::read(&small.join("dev.tsv"), true).unwrap();
    let data = TaskData {
        train: train.encode(&tok, 32),
        dev: dev.encode(&tok, 32),
        test: None,
        labels_num: 2,
    };
    let opts = FinetuneOptions {
        epochs: 1,
        batch_size: 8,
        learning_rate: 3e-4,
        dropout: 0.0,
        ..Default::default()
    };
    let run = |d| finetune(&opened, &data, &opts, d, &NoProgress, &mut |_| {}).unwrap();
    let (cpu, other) = (run(DeviceSpec::Cpu), run(device));
    let (a, b) = (&other.epochs[0].batch_losses, &cpu.epochs[0].batch_losses);
    assert_eq!(a.len(), 5);
    for (x, y) in a.iter().zip(b) {
        assert!(
            rel(f64::from(*x), f64::from(*y)) < 1e-3,
            "{device}: losses {a:?}, Flex {b:?}"
        );
    }
    assert_eq!(other.dev_logits.len(), cpu.dev_logits.len());
    let worst = other
        .dev_logits
        .iter()
        .flatten()
        .zip(cpu.dev_logits.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(
        worst < 1e-3,
        "{device}: dev logits differ from Flex by {worst:e}"
    );
}

/// Four MLM pretraining steps from `roberta_v1` (dropout 0) give Flex's losses.
fn pretrain_steps(device: DeviceSpec) {
    let dir = tempfile::tempdir().unwrap();
    let text =
        std::fs::read_to_string(common::shared().join("data/corpora/CLUECorpusSmall_sampled.txt"))
            .unwrap();
    let corpus = dir.path().join("corpus.txt");
    std::fs::write(
        &corpus,
        text.lines().take(4).collect::<Vec<_>>().join("\n") + "\n",
    )
    .unwrap();
    let vocab = common::uer_fixture("roberta_v1").join("vocab.txt");
    let tok = Tokenizer::from_vocab_file(&vocab, TokenizerOptions::uer()).unwrap();
    let ds_path = dir.path().join("mlm.uzds");
    let pre = PreprocessOptions {
        seq_length: 64,
        dup_factor: 1,
        ..Default::default()
    };
    dataset::preprocess(&corpus, &tok, &vocab, &ds_path, &pre, &NoProgress).unwrap();
    let ds = DatasetFile::open(&ds_path).unwrap();
    let opened = model::open::open_model(
        &common::uer_fixture("roberta_v1").join("uer_model.bin"),
        None,
    )
    .unwrap();
    let opts = PretrainOptions {
        target: PretrainTarget::Mlm,
        total_steps: 4,
        batch_size: 4,
        learning_rate: 1e-3,
        warmup: 0.01,
        report_steps: 1,
        save_checkpoint_steps: 100,
        dropout: Some(0.0),
        ..Default::default()
    };
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::uer_fixture("roberta_v1").join("uer_config.json"))
            .unwrap(),
    )
    .unwrap();
    let tie = config["tie_weights"].as_bool().unwrap_or(false);
    let mut ckpt = opened.checkpoint.clone();
    pretrain::complete_heads(&mut ckpt, &opened.config, opts.target, tie, opts.seed);
    let run = |d, out: &Path| {
        let mut losses = Vec::new();
        pretrain::pretrain(
            &ckpt,
            &opened.config,
            &ds,
            &opts,
            out,
            None,
            d,
            &NoProgress,
            &mut |r| losses.push(r.loss),
        )
        .unwrap();
        losses
    };
    let cpu = run(DeviceSpec::Cpu, &dir.path().join("cpu.bin"));
    let other = run(device, &dir.path().join("other.bin"));
    assert_eq!(other.len(), 4);
    for (x, y) in other.iter().zip(&cpu) {
        assert!(
            rel(*x, *y) < 1e-3,
            "{device}: losses {other:?}, Flex {cpu:?}"
        );
    }
}

/// The command line on the backend: `uerzoo forward --device D` on `roberta_v1` equals
/// UER-py's outputs (1e-4) and `uerzoo generate --greedy --device D` on `gpt2_v1` prints
/// UER-py's greedy text.
fn cli_forward_and_generate(device: &str) {
    let dir = common::uer_fixture("roberta_v1");
    let tmp = tempfile::tempdir().unwrap();
    let out_path = tmp.path().join("out.safetensors");
    common::run_ok(
        std::process::Command::new(common::uerzoo_bin())
            .arg("forward")
            .arg(dir.join("uer_model.bin"))
            .arg("--config")
            .arg(dir.join("uer_config.json"))
            .arg("--input")
            .arg(dir.join("uer_outputs.safetensors"))
            .arg("--output")
            .arg(&out_path)
            .args(["--device", device]),
    );
    let (got, reference) = (read(&out_path), read(&dir.join("uer_outputs.safetensors")));
    let seg = reference.get("segment").unwrap().to_i64_vec().unwrap();
    for key in ["hidden", "logits"] {
        let (a, b) = (got.get(key).unwrap(), reference.get(key).unwrap());
        assert_eq!(a.shape, b.shape, "{device} {key}");
        let d = max_diff_real(&a.to_f32_vec(), &b.to_f32_vec(), &seg, b.shape[2]);
        assert!(d < TOL, "{device} forward {key}: {d:e}");
    }
    let f = common::uer_fixture("gpt2_v1");
    let prompt = std::fs::read_to_string(f.join("greedy_prompt.txt")).unwrap();
    let mut lines = prompt.lines();
    let (text, max_length) = (lines.next().unwrap().trim(), lines.next().unwrap().trim());
    let want = std::fs::read_to_string(f.join("greedy_generation.txt")).unwrap();
    let out = common::run_ok(
        std::process::Command::new(common::uerzoo_bin())
            .arg("generate")
            .arg(f.join("uer_model.bin"))
            .arg("--config")
            .arg(f.join("uer_config.json"))
            .arg("--vocab")
            .arg(f.join("vocab.txt"))
            .args(["--prompt", text, "--max-length", max_length, "--greedy"])
            .args(["--device", device]),
    );
    let got = String::from_utf8(out.stdout).unwrap();
    let want = want.lines().nth(1).unwrap();
    assert_eq!(
        got.trim_end(),
        want.strip_prefix("[CLS]").unwrap(),
        "{device}"
    );
}

/// `--device auto` says what it picked and why (lavapipe is a software adapter, so on CI it
/// is the CPU), and `wgpu:N` past the adapters wgpu lists names them instead of panicking.
#[cfg(feature = "wgpu")]
#[test]
fn wgpu_device_auto_and_bad_index() {
    let dir = common::uer_fixture("roberta_v1");
    let tmp = tempfile::tempdir().unwrap();
    let forward = |device: &str, out: &str| {
        std::process::Command::new(common::uerzoo_bin())
            .arg("forward")
            .arg(dir.join("uer_model.bin"))
            .arg("--config")
            .arg(dir.join("uer_config.json"))
            .arg("--input")
            .arg(dir.join("uer_outputs.safetensors"))
            .arg("--output")
            .arg(tmp.path().join(out))
            .args(["--device", device])
            .output()
            .unwrap()
    };
    let auto = forward("auto", "auto.safetensors");
    let stderr = String::from_utf8_lossy(&auto.stderr);
    assert!(auto.status.success(), "{stderr}");
    let (spec, why) = model::backend::auto();
    assert!(
        stderr.contains(&format!("note: --device auto: {why}")),
        "{stderr}"
    );
    if model::backend::wgpu_adapters().iter().all(|a| !a.is_gpu()) {
        assert_eq!(spec, DeviceSpec::Cpu, "{why}");
    }
    let bad = forward("wgpu:99", "bad.safetensors");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(
        stderr.contains("wgpu:99") && stderr.contains("no such adapter"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!tmp.path().join("bad.safetensors").exists());
}

macro_rules! backend_tests {
    ($feature:literal, $module:ident, $device:expr $(, $ignore:meta)?) => {
        #[cfg(feature = $feature)]
        mod $module {
            use super::*;
            #[test] $(#[$ignore])? fn fixtures_forward() { super::fixtures_forward($device) }
            #[test] $(#[$ignore])? fn greedy_generation() { super::greedy_generation($device) }
            #[test] $(#[$ignore])? fn finetune_steps() { super::finetune_steps($device) }
            #[test] $(#[$ignore])? fn pretrain_steps() { super::pretrain_steps($device) }
            #[test] $(#[$ignore])? fn cli_forward_and_generate() {
                super::cli_forward_and_generate(&$device.to_string())
            }
        }
    };
}

backend_tests!("wgpu", wgpu, DeviceSpec::Wgpu(None));
backend_tests!(
    "cuda",
    cuda,
    DeviceSpec::Cuda(0),
    ignore = "needs an NVIDIA GPU: run with --ignored"
);
