//! `uerzoo forward`: run a model on token ids and write its hidden states and logits.

use std::path::PathBuf;
use std::process::ExitCode;
use uerzoo::model::DeviceSpec;
use uerzoo::resolve::tasks::{self, ForwardJob};

/// Run a model on token ids and write its hidden states and logits.
///
/// IN holds `input_ids` and `segment` (integers, [batch, seq]; segment 0 = padding, 1/2 =
/// sentence A/B; without `segment`, non-zero ids count as sentence A). OUT gets `hidden`
/// (the last encoder layer) and `logits` (the MLM or LM head, [batch, seq, vocab]; for a
/// classifier the label logits, [batch, labels]), both f32.
///
/// Example: uerzoo forward uer_model.bin --config uer_config.json --input in.safetensors --output out.safetensors
#[derive(clap::Args)]
pub struct Args {
    /// A UER `.bin`/`.safetensors` file or a Huggingface model directory.
    model: PathBuf,
    /// UER-py config JSON of the weights (default: `uer_config.json` or `config.json` beside them).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Input safetensors with `input_ids` and `segment`.
    #[arg(long)]
    input: PathBuf,
    /// Output safetensors (`hidden`, `logits`).
    #[arg(long)]
    output: PathBuf,
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
    /// Overwrite OUT if it exists.
    #[arg(long)]
    force: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let job = ForwardJob {
        model: args.model,
        config: args.config,
        input: args.input,
        output: args.output,
        dtype: args.dtype,
        device: args.device,
        force: args.force,
    };
    let report = tasks::forward_file(job)?;
    let int8 = match (report.int8_path, report.bf16_path) {
        (Some(path), _) => format!("; int8 linear layers on the {path} path"),
        (None, Some(path)) => format!("; bf16 linear layers on the {path} path"),
        (None, None) => String::new(),
    };
    eprintln!(
        "wrote {} (heads: {}{int8})",
        report.output.display(),
        report.heads.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}
