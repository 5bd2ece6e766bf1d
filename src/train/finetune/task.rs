//! `uerzoo finetune` as one library call: [`run`] takes a [`FinetuneTask`] (what the
//! command line says), checks the output, opens the model and tokenizer, reads the TSVs,
//! trains (or searches a grid), and writes the model with its companions, or rescues it
//! when the output cannot be written. It never prints: batches go to a
//! [`Progress`], notes (warnings) to [`Progress::note`], the milestones a user follows
//! (data read, each epoch, each grid run, training done) to a [`FinetuneEvent`] callback.

use super::{EpochReport, FinetuneOptions, FinetuneResult, GridRow, TaskData, grid, grid_points};
use crate::checkpoint::Checkpoint;
use crate::convert::Naming;
use crate::model::open::OpenedModel;
use crate::model::{DeviceSpec, MaskKind, Pooling};
use crate::output::{Companion, Written};
use crate::progress::Progress;
use crate::tokenizer::{Tokenizer, Truncation};
use crate::train::{Dataset, TrainError, save};
use std::path::{Path, PathBuf};

/// The form of a fine-tuned classifier on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// A UER `.bin` with run_classifier's keys, config and vocabulary beside it.
    #[default]
    Uer,
    /// A Huggingface `…ForSequenceClassification` directory.
    Hf,
}

impl std::str::FromStr for OutputFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "uer" => Ok(OutputFormat::Uer),
            "hf" => Ok(OutputFormat::Hf),
            _ => Err(format!("`{s}` is not a format: use uer or hf")),
        }
    }
}

/// Everything `uerzoo finetune` is told (defaults: the command's).
#[derive(Debug, Clone)]
pub struct FinetuneTask {
    /// A UER `.bin`, a Huggingface directory or a registry name.
    pub model: PathBuf,
    /// UER config of the weights (default: beside them).
    pub config: Option<PathBuf>,
    /// `vocab.txt` or sentencepiece `.model` (default: beside the weights).
    pub vocab: Option<PathBuf>,
    pub train: PathBuf,
    pub dev: PathBuf,
    pub test: Option<PathBuf>,
    /// One value each, or lists with `grid`.
    pub epochs: Vec<usize>,
    pub batch_size: Vec<usize>,
    pub learning_rate: Vec<f64>,
    pub seq_length: usize,
    /// Default: last for a causal model, first otherwise.
    pub pooling: Option<Pooling>,
    /// Default: the model's.
    pub truncation: Option<Truncation>,
    pub warmup: f64,
    pub dropout: f64,
    pub seed: u64,
    pub device: DeviceSpec,
    /// Required unless `grid`.
    pub output: Option<PathBuf>,
    pub format: OutputFormat,
    /// Key names of a UER output: v1 (the zoo's, UER-py ≤ 2022) unless asked for v2.
    pub naming: Naming,
    /// Train every combination of the lists and save nothing.
    pub grid: bool,
    /// Replace an existing output.
    pub force: bool,
}

impl FinetuneTask {
    /// Fine-tunes `model` on `train`, picking the best epoch on `dev`, with the command's
    /// defaults (3 epochs, batch 32, learning rate 2e-5, 128 tokens, CPU) and no output.
    pub fn new(
        model: impl Into<PathBuf>,
        train: impl Into<PathBuf>,
        dev: impl Into<PathBuf>,
    ) -> Self {
        let d = FinetuneOptions::default();
        FinetuneTask {
            model: model.into(),
            config: None,
            vocab: None,
            train: train.into(),
            dev: dev.into(),
            test: None,
            epochs: vec![d.epochs],
            batch_size: vec![d.batch_size],
            learning_rate: vec![d.learning_rate],
            seq_length: 128,
            pooling: None,
            truncation: None,
            warmup: d.warmup,
            dropout: d.dropout,
            seed: d.seed,
            device: DeviceSpec::Cpu,
            output: None,
            format: OutputFormat::Uer,
            naming: Naming::V1,
            grid: false,
            force: false,
        }
    }
}

/// A milestone of [`run`], as it happens.
#[derive(Debug)]
pub enum FinetuneEvent<'a> {
    /// The TSVs are read and encoded; training starts.
    Data(&'a TaskData),
    /// An epoch ended.
    Epoch(&'a EpochReport),
    /// Training ended (before the model is written).
    Trained(&'a FinetuneResult),
    /// A grid of `settings` runs starts.
    Grid { settings: usize },
    /// Run `.0` of `.1` of the grid ended.
    GridRun(usize, usize, &'a GridRow),
}

/// Where the fine-tuned model went.
#[derive(Debug, Clone)]
pub struct Saved {
    pub output: PathBuf,
    pub format: OutputFormat,
    /// The UER output's key names.
    pub naming: Naming,
    /// The HF output's files and architecture (`BertForSequenceClassification`, …).
    pub hf_files: usize,
    pub hf_architecture: &'static str,
    /// Config and vocabulary written beside a UER output.
    pub companions: Vec<Written>,
}

/// What [`run`] did.
#[derive(Debug, Clone)]
pub enum FinetuneReport {
    /// One training, saved.
    Trained {
        result: Box<FinetuneResult>,
        saved: Saved,
    },
    /// A grid, sorted by dev accuracy (best first); nothing saved.
    Grid(Vec<GridRow>),
}

/// The reading options the trained model was fine-tuned with, recorded in its config (the
/// UER config beside a `.bin`, the HF folder's `config.json`) for `predict` and `serve`.
#[derive(Clone, Copy)]
struct Recorded {
    seq_length: usize,
    truncation: Truncation,
    pooling: Pooling,
}

impl Recorded {
    fn insert_into(&self, obj: &mut serde_json::Map<String, serde_json::Value>) {
        obj.insert("seq_length".into(), self.seq_length.into());
        obj.insert("pooling".into(), self.pooling.to_string().into());
        obj.insert("truncation".into(), self.truncation.to_string().into());
    }
}

/// Does what `uerzoo finetune` does: see the module documentation.
pub fn run(
    task: &FinetuneTask,
    progress: &dyn Progress,
    on_event: &mut dyn FnMut(FinetuneEvent<'_>),
) -> Result<FinetuneReport, TrainError> {
    let hf = task.format == OutputFormat::Hf;
    if task.grid && task.output.is_some() {
        return Err(TrainError::Options(
            "--grid compares settings and saves no model (as run_classifier_grid); drop --output, then fine-tune once with the best settings it prints".into(),
        ));
    }
    if let Some(p) = task.pooling.filter(|p| hf && *p != Pooling::First) {
        return Err(TrainError::Options(format!(
            "--pooling {p} --format hf: the Huggingface classifier (BertForSequenceClassification, AlbertForSequenceClassification) pools the first token ([CLS]) only; drop --pooling (or use --pooling first), or keep --pooling {p} with --format uer"
        )));
    }
    let single =
        task.epochs.len() == 1 && task.batch_size.len() == 1 && task.learning_rate.len() == 1;
    if !task.grid && !single {
        return Err(TrainError::Options(
            "lists of --epochs/--batch-size/--learning-rate need --grid".into(),
        ));
    }
    if task.epochs.is_empty() || task.batch_size.is_empty() || task.learning_rate.is_empty() {
        return Err(TrainError::Options(
            "--epochs, --batch-size and --learning-rate need a value each".into(),
        ));
    }
    let output = match (&task.output, task.grid) {
        (Some(output), _) => Some(output.as_path()),
        (None, true) => None,
        (None, false) => {
            return Err(TrainError::Options(
                "--output is required (or --grid)".into(),
            ));
        }
    };
    if let Some(output) = output {
        check_output(task, output)?;
    }
    let opened = crate::resolve::open_model(&task.model, task.config.as_deref())?;
    let causal = opened.config.mask == MaskKind::Causal;
    if hf && causal {
        return Err(TrainError::Options(
            "--format hf: a GPT-2 classifier has no Huggingface form (transformers has no class with UER's pooled head on GPT-2); use --format uer".into(),
        ));
    }
    let pooling = task.pooling.unwrap_or(if causal {
        Pooling::Last
    } else {
        Pooling::First
    });
    if causal && pooling == Pooling::First {
        progress.note(
            "warning: --pooling first on a causal model (GPT-2): under the causal mask the first token sees only [CLS], so every example gets the same prediction; drop --pooling (default last) or use --pooling last",
        );
    }
    let tok = crate::resolve::open_tokenizer(&opened, task.vocab.as_deref())?;
    let truncation = match task.truncation {
        Some(t) => t,
        None => opened.truncation()?,
    };
    let data = load_data(task, &tok, truncation)?;
    let base = FinetuneOptions {
        epochs: task.epochs[0],
        batch_size: task.batch_size[0],
        learning_rate: task.learning_rate[0],
        warmup: task.warmup,
        dropout: task.dropout,
        seed: task.seed,
        pooling,
        ..Default::default()
    };
    let Some(output) = output else {
        let points = grid_points(&task.learning_rate, &task.batch_size, &task.epochs);
        let total = points.len();
        on_event(FinetuneEvent::Grid { settings: total });
        let mut done = 0;
        let rows = grid(
            &opened,
            &data,
            &base,
            &points,
            task.device,
            progress,
            &mut |row| {
                done += 1;
                on_event(FinetuneEvent::GridRun(done, total, row));
            },
        )?;
        return Ok(FinetuneReport::Grid(rows));
    };
    on_event(FinetuneEvent::Data(&data));
    let result = super::finetune(&opened, &data, &base, task.device, progress, &mut |r| {
        on_event(FinetuneEvent::Epoch(r))
    })?;
    on_event(FinetuneEvent::Trained(&result));
    let recorded = Recorded {
        seq_length: task.seq_length,
        truncation,
        pooling,
    };
    let saved = save_or_rescue(task, &opened, &result.checkpoint, output, recorded)?;
    Ok(FinetuneReport::Trained {
        result: Box::new(result),
        saved,
    })
}

/// Reads and encodes the train, dev and test TSVs; labels are counted from the train file.
fn load_data(
    task: &FinetuneTask,
    tok: &Tokenizer,
    truncation: Truncation,
) -> Result<TaskData, TrainError> {
    let train = Dataset::read(&task.train, true)?;
    let dev = Dataset::read(&task.dev, true)?;
    let test = task
        .test
        .as_deref()
        .map(|p| Dataset::read(p, true))
        .transpose()?;
    let labels_num = train.labels_num()?;
    dev.check_labels(labels_num)?;
    if let Some(t) = &test {
        t.check_labels(labels_num)?;
    }
    let enc = |d: &Dataset| d.encode_with(tok, task.seq_length, truncation);
    Ok(TaskData {
        train: enc(&train),
        dev: enc(&dev),
        test: test.as_ref().map(enc),
        labels_num,
    })
}

/// Before any loading or training: the output can be written (the one `--force` rule).
fn check_output(task: &FinetuneTask, output: &Path) -> Result<(), TrainError> {
    for input in [&task.model, &task.train, &task.dev] {
        crate::output::check_not_input(output, input, "an input")?;
    }
    match task.format {
        OutputFormat::Hf => crate::output::check_dir(output, task.force)?,
        OutputFormat::Uer => crate::output::check_file(output, task.force)?,
    }
    Ok(())
}

/// Writes the trained model; when that fails, the model is not lost: it goes beside the
/// output (else into the working folder) as a plain UER checkpoint (naming v2) with its
/// config and vocabulary, and the error says where.
fn save_or_rescue(
    task: &FinetuneTask,
    opened: &OpenedModel,
    ckpt: &Checkpoint,
    output: &Path,
    recorded: Recorded,
) -> Result<Saved, TrainError> {
    let e = match write_output(task, opened, ckpt, output, recorded) {
        Ok(saved) => return Ok(saved),
        Err(e) => e,
    };
    let name = output
        .file_name()
        .map_or("model".into(), |n| n.to_string_lossy().into_owned());
    let rescue = [crate::output::parent_dir(output), Path::new(".")]
        .iter()
        .map(|d| d.join(format!("{name}.rescued-{}.bin", std::process::id())))
        .find(|p| ckpt.write_torch(p, false).is_ok());
    let Some(p) = rescue else {
        return Err(e.context("the trained model could not be saved anywhere"));
    };
    // Its config (with the reading options) and vocabulary beside it, so that
    // `uerzoo predict RESCUED` needs no flag; a failure here leaves the weights saved.
    let beside = uer_companions(task, opened, recorded)
        .and_then(|(config, vocab)| Ok(crate::output::write_beside(&p, config, vocab)?));
    let how = match beside {
        Ok(_) => "`uerzoo predict` reads it as it is (its config and vocabulary are beside it)"
            .to_string(),
        Err(why) => format!(
            "its config and vocabulary could not be written beside it ({why}): pass `uerzoo predict` the --config, --vocab, --seq-length and --pooling used here"
        ),
    };
    Err(e.context(format!(
        "the trained model is saved in {} (UER naming v2, the classifier keys of run_classifier); {how}",
        p.display()
    )))
}

fn write_output(
    task: &FinetuneTask,
    opened: &OpenedModel,
    ckpt: &Checkpoint,
    output: &Path,
    recorded: Recorded,
) -> Result<Saved, TrainError> {
    let mut saved = Saved {
        output: output.to_path_buf(),
        format: task.format,
        naming: task.naming,
        hf_files: 0,
        hf_architecture: "classifier",
        companions: Vec::new(),
    };
    if task.format == OutputFormat::Hf {
        // The model's own hyper-parameters (whatever spelling its config file used: an HF
        // `config.json` read as a UER config would give UER's defaults).
        let c = &opened.config;
        let uer_config = Some(crate::registry::UerConfig {
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
        let vocab = task.vocab.clone().or_else(|| opened.vocab_file());
        // The reading options go into `config.json`, where `predict` and `serve` find them
        // (as the UER output's config below).
        let mut options = serde_json::Map::new();
        recorded.insert_into(&mut options);
        let files = save::save_hf(ckpt, output, uer_config, vocab, &options, task.force)?;
        saved.hf_files = files.len();
        saved.hf_architecture = crate::convert::family::detect(ckpt)
            .map_or("classifier", |d| d.family.hf_architecture());
        return Ok(saved);
    }
    save::save_uer(ckpt, task.naming, output, task.force)
        .map_err(|e| e.context(format!("writing {}", output.display())))?;
    // `uerzoo predict OUT` finds its config and vocabulary beside it.
    let (config, vocab) = uer_companions(task, opened, recorded)?;
    saved.companions = crate::output::write_beside(output, config, vocab)?;
    Ok(saved)
}

/// The config and vocabulary written beside a UER output (or a rescued model): the config
/// gets the options `predict` needs to read examples as training did (UER-py keeps training
/// options in the same JSON).
fn uer_companions(
    task: &FinetuneTask,
    opened: &OpenedModel,
    recorded: Recorded,
) -> Result<(Option<Companion>, Option<PathBuf>), TrainError> {
    let vocab = task.vocab.clone().or_else(|| opened.vocab_file());
    // The UER config file the weights were opened with.
    let source = task.config.clone().or_else(|| {
        ["uer_config.json", "config.json"]
            .iter()
            .map(|n| opened.dir.join(n))
            .find(|p| p.is_file())
    });
    let Some(path) = source else {
        return Ok((None, vocab));
    };
    let io = |source| TrainError::Io {
        path: path.clone(),
        source,
    };
    let invalid =
        |e: serde_json::Error| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
    let text = std::fs::read_to_string(&path).map_err(io)?;
    let mut json: serde_json::Value = serde_json::from_str(&text).map_err(invalid)?;
    let config = match json.as_object_mut() {
        // An HF `config.json` (a model fine-tuned from an HF folder) keeps its spelling;
        // the training options are added all the same.
        Some(obj) => {
            recorded.insert_into(obj);
            let text = serde_json::to_string_pretty(&json).map_err(invalid)? + "\n";
            Companion::Made(text)
        }
        None => Companion::File(path),
    };
    Ok((Some(config), vocab))
}
