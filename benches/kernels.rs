//! CPU speed of the zoo's models with the fused kernels ([`uerzoo::kernels`]) against the
//! plain Burn compositions (`kernels::set_enabled(false)`), and — when `python3` with torch is
//! installed — against PyTorch on the same shapes (`bench/torch_bench.py`), in one run.
//!
//! Run: `cargo bench --bench kernels` (env: `UERZOO_BENCH_CONFIG=tiny|base|all` (default
//! all), `UERZOO_BENCH_ITERS` (timed runs per measurement; default 10 for tiny, 3 for base),
//! `UERZOO_BENCH_TORCH=0` to skip PyTorch, `UERZOO_BENCH_PLAIN=0` to skip the plain Burn pass,
//! `UERZOO_BENCH_OPS=0` to skip the op table, `UERZOO_BENCH_INT8_PATH=avx2|scalar|…` to run
//! `forward_int8` on that int8 kernel path instead of the CPU's fastest, `UERZOO_BENCH_ONLY=forward,generate` to run only
//! those measurements, `UERZOO_BENCH_ROUNDS=n` to alternate uerzoo and PyTorch `n` times and
//! print each round's ratio and their median — the VM this runs on drifts by ±15 % between
//! minutes, so alternating keeps one side from getting all the fast minutes).
//!
//! Per config it prints medians of: forward tokens/s (the encoder's hidden states,
//! inference; `forward_int8` and `forward_bf16`: the same with `--dtype int8`'s and `--dtype
//! bf16`'s linear layers, measured right after the f32 forward in each round, and their
//! ratios per round; PyTorch's `forward_bf16` is the f32 model under bf16 autocast), training-step tokens/s (forward with UER-py's dropouts + MLM loss on 15% of
//! the positions + backward; with dropout 0.1 and 0) and generation tokens/s (a causal
//! pre-LN model of the same size, greedy, batch 1, 32-token prompt, 32 new tokens, full
//! recompute per token as the model has no KV cache yet). Shapes: tiny (L2/H128/A2/FF512)
//! batch 32×128; base (L12/H768/A12/FF3072) batch 8×128; vocab 21128.

use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Distribution, Int, Tensor, TensorData, module};
use std::collections::BTreeMap;
use std::time::Instant;
use uerzoo::kernels::{self, plain};
use uerzoo::model::encoder::activate;
use uerzoo::model::{Model, ModelConfig, load_model, random_checkpoint};

mod common;
use common::{VOCAB, env_usize, median};

/// The measurements, in the order they are printed.
const KEYS: [&str; 6] = [
    "forward",
    "forward_int8",
    "forward_bf16",
    "train_dropout",
    "train_no_dropout",
    "generate",
];

/// The measurements `UERZOO_BENCH_ONLY` asks for (all when unset).
fn wanted() -> Vec<&'static str> {
    match std::env::var("UERZOO_BENCH_ONLY") {
        Ok(list) => {
            let asked: Vec<&str> = list.split(',').map(str::trim).collect();
            if let Some(bad) = asked.iter().find(|k| !KEYS.contains(k)) {
                eprintln!("UERZOO_BENCH_ONLY: unknown measurement `{bad}` (known: {KEYS:?})");
                std::process::exit(2);
            }
            KEYS.into_iter().filter(|k| asked.contains(k)).collect()
        }
        Err(_) => KEYS.to_vec(),
    }
}

/// One line of a row: `key value unit | …` for the measurements it has.
fn format_row(row: &Row) -> String {
    KEYS.iter()
        .filter_map(|k| row.get(k).map(|v| format!("{k} {v:.1}")))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// (name, layers, hidden, heads, feed-forward, batch, seq, default iterations)
type Shape = (
    &'static str,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
);
const CONFIGS: [Shape; 2] = [
    ("tiny", 2, 128, 2, 512, 32, 128, 10),
    ("base", 12, 768, 12, 3072, 8, 128, 3),
];

fn config(layers: usize, hidden: usize, heads: usize, ff: usize, causal: bool) -> ModelConfig {
    if causal {
        common::gpt2(layers, hidden, heads, ff, 512)
    } else {
        common::bert(layers, hidden, heads, ff)
    }
}

/// Median seconds of `iters` runs after one warm-up.
fn time(iters: usize, mut f: impl FnMut()) -> f64 {
    f();
    median(
        (0..iters)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn inputs<B: Backend>(
    batch: usize,
    seq: usize,
    device: &B::Device,
) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
    let n = batch * seq;
    let ids: Vec<i64> = (0..n).map(|i| (i * 7919 % 21000 + 100) as i64).collect();
    let ids = Tensor::from_data(TensorData::new(ids, [batch, seq]), device);
    (ids, Tensor::ones([batch, seq], device))
}

/// One MLM training step (forward + loss on every 7th position + backward).
fn train_step<B: AutodiffBackend>(
    model: &Model<B>,
    batch: usize,
    seq: usize,
    p: f64,
    device: &B::Device,
) {
    let (ids, seg) = inputs::<B>(batch, seq, device);
    // The encoder as fine-tuning and pretraining run it (UER-py's dropouts when p > 0).
    let hidden = model.encode_with_dropout(ids, seg, p);
    let h = hidden.dims()[2];
    let picked: Vec<i64> = (0..batch * seq).step_by(7).map(|i| i as i64).collect();
    let m = picked.len();
    let targets: Vec<i64> = picked
        .iter()
        .map(|&i| (i * 31 % VOCAB as i64).max(1))
        .collect();
    let rows = hidden
        .reshape([batch * seq, h])
        .select(0, Tensor::from_data(TensorData::new(picked, [m]), device));
    let mlm = model.mlm.as_ref().expect("mlm head");
    let x = activate(
        kernels::linear(&mlm.linear_1, rows.reshape([1, m, h])),
        mlm.act,
    );
    let logits = kernels::linear(&mlm.linear_2, mlm.layer_norm.forward(x)).reshape([m, VOCAB]);
    let (loss, _hits) = kernels::cross_entropy(logits, &targets);
    let _grads = loss.backward();
}

/// Greedy generation with full recompute; returns seconds per new token.
fn generate<B: Backend>(model: &Model<B>, prompt: usize, new: usize, device: &B::Device) {
    let mut ids: Vec<i64> = (0..prompt)
        .map(|i| (i * 7919 % 21000 + 100) as i64)
        .collect();
    for _ in 0..new {
        let s = ids.len();
        let t = Tensor::<B, 2, Int>::from_data(TensorData::new(ids.clone(), [1, s]), device);
        let seg = Tensor::<B, 2, Int>::ones([1, s], device);
        let logits = model.forward(t, seg).logits.expect("lm head");
        let last = logits.narrow(1, s - 1, 1).reshape([VOCAB]).argmax(0);
        let next = last
            .into_data()
            .convert::<i64>()
            .to_vec::<i64>()
            .expect("id")[0];
        ids.push(next);
    }
}

type Row = BTreeMap<&'static str, f64>;

fn bench_config(
    name: &str,
    (layers, hidden, heads, ff): (usize, usize, usize, usize),
    batch: usize,
    seq: usize,
    iters: usize,
    keys: &[&str],
) -> Row {
    let dev = Default::default();
    let tokens = (batch * seq) as f64;
    let mut row = Row::new();
    let cfg = config(layers, hidden, heads, ff, false);
    let ckpt = random_checkpoint(&cfg, 1);
    if keys.contains(&"forward") {
        let (model, _) = load_model::<Flex>(&ckpt, &cfg, &dev).expect("load");
        let secs = time(iters, || {
            let (ids, seg) = inputs::<Flex>(batch, seq, &dev);
            let _ = model.encode(ids, seg).into_data();
        });
        row.insert("forward", tokens / secs);
    }
    if keys.contains(&"forward_int8") {
        // The same forward with the encoder's linear layers in int8 (`--dtype int8`), right
        // after the f32 one so both see the same minute of the VM.
        let mut cfg8 = cfg.clone();
        cfg8.dtype = uerzoo::model::Dtype::Int8;
        let (model, report) = load_model::<Flex>(&ckpt, &cfg8, &dev).expect("load");
        if !INT8_PATH_SHOWN.swap(true, std::sync::atomic::Ordering::Relaxed) {
            println!("int8 kernel path: {}", report.int8_path.unwrap_or("(none)"));
        }
        let secs = time(iters, || {
            let (ids, seg) = inputs::<Flex>(batch, seq, &dev);
            let _ = model.encode(ids, seg).into_data();
        });
        row.insert("forward_int8", tokens / secs);
    }
    if keys.contains(&"forward_bf16") {
        // The same forward with the encoder's linear layers in bf16 (`--dtype bf16`), right
        // after the f32 (and int8) ones; torch's row for this key is the f32 model under
        // bf16 autocast.
        let mut cfg16 = cfg.clone();
        cfg16.dtype = uerzoo::model::Dtype::Bf16;
        let (model, report) = load_model::<Flex>(&ckpt, &cfg16, &dev).expect("load");
        if !BF16_PATH_SHOWN.swap(true, std::sync::atomic::Ordering::Relaxed) {
            println!("bf16 kernel path: {}", report.bf16_path.unwrap_or("(none)"));
        }
        let secs = time(iters, || {
            let (ids, seg) = inputs::<Flex>(batch, seq, &dev);
            let _ = model.encode(ids, seg).into_data();
        });
        row.insert("forward_bf16", tokens / secs);
    }
    let train: Vec<_> = [("train_dropout", 0.1), ("train_no_dropout", 0.0)]
        .into_iter()
        .filter(|(k, _)| keys.contains(k))
        .collect();
    if !train.is_empty() {
        let (model, _) = load_model::<Autodiff<Flex>>(&ckpt, &cfg, &dev).expect("load");
        for (key, p) in train {
            let secs = time(iters, || train_step(&model, batch, seq, p, &dev));
            row.insert(key, tokens / secs);
        }
    }
    drop(ckpt);
    if keys.contains(&"generate") {
        let gcfg = config(layers, hidden, heads, ff, true);
        let ckpt = random_checkpoint(&gcfg, 2);
        let (gpt, _) = load_model::<Flex>(&ckpt, &gcfg, &dev).expect("load");
        let new = 32;
        let secs = time(iters.min(3), || generate(&gpt, 32, new, &dev));
        row.insert("generate", new as f64 / secs);
    }
    let side = if kernels::enabled() {
        "kernels"
    } else {
        "plain"
    };
    println!("{name:>5} {side:>8}: {} (tok/s)", format_row(&row));
    row
}

static INT8_PATH_SHOWN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static BF16_PATH_SHOWN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Element-wise op timings (ms, median), plain vs fused, on Flex.
fn bench_ops() {
    let dev = Default::default();
    let iters = 20;
    let x = Tensor::<Flex, 2>::random([2048, 1024], Distribution::Normal(0.0, 1.0), &dev);
    let scores = Tensor::<Flex, 4>::random([64, 1, 128, 128], Distribution::Normal(0.0, 1.0), &dev)
        .reshape([8, 8, 128, 128]);
    let bias = Tensor::<Flex, 4>::zeros([8, 1, 1, 128], &dev).expand([8, 1, 128, 128]);
    let g = Tensor::<Flex, 1>::ones([768], &dev);
    let b = Tensor::<Flex, 1>::zeros([768], &dev);
    let ln_x = Tensor::<Flex, 2>::random([4096, 768], Distribution::Normal(0.0, 1.0), &dev);
    let [q, k, v] = [0, 1, 2]
        .map(|_| Tensor::<Flex, 4>::random([8, 12, 128, 64], Distribution::Normal(0.0, 1.0), &dev));
    let bias12 = Tensor::<Flex, 4>::zeros([8, 1, 1, 128], &dev).expand([8, 1, 128, 128]);
    let ms = |f: &mut dyn FnMut()| time(iters, f) * 1e3;
    let rows: Vec<(&str, f64, f64)> = vec![
        (
            "gelu (erf), 2M values",
            ms(&mut || drop(plain::gelu(x.clone()).into_data())),
            ms(&mut || drop(kernels::gelu(x.clone()).into_data())),
        ),
        (
            "gelu (tanh), 2M values",
            ms(&mut || drop(plain::gelu_tanh(x.clone()).into_data())),
            ms(&mut || drop(kernels::gelu_tanh(x.clone()).into_data())),
        ),
        (
            "dropout 0.1, 2M values",
            ms(&mut || drop(plain::dropout(x.clone(), 0.1).into_data())),
            ms(&mut || drop(kernels::dropout(x.clone(), 0.1).into_data())),
        ),
        (
            "softmax + mask, 64×128×128",
            ms(&mut || {
                drop(
                    plain::masked_softmax(scores.clone(), Some(bias.clone()), 0.125, 0.0)
                        .into_data(),
                )
            }),
            ms(&mut || {
                drop(
                    kernels::masked_softmax(scores.clone(), Some(bias.clone()), 0.125, 0.0)
                        .into_data(),
                )
            }),
        ),
        (
            "LayerNorm (UER), 4096×768",
            ms(&mut || {
                drop(
                    plain::layer_norm(
                        ln_x.clone(),
                        g.clone(),
                        b.clone(),
                        uerzoo::model::LnKind::Uer,
                        1e-6,
                    )
                    .into_data(),
                )
            }),
            ms(&mut || {
                drop(
                    kernels::layer_norm(
                        ln_x.clone(),
                        g.clone(),
                        b.clone(),
                        uerzoo::model::LnKind::Uer,
                        1e-6,
                    )
                    .into_data(),
                )
            }),
        ),
        (
            "attention 8×12×128×64 (+mask)",
            ms(&mut || {
                let options = AttentionModuleOptions {
                    scale: Some(0.125),
                    softcap: None,
                    is_causal: false,
                };
                drop(
                    module::attention(
                        q.clone(),
                        k.clone(),
                        v.clone(),
                        None,
                        Some(bias12.clone()),
                        options,
                    )
                    .into_data(),
                )
            }),
            ms(&mut || {
                drop(
                    kernels::attention(q.clone(), k.clone(), v.clone(), Some(bias12.clone()), 0.0)
                        .into_data(),
                )
            }),
        ),
    ];
    println!("op (Flex, inference)            plain ms   fused ms   speed-up");
    for (name, p, f) in rows {
        println!("{name:<30} {p:>9.3} {f:>10.3} {:>9.1}×", p / f);
    }
}

/// PyTorch's numbers for `name` from `bench/torch_bench.py`, when python3 has torch.
fn torch_row(name: &str, iters: usize, keys: &[&'static str]) -> Option<Row> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/torch_bench.py");
    let out = std::process::Command::new("python3")
        .args([
            script,
            "--config",
            name,
            "--iters",
            &iters.to_string(),
            "--threads",
            &rayon::current_num_threads().to_string(),
            "--json",
            "--only",
            &keys.join(","),
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "torch_bench.py ({name}) failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let mut row = Row::new();
    for &key in keys {
        row.insert(key, v.get(key)?.as_f64()?);
    }
    Some(row)
}

fn main() {
    uerzoo::alloc::configure();
    if let Ok(name) = std::env::var("UERZOO_BENCH_INT8_PATH") {
        let forced = name
            .parse::<uerzoo::kernels::int8::Path>()
            .and_then(|p| uerzoo::kernels::int8::force(Some(p)));
        if let Err(e) = forced {
            eprintln!("UERZOO_BENCH_INT8_PATH: {e}");
            std::process::exit(2);
        }
    }
    let which = std::env::var("UERZOO_BENCH_CONFIG").unwrap_or_else(|_| "all".into());
    let keys = wanted();
    let rounds = env_usize("UERZOO_BENCH_ROUNDS").unwrap_or(1).max(1);
    let with_torch = std::env::var("UERZOO_BENCH_TORCH").as_deref() != Ok("0");
    println!(
        "uerzoo kernels bench — rayon threads {}",
        rayon::current_num_threads()
    );
    if env_usize("UERZOO_BENCH_OPS") != Some(0) {
        bench_ops();
    }
    for (name, layers, hidden, heads, ff, batch, seq, default_iters) in CONFIGS {
        if which != "all" && which != name {
            continue;
        }
        let shape = (layers, hidden, heads, ff);
        let iters = env_usize("UERZOO_BENCH_ITERS").unwrap_or(default_iters);
        kernels::set_enabled(false);
        let slow = if std::env::var("UERZOO_BENCH_PLAIN").as_deref() == Ok("0") {
            None
        } else {
            Some(bench_config(name, shape, batch, seq, iters, &keys))
        };
        kernels::set_enabled(true);
        // Each round measures uerzoo, then PyTorch right after it.
        let mut ratios: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        let mut fast = Row::new();
        let mut int8_vs_f32 = Vec::new();
        let mut bf16_vs_f32 = Vec::new();
        for _ in 0..rounds {
            fast = bench_config(name, shape, batch, seq, iters, &keys);
            if let (Some(q), Some(f)) = (fast.get("forward_int8"), fast.get("forward")) {
                int8_vs_f32.push(q / f);
            }
            if let (Some(h), Some(f)) = (fast.get("forward_bf16"), fast.get("forward")) {
                bf16_vs_f32.push(h / f);
            }
            let torch = if with_torch {
                torch_row(name, iters, &keys)
            } else {
                None
            };
            let Some(t) = torch else { continue };
            println!("{name:>5} {:>8}: {} (tok/s)", "torch", format_row(&t));
            for &key in &keys {
                ratios.entry(key).or_default().push(fast[key] / t[key]);
            }
        }
        for &key in &keys {
            let vs_torch = match ratios.get(key) {
                Some(r) if r.len() > 1 => {
                    let each: Vec<String> = r.iter().map(|x| format!("{x:.2}")).collect();
                    format!(
                        "{:.2}× torch (median of {} rounds: {})",
                        median(r.clone()),
                        r.len(),
                        each.join(", ")
                    )
                }
                Some(r) => format!("{:.2}× torch", r[0]),
                None => String::from("(torch not measured)"),
            };
            let vs_plain = slow
                .as_ref()
                .map_or(String::from("(plain not measured)"), |s| {
                    format!("{:.2}×", fast[key] / s[key])
                });
            println!("{name:>5} {key:<17} kernels/plain {vs_plain}  {vs_torch}");
        }
        for (what, r) in [("int8", &int8_vs_f32), ("bf16", &bf16_vs_f32)] {
            if r.is_empty() {
                continue;
            }
            let each: Vec<String> = r.iter().map(|x| format!("{x:.2}")).collect();
            println!(
                "{name:>5} forward {what}/f32 {:.2}× (median of {} rounds: {})",
                median(r.clone()),
                r.len(),
                each.join(", ")
            );
        }
    }
}
