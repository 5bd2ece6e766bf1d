//! The `inspect` command as one call, [`inspect`]: what a tensor file holds (format, tensor
//! count, parameters, bytes, tied groups, each tensor) and the model family its names say
//! (through the conversion tables), optionally with the time the read took. It prints
//! nothing: the [`Inspection`] renders itself as text or JSON.

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::convert::ConvertError;
use std::path::PathBuf;

/// The `inspect` command's options.
#[derive(Debug, Clone)]
pub struct InspectJob {
    /// A `.bin`/`.safetensors` file, or a directory holding `model.safetensors` or
    /// `pytorch_model.bin`.
    pub path: PathBuf,
    /// Also time the read, touching every tensor byte.
    pub time: bool,
}

/// The model family the tensor names say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectedModel {
    pub family: String,
    /// The naming (UER v1/v2, HF).
    pub naming: String,
    pub layers: usize,
}

/// How long reading took, every byte touched.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadTiming {
    pub seconds: f64,
    pub mib_per_second: f64,
    /// The sum of all tensor bytes (what touching them computed).
    pub byte_sum: u64,
    /// Peak and current memory of this process in KiB (`VmHWM`, `RssAnon`, `RssFile`;
    /// Linux only, else empty).
    pub memory: Vec<(&'static str, u64)>,
}

/// What [`inspect`] found.
#[derive(Debug)]
pub struct Inspection {
    pub checkpoint: Checkpoint,
    /// The family, or why none was detected (with what to do).
    pub model: Result<DetectedModel, String>,
    pub timing: Option<ReadTiming>,
}

/// The file could not be read; the source names it and why.
#[derive(Debug, thiserror::Error)]
#[error("cannot inspect {}", path.display())]
pub struct InspectError {
    pub path: PathBuf,
    #[source]
    pub source: CheckpointError,
}

/// Runs `inspect` (see the module docs). Nothing in the file is executed.
pub fn inspect(job: &InspectJob) -> Result<Inspection, InspectError> {
    let start = std::time::Instant::now();
    let checkpoint = Checkpoint::open(&job.path).map_err(|source| InspectError {
        path: job.path.clone(),
        source,
    })?;
    let timing = job.time.then(|| {
        let byte_sum = checkpoint.tensors.iter().fold(0u64, |acc, (_, t)| {
            t.bytes().chunks(8).fold(acc, |a, c| {
                a.wrapping_add(c.iter().map(|&b| b as u64).sum::<u64>())
            })
        });
        let seconds = start.elapsed().as_secs_f64();
        ReadTiming {
            seconds,
            mib_per_second: checkpoint.num_bytes() as f64 / seconds / (1 << 20) as f64,
            byte_sum,
            memory: memory(),
        }
    });
    let model = crate::convert::detect(&checkpoint)
        .map(|d| DetectedModel {
            family: d.family.to_string(),
            naming: d.source.to_string(),
            layers: d.layers,
        })
        .map_err(not_detected);
    Ok(Inspection {
        checkpoint,
        model,
        timing,
    })
}

impl Inspection {
    /// One JSON object: the checkpoint's summary, the family (or why not) and the timing.
    pub fn json(&self) -> serde_json::Value {
        let mut summary = self.checkpoint.summary();
        match &self.model {
            Ok(m) => {
                summary["family"] = m.family.as_str().into();
                summary["naming"] = m.naming.as_str().into();
                summary["layers"] = m.layers.into();
            }
            Err(why) => summary["family"] = format!("not detected: {why}").into(),
        }
        if let Some(t) = &self.timing {
            summary["read_seconds"] = t.seconds.into();
            summary["read_mib_per_second"] = t.mib_per_second.into();
            summary["byte_sum"] = t.byte_sum.into();
            for (k, v) in &t.memory {
                summary[*k] = (*v).into();
            }
        }
        summary
    }

    /// The text report, lines ending in `\n`.
    pub fn text(&self) -> String {
        let mut out = self.checkpoint.summary_text();
        match &self.model {
            Ok(m) => {
                out += &format!(
                    "model:      {}, {} layers, {}\n",
                    m.family, m.layers, m.naming
                )
            }
            Err(why) => out += &format!("model:      not detected ({why})\n"),
        }
        if let Some(t) = &self.timing {
            let (secs, mib_s) = (t.seconds, t.mib_per_second);
            out += &format!("read:       {secs:.3} s, {mib_s:.0} MiB/s (every byte touched)\n");
            let mem: Vec<String> = t
                .memory
                .iter()
                .map(|(k, v)| format!("{k} {:.1} MiB", *v as f64 / 1024.0))
                .collect();
            out += &format!("memory:     {}\n", mem.join(", "));
        }
        out
    }
}

/// Why the family was not detected, with what to do (`inspect` itself has no `--arch`).
fn not_detected(e: ConvertError) -> String {
    match e {
        ConvertError::UnknownFamily { sample, .. } => format!(
            "the keys match no family uerzoo converts (first keys: {sample}); if it is a \
             bert, roberta, word-roberta, gpt2 or albert model, name it to convert: \
             `uerzoo convert FILE OUT --to hf --arch bert`"
        ),
        e => e.to_string(),
    }
}

/// Peak and current memory of this process in KiB, from `/proc/self/status` (Linux only):
/// `RssAnon` is what the reader allocated; `RssFile` is the mapped file's pages.
fn memory() -> Vec<(&'static str, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    ["VmHWM", "RssAnon", "RssFile"]
        .into_iter()
        .filter_map(|key| {
            let line = status
                .lines()
                .find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))?;
            let kib = line[key.len() + 1..]
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()?;
            Some((key, kib))
        })
        .collect()
}
