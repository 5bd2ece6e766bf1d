//! The command line. One file per subcommand: clap `Args` (doc comments are the `--help`)
//! plus a `run` that builds options, calls the library once and prints. Exit codes are
//! decided only here.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod convert;
mod download;
mod extract_features;
mod fill_mask;
mod finetune;
mod forward;
mod generate;
mod import;
mod info;
mod inspect;
mod list;
mod predict;
mod preprocess;
mod pretrain;
mod verify;

/// uerzoo — the UER-py Chinese model zoo without Python.
///
/// A registry of every published UER-py weight (Chinese RoBERTa miniatures, word-based
/// RoBERTa, GPT-2 poem/couplet/lyric/ancient, legacy BERT/ALBERT/GPT) that drives
/// download, verification, UER⇄Huggingface conversion and Burn models.
///
/// Start with `uerzoo list` (works offline) and `uerzoo info NAME`.
#[derive(Parser)]
#[command(
    name = "uerzoo",
    version,
    propagate_version = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    List(list::Args),
    Info(info::Args),
    Inspect(inspect::Args),
    Convert(convert::Args),
    Download(download::Args),
    Verify(verify::Args),
    Import(import::Args),
    Forward(forward::Args),
    FillMask(fill_mask::Args),
    ExtractFeatures(extract_features::Args),
    Generate(generate::Args),
    Finetune(finetune::Args),
    Predict(predict::Args),
    Preprocess(preprocess::Args),
    Pretrain(pretrain::Args),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::List(a) => list::run(a),
        Command::Info(a) => info::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Convert(a) => convert::run(a),
        Command::Download(a) => download::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Import(a) => import::run(a),
        Command::Forward(a) => forward::run(a),
        Command::FillMask(a) => fill_mask::run(a),
        Command::ExtractFeatures(a) => extract_features::run(a),
        Command::Generate(a) => generate::run(a),
        Command::Finetune(a) => finetune::run(a),
        Command::Predict(a) => predict::run(a),
        Command::Preprocess(a) => preprocess::run(a),
        Command::Pretrain(a) => pretrain::run(a),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
