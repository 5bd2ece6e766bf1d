//! `uerzoo cache`: Show and clean the Huggingface cache (`ls`, `rm`, `prune`).

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use uerzoo::hub::{Cache, DeletePlan, LS_HEADER, human_size, plan_prune, plan_remove};
use uerzoo::jobs::zoo::{cache_at, repos_named};

use super::write_stdout;

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

fn ls(args: LsArgs) -> anyhow::Result<ExitCode> {
    let cache = cache_at(args.cache_dir);
    let repos = uerzoo::hub::scan(&cache);
    if args.json {
        let json = serde_json::to_string_pretty(&uerzoo::hub::ls_json(&repos))
            .context("serialising the cache listing")?;
        return write_stdout(&format!("{json}\n"));
    }
    if repos.is_empty() {
        return write_stdout(&format!(
            "nothing cached in {}; `uerzoo download NAME` fills it, --cache-dir picks another\n",
            cache.root().display()
        ));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let rows: Vec<[String; 6]> = repos.iter().map(|r| r.row(now)).collect();
    let mut out = super::table(&LS_HEADER.map(String::from), &rows, &[3, 4]);
    out.push_str(&uerzoo::hub::ls_total(&cache, &repos));
    write_stdout(&out)
}

fn rm(args: RmArgs) -> anyhow::Result<ExitCode> {
    let cache = cache_at(args.cache_dir);
    let mut plan = DeletePlan::default();
    for repo_id in &repos_named(&cache, &args.name)? {
        let part = plan_remove(&cache, repo_id, args.revision.as_deref())?;
        plan.items.extend(part.items);
    }
    confirm_and_run(&cache, &plan, args.yes, args.dry_run)
}

fn prune(args: PruneArgs) -> anyhow::Result<ExitCode> {
    let cache = cache_at(args.cache_dir);
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
        println!("{}", item.line());
    }
    let (freed, n) = (plan.freed(), plan.items.len());
    if dry_run {
        let size = human_size(freed);
        println!("dry run: would free {size} ({freed} B); nothing deleted");
        return Ok(ExitCode::SUCCESS);
    }
    if !yes {
        if !std::io::stdin().is_terminal() {
            anyhow::bail!(
                "not deleting: stdin is not a terminal, so there is no one to ask; pass --yes to delete the {n} path(s) above, or --dry-run to only list them"
            );
        }
        print!("delete {n} path(s), freeing {}? [y/N] ", human_size(freed));
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
    println!("freed {} ({freed} B)", human_size(freed));
    Ok(ExitCode::SUCCESS)
}
