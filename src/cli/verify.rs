//! `uerzoo verify`: Re-hash cached files.

use std::path::PathBuf;
use std::process::ExitCode;

use uerzoo::hub::{Cache, CheckStatus, local_repo_id, verify_repo};
use uerzoo::registry::Registry;

/// Re-hash cached files and report each as OK, CORRUPT or MISSING.
///
/// Every blob is named by its hash (sha256 for LFS files and imports, git sha1 for small
/// files), so each cached file is checked against its own name. Exits 1 when anything is
/// corrupt or missing. Without NAME, checks every repo in the cache.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    uerzoo verify\n  \
    uerzoo verify chinese_roberta_L-2_H-128\n  \
    uerzoo verify uer/chinese_roberta_L-2_H-128 --cache-dir ~/.cache/huggingface/hub")]
pub struct Args {
    /// Registry name, or a Huggingface repo id `org/name` (default: all cached repos).
    name: Option<String>,
    /// Cache root (overrides HF_HUB_CACHE / HF_HOME).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cache = args
        .cache_dir
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
        let checks = verify_repo(&cache, repo_id, expected, &bars);
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
            if matches!(
                check.status,
                CheckStatus::Missing | CheckStatus::Corrupt { .. }
            ) {
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
