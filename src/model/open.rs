//! Opening a model argument as the commands take it: a UER `.bin`/`.safetensors` file (its
//! config from `--config`, else `uer_config.json`/`config.json` beside it), an HF directory
//! (`config.json` + weights), or a registry name. The checkpoint goes through
//! [`crate::convert::to_uer`] into UER naming v2, and the LayerNorm formula follows where the
//! weights came from (UER file → UER's, HF → HF's with the config's eps).

use super::ModelError;
use super::config::{LnKind, ModelConfig};
use crate::checkpoint::Checkpoint;
use crate::convert::{self, Source, ToUerOptions};
use std::path::{Path, PathBuf};

/// A checkpoint in UER naming v2 with its config, ready for [`super::load_model`].
#[derive(Debug, Clone)]
pub struct OpenedModel {
    /// The weights, UER naming v2.
    pub checkpoint: Checkpoint,
    /// The config (LN kind set from the source).
    pub config: ModelConfig,
    /// Where the weights' names came from.
    pub source: Source,
    /// The folder holding the weights (where `vocab.txt` is looked for).
    pub dir: PathBuf,
}

impl OpenedModel {
    /// The vocabulary file beside the weights (`vocab.txt`), if any.
    pub fn vocab_file(&self) -> Option<PathBuf> {
        let p = self.dir.join("vocab.txt");
        p.is_file().then_some(p)
    }
}

/// Opens `model` (file, HF directory) with an optional UER config path.
pub fn open_model(model: &Path, config: Option<&Path>) -> Result<OpenedModel, ModelError> {
    let (weights, hf_config) = if model.is_dir() {
        let cfg = model.join("config.json");
        (model.to_path_buf(), cfg.is_file().then_some(cfg))
    } else if model.is_file() {
        (model.to_path_buf(), None)
    } else {
        return Err(ModelError::Open {
            path: model.to_path_buf(),
            message: "no such file or directory (give a UER .bin, an HF directory or a registry name)".into(),
        });
    };
    let raw = Checkpoint::open(&weights).map_err(|e| ModelError::Open { path: weights.clone(), message: e.to_string() })?;
    let (checkpoint, report) = convert::to_uer(&raw, &ToUerOptions::default())
        .map_err(|e| ModelError::Open { path: weights.clone(), message: e.to_string() })?;
    let dir = if model.is_dir() { model.to_path_buf() } else { model.parent().unwrap_or(Path::new(".")).to_path_buf() };
    let mut cfg = match (config, report.source) {
        (Some(path), _) if looks_like_hf_config(path) => ModelConfig::from_hf_file(path)?,
        (Some(path), _) => ModelConfig::from_uer_file(path)?,
        (None, Source::Hf) => match &hf_config {
            Some(path) => ModelConfig::from_hf_file(path)?,
            None => return Err(missing_config(model, "config.json")),
        },
        (None, Source::Uer(_)) => {
            let beside = ["uer_config.json", "config.json"].iter().map(|n| dir.join(n)).find(|p| p.is_file());
            match beside {
                Some(path) if looks_like_hf_config(&path) => ModelConfig::from_hf_file(&path)?,
                Some(path) => ModelConfig::from_uer_file(&path)?,
                None => return Err(missing_config(model, "--config UER_CONFIG.json")),
            }
        }
    };
    // The LN formula follows the weights, whatever spelling the config used.
    match report.source {
        Source::Uer(_) => {
            cfg.ln_kind = LnKind::Uer;
            cfg.ln_eps = super::config::UER_LN_EPS;
        }
        Source::Hf => cfg.ln_kind = LnKind::Hf,
    }
    Ok(OpenedModel { checkpoint, config: cfg, source: report.source, dir })
}

/// An HF config has `model_type`; UER's never does.
fn looks_like_hf_config(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v.get("model_type").is_some())
}

fn missing_config(model: &Path, what: &str) -> ModelError {
    ModelError::Open {
        path: model.to_path_buf(),
        message: format!("no model config found; pass {what} (UER-py's config JSON for the weights)"),
    }
}
