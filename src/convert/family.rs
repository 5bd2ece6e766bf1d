//! Detection: which family (BERT MLM / pretraining / classifier / 2019 classification target,
//! GPT-2, the 2019 GPT and LSTM LM, ALBERT), which side
//! (UER and its naming generation, or Huggingface) and how many layers a checkpoint has,
//! from its keys alone. The markers are data; the first matching row wins.

use super::names::{
    HF_BERT_PREFIX_ALIASES, HF_LAYERNORM_ALIASES, HF_MARKERS, LAYER_PREFIXES, UER_MARKERS,
    UER_NAMING_MARKERS, UER_ROOTS, UER_SP_2022,
};
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

/// Whether a key set is UER's (`embedding.`/`encoder.transformer`/`encoder.rnn` roots).
fn is_uer(ckpt: &Checkpoint) -> bool {
    ckpt.names()
        .any(|n| UER_ROOTS.iter().any(|p| n.starts_with(p)))
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
        let roberta = HF_BERT_PREFIX_ALIASES[0].0;
        if ckpt.names().any(|n| n.starts_with(roberta)) {
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
    if matches!(source, Source::Uer(_)) && keys.iter().any(|k| k.starts_with(UER_SP_2022)) {
        notes.push("UER keys use the 2022 `target.sp_linear_*` spelling: read as naming v1".into());
    }
    let layer_prefix = match (source, family) {
        (_, f) if f.is_albert() => None,
        (_, f) if f.is_lstm() => Some(LAYER_PREFIXES.lstm),
        (Source::Uer(_), _) => Some(LAYER_PREFIXES.uer),
        (Source::Hf, f) if f.is_gpt2() => Some(LAYER_PREFIXES.hf_gpt2),
        (Source::Hf, _) => Some(LAYER_PREFIXES.hf_bert),
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
