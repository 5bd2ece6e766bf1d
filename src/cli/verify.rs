//! `uerzoo verify`: Re-hash cached files.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use uerzoo::hub::{Cache, CheckStatus, FileCheck, FileSpec, Request, local_repo_id, verify_repo};
use uerzoo::registry::Registry;

/// Re-hash cached files and report each as OK, CORRUPT or MISSING.
///
/// Every blob is named by its hash (sha256 for LFS files and imports, git sha1 for small
/// files), so each cached file is checked against its own name. Exits 1 when anything is
/// corrupt or missing. Without NAME, checks every repo in the cache.
///
/// With --repair, what is CORRUPT or MISSING is fetched again at the snapshot's commit (from
/// --endpoint / HF_ENDPOINT, as `download` does) and checked again; an imported (Weiyun)
/// file cannot be fetched, so the command names the file to import again.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    uerzoo verify\n  \
    uerzoo verify chinese_roberta_L-2_H-128\n  \
    uerzoo verify chinese_roberta_L-2_H-128 --repair\n  \
    HF_ENDPOINT=https://hf-mirror.com uerzoo verify --repair\n  \
    uerzoo verify uer/chinese_roberta_L-2_H-128 --cache-dir ~/.cache/huggingface/hub")]
pub struct Args {
    /// Registry name, or a Huggingface repo id `org/name` (default: all cached repos).
    name: Option<String>,
    /// Cache root (overrides HF_HUB_CACHE / HF_HOME).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Fetch CORRUPT and MISSING files again (imported files: say which to import again).
    #[arg(long)]
    repair: bool,
    /// Hub or mirror URL for --repair (overrides HF_ENDPOINT).
    #[arg(long, requires = "repair")]
    endpoint: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cache = args
        .cache_dir
        .clone()
        .map(Cache::new)
        .unwrap_or_else(Cache::from_env);
    if !cache.root().is_dir() {
        anyhow::bail!(
            "the cache {} does not exist (or is not a folder): nothing to verify; pass the --cache-dir that `uerzoo download` used, or download first",
            cache.root().display()
        );
    }
    let repos = match &args.name {
        Some(name) => repos_of(&cache, name)?,
        None => cache.repos().into_iter().map(|r| (r, Vec::new())).collect(),
    };
    let bars = super::download::Bars::new();
    let (mut bad, mut total) = (0, 0);
    for (repo_id, expected) in &repos {
        let mut checks = verify_repo(&cache, repo_id, expected, &bars);
        if args.repair && checks.iter().any(is_bad) {
            checks = repair(&args, &cache, repo_id, expected, checks)?;
        }
        if checks.is_empty() && args.name.is_some() {
            println!(
                "MISSING  {repo_id}: nothing cached under {}",
                cache.root().display()
            );
            bad += 1;
        }
        for check in checks {
            total += 1;
            let (word, detail) = match &check.status {
                CheckStatus::Ok => ("OK", String::new()),
                CheckStatus::Unverifiable => ("OK?", " (blob name is not a hash)".into()),
                CheckStatus::Missing => ("MISSING", String::new()),
                CheckStatus::Corrupt { expected, actual } => {
                    ("CORRUPT", format!(" (expected {expected}, got {actual})"))
                }
            };
            if is_bad(&check) {
                bad += 1;
            }
            println!("{word:<8} {}  {}{detail}", check.repo_id, check.file);
        }
    }
    println!("{total} file(s) checked, {bad} problem(s)");
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The cache repos of NAME with the files each must hold: the Huggingface repo (its registry
/// file list) and the imported files, whichever exist; a bare `org/name` as given.
fn repos_of(cache: &Cache, name: &str) -> anyhow::Result<Vec<(String, Vec<String>)>> {
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
    args: &Args,
    cache: &Cache,
    repo_id: &str,
    expected: &[String],
    checks: Vec<FileCheck>,
) -> anyhow::Result<Vec<FileCheck>> {
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
            eprintln!(
                "repair: `{}` was imported, not downloaded; download it again{page} and run `uerzoo import {name} <file>`",
                check.file
            );
        }
        return Ok(checks);
    }
    let hub = super::download::hub(args.cache_dir.clone(), args.endpoint.clone(), false, 1);
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
            .and_then(|e| Request::from_entry(e, Some(&revision)))
            .unwrap_or_else(|| Request::new(repo_id, &revision, Vec::<String>::new()));
        request.repo_id = repo_id.to_string();
        request.files.retain(|f| files.contains(&f.path));
        for file in &files {
            if !request.files.iter().any(|f| &f.path == file) {
                request.files.push(FileSpec {
                    path: file.clone(),
                    sha256: None,
                });
            }
        }
        let snapshot = hub
            .download(&request, &super::download::Bars::new())
            .with_context(|| {
                format!(
                    "repairing {repo_id}@{revision} ({}); the bad files stay as they were reported",
                    files.join(", ")
                )
            })?;
        for file in snapshot.files.iter().filter(|f| !f.cached) {
            eprintln!(
                "repaired {repo_id}  {} ({} B fetched)",
                file.path, file.fetched
            );
        }
    }
    Ok(verify_repo(
        cache,
        repo_id,
        expected,
        &super::download::Bars::new(),
    ))
}
