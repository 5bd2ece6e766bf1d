//! Heads on top of the encoder, as UER-py's targets and run_classifier build them:
//! MLM (`target.mlm.*`), sentence prediction (`target.sp.*`: BERT's NSP, ALBERT's SOP),
//! LM (`target.lm.output_layer`) and the sequence classifier (`output_layer_{1,2}`).

use super::config::Activation;
use super::encoder::activate;
use super::layer_norm::LayerNorm;
use crate::kernels;
use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Tensor, backend::Backend};

/// Masked-language-model head: linear → act → LN → decoder (+ bias) to the vocabulary.
/// A tied decoder holds the word embedding's transpose.
#[derive(Module, Debug)]
pub struct MlmHead<B: Backend> {
    pub linear_1: Linear<B>,
    pub layer_norm: LayerNorm<B>,
    pub linear_2: Linear<B>,
    #[module(skip)]
    pub act: Activation,
}

impl<B: Backend> MlmHead<B> {
    /// `[batch, seq, hidden]` → logits `[batch, seq, vocab]`.
    pub fn forward(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = activate(kernels::linear(&self.linear_1, hidden), self.act);
        kernels::linear(&self.linear_2, self.layer_norm.forward(x))
    }
}

/// Sentence prediction (NSP/SOP): first token → linear → tanh → linear to 2 classes.
#[derive(Module, Debug)]
pub struct SpHead<B: Backend> {
    pub linear_1: Linear<B>,
    pub linear_2: Linear<B>,
}

impl<B: Backend> SpHead<B> {
    /// `[batch, seq, hidden]` → logits `[batch, 2]`.
    pub fn forward(&self, hidden: Tensor<B, 3>) -> Tensor<B, 2> {
        let first = pool(hidden, Pooling::First);
        kernels::linear(
            &self.linear_2,
            kernels::linear(&self.linear_1, first).tanh(),
        )
    }
}

/// Language-model head (GPT-2): one linear to the vocabulary, tied or not, bias optional.
#[derive(Module, Debug)]
pub struct LmHead<B: Backend> {
    pub output_layer: Linear<B>,
}

impl<B: Backend> LmHead<B> {
    /// `[batch, seq, hidden]` → logits `[batch, seq, vocab]`.
    pub fn forward(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        kernels::linear(&self.output_layer, hidden)
    }
}

/// How a sequence becomes one vector (UER-py run_classifier / extract_features).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pooling {
    /// The first token (`[CLS]`).
    #[default]
    First,
    /// Mean over all positions (UER-py averages padding too).
    Mean,
    /// Element-wise max over all positions.
    Max,
    /// The last position.
    Last,
}

impl std::str::FromStr for Pooling {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "first" => Ok(Pooling::First),
            "mean" => Ok(Pooling::Mean),
            "max" => Ok(Pooling::Max),
            "last" => Ok(Pooling::Last),
            other => Err(format!(
                "unknown pooling `{other}`; use first, mean, max or last"
            )),
        }
    }
}

impl std::fmt::Display for Pooling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Pooling::First => "first",
            Pooling::Mean => "mean",
            Pooling::Max => "max",
            Pooling::Last => "last",
        })
    }
}

/// Pools `[batch, seq, hidden]` to `[batch, hidden]` over all positions, padding included,
/// as UER-py's extract_features does (the classifier pools over real tokens: [`pool_hidden`]).
pub fn pool<B: Backend>(hidden: Tensor<B, 3>, pooling: Pooling) -> Tensor<B, 2> {
    let [b, s, h] = hidden.dims();
    let picked = match pooling {
        Pooling::First => hidden.narrow(1, 0, 1),
        Pooling::Last => hidden.narrow(1, s - 1, 1),
        Pooling::Mean => hidden.mean_dim(1),
        Pooling::Max => hidden.max_dim(1),
    };
    picked.reshape([b, h])
}

/// Mean over the positions where `keep` is 1 (`keep`: `[batch, seq]`, 0/1).
pub fn masked_mean<B: Backend>(hidden: Tensor<B, 3>, keep: Tensor<B, 2>) -> Tensor<B, 2> {
    let [b, _, h] = hidden.dims();
    let keep3 = keep.clone().unsqueeze_dim::<3>(2);
    let sum = (hidden * keep3).sum_dim(1).reshape([b, h]);
    let count = keep.sum_dim(1).clamp_min(1.0);
    sum / count
}

/// Host-side pooling weights `[batch, seq]` for run_classifier's pooling over real tokens
/// (segment > 0): `mean` = 1/len on real tokens, `last` = one-hot at the last real token,
/// `max` = 0 on real tokens and −1e9 elsewhere (added before the max). `first` needs none.
///
/// UER-py multiplies by the raw segment ids (so a pair's second sentence counts twice in
/// `mean`); this uses the 0/1 mask those lines intend. Single sentences are identical.
pub fn pool_weights(
    segment: &[i64],
    batch: usize,
    seq: usize,
    pooling: Pooling,
) -> Option<Vec<f32>> {
    if pooling == Pooling::First {
        return None;
    }
    let mut w = vec![0f32; batch * seq];
    for b in 0..batch {
        let row = &segment[b * seq..(b + 1) * seq];
        let len = row.iter().filter(|&&s| s > 0).count().max(1);
        for (j, &s) in row.iter().enumerate() {
            w[b * seq + j] = match pooling {
                Pooling::Mean if s > 0 => 1.0 / len as f32,
                Pooling::Max if s <= 0 => -1e9,
                _ => 0.0,
            };
        }
        if pooling == Pooling::Last {
            w[b * seq + len - 1] = 1.0;
        }
    }
    Some(w)
}

/// Pools `[batch, seq, hidden]` with [`pool_weights`] (already on the device).
pub fn pool_hidden<B: Backend>(
    hidden: Tensor<B, 3>,
    pooling: Pooling,
    weights: Option<Tensor<B, 2>>,
) -> Tensor<B, 2> {
    let [b, _, h] = hidden.dims();
    match (pooling, weights) {
        (Pooling::Max, Some(w)) => (hidden + w.unsqueeze_dim::<3>(2))
            .max_dim(1)
            .reshape([b, h]),
        (Pooling::Mean | Pooling::Last, Some(w)) => (hidden * w.unsqueeze_dim::<3>(2))
            .sum_dim(1)
            .reshape([b, h]),
        _ => hidden.narrow(1, 0, 1).reshape([b, h]),
    }
}

/// Sequence classifier (UER-py run_classifier): pooling → `output_layer_1` → tanh →
/// `output_layer_2` to the labels.
#[derive(Module, Debug)]
pub struct ClassifierHead<B: Backend> {
    pub output_layer_1: Linear<B>,
    pub output_layer_2: Linear<B>,
    #[module(skip)]
    pub pooling: Pooling,
}

impl<B: Backend> ClassifierHead<B> {
    /// `[batch, seq, hidden]` → logits `[batch, labels]`, pooled over the real tokens with
    /// `weights` from [`pool_weights`] (`None` for `first`).
    pub fn forward(&self, hidden: Tensor<B, 3>, weights: Option<Tensor<B, 2>>) -> Tensor<B, 2> {
        let pooled = pool_hidden(hidden, self.pooling, weights);
        let inner = kernels::linear(&self.output_layer_1, pooled).tanh();
        kernels::linear(&self.output_layer_2, inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_weights_cover_real_tokens() {
        let seg = [1, 1, 1, 0, 1, 2, 0, 0];
        assert_eq!(pool_weights(&seg, 2, 4, Pooling::First), None);
        let m = pool_weights(&seg, 2, 4, Pooling::Mean).unwrap();
        assert_eq!(
            m,
            vec![1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0, 0.0, 0.5, 0.5, 0.0, 0.0]
        );
        let l = pool_weights(&seg, 2, 4, Pooling::Last).unwrap();
        assert_eq!(l, vec![0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
        let x = pool_weights(&seg, 2, 4, Pooling::Max).unwrap();
        assert_eq!(x, vec![0.0, 0.0, 0.0, -1e9, 0.0, 0.0, -1e9, -1e9]);
    }
}
