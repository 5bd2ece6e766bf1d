//! The routes. Each handler validates its body (errors name the field), takes a
//! `--max-concurrency` slot (429 when none is free), runs the model off the async runtime
//! and shapes the answer; nothing here computes.

use super::batcher::Batcher;
use super::engine::Row;
use super::error::ApiError;
use super::metrics::{Metrics, Route, RouteStatus};
use super::types::*;
use super::{ServeOptions, ServedModel, web};
use crate::generate::preset::Cut;
use crate::generate::{
    self, Constraint, GenerateError, GenerateOptions, Preset, Sampling, StopReason, TextStream,
};
use crate::model::Pooling;
use crate::tokenizer::MASK_TOKEN;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// A served model and, for encoders, its batching queue.
pub struct Held {
    pub model: ServedModel,
    pub batcher: Option<Batcher>,
}

/// What every handler shares.
pub struct AppState {
    pub models: Vec<Arc<Held>>,
    pub metrics: Arc<Metrics>,
    slots: Arc<Semaphore>,
    max_concurrency: usize,
    max_batch_tokens: usize,
    max_choices: usize,
    max_request_tokens: usize,
    allowed_hosts: Vec<String>,
    created: u64,
    next_id: AtomicU64,
}

impl AppState {
    /// Wraps the models and starts one batching thread per encoder.
    pub fn new(models: Vec<ServedModel>, opts: &ServeOptions) -> std::io::Result<Arc<AppState>> {
        let metrics = Arc::new(Metrics::default());
        let mut held = Vec::with_capacity(models.len());
        for model in models {
            let c = model.capabilities;
            if c.generate {
                let label = Metrics::model(&model.id);
                model.engine.count_decoding(super::engine::DecodeCounters {
                    rows: metrics.decode_rows.get_or_create(&label).clone(),
                    tokens: metrics.decoded_tokens.get_or_create(&label).clone(),
                    cancelled: metrics.decode_cancelled.get_or_create(&label).clone(),
                    prefills: metrics.decode_prefills.get_or_create(&label).clone(),
                    prefilled: metrics
                        .decode_prefilled_prompts
                        .get_or_create(&label)
                        .clone(),
                });
            }
            let batcher = if c.embed || c.classify || c.fill_mask {
                Some(Batcher::start(
                    &model.id,
                    model.engine.clone(),
                    opts.max_batch_tokens,
                    opts.batch_workers.unwrap_or(match opts.device {
                        crate::model::DeviceSpec::Cpu => rayon::current_num_threads(),
                        _ => 1,
                    }),
                    metrics.clone(),
                )?)
            } else {
                None
            };
            held.push(Arc::new(Held { model, batcher }));
        }
        Ok(Arc::new(AppState {
            models: held,
            metrics,
            slots: Arc::new(Semaphore::new(opts.max_concurrency)),
            max_concurrency: opts.max_concurrency,
            max_batch_tokens: opts.max_batch_tokens,
            max_choices: opts.max_choices,
            max_request_tokens: opts.max_request_tokens,
            allowed_hosts: opts
                .allowed_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            created: now(),
            next_id: AtomicU64::new(1),
        }))
    }

    fn model(&self, id: &str) -> Result<Arc<Held>, ApiError> {
        self.models
            .iter()
            .find(|m| m.model.id == id)
            .cloned()
            .ok_or_else(|| ApiError::UnknownModel {
                id: id.into(),
                known: self.models.iter().map(|m| m.model.id.clone()).collect(),
            })
    }

    /// A `--max-concurrency` slot, or 429.
    fn slot(&self) -> Result<Slot, ApiError> {
        let permit = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::Busy {
                limit: self.max_concurrency,
            })?;
        self.metrics.in_flight.inc();
        Ok(Slot {
            _permit: permit,
            metrics: self.metrics.clone(),
        })
    }
}

/// A held concurrency slot; dropping it frees the slot.
struct Slot {
    _permit: OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.metrics.in_flight.dec();
    }
}

/// The routes over `state`.
pub fn router(state: Arc<AppState>, opts: &ServeOptions) -> Router {
    Router::new()
        .route("/", get(web::index))
        .route("/app.js", get(web::script))
        .route("/style.css", get(web::style))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/models", get(list_models))
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/fill-mask", post(fill_mask))
        .route("/v1/classify", post(classify))
        .route("/v1/tokenize", post(tokenize))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), check_host))
        .layer(middleware::from_fn_with_state(state.clone(), record))
        .layer(DefaultBodyLimit::max(opts.max_body_bytes))
        .with_state(state)
}

/// A JSON body whose rejections (malformed JSON, wrong type, too large) are [`ApiError`]s.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(r) => Err(ApiError::from(r as JsonRejection)),
        }
    }
}

/// `--allowed-hosts`: a request whose Host header names another host is refused (403), so a
/// page on a rebound DNS name cannot reach a loopback server.
async fn check_host(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if st.allowed_hosts.is_empty() {
        return next.run(req).await;
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host())
        .unwrap_or("");
    let name = match host.strip_prefix('[') {
        // [::1]:8080
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    }
    .to_ascii_lowercase();
    if st.allowed_hosts.contains(&name) {
        return next.run(req).await;
    }
    ApiError::Rejected {
        status: axum::http::StatusCode::FORBIDDEN,
        message: format!(
            "Host `{host}` is not one this server answers to; it allows: {} (the server's --allowed-hosts)",
            st.allowed_hosts.join(", ")
        ),
    }
    .into_response()
}

async fn record(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let start = Instant::now();
    let response = next.run(req).await;
    st.metrics
        .latency
        .get_or_create(&Route {
            route: route.clone(),
        })
        .observe(start.elapsed().as_secs_f64());
    st.metrics
        .requests
        .get_or_create(&RouteStatus {
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

async fn not_found(req: Request) -> ApiError {
    ApiError::NotFound(format!(
        "no route {} {}; see GET /v1/models, POST /v1/completions, /v1/embeddings, /v1/fill-mask, /v1/classify, /v1/tokenize",
        req.method(),
        req.uri().path()
    ))
}

async fn method_not_allowed(req: Request) -> Response {
    let e = ApiError::Rejected {
        status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
        message: format!(
            "{} is not allowed on {}; the /v1/* model routes take POST with a JSON body, /v1/models, /health and /metrics GET",
            req.method(),
            req.uri().path()
        ),
    };
    e.into_response()
}

async fn health(State(st): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": "ok",
        "models": st.models.iter().map(|m| m.model.id.clone()).collect::<Vec<_>>(),
    }))
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.encode(),
    )
        .into_response()
}

fn capability_names(m: &ServedModel) -> Vec<&'static str> {
    let c = m.capabilities;
    let mut v = Vec::new();
    if c.generate {
        v.push("completions");
    }
    if c.embed {
        v.push("embeddings");
    }
    if c.fill_mask {
        v.push("fill-mask");
    }
    if c.classify {
        v.push("classify");
    }
    v.push("tokenize");
    v
}

async fn list_models(State(st): State<Arc<AppState>>) -> Json<ModelList> {
    Json(ModelList {
        object: "list",
        data: st
            .models
            .iter()
            .map(|h| ModelCard {
                id: h.model.id.clone(),
                object: "model",
                created: st.created,
                owned_by: "uerzoo",
                capabilities: capability_names(&h.model),
                max_positions: h.model.positions,
                preset: h.model.capabilities.generate.then_some(h.model.preset.name),
            })
            .collect(),
    })
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("the model thread failed: {e}")))
}

fn wrong(held: &Held, message: &str) -> ApiError {
    ApiError::WrongModel {
        id: held.model.id.clone(),
        message: format!(
            "{message} (this model serves: {})",
            capability_names(&held.model).join(", ")
        ),
    }
}

/// The texts or id lists of a `prompt`/`input`, each as token ids (no `[CLS]`).
fn token_rows(held: &Held, texts: &Texts, field: &str) -> Result<Vec<Vec<u32>>, ApiError> {
    let tok = &held.model.tokenizer;
    let vocab = tok.vocab_size();
    let check = |ids: &Vec<u32>, i: usize| match ids.iter().find(|&&id| id as usize >= vocab) {
        Some(bad) => Err(ApiError::invalid(
            field,
            format!("{field}[{i}]: token id {bad} is outside the vocabulary 0..{vocab}"),
        )),
        None => Ok(()),
    };
    let rows = match texts {
        Texts::One(s) => vec![tok.encode(s)],
        Texts::Many(v) => v.iter().map(|s| tok.encode(s)).collect(),
        Texts::Ids(ids) => {
            check(ids, 0)?;
            vec![ids.clone()]
        }
        Texts::ManyIds(v) => {
            for (i, ids) in v.iter().enumerate() {
                check(ids, i)?;
            }
            v.clone()
        }
    };
    if rows.is_empty() {
        return Err(ApiError::invalid(
            field,
            format!("`{field}` is an empty list; give a string or a list of strings"),
        ));
    }
    Ok(rows)
}

fn generate_error(e: GenerateError) -> ApiError {
    match e {
        GenerateError::Option {
            option,
            value,
            expected,
        } => {
            let param = match option {
                "num-return" => "n".to_string(),
                "max-length" => "max_tokens".to_string(),
                o => o.replace('-', "_"),
            };
            ApiError::invalid(&param, format!("{param} = {value}: expected {expected}"))
        }
        GenerateError::MaxLength {
            max_length,
            positions,
        } => ApiError::invalid(
            "max_tokens",
            format!(
                "prompt + max_tokens is {max_length} tokens, beyond the model's {positions} positions; lower max_tokens or shorten the prompt"
            ),
        ),
        e @ GenerateError::NoRoom { .. } => ApiError::invalid("max_tokens", e.to_string()),
        e @ GenerateError::Constraint { .. } => ApiError::invalid("preset", e.to_string()),
        GenerateError::Preset { name, known } => ApiError::invalid(
            "preset",
            format!("unknown preset `{name}`; use one of: {known}"),
        ),
        GenerateError::Model(m) => ApiError::Internal(m.to_string()),
    }
}

/// One generation job: the prompt ids, the options of its choices and, for couplets, the
/// constraint that makes the lower line fit the upper one.
struct Job {
    ids: Vec<u32>,
    opts: GenerateOptions,
    constraint: Option<Constraint>,
}

enum Msg {
    Token {
        index: usize,
        text: String,
    },
    Done {
        index: usize,
        text: String,
        finish: &'static str,
        tokens: usize,
    },
    Failed(ApiError),
}

/// The generation thread ended with `done` of `expected` choices and no error.
fn cut_short(done: usize, expected: usize) -> ApiError {
    ApiError::Internal(format!(
        "the generation thread ended after {done} of {expected} choices (a bug: see the server's log)"
    ))
}

fn sampling_of(req: &CompletionRequest, base: Sampling) -> Sampling {
    if req.temperature == Some(0.0) || req.top_k == Some(1) {
        return Sampling {
            repetition_penalty: req.repetition_penalty.unwrap_or(1.0),
            ..Sampling::greedy()
        };
    }
    Sampling {
        top_k: req.top_k.unwrap_or(base.top_k),
        // OpenAI's top_p 1 keeps everything, as "off" does.
        top_p: req
            .top_p
            .map_or(base.top_p, |p| if p == 1.0 { 0.0 } else { p }),
        temperature: req.temperature.unwrap_or(base.temperature),
        repetition_penalty: req.repetition_penalty.unwrap_or(1.0),
    }
}

/// Temperatures and penalties the f32 sampler can use: outside, a value turns into 0 or
/// infinity there and fails far from its cause.
const TEMPERATURE_RANGE: (f64, f64) = (0.01, 100.0);
const PENALTY_RANGE: (f64, f64) = (0.01, 100.0);

/// Range checks on the sampling numbers, each error naming its field.
fn check_ranges(req: &CompletionRequest) -> Result<(), ApiError> {
    if let Some(t) = req.temperature
        && t != 0.0
        && !(TEMPERATURE_RANGE.0..=TEMPERATURE_RANGE.1).contains(&t)
    {
        return Err(ApiError::invalid(
            "temperature",
            format!(
                "temperature = {t}: expected 0 (greedy) or {} to {}, e.g. 0.7",
                TEMPERATURE_RANGE.0, TEMPERATURE_RANGE.1
            ),
        ));
    }
    if let Some(p) = req.repetition_penalty
        && !(PENALTY_RANGE.0..=PENALTY_RANGE.1).contains(&p)
    {
        return Err(ApiError::invalid(
            "repetition_penalty",
            format!(
                "repetition_penalty = {p}: expected {} to {}; 1.0 is off, 1.2 a typical penalty",
                PENALTY_RANGE.0, PENALTY_RANGE.1
            ),
        ));
    }
    Ok(())
}

async fn completions(
    State(st): State<Arc<AppState>>,
    ApiJson(req): ApiJson<CompletionRequest>,
) -> Result<Response, ApiError> {
    let held = st.model(&req.model)?;
    if !held.model.capabilities.generate {
        return Err(wrong(&held, "has no LM head; completions need a GPT-2"));
    }
    let m = &held.model;
    let preset = match &req.preset {
        Some(name) => Preset::get(name).map_err(generate_error)?,
        None => m.preset,
    };
    if req.top_p == Some(0.0) {
        return Err(ApiError::invalid(
            "top_p",
            "top_p = 0: expected a probability in (0, 1], e.g. 0.9",
        ));
    }
    check_ranges(&req)?;
    let sampling = sampling_of(&req, m.sampling);
    sampling.validate().map_err(generate_error)?;
    let n = req.n.unwrap_or(1);
    if n == 0 || n > st.max_choices {
        return Err(ApiError::invalid(
            "n",
            format!("n = {n}: expected 1 to {} choices", st.max_choices),
        ));
    }
    let max_tokens = req.max_tokens;
    if max_tokens == Some(0) {
        return Err(ApiError::invalid(
            "max_tokens",
            "max_tokens = 0: expected at least 1",
        ));
    }
    let tok = m.tokenizer.clone();
    let texts: Vec<Option<String>> = match &req.prompt {
        Texts::One(s) => vec![Some(s.clone())],
        Texts::Many(v) => v.iter().cloned().map(Some).collect(),
        Texts::Ids(_) | Texts::ManyIds(_) => {
            let rows = token_rows(&held, &req.prompt, "prompt")?;
            vec![None; rows.len()]
        }
    };
    let id_rows = match &req.prompt {
        Texts::Ids(_) | Texts::ManyIds(_) => token_rows(&held, &req.prompt, "prompt")?,
        _ => Vec::new(),
    };
    if texts.is_empty() {
        return Err(ApiError::invalid(
            "prompt",
            "`prompt` is an empty list; give a string or a list of strings",
        ));
    }
    let seed = req.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let mut jobs = Vec::with_capacity(texts.len());
    let mut prompt_tokens = 0;
    let mut budget_used: usize = 0;
    for (i, text) in texts.iter().enumerate() {
        let ids = match text {
            Some(t) => preset.prompt_ids(&tok, t),
            None => {
                let mut ids: Vec<u32> =
                    preset.cls_first.then(|| tok.cls_id()).into_iter().collect();
                ids.extend(&id_rows[i]);
                ids
            }
        };
        // As `uerzoo generate --preset couplet`: the lower line takes the upper line's
        // length and punctuation places, then [SEP].
        let constraint = match (preset.cut, text) {
            (Cut::MatchUpper, _) if req.line_length.is_some() => {
                return Err(ApiError::invalid(
                    "line_length",
                    "line_length is for poems; a couplet's lower line takes the upper line's length",
                ));
            }
            (_, None) if req.line_length.is_some() => {
                return Err(ApiError::invalid(
                    "line_length",
                    "line_length needs the prompt as text, not token ids",
                ));
            }
            (Cut::MatchUpper, Some(t)) => Some(
                Constraint::match_line(&tok, preset.user_text(t))
                    .map_err(|e| ApiError::invalid("prompt", format!("prompt[{i}]: {e}")))?,
            ),
            (Cut::MatchUpper, None) => {
                return Err(ApiError::invalid(
                    "prompt",
                    "the couplet preset needs the upper line as text, not token ids; send `prompt` as a string",
                ));
            }
            (_, Some(_)) if req.line_length == Some(0) => {
                return Err(ApiError::invalid(
                    "line_length",
                    "line_length = 0: expected characters per line, e.g. 5 or 7",
                ));
            }
            (_, Some(t)) => {
                match req.line_length {
                    Some(n) => Some(Constraint::lines(&tok, n, preset.user_text(t)).map_err(
                        |e| ApiError::invalid("line_length", format!("prompt[{i}]: {e}")),
                    )?),
                    None => None,
                }
            }
            _ => None,
        };
        let need = constraint.as_ref().and_then(Constraint::min_new_tokens);
        // A couplet's default is its whole lower line and [SEP]; otherwise OpenAI's 16.
        let max_tokens = max_tokens.unwrap_or(need.map_or(16, |n| n + 1));
        if let Some(need) = need
            && max_tokens < need
        {
            return Err(ApiError::invalid(
                "max_tokens",
                format!(
                    "max_tokens = {max_tokens} leaves room for {max_tokens} of prompt[{i}]'s {need} lower-line characters; use max_tokens {} or more (or leave it out)",
                    need + 1
                ),
            ));
        }
        let Some(max_length) = ids
            .len()
            .checked_add(max_tokens)
            .filter(|&l| l <= m.positions)
        else {
            return Err(ApiError::invalid(
                if ids.len() >= m.positions {
                    "prompt"
                } else {
                    "max_tokens"
                },
                format!(
                    "prompt[{i}] is {} tokens ([CLS] included) and max_tokens is {max_tokens}: more than the model's {} positions; shorten the prompt or lower max_tokens",
                    ids.len(),
                    m.positions
                ),
            ));
        };
        let limit = match (&constraint, text) {
            (None, Some(t)) => preset.new_token_limit(&tok, t),
            _ => None,
        };
        let opts = GenerateOptions {
            max_length,
            max_new_tokens: Some(limit.map_or(max_tokens, |l| l.min(max_tokens))),
            sampling,
            seed: seed.wrapping_add(i as u64),
            num_return: n,
            stop_id: (preset.stop_at_sep || constraint.is_some()).then(|| tok.sep_id()),
            use_cache: true,
        };
        opts.validate(m.positions).map_err(generate_error)?;
        // At most prompts × n × max_tokens new tokens per request (--max-request-tokens):
        // one request cannot hold a slot for hours or block shutdown.
        budget_used = budget_used.saturating_add(n.saturating_mul(max_tokens));
        if budget_used > st.max_request_tokens {
            return Err(ApiError::TooLarge {
                param: Some("max_tokens".into()),
                message: format!(
                    "{} prompts × n {n} × max_tokens {max_tokens} asks for more than the server's --max-request-tokens {} new tokens (over the limit at prompt[{i}]); send fewer prompts, a smaller n or max_tokens",
                    texts.len(),
                    st.max_request_tokens
                ),
            });
        }
        prompt_tokens += ids.len();
        jobs.push(Job {
            ids,
            opts,
            constraint,
        });
    }
    let slot = st.slot()?;
    let (tx, rx) = mpsc::channel::<Msg>(1024);
    let engine = m.engine.clone();
    let counter = st
        .metrics
        .generated_tokens
        .get_or_create(&Metrics::model(&m.id))
        .clone();
    let stream = req.stream;
    let prompt_count = jobs.len();
    tokio::task::spawn_blocking(move || {
        for (p, job) in jobs.iter().enumerate() {
            let mut streams = vec![TextStream::default(); n];
            let mut on_token = |k: usize, id: u32| {
                counter.inc();
                let text = streams
                    .get_mut(k)
                    .map(|s| s.push(&tok, id))
                    .unwrap_or_default();
                let gone = if text.is_empty() {
                    tx.is_closed()
                } else {
                    tx.blocking_send(Msg::Token {
                        index: p * n + k,
                        text,
                    })
                    .is_err()
                };
                if gone {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            };
            match engine.generate(&job.ids, &job.opts, job.constraint.as_ref(), &mut on_token) {
                Ok(mut out) => {
                    // As the CLI, couplets best score first; a stream's choices keep the
                    // order their tokens went out in.
                    if job.constraint.is_some() && !stream {
                        generate::rank(&mut out);
                    }
                    for (k, g) in out.iter().enumerate() {
                        if g.stop == StopReason::Cancelled {
                            return;
                        }
                        let done = Msg::Done {
                            index: p * n + k,
                            text: generate::clean_text(&tok, g.continuation()),
                            finish: if g.stop == StopReason::StopToken {
                                "stop"
                            } else {
                                "length"
                            },
                            tokens: g.continuation().len(),
                        };
                        if tx.blocking_send(done).is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Msg::Failed(generate_error(e)));
                    return;
                }
            }
        }
    });
    let id = format!("cmpl-{}", st.next_id.fetch_add(1, Ordering::Relaxed));
    let created = now();
    let chunk = move |choices: Vec<CompletionChoice>, usage: Option<Usage>| Completion {
        id: id.clone(),
        object: "text_completion",
        created,
        model: req.model.clone(),
        choices,
        usage,
    };
    // Every choice ends with a Done (or the request with a Failed); a generation thread that
    // ends without them (a panic) is a 500, not a 200 with choices missing.
    let expected = prompt_count * n;
    if req.stream {
        let events = futures_util::stream::unfold(
            (rx, slot, 0usize, false),
            move |(mut rx, slot, done, ended)| async move {
                if ended {
                    return None;
                }
                match rx.recv().await {
                    Some(msg) => {
                        let done = done + usize::from(matches!(msg, Msg::Done { .. }));
                        let ended = matches!(msg, Msg::Failed(_));
                        Some((msg, (rx, slot, done, ended)))
                    }
                    None if done < expected => Some((
                        Msg::Failed(cut_short(done, expected)),
                        (rx, slot, done, true),
                    )),
                    None => None,
                }
            },
        )
        .map(move |msg| {
            let data = match msg {
                Msg::Token { index, text } => serde_json::to_string(&chunk(
                    vec![CompletionChoice {
                        text,
                        index,
                        logprobs: None,
                        finish_reason: None,
                    }],
                    None,
                )),
                Msg::Done { index, finish, .. } => serde_json::to_string(&chunk(
                    vec![CompletionChoice {
                        text: String::new(),
                        index,
                        logprobs: None,
                        finish_reason: Some(finish),
                    }],
                    None,
                )),
                Msg::Failed(e) => serde_json::to_string(&e.body()),
            };
            Ok::<Event, std::convert::Infallible>(
                Event::default().data(data.unwrap_or_else(|e| e.to_string())),
            )
        })
        .chain(futures_util::stream::once(async {
            Ok(Event::default().data("[DONE]"))
        }));
        return Ok(Sse::new(events).into_response());
    }
    let mut rx = rx;
    let mut choices: Vec<CompletionChoice> = Vec::new();
    let mut completion_tokens = 0;
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Token { .. } => {}
            Msg::Done {
                index,
                text,
                finish,
                tokens,
            } => {
                completion_tokens += tokens;
                choices.push(CompletionChoice {
                    text,
                    index,
                    logprobs: None,
                    finish_reason: Some(finish),
                });
            }
            Msg::Failed(e) => return Err(e),
        }
    }
    drop(slot);
    if choices.len() < expected {
        return Err(cut_short(choices.len(), expected));
    }
    choices.sort_by_key(|c| c.index);
    let usage = Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens + completion_tokens,
    };
    Ok(Json(chunk(choices, Some(usage))).into_response())
}

async fn embeddings(
    State(st): State<Arc<AppState>>,
    ApiJson(req): ApiJson<EmbeddingRequest>,
) -> Result<Json<EmbeddingResponse>, ApiError> {
    let held = st.model(&req.model)?;
    let Some(batcher) = held
        .batcher
        .as_ref()
        .filter(|_| held.model.capabilities.embed)
    else {
        return Err(wrong(
            &held,
            if held.model.capabilities.classify {
                "is a classifier; embeddings need a pretrained encoder (BERT/RoBERTa/ALBERT)"
            } else {
                "is a causal LM; embeddings need an encoder (BERT/RoBERTa/ALBERT)"
            },
        ));
    };
    let pooling = match req.pooling.as_deref().unwrap_or("first") {
        "first" | "cls" => Pooling::First,
        "mean" => Pooling::Mean,
        other => {
            return Err(ApiError::invalid(
                "pooling",
                format!("pooling = `{other}`: use `first` (the [CLS] state) or `mean`"),
            ));
        }
    };
    let base64 = match req.encoding_format.as_deref().unwrap_or("float") {
        "float" => false,
        "base64" => true,
        other => {
            return Err(ApiError::invalid(
                "encoding_format",
                format!("encoding_format = `{other}`: use `float` or `base64`"),
            ));
        }
    };
    let tok = &held.model.tokenizer;
    let positions = held.model.positions;
    let mut rows = Vec::new();
    for (i, ids) in token_rows(&held, &req.input, "input")?
        .into_iter()
        .enumerate()
    {
        // As `uerzoo extract-features`: `[CLS]` + tokens, segment 1.
        if ids.len() + 1 > positions {
            return Err(ApiError::invalid(
                "input",
                format!(
                    "input[{i}] is {} tokens ([CLS] included); the model takes at most {positions}",
                    ids.len() + 1
                ),
            ));
        }
        let enc = tok.single_from_ids(&ids, ids.len() + 1);
        rows.push(Row {
            ids: enc.ids,
            segments: enc.segments,
        });
    }
    let padded = rows.len() * rows.iter().map(|r| r.ids.len()).max().unwrap_or(0);
    if padded > st.max_batch_tokens {
        return Err(ApiError::TooLarge {
            param: Some("input".into()),
            message: format!(
                "input is {} texts × {} tokens = {padded} padded tokens, more than the server's --max-batch-tokens {}; send fewer texts per request",
                rows.len(),
                padded / rows.len().max(1),
                st.max_batch_tokens
            ),
        });
    }
    let prompt_tokens = rows.iter().map(|r| r.ids.len()).sum();
    let _slot = st.slot()?;
    let vectors = batcher.embed(rows, pooling).await?;
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| Embedding {
            object: "embedding",
            index,
            embedding: if base64 {
                use base64::Engine as _;
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                serde_json::json!(v)
            },
        })
        .collect();
    Ok(Json(EmbeddingResponse {
        object: "list",
        data,
        model: req.model,
        usage: EmbeddingUsage {
            prompt_tokens,
            total_tokens: prompt_tokens,
        },
    }))
}

/// Most bytes of fill-mask `sequence`s in one answer (text × masks × top_k).
const SEQUENCE_BUDGET: usize = 1 << 20;

/// `text` with its `n`-th `[MASK]` replaced by `token`.
fn fill_nth(text: &str, n: usize, token: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut i = 0;
    while let Some(at) = rest.find(MASK_TOKEN) {
        out.push_str(&rest[..at]);
        out.push_str(if i == n { token } else { MASK_TOKEN });
        rest = &rest[at + MASK_TOKEN.len()..];
        i += 1;
    }
    out.push_str(rest);
    out
}

async fn fill_mask(
    State(st): State<Arc<AppState>>,
    ApiJson(req): ApiJson<FillMaskRequest>,
) -> Result<Json<FillMaskResponse>, ApiError> {
    let held = st.model(&req.model)?;
    if !held.model.capabilities.fill_mask {
        return Err(wrong(&held, "has no MLM head; fill-mask needs one"));
    }
    let tok = held.model.tokenizer.clone();
    let top_k = req.top_k.unwrap_or(5);
    if top_k == 0 || top_k > 100 {
        return Err(ApiError::invalid(
            "top_k",
            format!("top_k = {top_k}: expected 1 to 100"),
        ));
    }
    // As `uerzoo fill-mask`: `[CLS]` + tokens (specials kept whole) + `[SEP]`.
    let mut ids = vec![tok.cls_id()];
    ids.extend(tok.encode_with_specials(&req.text));
    ids.push(tok.sep_id());
    let positions: Vec<usize> = (0..ids.len())
        .filter(|&i| ids[i] == tok.mask_id())
        .collect();
    // Each `sequence` repeats the text: bounded, so a long text with many masks cannot ask
    // for an answer of hundreds of megabytes.
    let sequence_bytes = req
        .text
        .len()
        .saturating_mul(positions.len())
        .saturating_mul(top_k);
    if req.sequences && sequence_bytes > SEQUENCE_BUDGET {
        return Err(ApiError::invalid(
            "sequences",
            format!(
                "sequences: the text ({} bytes) × {} masks × top_k {top_k} is {sequence_bytes} bytes of answer, over the {SEQUENCE_BUDGET}-byte budget; leave `sequences` out (each candidate carries its token and position) or send a shorter text or a smaller top_k",
                req.text.len(),
                positions.len()
            ),
        ));
    }
    if positions.is_empty() {
        return Err(ApiError::invalid(
            "text",
            format!(
                "`text` has no {MASK_TOKEN}; put {MASK_TOKEN} where a token is to be predicted"
            ),
        ));
    }
    if ids.len() > held.model.positions {
        return Err(ApiError::invalid(
            "text",
            format!(
                "`text` is {} tokens with [CLS] and [SEP]; the model takes at most {}",
                ids.len(),
                held.model.positions
            ),
        ));
    }
    let _slot = st.slot()?;
    let row = Row {
        segments: vec![1; ids.len()],
        ids,
    };
    let results = match &held.batcher {
        Some(batcher) => batcher.fill_mask(row, positions.clone(), top_k).await?,
        None => {
            let engine = held.model.engine.clone();
            let at = vec![positions.clone()];
            blocking(move || engine.fill_mask(&[row], &at, &[top_k]))
                .await?
                .map_err(|e| ApiError::Internal(e.to_string()))?
                .pop()
                .unwrap_or_default()
        }
    };
    let masks = results
        .into_iter()
        .zip(&positions)
        .enumerate()
        .map(|(n, (cands, &position))| MaskResult {
            position,
            candidates: cands
                .into_iter()
                .map(|c| {
                    let token = tok.id_to_token(c.id).unwrap_or("[UNK]").to_string();
                    MaskCandidate {
                        sequence: req
                            .sequences
                            .then(|| fill_nth(&req.text, n, token.trim_start_matches("##"))),
                        token,
                        id: c.id,
                        score: c.score,
                        position,
                    }
                })
                .collect(),
        })
        .collect();
    Ok(Json(FillMaskResponse {
        model: req.model,
        masks,
    }))
}

fn softmax(row: &[f32]) -> Vec<f32> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = row.iter().map(|&v| (v - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|v| v / sum).collect()
}

fn texts_of(t: &Texts, field: &str) -> Result<Vec<String>, ApiError> {
    match t {
        Texts::One(s) => Ok(vec![s.clone()]),
        Texts::Many(v) if !v.is_empty() => Ok(v.clone()),
        _ => Err(ApiError::invalid(
            field,
            format!("`{field}` must be a string or a non-empty list of strings"),
        )),
    }
}

async fn classify(
    State(st): State<Arc<AppState>>,
    ApiJson(req): ApiJson<ClassifyRequest>,
) -> Result<Json<ClassifyResponse>, ApiError> {
    let held = st.model(&req.model)?;
    if !held.model.capabilities.classify {
        return Err(wrong(
            &held,
            "has no classifier head; serve a model written by `uerzoo finetune`",
        ));
    }
    let a = texts_of(&req.input, "input")?;
    let b = req
        .input_b
        .as_ref()
        .map(|t| texts_of(t, "input_b"))
        .transpose()?;
    if let Some(b) = &b
        && b.len() != a.len()
    {
        return Err(ApiError::invalid(
            "input_b",
            format!(
                "`input_b` has {} texts for {} inputs; give one per input",
                b.len(),
                a.len()
            ),
        ));
    }
    let tok = &held.model.tokenizer;
    let Some(settings) = held.model.classifier else {
        return Err(wrong(&held, "has no classifier settings"));
    };
    // As `uerzoo predict` (UER-py's run_classifier): `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]`,
    // cut to the model's recorded `seq_length` as it recorded `truncation`; padding dropped.
    let rows: Vec<Row> = a
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let enc = tok.encode_example(
                text,
                b.as_ref().map(|b| b[i].as_str()),
                settings.seq_length,
                settings.truncation,
            );
            let len = enc.segments.iter().take_while(|&&s| s > 0).count();
            Row {
                ids: enc.ids[..len].to_vec(),
                segments: enc.segments[..len].to_vec(),
            }
        })
        .collect();
    let padded = rows.len() * rows.iter().map(|r| r.ids.len()).max().unwrap_or(0);
    if padded > st.max_batch_tokens {
        return Err(ApiError::TooLarge {
            param: Some("input".into()),
            message: format!(
                "input is {} texts × {} tokens = {padded} padded tokens, more than the server's --max-batch-tokens {}; send fewer texts per request",
                rows.len(),
                padded / rows.len().max(1),
                st.max_batch_tokens
            ),
        });
    }
    let _slot = st.slot()?;
    let logits = match &held.batcher {
        Some(batcher) => batcher.classify(rows).await?,
        None => {
            let engine = held.model.engine.clone();
            blocking(move || engine.classify(&rows))
                .await?
                .map_err(|e| ApiError::Internal(e.to_string()))?
        }
    };
    let data = logits
        .into_iter()
        .enumerate()
        .map(|(index, logits)| {
            let probabilities = softmax(&logits);
            let label = probabilities.iter().enumerate().fold(0, |best, (i, &p)| {
                if p > probabilities[best] { i } else { best }
            });
            Classification {
                index,
                label,
                probabilities,
                logits,
            }
        })
        .collect();
    Ok(Json(ClassifyResponse {
        model: req.model,
        data,
    }))
}

async fn tokenize(
    State(st): State<Arc<AppState>>,
    ApiJson(req): ApiJson<TokenizeRequest>,
) -> Result<Json<TokenizeResponse>, ApiError> {
    let held = st.model(&req.model)?;
    let (tokens, ids): (Vec<String>, Vec<u32>) = held
        .model
        .tokenizer
        .tokenize_with_specials(&req.text)
        .into_iter()
        .unzip();
    Ok(Json(TokenizeResponse {
        model: req.model,
        count: ids.len(),
        tokens,
        ids,
    }))
}
