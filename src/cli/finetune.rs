//! `uerzoo finetune`: fine-tune a zoo model on a classification TSV (UER-py's
//! run_classifier), or search a grid of hyper-parameters (run_classifier_grid).

use std::path::PathBuf;
use std::process::ExitCode;
use uerzoo::convert::Naming;
use uerzoo::model::{DeviceSpec, Pooling};
use uerzoo::tokenizer::Truncation;
use uerzoo::train::EpochReport;
use uerzoo::train::finetune::{self, FinetuneEvent, FinetuneReport, FinetuneTask, OutputFormat};

/// Fine-tune a model on a classification TSV, as UER-py's run_classifier does.
///
/// Data: TSV with a header naming `label` and `text_a` (and `text_b` for pairs); labels
/// 0..n-1 (n counted from --train). Model: the encoder + UER's classifier head (pooling →
/// linear → tanh → linear), UER's AdamW (no bias correction) with linear warmup and decay.
/// After each epoch: dev accuracy; the best epoch's weights are kept, tested on --test and
/// written to --output (a UER classifier `.bin` that UER-py's run_classifier_infer loads, or
/// with --format hf a `BertForSequenceClassification` directory).
///
/// With --grid, --learning-rate/--batch-size/--epochs take comma-separated lists; every
/// combination is trained and a table sorted by dev accuracy is printed (nothing is saved).
///
/// Example: uerzoo finetune ./roberta/uer_model.bin --train train.tsv --dev dev.tsv --test test.tsv --learning-rate 3e-4 --output classifier.bin
///
/// Example: uerzoo finetune chinese_roberta_L-2_H-128 --train train.tsv --dev dev.tsv --grid --learning-rate 3e-5,1e-4,3e-4 --batch-size 32,64 --epochs 3,5,8
#[derive(clap::Args)]
pub struct Args {
    /// A UER `.bin`, a Huggingface model directory or a registry name.
    model: PathBuf,
    /// Training TSV.
    #[arg(long)]
    train: PathBuf,
    /// Development TSV (accuracy after every epoch; picks the best epoch).
    #[arg(long)]
    dev: PathBuf,
    /// Test TSV (accuracy of the best epoch's model).
    #[arg(long)]
    test: Option<PathBuf>,
    /// UER-py config JSON of the weights (default: beside them).
    #[arg(long)]
    config: Option<PathBuf>,
    /// `vocab.txt` or sentencepiece `.model`, told by content (`--spm` is the same flag);
    /// default: the one beside the weights.
    #[arg(long, visible_alias = "spm")]
    vocab: Option<PathBuf>,
    /// Epochs (a list with --grid).
    #[arg(long, value_delimiter = ',', default_value = "3")]
    epochs: Vec<usize>,
    /// Batch size (a list with --grid).
    #[arg(long, value_delimiter = ',', default_value = "32")]
    batch_size: Vec<usize>,
    /// Peak learning rate (a list with --grid).
    #[arg(long, value_delimiter = ',', default_value = "2e-5")]
    learning_rate: Vec<f64>,
    /// Tokens per example (cut or padded).
    #[arg(long, default_value_t = 128)]
    seq_length: usize,
    /// first, mean, max or last (over the real tokens). Default: last for a causal model
    /// (GPT-2, `mask: causal`: under the causal mask only the last token sees the whole
    /// text, `first` sees `[CLS]` alone), first otherwise. --format hf takes first only
    /// (the HF classifier pools `[CLS]`).
    #[arg(long)]
    pooling: Option<Pooling>,
    /// How a long example is cut to --seq-length: uer (UER-py: `[CLS] a [SEP]` cut at the
    /// length, the final `[SEP]` can go) or hf (transformers: the text cut, `[SEP]` kept).
    /// Default: the model's (a `truncation` in its UER config; else hf for a Huggingface
    /// folder, uer for a UER file). Recorded in the output's config (UER config or HF
    /// `config.json`) for `predict` and `serve`.
    #[arg(long)]
    truncation: Option<Truncation>,
    /// Fraction of the steps with a rising learning rate.
    #[arg(long, default_value_t = 0.1)]
    warmup: f64,
    /// Dropout during training.
    #[arg(long, default_value_t = 0.1)]
    dropout: f64,
    /// Seed of the shuffling, the head's init and dropout.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// `cpu`, `cuda[:N]` (a build with `--features cuda`), `wgpu[:N]` (`--features wgpu`;
    /// N counts the adapters wgpu lists) or `auto`: the first CUDA device, else the first
    /// wgpu GPU (never a software one), else the CPU; it notes which.
    #[arg(long, default_value = "cpu", value_parser = super::device_arg)]
    device: DeviceSpec,
    /// Output: a `.bin` (--format uer) or a directory (--format hf). Required without --grid.
    #[arg(long, required_unless_present = "grid")]
    output: Option<PathBuf>,
    /// uer or hf.
    #[arg(long, default_value = "uer")]
    format: OutputFormat,
    /// UER naming of the output's keys. Every command writes UER files in naming v1 (the
    /// zoo's, UER-py ≤2022), whatever the input's, unless given `--uer-naming v2` (2023+).
    #[arg(long, default_value = "v1")]
    uer_naming: Naming,
    /// Search every combination of the listed values.
    #[arg(long)]
    grid: bool,
    /// Overwrite the output if it exists.
    #[arg(long)]
    force: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let task = FinetuneTask {
        model: a.model,
        config: a.config,
        vocab: a.vocab,
        train: a.train,
        dev: a.dev,
        test: a.test,
        epochs: a.epochs,
        batch_size: a.batch_size,
        learning_rate: a.learning_rate,
        seq_length: a.seq_length,
        pooling: a.pooling,
        truncation: a.truncation,
        warmup: a.warmup,
        dropout: a.dropout,
        seed: a.seed,
        device: a.device,
        output: a.output,
        format: a.format,
        naming: a.uer_naming,
        grid: a.grid,
        force: a.force,
    };
    let progress = super::Noted(super::Bar::new("batches"));
    match finetune::run(&task, &progress, &mut show)? {
        FinetuneReport::Trained { result, saved } => {
            let what = match saved.format {
                OutputFormat::Hf => format!("{} files, {}", saved.hf_files, saved.hf_architecture),
                OutputFormat::Uer => format!("UER classifier, naming {}", saved.naming),
            };
            println!("wrote {} ({what})", saved.output.display());
            super::show_written(&saved.companions);
            let s = result.seconds;
            println!("wall time: {s:.1} s (training and evaluation)");
        }
        FinetuneReport::Grid(rows) => {
            println!("\nlr          batch  epochs  dev acc  test acc");
            for r in &rows {
                let test = r.test.map_or("-".to_string(), |t| format!("{t:.4}"));
                let lr = format!("{:.0e}", r.point.learning_rate);
                let (bs, ep, dev) = (r.point.batch_size, r.point.epochs, r.best_dev);
                println!("{lr:<10} {bs:>6} {ep:>7} {dev:>8.4} {test:>9}");
            }
            if let Some(b) = rows.first() {
                let (p, dev) = (b.point, b.best_dev);
                let (lr, bs, ep) = (p.learning_rate, p.batch_size, p.epochs);
                println!(
                    "best: --learning-rate {lr:e} --batch-size {bs} --epochs {ep}  dev acc {dev:.4}"
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Shows a milestone of the run as it happens.
fn show(e: FinetuneEvent<'_>) {
    match e {
        FinetuneEvent::Data(d) => {
            let (train, dev, labels, seq) = (d.train.len(), d.dev.len(), d.labels_num, d.train.seq);
            eprintln!("{train} train / {dev} dev rows, {labels} labels, seq {seq}")
        }
        FinetuneEvent::Epoch(r) => print_epoch(r),
        FinetuneEvent::Trained(r) => {
            println!("best epoch {}  dev acc {:.4}", r.best_epoch, r.best_dev);
            if let Some(t) = &r.test {
                let acc = t.accuracy();
                println!("test accuracy: {acc:.4} ({}/{})", t.correct, t.total);
            }
        }
        FinetuneEvent::Grid { settings } => eprintln!("grid: {settings} settings"),
        FinetuneEvent::GridRun(done, total, r) => {
            let (p, dev, s) = (r.point, r.best_dev, r.seconds);
            let (lr, bs, ep) = (p.learning_rate, p.batch_size, p.epochs);
            let best = r.best_epoch;
            println!(
                "run {done}/{total}  lr {lr:.0e}  batch {bs}  epochs {ep}  dev acc {dev:.4} (epoch {best})  {s:.1} s"
            );
        }
    }
}

fn print_epoch(r: &EpochReport) {
    let best = if r.improved { "  (best so far)" } else { "" };
    let (e, n, loss, acc, s) = (r.epoch, r.epochs, r.loss, r.dev.accuracy(), r.seconds);
    let (c, t) = (r.dev.correct, r.dev.total);
    println!("epoch {e}/{n}  loss {loss:.4}  dev acc {acc:.4} ({c}/{t})  {s:.1} s{best}");
    if r.dev.confusion.len() > 2 {
        for (label, s) in r.dev.per_class().iter().enumerate() {
            let (p, r, f) = (s.precision, s.recall, s.f1);
            println!("  label {label}: precision {p:.3}  recall {r:.3}  f1 {f:.3}");
        }
    }
}
