//! What a model argument names: a path (a UER `.bin`, an HF directory), or a registry name
//! or alias whose weights are in the cache (the HF snapshot `uerzoo download NAME` made, or
//! an imported legacy file), and the tokenizer that goes with it ([`open_tokenizer`]:
//! `--vocab`, else the file beside the weights, else the registry entry's vocabulary built
//! into the binary). This module sits above `hub` (where the cache is), `registry` and
//! `model` (how weights are opened), so that none of them knows the others. The commands
//! that open what such an argument names and do one whole job are here too: `fill-mask`,
//! `forward` and `extract-features` ([`tasks`]), `import` ([`import`]) and `inspect`
//! ([`inspect`]: what a tensor file holds and the model its names say).

pub mod import;
pub mod inspect;
pub mod tasks;

use crate::model::ModelError;
use crate::model::open::{OpenedModel, open_model as open_path, open_with_uer_config};
use crate::registry::{Entry, Registry};
use std::path::{Path, PathBuf};

/// Opens `model`: a path as it is, else a registry name or alias from the cache, with an
/// optional UER config file that overrides the one found.
pub fn open_model(model: &Path, config: Option<&Path>) -> Result<OpenedModel, ModelError> {
    if !model.exists()
        && let Some(name) = model.to_str()
        && let Ok(entry) = Registry::builtin().get(name)
    {
        return open_entry(entry, config);
    }
    open_path(model, config)
}

/// A registry entry: its HF snapshot in the cache (`uerzoo download NAME`), else an
/// imported legacy UER file with the registry's UER config (the `uer_config.json` that
/// `uerzoo import` put beside it, else the registry's as data).
fn open_entry(entry: &Entry, config: Option<&Path>) -> Result<OpenedModel, ModelError> {
    let cache = crate::hub::Cache::from_env();
    if let Some(hf) = &entry.sources.hf {
        let repo = cache.repo(&hf.repo);
        if let Some(commit) = repo.resolve_revision(&hf.revision) {
            let dir = repo.snapshot_dir(&commit);
            if dir.join("config.json").is_file() {
                return open_path(&dir, config);
            }
        }
    }
    let Some(path) = cache
        .repo(&crate::hub::local_repo_id(&entry.name))
        .get("main", &entry.uer_file)
    else {
        return Err(ModelError::Open {
            path: entry.name.clone().into(),
            message: format!(
                "`{}` is not in the cache; run `uerzoo download {}` first",
                entry.name, entry.name
            ),
        });
    };
    // `uerzoo import` puts the registry's config beside the file; older imports lack it.
    if path.with_file_name("uer_config.json").is_file() {
        return open_path(&path, config);
    }
    let uer = entry.uer_config().map_err(|e| ModelError::Open {
        path: path.clone(),
        message: e.to_string(),
    })?;
    open_with_uer_config(&path, &uer, config)
}

/// Why `uerzoo import` refuses a file: it is not the weight the registry entry describes.
#[derive(Debug, thiserror::Error)]
pub enum ImportCheckError {
    #[error(
        "{}: not a tensor file uerzoo reads ({error}); `uerzoo import {name}` takes the UER-format `.bin` from the entry's share page (`uerzoo info {name}`)",
        path.display()
    )]
    Format {
        path: std::path::PathBuf,
        name: String,
        error: Box<crate::checkpoint::CheckpointError>,
    },
    #[error(
        "{}: no word embedding (`embedding.word_embedding.weight` or `embedding.word.embedding.weight`; the file starts with {first}); `{name}` is a UER-format weight: import the `.bin` from its share page, not a converted or Huggingface file",
        path.display()
    )]
    NotUer {
        path: std::path::PathBuf,
        name: String,
        first: String,
    },
    #[error("{} is not `{name}` ({shape}): {error}", path.display())]
    Shape {
        path: std::path::PathBuf,
        name: String,
        shape: String,
        error: Box<crate::convert::ConvertError>,
    },
    #[error(
        "{} is not `{name}`: `{key}` {problem}; `{name}` has {expected} layers (`uerzoo info {name}`), check that the file is this weight's",
        path.display()
    )]
    Layers {
        path: std::path::PathBuf,
        name: String,
        key: String,
        problem: String,
        expected: usize,
    },
}

/// Checks that `file` is the weight `entry` names before `uerzoo import` caches it: a tensor
/// file uerzoo reads (torch `.bin` or safetensors), in UER naming, with every tensor the
/// shape the entry's config gives (hidden, feed-forward, embedding, vocabulary: positions
/// are left to the file, as UER-py's files differ there) and the
/// entry's number of layers. The first wrong tensor is named.
pub fn check_import(entry: &Entry, file: &Path) -> Result<(), ImportCheckError> {
    use crate::checkpoint::Checkpoint;
    use crate::convert::shapes::{Known, check};
    let name = entry.name.clone();
    let mut ckpt = Checkpoint::open(file).map_err(|error| ImportCheckError::Format {
        path: file.to_path_buf(),
        name: name.clone(),
        error: Box::new(error),
    })?;
    ckpt.strip_module_prefix();
    let has = |key: &str| ckpt.get(key).is_some();
    if !has(crate::convert::names::v1::WORD) && !has(crate::convert::names::v2::WORD) {
        let first: Vec<String> = ckpt.names().take(3).map(|n| format!("`{n}`")).collect();
        return Err(ImportCheckError::NotUer {
            path: file.to_path_buf(),
            name,
            first: if first.is_empty() {
                "no tensors".into()
            } else {
                first.join(", ")
            },
        });
    }
    let config = entry.uer_config().ok();
    let mut known = Known::default();
    if let Some(c) = &config {
        known.hidden = Some(c.hidden_size);
        known.feedforward = Some(c.feedforward_size);
        if c.factorized_embedding_parameterization {
            known.emb = Some(c.emb_size);
        }
    }
    known.vocab = entry
        .tokenizer_file()
        .and_then(|v| Registry::builtin().vocab(v))
        .and_then(|v| v.tokens);
    let shape = format!(
        "L={} H={}{}",
        entry.layers,
        entry.hidden,
        known
            .vocab
            .map(|v| format!(", vocabulary {v}"))
            .unwrap_or_default()
    );
    check(&ckpt, &known, &file.display().to_string()).map_err(|error| ImportCheckError::Shape {
        path: file.to_path_buf(),
        name: name.clone(),
        shape,
        error: Box::new(error),
    })?;
    // Layers: `encoder.transformer.<i>.` for i in 0..layers (ALBERT shares one layer).
    let shared = config.as_ref().is_some_and(|c| c.parameter_sharing);
    let transformer = config.as_ref().is_some_and(|c| c.encoder == "transformer");
    if transformer && !shared {
        let mut indices = std::collections::BTreeSet::new();
        for key in ckpt.names() {
            if let Some(rest) = key
                .strip_prefix(crate::convert::names::v2::SHARED_LAYER)
                .and_then(|k| k.strip_prefix('.'))
                && let Some((i, _)) = rest.split_once('.')
                && let Ok(i) = i.parse::<usize>()
            {
                indices.insert(i);
                if i >= entry.layers {
                    return Err(ImportCheckError::Layers {
                        path: file.to_path_buf(),
                        name,
                        key: key.to_string(),
                        problem: format!("is layer {} of a deeper model", i + 1),
                        expected: entry.layers,
                    });
                }
            }
        }
        if let Some(missing) = (0..entry.layers).find(|i| !indices.contains(i)) {
            return Err(ImportCheckError::Layers {
                path: file.to_path_buf(),
                name,
                key: format!(
                    "{}.*",
                    crate::convert::names::instantiate(crate::convert::names::v2::LAYER, missing)
                ),
                problem: "is missing".into(),
                expected: entry.layers,
            });
        }
    }
    Ok(())
}

/// Why a model's tokenizer could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerOpenError {
    #[error(
        "no vocab.txt or spiece.model beside {}; pass --vocab with the model's vocab.txt or sentencepiece .model",
        dir.display()
    )]
    Missing { dir: std::path::PathBuf },
    #[error("loading the tokenizer {}: {source}", path.display())]
    Load {
        path: std::path::PathBuf,
        source: crate::tokenizer::TokenizerError,
    },
    #[error(
        "`{entry}`'s built-in vocabulary {file} has {tokens} tokens but the weights' word embedding has {rows} rows: the weights were trained with another vocabulary; pass --vocab with it"
    )]
    BuiltInMismatch {
        entry: String,
        file: String,
        tokens: usize,
        rows: usize,
    },
}

/// What kind of tokenizer file a `--vocab` path holds, told by its content (a sentencepiece
/// model is a protocol buffer; a WordPiece vocabulary is UTF-8 text, one token a line), so one
/// flag takes either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VocabKind {
    WordPiece,
    SentencePiece,
}

/// Tells [`VocabKind`] from the first bytes of a file: text without NUL bytes is a WordPiece
/// vocabulary; anything else a sentencepiece model. Unreadable files count as WordPiece, so
/// the loader reports the read error with the path.
pub fn vocab_kind(path: &Path) -> VocabKind {
    use std::io::Read;
    let mut head = Vec::with_capacity(4096);
    let read = std::fs::File::open(path).and_then(|f| f.take(4096).read_to_end(&mut head));
    if read.is_err() {
        return VocabKind::WordPiece;
    }
    // A cut in the middle of a UTF-8 sequence at the 4 KiB boundary is still text.
    let text = match std::str::from_utf8(&head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && e.valid_up_to() + 4 > head.len(),
    };
    if text && !head.contains(&0) {
        VocabKind::WordPiece
    } else {
        VocabKind::SentencePiece
    }
}

/// Where the tokenizer [`open_tokenizer_with_origin`] opened came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VocabOrigin {
    /// The `--vocab` file.
    Given(PathBuf),
    /// The file beside the weights (`FILE.vocab.txt`, `vocab.txt`, `spiece.model`).
    Beside(PathBuf),
    /// The registry entry's vocabulary built into the binary
    /// ([`crate::registry::builtin_vocab`]), for a model with no file beside it.
    BuiltIn {
        /// The registry entry's name.
        entry: String,
        /// The vocabulary's `vocab/vocabs.toml` name (`google_zh_vocab.txt`).
        file: String,
    },
}

impl std::fmt::Display for VocabOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VocabOrigin::Given(p) | VocabOrigin::Beside(p) => write!(f, "{}", p.display()),
            VocabOrigin::BuiltIn { entry, file } => {
                write!(f, "the built-in {file} (the vocabulary of `{entry}`)")
            }
        }
    }
}

/// The tokenizer of an opened model: `vocab` when given (a `vocab.txt` or a sentencepiece
/// `.model`, told by content), else the vocabulary beside the weights (`FILE.vocab.txt`,
/// `vocab.txt`, `spiece.model`), else, for a model the registry names (opened by its name,
/// or a path inside its cache repo), the entry's vocabulary built into the binary. WordPiece
/// vocabularies of HF directories get transformers' options, those of UER files UER-py's.
/// Every command and `serve` open tokenizers here.
pub fn open_tokenizer(
    opened: &OpenedModel,
    vocab: Option<&Path>,
) -> Result<crate::tokenizer::Tokenizer, TokenizerOpenError> {
    open_tokenizer_with_origin(opened, vocab).map(|(tok, _)| tok)
}

/// [`open_tokenizer`], also saying which vocabulary it used.
pub fn open_tokenizer_with_origin(
    opened: &OpenedModel,
    vocab: Option<&Path>,
) -> Result<(crate::tokenizer::Tokenizer, VocabOrigin), TokenizerOpenError> {
    let options = match opened.source {
        crate::convert::Source::Hf => crate::tokenizer::TokenizerOptions::huggingface(),
        crate::convert::Source::Uer(_) => crate::tokenizer::TokenizerOptions::uer(),
    };
    if let Some(path) = vocab {
        let tok = tokenizer_from_file(path, options)?;
        return Ok((tok, VocabOrigin::Given(path.to_path_buf())));
    }
    if let Some(path) = opened.vocab_file() {
        let tok = tokenizer_from_file(&path, options)?;
        return Ok((tok, VocabOrigin::Beside(path)));
    }
    if let Some(entry) = registry_entry(opened)
        && let Some(file) = entry.tokenizer_file()
        && let Some(bytes) = crate::registry::builtin_vocab(file)
    {
        let tok = builtin_tokenizer(file, bytes, options)?;
        let rows = opened
            .checkpoint
            .get(crate::convert::names::v2::WORD)
            .and_then(|t| t.shape.first().copied());
        if let Some(rows) = rows
            && rows != tok.vocab_size()
        {
            return Err(TokenizerOpenError::BuiltInMismatch {
                entry: entry.name.clone(),
                file: file.to_string(),
                tokens: tok.vocab_size(),
                rows,
            });
        }
        let origin = VocabOrigin::BuiltIn {
            entry: entry.name.clone(),
            file: file.to_string(),
        };
        return Ok((tok, origin));
    }
    Err(TokenizerOpenError::Missing {
        dir: opened.dir.clone(),
    })
}

/// The registry entry an opened model belongs to, told by where its weights lie: inside a
/// Huggingface cache repo (`…/models--uer--<repo>/snapshots/<commit>/`, or an import's
/// `…/models--uerzoo--<name>/…`) that is an entry's. [`open_model`] opens a registry name
/// from there, so this covers a model opened by its name as well as a snapshot path.
pub fn registry_entry(opened: &OpenedModel) -> Option<&'static Entry> {
    let weights = opened.file.as_deref().unwrap_or(&opened.dir);
    let absolute = std::path::absolute(weights).ok()?;
    absolute.ancestors().find_map(|dir| {
        let folder = dir.file_name()?.to_str()?;
        let repo_id = folder.strip_prefix("models--")?.replacen("--", "/", 1);
        Registry::builtin().by_cache_repo(&repo_id)
    })
}

/// A tokenizer from a vocabulary built into the binary (`file` names it in errors).
pub(crate) fn builtin_tokenizer(
    file: &str,
    bytes: &[u8],
    options: crate::tokenizer::TokenizerOptions,
) -> Result<crate::tokenizer::Tokenizer, TokenizerOpenError> {
    use crate::tokenizer::Tokenizer;
    let path = PathBuf::from(format!("vocab/{file} (built in)"));
    let kind = Registry::builtin().vocab(file).map(|v| v.kind.as_str());
    let result = if kind == Some("sentencepiece") {
        Tokenizer::from_spm_bytes(bytes, &path)
    } else {
        match std::str::from_utf8(bytes) {
            Ok(text) => Tokenizer::from_vocab_str(text, options, &path),
            Err(_) => Tokenizer::from_spm_bytes(bytes, &path),
        }
    };
    result.map_err(|source| TokenizerOpenError::Load { path, source })
}

/// A tokenizer from a `vocab.txt` (with `options`) or a sentencepiece `.model`, told by
/// content ([`vocab_kind`]): what `--vocab` (alias `--spm`) names on every command.
pub fn tokenizer_from_file(
    path: &Path,
    options: crate::tokenizer::TokenizerOptions,
) -> Result<crate::tokenizer::Tokenizer, TokenizerOpenError> {
    use crate::tokenizer::Tokenizer;
    let result = match vocab_kind(path) {
        VocabKind::SentencePiece => Tokenizer::from_spm_file(path),
        VocabKind::WordPiece => Tokenizer::from_vocab_file(path, options),
    };
    result.map_err(|source| TokenizerOpenError::Load {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocab_kind_is_told_by_content_not_name() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("vocab");
        let wordpiece = root.join("google_zh_vocab.txt");
        let spm = root.join("cluecorpussmall_spm.model");
        assert_eq!(vocab_kind(&wordpiece), VocabKind::WordPiece);
        assert_eq!(vocab_kind(&spm), VocabKind::SentencePiece);
        // A sentencepiece model under a `.txt` name is still one.
        let dir = tempfile::tempdir().unwrap();
        let renamed = dir.path().join("vocab.txt");
        std::fs::copy(&spm, &renamed).unwrap();
        assert_eq!(vocab_kind(&renamed), VocabKind::SentencePiece);
        let tok = tokenizer_from_file(&renamed, crate::tokenizer::TokenizerOptions::uer()).unwrap();
        assert!(tok.as_spm().is_some());
        let tok =
            tokenizer_from_file(&wordpiece, crate::tokenizer::TokenizerOptions::uer()).unwrap();
        assert!(tok.as_spm().is_none());
    }
}
