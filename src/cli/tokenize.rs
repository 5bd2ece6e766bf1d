//! `uerzoo tokenize`: token ids, tokens and character offsets of texts, as UER-py (or, with
//! `--hf`, transformers) tokenizes them; `--output` writes the ids `uerzoo forward` reads.

use std::path::PathBuf;
use std::process::ExitCode;
use uerzoo::jobs::tokenize::{Event, TokenizeJob};

/// Show the token ids, tokens and character offsets of a text, as UER-py tokenizes it.
///
/// The tokenizer is the one beside MODEL (`vocab.txt` or `spiece.model` next to a UER
/// `.bin` or in an HF directory; a registry name uses the vocabulary built into uerzoo, so
/// nothing needs downloading), or `--vocab
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
    let job = TokenizeJob {
        model,
        vocab: args.vocab,
        text,
        input: args.input,
        pair: args.pair,
        json: args.json,
        output: args.output,
        seq_length: args.seq_length,
        special_tokens: args.special_tokens,
        hf: args.hf,
        force: args.force,
    };
    let written = uerzoo::jobs::tokenize::run(job, &mut |event| match event {
        Event::Note(line) => eprintln!("{line}"),
        Event::Shown(lines) => print!("{lines}"),
    })?;
    if let Some(written) = written {
        eprintln!("{}", written.summary());
    }
    Ok(ExitCode::SUCCESS)
}
