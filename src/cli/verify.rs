//! `uerzoo verify`: Re-hash cached files.

use std::process::ExitCode;

/// Re-hash cached files.
#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`uerzoo verify` is not implemented yet")
}
