//! Burn models of the zoo: BERT/RoBERTa, ALBERT, GPT-2 and UER-py 2019's GPT, LSTM language
//! model and classification-target BERT as UER-py builds them (embedding → transformer or
//! LSTM encoder → pretraining heads), backend-generic.
//!
//! This module owns the numerics (UER's and HF's LayerNorm, activations, masks, attention),
//! the model structure ([`Model`]) and loading weights in **UER naming v2** (the canonical
//! names; [`crate::convert`] turns every other spelling into them). It never reads a file
//! itself except through [`crate::checkpoint`]; the backend alias lives in [`backend`].
//!
//! References: UER-py `uer/layers/` and `uer/targets/` (2022 and 2023 trees) and
//! transformers `models/{bert,albert,gpt2}` (5.x), read for formulas only.

pub mod backend;
pub mod config;
pub mod encoder;
pub mod heads;
pub mod kv_cache;
pub mod layer_norm;
pub mod load;
pub mod lstm;
pub mod open;
pub mod tasks;
pub mod transformer;

pub use backend::{Cpu, DeviceSpec};
pub use config::{Activation, Dtype, EncoderKind, LnKind, LnPosition, MaskKind, ModelConfig};
pub use heads::Pooling;
pub use load::{LoadReport, load_model, random_checkpoint};
pub use open::{OpenedModel, open_model};
pub use tasks::{Batch, ForwardOutput, HostTensor};
pub use transformer::{Model, ModelOutput, TargetLogits};

use std::path::PathBuf;

/// Everything that can go wrong building or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A tensor the model needs is not in the checkpoint.
    #[error("{source_name}: no tensor `{key}` (UER naming v2); {hint}")]
    MissingTensor {
        source_name: String,
        key: String,
        hint: String,
    },
    /// A tensor has the wrong shape for the configuration.
    #[error(
        "{source_name}: tensor `{key}` has shape {got:?}, the config wants {expected:?}; check that the config matches the weights"
    )]
    Shape {
        source_name: String,
        key: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    /// The model argument could not be opened (file, directory, conversion).
    #[error("opening `{path}`: {message}")]
    Open { path: PathBuf, message: String },
    /// A config file could not be read or parsed.
    #[error("config `{path}`: {message}")]
    Config { path: PathBuf, message: String },
    /// A configuration value this crate does not implement.
    #[error("unsupported model configuration: {field} = {value}; supported: {supported}")]
    Unsupported {
        field: &'static str,
        value: String,
        supported: &'static str,
    },
    /// Bad model inputs (ids out of range, wrong shapes, sequence too long).
    #[error("bad input: {0}")]
    Input(String),
    /// A device string that is not `cpu`, `cuda` or `cuda:N`, or a backend not compiled in.
    #[error("device `{0}`: {1}")]
    Device(String, String),
}
