//! `uerzoo pretrain` as one library call: [`run`] takes a [`PretrainTask`] (what the
//! command line says), checks the output, opens the dataset and the starting weights (a
//! model, or a config for a run from scratch), resumes a checkpoint, picks one device,
//! several (data-parallel) or several nodes, trains, and writes the output with its config
//! and vocabulary beside it (or rescues the weights when it cannot). It never prints:
//! steps go to a [`Progress`], notes to [`Progress::note`], report lines to a callback.

use super::{
    NodeOptions, OptimState, PretrainOptions, StepReport, check_vocab, complete_heads, pretrain,
    pretrain_data_parallel, pretrain_multi_node, scratch_checkpoint, state_path, write_uer,
};
use crate::checkpoint::Checkpoint;
use crate::convert::{self, ToUerOptions};
use crate::model::{DeviceSpec, LnKind, ModelConfig};
use crate::output::Written;
use crate::progress::Progress;
use crate::train::TrainError;
use crate::train::dataset::DatasetFile;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// This process's place in a multi-node run, as given; what is not given comes from
/// torchrun's environment variables (`WORLD_SIZE`, `RANK`, `MASTER_ADDR`, `MASTER_PORT`).
#[derive(Debug, Clone)]
pub struct NodeRequest {
    /// Nodes (default: `$WORLD_SIZE`, else 1: a run on this machine alone).
    pub nnodes: Option<usize>,
    /// This node's rank (default: `$RANK`).
    pub node_rank: Option<usize>,
    /// Node 0's `HOST:PORT` (default: `$MASTER_ADDR:$MASTER_PORT`).
    pub master_addr: Option<String>,
    /// This node's `HOST` or `HOST:PORT` as the others reach it.
    pub node_addr: Option<String>,
    pub join_timeout: Duration,
    /// See [`NodeOptions::on_lost`].
    pub on_lost: Option<fn(&str)>,
}

impl Default for NodeRequest {
    fn default() -> Self {
        NodeRequest {
            nnodes: None,
            node_rank: None,
            master_addr: None,
            node_addr: None,
            join_timeout: Duration::from_secs(60),
            on_lost: None,
        }
    }
}

/// Everything `uerzoo pretrain` is told.
#[derive(Debug, Clone)]
pub struct PretrainTask {
    /// Starting weights: a UER `.bin`, an HF directory or a registry name; `None`: from
    /// scratch with `config`.
    pub model: Option<PathBuf>,
    /// UER config (default: beside `model`).
    pub config: Option<PathBuf>,
    /// The vocabulary the dataset was made with (default: beside `model`).
    pub vocab: Option<PathBuf>,
    /// The dataset (`uerzoo preprocess`).
    pub dataset: PathBuf,
    /// Target, steps, learning rate, naming of the checkpoints (v1 unless asked for v2)…
    pub options: PretrainOptions,
    /// One device, or several for a data-parallel run (at least one).
    pub devices: Vec<DeviceSpec>,
    pub nodes: NodeRequest,
    /// A checkpoint `OUTPUT-<step>` of an earlier run to continue from.
    pub resume: Option<PathBuf>,
    /// The final UER checkpoint; step checkpoints are `OUTPUT-<step>`.
    pub output: PathBuf,
    /// Replace an existing output.
    pub force: bool,
}

/// What [`run`] did.
#[derive(Debug, Clone)]
pub struct PretrainReport {
    pub steps_run: usize,
    pub seconds: f64,
    pub tokens_per_s: f64,
    /// Whether this process wrote the output (a multi-node run's node 0 does, the others
    /// write nothing).
    pub wrote: bool,
    /// Config and vocabulary written beside the output.
    pub companions: Vec<Written>,
}

/// Where a run starts: the weights (UER naming v2), config, whether the decoder is tied,
/// the vocabulary to check the dataset against, the UER config file to copy beside the
/// output.
struct Start {
    ckpt: Checkpoint,
    config: ModelConfig,
    tie: bool,
    vocab: Option<PathBuf>,
    config_file: Option<PathBuf>,
}

/// Does what `uerzoo pretrain` does: see the module documentation.
pub fn run(
    task: &PretrainTask,
    progress: &dyn Progress,
    on_report: &mut dyn FnMut(&StepReport),
) -> Result<PretrainReport, TrainError> {
    let Some(&device) = task.devices.first() else {
        return Err(TrainError::Options("give at least one --device".into()));
    };
    let node = node_options(&task.nodes)?;
    let writes = node.as_ref().is_none_or(|n| n.node_rank == 0);
    // The output is checked before anything is loaded or trained.
    if writes {
        crate::output::check_file(&task.output, task.force)?;
    }
    let inputs = [
        (Some(&task.dataset), "--dataset"),
        (task.model.as_ref(), "--model"),
    ];
    for (input, what) in inputs {
        if let Some(input) = input {
            crate::output::check_not_input(&task.output, input, what)?;
        }
    }
    let ds = DatasetFile::open(&task.dataset)?;
    let Start {
        mut ckpt,
        config,
        tie,
        vocab,
        config_file,
    } = start(task, &ds)?;
    match &vocab {
        Some(v) => check_vocab(&ds, v)?,
        None => progress.note("note: no vocabulary to check the dataset against; pass --vocab"),
    }
    let resume = match &task.resume {
        Some(path) => {
            ckpt = read_v2(path)?;
            let state = OptimState::load(&state_path(path))
                .map_err(|e| e.context("reading the optimizer state beside the checkpoint"))?;
            Some(state)
        }
        None => None,
    };
    let opts = &task.options;
    complete_heads(&mut ckpt, &config, opts.target, tie, opts.seed);
    let (out, devices) = (&task.output, &task.devices);
    let r = match &node {
        Some(node) => pretrain_multi_node(
            &ckpt, &config, &ds, opts, out, resume, devices, node, progress, on_report,
        )?,
        None if devices.len() > 1 => pretrain_data_parallel(
            &ckpt, &config, &ds, opts, out, resume, devices, progress, on_report,
        )?,
        None => pretrain(
            &ckpt, &config, &ds, opts, out, resume, device, progress, on_report,
        )?,
    };
    let mut report = PretrainReport {
        steps_run: r.steps_run,
        seconds: r.seconds,
        tokens_per_s: r.tokens_per_s,
        wrote: writes,
        companions: Vec::new(),
    };
    if !writes {
        return Ok(report);
    }
    if let Err(e) = write_uer(&r.checkpoint, opts.naming, out) {
        // The run is not lost: the weights go beside the output as they are (naming v2).
        let rescue = PathBuf::from(format!(
            "{}.rescued-{}.bin",
            out.display(),
            std::process::id()
        ));
        return Err(match r.checkpoint.write_torch(&rescue, false) {
            Ok(()) => e.context(format!(
                "the pretrained weights are saved in {} (UER naming v2); convert them with `uerzoo convert`",
                rescue.display()
            )),
            Err(_) => e.context("the pretrained weights could not be saved"),
        });
    }
    // Every command opens the output by its path alone.
    report.companions = crate::output::write_beside(out, config_file.map(Into::into), vocab)?;
    Ok(report)
}

/// The multi-node options: the request, else torchrun's environment variables; `None` for
/// a run on one node.
fn node_options(r: &NodeRequest) -> Result<Option<NodeOptions>, TrainError> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let number = |k: &str| -> Result<Option<usize>, TrainError> {
        env(k)
            .map(|v| {
                v.parse()
                    .map_err(|_| TrainError::Options(format!("${k} is `{v}`, not a whole number")))
            })
            .transpose()
    };
    let nnodes = match r.nnodes {
        Some(n) => n,
        None => number("WORLD_SIZE")?.unwrap_or(1),
    };
    if nnodes <= 1 {
        return Ok(None);
    }
    let node_rank = match r.node_rank {
        Some(rank) => rank,
        None => number("RANK")?.ok_or_else(|| {
            TrainError::Options(
                "a multi-node run needs --node-rank (or $RANK) on every node".into(),
            )
        })?,
    };
    let master = match (&r.master_addr, env("MASTER_ADDR"), env("MASTER_PORT")) {
        (Some(m), _, Some(p)) if !m.contains(':') => format!("{m}:{p}"),
        (Some(m), _, _) => m.clone(),
        (None, Some(h), Some(p)) => format!("{h}:{p}"),
        (None, Some(h), None) => h,
        (None, None, _) => {
            return Err(TrainError::Options(
                "a multi-node run needs --master-addr HOST:PORT (or $MASTER_ADDR and $MASTER_PORT): node 0's address".into(),
            ));
        }
    };
    Ok(Some(NodeOptions {
        nnodes,
        node_rank,
        master,
        node_address: r.node_addr.clone(),
        join_timeout: r.join_timeout,
        on_lost: r.on_lost,
    }))
}

/// `60s`, `2m` or `60` (seconds): the form of `--join-timeout`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = match s.strip_suffix('s') {
        Some(n) => (n, 1.0),
        None => match s.strip_suffix('m') {
            Some(n) => (n, 60.0),
            None => (s, 1.0),
        },
    };
    n.trim()
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && *x > 0.0)
        .map(|x| Duration::from_secs_f64(x * unit))
        .ok_or_else(|| format!("`{s}` is not a duration such as 60s, 2m or 60"))
}

/// The starting weights: the model's, or UER-py's initialisation from the config alone.
fn start(task: &PretrainTask, ds: &DatasetFile) -> Result<Start, TrainError> {
    if let Some(m) = &task.model {
        let opened = crate::resolve::open_model(m, task.config.as_deref())?;
        let vocab = task.vocab.clone().or_else(|| opened.vocab_file());
        let tie = config_flag(task.config.as_deref(), &opened.dir, "tie_weights");
        let config_file = task
            .config
            .clone()
            .or_else(|| Some(opened.dir.join("uer_config.json")).filter(|p| p.is_file()));
        return Ok(Start {
            ckpt: opened.checkpoint,
            config: opened.config,
            tie,
            vocab,
            config_file,
        });
    }
    let Some(path) = task.config.as_deref() else {
        return Err(TrainError::Options("give --model or --config".into()));
    };
    let mut config = ModelConfig::from_uer_file(path)?;
    let io = |source| TrainError::Io {
        path: path.into(),
        source,
    };
    let text = std::fs::read_to_string(path).map_err(io)?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
    config.vocab_size = ds.header.vocab_size;
    config.max_seq_length = json
        .get("max_seq_length")
        .and_then(|v| v.as_u64())
        .unwrap_or(512) as usize;
    config.ln_kind = LnKind::Uer;
    let tie = json
        .get("tie_weights")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let ckpt = scratch_checkpoint(&config, task.options.target, tie, task.options.seed);
    Ok(Start {
        ckpt,
        config,
        tie,
        vocab: task.vocab.clone(),
        config_file: task.config.clone(),
    })
}

/// A boolean of the UER config (given, or `uer_config.json` in `dir`).
fn config_flag(config: Option<&Path>, dir: &Path, key: &str) -> bool {
    let path = config
        .map(Path::to_path_buf)
        .unwrap_or(dir.join("uer_config.json"));
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get(key).and_then(|x| x.as_bool()))
        .unwrap_or(false)
}

/// A checkpoint to resume from, in UER naming v2.
fn read_v2(path: &Path) -> Result<Checkpoint, TrainError> {
    let raw = Checkpoint::open(path)
        .map_err(|e| TrainError::from(e).context(format!("reading `{}`", path.display())))?;
    Ok(convert::to_uer(&raw, &ToUerOptions::default())?.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_seconds_or_minutes() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0s").is_err() && parse_duration("soon").is_err());
    }

    #[test]
    fn one_node_unless_told_otherwise() {
        let one = NodeRequest {
            nnodes: Some(1),
            ..Default::default()
        };
        assert!(node_options(&one).unwrap().is_none());
        let two = NodeRequest {
            nnodes: Some(2),
            node_rank: Some(1),
            master_addr: Some("10.0.0.1:29500".into()),
            ..Default::default()
        };
        let n = node_options(&two).unwrap().unwrap();
        assert_eq!(
            (n.nnodes, n.node_rank, n.master.as_str()),
            (2, 1, "10.0.0.1:29500")
        );
    }
}
