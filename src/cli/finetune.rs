//! `uerzoo finetune`: fine-tune a zoo model on a classification TSV (UER-py's
//! run_classifier), or search a grid of hyper-parameters (run_classifier_grid).

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use uerzoo::convert::{Naming, Source};
use uerzoo::model::{self, DeviceSpec, Pooling};
use uerzoo::tokenizer::Truncation;
use uerzoo::train::{self, Dataset, EpochReport, FinetuneOptions, TaskData, save};

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
    #[arg(long, default_value = "uer", value_parser = ["uer", "hf"])]
    format: String,
    /// UER naming of the output's encoder keys: v1 (UER-py ≤2022, the zoo) or v2 (default:
    /// the input's naming; v1 for HF inputs).
    #[arg(long)]
    uer_naming: Option<Naming>,
    /// Search every combination of the listed values.
    #[arg(long)]
    grid: bool,
    /// Overwrite the output if it exists.
    #[arg(long)]
    force: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !(a.grid && a.output.is_some()),
        "--grid compares settings and saves no model (as run_classifier_grid); drop --output, then fine-tune once with the best settings it prints"
    );
    if let Some(p) = a
        .pooling
        .filter(|p| a.format == "hf" && *p != Pooling::First)
    {
        anyhow::bail!(
            "--pooling {p} --format hf: the Huggingface classifier (BertForSequenceClassification, AlbertForSequenceClassification) pools the first token ([CLS]) only; drop --pooling (or use --pooling first), or keep --pooling {p} with --format uer"
        );
    }
    if let Some(output) = &a.output {
        check_output(output, &a)?;
    }
    let opened = uerzoo::resolve::open_model(&a.model, a.config.as_deref())?;
    let causal = opened.config.mask == model::MaskKind::Causal;
    if a.format == "hf" && causal {
        anyhow::bail!(
            "--format hf: a GPT-2 classifier has no Huggingface form (transformers has no class with UER's pooled head on GPT-2); use --format uer"
        );
    }
    let pooling = a.pooling.unwrap_or(if causal {
        Pooling::Last
    } else {
        Pooling::First
    });
    if causal && pooling == Pooling::First {
        eprintln!(
            "warning: --pooling first on a causal model (GPT-2): under the causal mask the first token sees only [CLS], so every example gets the same prediction; drop --pooling (default last) or use --pooling last"
        );
    }
    let tok = uerzoo::resolve::open_tokenizer(&opened, a.vocab.as_deref())?;
    let truncation = match a.truncation {
        Some(t) => t,
        None => opened.truncation()?,
    };
    let data = load_data(&a, &tok, truncation)?;
    let base = FinetuneOptions {
        epochs: a.epochs[0],
        batch_size: a.batch_size[0],
        learning_rate: a.learning_rate[0],
        warmup: a.warmup,
        dropout: a.dropout,
        seed: a.seed,
        pooling,
        ..Default::default()
    };
    if a.grid {
        return run_grid(&a, &opened, &data, &base);
    }
    let single = a.epochs.len() == 1 && a.batch_size.len() == 1 && a.learning_rate.len() == 1;
    anyhow::ensure!(
        single,
        "lists of --epochs/--batch-size/--learning-rate need --grid"
    );
    let output = a.output.clone().context("--output is required")?;
    eprintln!(
        "{} train / {} dev rows, {} labels, seq {}",
        data.train.len(),
        data.dev.len(),
        data.labels_num,
        a.seq_length
    );
    let result = train::finetune(
        &opened,
        &data,
        &base,
        a.device,
        &super::Bar::new("batches"),
        &mut print_epoch,
    )?;
    println!(
        "best epoch {}  dev acc {:.4}",
        result.best_epoch, result.best_dev
    );
    if let Some(t) = &result.test {
        println!(
            "test accuracy: {:.4} ({}/{})",
            t.accuracy(),
            t.correct,
            t.total
        );
    }
    let recorded = Recorded {
        truncation,
        pooling,
    };
    save_or_rescue(&a, &opened, &result.checkpoint, &output, recorded)?;
    println!(
        "wall time: {:.1} s (training and evaluation)",
        result.seconds
    );
    Ok(ExitCode::SUCCESS)
}

fn load_data(
    a: &Args,
    tok: &uerzoo::tokenizer::Tokenizer,
    truncation: Truncation,
) -> anyhow::Result<TaskData> {
    let train = Dataset::read(&a.train, true)?;
    let dev = Dataset::read(&a.dev, true)?;
    let test = a
        .test
        .as_deref()
        .map(|p| Dataset::read(p, true))
        .transpose()?;
    let labels_num = train.labels_num()?;
    dev.check_labels(labels_num)?;
    if let Some(t) = &test {
        t.check_labels(labels_num)?;
    }
    let enc = |d: &Dataset| d.encode_with(tok, a.seq_length, truncation);
    Ok(TaskData {
        train: enc(&train),
        dev: enc(&dev),
        test: test.as_ref().map(enc),
        labels_num,
    })
}

/// Before any loading or training: the output can be written (the one `--force` rule).
fn check_output(output: &Path, a: &Args) -> anyhow::Result<()> {
    for input in [&a.model, &a.train, &a.dev] {
        uerzoo::output::check_not_input(output, input, "an input")?;
    }
    if a.format == "hf" {
        uerzoo::output::check_dir(output, a.force)?;
    } else {
        uerzoo::output::check_file(output, a.force)?;
    }
    Ok(())
}

/// The reading options the trained model was fine-tuned with, recorded in its config (the
/// UER config beside a `.bin`, the HF folder's `config.json`) for `predict` and `serve`.
#[derive(Clone, Copy)]
struct Recorded {
    truncation: Truncation,
    pooling: Pooling,
}

/// Writes the trained model; when that fails, the model is not lost: it goes beside the
/// output as a plain UER checkpoint (naming v2) and the error says where.
fn save_or_rescue(
    a: &Args,
    opened: &model::open::OpenedModel,
    ckpt: &uerzoo::checkpoint::Checkpoint,
    output: &Path,
    recorded: Recorded,
) -> anyhow::Result<()> {
    let Err(e) = write_output(a, opened, ckpt, output, recorded) else {
        return Ok(());
    };
    let name = output
        .file_name()
        .map_or("model".into(), |n| n.to_string_lossy().into_owned());
    let rescue = [uerzoo::output::parent_dir(output), Path::new(".")]
        .iter()
        .map(|d| d.join(format!("{name}.rescued-{}.bin", std::process::id())))
        .find(|p| ckpt.write_torch(p, false).is_ok());
    match rescue {
        Some(p) => {
            // Its config (with the reading options) and vocabulary beside it, so that
            // `uerzoo predict RESCUED` needs no flag; a failure here leaves the weights saved.
            let beside = uer_companions(a, opened, recorded)
                .and_then(|(config, vocab)| super::write_beside(&p, config, vocab));
            let how = match beside {
                Ok(()) => {
                    "`uerzoo predict` reads it as it is (its config and vocabulary are beside it)"
                        .to_string()
                }
                Err(why) => format!(
                    "its config and vocabulary could not be written beside it ({why:#}): pass `uerzoo predict` the --config, --vocab, --seq-length and --pooling used here"
                ),
            };
            Err(e.context(format!(
                "the trained model is saved in {} (UER naming v2, the classifier keys of run_classifier); {how}",
                p.display()
            )))
        }
        None => Err(e.context("the trained model could not be saved anywhere")),
    }
}

fn print_epoch(r: &EpochReport) {
    let best = if r.improved { "  (best so far)" } else { "" };
    println!(
        "epoch {}/{}  loss {:.4}  dev acc {:.4} ({}/{})  {:.1} s{best}",
        r.epoch,
        r.epochs,
        r.loss,
        r.dev.accuracy(),
        r.dev.correct,
        r.dev.total,
        r.seconds
    );
    if r.dev.confusion.len() > 2 {
        for (label, s) in r.dev.per_class().iter().enumerate() {
            println!(
                "  label {label}: precision {:.3}  recall {:.3}  f1 {:.3}",
                s.precision, s.recall, s.f1
            );
        }
    }
}

fn write_output(
    a: &Args,
    opened: &model::open::OpenedModel,
    ckpt: &uerzoo::checkpoint::Checkpoint,
    output: &Path,
    recorded: Recorded,
) -> anyhow::Result<()> {
    if a.format == "hf" {
        // The model's own hyper-parameters (whatever spelling its config file used: an HF
        // `config.json` read as a UER config would give UER's defaults).
        let c = &opened.config;
        let uer_config = Some(uerzoo::registry::UerConfig {
            emb_size: c.emb_size,
            hidden_size: c.hidden_size,
            feedforward_size: c.feedforward_size,
            heads_num: c.heads_num,
            layers_num: c.layers_num,
            max_seq_length: c.max_seq_length,
            dropout: c.dropout,
            hidden_act: c.activation.uer_name().to_string(),
            factorized_embedding_parameterization: c.factorized_embedding,
            parameter_sharing: c.parameter_sharing,
            ..Default::default()
        });
        let vocab = a.vocab.clone().or_else(|| opened.vocab_file());
        // The reading options go into `config.json`, where `predict` and `serve` find them
        // (as the UER output's config below).
        let mut options = serde_json::Map::new();
        options.insert("seq_length".into(), a.seq_length.into());
        options.insert("pooling".into(), recorded.pooling.to_string().into());
        options.insert("truncation".into(), recorded.truncation.to_string().into());
        let files = save::save_hf(ckpt, output, uer_config, vocab, &options, a.force)?;
        let class = uerzoo::convert::family::detect(ckpt)
            .map_or("classifier", |d| d.family.hf_architecture());
        println!(
            "wrote {} ({} files, {class})",
            output.display(),
            files.len()
        );
        return Ok(());
    }
    let naming = a.uer_naming.unwrap_or(match opened.source {
        Source::Uer(n) => n,
        Source::Hf => Naming::V1,
    });
    save::save_uer(ckpt, naming, output, a.force)
        .with_context(|| format!("writing {}", output.display()))?;
    println!(
        "wrote {} (UER classifier, naming {naming})",
        output.display()
    );
    // `uerzoo predict OUT` finds its config and vocabulary beside it.
    let (config, vocab) = uer_companions(a, opened, recorded)?;
    super::write_beside(output, config, vocab)
}

/// The config and vocabulary written beside a UER output (or a rescued model): the config
/// gets the options `predict` needs to read examples as training did (UER-py keeps training
/// options in the same JSON).
fn uer_companions(
    a: &Args,
    opened: &model::open::OpenedModel,
    recorded: Recorded,
) -> anyhow::Result<(Option<super::Companion>, Option<PathBuf>)> {
    let vocab = a.vocab.clone().or_else(|| opened.vocab_file());
    let config = match source_config(a, opened) {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let mut json: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", path.display()))?;
            match json.as_object_mut() {
                // An HF `config.json` (a model fine-tuned from an HF folder) keeps its
                // spelling; the training options are added all the same.
                Some(obj) => {
                    obj.insert("seq_length".into(), a.seq_length.into());
                    obj.insert("pooling".into(), recorded.pooling.to_string().into());
                    obj.insert("truncation".into(), recorded.truncation.to_string().into());
                    let text = serde_json::to_string_pretty(&json)? + "\n";
                    Some(super::Companion::Made(text))
                }
                None => Some(path.into()),
            }
        }
        None => None,
    };
    Ok((config, vocab))
}

/// The UER config file the weights were opened with.
fn source_config(a: &Args, opened: &model::open::OpenedModel) -> Option<PathBuf> {
    a.config.clone().or_else(|| {
        ["uer_config.json", "config.json"]
            .iter()
            .map(|n| opened.dir.join(n))
            .find(|p| p.is_file())
    })
}

fn run_grid(
    a: &Args,
    opened: &model::open::OpenedModel,
    data: &TaskData,
    base: &FinetuneOptions,
) -> anyhow::Result<ExitCode> {
    let points = train::grid_points(&a.learning_rate, &a.batch_size, &a.epochs);
    eprintln!("grid: {} settings", points.len());
    let (total, mut done) = (points.len(), 0);
    let rows = train::grid(
        opened,
        data,
        base,
        &points,
        a.device,
        &super::Bar::new("batches"),
        &mut |r| {
            done += 1;
            println!(
                "run {done}/{total}  lr {:.0e}  batch {}  epochs {}  dev acc {:.4} (epoch {})  {:.1} s",
                r.point.learning_rate,
                r.point.batch_size,
                r.point.epochs,
                r.best_dev,
                r.best_epoch,
                r.seconds
            );
        },
    )?;
    println!(
        "\n{:<10} {:>6} {:>7} {:>8} {:>9}",
        "lr", "batch", "epochs", "dev acc", "test acc"
    );
    for r in &rows {
        let test = r.test.map_or("-".to_string(), |t| format!("{t:.4}"));
        println!(
            "{:<10} {:>6} {:>7} {:>8.4} {:>9}",
            format!("{:.0e}", r.point.learning_rate),
            r.point.batch_size,
            r.point.epochs,
            r.best_dev,
            test
        );
    }
    if let Some(b) = rows.first() {
        println!(
            "best: --learning-rate {:e} --batch-size {} --epochs {}  dev acc {:.4}",
            b.point.learning_rate, b.point.batch_size, b.point.epochs, b.best_dev
        );
    }
    Ok(ExitCode::SUCCESS)
}
