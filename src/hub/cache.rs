//! The Huggingface cache layout, spelled once. Every path under the cache root is built here:
//!
//! ```text
//! <root>/                                   $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub
//!   CACHEDIR.TAG                            marks the folder as a cache (backup tools skip it)
//!   .locks/models--<org>--<name>/<etag>.lock
//!   models--<org>--<name>/
//!     blobs/<etag>                          content-addressed: sha256 (LFS) or git sha1 (git files)
//!     blobs/<etag>.incomplete               a partial download, continued with `Range`
//!     refs/<revision>                       one line: the 40-hex commit the revision resolved to
//!     snapshots/<commit>/<path>             relative symlink -> ../../blobs/<etag>
//!     uer/<commit>/<uer file>               `download --format uer`: the snapshot converted
//! ```
//!
//! Writes are atomic (temp file or temp link in the target directory, then rename), so a
//! reader never sees half a ref or a dangling snapshot entry.

use std::fs;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};

use super::HubError;

/// The root of a Huggingface hub cache.
#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// A cache rooted at `root` (the directory that holds `models--…` folders).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Cache { root: root.into() }
    }

    /// The cache the Python tools use: `HF_HUB_CACHE` (or the legacy `HUGGINGFACE_HUB_CACHE`),
    /// else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else
    /// `~/.cache/huggingface/hub`.
    pub fn from_env() -> Self {
        Cache::new(default_root(&|k| {
            std::env::var_os(k).filter(|v| !v.is_empty())
        }))
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// One repository of the cache.
    pub fn repo(&self, repo_id: &str) -> CacheRepo {
        CacheRepo {
            root: self.root.clone(),
            repo_id: repo_id.to_string(),
        }
    }

    /// The repo ids of every model folder in the cache (`models--org--name` → `org/name`).
    pub fn repos(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_prefix("models--")
                    .map(|rest| rest.replace("--", "/"))
            })
            .collect();
        ids.sort();
        ids
    }
}

/// The default cache root, given an environment lookup (testable without touching the
/// process environment).
pub fn default_root(env: &dyn Fn(&str) -> Option<std::ffi::OsString>) -> PathBuf {
    if let Some(dir) = env("HF_HUB_CACHE").or_else(|| env("HUGGINGFACE_HUB_CACHE")) {
        return PathBuf::from(dir);
    }
    if let Some(home) = env("HF_HOME") {
        return PathBuf::from(home).join("hub");
    }
    if let Some(xdg) = env("XDG_CACHE_HOME") {
        return PathBuf::from(xdg).join("huggingface").join("hub");
    }
    let home = env("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("huggingface").join("hub")
}

/// One repository inside a [`Cache`].
#[derive(Clone, Debug)]
pub struct CacheRepo {
    root: PathBuf,
    repo_id: String,
}

impl CacheRepo {
    /// The repo id, e.g. `uer/chinese_roberta_L-2_H-128`.
    pub fn repo_id(&self) -> &str {
        &self.repo_id
    }

    /// `models--<org>--<name>`.
    pub fn folder_name(&self) -> String {
        format!("models--{}", self.repo_id.replace('/', "--"))
    }

    /// `<root>/models--<org>--<name>`.
    pub fn folder(&self) -> PathBuf {
        self.root.join(self.folder_name())
    }

    /// `blobs/<etag>`.
    pub fn blob_path(&self, etag: &str) -> PathBuf {
        self.folder().join("blobs").join(etag)
    }

    /// `blobs/<etag>.incomplete`: the partial download that is continued with `Range`.
    pub fn incomplete_path(&self, etag: &str) -> PathBuf {
        self.folder()
            .join("blobs")
            .join(format!("{etag}.incomplete"))
    }

    /// `blobs/<etag>.incomplete.parts`: per-range progress of a parallel download.
    pub fn parts_path(&self, etag: &str) -> PathBuf {
        self.folder()
            .join("blobs")
            .join(format!("{etag}.incomplete.parts"))
    }

    /// `<root>/.locks/models--<org>--<name>/<etag>.lock`.
    pub fn lock_path(&self, etag: &str) -> PathBuf {
        self.root
            .join(".locks")
            .join(self.folder_name())
            .join(format!("{etag}.lock"))
    }

    /// `blobs/`.
    pub fn blobs_dir(&self) -> PathBuf {
        self.folder().join("blobs")
    }

    /// `<root>/.locks/models--<org>--<name>`.
    pub fn locks_dir(&self) -> PathBuf {
        self.root.join(".locks").join(self.folder_name())
    }

    /// `uer/<commit>`: the UER conversions of one snapshot.
    pub fn uer_dir(&self, commit: &str) -> PathBuf {
        self.folder().join("uer").join(commit)
    }

    /// Every ref with the commit it holds (`main`, `refs/pr/1`, …), sorted by name.
    pub fn refs(&self) -> Vec<(String, String)> {
        let mut names = Vec::new();
        walk(&self.folder().join("refs"), "", &mut names);
        let mut refs: Vec<(String, String)> = names
            .into_iter()
            .filter_map(|name| {
                let commit = fs::read_to_string(self.ref_path(&name)).ok()?;
                let commit = commit.trim().to_string();
                (!commit.is_empty()).then_some((name, commit))
            })
            .collect();
        refs.sort();
        refs
    }

    /// The names of the entries of `blobs/` (complete blobs, `.incomplete` partials, …).
    pub fn blob_names(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir(self.blobs_dir()) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// The blob name a snapshot entry links to, when the link stays inside this repo's
    /// `blobs/` (`../../blobs/<etag>`); `None` for a plain file (copy fallback) or a link
    /// that points anywhere else (never followed).
    pub fn linked_blob(&self, commit: &str, file: &str) -> Option<String> {
        let pointer = self.pointer_path(commit, file);
        let target = fs::read_link(&pointer).ok()?;
        let mut resolved = pointer.parent()?.to_path_buf();
        for component in target.components() {
            match component {
                Component::ParentDir => {
                    resolved.pop();
                }
                Component::Normal(c) => resolved.push(c),
                _ => return None,
            }
        }
        let name = resolved.file_name()?.to_string_lossy().into_owned();
        (resolved.parent() == Some(self.blobs_dir().as_path())).then_some(name)
    }

    /// `refs/<revision>` (a revision like `refs/pr/1` nests).
    pub fn ref_path(&self, revision: &str) -> PathBuf {
        self.folder().join("refs").join(revision)
    }

    /// `snapshots/<commit>`.
    pub fn snapshot_dir(&self, commit: &str) -> PathBuf {
        self.folder().join("snapshots").join(commit)
    }

    /// `snapshots/<commit>/<file>`.
    pub fn pointer_path(&self, commit: &str, file: &str) -> PathBuf {
        self.snapshot_dir(commit).join(file)
    }

    /// `uer/<commit>/<file>`: a UER-format conversion of a snapshot, kept beside
    /// `snapshots/` so the snapshot itself stays exactly what the hub serves.
    pub fn uer_path(&self, commit: &str, file: &str) -> PathBuf {
        self.folder().join("uer").join(commit).join(file)
    }

    /// The commit a revision points at: the revision itself when it is a 40-hex commit,
    /// else the content of `refs/<revision>`.
    pub fn resolve_revision(&self, revision: &str) -> Option<String> {
        if is_commit(revision) {
            return Some(revision.to_string());
        }
        let text = fs::read_to_string(self.ref_path(revision)).ok()?;
        let commit = text.trim();
        (!commit.is_empty()).then(|| commit.to_string())
    }

    /// The cached file for `revision`, if its snapshot entry exists and points at a blob.
    pub fn get(&self, revision: &str, file: &str) -> Option<PathBuf> {
        let commit = self.resolve_revision(revision)?;
        let path = self.pointer_path(&commit, file);
        path.exists().then_some(path)
    }

    /// The commits that have a snapshot folder.
    pub fn snapshots(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir(self.folder().join("snapshots")) else {
            return Vec::new();
        };
        let mut commits: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        commits.sort();
        commits
    }

    /// Every file of a snapshot, as repo-relative paths with `/` separators.
    pub fn snapshot_files(&self, commit: &str) -> Vec<String> {
        let mut files = Vec::new();
        walk(&self.snapshot_dir(commit), "", &mut files);
        files.sort();
        files
    }

    /// The blob a snapshot entry points at (the entry's link target), or the entry itself
    /// when it is a plain file (the copy fallback of systems without symlinks).
    pub fn blob_of(&self, commit: &str, file: &str) -> PathBuf {
        let pointer = self.pointer_path(commit, file);
        match fs::read_link(&pointer) {
            Ok(target) => pointer.parent().map(|p| p.join(&target)).unwrap_or(target),
            Err(_) => pointer,
        }
    }

    /// Writes `refs/<revision>` = `commit` atomically (nothing for a commit revision).
    pub fn write_ref(&self, revision: &str, commit: &str) -> Result<(), HubError> {
        if revision == commit {
            return Ok(());
        }
        let path = self.ref_path(revision);
        if fs::read_to_string(&path).is_ok_and(|t| t.trim() == commit) {
            return Ok(());
        }
        write_atomic(&path, commit.as_bytes())
    }

    /// Makes `snapshots/<commit>/<file>` a relative symlink to `blobs/<etag>` (replacing
    /// whatever was there). Falls back to a copy where symlinks are not available.
    pub fn link(&self, commit: &str, file: &str, etag: &str) -> Result<PathBuf, HubError> {
        check_repo_path(file)?;
        let pointer = self.pointer_path(commit, file);
        let dir = pointer.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(|e| HubError::io(dir, e))?;
        // snapshots/<commit>/<a/b/file> → ../../(../..)blobs/<etag>
        let depth = file.split('/').count() + 1;
        let mut target = PathBuf::new();
        for _ in 0..depth {
            target.push("..");
        }
        target.push("blobs");
        target.push(etag);
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            pointer.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id()
        ));
        let _ = fs::remove_file(&tmp);
        if symlink(&target, &tmp).is_err() {
            fs::copy(self.blob_path(etag), &tmp).map_err(|e| HubError::io(&tmp, e))?;
        }
        fs::rename(&tmp, &pointer).map_err(|e| HubError::io(&pointer, e))?;
        Ok(pointer)
    }

    /// Creates the folders a download writes into (and the root's `CACHEDIR.TAG`).
    pub fn create_dirs(&self) -> Result<(), HubError> {
        let tag = self.root.join("CACHEDIR.TAG");
        if !tag.exists() {
            fs::create_dir_all(&self.root).map_err(|e| HubError::io(&self.root, e))?;
            write_atomic(&tag, CACHEDIR_TAG.as_bytes())?;
        }
        for dir in [
            self.folder().join("blobs"),
            self.lock_path("x")
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
        ] {
            fs::create_dir_all(&dir).map_err(|e| HubError::io(&dir, e))?;
        }
        Ok(())
    }
}

/// A cache directory tag (bford.info/cachedir): the signature line is fixed by the spec.
const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# Cache directory tag written by uerzoo (Huggingface hub cache).\n\
# See https://bford.info/cachedir/\n";

/// Whether `s` is a full 40-hex commit id.
pub fn is_commit(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Rejects repo paths that would escape the snapshot folder.
pub fn check_repo_path(file: &str) -> Result<(), HubError> {
    let path = Path::new(file);
    let ok = !file.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(())
    } else {
        Err(HubError::BadPath {
            path: file.to_string(),
        })
    }
}

/// Writes `bytes` to `path` through a temp file in the same folder and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), HubError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| HubError::io(dir, e))?;
    let mut tmp = crate::output::Partial::new_in(dir).map_err(|e| HubError::io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| HubError::io(path, e))?;
    tmp.persist(path, true)
        .map_err(|e| HubError::io(path, e.into()))?;
    Ok(())
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(".tmp") {
            continue;
        }
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir {
            walk(&entry.path(), &rel, out);
        } else {
            out.push(rel);
        }
    }
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(windows)]
fn symlink(target: &Path, link: &Path) -> io::Result<()> {
    std::os::windows::fs::symlink_file(target, link)
}
