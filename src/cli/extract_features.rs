//! `uerzoo extract-features`: Sentence embeddings from a model.

use std::process::ExitCode;

/// Sentence embeddings from a model.
#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`uerzoo extract-features` is not implemented yet")
}
