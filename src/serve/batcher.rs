//! One batching queue per encoder, as text-embeddings-inference's `core/src/queue.rs` does
//! it: requests go into a channel; a worker thread takes what is waiting, up to
//! `--max-batch-tokens` (rows × longest row, the padded size), runs one forward pass and
//! answers each request through its own `oneshot`. Requests whose client already went away
//! are skipped. Embeddings and classifications (`/v1/classify`) share the queue; a batch
//! holds one kind.

use super::engine::{Engine, Row};
use super::error::ApiError;
use super::metrics::Metrics;
use crate::model::Pooling;
use std::sync::Arc;
use std::sync::mpsc;
use tokio::sync::oneshot;

type Reply = Result<Vec<Vec<f32>>, ApiError>;

/// What a job's rows are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Task {
    /// One vector per row, pooled so.
    Embed(Pooling),
    /// Classifier logits per row.
    Classify,
}

struct Job {
    rows: Vec<Row>,
    task: Task,
    reply: oneshot::Sender<Reply>,
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
    /// Starts the worker thread of `engine` (it ends when the `Batcher` is dropped).
    pub fn start(
        model: &str,
        engine: Arc<dyn Engine>,
        max_batch_tokens: usize,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Batcher> {
        let (tx, rx) = mpsc::channel::<Job>();
        let (id, m) = (model.to_string(), metrics.clone());
        std::thread::Builder::new()
            .name(format!("uerzoo-batch-{model}"))
            .spawn(move || work(&id, engine.as_ref(), rx, max_batch_tokens, &m))?;
        Ok(Batcher {
            tx,
            model: model.to_string(),
            metrics,
        })
    }

    /// Embeds `rows` (one request), batched with whatever else is waiting.
    pub async fn embed(&self, rows: Vec<Row>, pooling: Pooling) -> Reply {
        self.submit(rows, Task::Embed(pooling)).await
    }

    /// Classifier logits of `rows` (one request), batched with other classifications.
    pub async fn classify(&self, rows: Vec<Row>) -> Reply {
        self.submit(rows, Task::Classify).await
    }

    async fn submit(&self, rows: Vec<Row>, task: Task) -> Reply {
        let (reply, answer) = oneshot::channel();
        let depth = self
            .metrics
            .queue_depth
            .get_or_create(&Metrics::model(&self.model))
            .clone();
        depth.inc();
        if self.tx.send(Job { rows, task, reply }).is_err() {
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

fn work(
    model: &str,
    engine: &dyn Engine,
    rx: mpsc::Receiver<Job>,
    max_batch_tokens: usize,
    metrics: &Metrics,
) {
    let label = Metrics::model(model);
    let depth = metrics.queue_depth.get_or_create(&label).clone();
    let mut carried: Option<Job> = None;
    loop {
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
        let classify = jobs[0].task == Task::Classify;
        while let Ok(job) = rx.try_recv() {
            depth.dec();
            let (r, l) = (rows + job.rows.len(), longest.max(job.longest()));
            if r * l > max_batch_tokens || (job.task == Task::Classify) != classify {
                carried = Some(job);
                break;
            }
            (rows, longest) = (r, l);
            jobs.push(job);
        }
        jobs.retain(|j| !j.reply.is_closed());
        if jobs.is_empty() {
            continue;
        }
        let all: Vec<Row> = jobs.iter().flat_map(|j| j.rows.iter().cloned()).collect();
        let pooling: Vec<Pooling> = jobs
            .iter()
            .flat_map(|j| {
                let p = match j.task {
                    Task::Embed(p) => p,
                    Task::Classify => Pooling::First,
                };
                std::iter::repeat_n(p, j.rows.len())
            })
            .collect();
        metrics
            .batch_rows
            .get_or_create(&label)
            .observe(all.len() as f64);
        let longest = all.iter().map(|r| r.ids.len()).max().unwrap_or(0);
        metrics
            .batch_tokens
            .get_or_create(&label)
            .observe((all.len() * longest) as f64);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if classify {
                engine.classify(&all)
            } else {
                engine.embed(&all, &pooling)
            }
        }));
        let mut vectors = match result {
            Ok(Ok(v)) => v.into_iter(),
            Ok(Err(e)) => {
                for j in jobs {
                    let _ = j.reply.send(Err(ApiError::Internal(e.to_string())));
                }
                continue;
            }
            Err(_) => {
                for j in jobs {
                    let _ = j
                        .reply
                        .send(Err(ApiError::Internal("the encoder panicked".into())));
                }
                continue;
            }
        };
        for j in jobs {
            let mine: Vec<Vec<f32>> = vectors.by_ref().take(j.rows.len()).collect();
            let _ = j.reply.send(Ok(mine));
        }
    }
}
