//! `uerzoo verify`: Re-hash cached files.

use std::path::PathBuf;
use std::process::ExitCode;

use uerzoo::jobs::zoo::VerifyOptions;

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
    let opts = VerifyOptions {
        name: args.name,
        cache_dir: args.cache_dir,
        repair: args.repair,
        endpoint: args.endpoint,
    };
    let report =
        uerzoo::jobs::zoo::verify(&opts, &super::Bar::bytes(), &mut |note| eprintln!("{note}"))?;
    for line in &report.lines {
        println!("{line}");
    }
    println!("{}", report.summary());
    Ok(if report.bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
