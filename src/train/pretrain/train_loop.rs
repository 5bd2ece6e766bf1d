//! The loop: per step the losses over the model's pretraining forward
//! ([`crate::model::Model::target_logits`]), backward, accumulation, clipping, the update,
//! reports and checkpoints.

use super::batch::{HostBatch, Order, host_batch};
use super::checks::check_moments;
use super::export::{export, save};
use super::parallel::{Peer, RenumberParams, collective_err};
use super::param_update::{NormVisitor, StepMapper};
use super::state::{
    DeviceMoments, HostMoments, OptimState, run_fingerprint, state_path, step_path,
};
use super::{PretrainOptions, PretrainResult, StepReport};
use crate::checkpoint::Checkpoint;
use crate::kernels;
use crate::model::backend::BackendJob;
use crate::model::heads::Decoder;
use crate::model::{Model, ModelConfig, load_model};
use crate::progress::Progress;
use crate::train::TrainError;
use crate::train::dataset::{DatasetFile, PretrainTarget};
use crate::train::optim::WarmupLinear;
use burn::backend::Autodiff;
use burn::module::{AutodiffModule, Module};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use std::path::Path;
use std::time::Instant;

pub(super) struct Job<'a> {
    pub(super) ckpt: &'a Checkpoint,
    pub(super) config: &'a ModelConfig,
    pub(super) ds: &'a DatasetFile,
    pub(super) opts: &'a PretrainOptions,
    pub(super) output: &'a Path,
    pub(super) resume: Option<OptimState>,
    pub(super) progress: &'a dyn Progress,
    pub(super) on_report: &'a mut dyn FnMut(&StepReport),
    /// Set in a data-parallel run.
    pub(super) peer: Option<Peer>,
}

impl BackendJob for Job<'_> {
    type Output = Result<PretrainResult, TrainError>;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        train::<Autodiff<B>>(self, device)
    }
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
    if let Some(p) = &peer {
        burn::collective::register::<A::InnerBackend>(p.id(), device.clone(), p.config.clone())
            .map_err(collective_err)?;
    }
    let rank = peer.as_ref().map_or(0, |p| p.rank);
    let (mut model, report) = load_model::<A>(ckpt, config, &device)?;
    model.classifier = None;
    let target = opts.target;
    if !target.pairs() {
        model.sp = None;
    }
    if target == PretrainTarget::Lm {
        model.mlm = None;
    } else {
        model.lm = None;
    }
    if peer.is_some() {
        model = model.map(&mut RenumberParams { next: 0 });
    }
    let tied = report.tied.iter().any(|t| {
        (*t == "mlm" && target != PretrainTarget::Lm)
            || (*t == "lm" && target == PretrainTarget::Lm)
    });
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
        // A peer's share of the whole batch: its predicted tokens and its rows.
        let mut share = None;
        if let Some(p) = &peer {
            let (tokens, rows) = (batch.pos.len(), batch.b);
            batch = batch.shard(p.rank, p.world);
            let w = p.world as f64;
            share = Some((
                w * batch.pos.len() as f64 / tokens.max(1) as f64,
                w * batch.b as f64 / rows.max(1) as f64,
            ));
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
        // Each peer's mean loss weighed by its share of the batch (`world · n_peer / n`):
        // the all-reduced mean of the peers' gradients is then the whole batch's gradient,
        // as on one device, however the predicted tokens fall on the peers.
        let objective = match share {
            Some((tokens, rows)) => {
                let main = l.main_loss.clone().mul_scalar(tokens);
                match &l.sp_loss {
                    Some(sp) => main + sp.clone().mul_scalar(rows),
                    None => main,
                }
            }
            None => l.loss.clone(),
        };
        let k = opts.accumulation_steps;
        let scaled = if k > 1 {
            objective.div_scalar(k as f64)
        } else {
            objective
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
        if let Some(p) = &peer
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
    if let Some(p) = &peer {
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
    let mlm_loss = sp_loss
        .and_then(|_| cat(&|l| Some(l.main_loss.clone())))
        .map(|x| x / n);
    let sp_correct = cat(&|l| l.sp_correct.clone());
    StepReport {
        step,
        total_steps: opts.total_steps,
        loss,
        acc: correct / predicted.max(1) as f64,
        loss_mlm: mlm_loss,
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
