//! `uerzoo preprocess`: build a pretraining dataset from a corpus (UER-py's preprocess.py),
//! or convert a `dataset.pt` UER-py's preprocess.py made.

use std::path::PathBuf;
use std::process::ExitCode;
use uerzoo::train::dataset::PretrainTarget;
use uerzoo::train::dataset::job::{self, PreprocessJob, Source};

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
    target: PretrainTarget,
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
    let source = match (a.corpus, a.from_uer) {
        (Some(c), _) => Source::Corpus(c),
        (None, Some(pt)) => Source::FromUer(pt),
        (None, None) => anyhow::bail!("give --corpus or --from-uer"),
    };
    let job = PreprocessJob {
        source,
        vocab: a.vocab,
        target: a.target,
        seq_length: a.seq_length,
        dup_factor: a.dup_factor,
        dynamic_masking: a.dynamic_masking,
        whole_word_masking: a.whole_word_masking,
        full_sentences: a.full_sentences,
        seed: a.seed,
        jobs: a.jobs,
        output: a.output,
        force: a.force,
    };
    let done = job::run(job, &super::Bar::new("bytes"))?;
    let (r, out) = (&done.report, done.output.display());
    let secs = r.seconds;
    let mb_s = r.bytes_read as f64 / 1e6 / secs.max(1e-9);
    match &done.source {
        Source::Corpus(_) => println!(
            "{} instances ({} lines, {} tokens) → {out} in {secs:.1}s ({:.0} lines/s, {mb_s:.2} MB/s)",
            r.instances,
            r.lines,
            r.tokens,
            r.lines as f64 / secs.max(1e-9),
        ),
        Source::FromUer(pt) => println!(
            "{} instances ({} tokens) from UER-py's {} → {out} in {secs:.1}s ({mb_s:.2} MB/s)",
            r.instances,
            r.tokens,
            pt.display(),
        ),
    }
    Ok(ExitCode::SUCCESS)
}
