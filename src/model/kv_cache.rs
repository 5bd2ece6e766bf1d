//! Incremental decoding for causal models (GPT-2): a per-layer cache of attention keys and
//! values, so each new token costs one position instead of the whole prefix.
//!
//! The cache is a parameter of the model's own forward, not a second one: [`Model::decode_step`]
//! runs `Model::encode_with_cache` (the embedding at the position offset, the layers of
//! [`super::encoder`], the final LN) on the new positions only, then the LM head; each
//! layer's attention appends the new keys and values to its [`LayerKv`] and attends to all
//! positions so far. The logits match the full forward pass to float rounding (tested to
//! 1e-4 in `tests/generate.rs`).
//!
//! One cache can also hold several sequences of different lengths (batched decoding,
//! [`crate::generate::generate_batched`]): row `r` is left-padded by `pad[r]` columns, so
//! every row appends its next keys and values at the same column while its token is
//! embedded at its own position (the columns it holds) and the padding is masked out of
//! its attention. Sequences join ([`KvCache::join`], a prompt prefilled alone or packed)
//! and leave ([`KvCache::retain`]) between steps.
//!
//! Several prompts can also be prefilled in one forward ([`Model::prefill_packed`]): their
//! tokens side by side in one row, the linear layers on at most [`PACKED_ROWS`] rows per
//! call (the few-rows kernel, whose rows do not depend on the call's other rows), each
//! prompt attending to its own positions into its own cache. Each prompt gets the keys,
//! values and logits of a prefill alone, bit for bit, when it is itself at most
//! [`PACKED_ROWS`] tokens (alone it then goes through the same kernel); the weights are
//! read once per [`PACKED_ROWS`] rows instead of once per prompt.
//!
//! For UER-py 2019's LSTM the cache is the recurrent state instead ([`LstmState`]: each
//! layer's `h` and `c` after the positions seen so far); joining and dropping rows works on
//! it the same way, and no padding needs masking (each row's state is its own).

use super::ModelError;
use super::config::MaskKind;
use super::lstm::{Lstm, LstmState};
use super::transformer::{MASK_VALUE, Model};
use burn::tensor::{Int, Tensor, TensorData, backend::Backend};

/// The most rows one linear call takes in a packed prefill ([`Model::prefill_packed`]): the
/// few-rows kernel's limit (`uerzoo_kernels::MAX_ROWS`), under which it gives each row the
/// values it gets in a call of any other row count, so that each prompt's rows get what
/// they get in a prefill alone.
pub const PACKED_ROWS: usize = uerzoo_kernels::MAX_ROWS;

/// `x` (`[rows, len, hidden]`) with `n` zero columns in front.
fn left_pad<B: Backend>(x: Tensor<B, 3>, n: usize) -> Tensor<B, 3> {
    if n == 0 {
        return x;
    }
    let [rows, _, h] = x.dims();
    let zeros = Tensor::zeros([rows, n, h], &x.device());
    Tensor::cat(vec![zeros, x], 1)
}

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
    /// Leading padding columns of each row (keys and values zero, masked); empty while the
    /// cache holds rows of one length.
    pad: Vec<usize>,
    /// The LSTM's recurrent state (LSTM models only; `layers` is then empty), made on the
    /// first step.
    rnn: Option<LstmState<B>>,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for `model` (one slot per layer application; ALBERT's shared layer
    /// gets one per application too).
    pub fn new(model: &Model<B>) -> Self {
        let slots = match model.encoder.rnn {
            Some(_) => 0,
            None => model.encoder.layers_num,
        };
        KvCache {
            layers: vec![LayerKv { kv: None }; slots],
            pad: Vec::new(),
            rnn: None,
        }
    }

    /// The LSTM's state, zero for `batch` rows before the first step.
    pub(crate) fn recurrent_state(
        &mut self,
        rnn: &Lstm<B>,
        batch: usize,
        device: &B::Device,
    ) -> &mut LstmState<B> {
        self.rnn
            .get_or_insert_with(|| rnn.zero_state(batch, device))
    }

    /// Sequences (rows) held; 0 before the first step.
    pub fn rows(&self) -> usize {
        if let Some(state) = &self.rnn {
            return state.layers.first().map_or(0, |(h, _)| h.dims()[0]);
        }
        self.layers
            .first()
            .and_then(|l| l.kv.as_ref())
            .map_or(0, |(k, _)| k.dims()[0])
    }

    /// Each row's positions cached (its own length, padding not counted).
    pub fn positions(&self) -> Vec<usize> {
        let len = self.len();
        (0..self.rows())
            .map(|r| len - self.pad.get(r).copied().unwrap_or(0))
            .collect()
    }

    /// Whether some row is padded (rows of different lengths).
    pub(crate) fn is_padded(&self) -> bool {
        self.pad.iter().any(|&p| p > 0)
    }

    /// Appends the rows of `other` (sequences decoded on their own, e.g. a prompt just
    /// prefilled) below this cache's rows, left-padding the shorter side so that all rows
    /// end at the same column.
    pub fn join(&mut self, other: KvCache<B>) {
        let (w, wo) = (self.len(), other.len());
        let (rows, rows_o) = (self.rows(), other.rows());
        if rows_o == 0 {
            return;
        }
        if rows == 0 {
            *self = other;
            return;
        }
        let width = w.max(wo);
        let mut pad = self.pad_or_zero(rows);
        pad.iter_mut().for_each(|p| *p += width - w);
        pad.extend(other.pad_or_zero(rows_o).iter().map(|p| p + width - wo));
        if let (Some(mine), Some(theirs)) = (self.rnn.as_mut(), other.rnn) {
            for ((h, c), (ho, co)) in mine.layers.iter_mut().zip(theirs.layers) {
                *h = Tensor::cat(vec![h.clone(), ho], 0);
                *c = Tensor::cat(vec![c.clone(), co], 0);
            }
            mine.len = width;
        }
        for (mine, theirs) in self.layers.iter_mut().zip(other.layers) {
            let (Some((k, v)), Some((ko, vo))) = (mine.kv.take(), theirs.kv) else {
                continue;
            };
            let k = Tensor::cat(vec![left_pad(k, width - w), left_pad(ko, width - wo)], 0);
            let v = Tensor::cat(vec![left_pad(v, width - w), left_pad(vo, width - wo)], 0);
            mine.kv = Some((k, v));
        }
        self.pad = pad;
    }

    /// Keeps the rows whose `keep` is true (in order) and drops the columns that every
    /// remaining row pads.
    pub fn retain(&mut self, keep: &[bool]) {
        let rows = self.rows();
        assert_eq!(keep.len(), rows, "KvCache::retain: one flag per row");
        if keep.iter().all(|&k| k) {
            return;
        }
        let kept: Vec<usize> = (0..rows).filter(|&r| keep[r]).collect();
        if kept.is_empty() {
            self.layers.iter_mut().for_each(|l| l.kv = None);
            self.rnn = None;
            self.pad.clear();
            return;
        }
        let pad: Vec<usize> = {
            let all = self.pad_or_zero(rows);
            kept.iter().map(|&r| all[r]).collect()
        };
        let trim = pad.iter().copied().min().unwrap_or(0);
        let len = self.len();
        if let Some(state) = self.rnn.as_mut() {
            let first = &state.layers[0].0;
            let idx = Tensor::<B, 1, Int>::from_data(
                TensorData::new(kept.iter().map(|&r| r as i64).collect(), [kept.len()]),
                &first.device(),
            );
            for (h, c) in &mut state.layers {
                *h = h.clone().select(0, idx.clone());
                *c = c.clone().select(0, idx.clone());
            }
            state.len = len - trim;
        }
        for layer in &mut self.layers {
            if let Some((k, v)) = layer.kv.take() {
                let device = k.device();
                let idx = Tensor::<B, 1, Int>::from_data(
                    TensorData::new(kept.iter().map(|&r| r as i64).collect(), [kept.len()]),
                    &device,
                );
                let (k, v) = (k.select(0, idx.clone()), v.select(0, idx));
                layer.kv = Some((k.narrow(1, trim, len - trim), v.narrow(1, trim, len - trim)));
            }
        }
        self.pad = pad.into_iter().map(|p| p - trim).collect();
    }

    fn pad_or_zero(&self, rows: usize) -> Vec<usize> {
        (0..rows)
            .map(|r| self.pad.get(r).copied().unwrap_or(0))
            .collect()
    }

    /// The additive mask `[rows, 1, 1, len + new]` that hides each row's padding from its
    /// `new` positions; `None` when no row is padded.
    pub(crate) fn padding_bias(&self, new: usize, device: &B::Device) -> Option<Tensor<B, 4>> {
        if !self.is_padded() || self.rnn.is_some() {
            return None;
        }
        let (rows, total) = (self.rows(), self.len() + new);
        let mut values = vec![0f32; rows * total];
        for (r, &p) in self.pad.iter().enumerate() {
            values[r * total..r * total + p].fill(MASK_VALUE);
        }
        Some(Tensor::from_data(
            TensorData::new(values, [rows, 1, 1, total]),
            device,
        ))
    }

    /// Positions cached so far.
    pub fn len(&self) -> usize {
        if let Some(state) = &self.rnn {
            return state.len;
        }
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
    /// positions, `[batch, new, vocab]`. Segment 1 everywhere (UER-py's generate_lm). A cache
    /// whose rows have different lengths ([`KvCache::join`]) takes one token per row, each
    /// at its row's own position.
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
        let past = cache.positions().into_iter().max().unwrap_or(0);
        if s == 0 || past + s > self.config.max_seq_length {
            return Err(ModelError::Input(format!(
                "position {} is past the model's {} position embeddings",
                past + s,
                self.config.max_seq_length
            )));
        }
        if cache.is_padded() && (s != 1 || b != cache.rows()) {
            return Err(ModelError::Input(format!(
                "a cache of {} rows of different lengths decodes one token per row, got [{b}, {s}]",
                cache.rows()
            )));
        }
        let segment = Tensor::<B, 2, Int>::ones([b, s], &ids.device());
        Ok(lm.forward(self.encode_with_cache(ids, segment, 0.0, Some(cache))))
    }
}

impl<B: Backend> Model<B> {
    /// Whether [`Model::prefill_packed`] gives a prompt of at most [`PACKED_ROWS`] tokens the
    /// bits of its prefill alone ([`Model::decode_step`] on an empty cache): a causal
    /// transformer with an LM head on the CPU's fused path — f32 linear layers through the
    /// few-rows kernel, int8 and bf16 ones through their kernels, which quantize or round each
    /// row on its own and sum it the same way whatever the rows beside it (Burn's general
    /// products on other backends may round a row by the rows beside it).
    pub fn packs_prefill(&self) -> bool {
        self.lm.is_some()
            && self.config.mask == MaskKind::Causal
            && self.encoder.rnn.is_none()
            && crate::kernels::reads_transposed_weights::<B>()
    }

    /// Prefills `prompts` (token ids, each 1 to `max_seq_length` long) together in one
    /// forward: their tokens side by side in one row, each prompt at positions from 0,
    /// attending to its own positions only, the linear layers on at most [`PACKED_ROWS`]
    /// rows per call. Returns each prompt's new cache (as [`Model::decode_step`] on an
    /// empty cache leaves it) and the LM logits of each prompt's last position, `[prompts,
    /// vocab]`. See [`Model::packs_prefill`] for when these are a prefill alone's bits.
    pub fn prefill_packed(
        &self,
        prompts: &[&[u32]],
    ) -> Result<(Vec<KvCache<B>>, Tensor<B, 2>), ModelError> {
        let lm = self.lm.as_ref().ok_or_else(|| {
            ModelError::Input(
                "the weights have no LM head (`target.lm.output_layer`); generation needs a GPT-2"
                    .into(),
            )
        })?;
        if self.config.mask != MaskKind::Causal || self.encoder.rnn.is_some() {
            return Err(ModelError::Input(
                "a packed prefill needs a causal transformer (mask = causal, no LSTM)".into(),
            ));
        }
        if prompts.is_empty() {
            return Err(ModelError::Input("a packed prefill needs a prompt".into()));
        }
        for p in prompts {
            if p.is_empty() || p.len() > self.config.max_seq_length {
                return Err(ModelError::Input(format!(
                    "prompt length {} is outside 1..={} (the model's position embeddings)",
                    p.len(),
                    self.config.max_seq_length
                )));
            }
            if let Some(bad) = p.iter().find(|&&i| i as usize >= self.config.vocab_size) {
                return Err(ModelError::Input(format!(
                    "token id {bad} is outside the vocabulary 0..{}",
                    self.config.vocab_size
                )));
            }
        }
        let lens: Vec<usize> = prompts.iter().map(|p| p.len()).collect();
        let total: usize = lens.iter().sum();
        let device = self.embedding.word.device();
        let values: Vec<i64> = prompts
            .iter()
            .flat_map(|p| p.iter().map(|&i| i64::from(i)))
            .collect();
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(values, [1, total]), &device);
        let mut caches: Vec<KvCache<B>> = prompts.iter().map(|_| KvCache::new(self)).collect();
        let hidden = self.encode_packed(ids, &lens, &mut caches);
        let h = hidden.dims()[2];
        // Each prompt's last position, then the LM head on at most PACKED_ROWS of them a call.
        let last: Vec<i64> = lens
            .iter()
            .scan(0usize, |end, &l| {
                *end += l;
                Some(*end as i64 - 1)
            })
            .collect();
        let n = last.len();
        let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(last, [n]), &device);
        let rows = hidden.reshape([total, h]).select(0, idx);
        let logits: Vec<Tensor<B, 2>> = (0..n)
            .step_by(PACKED_ROWS)
            .map(|s| {
                let part = rows.clone().narrow(0, s, PACKED_ROWS.min(n - s));
                // The head a decode step runs (the int8 or bf16 twin where loaded).
                lm.forward(part.unsqueeze_dim::<3>(0)).squeeze_dim::<2>(0)
            })
            .collect();
        Ok((caches, Tensor::cat(logits, 0)))
    }
}
