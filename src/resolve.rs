//! What a model argument names: a path (a UER `.bin`, an HF directory), or a registry name
//! or alias whose weights are in the cache (the HF snapshot `uerzoo download NAME` made, or
//! an imported legacy file). This module sits above both `hub` (where the cache is) and
//! `model` (how weights are opened), so that neither knows the other.

use crate::model::ModelError;
use crate::model::open::{OpenedModel, open_model as open_path, open_with_uer_config};
use crate::registry::{Entry, Registry};
use std::path::Path;

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
/// imported legacy UER file with the registry's UER config.
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
    let uer = entry.uer_config().map_err(|e| ModelError::Open {
        path: path.clone(),
        message: e.to_string(),
    })?;
    open_with_uer_config(&path, &uer, config)
}
