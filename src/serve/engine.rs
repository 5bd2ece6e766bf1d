//! The models a server holds: each opened with [`crate::resolve::open_model`], loaded
//! once on its backend and kept behind the object-safe [`Engine`], so request handlers
//! never see a Burn type and several threads can run the same weights at once.
//!
//! Generation with the KV cache goes through one decoding thread per model: the requests
//! waiting when a batch starts (up to [`MAX_BATCH_SEQS`] sequences and
//! [`MAX_BATCH_TOKENS`] tokens) decode together, one forward per token for all of them
//! ([`generate::batch::generate_batched`], which gives each sequence what it gets alone),
//! and each request's tokens go back to its own thread as they are chosen. Requests that
//! arrive while a batch runs wait for the next one.

use crate::generate::{self, Constraint, GenerateError, GenerateOptions, Generated};
use crate::model::backend::{BackendJob, DeviceSpec, run_on};
use crate::model::open::OpenedModel;
use crate::model::tasks::{Candidate, top_k};
use crate::model::{Model, ModelError, Pooling, load_model};
use burn::tensor::{Tensor, TensorData, activation, backend::Backend};
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
        }))
    }
}

struct Loaded<B: Backend> {
    model: Arc<Model<B>>,
    device: B::Device,
    /// The decoding thread's queue, started by the first cached generation.
    decoder: OnceLock<mpsc::Sender<Request>>,
}

/// Most sequences one batched generation step decodes together: the rows the CPU's few-rows
/// linear kernel takes (`uerzoo_kernels::MAX_ROWS`).
pub const MAX_BATCH_SEQS: usize = 16;

/// Most tokens a batch holds, counted as `max_length × num_return` of its requests (the
/// padded KV cache and the per-step work grow with it). A request over it runs alone.
pub const MAX_BATCH_TOKENS: usize = 16 * 512;

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
fn start_decoder<B: Backend>(model: Arc<Model<B>>) -> Option<mpsc::Sender<Request>> {
    let (tx, rx) = mpsc::channel::<Request>();
    std::thread::Builder::new()
        .name("uerzoo-decode".into())
        .spawn(move || decode_loop(&model, &rx))
        .ok()?;
    Some(tx)
}

/// Takes the requests waiting when a batch starts, within the caps, and decodes them
/// together; a request over the caps starts the next batch.
fn decode_loop<B: Backend>(model: &Model<B>, rx: &mpsc::Receiver<Request>) {
    let cost = |r: &Request| r.job.opts.max_length * r.job.opts.num_return.max(1);
    let mut next: Option<Request> = None;
    loop {
        let first = match next.take() {
            Some(r) => r,
            None => match rx.recv() {
                Ok(r) => r,
                Err(_) => return,
            },
        };
        let (mut seqs, mut tokens) = (first.job.opts.num_return.max(1), cost(&first));
        let mut batch = vec![first];
        while let Ok(r) = rx.try_recv() {
            let (s, t) = (r.job.opts.num_return.max(1), cost(&r));
            if seqs + s > MAX_BATCH_SEQS || tokens + t > MAX_BATCH_TOKENS {
                next = Some(r);
                break;
            }
            (seqs, tokens) = (seqs + s, tokens + t);
            batch.push(r);
        }
        run_batch(model, batch);
    }
}

/// Decodes `batch` together and answers each request; when the batch is refused (a job's
/// options the model cannot run, checked before any token), each request runs alone and
/// gets its own answer or error.
fn run_batch<B: Backend>(model: &Model<B>, batch: Vec<Request>) {
    let jobs: Vec<generate::Job> = batch.iter().map(|r| r.job.clone()).collect();
    let mut sent = false;
    let result =
        generate::batch::generate_batched(model, &jobs, MAX_BATCH_SEQS, &mut |j, n, id| {
            sent = true;
            let _ = batch[j].events.send(Event::Token(n, id));
        });
    match result {
        Ok(outs) => {
            for (r, out) in batch.iter().zip(outs) {
                let _ = r.events.send(Event::Done(Ok(out)));
            }
        }
        Err(e) if sent => {
            let e = e.to_string();
            for r in &batch {
                let failed = ModelError::Input(format!("batched generation failed: {e}"));
                let _ = r.events.send(Event::Done(Err(failed.into())));
            }
        }
        Err(_) => {
            for r in &batch {
                let job = &r.job;
                let out = generate::generate_constrained_until(
                    model,
                    &job.prompt,
                    &job.opts,
                    job.constraint.as_ref(),
                    &mut |n, id| match r.events.send(Event::Token(n, id)) {
                        Ok(()) => ControlFlow::Continue(()),
                        Err(_) => ControlFlow::Break(()),
                    },
                );
                let _ = r.events.send(Event::Done(out));
            }
        }
    }
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
        let queue = self
            .decoder
            .get_or_init(|| start_decoder(self.model.clone()).unwrap_or_else(|| mpsc::channel().0));
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
        // A client that went away stops listening; its sequences finish with the batch.
        let mut listening = true;
        for event in answers {
            match event {
                Event::Token(n, id) => {
                    if listening && on_token(n, id).is_break() {
                        listening = false;
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
