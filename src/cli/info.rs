//! `uerzoo info`: Everything known about one zoo weight.

use std::process::ExitCode;

/// Everything known about one zoo weight.
#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`uerzoo info` is not implemented yet")
}
