//! `uerzoo download`: Download a zoo weight into the Huggingface cache.

use std::process::ExitCode;

/// Download a zoo weight into the Huggingface cache.
#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`uerzoo download` is not implemented yet")
}
