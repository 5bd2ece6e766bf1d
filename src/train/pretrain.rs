//! Pretraining as UER-py's `pretrain.py` does it: targets `mlm` (RoBERTa), `bert`
//! (MLM + next-sentence prediction) and `lm` (GPT-2), UER's AdamW without bias correction
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

use super::TrainError;
use super::classifier;
use super::dataset::{DatasetFile, Record, Target, mask_seq};
use super::optim::{UerAdamW, WarmupLinear};
use crate::checkpoint::{Checkpoint, Tensor as CkptTensor};
use crate::convert::Naming;
use crate::kernels;
use crate::model::backend::{BackendJob, run_on};
use crate::model::heads::Decoder;
use crate::model::layer_norm::LayerNorm;
use crate::model::load::keys;
use crate::model::{DeviceSpec, MaskKind, Model, ModelConfig, load_model};
use crate::progress::Progress;
use burn::backend::Autodiff;
use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param};
use burn::nn::Linear;
use burn::optim::{AdaptiveMomentumState, GradientsAccumulator, GradientsParams, SimpleOptimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Options of [`pretrain`] (UER-py's `pretrain.py` flags; its defaults in brackets).
#[derive(Debug, Clone)]
pub struct PretrainOptions {
    pub target: Target,
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
            target: Target::Mlm,
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
    /// Total loss (mlm + sp for `bert`).
    pub loss: f64,
    /// Accuracy over the predicted tokens (masked for mlm/bert, all for lm).
    pub acc: f64,
    /// `bert`: sentence-prediction loss and accuracy.
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
type DeviceMoments<B> = Option<(usize, Tensor<B, 1>, Tensor<B, 1>)>;

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
        let mut bytes: Vec<(String, Vec<u8>, usize)> = Vec::new();
        let mut times = Vec::new();
        for (i, m) in self.moments.iter().enumerate() {
            match m {
                Some((t, m1, m2)) => {
                    times.push(*t);
                    bytes.push((
                        format!("m.{i:04}"),
                        bytemuck::cast_slice(m1).to_vec(),
                        m1.len(),
                    ));
                    bytes.push((
                        format!("v.{i:04}"),
                        bytemuck::cast_slice(m2).to_vec(),
                        m2.len(),
                    ));
                }
                None => times.push(0),
            }
        }
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
            .iter()
            .map(|(n, b, len)| {
                let view =
                    safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![*len], b)
                        .expect("shape matches the bytes");
                (n.clone(), view)
            })
            .collect();
        let meta = HashMap::from([
            ("format".to_string(), STATE_FORMAT.to_string()),
            ("step".to_string(), self.step.to_string()),
            ("updates".to_string(), self.updates.to_string()),
            ("seed".to_string(), self.seed.to_string()),
            ("params".to_string(), self.moments.len().to_string()),
            (
                "run".to_string(),
                serde_json::to_string(&self.run).unwrap_or_default(),
            ),
            (
                "times".to_string(),
                serde_json::to_string(&times).unwrap_or_default(),
            ),
        ]);
        let data = safetensors::tensor::serialize(views, Some(meta))
            .map_err(|e| state_err(path, &e.to_string()))?;
        let dir = crate::output::parent_dir(path);
        let mut tmp = crate::output::Partial::new_in(dir).map_err(|e| io(dir, e))?;
        std::io::Write::write_all(&mut tmp, &data).map_err(|e| io(path, e))?;
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

/// Fills in what `target` needs and the weights lack, with UER-py's initialisation
/// (normal(0, 0.02) except LayerNorm gamma 1 / beta 0): the MLM head, the sentence-
/// prediction head for `bert`, the LM head for `lm` (tied to the word embedding when
/// `tie` is set). `ckpt` is in UER naming v2 and must hold the word embedding.
pub fn complete_heads(
    ckpt: &mut Checkpoint,
    config: &ModelConfig,
    target: Target,
    tie: bool,
    seed: u64,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_4ead);
    let h = config.hidden_size;
    let m = if config.factorized_embedding {
        config.emb_size
    } else {
        h
    };
    let v = ckpt
        .get(keys::WORD)
        .map_or(config.vocab_size, |t| t.shape[0]);
    let mut want: Vec<(String, Vec<usize>)> = Vec::new();
    let lin = |want: &mut Vec<(String, Vec<usize>)>, p: &str, i: usize, o: usize| {
        want.push((format!("{p}.weight"), vec![o, i]));
        want.push((format!("{p}.bias"), vec![o]));
    };
    let has = |k: &str| ckpt.get(&format!("{k}.weight")).is_some();
    match target {
        Target::Mlm | Target::Bert if !has(keys::MLM_1) => {
            lin(&mut want, keys::MLM_1, h, m);
            want.push((format!("{}.gamma", keys::MLM_LN), vec![m]));
            want.push((format!("{}.beta", keys::MLM_LN), vec![m]));
            if tie {
                want.push((format!("{}.bias", keys::MLM_2), vec![v]));
            } else {
                lin(&mut want, keys::MLM_2, m, v);
            }
        }
        _ => {}
    }
    if target == Target::Bert && !has(keys::SP_1) {
        lin(&mut want, keys::SP_1, h, h);
        lin(&mut want, keys::SP_2, h, 2);
    }
    if target == Target::Lm && !tie && !has(keys::LM_OUT) {
        want.push((format!("{}.weight", keys::LM_OUT), vec![v, h]));
    }
    for (name, shape) in want {
        ckpt.insert(name.clone(), uer_init(&name, shape, &mut rng));
    }
}

/// One tensor with UER-py's initialisation.
fn uer_init(name: &str, shape: Vec<usize>, rng: &mut ChaCha8Rng) -> CkptTensor {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = if name.ends_with(".gamma") {
        vec![1.0; n]
    } else if name.ends_with(".beta") {
        vec![0.0; n]
    } else {
        (0..n)
            .map(|_| {
                // Box–Muller.
                let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
                let u2: f64 = rng.random();
                (0.02 * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
            })
            .collect()
    };
    CkptTensor::from_f32(shape, &values)
}

/// A model from scratch: every tensor of `config` (vocab_size, max_seq_length set) with
/// UER-py's initialisation; the decoder left out when `tie` (so loading ties it).
pub fn scratch_checkpoint(
    config: &ModelConfig,
    target: Target,
    tie: bool,
    seed: u64,
) -> Checkpoint {
    let shapes = crate::model::random_checkpoint(config, 0);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut ckpt = Checkpoint::default();
    for name in shapes.names() {
        let tied_out = tie
            && (name == format!("{}.weight", keys::MLM_2)
                || name == format!("{}.weight", keys::LM_OUT));
        if tied_out || name.starts_with("target.") {
            continue;
        }
        let shape = shapes
            .get(name)
            .map(|t| t.shape.clone())
            .unwrap_or_default();
        ckpt.insert(name.to_string(), uer_init(name, shape, &mut rng));
    }
    complete_heads(&mut ckpt, config, target, tie, seed);
    ckpt
}

/// Checks a dataset against the model and options before training.
pub fn check(
    ds: &DatasetFile,
    config: &ModelConfig,
    ckpt: &Checkpoint,
    opts: &PretrainOptions,
) -> Result<(), TrainError> {
    let h = &ds.header;
    let bad = |message: String| TrainError::Dataset {
        path: ds.path.clone(),
        message,
    };
    if h.target != opts.target {
        return Err(bad(format!(
            "made for target {}, not {}; run `uerzoo preprocess --target {}`",
            h.target, opts.target, opts.target
        )));
    }
    let vocab = ckpt.get(keys::WORD).map_or(0, |t| t.shape[0]);
    if h.vocab_size != vocab {
        return Err(bad(format!(
            "made with a vocabulary of {} tokens, the model has {vocab}; preprocess with the model's vocab.txt",
            h.vocab_size
        )));
    }
    let max = ckpt.get(keys::POS).map_or(0, |t| t.shape[0]);
    if h.seq_length > max {
        return Err(TrainError::SeqLength {
            seq: h.seq_length,
            max,
        });
    }
    if opts.target == Target::Lm && config.mask != MaskKind::Causal {
        return Err(TrainError::Options(
            "target lm needs a causal model (GPT-2 config: \"mask\": \"causal\")".into(),
        ));
    }
    if opts.target != Target::Lm && config.mask == MaskKind::Causal {
        return Err(TrainError::Options(format!(
            "target {} needs a fully-visible model (BERT/RoBERTa), this one is causal",
            opts.target
        )));
    }
    if opts.batch_size == 0 || opts.total_steps == 0 || opts.accumulation_steps == 0 {
        return Err(TrainError::Options(
            "--batch-size, --total-steps and --accumulation-steps must be at least 1".into(),
        ));
    }
    if !opts
        .save_checkpoint_steps
        .is_multiple_of(opts.accumulation_steps)
    {
        return Err(TrainError::Options(format!(
            "--save-checkpoint-steps {} is not a multiple of --accumulation-steps {}; a checkpoint would drop half-accumulated gradients",
            opts.save_checkpoint_steps, opts.accumulation_steps
        )));
    }
    if opts.report_steps == 0 || opts.save_checkpoint_steps == 0 {
        return Err(TrainError::Options(
            "--report-steps and --save-checkpoint-steps must be at least 1".into(),
        ));
    }
    Ok(())
}

/// Checks that the dataset was made with the vocabulary file `vocab`.
pub fn check_vocab(ds: &DatasetFile, vocab: &Path) -> Result<(), TrainError> {
    let hash = super::dataset::vocab_hash(vocab)?;
    if hash != ds.header.vocab_sha256 {
        return Err(TrainError::Dataset {
            path: ds.path.clone(),
            message: format!(
                "made with another vocabulary (SHA-256 {}…), not `{}` ({}…); preprocess the corpus again with this vocabulary",
                &hex::encode(ds.header.vocab_sha256)[..12],
                vocab.display(),
                &hex::encode(hash)[..12]
            ),
        });
    }
    Ok(())
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

/// A resumed run must be the run that saved the state: same options, same dataset.
fn check_resume(
    resume: &Option<OptimState>,
    opts: &PretrainOptions,
    ds: &DatasetFile,
) -> Result<(), TrainError> {
    let Some(r) = resume else { return Ok(()) };
    if r.step >= opts.total_steps {
        return Err(TrainError::Options(format!(
            "the checkpoint is at step {}, --total-steps is {}; nothing to do",
            r.step, opts.total_steps
        )));
    }
    if r.seed != opts.seed {
        return Err(TrainError::Options(format!(
            "--resume: the checkpoint was trained with --seed {}, this run has --seed {}; resume with the same options",
            r.seed, opts.seed
        )));
    }
    let now = run_fingerprint(opts, ds);
    let diff: Vec<String> = r
        .run
        .iter()
        .filter_map(|(k, was)| match now.get(k) {
            Some(is) if is != was => Some(format!("{k} {is} (the checkpoint's run: {was})")),
            _ => None,
        })
        .collect();
    if !diff.is_empty() {
        return Err(TrainError::Options(format!(
            "--resume: this run differs from the one that saved the checkpoint: {}; resume with the same options and dataset",
            diff.join(", ")
        )));
    }
    Ok(())
}

/// Float parameter sizes in visiting order (the order of the optimizer state).
struct SizeVisitor(Vec<usize>);

impl<B: Backend> ModuleVisitor<B> for SizeVisitor {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0.push(param.val().dims().iter().product());
    }
}

/// The optimizer state belongs to this model: one entry per parameter, each of its size.
fn check_moments<B: Backend>(model: &Model<B>, r: &OptimState) -> Result<(), TrainError> {
    let mut sizes = SizeVisitor(Vec::new());
    model.visit(&mut sizes);
    let bad = |m: String| {
        TrainError::Options(format!(
            "--resume: the optimizer state does not belong to this model ({m}); resume from a checkpoint of this run"
        ))
    };
    if r.moments.len() > sizes.0.len() {
        return Err(bad(format!(
            "{} parameters in the state, {} in the model",
            r.moments.len(),
            sizes.0.len()
        )));
    }
    for (i, (m, &n)) in r.moments.iter().zip(&sizes.0).enumerate() {
        if let Some((_, m1, m2)) = m
            && (m1.len() != n || m2.len() != n)
        {
            return Err(bad(format!(
                "parameter {i} has {} values in the state, {n} in the model",
                m1.len()
            )));
        }
    }
    Ok(())
}

/// [`pretrain`] data-parallel over `devices` (all CPU or all CUDA), through Burn's
/// collective operations (`burn::collective`): one thread and one model replica per device,
/// each batch split by rows across the replicas, the gradients averaged with
/// `GradientsParams::all_reduce` before the identical optimizer step on every replica
/// (UER-py's DistributedDataParallel does the same). Rank 0 reports and writes the
/// checkpoints. `opts.batch_size` is the global batch.
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
    let ckpt = &untie_for_loading(ckpt, opts.target);
    std::thread::scope(|scope| {
        let others: Vec<_> = (1..world)
            .map(|rank| {
                let (device, resume) = (devices[rank], resume.clone());
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
                            peer: Some(Peer { rank, world }),
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
                peer: Some(Peer { rank: 0, world }),
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

/// This replica's place in a data-parallel run.
#[derive(Debug, Clone, Copy)]
struct Peer {
    rank: usize,
    world: usize,
}

impl Peer {
    fn id(&self) -> burn::collective::PeerId {
        burn::collective::PeerId::from(self.rank)
    }
}

fn collective_err(e: burn::collective::CollectiveError) -> TrainError {
    TrainError::Options(format!("data-parallel all-reduce failed: {e:?}"))
}

/// A decoder that is the word embedding (same storage or same values, as torch saves tied
/// weights) is left out, so [`load_model`] ties it and training keeps it tied.
fn untie_for_loading(ckpt: &Checkpoint, target: Target) -> Checkpoint {
    let key = if target == Target::Lm {
        format!("{}.weight", keys::LM_OUT)
    } else {
        format!("{}.weight", keys::MLM_2)
    };
    let same = match (ckpt.get(keys::WORD), ckpt.get(&key)) {
        (Some(w), Some(d)) => {
            let ((sw, rw), (sd, rd)) = (w.storage(), d.storage());
            (std::ptr::eq(sw.as_bytes().as_ptr(), sd.as_bytes().as_ptr()) && rw == rd)
                || (w.shape == d.shape && w.bytes() == d.bytes())
        }
        _ => false,
    };
    let mut out = ckpt.clone();
    if same {
        out.tensors.retain(|(n, _)| *n != key);
    }
    out
}

struct Job<'a> {
    ckpt: &'a Checkpoint,
    config: &'a ModelConfig,
    ds: &'a DatasetFile,
    opts: &'a PretrainOptions,
    output: &'a Path,
    resume: Option<OptimState>,
    progress: &'a dyn Progress,
    on_report: &'a mut dyn FnMut(&StepReport),
    /// Set in a data-parallel run.
    peer: Option<Peer>,
}

impl BackendJob for Job<'_> {
    type Output = Result<PretrainResult, TrainError>;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        train::<Autodiff<B>>(self, device)
    }
}

/// One batch on the host.
struct HostBatch {
    b: usize,
    l: usize,
    ids: Vec<i64>,
    seg: Vec<i64>,
    /// Flat positions (`row · l + col`) whose token is predicted, and the targets.
    pos: Vec<i64>,
    tgt: Vec<i64>,
    nsp: Vec<i64>,
}

impl HostBatch {
    /// Rows `rank·b/world .. (rank+1)·b/world` of the batch (positions re-based).
    fn shard(self, rank: usize, world: usize) -> HostBatch {
        let (b, l) = (self.b, self.l);
        let (r0, r1) = (rank * b / world, (rank + 1) * b / world);
        let (lo, hi) = ((r0 * l) as i64, (r1 * l) as i64);
        let (mut pos, mut tgt) = (Vec::new(), Vec::new());
        for (&p, &t) in self.pos.iter().zip(&self.tgt) {
            if p >= lo && p < hi {
                pos.push(p - lo);
                tgt.push(t);
            }
        }
        HostBatch {
            b: r1 - r0,
            l,
            ids: self.ids[r0 * l..r1 * l].to_vec(),
            seg: self.seg[r0 * l..r1 * l].to_vec(),
            pos,
            tgt,
            nsp: if self.nsp.is_empty() {
                Vec::new()
            } else {
                self.nsp[r0..r1].to_vec()
            },
        }
    }
}

/// Instance order: a permutation per epoch.
struct Order {
    n: usize,
    seed: u64,
    epoch: usize,
    perm: Vec<usize>,
}

impl Order {
    fn new(n: usize, seed: u64) -> Self {
        Order {
            n,
            seed,
            epoch: usize::MAX,
            perm: Vec::new(),
        }
    }
    fn get(&mut self, global: usize) -> usize {
        let epoch = global / self.n;
        if epoch != self.epoch {
            let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
            rng.set_stream(epoch as u64 + 1);
            self.perm = (0..self.n).collect();
            self.perm.shuffle(&mut rng);
            self.epoch = epoch;
        }
        self.perm[global % self.n]
    }
}

fn host_batch(
    ds: &DatasetFile,
    order: &mut Order,
    step: usize,
    opts: &PretrainOptions,
) -> Result<HostBatch, TrainError> {
    let h = &ds.header;
    let (b, l) = (opts.batch_size, h.seq_length);
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    rng.set_stream(1 << 40 | step as u64);
    let mut out = HostBatch {
        b,
        l,
        ids: Vec::with_capacity(b * l),
        seg: Vec::with_capacity(b * l),
        pos: Vec::new(),
        tgt: Vec::new(),
        nsp: Vec::with_capacity(b),
    };
    for j in 0..b {
        let Record {
            mut ids,
            targets,
            seg_a,
            seg_b,
            is_random_next,
        } = ds.get(order.get(step * b + j))?;
        let seg_of = |i: usize| -> i64 {
            if (i as u32) < seg_a {
                1
            } else if (i as u32) < seg_b {
                2
            } else {
                0
            }
        };
        match h.target {
            Target::Lm => {
                for i in 0..l {
                    out.ids.push(ids[i] as i64);
                    let s = seg_of(i);
                    out.seg.push(s);
                    if s > 0 {
                        out.pos.push((j * l + i) as i64);
                        out.tgt.push(ids[i + 1] as i64);
                    }
                }
            }
            Target::Mlm | Target::Bert => {
                let targets = match targets {
                    Some(t) => t,
                    None => {
                        let len = seg_a.max(seg_b) as usize;
                        let mut t = vec![0u32; l];
                        for (p, id) in
                            mask_seq(&mut ids, len, &h.specials, h.vocab_size as u32, &mut rng)
                        {
                            t[p] = id;
                        }
                        t
                    }
                };
                for i in 0..l {
                    out.ids.push(ids[i] as i64);
                    out.seg.push(seg_of(i));
                    if targets[i] > 0 {
                        out.pos.push((j * l + i) as i64);
                        out.tgt.push(targets[i] as i64);
                    }
                }
                out.nsp.push(is_random_next as i64);
            }
        }
    }
    Ok(out)
}

/// Loss terms of one batch (device scalars, `[1]`).
struct Losses<B: Backend> {
    loss: Tensor<B, 1>,
    main_loss: Tensor<B, 1>,
    correct: Tensor<B, 1>,
    sp_loss: Option<Tensor<B, 1>>,
    sp_correct: Option<Tensor<B, 1>>,
}

fn ints<B: Backend, const D: usize>(
    v: &[i64],
    shape: [usize; D],
    device: &B::Device,
) -> Tensor<B, D, Int> {
    Tensor::from_data(TensorData::new(v.to_vec(), shape), device)
}

fn losses<B: Backend>(
    model: &Model<B>,
    tied: bool,
    batch: &HostBatch,
    dropout: f64,
    device: &B::Device,
) -> Result<Losses<B>, TrainError> {
    let (b, l) = (batch.b, batch.l);
    let ids = ints::<B, 2>(&batch.ids, [b, l], device);
    let seg = ints::<B, 2>(&batch.seg, [b, l], device);
    let decoder = if tied {
        Decoder::WordEmbedding
    } else {
        Decoder::Own
    };
    let picked = ints::<B, 1>(&batch.pos, [batch.pos.len()], device);
    let out = model.target_logits(ids, seg, picked, !batch.nsp.is_empty(), dropout, decoder)?;
    let (main_loss, correct) = kernels::cross_entropy(out.tokens, &batch.tgt);
    let (mut loss, mut sp_loss, mut sp_correct) = (main_loss.clone(), None, None);
    if let Some(logits) = out.sp {
        let (l2, c2) = kernels::cross_entropy(logits, &batch.nsp);
        loss = loss + l2.clone();
        (sp_loss, sp_correct) = (Some(l2), Some(c2));
    }
    Ok(Losses {
        loss,
        main_loss,
        correct,
        sp_loss,
        sp_correct,
    })
}

/// UER's AdamW over the model's parameters in visiting order, with the state kept by that
/// order (so it survives reloading the weights, which makes new parameter ids).
struct StepMapper<'a, B: AutodiffBackend> {
    opt: &'a UerAdamW,
    states: &'a mut Vec<DeviceMoments<B::InnerBackend>>,
    grads: &'a mut GradientsParams,
    lr: f64,
    scale: Option<f64>,
    index: usize,
}

impl<B: AutodiffBackend> ModuleMapper<B> for StepMapper<'_, B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let i = self.index;
        self.index += 1;
        if self.states.len() <= i {
            self.states.resize(i + 1, None);
        }
        let tensor = match self.grads.remove::<B::InnerBackend, D>(id) {
            Some(grad) => {
                let grad = match self.scale {
                    Some(s) => grad.mul_scalar(s),
                    None => grad,
                };
                let dims = tensor.dims();
                let n = dims.iter().product::<usize>();
                let state = self.states[i].take().map(|(t, m, v)| {
                    AdaptiveMomentumState::new(t, m.reshape(dims), v.reshape(dims))
                });
                let (p, st) = SimpleOptimizer::<B::InnerBackend>::step(
                    self.opt,
                    self.lr,
                    tensor.inner(),
                    grad,
                    state,
                );
                self.states[i] =
                    st.map(|s| (s.time, s.moment_1.reshape([n]), s.moment_2.reshape([n])));
                Tensor::from_inner(p).require_grad()
            }
            None => tensor,
        };
        Param::from_mapped_value(id, tensor, mapper)
    }
}

/// Gives the parameters ids 0, 1, 2, … in visiting order, so that the replicas of a
/// data-parallel run (each loaded on its own thread) name their gradients alike: the
/// all-reduce pairs gradients by id.
struct RenumberParams {
    next: u64,
}

impl<B: AutodiffBackend> ModuleMapper<B> for RenumberParams {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (_, tensor, mapper) = param.consume();
        let id = burn::module::ParamId::from(self.next);
        self.next += 1;
        Param::from_mapped_value(id, tensor, mapper)
    }
}

/// Sum of squared gradients over all parameters.
struct NormVisitor<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    sum: Option<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for NormVisitor<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            let s = g.square().sum();
            self.sum = Some(match self.sum.take() {
                Some(acc) => acc + s,
                None => s,
            });
        }
    }
}

fn to_f64<B: Backend>(t: Tensor<B, 1>) -> f64 {
    t.into_data()
        .convert::<f64>()
        .to_vec::<f64>()
        .ok()
        .and_then(|v| v.first().copied())
        .unwrap_or(f64::NAN)
}

fn train<A: AutodiffBackend>(
    job: Job<'_>,
    device: A::Device,
) -> Result<PretrainResult, TrainError> {
    let Job {
        ckpt,
        config,
        ds,
        opts,
        output,
        resume,
        progress,
        on_report,
        peer,
    } = job;
    let start = Instant::now();
    if let Some(p) = peer {
        let config = burn::collective::CollectiveConfig::default().with_num_devices(p.world);
        burn::collective::register::<A::InnerBackend>(p.id(), device.clone(), config)
            .map_err(collective_err)?;
    }
    let rank = peer.map_or(0, |p| p.rank);
    let (mut model, report) = load_model::<A>(ckpt, config, &device)?;
    model.classifier = None;
    let target = opts.target;
    if target != Target::Bert {
        model.sp = None;
    }
    if target == Target::Lm {
        model.mlm = None;
    } else {
        model.lm = None;
    }
    if peer.is_some() {
        model = model.map(&mut RenumberParams { next: 0 });
    }
    let tied = report
        .tied
        .iter()
        .any(|t| (*t == "mlm" && target != Target::Lm) || (*t == "lm" && target == Target::Lm));
    let dropout = opts.dropout.unwrap_or(model.config.dropout);
    let schedule = WarmupLinear::new(opts.learning_rate, opts.warmup, opts.total_steps);
    let (mut step, mut updates) = (0usize, 0usize);
    let mut states = Vec::new();
    if let Some(r) = resume {
        check_moments(&model, &r)?;
        step = r.step;
        updates = r.updates;
        for m in r.moments {
            states.push(m.map(|(t, m1, m2)| {
                let (n1, n2) = (m1.len(), m2.len());
                (
                    t,
                    Tensor::<A::InnerBackend, 1>::from_data(TensorData::new(m1, [n1]), &device),
                    Tensor::<A::InnerBackend, 1>::from_data(TensorData::new(m2, [n2]), &device),
                )
            }));
        }
    }
    let first_step = step;
    let mut order = Order::new(ds.len(), opts.seed);
    let mut accum = GradientsAccumulator::<Model<A>>::new();
    let tokens_per_pass = (opts.batch_size * ds.header.seq_length) as f64;
    let (mut reports, mut saved) = (Vec::new(), Vec::new());
    let mut window: Vec<Losses<A::InnerBackend>> = Vec::new();
    let (mut t_report, mut last_lr, mut predicted) = (Instant::now(), 0.0, 0usize);
    progress.start("pretrain", (opts.total_steps - first_step) as u64);
    while step < opts.total_steps {
        let mut batch = host_batch(ds, &mut order, step, opts)?;
        if let Some(p) = peer {
            batch = batch.shard(p.rank, p.world);
        }
        predicted += batch.pos.len();
        // Dropout: the backend's generator and the fused kernels' stream (one per replica).
        let dseed = opts
            .seed
            .wrapping_add(step as u64)
            .wrapping_add((rank as u64) << 32);
        A::seed(&device, dseed);
        crate::kernels::seed(dseed);
        let l = losses(&model, tied, &batch, dropout, &device)?;
        let k = opts.accumulation_steps;
        let scaled = if k > 1 {
            l.loss.clone().div_scalar(k as f64)
        } else {
            l.loss.clone()
        };
        let grads = GradientsParams::from_grads(scaled.backward(), &model);
        window.push(Losses {
            loss: l.loss.inner(),
            main_loss: l.main_loss.inner(),
            correct: l.correct.inner(),
            sp_loss: l.sp_loss.map(|t| t.inner()),
            sp_correct: l.sp_correct.map(|t| t.inner()),
        });
        step += 1;
        let update_now = step % k == 0 || step == opts.total_steps;
        let mut grads = if k > 1 {
            accum.accumulate(&model, grads);
            if update_now {
                Some(accum.grads())
            } else {
                None
            }
        } else {
            Some(grads)
        };
        if let Some(p) = peer
            && let Some(g) = grads.take()
        {
            let mean = burn::collective::ReduceOperation::Mean;
            grads = Some(
                g.all_reduce::<A::InnerBackend>(p.id(), mean)
                    .map_err(collective_err)?,
            );
        }
        if let Some(g) = grads.as_mut() {
            let scale = match opts.max_grad_norm {
                Some(max) => {
                    let mut v = NormVisitor::<A> {
                        grads: g,
                        sum: None,
                    };
                    model.visit(&mut v);
                    let norm = v.sum.map_or(0.0, |s| to_f64(s).sqrt());
                    (norm > max).then(|| max / (norm + 1e-6))
                }
                None => None,
            };
            last_lr = schedule.lr_at(updates);
            let mut mapper = StepMapper::<A> {
                opt: &opts.optimizer,
                states: &mut states,
                grads: g,
                lr: last_lr,
                scale,
                index: 0,
            };
            model = model.map(&mut mapper);
            updates += 1;
        }
        progress.advance(1);
        if step % opts.report_steps == 0 || step == opts.total_steps {
            let r = summarize(
                &window,
                predicted,
                step,
                opts,
                tokens_per_pass,
                t_report,
                last_lr,
            );
            predicted = 0;
            on_report(&r);
            reports.push(r);
            window.clear();
            t_report = Instant::now();
        }
        if step % opts.save_checkpoint_steps == 0 && rank == 0 {
            let path = step_path(output, step);
            save(&model, tied, opts, &path)?;
            OptimState {
                step,
                updates,
                seed: opts.seed,
                moments: export_states::<A>(&states),
                run: run_fingerprint(opts, ds),
            }
            .save(&state_path(&path))?;
            saved.push(path);
        }
    }
    progress.finish();
    if let Some(p) = peer {
        burn::collective::finish_collective::<A::InnerBackend>(p.id()).map_err(collective_err)?;
    }
    let checkpoint = export(&model.valid(), tied);
    let steps_run = step - first_step;
    let seconds = start.elapsed().as_secs_f64();
    Ok(PretrainResult {
        reports,
        saved,
        checkpoint,
        seconds,
        tokens_per_s: tokens_per_pass * steps_run as f64 / seconds.max(1e-9),
        steps_run,
    })
}

fn summarize<B: Backend>(
    w: &[Losses<B>],
    predicted: usize,
    step: usize,
    opts: &PretrainOptions,
    tokens_per_pass: f64,
    since: Instant,
    lr: f64,
) -> StepReport {
    let n = w.len().max(1) as f64;
    let cat = |f: &dyn Fn(&Losses<B>) -> Option<Tensor<B, 1>>| -> Option<f64> {
        let v: Vec<Tensor<B, 1>> = w.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| to_f64(Tensor::cat(v, 0).sum()))
    };
    // The denominators (predicted tokens, instances) are known on the host.
    let loss = cat(&|l| Some(l.loss.clone())).unwrap_or(f64::NAN) / n;
    let correct = cat(&|l| Some(l.correct.clone())).unwrap_or(0.0);
    let sp_loss = cat(&|l| l.sp_loss.clone()).map(|x| x / n);
    let sp_correct = cat(&|l| l.sp_correct.clone());
    StepReport {
        step,
        total_steps: opts.total_steps,
        loss,
        acc: correct / predicted.max(1) as f64,
        loss_sp: sp_loss,
        acc_sp: sp_correct.map(|c| c / (n * opts.batch_size as f64)),
        tokens_per_s: tokens_per_pass * n / since.elapsed().as_secs_f64().max(1e-9),
        lr,
    }
}

fn export_states<A: AutodiffBackend>(
    states: &[DeviceMoments<A::InnerBackend>],
) -> Vec<HostMoments> {
    let host = |t: &Tensor<A::InnerBackend, 1>| {
        t.clone()
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .unwrap_or_default()
    };
    states
        .iter()
        .map(|s| s.as_ref().map(|(t, m, v)| (*t, host(m), host(v))))
        .collect()
}

/// Writes the model as a UER checkpoint in `opts.naming` at `path` (atomically).
fn save<A: AutodiffBackend>(
    model: &Model<A>,
    tied: bool,
    opts: &PretrainOptions,
    path: &Path,
) -> Result<(), TrainError> {
    let ckpt = export(&model.valid(), tied);
    write_uer(&ckpt, opts.naming, path)
}

/// Renames a UER naming v2 checkpoint to `naming` and writes it as a torch `.bin`.
pub fn write_uer(ckpt: &Checkpoint, naming: Naming, path: &Path) -> Result<(), TrainError> {
    super::save::save_uer(ckpt, naming, path, true)
}

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> (Vec<usize>, Vec<f32>) {
    let shape = t.dims().to_vec();
    (
        shape,
        t.into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .unwrap_or_default(),
    )
}

/// The model's weights in UER naming v2 with the pretraining heads; a tied decoder is
/// written as the word embedding's storage under both names (as torch saves tied weights).
pub fn export<B: Backend>(model: &Model<B>, tied: bool) -> Checkpoint {
    let mut ckpt = classifier::to_checkpoint(model);
    let word = ckpt.get(keys::WORD).cloned();
    let mut put = |name: String, t: (Vec<usize>, Vec<f32>)| {
        ckpt.insert(name, CkptTensor::from_f32(t.0, &t.1))
    };
    let linear = |put: &mut dyn FnMut(String, (Vec<usize>, Vec<f32>)),
                  p: &str,
                  l: &Linear<B>,
                  weight: bool| {
        if weight {
            let (s, w) = host(l.weight.val().transpose());
            put(format!("{p}.weight"), (s, w));
        }
        if let Some(b) = &l.bias {
            put(format!("{p}.bias"), host(b.val()));
        }
    };
    let ln = |put: &mut dyn FnMut(String, (Vec<usize>, Vec<f32>)), p: &str, n: &LayerNorm<B>| {
        put(format!("{p}.gamma"), host(n.gamma.val()));
        put(format!("{p}.beta"), host(n.beta.val()));
    };
    let mut tied_name = None;
    if let Some(m) = &model.mlm {
        linear(&mut put, keys::MLM_1, &m.linear_1, true);
        ln(&mut put, keys::MLM_LN, &m.layer_norm);
        linear(&mut put, keys::MLM_2, &m.linear_2, !tied);
        if tied {
            tied_name = Some(format!("{}.weight", keys::MLM_2));
        }
    }
    if let Some(s) = &model.sp {
        linear(&mut put, keys::SP_1, &s.linear_1, true);
        linear(&mut put, keys::SP_2, &s.linear_2, true);
    }
    if let Some(lm) = &model.lm {
        linear(&mut put, keys::LM_OUT, &lm.output_layer, !tied);
        if tied {
            tied_name = Some(format!("{}.weight", keys::LM_OUT));
        }
    }
    if let (Some(name), Some(word)) = (tied_name, word) {
        ckpt.insert(name, word);
    }
    ckpt
}
