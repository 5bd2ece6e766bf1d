//! `uerzoo download`: Download a zoo weight into the Huggingface cache.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use uerzoo::convert;
use uerzoo::hub::{Cache, FileSpec, Hub, HubOptions, Request, Snapshot, local_repo_id};
use uerzoo::progress::Progress;
use uerzoo::registry::{Entry, Registry};

/// Files fetched for an `org/name` repo id outside the registry when no `--file` is given.
const DEFAULT_FILES: [&str; 3] = ["config.json", "vocab.txt", "pytorch_model.bin"];

/// Download a zoo weight into the Huggingface cache.
///
/// Files land in the cache transformers uses (`models--uer--<repo>/blobs`, `refs`,
/// `snapshots`), so `from_pretrained` with `HF_HUB_CACHE` set finds them offline and files
/// transformers already downloaded are reused. Partial downloads resume; every file is
/// checked (sha256 for LFS files, git sha1 for small ones) before it appears in the snapshot.
/// Honours HF_ENDPOINT, HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE and HF_TOKEN. The last line of
/// stdout is the snapshot directory.
///
/// Examples:
///   uerzoo download chinese_roberta_L-2_H-128
///   HF_ENDPOINT=https://hf-mirror.com uerzoo download gpt2-chinese-poem --jobs 8
///   uerzoo download uer/chinese_roberta_L-2_H-128 --file config.json --file vocab.txt
#[derive(clap::Args)]
pub struct Args {
    /// Registry name or alias, or a Huggingface repo id `org/name`.
    name: String,
    /// `hf` keeps the Huggingface snapshot; `uer` also converts it to a UER `.bin` beside it.
    #[arg(long, value_enum, default_value = "hf")]
    format: Format,
    /// Branch, tag or commit (default: the registry's pin, else `main`).
    #[arg(long)]
    revision: Option<String>,
    /// Hub or mirror URL (overrides HF_ENDPOINT), e.g. https://hf-mirror.com
    #[arg(long)]
    endpoint: Option<String>,
    /// Cache root (overrides HF_HUB_CACHE / HF_HOME).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// No network: succeed from the cache or name the missing file (also HF_HUB_OFFLINE=1).
    #[arg(long)]
    offline: bool,
    /// Parallel ranged connections per large file.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Repo files to fetch (repeatable; default: the registry's list).
    #[arg(long = "file")]
    files: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Hf,
    Uer,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let entry = lookup(&args.name)?;
    let hub = hub(
        args.cache_dir.clone(),
        args.endpoint.clone(),
        args.offline,
        args.jobs,
    );
    let Some(request) = request(&args, entry)? else {
        // A legacy weight: only a manual download exists.
        return legacy(
            &hub,
            entry.context("legacy entries come from the registry")?,
        );
    };
    let bars = Bars::new();
    let snapshot = hub.download(&request, &bars).with_context(|| {
        format!(
            "downloading `{}` ({}@{})",
            args.name, request.repo_id, request.revision
        )
    })?;
    for file in &snapshot.files {
        let how = if file.cached { "cached " } else { "fetched" };
        println!("{how} {:>12} B  {}", file.size, file.path);
    }
    if args.format == Format::Uer {
        let output = to_uer(&hub, &snapshot, entry)?;
        println!("uer     {}", output.display());
    }
    println!("{}", snapshot.dir.display());
    Ok(ExitCode::SUCCESS)
}

/// The registry entry for NAME; `None` for a plain `org/name` repo id the registry lacks.
fn lookup(name: &str) -> anyhow::Result<Option<&'static Entry>> {
    match Registry::builtin().get(name) {
        Ok(entry) => Ok(Some(entry)),
        Err(_) if name.contains('/') => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// Repo, revision and files (with the registry's sha256 on the weights file); `None` for a
/// legacy entry without a Huggingface source.
fn request(args: &Args, entry: Option<&Entry>) -> anyhow::Result<Option<Request>> {
    let (repo_id, revision, mut files, weights, sha256) = match entry {
        None => (
            args.name.clone(),
            "main".to_string(),
            DEFAULT_FILES.iter().map(|s| s.to_string()).collect(),
            String::new(),
            None,
        ),
        Some(entry) => match &entry.sources.hf {
            None => return Ok(None),
            Some(hf) => (
                hf.repo.clone(),
                hf.revision.clone(),
                hf.files.clone(),
                hf.weights.clone(),
                hf.sha256.clone(),
            ),
        },
    };
    if !args.files.is_empty() {
        files = args.files.clone();
    }
    // The registry's hash belongs to its revision; another revision is checked by the hub's.
    let pinned = args.revision.as_ref().is_none_or(|r| *r == revision);
    let files = files
        .into_iter()
        .map(|path| FileSpec {
            sha256: sha256.clone().filter(|_| pinned && path == weights),
            path,
        })
        .collect();
    Ok(Some(Request {
        repo_id,
        revision: args.revision.clone().unwrap_or(revision),
        files,
    }))
}

/// A legacy weight: succeed if it was imported, else explain the manual route.
fn legacy(hub: &Hub, entry: &Entry) -> anyhow::Result<ExitCode> {
    let repo_id = local_repo_id(&entry.name);
    if let Some(path) = hub.cache.repo(&repo_id).get("main", &entry.uer_file) {
        println!("imported {}", entry.uer_file);
        println!("{}", path.parent().unwrap_or(&path).display());
        return Ok(ExitCode::SUCCESS);
    }
    let page = entry.sources.weiyun.as_ref().map(|w| w.url.as_str());
    anyhow::bail!(
        "`{}` is a legacy UER-format weight with no Huggingface copy; it is published only on a \
         Weiyun share page ({}), which needs a browser. Download `{}` there, then run \
         `uerzoo import {} <downloaded file>`; `uerzoo download {}` then finds it",
        entry.name,
        page.unwrap_or("see `uerzoo info`"),
        entry.uer_file,
        entry.name,
        entry.name
    )
}

/// Converts the snapshot into `models--org--name/uer/<commit>/<uer file>`.
fn to_uer(hub: &Hub, snapshot: &Snapshot, entry: Option<&Entry>) -> anyhow::Result<PathBuf> {
    let file = entry.map_or("uer_model.bin", |e| e.uer_file.as_str());
    let output = hub
        .cache
        .repo(&snapshot.repo_id)
        .uer_path(&snapshot.commit, file);
    let request = convert::Request {
        input: snapshot.dir.clone(),
        output: output.clone(),
        to: convert::To::Uer,
        arch: entry.and_then(|e| {
            (e.family.as_str().parse().ok()).or_else(|| e.arch.as_str().parse().ok())
        }),
        uer_config: entry.and_then(|e| e.uer_config().ok()),
        vocab: None,
        naming: convert::Naming::V2,
        exact_layernorm: false,
        format: None,
        dry_run: false,
        force: true,
        allow_unmapped: false,
    };
    if let Some(dir) = output.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    convert::run(&request)
        .with_context(|| format!("converting {} to UER format", snapshot.dir.display()))?;
    Ok(output)
}

/// A hub from the environment with the command-line overrides.
pub(super) fn hub(
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
    let cache = cache_dir.map(Cache::new).unwrap_or_else(Cache::from_env);
    Hub::new(cache, options)
}

/// One indicatif bar per task (bytes, speed, ETA); nothing when stdout is not a terminal.
pub(super) struct Bars {
    bar: Mutex<Option<ProgressBar>>,
    enabled: bool,
}

impl Bars {
    pub(super) fn new() -> Self {
        Bars {
            bar: Mutex::new(None),
            enabled: std::io::stdout().is_terminal(),
        }
    }
}

impl Progress for Bars {
    fn start(&self, message: &str, total: u64) {
        if !self.enabled {
            return;
        }
        let bar = ProgressBar::new(total);
        let style = ProgressStyle::with_template(
            "{msg:24!} {bar:30} {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_message(message.to_string());
        if let Ok(mut slot) = self.bar.lock()
            && let Some(old) = slot.replace(bar)
        {
            old.finish_and_clear();
        }
    }

    fn advance(&self, delta: u64) {
        if let Ok(slot) = self.bar.lock()
            && let Some(bar) = slot.as_ref()
        {
            bar.inc(delta);
        }
    }

    fn finish(&self) {
        if let Ok(mut slot) = self.bar.lock()
            && let Some(bar) = slot.take()
        {
            bar.finish();
        }
    }
}
