//! Incremental decoding for causal models (GPT-2): a per-layer cache of attention keys and
//! values, so each new token costs one position instead of the whole prefix.
//!
//! The cache is a parameter of the model's own forward, not a second one: [`Model::decode_step`]
//! runs `Model::encode_with_cache` (the embedding at the position offset, the layers of
//! [`super::encoder`], the final LN) on the new positions only, then the LM head; each
//! layer's attention appends the new keys and values to its [`LayerKv`] and attends to all
//! positions so far. The logits match the full forward pass to float rounding (tested to
//! 1e-4 in `tests/generate.rs`).

use super::ModelError;
use super::config::MaskKind;
use super::transformer::Model;
use burn::tensor::{Int, Tensor, backend::Backend};

/// One layer application's keys and values of the positions seen so far, each
/// `[batch, len, hidden]` (heads side by side, as the projections produce them).
#[derive(Debug, Clone)]
pub struct LayerKv<B: Backend> {
    kv: Option<(Tensor<B, 3>, Tensor<B, 3>)>,
}

impl<B: Backend> LayerKv<B> {
    /// Appends the new positions' keys `k` and values `v` (`[batch, new, hidden]`) and
    /// returns those of all positions so far.
    pub(crate) fn append(
        &mut self,
        k: Tensor<B, 3>,
        v: Tensor<B, 3>,
    ) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let (k, v) = match self.kv.take() {
            Some((pk, pv)) => (Tensor::cat(vec![pk, k], 1), Tensor::cat(vec![pv, v], 1)),
            None => (k, v),
        };
        self.kv = Some((k.clone(), v.clone()));
        (k, v)
    }

    /// Positions cached.
    fn len(&self) -> usize {
        self.kv.as_ref().map_or(0, |(k, _)| k.dims()[1])
    }
}

/// Keys and values of the positions seen so far, one [`LayerKv`] per layer application.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    pub(crate) layers: Vec<LayerKv<B>>,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for `model` (one slot per layer application; ALBERT's shared layer
    /// gets one per application too).
    pub fn new(model: &Model<B>) -> Self {
        KvCache {
            layers: vec![LayerKv { kv: None }; model.encoder.layers_num],
        }
    }

    /// Positions cached so far.
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, LayerKv::len)
    }

    /// True before the first step.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
        let past = cache.len();
        if s == 0 || past + s > self.config.max_seq_length {
            return Err(ModelError::Input(format!(
                "position {} is past the model's {} position embeddings",
                past + s,
                self.config.max_seq_length
            )));
        }
        let segment = Tensor::<B, 2, Int>::ones([b, s], &ids.device());
        Ok(lm.forward(self.encode_with_cache(ids, segment, 0.0, Some(cache))))
    }
}
