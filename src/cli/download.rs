//! `uerzoo download`: Download a zoo weight into the Huggingface cache.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use uerzoo::convert;
use uerzoo::hub::{Cache, FileSpec, Hub, HubOptions, Request, Snapshot};
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
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    uerzoo download chinese_roberta_L-2_H-128\n  \
    HF_ENDPOINT=https://hf-mirror.com uerzoo download gpt2-chinese-poem --jobs 8\n  \
    uerzoo download tiny --format uer\n  \
    uerzoo download uer/chinese_roberta_L-2_H-128 --file config.json --file vocab.txt")]
pub struct Args {
    /// Registry name or alias, or a Huggingface repo id `org/name`.
    name: String,
    /// `hf` keeps the Huggingface snapshot; `uer` also converts it to a UER `.bin` beside it,
    /// with its `uer_config.json` and vocabulary, so every command opens the `.bin` alone.
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
    let bars = Bars::new();
    let snapshot = match request(&args, entry) {
        Some(request) => hub.download(&request, &bars).with_context(|| {
            format!(
                "downloading `{}` ({}@{})",
                args.name, request.repo_id, request.revision
            )
        })?,
        // A legacy entry: its imported file, or the manual route.
        None => hub.download_entry(entry.context("only registry entries are legacy")?, &bars)?,
    };
    for file in &snapshot.files {
        let how = if file.cached { "cached " } else { "fetched" };
        println!("{how} {:>12} B  {}", file.size, file.path);
    }
    if args.format == Format::Uer {
        // A legacy snapshot already is the UER file.
        let output = match entry.filter(|e| e.sources.hf.is_none()) {
            Some(_) => snapshot
                .files
                .first()
                .map_or(snapshot.dir.clone(), |f| f.pointer.clone()),
            None => to_uer(&hub, &snapshot, entry)?,
        };
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

/// The registry's request (or a plain repo's) with `--revision` and `--file` applied;
/// `None` for a legacy entry.
fn request(args: &Args, entry: Option<&Entry>) -> Option<Request> {
    let mut request = match entry {
        Some(entry) => Request::from_entry(entry, args.revision.as_deref())?,
        None => Request::new(
            &args.name,
            args.revision.as_deref().unwrap_or("main"),
            DEFAULT_FILES,
        ),
    };
    if !args.files.is_empty() {
        request.files.retain(|f| args.files.contains(&f.path));
        for path in &args.files {
            if !request.files.iter().any(|f| &f.path == path) {
                request.files.push(FileSpec {
                    path: path.clone(),
                    sha256: None,
                });
            }
        }
    }
    Some(request)
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
        dtype: None,
        copy_ranges: true,
    };
    if let Some(dir) = output.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    convert::run(&request)
        .with_context(|| format!("converting {} to UER format", snapshot.dir.display()))?;
    companions(&output, request.uer_config.as_ref(), &snapshot.dir)?;
    Ok(output)
}

/// Writes the entry's UER config and the snapshot's vocabulary beside the converted `.bin`
/// (as `convert --to uer` does), so that every command opens it by its path alone.
fn companions(
    output: &std::path::Path,
    uer_config: Option<&uerzoo::registry::UerConfig>,
    snapshot: &std::path::Path,
) -> anyhow::Result<()> {
    // A registry config has no file: written straight to its place (the one output rule).
    let config = match uer_config {
        Some(c) => Some(super::Companion::Made(c.to_json_string())),
        None => {
            eprintln!(
                "note: no UER config written beside {}: the repo is not a registry weight; pass --config UER_CONFIG.json to the commands that open it",
                output.display()
            );
            None
        }
    };
    let vocab = ["vocab.txt", "spiece.model"]
        .into_iter()
        .map(|f| snapshot.join(f))
        .find(|p| p.is_file());
    super::write_beside(output, config, vocab)
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

    fn note(&self, message: &str) {
        match self
            .bar
            .lock()
            .ok()
            .as_ref()
            .and_then(|s| s.as_ref().cloned())
        {
            Some(bar) => bar.suspend(|| eprintln!("note: {message}")),
            None => eprintln!("note: {message}"),
        }
    }
}
