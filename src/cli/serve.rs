//! `uerzoo serve`: the zoo over HTTP (see `src/serve/` and docs/serve.md).

use anyhow::Context;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;
use uerzoo::model::{DeviceSpec, Pooling};
use uerzoo::serve::{self, ModelSpec, ServeOptions, Stopped, VocabSpec};
use uerzoo::tokenizer::Truncation;

/// Serve models over HTTP: an OpenAI-compatible API, fill-mask, classify and a web page.
///
/// Each MODEL (a registry name, a UER `.bin`, a Huggingface directory or a classifier written
/// by `uerzoo finetune`) is loaded once; requests name it by the argument as given, or by ID
/// with `ID=MODEL`. Routes: POST /v1/completions (GPT-2, `stream` as server-sent events),
/// /v1/embeddings, /v1/fill-mask, /v1/classify, /v1/tokenize; GET /v1/models, /health,
/// /metrics (Prometheus) and / (a page for poems, couplets, fill-mask and classification).
/// Ctrl-C or SIGTERM stops accepting and lets the requests in flight finish.
///
/// Example: uerzoo serve gpt2-chinese-couplet medium --port 8080
///
/// Example: uerzoo serve gpt2=./gpt2/uer_model.bin roberta=./roberta_dir --host 127.0.0.1 --port 0
#[derive(clap::Args)]
pub struct Args {
    /// Models to serve: NAME, PATH or ID=PATH (registry name, UER `.bin`, HF directory).
    #[arg(required = true)]
    models: Vec<ModelSpec>,
    /// Address to listen on (127.0.0.1: this machine only; 0.0.0.0: every interface).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port; 0 picks a free one (the address is printed on stdout).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Precision of the encoder's linear layers: f32|int8|bf16. int8: weights quantized once
    /// at load, per output channel, activations per row on the fly; bf16: weights rounded to
    /// bf16 once at load, activations per call, f32 sums (AVX-512 BF16 where the CPU has it).
    /// Both `--device cpu` only. Embeddings, LayerNorm, softmax and the heads stay f32, but
    /// for a GPT-2's LM head (int8/bf16 weights too, logits f32: what `generate --dtype` runs).
    #[arg(long, default_value = "f32")]
    dtype: uerzoo::model::Dtype,
    /// `cpu`, `cuda[:N]` (a build with `--features cuda`), `wgpu[:N]` (`--features wgpu`;
    /// N counts the adapters wgpu lists) or `auto`: the first CUDA device, else the first
    /// wgpu GPU (never a software one), else the CPU; it notes which.
    #[arg(long, default_value = "cpu", value_parser = super::device_arg)]
    device: DeviceSpec,
    /// Padded tokens (texts × longest text) per encoder forward pass; concurrent embedding
    /// requests are batched up to this.
    #[arg(long, default_value_t = 16384)]
    max_batch_tokens: usize,
    /// Encoder batches computed at once per model [default: one per core on the CPU, 1 on a
    /// GPU]. Alone, a batch uses every core; side by side, one core each (small encoders
    /// serve more requests so than with each matrix product split across the cores).
    #[arg(long, value_name = "N")]
    batch_workers: Option<usize>,
    /// Model requests running at once; more are answered 429.
    #[arg(long, default_value_t = 64)]
    max_concurrency: usize,
    /// Most new tokens one completion request may ask for: prompts × n × max_tokens (more:
    /// 413).
    #[arg(long, default_value_t = 65536)]
    max_request_tokens: usize,
    /// Host names requests may be addressed to (the Host header, port ignored), comma
    /// separated, e.g. localhost,127.0.0.1; others get 403 (against DNS rebinding). Default:
    /// any.
    #[arg(long, value_delimiter = ',')]
    allowed_hosts: Vec<String>,
    /// Seconds a client has to send its request's header (slower: disconnected).
    #[arg(long, default_value_t = 10)]
    header_timeout: u64,
    /// Seconds the requests in flight may take to finish after Ctrl-C or SIGTERM; then (or at
    /// a second signal) they are cut and the server exits.
    #[arg(long, default_value_t = 30)]
    shutdown_timeout: u64,
    /// Largest request body in bytes (larger: 413).
    #[arg(long, default_value_t = 2 << 20)]
    max_body_bytes: usize,
    /// Pooling of the served classifiers: first, mean, max or last (default: as in
    /// training, from the `pooling` that `finetune` records in each model's UER config; else
    /// first).
    #[arg(long)]
    classifier_pooling: Option<Pooling>,
    /// Tokens per classified example (default: each model's recorded `seq_length`, else 128).
    #[arg(long)]
    classifier_seq_length: Option<usize>,
    /// How a long example is cut: uer or hf (default: each model's recorded `truncation`;
    /// else hf for a Huggingface folder, uer for a UER file; see `uerzoo predict --help`).
    #[arg(long)]
    classifier_truncation: Option<Truncation>,
    /// The tokenizer of the model served as ID, for weights with no `vocab.txt` or
    /// `spiece.model` beside them: a vocab.txt or a sentencepiece .model (repeatable).
    #[arg(long, value_name = "ID=FILE")]
    vocab: Vec<VocabSpec>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let opts = ServeOptions {
        host: args.host,
        port: args.port,
        device: args.device,
        max_batch_tokens: args.max_batch_tokens,
        batch_workers: args.batch_workers,
        max_concurrency: args.max_concurrency,
        max_body_bytes: args.max_body_bytes,
        max_request_tokens: args.max_request_tokens,
        allowed_hosts: args.allowed_hosts,
        header_timeout: Duration::from_secs(args.header_timeout),
        shutdown_timeout: Duration::from_secs(args.shutdown_timeout),
        classifier_pooling: args.classifier_pooling,
        classifier_seq_length: args.classifier_seq_length,
        classifier_truncation: args.classifier_truncation,
        dtype: args.dtype,
        vocabs: args.vocab,
        ..ServeOptions::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // The port first: a taken one is found before a long load.
    let bound = runtime.block_on(serve::bind(&opts))?;
    let models = serve::load_models(&args.models, &opts)?;
    let ids: Vec<String> = models.iter().map(|m| m.id.clone()).collect();
    let stopped = runtime.block_on(async {
        let server = bound.with_models(models, &opts)?;
        let addr = server.local_addr()?;
        let signals = serve::signals();
        eprintln!("serving {}", ids.join(", "));
        println!("listening on http://{addr}");
        std::io::stdout().flush()?;
        anyhow::Ok(server.run(signals).await?)
    })?;
    match stopped {
        Stopped::Drained => eprintln!("shut down"),
        Stopped::DeadlinePassed { open } => eprintln!(
            "shut down: --shutdown-timeout {} s passed; {open} connection(s) cut",
            args.shutdown_timeout
        ),
        Stopped::SecondSignal { open } => {
            eprintln!("shut down at the second signal; {open} connection(s) cut")
        }
    }
    // Generation threads stop at their next token once their clients are gone.
    runtime.shutdown_timeout(Duration::from_secs(2));
    Ok(ExitCode::SUCCESS)
}
