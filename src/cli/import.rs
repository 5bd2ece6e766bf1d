//! `uerzoo import`: Put a manually downloaded file into the cache.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use uerzoo::hub::{Cache, import_file, local_repo_id};
use uerzoo::registry::Registry;

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
    if !args.skip_check {
        uerzoo::resolve::check_import(entry, &args.file).with_context(|| {
            format!(
                "refusing to import {} as `{}` (--skip-check imports it anyway)",
                args.file.display(),
                entry.name
            )
        })?;
    }
    let repo_id = local_repo_id(&entry.name);
    let imported = import_file(
        &cache,
        &repo_id,
        &file_name,
        &args.file,
        args.sha256.as_deref(),
    )
    .with_context(|| format!("importing {} as `{}`", args.file.display(), args.name))?;
    let info = entry
        .tokenizer_file()
        .and_then(|f| Registry::builtin().vocab(f));
    let builtin = info.and_then(|v| uerzoo::registry::builtin_vocab(&v.file));
    // Without --vocab, the registry's vocabulary built into the binary goes beside the file,
    // so that what `finetune` and `pretrain` write from NAME carries it too.
    let extracted = match (&args.vocab, builtin) {
        (None, Some(bytes)) => {
            let mut tmp = tempfile::NamedTempFile::new().context("a temporary file")?;
            std::io::Write::write_all(&mut tmp, bytes).context("a temporary file")?;
            Some(tmp)
        }
        _ => None,
    };
    let vocab = args
        .vocab
        .as_deref()
        .or(extracted.as_ref().map(|t| t.path()));
    if let Some(vocab) = vocab {
        let name = info.map_or("vocab.txt", |v| v.hf_file.as_str());
        let sha = info.and_then(|v| v.sha256.as_deref());
        let what = match (&args.vocab, info) {
            (None, Some(v)) => format!("the built-in {}", v.file),
            _ => vocab.display().to_string(),
        };
        let done = import_file(&cache, &repo_id, name, vocab, sha).with_context(|| {
            format!(
                "importing {what} as the vocabulary of `{}` ({})",
                entry.name,
                info.map_or("see `uerzoo info`", |v| v.file.as_str())
            )
        })?;
        if args.vocab.is_none() {
            eprintln!(
                "note: the vocabulary of `{}` is {what}, imported beside it (--vocab imports another copy)",
                entry.name
            );
        }
        println!("sha256 {}  {} B  {}", done.sha256, done.size, name);
    } else if !entry.uer_file.is_empty()
        && entry.sources.hf.is_none()
        && import_file_missing(&cache, &repo_id, entry)
    {
        eprintln!(
            "note: no vocabulary is cached for `{}`; commands will ask for --vocab unless you also run `uerzoo import {} {} --vocab {}`",
            entry.name,
            entry.name,
            args.file.display(),
            entry.tokenizer_file().unwrap_or("VOCAB")
        );
    }
    // The registry's UER config beside it too, so that what `finetune` and `pretrain` write
    // from NAME carries a config as well.
    if let Ok(uer) = entry.uer_config() {
        let mut tmp = tempfile::NamedTempFile::new().context("a temporary file")?;
        std::io::Write::write_all(&mut tmp, uer.to_json_string().as_bytes())
            .context("a temporary file")?;
        import_file(&cache, &repo_id, "uer_config.json", tmp.path(), None)
            .with_context(|| format!("importing the UER config of `{}`", entry.name))?;
    }
    println!(
        "sha256 {}  {} B  {}",
        imported.sha256, imported.size, file_name
    );
    println!("{}", imported.pointer.display());
    Ok(ExitCode::SUCCESS)
}

/// Whether no tokenizer file is cached beside an imported entry.
fn import_file_missing(cache: &Cache, repo_id: &str, entry: &uerzoo::registry::Entry) -> bool {
    let repo = cache.repo(repo_id);
    ["vocab.txt", "spiece.model"]
        .iter()
        .all(|f| repo.get("main", f).is_none())
        && entry.tokenizer_file().is_some()
}
