//! Read/write throughput of checkpoint I/O on a large file this bench generates itself:
//! `UERZOO_BENCH_MB` (default 400) MB of f32 in base-model-sized tensors, written by our
//! own writers. Run with `cargo bench --bench checkpoint`.
//!
//! Reported per format: write, open (header + pickle, storages mapped lazily), and open
//! plus touching every tensor byte (page cache warm), with `std::fs::read` of the same
//! file as the copy baseline.

use std::hint::black_box;
use std::time::{Duration, Instant};
use uerzoo::checkpoint::{Checkpoint, Tensor};

fn touch(ck: &Checkpoint) -> u64 {
    ck.tensors.iter().fold(0u64, |acc, (_, t)| {
        t.bytes().chunks_exact(8).fold(acc, |a, c| {
            a.wrapping_add(u64::from_le_bytes(c.try_into().unwrap()))
        })
    })
}

/// The best of `n` runs.
fn best(n: usize, mut f: impl FnMut()) -> Duration {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap()
}

fn report(what: &str, bytes: u64, d: Duration) {
    let mib = bytes as f64 / (1 << 20) as f64;
    println!(
        "{what:<44} {:>8.1} ms  {:>8.0} MiB/s",
        d.as_secs_f64() * 1e3,
        mib / d.as_secs_f64()
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then run small.
    let bench = std::env::args().any(|a| a == "--bench");
    let mb: usize = std::env::var("UERZOO_BENCH_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if bench { 400 } else { 4 });
    let dir = tempfile::tempdir().expect("temp dir");
    // A base-model-like layout: [21128, 768] embeddings then [768, 768]-ish matrices.
    let mut ck = Checkpoint::default();
    let mut left = mb * 1_000_000 / 4;
    let mut i = 0;
    while left > 0 {
        let rows = if i == 0 { 21128 } else { 768 };
        let n = (rows * 768).min(left);
        let values: Vec<f32> = (0..n)
            .map(|k| (k % 1000) as f32 * 1e-3 + i as f32)
            .collect();
        ck.insert(
            format!("encoder.layer.{i}.weight"),
            Tensor::from_f32(vec![n], &values),
        );
        left -= n;
        i += 1;
    }
    let bytes = ck.num_bytes();
    println!(
        "checkpoint: {} tensors, {:.0} MB of f32 (best of 3 runs each)",
        ck.tensors.len(),
        bytes as f64 / 1e6
    );
    let bin = dir.path().join("big.bin");
    let st = dir.path().join("big.safetensors");
    report(
        "write torch zip .bin",
        bytes,
        best(3, || ck.write_torch(&bin, true).unwrap()),
    );
    report(
        "write safetensors",
        bytes,
        best(3, || ck.write_safetensors(&st, true).unwrap()),
    );
    drop(ck);
    // `UERZOO_BENCH_KEEP=DIR` keeps the files (e.g. for `/usr/bin/time -v uerzoo inspect`).
    if let Some(keep) = std::env::var_os("UERZOO_BENCH_KEEP") {
        for p in [&bin, &st] {
            std::fs::copy(p, std::path::Path::new(&keep).join(p.file_name().unwrap())).unwrap();
        }
    }
    for (name, path) in [("torch zip .bin", &bin), ("safetensors", &st)] {
        report(
            &format!("baseline std::fs::read ({name})"),
            bytes,
            best(3, || drop(black_box(std::fs::read(path).unwrap()))),
        );
        report(
            &format!("open {name} (lazy map)"),
            bytes,
            best(3, || drop(black_box(Checkpoint::open(path).unwrap()))),
        );
        report(
            &format!("open {name} + touch every byte"),
            bytes,
            best(3, || {
                black_box(touch(&Checkpoint::open(path).unwrap()));
            }),
        );
    }
}
