//! Detection: which family (BERT MLM / pretraining / classifier / 2019 classification target,
//! GPT-2, the 2019 GPT and LSTM LM, ALBERT), which side
//! (UER and its naming generation, or Huggingface) and how many layers a checkpoint has,
//! from its keys alone. The markers are data; the first matching row wins.

use super::names::{HF_BERT_PREFIX_ALIASES, HF_LAYERNORM_ALIASES};
use super::{ArchHint, ConvertError, Layout, Naming, Source};
use crate::checkpoint::Checkpoint;

/// What [`detect`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    pub family: Layout,
    pub source: Source,
    /// Layer indices present (`encoder.transformer.{i}` / `…layer.{i}` / `transformer.h.{i}`);
    /// 1 for ALBERT's shared layer.
    pub layers: usize,
    /// Spellings that were read as canonical ones (e.g. the 2022 `target.sp_linear_*`, HF
    /// `roberta.` prefix or `gamma/beta`), for the summary.
    pub notes: Vec<String>,
}

/// Marker keys, in order: a checkpoint holding any of a row's first keys, and all of its
/// second ones, is that family.
type Markers = &'static [(Layout, &'static [&'static str], &'static [&'static str])];

const UER_MARKERS: Markers = &[
    // Classifier heads on UER-py 2019's LSTM: run_classifier's, then its cls target.
    (
        Layout::LstmClassifier,
        &["output_layer_1.weight"],
        &["encoder.rnn.weight_ih_l0"],
    ),
    (
        Layout::LegacyLstmLmCls,
        &["target.output_layer.weight"],
        &["encoder.rnn.weight_ih_l0", "target.linear_1.weight"],
    ),
    (
        Layout::LegacyLstmLmCls,
        &["target.lm.output_layer.weight"],
        &["encoder.rnn.weight_ih_l0", "target.cls.linear_1.weight"],
    ),
    (
        Layout::LegacyLstmCls,
        &["target.linear_1.weight", "target.cls.linear_1.weight"],
        &["encoder.rnn.weight_ih_l0"],
    ),
    (
        Layout::AlbertClassifier,
        &["output_layer_1.weight"],
        &["encoder.linear.weight"],
    ),
    (
        Layout::Gpt2Classifier,
        &["output_layer_1.weight"],
        &["encoder.layer_norm.gamma"],
    ),
    (
        Layout::Albert,
        &[
            "encoder.linear.weight",
            "encoder.transformer.self_attn.linear_layers.0.weight",
        ],
        &[],
    ),
    // An LM on an LSTM encoder: UER-py 2019's LSTM language model.
    (
        Layout::LegacyLstm,
        &[
            "target.output_layer.weight",
            "target.lm.output_layer.weight",
        ],
        &["encoder.rnn.weight_ih_l0"],
    ),
    // An LM on BERT's embedding (with its LayerNorm): UER-py 2019's GPT, not GPT-2 (whose
    // embedding has no LayerNorm and whose encoder ends in one).
    (
        Layout::LegacyGpt,
        &[
            "target.output_layer.weight",
            "target.lm.output_layer.weight",
        ],
        &[
            "embedding.layer_norm.gamma",
            "encoder.transformer.0.layer_norm_1.gamma",
        ],
    ),
    (
        Layout::Gpt2,
        &[
            "target.output_layer.weight",
            "target.lm.output_layer.weight",
            "encoder.layer_norm.gamma",
        ],
        &[],
    ),
    (Layout::BertClassifier, &["output_layer_1.weight"], &[]),
    (
        Layout::BertClsTarget,
        &["target.linear_1.weight", "target.cls.linear_1.weight"],
        &["encoder.transformer.0.layer_norm_1.gamma"],
    ),
    (
        Layout::BertPretraining,
        &[
            "target.nsp_linear_1.weight",
            "target.sp.linear_1.weight",
            "target.sp_linear_1.weight",
        ],
        &[],
    ),
    (
        Layout::BertMlm,
        &["target.mlm_linear_1.weight", "target.mlm.linear_1.weight"],
        &[],
    ),
];

const HF_MARKERS: Markers = &[
    (
        Layout::AlbertClassifier,
        &["classifier.weight"],
        &["albert.embeddings.word_embeddings.weight"],
    ),
    (
        Layout::Albert,
        &["albert.embeddings.word_embeddings.weight"],
        &[],
    ),
    (Layout::Gpt2, &["transformer.wte.weight"], &[]),
    (Layout::BertClassifier, &["classifier.weight"], &[]),
    (
        Layout::BertPretraining,
        &["cls.seq_relationship.weight"],
        &[],
    ),
    (
        Layout::BertMlm,
        &[
            "cls.predictions.transform.dense.weight",
            "cls.predictions.decoder.weight",
        ],
        &[],
    ),
];

/// Word-embedding key of each UER generation.
const UER_NAMING_MARKERS: &[(Naming, &str)] = &[
    (Naming::V1, "embedding.word_embedding.weight"),
    (Naming::V2, "embedding.word.embedding.weight"),
];

/// Whether a key set is UER's (`embedding.`/`encoder.transformer`/`encoder.rnn` roots).
fn is_uer(ckpt: &Checkpoint) -> bool {
    ckpt.names().any(|n| {
        ["embedding.", "encoder.transformer", "encoder.rnn."]
            .iter()
            .any(|p| n.starts_with(p))
    })
}

/// HF key in canonical spelling (`bert.` prefix, `LayerNorm.weight/bias`); `bert_aliases`
/// applies the RoBERTa prefix rewrites (BERT family only).
pub(crate) fn canonical_hf(name: &str, bert_aliases: bool) -> String {
    let mut out = name.to_string();
    if bert_aliases {
        for (from, to) in HF_BERT_PREFIX_ALIASES {
            if let Some(rest) = out.strip_prefix(from) {
                out = format!("{to}{rest}");
                break;
            }
        }
    }
    for (from, to) in HF_LAYERNORM_ALIASES {
        if let Some(stem) = out.strip_suffix(from) {
            out = format!("{stem}{to}");
            break;
        }
    }
    out
}

/// Layout, side, naming generation and layer count of `ckpt`; `arch` narrows the family.
pub fn detect(ckpt: &Checkpoint) -> Result<Detected, ConvertError> {
    detect_as(ckpt, None)
}

/// [`detect`] with an `--arch` override.
pub fn detect_as(ckpt: &Checkpoint, arch: Option<ArchHint>) -> Result<Detected, ConvertError> {
    let file = super::file_name(ckpt);
    let mut notes = Vec::new();
    let (source, keys): (Source, Vec<String>) = if is_uer(ckpt) {
        let found: Vec<Naming> = UER_NAMING_MARKERS
            .iter()
            .filter(|(_, k)| ckpt.get(k).is_some())
            .map(|(n, _)| *n)
            .collect();
        let naming = match found.as_slice() {
            [one] => *one,
            _ => {
                return Err(ConvertError::UnknownNaming {
                    file,
                    found: found
                        .iter()
                        .map(|n| n.to_string())
                        .collect::<Vec<_>>()
                        .join(" and "),
                });
            }
        };
        (
            Source::Uer(naming),
            ckpt.names().map(str::to_string).collect(),
        )
    } else {
        let keys: Vec<String> = ckpt.names().map(|n| canonical_hf(n, true)).collect();
        if ckpt.names().any(|n| n.starts_with("roberta.")) {
            notes.push("HF keys carry a `roberta.` prefix: read as `bert.`".into());
        }
        if ckpt
            .names()
            .any(|n| n.ends_with("LayerNorm.gamma") || n.ends_with("LayerNorm.beta"))
        {
            notes.push(
                "HF LayerNorm keys use the legacy gamma/beta names: read as weight/bias".into(),
            );
        }
        (Source::Hf, keys)
    };
    let markers = if source == Source::Hf {
        HF_MARKERS
    } else {
        UER_MARKERS
    };
    let allowed = |f: Layout| arch.is_none_or(|a| a.families().contains(&f));
    let has = |k: &&str| keys.iter().any(|n| n == k);
    let family = markers
        .iter()
        .find(|(f, any, all)| allowed(*f) && any.iter().any(has) && all.iter().all(has))
        .map(|(f, _, _)| *f)
        .ok_or_else(|| ConvertError::UnknownFamily {
            file: super::file_name(ckpt),
            arch: arch.map(|a| a.to_string()),
            sample: keys.iter().take(6).cloned().collect::<Vec<_>>().join(", "),
        })?;
    if matches!(source, Source::Uer(_)) && keys.iter().any(|k| k.starts_with("target.sp_linear_")) {
        notes.push("UER keys use the 2022 `target.sp_linear_*` spelling: read as naming v1".into());
    }
    let layer_prefix = match (source, family) {
        (_, f) if f.is_albert() => None,
        (_, f) if f.is_lstm() => Some("encoder.rnn.weight_ih_l"),
        (Source::Uer(_), _) => Some("encoder.transformer."),
        (Source::Hf, f) if f.is_gpt2() => Some("transformer.h."),
        (Source::Hf, _) => Some("bert.encoder.layer."),
    };
    let layers = match layer_prefix {
        None => 1,
        Some(p) => keys
            .iter()
            .filter_map(|k| k.strip_prefix(p)?.split('.').next()?.parse::<usize>().ok())
            .max()
            .map_or(0, |m| m + 1),
    };
    Ok(Detected {
        family,
        source,
        layers,
        notes,
    })
}
