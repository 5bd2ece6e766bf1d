//! `uerzoo import`: Put a manually downloaded file into the cache.

use std::process::ExitCode;

/// Put a manually downloaded file into the cache.
#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`uerzoo import` is not implemented yet")
}
