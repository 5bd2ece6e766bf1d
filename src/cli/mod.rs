//! The command line. One file per subcommand: clap `Args` (doc comments are the `--help`)
//! plus a `run` that builds options, calls the library once and prints. Exit codes are
//! decided only here.

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Mutex;
use uerzoo::progress::Progress;

mod cache;
mod completions;
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
mod man;
mod predict;
mod preprocess;
mod pretrain;
mod serve;
mod tokenize;
mod verify;
mod version;

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
    Tokenize(tokenize::Args),
    Convert(convert::Args),
    Download(download::Args),
    Verify(verify::Args),
    Import(import::Args),
    Cache(cache::Args),
    Forward(forward::Args),
    FillMask(fill_mask::Args),
    ExtractFeatures(extract_features::Args),
    Generate(generate::Args),
    Finetune(finetune::Args),
    Predict(predict::Args),
    Preprocess(preprocess::Args),
    Pretrain(pretrain::Args),
    Serve(serve::Args),
    Completions(completions::Args),
    Man(man::Args),
}

/// The `--device` value parser of every command: `cpu`, `cuda[:N]`, `wgpu[:N]`, or `auto`
/// (the first CUDA device, else the first wgpu GPU, else the CPU), which notes its choice.
pub fn device_arg(s: &str) -> Result<uerzoo::model::DeviceSpec, String> {
    if s == "auto" {
        let (spec, why) = uerzoo::model::backend::auto();
        eprintln!("note: --device auto: {why}");
        return Ok(spec);
    }
    s.parse()
        .map_err(|e: uerzoo::model::ModelError| e.to_string())
}

pub fn main() -> ExitCode {
    let cli = parse();
    // `serve` drains in-flight requests on SIGTERM itself; every other command removes its
    // temporaries and exits.
    if !matches!(cli.command, Command::Serve(_)) {
        uerzoo::output::install_interrupt_cleanup();
        end_quietly_on_closed_pipe();
    }
    let result = match cli.command {
        Command::List(a) => list::run(a),
        Command::Info(a) => info::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Tokenize(a) => tokenize::run(a),
        Command::Convert(a) => convert::run(a),
        Command::Download(a) => download::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Import(a) => import::run(a),
        Command::Cache(a) => cache::run(a),
        Command::Forward(a) => forward::run(a),
        Command::FillMask(a) => fill_mask::run(a),
        Command::ExtractFeatures(a) => extract_features::run(a),
        Command::Generate(a) => generate::run(a),
        Command::Finetune(a) => finetune::run(a),
        Command::Predict(a) => predict::run(a),
        Command::Preprocess(a) => preprocess::run(a),
        Command::Pretrain(a) => pretrain::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Completions(a) => completions::run(a),
        Command::Man(a) => man::run(a),
    };
    match result {
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

/// The command line, parsed with the full `--version` / `-V` text (commit, features, CPU
/// paths; see [`version`]), which is computed at run time and so cannot sit in the derive.
fn parse() -> Cli {
    let text: &'static str = Box::leak(version::text().into_boxed_str());
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

/// An indicatif bar on stderr counting `unit`s (one task at a time: a file, an epoch, a
/// run); nothing when stderr is not a terminal.
struct Bar(Mutex<Option<ProgressBar>>, bool, &'static str);

impl Bar {
    fn new(unit: &'static str) -> Self {
        Bar(Mutex::new(None), std::io::stderr().is_terminal(), unit)
    }
}

impl Progress for Bar {
    fn start(&self, message: &str, total: u64) {
        if !self.1 {
            return;
        }
        let bar = ProgressBar::new(total);
        let template = format!(
            "{{msg:12}} {{bar:30}} {{pos}}/{{len}} {} {{per_sec}} ETA {{eta}}",
            self.2
        );
        let style = ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_message(message.to_string());
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar);
    }
    fn advance(&self, delta: u64) {
        if let Some(b) = self.0.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            b.inc(delta);
        }
    }
    fn finish(&self) {
        if let Some(b) = self.0.lock().unwrap_or_else(|e| e.into_inner()).take() {
            b.finish_and_clear();
        }
    }
}

/// Rows as text columns two spaces apart, each as wide as its widest cell (header
/// included, in characters); the columns in `right` right-aligned, the last one unpadded.
pub(crate) fn table<const N: usize>(
    header: &[String; N],
    rows: &[[String; N]],
    right: &[usize],
) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|i| {
            std::iter::once(header)
                .chain(rows)
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in std::iter::once(header).chain(rows) {
        for (i, cell) in row.iter().enumerate() {
            let w = widths[i];
            match (i + 1 == N, right.contains(&i)) {
                (true, _) => out.push_str(cell),
                (false, true) => out.push_str(&format!("{cell:>w$}  ")),
                (false, false) => out.push_str(&format!("{cell:<w$}  ")),
            }
        }
        out.push('\n');
    }
    out
}

pub(crate) use uerzoo::output::Companion;

/// [`uerzoo::output::write_beside`], each file it wrote shown on stdout.
pub(crate) fn write_beside(
    output: &std::path::Path,
    config: Option<Companion>,
    vocab: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    show_written(&uerzoo::output::write_beside(output, config, vocab)?);
    Ok(())
}

/// One line per companion file written beside an output.
pub(crate) fn show_written(written: &[uerzoo::output::Written]) {
    for w in written {
        match &w.copy_of {
            Some(p) => println!("wrote {} (copy of {})", w.path.display(), p.display()),
            None => println!("wrote {}", w.path.display()),
        }
    }
}

/// A [`Progress`] that shows notes (warnings, choices made) on stderr, one line each, and
/// passes everything else to `inner`.
pub(crate) struct Noted<P>(pub P);

impl<P: Progress> Progress for Noted<P> {
    fn start(&self, message: &str, total: u64) {
        self.0.start(message, total)
    }
    fn advance(&self, delta: u64) {
        self.0.advance(delta)
    }
    fn finish(&self) {
        self.0.finish()
    }
    fn note(&self, message: &str) {
        eprintln!("{message}");
    }
}
