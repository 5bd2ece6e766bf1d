//! `uerzoo convert`: convert a checkpoint between UER (naming v1/v2) and Huggingface.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use uerzoo::convert::{self, ArchHint, ConvertRequest, FileFormat, Naming, To};
use uerzoo::registry::{Registry, UerConfig};

/// Convert a checkpoint between UER-py and Huggingface, exactly.
///
/// Families: BERT/RoBERTa (MLM, MLM+NSP, fine-tuned classifiers), word-based RoBERTa,
/// GPT-2, ALBERT. UER naming generations v1 (2019–2022, the zoo weights) and v2 (2023+) are
/// detected from the keys; `--to uer` writes `--uer-naming` (UER → UER migrates between
/// generations). Every run ends with a summary; no tensor or row is dropped silently.
///
/// Example:
///   uerzoo convert uer_model.bin out/ --to hf --config uer_config.json --vocab vocab.txt
///   uerzoo convert out/ back.bin --to uer --uer-naming v1
#[derive(clap::Args)]
pub struct Args {
    /// A UER `.bin`, or a Huggingface directory (model.safetensors or pytorch_model.bin + config.json).
    input: PathBuf,
    /// A directory for `--to hf`, a file for `--to uer`.
    output: PathBuf,
    /// Target side.
    #[arg(long, value_parser = ["hf", "uer"])]
    to: String,
    /// Architecture (narrows detection; word-roberta writes sentencepiece tokenizer files).
    #[arg(long, default_value = "auto", value_parser = ["auto", "bert", "roberta", "word-roberta", "gpt2", "gpt", "albert"])]
    arch: String,
    /// UER model config JSON (heads, activation, ALBERT's layer count). Default for a UER
    /// file: its own `FILE.uer_config.json`, else `uer_config.json` beside it (as `finetune`,
    /// `pretrain` and `download --format uer` write them).
    #[arg(long, conflicts_with = "model")]
    config: Option<PathBuf>,
    /// Take the config from this registry entry (see `uerzoo list`).
    #[arg(long)]
    model: Option<String>,
    /// vocab.txt (or a sentencepiece .model) to ship in the HF directory. Default for a
    /// file: its own `FILE.vocab.txt`/`FILE.spiece.model`, else `vocab.txt`/`spiece.model`
    /// beside it.
    #[arg(long)]
    vocab: Option<PathBuf>,
    /// UER naming generation to write with `--to uer` (v1, the zoo's and UER-py ≤2022's, is
    /// every command's default; v2 for UER-py 2023+).
    #[arg(long, default_value = "v1", value_parser = ["v1", "v2"])]
    uer_naming: String,
    /// Rescale LayerNorm weights so the target's LayerNorm reproduces the source's outputs.
    #[arg(long)]
    exact_layernorm: bool,
    /// Tensor file format (default: safetensors for HF, bin for UER).
    #[arg(long, value_parser = ["safetensors", "bin"])]
    format: Option<String>,
    /// Print the mapping without writing anything.
    #[arg(long)]
    dry_run: bool,
    /// Overwrite existing output files.
    #[arg(long)]
    force: bool,
    /// Drop input tensors no table knows (listed) instead of failing.
    #[arg(long)]
    allow_unmapped: bool,
    /// Write every float tensor as f32, f16 or bf16 (default: each keeps its dtype). f16/bf16
    /// halve the files (round to nearest even; integer tensors untouched; HF `torch_dtype`
    /// says so). `forward` on them: hidden states within 1e-2 (f16) and 6e-2 (bf16) of f32's
    /// on the roberta_v1 fixture.
    #[arg(long, value_parser = ["f32", "f16", "bf16"])]
    dtype: Option<String>,
    /// Write unchanged tensors through memory instead of copying them file to file.
    #[arg(long, hide = true)]
    no_copy_ranges: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    // The companions read without being named, said in the summary.
    let mut used: Vec<String> = Vec::new();
    let found = match (&a.config, &a.model) {
        (None, None) => convert::beside::config_beside(&a.input)?,
        _ => None,
    };
    let config_file = a.config.clone().or_else(|| found.clone());
    let uer_config = match (&a.config, &a.model) {
        (Some(p), _) => Some(
            UerConfig::from_file(p).with_context(|| format!("reading --config {}", p.display()))?,
        ),
        (None, None) if found.is_some() => {
            let p = found.as_deref().unwrap_or(&a.input);
            let c = UerConfig::from_file(p).with_context(|| {
                format!(
                    "reading the UER config {} found beside {} (fix it, or pass --config UER_CONFIG.json or --model NAME)",
                    p.display(),
                    a.input.display()
                )
            })?;
            used.push(format!(
                "using the UER config {} (beside {}; --config overrides)",
                p.display(),
                a.input.display()
            ));
            Some(c)
        }
        (None, Some(m)) => Some(Registry::builtin().get(m)?.uer_config()?),
        (None, None) => None,
    };
    let vocab = match &a.vocab {
        Some(v) => Some(v.clone()),
        None => convert::beside::vocab_beside(&a.input).inspect(|v| {
            used.push(format!(
                "using the vocabulary {} (beside {}; --vocab overrides)",
                v.display(),
                a.input.display()
            ))
        }),
    };
    let req = ConvertRequest {
        input: a.input,
        output: a.output,
        to: if a.to == "hf" { To::Hf } else { To::Uer },
        arch: (a.arch != "auto")
            .then(|| a.arch.parse::<ArchHint>())
            .transpose()
            .map_err(anyhow::Error::msg)?,
        uer_config,
        vocab,
        naming: a.uer_naming.parse::<Naming>().map_err(anyhow::Error::msg)?,
        exact_layernorm: a.exact_layernorm,
        format: a.format.map(|f| {
            if f == "bin" {
                FileFormat::Torch
            } else {
                FileFormat::Safetensors
            }
        }),
        dry_run: a.dry_run,
        force: a.force,
        allow_unmapped: a.allow_unmapped,
        dtype: a
            .dtype
            .map(|d| d.parse())
            .transpose()
            .map_err(anyhow::Error::msg)?,
        copy_ranges: !a.no_copy_ranges,
    };
    let mut out = convert::run(&req).with_context(|| match used.is_empty() {
        true => format!("converting {}", req.input.display()),
        false => format!("converting {} ({})", req.input.display(), used.join("; ")),
    })?;
    out.report.notes.splice(0..0, used);
    if req.dry_run {
        for m in &out.report.mapped {
            println!("{} -> {}  [{}]", m.from.join(" + "), m.to, m.transform);
        }
        println!("(dry run: nothing written)");
    }
    print!("{}", out.report);
    for p in &out.written {
        println!("wrote {}", p.display());
    }
    if req.to == To::Uer && !req.dry_run {
        uer_companions(&req, config_file)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `--to uer` writes the config and vocabulary beside the `.bin`, so that every command
/// opens it by its path alone: the `--config` file (or the `--model` entry's config), else
/// the input's own `uer_config.json`; the `--vocab` file, else the input's.
fn uer_companions(req: &ConvertRequest, config_file: Option<PathBuf>) -> anyhow::Result<()> {
    let input_dir = if req.input.is_dir() {
        req.input.clone()
    } else {
        uerzoo::output::parent_dir(&req.input).to_path_buf()
    };
    let beside_input = |name: &str| Some(input_dir.join(name)).filter(|p| p.is_file());
    // A registry config has no file: its text is written beside the output.
    let config = match (config_file, &req.uer_config) {
        (Some(p), _) => Some(p.into()),
        (None, Some(c)) => Some(super::Companion::Made(c.to_json_string())),
        (None, None) => beside_input("uer_config.json").map(Into::into),
    };
    if config.is_none() {
        eprintln!(
            "note: no UER config written beside {}: pass --config UER_CONFIG.json or --model NAME so that other commands can open it",
            req.output.display()
        );
    }
    let vocab = req
        .vocab
        .clone()
        .or_else(|| beside_input("vocab.txt"))
        .or_else(|| beside_input("spiece.model"));
    super::write_beside(&req.output, config, vocab)
}
