//! The transformer encoder as UER-py builds it: multi-head self-attention and a
//! position-wise feed-forward, post-LN (BERT/ALBERT) or pre-LN with a final LN (GPT-2),
//! one layer per index or one layer shared by all (ALBERT).
//!
//! This is the one layer forward: inference, fine-tuning and pretraining call it without a
//! cache (dropout `p` when training); generation's decode step ([`super::kv_cache`]) calls the
//! same functions with a [`KvCache`], which appends the new positions' keys and values
//! between the projection and the attention. Attention is [`kernels::self_attention`]
//! (scores → mask add → softmax → dropout → values, fused on Flex) and each activation one
//! function ([`activate`]).

use super::config::{Activation, LnPosition, ModelConfig};
use super::kv_cache::{KvCache, LayerKv};
use super::layer_norm::LayerNorm;
use super::lstm::Lstm;
use crate::kernels;
use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Tensor, activation, backend::Backend};
use kernels::Bf16Linear;
use kernels::int8::QLinear;
use std::sync::Arc;

/// `layer`, or its int8 or bf16 twin when the model was loaded with int8 or bf16 linear
/// layers (the encoder's linear layers and GPT-2's LM head).
pub(crate) fn apply<B: Backend, const D: usize>(
    layer: &Linear<B>,
    int8: Option<&QLinear>,
    bf16: Option<&Bf16Linear>,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    match (int8, bf16) {
        (Some(q), _) => kernels::int8_linear(q, x),
        (None, Some(h)) => kernels::bf16_linear(h, x),
        (None, None) => kernels::linear(layer, x),
    }
}

/// Applies `act` element-wise.
pub fn activate<B: Backend, const D: usize>(x: Tensor<B, D>, act: Activation) -> Tensor<B, D> {
    match act {
        Activation::Gelu => kernels::gelu(x),
        Activation::GeluFast => kernels::gelu_tanh(x),
        Activation::Relu => activation::relu(x),
    }
}

/// Inverted dropout: zeroes each value with probability `p`, scales the rest by `1/(1−p)`
/// ([`kernels::dropout`]: one pass, seeded by [`kernels::seed`], mask reused in backward).
pub fn dropout_fn<B: Backend, const D: usize>(x: Tensor<B, D>, p: f64) -> Tensor<B, D> {
    kernels::dropout(x, p)
}

/// Multi-head self-attention (UER `self_attn`: `linear_layers.{0,1,2}`, `final_linear`).
#[derive(Module, Debug)]
pub struct SelfAttention<B: Backend> {
    pub query: Linear<B>,
    pub key: Linear<B>,
    pub value: Linear<B>,
    pub output: Linear<B>,
    #[module(skip)]
    pub heads: usize,
    /// query, key, value, output quantized for int8 inference ([`super::Dtype::Int8`]).
    #[module(skip)]
    pub int8: Option<Arc<[QLinear; 4]>>,
    /// query, key, value, output rounded to bf16 for bf16 inference ([`super::Dtype::Bf16`]).
    #[module(skip)]
    pub bf16: Option<Arc<[Bf16Linear; 4]>>,
}

impl<B: Backend> SelfAttention<B> {
    /// `[batch, seq, hidden]` → `[batch, seq, hidden]` with the additive mask `bias`
    /// (`[batch|1, 1, seq, keys]`); dropout `p` (0 at inference) on the attention
    /// probabilities and on the output, as UER-py's `MultiHeadedAttention` + the layer's
    /// `dropout_1`. With `cache`, `x` holds the positions after the cached ones: their keys
    /// and values are appended and the queries attend to all positions so far.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        bias: Option<Tensor<B, 4>>,
        p: f64,
        cache: Option<&mut LayerKv<B>>,
    ) -> Tensor<B, 3> {
        let q8 = |i: usize| self.int8.as_ref().map(|q| &q[i]);
        let h16 = |i: usize| self.bf16.as_ref().map(|h| &h[i]);
        let q = apply(&self.query, q8(0), h16(0), x.clone());
        let mut k = apply(&self.key, q8(1), h16(1), x.clone());
        let mut v = apply(&self.value, q8(2), h16(2), x);
        if let Some(cache) = cache {
            (k, v) = cache.append(k, v);
        }
        let ctx = kernels::self_attention(q, k, v, self.heads, bias, p);
        dropout_fn(apply(&self.output, q8(3), h16(3), ctx), p)
    }
}

/// Position-wise feed-forward (`feed_forward.linear_1` → act → `linear_2`).
#[derive(Module, Debug)]
pub struct FeedForward<B: Backend> {
    pub linear_1: Linear<B>,
    pub linear_2: Linear<B>,
    #[module(skip)]
    pub act: Activation,
    /// linear_1, linear_2 quantized for int8 inference ([`super::Dtype::Int8`]).
    #[module(skip)]
    pub int8: Option<Arc<[QLinear; 2]>>,
    /// linear_1, linear_2 rounded to bf16 for bf16 inference ([`super::Dtype::Bf16`]).
    #[module(skip)]
    pub bf16: Option<Arc<[Bf16Linear; 2]>>,
}

impl<B: Backend> FeedForward<B> {
    /// With dropout `p` (0 at inference) on the output (UER-py's `dropout_2`).
    pub fn forward(&self, x: Tensor<B, 3>, p: f64) -> Tensor<B, 3> {
        let q8 = |i: usize| self.int8.as_ref().map(|q| &q[i]);
        let h16 = |i: usize| self.bf16.as_ref().map(|h| &h[i]);
        let inner = activate(apply(&self.linear_1, q8(0), h16(0), x), self.act);
        dropout_fn(apply(&self.linear_2, q8(1), h16(1), inner), p)
    }
}

/// One transformer layer (`encoder.transformer.{i}`).
#[derive(Module, Debug)]
pub struct TransformerLayer<B: Backend> {
    pub self_attn: SelfAttention<B>,
    pub feed_forward: FeedForward<B>,
    pub layer_norm_1: LayerNorm<B>,
    pub layer_norm_2: LayerNorm<B>,
    #[module(skip)]
    pub ln_position: LnPosition,
}

impl<B: Backend> TransformerLayer<B> {
    /// One layer with dropout `p` (0 at inference; training passes UER-py's `dropout`) and,
    /// when decoding, this layer application's `cache` (see [`SelfAttention::forward`]).
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        bias: Option<Tensor<B, 4>>,
        p: f64,
        cache: Option<&mut LayerKv<B>>,
    ) -> Tensor<B, 3> {
        match self.ln_position {
            LnPosition::Post => {
                let h = self
                    .layer_norm_1
                    .forward(x.clone() + self.self_attn.forward(x, bias, p, cache));
                self.layer_norm_2
                    .forward(h.clone() + self.feed_forward.forward(h, p))
            }
            LnPosition::Pre => {
                let h = x.clone()
                    + self
                        .self_attn
                        .forward(self.layer_norm_1.forward(x), bias, p, cache);
                h.clone() + self.feed_forward.forward(self.layer_norm_2.forward(h), p)
            }
        }
    }
}

/// The layer stack: `layers_num` layers, or one shared layer applied `layers_num` times.
#[derive(Module, Debug)]
pub struct Encoder<B: Backend> {
    /// ALBERT's factorized projection `encoder.linear` (emb_size → hidden_size).
    pub linear: Option<Linear<B>>,
    pub layers: Vec<TransformerLayer<B>>,
    /// GPT-2's final LayerNorm (`encoder.layer_norm`), pre-LN only.
    pub layer_norm: Option<LayerNorm<B>>,
    /// UER-py 2019's LSTM encoder (`encoder.rnn`), in place of the transformer layers
    /// (`layers` is then empty).
    pub rnn: Option<Lstm<B>>,
    #[module(skip)]
    pub layers_num: usize,
}

impl<B: Backend> Encoder<B> {
    /// Runs the stack on embeddings `[batch, seq, emb]` with dropout `p` (0 at inference).
    /// With `cache` (decoding), the embeddings are the positions after the cached ones and
    /// each layer application appends their keys and values to its slot.
    pub fn forward(
        &self,
        emb: Tensor<B, 3>,
        bias: Option<Tensor<B, 4>>,
        p: f64,
        cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        if let Some(rnn) = &self.rnn {
            // UER-py's LstmEncoder: dropout on the output only. Decoding carries the
            // recurrent state in the cache.
            let [b, _, _] = emb.dims();
            let device = emb.device();
            let state = cache.map(|c| c.recurrent_state(rnn, b, &device));
            return dropout_fn(rnn.forward(emb, state), p);
        }
        let mut h = match &self.linear {
            Some(linear) => kernels::linear(linear, emb),
            None => emb,
        };
        let mut slots = cache.map(|c| c.layers.iter_mut());
        for i in 0..self.layers_num {
            let layer = &self.layers[if self.layers.len() == 1 { 0 } else { i }];
            let slot = slots.as_mut().map(|s| {
                s.next()
                    .expect("a KvCache has one slot per layer application")
            });
            h = layer.forward(h, bias.clone(), p, slot);
        }
        match &self.layer_norm {
            Some(ln) => ln.forward(h),
            None => h,
        }
    }
}

/// Checks that `layers` fits `config` (used by the loader).
pub(crate) fn expected_layers(config: &ModelConfig) -> usize {
    if config.parameter_sharing {
        1
    } else {
        config.layers_num
    }
}
