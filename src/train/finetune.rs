//! The fine-tuning loop of UER-py's run_classifier (FACTS.md §5), its grid search
//! (run_classifier_grid) and batched inference (run_classifier_infer), on any backend.
//!
//! Loop: every epoch shuffles the training rows (ChaCha8 seeded with `seed`; UER-py uses
//! Python's `random`, so the order differs), runs the batches in order (the short last batch
//! included) with dropout on, one [`UerAdamW`] update per batch at the [`WarmupLinear`]
//! learning rate, then measures dev accuracy with dropout off. The weights of the first epoch
//! with a strictly better dev accuracy are kept; test accuracy is that model's.

mod task;
pub use task::{FinetuneEvent, FinetuneReport, FinetuneTask, OutputFormat, Saved, run};

use super::TrainError;
use super::classifier::{self, init_head, nll_loss};
use super::data::Encoded;
use super::optim::{UerAdamW, WarmupLinear};
use crate::checkpoint::Checkpoint;
use crate::model::backend::{BackendJob, DeviceSpec, run_on};
use crate::model::heads::pool_weights;
use crate::model::open::OpenedModel;
use crate::model::{Model, Pooling, load_model};
use crate::progress::Progress;
use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::{Tensor, TensorData, backend::Backend};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use std::time::Instant;

/// Hyper-parameters (defaults: UER-py's).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FinetuneOptions {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    /// Fraction of the steps spent warming up.
    pub warmup: f64,
    /// Dropout probability during training.
    pub dropout: f64,
    pub seed: u64,
    pub pooling: Pooling,
    pub optimizer: UerAdamW,
}

impl Default for FinetuneOptions {
    fn default() -> Self {
        FinetuneOptions {
            epochs: 3,
            batch_size: 32,
            learning_rate: 2e-5,
            warmup: 0.1,
            dropout: 0.1,
            seed: 7,
            pooling: Pooling::First,
            optimizer: UerAdamW::default(),
        }
    }
}

/// Encoded train/dev(/test) sets and the number of labels (from the train file).
#[derive(Debug, Clone)]
pub struct TaskData {
    pub train: Encoded,
    pub dev: Encoded,
    pub test: Option<Encoded>,
    pub labels_num: usize,
}

/// Precision, recall and F1 of one class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassScore {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

/// Accuracy and the confusion matrix (`confusion[pred][gold]`, as UER-py prints it).
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    pub correct: usize,
    pub total: usize,
    pub confusion: Vec<Vec<usize>>,
}

impl Metrics {
    fn new(labels: usize) -> Self {
        Metrics {
            correct: 0,
            total: 0,
            confusion: vec![vec![0; labels]; labels],
        }
    }

    pub fn accuracy(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.correct as f64 / self.total as f64
        }
    }

    /// Per-class scores with UER-py's 1e-9 in the denominators.
    pub fn per_class(&self) -> Vec<ClassScore> {
        let eps = 1e-9;
        (0..self.confusion.len())
            .map(|i| {
                let tp = self.confusion[i][i] as f64;
                let predicted: usize = self.confusion[i].iter().sum();
                let gold: usize = self.confusion.iter().map(|row| row[i]).sum();
                let precision = tp / (predicted as f64 + eps);
                let recall = tp / (gold as f64 + eps);
                ClassScore {
                    precision,
                    recall,
                    f1: 2.0 * precision * recall / (precision + recall + eps),
                }
            })
            .collect()
    }
}

/// What one epoch did.
#[derive(Debug, Clone)]
pub struct EpochReport {
    pub epoch: usize,
    pub epochs: usize,
    /// Mean training loss over the epoch's batches.
    pub loss: f64,
    /// The loss of every batch, in order.
    pub batch_losses: Vec<f32>,
    pub dev: Metrics,
    /// Dev accuracy strictly better than every earlier epoch (these weights are kept).
    pub improved: bool,
    pub seconds: f64,
}

/// The outcome of [`finetune`].
#[derive(Debug, Clone)]
pub struct FinetuneResult {
    pub epochs: Vec<EpochReport>,
    pub best_epoch: usize,
    pub best_dev: f64,
    /// The best model on the test set, when a test set was given.
    pub test: Option<Metrics>,
    /// The best model's dev logits `[rows][labels]`, as the trainer's evaluation computed
    /// them (the same forward `predict` runs on the saved weights).
    pub dev_logits: Vec<Vec<f32>>,
    /// The best model: embedding, encoder and `output_layer_{1,2}`, UER naming v2.
    pub checkpoint: Checkpoint,
    /// Wall time of training and evaluation (loading excluded).
    pub seconds: f64,
}

fn check(opened: &OpenedModel, data: &TaskData, opts: &FinetuneOptions) -> Result<(), TrainError> {
    let bad = |m: String| Err(TrainError::Options(m));
    if opts.epochs == 0 || opts.batch_size == 0 {
        return bad("--epochs and --batch-size must be at least 1".into());
    }
    if opts.learning_rate.is_nan()
        || opts.learning_rate <= 0.0
        || !(0.0..1.0).contains(&opts.dropout)
        || !(0.0..=1.0).contains(&opts.warmup)
    {
        return bad(format!(
            "learning rate {} must be > 0, dropout {} in [0, 1), warmup {} in [0, 1]",
            opts.learning_rate, opts.dropout, opts.warmup
        ));
    }
    if data.labels_num < 2 {
        return bad(format!(
            "the training file has {} distinct label(s); a classifier needs at least 2",
            data.labels_num
        ));
    }
    let positions = opened
        .checkpoint
        .get(crate::model::load::keys::POS)
        .map(|t| t.shape[0]);
    let max = positions.unwrap_or(opened.config.max_seq_length);
    if data.train.seq == 0 || data.train.seq > max {
        return Err(TrainError::SeqLength {
            seq: data.train.seq,
            max,
        });
    }
    Ok(())
}

/// Fine-tunes `opened` on `data`; `on_epoch` sees each epoch's report as it ends.
pub fn finetune(
    opened: &OpenedModel,
    data: &TaskData,
    opts: &FinetuneOptions,
    device: DeviceSpec,
    progress: &dyn Progress,
    on_epoch: &mut dyn FnMut(&EpochReport),
) -> Result<FinetuneResult, TrainError> {
    check(opened, data, opts)?;
    run_on(
        device,
        FinetuneJob {
            opened,
            data,
            opts,
            progress,
            on_epoch,
        },
    )?
}

struct FinetuneJob<'a> {
    opened: &'a OpenedModel,
    data: &'a TaskData,
    opts: &'a FinetuneOptions,
    progress: &'a dyn Progress,
    on_epoch: &'a mut dyn FnMut(&EpochReport),
}

impl BackendJob for FinetuneJob<'_> {
    type Output = Result<FinetuneResult, TrainError>;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        train::<B>(self, device)
    }
}

fn train<B: Backend>(
    job: FinetuneJob<'_>,
    device: B::Device,
) -> Result<FinetuneResult, TrainError> {
    type A<B> = Autodiff<B>;
    let FinetuneJob {
        opened,
        data,
        opts,
        progress,
        on_epoch,
    } = job;
    let start = Instant::now();
    A::<B>::seed(&device, opts.seed);
    crate::kernels::seed(opts.seed);
    let (mut model, _) = load_model::<A<B>>(&opened.checkpoint, &opened.config, &device)?;
    // run_classifier's model has no pretraining heads.
    (model.mlm, model.sp, model.lm) = (None, None, None);
    let hidden = model.config.hidden_size;
    // A classifier checkpoint with as many labels keeps its head (UER-py's strict=False
    // load); otherwise the head starts from PyTorch's default init.
    let labels_of =
        |h: &crate::model::heads::ClassifierHead<A<B>>| h.output_layer_2.weight.dims()[1];
    model.classifier = match model.classifier.take() {
        Some(mut head) if labels_of(&head) == data.labels_num => {
            head.pooling = opts.pooling;
            Some(head)
        }
        _ => Some(init_head(
            hidden,
            data.labels_num,
            opts.pooling,
            opts.seed,
            &device,
        )),
    };

    let (n, seq, bs) = (data.train.len(), data.train.seq, opts.batch_size);
    let schedule = WarmupLinear::new(
        opts.learning_rate,
        opts.warmup,
        WarmupLinear::finetune_steps(n, opts.epochs, bs),
    );
    let mut optim = OptimizerAdaptor::<UerAdamW, Model<A<B>>, A<B>>::from(opts.optimizer);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed);
    let mut order: Vec<usize> = (0..n).collect();
    let (mut step, mut reports) = (0usize, Vec::new());
    let mut best: Option<Best<B>> = None;
    for epoch in 1..=opts.epochs {
        let t0 = Instant::now();
        order.shuffle(&mut rng);
        let batches = n.div_ceil(bs);
        progress.start(&format!("epoch {epoch}/{}", opts.epochs), batches as u64);
        let mut losses: Vec<Tensor<B, 1>> = Vec::with_capacity(batches);
        for chunk in order.chunks(bs) {
            let (ids, seg, labels) = data.train.gather(chunk);
            let pool = pool_weights(&seg, chunk.len(), seq, opts.pooling)
                .map(|w| Tensor::from_data(TensorData::new(w, [chunk.len(), seq]), &device));
            let (ids, seg) = model.inputs(&ids, &seg, chunk.len(), seq, &device)?;
            let logits = model.classify(ids, seg, pool, opts.dropout)?;
            let loss = nll_loss(logits, &labels);
            losses.push(loss.clone().inner());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(schedule.lr_at(step), model, grads);
            step += 1;
            progress.advance(1);
        }
        progress.finish();
        // Read back once per epoch, so a GPU is not synchronised every batch.
        let batch_losses = Tensor::cat(losses, 0)
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .unwrap_or_default();
        let loss = batch_losses.iter().map(|&l| f64::from(l)).sum::<f64>() / batches as f64;
        let valid = model.valid();
        let dev_logits = all_logits(&valid, &data.dev, bs, opts.pooling, &device)?;
        let dev = metrics(&dev_logits, &data.dev.labels, data.labels_num);
        let acc = dev.accuracy();
        let improved = best.as_ref().is_none_or(|b| acc > b.1);
        if improved {
            best = Some((epoch, acc, valid, dev_logits));
        }
        let report = EpochReport {
            epoch,
            epochs: opts.epochs,
            loss,
            batch_losses,
            dev,
            improved,
            seconds: t0.elapsed().as_secs_f64(),
        };
        on_epoch(&report);
        reports.push(report);
    }
    let (best_epoch, best_dev, best_model, dev_logits) = best.expect("at least one epoch");
    let test = match &data.test {
        Some(t) => Some(evaluate(
            &best_model,
            t,
            bs,
            data.labels_num,
            opts.pooling,
            &device,
        )?),
        None => None,
    };
    let checkpoint = classifier::to_checkpoint(&best_model);
    Ok(FinetuneResult {
        epochs: reports,
        best_epoch,
        best_dev,
        test,
        dev_logits,
        checkpoint,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Logits of every row of `data` in batches of `batch_size`, on the host `[rows][labels]`.
fn all_logits<B: Backend>(
    model: &Model<B>,
    data: &Encoded,
    batch_size: usize,
    pooling: Pooling,
    device: &B::Device,
) -> Result<Vec<Vec<f32>>, TrainError> {
    let seq = data.seq;
    let mut out = Vec::with_capacity(data.len());
    let rows: Vec<usize> = (0..data.len()).collect();
    for chunk in rows.chunks(batch_size.max(1)) {
        let (ids, seg, _) = data.gather(chunk);
        let pool = pool_weights(&seg, chunk.len(), seq, pooling)
            .map(|w| Tensor::from_data(TensorData::new(w, [chunk.len(), seq]), device));
        let (ids, seg) = model.inputs(&ids, &seg, chunk.len(), seq, device)?;
        let logits = model.classify(ids, seg, pool, 0.0)?;
        let labels = logits.dims()[1];
        let values = logits
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .unwrap_or_default();
        out.extend(values.chunks(labels).map(<[f32]>::to_vec));
    }
    Ok(out)
}

fn argmax(row: &[f32]) -> usize {
    // First maximum, as torch.argmax.
    row.iter()
        .enumerate()
        .fold(0, |best, (i, &v)| if v > row[best] { i } else { best })
}

/// Accuracy and confusion of `model` on `data` (rows without a label are skipped).
pub fn evaluate<B: Backend>(
    model: &Model<B>,
    data: &Encoded,
    batch_size: usize,
    labels_num: usize,
    pooling: Pooling,
    device: &B::Device,
) -> Result<Metrics, TrainError> {
    let logits = all_logits(model, data, batch_size, pooling, device)?;
    Ok(metrics(&logits, &data.labels, labels_num))
}

/// Accuracy and confusion of `logits` against `labels` (rows labelled −1 are skipped).
fn metrics(logits: &[Vec<f32>], labels: &[i64], labels_num: usize) -> Metrics {
    let mut m = Metrics::new(labels_num);
    for (row, &gold) in logits.iter().zip(labels) {
        if gold < 0 {
            continue;
        }
        let pred = argmax(row);
        m.confusion[pred][gold as usize] += 1;
        m.correct += usize::from(pred == gold as usize);
        m.total += 1;
    }
    m
}

/// The best epoch so far: its number, dev accuracy, model and dev logits.
type Best<B> = (usize, f64, Model<B>, Vec<Vec<f32>>);

/// One setting of a grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GridPoint {
    pub learning_rate: f64,
    pub batch_size: usize,
    pub epochs: usize,
}

/// One finished grid run.
#[derive(Debug, Clone)]
pub struct GridRow {
    pub point: GridPoint,
    pub best_dev: f64,
    pub best_epoch: usize,
    pub test: Option<f64>,
    pub seconds: f64,
}

/// Every combination of the lists, learning rate outermost (run_classifier_grid's order).
pub fn grid_points(
    learning_rates: &[f64],
    batch_sizes: &[usize],
    epochs: &[usize],
) -> Vec<GridPoint> {
    let mut points = Vec::new();
    for &learning_rate in learning_rates {
        for &batch_size in batch_sizes {
            for &e in epochs {
                points.push(GridPoint {
                    learning_rate,
                    batch_size,
                    epochs: e,
                });
            }
        }
    }
    points
}

/// Runs [`finetune`] for every point (other options from `base`); `on_run` sees each result.
/// Rows come back sorted by dev accuracy, best first.
pub fn grid(
    opened: &OpenedModel,
    data: &TaskData,
    base: &FinetuneOptions,
    points: &[GridPoint],
    device: DeviceSpec,
    progress: &dyn Progress,
    on_run: &mut dyn FnMut(&GridRow),
) -> Result<Vec<GridRow>, TrainError> {
    let mut rows = Vec::new();
    for &point in points {
        let opts = FinetuneOptions {
            learning_rate: point.learning_rate,
            batch_size: point.batch_size,
            epochs: point.epochs,
            ..*base
        };
        let r = finetune(opened, data, &opts, device, progress, &mut |_| {})?;
        let row = GridRow {
            point,
            best_dev: r.best_dev,
            best_epoch: r.best_epoch,
            test: r.test.map(|m| m.accuracy()),
            seconds: r.seconds,
        };
        on_run(&row);
        rows.push(row);
    }
    rows.sort_by(|a, b| b.best_dev.total_cmp(&a.best_dev));
    Ok(rows)
}

/// Predictions of a fine-tuned classifier.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    /// Argmax label per row.
    pub labels: Vec<usize>,
    /// Raw logits per row.
    pub logits: Vec<Vec<f32>>,
    /// Softmax probabilities per row.
    pub probabilities: Vec<Vec<f32>>,
}

struct PredictJob<'a> {
    opened: &'a OpenedModel,
    data: &'a Encoded,
    pooling: Pooling,
    batch_size: usize,
}

impl BackendJob for PredictJob<'_> {
    type Output = Result<Predictions, TrainError>;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let (mut model, _) =
            load_model::<B>(&self.opened.checkpoint, &self.opened.config, &device)?;
        // The loader attaches the head: run_classifier's `output_layer_{1,2}` or UER-py
        // 2019's classification target (`target.linear_{1,2}`), labels from its shape.
        match model.classifier.as_mut() {
            Some(head) => head.pooling = self.pooling,
            None => {
                return Err(TrainError::NoHead {
                    key: format!("{}.weight", classifier::HEAD_1),
                    hint: "the weights are not a classifier (neither run_classifier's `output_layer_{1,2}` nor UER-py 2019's classification target `target.linear_{1,2}`); run `uerzoo finetune` first".into(),
                });
            }
        }
        if self.data.seq > model.config.max_seq_length {
            return Err(TrainError::SeqLength {
                seq: self.data.seq,
                max: model.config.max_seq_length,
            });
        }
        let logits = all_logits(&model, self.data, self.batch_size, self.pooling, &device)?;
        let labels = logits.iter().map(|r| argmax(r)).collect();
        let probabilities = logits.iter().map(|r| softmax(r)).collect();
        Ok(Predictions {
            labels,
            logits,
            probabilities,
        })
    }
}

fn softmax(row: &[f32]) -> Vec<f32> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = row.iter().map(|&v| (v - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|v| v / sum).collect()
}

/// Batched inference with a fine-tuned classifier (UER-py's run_classifier_infer).
pub fn predict(
    opened: &OpenedModel,
    data: &Encoded,
    pooling: Pooling,
    batch_size: usize,
    device: DeviceSpec,
) -> Result<Predictions, TrainError> {
    run_on(
        device,
        PredictJob {
            opened,
            data,
            pooling,
            batch_size,
        },
    )?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_match_uer_formulas() {
        let m = Metrics {
            correct: 5,
            total: 8,
            confusion: vec![vec![3, 1], vec![2, 2]],
        };
        assert_eq!(m.accuracy(), 0.625);
        let s = m.per_class();
        assert!((s[0].precision - 0.75).abs() < 1e-6 && (s[0].recall - 0.6).abs() < 1e-6);
        assert!((s[1].precision - 0.5).abs() < 1e-6 && (s[1].recall - 2.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn grid_covers_every_combination() {
        let p = grid_points(&[3e-5, 1e-4], &[32, 64], &[3, 5, 8]);
        assert_eq!(p.len(), 12);
        assert_eq!(
            p[0],
            GridPoint {
                learning_rate: 3e-5,
                batch_size: 32,
                epochs: 3
            }
        );
        assert_eq!(
            p[11],
            GridPoint {
                learning_rate: 1e-4,
                batch_size: 64,
                epochs: 8
            }
        );
    }

    #[test]
    fn argmax_takes_the_first_maximum() {
        assert_eq!(argmax(&[0.1, 0.7, 0.7]), 1);
        assert_eq!(softmax(&[0.0, 0.0]), vec![0.5, 0.5]);
    }
}
