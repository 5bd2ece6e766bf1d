//! The command line. One file per subcommand: clap `Args` (doc comments are the `--help`)
//! plus a `run` that builds options, calls the library once and prints. This file holds
//! what they share: `--device`, printing to stdout, tables and progress bars.
//! Exit codes are decided only in the CLI (`src/main.rs` holds the clap `Cli`, the dispatch
//! to each file's `run` and the error report).

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Mutex;
use uerzoo::progress::Progress;

pub(crate) mod cache;
pub(crate) mod completions;
pub(crate) mod convert;
pub(crate) mod download;
pub(crate) mod extract_features;
pub(crate) mod fill_mask;
pub(crate) mod finetune;
pub(crate) mod forward;
pub(crate) mod generate;
pub(crate) mod import;
pub(crate) mod info;
pub(crate) mod inspect;
pub(crate) mod list;
pub(crate) mod man;
pub(crate) mod predict;
pub(crate) mod preprocess;
pub(crate) mod pretrain;
pub(crate) mod serve;
pub(crate) mod tokenize;
pub(crate) mod verify;
pub(crate) mod version;

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

/// An indicatif bar per task (a file, an epoch, a run); nothing when its stream is not a
/// terminal. Notes (a retry, a slow server) go to stderr above it.
pub(crate) struct Bar(Mutex<Option<ProgressBar>>, bool, String, bool);

impl Bar {
    /// On stderr, counting `unit`s; cleared when done.
    pub(crate) fn new(unit: &'static str) -> Self {
        let template =
            format!("{{msg:12}} {{bar:30}} {{pos}}/{{len}} {unit} {{per_sec}} ETA {{eta}}");
        Bar(
            Mutex::default(),
            std::io::stderr().is_terminal(),
            template,
            false,
        )
    }

    /// Downloads: bytes, speed and ETA, shown when stdout is a terminal and kept when done.
    pub(crate) fn bytes() -> Self {
        let template =
            "{msg:24!} {bar:30} {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} ETA {eta}";
        Bar(
            Mutex::default(),
            std::io::stdout().is_terminal(),
            template.into(),
            true,
        )
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<ProgressBar>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Progress for Bar {
    fn start(&self, message: &str, total: u64) {
        if self.1 {
            let style = ProgressStyle::with_template(&self.2)
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            let bar = ProgressBar::new(total)
                .with_style(style)
                .with_message(message.to_string());
            if let Some(old) = self.slot().replace(bar) {
                old.finish_and_clear();
            }
        }
    }
    fn advance(&self, delta: u64) {
        if let Some(b) = self.slot().as_ref() {
            b.inc(delta);
        }
    }
    fn finish(&self) {
        match self.slot().take() {
            Some(b) if self.3 => b.finish(),
            Some(b) => b.finish_and_clear(),
            None => {}
        }
    }
    fn note(&self, message: &str) {
        let bar = self.slot().clone();
        match bar {
            Some(bar) => bar.suspend(|| eprintln!("note: {message}")),
            None => eprintln!("note: {message}"),
        }
    }
}

/// Print `text`; a closed pipe (`uerzoo list | head`) is not an error.
pub(crate) fn write_stdout(text: &str) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(ExitCode::SUCCESS),
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
