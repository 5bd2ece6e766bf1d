//! Cache management as huggingface_hub's `hf cache` does it: [`scan`] describes what is
//! cached (repos, revisions, files, bytes on disk, last use), [`plan_remove`] and
//! [`plan_prune`] say what a deletion would remove, and [`DeletePlan::execute`] removes it.
//!
//! Planning never deletes, so a caller can show the plan, ask, or stop at a dry run. Every
//! path in a plan is built from the cache root through [`CacheRepo`]'s layout methods;
//! deleting removes a symlink itself, never what it points at, so nothing outside the cache
//! is touched. What stays is the same layout transformers reads (blobs, refs, snapshots).

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::HubError;
use super::cache::{Cache, CacheRepo};

/// One cached repository.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RepoInfo {
    pub repo_id: String,
    /// `<root>/models--org--name`.
    pub folder: PathBuf,
    /// Bytes of every regular file under the folder (blobs, partial downloads, UER
    /// conversions, copies where symlinks are missing): what removing the repo frees.
    pub size_on_disk: u64,
    /// Snapshots, newest first.
    pub revisions: Vec<RevisionInfo>,
    /// Newest access time of the repo's blobs, seconds since the Unix epoch.
    pub last_accessed: Option<u64>,
    /// Newest modification time of the repo's blobs, seconds since the Unix epoch.
    pub last_modified: Option<u64>,
    /// `blobs/*.incomplete`: downloads that stopped (or are running).
    pub incomplete: Vec<String>,
}

/// One snapshot of a repository.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RevisionInfo {
    /// The 40-hex commit (the snapshot folder's name).
    pub commit: String,
    /// The refs that point at it (`main`, `refs/pr/1`); empty for a detached revision.
    pub refs: Vec<String>,
    pub files: Vec<RevisionFile>,
    /// Bytes of the distinct blobs (and plain files) the snapshot holds.
    pub size_on_disk: u64,
    /// Modification time of the snapshot folder, seconds since the Unix epoch.
    pub last_modified: Option<u64>,
}

/// One file of a snapshot.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RevisionFile {
    /// Repo path, `/`-separated.
    pub path: String,
    /// The blob it links to (`None` for a plain-file copy or a link leaving `blobs/`).
    pub blob: Option<String>,
    /// `None` when the blob is missing.
    pub size: Option<u64>,
}

/// Every repository of the cache, sorted by repo id.
pub fn scan(cache: &Cache) -> Vec<RepoInfo> {
    cache
        .repos()
        .iter()
        .filter_map(|id| scan_repo(cache, id))
        .collect()
}

/// One repository, or `None` when its folder does not exist.
pub fn scan_repo(cache: &Cache, repo_id: &str) -> Option<RepoInfo> {
    let repo = cache.repo(repo_id);
    let folder = repo.folder();
    if !fs::symlink_metadata(&folder).is_ok_and(|m| m.is_dir()) {
        return None;
    }
    let refs = repo.refs();
    let mut revisions: Vec<RevisionInfo> = repo
        .snapshots()
        .into_iter()
        .map(|commit| revision_info(&repo, &refs, commit))
        .collect();
    revisions.sort_by_key(|r| std::cmp::Reverse(r.last_modified));
    let (mut accessed, mut modified) = (None, None);
    let mut incomplete = Vec::new();
    for name in repo.blob_names() {
        if name.ends_with(".incomplete") {
            incomplete.push(name.clone());
        }
        if let Ok(meta) = fs::symlink_metadata(repo.blob_path(&name)) {
            accessed = accessed.max(meta.accessed().ok().map(epoch));
            modified = modified.max(meta.modified().ok().map(epoch));
        }
    }
    Some(RepoInfo {
        repo_id: repo_id.to_string(),
        size_on_disk: tree_size(&folder),
        folder,
        revisions,
        last_accessed: accessed,
        last_modified: modified,
        incomplete,
    })
}

fn revision_info(repo: &CacheRepo, refs: &[(String, String)], commit: String) -> RevisionInfo {
    let mut seen = BTreeSet::new();
    let mut size_on_disk = 0;
    let files = repo
        .snapshot_files(&commit)
        .into_iter()
        .map(|path| {
            let blob = repo.linked_blob(&commit, &path);
            let on_disk = match &blob {
                Some(name) => repo.blob_path(name),
                None => repo.pointer_path(&commit, &path),
            };
            let size = fs::symlink_metadata(&on_disk)
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len());
            if seen.insert(on_disk) {
                size_on_disk += size.unwrap_or(0);
            }
            RevisionFile { path, blob, size }
        })
        .collect();
    RevisionInfo {
        refs: refs
            .iter()
            .filter(|(_, c)| *c == commit)
            .map(|(name, _)| name.clone())
            .collect(),
        files,
        size_on_disk,
        last_modified: fs::symlink_metadata(repo.snapshot_dir(&commit))
            .and_then(|m| m.modified())
            .ok()
            .map(epoch),
        commit,
    }
}

fn epoch(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Bytes of the regular files under `path`, symlinks not followed.
fn tree_size(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_file() {
        return meta.len();
    }
    if !meta.is_dir() {
        return 0;
    }
    fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| tree_size(&e.path()))
                .sum()
        })
        .unwrap_or(0)
}

/// What one deleted path is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A whole `models--org--name` folder (and its `.locks/` folder).
    Repo,
    /// `snapshots/<commit>`.
    Snapshot,
    /// `refs/<name>` pointing at a removed snapshot.
    Ref,
    /// A blob no remaining snapshot links to.
    Blob,
    /// `blobs/<etag>.incomplete` (and its `.parts`) of a download that is not running.
    Incomplete,
    /// `uer/<commit>`: the UER conversion of a removed snapshot.
    Conversion,
}

/// One path a plan removes.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Deletion {
    pub repo_id: String,
    pub kind: Kind,
    pub path: PathBuf,
    /// Bytes of regular files it frees.
    pub size: u64,
}

/// Paths to remove, in order; nothing is removed until [`DeletePlan::execute`].
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DeletePlan {
    pub items: Vec<Deletion>,
}

impl DeletePlan {
    /// Bytes the plan frees.
    pub fn freed(&self) -> u64 {
        self.items.iter().map(|d| d.size).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn push(&mut self, repo: &CacheRepo, kind: Kind, path: PathBuf) {
        if fs::symlink_metadata(&path).is_err() || self.items.iter().any(|d| d.path == path) {
            return;
        }
        self.items.push(Deletion {
            repo_id: repo.repo_id().to_string(),
            kind,
            size: tree_size(&path),
            path,
        });
    }

    /// Removes every path of the plan (a symlink is removed itself, never followed), then
    /// the folders of the touched repos that became empty. Returns the bytes freed.
    pub fn execute(&self, cache: &Cache) -> Result<u64, HubError> {
        let mut touched = BTreeSet::new();
        for item in &self.items {
            remove_path(&item.path)?;
            touched.insert(item.repo_id.clone());
        }
        for repo_id in touched {
            let repo = cache.repo(&repo_id);
            remove_empty_dirs(&repo.folder());
            remove_empty_dirs(&repo.locks_dir());
        }
        Ok(self.freed())
    }
}

fn remove_path(path: &Path) -> Result<(), HubError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(HubError::io(path, e)),
    };
    // `remove_dir_all` removes links inside the tree without following them.
    let result = if meta.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    result.map_err(|e| HubError::io(path, e))
}

/// Removes `dir` and its sub-folders bottom-up where they are empty (symlinks untouched).
fn remove_empty_dirs(dir: &Path) {
    if !fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
        return;
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.filter_map(|e| e.ok()) {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_empty_dirs(&entry.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

/// The plan of `cache rm REPO [--revision R]`: the whole repo, or one revision (its
/// snapshot, the refs that point at it, its UER conversion, and the blobs no other
/// snapshot links to).
pub fn plan_remove(
    cache: &Cache,
    repo_id: &str,
    revision: Option<&str>,
) -> Result<DeletePlan, HubError> {
    let repo = cache.repo(repo_id);
    let folder = repo.folder();
    if !fs::symlink_metadata(&folder).is_ok_and(|m| m.is_dir() || m.is_symlink()) {
        return Err(HubError::NotCached {
            repo: repo_id.to_string(),
            path: folder,
        });
    }
    let mut plan = DeletePlan::default();
    let Some(revision) = revision else {
        plan.push(&repo, Kind::Repo, folder);
        plan.push(&repo, Kind::Repo, repo.locks_dir());
        return Ok(plan);
    };
    let snapshots = repo.snapshots();
    let refs = repo.refs();
    let commit = resolve(&snapshots, &refs, revision).ok_or_else(|| HubError::NoRevision {
        repo: repo_id.to_string(),
        revision: revision.to_string(),
        known: refs
            .iter()
            .map(|(name, c)| format!("{name} ({})", &c[..c.len().min(8)]))
            .chain(snapshots.iter().map(|c| c[..c.len().min(12)].to_string()))
            .collect::<Vec<_>>()
            .join(", "),
    })?;
    drop_snapshots(&mut plan, &repo, std::slice::from_ref(&commit), &snapshots);
    for (name, c) in &refs {
        if *c == commit {
            plan.push(&repo, Kind::Ref, repo.ref_path(name));
        }
    }
    Ok(plan)
}

/// A ref name, a full commit, or an unambiguous commit prefix (7+ hex) of a snapshot.
fn resolve(snapshots: &[String], refs: &[(String, String)], revision: &str) -> Option<String> {
    if let Some((_, commit)) = refs.iter().find(|(name, _)| name == revision) {
        return Some(commit.clone());
    }
    if snapshots.iter().any(|c| c == revision) {
        return Some(revision.to_string());
    }
    let matches: Vec<&String> = snapshots
        .iter()
        .filter(|c| revision.len() >= 7 && c.starts_with(revision))
        .collect();
    (matches.len() == 1).then(|| matches[0].clone())
}

/// Plans the removal of `commits`' snapshots and UER conversions and of the blobs that
/// only they link to.
fn drop_snapshots(plan: &mut DeletePlan, repo: &CacheRepo, commits: &[String], all: &[String]) {
    let kept: BTreeSet<String> = all
        .iter()
        .filter(|c| !commits.contains(c))
        .flat_map(|c| linked_blobs(repo, c))
        .collect();
    for commit in commits {
        for blob in linked_blobs(repo, commit) {
            if !kept.contains(&blob) {
                plan.push(repo, Kind::Blob, repo.blob_path(&blob));
            }
        }
        plan.push(repo, Kind::Snapshot, repo.snapshot_dir(commit));
        plan.push(repo, Kind::Conversion, repo.uer_dir(commit));
    }
}

fn linked_blobs(repo: &CacheRepo, commit: &str) -> BTreeSet<String> {
    repo.snapshot_files(commit)
        .iter()
        .filter_map(|f| repo.linked_blob(commit, f))
        .collect()
}

/// The plan of `cache prune`: in every repo, detached revisions (snapshots no ref points
/// at) with their conversions, blobs no remaining snapshot links to, and partial downloads
/// whose download is not running (its lock is free). Snapshots a ref points at are kept.
pub fn plan_prune(cache: &Cache) -> DeletePlan {
    let mut plan = DeletePlan::default();
    for repo_id in cache.repos() {
        let repo = cache.repo(&repo_id);
        if !fs::symlink_metadata(repo.folder()).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        let snapshots = repo.snapshots();
        let refs = repo.refs();
        let detached: Vec<String> = snapshots
            .iter()
            .filter(|s| !refs.iter().any(|(_, c)| c == *s))
            .cloned()
            .collect();
        drop_snapshots(&mut plan, &repo, &detached, &snapshots);
        let kept: BTreeSet<String> = snapshots
            .iter()
            .filter(|c| !detached.contains(c))
            .flat_map(|c| linked_blobs(&repo, c))
            .collect();
        for name in repo.blob_names() {
            let etag = name
                .strip_suffix(".incomplete.parts")
                .or_else(|| name.strip_suffix(".incomplete"));
            let (kind, etag) = match etag {
                Some(etag) => (Kind::Incomplete, etag),
                None if name.starts_with('.') || name.ends_with(".tmp") => continue,
                None if kept.contains(&name) => continue,
                None => (Kind::Blob, name.as_str()),
            };
            if !in_use(&repo, etag) {
                plan.push(&repo, kind, repo.blob_path(&name));
            }
        }
    }
    plan
}

/// Whether a download of `etag` holds its lock right now.
fn in_use(repo: &CacheRepo, etag: &str) -> bool {
    let path = repo.lock_path(etag);
    if !path.is_file() {
        return false;
    }
    let Ok(file) = OpenOptions::new().write(true).open(&path) else {
        return true;
    };
    match fs2::FileExt::try_lock_exclusive(&file) {
        Ok(()) => {
            let _ = fs2::FileExt::unlock(&file);
            false
        }
        Err(_) => true,
    }
}

/// The columns of `uerzoo cache ls`, one [`RepoInfo::row`] per repo.
pub const LS_HEADER: [&str; 6] = ["NAME", "REPO", "REVISIONS", "FILES", "SIZE", "LAST USED"];

impl RepoInfo {
    /// The repo's `cache ls` row (see [`LS_HEADER`]), its last use counted back from `now`
    /// (seconds since the epoch).
    pub fn row(&self, now: u64) -> [String; 6] {
        let revisions: Vec<String> = self
            .revisions
            .iter()
            .map(|v| {
                let short = &v.commit[..v.commit.len().min(8)];
                if v.refs.is_empty() {
                    format!("{short} (detached)")
                } else {
                    format!("{short} ({})", v.refs.join(","))
                }
            })
            .collect();
        let files: usize = self.revisions.iter().map(|v| v.files.len()).sum();
        let mut files = files.to_string();
        if !self.incomplete.is_empty() {
            files.push_str(&format!(" +{} partial", self.incomplete.len()));
        }
        [
            registry_name(&self.repo_id).unwrap_or_else(|| "-".into()),
            self.repo_id.clone(),
            if revisions.is_empty() {
                "-".into()
            } else {
                revisions.join(" ")
            },
            files,
            human_size(self.size_on_disk),
            self.last_accessed.map_or("-".into(), |t| ago(now, t)),
        ]
    }
}

/// The line under the `cache ls` table: repos, total size, the cache root.
pub fn ls_total(cache: &Cache, repos: &[RepoInfo]) -> String {
    let total: u64 = repos.iter().map(|r| r.size_on_disk).sum();
    format!(
        "{} repo(s), {} ({} B) in {}\n",
        repos.len(),
        human_size(total),
        total,
        cache.root().display()
    )
}

/// `cache ls --json`: each repo with its registry name (`null` outside the registry).
pub fn ls_json(repos: &[RepoInfo]) -> Vec<serde_json::Value> {
    repos
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap_or_default();
            v["name"] = registry_name(&r.repo_id).into();
            v
        })
        .collect()
}

impl Deletion {
    /// The plan's line for this path: what it is, its size, where.
    pub fn line(&self) -> String {
        let kind = match self.kind {
            Kind::Repo => "repo",
            Kind::Snapshot => "snapshot",
            Kind::Ref => "ref",
            Kind::Blob => "blob",
            Kind::Incomplete => "partial",
            Kind::Conversion => "uer",
        };
        format!(
            "{kind:<9} {:>10}  {}",
            human_size(self.size),
            self.path.display()
        )
    }
}

/// Bytes in decimal units, as the Hub and `hf cache ls` show them.
pub fn human_size(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{:.1} kB", b / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", b / 1e6),
        _ => format!("{:.1} GB", b / 1e9),
    }
}

fn ago(now: u64, then: u64) -> String {
    let s = now.saturating_sub(then);
    match s {
        0..60 => "just now".into(),
        60..3_600 => format!("{} min ago", s / 60),
        3_600..86_400 => format!("{} h ago", s / 3_600),
        _ => format!("{} days ago", s / 86_400),
    }
}

/// The registry name of a cached repo id, when the registry knows it.
pub fn registry_name(repo_id: &str) -> Option<String> {
    let registry = crate::registry::Registry::builtin();
    if let Some(name) = repo_id.strip_prefix("uerzoo/") {
        return registry.get(name).ok().map(|e| e.name.clone());
    }
    registry
        .entries()
        .iter()
        .find(|e| e.sources.hf.as_ref().is_some_and(|h| h.repo == repo_id))
        .map(|e| e.name.clone())
}
