//! Where registry names meet the cache: which cached repos a zoo name stands for, whether
//! an entry's weights are cached, `info`'s text with the cache listing ([`info_text`]), and
//! the `download` and `verify` commands as one call each ([`download`], [`verify`]).
//! Nothing here prints: progress goes to a [`Progress`], messages to the caller's
//! `on_note`, and the results come back as data.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::hub::{Cache, DownloadRequest, FileSpec, Hub, HubError, HubOptions, Snapshot};
use crate::hub::{CheckStatus, FileCheck, local_repo_id, verify_repo};
use crate::progress::Progress;
use crate::registry::{Entry, Registry, RegistryError};

/// Files fetched for an `org/name` repo id outside the registry when no file is named.
pub const DEFAULT_FILES: [&str; 3] = ["config.json", "vocab.txt", "pytorch_model.bin"];

/// What can stop a zoo-level hub command.
#[derive(Debug, thiserror::Error)]
pub enum ZooError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Hub(#[from] HubError),
    /// A hub error with what was being done (`context` names the repo and the files).
    #[error("{context}")]
    During {
        context: String,
        #[source]
        source: Box<HubError>,
    },
    /// Converting the downloaded snapshot failed.
    #[error("converting {} to UER format", input.display())]
    Convert {
        input: PathBuf,
        #[source]
        source: crate::convert::ConvertError,
    },
    #[error("creating {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Nothing to work on; the message says what to do.
    #[error("{0}")]
    Nothing(String),
}

/// The cache from `dir`, else from the environment (HF_HUB_CACHE, HF_HOME).
pub fn cache_at(dir: Option<PathBuf>) -> Cache {
    dir.map(Cache::new).unwrap_or_else(Cache::from_env)
}

/// A hub from the environment with the command-line overrides.
pub fn hub_with(
    cache_dir: Option<PathBuf>,
    endpoint: Option<String>,
    offline: bool,
    jobs: usize,
) -> Hub {
    let mut options = HubOptions::from_env();
    if let Some(endpoint) = endpoint {
        options.endpoint = endpoint;
    }
    options.offline |= offline;
    options.jobs = jobs.max(1);
    Hub::new(cache_at(cache_dir), options)
}

pub use crate::hub::registry_name;

/// Whether the weights of `entry` are in the cache: the Huggingface weights file at the
/// registry's revision, or an imported UER file.
pub fn is_cached(cache: &Cache, entry: &Entry) -> bool {
    let hf = entry
        .sources
        .hf
        .as_ref()
        .is_some_and(|h| cache.repo(&h.repo).get(&h.revision, &h.weights).is_some());
    hf || (!entry.uer_file.is_empty()
        && cache
            .repo(&local_repo_id(&entry.name))
            .get("main", &entry.uer_file)
            .is_some())
}

/// The cached repos NAME stands for: a registry entry's Huggingface repo and its imported
/// files, whichever are cached; a repo id as given. None cached is an error.
pub fn repos_named(cache: &Cache, name: &str) -> Result<Vec<String>, ZooError> {
    let exists = |id: &str| std::fs::symlink_metadata(cache.repo(id).folder()).is_ok();
    let candidates = match Registry::builtin().get(name) {
        Ok(entry) => {
            let mut ids: Vec<String> = entry.sources.hf.iter().map(|h| h.repo.clone()).collect();
            ids.push(local_repo_id(&entry.name));
            ids
        }
        Err(_) if name.contains('/') => vec![name.to_string()],
        Err(err) => return Err(err.into()),
    };
    let cached: Vec<String> = candidates.iter().filter(|id| exists(id)).cloned().collect();
    if cached.is_empty() {
        return Err(ZooError::Nothing(format!(
            "`{name}` is not in the cache {} (looked for {}); `uerzoo cache ls` lists what is cached, --cache-dir picks another cache",
            cache.root().display(),
            candidates
                .iter()
                .map(|id| cache.repo(id).folder_name())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(cached)
}

/// The `uerzoo info` text of `entry` ([`crate::jobs::info::render`]) with what the
/// cache from the environment holds of it: its imported files and its Hub downloads.
pub fn info_text(registry: &Registry, entry: &Entry) -> String {
    let cache = Cache::from_env();
    let mut repos = vec![local_repo_id(&entry.name)];
    if let Some(hf) = &entry.sources.hf {
        repos.push(hf.repo.clone());
    }
    let files = repos
        .iter()
        .flat_map(|r| crate::hub::cached_files(&cache, r))
        .collect();
    let copies = crate::jobs::info::LocalCopies {
        root: cache.root().to_path_buf(),
        files,
    };
    crate::jobs::info::render(registry, entry, &copies)
}

/// What `uerzoo download` fetches.
#[derive(Debug, Clone)]
pub struct DownloadOptions {
    /// Registry name or alias, or a Huggingface repo id `org/name`.
    pub name: String,
    /// Also convert the snapshot to a UER `.bin` beside it.
    pub to_uer: bool,
    /// UER naming of that `.bin` (v1, the zoo's, unless asked otherwise).
    pub uer_naming: crate::convert::Naming,
    pub revision: Option<String>,
    pub endpoint: Option<String>,
    pub cache_dir: Option<PathBuf>,
    pub offline: bool,
    /// Parallel ranged connections per large file.
    pub jobs: usize,
    /// Repo files to fetch (empty: the registry's list, else [`DEFAULT_FILES`]).
    pub files: Vec<String>,
}

/// What [`download`] did.
#[derive(Debug, Clone)]
pub struct Downloaded {
    pub snapshot: Snapshot,
    /// With `to_uer`: the UER file.
    pub uer: Option<UerCopy>,
}

/// The UER file [`download`] made (or a legacy entry's own file) and what belongs beside it.
#[derive(Debug, Clone)]
pub struct UerCopy {
    pub path: PathBuf,
    /// Whether it was converted now; the companions below then belong beside it.
    pub converted: bool,
    /// The entry's UER config (`None`: the repo is not a registry weight).
    pub uer_config: Option<crate::registry::UerConfig>,
    /// The snapshot's vocabulary (`vocab.txt` or `spiece.model`).
    pub vocab: Option<PathBuf>,
}

/// Downloads NAME into the cache (a legacy entry: its imported file, or the manual route
/// named in the error), and with `to_uer` converts the snapshot to a UER `.bin` in
/// `models--org--name/uer/<commit>/`.
pub fn download(opts: &DownloadOptions, progress: &dyn Progress) -> Result<Downloaded, ZooError> {
    let entry = match Registry::builtin().get(&opts.name) {
        Ok(entry) => Some(entry),
        Err(_) if opts.name.contains('/') => None,
        Err(err) => return Err(err.into()),
    };
    let hub = hub_with(
        opts.cache_dir.clone(),
        opts.endpoint.clone(),
        opts.offline,
        opts.jobs,
    );
    let snapshot = match (request(opts, entry), entry) {
        (Some(request), _) => {
            hub.download(&request, progress)
                .map_err(|source| ZooError::During {
                    context: format!(
                        "downloading `{}` ({}@{})",
                        opts.name, request.repo_id, request.revision
                    ),
                    source: Box::new(source),
                })?
        }
        (None, Some(entry)) => hub.download_entry(entry, progress)?,
        (None, None) => {
            return Err(ZooError::Nothing("only registry entries are legacy".into()));
        }
    };
    let uer = match (opts.to_uer, entry.filter(|e| e.sources.hf.is_none())) {
        (false, _) => None,
        // A legacy snapshot already is the UER file.
        (true, Some(_)) => Some(UerCopy {
            path: snapshot
                .files
                .first()
                .map_or(snapshot.dir.clone(), |f| f.pointer.clone()),
            converted: false,
            uer_config: None,
            vocab: None,
        }),
        (true, None) => Some(to_uer(&hub, &snapshot, entry, opts.uer_naming)?),
    };
    Ok(Downloaded { snapshot, uer })
}

/// The registry's request (or a plain repo's) with the revision and files applied; `None`
/// for a legacy entry.
fn request(opts: &DownloadOptions, entry: Option<&Entry>) -> Option<DownloadRequest> {
    let mut request = match entry {
        Some(entry) => DownloadRequest::from_entry(entry, opts.revision.as_deref())?,
        None => DownloadRequest::new(
            &opts.name,
            opts.revision.as_deref().unwrap_or("main"),
            DEFAULT_FILES,
        ),
    };
    if !opts.files.is_empty() {
        request.files.retain(|f| opts.files.contains(&f.path));
        add_files(&mut request, &opts.files);
    }
    Some(request)
}

/// Adds each of `files` the request lacks, with no expected sha256.
fn add_files(request: &mut DownloadRequest, files: &[String]) {
    for path in files {
        if !request.files.iter().any(|f| &f.path == path) {
            request.files.push(FileSpec {
                path: path.clone(),
                sha256: None,
            });
        }
    }
}

/// Converts the snapshot into `models--org--name/uer/<commit>/<uer file>`.
fn to_uer(
    hub: &Hub,
    snapshot: &Snapshot,
    entry: Option<&Entry>,
    naming: crate::convert::Naming,
) -> Result<UerCopy, ZooError> {
    use crate::convert;
    let file = entry.map_or("uer_model.bin", |e| e.uer_file.as_str());
    let output = hub
        .cache
        .repo(&snapshot.repo_id)
        .uer_path(&snapshot.commit, file);
    let request = convert::ConvertRequest {
        input: snapshot.dir.clone(),
        output: output.clone(),
        to: convert::To::Uer,
        arch: entry.and_then(|e| {
            (e.family.as_str().parse().ok()).or_else(|| e.arch.as_str().parse().ok())
        }),
        uer_config: entry.and_then(|e| e.uer_config().ok()),
        vocab: None,
        naming,
        exact_layernorm: false,
        format: None,
        dry_run: false,
        force: true,
        allow_unmapped: false,
        dtype: None,
        copy_ranges: true,
    };
    if let Some(dir) = output.parent() {
        std::fs::create_dir_all(dir).map_err(|source| ZooError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    convert::run(&request).map_err(|source| ZooError::Convert {
        input: snapshot.dir.clone(),
        source,
    })?;
    let vocab = ["vocab.txt", "spiece.model"]
        .into_iter()
        .map(|f| snapshot.dir.join(f))
        .find(|p| p.is_file());
    Ok(UerCopy {
        path: output,
        converted: true,
        uer_config: request.uer_config,
        vocab,
    })
}

/// What `uerzoo verify` checks.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Registry name or repo id (`None`: every cached repo).
    pub name: Option<String>,
    pub cache_dir: Option<PathBuf>,
    /// Fetch corrupt and missing files again.
    pub repair: bool,
    /// Hub or mirror for the repair.
    pub endpoint: Option<String>,
}

/// What [`verify`] found: one line per file (`OK`, `OK?`, `CORRUPT`, `MISSING`), in order.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub lines: Vec<String>,
    /// Files checked, and problems (corrupt or missing files, names with nothing cached).
    pub total: usize,
    pub bad: usize,
}

impl VerifyReport {
    /// The closing line.
    pub fn summary(&self) -> String {
        format!("{} file(s) checked, {} problem(s)", self.total, self.bad)
    }
}

/// Re-hashes the cached files of `opts.name` (or of every cached repo), repairing what is
/// bad with `opts.repair`. `on_note` receives what the repair did or cannot do.
pub fn verify(
    opts: &VerifyOptions,
    progress: &dyn Progress,
    on_note: &mut dyn FnMut(&str),
) -> Result<VerifyReport, ZooError> {
    let cache = cache_at(opts.cache_dir.clone());
    if !cache.root().is_dir() {
        return Err(ZooError::Nothing(format!(
            "the cache {} does not exist (or is not a folder): nothing to verify; pass the --cache-dir that `uerzoo download` used, or download first",
            cache.root().display()
        )));
    }
    let repos = match &opts.name {
        Some(name) => repos_of(&cache, name)?,
        None => cache.repos().into_iter().map(|r| (r, Vec::new())).collect(),
    };
    let mut report = VerifyReport::default();
    for (repo_id, expected) in &repos {
        let mut checks = verify_repo(&cache, repo_id, expected, progress);
        if opts.repair && checks.iter().any(is_bad) {
            checks = repair(opts, &cache, repo_id, expected, checks, progress, on_note)?;
        }
        if checks.is_empty() && opts.name.is_some() {
            report.lines.push(format!(
                "MISSING  {repo_id}: nothing cached under {}",
                cache.root().display()
            ));
            report.bad += 1;
        }
        for check in checks {
            report.total += 1;
            let (word, detail) = match &check.status {
                CheckStatus::Ok => ("OK", String::new()),
                CheckStatus::Unverifiable => ("OK?", " (blob name is not a hash)".into()),
                CheckStatus::Missing => ("MISSING", String::new()),
                CheckStatus::Corrupt { expected, actual } => {
                    ("CORRUPT", format!(" (expected {expected}, got {actual})"))
                }
            };
            if is_bad(&check) {
                report.bad += 1;
            }
            report.lines.push(format!(
                "{word:<8} {}  {}{detail}",
                check.repo_id, check.file
            ));
        }
    }
    Ok(report)
}

/// The cache repos of NAME with the files each must hold: the Huggingface repo (its registry
/// file list) and the imported files, whichever exist; a bare `org/name` as given.
fn repos_of(cache: &Cache, name: &str) -> Result<Vec<(String, Vec<String>)>, ZooError> {
    let entry = match Registry::builtin().get(name) {
        Ok(entry) => entry,
        Err(_) if name.contains('/') => return Ok(vec![(name.to_string(), Vec::new())]),
        Err(err) => return Err(err.into()),
    };
    let local = local_repo_id(&entry.name);
    let mut repos = Vec::new();
    if let Some(hf) = &entry.sources.hf {
        repos.push((hf.repo.clone(), hf.files.clone()));
    }
    if cache.repo(&local).folder().is_dir() || repos.is_empty() {
        repos.push((local, Vec::new()));
    }
    Ok(repos)
}

fn is_bad(check: &FileCheck) -> bool {
    matches!(
        check.status,
        CheckStatus::Missing | CheckStatus::Corrupt { .. }
    )
}

/// Fetches the bad files of `repo_id` again, per snapshot commit, and returns the checks
/// made afterwards. Imported repos cannot be fetched: the file to import again is named.
fn repair(
    opts: &VerifyOptions,
    cache: &Cache,
    repo_id: &str,
    expected: &[String],
    checks: Vec<FileCheck>,
    progress: &dyn Progress,
    on_note: &mut dyn FnMut(&str),
) -> Result<Vec<FileCheck>, ZooError> {
    let entry = Registry::builtin().get(repo_id).ok().or_else(|| {
        repo_id
            .strip_prefix("uerzoo/")
            .and_then(|n| Registry::builtin().get(n).ok())
    });
    if repo_id.starts_with("uerzoo/") {
        for check in checks.iter().filter(|c| is_bad(c)) {
            let name = entry.map_or(repo_id, |e| e.name.as_str());
            let page = entry
                .and_then(|e| e.sources.weiyun.as_ref())
                .map_or(String::new(), |w| format!(" from {}", w.url));
            on_note(&format!(
                "repair: `{}` was imported, not downloaded; download it again{page} and run `uerzoo import {name} <file>`",
                check.file
            ));
        }
        return Ok(checks);
    }
    let hub = hub_with(opts.cache_dir.clone(), opts.endpoint.clone(), false, 1);
    let mut by_commit: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for check in checks.iter().filter(|c| is_bad(c)) {
        by_commit
            .entry(check.commit.clone())
            .or_default()
            .push(check.file.clone());
    }
    for (commit, files) in by_commit {
        let revision = if commit.is_empty() {
            entry
                .and_then(|e| e.sources.hf.as_ref())
                .map_or("main".to_string(), |h| h.revision.clone())
        } else {
            commit
        };
        // The registry's sha256 applies where the revision is the registry's own.
        let mut request = entry
            .and_then(|e| DownloadRequest::from_entry(e, Some(&revision)))
            .unwrap_or_else(|| DownloadRequest::new(repo_id, &revision, Vec::<String>::new()));
        request.repo_id = repo_id.to_string();
        request.files.retain(|f| files.contains(&f.path));
        add_files(&mut request, &files);
        let snapshot = hub
            .download(&request, progress)
            .map_err(|source| ZooError::During {
                context: format!(
                    "repairing {repo_id}@{revision} ({}); the bad files stay as they were reported",
                    files.join(", ")
                ),
                source: Box::new(source),
            })?;
        for file in snapshot.files.iter().filter(|f| !f.cached) {
            on_note(&format!(
                "repaired {repo_id}  {} ({} B fetched)",
                file.path, file.fetched
            ));
        }
    }
    Ok(verify_repo(cache, repo_id, expected, progress))
}
