//! Batched generation: the sequences of several prompts share one forward per token.
//!
//! Generation at batch 1 reads every weight once per token; here up to `batch_size`
//! sequences of different lengths decode together, one token each per step, through the
//! model's own decode step ([`Model::decode_step`]) on one [`KvCache`] whose rows are
//! left-padded to a common width, each token embedded at its own sequence's position and
//! the padding masked out of its attention. Sequences join and leave between steps
//! (continuous batching): the prompts waiting to join are prefilled, those of at most
//! [`PACKED_ROWS`] tokens together in one forward ([`Model::prefill_packed`], each prompt's
//! cache and logits bit for bit those of its prefill alone), the others alone (as
//! [`super::generate`] does it), and their caches join the batch's; a finished sequence's
//! row is dropped.
//!
//! Each sequence keeps its own options, constraint and RNG: the sequences of one job run
//! one after the other with the job's [`Sampler`] (seeded by its `seed`), as in a run of
//! that job alone, so sampled text depends on the seed, not on the batch. The logits of a
//! sequence agree with those of a run alone to float rounding (on the CPU the linear layers
//! of a step of up to 16 rows give each row the values it gets alone; the attention's
//! padded rows and a GPU's products may round differently); greedy output is
//! token-identical in the tests.

use super::{
    GenerateError, Generated, Job, Sampler, StopReason, check_job, choose, id_tensor, last_row,
};
use crate::model::backend::DeviceSpec;
use crate::model::kv_cache::{KvCache, PACKED_ROWS};
use crate::model::{Model, ModelError};
use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use std::collections::{HashMap, VecDeque};
use std::ops::ControlFlow;

/// How many sequences [`generate_batched`] decodes together when the user names no batch
/// size, on `device`. The CPU: 16, the size `cargo bench --bench generate` found fastest
/// for `generate --input` (3.9× the prompts/s of one by one against 3.6× for 8;
/// docs/performance.md, "Batched generation") and the most rows the few-rows linear kernel
/// takes (`uerzoo_kernels::MAX_ROWS`; more go to the general GEMM, which reads the
/// `[out, in]` weights strided). A GPU: 8, enough sequences to read each weight once for
/// several tokens, few enough that the padded KV cache and the per-step logits stay small.
pub fn default_batch_size(device: DeviceSpec) -> usize {
    match device {
        DeviceSpec::Cpu => CPU_BATCH,
        _ => GPU_BATCH,
    }
}

const CPU_BATCH: usize = 16;
const GPU_BATCH: usize = 8;

/// A sequence being decoded.
struct Active {
    job: usize,
    /// Which of the job's `num_return` sequences.
    n: usize,
    ids: Vec<u32>,
    prompt_len: usize,
    steps: usize,
    score: f64,
    sampler: Sampler,
}

impl Active {
    /// Appends the chosen `id` and says whether the sequence ends with it (the order of
    /// [`super::generate`]'s loop: the stop id, then `max_length`, then `max_new_tokens`).
    fn push(&mut self, id: u32, log_prob: f64, job: &Job) -> Option<StopReason> {
        self.score += log_prob;
        self.ids.push(id);
        let generated = self.ids.len() - self.prompt_len;
        if job.opts.stop_id == Some(id) {
            Some(StopReason::StopToken)
        } else if generated >= self.steps {
            Some(StopReason::MaxLength)
        } else if job.opts.max_new_tokens.is_some_and(|m| generated >= m) {
            Some(StopReason::MaxNewTokens)
        } else {
            None
        }
    }

    fn finish(self, stop: StopReason) -> Generated {
        Generated {
            ids: self.ids,
            prompt_len: self.prompt_len,
            stop,
            score: self.score,
        }
    }
}

/// Generates every job's `num_return` sequences with up to `batch_size` sequences per
/// forward, each exactly as [`super::generate_constrained`] would alone (same seed, same
/// text; see the module). `on_token(job, sequence, id)` sees every new id as it is chosen;
/// the ids of different jobs interleave. Every job is checked before anything runs.
/// Jobs without the KV cache (`use_cache: false`) run alone, after the batched ones.
pub fn generate_batched<B: Backend>(
    model: &Model<B>,
    jobs: &[Job],
    batch_size: usize,
    on_token: &mut dyn FnMut(usize, usize, u32),
) -> Result<Vec<Vec<Generated>>, GenerateError> {
    let mut decoder = Decoder::new(model, batch_size);
    // Keys follow the order jobs are added in: `keys[k]` is the job index of key `k`.
    let mut keys = Vec::with_capacity(jobs.len());
    for (j, job) in jobs.iter().enumerate() {
        if job.opts.use_cache {
            decoder.check(job)?;
            keys.push(j);
        } else {
            check_job(model, &job.prompt, &job.opts)?;
        }
    }
    for &j in &keys {
        decoder.add(jobs[j].clone())?;
    }
    let mut out: Vec<Vec<Generated>> = vec![Vec::new(); jobs.len()];
    while !decoder.is_idle() {
        let report = decoder.step(&mut |k, n, id| {
            on_token(keys[k], n, id);
            ControlFlow::Continue(())
        })?;
        for (k, done) in report.done {
            out[keys[k]] = done?;
        }
    }
    // Jobs without the cache: the reference path, alone.
    for (j, job) in jobs.iter().enumerate().filter(|(_, j)| !j.opts.use_cache) {
        out[j] = super::generate_constrained(
            model,
            &job.prompt,
            &job.opts,
            job.constraint.as_ref(),
            &mut |n, id| on_token(j, n, id),
        )?;
    }
    Ok(out)
}

/// A job being decoded by a [`Decoder`]: its options, its step count and its finished
/// sequences.
struct Slot {
    job: Job,
    steps: usize,
    out: Vec<Generated>,
}

/// What one [`Decoder::step`] ended.
#[derive(Debug, Default)]
pub struct StepReport {
    /// Jobs whose sequences are all finished, or that failed (a constraint that cannot be
    /// met, a prefill that failed): their key and sequences or error.
    pub done: Vec<(usize, Result<Vec<Generated>, GenerateError>)>,
    /// Jobs whose `on_token` asked to stop: they left the batch before their last token.
    pub cancelled: Vec<usize>,
    /// Forwards that prefilled joining prompts: one for the prompts prefilled together, one
    /// per prompt prefilled alone.
    pub prefills: usize,
    /// Prompts prefilled (together or alone).
    pub prefilled: usize,
}

/// Continuous batching: jobs are added at any time ([`Decoder::add`]) and each
/// [`Decoder::step`] first prefills waiting sequences (together where the model allows, see
/// [`Model::packs_prefill`]) and joins them to the batch (up to its capacity), then decodes
/// one token for every sequence in one forward. A finished sequence leaves at once; so does
/// every sequence of a job whose `on_token` returns `Break` (a client that went away). A
/// job's `num_return` sequences run one after the other with the job's sampler, as
/// [`generate_batched`] runs them: each sequence gets what it gets alone.
pub struct Decoder<'m, B: Backend> {
    model: &'m Model<B>,
    device: B::Device,
    capacity: usize,
    next_key: usize,
    jobs: HashMap<usize, Slot>,
    /// (job key, sequence, the job's sampler) waiting to start, first in line first.
    queue: VecDeque<(usize, usize, Sampler)>,
    batch: Vec<Active>,
    cache: KvCache<B>,
}

impl<'m, B: Backend> Decoder<'m, B> {
    /// An empty batch of at most `capacity` sequences (at least 1).
    pub fn new(model: &'m Model<B>, capacity: usize) -> Self {
        Decoder {
            model,
            device: model.embedding.word.device(),
            capacity: capacity.max(1),
            next_key: 0,
            jobs: HashMap::new(),
            queue: VecDeque::new(),
            batch: Vec::with_capacity(capacity.max(1)),
            cache: KvCache::new(model),
        }
    }

    /// Checks `job` as [`Decoder::add`] would, without adding it.
    pub fn check(&self, job: &Job) -> Result<(), GenerateError> {
        check_job(self.model, &job.prompt, &job.opts).map(|_| ())
    }

    /// Queues `job` (decoded with the KV cache whatever its `use_cache`); returns its key,
    /// the first argument of `on_token` and the key in [`StepReport`]. Keys count from 0 in
    /// the order jobs are added. Nothing runs until the next [`Decoder::step`].
    pub fn add(&mut self, job: Job) -> Result<usize, GenerateError> {
        let steps = check_job(self.model, &job.prompt, &job.opts)?;
        let key = self.next_key;
        self.next_key += 1;
        self.queue.push_back((key, 0, Sampler::new(job.opts.seed)));
        self.jobs.insert(
            key,
            Slot {
                out: Vec::with_capacity(job.opts.num_return),
                job,
                steps,
            },
        );
        Ok(key)
    }

    /// Sequences decoding now (the rows of the next step's forward, before joins).
    pub fn rows(&self) -> usize {
        self.batch.len()
    }

    /// True when no job is queued or decoding.
    pub fn is_idle(&self) -> bool {
        self.jobs.is_empty()
    }

    /// The keys of every job queued or decoding.
    pub fn keys(&self) -> Vec<usize> {
        let mut keys: Vec<usize> = self.jobs.keys().copied().collect();
        keys.sort_unstable();
        keys
    }

    /// Drops every job (after a failed step: the batch's cache is no longer consistent).
    pub fn clear(&mut self) {
        self.jobs.clear();
        self.queue.clear();
        self.batch.clear();
        self.cache = KvCache::new(self.model);
    }

    /// Joins waiting sequences (prefilled, together where they can be, each first token
    /// chosen as alone), then decodes one token for every sequence of the batch together.
    /// `on_token(key, sequence, id)` sees each chosen id; `Break` removes that job from the
    /// batch and the queue. An `Err` is a failed batched forward: the batch is lost,
    /// [`Decoder::clear`] it (its jobs are [`Decoder::keys`]).
    pub fn step(
        &mut self,
        on_token: &mut dyn FnMut(usize, usize, u32) -> ControlFlow<()>,
    ) -> Result<StepReport, GenerateError> {
        let mut report = StepReport::default();
        self.join(on_token, &mut report);
        if self.batch.is_empty() {
            return Ok(report);
        }
        // One step: the last token of every sequence, each at its own position.
        let last: Vec<i64> = self
            .batch
            .iter()
            .map(|s| i64::from(s.ids[s.ids.len() - 1]))
            .collect();
        let ids = Tensor::<B, 2, Int>::from_data(
            TensorData::new(last, [self.batch.len(), 1]),
            &self.device,
        );
        let logits = rows(self.model.decode_step(ids, &mut self.cache)?)?;
        let mut stops: Vec<Option<StopReason>> = vec![None; self.batch.len()];
        let mut gone: Vec<usize> = Vec::new();
        let mut failed: Vec<(usize, GenerateError)> = Vec::new();
        for (r, (seq, mut logits)) in self.batch.iter_mut().zip(logits).enumerate() {
            if gone.contains(&seq.job) || failed.iter().any(|(k, _)| *k == seq.job) {
                continue;
            }
            let Some(slot) = self.jobs.get(&seq.job) else {
                continue;
            };
            let job = &slot.job;
            match choose(
                &mut logits,
                &seq.ids,
                seq.prompt_len,
                &job.opts,
                job.constraint.as_ref(),
                &mut seq.sampler,
            ) {
                Ok((id, log_prob)) => {
                    stops[r] = seq.push(id, log_prob, job);
                    if on_token(seq.job, seq.n, id).is_break() {
                        gone.push(seq.job);
                    }
                }
                Err(e) => failed.push((seq.job, e)),
            }
        }
        let leaving = |seq: &Active, stop: &Option<StopReason>| {
            stop.is_some() || gone.contains(&seq.job) || failed.iter().any(|(k, _)| *k == seq.job)
        };
        let keep: Vec<bool> = self
            .batch
            .iter()
            .zip(&stops)
            .map(|(seq, stop)| !leaving(seq, stop))
            .collect();
        if keep.iter().all(|&k| k) {
            return Ok(report);
        }
        self.cache.retain(&keep);
        for key in gone {
            self.forget(key);
            report.cancelled.push(key);
        }
        for (key, e) in failed {
            self.forget(key);
            report.done.push((key, Err(e)));
        }
        // Finished sequences leave; the next sequence of their job waits first in line (in
        // job order), with the job's sampler.
        let mut next = Vec::new();
        for (seq, stop) in std::mem::take(&mut self.batch).into_iter().zip(stops) {
            if !self.jobs.contains_key(&seq.job) {
                continue;
            }
            match stop {
                None => self.batch.push(seq),
                Some(stop) => next.push((seq, stop)),
            }
        }
        for (seq, stop) in next.into_iter().rev() {
            self.end(seq, stop, &mut report);
        }
        Ok(report)
    }

    /// Prefills waiting prompts and adds their rows, up to the capacity: when the model
    /// packs prefills ([`Model::packs_prefill`]), the prompts of at most [`PACKED_ROWS`]
    /// tokens together in one forward ([`Model::prefill_packed`], each prompt's cache and
    /// logits those of a prefill alone), the others alone. First tokens are chosen in the
    /// queue's order.
    fn join(
        &mut self,
        on_token: &mut dyn FnMut(usize, usize, u32) -> ControlFlow<()>,
        report: &mut StepReport,
    ) {
        // The sequences that start now, first in line first.
        let mut starting: Vec<Active> = Vec::new();
        while self.batch.len() + starting.len() < self.capacity {
            let Some((key, n, sampler)) = self.queue.pop_front() else {
                break;
            };
            let Some(slot) = self.jobs.get(&key) else {
                continue;
            };
            let job = &slot.job;
            let seq = Active {
                job: key,
                n,
                ids: job.prompt.clone(),
                prompt_len: job.prompt.len(),
                steps: slot.steps,
                score: 0.0,
                sampler,
            };
            if job.opts.max_new_tokens == Some(0) {
                self.end(seq, StopReason::MaxNewTokens, report);
                continue;
            }
            starting.push(seq);
        }
        let packs = self.model.packs_prefill();
        let packed: Vec<usize> = (0..starting.len())
            .filter(|&i| packs && starting[i].prompt_len <= PACKED_ROWS)
            .collect();
        // Prefills of the packed prompts, by their index in `starting`.
        let mut done: HashMap<usize, Prefilled<B>> = HashMap::new();
        if packed.len() > 1 {
            report.prefills += 1;
            report.prefilled += packed.len();
            let prompts: Vec<&[u32]> = packed.iter().map(|&i| &starting[i].ids[..]).collect();
            match self
                .model
                .prefill_packed(&prompts)
                .map_err(GenerateError::from)
            {
                Ok((caches, logits)) => match rows(logits.unsqueeze_dim::<3>(1)) {
                    Ok(logits) => {
                        for ((&i, cache), logits) in packed.iter().zip(caches).zip(logits) {
                            done.insert(i, Ok((cache, logits)));
                        }
                    }
                    Err(e) => {
                        for &i in &packed {
                            done.insert(i, Err(read_error(&e)));
                        }
                    }
                },
                Err(e) => {
                    for &i in &packed {
                        done.insert(i, Err(read_error(&e)));
                    }
                }
            }
        }
        for (i, mut seq) in starting.into_iter().enumerate() {
            let key = seq.job;
            let Some(slot) = self.jobs.get(&key) else {
                continue;
            };
            let job = &slot.job;
            let prefilled = done.remove(&i).unwrap_or_else(|| {
                report.prefills += 1;
                report.prefilled += 1;
                let mut own = KvCache::new(self.model);
                self.model
                    .decode_step(id_tensor(&job.prompt, &self.device), &mut own)
                    .map_err(GenerateError::from)
                    .and_then(last_row)
                    .map(|logits| (own, logits))
            });
            let first = prefilled.and_then(|(own, mut logits)| {
                choose(
                    &mut logits,
                    &seq.ids,
                    seq.prompt_len,
                    &job.opts,
                    job.constraint.as_ref(),
                    &mut seq.sampler,
                )
                .map(|chosen| (own, chosen))
            });
            let (own, (id, log_prob)) = match first {
                Ok(chosen) => chosen,
                Err(e) => {
                    self.forget(key);
                    report.done.push((key, Err(e)));
                    continue;
                }
            };
            let stop = seq.push(id, log_prob, job);
            if on_token(key, seq.n, id).is_break() {
                self.forget(key);
                report.cancelled.push(key);
                continue;
            }
            match stop {
                Some(stop) => self.end(seq, stop, report),
                None => {
                    self.cache.join(own);
                    self.batch.push(seq);
                }
            }
        }
    }

    /// Records a finished sequence and queues its job's next one (first in line), or
    /// reports the job done after its last.
    fn end(&mut self, seq: Active, stop: StopReason, report: &mut StepReport) {
        let (key, n) = (seq.job, seq.n);
        let sampler = seq.sampler.clone();
        let Some(slot) = self.jobs.get_mut(&key) else {
            return;
        };
        slot.out.push(seq.finish(stop));
        if n + 1 < slot.job.opts.num_return {
            self.queue.push_front((key, n + 1, sampler));
        } else if let Some(slot) = self.jobs.remove(&key) {
            report.done.push((key, Ok(slot.out)));
        }
    }

    /// Removes a job's queued sequences and its record (its rows are retained out by the
    /// caller).
    fn forget(&mut self, key: usize) {
        self.jobs.remove(&key);
        self.queue.retain(|(k, _, _)| *k != key);
    }
}

/// `[batch, 1, vocab]` logits as one host vector per row.
fn rows<B: Backend>(logits: Tensor<B, 3>) -> Result<Vec<Vec<f32>>, GenerateError> {
    let [b, _, v] = logits.dims();
    let values = logits
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| ModelError::Input(format!("reading logits back: {e:?}")))?;
    Ok((0..b)
        .map(|r| values[r * v..(r + 1) * v].to_vec())
        .collect())
}

/// A prompt's prefill: its cache and its last position's logits.
type Prefilled<B> = Result<(KvCache<B>, Vec<f32>), GenerateError>;

/// A packed prefill's error, once for each of its prompts.
fn read_error(e: &GenerateError) -> GenerateError {
    ModelError::Input(format!("prefilling prompts together: {e}")).into()
}
