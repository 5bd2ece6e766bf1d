//! UER-py 2019's LSTM encoder, forward tokens/s: uerzoo's [`Lstm`] against torch's
//! `nn.LSTM` (`bench/lstm_bench.py`) on the zoo LSTM's shape (emb 512, hidden 1024,
//! 2 layers, batch 8 × seq 128, zero initial state, random weights), in interleaved rounds
//! (uerzoo, then torch, `UERZOO_BENCH_ROUNDS` times) so that both sides share the machine's
//! drift. torch runs as one child process kept for all rounds, with as many threads as
//! rayon uses here.
//!
//! Run: `cargo bench --bench lstm` (`UERZOO_BENCH_ROUNDS`, default 5; `UERZOO_BENCH_ITERS`
//! forwards per round, default 3, median; `UERZOO_BENCH_PYTHON`, default `python3`;
//! `UERZOO_BENCH_TORCH=0` skips torch).

mod common;

use burn::nn::LinearConfig;
use burn::tensor::{Distribution, Tensor};
use common::{env_usize, median};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;
use uerzoo::model::Cpu;
use uerzoo::model::lstm::{Lstm, LstmLayer};

const EMB: usize = 512;
const HIDDEN: usize = 1024;
const LAYERS: usize = 2;
const BATCH: usize = 8;
const SEQ: usize = 128;

/// The torch process: requests on stdin, one tokens/s line back per request.
struct Torch {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Torch {
    fn start(threads: usize) -> Option<Torch> {
        let python = std::env::var("UERZOO_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/lstm_bench.py");
        let mut child = Command::new(&python)
            .arg(script)
            .args(["--threads", &threads.to_string(), "--serve"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| eprintln!("torch side not run ({python}: {e})"))
            .ok()?;
        let stdin = child.stdin.take()?;
        let mut stdout = BufReader::new(child.stdout.take()?);
        let mut ready = String::new();
        stdout.read_line(&mut ready).ok()?;
        if !ready.starts_with("ready") {
            eprintln!("torch side not run ({python} {script} printed {ready:?})");
            return None;
        }
        println!("{}", ready.trim());
        Some(Torch {
            child,
            stdin,
            stdout,
        })
    }

    fn tokens_per_s(&mut self, iters: usize) -> Option<f64> {
        writeln!(self.stdin, "{iters}").ok()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line).ok()?;
        line.trim().parse().ok()
    }
}

impl Drop for Torch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn main() {
    uerzoo::alloc::configure();
    let rounds = env_usize("UERZOO_BENCH_ROUNDS").unwrap_or(5);
    let iters = env_usize("UERZOO_BENCH_ITERS").unwrap_or(3);
    let threads = rayon::current_num_threads();
    let device = Default::default();
    let lstm = Lstm::<Cpu> {
        layers: (0..LAYERS)
            .map(|k| LstmLayer {
                input: LinearConfig::new(if k == 0 { EMB } else { HIDDEN }, 4 * HIDDEN)
                    .init(&device),
                hidden: LinearConfig::new(HIDDEN, 4 * HIDDEN).init(&device),
            })
            .collect(),
        hidden_size: HIDDEN,
    };
    let x = Tensor::<Cpu, 3>::random([BATCH, SEQ, EMB], Distribution::Uniform(-1.0, 1.0), &device);
    let forward = || {
        let t = Instant::now();
        let out = lstm.forward(x.clone(), None);
        let _ = out.into_data();
        t.elapsed().as_secs_f64()
    };
    forward(); // warm-up
    let mut torch = if std::env::var("UERZOO_BENCH_TORCH").as_deref() == Ok("0") {
        None
    } else {
        Torch::start(threads)
    };
    println!(
        "LSTM forward, emb {EMB} hidden {HIDDEN} layers {LAYERS}, batch {BATCH} × seq {SEQ}, \
         {threads} threads, median of {iters} per round, tokens/s"
    );
    println!(
        "{:>5} {:>10} {:>10} {:>7}",
        "round", "uerzoo", "torch", "ratio"
    );
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        let ours = (BATCH * SEQ) as f64 / median((0..iters).map(|_| forward()).collect());
        match torch.as_mut().and_then(|t| t.tokens_per_s(iters)) {
            Some(theirs) => {
                ratios.push(ours / theirs);
                println!(
                    "{round:>5} {ours:>10.1} {theirs:>10.1} {:>6.2}×",
                    ours / theirs
                );
            }
            None => println!("{round:>5} {ours:>10.1} {:>10} {:>7}", "-", "-"),
        }
    }
    if !ratios.is_empty() {
        println!("median ratio {:.2}×", median(ratios));
    }
}
