//! `uerzoo serve`: the zoo over HTTP, on axum (hyper, tokio).
//!
//! This module owns the server: which models it holds ([`ServedModel`], each opened with
//! [`crate::resolve::open_model`] and loaded once by [`engine::load`]), the routes
//! ([`handlers`]: OpenAI-compatible completions with server-sent events, embeddings and
//! models; the zoo's fill-mask, classify and tokenize; health, metrics and the web page),
//! the limits (body size, tokens, concurrency → 429), batching of encoder requests
//! ([`batcher`]) and graceful shutdown. Model compute never runs on the async runtime:
//! generation runs on blocking threads; embeddings, classify and fill-mask on each encoder's
//! batching thread. It never prints; the CLI reports the address and errors.

pub mod batcher;
pub mod engine;
pub mod error;
pub mod handlers;
pub mod metrics;
pub mod types;
mod web;

pub use engine::{Capabilities, Engine, Row};
pub use error::ApiError;

use crate::generate::{Preset, Sampling};
use crate::model::open::OpenedModel;
use crate::model::{DeviceSpec, ModelError, Pooling};
use crate::resolve::open_model;
use crate::tokenizer::{Tokenizer, Truncation};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Everything that can go wrong starting or running the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A model argument that could not be opened or loaded.
    #[error("model `{id}`")]
    Model { id: String, source: ModelError },
    /// No tokenizer beside the weights.
    #[error("model `{id}`: {message}")]
    Tokenizer { id: String, message: String },
    /// Two models with the same id.
    #[error(
        "model id `{0}` is given twice (a file is named by its stem or folder); name them apart with ID=PATH"
    )]
    DuplicateId(String),
    /// No models.
    #[error("no models to serve; give at least one MODEL")]
    NoModels,
    /// An option out of range.
    #[error("--{option}: {message}")]
    Option {
        option: &'static str,
        message: String,
    },
    /// Binding or serving failed.
    #[error("{context}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

/// One `MODEL` argument: `PATH_OR_NAME`, or `ID=PATH_OR_NAME` to choose the id requests use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// The id in requests (`"model": …`), never a path: the `ID` given, else the registry
    /// name, else the file's stem or folder ([`ModelSpec::default_id`]).
    pub id: String,
    /// A registry name, a UER `.bin`/`.safetensors` or an HF directory.
    pub path: PathBuf,
}

impl std::str::FromStr for ModelSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("empty model argument; give a registry name, a file or a directory".into());
        }
        match s.split_once('=') {
            Some((id, path)) if !id.is_empty() && !id.contains('/') && !path.is_empty() => {
                Ok(ModelSpec {
                    id: id.into(),
                    path: path.into(),
                })
            }
            _ => Ok(ModelSpec {
                id: ModelSpec::default_id(Path::new(s)),
                path: s.into(),
            }),
        }
    }
}

/// One `--vocab ID=FILE`: the tokenizer (a `vocab.txt` or a sentencepiece `.model`) of
/// the model served as ID, for weights with no vocabulary beside them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VocabSpec {
    /// The served model's id (as in [`ModelSpec::id`]).
    pub id: String,
    pub file: PathBuf,
}

impl std::str::FromStr for VocabSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('=') {
            Some((id, file)) if !id.is_empty() && !file.is_empty() => Ok(VocabSpec {
                id: id.into(),
                file: file.into(),
            }),
            _ => Err(format!(
                "`{s}`: expected ID=FILE, the id of a served model and its vocab.txt or sentencepiece .model (e.g. roberta=vocab.txt)"
            )),
        }
    }
}

/// File stems that say nothing of the model: such a file is named by its folder.
const GENERIC_STEMS: &[&str] = &["uer_model", "pytorch_model", "model", "classifier"];

impl ModelSpec {
    /// The id of a `MODEL` given without `ID=`: a registry name (no such path) as given; a
    /// directory by its name; a file by its stem, or by its folder when the stem is generic
    /// (`uer_model.bin` → its folder). Clients never see the server's directory layout.
    pub fn default_id(path: &Path) -> String {
        if !path.exists() {
            return path.display().to_string();
        }
        let full = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
        let id = if full.is_dir() {
            name(&full)
        } else {
            let stem = full
                .file_stem()
                .map(|n| n.to_string_lossy().into_owned())
                .filter(|s| !GENERIC_STEMS.contains(&s.as_str()));
            stem.or_else(|| full.parent().and_then(name))
        };
        id.filter(|s| !s.is_empty())
            .unwrap_or_else(|| "model".into())
    }
}

/// How to serve.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeOptions {
    /// Address to bind (the CLI's `--host`).
    pub host: String,
    /// Port; 0 lets the system choose (the bound address is [`Server::local_addr`]).
    pub port: u16,
    pub device: DeviceSpec,
    /// Padded tokens (rows × longest row) per encoder forward pass.
    pub max_batch_tokens: usize,
    /// Encoder batches computed at once per model (`--batch-workers`; `None`: one per core
    /// on the CPU, 1 on a GPU). See [`batcher`].
    pub batch_workers: Option<usize>,
    /// Model requests running at once; more get 429.
    pub max_concurrency: usize,
    /// Largest request body in bytes; larger get 413.
    pub max_body_bytes: usize,
    /// Most choices (`n`) per completion request.
    pub max_choices: usize,
    /// Most new tokens one completion request may ask for (prompts × `n` × `max_tokens`).
    pub max_request_tokens: usize,
    /// Host header names requests may carry (a port after them ignored); empty: any. Guards a
    /// loopback server against DNS rebinding.
    pub allowed_hosts: Vec<String>,
    /// A client must send its request's header within this (else it is disconnected).
    pub header_timeout: Duration,
    /// After a signal, how long the requests in flight may take to finish.
    pub shutdown_timeout: Duration,
    /// Pooling of fine-tuned classifiers (default: each model's recorded `pooling`, as
    /// `uerzoo predict`; else first).
    pub classifier_pooling: Option<Pooling>,
    /// Tokens per classified example (default: each model's recorded `seq_length`, else 128;
    /// at most the model's positions).
    pub classifier_seq_length: Option<usize>,
    /// How a long example is cut (default: each model's recorded `truncation`, else by
    /// where the weights come from; see [`OpenedModel::truncation`]).
    pub classifier_truncation: Option<Truncation>,
    /// Precision of every served model's encoder linear layers (`--dtype`; int8 on the CPU
    /// only, see [`crate::model::Dtype`]).
    pub dtype: crate::model::Dtype,
    /// Tokenizers of models that have none beside their weights (`--vocab ID=FILE`).
    pub vocabs: Vec<VocabSpec>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            host: "127.0.0.1".into(),
            port: 8080,
            device: DeviceSpec::Cpu,
            max_batch_tokens: 16384,
            batch_workers: None,
            max_concurrency: 64,
            max_body_bytes: 2 << 20,
            max_choices: 8,
            max_request_tokens: 65536,
            allowed_hosts: Vec::new(),
            header_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(30),
            classifier_pooling: None,
            classifier_seq_length: None,
            classifier_truncation: None,
            dtype: crate::model::Dtype::F32,
            vocabs: Vec::new(),
        }
    }
}

/// A model loaded for serving.
pub struct ServedModel {
    /// The id requests use.
    pub id: String,
    pub engine: Arc<dyn Engine>,
    pub tokenizer: Arc<Tokenizer>,
    pub capabilities: Capabilities,
    /// Longest sequence (position embeddings).
    pub positions: usize,
    /// Completions' default prompt format (the registry entry's, else plain).
    pub preset: &'static Preset,
    /// Completions' default sampling (the registry card's, else UER-py's).
    pub sampling: Sampling,
    /// How `/v1/classify` encodes and pools, for a model with a classifier head.
    pub classifier: Option<ClassifierSettings>,
}

/// A served classifier's settings, as `uerzoo predict` chooses them: the flags, else what
/// `uerzoo finetune` recorded in the model's UER config, else predict's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassifierSettings {
    pub pooling: Pooling,
    /// Tokens per example, `[CLS]` and `[SEP]`s included.
    pub seq_length: usize,
    pub truncation: Truncation,
}

impl ClassifierSettings {
    /// `opts`' overrides, else the model's recorded values, else predict's defaults.
    fn of(opened: &OpenedModel, opts: &ServeOptions) -> Result<Self, ModelError> {
        let pooling = match opts.classifier_pooling {
            Some(p) => p,
            None => opened.pooling()?,
        };
        let positions = crate::generate::positions(opened).unwrap_or(usize::MAX);
        let seq_length = match opts.classifier_seq_length {
            Some(n) if n < 2 || n > positions => {
                return Err(ModelError::Input(format!(
                    "--classifier-seq-length {n}: expected 2 to the model's {positions} positions"
                )));
            }
            Some(n) => n,
            None => opened
                .config_value("seq_length")
                .and_then(|v| v.as_u64())
                .map_or(128, |n| usize::try_from(n).unwrap_or(usize::MAX))
                .min(positions),
        };
        let truncation = match opts.classifier_truncation {
            Some(t) => t,
            None => opened.truncation()?,
        };
        Ok(ClassifierSettings {
            pooling,
            seq_length,
            truncation,
        })
    }
}

/// Opens and loads each model once, in order.
pub fn load_models(
    specs: &[ModelSpec],
    opts: &ServeOptions,
) -> Result<Vec<ServedModel>, ServeError> {
    if specs.is_empty() {
        return Err(ServeError::NoModels);
    }
    if let Some(v) = opts
        .vocabs
        .iter()
        .find(|v| !specs.iter().any(|s| s.id == v.id))
    {
        let ids: Vec<&str> = specs.iter().map(|s| s.id.as_str()).collect();
        return Err(ServeError::Option {
            option: "vocab",
            message: format!(
                "`{}` is not the id of a served model ({}); give ID=FILE with one of them",
                v.id,
                ids.join(", ")
            ),
        });
    }
    let mut out: Vec<ServedModel> = Vec::new();
    for spec in specs {
        if out.iter().any(|m| m.id == spec.id) {
            return Err(ServeError::DuplicateId(spec.id.clone()));
        }
        let model_err = |source| ServeError::Model {
            id: spec.id.clone(),
            source,
        };
        let mut opened = open_model(&spec.path, None).map_err(model_err)?;
        opened.config.dtype = opts.dtype;
        let vocab = opts.vocabs.iter().rev().find(|v| v.id == spec.id);
        let tokenizer = crate::resolve::open_tokenizer(&opened, vocab.map(|v| v.file.as_path()))
            .map_err(|e| ServeError::Tokenizer {
                id: spec.id.clone(),
                message: e.to_string(),
            })?;
        let has_head = opened
            .checkpoint
            .get(&format!("{}.weight", crate::model::load::keys::CLS_2))
            .is_some();
        let classifier = has_head
            .then(|| ClassifierSettings::of(&opened, opts))
            .transpose()
            .map_err(model_err)?;
        let engine = engine::load(
            &opened,
            opts.device,
            classifier.map_or(Pooling::First, |c| c.pooling),
        )
        .map_err(model_err)?;
        let entry = (!spec.path.exists())
            .then(|| {
                spec.path
                    .to_str()
                    .and_then(|n| crate::registry::Registry::builtin().get(n).ok())
            })
            .flatten();
        let preset = entry.map_or_else(
            || Preset::for_weights(&opened.checkpoint),
            |e| Preset::for_entry(&e.name),
        );
        let sampling = entry
            .and_then(|e| e.generation.as_ref())
            .map_or(Sampling::default(), |c| Sampling {
                top_k: c.top_k,
                top_p: c.top_p,
                temperature: c.temperature,
                ..Sampling::default()
            });
        out.push(ServedModel {
            id: spec.id.clone(),
            capabilities: engine.capabilities(),
            positions: engine.positions(),
            engine,
            tokenizer: Arc::new(tokenizer),
            preset,
            sampling,
            classifier,
        });
    }
    Ok(out)
}

/// A bound port with no models yet: `uerzoo serve` binds before the (long) model load, so a
/// taken port or a bad `--host` is found at once.
pub struct Bound {
    listener: tokio::net::TcpListener,
}

/// Checks `opts` and binds `opts.host:opts.port` (inside a tokio runtime).
pub async fn bind(opts: &ServeOptions) -> Result<Bound, ServeError> {
    for (option, value) in [
        ("max-concurrency", opts.max_concurrency),
        ("max-batch-tokens", opts.max_batch_tokens),
        ("batch-workers", opts.batch_workers.unwrap_or(1)),
        ("max-request-tokens", opts.max_request_tokens),
    ] {
        if value == 0 {
            return Err(ServeError::Option {
                option,
                message: "must be at least 1".into(),
            });
        }
    }
    let addr = format!("{}:{}", opts.host, opts.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| ServeError::Io {
            context: match source.kind() {
                std::io::ErrorKind::AddrInUse => format!(
                    "binding {addr}: the port is taken; try another --port, or --port 0"
                ),
                std::io::ErrorKind::PermissionDenied => format!(
                    "binding {addr}: not allowed; ports below 1024 need privileges, try --port 8080"
                ),
                _ => format!(
                    "binding {addr}: check --host (an address of this machine, e.g. 127.0.0.1 or 0.0.0.0)"
                ),
            },
            source,
        })?;
    Ok(Bound { listener })
}

impl Bound {
    /// The address the port is bound to.
    pub fn local_addr(&self) -> Result<SocketAddr, ServeError> {
        self.listener.local_addr().map_err(|source| ServeError::Io {
            context: "reading the bound address".into(),
            source,
        })
    }

    /// Builds the routes over `models` (starting the encoders' batching threads).
    pub fn with_models(
        self,
        models: Vec<ServedModel>,
        opts: &ServeOptions,
    ) -> Result<Server, ServeError> {
        let state = handlers::AppState::new(models, opts).map_err(|source| ServeError::Io {
            context: "starting the encoder threads".into(),
            source,
        })?;
        Ok(Server {
            listener: self.listener,
            app: handlers::router(state, opts),
            header_timeout: opts.header_timeout,
            shutdown_timeout: opts.shutdown_timeout,
        })
    }
}

/// A bound server, not yet accepting.
pub struct Server {
    listener: tokio::net::TcpListener,
    app: axum::Router,
    header_timeout: Duration,
    shutdown_timeout: Duration,
}

/// How [`Server::run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every request in flight finished.
    Drained,
    /// `--shutdown-timeout` passed with `open` connections left; they were closed.
    DeadlinePassed { open: usize },
    /// A second signal: `open` connections were closed at once.
    SecondSignal { open: usize },
}

impl Server {
    /// Binds `opts.host:opts.port` and builds the routes over `models` (must be called
    /// inside a tokio runtime).
    pub async fn bind(models: Vec<ServedModel>, opts: &ServeOptions) -> Result<Server, ServeError> {
        bind(opts).await?.with_models(models, opts)
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> Result<SocketAddr, ServeError> {
        self.listener.local_addr().map_err(|source| ServeError::Io {
            context: "reading the bound address".into(),
            source,
        })
    }

    /// Serves until the first of `signals`, then stops accepting and lets the requests in
    /// flight (streams included) finish, for at most `--shutdown-timeout`; a second signal
    /// closes them at once. A client that has not sent its whole header within
    /// `--header-timeout` is disconnected, so a half-sent request cannot hold the drain.
    pub async fn run(self, mut signals: mpsc::Receiver<()>) -> Result<Stopped, ServeError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
        loop {
            tokio::select! {
                accepted = self.listener.accept() => {
                    let stream = match accepted {
                        Ok((stream, _)) => stream,
                        // Out of file descriptors and the like: wait, do not spin.
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let conn = Connection {
                        app: self.app.clone(),
                        header_timeout: self.header_timeout,
                        stop: stop_rx.clone(),
                        open: open.clone(),
                        done: done_tx.clone(),
                    };
                    open.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tokio::spawn(conn.serve(stream));
                }
                _ = signals.recv() => break,
            }
        }
        drop(self.listener);
        drop(done_tx);
        let _ = stop_tx.send(true);
        let left = || open.load(std::sync::atomic::Ordering::SeqCst);
        tokio::select! {
            // Every connection's sender dropped: all done.
            _ = done_rx.recv() => Ok(Stopped::Drained),
            _ = tokio::time::sleep(self.shutdown_timeout) => Ok(Stopped::DeadlinePassed { open: left() }),
            _ = signals.recv() => Ok(Stopped::SecondSignal { open: left() }),
        }
    }
}

/// One accepted connection (HTTP/1.1, keep-alive), served by hyper under the router.
struct Connection {
    app: axum::Router,
    header_timeout: Duration,
    stop: watch::Receiver<bool>,
    open: Arc<std::sync::atomic::AtomicUsize>,
    /// Dropped when the connection ends; the drain waits for every one.
    done: mpsc::Sender<()>,
}

impl Connection {
    async fn serve(mut self, stream: tokio::net::TcpStream) {
        use hyper_util::rt::{TokioIo, TokioTimer};
        let service = hyper_util::service::TowerToHyperService::new(self.app.clone());
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout);
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let mut conn = std::pin::pin!(conn);
        let mut stopping = *self.stop.borrow();
        if stopping {
            conn.as_mut().graceful_shutdown();
        }
        loop {
            tokio::select! {
                _ = conn.as_mut() => break,
                changed = self.stop.changed(), if !stopping => {
                    stopping = true;
                    if changed.is_ok() {
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
        }
        self.open.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        drop(self.done);
    }
}

/// Every SIGINT (Ctrl-C) and SIGTERM, as they come: the first starts the drain, the second
/// ends it (see [`Server::run`]). The handlers are installed before this returns (inside a
/// tokio runtime).
pub fn signals() -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel(4);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).ok();
        let mut int = signal(SignalKind::interrupt()).ok();
        tokio::spawn(async move {
            async fn next(s: Option<&mut tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            loop {
                tokio::select! {
                    _ = next(term.as_mut()) => {}
                    _ = next(int.as_mut()) => {}
                }
                if tx.send(()).await.is_err() {
                    return;
                }
            }
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            if tx.send(()).await.is_err() {
                return;
            }
        }
    });
    rx
}
