//! `uerzoo predict`: batched inference with a fine-tuned classifier (UER-py's
//! run_classifier_infer).

use std::path::PathBuf;
use std::process::ExitCode;
use uerzoo::model::{DeviceSpec, Pooling};
use uerzoo::tokenizer::Truncation;
use uerzoo::train::predict::{self, PredictTask};

/// Label a TSV with a fine-tuned classifier, as UER-py's run_classifier_infer does.
///
/// MODEL is what `uerzoo finetune` wrote (a UER classifier `.bin` with `uer_config.json` and
/// `vocab.txt` beside it, or an HF `BertForSequenceClassification` directory). INPUT is a TSV
/// with a header naming `text_a` (and `text_b` for pairs); a `label` column is ignored unless
/// --labels is given. OUTPUT gets a header and one line per row: the predicted `label`, then
/// with --logits the `logits` and with --probabilities the `prob` (space-separated, as UER-py).
///
/// Example: uerzoo predict classifier.bin --input test_nolabel.tsv --output predictions.tsv --probabilities
#[derive(clap::Args)]
pub struct Args {
    /// The fine-tuned classifier.
    model: PathBuf,
    /// TSV to label.
    #[arg(long)]
    input: PathBuf,
    /// Where to write the predictions (TSV).
    #[arg(long)]
    output: PathBuf,
    /// The input has gold labels: also print the accuracy against them.
    #[arg(long)]
    labels: bool,
    /// Add a `prob` column (softmax probabilities).
    #[arg(long)]
    probabilities: bool,
    /// Add a `logits` column.
    #[arg(long)]
    logits: bool,
    /// Tokens per example (default: as in training, from the `seq_length` that `finetune`
    /// records in the model's UER config; else 128).
    #[arg(long)]
    seq_length: Option<usize>,
    /// Pooling: first, mean, max or last (default: as in training, from the config's
    /// `pooling`; else first).
    #[arg(long)]
    pooling: Option<Pooling>,
    /// How a long example is cut to the tokens: uer (UER-py: `[CLS] a [SEP]` cut at the
    /// length, the final `[SEP]` can go) or hf (transformers: the text cut, `[SEP]` kept).
    /// Default: as in training, from the config's `truncation` that `finetune` records; else
    /// hf for a Huggingface folder, uer for a UER file.
    #[arg(long)]
    truncation: Option<Truncation>,
    /// Rows per forward pass.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// UER-py config JSON (default: beside the weights).
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
    /// Overwrite OUTPUT if it exists.
    #[arg(long)]
    force: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let task = PredictTask {
        model: a.model,
        input: a.input,
        output: Some(a.output.clone()),
        labels: a.labels,
        probabilities: a.probabilities,
        logits: a.logits,
        seq_length: a.seq_length,
        pooling: a.pooling,
        truncation: a.truncation,
        batch_size: a.batch_size,
        config: a.config,
        vocab: a.vocab,
        dtype: a.dtype,
        device: a.device,
        force: a.force,
    };
    let r = predict::run(&task)?;
    let rows = r.predictions.labels.len();
    eprintln!("wrote {} ({rows} rows)", a.output.display());
    if let Some((correct, total)) = r.accuracy {
        let acc = correct as f64 / total.max(1) as f64;
        println!("accuracy: {acc:.4} ({correct}/{total})");
    }
    Ok(ExitCode::SUCCESS)
}
