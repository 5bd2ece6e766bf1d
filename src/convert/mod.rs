//! Conversion between UER-py checkpoints (naming generations v1 and v2) and Huggingface
//! transformers checkpoints, for every family of the zoo: BERT/RoBERTa (MLM, pretraining with
//! NSP, fine-tuned classifiers), word-based RoBERTa, GPT-2 and ALBERT.
//!
//! This module owns the naming tables ([`names`], data: one row per tensor), detection
//! ([`family`]), the exact transforms (segment rows, Conv1D transpose, q/k/v concatenation,
//! optional LayerNorm rescaling) and the HF directory's `config.json`/tokenizer files
//! ([`hf_config`]). Conversion is in memory, `Checkpoint → (Checkpoint, Report)`; it never
//! reads or writes tensor files itself (that is [`crate::checkpoint`]) and never prints.
//! It never drops a tensor silently: every input tensor is mapped, reported as dropped with a
//! reason (HF buffers, duplicates), or the conversion fails naming it.

pub mod beside;
pub mod dtype;
pub mod family;
pub mod hf_config;
pub mod names;
pub(crate) mod ops;
pub mod run;
pub mod shapes;

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::checkpoint::{Checkpoint, Tensor};
pub use dtype::FloatDType;
pub use family::{Detected, detect, detect_as};
use names::{Op, Row};
pub use run::{ConvertRequest, FileFormat, Outcome, To, run};

/// UER naming generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Naming {
    /// 2019–2022: every published zoo weight (`embedding.word_embedding`, `target.mlm_linear_1`).
    V1,
    /// 2023+: current UER-py and TencentPretrain (`embedding.word.embedding`, `target.mlm.linear_1`).
    V2,
}

impl Naming {
    fn index(self) -> usize {
        match self {
            Naming::V1 => 0,
            Naming::V2 => 1,
        }
    }
}

impl fmt::Display for Naming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Naming::V1 => "v1",
            Naming::V2 => "v2",
        })
    }
}

impl std::str::FromStr for Naming {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "v1" => Ok(Naming::V1),
            "v2" => Ok(Naming::V2),
            _ => Err(format!("unknown UER naming `{s}` (expected v1 or v2)")),
        }
    }
}

/// Where a checkpoint's names come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Uer(Naming),
    Hf,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Uer(n) => write!(f, "UER naming {n}"),
            Source::Hf => f.write_str("Huggingface"),
        }
    }
}

/// A checkpoint layout (a model family as the conversion sees it): which tensors exist (the table in [`names::table`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// BERT/RoBERTa with the MLM head (`BertForMaskedLM`); also word-based RoBERTa.
    BertMlm,
    /// BERT with MLM + next-sentence heads (`BertForPreTraining`).
    BertPretraining,
    /// A fine-tuned classifier (`output_layer_1/2` ⇄ `BertForSequenceClassification`).
    BertClassifier,
    /// GPT-2 (`GPT2LMHeadModel`).
    Gpt2,
    /// ALBERT with MLM + sentence-order heads (`AlbertForPreTraining`).
    Albert,
    /// A fine-tuned ALBERT classifier (`output_layer_1/2` ⇄ `AlbertForSequenceClassification`).
    AlbertClassifier,
    /// A GPT-2 fine-tuned with run_classifier (`--mask causal`): pooled `output_layer_1/2`.
    /// UER-only: transformers has no class with this pooler (`GPT2ForSequenceClassification`
    /// scores the last token without a dense + tanh layer).
    Gpt2Classifier,
    /// UER-py 2019's GPT (`--encoder gpt --target lm`): BERT's embeddings and post-LN layers
    /// under a causal mask, with an untied LM output layer that has a bias. UER-only:
    /// transformers' `BertLMHeadModel` puts its MLM transform (dense, activation, LayerNorm)
    /// before the decoder and GPT-2 is pre-LN, so neither computes this model.
    LegacyGpt,
    /// BERT pretrained with UER-py 2019's classification target (`--target cls`:
    /// `target.linear_1` → tanh → `target.linear_2` on the first token), the legacy zoo's
    /// jdbinary/amazon/xnli weights. Its head is `BertForSequenceClassification`'s pooler +
    /// classifier.
    BertClsTarget,
    /// UER-py 2019's LSTM language model (`--encoder lstm --target lm`): BERT's embeddings,
    /// torch `nn.LSTM` (`encoder.rnn.*`) and an untied LM output layer with a bias. UER-only:
    /// transformers has no LSTM model.
    LegacyLstm,
    /// UER-py 2019's LSTM with its classification target (`--encoder lstm --target cls`,
    /// `target.linear_{1,2}`; the legacy zoo's LSTM LM + Cls weights). UER-only.
    LegacyLstmCls,
    /// [`Layout::LegacyLstmCls`] that also keeps the LM's output layer (`target.output_layer`
    /// beside `target.linear_{1,2}`): a file trained with both targets. UER-only.
    LegacyLstmLmCls,
    /// run_classifier's head (`output_layer_{1,2}`) on UER-py 2019's LSTM: what `finetune`
    /// writes from an LSTM. UER-only.
    LstmClassifier,
}

impl Layout {
    /// The transformers class of the HF side.
    pub fn hf_architecture(self) -> &'static str {
        match self {
            Layout::BertMlm => "BertForMaskedLM",
            Layout::BertPretraining => "BertForPreTraining",
            Layout::BertClassifier => "BertForSequenceClassification",
            Layout::Gpt2 => "GPT2LMHeadModel",
            Layout::Albert => "AlbertForPreTraining",
            Layout::AlbertClassifier => "AlbertForSequenceClassification",
            Layout::Gpt2Classifier
            | Layout::LegacyGpt
            | Layout::LegacyLstm
            | Layout::LegacyLstmCls
            | Layout::LegacyLstmLmCls
            | Layout::LstmClassifier => "(none: UER format only)",
            Layout::BertClsTarget => "BertForSequenceClassification",
        }
    }

    /// Whether the checkpoint is a fine-tuned classifier (`output_layer_1/2`).
    pub fn is_classifier(self) -> bool {
        matches!(
            self,
            Layout::BertClassifier
                | Layout::AlbertClassifier
                | Layout::Gpt2Classifier
                | Layout::BertClsTarget
                | Layout::LegacyLstmCls
                | Layout::LegacyLstmLmCls
                | Layout::LstmClassifier
        )
    }

    /// Whether the encoder is ALBERT's (factorized embedding, one shared layer).
    pub fn is_albert(self) -> bool {
        matches!(self, Layout::Albert | Layout::AlbertClassifier)
    }

    /// Whether the encoder is GPT-2's (pre-LN, causal).
    pub fn is_gpt2(self) -> bool {
        matches!(self, Layout::Gpt2 | Layout::Gpt2Classifier)
    }

    /// Whether transformers has a class for it, so that it can be written as an HF folder.
    pub fn has_hf_form(self) -> bool {
        self.no_hf_form().is_none()
    }

    /// Why transformers has no exact equivalent of this family, when it has none.
    pub fn no_hf_form(self) -> Option<&'static str> {
        match self {
            Layout::Gpt2Classifier => {
                Some("transformers has no class with UER's pooled classifier head on this encoder")
            }
            Layout::LegacyGpt => Some(
                "transformers has no exact equivalent of UER-py 2019's GPT, BERT's post-LN layers under a causal mask with one untied output layer: BertLMHeadModel adds the MLM transform (dense, activation, LayerNorm) before its decoder and GPT-2 is pre-LN",
            ),
            Layout::LegacyLstm => Some("transformers has no LSTM language model"),
            Layout::LegacyLstmCls | Layout::LegacyLstmLmCls | Layout::LstmClassifier => {
                Some("transformers has no LSTM classifier")
            }
            _ => None,
        }
    }

    /// Whether the encoder is UER-py 2019's LSTM (`encoder.rnn.*`) rather than transformer
    /// layers; the 2019 config files do not always name the encoder.
    pub fn is_lstm(self) -> bool {
        matches!(
            self,
            Layout::LegacyLstm
                | Layout::LegacyLstmCls
                | Layout::LegacyLstmLmCls
                | Layout::LstmClassifier
        )
    }

    /// Whether the keys alone say the mask is causal, whatever the config states: UER-py
    /// 2019's `--encoder gpt` built its causal mask in code, and its config files (like
    /// `uer_config.json` of the legacy zoo) do not name a mask.
    pub fn causal_by_keys(self) -> bool {
        matches!(self, Layout::LegacyGpt) || self.is_lstm()
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layout::BertMlm => "BERT/RoBERTa with MLM head",
            Layout::BertPretraining => "BERT with MLM + NSP heads",
            Layout::BertClassifier => "BERT sequence classifier",
            Layout::Gpt2 => "GPT-2 LM",
            Layout::Albert => "ALBERT with MLM + SOP heads",
            Layout::AlbertClassifier => "ALBERT sequence classifier",
            Layout::Gpt2Classifier => "GPT-2 sequence classifier",
            Layout::LegacyGpt => "GPT (UER-py 2019: post-LN causal BERT layers, untied LM)",
            Layout::BertClsTarget => "BERT with classification target (UER-py 2019)",
            Layout::LegacyLstm => "LSTM LM (UER-py 2019: BERT embedding, nn.LSTM, untied LM)",
            Layout::LegacyLstmCls => "LSTM with classification target (UER-py 2019)",
            Layout::LegacyLstmLmCls => "LSTM with LM and classification targets (UER-py 2019)",
            Layout::LstmClassifier => "LSTM sequence classifier (UER-py 2019's LSTM)",
        })
    }
}

/// `--arch`: the user's word for the architecture (narrows detection; word-roberta also picks
/// sentencepiece tokenizer files).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchHint {
    Bert,
    Roberta,
    WordRoberta,
    Gpt2,
    /// UER-py 2019's GPT (the legacy zoo's `arch = "gpt"`).
    Gpt,
    Albert,
}

impl ArchHint {
    /// The families this architecture may be.
    pub fn families(self) -> &'static [Layout] {
        match self {
            ArchHint::Bert | ArchHint::Roberta | ArchHint::WordRoberta => &[
                Layout::BertMlm,
                Layout::BertPretraining,
                Layout::BertClassifier,
                Layout::BertClsTarget,
            ],
            ArchHint::Gpt2 => &[Layout::Gpt2Classifier, Layout::Gpt2],
            ArchHint::Gpt => &[Layout::LegacyGpt],
            ArchHint::Albert => &[Layout::AlbertClassifier, Layout::Albert],
        }
    }
}

impl fmt::Display for ArchHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ArchHint::Bert => "bert",
            ArchHint::Roberta => "roberta",
            ArchHint::WordRoberta => "word-roberta",
            ArchHint::Gpt2 => "gpt2",
            ArchHint::Gpt => "gpt",
            ArchHint::Albert => "albert",
        })
    }
}

impl std::str::FromStr for ArchHint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "bert" => ArchHint::Bert,
            "roberta" => ArchHint::Roberta,
            "word-roberta" => ArchHint::WordRoberta,
            "gpt2" => ArchHint::Gpt2,
            "gpt" => ArchHint::Gpt,
            "albert" => ArchHint::Albert,
            _ => {
                return Err(format!(
                    "unknown arch `{s}` (bert, roberta, word-roberta, gpt2, gpt, albert)"
                ));
            }
        })
    }
}

/// Errors of conversion; each names the file, the key and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error(
        "{file}: cannot tell the model family from the keys{}: first keys are {sample}; \
         pass --arch bert|roberta|word-roberta|gpt2|gpt|albert if it is one of those",
        arch.as_ref().map(|a| format!(" (as --arch {a})")).unwrap_or_default()
    )]
    UnknownFamily {
        file: String,
        arch: Option<String>,
        sample: String,
    },
    #[error(
        "{file}: cannot tell the UER naming generation: the word embedding is {}",
        if found.is_empty() { "missing (neither `embedding.word_embedding.weight` (v1) nor `embedding.word.embedding.weight` (v2))".to_string() } else { format!("present in both {found}") }
    )]
    UnknownNaming { file: String, found: String },
    #[error("{file}: no `{key}` (detected {family}, {side}){hint}{}", if *more > 0 { format!("; {more} more keys missing") } else { String::new() })]
    MissingKey {
        file: String,
        key: String,
        family: Layout,
        side: Source,
        hint: String,
        more: usize,
    },
    #[error(
        "{file}: {} tensor(s) have no place in the {family} table ({side}): {}; \
         pass --allow-unmapped to drop them",
        names.len(), names.join(", ")
    )]
    Unmapped {
        file: String,
        family: Layout,
        side: Source,
        names: Vec<String>,
    },
    #[error("{file}: `{key}` has shape {shape:?}, expected {expected}")]
    Shape {
        file: String,
        key: String,
        shape: Vec<usize>,
        expected: String,
    },
    #[error("{file}: `{key}` is {dtype:?}; LayerNorm rescaling needs a float tensor")]
    NotFloat {
        file: String,
        key: String,
        dtype: crate::checkpoint::DType,
    },
    #[error("{what}: {heads} attention heads do not divide the hidden size {hidden}")]
    Heads {
        what: String,
        heads: usize,
        hidden: usize,
    },
    #[error("`{}` exists; pass --force to overwrite", path.display())]
    OutputExists { path: std::path::PathBuf },
    #[error(
        "{file}: a {family} has no Huggingface form ({}); keep it in UER format (`--format uer` / `--to uer`)",
        family.no_hf_form().unwrap_or("no transformers class")
    )]
    NoHfForm { file: String, family: Layout },
    #[error("{}: {message}", path.display())]
    Config {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("writing `{}`: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Checkpoint(Box<crate::checkpoint::CheckpointError>),
}

/// Options of [`to_uer`].
#[derive(Debug, Clone, Copy)]
pub struct ToUerOptions {
    /// The UER naming generation to write (default v2: what current UER-py loads).
    pub naming: Naming,
    /// Rescale LayerNorm weights by sqrt(n/(n-1)) (HF source only) so UER's LayerNorm
    /// reproduces HF's outputs. Off by default.
    pub exact_layernorm: bool,
    /// Drop input tensors that no table row knows (listed in the report) instead of failing.
    pub allow_unmapped: bool,
    /// Narrow family detection.
    pub arch: Option<ArchHint>,
}

impl Default for ToUerOptions {
    fn default() -> Self {
        ToUerOptions {
            naming: Naming::V2,
            exact_layernorm: false,
            allow_unmapped: false,
            arch: None,
        }
    }
}

/// Options of [`to_hf`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ToHfOptions {
    /// Rescale LayerNorm weights by sqrt((n-1)/n) (UER source only) so HF's LayerNorm
    /// reproduces UER's outputs (write a small `layer_norm_eps` too). Off by default.
    pub exact_layernorm: bool,
    /// Drop input tensors that no table row knows instead of failing.
    pub allow_unmapped: bool,
    /// Narrow family detection.
    pub arch: Option<ArchHint>,
}

/// Where a conversion goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    Uer(Naming),
    Hf,
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Uer(n) => write!(f, "UER naming {n}"),
            Destination::Hf => f.write_str("Huggingface"),
        }
    }
}

/// One output tensor and where it came from.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub from: Vec<String>,
    pub to: String,
    /// The transform, in words ("copy", "transpose", "drop segment row 0", …).
    pub transform: &'static str,
}

/// What a conversion did.
#[derive(Debug, Clone)]
pub struct Report {
    pub family: Layout,
    pub source: Source,
    pub target: Destination,
    pub layers: usize,
    pub exact_layernorm: bool,
    pub mapped: Vec<Mapping>,
    /// Input tensors not carried over, with the reason.
    pub dropped: Vec<(String, String)>,
    /// Rows of carried tensors that the target has no place for (UER's padding segment
    /// going to HF): `(input tensor, "row 0: why")`.
    pub dropped_rows: Vec<(String, String)>,
    /// Rows the target needs and the input does not have, filled with zeros (the padding
    /// segment going to UER): `(output tensor, "row 0: why")`.
    pub added_rows: Vec<(String, String)>,
    /// Output names sharing one tensor.
    pub tied: Vec<Vec<String>>,
    /// Whether the decoder / LM output is the word embedding (HF `tie_word_embeddings`).
    pub tied_decoder: bool,
    pub notes: Vec<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "family:     {} ({} layer(s))", self.family, self.layers)?;
        writeln!(f, "from:       {}", self.source)?;
        writeln!(f, "to:         {}", self.target)?;
        writeln!(
            f,
            "layernorm:  {}",
            match (self.exact_layernorm, self.source, self.target) {
                (true, _, Destination::Hf) =>
                    "exact (LayerNorm weights × sqrt((n-1)/n), eps 1e-12: HF reproduces UER's outputs)",
                (true, _, Destination::Uer(_)) =>
                    "exact (LayerNorm weights × sqrt(n/(n-1)): UER reproduces HF's outputs)",
                (false, Source::Uer(_), Destination::Uer(_)) => "weights copied as is",
                (false, _, _) => {
                    "weights copied as is (like UER-py's scripts; UER and HF LayerNorm differ, ~1e-2 in logits; --exact-layernorm rescales)"
                }
            }
        )?;
        writeln!(f, "mapped:     {} tensors", self.mapped.len())?;
        let count = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        writeln!(
            f,
            "dropped:    {}, {}",
            count(self.dropped.len(), "tensor"),
            count(self.dropped_rows.len(), "row")
        )?;
        for (name, why) in self.dropped.iter().chain(&self.dropped_rows) {
            writeln!(f, "  - {name}: {why}")?;
        }
        if !self.added_rows.is_empty() {
            writeln!(f, "added:      {}", count(self.added_rows.len(), "row"))?;
            for (name, why) in &self.added_rows {
                writeln!(f, "  - {name}: {why}")?;
            }
        }
        let tied: Vec<String> = self.tied.iter().map(|g| g.join(" = ")).collect();
        writeln!(
            f,
            "tied:       {}",
            if tied.is_empty() {
                "none".to_string()
            } else {
                tied.join("; ")
            }
        )?;
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        Ok(())
    }
}

pub(crate) fn file_name(ckpt: &Checkpoint) -> String {
    ckpt.source
        .as_ref()
        .map_or_else(|| "<checkpoint>".to_string(), |p| p.display().to_string())
}

/// Converts any supported checkpoint (UER v1/v2/2022 spelling, or HF) to UER naming
/// `opts.naming`. Layer norm weights are copied unless `opts.exact_layernorm` (HF source).
pub fn to_uer(
    ckpt: &Checkpoint,
    opts: &ToUerOptions,
) -> Result<(Checkpoint, Report), ConvertError> {
    let det = detect_as(ckpt, opts.arch)?;
    convert(
        ckpt,
        &det,
        Destination::Uer(opts.naming),
        opts.exact_layernorm,
        opts.allow_unmapped,
    )
}

/// Converts a UER checkpoint (or an HF one, re-spelled canonically) to Huggingface names.
pub fn to_hf(ckpt: &Checkpoint, opts: &ToHfOptions) -> Result<(Checkpoint, Report), ConvertError> {
    let det = detect_as(ckpt, opts.arch)?;
    if !det.family.has_hf_form() {
        return Err(ConvertError::NoHfForm {
            file: file_name(ckpt),
            family: det.family,
        });
    }
    if det.source == Source::Hf {
        // HF → HF: normalize spellings through UER v2 (bit-exact, no rescaling).
        let (uer, first) = convert(
            ckpt,
            &det,
            Destination::Uer(Naming::V2),
            false,
            opts.allow_unmapped,
        )?;
        let det2 = Detected {
            source: Source::Uer(Naming::V2),
            notes: Vec::new(),
            ..det
        };
        let (hf, mut report) = convert(&uer, &det2, Destination::Hf, false, false)?;
        report.source = Source::Hf;
        report.dropped = first.dropped;
        // The second pass dropped the zero rows the first one added: nothing of the input.
        report.dropped_rows = first.dropped_rows;
        report.notes = first.notes;
        return Ok((hf, report));
    }
    convert(
        ckpt,
        &det,
        Destination::Hf,
        opts.exact_layernorm,
        opts.allow_unmapped,
    )
}

/// The table loop: every row of the family, every layer, source name → target name.
fn convert(
    ckpt: &Checkpoint,
    det: &Detected,
    target: Destination,
    exact_layernorm: bool,
    allow_unmapped: bool,
) -> Result<(Checkpoint, Report), ConvertError> {
    let file = file_name(ckpt);
    let family = det.family;
    // Input tensors by the name the table uses for them.
    let mut input: HashMap<String, (&str, &Tensor)> = HashMap::new();
    // Two spellings of one name (`bert.x` and `roberta.x`): never silently drop either.
    let mut collisions: Vec<String> = Vec::new();
    for (name, t) in &ckpt.tensors {
        let key = match det.source {
            Source::Hf => family::canonical_hf(name, family_is_bert(family)),
            Source::Uer(_) => name.clone(),
        };
        match input.entry(key) {
            std::collections::hash_map::Entry::Occupied(_) => collisions.push(name.clone()),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert((name.as_str(), t));
            }
        }
    }
    let src_name = |row: &Row, layer: usize| -> Vec<String> {
        match det.source {
            Source::Uer(n) => {
                let mut v = vec![names::instantiate(row.uer[n.index()], layer)];
                if !row.uer_alt.is_empty() {
                    v.push(names::instantiate(row.uer_alt, layer));
                }
                v
            }
            Source::Hf => vec![names::instantiate(row.hf, layer)],
        }
    };
    let dst_name = |row: &Row, layer: usize| -> String {
        match target {
            Destination::Uer(n) => names::instantiate(row.uer[n.index()], layer),
            Destination::Hf => names::instantiate(row.hf, layer),
        }
    };
    let rescale = match (exact_layernorm, det.source, target) {
        (true, Source::Uer(_), Destination::Hf) => Some(true),
        (true, Source::Hf, Destination::Uer(_)) => Some(false),
        _ => None,
    };
    let shape_err = |key: &str, t: &Tensor, expected: &str| ConvertError::Shape {
        file: file.clone(),
        key: key.to_string(),
        shape: t.shape.clone(),
        expected: expected.to_string(),
    };

    let mut out = Checkpoint::default();
    let mut mapped = Vec::new();
    let mut used: HashSet<String> = HashSet::new();
    let mut missing: Vec<String> = Vec::new();
    let mut dropped: Vec<(String, String)> = Vec::new();
    let mut dropped_rows: Vec<(String, String)> = Vec::new();
    let mut added_rows: Vec<(String, String)> = Vec::new();
    let mut notes = det.notes.clone();
    // q/k/v parts waiting for their siblings (UER → HF), and split c_attn (HF → UER).
    let mut qkv_parts: HashMap<String, Vec<Option<(String, Tensor)>>> = HashMap::new();
    let mut qkv_cache: HashMap<String, Tensor> = HashMap::new();
    let mut word: Option<(String, String, Tensor)> = None; // (src key, out name, out tensor)
    let mut tied_decoder = false;

    for block in names::table(family) {
        let layer_range = if block.per_layer { 0..det.layers } else { 0..1 };
        for layer in layer_range {
            for (ri, row) in block.rows.iter().enumerate() {
                let dst = dst_name(row, layer);
                if row.op == Op::HfDuplicate {
                    // A second HF name for the previous row's tensor.
                    match (det.source, target) {
                        (Source::Uer(_), Destination::Hf) => {
                            let main = names::instantiate(block.rows[ri - 1].hf, layer);
                            if let Some(t) = out.get(&main).cloned() {
                                out.insert(dst.clone(), t);
                                mapped.push(Mapping {
                                    from: src_name(row, layer)[..1].to_vec(),
                                    to: dst,
                                    transform: "copy (second HF name)",
                                });
                            }
                        }
                        (Source::Hf, _) => {
                            let key = names::instantiate(row.hf, layer);
                            if let Some((orig, t)) = input.get(&key) {
                                used.insert(key.clone());
                                let main = names::instantiate(block.rows[ri - 1].hf, layer);
                                let why = match input.get(&main) {
                                    Some((m, mt)) if ops::same(mt, t) => {
                                        format!("duplicate of `{m}`")
                                    }
                                    Some((m, _)) => {
                                        notes.push(format!("`{orig}` differs from `{m}`; kept `{m}` (UER has one MLM bias)"));
                                        format!("differs from `{m}`, which was kept")
                                    }
                                    None => continue, // used as the main bias below
                                };
                                dropped.push((orig.to_string(), why));
                            }
                        }
                        _ => {}
                    }
                    continue;
                }
                // Find the source tensor.
                let candidates = src_name(row, layer);
                let mut found = candidates
                    .iter()
                    .find_map(|k| input.get(k).map(|(o, t)| (k.clone(), *o, *t)));
                if found.is_none() && det.source == Source::Hf {
                    // Main MLM bias missing: take the duplicate HF name instead.
                    if let Some(next) = block.rows.get(ri + 1).filter(|r| r.op == Op::HfDuplicate) {
                        let k = names::instantiate(next.hf, layer);
                        found = input.get(&k).map(|(o, t)| (k.clone(), *o, *t));
                    }
                }
                let Some((key, orig, t)) = found else {
                    if row.op == Op::Decoder
                        && let Some((_, wname, wt)) = &word
                    {
                        // Tied decoder omitted by the writer (transformers' safetensors).
                        out.insert(dst.clone(), wt.clone());
                        tied_decoder = true;
                        notes.push(format!(
                            "`{}` absent: tied to the word embedding",
                            candidates[0]
                        ));
                        mapped.push(Mapping {
                            from: vec![wname.clone()],
                            to: dst,
                            transform: "tied to word embedding",
                        });
                        continue;
                    }
                    missing.push(candidates[0].clone());
                    continue;
                };
                used.insert(key.clone());
                let from = vec![orig.to_string()];
                let (tensor, transform): (Tensor, &'static str) = match (row.op, target) {
                    (Op::Copy, _) => (t.clone(), "copy"),
                    (op, Destination::Uer(_))
                        if op != Op::Decoder && matches!(det.source, Source::Uer(_)) =>
                    {
                        (t.clone(), "copy")
                    }
                    (Op::LnWeight, _) => match rescale {
                        None => (t.clone(), "copy"),
                        Some(to_hf) => {
                            let n = *t.shape.last().unwrap_or(&1) as f64;
                            let factor = if to_hf {
                                ((n - 1.0) / n).sqrt()
                            } else {
                                (n / (n - 1.0)).sqrt()
                            };
                            let scaled =
                                ops::scale(t, factor).ok_or_else(|| ConvertError::NotFloat {
                                    file: file.clone(),
                                    key: orig.to_string(),
                                    dtype: t.dtype,
                                })?;
                            (
                                scaled,
                                if to_hf {
                                    "LayerNorm × sqrt((n-1)/n)"
                                } else {
                                    "LayerNorm × sqrt(n/(n-1))"
                                },
                            )
                        }
                    },
                    (Op::SegmentRows, Destination::Hf) => {
                        if t.shape.len() != 2 || t.shape[0] != 3 {
                            return Err(shape_err(orig, t, "[3, H] (UER: padding + 2 segments)"));
                        }
                        let row = ops::rows(t, 0, 1);
                        let zero = row.bytes().iter().all(|&b| b == 0);
                        dropped_rows.push((
                            orig.to_string(),
                            format!(
                                "row 0, UER's padding segment ({}; HF has no padding segment, and back in UER the row is zeros)",
                                if zero { "all zeros" } else { "not zeros, though read only at padding positions" }
                            ),
                        ));
                        (ops::rows(t, 1, 3), "drop segment row 0")
                    }
                    (Op::SegmentRows, Destination::Uer(_)) => {
                        if t.shape.len() != 2 {
                            return Err(shape_err(orig, t, "[2, H]"));
                        }
                        added_rows.push((
                            dst.clone(),
                            "row 0, UER's padding segment: zeros (HF has none; UER reads it only at padding positions)".into(),
                        ));
                        (ops::prepend_zero_row(t), "insert zero segment row 0")
                    }
                    (Op::Conv1D, _) => {
                        if t.shape.len() != 2 {
                            return Err(shape_err(orig, t, "a 2-D weight"));
                        }
                        (ops::transpose(t), "transpose (Conv1D)")
                    }
                    (Op::QkvWeight(j) | Op::QkvBias(j), Destination::Hf) => {
                        let is_weight = matches!(row.op, Op::QkvWeight(_));
                        let parts = qkv_parts
                            .entry(dst.clone())
                            .or_insert_with(|| vec![None, None, None]);
                        parts[j] = Some((orig.to_string(), t.clone()));
                        if parts.iter().any(Option::is_none) {
                            continue;
                        }
                        let parts = qkv_parts.remove(&dst).unwrap_or_default();
                        let parts: Vec<(String, Tensor)> = parts.into_iter().flatten().collect();
                        let tensors: Vec<&Tensor> = parts.iter().map(|p| &p.1).collect();
                        let cat = ops::concat_rows(&tensors);
                        let from: Vec<String> = parts.iter().map(|p| p.0.clone()).collect();
                        if is_weight {
                            if cat.shape.len() != 2 {
                                return Err(shape_err(&from[0], &parts[0].1, "a 2-D weight"));
                            }
                            out.insert(dst.clone(), ops::transpose(&cat));
                            mapped.push(Mapping {
                                from,
                                to: dst,
                                transform: "concat q,k,v + transpose (Conv1D)",
                            });
                        } else {
                            out.insert(dst.clone(), cat);
                            mapped.push(Mapping {
                                from,
                                to: dst,
                                transform: "concat q,k,v",
                            });
                        }
                        continue;
                    }
                    (Op::QkvWeight(j), Destination::Uer(_)) => {
                        if t.shape.len() != 2 || !t.shape[1].is_multiple_of(3) {
                            return Err(shape_err(orig, t, "[H, 3H] (Conv1D c_attn)"));
                        }
                        let full = qkv_cache
                            .entry(key.clone())
                            .or_insert_with(|| ops::transpose(t));
                        let h = full.shape[0] / 3;
                        (
                            ops::rows(full, j * h, (j + 1) * h),
                            "transpose (Conv1D) + split q,k,v",
                        )
                    }
                    (Op::QkvBias(j), Destination::Uer(_)) => {
                        if t.shape.len() != 1 || !t.shape[0].is_multiple_of(3) {
                            return Err(shape_err(orig, t, "[3H]"));
                        }
                        let h = t.shape[0] / 3;
                        (ops::rows(t, j * h, (j + 1) * h), "split q,k,v")
                    }
                    (Op::Decoder, _) => {
                        let tied_to = word.as_ref().and_then(|(wkey, _, wt)| {
                            input
                                .get(wkey)
                                .filter(|(_, src_w)| ops::same(src_w, t))
                                .map(|_| wt.clone())
                        });
                        match tied_to {
                            Some(wt) => {
                                tied_decoder = true;
                                (wt, "copy (tied to word embedding)")
                            }
                            None => (t.clone(), "copy (untied decoder)"),
                        }
                    }
                    (Op::HfDuplicate, _) => unreachable!("handled above"),
                };
                if word.is_none() {
                    // The first row of every table is the word embedding.
                    word = Some((key.clone(), dst.clone(), tensor.clone()));
                }
                out.insert(dst.clone(), tensor);
                mapped.push(Mapping {
                    from,
                    to: dst,
                    transform,
                });
            }
        }
    }
    if let Some(first) = missing.first() {
        return Err(ConvertError::MissingKey {
            file,
            key: first.clone(),
            family,
            side: det.source,
            hint: missing_hint(ckpt, det, first),
            more: missing.len() - 1,
        });
    }
    // Every input tensor is mapped, a known buffer, or unmapped.
    let mut unmapped = collisions;
    for (key, (orig, _)) in input.iter() {
        if used.contains(key) {
            continue;
        }
        if let Some((_, why)) = names::HF_BUFFERS.iter().find(|(sfx, _)| key.ends_with(sfx)) {
            dropped.push((orig.to_string(), why.to_string()));
        } else {
            unmapped.push(orig.to_string());
        }
    }
    let order: HashMap<&str, usize> = ckpt.names().enumerate().map(|(i, n)| (n, i)).collect();
    let by_file_order = |v: &mut Vec<String>| v.sort_by_key(|n| order.get(n.as_str()).copied());
    by_file_order(&mut unmapped);
    if !unmapped.is_empty() {
        if !allow_unmapped {
            return Err(ConvertError::Unmapped {
                file,
                family,
                side: det.source,
                names: unmapped,
            });
        }
        dropped.extend(
            unmapped
                .into_iter()
                .map(|n| (n, "unmapped (--allow-unmapped)".to_string())),
        );
    }
    dropped.sort_by_key(|(n, _)| order.get(n.as_str()).copied());
    let tied = out.tied_groups();
    let report = Report {
        family,
        source: det.source,
        target,
        layers: det.layers,
        exact_layernorm: rescale.is_some(),
        mapped,
        dropped,
        dropped_rows,
        added_rows,
        tied,
        tied_decoder,
        notes,
    };
    Ok((out, report))
}

fn family_is_bert(f: Layout) -> bool {
    matches!(
        f,
        Layout::BertMlm | Layout::BertPretraining | Layout::BertClassifier | Layout::BertClsTarget
    )
}

/// A hint for a missing key: the same row under another naming, if the file has that.
fn missing_hint(ckpt: &Checkpoint, det: &Detected, key: &str) -> String {
    if let Source::Uer(n) = det.source {
        let other = match n {
            Naming::V1 => Naming::V2,
            Naming::V2 => Naming::V1,
        };
        for block in names::table(det.family) {
            for row in block.rows {
                for layer in 0..det.layers.max(1) {
                    if names::instantiate(row.uer[n.index()], layer) == key {
                        let o = names::instantiate(row.uer[other.index()], layer);
                        if ckpt.get(&o).is_some() {
                            return format!(
                                "; the file has `{o}` (naming {other}): it mixes generations"
                            );
                        }
                    }
                }
            }
        }
    }
    let close = ckpt
        .names()
        .map(|n| (strsim::jaro_winkler(n, key), n))
        .filter(|(s, _)| *s > 0.9)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match close {
        Some((_, n)) => format!("; closest key in the file: `{n}`"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests;
