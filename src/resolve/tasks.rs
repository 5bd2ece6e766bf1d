//! The commands `fill-mask`, `forward` and `extract-features`, each as one call taking a
//! plain job struct: [`fill_mask_text`], [`forward_file`], [`extract_file`]. Each opens the
//! weights and the tokenizer ([`super::open_model`], [`super::open_tokenizer`]), checks the
//! output before loading, reads its input, runs [`crate::model::tasks`] and writes its output atomically; it prints nothing
//! (notes reach the caller through a callback, results come back as data).

use super::{TokenizerOpenError, VocabOrigin};
use crate::checkpoint::{Checkpoint, Tensor};
use crate::model::tasks::{self, Batch};
use crate::model::{DeviceSpec, Dtype, ModelError, Pooling};
use crate::output::OutputError;
use crate::tokenizer::MASK_TOKEN;
use std::path::PathBuf;

/// Everything that can stop a job of this module.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerOpenError),
    #[error(transparent)]
    Output(#[from] OutputError),
    /// Reading or writing a file failed; `what` names the file, `source` says why.
    #[error("{what}")]
    File {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An input that cannot work; the message says why and what to do.
    #[error("{0}")]
    Invalid(String),
}

fn file_error(what: String) -> impl FnOnce(crate::checkpoint::CheckpointError) -> TaskError {
    move |e| TaskError::File {
        what,
        source: Box::new(e),
    }
}

/// `fill-mask`: the tokens behind each `[MASK]` of a text.
#[derive(Debug, Clone)]
pub struct FillMaskJob {
    /// A UER `.bin`, a Huggingface directory or a registry name.
    pub model: PathBuf,
    /// Text with one or more `[MASK]`.
    pub text: String,
    /// Candidates per mask.
    pub top_k: usize,
    pub config: Option<PathBuf>,
    pub vocab: Option<PathBuf>,
    pub dtype: Dtype,
    pub device: DeviceSpec,
}

/// One candidate for a mask: the token, its probability and the text with it in place.
#[derive(Debug, Clone, PartialEq)]
pub struct FilledCandidate {
    pub id: u32,
    /// The vocabulary's token (`[UNK]` for an id outside it).
    pub token: String,
    /// Softmax probability over the vocabulary.
    pub score: f32,
    /// The text with its first `[MASK]` replaced by the token (without its `##`).
    pub filled: String,
}

/// The candidates of one `[MASK]`.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskPrediction {
    /// Its position in `[CLS] … [SEP]`.
    pub position: usize,
    /// Best first.
    pub candidates: Vec<FilledCandidate>,
}

/// What [`fill_mask_text`] found, one entry per `[MASK]` in text order.
#[derive(Debug, Clone, PartialEq)]
pub struct FillMaskReport {
    pub masks: Vec<MaskPrediction>,
}

/// Runs `fill-mask`: the text is tokenized with the special tokens kept whole, wrapped in
/// `[CLS] … [SEP]` (segment 1), and each mask's `top_k` candidates come back best first.
/// `on_note` receives the notes (a built-in vocabulary) and the warnings (text outside the
/// vocabulary) as lines for the user.
pub fn fill_mask_text(
    job: FillMaskJob,
    on_note: &mut dyn FnMut(&str),
) -> Result<FillMaskReport, TaskError> {
    let mut opened = super::open_model(&job.model, job.config.as_deref())?;
    opened.config.dtype = job.dtype;
    let (tok, vocab) = super::open_tokenizer_with_origin(&opened, job.vocab.as_deref())?;
    if matches!(vocab, VocabOrigin::BuiltIn { .. }) {
        on_note(&format!("note: tokenizing with {vocab}"));
    }
    for u in tok.unknowns(&job.text, &tok.tokenize_with_specials_offsets(&job.text)) {
        on_note(&format!(
            "warning: `{}` (characters {}..{}) is not in the vocabulary; the model sees [UNK]",
            u.text, u.start, u.end
        ));
    }
    let mut ids = vec![i64::from(tok.cls_id())];
    ids.extend(
        tok.encode_with_specials(&job.text)
            .into_iter()
            .map(i64::from),
    );
    ids.push(i64::from(tok.sep_id()));
    let mask = i64::from(tok.mask_id());
    let positions: Vec<usize> = (0..ids.len()).filter(|&i| ids[i] == mask).collect();
    if positions.is_empty() {
        return Err(TaskError::Invalid(format!("the text has no {MASK_TOKEN}")));
    }
    let results = tasks::fill_mask(&opened, &ids, &positions, job.top_k, job.device)?;
    let token = |id: u32| tok.id_to_token(id).unwrap_or("[UNK]").to_string();
    let masks = results
        .into_iter()
        .zip(positions)
        .map(|(cands, position)| MaskPrediction {
            position,
            candidates: cands
                .into_iter()
                .map(|c| {
                    let token = token(c.id);
                    let filled = job
                        .text
                        .replacen(MASK_TOKEN, token.trim_start_matches("##"), 1);
                    FilledCandidate {
                        id: c.id,
                        token,
                        score: c.score,
                        filled,
                    }
                })
                .collect(),
        })
        .collect();
    Ok(FillMaskReport { masks })
}

/// `forward`: a model run on the token ids of a safetensors file.
#[derive(Debug, Clone)]
pub struct ForwardJob {
    /// A UER `.bin`/`.safetensors`, a Huggingface directory or a registry name.
    pub model: PathBuf,
    pub config: Option<PathBuf>,
    /// Safetensors with `input_ids` (and `segment`), integers `[batch, seq]`.
    pub input: PathBuf,
    /// Safetensors to write: `hidden` and `logits`.
    pub output: PathBuf,
    pub dtype: Dtype,
    pub device: DeviceSpec,
    /// Overwrite `output` if it exists.
    pub force: bool,
}

/// What [`forward_file`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardReport {
    pub output: PathBuf,
    /// The heads the weights had (`mlm`, `lm`, `classifier`, …).
    pub heads: Vec<&'static str>,
    /// The int8 kernel path of the linear layers, with `Dtype::Int8`.
    pub int8_path: Option<&'static str>,
    /// With `--dtype bf16`: the bf16 kernel path the encoder's linear layers run.
    pub bf16_path: Option<&'static str>,
}

/// Runs `forward`: every check of the output and the input before the model loads, then
/// `hidden` (the last layer) and `logits` (the pretraining head's, or a classifier's label
/// logits) written as f32. Without `segment`, non-zero ids count as sentence A.
pub fn forward_file(job: ForwardJob) -> Result<ForwardReport, TaskError> {
    crate::output::check_file(&job.output, job.force)?;
    crate::output::check_not_input(&job.output, &job.input, "--input")?;
    let shown = job.input.display();
    let input = Checkpoint::open(&job.input).map_err(file_error(format!("reading {shown}")))?;
    let ids_t = input
        .get("input_ids")
        .ok_or_else(|| TaskError::Invalid(format!("{shown}: no `input_ids` tensor")))?;
    let ids = ids_t
        .to_i64_vec()
        .ok_or_else(|| TaskError::Invalid("`input_ids` must be an integer tensor".into()))?;
    let [batch, seq] = ids_t.shape[..] else {
        return Err(TaskError::Invalid(format!(
            "`input_ids` must be [batch, seq], got {:?}",
            ids_t.shape
        )));
    };
    let segment = match input.get("segment") {
        Some(t) => t
            .to_i64_vec()
            .ok_or_else(|| TaskError::Invalid("`segment` must be an integer tensor".into()))?,
        None => ids.iter().map(|&i| i64::from(i != 0)).collect(),
    };
    if batch == 0 || seq == 0 {
        return Err(TaskError::Invalid(format!(
            "{shown}: `input_ids` is {:?}; it needs at least one sequence of at least one token",
            ids_t.shape
        )));
    }
    if segment.len() != ids.len() {
        return Err(TaskError::Invalid(format!(
            "{shown}: `segment` has {} values, `input_ids` {}; both must be [batch, seq]",
            segment.len(),
            ids.len()
        )));
    }
    let mut opened = super::open_model(&job.model, job.config.as_deref())?;
    opened.config.dtype = job.dtype;
    let batch = Batch {
        ids,
        segment,
        batch,
        seq,
    };
    let out = tasks::forward(&opened, &batch, job.device)?;
    let mut result = Checkpoint::default();
    result.insert(
        "hidden",
        Tensor::from_f32(out.hidden.shape, &out.hidden.values),
    );
    if let Some(logits) = out.logits {
        result.insert("logits", Tensor::from_f32(logits.shape, &logits.values));
    }
    result
        .write_safetensors(&job.output, job.force)
        .map_err(file_error(format!("writing {}", job.output.display())))?;
    Ok(ForwardReport {
        output: job.output,
        heads: out.report.heads,
        int8_path: out.report.int8_path,
        bf16_path: out.report.bf16_path,
    })
}

/// `extract-features`: one vector per line of a text file, as UER-py's extract_features.
#[derive(Debug, Clone)]
pub struct ExtractJob {
    /// A UER `.bin`, a Huggingface directory or a registry name.
    pub model: PathBuf,
    /// Text file, one sentence per line.
    pub input: PathBuf,
    /// Safetensors to write: `features`.
    pub output: PathBuf,
    pub pooling: Pooling,
    pub seq_length: usize,
    /// Sentences per forward pass.
    pub batch_size: usize,
    pub config: Option<PathBuf>,
    pub vocab: Option<PathBuf>,
    pub dtype: Dtype,
    pub device: DeviceSpec,
    /// Overwrite `output` if it exists.
    pub force: bool,
}

/// What [`extract_file`] wrote: `rows` vectors of `hidden` values.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtractReport {
    pub output: PathBuf,
    pub rows: usize,
    pub hidden: usize,
}

/// Runs `extract-features`: each non-empty line becomes `[CLS] tokens` cut or padded to
/// `seq_length`, the last layer is zeroed on padding and pooled over all positions; lines
/// with no tokens are skipped (as UER-py skips them).
pub fn extract_file(job: ExtractJob) -> Result<ExtractReport, TaskError> {
    crate::output::check_file(&job.output, job.force)?;
    crate::output::check_not_input(&job.output, &job.input, "--input")?;
    if job.seq_length == 0 {
        return Err(TaskError::Invalid("--seq-length must be at least 1".into()));
    }
    let mut opened = super::open_model(&job.model, job.config.as_deref())?;
    opened.config.dtype = job.dtype;
    let tok = super::open_tokenizer(&opened, job.vocab.as_deref())?;
    let text = std::fs::read_to_string(&job.input).map_err(|e| TaskError::File {
        what: format!("reading {}", job.input.display()),
        source: Box::new(e),
    })?;
    let (mut ids, mut segment) = (Vec::new(), Vec::new());
    for line in text.lines() {
        let tokens = tok.encode(line);
        if tokens.is_empty() {
            continue;
        }
        let enc = tok.single_from_ids(&tokens, job.seq_length);
        ids.extend(enc.ids.iter().map(|&i| i64::from(i)));
        segment.extend(enc.segments.iter().map(|&s| i64::from(s)));
    }
    let batch = Batch {
        batch: ids.len() / job.seq_length,
        ids,
        segment,
        seq: job.seq_length,
    };
    if batch.batch == 0 {
        return Err(TaskError::Invalid(format!(
            "{} has no line with tokens",
            job.input.display()
        )));
    }
    let features =
        tasks::extract_features(&opened, &batch, job.pooling, job.batch_size, job.device)?;
    let (rows, hidden) = (features.shape[0], features.shape[1]);
    let mut out = Checkpoint::default();
    out.insert(
        "features",
        Tensor::from_f32(features.shape, &features.values),
    );
    out.write_safetensors(&job.output, job.force)
        .map_err(file_error(format!("writing {}", job.output.display())))?;
    Ok(ExtractReport {
        output: job.output,
        rows,
        hidden,
    })
}
