//! Host-side entry points the commands call: forward on id arrays, masked-token
//! prediction, pooled features. Each loads the model on the requested backend, runs it and
//! returns plain vectors, so the CLI never touches a Burn type. The whole commands
//! (`fill-mask`, `forward`, `extract-features`: opening by name, files in and out) are one
//! level up, in `resolve::tasks`, which may open registry names.

use super::ModelError;
use super::backend::{BackendJob, DeviceSpec, run_on};
use super::heads::{ClassifierHead, Pooling, pool, pool_weights};
use super::load::{LoadReport, load_model};
use super::open::OpenedModel;
use burn::tensor::{Tensor, TensorData, activation, backend::Backend};

/// A dense f32 array on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

impl HostTensor {
    fn from_burn<B: Backend, const D: usize>(t: Tensor<B, D>) -> Self {
        let shape = t.dims().to_vec();
        let values = t
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .unwrap_or_default();
        HostTensor { shape, values }
    }
}

/// What [`forward`] returns.
#[derive(Debug, Clone)]
pub struct ForwardOutput {
    /// Last encoder layer `[batch, seq, hidden]`.
    pub hidden: HostTensor,
    /// Pretraining head logits `[batch, seq, vocab]`, when the weights have such a head;
    /// else a classifier's label logits `[batch, labels]` (pooled as
    /// [`OpenedModel::pooling`] says).
    pub logits: Option<HostTensor>,
    /// What loading found.
    pub report: LoadReport,
}

/// Token ids and segments, row-major `[batch, seq]`.
#[derive(Debug, Clone)]
pub struct Batch {
    pub ids: Vec<i64>,
    pub segment: Vec<i64>,
    pub batch: usize,
    pub seq: usize,
}

struct ForwardJob<'a> {
    model: &'a OpenedModel,
    input: &'a Batch,
}

impl BackendJob for ForwardJob<'_> {
    type Output = Result<ForwardOutput, ModelError>;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let (model, report) = load_model::<B>(&self.model.checkpoint, &self.model.config, &device)?;
        let b = self.input;
        let (ids, seg) = model.inputs(&b.ids, &b.segment, b.batch, b.seq, &device)?;
        let out = model.forward(ids, seg);
        let logits = match (out.logits, &model.classifier) {
            (Some(tokens), _) => Some(HostTensor::from_burn(tokens)),
            (None, Some(head)) => {
                // A classifier: one row of label logits per sequence, pooled as recorded.
                let pooling = self.model.pooling()?;
                let weights = pool_weights(&b.segment, b.batch, b.seq, pooling)
                    .map(|w| Tensor::from_data(TensorData::new(w, [b.batch, b.seq]), &device));
                let head = ClassifierHead {
                    pooling,
                    ..head.clone()
                };
                Some(HostTensor::from_burn(
                    head.forward(out.hidden.clone(), weights),
                ))
            }
            (None, None) => None,
        };
        Ok(ForwardOutput {
            hidden: HostTensor::from_burn(out.hidden),
            logits,
            report,
        })
    }
}

/// Runs `model` on `input` on `device`: hidden states and the pretraining head's logits.
pub fn forward(
    model: &OpenedModel,
    input: &Batch,
    device: DeviceSpec,
) -> Result<ForwardOutput, ModelError> {
    run_on(device, ForwardJob { model, input })?
}

/// One candidate for a masked position.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub id: u32,
    /// Softmax probability over the vocabulary.
    pub score: f32,
}

struct FillMaskJob<'a> {
    model: &'a OpenedModel,
    ids: &'a [i64],
    positions: &'a [usize],
    top_k: usize,
}

impl BackendJob for FillMaskJob<'_> {
    type Output = Result<Vec<Vec<Candidate>>, ModelError>;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let (model, _) = load_model::<B>(&self.model.checkpoint, &self.model.config, &device)?;
        if model.mlm.is_none() {
            return Err(ModelError::Input(
                "the weights have no MLM head (`target.mlm.*`); fill-mask needs one".into(),
            ));
        }
        let seq = self.ids.len();
        let seg = vec![1i64; seq];
        let (ids, seg) = model.inputs(self.ids, &seg, 1, seq, &device)?;
        let logits = model.forward(ids, seg).logits.expect("MLM head present");
        let vocab = logits.dims()[2];
        let mut all = Vec::new();
        for &p in self.positions {
            let row = logits.clone().narrow(1, p, 1).reshape([vocab]);
            let probs = activation::softmax(row, 0)
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .unwrap_or_default();
            all.push(top_k(&probs, self.top_k));
        }
        Ok(all)
    }
}

/// The `k` largest entries of `probs`, best first (ties: lower id first).
pub fn top_k(probs: &[f32], k: usize) -> Vec<Candidate> {
    let mut idx: Vec<usize> = (0..probs.len()).collect();
    let k = k.min(idx.len());
    idx.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    idx.into_iter()
        .take(k)
        .map(|i| Candidate {
            id: i as u32,
            score: probs[i],
        })
        .collect()
}

/// Predicts the tokens at `positions` of one sequence `ids` (segment 1 everywhere).
pub fn fill_mask(
    model: &OpenedModel,
    ids: &[i64],
    positions: &[usize],
    top_k: usize,
    device: DeviceSpec,
) -> Result<Vec<Vec<Candidate>>, ModelError> {
    if let Some(&p) = positions.iter().find(|&&p| p >= ids.len()) {
        return Err(ModelError::Input(format!(
            "mask position {p} is past the sequence end {}",
            ids.len()
        )));
    }
    run_on(
        device,
        FillMaskJob {
            model,
            ids,
            positions,
            top_k,
        },
    )?
}

struct FeaturesJob<'a> {
    model: &'a OpenedModel,
    input: &'a Batch,
    pooling: Pooling,
    batch_size: usize,
}

impl BackendJob for FeaturesJob<'_> {
    type Output = Result<HostTensor, ModelError>;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let (model, _) = load_model::<B>(&self.model.checkpoint, &self.model.config, &device)?;
        let b = self.input;
        let mut values = Vec::new();
        let mut hidden = 0;
        for start in (0..b.batch).step_by(self.batch_size.max(1)) {
            let n = self.batch_size.max(1).min(b.batch - start);
            let range = start * b.seq..(start + n) * b.seq;
            let (ids, seg) =
                model.inputs(&b.ids[range.clone()], &b.segment[range], n, b.seq, &device)?;
            // UER-py extract_features: hidden × segment (zeroes padding), then pool over all
            // seq_length positions (so "mean" divides by seq_length, padding included).
            let keep = seg.clone().float().unsqueeze_dim::<3>(2);
            let h = model.encode(ids, seg) * keep;
            hidden = h.dims()[2];
            values.extend(HostTensor::from_burn(pool(h, self.pooling)).values);
        }
        Ok(HostTensor {
            shape: vec![b.batch, hidden],
            values,
        })
    }
}

/// Sentence vectors as UER-py's extract_features computes them, in batches of `batch_size`.
pub fn extract_features(
    model: &OpenedModel,
    input: &Batch,
    pooling: Pooling,
    batch_size: usize,
    device: DeviceSpec,
) -> Result<HostTensor, ModelError> {
    run_on(
        device,
        FeaturesJob {
            model,
            input,
            pooling,
            batch_size,
        },
    )?
}
