//! `uerzoo download`: Download a zoo weight into the Huggingface cache.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use uerzoo::hub::{Cache, FileSpec, Hub, HubOptions, Request};
use uerzoo::progress::Progress;

/// Files fetched for a bare `org/name` repo id when no `--file` is given.
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
    if args.format == Format::Uer {
        anyhow::bail!(
            "`--format uer` needs the conversion layer, which is not available in this build yet; \
             download with `--format hf` and convert later with `uerzoo convert`"
        );
    }
    let request = resolve(&args)?;
    let hub = hub(
        args.cache_dir.clone(),
        args.endpoint.clone(),
        args.offline,
        args.jobs,
    );
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
    println!("{}", snapshot.dir.display());
    Ok(ExitCode::SUCCESS)
}

/// NAME → repo id, revision and files.
fn resolve(args: &Args) -> anyhow::Result<Request> {
    if !args.name.contains('/') {
        anyhow::bail!(
            "`{}` is not a Huggingface repo id; the registry is not wired into this build yet, \
             pass `org/name` with --file",
            args.name
        );
    }
    let files: Vec<String> = if args.files.is_empty() {
        DEFAULT_FILES.iter().map(|s| s.to_string()).collect()
    } else {
        args.files.clone()
    };
    Ok(Request {
        repo_id: args.name.clone(),
        revision: args.revision.clone().unwrap_or_else(|| "main".into()),
        files: files
            .into_iter()
            .map(|path| FileSpec { path, sha256: None })
            .collect(),
    })
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
