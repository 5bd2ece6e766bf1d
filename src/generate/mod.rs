//! Text generation with the GPT-2 zoo, faithful to UER-py's `scripts/generate_lm.py`:
//! the prompt is `[CLS]` + its tokens (segment 1), the total length counts `[CLS]` and the
//! prompt (UER's `seq_length`), and each new token comes from the last position's logits
//! through [`Sampling`] (top-k then top-p, temperature; greedy = top-k 1).
//!
//! This module owns the decoding loop, sampling, the prompt presets ([`preset`]) and the
//! output text. Unlike UER-py it does not recompute the whole prefix per token: the model's
//! KV cache ([`crate::model::kv_cache`]) makes each step cost one position. The no-cache
//! path stays available (`use_cache: false`) as the reference the cache is tested against.
//!
//! Several prompts can decode together, one forward per token for all of them
//! ([`batch`], [`generate_batched`]; `generate --input --batch-size N`), each sequence as it
//! would alone.
//!
//! [`run_many`] ([`job`]) is the whole `generate` command in one call: opening, prompts,
//! presets, batching and the output file; the command line only prints.
//!
//! A [`Constraint`] ([`constraint`]) can restrict each next token (couplets that fit their
//! upper line, poems' line lengths); every sequence carries its score, the sum of the
//! model's log-probabilities of its new tokens, to rank candidates ([`rank`]).

pub mod batch;
pub mod constraint;
pub mod job;
pub mod preset;
pub mod sampling;
pub mod score;

pub use batch::generate_batched;
pub use constraint::{Constraint, Rule};
pub use job::{Event, GenerateJob, GenerateReport, RunError, run_many};
pub use preset::{PRESETS, Preset, TextStream, clean_text, uer_text};
pub use sampling::{Sampler, Sampling};
pub use score::{Perplexity, perplexity};

use crate::model::backend::{BackendJob, DeviceSpec, run_on};
use crate::model::kv_cache::KvCache;
use crate::model::open::OpenedModel;
use crate::model::{Model, ModelError, load_model};
use crate::tokenizer::Tokenizer;
use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use std::ops::ControlFlow;

/// Everything that can go wrong generating.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// An option outside its range.
    #[error("--{option} {value}: expected {expected}")]
    Option {
        option: &'static str,
        value: String,
        expected: &'static str,
    },
    /// `--max-length` beyond the position embeddings.
    #[error(
        "--max-length {max_length} is beyond the model's {positions} position embeddings; use at most {positions}"
    )]
    MaxLength { max_length: usize, positions: usize },
    /// The prompt fills `max_length`: nothing would be generated.
    #[error(
        "the prompt is {prompt} tokens ([CLS] included) and --max-length {max_length} counts them, so nothing is left to generate; raise --max-length (the model has {positions} positions) or shorten the prompt"
    )]
    NoRoom {
        prompt: usize,
        max_length: usize,
        positions: usize,
    },
    /// An unknown `--preset`.
    #[error("unknown preset `{name}`; use one of: {known}")]
    Preset { name: String, known: String },
    /// A decoding constraint that cannot be met.
    #[error("{reason}")]
    Constraint { reason: String },
    /// Loading or running the model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// When and how to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// Total tokens, `[CLS]` and prompt included (UER-py's `seq_length`).
    pub max_length: usize,
    /// At most this many new tokens per sequence.
    pub max_new_tokens: Option<usize>,
    pub sampling: Sampling,
    /// Seed of the sampling RNG; the same seed gives the same text.
    pub seed: u64,
    /// Sequences to generate (one after the other, one RNG).
    pub num_return: usize,
    /// Stop after generating this id (`[SEP]` for presets that end samples with it).
    pub stop_id: Option<u32>,
    /// Use the KV cache (default); `false` recomputes the prefix per token, as UER-py does.
    pub use_cache: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_length: 128,
            max_new_tokens: None,
            sampling: Sampling::default(),
            seed: 0,
            num_return: 1,
            stop_id: None,
            use_cache: true,
        }
    }
}

impl GenerateOptions {
    /// Checks the options against a model with `positions` position embeddings.
    pub fn validate(&self, positions: usize) -> Result<(), GenerateError> {
        self.sampling.validate()?;
        if self.max_length == 0 {
            return Err(GenerateError::Option {
                option: "max-length",
                value: "0".into(),
                expected: "at least 1 (it counts [CLS] and the prompt)",
            });
        }
        if self.max_length > positions {
            return Err(GenerateError::MaxLength {
                max_length: self.max_length,
                positions,
            });
        }
        if self.num_return == 0 || self.num_return > MAX_NUM_RETURN {
            return Err(GenerateError::Option {
                option: "num-return",
                value: self.num_return.to_string(),
                expected: "1 to 1024",
            });
        }
        Ok(())
    }
}

/// The most sequences one call generates (`--num-return`): each keeps a KV cache.
pub const MAX_NUM_RETURN: usize = 1024;

/// Why a sequence ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// It reached `max_length` tokens.
    MaxLength,
    /// It generated `max_new_tokens`.
    MaxNewTokens,
    /// It generated the stop id.
    StopToken,
    /// The caller's `on_token` asked to stop ([`generate_until`]; a client went away).
    Cancelled,
}

/// One generated sequence. Two are equal when their tokens and stop are: the score is
/// the float sum of one path and differs in its last bits between the cached and the
/// uncached computation of the same tokens.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The whole sequence: `[CLS]`, the prompt, the new tokens.
    pub ids: Vec<u32>,
    /// How many of `ids` are `[CLS]` + prompt (after truncation to `max_length`).
    pub prompt_len: usize,
    pub stop: StopReason,
    /// Sum over the new tokens of the model's log-probability (softmax of the raw logits,
    /// before constraint and sampling filters).
    pub score: f64,
}

impl PartialEq for Generated {
    fn eq(&self, other: &Self) -> bool {
        self.ids == other.ids && self.prompt_len == other.prompt_len && self.stop == other.stop
    }
}

impl Eq for Generated {}

/// Sorts sequences best score first (stable: equal scores keep their order).
pub fn rank(sequences: &mut [Generated]) {
    sequences.sort_by(|a, b| b.score.total_cmp(&a.score));
}

impl Generated {
    /// The new tokens.
    pub fn continuation(&self) -> &[u32] {
        &self.ids[self.prompt_len..]
    }
}

/// `[CLS]` + the prompt's tokens, as UER-py's generate_lm builds its input.
pub fn prompt_ids(tok: &Tokenizer, prompt: &str) -> Vec<u32> {
    let mut ids = vec![tok.cls_id()];
    ids.extend(tok.encode(prompt));
    ids
}

/// Generates `opts.num_return` continuations of `prompt` (ids, `[CLS]` first) with a
/// loaded model. `on_token(sequence, id)` sees every new id as soon as it is chosen.
pub fn generate<B: Backend>(
    model: &Model<B>,
    prompt: &[u32],
    opts: &GenerateOptions,
    on_token: &mut dyn FnMut(usize, u32),
) -> Result<Vec<Generated>, GenerateError> {
    generate_full(model, prompt, opts, None, &mut |n, id| {
        on_token(n, id);
        ControlFlow::Continue(())
    })
}

/// [`generate`] with each new token restricted by `constraint` (applied before sampling).
pub fn generate_constrained<B: Backend>(
    model: &Model<B>,
    prompt: &[u32],
    opts: &GenerateOptions,
    constraint: Option<&Constraint>,
    on_token: &mut dyn FnMut(usize, u32),
) -> Result<Vec<Generated>, GenerateError> {
    generate_full(model, prompt, opts, constraint, &mut |n, id| {
        on_token(n, id);
        ControlFlow::Continue(())
    })
}

/// [`generate`] whose `on_token` can stop it: `ControlFlow::Break` ends the current
/// sequence with [`StopReason::Cancelled`] and skips the remaining ones (a server stops a
/// generation whose client disconnected).
pub fn generate_until<B: Backend>(
    model: &Model<B>,
    prompt: &[u32],
    opts: &GenerateOptions,
    on_token: &mut dyn FnMut(usize, u32) -> ControlFlow<()>,
) -> Result<Vec<Generated>, GenerateError> {
    generate_full(model, prompt, opts, None, on_token)
}

/// [`generate_until`] with each new token restricted by `constraint`, as
/// [`generate_constrained`] (the server's couplets).
pub fn generate_constrained_until<B: Backend>(
    model: &Model<B>,
    prompt: &[u32],
    opts: &GenerateOptions,
    constraint: Option<&Constraint>,
    on_token: &mut dyn FnMut(usize, u32) -> ControlFlow<()>,
) -> Result<Vec<Generated>, GenerateError> {
    generate_full(model, prompt, opts, constraint, on_token)
}

/// The one generation loop behind [`generate`], [`generate_constrained`] and
/// [`generate_until`].
fn generate_full<B: Backend>(
    model: &Model<B>,
    prompt: &[u32],
    opts: &GenerateOptions,
    constraint: Option<&Constraint>,
    on_token: &mut dyn FnMut(usize, u32) -> ControlFlow<()>,
) -> Result<Vec<Generated>, GenerateError> {
    let steps = check_job(model, prompt, opts)?;
    let prompt = &prompt[..prompt.len().min(opts.max_length)];
    let mut sampler = Sampler::new(opts.seed);
    let mut out = Vec::with_capacity(opts.num_return);
    for n in 0..opts.num_return {
        let mut ids = prompt.to_vec();
        let mut stop = StopReason::MaxLength;
        let mut cache = KvCache::new(model);
        let mut pending: &[u32] = prompt;
        let mut last;
        let mut score = 0.0;
        for step in 0..steps {
            if opts.max_new_tokens.is_some_and(|m| step >= m) {
                stop = StopReason::MaxNewTokens;
                break;
            }
            let mut logits = if opts.use_cache {
                let logits = model.decode_step(
                    id_tensor(pending, &model.embedding.word.device()),
                    &mut cache,
                )?;
                last_row(logits)?
            } else {
                full_last_logits(model, &ids)?
            };
            let (id, log_prob) = choose(
                &mut logits,
                &ids,
                prompt.len(),
                opts,
                constraint,
                &mut sampler,
            )?;
            score += log_prob;
            ids.push(id);
            if on_token(n, id).is_break() {
                stop = StopReason::Cancelled;
                break;
            }
            last = [id];
            pending = &last;
            if opts.stop_id == Some(id) {
                stop = StopReason::StopToken;
                break;
            }
        }
        out.push(Generated {
            ids,
            prompt_len: prompt.len(),
            stop,
            score,
        });
        if stop == StopReason::Cancelled {
            break;
        }
    }
    Ok(out)
}

/// The next token of a sequence (`ids`: `[CLS]`, the prompt of `prompt_len` tokens and
/// the new tokens so far) from the last position's `logits`: the constraint, the sampling
/// filters, the draw. Returns the id and its log-probability under the raw logits.
fn choose(
    logits: &mut [f32],
    ids: &[u32],
    prompt_len: usize,
    opts: &GenerateOptions,
    constraint: Option<&Constraint>,
    sampler: &mut Sampler,
) -> Result<(u32, f64), GenerateError> {
    let log_probs = log_softmax(logits);
    let generated = &ids[prompt_len..];
    if let Some(c) = constraint {
        c.apply(logits, generated);
    }
    opts.sampling.filter(logits, ids);
    if !logits.iter().any(|l| l.is_finite()) {
        return Err(GenerateError::Constraint {
            reason: format!(
                "no token of the vocabulary fits {:?} at new token {}",
                constraint.map(|c| c.rule(generated)),
                generated.len() + 1
            ),
        });
    }
    let id = sampler.draw(logits);
    Ok((id, log_probs[id as usize]))
}

/// Checks one prompt and its options against the model; returns the decoding steps
/// (UER-py's `seq_length` minus the prompt).
fn check_job<B: Backend>(
    model: &Model<B>,
    prompt: &[u32],
    opts: &GenerateOptions,
) -> Result<usize, GenerateError> {
    opts.validate(model.config.max_seq_length)?;
    if prompt.is_empty() {
        return Err(GenerateError::Option {
            option: "prompt",
            value: "\"\"".into(),
            expected: "at least [CLS]",
        });
    }
    if let Some(&bad) = prompt
        .iter()
        .find(|&&i| i as usize >= model.config.vocab_size)
    {
        return Err(ModelError::Input(format!(
            "token id {bad} is outside the vocabulary 0..{}",
            model.config.vocab_size
        ))
        .into());
    }
    // UER-py: truncate to seq_length, then run seq_length − (untruncated length) steps.
    // Zero steps would print the prompt back as if it were an answer: refuse instead.
    if prompt.len() >= opts.max_length {
        return Err(GenerateError::NoRoom {
            prompt: prompt.len(),
            max_length: opts.max_length,
            positions: model.config.max_seq_length,
        });
    }
    Ok(opts.max_length - prompt.len())
}

/// log softmax in f64.
fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    let log_sum = sum.ln() + max;
    logits.iter().map(|&l| l as f64 - log_sum).collect()
}

fn id_tensor<B: Backend>(ids: &[u32], device: &B::Device) -> Tensor<B, 2, Int> {
    let values: Vec<i64> = ids.iter().map(|&i| i64::from(i)).collect();
    Tensor::from_data(TensorData::new(values, [1, ids.len()]), device)
}

/// The last position's logits of `[1, s, vocab]` as a host vector.
fn last_row<B: Backend>(logits: Tensor<B, 3>) -> Result<Vec<f32>, GenerateError> {
    let [_, s, v] = logits.dims();
    let row = logits.narrow(1, s - 1, 1).reshape([v]);
    row.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| ModelError::Input(format!("reading logits back: {e:?}")).into())
}

/// The no-cache path (UER-py's): the whole sequence through the encoder, the LM head on
/// the last position.
pub fn full_last_logits<B: Backend>(
    model: &Model<B>,
    ids: &[u32],
) -> Result<Vec<f32>, GenerateError> {
    let lm = model.lm.as_ref().ok_or_else(|| {
        ModelError::Input(
            "the weights have no LM head (`target.lm.output_layer`); generation needs a GPT-2"
                .into(),
        )
    })?;
    let values: Vec<i64> = ids.iter().map(|&i| i64::from(i)).collect();
    let seg = vec![1i64; ids.len()];
    let device = model.embedding.word.device();
    let (t_ids, t_seg) = model.inputs(&values, &seg, 1, ids.len(), &device)?;
    let hidden = model.encode(t_ids, t_seg);
    let [_, s, h] = hidden.dims();
    last_row(lm.forward(hidden.narrow(1, s - 1, 1).reshape([1, 1, h])))
}

struct OneJob<'a> {
    model: &'a OpenedModel,
    prompt: &'a [u32],
    opts: &'a GenerateOptions,
    on_token: &'a mut dyn FnMut(usize, u32),
}

impl BackendJob for OneJob<'_> {
    type Output = Result<Vec<Generated>, GenerateError>;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let (model, _) = load_model::<B>(&self.model.checkpoint, &self.model.config, &device)?;
        generate(&model, self.prompt, self.opts, self.on_token)
    }
}

/// Loads `model` on `device` and generates (see [`generate`]).
pub fn generate_opened(
    model: &OpenedModel,
    prompt: &[u32],
    opts: &GenerateOptions,
    device: DeviceSpec,
    on_token: &mut dyn FnMut(usize, u32),
) -> Result<Vec<Generated>, GenerateError> {
    opts.sampling.validate()?;
    run_on(
        device,
        OneJob {
            model,
            prompt,
            opts,
            on_token,
        },
    )?
}

/// One prompt of a [`generate_many`] run, with its own options and constraint.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// `[CLS]` + the prompt's ids ([`prompt_ids`]).
    pub prompt: Vec<u32>,
    pub opts: GenerateOptions,
    pub constraint: Option<Constraint>,
}

/// What [`generate_many`] returns: the sequences of each job, and where the time went.
#[derive(Debug, Clone, PartialEq)]
pub struct ManyGenerated {
    /// `sequences[j]`: job `j`'s `num_return` sequences, in generation order.
    pub sequences: Vec<Vec<Generated>>,
    /// Loading the weights onto the device.
    pub load: std::time::Duration,
    /// Generating (all jobs).
    pub decode: std::time::Duration,
}

impl ManyGenerated {
    /// New tokens over all sequences.
    pub fn new_tokens(&self) -> usize {
        self.sequences
            .iter()
            .flatten()
            .map(|g| g.continuation().len())
            .sum()
    }
}

struct ManyJob<'a> {
    model: &'a OpenedModel,
    jobs: &'a [Job],
    batch_size: usize,
    on_token: &'a mut dyn FnMut(usize, usize, u32),
}

impl BackendJob for ManyJob<'_> {
    type Output = Result<ManyGenerated, GenerateError>;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let start = std::time::Instant::now();
        let (model, _) = load_model::<B>(&self.model.checkpoint, &self.model.config, &device)?;
        let load = start.elapsed();
        let start = std::time::Instant::now();
        if self.batch_size > 1 {
            let sequences = generate_batched(&model, self.jobs, self.batch_size, self.on_token)?;
            return Ok(ManyGenerated {
                sequences,
                load,
                decode: start.elapsed(),
            });
        }
        let mut sequences = Vec::with_capacity(self.jobs.len());
        for (j, job) in self.jobs.iter().enumerate() {
            let on_token = &mut *self.on_token;
            sequences.push(generate_constrained(
                &model,
                &job.prompt,
                &job.opts,
                job.constraint.as_ref(),
                &mut |n, id| on_token(j, n, id),
            )?);
        }
        Ok(ManyGenerated {
            sequences,
            load,
            decode: start.elapsed(),
        })
    }
}

/// Loads `model` on `device` once and runs every job in order, each exactly as
/// [`generate_constrained`] alone (its own seed: the same job gives the same text in any
/// run). `on_token(job, sequence, id)` sees every new id.
pub fn generate_many(
    model: &OpenedModel,
    jobs: &[Job],
    device: DeviceSpec,
    on_token: &mut dyn FnMut(usize, usize, u32),
) -> Result<ManyGenerated, GenerateError> {
    generate_many_batched(model, jobs, 1, device, on_token)
}

/// [`generate_many`] with up to `batch_size` sequences sharing each forward
/// ([`generate_batched`]; 1 runs the jobs one after the other). The same jobs give the same
/// sequences; with `batch_size` > 1 the ids `on_token` sees interleave across jobs.
pub fn generate_many_batched(
    model: &OpenedModel,
    jobs: &[Job],
    batch_size: usize,
    device: DeviceSpec,
    on_token: &mut dyn FnMut(usize, usize, u32),
) -> Result<ManyGenerated, GenerateError> {
    for job in jobs {
        job.opts.sampling.validate()?;
    }
    run_on(
        device,
        ManyJob {
            model,
            jobs,
            batch_size,
            on_token,
        },
    )?
}

/// Position embedding rows of an opened (not yet loaded) model, for validating
/// `--max-length` before loading.
pub fn positions(model: &OpenedModel) -> Option<usize> {
    model
        .checkpoint
        .get(crate::model::load::keys::POS)
        .map(|t| t.shape[0])
}
