//! How well a causal model predicts given text: the perplexity of token sequences, computed
//! through the decoding path itself (one token a step with the KV cache, as generation runs
//! it), so that it measures what a low-precision decode (`--dtype int8|bf16`) does to the
//! next-token distributions generation samples from.

use super::GenerateError;
use crate::model::Model;
use crate::model::kv_cache::KvCache;
use burn::tensor::{Int, Tensor, TensorData, backend::Backend};

/// What [`perplexity`] measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Perplexity {
    /// `exp` of the mean negative log-likelihood (natural log) per predicted token.
    pub perplexity: f64,
    /// The mean negative log-likelihood itself.
    pub nll: f64,
    /// Tokens predicted (every token of every sequence but its first).
    pub tokens: usize,
}

/// The perplexity of `sequences` (token ids, each fed as generation feeds a prompt: `[CLS]`
/// first where the model expects it) under `model`: each sequence is decoded one token a
/// step with the KV cache, and every token after the first is scored by the log-softmax (in
/// f64) of the previous step's logits. Sequences longer than the model's positions and ids
/// outside its vocabulary are refused.
pub fn perplexity<B: Backend>(
    model: &Model<B>,
    sequences: &[Vec<u32>],
) -> Result<Perplexity, GenerateError> {
    let vocab = model.config.vocab_size;
    let positions = model.config.max_seq_length;
    let device = model.embedding.word.device();
    let (mut nll, mut tokens) = (0f64, 0usize);
    for (s, seq) in sequences.iter().enumerate() {
        if seq.len() > positions {
            return Err(GenerateError::MaxLength {
                max_length: seq.len(),
                positions,
            });
        }
        if let Some(&id) = seq.iter().find(|&&id| id as usize >= vocab) {
            return Err(GenerateError::Option {
                option: "ids",
                value: format!("{id} (sequence {s})"),
                expected: "ids below the model's vocabulary size",
            });
        }
        let mut cache = KvCache::new(model);
        for (t, pair) in seq.windows(2).enumerate() {
            let ids = Tensor::<B, 2, Int>::from_data(
                TensorData::new(vec![i64::from(pair[0])], [1, 1]),
                &device,
            );
            let logits = model.decode_step(ids, &mut cache)?;
            let row = logits
                .into_data()
                .to_vec::<f32>()
                .map_err(|e| GenerateError::Option {
                    option: "logits",
                    value: format!("{e:?} at step {t} of sequence {s}"),
                    expected: "f32 logits",
                })?;
            nll += neg_log_softmax(&row, pair[1] as usize);
            tokens += 1;
        }
    }
    let mean = if tokens > 0 { nll / tokens as f64 } else { 0.0 };
    Ok(Perplexity {
        perplexity: mean.exp(),
        nll: mean,
        tokens,
    })
}

/// `−log softmax(logits)[target]`, in f64.
fn neg_log_softmax(logits: &[f32], target: usize) -> f64 {
    let max = logits
        .iter()
        .fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    let sum: f64 = logits.iter().map(|&v| (v as f64 - max).exp()).sum();
    max + sum.ln() - logits[target] as f64
}

#[cfg(test)]
mod tests {
    use super::neg_log_softmax;

    #[test]
    fn neg_log_softmax_of_uniform_logits_is_log_n() {
        let v = neg_log_softmax(&[0.5; 8], 3);
        assert!((v - 8f64.ln()).abs() < 1e-12, "{v}");
        // A dominant logit costs almost nothing; the others pay the gap.
        let l = [10.0, 0.0, 0.0];
        assert!(neg_log_softmax(&l, 0) < 1e-4);
        assert!((neg_log_softmax(&l, 1) - (10.0 + neg_log_softmax(&l, 0))).abs() < 1e-9);
    }
}
