//! Writing a fine-tuned classifier: a UER `.bin` with run_classifier's keys (embedding and
//! encoder in the requested naming generation + `output_layer_{1,2}`), which UER-py's
//! run_classifier_infer loads, or a Huggingface `BertForSequenceClassification` directory
//! through [`crate::convert::run`]. Both are written atomically (temp file, then rename).

use super::TrainError;
use crate::checkpoint::Checkpoint;
use crate::convert::{self, Naming, ToUerOptions};
use crate::registry::UerConfig;
use std::path::{Path, PathBuf};

/// Writes `ckpt` (UER naming v2: a classifier from [`super::classifier::to_checkpoint`], or a
/// pretrained model) as a torch `.bin` in naming `naming`.
pub fn save_uer(
    ckpt: &Checkpoint,
    naming: Naming,
    path: &Path,
    force: bool,
) -> Result<(), TrainError> {
    let (out, _) = convert::to_uer(
        ckpt,
        &ToUerOptions {
            naming,
            ..Default::default()
        },
    )?;
    out.write_torch(path, force)?;
    Ok(())
}

/// Writes `ckpt` as an HF `BertForSequenceClassification` directory `dir` (config from
/// `uer_config` when given, tokenizer files from `vocab`). `recorded` keys (the reading
/// options a classifier was trained with: `seq_length`, `pooling`, `truncation`) are added
/// to its `config.json`, where `predict` and `serve` read them back (transformers keeps
/// unknown config keys as attributes and ignores them). Returns the files written.
pub fn save_hf(
    ckpt: &Checkpoint,
    dir: &Path,
    uer_config: Option<UerConfig>,
    vocab: Option<PathBuf>,
    recorded: &serde_json::Map<String, serde_json::Value>,
    force: bool,
) -> Result<Vec<PathBuf>, TrainError> {
    let parent = crate::output::parent_dir(dir);
    let tmp = crate::output::PartialDir::new_in(parent).map_err(|e| TrainError::Io {
        path: parent.into(),
        source: e,
    })?;
    let bin = tmp.path().join("classifier.bin");
    save_uer(ckpt, Naming::V1, &bin, true)?;
    let req = convert::ConvertRequest {
        input: bin,
        output: dir.to_path_buf(),
        to: convert::To::Hf,
        arch: None,
        uer_config,
        vocab,
        naming: Naming::V1,
        exact_layernorm: false,
        format: None,
        dry_run: false,
        force,
        allow_unmapped: false,
        dtype: None,
        copy_ranges: true,
    };
    let written = convert::run(&req)?.written;
    if !recorded.is_empty() {
        record_in_config(&dir.join("config.json"), recorded)?;
    }
    Ok(written)
}

/// Adds `recorded` to the HF `config.json` at `path` (rewritten atomically).
fn record_in_config(
    path: &Path,
    recorded: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), TrainError> {
    let io = |source| TrainError::Io {
        path: path.into(),
        source,
    };
    let text = std::fs::read_to_string(path).map_err(io)?;
    let mut json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
    let Some(obj) = json.as_object_mut() else {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "config.json is not a JSON object",
        )));
    };
    obj.extend(recorded.clone());
    let text = serde_json::to_string_pretty(&json)
        .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?
        + "\n";
    convert::hf_config::write_atomic(path, |p| std::fs::write(p, &text))?;
    Ok(())
}
