//! `uerzoo fill-mask`: Predict the [MASK] tokens of a sentence.

use std::process::ExitCode;

/// Predict the [MASK] tokens of a sentence.
#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`uerzoo fill-mask` is not implemented yet")
}
