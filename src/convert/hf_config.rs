//! The non-tensor files of a Huggingface model directory: `config.json` (architecture,
//! dimensions read from the converted tensors, heads/activation from the UER config),
//! `tokenizer_config.json`, `special_tokens_map.json`, and the vocabulary (`vocab.txt` or the
//! word models' `spiece.model`), so that transformers' `AutoModel…`/`AutoTokenizer` load the
//! directory unmodified. [`write_hf_dir`] is the only place this module touches disk, and it
//! writes every file to a temporary name in the target directory first, then renames.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::names::HF_SIZE_KEYS;
use super::{ArchHint, ConvertError, Layout, Report};
use crate::checkpoint::Checkpoint;

/// The hyper-parameters that are not in the weights, from a UER config / registry entry /
/// HF config.json. All optional: missing ones get family defaults (with a note).
#[derive(Debug, Clone, Default)]
pub struct Hyper {
    /// Attention heads (UER `heads_num`, HF `num_attention_heads`/`n_head`).
    pub heads: Option<usize>,
    /// Activation in UER spelling (`gelu`, `gelu_fast`, `relu`, …).
    pub hidden_act: Option<String>,
    /// Layer count (needed for ALBERT, whose one layer is shared).
    pub layers: Option<usize>,
    /// Dropout probability.
    pub dropout: Option<f64>,
}

impl Hyper {
    /// From UER-py's model config (`--config`, or a registry entry's).
    pub fn from_uer_config(c: &crate::registry::UerConfig) -> Hyper {
        Hyper {
            heads: Some(c.heads_num),
            hidden_act: Some(c.hidden_act.clone()),
            layers: Some(c.layers_num),
            dropout: Some(c.dropout),
        }
    }

    /// From an HF `config.json`.
    pub fn from_hf_config(v: &Value) -> Hyper {
        let get_u = |ks: &[&str]| {
            ks.iter()
                .find_map(|k| v.get(*k).and_then(Value::as_u64))
                .map(|x| x as usize)
        };
        let act = ["hidden_act", "activation_function"]
            .iter()
            .find_map(|k| v.get(*k).and_then(Value::as_str));
        Hyper {
            heads: get_u(&["num_attention_heads", "n_head"]),
            hidden_act: act.map(|a| {
                ACTIVATIONS
                    .iter()
                    .find(|(_, hf)| *hf == a)
                    .map_or(a, |(uer, _)| uer)
                    .to_string()
            }),
            layers: get_u(&["num_hidden_layers", "n_layer"]),
            dropout: ["hidden_dropout_prob", "resid_pdrop"]
                .iter()
                .find_map(|k| v.get(*k).and_then(Value::as_f64)),
        }
    }
}

/// Activation names: UER ⇄ transformers.
const ACTIVATIONS: &[(&str, &str)] = &[
    ("gelu", "gelu"),
    ("gelu_fast", "gelu_new"),
    ("relu", "relu"),
    ("silu", "silu"),
];

/// UER's LayerNorm eps (added to the std, see FACTS §3).
const UER_LAYER_NORM_EPS: f64 = 1e-6;
/// The eps written with `--exact-layernorm` (FACTS §3: eps inside the sqrt must be tiny).
const EXACT_LAYER_NORM_EPS: f64 = 1e-12;

/// The tokenizer files to write.
#[derive(Debug, Clone)]
pub enum Vocab {
    /// A BERT WordPiece `vocab.txt`: its path and the ids of the special tokens found.
    WordPiece {
        path: PathBuf,
        cls: Option<usize>,
        sep: Option<usize>,
    },
    /// A sentencepiece model (word-based RoBERTa), written as `spiece.model`.
    SentencePiece { path: PathBuf },
}

impl Vocab {
    /// Reads which kind `path` is (`.model` = sentencepiece) and the special-token ids.
    pub fn open(path: &Path, arch: Option<ArchHint>) -> Result<Vocab, ConvertError> {
        let is_spm =
            path.extension().is_some_and(|e| e == "model") || arch == Some(ArchHint::WordRoberta);
        if is_spm {
            if !path.is_file() {
                return Err(ConvertError::Config {
                    path: path.into(),
                    message: "no such sentencepiece model".into(),
                });
            }
            return Ok(Vocab::SentencePiece { path: path.into() });
        }
        let text = std::fs::read_to_string(path).map_err(|e| ConvertError::Config {
            path: path.into(),
            message: format!("cannot read the vocabulary: {e}"),
        })?;
        let id = |tok: &str| {
            text.lines()
                .position(|l| l.split_whitespace().next() == Some(tok))
        };
        Ok(Vocab::WordPiece {
            path: path.into(),
            cls: id("[CLS]"),
            sep: id("[SEP]"),
        })
    }
}

fn shape_of<'a>(ckpt: &'a Checkpoint, key: &str) -> Result<&'a [usize], ConvertError> {
    ckpt.get(key)
        .map(|t| t.shape.as_slice())
        .ok_or_else(|| ConvertError::Config {
            path: PathBuf::from("<converted checkpoint>"),
            message: format!("no `{key}` to read the dimensions from"),
        })
}

/// `config.json` for the converted checkpoint `hf` (Huggingface names). Returns the JSON and
/// notes for the summary (defaults taken, ids changed).
pub fn config_json(
    hf: &Checkpoint,
    report: &Report,
    hyper: &Hyper,
    vocab: Option<&Vocab>,
    exact_layernorm: bool,
) -> Result<(Value, Vec<String>), ConvertError> {
    let family = report.family;
    let mut notes = Vec::new();
    let keys = match family {
        Layout::Gpt2 | Layout::Gpt2Classifier => &HF_SIZE_KEYS.gpt2,
        Layout::Albert | Layout::AlbertClassifier => &HF_SIZE_KEYS.albert,
        _ => &HF_SIZE_KEYS.bert,
    };
    let (word_key, hidden_key, ffn_key, pos_key) = (keys.word, keys.projection, keys.ffn, keys.pos);
    let word = shape_of(hf, word_key)?;
    let (vocab_size, emb) = (word[0], word[1]);
    let hidden = match hidden_key {
        Some(k) => shape_of(hf, k)?[0],
        None => emb,
    };
    let ffn = shape_of(hf, ffn_key)?;
    let intermediate = if family.is_gpt2() { ffn[1] } else { ffn[0] };
    let positions = shape_of(hf, pos_key)?[0];
    let layers = match family {
        Layout::Albert | Layout::AlbertClassifier => hyper.layers.ok_or_else(|| ConvertError::Config {
            path: "<config>".into(),
            message: "ALBERT shares one layer, so the layer count is not in the weights; pass --config UER_CONFIG.json or --model NAME".into(),
        })?,
        _ => report.layers,
    };
    let heads = match hyper.heads {
        Some(h) => h,
        None => {
            let h = (hidden / 64).max(1);
            notes.push(format!(
                "attention heads are not in the weights and no config was given: assumed hidden/64 = {h}; pass --config or --model if that is wrong"
            ));
            h
        }
    };
    if heads == 0 || !hidden.is_multiple_of(heads) {
        return Err(ConvertError::Heads {
            what: "config".into(),
            heads,
            hidden,
        });
    }
    let default_act = match family {
        Layout::Gpt2 | Layout::Gpt2Classifier => "gelu_fast",
        Layout::Albert | Layout::AlbertClassifier => "relu",
        _ => "gelu",
    };
    let act_uer = hyper.hidden_act.clone().unwrap_or_else(|| {
        notes.push(format!(
            "no activation in the config: used the {family} default `{default_act}`"
        ));
        default_act.to_string()
    });
    let act = ACTIVATIONS
        .iter()
        .find(|(u, _)| *u == act_uer)
        .map_or(act_uer.as_str(), |(_, hf)| hf);
    let dropout = hyper.dropout.unwrap_or(0.1);
    let eps = if exact_layernorm {
        EXACT_LAYER_NORM_EPS
    } else {
        UER_LAYER_NORM_EPS
    };
    let tied = report.tied_decoder;
    let (cls, sep) = match vocab {
        Some(Vocab::WordPiece { cls, sep, .. }) => (*cls, *sep),
        _ => (None, None),
    };
    let mut cfg = match family {
        Layout::Gpt2 | Layout::Gpt2Classifier => {
            let (bos, eos) = (cls.unwrap_or(101), sep.unwrap_or(102));
            notes.push(format!(
                "GPT-2 bos/eos set to [CLS] {bos} / [SEP] {eos} (the published configs' 50256 is outside the vocabulary)"
            ));
            json!({
                "architectures": [family.hf_architecture()],
                "model_type": "gpt2",
                "activation_function": act,
                "attn_pdrop": dropout,
                "embd_pdrop": dropout,
                "resid_pdrop": dropout,
                "bos_token_id": bos,
                "eos_token_id": eos,
                "initializer_range": 0.02,
                "layer_norm_epsilon": eps,
                "n_ctx": positions,
                "n_embd": hidden,
                "n_head": heads,
                "n_inner": intermediate,
                "n_layer": layers,
                "n_positions": positions,
                "tie_word_embeddings": tied,
                "tokenizer_class": "BertTokenizer",
                "vocab_size": vocab_size,
            })
        }
        Layout::Albert | Layout::AlbertClassifier => json!({
            "architectures": [family.hf_architecture()],
            "model_type": "albert",
            "attention_probs_dropout_prob": dropout,
            "hidden_dropout_prob": dropout,
            "classifier_dropout_prob": 0.1,
            "embedding_size": emb,
            "hidden_act": act,
            "hidden_size": hidden,
            "initializer_range": 0.02,
            "inner_group_num": 1,
            "intermediate_size": intermediate,
            "layer_norm_eps": eps,
            "max_position_embeddings": positions,
            "num_attention_heads": heads,
            "num_hidden_groups": 1,
            "num_hidden_layers": layers,
            "pad_token_id": 0,
            "bos_token_id": cls.unwrap_or(2),
            "eos_token_id": sep.unwrap_or(3),
            "tie_word_embeddings": tied,
            "type_vocab_size": 2,
            "vocab_size": vocab_size,
        }),
        _ => json!({
            "architectures": [family.hf_architecture()],
            "model_type": "bert",
            "attention_probs_dropout_prob": dropout,
            "hidden_dropout_prob": dropout,
            "hidden_act": act,
            "hidden_size": hidden,
            "initializer_range": 0.02,
            "intermediate_size": intermediate,
            "layer_norm_eps": eps,
            "max_position_embeddings": positions,
            "num_attention_heads": heads,
            "num_hidden_layers": layers,
            "pad_token_id": 0,
            "position_embedding_type": "absolute",
            "tie_word_embeddings": tied,
            "type_vocab_size": 2,
            "vocab_size": vocab_size,
        }),
    };
    if family.is_classifier() {
        let labels = shape_of(hf, HF_SIZE_KEYS.classifier)?[0];
        let id2label: serde_json::Map<String, Value> = (0..labels)
            .map(|i| (i.to_string(), json!(format!("LABEL_{i}"))))
            .collect();
        let label2id: serde_json::Map<String, Value> = (0..labels)
            .map(|i| (format!("LABEL_{i}"), json!(i)))
            .collect();
        cfg["id2label"] = Value::Object(id2label);
        cfg["label2id"] = Value::Object(label2id);
    }
    Ok((cfg, notes))
}

/// The special tokens every zoo tokenizer uses (UER `models/special_tokens_map.json`).
fn special_tokens_map() -> Value {
    json!({
        "unk_token": "[UNK]",
        "sep_token": "[SEP]",
        "pad_token": "[PAD]",
        "cls_token": "[CLS]",
        "mask_token": "[MASK]",
    })
}

/// `tokenizer_config.json` for `vocab`.
fn tokenizer_config(vocab: &Vocab, max_len: usize) -> Value {
    let mut cfg = match vocab {
        Vocab::WordPiece { .. } => json!({
            "tokenizer_class": "BertTokenizer",
            "do_lower_case": true,
            "tokenize_chinese_chars": true,
        }),
        // UER's word models do not lower-case (FACTS §6).
        Vocab::SentencePiece { .. } => json!({
            "tokenizer_class": "AlbertTokenizer",
            "do_lower_case": false,
            "keep_accents": true,
            "remove_space": true,
        }),
    };
    for (k, v) in special_tokens_map().as_object().into_iter().flatten() {
        cfg[k] = v.clone();
    }
    cfg["model_max_length"] = json!(max_len);
    cfg
}

/// What [`write_hf_dir`] writes.
pub struct HfDir<'a> {
    pub dir: &'a Path,
    pub config: &'a Value,
    pub vocab: Option<&'a Vocab>,
    /// `pytorch_model.bin` instead of `model.safetensors`.
    pub torch_format: bool,
    /// Overwrite files already there.
    pub force: bool,
}

/// The file names an HF directory will get, weights first.
pub fn hf_dir_files(torch_format: bool, vocab: Option<&Vocab>) -> Vec<&'static str> {
    let mut files = vec![
        if torch_format {
            "pytorch_model.bin"
        } else {
            "model.safetensors"
        },
        "config.json",
    ];
    match vocab {
        Some(Vocab::WordPiece { .. }) => files.push("vocab.txt"),
        Some(Vocab::SentencePiece { .. }) => files.push("spiece.model"),
        None => {}
    }
    if vocab.is_some() {
        files.extend(["tokenizer_config.json", "special_tokens_map.json"]);
    }
    files
}

/// Fails with [`ConvertError::OutputExists`] if `dir` exists and is not empty (a file, or a
/// directory with any of the files to write) and `force` is off.
pub fn check_output_dir(dir: &Path, files: &[&str], force: bool) -> Result<(), ConvertError> {
    if force {
        return Ok(());
    }
    if dir.is_file() {
        return Err(ConvertError::OutputExists { path: dir.into() });
    }
    if let Some(f) = files.iter().map(|f| dir.join(f)).find(|p| p.exists()) {
        return Err(ConvertError::OutputExists { path: f });
    }
    Ok(())
}

/// Writes `path` through a temporary file in the same directory.
pub(crate) fn write_atomic(
    path: &Path,
    write: impl FnOnce(&Path) -> std::io::Result<()>,
) -> Result<(), ConvertError> {
    let io = |e| ConvertError::Io {
        path: path.into(),
        source: e,
    };
    let tmp = crate::output::Partial::new_in(crate::output::parent_dir(path)).map_err(io)?;
    write(tmp.path()).map_err(io)?;
    tmp.persist(path, true).map_err(|e| io(e.into()))?;
    Ok(())
}

/// Writes the model directory: weights, config and tokenizer files, each atomically.
/// `write_weights(path)` writes the tensor file atomically (the checkpoint module's writer).
pub fn write_hf_dir(
    out: &HfDir<'_>,
    write_weights: impl FnOnce(&Path) -> Result<(), ConvertError>,
) -> Result<Vec<PathBuf>, ConvertError> {
    let files = hf_dir_files(out.torch_format, out.vocab);
    check_output_dir(out.dir, &files, out.force)?;
    let created = !out.dir.exists();
    std::fs::create_dir_all(out.dir).map_err(|e| ConvertError::Io {
        path: out.dir.into(),
        source: e,
    })?;
    let mut written = Vec::new();
    match write_hf_files(out, &files, write_weights, &mut written) {
        Ok(()) => Ok(written),
        Err(e) => {
            // A failed write (a full disk, a file-size limit) leaves no part of the model
            // under its final names: a folder with weights but no config would open as a
            // model. The folder goes too when this call made it.
            for p in &written {
                let _ = std::fs::remove_file(p);
            }
            if created {
                let _ = std::fs::remove_dir(out.dir);
            }
            Err(e)
        }
    }
}

/// The files of [`write_hf_dir`], each pushed to `written` once it is in place.
fn write_hf_files(
    out: &HfDir<'_>,
    files: &[&str],
    write_weights: impl FnOnce(&Path) -> Result<(), ConvertError>,
    written: &mut Vec<PathBuf>,
) -> Result<(), ConvertError> {
    let path = out.dir.join(files[0]);
    write_weights(&path)?;
    written.push(path);
    let json_file = |v: &Value| {
        let mut s = serde_json::to_string_pretty(v).expect("JSON values serialize");
        s.push('\n');
        s
    };
    let path = out.dir.join("config.json");
    let cfg = json_file(out.config);
    write_atomic(&path, |p| std::fs::write(p, &cfg))?;
    written.push(path);
    if let Some(vocab) = out.vocab {
        let (src, name) = match vocab {
            Vocab::WordPiece { path, .. } => (path, "vocab.txt"),
            Vocab::SentencePiece { path } => (path, "spiece.model"),
        };
        let path = out.dir.join(name);
        write_atomic(&path, |p| std::fs::copy(src, p).map(|_| ()))?;
        written.push(path);
        let max_len = out
            .config
            .get("max_position_embeddings")
            .or_else(|| out.config.get("n_positions"))
            .and_then(Value::as_u64)
            .unwrap_or(512) as usize;
        for (name, v) in [
            ("tokenizer_config.json", tokenizer_config(vocab, max_len)),
            ("special_tokens_map.json", special_tokens_map()),
        ] {
            let path = out.dir.join(name);
            let text = json_file(&v);
            write_atomic(&path, |p| std::fs::write(p, &text))?;
            written.push(path);
        }
    }
    Ok(())
}
