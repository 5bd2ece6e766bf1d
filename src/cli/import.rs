//! `uerzoo import`: Put a manually downloaded file into the cache.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use uerzoo::hub::{Cache, import_file, local_repo_id};
use uerzoo::registry::Registry;

/// Put a manually downloaded file (e.g. a Weiyun-only legacy weight) into the cache.
///
/// The file is copied into `models--uerzoo--<NAME>/blobs/<sha256>` under the registry's
/// canonical name and UER file name, and linked from the snapshot that `refs/main` points
/// at; `uerzoo info NAME` shows it, `uerzoo download NAME` finds it and `uerzoo verify NAME`
/// re-checks it. The last line of stdout is the cached path.
///
/// Example:
///   uerzoo import google_zh_bert ~/Downloads/google_zh_model.bin  (see `uerzoo list --family legacy`)
#[derive(clap::Args)]
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
    /// Cache root (overrides HF_HUB_CACHE / HF_HOME).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cache = args
        .cache_dir
        .map(Cache::new)
        .unwrap_or_else(Cache::from_env);
    let entry = Registry::builtin().get(&args.name)?;
    let file_name = match args.as_name {
        Some(name) => name,
        None if !entry.uer_file.is_empty() => entry.uer_file.clone(),
        None => args
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .with_context(|| format!("{} has no file name; pass --as", args.file.display()))?,
    };
    let repo_id = local_repo_id(&entry.name);
    let imported = import_file(
        &cache,
        &repo_id,
        &file_name,
        &args.file,
        args.sha256.as_deref(),
    )
    .with_context(|| format!("importing {} as `{}`", args.file.display(), args.name))?;
    println!(
        "sha256 {}  {} B  {}",
        imported.sha256, imported.size, file_name
    );
    println!("{}", imported.pointer.display());
    Ok(ExitCode::SUCCESS)
}
