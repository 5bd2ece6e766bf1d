//! The whole model: embeddings → encoder → heads, in forward order. One struct covers
//! BERT/RoBERTa (`word_pos_seg`, post-LN, fully-visible mask, MLM (+SP)), ALBERT
//! (factorized embedding, shared layer, MLM + SOP), GPT-2 (`word_pos`, no embedding LN,
//! pre-LN + final LN, causal mask, LM), UER-py 2019's GPT (BERT's embedding and post-LN
//! layers, causal mask, untied LM with a bias) and its LSTM LM (BERT's embedding, the
//! [`super::lstm`] encoder, the same LM), as UER-py composes them from its config.

use super::ModelError;
use super::config::{MaskKind, ModelConfig};
use super::encoder::Encoder;
use super::heads::{ClassifierHead, Decoder, LmHead, MlmHead, SpHead};
use super::kv_cache::KvCache;
use super::layer_norm::LayerNorm;
use burn::module::{Module, Param};
use burn::tensor::{Int, Tensor, TensorData, backend::Backend};

/// Token ids and segments on the device, both `[batch, seq]`.
pub type IdsAndSegments<B> = (Tensor<B, 2, Int>, Tensor<B, 2, Int>);

/// UER-py's additive mask value for hidden keys.
pub const MASK_VALUE: f32 = -10000.0;

/// Word + position (+ segment) embeddings, then LayerNorm unless removed.
#[derive(Module, Debug)]
pub struct Embeddings<B: Backend> {
    /// `[vocab, emb]`.
    pub word: Param<Tensor<B, 2>>,
    /// `[max_seq_length, emb]`.
    pub position: Param<Tensor<B, 2>>,
    /// `[3, emb]`: row 0 padding, 1 sentence A, 2 sentence B.
    pub segment: Option<Param<Tensor<B, 2>>>,
    pub layer_norm: Option<LayerNorm<B>>,
}

impl<B: Backend> Embeddings<B> {
    /// `ids`, `segment`: `[batch, seq]` → `[batch, seq, emb]`, the tokens at positions
    /// `start..start + seq` (`start` > 0 when decoding after cached positions).
    pub fn forward(
        &self,
        ids: Tensor<B, 2, Int>,
        segment: Tensor<B, 2, Int>,
        start: usize,
    ) -> Tensor<B, 3> {
        let position = match start {
            0 => self.position.val(),
            _ => self.position.val().narrow(0, start, ids.dims()[1]),
        };
        let emb = crate::kernels::embed(
            self.word.val(),
            position,
            self.segment.as_ref().map(|s| s.val()),
            ids,
            segment,
        );
        match &self.layer_norm {
            Some(ln) => ln.forward(emb),
            None => emb,
        }
    }
}

impl<B: Backend> Embeddings<B> {
    /// Each token at its own position: `ids`, `segment` `[batch, seq]`, token `(r, j)` at
    /// position `positions[r·seq + j]` → `[batch, seq, emb]` (batched decoding of sequences
    /// of different lengths, one token per row; a packed prefill, several prompts in one
    /// row). The same kernel as [`Self::forward`], on the tokens seen as one sequence whose
    /// `t`-th position table row is `positions[t]`.
    pub fn forward_at(
        &self,
        ids: Tensor<B, 2, Int>,
        segment: Tensor<B, 2, Int>,
        positions: &[usize],
    ) -> Tensor<B, 3> {
        let [b, s] = ids.dims();
        let n = b * s;
        debug_assert!(positions.len() == n);
        let device = ids.device();
        let rows = Tensor::<B, 1, Int>::from_data(
            TensorData::new(positions.iter().map(|&p| p as i64).collect(), [n]),
            &device,
        );
        let position = self.position.val().select(0, rows);
        let emb = crate::kernels::embed(
            self.word.val(),
            position,
            self.segment.as_ref().map(|s| s.val()),
            ids.reshape([1, n]),
            segment.reshape([1, n]),
        );
        let e = emb.dims()[2];
        let emb = emb.reshape([b, s, e]);
        match &self.layer_norm {
            Some(ln) => ln.forward(emb),
            None => emb,
        }
    }
}

/// What [`Model::forward`] returns.
#[derive(Debug, Clone)]
pub struct ModelOutput<B: Backend> {
    /// Last encoder layer (after GPT-2's final LN), `[batch, seq, hidden]`.
    pub hidden: Tensor<B, 3>,
    /// The pretraining head's logits, `[batch, seq, vocab]` (MLM if present, else LM).
    pub logits: Option<Tensor<B, 3>>,
}

/// What the pretraining targets predict from one forward ([`Model::target_logits`]).
#[derive(Debug, Clone)]
pub struct TargetLogits<B: Backend> {
    /// The token head's logits (MLM, else LM) at the picked positions, `[picked, vocab]`.
    pub tokens: Tensor<B, 2>,
    /// Sentence prediction (NSP/SOP) from the first token, `[batch, 2]`, when asked for and
    /// the model has the head.
    pub sp: Option<Tensor<B, 2>>,
}

/// A zoo model: embedding, encoder and whichever heads its weights contain.
#[derive(Module, Debug)]
pub struct Model<B: Backend> {
    pub embedding: Embeddings<B>,
    pub encoder: Encoder<B>,
    pub mlm: Option<MlmHead<B>>,
    pub sp: Option<SpHead<B>>,
    pub lm: Option<LmHead<B>>,
    pub classifier: Option<ClassifierHead<B>>,
    /// The configuration, with `vocab_size` and `max_seq_length` filled from the weights.
    #[module(skip)]
    pub config: ModelConfig,
}

impl<B: Backend> Model<B> {
    /// Encoder output only: `[batch, seq, hidden]` (inference: no dropout).
    pub fn encode(&self, ids: Tensor<B, 2, Int>, segment: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        self.encode_with_dropout(ids, segment, 0.0)
    }

    /// The one encoder forward, for inference (`p` = 0) and training (`p` = UER-py's
    /// `dropout`: after the embedding, on the attention probabilities, after attention
    /// and after the feed-forward block, in that order).
    pub fn encode_with_dropout(
        &self,
        ids: Tensor<B, 2, Int>,
        segment: Tensor<B, 2, Int>,
        p: f64,
    ) -> Tensor<B, 3> {
        self.encode_with_cache(ids, segment, p, None)
    }

    /// [`Self::encode_with_dropout`] with the KV cache as a parameter: with `cache` (causal
    /// models only; see [`Model::decode_step`]), `ids` are the positions after the cached
    /// ones, embedded at their offset, and every layer appends their keys and values to the
    /// cache. Without it, this is the full forward.
    pub(crate) fn encode_with_cache(
        &self,
        ids: Tensor<B, 2, Int>,
        segment: Tensor<B, 2, Int>,
        p: f64,
        cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        let past = cache.as_ref().map_or(0, |c| c.len());
        debug_assert!(past == 0 || self.config.mask == MaskKind::Causal);
        let (emb, bias) = match cache.as_ref().filter(|c| c.is_padded()) {
            // Rows of different lengths, one new token each: every row at its own position,
            // its padding masked.
            Some(c) => {
                let bias = c.padding_bias(1, &ids.device());
                let emb = self.embedding.forward_at(ids, segment, &c.positions());
                (emb, bias)
            }
            None => {
                let bias = self.mask_bias(&segment, past);
                (self.embedding.forward(ids, segment, past), bias)
            }
        };
        let emb = super::encoder::dropout_fn(emb, p);
        self.encoder.forward(emb, bias, p, cache)
    }

    /// The encoder on several prompts side by side in one row (`ids`: `[1, Σ lens]`, prompt
    /// `i` the next `lens[i]` tokens, each at positions `0..lens[i]`), at inference, each
    /// prompt's keys and values appended to its empty cache `caches[i]` and its attention
    /// confined to its own positions under its causal mask ([`Self::mask_bias`] of a prompt
    /// alone). Every prompt's hidden states are those of a prefill alone when each linear
    /// call of up to [`super::encoder::PACKED_ROWS`] rows gives each row the values of a
    /// call on that row's prompt alone (see [`Model::prefill_packed`]).
    pub(crate) fn encode_packed(
        &self,
        ids: Tensor<B, 2, Int>,
        lens: &[usize],
        caches: &mut [KvCache<B>],
    ) -> Tensor<B, 3> {
        let device = ids.device();
        let positions: Vec<usize> = lens.iter().flat_map(|&l| 0..l).collect();
        let segment = Tensor::<B, 2, Int>::ones(ids.dims(), &device);
        let biases: Vec<Option<Tensor<B, 4>>> = lens
            .iter()
            .map(|&l| self.mask_bias(&Tensor::<B, 2, Int>::ones([1, l], &device), 0))
            .collect();
        let emb = self.embedding.forward_at(ids, segment, &positions);
        self.encoder.forward_packed(emb, lens, &biases, caches)
    }

    /// Classifier logits `[batch, labels]` (the one forward, with dropout `p` when training):
    /// the encoder, run_classifier's pooling with `pool_w` from
    /// [`super::heads::pool_weights`] and the head. Fails when no head is attached.
    pub fn classify(
        &self,
        ids: Tensor<B, 2, Int>,
        segment: Tensor<B, 2, Int>,
        pool_w: Option<Tensor<B, 2>>,
        p: f64,
    ) -> Result<Tensor<B, 2>, ModelError> {
        let head = self.classifier.as_ref().ok_or_else(|| {
            ModelError::Input(
                "the weights have no classifier head (`output_layer_1`/`output_layer_2`); fine-tune one with `uerzoo finetune`".into(),
            )
        })?;
        Ok(head.forward(self.encode_with_dropout(ids, segment, p), pool_w))
    }

    /// Hidden states and the pretraining head's logits (inference).
    pub fn forward(&self, ids: Tensor<B, 2, Int>, segment: Tensor<B, 2, Int>) -> ModelOutput<B> {
        let hidden = self.encode(ids, segment);
        let logits = self.token_logits(hidden.clone(), Decoder::Own);
        ModelOutput { hidden, logits }
    }

    /// The token head — MLM if the model has one, else LM — on `x` (`[…, hidden]`, any
    /// rank) → `[…, vocab]`, decoding as `decoder` says; `None` without either head.
    pub fn token_logits<const D: usize>(
        &self,
        x: Tensor<B, D>,
        decoder: Decoder,
    ) -> Option<Tensor<B, D>> {
        let word = (decoder == Decoder::WordEmbedding).then(|| self.embedding.word.val());
        match (&self.mlm, &self.lm) {
            (Some(mlm), _) => Some(mlm.logits(x, word)),
            (None, Some(lm)) => Some(lm.logits(x, word)),
            (None, None) => None,
        }
    }

    /// The pretraining targets (UER-py's `mlm`, `bert`, `lm`) on the one forward: the
    /// encoder with dropout `p`, the token head ([`Self::token_logits`]) on the flat
    /// positions `picked` (`row·seq + col`) only, and sentence prediction on the first
    /// token when `sp` is set and the model has that head. Fails without a token head.
    pub fn target_logits(
        &self,
        ids: Tensor<B, 2, Int>,
        segment: Tensor<B, 2, Int>,
        picked: Tensor<B, 1, Int>,
        sp: bool,
        p: f64,
        decoder: Decoder,
    ) -> Result<TargetLogits<B>, ModelError> {
        let hidden = self.encode_with_dropout(ids, segment, p);
        let [b, s, h] = hidden.dims();
        let rows = hidden.clone().reshape([b * s, h]).select(0, picked);
        let tokens = self.token_logits(rows, decoder).ok_or_else(|| {
            ModelError::Input(
                "the model has no MLM or LM head (`target.mlm.*` / `target.lm.output_layer`)"
                    .into(),
            )
        })?;
        let sp = match (&self.sp, sp) {
            (Some(head), true) => Some(head.forward(hidden)),
            _ => None,
        };
        Ok(TargetLogits { tokens, sp })
    }

    /// The additive attention mask `[batch|1, 1, seq, past + seq]` (0 visible, −10000
    /// hidden) of `seq` positions after `past` cached ones (causal masks only; `past` is 0
    /// for a fully-visible mask); `None` when nothing is hidden (one new causal position).
    pub fn mask_bias(&self, segment: &Tensor<B, 2, Int>, past: usize) -> Option<Tensor<B, 4>> {
        let [b, s] = segment.dims();
        let device = segment.device();
        match self.config.mask {
            MaskKind::FullyVisible => {
                let visible = segment.clone().greater_elem(0).float();
                let bias = (visible - 1.0) * (-MASK_VALUE as f64);
                Some(bias.reshape([b, 1, 1, s]).expand([b, 1, s, s]))
            }
            MaskKind::Causal if s == 1 => None,
            MaskKind::Causal => {
                // Position past + i sees positions 0..=past + i.
                let total = past + s;
                let mut values = vec![0f32; s * total];
                for i in 0..s {
                    for j in past + i + 1..total {
                        values[i * total + j] = MASK_VALUE;
                    }
                }
                Some(Tensor::from_data(
                    TensorData::new(values, [1, 1, s, total]),
                    &device,
                ))
            }
        }
    }

    /// Checks host-side inputs and turns them into tensors on `device`:
    /// `ids`/`segment` row-major `[batch, seq]`.
    pub fn inputs(
        &self,
        ids: &[i64],
        segment: &[i64],
        batch: usize,
        seq: usize,
        device: &B::Device,
    ) -> Result<IdsAndSegments<B>, ModelError> {
        if ids.len() != batch * seq || segment.len() != batch * seq {
            return Err(ModelError::Input(format!(
                "input_ids has {} values and segment {}, expected batch {batch} × seq {seq}",
                ids.len(),
                segment.len()
            )));
        }
        if seq == 0 || seq > self.config.max_seq_length {
            return Err(ModelError::Input(format!(
                "sequence length {seq} is outside 1..={} (the model's position embeddings)",
                self.config.max_seq_length
            )));
        }
        if let Some(bad) = ids
            .iter()
            .find(|&&i| i < 0 || i as usize >= self.config.vocab_size)
        {
            return Err(ModelError::Input(format!(
                "token id {bad} is outside the vocabulary 0..{}",
                self.config.vocab_size
            )));
        }
        let max_seg = if self.embedding.segment.is_some() {
            2
        } else {
            i64::MAX
        };
        if let Some(bad) = segment.iter().find(|&&x| x < 0 || x > max_seg) {
            return Err(ModelError::Input(format!(
                "segment {bad} is not 0 (padding), 1 or 2"
            )));
        }
        let ids = Tensor::from_data(TensorData::new(ids.to_vec(), [batch, seq]), device);
        let seg = Tensor::from_data(TensorData::new(segment.to_vec(), [batch, seq]), device);
        Ok((ids, seg))
    }
}
