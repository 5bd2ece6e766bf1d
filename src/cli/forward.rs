//! `uerzoo forward`: Run a model on token ids and write its hidden states and logits.

use std::process::ExitCode;

/// Run a model on token ids and write its hidden states and logits.
#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`uerzoo forward` is not implemented yet")
}
