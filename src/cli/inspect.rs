//! `uerzoo inspect`: Summarise a checkpoint file or directory.

use std::process::ExitCode;

/// Summarise a checkpoint file or directory.
#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`uerzoo inspect` is not implemented yet")
}
