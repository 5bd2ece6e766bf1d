//! `uerzoo preprocess`: build a pretraining dataset from a corpus (UER-py's preprocess.py),
//! or convert a `dataset.pt` UER-py's preprocess.py made.

use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use uerzoo::tokenizer::{Tokenizer, TokenizerOptions};
use uerzoo::train::dataset::{self, FromUerOptions, PreprocessOptions, Target};

/// Build a pretraining dataset from a corpus, as UER-py's preprocess.py does.
///
/// Corpus: UTF-8, one document per line for mlm/lm; for bert and albert one sentence per
/// line with documents separated by blank lines. Instances are packed to --seq-length;
/// mlm/bert/albert instances are masked here (15% of tokens: 80% [MASK], 10% random, 10%
/// kept; --dup-factor copies) unless --dynamic-masking leaves it to training time. The output is a compact
/// memory-mapped file whose header records the vocabulary's SHA-256, the target and the
/// sequence length (docs/pretraining.md).
///
/// With --from-uer, converts a `dataset.pt` made by UER-py's preprocess.py instead (same
/// instances, masks included; read as plain data, never executed): give the --vocab (or
/// --spm) and --target it was made with.
///
/// Example: uerzoo preprocess --corpus corpus.txt --vocab vocab.txt --target mlm --seq-length 128 --dynamic-masking --output corpus.uzds
///
/// Example: uerzoo preprocess --from-uer dataset.pt --vocab vocab.txt --target mlm --output dataset.uzds
#[derive(clap::Args)]
pub struct Args {
    /// The corpus (UTF-8 text).
    #[arg(
        long,
        required_unless_present = "from_uer",
        conflicts_with = "from_uer"
    )]
    corpus: Option<PathBuf>,
    /// Convert UER-py's `dataset.pt` (from its preprocess.py) instead of reading a corpus.
    #[arg(long)]
    from_uer: Option<PathBuf>,
    /// `vocab.txt` or sentencepiece `.model`, told by content (`--spm` is the same flag).
    #[arg(long, visible_alias = "spm")]
    vocab: PathBuf,
    /// mlm (RoBERTa), lm (GPT-2), bert (mlm + next-sentence prediction: pairs with a random
    /// next sentence half the time) or albert (mlm + sentence-order prediction: two
    /// consecutive segments of a document, swapped half the time).
    #[arg(long)]
    target: Target,
    /// Tokens per instance [128; with --from-uer: the dataset's].
    #[arg(long)]
    seq_length: Option<usize>,
    /// Copies of the corpus with different static masks (mlm, bert).
    #[arg(long, default_value_t = 5)]
    dup_factor: usize,
    /// Mask at training time, a new mask every time an instance is seen.
    #[arg(long)]
    dynamic_masking: bool,
    /// Whole-word masking (needs a Chinese word segmenter; not supported yet).
    #[arg(long)]
    whole_word_masking: bool,
    /// mlm: concatenate documents before cutting them into instances.
    #[arg(long)]
    full_sentences: bool,
    /// Seed of masking and pair building.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Tokenizer threads.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// The dataset file to write (its folder is created if missing).
    #[arg(long)]
    output: PathBuf,
    /// Overwrite OUTPUT if it exists.
    #[arg(long)]
    force: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    if a.whole_word_masking {
        anyhow::bail!(
            "--whole-word-masking needs jieba word segmentation, which uerzoo does not have yet; use plain or --dynamic-masking"
        );
    }
    let (input, flag) = match (&a.corpus, &a.from_uer) {
        (Some(c), _) => (c, "--corpus"),
        (None, Some(pt)) => (pt, "--from-uer"),
        (None, None) => anyhow::bail!("give --corpus or --from-uer"),
    };
    uerzoo::output::check_not_input(&a.output, input, flag)?;
    uerzoo::output::check_file(&a.output, a.force)?;
    let vocab_file = &a.vocab;
    let tok = uerzoo::resolve::tokenizer_from_file(vocab_file, TokenizerOptions::uer())?;
    if let Some(pt) = &a.from_uer {
        return from_uer(&a, pt, &tok, vocab_file);
    }
    let opts = PreprocessOptions {
        target: a.target,
        seq_length: a.seq_length.unwrap_or(128),
        dup_factor: a.dup_factor,
        dynamic_masking: a.dynamic_masking,
        full_sentences: a.full_sentences,
        seed: a.seed,
        jobs: a.jobs,
        force: a.force,
    };
    let r = dataset::preprocess(
        input,
        &tok,
        vocab_file,
        &a.output,
        &opts,
        &super::Bar::new("bytes"),
    )
    .with_context(|| format!("preprocessing `{}`", input.display()))?;
    println!(
        "{} instances ({} lines, {} tokens) → {} in {:.1}s ({:.0} lines/s, {:.2} MB/s)",
        r.instances,
        r.lines,
        r.tokens,
        a.output.display(),
        r.seconds,
        r.lines as f64 / r.seconds.max(1e-9),
        r.bytes_read as f64 / 1e6 / r.seconds.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}

/// `--from-uer`: converts UER-py's `dataset.pt`.
fn from_uer(
    a: &Args,
    pt: &std::path::Path,
    tok: &Tokenizer,
    vocab_file: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    let ignored = [
        (a.dup_factor != 5, "--dup-factor"),
        (a.dynamic_masking, "--dynamic-masking"),
        (a.full_sentences, "--full-sentences"),
    ];
    if let Some((_, flag)) = ignored.iter().find(|(set, _)| *set) {
        anyhow::bail!(
            "{flag} does not apply to --from-uer: the instances are converted as preprocess.py made them"
        );
    }
    let opts = FromUerOptions {
        target: a.target,
        seq_length: a.seq_length,
        force: a.force,
    };
    let r = dataset::convert_uer(
        pt,
        tok,
        vocab_file,
        &a.output,
        &opts,
        &super::Bar::new("bytes"),
    )
    .with_context(|| format!("converting UER-py's `{}`", pt.display()))?;
    println!(
        "{} instances ({} tokens) from UER-py's {} → {} in {:.1}s ({:.2} MB/s)",
        r.instances,
        r.tokens,
        pt.display(),
        a.output.display(),
        r.seconds,
        r.bytes_read as f64 / 1e6 / r.seconds.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}
