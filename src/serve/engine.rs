//! The models a server holds: each opened with [`crate::resolve::open_model`], loaded
//! once on its backend and kept behind the object-safe [`Engine`], so request handlers
//! never see a Burn type and several threads can run the same weights at once.
//!
//! Generation with the KV cache goes through one decoding thread per model, which batches
//! continuously ([`generate::batch::Decoder`]): a request that arrives while others decode
//! joins the batch before the next step (its prompt prefilled, in one forward with the
//! others that arrived where they fit the few-rows kernel, then its row added), so it waits
//! one step, not a whole batch, for its first token; every step decodes one token for all
//! sequences in one forward, each getting what it gets alone. A finished request
//! leaves at once, and so does one whose client went away (its caller stopped listening:
//! the next token finds the channel closed). The requests in the batch hold at most
//! [`MAX_BATCH_SEQS`] sequences and [`MAX_BATCH_TOKENS`] tokens; the others wait in
//! arrival order, and one over the caps runs when the batch is empty.

use crate::generate::{self, Constraint, GenerateError, GenerateOptions, Generated};
use crate::model::backend::{BackendJob, DeviceSpec, run_on};
use crate::model::open::OpenedModel;
use crate::model::tasks::{Candidate, top_k};
use crate::model::{Model, ModelError, Pooling, load_model};
use burn::tensor::{Tensor, TensorData, activation, backend::Backend};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use std::collections::{HashMap, VecDeque};
use std::ops::ControlFlow;
use std::sync::{Arc, OnceLock, mpsc};

/// What a loaded model can do, from the heads its weights carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// An LM head (GPT-2): `/v1/completions`.
    pub generate: bool,
    /// An MLM head: `/v1/fill-mask`.
    pub fill_mask: bool,
    /// A fine-tuned classifier head (`output_layer_{1,2}`): `/v1/classify`.
    pub classify: bool,
    /// A bidirectional encoder (not GPT-2's causal mask) that is not a classifier:
    /// `/v1/embeddings`. A classifier is offered on `/v1/classify` only.
    pub embed: bool,
}

/// One token row for the encoder: ids and segments (1, or 2 for a pair's second text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub ids: Vec<u32>,
    pub segments: Vec<u32>,
}

/// A loaded model. Every method runs on the calling thread (the server calls them off the
/// async runtime) and may run on several threads at once.
pub trait Engine: Send + Sync {
    /// What the weights can do.
    fn capabilities(&self) -> Capabilities;
    /// Position embeddings: the longest sequence the model takes.
    fn positions(&self) -> usize;
    /// Classifier labels (0 without a classifier head).
    fn labels(&self) -> usize;
    /// Generates, each new token restricted by `constraint` when given (see
    /// [`generate::generate_constrained_until`]).
    fn generate(
        &self,
        prompt: &[u32],
        opts: &GenerateOptions,
        constraint: Option<&Constraint>,
        on_token: &mut dyn FnMut(usize, u32) -> ControlFlow<()>,
    ) -> Result<Vec<Generated>, GenerateError>;
    /// One vector per row, padded into one batch: `First` = the `[CLS]` state, `Mean` = the
    /// mean over the row's own tokens (padding excluded). `pooling[i]` belongs to `rows[i]`.
    fn embed(&self, rows: &[Row], pooling: &[Pooling]) -> Result<Vec<Vec<f32>>, ModelError>;
    /// For each row (padded into one batch), the `top_k[r]` candidates at each of
    /// `positions[r]`: `[row][mask][candidate]`.
    fn fill_mask(
        &self,
        rows: &[Row],
        positions: &[Vec<usize>],
        top_k: &[usize],
    ) -> Result<Vec<Vec<Vec<Candidate>>>, ModelError>;
    /// Classifier logits per row (`[labels]` each).
    fn classify(&self, rows: &[Row]) -> Result<Vec<Vec<f32>>, ModelError>;
    /// Where the decoding thread counts its work; set before the first generation (later
    /// calls are ignored).
    fn count_decoding(&self, counters: DecodeCounters);
}

/// What the decoding thread of a model counts (shared handles of `/metrics` series).
#[derive(Clone, Debug, Default)]
pub struct DecodeCounters {
    /// Sequences in the batch after each step.
    pub rows: Gauge,
    /// Tokens the decoding thread chose (those of requests whose client left included).
    pub tokens: Counter,
    /// Requests that left the batch before their end because their client went away.
    pub cancelled: Counter,
    /// Forwards that prefilled joining prompts (prompts prefilled together count once).
    pub prefills: Counter,
    /// Prompts prefilled to join the batch.
    pub prefilled: Counter,
}

/// Loads `opened` once on `device`. A classifier head (`output_layer_{1,2}`, what
/// `uerzoo finetune` writes) is attached with `classifier_pooling`.
pub fn load(
    opened: &OpenedModel,
    device: DeviceSpec,
    classifier_pooling: Pooling,
) -> Result<Arc<dyn Engine>, ModelError> {
    run_on(
        device,
        LoadJob {
            opened,
            classifier_pooling,
        },
    )?
}

struct LoadJob<'a> {
    opened: &'a OpenedModel,
    classifier_pooling: Pooling,
}

impl BackendJob for LoadJob<'_> {
    type Output = Result<Arc<dyn Engine>, ModelError>;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let ckpt = &self.opened.checkpoint;
        let (mut model, _) = load_model::<B>(ckpt, &self.opened.config, &device)?;
        // The loader attaches a classifier head when `output_layer_{1,2}` exist; the
        // pooling is the model's recorded one (or the flag's).
        if let Some(head) = model.classifier.as_mut() {
            head.pooling = self.classifier_pooling;
        }
        Ok(Arc::new(Loaded {
            model: Arc::new(model),
            device,
            decoder: OnceLock::new(),
            counters: OnceLock::new(),
        }))
    }
}

struct Loaded<B: Backend> {
    model: Arc<Model<B>>,
    device: B::Device,
    /// The decoding thread's queue, started by the first cached generation.
    decoder: OnceLock<mpsc::Sender<Request>>,
    counters: OnceLock<DecodeCounters>,
}

/// Most sequences one batched generation step decodes together: the rows the CPU's few-rows
/// linear kernel takes (`uerzoo_kernels::MAX_ROWS`).
pub const MAX_BATCH_SEQS: usize = 16;

/// Most tokens a batch holds, counted as `max_length × num_return` of its requests (the
/// padded KV cache and the per-step work grow with it). A request over it runs alone.
pub const MAX_BATCH_TOKENS: usize = 16 * 512;

/// How long an idle decoding thread, woken by a request, waits for others before its first
/// step: requests sent together (clients whose answers ended at the same step) then arrive
/// within it and are prefilled in one forward ([`generate::batch::Decoder`]) instead of the
/// first alone and the rest after it. A lone request's first token comes this much later.
pub const JOIN_WINDOW: std::time::Duration = std::time::Duration::from_millis(2);

/// A cached generation handed to the decoding thread, and where its tokens go.
struct Request {
    job: generate::Job,
    events: mpsc::Sender<Event>,
}

enum Event {
    /// Sequence `n` of the request chose `id`.
    Token(usize, u32),
    /// The request's sequences, or why there are none.
    Done(Result<Vec<Generated>, GenerateError>),
}

/// Starts the decoding thread of `model`; it ends when the returned queue is dropped.
fn start_decoder<B: Backend>(
    model: Arc<Model<B>>,
    counters: DecodeCounters,
) -> Option<mpsc::Sender<Request>> {
    let (tx, rx) = mpsc::channel::<Request>();
    std::thread::Builder::new()
        .name("uerzoo-decode".into())
        .spawn(move || decode_loop(&model, &rx, &counters))
        .ok()?;
    Some(tx)
}

/// A request in the decoding batch: where its events go and what it counts against the caps.
struct Live {
    events: mpsc::Sender<Event>,
    seqs: usize,
    tokens: usize,
}

/// The continuous batch: between steps, takes the requests that arrived (within the caps)
/// into the batch, then decodes one step; blocks only while nothing is decoding.
fn decode_loop<B: Backend>(
    model: &Model<B>,
    rx: &mpsc::Receiver<Request>,
    counters: &DecodeCounters,
) {
    let cost = |r: &Request| {
        (
            r.job.opts.num_return.max(1),
            r.job.opts.max_length * r.job.opts.num_return.max(1),
        )
    };
    let mut decoder = generate::batch::Decoder::new(model, MAX_BATCH_SEQS);
    let mut live: HashMap<usize, Live> = HashMap::new();
    let mut waiting: VecDeque<Request> = VecDeque::new();
    let (mut seqs, mut tokens) = (0usize, 0usize);
    loop {
        if decoder.is_idle() && waiting.is_empty() {
            match rx.recv() {
                Ok(r) => waiting.push_back(r),
                Err(_) => return,
            }
            // Requests sent together with this one join its first prefill.
            let until = std::time::Instant::now() + JOIN_WINDOW;
            while let Some(left) = until.checked_duration_since(std::time::Instant::now()) {
                match rx.recv_timeout(left) {
                    Ok(r) => waiting.push_back(r),
                    Err(_) => break,
                }
            }
        }
        waiting.extend(rx.try_iter());
        // Join in arrival order while the caps allow; a request over them alone runs when
        // the batch is empty.
        while let Some(r) = waiting.front() {
            let (s, t) = cost(r);
            if !decoder.is_idle() && (seqs + s > MAX_BATCH_SEQS || tokens + t > MAX_BATCH_TOKENS) {
                break;
            }
            let Some(r) = waiting.pop_front() else { break };
            match decoder.add(r.job) {
                Ok(key) => {
                    (seqs, tokens) = (seqs + s, tokens + t);
                    let events = r.events;
                    live.insert(
                        key,
                        Live {
                            events,
                            seqs: s,
                            tokens: t,
                        },
                    );
                }
                Err(e) => {
                    let _ = r.events.send(Event::Done(Err(e)));
                }
            }
        }
        let step = decoder.step(&mut |key, n, id| {
            counters.tokens.inc();
            match live.get(&key) {
                Some(l) if l.events.send(Event::Token(n, id)).is_ok() => ControlFlow::Continue(()),
                _ => ControlFlow::Break(()),
            }
        });
        let mut leave = |key: usize| {
            let l = live.remove(&key)?;
            seqs -= l.seqs;
            tokens -= l.tokens;
            Some(l.events)
        };
        match step {
            Ok(report) => {
                counters.prefills.inc_by(report.prefills as u64);
                counters.prefilled.inc_by(report.prefilled as u64);
                for (key, out) in report.done {
                    if let Some(events) = leave(key) {
                        let _ = events.send(Event::Done(out));
                    }
                }
                for key in report.cancelled {
                    leave(key);
                    counters.cancelled.inc();
                }
            }
            Err(e) => {
                let e = e.to_string();
                for key in decoder.keys() {
                    if let Some(events) = leave(key) {
                        let failed = ModelError::Input(format!("batched generation failed: {e}"));
                        let _ = events.send(Event::Done(Err(failed.into())));
                    }
                }
                decoder.clear();
            }
        }
        counters.rows.set(decoder.rows() as i64);
    }
}

/// The sequences of a generation its caller stopped: the earlier ones as they ended, the
/// last [`generate::StopReason::Cancelled`]. Their scores are not known here (0).
fn cancelled(prompt: &[u32], opts: &GenerateOptions, new: Vec<Vec<u32>>) -> Vec<Generated> {
    use generate::StopReason;
    let count = new.len();
    let prompt_len = prompt.len().min(opts.max_length);
    new.into_iter()
        .enumerate()
        .map(|(n, tokens)| {
            let stop = if n + 1 == count {
                StopReason::Cancelled
            } else if tokens.last().is_some_and(|&id| opts.stop_id == Some(id)) {
                StopReason::StopToken
            } else if opts.max_new_tokens.is_some_and(|m| tokens.len() >= m) {
                StopReason::MaxNewTokens
            } else {
                StopReason::MaxLength
            };
            let mut ids = prompt[..prompt_len].to_vec();
            ids.extend(tokens);
            Generated {
                ids,
                prompt_len,
                stop,
                score: 0.0,
            }
        })
        .collect()
}

impl<B: Backend> Loaded<B> {
    /// Rows padded to the longest: ids (`[PAD]` = 0), segments (0 on padding).
    fn pad(&self, rows: &[Row]) -> (Vec<i64>, Vec<i64>, usize) {
        let seq = rows.iter().map(|r| r.ids.len()).max().unwrap_or(0).max(1);
        let mut ids = vec![0i64; rows.len() * seq];
        let mut seg = vec![0i64; rows.len() * seq];
        for (r, row) in rows.iter().enumerate() {
            for (j, (&i, &s)) in row.ids.iter().zip(&row.segments).enumerate() {
                ids[r * seq + j] = i64::from(i);
                seg[r * seq + j] = i64::from(s);
            }
        }
        (ids, seg, seq)
    }
}

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Result<Vec<f32>, ModelError> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| ModelError::Input(format!("reading the output back: {e:?}")))
}

impl<B: Backend> Engine for Loaded<B> {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            generate: self.model.lm.is_some(),
            fill_mask: self.model.mlm.is_some(),
            classify: self.model.classifier.is_some(),
            embed: self.model.config.mask != crate::model::MaskKind::Causal
                && self.model.classifier.is_none(),
        }
    }

    fn positions(&self) -> usize {
        self.model.config.max_seq_length
    }

    fn labels(&self) -> usize {
        self.model
            .classifier
            .as_ref()
            .map_or(0, |c| c.output_layer_2.weight.val().dims()[1])
    }

    fn generate(
        &self,
        prompt: &[u32],
        opts: &GenerateOptions,
        constraint: Option<&Constraint>,
        on_token: &mut dyn FnMut(usize, u32) -> ControlFlow<()>,
    ) -> Result<Vec<Generated>, GenerateError> {
        let alone = |on_token: &mut dyn FnMut(usize, u32) -> ControlFlow<()>| {
            generate::generate_constrained_until(&self.model, prompt, opts, constraint, on_token)
        };
        if !opts.use_cache {
            return alone(on_token);
        }
        // A decoding thread that could not start leaves a queue nobody reads: sending fails.
        let queue = self.decoder.get_or_init(|| {
            let counters = self.counters.get().cloned().unwrap_or_default();
            start_decoder(self.model.clone(), counters).unwrap_or_else(|| mpsc::channel().0)
        });
        let (events, answers) = mpsc::channel();
        let job = generate::Job {
            prompt: prompt.to_vec(),
            opts: opts.clone(),
            constraint: constraint.cloned(),
        };
        if queue.send(Request { job, events }).is_err() {
            // No decoding thread (it could not start): this thread decodes alone.
            return alone(on_token);
        }
        // A client that went away stops listening: returning drops `answers`, and the
        // decoding thread's next token for it finds the channel closed and drops its row.
        let mut new: Vec<Vec<u32>> = Vec::new();
        for event in answers {
            match event {
                Event::Token(n, id) => {
                    if new.len() <= n {
                        new.resize(n + 1, Vec::new());
                    }
                    new[n].push(id);
                    if on_token(n, id).is_break() {
                        return Ok(cancelled(prompt, opts, new));
                    }
                }
                Event::Done(out) => return out,
            }
        }
        Err(ModelError::Input("the decoding thread stopped without an answer".into()).into())
    }

    fn embed(&self, rows: &[Row], pooling: &[Pooling]) -> Result<Vec<Vec<f32>>, ModelError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let (ids, seg, seq) = self.pad(rows);
        let (t_ids, t_seg) = self
            .model
            .inputs(&ids, &seg, rows.len(), seq, &self.device)?;
        // As UER-py's extract_features: hidden × (segment > 0), so padding contributes 0.
        let keep = t_seg.clone().greater_elem(0).float().unsqueeze_dim::<3>(2);
        let h = self.model.encode(t_ids, t_seg) * keep;
        let [b, _, hidden] = h.dims();
        let first = host(h.clone().narrow(1, 0, 1).reshape([b, hidden]))?;
        let sum = if pooling.contains(&Pooling::Mean) {
            host(h.sum_dim(1).reshape([b, hidden]))?
        } else {
            Vec::new()
        };
        Ok(rows
            .iter()
            .enumerate()
            .map(|(r, row)| match pooling.get(r) {
                Some(Pooling::Mean) => {
                    let n = row.ids.len().max(1) as f32;
                    sum[r * hidden..(r + 1) * hidden]
                        .iter()
                        .map(|v| v / n)
                        .collect()
                }
                _ => first[r * hidden..(r + 1) * hidden].to_vec(),
            })
            .collect())
    }

    fn fill_mask(
        &self,
        rows: &[Row],
        positions: &[Vec<usize>],
        k: &[usize],
    ) -> Result<Vec<Vec<Vec<Candidate>>>, ModelError> {
        if self.model.mlm.is_none() {
            return Err(ModelError::Input(
                "the weights have no MLM head (`target.mlm.*`); fill-mask needs one".into(),
            ));
        }
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let (ids, seg, seq) = self.pad(rows);
        let (t_ids, t_seg) = self
            .model
            .inputs(&ids, &seg, rows.len(), seq, &self.device)?;
        let Some(logits) = self.model.forward(t_ids, t_seg).logits else {
            return Err(ModelError::Input("the model returned no logits".into()));
        };
        let vocab = logits.dims()[2];
        let mut out = Vec::with_capacity(rows.len());
        for (r, at) in positions.iter().enumerate() {
            let mut masks = Vec::with_capacity(at.len());
            for &p in at {
                let row = logits
                    .clone()
                    .narrow(0, r, 1)
                    .narrow(1, p, 1)
                    .reshape([vocab]);
                let kr = k.get(r).copied().unwrap_or(1);
                masks.push(top_k(&host(activation::softmax(row, 0))?, kr));
            }
            out.push(masks);
        }
        Ok(out)
    }

    fn count_decoding(&self, counters: DecodeCounters) {
        let _ = self.counters.set(counters);
    }

    fn classify(&self, rows: &[Row]) -> Result<Vec<Vec<f32>>, ModelError> {
        let Some(head) = &self.model.classifier else {
            return Err(ModelError::Input(
                "the weights have no classifier head (`output_layer_2`); fine-tune one with `uerzoo finetune`".into(),
            ));
        };
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let (ids, seg, seq) = self.pad(rows);
        let pool = crate::model::heads::pool_weights(&seg, rows.len(), seq, head.pooling)
            .map(|w| Tensor::from_data(TensorData::new(w, [rows.len(), seq]), &self.device));
        let (t_ids, t_seg) = self
            .model
            .inputs(&ids, &seg, rows.len(), seq, &self.device)?;
        let logits = self.model.classify(t_ids, t_seg, pool, 0.0)?;
        let labels = logits.dims()[1];
        Ok(host(logits)?
            .chunks(labels.max(1))
            .map(<[f32]>::to_vec)
            .collect())
    }
}
