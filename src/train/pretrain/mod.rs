//! Pretraining as UER-py's `pretrain.py` does it: targets `mlm` (RoBERTa), `bert`
//! (MLM + next-sentence prediction), `albert` (MLM + sentence-order prediction) and `lm`
//! (GPT-2), UER's AdamW without bias correction
//! and the warmup/linear schedule ([`super::optim`]), optional gradient accumulation and
//! global-norm clipping, a report every `report_steps` (loss, accuracy over predicted
//! tokens, tokens/s) and UER checkpoints `OUT-<step>` with the optimizer state beside them
//! (`OUT-<step>.optim.safetensors`), from which [`pretrain`] resumes bit for bit.
//!
//! Determinism: the instance order of epoch e is a ChaCha8 permutation of (seed, e); dynamic
//! masks of step s come from ChaCha8 (seed, stream s) and dropout from the backend and the
//! fused kernels' stream ([`crate::kernels::seed`]), both seeded with seed + s before step
//! s. Nothing depends on what ran before a step except the weights and the optimizer state,
//! which the checkpoint pair holds exactly (f32).
//!
//! Steps count forward passes as UER-py's trainer does; the optimizer updates every
//! `accumulation_steps` passes and the schedule advances once per update.

mod batch;
mod checks;
mod export;
mod heads_init;
mod multinode;
mod parallel;
mod param_update;
mod state;
mod task;
mod train_loop;
mod watchdog;

pub use checks::{check, check_vocab};
pub use export::{export, write_uer};
pub use heads_init::{complete_heads, scratch_checkpoint};
pub use multinode::{NodeOptions, node_fingerprint, pretrain_multi_node};
pub use parallel::pretrain_data_parallel;
pub use state::{HostMoments, OptimState, run_fingerprint, state_path, step_path};
pub use task::{NodeRequest, PretrainReport, PretrainTask, parse_duration, run};

use crate::checkpoint::Checkpoint;
use crate::convert::Naming;
use crate::model::backend::run_on;
use crate::model::{DeviceSpec, ModelConfig};
use crate::progress::Progress;
use crate::train::TrainError;
use crate::train::dataset::{DatasetFile, PretrainTarget};
use crate::train::optim::UerAdamW;
use checks::check_resume;
use heads_init::untie_for_loading;
use std::path::{Path, PathBuf};
use train_loop::Job;

/// Options of [`pretrain`] (UER-py's `pretrain.py` flags; its defaults in brackets).
#[derive(Debug, Clone)]
pub struct PretrainOptions {
    pub target: PretrainTarget,
    /// Forward passes [100000].
    pub total_steps: usize,
    /// Instances per pass [32].
    pub batch_size: usize,
    /// Peak learning rate [1e-4].
    pub learning_rate: f64,
    /// Warmup fraction of `total_steps` [0.1].
    pub warmup: f64,
    /// Passes per optimizer update [1].
    pub accumulation_steps: usize,
    /// Report every R passes [100].
    pub report_steps: usize,
    /// Save `OUT-<step>` every S passes [10000].
    pub save_checkpoint_steps: usize,
    /// [7].
    pub seed: u64,
    /// Clip the global gradient norm to this (UER-py 2022: none).
    pub max_grad_norm: Option<f64>,
    /// Dropout; `None` = the config's.
    pub dropout: Option<f64>,
    /// Key names of the checkpoints written.
    pub naming: Naming,
    pub optimizer: UerAdamW,
}

impl Default for PretrainOptions {
    fn default() -> Self {
        PretrainOptions {
            target: PretrainTarget::Mlm,
            total_steps: 100_000,
            batch_size: 32,
            learning_rate: 1e-4,
            warmup: 0.1,
            accumulation_steps: 1,
            report_steps: 100,
            save_checkpoint_steps: 10_000,
            seed: 7,
            max_grad_norm: None,
            dropout: None,
            naming: Naming::V1,
            optimizer: UerAdamW::default(),
        }
    }
}

/// One report line (means over the passes since the previous report).
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    pub step: usize,
    pub total_steps: usize,
    /// Total loss (mlm + sp for `bert` and `albert`).
    pub loss: f64,
    /// Accuracy over the predicted tokens (masked for mlm/bert, all for lm).
    pub acc: f64,
    /// `bert` (NSP) and `albert` (SOP): the MLM part of `loss`, and the sentence-prediction
    /// loss and accuracy.
    pub loss_mlm: Option<f64>,
    pub loss_sp: Option<f64>,
    pub acc_sp: Option<f64>,
    /// `batch · seq · passes / seconds`, as UER-py counts it.
    pub tokens_per_s: f64,
    /// Learning rate of the last update.
    pub lr: f64,
}

/// What [`pretrain`] returns.
#[derive(Debug, Clone)]
pub struct PretrainResult {
    pub reports: Vec<StepReport>,
    /// Checkpoints written (`OUT-<step>`).
    pub saved: Vec<PathBuf>,
    /// The final weights, UER naming v2.
    pub checkpoint: Checkpoint,
    pub seconds: f64,
    /// Tokens/s over the whole run.
    pub tokens_per_s: f64,
    /// Passes run (not counting the resumed ones).
    pub steps_run: usize,
}

/// Pretrains `ckpt` (UER naming v2, heads completed for the target) with `config` on `ds`.
/// `resume`: the optimizer state of the checkpoint `ckpt` was loaded from.
#[allow(clippy::too_many_arguments)]
pub fn pretrain(
    ckpt: &Checkpoint,
    config: &ModelConfig,
    ds: &DatasetFile,
    opts: &PretrainOptions,
    output: &Path,
    resume: Option<OptimState>,
    device: DeviceSpec,
    progress: &dyn Progress,
    on_report: &mut dyn FnMut(&StepReport),
) -> Result<PretrainResult, TrainError> {
    check(ds, config, ckpt, opts)?;
    check_resume(&resume, opts, ds)?;
    let ckpt = &untie_for_loading(ckpt, opts.target);
    run_on(
        device,
        Job {
            ckpt,
            config,
            ds,
            opts,
            output,
            resume,
            progress,
            on_report,
            peer: None,
        },
    )?
}
