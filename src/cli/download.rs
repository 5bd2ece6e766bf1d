//! `uerzoo download`: Download a zoo weight into the Huggingface cache.

use std::path::PathBuf;
use std::process::ExitCode;

use uerzoo::jobs::zoo::{DownloadOptions, UerCopy};

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
    /// UER naming of the `--format uer` file: v1 (default: the zoo's, UER-py ≤2022, as every
    /// command that writes a UER file) or v2 (UER-py 2023+, TencentPretrain).
    #[arg(long, default_value = "v1")]
    uer_naming: uerzoo::convert::Naming,
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
    let opts = DownloadOptions {
        name: args.name,
        to_uer: args.format == Format::Uer,
        uer_naming: args.uer_naming,
        revision: args.revision,
        endpoint: args.endpoint,
        cache_dir: args.cache_dir,
        offline: args.offline,
        jobs: args.jobs,
        files: args.files,
    };
    let done = uerzoo::jobs::zoo::download(&opts, &super::Bar::bytes())?;
    for file in &done.snapshot.files {
        let how = if file.cached { "cached " } else { "fetched" };
        println!("{how} {:>12} B  {}", file.size, file.path);
    }
    if let Some(uer) = &done.uer {
        if uer.converted {
            companions(uer)?;
        }
        println!("uer     {}", uer.path.display());
    }
    println!("{}", done.snapshot.dir.display());
    Ok(ExitCode::SUCCESS)
}

/// Writes the entry's UER config and the snapshot's vocabulary beside the converted `.bin`
/// (as `convert --to uer` does), so that every command opens it by its path alone.
fn companions(uer: &UerCopy) -> anyhow::Result<()> {
    // A registry config has no file: written straight to its place (the one output rule).
    let config = match &uer.uer_config {
        Some(c) => Some(super::Companion::Made(c.to_json_string())),
        None => {
            eprintln!(
                "note: no UER config written beside {}: the repo is not a registry weight; pass --config UER_CONFIG.json to the commands that open it",
                uer.path.display()
            );
            None
        }
    };
    super::write_beside(&uer.path, config, uer.vocab.clone())
}
