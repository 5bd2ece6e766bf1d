//! Benchmark of `uerzoo convert` on a RoBERTa-base-sized UER checkpoint (12 layers, hidden
//! 768, vocab 21128, MLM head; ~409 MB), generated here with the checkpoint writer.
//!
//! Times the library call (`convert::run`: read, convert, write the HF directory, with the
//! unchanged tensors copied file to file and through memory, and to f16; and back to a UER
//! `.bin`) and measures the CLI's peak memory with `/usr/bin/time -v`.
//! Reference (issue #4): UER-py's own script with torch takes 2.7 s on this 2-core machine;
//! goal ≥5× faster (≤0.54 s) and peak ≤200 MiB.
//!
//! Run: `cargo bench --bench convert`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use uerzoo::checkpoint::{Checkpoint, Tensor};
use uerzoo::convert::{self, ConvertRequest, FileFormat, Naming, To};

const LAYERS: usize = 12;
const HIDDEN: usize = 768;
const FFN: usize = 3072;
const VOCAB: usize = 21128;
const POSITIONS: usize = 512;
const RUNS: usize = 5;

/// A deterministic tensor (values need not be meaningful, only distinct-ish).
fn tensor(shape: &[usize], seed: u32) -> Tensor {
    let n: usize = shape.iter().product();
    let mut x = seed.wrapping_mul(2654435761).wrapping_add(1);
    let v: Vec<f32> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x as f32 / u32::MAX as f32 - 0.5) * 0.04
        })
        .collect();
    Tensor::from_f32(shape.to_vec(), &v)
}

/// A RoBERTa-base UER checkpoint in naming v1 (the zoo's), untied MLM decoder.
fn roberta_base() -> Checkpoint {
    let mut c = Checkpoint::default();
    let mut seed = 0;
    let mut add = |c: &mut Checkpoint, name: String, shape: &[usize]| {
        seed += 1;
        c.insert(name, tensor(shape, seed));
    };
    add(
        &mut c,
        "embedding.word_embedding.weight".into(),
        &[VOCAB, HIDDEN],
    );
    add(
        &mut c,
        "embedding.position_embedding.weight".into(),
        &[POSITIONS, HIDDEN],
    );
    add(
        &mut c,
        "embedding.segment_embedding.weight".into(),
        &[3, HIDDEN],
    );
    add(&mut c, "embedding.layer_norm.gamma".into(), &[HIDDEN]);
    add(&mut c, "embedding.layer_norm.beta".into(), &[HIDDEN]);
    for i in 0..LAYERS {
        let p = format!("encoder.transformer.{i}.");
        for j in 0..3 {
            add(
                &mut c,
                format!("{p}self_attn.linear_layers.{j}.weight"),
                &[HIDDEN, HIDDEN],
            );
            add(
                &mut c,
                format!("{p}self_attn.linear_layers.{j}.bias"),
                &[HIDDEN],
            );
        }
        add(
            &mut c,
            format!("{p}self_attn.final_linear.weight"),
            &[HIDDEN, HIDDEN],
        );
        add(&mut c, format!("{p}self_attn.final_linear.bias"), &[HIDDEN]);
        add(
            &mut c,
            format!("{p}feed_forward.linear_1.weight"),
            &[FFN, HIDDEN],
        );
        add(&mut c, format!("{p}feed_forward.linear_1.bias"), &[FFN]);
        add(
            &mut c,
            format!("{p}feed_forward.linear_2.weight"),
            &[HIDDEN, FFN],
        );
        add(&mut c, format!("{p}feed_forward.linear_2.bias"), &[HIDDEN]);
        for k in 1..=2 {
            add(&mut c, format!("{p}layer_norm_{k}.gamma"), &[HIDDEN]);
            add(&mut c, format!("{p}layer_norm_{k}.beta"), &[HIDDEN]);
        }
    }
    add(
        &mut c,
        "target.mlm_linear_1.weight".into(),
        &[HIDDEN, HIDDEN],
    );
    add(&mut c, "target.mlm_linear_1.bias".into(), &[HIDDEN]);
    add(&mut c, "target.layer_norm.gamma".into(), &[HIDDEN]);
    add(&mut c, "target.layer_norm.beta".into(), &[HIDDEN]);
    add(
        &mut c,
        "target.mlm_linear_2.weight".into(),
        &[VOCAB, HIDDEN],
    );
    add(&mut c, "target.mlm_linear_2.bias".into(), &[VOCAB]);
    c
}

fn request(input: &Path, output: &Path, to: To) -> ConvertRequest {
    ConvertRequest {
        input: input.into(),
        output: output.into(),
        to,
        arch: None,
        uer_config: None,
        vocab: None,
        naming: Naming::V1,
        exact_layernorm: false,
        format: Some(if to == To::Hf {
            FileFormat::Safetensors
        } else {
            FileFormat::Torch
        }),
        dry_run: false,
        force: true,
        allow_unmapped: false,
        dtype: None,
        copy_ranges: true,
    }
}

fn time_runs(label: &str, mut f: impl FnMut()) {
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    println!(
        "{label}: median {:.3} s, min {:.3} s, max {:.3} s ({RUNS} runs)",
        times[RUNS / 2].as_secs_f64(),
        times[0].as_secs_f64(),
        times[RUNS - 1].as_secs_f64()
    );
}

/// Peak RSS of `uerzoo convert …` via `/usr/bin/time -v`, in MiB.
fn peak_rss_mib(args: &[&str]) -> Option<f64> {
    let out = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(env!("CARGO_BIN_EXE_uerzoo"))
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let kb: f64 = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))?
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

fn main() {
    // `cargo bench` passes `--bench`; no other arguments are used.
    let tmp = tempfile::tempdir().expect("tempdir");
    let uer = tmp.path().join("roberta_base_uer.bin");
    roberta_base()
        .write_torch(&uer, true)
        .expect("write the generated checkpoint");
    let size = std::fs::metadata(&uer).map(|m| m.len()).unwrap_or(0);
    println!(
        "generated {} ({:.1} MB, {LAYERS} layers, hidden {HIDDEN}, vocab {VOCAB})",
        uer.display(),
        size as f64 / 1e6
    );

    let hf = tmp.path().join("hf");
    let back = tmp.path().join("back.bin");
    // Warm the page cache once, as a user converting a just-downloaded file would have it.
    convert::run(&request(&uer, &hf, To::Hf)).expect("convert to hf");
    time_runs("UER .bin → HF in memory (open + to_hf, no write)", || {
        let ckpt = Checkpoint::open(&uer).expect("open");
        let (out, _) = convert::to_hf(&ckpt, &Default::default()).expect("to_hf");
        // Touch every output byte, as a writer would.
        let sum: u64 = out
            .tensors
            .iter()
            .map(|(_, t)| {
                t.bytes()
                    .iter()
                    .step_by(4096)
                    .map(|&b| b as u64)
                    .sum::<u64>()
            })
            .sum();
        std::hint::black_box(sum);
    });
    time_runs("UER .bin → HF dir (safetensors)", || {
        convert::run(&request(&uer, &hf, To::Hf)).expect("convert to hf");
    });
    time_runs(
        "UER .bin → HF dir, unchanged tensors through memory",
        || {
            let req = ConvertRequest {
                copy_ranges: false,
                ..request(&uer, &hf, To::Hf)
            };
            convert::run(&req).expect("convert to hf");
        },
    );
    time_runs("UER .bin → HF dir, --dtype f16", || {
        let req = ConvertRequest {
            dtype: Some(convert::FloatDType::F16),
            ..request(&uer, &hf, To::Hf)
        };
        convert::run(&req).expect("convert to hf");
    });
    convert::run(&request(&uer, &hf, To::Hf)).expect("convert to hf");
    time_runs("HF dir → UER .bin (naming v1)", || {
        convert::run(&request(&hf, &back, To::Uer)).expect("convert to uer");
    });

    let (u, h, b) = (
        uer.to_str().unwrap(),
        hf.to_str().unwrap(),
        back.to_str().unwrap(),
    );
    match peak_rss_mib(&["convert", u, h, "--to", "hf", "--force"]) {
        Some(m) => println!("peak RSS, CLI UER → HF: {m:.1} MiB"),
        None => println!("peak RSS, CLI UER → HF: /usr/bin/time unavailable"),
    }
    match peak_rss_mib(&[
        "convert",
        h,
        b,
        "--to",
        "uer",
        "--uer-naming",
        "v1",
        "--force",
    ]) {
        Some(m) => println!("peak RSS, CLI HF → UER: {m:.1} MiB"),
        None => println!("peak RSS, CLI HF → UER: /usr/bin/time unavailable"),
    }
}
