//! One batching queue per encoder, as text-embeddings-inference's `core/src/queue.rs` does
//! it: requests go into a channel; a worker thread takes what is waiting, up to
//! `--max-batch-tokens` (rows × longest row, the padded size), runs one forward pass and
//! answers each request through its own `oneshot`. Requests whose client already went away
//! are skipped. Embeddings, classifications (`/v1/classify`) and fill-mask share the queue;
//! a batch holds one kind.
//!
//! Several workers (`--batch-workers`, one per core by default) take batches from the same
//! queue. A worker that runs alone computes on the whole thread pool (all cores on one
//! batch: a lone request's latency); while another worker is busy too, each computes on its
//! own one-thread pool, so concurrent batches run side by side instead of splitting every
//! small matrix product across the cores (on small encoders the threads' synchronisation
//! costs more than the split gains).

use super::engine::{Engine, Row};
use super::error::ApiError;
use super::metrics::Metrics;
use crate::model::tasks::Candidate;
use crate::model::{ModelError, Pooling};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

type Reply = Result<Vec<Vec<f32>>, ApiError>;
/// Fill-mask's answer: `[mask][candidate]` of one request.
type MaskReply = Result<Vec<Vec<Candidate>>, ApiError>;

/// What a job's rows are for, and where its answer goes.
enum Task {
    /// One vector per row, pooled so.
    Embed(Pooling, oneshot::Sender<Reply>),
    /// Classifier logits per row.
    Classify(oneshot::Sender<Reply>),
    /// The `top_k` candidates at each mask position of the (one) row.
    FillMask {
        positions: Vec<usize>,
        top_k: usize,
        reply: oneshot::Sender<MaskReply>,
    },
}

impl Task {
    /// Jobs of one kind share a batch.
    fn kind(&self) -> u8 {
        match self {
            Task::Embed(..) => 0,
            Task::Classify(_) => 1,
            Task::FillMask { .. } => 2,
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            Task::Embed(_, r) | Task::Classify(r) => r.is_closed(),
            Task::FillMask { reply, .. } => reply.is_closed(),
        }
    }

    fn fail(self, e: ApiError) {
        match self {
            Task::Embed(_, r) | Task::Classify(r) => {
                let _ = r.send(Err(e));
            }
            Task::FillMask { reply, .. } => {
                let _ = reply.send(Err(e));
            }
        }
    }
}

struct Job {
    rows: Vec<Row>,
    task: Task,
}

impl Job {
    fn longest(&self) -> usize {
        self.rows.iter().map(|r| r.ids.len()).max().unwrap_or(0)
    }
}

/// The queue in front of one encoder.
pub struct Batcher {
    tx: mpsc::Sender<Job>,
    model: String,
    metrics: Arc<Metrics>,
}

impl Batcher {
    /// Starts `workers` (at least 1) worker threads of `engine` on one queue (they end when
    /// the `Batcher` is dropped).
    pub fn start(
        model: &str,
        engine: Arc<dyn Engine>,
        max_batch_tokens: usize,
        workers: usize,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Batcher> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let busy = Arc::new(AtomicUsize::new(0));
        for w in 0..workers.max(1) {
            let own = if workers > 1 {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .thread_name(move |_| format!("uerzoo-batch-pool-{w}"))
                    .build()
                    .map_err(std::io::Error::other)?;
                Some(pool)
            } else {
                None
            };
            let (id, m) = (model.to_string(), metrics.clone());
            let (engine, rx, busy) = (engine.clone(), rx.clone(), busy.clone());
            std::thread::Builder::new()
                .name(format!("uerzoo-batch-{model}-{w}"))
                .spawn(move || {
                    let worker = Worker {
                        model: &id,
                        engine: engine.as_ref(),
                        rx: &rx,
                        max_batch_tokens,
                        metrics: &m,
                        own,
                        busy: &busy,
                    };
                    worker.run()
                })?;
        }
        Ok(Batcher {
            tx,
            model: model.to_string(),
            metrics,
        })
    }

    /// Embeds `rows` (one request), batched with whatever else is waiting.
    pub async fn embed(&self, rows: Vec<Row>, pooling: Pooling) -> Reply {
        let (reply, answer) = oneshot::channel();
        self.submit(rows, Task::Embed(pooling, reply), answer).await
    }

    /// Classifier logits of `rows` (one request), batched with other classifications.
    pub async fn classify(&self, rows: Vec<Row>) -> Reply {
        let (reply, answer) = oneshot::channel();
        self.submit(rows, Task::Classify(reply), answer).await
    }

    /// The `top_k` candidates at each of `positions` of `row` (one request), batched with
    /// other fill-mask requests.
    pub async fn fill_mask(&self, row: Row, positions: Vec<usize>, top_k: usize) -> MaskReply {
        let (reply, answer) = oneshot::channel();
        let task = Task::FillMask {
            positions,
            top_k,
            reply,
        };
        self.submit(vec![row], task, answer).await
    }

    async fn submit<T>(
        &self,
        rows: Vec<Row>,
        task: Task,
        answer: oneshot::Receiver<Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        let depth = self
            .metrics
            .queue_depth
            .get_or_create(&Metrics::model(&self.model))
            .clone();
        depth.inc();
        if self.tx.send(Job { rows, task }).is_err() {
            depth.dec();
            return Err(ApiError::Internal(format!(
                "the encoder of `{}` stopped",
                self.model
            )));
        }
        answer.await.unwrap_or_else(|_| {
            Err(ApiError::Internal(format!(
                "the encoder of `{}` dropped the request",
                self.model
            )))
        })
    }
}

/// One worker: its share of the queue, and its own one-thread pool when there are several.
struct Worker<'a> {
    model: &'a str,
    engine: &'a dyn Engine,
    rx: &'a Mutex<mpsc::Receiver<Job>>,
    max_batch_tokens: usize,
    metrics: &'a Metrics,
    own: Option<rayon::ThreadPool>,
    /// Workers computing now (of this encoder).
    busy: &'a AtomicUsize,
}

impl Worker<'_> {
    fn run(&self) {
        let label = Metrics::model(self.model);
        let depth = self.metrics.queue_depth.get_or_create(&label).clone();
        let mut carried: Option<Job> = None;
        loop {
            let mut jobs = {
                // The queue is held while a batch forms: one worker gathers at a time.
                let Ok(rx) = self.rx.lock() else { return };
                let first = match carried.take() {
                    Some(job) => job,
                    None => match rx.recv() {
                        Ok(job) => {
                            depth.dec();
                            job
                        }
                        Err(_) => return,
                    },
                };
                let mut jobs = vec![first];
                let (mut rows, mut longest) = (jobs[0].rows.len(), jobs[0].longest());
                let kind = jobs[0].task.kind();
                while let Ok(job) = rx.try_recv() {
                    depth.dec();
                    let (r, l) = (rows + job.rows.len(), longest.max(job.longest()));
                    if r * l > self.max_batch_tokens || job.task.kind() != kind {
                        carried = Some(job);
                        break;
                    }
                    (rows, longest) = (r, l);
                    jobs.push(job);
                }
                jobs
            };
            jobs.retain(|j| !j.task.is_closed());
            if jobs.is_empty() {
                continue;
            }
            let all: Vec<Row> = jobs.iter().flat_map(|j| j.rows.iter().cloned()).collect();
            self.metrics
                .batch_rows
                .get_or_create(&label)
                .observe(all.len() as f64);
            let longest = all.iter().map(|r| r.ids.len()).max().unwrap_or(0);
            self.metrics
                .batch_tokens
                .get_or_create(&label)
                .observe((all.len() * longest) as f64);
            let engine = self.engine;
            let compute = move || {
                if matches!(jobs[0].task, Task::FillMask { .. }) {
                    fill_masks(engine, &all, jobs);
                } else {
                    vectors(engine, &all, jobs);
                }
            };
            let alone = self.busy.fetch_add(1, Ordering::SeqCst) == 0;
            match &self.own {
                Some(pool) if !alone => pool.install(compute),
                _ => compute(),
            }
            self.busy.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Runs `f` on the encoder; an error or a panic becomes every job's answer.
fn guarded<T>(jobs: &mut Vec<Job>, f: impl FnOnce() -> Result<T, ModelError>) -> Option<T> {
    let message = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(v)) => return Some(v),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "the encoder panicked".to_string(),
    };
    for j in jobs.drain(..) {
        j.task.fail(ApiError::Internal(message.clone()));
    }
    None
}

/// Embeddings or classifier logits: one vector per row.
fn vectors(engine: &dyn Engine, all: &[Row], mut jobs: Vec<Job>) {
    let pooling: Vec<Pooling> = jobs
        .iter()
        .flat_map(|j| {
            let p = match j.task {
                Task::Embed(p, _) => p,
                _ => Pooling::First,
            };
            std::iter::repeat_n(p, j.rows.len())
        })
        .collect();
    let classify = matches!(jobs[0].task, Task::Classify(_));
    let Some(out) = guarded(&mut jobs, || {
        if classify {
            engine.classify(all)
        } else {
            engine.embed(all, &pooling)
        }
    }) else {
        return;
    };
    let mut out = out.into_iter();
    for j in jobs {
        let mine: Vec<Vec<f32>> = out.by_ref().take(j.rows.len()).collect();
        if let Task::Embed(_, reply) | Task::Classify(reply) = j.task {
            let _ = reply.send(Ok(mine));
        }
    }
}

/// Fill-mask: each job is one row with its mask positions.
fn fill_masks(engine: &dyn Engine, all: &[Row], mut jobs: Vec<Job>) {
    let (positions, top_k): (Vec<Vec<usize>>, Vec<usize>) = jobs
        .iter()
        .map(|j| match &j.task {
            Task::FillMask {
                positions, top_k, ..
            } => (positions.clone(), *top_k),
            _ => (Vec::new(), 1),
        })
        .unzip();
    let Some(out) = guarded(&mut jobs, || engine.fill_mask(all, &positions, &top_k)) else {
        return;
    };
    for (j, masks) in jobs.into_iter().zip(out) {
        if let Task::FillMask { reply, .. } = j.task {
            let _ = reply.send(Ok(masks));
        }
    }
}
