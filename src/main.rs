//! The `uerzoo` command line: a thin layer over the library (see `src/cli/`). This file
//! parses, installs the handlers of a closed pipe and of an interrupt, runs the command and
//! reports its error with the causes and, for a full disk, what to do.

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::process::ExitCode;

mod cli;

#[global_allocator]
static ALLOCATOR: uerzoo::alloc::Allocator = uerzoo::alloc::Allocator;

fn main() -> ExitCode {
    uerzoo::alloc::configure();
    let cli = parse();
    // `serve` drains in-flight requests on SIGTERM itself; every other command removes its
    // temporaries and exits.
    if !matches!(cli.command, Command::Serve(_)) {
        uerzoo::output::install_interrupt_cleanup();
        end_quietly_on_closed_pipe();
    }
    match run(cli.command) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            if let Some(hint) = full_disk_hint(&err) {
                eprintln!("  hint: {hint}");
            }
            ExitCode::FAILURE
        }
    }
}

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
pub(crate) enum Command {
    List(cli::list::Args),
    Info(cli::info::Args),
    Inspect(cli::inspect::Args),
    Tokenize(cli::tokenize::Args),
    Convert(cli::convert::Args),
    Download(cli::download::Args),
    Verify(cli::verify::Args),
    Import(cli::import::Args),
    Cache(cli::cache::Args),
    Forward(cli::forward::Args),
    FillMask(cli::fill_mask::Args),
    ExtractFeatures(cli::extract_features::Args),
    Generate(cli::generate::Args),
    Finetune(cli::finetune::Args),
    Predict(cli::predict::Args),
    Preprocess(cli::preprocess::Args),
    Pretrain(cli::pretrain::Args),
    Serve(cli::serve::Args),
    Completions(cli::completions::Args),
    Man(cli::man::Args),
}

/// The command line, parsed with the full `--version` / `-V` text (commit, features, CPU
/// paths; see `cli/version.rs`), which is computed at run time and so cannot sit in the derive.
fn parse() -> Cli {
    let text: &'static str = Box::leak(cli::version::text().into_boxed_str());
    let matches = Cli::command()
        .version(text)
        .long_version(text)
        .get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// The exit status of a command whose reader went away (`uerzoo list | head -1`): what a
/// shell reports for a process ended by SIGPIPE (128 + 13).
const CLOSED_PIPE_EXIT: u8 = 141;

/// A closed stdout (or stderr) ends the command quietly, as it ends `cat`: the panic that
/// `println!` raises on `EPIPE` (Rust ignores SIGPIPE, so the write fails instead of killing
/// the process) removes this run's temporaries and exits with [`CLOSED_PIPE_EXIT`], with no
/// message and no backtrace; any other panic is reported as before. A hook rather than
/// SIGPIPE's default action, so that temporaries are still removed and a network write to
/// a closed socket stays an ordinary error. Not installed for `serve`, whose own output is
/// a log and whose clients' closed sockets are errors of one request.
fn end_quietly_on_closed_pipe() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload_as_str().is_some_and(is_closed_pipe_panic) {
            uerzoo::output::remove_all_partials();
            std::process::exit(CLOSED_PIPE_EXIT.into());
        }
        report(info)
    }));
}

/// Whether `message` is std's panic on a failed `print!`/`eprint!` to a closed pipe.
fn is_closed_pipe_panic(message: &str) -> bool {
    let os = std::io::Error::from_raw_os_error(libc::EPIPE);
    ["stdout", "stderr"]
        .iter()
        .any(|s| message == format!("failed printing to {s}: {os}"))
}

/// What to do when a write failed for want of room (nothing is left under the output's
/// name either way: see [`uerzoo::output`]).
fn full_disk_hint(err: &anyhow::Error) -> Option<&'static str> {
    err.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .find_map(|e| match e.kind() {
            std::io::ErrorKind::StorageFull => {
                Some("the disk is full; free some space or write the output to another folder")
            }
            std::io::ErrorKind::FileTooLarge => Some(
                "the output is larger than this shell's file-size limit (`ulimit -f`); raise the limit or write a smaller output",
            ),
            _ => None,
        })
}

/// Runs `command`: its options to the library, the result printed.
fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::List(a) => cli::list::run(a),
        Command::Info(a) => cli::info::run(a),
        Command::Inspect(a) => cli::inspect::run(a),
        Command::Tokenize(a) => cli::tokenize::run(a),
        Command::Convert(a) => cli::convert::run(a),
        Command::Download(a) => cli::download::run(a),
        Command::Verify(a) => cli::verify::run(a),
        Command::Import(a) => cli::import::run(a),
        Command::Cache(a) => cli::cache::run(a),
        Command::Forward(a) => cli::forward::run(a),
        Command::FillMask(a) => cli::fill_mask::run(a),
        Command::ExtractFeatures(a) => cli::extract_features::run(a),
        Command::Generate(a) => cli::generate::run(a),
        Command::Finetune(a) => cli::finetune::run(a),
        Command::Predict(a) => cli::predict::run(a),
        Command::Preprocess(a) => cli::preprocess::run(a),
        Command::Pretrain(a) => cli::pretrain::run(a),
        Command::Serve(a) => cli::serve::run(a),
        Command::Completions(a) => cli::completions::run(a),
        Command::Man(a) => cli::man::run(a),
    }
}
