//! `uerzoo forward`: run a model on token ids and write its hidden states and logits.

use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use uerzoo::checkpoint::{Checkpoint, Tensor};
use uerzoo::model::{self, DeviceSpec, tasks::Batch};

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
    // Everything that can be wrong with the output or the input is found before loading.
    uerzoo::output::check_file(&args.output, args.force)?;
    uerzoo::output::check_not_input(&args.output, &args.input, "--input")?;
    let input = Checkpoint::open(&args.input)
        .with_context(|| format!("reading {}", args.input.display()))?;
    let ids_t = input
        .get("input_ids")
        .with_context(|| format!("{}: no `input_ids` tensor", args.input.display()))?;
    let ids = ids_t
        .to_i64_vec()
        .context("`input_ids` must be an integer tensor")?;
    let [batch, seq] = ids_t.shape[..] else {
        anyhow::bail!("`input_ids` must be [batch, seq], got {:?}", ids_t.shape)
    };
    let segment = match input.get("segment") {
        Some(t) => t
            .to_i64_vec()
            .context("`segment` must be an integer tensor")?,
        None => ids.iter().map(|&i| i64::from(i != 0)).collect(),
    };
    anyhow::ensure!(
        batch > 0 && seq > 0,
        "{}: `input_ids` is {:?}; it needs at least one sequence of at least one token",
        args.input.display(),
        ids_t.shape
    );
    anyhow::ensure!(
        segment.len() == ids.len(),
        "{}: `segment` has {} values, `input_ids` {}; both must be [batch, seq]",
        args.input.display(),
        segment.len(),
        ids.len()
    );
    let mut opened = uerzoo::resolve::open_model(&args.model, args.config.as_deref())?;
    opened.config.dtype = args.dtype;
    let out = model::tasks::forward(
        &opened,
        &Batch {
            ids,
            segment,
            batch,
            seq,
        },
        args.device,
    )?;
    let mut result = Checkpoint::default();
    result.insert(
        "hidden",
        Tensor::from_f32(out.hidden.shape, &out.hidden.values),
    );
    if let Some(logits) = out.logits {
        result.insert("logits", Tensor::from_f32(logits.shape, &logits.values));
    }
    result
        .write_safetensors(&args.output, args.force)
        .with_context(|| format!("writing {}", args.output.display()))?;
    let int8 = match (out.report.int8_path, out.report.bf16_path) {
        (Some(path), _) => format!("; int8 linear layers on the {path} path"),
        (None, Some(path)) => format!("; bf16 linear layers on the {path} path"),
        (None, None) => String::new(),
    };
    eprintln!(
        "wrote {} (heads: {}{int8})",
        args.output.display(),
        out.report.heads.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}
