//! The `import` command as one call, [`import`]: a manually downloaded weight checked
//! against its registry entry ([`super::check_import`]) and copied into the cache, with its
//! vocabulary (the given file, else the registry's copy built into the binary) and the
//! registry's UER config beside it. It prints nothing: notes go to a callback, the cached
//! files come back in an [`ImportReport`].

use crate::hub::{Cache, import_file, local_repo_id};
use crate::registry::{Entry, Registry, RegistryError};
use std::path::PathBuf;

/// The `import` command's options.
#[derive(Debug, Clone)]
pub struct ImportJob {
    /// Registry name or alias the file belongs to.
    pub name: String,
    /// The downloaded file.
    pub file: PathBuf,
    /// Name inside the cache (default: the registry's UER file name, else the file's).
    pub as_name: Option<String>,
    /// Refuse the file unless its sha256 is this.
    pub sha256: Option<String>,
    /// The vocabulary to import beside it (default: the registry's built-in copy).
    pub vocab: Option<PathBuf>,
    /// Import without checking tensor names and shapes against the entry.
    pub skip_check: bool,
    /// Cache root (default: from HF_HUB_CACHE / HF_HOME).
    pub cache_dir: Option<PathBuf>,
}

/// One file put into the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedFile {
    /// Its name in the snapshot.
    pub name: String,
    pub sha256: String,
    pub size: u64,
}

/// What [`import`] put into the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// The vocabulary imported beside the weight, if any.
    pub vocab: Option<CachedFile>,
    /// The weight itself.
    pub file: CachedFile,
    /// The weight's path in the cache (the snapshot's link).
    pub pointer: PathBuf,
}

/// Everything that can stop [`import`]; each message names the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// An argument that cannot work; the message says what to pass.
    #[error("{0}")]
    Invalid(String),
    /// A step that failed: `what` names it and the files, `source` says why.
    #[error("{what}")]
    Failed {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

fn failed<E: std::error::Error + Send + Sync + 'static>(
    what: String,
) -> impl FnOnce(E) -> ImportError {
    move |e| ImportError::Failed {
        what,
        source: Box::new(e),
    }
}

/// A temporary file holding `bytes`.
fn temp_with(bytes: &[u8]) -> Result<tempfile::NamedTempFile, ImportError> {
    let mut tmp = tempfile::NamedTempFile::new().map_err(failed("a temporary file".into()))?;
    std::io::Write::write_all(&mut tmp, bytes).map_err(failed("a temporary file".into()))?;
    Ok(tmp)
}

/// Runs `import` (see the module docs); `on_note` receives the notes for the user.
pub fn import(job: ImportJob, on_note: &mut dyn FnMut(&str)) -> Result<ImportReport, ImportError> {
    let cache = job
        .cache_dir
        .clone()
        .map(Cache::new)
        .unwrap_or_else(Cache::from_env);
    let entry = Registry::builtin().get(&job.name)?;
    let shown = job.file.display();
    let file_name = match &job.as_name {
        Some(name) => name.clone(),
        None if !entry.uer_file.is_empty() => entry.uer_file.clone(),
        None => job
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| ImportError::Invalid(format!("{shown} has no file name; pass --as")))?,
    };
    if !job.skip_check {
        super::check_import(entry, &job.file).map_err(failed(format!(
            "refusing to import {shown} as `{}` (--skip-check imports it anyway)",
            entry.name
        )))?;
    }
    let repo_id = local_repo_id(&entry.name);
    let imported = import_file(
        &cache,
        &repo_id,
        &file_name,
        &job.file,
        job.sha256.as_deref(),
    )
    .map_err(failed(format!("importing {shown} as `{}`", job.name)))?;
    let info = entry
        .tokenizer_file()
        .and_then(|f| Registry::builtin().vocab(f));
    let builtin = info.and_then(|v| crate::registry::builtin_vocab(&v.file));
    // Without a vocabulary given, the registry's one built into the binary goes beside the
    // file, so that what `finetune` and `pretrain` write from the name carries it too.
    let extracted = match (&job.vocab, builtin) {
        (None, Some(bytes)) => Some(temp_with(bytes)?),
        _ => None,
    };
    let vocab = job
        .vocab
        .as_deref()
        .or(extracted.as_ref().map(|t| t.path()));
    let mut cached_vocab = None;
    if let Some(vocab) = vocab {
        let name = info.map_or("vocab.txt", |v| v.hf_file.as_str());
        let sha = info.and_then(|v| v.sha256.as_deref());
        let what = match (&job.vocab, info) {
            (None, Some(v)) => format!("the built-in {}", v.file),
            _ => vocab.display().to_string(),
        };
        let done = import_file(&cache, &repo_id, name, vocab, sha).map_err(failed(format!(
            "importing {what} as the vocabulary of `{}` ({})",
            entry.name,
            info.map_or("see `uerzoo info`", |v| v.file.as_str())
        )))?;
        if job.vocab.is_none() {
            on_note(&format!(
                "note: the vocabulary of `{}` is {what}, imported beside it (--vocab imports another copy)",
                entry.name
            ));
        }
        cached_vocab = Some(CachedFile {
            name: name.to_string(),
            sha256: done.sha256,
            size: done.size,
        });
    } else if !entry.uer_file.is_empty()
        && entry.sources.hf.is_none()
        && no_tokenizer_cached(&cache, &repo_id, entry)
    {
        on_note(&format!(
            "note: no vocabulary is cached for `{}`; commands will ask for --vocab unless you also run `uerzoo import {} {} --vocab {}`",
            entry.name,
            entry.name,
            shown,
            entry.tokenizer_file().unwrap_or("VOCAB")
        ));
    }
    // The registry's UER config beside it too, so that what `finetune` and `pretrain` write
    // from the name carries a config as well.
    if let Ok(uer) = entry.uer_config() {
        let tmp = temp_with(uer.to_json_string().as_bytes())?;
        import_file(&cache, &repo_id, "uer_config.json", tmp.path(), None).map_err(failed(
            format!("importing the UER config of `{}`", entry.name),
        ))?;
    }
    Ok(ImportReport {
        vocab: cached_vocab,
        file: CachedFile {
            name: file_name,
            sha256: imported.sha256,
            size: imported.size,
        },
        pointer: imported.pointer,
    })
}

/// Whether no tokenizer file is cached beside an imported entry.
fn no_tokenizer_cached(cache: &Cache, repo_id: &str, entry: &Entry) -> bool {
    let repo = cache.repo(repo_id);
    ["vocab.txt", "spiece.model"]
        .iter()
        .all(|f| repo.get("main", f).is_none())
        && entry.tokenizer_file().is_some()
}
