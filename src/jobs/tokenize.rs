//! The whole of `uerzoo tokenize` as one call, [`run`]: it finds the tokenizer (a
//! `--vocab` file, or the one beside a model), reads the texts (one, or every line of a
//! file or standard input), tokenizes them, renders each as the command shows it, and
//! writes the model inputs (`input_ids`, `segment`) to a safetensors file. It prints
//! nothing: each text's lines and the warnings reach the caller through [`Event`]s.

use crate::checkpoint::{Checkpoint, CheckpointError, DType, Tensor};
use crate::model::ModelError;
use crate::resolve::TokenizerOpenError;
use crate::tokenizer::{ModelInput, TokenSpan, Tokenizer, TokenizerOptions};
use std::io::Read;
use std::path::{Path, PathBuf};

/// What to tokenize and how.
#[derive(Debug, Clone, Default)]
pub struct TokenizeJob {
    /// Weights whose tokenizer is used (a `.bin`, an HF directory, a registry name), when
    /// `vocab` is `None`.
    pub model: Option<String>,
    /// A `vocab.txt` or sentencepiece `.model`.
    pub vocab: Option<PathBuf>,
    /// One text; else every line of `input`.
    pub text: Option<String>,
    /// A file of texts (`-`: standard input).
    pub input: Option<PathBuf>,
    /// Sentence B (segment 2) after each text.
    pub pair: Option<String>,
    /// One JSON object per text.
    pub json: bool,
    /// Write the model inputs here.
    pub output: Option<PathBuf>,
    pub seq_length: Option<usize>,
    /// Show the model input (`[CLS] … [SEP]`, segments).
    pub special_tokens: bool,
    /// Tokenize as transformers' BertTokenizer.
    pub hf: bool,
    /// Overwrite `output`.
    pub force: bool,
}

/// What [`run`] tells its caller as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A warning for standard error.
    Note(&'a str),
    /// One text's lines for standard output (newline-terminated).
    Shown(&'a str),
}

/// The file [`run`] wrote: `texts × tokens` ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub path: PathBuf,
    pub texts: usize,
    pub tokens: usize,
}

impl Written {
    /// `wrote FILE (N texts × S tokens)`.
    pub fn summary(&self) -> String {
        format!(
            "wrote {} ({} texts × {} tokens)",
            self.path.display(),
            self.texts,
            self.tokens
        )
    }
}

/// What can stop [`run`].
#[derive(Debug, thiserror::Error)]
pub enum TokenizeError {
    #[error(transparent)]
    Open(#[from] TokenizerOpenError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// Reading the texts or writing the output (`what` names the file).
    #[error("{what}")]
    Read {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: CheckpointError,
    },
    /// An option or input that cannot work; the message says why and what to do.
    #[error("{0}")]
    Invalid(String),
}

/// Tokenizes every text of `job`, sends each one's lines as [`Event::Shown`], and writes
/// `job.output`.
pub fn run(
    job: TokenizeJob,
    on_event: &mut dyn FnMut(Event),
) -> Result<Option<Written>, TokenizeError> {
    let invalid = |m: &str| Err(TokenizeError::Invalid(m.into()));
    let options = if job.hf {
        TokenizerOptions::huggingface()
    } else {
        TokenizerOptions::uer()
    };
    let tok = match (&job.vocab, &job.model) {
        (Some(v), _) => crate::resolve::tokenizer_from_file(v, options)?,
        (None, Some(m)) => match built_in(m, options.clone())? {
            Some((tok, note)) => {
                on_event(Event::Note(&note));
                tok
            }
            None => crate::resolve::tokenizer_from_file(&beside(Path::new(m))?, options)?,
        },
        (None, None) => return invalid("give MODEL, or --vocab vocab.txt / --spm X.model"),
    };
    if job.hf && tok.as_spm().is_some() {
        return invalid(
            "--hf is transformers' BertTokenizer; this model's tokenizer is sentencepiece",
        );
    }
    let texts = match (&job.text, &job.input) {
        (Some(_), Some(_)) => return invalid("give TEXT or --input FILE, not both"),
        (Some(t), None) => vec![t.clone()],
        (None, Some(file)) => read_lines(file, on_event)?,
        (None, None) => return invalid("nothing to tokenize: give TEXT or --input FILE"),
    };
    if job.seq_length == Some(0) {
        return invalid("--seq-length 0: expected at least 1 (it counts [CLS] and [SEP])");
    }
    let spans = |t: &str| {
        if job.hf {
            tok.tokenize_with_specials_offsets(t)
        } else {
            tok.tokenize_with_offsets(t)
        }
    };
    let model_input = job.special_tokens || job.pair.is_some() || job.seq_length.is_some();
    let pair = job.pair.as_deref().map(&spans);
    let mut inputs = Vec::with_capacity(texts.len());
    for text in &texts {
        let a = spans(text);
        let input = tok.model_input(&a, pair.as_deref(), job.seq_length);
        let shown = if model_input { input.clone() } else { bare(a) };
        let lines = render(text, job.pair.as_deref(), &shown, model_input, job.json)?;
        on_event(Event::Shown(&lines));
        inputs.push(input);
    }
    let Some(out) = job.output else {
        return Ok(None);
    };
    write_inputs(&out, &inputs, &tok, job.force).map_err(|source| TokenizeError::Write {
        path: out.clone(),
        source,
    })?;
    Ok(Some(Written {
        path: out,
        texts: inputs.len(),
        tokens: inputs.iter().map(|i| i.tokens.len()).max().unwrap_or(0),
    }))
}

/// The vocabulary built into the binary for `model` when it names a registry entry (and no
/// file or folder of that name exists): tokenizing needs no download. `None` otherwise.
fn built_in(
    model: &str,
    options: TokenizerOptions,
) -> Result<Option<(crate::tokenizer::Tokenizer, String)>, TokenizeError> {
    if Path::new(model).exists() {
        return Ok(None);
    }
    let Ok(entry) = crate::registry::Registry::builtin().get(model) else {
        return Ok(None);
    };
    let Some(file) = entry.tokenizer_file() else {
        return Ok(None);
    };
    let Some(bytes) = crate::registry::builtin_vocab(file) else {
        return Ok(None);
    };
    let tok = crate::resolve::builtin_tokenizer(file, bytes, options)?;
    let note = format!(
        "note: tokenizing with the built-in vocab/{file} of {}",
        entry.name
    );
    Ok(Some((tok, note)))
}

/// `vocab.txt` or `spiece.model` beside the weights (or in the directory, or in the cached
/// snapshot of a registry name).
fn beside(model: &Path) -> Result<PathBuf, TokenizeError> {
    let dir = if model.is_dir() {
        model.to_path_buf()
    } else if model.is_file() {
        model.parent().unwrap_or(Path::new(".")).to_path_buf()
    } else {
        crate::resolve::open_model(model, None)?.dir
    };
    ["vocab.txt", "spiece.model"]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            TokenizeError::Invalid(format!(
                "no vocab.txt or spiece.model in {}; pass --vocab with its vocab.txt or sentencepiece .model",
                dir.display()
            ))
        })
}

/// The lines of FILE (`-`: standard input); an empty file is an error, empty lines warned of.
fn read_lines(file: &Path, on_event: &mut dyn FnMut(Event)) -> Result<Vec<String>, TokenizeError> {
    let read = |what: String| move |source| TokenizeError::Read { what, source };
    let text = if file == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(read("reading standard input".into()))?;
        s
    } else {
        std::fs::read_to_string(file).map_err(read(format!("reading {}", file.display())))?
    };
    let lines: Vec<String> = text
        .lines()
        .map(|l| l.trim_end_matches('\r').to_owned())
        .collect();
    if lines.is_empty() {
        return Err(TokenizeError::Invalid(format!(
            "{} is empty; put one text per line",
            file.display()
        )));
    }
    for (n, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            on_event(Event::Note(&format!(
                "warning: {} line {} is empty; it has no tokens",
                file.display(),
                n + 1
            )));
        }
    }
    Ok(lines)
}

/// Tokens without the model input around them (segment 1 each).
fn bare(tokens: Vec<TokenSpan>) -> ModelInput {
    let segments = vec![1; tokens.len()];
    ModelInput { tokens, segments }
}

/// One text as `tokenize` shows it: a JSON line, or the `ids`/`tokens`/`offsets`
/// (+ `segments`) lines.
fn render(
    text: &str,
    pair: Option<&str>,
    input: &ModelInput,
    segments: bool,
    json: bool,
) -> Result<String, serde_json::Error> {
    let ids = input.ids();
    let tokens: Vec<&str> = input.tokens.iter().map(|t| t.token.as_str()).collect();
    let offsets: Vec<[usize; 2]> = input.tokens.iter().map(|t| [t.start, t.end]).collect();
    if json {
        let mut obj = serde_json::json!({
            "text": text, "ids": ids, "tokens": tokens, "offsets": offsets,
        });
        if let Some(p) = pair {
            obj["pair"] = p.into();
        }
        if segments {
            obj["segments"] = input.segments.clone().into();
        }
        return Ok(format!("{}\n", serde_json::to_string(&obj)?));
    }
    let join = |v: Vec<String>| v.join(" ");
    let mut out = format!(
        "ids      {}\ntokens   {}\noffsets  {}\n",
        join(ids.iter().map(u32::to_string).collect()),
        tokens.join(" "),
        join(offsets.iter().map(|[a, b]| format!("{a}:{b}")).collect())
    );
    if segments {
        out.push_str(&format!(
            "segments {}\n",
            join(input.segments.iter().map(u32::to_string).collect())
        ));
    }
    Ok(out)
}

/// `input_ids` and `segment`, i64 `[texts, seq]`, padded with `[PAD]` / segment 0.
fn write_inputs(
    out: &Path,
    inputs: &[ModelInput],
    tok: &Tokenizer,
    force: bool,
) -> Result<(), CheckpointError> {
    let seq = inputs.iter().map(|i| i.tokens.len()).max().unwrap_or(0);
    let (mut ids, mut segments) = (Vec::new(), Vec::new());
    for input in inputs {
        let row = input.ids();
        ids.extend(row.iter().map(|&i| i64::from(i)));
        ids.extend(std::iter::repeat_n(
            i64::from(tok.pad_id()),
            seq - row.len(),
        ));
        segments.extend(input.segments.iter().map(|&s| i64::from(s)));
        segments.extend(std::iter::repeat_n(0, seq - row.len()));
    }
    let tensor = |values: &[i64]| {
        Tensor::from_bytes(
            DType::I64,
            vec![inputs.len(), seq],
            bytemuck::cast_slice(values).to_vec(),
        )
    };
    let mut file = Checkpoint::default();
    file.insert("input_ids", tensor(&ids));
    file.insert("segment", tensor(&segments));
    file.write_safetensors(out, force)
}
