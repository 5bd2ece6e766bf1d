//! The `preprocess` command as one call, [`run`]: it checks the output, opens the
//! vocabulary, and builds a dataset from a corpus ([`super::preprocess`]) or converts
//! UER-py's `dataset.pt` ([`super::convert_uer`]). It prints nothing; progress goes through
//! [`Progress`], the counts come back in a [`PreprocessOutcome`].

use super::{FromUerOptions, PreprocessOptions, PreprocessReport, PretrainTarget};
use crate::progress::Progress;
use crate::tokenizer::TokenizerOptions;
use crate::train::TrainError;
use std::path::PathBuf;

/// Where the instances come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A UTF-8 corpus (one document a line, or sentences with blank lines between
    /// documents for `bert`/`albert`).
    Corpus(PathBuf),
    /// UER-py's `dataset.pt` (from its preprocess.py), converted as it was made.
    FromUer(PathBuf),
}

/// The `preprocess` command's options.
#[derive(Debug, Clone)]
pub struct PreprocessJob {
    pub source: Source,
    /// `vocab.txt` or sentencepiece `.model`, told by content.
    pub vocab: PathBuf,
    pub target: PretrainTarget,
    /// Tokens per instance (default: 128; for `FromUer` the dataset's).
    pub seq_length: Option<usize>,
    pub dup_factor: usize,
    pub dynamic_masking: bool,
    /// Whole-word masking (refused: no Chinese word segmenter yet).
    pub whole_word_masking: bool,
    pub full_sentences: bool,
    pub seed: u64,
    /// Tokenizer threads.
    pub jobs: usize,
    /// The dataset file to write.
    pub output: PathBuf,
    /// Overwrite `output` if it exists.
    pub force: bool,
}

/// What [`run`] did: the counts and timing, and what it read.
#[derive(Debug, Clone)]
pub struct PreprocessOutcome {
    pub report: PreprocessReport,
    pub source: Source,
    pub output: PathBuf,
}

/// Runs `preprocess` (see the module docs); the options that do not apply to a conversion
/// (`dup_factor` other than 5, `dynamic_masking`, `full_sentences`) are refused with it.
pub fn run(job: PreprocessJob, progress: &dyn Progress) -> Result<PreprocessOutcome, TrainError> {
    if job.whole_word_masking {
        return Err(TrainError::Options(
            "--whole-word-masking needs jieba word segmentation, which uerzoo does not have yet; use plain or --dynamic-masking".into(),
        ));
    }
    let (input, flag) = match &job.source {
        Source::Corpus(c) => (c, "--corpus"),
        Source::FromUer(pt) => (pt, "--from-uer"),
    };
    crate::output::check_not_input(&job.output, input, flag)?;
    crate::output::check_file(&job.output, job.force)?;
    let tok = crate::resolve::tokenizer_from_file(&job.vocab, TokenizerOptions::uer())?;
    let report = match &job.source {
        Source::Corpus(corpus) => {
            let opts = PreprocessOptions {
                target: job.target,
                seq_length: job.seq_length.unwrap_or(128),
                dup_factor: job.dup_factor,
                dynamic_masking: job.dynamic_masking,
                full_sentences: job.full_sentences,
                seed: job.seed,
                jobs: job.jobs,
                force: job.force,
            };
            super::preprocess(corpus, &tok, &job.vocab, &job.output, &opts, progress)
                .map_err(|e| e.context(format!("preprocessing `{}`", corpus.display())))?
        }
        Source::FromUer(pt) => {
            let ignored = [
                (job.dup_factor != 5, "--dup-factor"),
                (job.dynamic_masking, "--dynamic-masking"),
                (job.full_sentences, "--full-sentences"),
            ];
            if let Some((_, flag)) = ignored.iter().find(|(set, _)| *set) {
                return Err(TrainError::Options(format!(
                    "{flag} does not apply to --from-uer: the instances are converted as preprocess.py made them"
                )));
            }
            let opts = FromUerOptions {
                target: job.target,
                seq_length: job.seq_length,
                force: job.force,
            };
            super::convert_uer(pt, &tok, &job.vocab, &job.output, &opts, progress)
                .map_err(|e| e.context(format!("converting UER-py's `{}`", pt.display())))?
        }
    };
    Ok(PreprocessOutcome {
        report,
        source: job.source,
        output: job.output,
    })
}
