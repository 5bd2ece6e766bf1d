//! `uerzoo predict`: batched inference with a fine-tuned classifier (UER-py's
//! run_classifier_infer).

use anyhow::Context;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use uerzoo::model::{DeviceSpec, Pooling};
use uerzoo::tokenizer::Truncation;
use uerzoo::train::{self, Dataset};

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
    /// Precision of the encoder's linear layers: f32, or int8 (weights quantized once at
    /// load, per output channel; activations per row on the fly; `--device cpu` only).
    /// Embeddings, LayerNorm, softmax and the heads stay f32.
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
    uerzoo::output::check_file(&a.output, a.force)?;
    uerzoo::output::check_not_input(&a.output, &a.input, "--input")?;
    let mut opened = uerzoo::resolve::open_model(&a.model, a.config.as_deref())?;
    opened.config.dtype = a.dtype;
    let tok = uerzoo::resolve::open_tokenizer(&opened, a.vocab.as_deref())?;
    let data = Dataset::read(&a.input, a.labels)?;
    let seq_length = match a.seq_length {
        Some(n) => n,
        None => opened
            .config_value("seq_length")
            .and_then(|v| v.as_u64())
            .map_or(128, |n| n as usize),
    };
    let pooling = match a.pooling {
        Some(p) => p,
        None => opened.pooling()?,
    };
    let truncation = match a.truncation {
        Some(t) => t,
        None => opened.truncation()?,
    };
    let encoded = data.encode_with(&tok, seq_length, truncation);
    let pred = train::predict(&opened, &encoded, pooling, a.batch_size, a.device)?;
    let join = |v: &[f32]| {
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut text = String::from("label");
    text += if a.logits { "\tlogits" } else { "" };
    text += if a.probabilities { "\tprob\n" } else { "\n" };
    for i in 0..pred.labels.len() {
        text += &pred.labels[i].to_string();
        if a.logits {
            text += &format!("\t{}", join(&pred.logits[i]));
        }
        if a.probabilities {
            text += &format!("\t{}", join(&pred.probabilities[i]));
        }
        text.push('\n');
    }
    let dir = uerzoo::output::parent_dir(&a.output);
    let mut tmp = uerzoo::output::Partial::new_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    tmp.write_all(text.as_bytes())
        .and_then(|()| Ok(tmp.persist(&a.output, a.force)?))
        .with_context(|| format!("writing {}", a.output.display()))?;
    eprintln!("wrote {} ({} rows)", a.output.display(), pred.labels.len());
    if a.labels {
        let gold: Vec<usize> = data.examples.iter().filter_map(|e| e.label).collect();
        let correct = gold
            .iter()
            .zip(&pred.labels)
            .filter(|(g, p)| g == p)
            .count();
        println!(
            "accuracy: {:.4} ({correct}/{})",
            correct as f64 / gold.len().max(1) as f64,
            gold.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}
