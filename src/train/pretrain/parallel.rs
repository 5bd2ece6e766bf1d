//! The data-parallel driver: one replica per device, gradients all-reduced (`burn::collective`).

use super::checks::{check, check_resume};
use super::heads_init::untie_for_loading;
use super::state::OptimState;
use super::train_loop::Job;
use super::{PretrainOptions, PretrainResult, StepReport};
use crate::checkpoint::Checkpoint;
use crate::model::backend::run_on;
use crate::model::{DeviceSpec, ModelConfig};
use crate::progress::Progress;
use crate::train::TrainError;
use crate::train::dataset::DatasetFile;
use burn::module::{ModuleMapper, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;
use std::path::Path;

/// [`pretrain`](super::pretrain) data-parallel over `devices` (all CPU or all CUDA), through Burn's
/// collective operations (`burn::collective`): one thread and one model replica per device,
/// each batch split by rows across the replicas, the gradients averaged with
/// `GradientsParams::all_reduce` before the identical optimizer step on every replica
/// (as UER-py's DistributedDataParallel). Unlike UER-py, each replica weighs its mean loss by
/// its share of the batch's predicted tokens (and rows, for sentence prediction), so the
/// averaged gradient is the whole batch's and the run equals one device with the same
/// global batch (without dropout, whose masks each replica draws itself). Rank 0 reports
/// (the loss of its rows) and writes the checkpoints. `opts.batch_size` is the global batch.
#[allow(clippy::too_many_arguments)]
pub fn pretrain_data_parallel(
    ckpt: &Checkpoint,
    config: &ModelConfig,
    ds: &DatasetFile,
    opts: &PretrainOptions,
    output: &Path,
    resume: Option<OptimState>,
    devices: &[DeviceSpec],
    progress: &dyn Progress,
    on_report: &mut dyn FnMut(&StepReport),
) -> Result<PretrainResult, TrainError> {
    check(ds, config, ckpt, opts)?;
    check_resume(&resume, opts, ds)?;
    let world = devices.len();
    if world < 2 {
        return Err(TrainError::Options(
            "data-parallel pretraining needs at least two devices".into(),
        ));
    }
    if let Some(d) = devices.iter().find(|d| d.backend() != devices[0].backend()) {
        return Err(TrainError::Options(format!(
            "--devices mixes {} and {}; give devices of one backend",
            devices[0].backend(),
            d.backend()
        )));
    }
    if opts.batch_size < world {
        return Err(TrainError::Options(format!(
            "--batch-size {} is smaller than the {world} devices; each needs at least one row",
            opts.batch_size
        )));
    }
    let config_c = burn::collective::CollectiveConfig::default().with_num_devices(world);
    let peers = (0..world)
        .map(|rank| Peer {
            rank,
            world,
            config: config_c.clone(),
        })
        .collect();
    let ckpt = &untie_for_loading(ckpt, opts.target);
    run_replicas(
        ckpt, config, ds, opts, output, resume, devices, peers, progress, on_report,
    )
}

/// One thread and replica per device of this process; `peers[i]` is `devices[i]`'s place in
/// the run. The first replica reports through `progress` and `on_report`.
#[allow(clippy::too_many_arguments)]
pub(super) fn run_replicas(
    ckpt: &Checkpoint,
    config: &ModelConfig,
    ds: &DatasetFile,
    opts: &PretrainOptions,
    output: &Path,
    resume: Option<OptimState>,
    devices: &[DeviceSpec],
    peers: Vec<Peer>,
    progress: &dyn Progress,
    on_report: &mut dyn FnMut(&StepReport),
) -> Result<PretrainResult, TrainError> {
    let mut peers = peers.into_iter();
    let Some(first_peer) = peers.next() else {
        return Err(TrainError::Options("no device to train on".into()));
    };
    std::thread::scope(|scope| {
        let others: Vec<_> = peers
            .zip(&devices[1..])
            .map(|(peer, &device)| {
                let resume = resume.clone();
                scope.spawn(move || {
                    let mut quiet = |_: &StepReport| {};
                    run_on(
                        device,
                        Job {
                            ckpt,
                            config,
                            ds,
                            opts,
                            output,
                            resume,
                            progress: &crate::progress::NoProgress,
                            on_report: &mut quiet,
                            peer: Some(peer),
                        },
                    )
                })
            })
            .collect();
        let first = run_on(
            devices[0],
            Job {
                ckpt,
                config,
                ds,
                opts,
                output,
                resume,
                progress,
                on_report,
                peer: Some(first_peer),
            },
        );
        let mut result = first.map_err(TrainError::from).and_then(|r| r);
        for handle in others {
            let other = match handle.join() {
                Ok(r) => r.map_err(TrainError::from).and_then(|r| r.map(|_| ())),
                Err(_) => Err(TrainError::Options(
                    "a data-parallel worker panicked".into(),
                )),
            };
            if let (Ok(_), Err(e)) = (&result, other) {
                result = Err(e);
            }
        }
        result
    })
}

/// This replica's place in a data-parallel run: its global rank among all replicas of all
/// nodes, their number, and the collective configuration of its node.
#[derive(Debug, Clone)]
pub(super) struct Peer {
    pub(super) rank: usize,
    pub(super) world: usize,
    pub(super) config: burn::collective::CollectiveConfig,
}

impl Peer {
    pub(super) fn id(&self) -> burn::collective::PeerId {
        burn::collective::PeerId::from(self.rank)
    }
}

pub(super) fn collective_err(e: burn::collective::CollectiveError) -> TrainError {
    TrainError::Options(format!("data-parallel all-reduce failed: {e:?}"))
}

/// Gives the parameters ids 0, 1, 2, … in visiting order, so that the replicas of a
/// data-parallel run (each loaded on its own thread) name their gradients alike: the
/// all-reduce pairs gradients by id.
pub(super) struct RenumberParams {
    pub(super) next: u64,
}

impl<B: AutodiffBackend> ModuleMapper<B> for RenumberParams {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (_, tensor, mapper) = param.consume();
        let id = burn::module::ParamId::from(self.next);
        self.next += 1;
        Param::from_mapped_value(id, tensor, mapper)
    }
}
