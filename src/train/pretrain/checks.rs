//! Checks before training: the dataset against the model and options, its vocabulary,
//! and a resumed run against the run that saved the state.

use super::PretrainOptions;
use super::state::{OptimState, run_fingerprint};
use crate::checkpoint::Checkpoint;
use crate::model::load::keys;
use crate::model::{MaskKind, Model, ModelConfig};
use crate::train::TrainError;
use crate::train::dataset::{DatasetFile, PretrainTarget};
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use std::path::Path;

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
    if opts.target == PretrainTarget::Lm && config.mask != MaskKind::Causal {
        return Err(TrainError::Options(
            "target lm needs a causal model (GPT-2 config: \"mask\": \"causal\")".into(),
        ));
    }
    if opts.target != PretrainTarget::Lm && config.mask == MaskKind::Causal {
        return Err(TrainError::Options(format!(
            "target {} needs a fully-visible model (BERT/RoBERTa/ALBERT), this one is causal",
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
    let hash = crate::train::dataset::vocab_hash(vocab)?;
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

/// A resumed run must be the run that saved the state: same options, same dataset.
pub(super) fn check_resume(
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
pub(super) fn check_moments<B: Backend>(
    model: &Model<B>,
    r: &OptimState,
) -> Result<(), TrainError> {
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
