//! `uerzoo cache`: Show and clean the Huggingface cache (`ls`, `rm`, `prune`).

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use uerzoo::hub::{Cache, DeletePlan, Kind, RepoInfo, local_repo_id, plan_prune, plan_remove};
use uerzoo::registry::Registry;

use super::list::write_stdout;

/// Show and clean the Huggingface cache, as `hf cache` does.
///
/// Works on the cache transformers uses (HF_HUB_CACHE, else HF_HOME/hub, else
/// ~/.cache/huggingface/hub): downloaded repos (`models--uer--…`) and imported legacy
/// weights (`models--uerzoo--…`). What stays after `rm` or `prune` is the same layout, so
/// transformers still reads it.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    uerzoo cache ls\n  \
    uerzoo cache ls --json\n  \
    uerzoo cache rm chinese_roberta_L-2_H-128 --dry-run\n  \
    uerzoo cache rm uer/gpt2-chinese-poem --revision 0123abc --yes\n  \
    uerzoo cache prune --yes")]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    Ls(LsArgs),
    Rm(RmArgs),
    Prune(PruneArgs),
}

/// List every cached repo: registry name, repo id, revisions (refs), files, size on disk,
/// last used; then the total.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    uerzoo cache ls\n  \
    uerzoo cache ls --json | jq '.[].size_on_disk'\n  \
    uerzoo cache ls --cache-dir /data/hf/hub")]
struct LsArgs {
    /// Print JSON: one object per repo, with its revisions and files.
    #[arg(long)]
    json: bool,
    /// Cache root (overrides HF_HUB_CACHE / HF_HOME).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

/// Remove a cached repo, or one revision of it.
///
/// NAME is a registry name or alias (its Huggingface repo and its imported files) or a repo
/// id `org/name`. With --revision (a ref like `main`, a commit, or its first 7+ characters)
/// only that snapshot goes, with the refs pointing at it and the blobs no other snapshot
/// links to. Asks before deleting unless --yes; refuses without --yes when stdin is not a
/// terminal.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    uerzoo cache rm tiny --dry-run\n  \
    uerzoo cache rm uer/chinese_roberta_L-2_H-128 --yes\n  \
    uerzoo cache rm gpt2-chinese-poem --revision refs/pr/6")]
struct RmArgs {
    /// Registry name or alias, or a repo id `org/name`.
    name: String,
    /// Only this revision: a ref name, a commit, or a commit prefix of 7+ characters.
    #[arg(long)]
    revision: Option<String>,
    /// Delete without asking.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Show what would be deleted; delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// Cache root (overrides HF_HUB_CACHE / HF_HOME).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

/// Remove detached revisions (snapshots no ref points at, e.g. downloads by commit),
/// blobs no snapshot links to, and partial downloads (`*.incomplete`) that no running
/// download holds. Snapshots a ref points at stay.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    uerzoo cache prune --dry-run\n  \
    uerzoo cache prune --yes")]
struct PruneArgs {
    /// Delete without asking.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Show what would be deleted; delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// Cache root (overrides HF_HUB_CACHE / HF_HOME).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Sub::Ls(a) => ls(a),
        Sub::Rm(a) => rm(a),
        Sub::Prune(a) => prune(a),
    }
}

fn cache_of(dir: Option<PathBuf>) -> Cache {
    dir.map(Cache::new).unwrap_or_else(Cache::from_env)
}

fn ls(args: LsArgs) -> anyhow::Result<ExitCode> {
    let cache = cache_of(args.cache_dir);
    let repos = uerzoo::hub::scan(&cache);
    if args.json {
        let rows: Vec<serde_json::Value> = repos
            .iter()
            .map(|r| {
                let mut v = serde_json::to_value(r).unwrap_or_default();
                v["name"] = registry_name(&r.repo_id).into();
                v
            })
            .collect();
        let json = serde_json::to_string_pretty(&rows).context("serialising the cache listing")?;
        return write_stdout(&format!("{json}\n"));
    }
    if repos.is_empty() {
        return write_stdout(&format!(
            "nothing cached in {}; `uerzoo download NAME` fills it, --cache-dir picks another\n",
            cache.root().display()
        ));
    }
    write_stdout(&table(&cache, &repos))
}

/// The registry name of a cached repo id, when the registry knows it.
fn registry_name(repo_id: &str) -> Option<String> {
    let registry = Registry::builtin();
    if let Some(name) = repo_id.strip_prefix("uerzoo/") {
        return registry.get(name).ok().map(|e| e.name.clone());
    }
    registry
        .entries()
        .iter()
        .find(|e| e.sources.hf.as_ref().is_some_and(|h| h.repo == repo_id))
        .map(|e| e.name.clone())
}

fn table(cache: &Cache, repos: &[RepoInfo]) -> String {
    let header = ["NAME", "REPO", "REVISIONS", "FILES", "SIZE", "LAST USED"].map(String::from);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let rows: Vec<[String; 6]> = repos
        .iter()
        .map(|r| {
            let revisions: Vec<String> = r
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
            let files: usize = r.revisions.iter().map(|v| v.files.len()).sum();
            let mut files = files.to_string();
            if !r.incomplete.is_empty() {
                files.push_str(&format!(" +{} partial", r.incomplete.len()));
            }
            [
                registry_name(&r.repo_id).unwrap_or_else(|| "-".into()),
                r.repo_id.clone(),
                if revisions.is_empty() {
                    "-".into()
                } else {
                    revisions.join(" ")
                },
                files,
                human(r.size_on_disk),
                r.last_accessed.map_or("-".into(), |t| ago(now, t)),
            ]
        })
        .collect();
    let mut out = super::table(&header, &rows, &[3, 4]);
    let total: u64 = repos.iter().map(|r| r.size_on_disk).sum();
    out.push_str(&format!(
        "{} repo(s), {} ({} B) in {}\n",
        repos.len(),
        human(total),
        total,
        cache.root().display()
    ));
    out
}

/// Bytes in decimal units, as the Hub and `hf cache ls` show them.
fn human(bytes: u64) -> String {
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

fn rm(args: RmArgs) -> anyhow::Result<ExitCode> {
    let cache = cache_of(args.cache_dir);
    let repos = repos_named(&cache, &args.name)?;
    let mut plan = DeletePlan::default();
    for repo_id in &repos {
        let part = plan_remove(&cache, repo_id, args.revision.as_deref())?;
        plan.items.extend(part.items);
    }
    confirm_and_run(&cache, &plan, args.yes, args.dry_run)
}

/// The cached repos NAME stands for: a registry entry's Huggingface repo and its imported
/// files, whichever are cached; a repo id as given.
fn repos_named(cache: &Cache, name: &str) -> anyhow::Result<Vec<String>> {
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
        anyhow::bail!(
            "`{name}` is not in the cache {} (looked for {}); `uerzoo cache ls` lists what is cached, --cache-dir picks another cache",
            cache.root().display(),
            candidates
                .iter()
                .map(|id| cache.repo(id).folder_name())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(cached)
}

fn prune(args: PruneArgs) -> anyhow::Result<ExitCode> {
    let cache = cache_of(args.cache_dir);
    let plan = plan_prune(&cache);
    confirm_and_run(&cache, &plan, args.yes, args.dry_run)
}

/// Prints the plan, then deletes it if `--yes` or the user agrees on a terminal.
fn confirm_and_run(
    cache: &Cache,
    plan: &DeletePlan,
    yes: bool,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    if plan.is_empty() {
        println!("nothing to delete");
        return Ok(ExitCode::SUCCESS);
    }
    for item in &plan.items {
        let kind = match item.kind {
            Kind::Repo => "repo",
            Kind::Snapshot => "snapshot",
            Kind::Ref => "ref",
            Kind::Blob => "blob",
            Kind::Incomplete => "partial",
            Kind::Conversion => "uer",
        };
        println!(
            "{kind:<9} {:>10}  {}",
            human(item.size),
            item.path.display()
        );
    }
    let freed = plan.freed();
    if dry_run {
        println!(
            "dry run: would free {} ({freed} B); nothing deleted",
            human(freed)
        );
        return Ok(ExitCode::SUCCESS);
    }
    if !yes {
        if !std::io::stdin().is_terminal() {
            anyhow::bail!(
                "not deleting: stdin is not a terminal, so there is no one to ask; pass --yes to delete the {} path(s) above, or --dry-run to only list them",
                plan.items.len()
            );
        }
        print!(
            "delete {} path(s), freeing {}? [y/N] ",
            plan.items.len(),
            human(freed)
        );
        std::io::stdout().flush().context("writing to stdout")?;
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .context("reading the answer from stdin")?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            println!("nothing deleted");
            return Ok(ExitCode::SUCCESS);
        }
    }
    let freed = plan
        .execute(cache)
        .with_context(|| format!("deleting in {}", cache.root().display()))?;
    println!("freed {} ({freed} B)", human(freed));
    Ok(ExitCode::SUCCESS)
}
