//! `uerzoo import`: Put a manually downloaded file into the cache.

use std::path::PathBuf;
use std::process::ExitCode;

use uerzoo::resolve::import::{ImportJob, import};

/// Put a manually downloaded file (e.g. a Weiyun-only legacy weight) into the cache.
///
/// The file is checked first: a tensor file uerzoo reads, in UER naming, with the layers,
/// hidden size, feed-forward size and vocabulary of NAME's registry entry; a file of another
/// model is refused naming its first wrong tensor (--skip-check imports it anyway).
/// The vocabulary goes beside it as `vocab.txt` / `spiece.model`: the --vocab file (checked
/// against the registry's sha256), else the registry's copy built into the binary; and the
/// registry's UER config as `uer_config.json`. Every command opens NAME offline by its name,
/// and what `finetune` or `pretrain` writes from it carries both.
///
/// The file is copied into `models--uerzoo--<NAME>/blobs/<sha256>` under the registry's
/// canonical name and UER file name, and linked from the snapshot that `refs/main` points
/// at; `uerzoo download NAME` then finds it and `uerzoo verify NAME` re-checks it. The last
/// line of stdout is the cached path.
#[derive(clap::Args)]
#[command(
    after_help = "Examples (`uerzoo list --family legacy` names the legacy weights):\n  \
    uerzoo import google_zh_bert_base ~/Downloads/google_zh_model.bin --vocab ~/Downloads/google_zh_vocab.txt\n  \
    uerzoo fill-mask google_zh_bert_base \"北京是[MASK]国的首都。\"\n  \
    uerzoo verify google_zh_bert_base"
)]
pub struct Args {
    /// Registry name or alias the file belongs to.
    name: String,
    /// The downloaded file.
    file: PathBuf,
    /// Name inside the cache (default: the registry's UER file name).
    #[arg(long = "as")]
    as_name: Option<String>,
    /// Refuse the file unless its sha256 is this.
    #[arg(long)]
    sha256: Option<String>,
    /// The vocabulary the weight needs (its `uerzoo info` tokenizer file), imported beside it.
    #[arg(long)]
    vocab: Option<PathBuf>,
    /// Import without checking tensor names and shapes against the registry entry.
    #[arg(long)]
    skip_check: bool,
    /// Cache root (overrides HF_HUB_CACHE / HF_HOME).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let job = ImportJob {
        name: args.name,
        file: args.file,
        as_name: args.as_name,
        sha256: args.sha256,
        vocab: args.vocab,
        skip_check: args.skip_check,
        cache_dir: args.cache_dir,
    };
    let report = import(job, &mut |note| eprintln!("{note}"))?;
    for f in report.vocab.iter().chain([&report.file]) {
        println!("sha256 {}  {} B  {}", f.sha256, f.size, f.name);
    }
    println!("{}", report.pointer.display());
    Ok(ExitCode::SUCCESS)
}
