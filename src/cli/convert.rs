//! `uerzoo convert`: Convert a checkpoint between UER and Huggingface formats.

use std::process::ExitCode;

/// Convert a checkpoint between UER and Huggingface formats.
#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`uerzoo convert` is not implemented yet")
}
