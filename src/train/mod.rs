//! Training: fine-tuning a zoo model as UER-py's run_classifier does, and the pieces a
//! pretraining loop reuses.
//!
//! This module owns UER-py's optimizer and schedule ([`optim`]: AdamW without bias
//! correction, warmup + linear decay), the classification data ([`data`]: TSV reading with
//! line-numbered errors, encoding), the classifier on a [`crate::model::Model`]
//! ([`classifier`]: dropout forward, pooling, head init, checkpoint export) and the loops
//! ([`finetune`]: fine-tune, grid search, predict), plus writing the result as a UER
//! classifier `.bin` or an HF `BertForSequenceClassification` directory ([`save`]).
//! Each training command is one call here, a task struct in and a report out:
//! [`finetune::run`], [`pretrain::run`], [`predict::run`] (`uerzoo finetune`, `pretrain`,
//! `predict` after argument parsing: output checks, opening, reading, training, saving with
//! the config and vocabulary beside, rescue).
//! It never prints: epochs are reported through a callback and batches through
//! [`crate::progress::Progress`].

pub mod classifier;
pub mod data;
pub mod dataset;
pub mod finetune;
pub mod optim;
pub mod predict;
pub mod pretrain;
pub mod save;

pub use data::{Dataset, Encoded, Example};
pub use finetune::{
    EpochReport, FinetuneOptions, FinetuneResult, GridPoint, GridRow, Metrics, Predictions,
    TaskData, finetune, grid, grid_points, predict,
};
pub use optim::{UerAdamW, WarmupLinear};

use std::path::PathBuf;

/// Everything that can go wrong preparing data, training or saving.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A data file could not be read.
    #[error("reading `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A bad line in a TSV (1-based line number).
    #[error("{}, line {line}: {message}", path.display())]
    Data {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// Labels that are not `0..n`.
    #[error("{}: {message}", path.display())]
    Labels { path: PathBuf, message: String },
    /// A sequence length the model cannot take.
    #[error("--seq-length {seq} is beyond the model's {max} positions; use at most {max}")]
    SeqLength { seq: usize, max: usize },
    /// Hyper-parameters out of range.
    #[error("{0}")]
    Options(String),
    /// Weights without a classifier head (predict).
    #[error("no classifier tensor `{key}`: {hint}")]
    NoHead { key: String, hint: String },
    /// Loading or running the model.
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    /// Renaming the weights for the output.
    #[error(transparent)]
    Convert(#[from] crate::convert::ConvertError),
    /// Writing the output checkpoint.
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    /// A pretraining dataset that cannot be used (format, vocabulary, target).
    #[error("dataset `{}`: {message}", path.display())]
    Dataset { path: PathBuf, message: String },
    /// An output that cannot be written, or its companion files.
    #[error(transparent)]
    Output(#[from] crate::output::OutputError),
    /// A config or vocabulary written beside the output.
    #[error(transparent)]
    Companion(#[from] crate::output::CompanionError),
    /// The model's tokenizer.
    #[error(transparent)]
    Tokenizer(#[from] crate::resolve::TokenizerOpenError),
    /// An error with what it means for the run (e.g. where the trained model was rescued).
    #[error("{what}")]
    Context {
        what: String,
        #[source]
        source: Box<TrainError>,
    },
}

impl TrainError {
    /// This error under `what` (shown first, this error as its cause).
    pub fn context(self, what: impl Into<String>) -> TrainError {
        TrainError::Context {
            what: what.into(),
            source: Box::new(self),
        }
    }
}
