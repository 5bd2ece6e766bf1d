//! `uerzoo list`: List the zoo's weights.

use std::process::ExitCode;

/// List the zoo's weights.
#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`uerzoo list` is not implemented yet")
}
