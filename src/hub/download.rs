//! The download protocol, top to bottom: metadata (HEAD on `/resolve`, no redirects
//! followed across hosts) → lock → continue `blobs/<etag>.incomplete` with `Range` (one
//! stream, or several ranges in parallel) → verify (sha256 / git sha1 / registry hash /
//! size) → rename to the blob → symlink into the snapshot → write the ref. Each step is safe
//! to re-run, and a run that stops anywhere leaves only a resumable partial behind.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::header::{
    ACCEPT_ENCODING, AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, ETAG, HeaderMap, LOCATION, RANGE,
};
use reqwest::{Client, StatusCode, Url, redirect};

use super::cache::{Cache, CacheRepo, is_commit, write_atomic};
use super::hash::{Hash, StreamHasher};
use super::{DownloadRequest, FileOutcome, FileSpec, Hub, HubError, HubOptions, Snapshot};
use crate::progress::Progress;

/// At most this many same-host redirects (repo renames) are followed for the metadata.
const MAX_REDIRECTS: usize = 5;
/// Write buffer of one stream.
const WRITE_BUF: usize = 1 << 20;

/// Serves a request from the cache alone.
pub(super) fn offline(cache: &Cache, request: &DownloadRequest) -> Result<Snapshot, HubError> {
    let repo = cache.repo(&request.repo_id);
    let commit =
        repo.resolve_revision(&request.revision)
            .ok_or_else(|| HubError::OfflineNoRevision {
                repo: request.repo_id.clone(),
                revision: request.revision.clone(),
                path: repo.ref_path(&request.revision),
            })?;
    let mut files = Vec::new();
    for spec in &request.files {
        let pointer = repo.pointer_path(&commit, &spec.path);
        let size = fs::metadata(&pointer).map(|m| m.len());
        let Ok(size) = size else {
            return Err(HubError::OfflineMissing {
                repo: request.repo_id.clone(),
                file: spec.path.clone(),
                commit,
                path: pointer,
            });
        };
        files.push(FileOutcome {
            path: spec.path.clone(),
            blob: repo.blob_of(&commit, &spec.path),
            pointer,
            size,
            fetched: 0,
            cached: true,
        });
    }
    Ok(Snapshot {
        repo_id: request.repo_id.clone(),
        dir: repo.snapshot_dir(&commit),
        commit,
        files,
    })
}

/// Downloads a request over the network.
pub(super) fn online(
    hub: &Hub,
    request: &DownloadRequest,
    progress: &dyn Progress,
) -> Result<Snapshot, HubError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(hub.options.jobs.clamp(2, 16))
        .enable_all()
        .build()
        .map_err(|e| HubError::io(hub.cache.root(), e))?;
    runtime.block_on(async {
        let ctx = Ctx::new(&hub.options)?;
        let repo = hub.cache.repo(&request.repo_id);
        repo.create_dirs()?;
        // The first file pins the commit; the others are resolved at that commit so the
        // snapshot is consistent even if the branch moves during the run.
        let mut commit: Option<String> = None;
        let mut files = Vec::new();
        for spec in &request.files {
            let revision = commit.clone().unwrap_or_else(|| request.revision.clone());
            let outcome = fetch_file(&ctx, &repo, &revision, spec, progress).await?;
            commit.get_or_insert(outcome.0);
            files.push(outcome.1);
        }
        let commit = match commit {
            Some(c) => c,
            None => repo
                .resolve_revision(&request.revision)
                .unwrap_or_else(|| request.revision.clone()),
        };
        repo.write_ref(&request.revision, &commit)?;
        Ok(Snapshot {
            repo_id: request.repo_id.clone(),
            dir: repo.snapshot_dir(&commit),
            commit,
            files,
        })
    })
}

/// The HTTP side of one run.
struct Ctx {
    /// Metadata client: follows no redirects (we read the hub's 302 itself).
    meta: Client,
    /// Content client: follows redirects (CDN hops), strips auth across hosts.
    data: Client,
    endpoint: Url,
    options: HubOptions,
}

impl Ctx {
    fn new(options: &HubOptions) -> Result<Self, HubError> {
        let trimmed = options.endpoint.trim_end_matches('/');
        let endpoint = Url::parse(trimmed).map_err(|e| HubError::BadEndpoint {
            endpoint: options.endpoint.clone(),
            reason: e.to_string(),
        })?;
        if !matches!(endpoint.scheme(), "http" | "https") || endpoint.cannot_be_a_base() {
            return Err(HubError::BadEndpoint {
                endpoint: options.endpoint.clone(),
                reason: "not an http(s) URL".into(),
            });
        }
        // A loopback hub (a local mirror, the tests) is never reached through a proxy.
        let host = endpoint.host_str().unwrap_or("").trim_matches(['[', ']']);
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        let build = |policy: redirect::Policy| {
            let builder = Client::builder();
            let builder = if loopback {
                builder.no_proxy()
            } else {
                builder
            };
            builder
                .redirect(policy)
                .connect_timeout(options.connect_timeout)
                .read_timeout(options.read_timeout)
                .user_agent(concat!("uerzoo/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| HubError::Http {
                    url: trimmed.to_string(),
                    attempts: 0,
                    source: e,
                })
        };
        Ok(Ctx {
            meta: build(redirect::Policy::none())?,
            data: build(redirect::Policy::limited(10))?,
            endpoint,
            options: options.clone(),
        })
    }

    /// `{endpoint}/{repo}/resolve/{revision}/{file}`; a `/` in the revision becomes `%2F`.
    fn resolve_url(&self, repo_id: &str, revision: &str, file: &str) -> Url {
        let mut url = self.endpoint.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty();
            segments.extend(repo_id.split('/'));
            segments.push("resolve");
            segments.push(revision);
            segments.extend(file.split('/'));
        }
        url
    }

    /// Adds the token when `url` is on the endpoint's host (the CDN URL is pre-signed).
    fn auth(&self, req: reqwest::RequestBuilder, url: &Url) -> reqwest::RequestBuilder {
        match &self.options.token {
            Some(token) if same_origin(url, &self.endpoint) => {
                req.header(AUTHORIZATION, format!("Bearer {token}"))
            }
            _ => req,
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.options.backoff.as_millis() as u64;
        Duration::from_millis((base << attempt.min(10)).min(5_000))
    }
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// What the hub says about a file.
struct Meta {
    commit: String,
    etag: String,
    size: Option<u64>,
    /// Where the content is: the CDN URL of the redirect, or the resolve URL itself.
    content_url: Url,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// `W/"abc"` → `abc`.
fn normalize_etag(etag: &str) -> String {
    etag.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .to_string()
}

async fn metadata(
    ctx: &Ctx,
    repo_id: &str,
    revision: &str,
    file: &str,
    progress: &dyn Progress,
) -> Result<Meta, HubError> {
    let mut url = ctx.resolve_url(repo_id, revision, file);
    for _ in 0..=MAX_REDIRECTS {
        let response = send_with_retries(ctx, &url, progress, || {
            ctx.auth(ctx.meta.head(url.clone()), &url)
                .header(ACCEPT_ENCODING, "identity")
        })
        .await?;
        let status = response.status();
        let headers = response.headers();
        let mut content_url = url.clone();
        if status.is_redirection() {
            let location = header(headers, LOCATION.as_str()).and_then(|l| url.join(l).ok());
            let Some(location) = location else {
                return Err(HubError::MissingHeader {
                    url: url.to_string(),
                    header: "Location",
                    hint: "the endpoint redirects without saying where; check --endpoint".into(),
                });
            };
            // A redirect that carries the file's metadata, or leaves the host, points at the
            // content (the CDN). A bare same-host redirect is a repo rename: follow it.
            if header(headers, "x-repo-commit").is_none() && same_origin(&location, &url) {
                url = location;
                continue;
            }
            content_url = location;
        } else if !status.is_success() {
            return Err(status_error(&url, status, headers));
        }
        let commit = match header(headers, "x-repo-commit") {
            Some(c) => c.to_string(),
            None if is_commit(revision) => revision.to_string(),
            None => {
                return Err(HubError::MissingHeader {
                    url: url.to_string(),
                    header: "X-Repo-Commit",
                    hint: format!(
                        "the endpoint is not a Huggingface hub or a proxy strips headers; pass a 40-hex --revision or another --endpoint (now {})",
                        ctx.endpoint
                    ),
                });
            }
        };
        let etag = header(headers, "x-linked-etag")
            .or_else(|| header(headers, ETAG.as_str()))
            .map(normalize_etag)
            .filter(|e| !e.is_empty() && !e.contains(['/', '\\']));
        let Some(etag) = etag else {
            return Err(HubError::MissingHeader {
                url: url.to_string(),
                header: "ETag",
                hint:
                    "without an etag the file cannot be cached or verified; try another --endpoint"
                        .into(),
            });
        };
        let size = header(headers, "x-linked-size")
            .or_else(|| {
                status
                    .is_success()
                    .then(|| header(headers, CONTENT_LENGTH.as_str()))
                    .flatten()
            })
            .and_then(|s| s.parse::<u64>().ok());
        return Ok(Meta {
            commit,
            etag,
            size,
            content_url,
        });
    }
    Err(HubError::Status {
        url: url.to_string(),
        status: 310,
        code: None,
        hint: format!("more than {MAX_REDIRECTS} redirects; check --endpoint"),
    })
}

fn status_error(url: &Url, status: StatusCode, headers: &HeaderMap) -> HubError {
    let code = header(headers, "x-error-code").map(str::to_string);
    let hint = match (status.as_u16(), code.as_deref()) {
        (_, Some("EntryNotFound")) => {
            "the file does not exist at this revision; check the name and --revision"
        }
        (_, Some("RevisionNotFound")) => "no such revision; check --revision",
        (_, Some("RepoNotFound")) | (_, Some("RepositoryNotFound")) => {
            "no such repository (or it is private: set HF_TOKEN)"
        }
        (_, Some("GatedRepo")) => {
            "the repository is gated: accept its terms on the hub and set HF_TOKEN"
        }
        (401, _) | (403, _) => "not authorised: set HF_TOKEN to a token with access",
        (404, _) => "not found; check the name, --revision and --endpoint",
        (429, _) => "rate limited; wait and run again",
        _ => "the server failed; run again later or use another --endpoint",
    };
    HubError::Status {
        url: url.to_string(),
        status: status.as_u16(),
        code,
        hint: hint.to_string(),
    }
}

/// Sends a request, retrying connection errors and 5xx/429 answers with backoff.
/// Each retry is told to `progress` (what failed, which attempt, how long until the next),
/// so a silent server is never a silent wait.
async fn send_with_retries(
    ctx: &Ctx,
    url: &Url,
    progress: &dyn Progress,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Result<reqwest::Response, HubError> {
    let mut attempt = 0;
    loop {
        let why = match build().send().await {
            Ok(r) if retryable(r.status()) && attempt < ctx.options.retries => {
                format!("answered {}", r.status())
            }
            Ok(r) => return Ok(r),
            Err(e) if attempt >= ctx.options.retries || e.is_builder() => {
                return Err(HubError::Http {
                    url: url.to_string(),
                    attempts: attempt + 1,
                    source: e,
                });
            }
            Err(e) if e.is_timeout() => "no answer (timed out)".to_string(),
            Err(e) if e.is_connect() => "could not connect".to_string(),
            Err(_) => "the connection failed".to_string(),
        };
        let wait = ctx.backoff(attempt);
        progress.note(&format!(
            "{}: {why}; attempt {} of {}, retrying in {:.1} s",
            url.host_str().unwrap_or("the hub"),
            attempt + 1,
            ctx.options.retries + 1,
            wait.as_secs_f64()
        ));
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
}

fn retryable(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

/// Fetches one file into the cache; returns the commit it resolved to and its outcome.
async fn fetch_file(
    ctx: &Ctx,
    repo: &CacheRepo,
    revision: &str,
    spec: &FileSpec,
    progress: &dyn Progress,
) -> Result<(String, FileOutcome), HubError> {
    super::cache::check_repo_path(&spec.path)?;
    let meta = match metadata(ctx, repo.repo_id(), revision, &spec.path, progress).await {
        Ok(meta) => meta,
        // Network down but the file is cached for this revision: use the cache.
        Err(err @ HubError::Http { .. }) => {
            let request = DownloadRequest {
                repo_id: repo.repo_id().to_string(),
                revision: revision.to_string(),
                files: vec![spec.clone()],
            };
            let cache = Cache::new(repo.folder().parent().unwrap_or(Path::new(".")));
            return match offline(&cache, &request) {
                Ok(mut snap) => Ok((snap.commit, snap.files.remove(0))),
                Err(_) => Err(err),
            };
        }
        Err(err) => return Err(err),
    };
    let expected = Hash::from_etag(&meta.etag);
    let registry = spec.sha256.as_ref().map(|s| s.to_ascii_lowercase());
    match (&expected, &registry) {
        (Some(Hash::Sha256(hub)), Some(reg)) if hub != reg => {
            return Err(HubError::RegistryMismatch {
                repo: repo.repo_id().into(),
                file: spec.path.clone(),
                hub: hub.clone(),
                expected: reg.clone(),
            });
        }
        (None, None) => {
            return Err(HubError::Unverifiable {
                repo: repo.repo_id().into(),
                file: spec.path.clone(),
                etag: meta.etag.clone(),
            });
        }
        _ => {}
    }
    let blob = repo.blob_path(&meta.etag);
    let mut fetched = 0;
    // A cached blob is trusted only while it still is what its name says: a blob that
    // `verify` would call CORRUPT (wrong size, wrong hash) is removed and fetched again.
    if blob.is_file() && !blob_intact(&blob, &meta.etag, meta.size) {
        fs::remove_file(&blob).map_err(|e| HubError::io(&blob, e))?;
    }
    let cached = blob.is_file();
    if !cached {
        let lock_path = repo.lock_path(&meta.etag);
        let _lock = lock(&lock_path, ctx.options.lock_timeout).await?;
        // Another process may have finished it while we waited.
        if !blob.is_file() {
            fetched = fetch_blob(
                ctx,
                repo,
                &meta,
                spec,
                expected.as_ref(),
                registry.as_deref(),
                progress,
            )
            .await?;
        }
    }
    let pointer = repo.link(&meta.commit, &spec.path, &meta.etag)?;
    let size = fs::metadata(&blob)
        .map_err(|e| HubError::io(&blob, e))?
        .len();
    Ok((
        meta.commit,
        FileOutcome {
            path: spec.path.clone(),
            pointer,
            blob,
            size,
            fetched,
            cached,
        },
    ))
}

/// Whether the cached `blob` has the size the hub announced and the content hash its name
/// (the etag) states. Blobs whose name is no hash are checked by size only.
fn blob_intact(blob: &Path, etag: &str, size: Option<u64>) -> bool {
    let Ok(len) = fs::metadata(blob).map(|m| m.len()) else {
        return false;
    };
    if size.is_some_and(|s| s != len) {
        return false;
    }
    match Hash::from_etag(etag) {
        Some(h) => h.compute(blob).is_ok_and(|d| d == h.hex()),
        None => true,
    }
}

/// An exclusive lock file, released on drop (and by the OS if the process dies).
struct Lock(File);

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = fs2::FileExt::unlock(&self.0);
    }
}

async fn lock(path: &Path, timeout: Duration) -> Result<Lock, HubError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| HubError::io(dir, e))?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| HubError::io(path, e))?;
    let start = Instant::now();
    loop {
        if fs2::FileExt::try_lock_exclusive(&file).is_ok() {
            return Ok(Lock(file));
        }
        if start.elapsed() >= timeout {
            return Err(HubError::LockTimeout {
                path: path.to_path_buf(),
                seconds: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Downloads, verifies and renames `blobs/<etag>`; returns the bytes fetched.
async fn fetch_blob(
    ctx: &Ctx,
    repo: &CacheRepo,
    meta: &Meta,
    spec: &FileSpec,
    expected: Option<&Hash>,
    registry: Option<&str>,
    progress: &dyn Progress,
) -> Result<u64, HubError> {
    let part = repo.incomplete_path(&meta.etag);
    let parts = repo.parts_path(&meta.etag);
    let existing = fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    progress.start(&spec.path, meta.size.unwrap_or(0));
    let parallel = match meta.size {
        Some(size) if parts.is_file() => Some(size),
        Some(size)
            if ctx.options.jobs > 1 && size >= ctx.options.parallel_min_size && existing == 0 =>
        {
            Some(size)
        }
        _ => None,
    };
    let mut streamed_sha256 = None;
    let mut fetched = None;
    if let Some(size) = parallel {
        fetched = parallel::fetch(ctx, meta, &part, &parts, size, progress).await?;
        if fetched.is_none() {
            // The server ignored Range: start over with one stream.
            let _ = fs::remove_file(&parts);
            let _ = fs::remove_file(&part);
        }
    }
    let fetched = match fetched {
        Some(n) => n,
        None => {
            let mut hasher = StreamHasher::new();
            let n = stream(ctx, meta, &part, &mut hasher, progress).await?;
            streamed_sha256 = Some(hasher.finish().map_err(|e| HubError::io(&part, e))?);
            n
        }
    };
    progress.finish();
    verify(repo, meta, spec, &part, expected, registry, streamed_sha256).inspect_err(|_| {
        let _ = fs::remove_file(&part);
        let _ = fs::remove_file(&parts);
    })?;
    let blob = repo.blob_path(&meta.etag);
    fs::rename(&part, &blob).map_err(|e| HubError::io(&blob, e))?;
    Ok(fetched)
}

/// Checks size, the hub's hash and the registry's hash of the finished partial.
fn verify(
    repo: &CacheRepo,
    meta: &Meta,
    spec: &FileSpec,
    part: &Path,
    expected: Option<&Hash>,
    registry: Option<&str>,
    streamed_sha256: Option<String>,
) -> Result<(), HubError> {
    let actual_size = fs::metadata(part).map_err(|e| HubError::io(part, e))?.len();
    if let Some(size) = meta.size.filter(|s| *s != actual_size) {
        return Err(HubError::SizeMismatch {
            repo: repo.repo_id().into(),
            file: spec.path.clone(),
            expected: size,
            actual: actual_size,
        });
    }
    let mut sha256 = streamed_sha256;
    let mut sha256_of = || -> Result<String, HubError> {
        if sha256.is_none() {
            sha256 = Some(super::hash::sha256_file(part).map_err(|e| HubError::io(part, e))?);
        }
        Ok(sha256.clone().unwrap_or_default())
    };
    let mismatch = |kind, expected: &str, actual: String| HubError::HashMismatch {
        repo: repo.repo_id().into(),
        file: spec.path.clone(),
        kind,
        expected: expected.to_string(),
        actual,
    };
    match expected {
        Some(Hash::Sha256(want)) => {
            let got = sha256_of()?;
            if &got != want {
                return Err(mismatch("sha256", want, got));
            }
        }
        Some(Hash::GitSha1(want)) => {
            let got = super::hash::git_sha1_file(part).map_err(|e| HubError::io(part, e))?;
            if &got != want {
                return Err(mismatch("git sha1", want, got));
            }
        }
        None => {}
    }
    if let Some(want) = registry {
        let got = sha256_of()?;
        if got != want {
            return Err(mismatch("registry sha256", want, got));
        }
    }
    Ok(())
}

/// Why one stream attempt stopped early.
enum Interrupted {
    /// Worth retrying (connection error, cut).
    Transient,
    /// The server answered a retryable status (5xx, 429): worth retrying, and the status
    /// is what the user is told if every attempt gets it.
    Refused(StatusCode),
    Fatal(HubError),
}

/// One stream into `part`, continued from its length with `Range`, retried with backoff.
async fn stream(
    ctx: &Ctx,
    meta: &Meta,
    part: &Path,
    hasher: &mut StreamHasher,
    progress: &dyn Progress,
) -> Result<u64, HubError> {
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(part)
        .map_err(|e| HubError::io(part, e))?;
    let mut offset = file.metadata().map_err(|e| HubError::io(part, e))?.len();
    if meta.size.is_some_and(|size| offset > size) {
        file.set_len(0).map_err(|e| HubError::io(part, e))?;
        offset = 0;
    }
    hasher.prefix(part, offset);
    progress.advance(offset);
    let mut fetched = 0u64;
    let mut attempt = 0u32;
    let mut last_error: Option<reqwest::Error> = None;
    loop {
        if meta.size == Some(offset) {
            return Ok(fetched);
        }
        let before = fetched;
        let result = stream_once(
            ctx,
            meta,
            part,
            &mut file,
            &mut offset,
            &mut fetched,
            hasher,
            progress,
        )
        .await;
        match result {
            Ok(()) => return Ok(fetched),
            Err((Interrupted::Fatal(e), _)) => return Err(e),
            Err((cause @ (Interrupted::Transient | Interrupted::Refused(_)), err)) => {
                let last_status = match cause {
                    Interrupted::Refused(s) => Some(s),
                    _ => None,
                };
                if err.is_some() {
                    last_error = err;
                }
                if fetched > before {
                    attempt = 0;
                }
                if attempt >= ctx.options.retries {
                    return Err(match (last_status, last_error) {
                        (Some(status), _) => {
                            refused(meta.content_url.as_str(), status, attempt + 1)
                        }
                        (None, Some(source)) => HubError::Http {
                            url: meta.content_url.to_string(),
                            attempts: attempt + 1,
                            source,
                        },
                        (None, None) => HubError::Status {
                            url: meta.content_url.to_string(),
                            status: 206,
                            code: None,
                            hint: format!(
                                "the connection kept closing early at byte {offset}; run again to continue"
                            ),
                        },
                    });
                }
                let wait = ctx.backoff(attempt);
                progress.note(&format!(
                    "{}: {} at byte {offset}; attempt {} of {}, retrying in {:.1} s",
                    meta.content_url.host_str().unwrap_or("the server"),
                    match last_status {
                        Some(s) => format!("answered {s}"),
                        None => "the transfer stopped".to_string(),
                    },
                    attempt + 1,
                    ctx.options.retries + 1,
                    wait.as_secs_f64()
                ));
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
        }
    }
}

type AttemptError = (Interrupted, Option<reqwest::Error>);

#[allow(clippy::too_many_arguments)]
async fn stream_once(
    ctx: &Ctx,
    meta: &Meta,
    part: &Path,
    file: &mut File,
    offset: &mut u64,
    fetched: &mut u64,
    hasher: &mut StreamHasher,
    progress: &dyn Progress,
) -> Result<(), AttemptError> {
    let url = &meta.content_url;
    let mut request = ctx
        .auth(ctx.data.get(url.clone()), url)
        .header(ACCEPT_ENCODING, "identity");
    if *offset > 0 {
        request = request.header(RANGE, format!("bytes={}-", *offset));
    }
    let response = request
        .send()
        .await
        .map_err(|e| (Interrupted::Transient, Some(e)))?;
    let status = response.status();
    let io_err = |e| (Interrupted::Fatal(HubError::io(part, e)), None);
    match status {
        StatusCode::PARTIAL_CONTENT if *offset > 0 => {
            let start = content_range_start(response.headers());
            if start != Some(*offset) {
                restart(file, offset, hasher, progress, meta.size).map_err(io_err)?;
                return Err((Interrupted::Transient, None));
            }
        }
        StatusCode::OK | StatusCode::PARTIAL_CONTENT => {
            // A 200 to a Range request is the whole file: restart, never append.
            if *offset > 0 {
                restart(file, offset, hasher, progress, meta.size).map_err(io_err)?;
            }
        }
        StatusCode::RANGE_NOT_SATISFIABLE => {
            restart(file, offset, hasher, progress, meta.size).map_err(io_err)?;
            return Err((Interrupted::Transient, None));
        }
        s if retryable(s) => return Err((Interrupted::Refused(s), None)),
        s => {
            return Err((
                Interrupted::Fatal(status_error(url, s, response.headers())),
                None,
            ));
        }
    }
    file.seek(SeekFrom::Start(*offset)).map_err(io_err)?;
    let mut writer = BufWriter::with_capacity(WRITE_BUF, &mut *file);
    let mut response = response;
    let outcome = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if let Err(e) = writer.write_all(&chunk) {
                    break Err(io_err(e));
                }
                let n = chunk.len() as u64;
                *offset += n;
                *fetched += n;
                hasher.update(chunk);
                progress.advance(n);
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err((Interrupted::Transient, Some(e))),
        }
    };
    writer.flush().map_err(io_err)?;
    drop(writer);
    outcome?;
    match meta.size {
        Some(size) if *offset < size => Err((Interrupted::Transient, None)),
        _ => Ok(()),
    }
}

/// Every attempt was answered with a retryable status (5xx, 429).
fn refused(url: &str, status: StatusCode, attempts: u32) -> HubError {
    HubError::Status {
        url: url.to_string(),
        status: status.as_u16(),
        code: None,
        hint: format!(
            "answered {status} to each of {attempts} attempts: the server is failing, not the connection; try again later (the partial download is kept and continues)"
        ),
    }
}

fn restart(
    file: &mut File,
    offset: &mut u64,
    hasher: &mut StreamHasher,
    progress: &dyn Progress,
    total: Option<u64>,
) -> std::io::Result<()> {
    // Reset first: the old hashing thread may still read the partial's prefix.
    hasher.reset();
    file.set_len(0)?;
    *offset = 0;
    progress.start("restarting", total.unwrap_or(0));
    Ok(())
}

/// `Content-Range: bytes <start>-<end>/<total>` → start.
fn content_range_start(headers: &HeaderMap) -> Option<u64> {
    let value = header(headers, CONTENT_RANGE.as_str())?;
    let range = value.strip_prefix("bytes")?.trim();
    range.split('-').next()?.trim().parse().ok()
}

/// Several ranged connections into a pre-sized partial. Progress per range is recorded in
/// `blobs/<etag>.incomplete.parts` (one `start end done` line per range), so a later run
/// continues each range where it stopped.
mod parallel {
    use super::*;
    use std::os::unix::fs::FileExt;

    struct Range {
        start: u64,
        end: u64,
        done: AtomicU64,
    }

    fn load(parts: &Path, size: u64) -> Option<Vec<Range>> {
        let text = fs::read_to_string(parts).ok()?;
        let mut ranges = Vec::new();
        let mut covered = 0;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let nums: Vec<u64> = line
                .split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect();
            let [start, end, done] = nums[..] else {
                return None;
            };
            if start != covered || end < start || done > end - start {
                return None;
            }
            covered = end;
            ranges.push(Range {
                start,
                end,
                done: AtomicU64::new(done),
            });
        }
        (covered == size).then_some(ranges)
    }

    fn save(parts: &Path, ranges: &[Range]) -> Result<(), HubError> {
        let text: String = ranges
            .iter()
            .map(|r| format!("{} {} {}\n", r.start, r.end, r.done.load(Ordering::SeqCst)))
            .collect();
        write_atomic(parts, text.as_bytes())
    }

    /// Returns the bytes fetched, or `None` when the server does not honour `Range`.
    pub(super) async fn fetch(
        ctx: &Ctx,
        meta: &Meta,
        part: &Path,
        parts: &Path,
        size: u64,
        progress: &dyn Progress,
    ) -> Result<Option<u64>, HubError> {
        let part_len = fs::metadata(part).map(|m| m.len()).ok();
        let ranges = match load(parts, size) {
            Some(r) if part_len == Some(size) => r,
            _ => {
                let jobs = ctx.options.jobs.max(1) as u64;
                let step = size.div_ceil(jobs).max(1);
                (0..jobs)
                    .map(|i| (i * step).min(size)..((i + 1) * step).min(size))
                    .filter(|r| !r.is_empty())
                    .map(|r| Range {
                        start: r.start,
                        end: r.end,
                        done: AtomicU64::new(0),
                    })
                    .collect()
            }
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(part)
            .map_err(|e| HubError::io(part, e))?;
        file.set_len(size).map_err(|e| HubError::io(part, e))?;
        save(parts, &ranges)?;
        let ranges = Arc::new(ranges);
        let file = Arc::new(file);
        let ignored = Arc::new(AtomicBool::new(false));
        let already: u64 = ranges.iter().map(|r| r.done.load(Ordering::SeqCst)).sum();
        progress.advance(already);
        let fetched = Arc::new(AtomicU64::new(0));
        let tasks = (0..ranges.len()).map(|i| {
            let (ranges, file, ignored, fetched) = (
                ranges.clone(),
                file.clone(),
                ignored.clone(),
                fetched.clone(),
            );
            async move {
                range_task(
                    ctx, meta, part, &ranges[i], &file, &ignored, &fetched, progress,
                )
                .await
            }
        });
        // Save progress now and then, so a killed run loses little.
        let saver = async {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let _ = save(parts, &ranges);
            }
        };
        let results = tokio::select! {
            r = futures_util::future::join_all(tasks) => r,
            _ = saver => unreachable!("the saver never ends"),
        };
        save(parts, &ranges)?;
        if ignored.load(Ordering::SeqCst) {
            return Ok(None);
        }
        for result in results {
            result?;
        }
        let _ = fs::remove_file(parts);
        Ok(Some(fetched.load(Ordering::SeqCst)))
    }

    #[allow(clippy::too_many_arguments)]
    async fn range_task(
        ctx: &Ctx,
        meta: &Meta,
        part: &Path,
        range: &Range,
        file: &File,
        ignored: &AtomicBool,
        fetched: &AtomicU64,
        progress: &dyn Progress,
    ) -> Result<(), HubError> {
        let url = &meta.content_url;
        let mut attempt = 0u32;
        let mut buf: Vec<u8> = Vec::with_capacity(WRITE_BUF);
        loop {
            let done = range.done.load(Ordering::SeqCst);
            let pos = range.start + done;
            if pos >= range.end || ignored.load(Ordering::SeqCst) {
                return Ok(());
            }
            let request = ctx
                .auth(ctx.data.get(url.clone()), url)
                .header(ACCEPT_ENCODING, "identity")
                .header(RANGE, format!("bytes={}-{}", pos, range.end - 1));
            let mut error = None;
            let mut refused_with = None;
            let mut progressed = false;
            match request.send().await {
                Ok(response) if response.status() == StatusCode::PARTIAL_CONTENT => {
                    if content_range_start(response.headers()) != Some(pos) {
                        ignored.store(true, Ordering::SeqCst);
                        return Ok(());
                    }
                    let mut response = response;
                    let mut written = pos;
                    loop {
                        let next = response.chunk().await;
                        let end_of_stream = !matches!(next, Ok(Some(_)));
                        match next {
                            Ok(Some(chunk)) => {
                                let room = (range.end - written - buf.len() as u64) as usize;
                                buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
                            }
                            Ok(None) => {}
                            Err(e) => error = Some(e),
                        }
                        if buf.len() >= WRITE_BUF || (end_of_stream && !buf.is_empty()) {
                            file.write_all_at(&buf, written)
                                .map_err(|e| HubError::io(part, e))?;
                            let n = buf.len() as u64;
                            written += n;
                            range.done.fetch_add(n, Ordering::SeqCst);
                            fetched.fetch_add(n, Ordering::SeqCst);
                            progress.advance(n);
                            progressed = true;
                            buf.clear();
                        }
                        if end_of_stream || written >= range.end {
                            break;
                        }
                    }
                }
                Ok(response) if response.status() == StatusCode::OK => {
                    ignored.store(true, Ordering::SeqCst);
                    return Ok(());
                }
                Ok(response) if !retryable(response.status()) => {
                    return Err(status_error(url, response.status(), response.headers()));
                }
                Ok(response) => refused_with = Some(response.status()),
                Err(e) => error = Some(e),
            }
            if range.start + range.done.load(Ordering::SeqCst) >= range.end {
                return Ok(());
            }
            if progressed {
                attempt = 0;
            }
            if attempt >= ctx.options.retries {
                return Err(match (refused_with, error) {
                    (Some(status), _) => refused(url.as_str(), status, attempt + 1),
                    (None, Some(source)) => HubError::Http {
                        url: url.to_string(),
                        attempts: attempt + 1,
                        source,
                    },
                    (None, None) => HubError::Status {
                        url: url.to_string(),
                        status: 206,
                        code: None,
                        hint: "the connection kept closing early; run again to continue".into(),
                    },
                });
            }
            tokio::time::sleep(ctx.backoff(attempt)).await;
            attempt += 1;
        }
    }
}
