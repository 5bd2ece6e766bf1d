//! `uerzoo extract-features`: one vector per line of text, as UER-py's extract_features.

use std::path::PathBuf;
use std::process::ExitCode;
use uerzoo::model::{DeviceSpec, Pooling};
use uerzoo::resolve::tasks::{self, ExtractJob};

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
    let job = ExtractJob {
        model: args.model,
        input: args.input,
        output: args.output,
        pooling: args.pooling,
        seq_length: args.seq_length,
        batch_size: args.batch_size,
        config: args.config,
        vocab: args.vocab,
        dtype: args.dtype,
        device: args.device,
        force: args.force,
    };
    let r = tasks::extract_file(job)?;
    eprintln!("wrote {} ({} × {})", r.output.display(), r.rows, r.hidden);
    Ok(ExitCode::SUCCESS)
}
