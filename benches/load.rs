//! Whole-process loading benchmark: what a short run costs before any work. A
//! RoBERTa-base-sized UER checkpoint (12 × 768, vocab 21128, 512 positions, MLM head:
//! ~475 MB of f32) and a 12-layer GPT-2 (1024 positions, untied LM head) with random
//! weights, written as torch zip `.bin` files; then, in interleaved rounds:
//! `cp` of the base file (the floor: reading it once and writing it once), `uerzoo forward`
//! on 1 × 8 and on 8 × 128 tokens, `uerzoo convert --to hf` of the base file, and
//! `uerzoo generate --greedy` of 8 tokens. Each child is
//! timed alone and its peak RSS read from `wait4`'s rusage.
//!
//! Run: `cargo bench --bench load` (env `UERZOO_BENCH_ROUNDS` [5], `UERZOO_BENCH_DIR` for
//! the files [a temporary folder under target/], `UERZOO_BENCH_BASELINE=/path/to/uerzoo`
//! to run an older build's commands in the same rounds). Prints a table: median wall seconds,
//! ratio to `cp`, peak RSS, and RSS over the weights' bytes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use uerzoo::checkpoint::{Checkpoint, Tensor};
use uerzoo::model::random_checkpoint;

mod common;
use common::{env_usize, median};

/// A model folder as `uerzoo` reads it: `uer_model.bin`, `uer_config.json`, `vocab.txt`.
fn write_model(dir: &Path, cfg: &uerzoo::model::ModelConfig, json: serde_json::Value) {
    std::fs::create_dir_all(dir).unwrap();
    let ckpt = random_checkpoint(cfg, 1);
    ckpt.write_torch(dir.join("uer_model.bin"), true).unwrap();
    std::fs::write(dir.join("uer_config.json"), json.to_string()).unwrap();
    let vocab = Path::new(env!("CARGO_MANIFEST_DIR")).join("vocab/google_zh_vocab.txt");
    std::fs::copy(vocab, dir.join("vocab.txt")).unwrap();
}

/// Set in the child that writes the files.
const WRITE_ONLY: &str = "UERZOO_BENCH_LOAD_WRITE_ONLY";

/// The two models and the two inputs.
fn write_files(base: &Path, gpt2: &Path, small: &Path, big: &Path) {
    write_model(
        base,
        &common::bert(12, 768, 12, 3072),
        serde_json::json!({
            "emb_size": 768, "hidden_size": 768, "feedforward_size": 3072,
            "heads_num": 12, "layers_num": 12, "hidden_act": "gelu",
            "embedding": "word_pos_seg", "mask": "fully_visible", "dropout": 0.1
        }),
    );
    write_model(
        gpt2,
        &common::gpt2(12, 768, 12, 3072, 1024),
        serde_json::json!({
            "emb_size": 768, "hidden_size": 768, "feedforward_size": 3072,
            "heads_num": 12, "layers_num": 12, "hidden_act": "gelu_fast",
            "embedding": "word_pos", "remove_embedding_layernorm": true, "mask": "causal",
            "layernorm_positioning": "pre", "dropout": 0.1, "target": "lm"
        }),
    );
    write_input(small, 1, 8);
    write_input(big, 8, 128);
}

/// The tensor bytes of a checkpoint file (read through its memory map).
fn weight_bytes(path: &Path) -> u64 {
    let ckpt = Checkpoint::open(path).unwrap();
    ckpt.tensors
        .iter()
        .map(|(_, t)| t.bytes().len() as u64)
        .sum()
}

/// `input_ids`/`segment` `[batch, seq]` for `uerzoo forward`.
fn write_input(path: &Path, batch: usize, seq: usize) {
    let n = batch * seq;
    let ids: Vec<i64> = (0..n).map(|i| (i * 7919 % 21000 + 100) as i64).collect();
    let mut ckpt = Checkpoint::default();
    let i64s = |v: &[i64]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    ckpt.insert(
        "input_ids",
        Tensor::from_bytes(uerzoo::checkpoint::DType::I64, vec![batch, seq], i64s(&ids)),
    );
    ckpt.insert(
        "segment",
        Tensor::from_bytes(
            uerzoo::checkpoint::DType::I64,
            vec![batch, seq],
            i64s(&vec![1; n]),
        ),
    );
    ckpt.write_safetensors(path, true).unwrap();
}

/// Runs `cmd` to completion: (wall seconds, peak RSS bytes of that child alone).
// The child is reaped by `wait4` (for its rusage), which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn measure(cmd: &mut Command) -> (f64, u64) {
    let start = Instant::now();
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 writes only `status` and `usage`.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet waited for; both pointers are to live locals.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed().as_secs_f64();
    assert_eq!(rc, pid, "wait4 {cmd:?}");
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        let mut err = String::new();
        if let Some(mut e) = child.stderr {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        panic!("{cmd:?} failed (status {status}): {err}");
    }
    // Linux reports ru_maxrss in kilobytes.
    (wall, usage.ru_maxrss as u64 * 1024)
}

fn main() {
    uerzoo::alloc::configure();
    let rounds = env_usize("UERZOO_BENCH_ROUNDS").unwrap_or(5).max(1);
    let tmp = tempfile::tempdir_in(concat!(env!("CARGO_MANIFEST_DIR"), "/target")).unwrap();
    let dir: PathBuf = std::env::var_os("UERZOO_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let base = dir.join("base");
    let gpt2 = dir.join("gpt2");
    let (small, big) = (
        dir.join("in_1x8.safetensors"),
        dir.join("in_8x128.safetensors"),
    );
    if std::env::var_os(WRITE_ONLY).is_some() {
        write_files(&base, &gpt2, &small, &big);
        return;
    }
    // The files are made by a child process: Linux carries a process's resident size into
    // the peak RSS of the children it forks, so this process stays small (a few MiB) and
    // each measured child's peak is its own.
    let status = Command::new(std::env::current_exe().unwrap())
        .env(WRITE_ONLY, "1")
        .env("UERZOO_BENCH_DIR", &dir)
        .status()
        .unwrap();
    assert!(status.success(), "writing the benchmark files: {status}");
    let (base_bytes, gpt2_bytes) = (
        weight_bytes(&base.join("uer_model.bin")),
        weight_bytes(&gpt2.join("uer_model.bin")),
    );
    let model = base.join("uer_model.bin");
    let out = dir.join("out.safetensors");
    let copy = dir.join("copy.bin");
    let forward = |bin: &Path, input: &Path| {
        let mut c = Command::new(bin);
        c.arg("forward").arg(&model).arg("--input").arg(input);
        c.arg("--output").arg(&out).arg("--force");
        c
    };
    let generate = |bin: &Path| {
        let mut c = Command::new(bin);
        c.arg("generate").arg(gpt2.join("uer_model.bin"));
        c.args(["--prompt", "白日依山尽", "--max-length", "14", "--greedy"]);
        c
    };
    let convert = |bin: &Path| {
        let mut c = Command::new(bin);
        c.arg("convert").arg(&model).arg(dir.join("hf_out"));
        c.args(["--to", "hf", "--force", "--config"]);
        c.arg(base.join("uer_config.json"));
        c
    };
    let mut cp = Command::new("cp");
    cp.arg(&model).arg(&copy);
    let mut jobs: Vec<(String, Command, u64)> = vec![("cp base .bin".into(), cp, base_bytes)];
    let mut bins = vec![("", PathBuf::from(env!("CARGO_BIN_EXE_uerzoo")))];
    if let Some(old) = std::env::var_os("UERZOO_BENCH_BASELINE") {
        bins.push((" (baseline)", PathBuf::from(old)));
    }
    for (tag, bin) in &bins {
        jobs.push((
            format!("forward base 1x8{tag}"),
            forward(bin, &small),
            base_bytes,
        ));
        jobs.push((
            format!("forward base 8x128{tag}"),
            forward(bin, &big),
            base_bytes,
        ));
        jobs.push((
            format!("convert base UER→HF{tag}"),
            convert(bin),
            base_bytes,
        ));
        jobs.push((
            format!("generate gpt2 8 tokens{tag}"),
            generate(bin),
            gpt2_bytes,
        ));
    }
    // Page cache warm for everyone: one untimed pass.
    for (_, cmd, _) in &mut jobs {
        measure(cmd);
    }
    let mut runs: Vec<Vec<(f64, u64)>> = vec![Vec::new(); jobs.len()];
    for _ in 0..rounds {
        for (i, (_, cmd, _)) in jobs.iter_mut().enumerate() {
            runs[i].push(measure(cmd));
            let _ = std::fs::remove_file(&copy);
        }
    }
    println!(
        "whole process, median of {rounds} interleaved rounds; weights: base {:.0} MB, gpt2 {:.0} MB",
        base_bytes as f64 / 1e6,
        gpt2_bytes as f64 / 1e6
    );
    println!("| run | median s | × cp | peak RSS MiB | RSS / weights |");
    println!("|---|---|---|---|---|");
    let cp_s = median(runs[0].iter().map(|r| r.0).collect());
    for ((name, _, weights), r) in jobs.iter().zip(&runs) {
        let s = median(r.iter().map(|r| r.0).collect());
        let rss = r.iter().map(|r| r.1).max().unwrap_or(0);
        println!(
            "| {name} | {s:.3} | {:.2} | {:.0} | {:.2} |",
            s / cp_s,
            rss as f64 / 1048576.0,
            rss as f64 / *weights as f64
        );
    }
}
