//! `uerzoo fill-mask`: predict the tokens behind `[MASK]` in a text.

use std::path::PathBuf;
use std::process::ExitCode;
use uerzoo::model::DeviceSpec;
use uerzoo::resolve::tasks::{self, FillMaskJob};

/// Predict the tokens behind `[MASK]` in a text (the MLM head, as the model cards show it).
///
/// The text is tokenized with `[MASK]` and the other special tokens kept whole, wrapped in
/// `[CLS] … [SEP]` (segment 1) and each mask's top-k tokens are printed with their
/// probabilities. Text outside the vocabulary (it becomes `[UNK]`) is warned of on stderr.
///
/// Example: uerzoo fill-mask ./chinese_roberta_L-2_H-128 "北京是[MASK]国的首都。" --top-k 5
#[derive(clap::Args)]
pub struct Args {
    /// A UER `.bin` file or a Huggingface model directory.
    model: PathBuf,
    /// Text with one or more `[MASK]`.
    text: String,
    /// Candidates per mask (at least 1).
    #[arg(long, default_value_t = 5, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    top_k: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// UER-py config JSON of the weights (default: beside them).
    #[arg(long)]
    config: Option<PathBuf>,
    /// `vocab.txt` or sentencepiece `.model` (default: `vocab.txt`/`spiece.model` beside the weights).
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
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let job = FillMaskJob {
        model: args.model,
        text: args.text,
        top_k: args.top_k,
        config: args.config,
        vocab: args.vocab,
        dtype: args.dtype,
        device: args.device,
    };
    let report = tasks::fill_mask_text(job, &mut |note| eprintln!("{note}"))?;
    if args.json {
        let json: Vec<Vec<serde_json::Value>> = report
            .masks
            .iter()
            .map(|m| {
                m.candidates
                    .iter()
                    .map(|c| serde_json::json!({"token": c.token, "id": c.id, "score": c.score}))
                    .collect()
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        for (n, m) in report.masks.iter().enumerate() {
            println!("[MASK] #{} (position {}):", n + 1, m.position);
            for (rank, c) in m.candidates.iter().enumerate() {
                let (token, score, filled) = (&c.token, c.score, &c.filled);
                println!("  {:>2}. {token:<8} {score:.4}  {filled}", rank + 1);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
