//! Work on the cache without the network: `import` (put a manually downloaded file under a
//! registry name) and `verify` (re-hash cached files against their content-addressed names).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::HubError;
use super::cache::{Cache, check_repo_path};
use super::hash::Hash;
use crate::progress::Progress;

/// The cache repo that holds imported files of a registry entry: `uerzoo/<name>`, i.e. the
/// folder `models--uerzoo--<name>`. Its `refs/main` points at one fixed local commit.
pub fn local_repo_id(name: &str) -> String {
    format!("uerzoo/{name}")
}

/// The commit id imports into `repo_id` use: a stable 40-hex id derived from the repo id
/// (no hub commit exists for a manually downloaded file).
fn import_commit(repo_id: &str) -> String {
    hex::encode(Sha1::digest(format!("uerzoo import {repo_id}").as_bytes()))
}

/// A file put into the cache by [`import_file`].
#[derive(Clone, Debug)]
pub struct Imported {
    pub repo_id: String,
    pub commit: String,
    /// sha256 of the content; also the blob's name.
    pub sha256: String,
    pub size: u64,
    /// `snapshots/<commit>/<file>`.
    pub pointer: PathBuf,
    pub blob: PathBuf,
}

/// Copies `source` into the cache as `repo_id`'s `file_name` (blob named by its sha256,
/// snapshot link, `refs/main`). With `expected_sha256`, a different file is refused.
pub fn import_file(
    cache: &Cache,
    repo_id: &str,
    file_name: &str,
    source: &Path,
    expected_sha256: Option<&str>,
) -> Result<Imported, HubError> {
    check_repo_path(file_name)?;
    let repo = cache.repo(repo_id);
    repo.create_dirs()?;
    let blobs = repo.folder().join("blobs");
    let mut input = File::open(source).map_err(|e| HubError::io(source, e))?;
    let mut tmp = crate::output::Partial::new_in(&blobs).map_err(|e| HubError::io(&blobs, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = input.read(&mut buf).map_err(|e| HubError::io(source, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        tmp.write_all(&buf[..n])
            .map_err(|e| HubError::io(tmp.path(), e))?;
        size += n as u64;
    }
    let sha256 = hex::encode(hasher.finalize());
    if let Some(want) = expected_sha256.map(str::to_ascii_lowercase)
        && want != sha256
    {
        return Err(HubError::HashMismatch {
            repo: repo_id.to_string(),
            file: source.display().to_string(),
            kind: "sha256",
            expected: want,
            actual: sha256,
        });
    }
    // Written even when a blob of that name exists: it may be the corrupt copy that this
    // import repairs.
    let blob = repo.blob_path(&sha256);
    tmp.persist(&blob, true)
        .map_err(|e| HubError::io(&blob, e.into()))?;
    let commit = import_commit(repo_id);
    let pointer = repo.link(&commit, file_name, &sha256)?;
    repo.write_ref("main", &commit)?;
    Ok(Imported {
        repo_id: repo_id.to_string(),
        commit,
        sha256,
        size,
        pointer,
        blob,
    })
}

/// The state of one cached file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckStatus {
    /// The content hashes to the blob's name.
    Ok,
    /// The content does not hash to the blob's name.
    Corrupt { expected: String, actual: String },
    /// No snapshot entry, or the entry points at a missing blob.
    Missing,
    /// The blob's name is not a sha256/sha1, so there is nothing to check against.
    Unverifiable,
}

/// One line of a verify report.
#[derive(Clone, Debug)]
pub struct FileCheck {
    pub repo_id: String,
    /// The snapshot commit (empty when the repo has no snapshot at all).
    pub commit: String,
    pub file: String,
    pub blob: PathBuf,
    pub status: CheckStatus,
}

/// Re-hashes every file of every snapshot of `repo_id`; each of `expected_files` missing
/// from the snapshot `refs/main` points at (or from all snapshots) is reported `Missing`.
pub fn verify_repo(
    cache: &Cache,
    repo_id: &str,
    expected_files: &[String],
    progress: &dyn Progress,
) -> Vec<FileCheck> {
    let repo = cache.repo(repo_id);
    let mut checks = Vec::new();
    let commits = repo.snapshots();
    for commit in &commits {
        for file in repo.snapshot_files(commit) {
            let blob = repo.blob_of(commit, &file);
            let size = fs::metadata(&blob).map(|m| m.len());
            let status = match size {
                Err(_) => CheckStatus::Missing,
                Ok(size) => {
                    progress.start(&file, size);
                    let name = blob
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let status = match Hash::from_etag(&name) {
                        None => CheckStatus::Unverifiable,
                        Some(hash) => match hash.compute(&blob) {
                            Ok(actual) if actual == hash.hex() => CheckStatus::Ok,
                            Ok(actual) => CheckStatus::Corrupt {
                                expected: hash.hex().to_string(),
                                actual,
                            },
                            Err(_) => CheckStatus::Missing,
                        },
                    };
                    progress.advance(size);
                    progress.finish();
                    status
                }
            };
            checks.push(FileCheck {
                repo_id: repo_id.to_string(),
                commit: commit.clone(),
                file,
                blob,
                status,
            });
        }
    }
    let main = repo.resolve_revision("main");
    for file in expected_files {
        let present = checks
            .iter()
            .any(|c| &c.file == file && main.as_ref().is_none_or(|m| &c.commit == m));
        if !present {
            checks.push(FileCheck {
                repo_id: repo_id.to_string(),
                commit: main.clone().unwrap_or_default(),
                file: file.clone(),
                blob: PathBuf::new(),
                status: CheckStatus::Missing,
            });
        }
    }
    checks
}

/// One file present in the cache (no hashing: cheap enough for `info`).
#[derive(Clone, Debug)]
pub struct CachedFile {
    pub commit: String,
    pub file: String,
    /// The blob the snapshot entry points at.
    pub blob: PathBuf,
    /// `None` when the blob is missing.
    pub size: Option<u64>,
    /// The hash the blob's name records (sha256 for LFS files and imports).
    pub hash: Option<Hash>,
}

/// Every file of every snapshot of `repo_id`, e.g. to show what `import` put under a name
/// (`cached_files(&cache, &local_repo_id(name))`).
pub fn cached_files(cache: &Cache, repo_id: &str) -> Vec<CachedFile> {
    let repo = cache.repo(repo_id);
    let mut out = Vec::new();
    for commit in repo.snapshots() {
        for file in repo.snapshot_files(&commit) {
            let blob = repo.blob_of(&commit, &file);
            let name = blob
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push(CachedFile {
                size: fs::metadata(&blob).map(|m| m.len()).ok(),
                hash: Hash::from_etag(&name),
                commit: commit.clone(),
                file,
                blob,
            });
        }
    }
    out
}
