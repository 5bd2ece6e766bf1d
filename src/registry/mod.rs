//! The zoo as data. Owns `registry.toml` (every published UER-py weight: names, aliases,
//! shapes, UER options, sources, sizes, checksums, scores, generation presets), the UER config
//! files under `configs/`, the vocabulary list `vocab/vocabs.toml` and the vocabularies that
//! ship in `vocab/` ([`builtin_vocab`]) — all embedded into the binary, so lookups and the
//! tokenizers of registry weights work offline from any directory.
//!
//! ```
//! use uerzoo::registry::Registry;
//! let reg = Registry::builtin();
//! let medium = reg.get("medium").unwrap();
//! assert_eq!(medium.name, "chinese_roberta_L-8_H-512");
//! assert_eq!(medium.uer_config().unwrap().layers_num, 8);
//! ```
//!
//! Adding a weight means adding a `[[model]]` table to `registry.toml` (and, for a new shape,
//! a config file under `configs/` plus its line in [`configs`]); see `docs/registry.md`.

pub mod config;
mod configs;

pub use config::{ConfigError, Parts, UerConfig};
pub use configs::{config_paths, config_text};

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::OnceLock;

/// The registry file embedded into the binary.
pub const REGISTRY_TOML: &str = include_str!("../../registry.toml");
/// The vocabulary list embedded into the binary.
pub const VOCABS_TOML: &str = include_str!("../../vocab/vocabs.toml");

/// The vocabulary files that ship in `vocab/` (those of `vocabs.toml` with a sha256), built
/// into the binary (2.3 MB), so a model the registry names needs no `--vocab`.
const BUILTIN_VOCABS: [(&str, &[u8]); 4] = [
    (
        "google_zh_vocab.txt",
        include_bytes!("../../vocab/google_zh_vocab.txt"),
    ),
    (
        "google_zh_poem_vocab.txt",
        include_bytes!("../../vocab/google_zh_poem_vocab.txt"),
    ),
    (
        "google_zh_ancient_vocab.txt",
        include_bytes!("../../vocab/google_zh_ancient_vocab.txt"),
    ),
    (
        "cluecorpussmall_spm.model",
        include_bytes!("../../vocab/cluecorpussmall_spm.model"),
    ),
];

/// The bytes of a vocabulary built into the binary, by its `vocabs.toml` file name
/// (`google_zh_vocab.txt`, `cluecorpussmall_spm.model`); `None` for one that does not ship
/// (`wikizh_word_vocab.txt`).
pub fn builtin_vocab(file: &str) -> Option<&'static [u8]> {
    BUILTIN_VOCABS
        .iter()
        .find(|(name, _)| *name == file)
        .map(|(_, bytes)| *bytes)
}

/// A group of weights that share tokenizer, architecture and usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// The 24 char-based Chinese RoBERTa miniatures (`chinese_roberta_L-*_H-*`).
    Roberta,
    /// The 5 word-based (sentencepiece) Chinese RoBERTa models.
    WordRoberta,
    /// The 6 Chinese GPT-2 models (general, distil, poem, couplet, lyric, ancient).
    Gpt2,
    /// UER-format weights of 2019–2020 (Google BERT/ALBERT, UER-pretrained BERT/GPT/LSTM).
    Legacy,
}

impl Family {
    /// Every family, in registry order.
    pub const ALL: [Family; 4] = [
        Family::Roberta,
        Family::WordRoberta,
        Family::Gpt2,
        Family::Legacy,
    ];

    /// The name used in `registry.toml` and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Roberta => "roberta",
            Family::WordRoberta => "word-roberta",
            Family::Gpt2 => "gpt2",
            Family::Legacy => "legacy",
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Family {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Family::ALL
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<_> = Family::ALL.iter().map(|f| f.as_str()).collect();
                format!("unknown family `{s}`; one of: {}", names.join(", "))
            })
    }
}

/// The network a weight needs (what `model` builds and `convert` maps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// Post-LN transformer encoder with word+position+segment embeddings (BERT, RoBERTa).
    Bert,
    /// BERT with factorized embeddings and one shared layer.
    Albert,
    /// Pre-LN causal transformer, no embedding LayerNorm, tied LM head.
    Gpt2,
    /// Post-LN causal transformer (UER's 2019 GPT encoder).
    Gpt,
    /// Recurrent LSTM encoder.
    Lstm,
}

impl Arch {
    /// The lower-case name used in `registry.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Bert => "bert",
            Arch::Albert => "albert",
            Arch::Gpt2 => "gpt2",
            Arch::Gpt => "gpt",
            Arch::Lstm => "lstm",
        }
    }

    /// Whether `uerzoo convert --to hf` maps it (the 2019 GPT and the LSTMs have no
    /// Huggingface counterpart).
    pub fn has_hf_counterpart(self) -> bool {
        matches!(self, Arch::Bert | Arch::Albert | Arch::Gpt2)
    }
}

/// The UER-py training options a weight was made with (the command-line flags of the seed's
/// commands; they override the config file, as UER-py's `load_hyperparam` does).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UerOptions {
    /// `--embedding`: `word_pos_seg`, `word_pos`, `word`.
    pub embedding: Parts,
    /// `--encoder`: `transformer`, `lstm`.
    pub encoder: String,
    /// `--mask`: `fully_visible`, `causal`.
    pub mask: String,
    /// `--target`: `mlm`, `lm`, v1 `bert` (mlm + nsp), `albert` (mlm + sop), `cls`, or a list.
    pub target: Parts,
    /// `--layernorm_positioning`: `post` or `pre`.
    pub layernorm_positioning: String,
    /// Feed-forward activation (`gelu`, `gelu_fast`, `relu`).
    pub hidden_act: String,
    /// `--remove_embedding_layernorm`.
    #[serde(default)]
    pub remove_embedding_layernorm: bool,
    /// `--tie_weights`.
    #[serde(default)]
    pub tie_weights: bool,
    /// `--factorized_embedding_parameterization` (ALBERT).
    #[serde(default)]
    pub factorized_embedding_parameterization: bool,
    /// `--parameter_sharing` (ALBERT).
    #[serde(default)]
    pub parameter_sharing: bool,
}

impl UerOptions {
    /// The options as UER-py command-line flags (`--embedding word_pos_seg … --tie_weights`).
    pub fn to_flags(&self) -> String {
        self.flags(true)
    }

    /// The flags that shape the network, without `--target` and `--tie_weights` (what
    /// UER-py's fine-tuning scripts take).
    pub fn to_model_flags(&self) -> String {
        self.flags(false)
    }

    fn flags(&self, with_target: bool) -> String {
        let mut flags = vec![
            format!("--embedding {}", self.embedding.parts().join(" ")),
            format!("--encoder {}", self.encoder),
        ];
        if self.encoder == "transformer" {
            flags.push(format!("--mask {}", self.mask));
            if self.layernorm_positioning != "post" {
                flags.push(format!(
                    "--layernorm_positioning {}",
                    self.layernorm_positioning
                ));
            }
        }
        if with_target {
            flags.push(format!("--target {}", self.target.parts().join(" ")));
        }
        let switches = [
            (
                self.remove_embedding_layernorm,
                "--remove_embedding_layernorm",
            ),
            (self.tie_weights && with_target, "--tie_weights"),
            (
                self.factorized_embedding_parameterization,
                "--factorized_embedding_parameterization",
            ),
            (self.parameter_sharing, "--parameter_sharing"),
        ];
        flags.extend(switches.iter().filter(|s| s.0).map(|s| s.1.to_string()));
        flags.join(" ")
    }
}

/// Where a weight can be downloaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Sources {
    /// The UER-format file on Weiyun (a share page; browser download, no checksum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weiyun: Option<WeiyunSource>,
    /// The Huggingface conversion in the `uer` organisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hf: Option<HfSource>,
}

/// A Weiyun share page holding the UER-format file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeiyunSource {
    /// The share page (`https://share.weiyun.com/<code>`), as the newest README gives it.
    pub url: String,
    /// A separate share page for the vocabulary (word-based Wikizh BERT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab_url: Option<String>,
    /// Earlier share pages for the same file (Weiyun links rotate).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub older_urls: Vec<String>,
}

/// A Huggingface Hub repository and the files uerzoo fetches from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HfSource {
    /// Repository id, e.g. `uer/chinese_roberta_L-2_H-128`.
    pub repo: String,
    /// Revision to fetch: `main` unless a commit is pinned.
    #[serde(default = "default_revision")]
    pub revision: String,
    /// Files to download (weights, config, tokenizer files).
    pub files: Vec<String>,
    /// The weights file among `files`.
    #[serde(default = "default_weights_file")]
    pub weights: String,
    /// Size of the weights file as the Hub page shows it (decimal units), e.g. `12.8 MB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Exact size of the weights file in bytes, where a commit diff shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// Confirmed sha256 of the weights file (only hashes confirmed on a stored page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The Hub commit (short id) that set `sha256`; a later re-push changes the hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256_commit: Option<String>,
    /// A revision holding `model.safetensors` (the SFconvertbot PR), e.g. `refs/pr/1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safetensors_revision: Option<String>,
}

fn default_revision() -> String {
    "main".into()
}

fn default_weights_file() -> String {
    "pytorch_model.bin".into()
}

impl HfSource {
    /// `https://huggingface.co/<repo>`.
    pub fn url(&self) -> String {
        format!("https://huggingface.co/{}", self.repo)
    }
}

/// One pretraining stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    /// Optimizer steps.
    pub steps: u64,
    /// Sequence length, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq_length: Option<usize>,
    /// Learning rate, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<f64>,
    /// Batch size per GPU, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
}

/// How a weight was pretrained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pretraining {
    /// Training corpus.
    pub corpus: String,
    /// Stages in order (empty when unpublished).
    #[serde(default)]
    pub stages: Vec<Stage>,
    /// Anything else the sources say (initialisation, masking, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A prompt template filled with `text`: `{text}` as it is, `{spaced}` without its white
/// space and with one space between characters (how the GPT-2 cards write prompts).
pub fn fill_template(template: &str, text: &str) -> String {
    let spaced = text
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(String::from)
        .collect::<Vec<_>>()
        .join(" ");
    template
        .replace("{spaced}", &spaced)
        .replace("{text}", text)
}

/// Generation defaults of a GPT-2 weight (from its model card).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationPreset {
    /// Prompt template: `{text}` is the user's text, `{spaced}` the same with a space between
    /// characters (as the cards write prompts). It has no `[CLS]`: the generator puts `[CLS]`
    /// first, as UER-py's generate_lm does.
    pub template: String,
    /// The card's example input (what `{text}` is filled with).
    pub example: String,
    /// The card's prompt, verbatim (e.g. `[CLS]丹 枫 江 冷 人 初 去 -`).
    pub card_prompt: String,
    /// What the prompt format means (for `info`).
    pub format: String,
    /// Default total length in tokens, prompt included (the card's `max_length`).
    pub max_length: usize,
    /// Top-k sampling [UER-py: 70].
    pub top_k: usize,
    /// Nucleus sampling threshold; 0 is off [UER-py: 0].
    pub top_p: f64,
    /// Softmax temperature [UER-py: 1.0].
    pub temperature: f64,
}

impl GenerationPreset {
    /// Fill the template with `text`.
    pub fn format_prompt(&self, text: &str) -> String {
        fill_template(&self.template, text)
    }

    /// The card's example prompt, formatted (without the `[CLS]` the generator adds).
    pub fn example_prompt(&self) -> String {
        self.format_prompt(&self.example)
    }

    /// The full prompt UER-py's generate_lm sees: `[CLS]` + the formatted text.
    pub fn uer_prompt(&self, text: &str) -> String {
        format!("[CLS]{}", self.format_prompt(text))
    }
}

/// One published weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Canonical name (the HF repo name where one exists).
    pub name: String,
    pub family: Family,
    pub arch: Arch,
    /// Other names that resolve to this entry (the HF repo id and its last part resolve too).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// One line.
    pub description: String,
    /// Encoder layers (L).
    pub layers: usize,
    /// Hidden size (H).
    pub hidden: usize,
    /// Attention heads (H/64 for the zoo's transformers; 0 for LSTMs).
    pub heads: usize,
    /// Feed-forward inner size (4H for the zoo's transformers; 0 for LSTMs).
    pub feedforward: usize,
    /// Embedding size (H, except ALBERT's 128 and the LSTMs').
    pub emb_size: usize,
    /// Position embedding rows.
    pub max_seq_length: usize,
    /// WordPiece vocabulary file name (a `vocab/vocabs.toml` entry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab: Option<String>,
    /// Sentencepiece model file name (a `vocab/vocabs.toml` entry), for word-based models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spm: Option<String>,
    /// UER config path under `configs/`.
    pub config: String,
    /// The file name of the UER-format weight, as UER-py's docs name it.
    pub uer_file: String,
    /// UER-py training options.
    pub uer: UerOptions,
    pub sources: Sources,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretraining: Option<Pretraining>,
    /// Dev-set scores from the model card, `[task, score]` pairs in the card's order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scores: Vec<(String, f64)>,
    /// GPT-2 generation defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<GenerationPreset>,
    /// Facts worth knowing (caveats, superseded hashes, card notes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Entry {
    /// The UER-py config of this weight: the config file under `configs/` with the entry's
    /// training options laid over it (as UER-py lets command-line flags override the file).
    pub fn uer_config(&self) -> Result<UerConfig, RegistryError> {
        let text = config_text(&self.config).ok_or_else(|| RegistryError::Invalid {
            name: self.name.clone(),
            reason: format!(
                "config `configs/{}` is not embedded (add it to src/registry/configs.rs)",
                self.config
            ),
        })?;
        let mut cfg = UerConfig::from_json_str(text, &format!("configs/{}", self.config)).map_err(
            |source| RegistryError::Config {
                name: self.name.clone(),
                source,
            },
        )?;
        let o = &self.uer;
        cfg.embedding = o.embedding.clone();
        cfg.encoder = o.encoder.clone();
        cfg.mask = o.mask.clone();
        cfg.target = o.target.clone();
        cfg.layernorm_positioning = o.layernorm_positioning.clone();
        cfg.hidden_act = o.hidden_act.clone();
        cfg.remove_embedding_layernorm = o.remove_embedding_layernorm;
        cfg.tie_weights = o.tie_weights;
        cfg.factorized_embedding_parameterization = o.factorized_embedding_parameterization;
        cfg.parameter_sharing = o.parameter_sharing;
        Ok(cfg)
    }

    /// The tokenizer file the weight needs: the WordPiece vocab or the sentencepiece model.
    pub fn tokenizer_file(&self) -> Option<&str> {
        self.vocab.as_deref().or(self.spm.as_deref())
    }

    /// Size for display: the Hub's size of the weights file, else `?`.
    pub fn size_display(&self) -> String {
        let hf = self.sources.hf.as_ref();
        match (
            hf.and_then(|h| h.size.clone()),
            hf.and_then(|h| h.size_bytes),
        ) {
            (Some(s), _) => s,
            (None, Some(b)) => format!("{:.1} MB", b as f64 / 1e6),
            _ => "?".into(),
        }
    }

    /// Every string that resolves to this entry: name, aliases, HF repo id and repo name.
    pub fn keys(&self) -> Vec<String> {
        let mut keys = vec![self.name.clone()];
        keys.extend(self.aliases.iter().cloned());
        if let Some(hf) = &self.sources.hf {
            keys.push(hf.repo.clone());
            if let Some((_, short)) = hf.repo.split_once('/') {
                keys.push(short.to_string());
            }
        }
        let mut seen = std::collections::HashSet::new();
        keys.retain(|k| seen.insert(k.to_lowercase()));
        keys
    }
}

/// A vocabulary or sentencepiece model the registry names (`vocab/vocabs.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VocabInfo {
    /// File name, as entries name it (`google_zh_vocab.txt`).
    pub file: String,
    /// `wordpiece` (one token per line) or `sentencepiece` (a `.model`).
    pub kind: String,
    /// Number of tokens (lines, or sentencepiece pieces), where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<usize>,
    /// Size in bytes, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// sha256 of the file, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Where the file comes from (UER-py's `models/` folder at a commit).
    pub source: String,
    /// The name the Huggingface repos give it (`vocab.txt`, `spiece.model`).
    pub hf_file: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Usage text shared by a family (`registry.toml` `[[family]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FamilyInfo {
    pub name: Family,
    /// Title for listings.
    pub title: String,
    /// A paragraph.
    pub description: String,
    /// uerzoo commands; placeholders `{name}`, `{uer_file}`, `{config}`.
    #[serde(default)]
    pub usage: Vec<Command>,
    /// The seed's UER-py commands; placeholders as above plus `{vocab_opt}`, `{uer_opts}`,
    /// `{model_opts}`.
    #[serde(default)]
    pub uer_py: Vec<Command>,
}

/// One documented command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// What it does.
    pub what: String,
    /// The command line, with placeholders.
    pub command: String,
}

impl Command {
    /// The command with the entry's placeholders filled in.
    pub fn render(&self, entry: &Entry) -> String {
        let vocab_opt = match (&entry.vocab, &entry.spm) {
            (Some(v), _) => format!("--vocab_path models/{v}"),
            (None, Some(s)) => format!("--spm_model_path models/{s}"),
            _ => String::new(),
        };
        self.command
            .replace("{name}", &entry.name)
            .replace("{uer_file}", &entry.uer_file)
            .replace("{config}", &entry.config)
            .replace("{vocab_opt}", &vocab_opt)
            .replace("{uer_opts}", &entry.uer.to_flags())
            .replace("{model_opts}", &entry.uer.to_model_flags())
    }
}

#[derive(Deserialize)]
struct RegistryFile {
    #[serde(default)]
    family: Vec<FamilyInfo>,
    #[serde(default)]
    model: Vec<Entry>,
}

#[derive(Deserialize)]
struct VocabFile {
    #[serde(default)]
    vocab: Vec<VocabInfo>,
}

/// A registry lookup or load failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("no weight named `{name}`{} (`uerzoo list` shows every weight)", did_you_mean(.suggestions))]
    Unknown {
        name: String,
        /// Closest names, best first.
        suggestions: Vec<String>,
    },
    #[error("parsing `{origin}`: {source}")]
    Parse {
        origin: String,
        #[source]
        source: toml::de::Error,
    },
    #[error(
        "`registry.toml`: `{key}` names both `{first}` and `{second}`; names and aliases must be unique"
    )]
    Duplicate {
        key: String,
        first: String,
        second: String,
    },
    #[error("`registry.toml` entry `{name}`: {reason}")]
    Invalid { name: String, reason: String },
    #[error("`registry.toml` entry `{name}`: {source}")]
    Config {
        name: String,
        #[source]
        source: ConfigError,
    },
}

fn did_you_mean(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        String::new()
    } else {
        let quoted: Vec<String> = suggestions.iter().map(|s| format!("`{s}`")).collect();
        format!("; did you mean {}?", quoted.join(", "))
    }
}

/// Filters for [`Registry::filter`]; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub family: Option<Family>,
    pub layers: Option<usize>,
    pub hidden: Option<usize>,
}

/// The zoo: entries, family usage texts and vocabularies, indexed by every name and alias.
#[derive(Debug, Clone)]
pub struct Registry {
    families: Vec<FamilyInfo>,
    entries: Vec<Entry>,
    vocabs: Vec<VocabInfo>,
    /// Lower-cased name / alias / HF repo → index into `entries`.
    index: HashMap<String, usize>,
}

impl Registry {
    /// The registry embedded into the binary (`registry.toml`, `vocab/vocabs.toml`).
    pub fn builtin() -> &'static Registry {
        static BUILTIN: OnceLock<Registry> = OnceLock::new();
        BUILTIN.get_or_init(|| {
            // The embedded files are checked by tests/registry.rs; a failure here is a build
            // of a broken registry.toml, not bad user input.
            Registry::from_toml_str(REGISTRY_TOML, VOCABS_TOML)
                .unwrap_or_else(|e| panic!("embedded registry.toml is invalid: {e}"))
        })
    }

    /// Load a registry from the text of `registry.toml` and `vocab/vocabs.toml`, checking that
    /// names and aliases are unique and that every entry's config and vocabulary are known.
    pub fn from_toml_str(registry: &str, vocabs: &str) -> Result<Registry, RegistryError> {
        let file: RegistryFile =
            toml::from_str(registry).map_err(|source| RegistryError::Parse {
                origin: "registry.toml".into(),
                source,
            })?;
        let vocab_file: VocabFile =
            toml::from_str(vocabs).map_err(|source| RegistryError::Parse {
                origin: "vocab/vocabs.toml".into(),
                source,
            })?;
        let mut index = HashMap::new();
        for (i, entry) in file.model.iter().enumerate() {
            for key in entry.keys() {
                if let Some(&j) = index.get(&key.to_lowercase()) {
                    let first: &Entry = &file.model[j];
                    return Err(RegistryError::Duplicate {
                        key,
                        first: first.name.clone(),
                        second: entry.name.clone(),
                    });
                }
                index.insert(key.to_lowercase(), i);
            }
        }
        let reg = Registry {
            families: file.family,
            entries: file.model,
            vocabs: vocab_file.vocab,
            index,
        };
        for entry in &reg.entries {
            reg.check(entry)?;
        }
        Ok(reg)
    }

    fn check(&self, entry: &Entry) -> Result<(), RegistryError> {
        let invalid = |reason: String| RegistryError::Invalid {
            name: entry.name.clone(),
            reason,
        };
        match entry.tokenizer_file() {
            None => return Err(invalid("neither `vocab` nor `spm` is set".into())),
            Some(file) if self.vocab(file).is_none() => {
                return Err(invalid(format!(
                    "vocabulary `{file}` is not in vocab/vocabs.toml"
                )));
            }
            Some(_) => {}
        }
        if config_text(&entry.config).is_none() {
            return Err(invalid(format!(
                "config `configs/{}` is not embedded (add it to src/registry/configs.rs)",
                entry.config
            )));
        }
        if entry.sources.weiyun.is_none() && entry.sources.hf.is_none() {
            return Err(invalid("no sources".into()));
        }
        Ok(())
    }

    /// Every entry, in registry order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Family usage texts.
    pub fn families(&self) -> &[FamilyInfo] {
        &self.families
    }

    /// The usage text of a family.
    pub fn family(&self, family: Family) -> Option<&FamilyInfo> {
        self.families.iter().find(|f| f.name == family)
    }

    /// Every vocabulary the registry names.
    pub fn vocabs(&self) -> &[VocabInfo] {
        &self.vocabs
    }

    /// A vocabulary by file name.
    pub fn vocab(&self, file: &str) -> Option<&VocabInfo> {
        self.vocabs.iter().find(|v| v.file == file)
    }

    /// The entry whose weights a Huggingface cache repo holds: `uer/<repo>` (a download,
    /// by the entry's HF repo id) or `uerzoo/<name>` (an import, [`crate::hub::local_repo_id`]).
    pub fn by_cache_repo(&self, repo_id: &str) -> Option<&Entry> {
        if let Some(name) = repo_id.strip_prefix("uerzoo/") {
            return self.get(name).ok();
        }
        let entry = self.get(repo_id).ok()?;
        let hf = entry.sources.hf.as_ref()?;
        hf.repo.eq_ignore_ascii_case(repo_id).then_some(entry)
    }

    /// Look a weight up by name, alias, HF repo id (`uer/gpt2-chinese-couplet`) or HF repo
    /// name (`gpt2-chinese-couplet`), case-insensitively. Unknown names get the closest
    /// names as suggestions.
    pub fn get(&self, name: &str) -> Result<&Entry, RegistryError> {
        let key = name.trim().to_lowercase();
        match self.index.get(&key) {
            Some(&i) => Ok(&self.entries[i]),
            None => Err(RegistryError::Unknown {
                name: name.to_string(),
                suggestions: self.suggest(&key, 5),
            }),
        }
    }

    /// Up to `max` entry names closest to `query` (by any of their keys).
    pub fn suggest(&self, query: &str, max: usize) -> Vec<String> {
        let query = query.to_lowercase();
        let mut scored: Vec<(f64, usize)> = Vec::new();
        for (i, entry) in self.entries.iter().enumerate() {
            let best = entry
                .keys()
                .iter()
                .map(|k| similarity(&query, &k.to_lowercase()))
                .fold(0.0, f64::max);
            if best >= SUGGEST_THRESHOLD {
                scored.push((best, i));
            }
        }
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored
            .into_iter()
            .take(max)
            .map(|(_, i)| self.entries[i].name.clone())
            .collect()
    }

    /// Entries matching every set field of `filter`, in registry order.
    pub fn filter(&self, filter: &Filter) -> Vec<&Entry> {
        self.entries
            .iter()
            .filter(|e| filter.family.is_none_or(|f| e.family == f))
            .filter(|e| filter.layers.is_none_or(|l| e.layers == l))
            .filter(|e| filter.hidden.is_none_or(|h| e.hidden == h))
            .collect()
    }
}

/// Similarity below which a name is not suggested.
const SUGGEST_THRESHOLD: f64 = 0.75;

/// Similarity of a query to a key in [0, 1]: containment counts as close, otherwise
/// Jaro-Winkler (which favours a shared prefix, as in `gpt2-couplet` → `gpt2-chinese-couplet`).
fn similarity(query: &str, key: &str) -> f64 {
    let contained =
        query.len() >= 3 && (key.contains(query) || query.contains(key) && key.len() >= 4);
    let containment: f64 = if contained { 0.9 } else { 0.0 };
    let jw = strsim::jaro_winkler(query, key);
    let lev = strsim::normalized_levenshtein(query, key);
    containment.max(jw).max(lev)
}

#[cfg(test)]
mod builtin_vocab_tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn every_vocabulary_with_a_checksum_is_built_in_and_matches_it() {
        let reg = Registry::builtin();
        let mut shipped = 0;
        for info in reg.vocabs() {
            let Some(sha) = &info.sha256 else {
                assert!(builtin_vocab(&info.file).is_none(), "{}", info.file);
                continue;
            };
            let bytes = builtin_vocab(&info.file)
                .unwrap_or_else(|| panic!("{} has a sha256 but is not built in", info.file));
            assert_eq!(Some(bytes.len() as u64), info.size_bytes, "{}", info.file);
            assert_eq!(&hex::encode(Sha256::digest(bytes)), sha, "{}", info.file);
            shipped += 1;
        }
        assert_eq!(shipped, BUILTIN_VOCABS.len());
    }

    #[test]
    fn cache_repos_name_their_entries() {
        let reg = Registry::builtin();
        let couplet = reg.by_cache_repo("uer/gpt2-chinese-couplet").unwrap();
        assert_eq!(couplet.vocab.as_deref(), Some("google_zh_vocab.txt"));
        let imported = reg.by_cache_repo("uerzoo/mixed_corpus_bert_tiny").unwrap();
        assert_eq!(imported.name, "mixed_corpus_bert_tiny");
        // An alias is not a repo id; another organisation's repo is not the entry's.
        assert!(reg.by_cache_repo("tiny").is_none());
        assert!(reg.by_cache_repo("someone/gpt2-chinese-couplet").is_none());
        assert!(reg.by_cache_repo("uer/no-such-model").is_none());
    }
}
