//! UER-py's model config JSON (`models/bert/base_config.json` and friends) as a serde struct.
//!
//! Every field is optional in the file; a missing one takes UER-py's default (2022 `opts.py`,
//! with `models/bert/base_config.json` — BERT-base — as the default config file). Both naming
//! generations parse: v1 spells `embedding` as `"word_pos_seg"` and `target` as `"mlm"` or
//! `["mlm", "sp"]`; v2 (2023-07 on) spells them `["word", "pos", "seg"]` and `["mlm"]`. The
//! spelling read is kept, so a config written back looks like the one read. Fields this struct
//! does not name (`data_processor`, `pooling`, …) are kept in [`UerConfig::extra`].

use serde::{Deserialize, Serialize};
use std::path::Path;

/// A UER option that is either one string (`"word_pos_seg"`, `"mlm"`) or a list of parts
/// (`["word", "pos", "seg"]`, `["mlm", "sp"]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Parts {
    /// One string, as UER-py ≤2022 writes `embedding` (`word_pos_seg`) and `target` (`mlm`).
    One(String),
    /// A list, as UER-py writes `target` since 2021 and `embedding` since 2023-07.
    List(Vec<String>),
}

impl Parts {
    /// The parts as written: a one-string value is one part (`word_pos_seg`, `bert`). For the
    /// meaning, use [`UerConfig::embedding_parts`] / [`UerConfig::target_parts`].
    pub fn parts(&self) -> Vec<&str> {
        match self {
            Parts::One(s) => vec![s.as_str()],
            Parts::List(v) => v.iter().map(String::as_str).collect(),
        }
    }

    /// Whether `part` is one of the parts (for `embedding`, `word_pos_seg` contains `seg`).
    pub fn contains(&self, part: &str) -> bool {
        match self {
            Parts::One(s) => s == part || s.split('_').any(|p| p == part),
            Parts::List(v) => v.iter().any(|p| p == part),
        }
    }

    /// The parts joined with `+` for display (`mlm+sp`, `word_pos_seg`).
    pub fn display(&self) -> String {
        self.parts().join("+")
    }
}

impl From<&str> for Parts {
    fn from(s: &str) -> Self {
        Parts::One(s.to_string())
    }
}

impl std::fmt::Display for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display())
    }
}

/// UER-py ≤2022 targets that stand for several v2 targets.
const V1_COMPOUND_TARGETS: &[(&str, &[&str])] =
    &[("bert", &["mlm", "sp"]), ("albert", &["mlm", "sp"])];

/// UER-py's model config (the JSON passed as `--config_path`). Missing fields take UER-py's
/// defaults; see [`UerConfig::default`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UerConfig {
    /// Embedding width (differs from `hidden_size` only with factorized embeddings). [768]
    pub emb_size: usize,
    /// Transformer/RNN width. [768]
    pub hidden_size: usize,
    /// Feed-forward inner width, usually 4 × hidden. [3072]
    pub feedforward_size: usize,
    /// Attention heads, usually hidden / 64. [12]
    pub heads_num: usize,
    /// Encoder layers. [12]
    pub layers_num: usize,
    /// Position embedding rows. [512]
    pub max_seq_length: usize,
    /// Dropout probability. [0.1]
    pub dropout: f64,
    /// Feed-forward activation: `gelu` (erf), `gelu_fast` (tanh, GPT-2), `relu` (ALBERT). [gelu]
    pub hidden_act: String,
    /// Embedding parts: `word_pos_seg` / `word_pos` / `word`, or v2's list. [word_pos_seg]
    pub embedding: Parts,
    /// Encoder: `transformer`, `lstm`, `gru`, `bilstm`, … [transformer]
    pub encoder: String,
    /// Attention mask: `fully_visible`, `causal`, `causal_with_prefix`. [fully_visible]
    pub mask: String,
    /// Pretraining target(s): `mlm`, `lm`, `["mlm", "sp"]`, v1 `bert`/`albert`, … [mlm]
    pub target: Parts,
    /// LayerNorm before (`pre`, GPT-2) or after (`post`, BERT) each sub-layer. [post]
    pub layernorm_positioning: String,
    /// No LayerNorm after the embedding (GPT-2). [false]
    pub remove_embedding_layernorm: bool,
    /// The MLM decoder / LM output shares the word embedding. [false]
    pub tie_weights: bool,
    /// ALBERT: embeddings of `emb_size` projected to `hidden_size`. [false]
    pub factorized_embedding_parameterization: bool,
    /// ALBERT: one transformer layer shared by all `layers_num` layers. [false]
    pub parameter_sharing: bool,
    /// Recurrent encoders: bidirectional. [false]
    pub bidirectional: bool,
    /// Every other key of the file (`data_processor`, `pooling`, …), kept as read.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Default for UerConfig {
    /// UER-py's defaults: BERT-base shape (`models/bert/base_config.json` is the default
    /// config file) and the 2022 `opts.py` option defaults.
    fn default() -> Self {
        UerConfig {
            emb_size: 768,
            hidden_size: 768,
            feedforward_size: 3072,
            heads_num: 12,
            layers_num: 12,
            max_seq_length: 512,
            dropout: 0.1,
            hidden_act: "gelu".into(),
            embedding: "word_pos_seg".into(),
            encoder: "transformer".into(),
            mask: "fully_visible".into(),
            target: "mlm".into(),
            layernorm_positioning: "post".into(),
            remove_embedding_layernorm: false,
            tie_weights: false,
            factorized_embedding_parameterization: false,
            parameter_sharing: false,
            bidirectional: false,
            extra: serde_json::Map::new(),
        }
    }
}

/// Reading a UER config failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading UER config `{path}`: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "parsing UER config `{path}`: {source} (expected UER-py's config JSON, e.g. models/bert/base_config.json)"
    )]
    Parse {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The encoders a UER config may name, with the attention mask each implies when the config
/// names none: `transformer` (UER-py 2020 on), and UER-py 2019's `bert` and `gpt` (BERT's
/// post-LN layer, the latter under a causal mask) and `lstm` (left to right, so causal).
pub const ENCODER_MASKS: &[(&str, &str)] = &[
    ("transformer", "fully_visible"),
    ("bert", "fully_visible"),
    ("gpt", "causal"),
    ("lstm", "causal"),
];

impl UerConfig {
    /// Parse UER config JSON text; `origin` names the source in errors.
    pub fn from_json_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let parse = |source| ConfigError::Parse {
            path: origin.to_string(),
            source,
        };
        let value: serde_json::Value = serde_json::from_str(text).map_err(parse)?;
        Self::from_json_value(&value).map_err(parse)
    }

    /// From parsed config JSON. An absent field takes UER-py's default, except three that
    /// follow the fields given, as the model they describe implies: `emb_size` is
    /// `hidden_size` and `feedforward_size` 4 × `hidden_size` (so a small model's config
    /// need not repeat them), and `mask` is the one `encoder` implies ([`ENCODER_MASKS`]:
    /// UER-py 2019's GPT configs name no mask).
    pub fn from_json_value(value: &serde_json::Value) -> Result<Self, serde_json::Error> {
        let mut c: UerConfig = serde_json::from_value(value.clone())?;
        let absent = |key: &str| value.get(key).is_none();
        if absent("emb_size") {
            c.emb_size = c.hidden_size;
        }
        if absent("feedforward_size") {
            c.feedforward_size = 4 * c.hidden_size;
        }
        let implied = ENCODER_MASKS.iter().find(|(e, _)| *e == c.encoder);
        if let (true, Some((_, mask))) = (absent("mask"), implied) {
            c.mask = (*mask).to_string();
        }
        Ok(c)
    }

    /// Read a UER config JSON file (e.g. a fixture's `uer_config.json`).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json_str(&text, &path.display().to_string())
    }

    /// Pretty JSON, as UER-py's config files are written.
    pub fn to_json_string(&self) -> String {
        // Serialising plain strings, numbers and maps cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Width of one attention head (`hidden_size / heads_num`), or `None` when the heads do
    /// not divide the width (or there are none, as in LSTM configs).
    pub fn head_dim(&self) -> Option<usize> {
        (self.heads_num > 0 && self.hidden_size.is_multiple_of(self.heads_num))
            .then(|| self.hidden_size / self.heads_num)
    }

    /// Embedding parts in v2 terms: v1 `word_pos_seg` → `word`, `pos`, `seg`.
    pub fn embedding_parts(&self) -> Vec<&str> {
        match &self.embedding {
            Parts::One(s) => s.split('_').collect(),
            Parts::List(v) => v.iter().map(String::as_str).collect(),
        }
    }

    /// Pretraining targets in v2 terms: v1 `bert` and `albert` are `mlm` + `sp` (NSP / SOP).
    pub fn target_parts(&self) -> Vec<&str> {
        self.target
            .parts()
            .into_iter()
            .flat_map(|t| {
                V1_COMPOUND_TARGETS
                    .iter()
                    .find(|(name, _)| *name == t)
                    .map_or_else(|| vec![t], |(_, parts)| parts.to_vec())
            })
            .collect()
    }

    /// Whether `target` (v2 name: `mlm`, `sp`, `lm`, `cls`, …) is among the targets.
    pub fn has_target(&self, target: &str) -> bool {
        self.target_parts().contains(&target)
    }

    /// Pre-LN (GPT-2 style) layers.
    pub fn is_pre_ln(&self) -> bool {
        self.layernorm_positioning == "pre"
    }

    /// Causal attention (GPT, GPT-2).
    pub fn is_causal(&self) -> bool {
        self.mask == "causal"
    }

    /// Whether the embedding has a segment (token type) table.
    pub fn has_segment_embedding(&self) -> bool {
        self.embedding.contains("seg")
    }

    /// Whether the embedding has a learned position table.
    pub fn has_position_embedding(&self) -> bool {
        self.embedding.contains("pos")
    }
}

#[cfg(test)]
mod tests {
    use super::UerConfig;
    use serde_json::json;

    #[test]
    fn absent_widths_and_mask_follow_the_fields_given() {
        let small = UerConfig::from_json_value(&json!({"hidden_size": 128})).unwrap();
        assert_eq!((small.emb_size, small.feedforward_size), (128, 512));
        assert_eq!(small.mask, "fully_visible");
        let gpt = UerConfig::from_json_value(&json!({"encoder": "gpt"})).unwrap();
        assert_eq!((gpt.mask.as_str(), gpt.emb_size), ("causal", 768));
        let lstm = UerConfig::from_json_value(&json!({"encoder": "lstm"})).unwrap();
        assert_eq!(lstm.mask, "causal");
        // What the file says wins.
        let given = json!({"encoder": "gpt", "mask": "fully_visible", "hidden_size": 256,
                           "emb_size": 128, "feedforward_size": 1000});
        let c = UerConfig::from_json_value(&given).unwrap();
        assert_eq!(
            (c.mask.as_str(), c.emb_size, c.feedforward_size),
            ("fully_visible", 128, 1000)
        );
        // A wrong type is an error, not a silent default.
        assert!(UerConfig::from_json_value(&json!({"hidden_size": "wide"})).is_err());
    }
}
