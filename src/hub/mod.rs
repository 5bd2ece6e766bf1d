//! The hub: downloads Huggingface repository files into the Huggingface cache layout,
//! resumably and sha256-verified, and checks or extends that cache (`verify`, `import`).
//!
//! It works on plain inputs (repo id, revision, file list, optional expected sha256); the
//! registry turns a zoo name into those. Three nouns, as in hf-hub:
//! - [`Cache`] / [`CacheRepo`] (in `cache.rs`, the only file that spells the layout),
//! - [`Hub`]: a cache plus [`HubOptions`] (endpoint, token, offline, parallel ranges),
//! - [`DownloadRequest`] → [`Hub::download`] → [`Snapshot`].
//!
//! `manage.rs` is the cache management of `uerzoo cache`: [`scan`], [`plan_remove`],
//! [`plan_prune`] → [`DeletePlan::execute`].
//!
//! ```no_run
//! use uerzoo::hub::{Hub, DownloadRequest};
//! let hub = Hub::from_env();
//! let request = DownloadRequest::new("uer/chinese_roberta_L-2_H-128", "main", ["config.json", "vocab.txt"]);
//! let snapshot = hub.download(&request, &uerzoo::progress::NoProgress)?;
//! println!("{}", snapshot.dir.display());
//! # Ok::<(), uerzoo::hub::HubError>(())
//! ```
//!
//! `zoo.rs` joins registry names to the cache: [`zoo::download`] and [`zoo::verify`] are
//! the `download` and `verify` commands in one call each.
//!
//! The library never prints; progress goes through [`crate::progress::Progress`].

mod cache;
mod download;
mod hash;
mod local;
mod manage;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use cache::{Cache, CacheRepo, default_root, is_commit};
pub use hash::{Hash, git_sha1_file, sha256_file};
pub use local::{
    CachedFile, CheckStatus, FileCheck, Imported, cached_files, import_file, local_repo_id,
    verify_repo,
};
pub use manage::{
    DeletePlan, Deletion, Kind, LS_HEADER, RepoInfo, RevisionFile, RevisionInfo, human_size,
    ls_json, ls_total, plan_prune, plan_remove, registry_name, scan, scan_repo,
};

use crate::progress::Progress;
use crate::registry::Entry;

/// The public hub, used when neither `--endpoint` nor `HF_ENDPOINT` says otherwise.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Everything that can go wrong in the hub; each message names the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("repo path `{path}` is not a plain relative path (no `..`, no leading `/`)")]
    BadPath { path: String },
    #[error(
        "invalid endpoint `{endpoint}`: {reason}; use e.g. https://huggingface.co or https://hf-mirror.com"
    )]
    BadEndpoint { endpoint: String, reason: String },
    #[error("request to {url} failed after {attempts} attempt(s): {source}")]
    Http {
        url: String,
        attempts: u32,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status}{}: {hint}", code.as_ref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Status {
        url: String,
        status: u16,
        code: Option<String>,
        hint: String,
    },
    #[error("{url} has no `{header}` header: {hint}")]
    MissingHeader {
        url: String,
        header: &'static str,
        hint: String,
    },
    #[error(
        "`{file}` of {repo}: the hub gives etag `{etag}`, which is not a sha256/sha1, and the registry records no sha256, so the download could not be verified; pass the expected sha256 or use another endpoint"
    )]
    Unverifiable {
        repo: String,
        file: String,
        etag: String,
    },
    #[error(
        "`{file}` of {repo}: the hub serves sha256 {hub} but the registry expects {expected}; the file changed upstream, pin `--revision` to the registry's commit"
    )]
    RegistryMismatch {
        repo: String,
        file: String,
        hub: String,
        expected: String,
    },
    #[error(
        "`{file}` of {repo}: {kind} mismatch (expected {expected}, got {actual}); the partial download was deleted, run again to re-download"
    )]
    HashMismatch {
        repo: String,
        file: String,
        kind: &'static str,
        expected: String,
        actual: String,
    },
    #[error(
        "`{file}` of {repo}: expected {expected} bytes, got {actual}; the partial download was deleted, run again"
    )]
    SizeMismatch {
        repo: String,
        file: String,
        expected: u64,
        actual: u64,
    },
    #[error(
        "offline: no cached revision `{revision}` of {repo} (no {}); run once without --offline / HF_HUB_OFFLINE",
        path.display()
    )]
    OfflineNoRevision {
        repo: String,
        revision: String,
        path: PathBuf,
    },
    #[error(
        "offline: `{file}` of {repo} at {commit} is not cached (missing {}); run once without --offline / HF_HUB_OFFLINE",
        path.display()
    )]
    OfflineMissing {
        repo: String,
        file: String,
        commit: String,
        path: PathBuf,
    },
    #[error(
        "`{name}` is a legacy UER-format weight with no Huggingface copy; it is published only on a Weiyun share page ({page}), which needs a browser. Download `{uer_file}` there, then run `uerzoo import {name} <downloaded file>`; `uerzoo download {name}` then finds it"
    )]
    Legacy {
        name: String,
        page: String,
        uer_file: String,
    },
    #[error(
        "{repo} is not in the cache (no {}); `uerzoo cache ls` lists what is cached, `--cache-dir` picks another cache",
        path.display()
    )]
    NotCached { repo: String, path: PathBuf },
    #[error(
        "{repo} has no cached revision `{revision}`; cached: {known} (a ref name, a commit or its first 7+ characters)"
    )]
    NoRevision {
        repo: String,
        revision: String,
        known: String,
    },
    #[error(
        "waited {seconds}s for the lock {}; another uerzoo or Python download of this file is running (remove the lock file if it is not)",
        path.display()
    )]
    LockTimeout { path: PathBuf, seconds: u64 },
}

impl HubError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        HubError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// How the hub is reached. [`HubOptions::from_env`] reads the Huggingface variables.
#[derive(Clone, Debug)]
pub struct HubOptions {
    /// Base URL of the hub or a mirror (a trailing `/` is ignored).
    pub endpoint: String,
    /// Bearer token, sent only to the endpoint's host (never to the CDN).
    pub token: Option<String>,
    /// Never touch the network; succeed from the cache or name the missing file.
    pub offline: bool,
    /// Parallel ranged connections per large file (1 = one stream).
    pub jobs: usize,
    /// Files at least this large are split into `jobs` ranges.
    pub parallel_min_size: u64,
    /// Retries of a failed request or dropped connection within one run (with backoff).
    pub retries: u32,
    /// First backoff delay; doubles per retry, capped at 5 s.
    pub backoff: Duration,
    /// How long to wait for another process downloading the same file.
    pub lock_timeout: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Timeout of a single read on a connection.
    pub read_timeout: Duration,
}

impl Default for HubOptions {
    fn default() -> Self {
        HubOptions {
            endpoint: DEFAULT_ENDPOINT.to_string(),
            token: None,
            offline: false,
            jobs: 1,
            parallel_min_size: 64 << 20,
            retries: 5,
            backoff: Duration::from_millis(300),
            lock_timeout: Duration::from_secs(600),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
        }
    }
}

impl HubOptions {
    /// Defaults plus `HF_ENDPOINT`, `HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`) and the
    /// token (`HF_TOKEN`, else the file `HF_TOKEN_PATH`, else `$HF_HOME/token`).
    pub fn from_env() -> Self {
        Self::from_lookup(&|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// [`HubOptions::from_env`] with an explicit variable lookup.
    pub fn from_lookup(env: &dyn Fn(&str) -> Option<String>) -> Self {
        let mut options = HubOptions::default();
        if let Some(endpoint) = env("HF_ENDPOINT") {
            options.endpoint = endpoint;
        }
        let truthy = |k: &str| {
            env(k).is_some_and(|v| {
                matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "1" | "on" | "yes" | "true"
                )
            })
        };
        options.offline = truthy("HF_HUB_OFFLINE") || truthy("TRANSFORMERS_OFFLINE");
        options.token = env("HF_TOKEN").or_else(|| {
            let path = env("HF_TOKEN_PATH").map(PathBuf::from).or_else(|| {
                let home = env("HF_HOME")
                    .map(PathBuf::from)
                    .or_else(|| env("HOME").map(|h| Path::new(&h).join(".cache/huggingface")))?;
                Some(home.join("token"))
            })?;
            let token = std::fs::read_to_string(path).ok()?;
            let token = token.trim();
            (!token.is_empty()).then(|| token.to_string())
        });
        options
    }
}

/// One file to download.
#[derive(Clone, Debug)]
pub struct FileSpec {
    /// Path inside the repo, `/`-separated.
    pub path: String,
    /// The sha256 the registry records for it, if any (checked besides the hub's etag).
    pub sha256: Option<String>,
}

/// What to download: files of one repo at one revision.
#[derive(Clone, Debug)]
pub struct DownloadRequest {
    /// `org/name`.
    pub repo_id: String,
    /// Branch, tag or 40-hex commit.
    pub revision: String,
    pub files: Vec<FileSpec>,
}

impl DownloadRequest {
    /// The Huggingface files of a registry entry at `revision` (default: the registry's),
    /// with the registry's sha256 on the weights file when the revision is the registry's
    /// own. `None` for a legacy entry, which has no Huggingface copy.
    pub fn from_entry(entry: &Entry, revision: Option<&str>) -> Option<DownloadRequest> {
        let hf = entry.sources.hf.as_ref()?;
        let pinned = revision.is_none_or(|r| r == hf.revision);
        Some(DownloadRequest {
            repo_id: hf.repo.clone(),
            revision: revision.unwrap_or(&hf.revision).to_string(),
            files: hf
                .files
                .iter()
                .map(|path| FileSpec {
                    sha256: hf.sha256.clone().filter(|_| pinned && *path == hf.weights),
                    path: path.clone(),
                })
                .collect(),
        })
    }

    /// A request without registry hashes.
    pub fn new<S: AsRef<str>>(
        repo_id: &str,
        revision: &str,
        files: impl IntoIterator<Item = S>,
    ) -> Self {
        DownloadRequest {
            repo_id: repo_id.to_string(),
            revision: revision.to_string(),
            files: files
                .into_iter()
                .map(|f| FileSpec {
                    path: f.as_ref().to_string(),
                    sha256: None,
                })
                .collect(),
        }
    }
}

/// The result of a download: a complete, verified snapshot folder.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub repo_id: String,
    pub commit: String,
    /// `…/models--org--name/snapshots/<commit>`; point `from_pretrained` here.
    pub dir: PathBuf,
    pub files: Vec<FileOutcome>,
}

/// What happened to one file.
#[derive(Clone, Debug)]
pub struct FileOutcome {
    pub path: String,
    /// The snapshot entry.
    pub pointer: PathBuf,
    /// The content-addressed blob (name = etag).
    pub blob: PathBuf,
    pub size: u64,
    /// Content bytes received from the network in this run (0 when served from the cache).
    pub fetched: u64,
    /// True when the blob was already in the cache (no content request was made).
    pub cached: bool,
}

/// A cache plus the options to reach the hub.
#[derive(Clone, Debug)]
pub struct Hub {
    pub cache: Cache,
    pub options: HubOptions,
}

impl Hub {
    pub fn new(cache: Cache, options: HubOptions) -> Self {
        Hub { cache, options }
    }

    /// [`Cache::from_env`] + [`HubOptions::from_env`].
    pub fn from_env() -> Self {
        Hub::new(Cache::from_env(), HubOptions::from_env())
    }

    /// Downloads a registry entry's Huggingface files. For a legacy entry (Weiyun only), returns
    /// the snapshot of its imported UER file, or [`HubError::Legacy`] explaining the manual
    /// route.
    pub fn download_entry(
        &self,
        entry: &Entry,
        progress: &dyn Progress,
    ) -> Result<Snapshot, HubError> {
        if let Some(request) = DownloadRequest::from_entry(entry, None) {
            return self.download(&request, progress);
        }
        let request = DownloadRequest::new(&local_repo_id(&entry.name), "main", [&entry.uer_file]);
        download::offline(&self.cache, &request).map_err(|_| HubError::Legacy {
            name: entry.name.clone(),
            page: entry
                .sources
                .weiyun
                .as_ref()
                .map_or_else(|| "see `uerzoo info`".to_string(), |w| w.url.clone()),
            uer_file: entry.uer_file.clone(),
        })
    }

    /// Downloads (or finds in the cache) every file of `request` and returns the snapshot.
    /// Each file is verified before it appears in `snapshots/`; a partial download is kept
    /// and continued by the next run unless it failed verification.
    pub fn download(
        &self,
        request: &DownloadRequest,
        progress: &dyn Progress,
    ) -> Result<Snapshot, HubError> {
        if self.options.offline {
            return download::offline(&self.cache, request);
        }
        download::online(self, request, progress)
    }
}
