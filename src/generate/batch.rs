//! Batched generation: the sequences of several prompts share one forward per token.
//!
//! Generation at batch 1 reads every weight once per token; here up to `batch_size`
//! sequences of different lengths decode together, one token each per step, through the
//! model's own decode step ([`Model::decode_step`]) on one [`KvCache`] whose rows are
//! left-padded to a common width, each token embedded at its own sequence's position and
//! the padding masked out of its attention. Sequences join and leave between steps
//! (continuous batching): a prompt is prefilled alone (as [`super::generate`] does it) and
//! its cache joins the batch's; a finished sequence's row is dropped.
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
use crate::model::kv_cache::KvCache;
use crate::model::{Model, ModelError};
use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use std::collections::VecDeque;

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
    let mut steps = Vec::with_capacity(jobs.len());
    for job in jobs {
        steps.push(check_job(model, &job.prompt, &job.opts)?);
    }
    let batch_size = batch_size.max(1);
    let mut out: Vec<Vec<Generated>> = jobs
        .iter()
        .map(|j| Vec::with_capacity(j.opts.num_return))
        .collect();
    // (job, sequence, the job's sampler) waiting to start, in job order.
    let mut queue: VecDeque<(usize, usize, Sampler)> = jobs
        .iter()
        .enumerate()
        .filter(|(_, j)| j.opts.use_cache)
        .map(|(j, job)| (j, 0, Sampler::new(job.opts.seed)))
        .collect();
    let device = model.embedding.word.device();
    let mut batch: Vec<Active> = Vec::with_capacity(batch_size);
    let mut cache = KvCache::new(model);
    loop {
        // Join: prefill waiting prompts alone and add their rows.
        while batch.len() < batch_size {
            let Some((j, n, sampler)) = queue.pop_front() else {
                break;
            };
            let job = &jobs[j];
            let mut seq = Active {
                job: j,
                n,
                ids: job.prompt.clone(),
                prompt_len: job.prompt.len(),
                steps: steps[j],
                score: 0.0,
                sampler,
            };
            if job.opts.max_new_tokens == Some(0) {
                end(seq, StopReason::MaxNewTokens, jobs, &mut out, &mut queue);
                continue;
            }
            let mut own = KvCache::new(model);
            let logits = model.decode_step(id_tensor(&job.prompt, &device), &mut own)?;
            let mut logits = last_row(logits)?;
            let (id, log_prob) = choose(
                &mut logits,
                &seq.ids,
                seq.prompt_len,
                &job.opts,
                job.constraint.as_ref(),
                &mut seq.sampler,
            )?;
            let stop = seq.push(id, log_prob, job);
            on_token(j, n, id);
            match stop {
                Some(stop) => end(seq, stop, jobs, &mut out, &mut queue),
                None => {
                    cache.join(own);
                    batch.push(seq);
                }
            }
        }
        if batch.is_empty() {
            break;
        }
        // One step: the last token of every sequence, each at its own position.
        let last: Vec<i64> = batch
            .iter()
            .map(|s| i64::from(s.ids[s.ids.len() - 1]))
            .collect();
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(last, [batch.len(), 1]), &device);
        let logits = rows(model.decode_step(ids, &mut cache)?)?;
        let mut keep = vec![true; batch.len()];
        let mut stops = vec![None; batch.len()];
        for (r, (seq, mut logits)) in batch.iter_mut().zip(logits).enumerate() {
            let job = &jobs[seq.job];
            let (id, log_prob) = choose(
                &mut logits,
                &seq.ids,
                seq.prompt_len,
                &job.opts,
                job.constraint.as_ref(),
                &mut seq.sampler,
            )?;
            stops[r] = seq.push(id, log_prob, job);
            keep[r] = stops[r].is_none();
            on_token(seq.job, seq.n, id);
        }
        if keep.iter().all(|&k| k) {
            continue;
        }
        cache.retain(&keep);
        // Finished sequences leave; the next sequence of their job waits first in line (in
        // job order), with the job's sampler.
        let mut next = Vec::new();
        for (seq, stop) in std::mem::take(&mut batch).into_iter().zip(stops) {
            match stop {
                None => batch.push(seq),
                Some(stop) => next.push((seq, stop)),
            }
        }
        for (seq, stop) in next.into_iter().rev() {
            end(seq, stop, jobs, &mut out, &mut queue);
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

/// Records a finished sequence and queues its job's next one (first in line).
fn end(
    seq: Active,
    stop: StopReason,
    jobs: &[Job],
    out: &mut [Vec<Generated>],
    queue: &mut VecDeque<(usize, usize, Sampler)>,
) {
    let (j, n) = (seq.job, seq.n);
    let sampler = seq.sampler.clone();
    out[j].push(seq.finish(stop));
    if n + 1 < jobs[j].opts.num_return {
        queue.push_front((j, n + 1, sampler));
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
