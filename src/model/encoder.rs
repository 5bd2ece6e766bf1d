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
use super::kv_cache::{KvCache, LayerKv, PACKED_ROWS};
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
/// layers (the encoder's linear layers and GPT-2's LM head); with `chunk`, on at most that
/// many rows of `x` per call (a packed prefill, see [`Attend::Packed`]).
pub(crate) fn apply<B: Backend, const D: usize>(
    layer: &Linear<B>,
    int8: Option<&QLinear>,
    bf16: Option<&Bf16Linear>,
    x: Tensor<B, D>,
    chunk: Option<usize>,
) -> Tensor<B, D> {
    let dims = x.dims();
    let rows: usize = dims[..D - 1].iter().product();
    if chunk.is_some() {
        // All rows in one call, the weight read once for all prompts: the int8 and bf16
        // kernels treat each row alone at any row count, f32 takes the few-rows kernel.
        match (int8, bf16) {
            (Some(q), _) => return kernels::int8_linear(q, x),
            (None, Some(h)) => return kernels::bf16_linear(h, x),
            (None, None) => {
                if let Some(y) = kernels::linear_rowwise(layer, &x) {
                    return y;
                }
            }
        }
    }
    if let Some(c) = chunk.filter(|&c| c > 0 && rows > c) {
        let flat = x.reshape([rows, dims[D - 1]]);
        let parts: Vec<Tensor<B, 2>> = (0..rows)
            .step_by(c)
            .map(|s| {
                apply(
                    layer,
                    int8,
                    bf16,
                    flat.clone().narrow(0, s, c.min(rows - s)),
                    None,
                )
            })
            .collect();
        let y = Tensor::cat(parts, 0);
        let mut out = dims;
        out[D - 1] = y.dims()[1];
        return y.reshape(out);
    }
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

/// What a layer's attention attends to and where it keeps its keys and values.
pub(crate) enum Attend<'a, B: Backend> {
    /// Each row of `x` is one sequence (the full forward, a decode step, a prompt prefilled
    /// alone): the additive mask `bias` and, when decoding, the layer's `cache`.
    Rows {
        bias: Option<Tensor<B, 4>>,
        cache: Option<&'a mut LayerKv<B>>,
    },
    /// Several prompts side by side in one row (a packed prefill,
    /// [`super::Model::prefill_packed`]): `x` is `[1, Σ lens, hidden]`, prompt `i` holds the
    /// next `lens[i]` positions, attends to them alone with `biases[i]` (its causal mask)
    /// and appends its keys and values to `caches[i]`. The linear layers take at most
    /// [`PACKED_ROWS`] rows per call.
    Packed {
        lens: &'a [usize],
        biases: &'a [Option<Tensor<B, 4>>],
        caches: Vec<&'a mut LayerKv<B>>,
    },
}

impl<B: Backend> Attend<'_, B> {
    /// The row limit of the linear layers' calls.
    fn chunk(&self) -> Option<usize> {
        match self {
            Attend::Rows { .. } => None,
            Attend::Packed { .. } => Some(PACKED_ROWS),
        }
    }
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
        self.forward_with(x, Attend::Rows { bias, cache }, p)
    }

    /// [`Self::forward`] with the attention's inputs as [`Attend`] says.
    pub(crate) fn forward_with(
        &self,
        x: Tensor<B, 3>,
        attend: Attend<'_, B>,
        p: f64,
    ) -> Tensor<B, 3> {
        let q8 = |i: usize| self.int8.as_ref().map(|q| &q[i]);
        let h16 = |i: usize| self.bf16.as_ref().map(|h| &h[i]);
        let chunk = attend.chunk();
        let q = apply(&self.query, q8(0), h16(0), x.clone(), chunk);
        let mut k = apply(&self.key, q8(1), h16(1), x.clone(), chunk);
        let mut v = apply(&self.value, q8(2), h16(2), x, chunk);
        let ctx = match attend {
            Attend::Rows { bias, cache } => {
                if let Some(cache) = cache {
                    (k, v) = cache.append(k, v);
                }
                kernels::self_attention(q, k, v, self.heads, bias, p)
            }
            Attend::Packed {
                lens,
                biases,
                caches,
            } => {
                // Each prompt attends to its own positions, as in a prefill alone.
                let mut start = 0;
                let mut parts = Vec::with_capacity(lens.len());
                for ((&len, bias), cache) in lens.iter().zip(biases).zip(caches) {
                    let part = |t: &Tensor<B, 3>| t.clone().narrow(1, start, len);
                    let (ki, vi) = cache.append(part(&k), part(&v));
                    parts.push(kernels::self_attention(
                        part(&q),
                        ki,
                        vi,
                        self.heads,
                        bias.clone(),
                        p,
                    ));
                    start += len;
                }
                Tensor::cat(parts, 1)
            }
        };
        dropout_fn(apply(&self.output, q8(3), h16(3), ctx, chunk), p)
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
        self.forward_rows(x, p, None)
    }

    /// [`Self::forward`] with at most `chunk` rows per linear call.
    fn forward_rows(&self, x: Tensor<B, 3>, p: f64, chunk: Option<usize>) -> Tensor<B, 3> {
        let q8 = |i: usize| self.int8.as_ref().map(|q| &q[i]);
        let h16 = |i: usize| self.bf16.as_ref().map(|h| &h[i]);
        let inner = activate(apply(&self.linear_1, q8(0), h16(0), x, chunk), self.act);
        dropout_fn(apply(&self.linear_2, q8(1), h16(1), inner, chunk), p)
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
        self.forward_with(x, Attend::Rows { bias, cache }, p)
    }

    /// [`Self::forward`] with the attention's inputs as [`Attend`] says.
    pub(crate) fn forward_with(
        &self,
        x: Tensor<B, 3>,
        attend: Attend<'_, B>,
        p: f64,
    ) -> Tensor<B, 3> {
        let chunk = attend.chunk();
        match self.ln_position {
            LnPosition::Post => {
                let h = self
                    .layer_norm_1
                    .forward(x.clone() + self.self_attn.forward_with(x, attend, p));
                self.layer_norm_2
                    .forward(h.clone() + self.feed_forward.forward_rows(h, p, chunk))
            }
            LnPosition::Pre => {
                let h = x.clone()
                    + self
                        .self_attn
                        .forward_with(self.layer_norm_1.forward(x), attend, p);
                h.clone()
                    + self
                        .feed_forward
                        .forward_rows(self.layer_norm_2.forward(h), p, chunk)
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
            let slot = slots.as_mut().map(|s| {
                s.next()
                    .expect("a KvCache has one slot per layer application")
            });
            h = self.layer(i).forward(h, bias.clone(), p, slot);
        }
        self.final_norm(h)
    }

    /// [`Self::forward`] at inference on several prompts side by side in one row (`emb`:
    /// `[1, Σ lens, emb]`, see [`Attend::Packed`]), prompt `i`'s keys and values appended
    /// to `caches[i]`, with its causal mask `biases[i]`. Transformer layers only (an LSTM
    /// would carry its state from one prompt into the next).
    pub(crate) fn forward_packed(
        &self,
        emb: Tensor<B, 3>,
        lens: &[usize],
        biases: &[Option<Tensor<B, 4>>],
        caches: &mut [KvCache<B>],
    ) -> Tensor<B, 3> {
        debug_assert!(self.rnn.is_none() && lens.len() == caches.len());
        let mut h = match &self.linear {
            Some(linear) => apply(linear, None, None, emb, Some(PACKED_ROWS)),
            None => emb,
        };
        let mut slots: Vec<_> = caches.iter_mut().map(|c| c.layers.iter_mut()).collect();
        for i in 0..self.layers_num {
            let caches = slots
                .iter_mut()
                .map(|s| {
                    s.next()
                        .expect("a KvCache has one slot per layer application")
                })
                .collect();
            let attend = Attend::Packed {
                lens,
                biases,
                caches,
            };
            h = self.layer(i).forward_with(h, attend, 0.0);
        }
        self.final_norm(h)
    }

    /// The layer of application `i` (ALBERT's one shared layer for every `i`).
    fn layer(&self, i: usize) -> &TransformerLayer<B> {
        &self.layers[if self.layers.len() == 1 { 0 } else { i }]
    }

    /// GPT-2's final LayerNorm, when the model has one.
    fn final_norm(&self, h: Tensor<B, 3>) -> Tensor<B, 3> {
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
