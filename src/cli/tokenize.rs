//! `uerzoo tokenize`: token ids, tokens and character offsets of texts, as UER-py (or, with
//! `--hf`, transformers) tokenizes them; `--output` writes the ids `uerzoo forward` reads.

use anyhow::Context;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use uerzoo::checkpoint::{Checkpoint, DType, Tensor};
use uerzoo::tokenizer::{ModelInput, TokenSpan, Tokenizer, TokenizerOptions};

/// Show the token ids, tokens and character offsets of a text, as UER-py tokenizes it.
///
/// The tokenizer is the one beside MODEL (`vocab.txt` or `spiece.model` next to a UER
/// `.bin` or in an HF directory; a registry name must be downloaded), or `--vocab
/// vocab.txt` (BERT WordPiece, the char-based models) or `--spm X.model` (sentencepiece, the
/// word-based models); with `--vocab`/`--spm` the first argument is the text.
///
/// As UER-py, `[MASK]` written in the text is split (`[`, `ma`, `##sk`, `]`) by the BERT
/// tokenizer; `--hf` tokenizes as transformers' `BertTokenizer` does (special tokens in the
/// text kept whole, words over 100 characters `[UNK]`). Offsets are `[start, end)` in
/// characters of the text.
///
/// `--special-tokens` shows the model input, `[CLS] text [SEP]` (and `pair [SEP]`, segment
/// 2), as UER-py's run_classifier builds it; `--pair` and `--seq-length` (cut and pad with
/// `[PAD]`) imply it. `--output` writes that input for every text, `input_ids` and `segment`
/// as i64 `[texts, seq]` (padded to `--seq-length`, else to the longest), which is exactly
/// what `uerzoo forward --input` reads.
///
/// Example: uerzoo tokenize --vocab vocab.txt 北京是[MASK]国的首都 --json
///
/// Example: uerzoo tokenize uer_model.bin --input texts.txt --seq-length 64 --output ids.safetensors
#[derive(clap::Args)]
pub struct Args {
    /// MODEL (a UER `.bin`, an HF directory or a downloaded registry name) and/or TEXT.
    #[arg(value_name = "MODEL|TEXT", num_args = 0..=2)]
    positional: Vec<String>,
    /// A BERT `vocab.txt` or a sentencepiece `.model` instead of MODEL, told by content
    /// (`--spm` is the same flag).
    #[arg(long, visible_alias = "spm")]
    vocab: Option<PathBuf>,
    /// Tokenize every line of FILE (`-` = standard input) instead of TEXT.
    #[arg(long)]
    input: Option<PathBuf>,
    /// A second text (sentence B, segment 2) after TEXT.
    #[arg(long, conflicts_with = "input")]
    pair: Option<String>,
    /// One JSON object per text: `{"text", "ids", "tokens", "offsets"}` (+ `segments`).
    #[arg(long)]
    json: bool,
    /// Write the model inputs (`input_ids`, `segment`) to this safetensors file.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Cut and pad the model input to N tokens.
    #[arg(long, value_name = "N")]
    seq_length: Option<usize>,
    /// Show the model input: `[CLS] … [SEP]`, with segments.
    #[arg(long)]
    special_tokens: bool,
    /// Tokenize as transformers' BertTokenizer (special tokens in the text kept whole).
    #[arg(long)]
    hf: bool,
    /// Overwrite the `--output` file if it exists.
    #[arg(long)]
    force: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let explicit = args.vocab.is_some();
    let (model, text) = match (explicit, args.positional.as_slice()) {
        (true, [text]) => (None, Some(text.clone())),
        (true, []) => (None, None),
        (true, _) => anyhow::bail!(
            "with --vocab/--spm give only the text, not a model (got {} arguments)",
            args.positional.len()
        ),
        (false, [model]) => (Some(model.clone()), None),
        (false, [model, text]) => (Some(model.clone()), Some(text.clone())),
        (false, _) => anyhow::bail!("give MODEL, or --vocab vocab.txt / --spm X.model"),
    };
    let options = if args.hf {
        TokenizerOptions::huggingface()
    } else {
        TokenizerOptions::uer()
    };
    let tok = load(model.as_deref(), &args, options)?;
    if args.hf && tok.as_spm().is_some() {
        anyhow::bail!(
            "--hf is transformers' BertTokenizer; this model's tokenizer is sentencepiece"
        );
    }
    let texts = match (text, &args.input) {
        (Some(_), Some(_)) => anyhow::bail!("give TEXT or --input FILE, not both"),
        (Some(t), None) => vec![t],
        (None, Some(file)) => read_lines(file)?,
        (None, None) => anyhow::bail!("nothing to tokenize: give TEXT or --input FILE"),
    };
    if args.seq_length == Some(0) {
        anyhow::bail!("--seq-length 0: expected at least 1 (it counts [CLS] and [SEP])");
    }
    let spans = |t: &str| {
        if args.hf {
            tok.tokenize_with_specials_offsets(t)
        } else {
            tok.tokenize_with_offsets(t)
        }
    };
    let model_input = args.special_tokens || args.pair.is_some() || args.seq_length.is_some();
    let pair = args.pair.as_deref().map(&spans);
    let mut inputs = Vec::with_capacity(texts.len());
    for text in &texts {
        let a = spans(text);
        let input = tok.model_input(&a, pair.as_deref(), args.seq_length);
        let shown = if model_input { input.clone() } else { bare(a) };
        print(text, args.pair.as_deref(), &shown, model_input, args.json)?;
        inputs.push(input);
    }
    if let Some(out) = &args.output {
        write_inputs(out, &inputs, &tok, args.force)?;
        eprintln!(
            "wrote {} ({} texts × {} tokens)",
            out.display(),
            inputs.len(),
            inputs.iter().map(|i| i.tokens.len()).max().unwrap_or(0)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The tokenizer of `--vocab` (either kind) or MODEL.
fn load(model: Option<&str>, args: &Args, options: TokenizerOptions) -> anyhow::Result<Tokenizer> {
    let path = match (&args.vocab, model) {
        (Some(v), _) => v.clone(),
        (None, Some(m)) => beside(Path::new(m))?,
        (None, None) => unreachable!("checked by run"),
    };
    Ok(uerzoo::resolve::tokenizer_from_file(&path, options)?)
}

/// `vocab.txt` or `spiece.model` beside the weights (or in the directory, or in the cached
/// snapshot of a registry name).
fn beside(model: &Path) -> anyhow::Result<PathBuf> {
    let dir = if model.is_dir() {
        model.to_path_buf()
    } else if model.is_file() {
        model.parent().unwrap_or(Path::new(".")).to_path_buf()
    } else {
        uerzoo::resolve::open_model(model, None)?.dir
    };
    ["vocab.txt", "spiece.model"]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "no vocab.txt or spiece.model in {}; pass --vocab with its vocab.txt or sentencepiece .model",
                dir.display()
            )
        })
}

/// The lines of FILE (`-`: standard input); an empty file is an error, empty lines warned of.
fn read_lines(file: &Path) -> anyhow::Result<Vec<String>> {
    let text = if file == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading standard input")?;
        s
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    let lines: Vec<String> = text
        .lines()
        .map(|l| l.trim_end_matches('\r').to_owned())
        .collect();
    anyhow::ensure!(
        !lines.is_empty(),
        "{} is empty; put one text per line",
        file.display()
    );
    for (n, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            eprintln!(
                "warning: {} line {} is empty; it has no tokens",
                file.display(),
                n + 1
            );
        }
    }
    Ok(lines)
}

/// Tokens without the model input around them (segment 1 each).
fn bare(tokens: Vec<TokenSpan>) -> ModelInput {
    let segments = vec![1; tokens.len()];
    ModelInput { tokens, segments }
}

fn print(
    text: &str,
    pair: Option<&str>,
    input: &ModelInput,
    segments: bool,
    json: bool,
) -> anyhow::Result<()> {
    let ids = input.ids();
    let tokens: Vec<&str> = input.tokens.iter().map(|t| t.token.as_str()).collect();
    let offsets: Vec<[usize; 2]> = input.tokens.iter().map(|t| [t.start, t.end]).collect();
    if json {
        let mut obj = serde_json::json!({
            "text": text, "ids": ids, "tokens": tokens, "offsets": offsets,
        });
        if let Some(p) = pair {
            obj["pair"] = p.into();
        }
        if segments {
            obj["segments"] = input.segments.clone().into();
        }
        println!("{}", serde_json::to_string(&obj)?);
        return Ok(());
    }
    let join = |v: Vec<String>| v.join(" ");
    println!(
        "ids      {}",
        join(ids.iter().map(u32::to_string).collect())
    );
    println!("tokens   {}", tokens.join(" "));
    println!(
        "offsets  {}",
        join(offsets.iter().map(|[a, b]| format!("{a}:{b}")).collect())
    );
    if segments {
        println!(
            "segments {}",
            join(input.segments.iter().map(u32::to_string).collect())
        );
    }
    Ok(())
}

/// `input_ids` and `segment`, i64 `[texts, seq]`, padded with `[PAD]` / segment 0.
fn write_inputs(
    out: &Path,
    inputs: &[ModelInput],
    tok: &Tokenizer,
    force: bool,
) -> anyhow::Result<()> {
    let seq = inputs.iter().map(|i| i.tokens.len()).max().unwrap_or(0);
    let (mut ids, mut segments) = (Vec::new(), Vec::new());
    for input in inputs {
        let row = input.ids();
        ids.extend(row.iter().map(|&i| i64::from(i)));
        ids.extend(std::iter::repeat_n(
            i64::from(tok.pad_id()),
            seq - row.len(),
        ));
        segments.extend(input.segments.iter().map(|&s| i64::from(s)));
        segments.extend(std::iter::repeat_n(0, seq - row.len()));
    }
    let tensor = |values: &[i64]| {
        Tensor::from_bytes(
            DType::I64,
            vec![inputs.len(), seq],
            bytemuck::cast_slice(values).to_vec(),
        )
    };
    let mut file = Checkpoint::default();
    file.insert("input_ids", tensor(&ids));
    file.insert("segment", tensor(&segments));
    file.write_safetensors(out, force)
        .with_context(|| format!("writing {}", out.display()))
}
