//! `uerzoo extract-features`: one vector per line of text, as UER-py's extract_features.

use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use uerzoo::checkpoint::{Checkpoint, Tensor};
use uerzoo::model::{self, DeviceSpec, Pooling, tasks::Batch};

/// One vector per line of text, as UER-py's `scripts/extract_features.py` computes it.
///
/// Each non-empty line becomes `[CLS] tokens`, cut or padded to `--seq-length`; the last
/// layer's states are zeroed on padding and pooled over all positions (`mean` therefore
/// divides by the sequence length, as UER-py does). Lines with no tokens are skipped, as
/// UER-py skips them. OUT gets `features` ([lines, hidden], f32).
///
/// Example: uerzoo extract-features ./chinese_roberta_L-2_H-128 --input texts.txt --output emb.safetensors --pooling mean
#[derive(clap::Args)]
pub struct Args {
    /// A UER `.bin` file or a Huggingface model directory.
    model: PathBuf,
    /// Text file, one sentence per line.
    #[arg(long)]
    input: PathBuf,
    /// Output safetensors with `features`.
    #[arg(long)]
    output: PathBuf,
    /// first, mean, max or last.
    #[arg(long, default_value = "first")]
    pooling: Pooling,
    /// Sequence length (UER-py default 128).
    #[arg(long, default_value_t = 128)]
    seq_length: usize,
    /// Sentences per forward pass.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// UER-py config JSON of the weights (default: beside them).
    #[arg(long)]
    config: Option<PathBuf>,
    /// `vocab.txt` or sentencepiece `.model` (default: beside the weights).
    #[arg(long)]
    vocab: Option<PathBuf>,
    /// Precision of the encoder's linear layers: f32|int8|bf16. int8: weights quantized once
    /// at load, per output channel, activations per row on the fly; bf16: weights rounded to
    /// bf16 once at load, activations per call, f32 sums (AVX-512 BF16 where the CPU has it).
    /// Both `--device cpu` only. Embeddings, LayerNorm, softmax and the heads stay f32.
    #[arg(long, default_value = "f32")]
    dtype: uerzoo::model::Dtype,
    /// `cpu`, `cuda[:N]` (a build with `--features cuda`), `wgpu[:N]` (`--features wgpu`;
    /// N counts the adapters wgpu lists) or `auto`: the first CUDA device, else the first
    /// wgpu GPU (never a software one), else the CPU; it notes which.
    #[arg(long, default_value = "cpu", value_parser = super::device_arg)]
    device: DeviceSpec,
    /// Overwrite OUT if it exists.
    #[arg(long)]
    force: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    uerzoo::output::check_file(&args.output, args.force)?;
    uerzoo::output::check_not_input(&args.output, &args.input, "--input")?;
    anyhow::ensure!(args.seq_length > 0, "--seq-length must be at least 1");
    let mut opened = uerzoo::resolve::open_model(&args.model, args.config.as_deref())?;
    opened.config.dtype = args.dtype;
    let tok = uerzoo::resolve::open_tokenizer(&opened, args.vocab.as_deref())?;
    let text = std::fs::read_to_string(&args.input)
        .with_context(|| format!("reading {}", args.input.display()))?;
    let (mut ids, mut segment) = (Vec::new(), Vec::new());
    for line in text.lines() {
        let tokens = tok.encode(line);
        if tokens.is_empty() {
            continue;
        }
        let enc = tok.single_from_ids(&tokens, args.seq_length);
        ids.extend(enc.ids.iter().map(|&i| i64::from(i)));
        segment.extend(enc.segments.iter().map(|&s| i64::from(s)));
    }
    let batch = Batch {
        batch: ids.len() / args.seq_length.max(1),
        ids,
        segment,
        seq: args.seq_length,
    };
    anyhow::ensure!(
        batch.batch > 0,
        "{} has no line with tokens",
        args.input.display()
    );
    let features = model::tasks::extract_features(
        &opened,
        &batch,
        args.pooling,
        args.batch_size,
        args.device,
    )?;
    let mut out = Checkpoint::default();
    out.insert(
        "features",
        Tensor::from_f32(features.shape.clone(), &features.values),
    );
    out.write_safetensors(&args.output, args.force)
        .with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!(
        "wrote {} ({} × {})",
        args.output.display(),
        features.shape[0],
        features.shape[1]
    );
    Ok(ExitCode::SUCCESS)
}
