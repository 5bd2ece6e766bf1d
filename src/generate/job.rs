//! The whole of `uerzoo generate` as one call, [`run_many`]: it opens the weights and the
//! tokenizer ([`crate::resolve`]), reads the prompts (`--prompt`, `--prompt -`, `--input`),
//! applies the registry card's defaults, the preset and the constraints, decodes (batched
//! where asked), and writes `--output` or returns the text to print. It prints nothing:
//! warnings and streamed text reach the caller through [`Event`]s.

use super::preset::Cut;
use super::{Constraint, GenerateError, GenerateOptions, Generated, Job, Preset, Sampling};
use super::{TextStream, clean_text, generate_many_batched, positions, rank, uer_text};
use crate::model::{DeviceSpec, ModelError};
use crate::output::OutputError;
use crate::registry::Registry;
use crate::resolve::TokenizerOpenError;
use crate::tokenizer::Tokenizer;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What to generate and how: the `generate` command's options, unparsed defaults left `None`.
#[derive(Debug, Clone)]
pub struct GenerateJob {
    /// A UER `.bin`/`.safetensors`, a Huggingface directory, or a registry name.
    pub model: PathBuf,
    /// The text to continue; `-` reads it from standard input.
    pub prompt: Option<String>,
    /// A file of prompts, one a line (`-`: standard input); used when `prompt` is `None`.
    pub input: Option<PathBuf>,
    /// Write the generations here instead of returning them.
    pub output: Option<PathBuf>,
    /// Overwrite `output` if it exists.
    pub force: bool,
    /// JSON lines instead of text.
    pub json: bool,
    /// Poems: lines of this many characters.
    pub line_length: Option<usize>,
    pub config: Option<PathBuf>,
    pub vocab: Option<PathBuf>,
    /// A preset name (default: the registry entry's, else the weights' family's).
    pub preset: Option<String>,
    pub max_length: Option<usize>,
    pub max_new_tokens: Option<usize>,
    pub greedy: bool,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    pub temperature: Option<f64>,
    pub repetition_penalty: f64,
    /// The sampler's seed (default: from the clock, announced by an [`Event::Note`]).
    pub seed: Option<u64>,
    pub num_return: usize,
    pub device: DeviceSpec,
    /// Precision of the linear layers and the LM head ([`crate::model::Dtype`]: int8 or
    /// bf16 on the CPU; the logits, LayerNorm, softmax and the KV cache stay f32).
    pub dtype: crate::model::Dtype,
    /// Send the text as it is generated ([`Event::Text`]).
    pub stream: bool,
    pub no_cache: bool,
    /// Prompts decoded together (default: [`super::batch::default_batch_size`] for the
    /// device; 1 with `stream` or `no_cache`).
    pub batch_size: Option<usize>,
}

/// What [`run_many`] tells its caller while it works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A line for the user (standard error): a warning, a note, the seed drawn.
    Note(&'a str),
    /// Streamed text, to append to standard output as it comes.
    Text(&'a str),
}

/// What [`run_many`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateReport {
    /// The text to print (`None` when it was written to `output` or streamed).
    pub text: Option<String>,
    /// The file written (`output`).
    pub written: Option<PathBuf>,
    /// Whether the text went out as [`Event::Text`] (it then lacks its final newline).
    pub streamed: bool,
    /// The number of prompts, of new tokens, and the time spent loading and decoding.
    pub prompts: usize,
    pub tokens: usize,
    pub load: Duration,
    pub decode: Duration,
}

impl GenerateReport {
    /// The closing line: tokens per second and the loading time.
    pub fn summary(&self) -> String {
        let secs = self.decode.as_secs_f64();
        format!(
            "generated {} tokens for {} prompt{} in {secs:.2} s ({:.1} tokens/s; loading {:.2} s)",
            self.tokens,
            self.prompts,
            if self.prompts == 1 { "" } else { "s" },
            if secs > 0.0 {
                self.tokens as f64 / secs
            } else {
                0.0
            },
            self.load.as_secs_f64()
        )
    }
}

/// Everything that can stop [`run_many`].
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Generate(#[from] GenerateError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerOpenError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// Reading the prompts or writing the output failed (`what` names the file).
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// An option or an input that cannot work; the message says why and what to do.
    #[error("{0}")]
    Invalid(String),
}

/// Generates for every prompt of `job` (see the module docs). `on_event` receives the
/// notes and, with `stream`, the text as it is generated.
pub fn run_many(
    job: GenerateJob,
    on_event: &mut dyn FnMut(Event),
) -> Result<GenerateReport, RunError> {
    let entry = (!job.model.exists())
        .then(|| {
            job.model
                .to_str()
                .and_then(|n| Registry::builtin().get(n).ok())
        })
        .flatten();
    let card = entry.and_then(|e| e.generation.as_ref());
    // Weights outside the registry get their family's preset once opened.
    let named = match (&job.preset, entry) {
        (Some(name), _) => Some(Preset::get(name)?),
        (None, Some(e)) => Some(Preset::for_entry(&e.name)),
        (None, None) => None,
    };
    if job.line_length.is_some() && named.is_some_and(|p| p.cut == Cut::MatchUpper) {
        return Err(RunError::Invalid(
            "--line-length is for poems; a couplet's lower line takes the upper line's length"
                .into(),
        ));
    }
    let sampling = sampling(&job, card);
    sampling.validate()?;
    if job.top_p == Some(0.0) {
        return Err(RunError::Invalid(
            "--top-p 0: expected a probability in (0, 1], e.g. 0.9 (leave it out to turn nucleus sampling off)".into(),
        ));
    }
    if let Some(out) = &job.output {
        // Checked before the model loads: a bad output fails in milliseconds.
        crate::output::check_file(out, job.force)?;
        if let Some(input) = job.input.as_deref().filter(|p| *p != Path::new("-")) {
            crate::output::check_not_input(out, input, "--input")?;
        }
    }
    let prompts = read_prompts(&job, on_event)?;
    let mut opened = crate::resolve::open_model(&job.model, job.config.as_deref())?;
    opened.config.dtype = job.dtype;
    // Said only where the loader accepts the dtype (the CPU, a transformer); elsewhere its
    // refusal is the message.
    let accepted = job.device == DeviceSpec::Cpu
        && opened.config.encoder == crate::model::EncoderKind::Transformer;
    match job.dtype {
        _ if !accepted => {}
        crate::model::Dtype::F32 => {}
        crate::model::Dtype::Int8 => on_event(Event::Note(&format!(
            "note: int8 linear layers and LM head ({} kernel path)",
            crate::kernels::int8::Path::best().name()
        ))),
        crate::model::Dtype::Bf16 => on_event(Event::Note(&format!(
            "note: bf16 linear layers and LM head ({} kernel path)",
            crate::kernels::bf16::Bf16Path::best().name()
        ))),
    }
    let preset = named.unwrap_or_else(|| Preset::for_weights(&opened.checkpoint));
    let (tok, vocab) = crate::resolve::open_tokenizer_with_origin(&opened, job.vocab.as_deref())?;
    if matches!(vocab, crate::resolve::VocabOrigin::BuiltIn { .. }) {
        on_event(Event::Note(&format!("note: tokenizing with {vocab}")));
    }
    let positions = positions(&opened)
        .ok_or_else(|| RunError::Invalid("the weights have no position embedding".into()))?;
    let seed = job.seed.unwrap_or_else(clock_seed);
    let max_length = job
        .max_length
        .unwrap_or_else(|| card.map_or(128, |c| c.max_length).min(positions));
    let mut jobs = Vec::with_capacity(prompts.len());
    for (text, origin) in &prompts {
        for line in unknown_warnings(&tok, text, origin) {
            on_event(Event::Note(&line));
        }
        let prompt = preset.prompt_ids(&tok, text);
        let constraint = match (preset.cut, job.line_length) {
            (Cut::MatchUpper, _) => Some(Constraint::match_line(&tok, preset.user_text(text))?),
            (_, Some(n)) => Some(Constraint::lines(&tok, n, preset.user_text(text))?),
            _ => None,
        };
        let limit = if constraint.is_some() {
            None
        } else {
            preset.new_token_limit(&tok, text)
        };
        let opts = GenerateOptions {
            max_length,
            max_new_tokens: [job.max_new_tokens, limit].into_iter().flatten().min(),
            sampling,
            seed,
            num_return: job.num_return,
            stop_id: (preset.stop_at_sep || constraint.is_some()).then(|| tok.sep_id()),
            use_cache: !job.no_cache,
        };
        opts.validate(positions)?;
        if let Some(warning) = check_room(&opts, prompt.len(), constraint.as_ref(), origin)? {
            on_event(Event::Note(&warning));
        }
        jobs.push(Job {
            prompt,
            opts,
            constraint,
        });
    }
    if job.seed.is_none() && sampling.top_k != 1 {
        on_event(Event::Note(&format!(
            "seed {seed} (pass --seed {seed} to repeat this output)"
        )));
    }
    let batch_size = match job.batch_size {
        Some(0) => {
            return Err(RunError::Invalid(
                "--batch-size 0: expected at least 1 (1 runs the prompts one by one)".into(),
            ));
        }
        Some(n) => n,
        None if job.stream || job.no_cache => 1,
        None => super::batch::default_batch_size(job.device),
    };
    let mut streams: Vec<TextStream> = Vec::new();
    let mut current = (usize::MAX, usize::MAX);
    let mut on_token = |j: usize, n: usize, id: u32| {
        if !job.stream {
            return;
        }
        if (j, n) != current {
            if current.0 != usize::MAX {
                on_event(Event::Text("\n"));
            }
            on_event(Event::Text(&preset.render(&tok, &prompts[j].0, &[])));
            streams.push(TextStream::default());
            current = (j, n);
        }
        if let Some(s) = streams.last_mut() {
            on_event(Event::Text(&s.push(&tok, id)));
        }
    };
    let mut result = generate_many_batched(&opened, &jobs, batch_size, job.device, &mut on_token)?;
    for (job, seqs) in jobs.iter().zip(result.sequences.iter_mut()) {
        if job.constraint.is_some() {
            rank(seqs);
        }
    }
    let texts: Vec<&str> = prompts.iter().map(|(t, _)| t.as_str()).collect();
    let out = results_text(&job, preset, &tok, &texts, &result.sequences)?;
    let streamed = !streams.is_empty();
    let text = match &job.output {
        Some(path) => {
            // Through a temporary beside it: an interrupted run leaves no half-written file.
            let write = || -> std::io::Result<()> {
                let mut tmp = crate::output::Partial::new_in(crate::output::parent_dir(path))?;
                std::io::Write::write_all(&mut tmp, out.as_bytes())?;
                Ok(tmp.persist(path, true)?)
            };
            write().map_err(|source| RunError::Io {
                what: format!("writing {}", path.display()),
                source,
            })?;
            None
        }
        None if streamed => None,
        None => Some(out),
    };
    Ok(GenerateReport {
        text,
        written: job.output.clone(),
        streamed,
        prompts: prompts.len(),
        tokens: result.new_tokens(),
        load: result.load,
        decode: result.decode,
    })
}

/// The sampling: `greedy`, else each option given, else the registry card's, else UER-py's.
fn sampling(job: &GenerateJob, card: Option<&crate::registry::GenerationPreset>) -> Sampling {
    let card_sampling = card.map_or(Sampling::default(), |c| Sampling {
        top_k: c.top_k,
        top_p: c.top_p,
        temperature: c.temperature,
        ..Sampling::default()
    });
    if job.greedy {
        Sampling {
            repetition_penalty: job.repetition_penalty,
            ..Sampling::greedy()
        }
    } else {
        Sampling {
            top_k: job.top_k.unwrap_or(card_sampling.top_k),
            top_p: job.top_p.unwrap_or(card_sampling.top_p),
            temperature: job.temperature.unwrap_or(card_sampling.temperature),
            repetition_penalty: job.repetition_penalty,
        }
    }
}

/// The prompts with where each came from (for messages): `prompt` (`-`: standard input,
/// one prompt), or the lines of `input`.
fn read_prompts(
    job: &GenerateJob,
    on_event: &mut dyn FnMut(Event),
) -> Result<Vec<(String, String)>, RunError> {
    let stdin = || -> Result<String, RunError> {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|source| RunError::Io {
                what: "reading standard input".into(),
                source,
            })?;
        Ok(s)
    };
    if let Some(p) = &job.prompt {
        let text = if p == "-" {
            stdin()?.trim().to_owned()
        } else {
            p.clone()
        };
        if text.trim().is_empty() {
            return Err(RunError::Invalid(
                "the prompt is empty; give the text to continue".into(),
            ));
        }
        return Ok(vec![(text, "the prompt".to_owned())]);
    }
    let file = job.input.as_deref().unwrap_or(Path::new("-"));
    let content = if file == Path::new("-") {
        stdin()?
    } else {
        std::fs::read_to_string(file).map_err(|source| RunError::Io {
            what: format!("reading {}", file.display()),
            source,
        })?
    };
    let mut prompts = Vec::new();
    let mut blank = Vec::new();
    for (n, line) in content.lines().enumerate() {
        let text = line.trim();
        if text.is_empty() {
            blank.push((n + 1).to_string());
            continue;
        }
        prompts.push((
            text.to_owned(),
            format!("{} line {}", file.display(), n + 1),
        ));
    }
    if !blank.is_empty() && !prompts.is_empty() {
        on_event(Event::Note(&format!(
            "note: {} line(s) {} are blank; skipped",
            file.display(),
            blank.join(", ")
        )));
    }
    if prompts.is_empty() {
        return Err(RunError::Invalid(format!(
            "{} has no prompts; put one prompt per line",
            file.display()
        )));
    }
    Ok(prompts)
}

/// A warning for each piece of prompt text the vocabulary lacks (the model sees `[UNK]`).
pub fn unknown_warnings(tok: &Tokenizer, text: &str, origin: &str) -> Vec<String> {
    tok.unknowns(text, &tok.tokenize_with_offsets(text))
        .into_iter()
        .map(|u| {
            format!(
                "warning: {origin}: `{}` (characters {}..{}) is not in the vocabulary; the model sees [UNK]",
                u.text, u.start, u.end
            )
        })
        .collect()
}

/// A prompt as long as `max_length` generates nothing (a warning); a couplet needs room
/// for its lower line (an error).
fn check_room(
    opts: &GenerateOptions,
    prompt_len: usize,
    constraint: Option<&Constraint>,
    origin: &str,
) -> Result<Option<String>, RunError> {
    let room = opts.max_length.saturating_sub(prompt_len);
    if let Some(need) = constraint.and_then(Constraint::min_new_tokens)
        && room < need
    {
        return Err(RunError::Invalid(format!(
            "{origin}: --max-length {} leaves room for {room} of the lower line's {need} characters ([CLS] and the prompt take {prompt_len}); use --max-length {} or more",
            opts.max_length,
            prompt_len + need + 1
        )));
    }
    Ok((room == 0).then(|| {
        format!(
            "warning: {origin}: [CLS] and the prompt are {prompt_len} tokens, --max-length {} leaves nothing to generate; the prompt is cut to it",
            opts.max_length
        )
    }))
}

/// Every sequence as text: readable lines, UER-py's prediction layout (with `output`), or
/// JSON lines.
fn results_text(
    job: &GenerateJob,
    preset: &Preset,
    tok: &Tokenizer,
    texts: &[&str],
    sequences: &[Vec<Generated>],
) -> Result<String, RunError> {
    let mut out = String::new();
    for (text, seqs) in texts.iter().zip(sequences) {
        if job.output.is_some() && !job.json {
            out.push_str(text);
            out.push('\n');
        }
        for g in seqs {
            if job.json {
                let obj = serde_json::json!({
                    "prompt": text,
                    "text": preset.render(tok, text, g.continuation()),
                    "continuation": clean_text(tok, g.continuation()),
                    "ids": g.ids,
                    "score": g.score,
                    "stop": format!("{:?}", g.stop),
                });
                out.push_str(&serde_json::to_string(&obj)?);
            } else if job.output.is_some() {
                out.push_str(&uer_text(tok, &g.ids));
            } else {
                out.push_str(&preset.render(tok, text, g.continuation()));
            }
            out.push('\n');
        }
    }
    Ok(out)
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
