//! Opening a model argument as the commands take it: a UER `.bin`/`.safetensors` file (its
//! config from `--config`, else `uer_config.json`/`config.json` beside it), an HF directory
//! (`config.json` + weights), or a registry name. The checkpoint goes through
//! [`crate::convert::to_uer`] into UER naming v2, and the LayerNorm formula follows where the
//! weights came from (UER file → UER's, HF → HF's with the config's eps).

use super::ModelError;
use super::config::{EncoderKind, LnKind, MaskKind, ModelConfig};
use super::heads::Pooling;
use crate::checkpoint::Checkpoint;
use crate::convert::{self, Layout, Source, ToUerOptions};
use crate::tokenizer::Truncation;
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
    /// The weights file, when the model was a file (its own companions, see
    /// [`companion`], come before the folder's).
    pub file: Option<PathBuf>,
    /// The config file it was opened with (none when the config came as data, from the
    /// registry).
    pub config_file: Option<PathBuf>,
}

impl OpenedModel {
    /// A key of the UER config file it was opened with (UER-py's config JSON also carries
    /// training options such as `seq_length` and `pooling`, which `finetune` records there).
    pub fn config_value(&self, key: &str) -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(self.config_file.as_ref()?).ok()?;
        let json: serde_json::Value = serde_json::from_str(&text).ok()?;
        json.get(key).cloned()
    }

    /// How examples are cut for this model when no `--truncation` is given: the `truncation`
    /// that `finetune` records in the UER config, else as the weights' trainer cut them
    /// (an HF folder as transformers, a UER file as UER-py's run_classifier).
    pub fn truncation(&self) -> Result<Truncation, ModelError> {
        Ok(self.recorded("truncation")?.unwrap_or(match self.source {
            Source::Hf => Truncation::Hf,
            Source::Uer(_) => Truncation::Uer,
        }))
    }

    /// The classifier pooling when none is given: the `pooling` that `finetune` records in
    /// the UER config, else `first` (UER-py's run_classifier default).
    pub fn pooling(&self) -> Result<Pooling, ModelError> {
        Ok(self.recorded("pooling")?.unwrap_or(Pooling::First))
    }

    /// A reading option `finetune` records in the config (`key` is also the flag's name),
    /// parsed; `None` when the config has none.
    fn recorded<T: std::str::FromStr<Err = String>>(
        &self,
        key: &str,
    ) -> Result<Option<T>, ModelError> {
        let Some(v) = self.config_value(key) else {
            return Ok(None);
        };
        v.as_str()
            .unwrap_or("")
            .parse()
            .map(Some)
            .map_err(|e: String| ModelError::Config {
                path: self.config_file.clone().unwrap_or_default(),
                message: format!("`{key}` = {v}: {e}; fix the value or pass --{key}"),
            })
    }

    /// The vocabulary beside the weights: `<file>.vocab.txt` or `<file>.spiece.model` (the
    /// file's own), else the folder's `vocab.txt` or `spiece.model` (word-based models), if any.
    pub fn vocab_file(&self) -> Option<PathBuf> {
        let names = ["vocab.txt", "spiece.model"];
        let own = self.file.as_deref().into_iter();
        own.flat_map(|f| names.map(|n| companion(f, n)))
            .chain(names.map(|n| self.dir.join(n)))
            .find(|p| p.is_file())
    }
}

pub use crate::output::companion;

/// Opens `model` (a UER file or an HF directory) with an optional UER config path. Registry
/// names are resolved to such paths above this module, by [`crate::resolve`].
pub fn open_model(model: &Path, config: Option<&Path>) -> Result<OpenedModel, ModelError> {
    let (weights, dir) = if model.is_dir() {
        (model.to_path_buf(), model.to_path_buf())
    } else if model.is_file() {
        (
            model.to_path_buf(),
            model.parent().unwrap_or(Path::new(".")).to_path_buf(),
        )
    } else {
        return Err(ModelError::Open {
            path: model.to_path_buf(),
            message:
                "no such file or directory (give a UER .bin, an HF directory or a registry name)"
                    .into(),
        });
    };
    let (checkpoint, source, family) = read_as_uer_v2(&weights)?;
    let own = model.is_file().then(|| model.to_path_buf());
    let config_file = match config {
        Some(path) => path.to_path_buf(),
        None => {
            let names: &[&str] = if source == Source::Hf {
                &["config.json"]
            } else {
                &["uer_config.json", "config.json"]
            };
            let own_config = own.as_deref().map(|f| companion(f, "uer_config.json"));
            let candidates = own_config
                .into_iter()
                .filter(|_| source != Source::Hf)
                .chain(names.iter().map(|n| dir.join(n)));
            match candidates.into_iter().find(|p| p.is_file()) {
                Some(path) => path,
                None => {
                    return Err(missing_config(
                        model,
                        if source == Source::Hf {
                            "config.json"
                        } else {
                            "--config UER_CONFIG.json"
                        },
                    ));
                }
            }
        }
    };
    let cfg = if looks_like_hf_config(&config_file) {
        ModelConfig::from_hf_file(&config_file)?
    } else {
        ModelConfig::from_uer_file(&config_file)?
    };
    let mut opened = finish(checkpoint, cfg, source, family, dir);
    opened.file = own;
    opened.config_file = Some(config_file);
    Ok(opened)
}

/// Reads a checkpoint and renames it to UER naming v2.
fn read_as_uer_v2(weights: &Path) -> Result<(Checkpoint, Source, Layout), ModelError> {
    let open_err = |message: String| ModelError::Open {
        path: weights.to_path_buf(),
        message,
    };
    let raw = Checkpoint::open(weights).map_err(|e| open_err(e.to_string()))?;
    let (checkpoint, report) =
        convert::to_uer(&raw, &ToUerOptions::default()).map_err(|e| open_err(e.to_string()))?;
    Ok((checkpoint, report.source, report.family))
}

/// Sets the LN formula from where the weights came from, whatever spelling the config used,
/// and the causal mask and the LSTM encoder where the keys say so
/// ([`Layout::causal_by_keys`], [`Layout::is_lstm`]).
fn finish(
    checkpoint: Checkpoint,
    mut config: ModelConfig,
    source: Source,
    family: Layout,
    dir: PathBuf,
) -> OpenedModel {
    if family.causal_by_keys() {
        config.mask = MaskKind::Causal;
    }
    if family.is_lstm() {
        config.encoder = EncoderKind::Lstm;
    }
    match source {
        Source::Uer(_) => {
            config.ln_kind = LnKind::Uer;
            config.ln_eps = super::config::UER_LN_EPS;
        }
        Source::Hf => config.ln_kind = LnKind::Hf,
    }
    OpenedModel {
        checkpoint,
        config,
        source,
        dir,
        file: None,
        config_file: None,
    }
}

/// Opens a UER weights file with a UER config given as data (a registry entry's), not as a
/// file; `config_file`, when given, wins as in [`open_model`].
pub fn open_with_uer_config(
    path: &Path,
    uer: &crate::registry::UerConfig,
    config_file: Option<&Path>,
) -> Result<OpenedModel, ModelError> {
    if config_file.is_some() {
        return open_model(path, config_file);
    }
    let cfg = ModelConfig::from_uer(uer)?;
    let (checkpoint, source, family) = read_as_uer_v2(path)?;
    let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut opened = finish(checkpoint, cfg, source, family, dir);
    opened.file = Some(path.to_path_buf());
    Ok(opened)
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
        message: format!(
            "no model config found; pass {what} (UER-py's config JSON for the weights)"
        ),
    }
}
