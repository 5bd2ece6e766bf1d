//! The companion files `uerzoo convert` reads beside a UER input without being named: the
//! UER config and the vocabulary that the commands writing a UER file put beside it.

use std::path::{Path, PathBuf};

use super::ConvertError;
use crate::output::{companion, parent_dir};

/// The UER config beside a UER file: its own (`FILE.uer_config.json`), else the folder's
/// `uer_config.json`, else a `config.json` that is a UER config (not an HF one). None for a
/// folder (an HF directory carries its `config.json`).
pub fn config_beside(input: &Path) -> Result<Option<PathBuf>, ConvertError> {
    if !input.is_file() {
        return Ok(None);
    }
    let dir = parent_dir(input);
    for p in [
        companion(input, "uer_config.json"),
        dir.join("uer_config.json"),
    ] {
        if p.is_file() {
            return Ok(Some(p));
        }
    }
    let p = dir.join("config.json");
    if !p.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&p).map_err(|source| ConvertError::Io {
        path: p.clone(),
        source,
    })?;
    let hf = serde_json::from_str::<serde_json::Value>(&text)
        .map_or(true, |v| v.get("model_type").is_some());
    Ok((!hf).then_some(p))
}

/// The vocabulary beside a UER file: its own (`FILE.vocab.txt`, `FILE.spiece.model`), else
/// the folder's. None for a folder (an HF directory's tokenizer files are read by the
/// conversion itself).
pub fn vocab_beside(input: &Path) -> Option<PathBuf> {
    if !input.is_file() {
        return None;
    }
    let dir = parent_dir(input);
    let names = ["vocab.txt", "spiece.model"];
    names
        .map(|n| companion(input, n))
        .into_iter()
        .chain(names.map(|n| dir.join(n)))
        .find(|p| p.is_file())
}
