//! The model's shape and numerics, built from a UER-py config JSON (v1 2019–2022 or v2 2023
//! spelling) or a Huggingface `config.json`. Which heads exist is decided by the weights
//! (see [`super::load`]), not here.

use super::ModelError;
use crate::registry::UerConfig;
use crate::registry::config::ENCODER_MASKS;
use serde_json::Value;
use std::path::Path;

/// Which LayerNorm formula to use (defined beside the kernels that compute it).
pub use crate::kernels::LnKind;

/// Feed-forward (and MLM-head) activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `x·Φ(x)` with erf (BERT, RoBERTa).
    Gelu,
    /// The tanh approximation (GPT-2; HF `gelu_new`).
    GeluFast,
    /// `max(0, x)` (the ALBERT zoo configs).
    Relu,
}

impl Activation {
    /// UER-py's name of the activation (`hidden_act`).
    pub fn uer_name(self) -> &'static str {
        match self {
            Activation::Gelu => "gelu",
            Activation::GeluFast => "gelu_fast",
            Activation::Relu => "relu",
        }
    }
}

/// Attention mask kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskKind {
    /// Every token sees every non-padding token (segment 0 = padding).
    FullyVisible,
    /// Token i sees tokens 0..=i; padding is not masked (as UER-py 2022).
    Causal,
}

/// Where the LayerNorms sit in a transformer layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LnPosition {
    /// `LN(x + f(x))` (BERT, ALBERT).
    Post,
    /// `x + f(LN(x))`, plus a final LN after the last layer (GPT-2).
    Pre,
}

/// What turns the embeddings into hidden states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncoderKind {
    /// Transformer layers (every family but one).
    Transformer,
    /// UER-py 2019's `lstm` encoder: torch `nn.LSTM`, unidirectional, `layers_num` layers,
    /// `emb_size` in, `hidden_size` out ([`super::lstm`]).
    Lstm,
}

/// Everything needed to build a [`super::Model`] except the weights.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Vocabulary size; 0 means "take it from the word embedding".
    pub vocab_size: usize,
    /// Embedding width (differs from `hidden_size` only with factorized embeddings).
    pub emb_size: usize,
    /// Hidden width.
    pub hidden_size: usize,
    /// Feed-forward inner width.
    pub feedforward_size: usize,
    /// Attention heads.
    pub heads_num: usize,
    /// Transformer layers (applied `layers_num` times with one shared layer for ALBERT).
    pub layers_num: usize,
    /// Position embedding rows; 0 means "take it from the weights".
    pub max_seq_length: usize,
    /// Segment embedding present (`word_pos_seg`).
    pub segment_embedding: bool,
    /// LayerNorm after the embedding sum (off for GPT-2).
    pub embedding_layernorm: bool,
    /// ALBERT: embedding of `emb_size` projected to `hidden_size` by `encoder.linear`.
    pub factorized_embedding: bool,
    /// ALBERT: one transformer layer shared by all `layers_num` applications.
    pub parameter_sharing: bool,
    /// Linear layers in the encoder have biases (UER `remove_transformer_bias` = false).
    pub transformer_bias: bool,
    /// Activation of the feed-forward and MLM head.
    pub activation: Activation,
    /// Attention mask kind.
    pub mask: MaskKind,
    /// Post-LN or pre-LN.
    pub ln_position: LnPosition,
    /// LayerNorm formula.
    pub ln_kind: LnKind,
    /// LayerNorm epsilon (1e-6 for UER; the config's for HF).
    pub ln_eps: f64,
    /// Dropout probability (used only in training; forward here is eval mode).
    pub dropout: f64,
    /// The precision of the encoder's linear layers when loaded (not part of UER-py's
    /// config: the commands' `--dtype` sets it on the opened model). `Int8` quantizes them
    /// and `Bf16` rounds them at load, for inference on the CPU (Flex) backend only.
    pub dtype: Dtype,
    /// Transformer layers or UER-py 2019's LSTM.
    pub encoder: EncoderKind,
}

/// The precision of the encoder's linear layers (attention q/k/v/o and feed-forward) and of
/// a causal model's LM head (its logits f32), the matrices generation reads once per token.
/// Embeddings, LayerNorm, softmax, the residual stream, the KV cache and the other heads stay
/// f32 either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dtype {
    /// f32 weights and activations (what the checkpoint holds).
    #[default]
    F32,
    /// Weights quantized once at load (symmetric, per output channel), activations per row
    /// on the fly, i32 accumulation ([`crate::kernels::int8`]). CPU inference only.
    Int8,
    /// Weights rounded to bf16 once at load, activations rounded per call, f32 accumulation
    /// ([`crate::kernels::bf16`]: AVX-512 BF16 where the CPU has it). CPU inference only.
    Bf16,
}

impl std::str::FromStr for Dtype {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "f32" => Ok(Dtype::F32),
            "int8" => Ok(Dtype::Int8),
            "bf16" => Ok(Dtype::Bf16),
            other => Err(format!("dtype `{other}`: expected f32 or int8 or bf16")),
        }
    }
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Dtype::F32 => "f32",
            Dtype::Int8 => "int8",
            Dtype::Bf16 => "bf16",
        })
    }
}

/// UER-py's LayerNorm epsilon (added to the standard deviation).
pub const UER_LN_EPS: f64 = 1e-6;

impl ModelConfig {
    /// Reads a UER-py config JSON file.
    pub fn from_uer_file(path: &Path) -> Result<Self, ModelError> {
        let v = read_json(path)?;
        let c = UerConfig::from_json_value(&v).map_err(|e| ModelError::Config {
            path: path.to_path_buf(),
            message: format!("{e} (expected UER-py's config JSON)"),
        })?;
        Self::from_uer(&c).map_err(|m| with_path(m, path))
    }

    /// Reads a Huggingface `config.json`.
    pub fn from_hf_file(path: &Path) -> Result<Self, ModelError> {
        let v = read_json(path)?;
        Self::from_hf_json(&v).map_err(|m| with_path(m, path))
    }

    /// Builds the config from UER-py's config JSON (v1 strings or v2 lists for
    /// `embedding`/`target`), with UER-py's defaults for absent fields: the JSON is read once
    /// into [`UerConfig`] ([`UerConfig::from_json_value`]), then [`Self::from_uer`].
    pub fn from_uer_json(v: &Value) -> Result<Self, ModelError> {
        let c = UerConfig::from_json_value(v).map_err(|e| ModelError::Config {
            path: "(UER config)".into(),
            message: format!("{e} (expected UER-py's config JSON)"),
        })?;
        Self::from_uer(&c)
    }

    /// The model a UER-py config describes (the one config type from the registry, a config
    /// file or a checkpoint's companion to the model). Refuses what the model does not
    /// build: other encoders, feed-forwards, LayerNorms and relative positions.
    pub fn from_uer(c: &UerConfig) -> Result<Self, ModelError> {
        let parts = c.embedding_parts();
        if !parts.contains(&"pos") {
            return Err(unsupported(
                "embedding",
                parts.join(","),
                "word_pos_seg, word_pos, [word, pos(, seg)]",
            ));
        }
        if !ENCODER_MASKS.iter().any(|(name, _)| *name == c.encoder) {
            return Err(unsupported(
                "encoder",
                c.encoder.clone(),
                "transformer, bert, gpt, lstm",
            ));
        }
        let extra = |key: &str| c.extra.get(key);
        for (key, allowed) in [("feed_forward", "dense"), ("layernorm", "normal")] {
            if let Some(s) = extra(key).and_then(Value::as_str).filter(|s| *s != allowed) {
                return Err(unsupported(key, s.into(), allowed));
            }
        }
        if extra("relative_position_embedding").and_then(Value::as_bool) == Some(true) {
            return Err(unsupported(
                "relative_position_embedding",
                "true".into(),
                "false",
            ));
        }
        let activation = match c.hidden_act.as_str() {
            "gelu" => Activation::Gelu,
            "gelu_fast" => Activation::GeluFast,
            "relu" => Activation::Relu,
            other => {
                return Err(unsupported(
                    "hidden_act",
                    other.into(),
                    "gelu, gelu_fast, relu",
                ));
            }
        };
        let mask = match c.mask.as_str() {
            "fully_visible" => MaskKind::FullyVisible,
            "causal" => MaskKind::Causal,
            other => return Err(unsupported("mask", other.into(), "fully_visible, causal")),
        };
        let ln_position = match c.layernorm_positioning.as_str() {
            "post" => LnPosition::Post,
            "pre" => LnPosition::Pre,
            other => {
                return Err(unsupported(
                    "layernorm_positioning",
                    other.into(),
                    "post, pre",
                ));
            }
        };
        Ok(ModelConfig {
            vocab_size: 0,
            emb_size: c.emb_size,
            hidden_size: c.hidden_size,
            feedforward_size: c.feedforward_size,
            heads_num: c.heads_num,
            layers_num: c.layers_num,
            max_seq_length: 0,
            segment_embedding: parts.contains(&"seg"),
            embedding_layernorm: !c.remove_embedding_layernorm,
            factorized_embedding: c.factorized_embedding_parameterization,
            parameter_sharing: c.parameter_sharing,
            transformer_bias: !extra("remove_transformer_bias")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            activation,
            mask,
            ln_position,
            ln_kind: LnKind::Uer,
            ln_eps: UER_LN_EPS,
            dropout: c.dropout,
            dtype: Dtype::F32,
            encoder: if c.encoder == "lstm" {
                EncoderKind::Lstm
            } else {
                EncoderKind::Transformer
            },
        })
    }

    /// Builds the config from a Huggingface `config.json` (`model_type` bert, albert or gpt2,
    /// the architectures UER-py's conversion scripts write). LN semantics are HF's.
    pub fn from_hf_json(v: &Value) -> Result<Self, ModelError> {
        let model_type = v.get("model_type").and_then(Value::as_str).unwrap_or("");
        let act = |name: &str| match name {
            "gelu" => Ok(Activation::Gelu),
            "gelu_new" | "gelu_fast" | "gelu_pytorch_tanh" => Ok(Activation::GeluFast),
            "relu" => Ok(Activation::Relu),
            other => Err(unsupported(
                "hidden_act",
                other.into(),
                "gelu, gelu_new, relu",
            )),
        };
        match model_type {
            "bert" | "albert" => {
                let hidden = get_usize(v, "hidden_size").unwrap_or(768);
                let albert = model_type == "albert";
                Ok(ModelConfig {
                    vocab_size: get_usize(v, "vocab_size").unwrap_or(0),
                    emb_size: if albert {
                        get_usize(v, "embedding_size").unwrap_or(128)
                    } else {
                        hidden
                    },
                    hidden_size: hidden,
                    feedforward_size: get_usize(v, "intermediate_size").unwrap_or(4 * hidden),
                    heads_num: get_usize(v, "num_attention_heads").unwrap_or(12),
                    layers_num: get_usize(v, "num_hidden_layers").unwrap_or(12),
                    max_seq_length: get_usize(v, "max_position_embeddings").unwrap_or(512),
                    segment_embedding: true,
                    embedding_layernorm: true,
                    factorized_embedding: albert,
                    parameter_sharing: albert,
                    transformer_bias: true,
                    activation: act(v
                        .get("hidden_act")
                        .and_then(Value::as_str)
                        .unwrap_or("gelu"))?,
                    mask: MaskKind::FullyVisible,
                    ln_position: LnPosition::Post,
                    ln_kind: LnKind::Hf,
                    ln_eps: v
                        .get("layer_norm_eps")
                        .and_then(Value::as_f64)
                        .unwrap_or(1e-12),
                    dropout: v
                        .get("hidden_dropout_prob")
                        .and_then(Value::as_f64)
                        .unwrap_or(0.1),
                    dtype: Dtype::F32,
                    encoder: EncoderKind::Transformer,
                })
            }
            "gpt2" => {
                let hidden = get_usize(v, "n_embd").unwrap_or(768);
                Ok(ModelConfig {
                    vocab_size: get_usize(v, "vocab_size").unwrap_or(0),
                    emb_size: hidden,
                    hidden_size: hidden,
                    feedforward_size: get_usize(v, "n_inner").unwrap_or(4 * hidden),
                    heads_num: get_usize(v, "n_head").unwrap_or(12),
                    layers_num: get_usize(v, "n_layer").unwrap_or(12),
                    max_seq_length: get_usize(v, "n_positions").unwrap_or(1024),
                    segment_embedding: false,
                    embedding_layernorm: false,
                    factorized_embedding: false,
                    parameter_sharing: false,
                    transformer_bias: true,
                    activation: act(v
                        .get("activation_function")
                        .and_then(Value::as_str)
                        .unwrap_or("gelu_new"))?,
                    mask: MaskKind::Causal,
                    ln_position: LnPosition::Pre,
                    ln_kind: LnKind::Hf,
                    ln_eps: v
                        .get("layer_norm_epsilon")
                        .and_then(Value::as_f64)
                        .unwrap_or(1e-5),
                    dropout: v.get("resid_pdrop").and_then(Value::as_f64).unwrap_or(0.1),
                    dtype: Dtype::F32,
                    encoder: EncoderKind::Transformer,
                })
            }
            other => Err(unsupported(
                "model_type",
                other.into(),
                "bert, albert, gpt2",
            )),
        }
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.heads_num.max(1)
    }

    /// Checks the dimensions fit together.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.encoder == EncoderKind::Lstm {
            // No attention heads; the LSTM maps emb_size to hidden_size itself.
            return Ok(());
        }
        if self.heads_num == 0 || !self.hidden_size.is_multiple_of(self.heads_num) {
            return Err(ModelError::Unsupported {
                field: "heads_num",
                value: format!("{} (hidden_size {})", self.heads_num, self.hidden_size),
                supported: "a divisor of hidden_size",
            });
        }
        if !self.factorized_embedding && self.emb_size != self.hidden_size {
            return Err(ModelError::Unsupported {
                field: "emb_size",
                value: format!(
                    "{} ≠ hidden_size {} without factorized embeddings",
                    self.emb_size, self.hidden_size
                ),
                supported: "emb_size = hidden_size unless factorized_embedding_parameterization",
            });
        }
        Ok(())
    }
}

fn read_json(path: &Path) -> Result<Value, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::Config {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| ModelError::Config {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn with_path(err: ModelError, path: &Path) -> ModelError {
    match err {
        ModelError::Unsupported { .. } => ModelError::Config {
            path: path.to_path_buf(),
            message: err.to_string(),
        },
        other => other,
    }
}

fn unsupported(field: &'static str, value: String, supported: &'static str) -> ModelError {
    ModelError::Unsupported {
        field,
        value,
        supported,
    }
}

fn get_usize(v: &Value, key: &str) -> Option<usize> {
    v.get(key).and_then(Value::as_u64).map(|x| x as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The registry's config type and a config JSON build the same model config: the JSON is
    /// read once into [`UerConfig`].
    #[test]
    fn a_uer_config_and_its_json_give_the_same_model() {
        let v = json!({"hidden_size": 128, "heads_num": 2, "layers_num": 2, "encoder": "gpt",
                       "embedding": ["word", "pos", "seg"], "remove_transformer_bias": true});
        let from_json = ModelConfig::from_uer_json(&v).unwrap();
        let from_type = ModelConfig::from_uer(&UerConfig::from_json_value(&v).unwrap()).unwrap();
        assert_eq!(format!("{from_json:?}"), format!("{from_type:?}"));
        assert_eq!(from_json.mask, MaskKind::Causal);
        assert!(from_json.segment_embedding && !from_json.transformer_bias);
        assert_eq!((from_json.emb_size, from_json.feedforward_size), (128, 512));
        for (field, bad) in [
            ("feed_forward", json!("gated")),
            ("layernorm", json!("rms")),
            ("relative_position_embedding", json!(true)),
            ("encoder", json!("gru")),
            ("hidden_act", json!("silu")),
        ] {
            let mut v = v.clone();
            v[field] = bad;
            let err = ModelConfig::from_uer_json(&v).unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
    }
}
