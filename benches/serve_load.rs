//! Closed-loop load on an OpenAI-style server (`uerzoo serve`, or bench/serve_peer.py), the
//! compiled twin of bench/serve_load.py: `--clients` clients each send one request, read the
//! whole answer, send the next, for `--seconds`. Embeddings: one Chinese sentence of 10-60
//! characters a request. Completions: streamed (`stream: true`), `--max-tokens` new tokens,
//! tokens counted from the events, time to first token = the first event with text. Prints
//! the same JSON line as serve_load.py (requests/s, p50/p99/mean latency, errors, and for
//! completions tokens/s and TTFT p50/p99).
//!
//! The clients share one thread (a current-thread tokio runtime), so the load costs the
//! server's cores little and the same for every server measured.
//!
//! Run: `cargo bench --bench serve_load -- --url http://127.0.0.1:8080 --model gpt2 --route
//! completions --clients 8`, or the built executable (`target/release/deps/serve_load-*`)
//! directly, as `bench/serve_compare.py --client rust` does.
//!
//! `--write-gpt2 DIR` instead writes the served model of the completions benchmark: a
//! 12-layer, 768-hidden GPT-2 (12 heads, feed-forward 3072, vocab 21128, 1024 positions)
//! with random weights as `uer_model.bin` + `uer_config.json` + `vocab.txt` (the zoo's
//! Chinese vocabulary), and exits.

use futures_util::StreamExt;
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod common;

const CHARS: &str = "北京是中国的首都今天天气很好春风得意马蹄疾白日依山尽黄河入海流欲穷千里目更上一层楼明月松间照清泉石上流";

#[derive(Clone)]
struct Args {
    url: String,
    model: String,
    route: String,
    clients: usize,
    seconds: f64,
    max_tokens: usize,
}

#[derive(Default)]
struct Tally {
    latency: Vec<f64>,
    ttft: Vec<f64>,
    errors: usize,
    tokens: usize,
}

fn usage(msg: &str) -> ! {
    eprintln!(
        "serve_load: {msg}\nusage: serve_load --url URL --model ID [--route embeddings|completions] [--clients N] [--seconds S] [--max-tokens N]\n       serve_load --write-gpt2 DIR"
    );
    std::process::exit(2)
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        url: "http://127.0.0.1:8080".into(),
        model: String::new(),
        route: "embeddings".into(),
        clients: 8,
        seconds: 20.0,
        max_tokens: 32,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        // `cargo bench` passes `--bench` to every bench executable.
        if flag == "--bench" {
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--url" => a.url = value.trim_end_matches('/').to_string(),
            "--model" => a.model = value,
            "--route" if value == "embeddings" || value == "completions" => a.route = value,
            "--route" => return Err(bad(&"expected embeddings or completions")),
            "--clients" => a.clients = value.parse().map_err(|e| bad(&e))?,
            "--seconds" => a.seconds = value.parse().map_err(|e| bad(&e))?,
            "--max-tokens" => a.max_tokens = value.parse().map_err(|e| bad(&e))?,
            "--write-gpt2" => {
                write_gpt2(Path::new(&value)).map_err(|e| bad(&e))?;
                std::process::exit(0)
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if a.model.is_empty() {
        return Err("--model is required".into());
    }
    Ok(a)
}

/// The completions benchmark's model folder, as benches/load.rs writes its GPT-2.
fn write_gpt2(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let cfg = common::gpt2(12, 768, 12, 3072, 1024);
    let ckpt = uerzoo::model::random_checkpoint(&cfg, 1);
    ckpt.write_torch(dir.join("uer_model.bin"), true)
        .map_err(std::io::Error::other)?;
    let json = serde_json::json!({
        "emb_size": 768, "hidden_size": 768, "feedforward_size": 3072,
        "heads_num": 12, "layers_num": 12, "hidden_act": "gelu_fast",
        "embedding": "word_pos", "remove_embedding_layernorm": true, "mask": "causal",
        "layernorm_positioning": "pre", "dropout": 0.1, "target": "lm"
    });
    std::fs::write(dir.join("uer_config.json"), json.to_string())?;
    let vocab = Path::new(env!("CARGO_MANIFEST_DIR")).join("vocab/google_zh_vocab.txt");
    std::fs::copy(vocab, dir.join("vocab.txt"))?;
    Ok(())
}

fn sentence(rng: &mut StdRng) -> String {
    let chars: Vec<char> = CHARS.chars().collect();
    let n = rng.random_range(10..=60);
    (0..n)
        .map(|_| chars[rng.random_range(0..chars.len())])
        .collect()
}

/// One request; `Ok((tokens, first token seconds))`, `Err(())` on any failure.
async fn one(
    client: &reqwest::Client,
    a: &Args,
    rng: &mut StdRng,
    start: Instant,
) -> Result<(usize, Option<f64>), ()> {
    let body = if a.route == "embeddings" {
        serde_json::json!({"model": a.model, "input": sentence(rng)})
    } else {
        let prompt: String = sentence(rng).chars().take(8).collect();
        serde_json::json!({
            "model": a.model, "prompt": prompt, "stream": true,
            "max_tokens": a.max_tokens, "seed": rng.random_range(0..(1u64 << 30)),
        })
    };
    let resp = client
        .post(format!("{}/v1/{}", a.url, a.route))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .map_err(|_| ())?;
    if !resp.status().is_success() {
        let _ = resp.bytes().await;
        return Err(());
    }
    if a.route == "embeddings" {
        resp.bytes().await.map_err(|_| ())?;
        return Ok((0, None));
    }
    // Read the stream as it comes: the first event with text is the first token.
    let (mut tokens, mut first, mut line) = (0, None, Vec::<u8>::new());
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        for &b in chunk.map_err(|_| ())?.iter() {
            if b != b'\n' {
                line.push(b);
                continue;
            }
            if let Some(json) = line.strip_prefix(b"data: ")
                && json.starts_with(b"{")
                && let Ok(ev) = serde_json::from_slice::<serde_json::Value>(json)
                && ev["choices"][0]["text"]
                    .as_str()
                    .is_some_and(|t| !t.is_empty())
            {
                tokens += 1;
                first.get_or_insert_with(|| start.elapsed().as_secs_f64());
            }
            line.clear();
        }
    }
    Ok((tokens, first))
}

async fn worker(a: Arc<Args>, stop: Arc<AtomicBool>, seed: u64) -> Tally {
    let mut rng = StdRng::seed_from_u64(seed);
    // One client (one keep-alive connection) per worker, as serve_load.py's.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap_or_default();
    let mut t = Tally::default();
    while !stop.load(Ordering::Relaxed) {
        let start = Instant::now();
        match one(&client, &a, &mut rng, start).await {
            Ok((tokens, first)) => {
                t.tokens += tokens;
                t.ttft.extend(first);
                t.latency.push(start.elapsed().as_secs_f64());
            }
            Err(()) => t.errors += 1,
        }
    }
    t
}

/// The value at fraction `f` of sorted `xs`, in milliseconds to 0.1 (serve_load.py's).
fn quantile(xs: &[f64], f: f64) -> serde_json::Value {
    if xs.is_empty() {
        return serde_json::Value::Null;
    }
    let i = ((f * xs.len() as f64) as usize).min(xs.len() - 1);
    round1(xs[i] * 1000.0)
}

fn round1(x: f64) -> serde_json::Value {
    serde_json::json!((x * 10.0).round() / 10.0)
}

fn main() {
    let a = Arc::new(parse().unwrap_or_else(|e| usage(&e)));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| usage(&format!("starting the runtime: {e}")));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let tallies: Vec<Tally> = rt.block_on(async {
        let tasks: Vec<_> = (0..a.clients)
            .map(|i| tokio::spawn(worker(a.clone(), stop.clone(), i as u64)))
            .collect();
        tokio::time::sleep(Duration::from_secs_f64(a.seconds)).await;
        stop.store(true, Ordering::Relaxed);
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap_or_default());
        }
        out
    });
    let wall = start.elapsed().as_secs_f64();
    let mut lat: Vec<f64> = tallies.iter().flat_map(|t| t.latency.clone()).collect();
    let mut ttft: Vec<f64> = tallies.iter().flat_map(|t| t.ttft.clone()).collect();
    lat.sort_by(f64::total_cmp);
    ttft.sort_by(f64::total_cmp);
    let errors: usize = tallies.iter().map(|t| t.errors).sum();
    let tokens: usize = tallies.iter().map(|t| t.tokens).sum();
    let mean = if lat.is_empty() {
        serde_json::Value::Null
    } else {
        round1(lat.iter().sum::<f64>() / lat.len() as f64 * 1000.0)
    };
    let mut out = serde_json::json!({
        "route": a.route, "clients": a.clients, "seconds": round1(wall),
        "requests": lat.len(), "requests_per_s": round1(lat.len() as f64 / wall),
        "p50_ms": quantile(&lat, 0.5), "p99_ms": quantile(&lat, 0.99),
        "mean_ms": mean, "errors": errors,
    });
    if a.route == "completions" {
        out["tokens_per_s"] = round1(tokens as f64 / wall);
        out["ttft_p50_ms"] = quantile(&ttft, 0.5);
        out["ttft_p99_ms"] = quantile(&ttft, 0.99);
    }
    println!("{out}");
}
