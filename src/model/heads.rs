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

/// Pools `[batch, seq, hidden]` to `[batch, hidden]` over all positions, as UER-py does.
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
    /// `[batch, seq, hidden]` → logits `[batch, labels]`.
    pub fn forward(&self, hidden: Tensor<B, 3>) -> Tensor<B, 2> {
        let pooled = pool(hidden, self.pooling);
        let inner = kernels::linear(&self.output_layer_1, pooled).tanh();
        kernels::linear(&self.output_layer_2, inner)
    }
}
