//! `uerzoo convert` as one library call: read the input through [`crate::checkpoint`],
//! convert in memory, write the output (a UER `.bin`, or an HF directory via
//! [`hf_config::write_hf_dir`]). Checks the output path before doing any work, so a failed
//! run writes nothing.

use std::path::{Path, PathBuf};

use super::hf_config::{self, HfDir, Hyper, Vocab};
use super::{ArchHint, ConvertError, Naming, Report, ToHfOptions, ToUerOptions};
use crate::checkpoint::{Checkpoint, CheckpointError, CopySource, write_safetensors_from};
use crate::registry::UerConfig;

/// Which side to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum To {
    Hf,
    Uer,
}

/// Tensor file format of the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Safetensors,
    Torch,
}

/// Everything `uerzoo convert` was asked.
#[derive(Debug, Clone)]
pub struct ConvertRequest {
    /// A UER `.bin`, or an HF directory / tensor file.
    pub input: PathBuf,
    /// A directory (`--to hf`) or a file (`--to uer`).
    pub output: PathBuf,
    pub to: To,
    pub arch: Option<ArchHint>,
    /// The UER config (from `--config` or `--model`): heads, activation, ALBERT's layer count.
    pub uer_config: Option<UerConfig>,
    /// `vocab.txt` or a sentencepiece `.model` for the HF directory.
    pub vocab: Option<PathBuf>,
    /// Naming written with `--to uer`.
    pub naming: Naming,
    pub exact_layernorm: bool,
    /// Output format; default safetensors for HF, torch for UER.
    pub format: Option<FileFormat>,
    pub dry_run: bool,
    pub force: bool,
    pub allow_unmapped: bool,
    /// Floating-point dtype of the output (None: each tensor keeps its own).
    pub dtype: Option<super::FloatDType>,
    /// Copy the tensors a conversion leaves unchanged file to file (`copy_file_range`) into
    /// a safetensors output; off, they go through memory. The bytes written are the same.
    pub copy_ranges: bool,
}

/// What a run did.
#[derive(Debug)]
pub struct Outcome {
    pub report: Report,
    /// Files written (empty for a dry run).
    pub written: Vec<PathBuf>,
}

impl From<CheckpointError> for ConvertError {
    fn from(e: CheckpointError) -> Self {
        ConvertError::Checkpoint(Box::new(e))
    }
}

/// Runs one conversion.
pub fn run(req: &ConvertRequest) -> Result<Outcome, ConvertError> {
    let format = req.format.unwrap_or(match req.to {
        To::Hf => FileFormat::Safetensors,
        To::Uer => FileFormat::Torch,
    });
    let vocab = match &req.vocab {
        Some(p) => Some(Vocab::open(p, req.arch)?),
        None => input_vocab(&req.input, req.arch)?,
    };
    if !req.dry_run {
        match req.to {
            To::Hf => {
                let files = hf_config::hf_dir_files(format == FileFormat::Torch, vocab.as_ref());
                hf_config::check_output_dir(&req.output, &files, req.force)?;
            }
            To::Uer => {
                crate::output::check_not_input(&req.output, &req.input, "input")
                    .and_then(|()| crate::output::check_file(&req.output, req.force))
                    .map_err(|e| match e {
                        crate::output::OutputError::Exists { path } => {
                            ConvertError::OutputExists { path }
                        }
                        e => ConvertError::Io {
                            path: req.output.clone(),
                            source: std::io::Error::other(e.to_string()),
                        },
                    })?;
            }
        }
    }
    let ckpt = Checkpoint::open(&req.input)?;
    let source = CopySource::of(&ckpt).map(|s| match req.copy_ranges {
        true => s,
        false => s.buffered(),
    });
    let hf_input_config = read_hf_config(&req.input)?;
    let (out, mut report) = match req.to {
        To::Uer => super::to_uer(
            &ckpt,
            &ToUerOptions {
                naming: req.naming,
                exact_layernorm: req.exact_layernorm,
                allow_unmapped: req.allow_unmapped,
                arch: req.arch,
            },
        )?,
        To::Hf => super::to_hf(
            &ckpt,
            &ToHfOptions {
                exact_layernorm: req.exact_layernorm,
                allow_unmapped: req.allow_unmapped,
                arch: req.arch,
            },
        )?,
    };
    let out = match req.dtype {
        Some(d) => super::dtype::cast_checkpoint(&out, d),
        None => out,
    };
    let write_safetensors = |path: &Path, force: bool| match &source {
        Some(s) => write_safetensors_from(&out, s, path, force),
        None => out.write_safetensors(path, force),
    };
    // Every tensor against the config and the vocabulary, before anything is written (after
    // the config's own checks in the HF branch).
    let known = known_sizes(req.uer_config.as_ref(), vocab.as_ref())?;
    let check_shapes = |uer_side: &Checkpoint| {
        super::shapes::check(uer_side, &known, &req.input.display().to_string())
    };
    let mut written = Vec::new();
    match req.to {
        To::Uer => {
            check_shapes(&out)?;
            if !req.dry_run {
                match format {
                    FileFormat::Torch => out.write_torch(&req.output, req.force)?,
                    FileFormat::Safetensors => write_safetensors(&req.output, req.force)?,
                }
                written.push(req.output.clone());
            }
        }
        To::Hf => {
            let hyper = match (&req.uer_config, &hf_input_config) {
                (Some(c), _) => Hyper::from_uer_config(c),
                (None, Some(v)) => Hyper::from_hf_config(v),
                (None, None) => Hyper::default(),
            };
            let exact = report.exact_layernorm;
            let (mut config, notes) =
                hf_config::config_json(&out, &report, &hyper, vocab.as_ref(), exact)?;
            if let (Some(d), Some(map)) = (req.dtype, config.as_object_mut()) {
                map.insert("torch_dtype".into(), d.torch_name().into());
            }
            report.notes.extend(notes);
            check_shapes(&ckpt)?;
            if vocab.is_none() {
                report
                    .notes
                    .push("no --vocab: tokenizer files not written".into());
            }
            if !req.dry_run {
                let dir = HfDir {
                    dir: &req.output,
                    config: &config,
                    vocab: vocab.as_ref(),
                    torch_format: format == FileFormat::Torch,
                    force: req.force,
                };
                written = hf_config::write_hf_dir(&dir, |path| {
                    match format {
                        FileFormat::Torch => out.write_torch(path, true)?,
                        FileFormat::Safetensors => write_safetensors(path, true)?,
                    }
                    Ok(())
                })?;
            }
        }
    }
    Ok(Outcome { report, written })
}

/// The sizes the UER config and the vocabulary fix.
fn known_sizes(
    config: Option<&UerConfig>,
    vocab: Option<&Vocab>,
) -> Result<super::shapes::Known, ConvertError> {
    let mut k = super::shapes::Known::default();
    if let Some(c) = config {
        k.hidden = Some(c.hidden_size);
        k.feedforward = Some(c.feedforward_size);
        if c.factorized_embedding_parameterization {
            k.emb = Some(c.emb_size);
        }
    }
    if let Some(Vocab::WordPiece { path, .. }) = vocab {
        let text = std::fs::read_to_string(path).map_err(|e| ConvertError::Io {
            path: path.clone(),
            source: e,
        })?;
        k.vocab = Some(text.lines().count());
    }
    Ok(k)
}

/// The HF `config.json` beside an HF input, if any.
fn read_hf_config(input: &Path) -> Result<Option<serde_json::Value>, ConvertError> {
    let dir = if input.is_dir() {
        input
    } else {
        input.parent().unwrap_or(Path::new("."))
    };
    let path = dir.join("config.json");
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| ConvertError::Io {
        path: path.clone(),
        source: e,
    })?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| ConvertError::Config {
        path: path.clone(),
        message: format!("not valid JSON: {e}"),
    })?;
    // A UER config next to a UER file is not an HF config.
    Ok(v.get("model_type").is_some().then_some(v))
}

/// The tokenizer files of an HF input directory, carried over on HF → HF.
fn input_vocab(input: &Path, arch: Option<ArchHint>) -> Result<Option<Vocab>, ConvertError> {
    if !input.is_dir() {
        return Ok(None);
    }
    for name in ["vocab.txt", "spiece.model"] {
        let p = input.join(name);
        if p.is_file() {
            return Vocab::open(&p, arch).map(Some);
        }
    }
    Ok(None)
}
