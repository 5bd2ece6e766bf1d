//! The command line. One file per subcommand: clap `Args` (doc comments are the `--help`)
//! plus a `run` that builds options, calls the library once and prints. This file holds
//! what they share: the dispatch, `--device`, printing to stdout, tables and progress bars.
//! Exit codes are decided only in the CLI (`src/main.rs` reports errors).

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

/// Runs `command`: its options to the library, the result printed.
pub fn run(command: crate::Command) -> anyhow::Result<ExitCode> {
    use crate::Command;
    match command {
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
    }
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

/// What a file written beside an output is made from.
pub(crate) enum Companion {
    /// The user's file, copied.
    File(std::path::PathBuf),
    /// Text made for this output: a registry entry's config, or a config with the training
    /// options added. Written straight to its place; it never exists under another name.
    Made(String),
}

impl From<std::path::PathBuf> for Companion {
    fn from(path: std::path::PathBuf) -> Self {
        Companion::File(path)
    }
}

/// Copies the UER config and the vocabulary next to a written `.bin` (as `uer_config.json`
/// and `vocab.txt` / `spiece.model`), so that every command opens the output by its path
/// alone. A folder file that is already there with the same bytes (or an HF `config.json`)
/// is left alone; one with other bytes (another model written into the same folder) is not
/// touched either, and this output gets its own companion (`OUT.bin.uer_config.json`, see
/// [`uerzoo::model::open::companion`]), which opening `OUT.bin` reads first. Each file is
/// written through [`uerzoo::output::Partial`], so an interrupted copy leaves nothing.
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

pub(crate) fn write_beside(
    output: &std::path::Path,
    config: Option<Companion>,
    vocab: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let dir = uerzoo::output::parent_dir(output);
    let vocab_name = if vocab
        .as_deref()
        .is_some_and(|p| p.extension().is_some_and(|e| e == "model"))
    {
        "spiece.model"
    } else {
        "vocab.txt"
    };
    let has = |path: &std::path::Path, bytes: &[u8]| std::fs::read(path).is_ok_and(|b| b == bytes);
    let vocab = vocab.map(Companion::File);
    for (from, name) in [(config, "uer_config.json"), (vocab, vocab_name)] {
        let Some(from) = from else { continue };
        let bytes = match &from {
            Companion::File(p) => {
                std::fs::read(p).with_context(|| format!("reading {}", p.display()))?
            }
            Companion::Made(text) => text.clone().into_bytes(),
        };
        let shared = dir.join(name);
        let own = uerzoo::model::open::companion(output, name);
        let hf_config = name == "uer_config.json" && dir.join("config.json").exists();
        let to = if !shared.exists() && !hf_config {
            shared
        } else if has(&shared, &bytes) || (name == "uer_config.json" && !shared.exists()) {
            continue;
        } else {
            own
        };
        if matches!(&from, Companion::File(p) if *p == to) || has(&to, &bytes) {
            continue;
        }
        write_atomic(&bytes, &to).with_context(|| match &from {
            Companion::File(p) => format!("copying {} to {}", p.display(), to.display()),
            Companion::Made(_) => format!("writing {}", to.display()),
        })?;
        match &from {
            Companion::File(p) => println!("wrote {} (copy of {})", to.display(), p.display()),
            Companion::Made(_) => println!("wrote {}", to.display()),
        }
    }
    Ok(())
}

/// Writes `bytes` to `to` through a temporary beside it, then renames.
fn write_atomic(bytes: &[u8], to: &std::path::Path) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = uerzoo::output::Partial::new_in(uerzoo::output::parent_dir(to))?;
    tmp.write_all(bytes)?;
    Ok(tmp.persist(to, true)?)
}
