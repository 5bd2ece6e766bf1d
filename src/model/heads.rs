//! Heads on top of the encoder, as UER-py's targets and run_classifier build them:
//! MLM (`target.mlm.*`), sentence prediction (`target.sp.*`: BERT's NSP, ALBERT's SOP),
//! LM (`target.lm.output_layer`) and the sequence classifier (`output_layer_{1,2}`, or
//! UER-py 2019's classification target `target.cls.linear_{1,2}`: the same computation).

use super::config::Activation;
use super::encoder::{activate, apply};
use super::layer_norm::LayerNorm;
use crate::kernels;
use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Tensor, backend::Backend};
use kernels::Bf16Linear;
use kernels::int8::QLinear;
use std::sync::Arc;

/// Which weight a head decodes to the vocabulary with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Decoder {
    /// The head's own `linear_2` / `output_layer`. A tied one is loaded as the word
    /// embedding's storage, so this is also the tied decoder for inference.
    #[default]
    Own,
    /// The word embedding parameter itself (`x·Eᵀ` + the head's bias): training a tied
    /// model, so that the one parameter receives the gradients of both uses.
    WordEmbedding,
}

/// `x·W + b` to the vocabulary over the last dimension of `x`: the head's `out` layer, or
/// with `word` (`[vocab, emb]`, [`Decoder::WordEmbedding`]) its transpose and `out`'s bias.
fn decode<B: Backend, const D: usize>(
    out: &Linear<B>,
    x: Tensor<B, D>,
    word: Option<Tensor<B, 2>>,
) -> Tensor<B, D> {
    let Some(word) = word else {
        return kernels::linear(out, x);
    };
    let dims = x.dims();
    let e = dims[D - 1];
    let rows = dims[..D - 1].iter().product::<usize>();
    let y = x.reshape([rows, e]).matmul(word.transpose());
    let y = match &out.bias {
        Some(b) => y + b.val().unsqueeze(),
        None => y,
    };
    let mut shape = dims;
    shape[D - 1] = y.dims()[1];
    y.reshape(shape)
}

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
    /// `[batch, seq, hidden]` → logits `[batch, seq, vocab]` (inference).
    pub fn forward(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        self.logits(hidden, None)
    }

    /// `[…, hidden]` → `[…, vocab]` (any rank: the pretrainer runs only the masked rows),
    /// decoding with `linear_2`, or with `word` (`[vocab, emb]`) when given
    /// ([`Decoder::WordEmbedding`]).
    pub fn logits<const D: usize>(
        &self,
        x: Tensor<B, D>,
        word: Option<Tensor<B, 2>>,
    ) -> Tensor<B, D> {
        let x = activate(kernels::linear(&self.linear_1, x), self.act);
        decode(&self.linear_2, self.layer_norm.forward(x), word)
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
    /// `output_layer` quantized for int8 inference ([`super::Dtype::Int8`]; the logits stay
    /// f32): decoding reads the vocabulary's weights once per token, a quarter of f32's bytes.
    #[module(skip)]
    pub int8: Option<Arc<QLinear>>,
    /// `output_layer` rounded to bf16 for bf16 inference ([`super::Dtype::Bf16`]).
    #[module(skip)]
    pub bf16: Option<Arc<Bf16Linear>>,
}

impl<B: Backend> LmHead<B> {
    /// A head decoding with `output_layer` in f32.
    pub fn new(output_layer: Linear<B>) -> Self {
        LmHead {
            output_layer,
            int8: None,
            bf16: None,
        }
    }

    /// `[batch, seq, hidden]` → logits `[batch, seq, vocab]` (inference: through the int8 or
    /// bf16 twin of `output_layer` when the model was loaded with one).
    pub fn forward(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        apply(
            &self.output_layer,
            self.int8.as_deref(),
            self.bf16.as_deref(),
            hidden,
            None,
        )
    }

    /// `[…, hidden]` → `[…, vocab]`, decoding with `output_layer`, or with `word`
    /// (`[vocab, hidden]`) when given ([`Decoder::WordEmbedding`]).
    pub fn logits<const D: usize>(
        &self,
        x: Tensor<B, D>,
        word: Option<Tensor<B, 2>>,
    ) -> Tensor<B, D> {
        decode(&self.output_layer, x, word)
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
    fn the_word_embedding_decodes_as_the_tied_decoder_loads() {
        // A tied model (decoders left out of the file): inference decodes with the loaded
        // `linear_2`/`output_layer` (the word embedding's storage), training with the word
        // embedding parameter; both give the same logits, for rows and for sequences.
        for causal in [false, true] {
            let json = serde_json::json!({"hidden_size": 16, "heads_num": 2, "layers_num": 1,
                "feedforward_size": 32, "mask": if causal { "causal" } else { "fully_visible" }});
            let mut cfg = crate::model::ModelConfig::from_uer_json(&json).unwrap();
            (cfg.vocab_size, cfg.max_seq_length) = (30, 8);
            let mut ckpt = crate::model::random_checkpoint(&cfg, 5);
            ckpt.tensors.retain(|(n, _)| {
                *n != format!("{}.weight", crate::model::load::keys::MLM_2)
                    && *n != format!("{}.weight", crate::model::load::keys::LM_OUT)
            });
            let dev = Default::default();
            let (model, report) =
                crate::model::load_model::<crate::model::Cpu>(&ckpt, &cfg, &dev).unwrap();
            assert_eq!(report.tied.len(), 1, "{:?}", report.tied);
            let (ids, seg) = model
                .inputs(&[1, 5, 7, 9, 2, 3], &[1, 1, 1, 1, 1, 1], 2, 3, &dev)
                .unwrap();
            let hidden = model.encode(ids, seg);
            let own = model.token_logits(hidden.clone(), Decoder::Own).unwrap();
            let word = model
                .token_logits(hidden.clone(), Decoder::WordEmbedding)
                .unwrap();
            let rows = model
                .token_logits(hidden.reshape([6, 16]), Decoder::WordEmbedding)
                .unwrap();
            let own = own.into_data().to_vec::<f32>().unwrap();
            for other in [word.into_data(), rows.into_data()] {
                for (a, b) in own.iter().zip(other.to_vec::<f32>().unwrap()) {
                    assert!((a - b).abs() <= 1e-5, "causal {causal}: {a} vs {b}");
                }
            }
        }
    }

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
