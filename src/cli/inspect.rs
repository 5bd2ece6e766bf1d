//! `uerzoo inspect`: Summarise a checkpoint file or directory.

use std::path::PathBuf;
use std::process::ExitCode;
use uerzoo::resolve::inspect::{InspectJob, inspect};

/// Summarise a checkpoint: format, tensor count, parameters, bytes, tied groups and each
/// tensor's name, dtype and shape. Reads torch `.bin` (zip or legacy) and safetensors;
/// nothing in the file is executed.
///
/// Example: `uerzoo inspect pytorch_model.bin --json`
#[derive(clap::Args)]
pub struct Args {
    /// A `.bin`/`.safetensors` file, or a directory holding `model.safetensors` or
    /// `pytorch_model.bin`.
    path: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Also time the read, touching every tensor byte, and print the throughput.
    #[arg(long)]
    time: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let found = inspect(&InspectJob {
        path: args.path,
        time: args.time,
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&found.json())?);
    } else {
        print!("{}", found.text());
    }
    Ok(ExitCode::SUCCESS)
}
