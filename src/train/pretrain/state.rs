//! The optimizer state beside a checkpoint (`OUT-<step>.optim.safetensors`): what a resumed
//! run reads back, and the paths of a run's checkpoints.

use super::PretrainOptions;
use crate::train::TrainError;
use crate::train::dataset::DatasetFile;
use burn::tensor::Tensor;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The optimizer state beside a checkpoint: step, updates and per-parameter moments in the
/// model's parameter order.
#[derive(Debug, Clone, Default)]
pub struct OptimState {
    pub step: usize,
    pub updates: usize,
    /// Per parameter: (adam time, first moment, second moment), flattened.
    pub moments: Vec<HostMoments>,
    pub seed: u64,
    /// The options that must be the same to resume ([`run_fingerprint`]); empty in states
    /// written before uerzoo recorded them.
    pub run: BTreeMap<String, String>,
}

/// The options and dataset facts a resumed run must share with the run that saved the
/// state: changing any of them would not continue that run.
pub fn run_fingerprint(opts: &PretrainOptions, ds: &DatasetFile) -> BTreeMap<String, String> {
    let h = &ds.header;
    [
        ("target", opts.target.to_string()),
        ("batch-size", opts.batch_size.to_string()),
        ("accumulation-steps", opts.accumulation_steps.to_string()),
        ("learning-rate", opts.learning_rate.to_string()),
        ("warmup", opts.warmup.to_string()),
        ("seed", opts.seed.to_string()),
        ("dataset seq_length", h.seq_length.to_string()),
        ("dataset instances", h.instances.to_string()),
        ("dataset vocabulary sha256", hex::encode(h.vocab_sha256)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Adam state of one parameter on the host: (time, first moment, second moment), flattened;
/// `None` for a parameter that has had no gradient.
pub type HostMoments = Option<(usize, Vec<f32>, Vec<f32>)>;

/// The same on the device.
pub(super) type DeviceMoments<B> = Option<(usize, Tensor<B, 1>, Tensor<B, 1>)>;

const STATE_FORMAT: &str = "uerzoo-pretrain-optimizer-1";

/// Where the optimizer state of checkpoint `ckpt` lives.
pub fn state_path(ckpt: &Path) -> PathBuf {
    let mut s = ckpt.as_os_str().to_owned();
    s.push(".optim.safetensors");
    PathBuf::from(s)
}

/// The path of the checkpoint of step `step` for output `out`.
pub fn step_path(out: &Path, step: usize) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(format!("-{step}"));
    PathBuf::from(s)
}

impl OptimState {
    /// Writes the state as safetensors (`m.{i}`, `v.{i}`; step, updates, seed and times in
    /// the metadata), atomically.
    pub fn save(&self, path: &Path) -> Result<(), TrainError> {
        // Written here rather than by `safetensors::serialize`, whose metadata is a
        // `HashMap`: its order, and so the file's bytes, changed from run to run. Names in
        // sorted order, data in the same order, so equal states are equal files.
        let mut tensors: BTreeMap<String, &[f32]> = BTreeMap::new();
        let mut times = Vec::new();
        for (i, m) in self.moments.iter().enumerate() {
            match m {
                Some((t, m1, m2)) => {
                    times.push(*t);
                    tensors.insert(format!("m.{i:04}"), m1);
                    tensors.insert(format!("v.{i:04}"), m2);
                }
                None => times.push(0),
            }
        }
        let meta = serde_json::json!({
            "format": STATE_FORMAT,
            "step": self.step.to_string(),
            "updates": self.updates.to_string(),
            "seed": self.seed.to_string(),
            "params": self.moments.len().to_string(),
            "run": serde_json::to_string(&self.run).unwrap_or_default(),
            "times": serde_json::to_string(&times).unwrap_or_default(),
        });
        let mut header = serde_json::Map::new();
        header.insert("__metadata__".into(), meta);
        let mut offset = 0usize;
        for (name, values) in &tensors {
            let len = std::mem::size_of_val(*values);
            header.insert(
                name.clone(),
                serde_json::json!({"dtype": "F32", "shape": [values.len()], "data_offsets": [offset, offset + len]}),
            );
            offset += len;
        }
        let mut json = serde_json::to_vec(&header).map_err(|e| state_err(path, &e.to_string()))?;
        while json.len() % 8 != 0 {
            json.push(b' ');
        }
        let dir = crate::output::parent_dir(path);
        let mut tmp = crate::output::Partial::new_in(dir).map_err(|e| io(dir, e))?;
        let mut write = |bytes: &[u8]| std::io::Write::write_all(&mut tmp, bytes);
        write(&(json.len() as u64).to_le_bytes())
            .and_then(|()| write(&json))
            .and_then(|()| {
                tensors
                    .values()
                    .try_for_each(|v| write(bytemuck::cast_slice(v)))
            })
            .map_err(|e| io(path, e))?;
        tmp.persist(path, true).map_err(|e| io(path, e.into()))
    }

    /// Reads a state written by [`Self::save`].
    pub fn load(path: &Path) -> Result<Self, TrainError> {
        let data = std::fs::read(path).map_err(|e| io(path, e))?;
        let st = safetensors::SafeTensors::deserialize(&data)
            .map_err(|e| state_err(path, &e.to_string()))?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&data)
            .map_err(|e| state_err(path, &e.to_string()))?;
        let meta = meta.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some(STATE_FORMAT) {
            return Err(state_err(path, "not a uerzoo optimizer state"));
        }
        let num = |k: &str| -> Result<usize, TrainError> {
            meta.get(k)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| state_err(path, &format!("metadata `{k}` missing")))
        };
        let times: Vec<usize> = meta
            .get("times")
            .and_then(|t| serde_json::from_str(t).ok())
            .ok_or_else(|| state_err(path, "metadata `times` missing"))?;
        let floats = |name: &str| -> Option<Vec<f32>> {
            st.tensor(name)
                .ok()
                .map(|t| bytemuck::pod_collect_to_vec(t.data()))
        };
        let mut moments = Vec::new();
        for (i, &t) in times.iter().enumerate() {
            moments.push(
                match (floats(&format!("m.{i:04}")), floats(&format!("v.{i:04}"))) {
                    (Some(m), Some(v)) => Some((t, m, v)),
                    _ => None,
                },
            );
        }
        let run = match meta.get("run") {
            Some(r) => serde_json::from_str(r)
                .map_err(|e| state_err(path, &format!("metadata `run`: {e}")))?,
            None => BTreeMap::new(),
        };
        Ok(OptimState {
            step: num("step")?,
            updates: num("updates")?,
            seed: num("seed")? as u64,
            moments,
            run,
        })
    }
}

fn io(path: &Path, source: std::io::Error) -> TrainError {
    TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn state_err(path: &Path, message: &str) -> TrainError {
    TrainError::Dataset {
        path: path.to_path_buf(),
        message: format!("optimizer state: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_states_are_equal_files_and_read_back() {
        let state = OptimState {
            step: 8,
            updates: 4,
            moments: vec![
                Some((4, vec![0.5, -1.0, 2.0], vec![0.25, 1.0, 4.0])),
                None,
                Some((3, vec![1e-8], vec![3.0])),
            ],
            seed: 7,
            run: BTreeMap::from([("target".into(), "mlm".into()), ("seed".into(), "7".into())]),
        };
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        state.save(&a).unwrap();
        state.save(&b).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        let back = OptimState::load(&a).unwrap();
        assert_eq!((back.step, back.updates, back.seed), (8, 4, 7));
        assert_eq!(back.run, state.run);
        assert_eq!(back.moments, state.moments);
    }
}
