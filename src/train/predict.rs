//! `uerzoo predict` as one library call: [`run`] takes a [`PredictTask`], opens the
//! classifier and its tokenizer, reads the examples as training did (the `seq_length`,
//! `pooling` and `truncation` that `finetune` records in the model's config, unless given),
//! labels every row (UER-py's run_classifier_infer) and writes the predictions TSV. It
//! never prints; the caller shows the [`PredictReport`].

use super::{Dataset, Predictions, TrainError, predict};
use crate::model::{DeviceSpec, Dtype, Pooling};
use crate::tokenizer::Truncation;
use std::io::Write;
use std::path::PathBuf;

/// Everything `uerzoo predict` is told.
#[derive(Debug, Clone)]
pub struct PredictTask {
    /// What `uerzoo finetune` wrote (a UER classifier `.bin`, an HF directory).
    pub model: PathBuf,
    /// TSV with a header naming `text_a` (and `text_b`).
    pub input: PathBuf,
    /// Where the predictions TSV goes (`None`: nothing is written, the predictions are
    /// returned only).
    pub output: Option<PathBuf>,
    /// The input has gold labels: measure the accuracy against them.
    pub labels: bool,
    /// Columns of the output beside `label`.
    pub probabilities: bool,
    pub logits: bool,
    /// Default: as in training (recorded in the model's config), else 128.
    pub seq_length: Option<usize>,
    /// Default: as in training, else first.
    pub pooling: Option<Pooling>,
    /// Default: as in training, else the model's.
    pub truncation: Option<Truncation>,
    /// Rows per forward pass.
    pub batch_size: usize,
    /// UER config (default: beside the weights).
    pub config: Option<PathBuf>,
    /// `vocab.txt` or sentencepiece `.model` (default: beside the weights).
    pub vocab: Option<PathBuf>,
    pub dtype: Dtype,
    pub device: DeviceSpec,
    /// Replace an existing output.
    pub force: bool,
}

impl PredictTask {
    /// Labels `input` with `model`, the command's defaults, nothing written.
    pub fn new(model: impl Into<PathBuf>, input: impl Into<PathBuf>) -> Self {
        PredictTask {
            model: model.into(),
            input: input.into(),
            output: None,
            labels: false,
            probabilities: false,
            logits: false,
            seq_length: None,
            pooling: None,
            truncation: None,
            batch_size: 64,
            config: None,
            vocab: None,
            dtype: Dtype::default(),
            device: DeviceSpec::Cpu,
            force: false,
        }
    }
}

/// What [`run`] did.
#[derive(Debug, Clone)]
pub struct PredictReport {
    pub predictions: Predictions,
    /// With `labels`: rows predicted right, and rows with a label.
    pub accuracy: Option<(usize, usize)>,
}

/// Does what `uerzoo predict` does: see the module documentation.
pub fn run(task: &PredictTask) -> Result<PredictReport, TrainError> {
    if let Some(output) = &task.output {
        crate::output::check_file(output, task.force)?;
        crate::output::check_not_input(output, &task.input, "--input")?;
    }
    let mut opened = crate::resolve::open_model(&task.model, task.config.as_deref())?;
    opened.config.dtype = task.dtype;
    let tok = crate::resolve::open_tokenizer(&opened, task.vocab.as_deref())?;
    let data = Dataset::read(&task.input, task.labels)?;
    let seq_length = match task.seq_length {
        Some(n) => n,
        None => opened
            .config_value("seq_length")
            .and_then(|v| v.as_u64())
            .map_or(128, |n| n as usize),
    };
    let pooling = match task.pooling {
        Some(p) => p,
        None => opened.pooling()?,
    };
    let truncation = match task.truncation {
        Some(t) => t,
        None => opened.truncation()?,
    };
    let encoded = data.encode_with(&tok, seq_length, truncation);
    let pred = predict(&opened, &encoded, pooling, task.batch_size, task.device)?;
    if let Some(output) = &task.output {
        write_tsv(task, &pred, output)?;
    }
    let accuracy = task.labels.then(|| {
        let gold: Vec<usize> = data.examples.iter().filter_map(|e| e.label).collect();
        let correct = gold
            .iter()
            .zip(&pred.labels)
            .filter(|(g, p)| g == p)
            .count();
        (correct, gold.len())
    });
    Ok(PredictReport {
        predictions: pred,
        accuracy,
    })
}

/// The predictions as UER-py writes them: a header, then per row the `label` and, when
/// asked for, the `logits` and `prob` columns (values space-separated).
fn write_tsv(
    task: &PredictTask,
    pred: &Predictions,
    output: &std::path::Path,
) -> Result<(), TrainError> {
    let join = |v: &[f32]| {
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut text = String::from("label");
    text += if task.logits { "\tlogits" } else { "" };
    text += if task.probabilities { "\tprob\n" } else { "\n" };
    for i in 0..pred.labels.len() {
        text += &pred.labels[i].to_string();
        if task.logits {
            text += &format!("\t{}", join(&pred.logits[i]));
        }
        if task.probabilities {
            text += &format!("\t{}", join(&pred.probabilities[i]));
        }
        text.push('\n');
    }
    let dir = crate::output::parent_dir(output);
    let io = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| TrainError::Io { path, source }
    };
    let mut tmp = crate::output::Partial::new_in(dir).map_err(io(dir))?;
    tmp.write_all(text.as_bytes())
        .and_then(|()| Ok(tmp.persist(output, task.force)?))
        .map_err(io(output))
}
