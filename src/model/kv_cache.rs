//! Incremental decoding for causal models (GPT-2): a per-layer cache of attention keys and
//! values, so each new token costs one position instead of the whole prefix.
//!
//! [`Model::decode_step`] runs the same layers as [`Model::forward`] (embedding with the
//! position offset, pre- or post-LN layers, final LN, LM head) on the new positions only;
//! keys and values of earlier positions come from the [`KvCache`]. The logits match the
//! full forward pass to float rounding (tested to 1e-4 in `tests/generate.rs`).

use super::ModelError;
use super::config::{LnPosition, MaskKind};
use super::encoder::{SelfAttention, TransformerLayer, attention};
use super::transformer::{MASK_VALUE, Model};
use crate::kernels;
use burn::tensor::{Int, Tensor, TensorData, backend::Backend};

/// Keys and values of the positions seen so far, one pair per layer application,
/// `[batch, heads, len, head_dim]`.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    layers: Vec<Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
    len: usize,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for `model` (one slot per layer application; ALBERT's shared layer
    /// gets one per application too).
    pub fn new(model: &Model<B>) -> Self {
        KvCache {
            layers: vec![None; model.encoder.layers_num],
            len: 0,
        }
    }

    /// Positions cached so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first step.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<B: Backend> Model<B> {
    /// Runs the causal model on `ids` (`[batch, new]`, the tokens after the cached ones),
    /// appends their keys and values to `cache`, and returns the LM logits of the new
    /// positions, `[batch, new, vocab]`. Segment 1 everywhere (UER-py's generate_lm).
    pub fn decode_step(
        &self,
        ids: Tensor<B, 2, Int>,
        cache: &mut KvCache<B>,
    ) -> Result<Tensor<B, 3>, ModelError> {
        let lm = self.lm.as_ref().ok_or_else(|| {
            ModelError::Input(
                "the weights have no LM head (`target.lm.output_layer`); generation needs a GPT-2"
                    .into(),
            )
        })?;
        if self.config.mask != MaskKind::Causal {
            return Err(ModelError::Input(
                "incremental decoding needs a causal model (mask = causal)".into(),
            ));
        }
        let [b, s] = ids.dims();
        let past = cache.len;
        if s == 0 || past + s > self.config.max_seq_length {
            return Err(ModelError::Input(format!(
                "position {} is past the model's {} position embeddings",
                past + s,
                self.config.max_seq_length
            )));
        }
        let device = ids.device();
        let emb = &self.embedding;
        let word = emb.word.val();
        let e = word.dims()[1];
        let mut x = word.select(0, ids.reshape([b * s])).reshape([b, s, e]);
        x = x + emb.position.val().narrow(0, past, s).unsqueeze::<3>();
        if let Some(seg) = &emb.segment {
            x = x + seg.val().narrow(0, 1, 1).unsqueeze::<3>();
        }
        if let Some(ln) = &emb.layer_norm {
            x = ln.forward(x);
        }
        if let Some(linear) = &self.encoder.linear {
            x = kernels::linear(linear, x);
        }
        // New position i (absolute past + i) sees absolute positions 0..=past + i.
        let bias = (s > 1).then(|| {
            let total = past + s;
            let mut values = vec![0f32; s * total];
            for i in 0..s {
                for j in past + i + 1..total {
                    values[i * total + j] = MASK_VALUE;
                }
            }
            Tensor::<B, 4>::from_data(TensorData::new(values, [1, 1, s, total]), &device)
        });
        let layers = &self.encoder.layers;
        for (i, slot) in cache.layers.iter_mut().enumerate() {
            let layer = &layers[if layers.len() == 1 { 0 } else { i }];
            x = layer_step(layer, x, bias.clone(), slot);
        }
        if let Some(ln) = &self.encoder.layer_norm {
            x = ln.forward(x);
        }
        cache.len += s;
        Ok(lm.forward(x))
    }
}

fn layer_step<B: Backend>(
    layer: &TransformerLayer<B>,
    x: Tensor<B, 3>,
    bias: Option<Tensor<B, 4>>,
    slot: &mut Option<(Tensor<B, 4>, Tensor<B, 4>)>,
) -> Tensor<B, 3> {
    match layer.ln_position {
        LnPosition::Post => {
            let h = layer
                .layer_norm_1
                .forward(x.clone() + attn_step(&layer.self_attn, x, bias, slot));
            layer
                .layer_norm_2
                .forward(h.clone() + layer.feed_forward.forward(h, 0.0))
        }
        LnPosition::Pre => {
            let h =
                x.clone() + attn_step(&layer.self_attn, layer.layer_norm_1.forward(x), bias, slot);
            h.clone()
                + layer
                    .feed_forward
                    .forward(layer.layer_norm_2.forward(h), 0.0)
        }
    }
}

fn attn_step<B: Backend>(
    attn: &SelfAttention<B>,
    x: Tensor<B, 3>,
    bias: Option<Tensor<B, 4>>,
    slot: &mut Option<(Tensor<B, 4>, Tensor<B, 4>)>,
) -> Tensor<B, 3> {
    let [b, s, h] = x.dims();
    let split = |t: Tensor<B, 3>| {
        t.reshape([b, s, attn.heads, h / attn.heads])
            .swap_dims(1, 2)
    };
    let q = split(kernels::linear(&attn.query, x.clone()));
    let mut k = split(kernels::linear(&attn.key, x.clone()));
    let mut v = split(kernels::linear(&attn.value, x));
    if let Some((pk, pv)) = slot.take() {
        k = Tensor::cat(vec![pk, k], 2);
        v = Tensor::cat(vec![pv, v], 2);
    }
    *slot = Some((k.clone(), v.clone()));
    let ctx = attention(q, k, v, bias, 0.0);
    kernels::linear(&attn.output, ctx.swap_dims(1, 2).reshape([b, s, h]))
}
