//! `uerzoo man`: the man page (clap_mangen), on stdout or one page per subcommand in a folder.

use anyhow::Context;
use clap::CommandFactory;
use std::path::PathBuf;
use std::process::ExitCode;

/// Print the man page of uerzoo (roff), or write one page per subcommand with --dir.
///
/// The page on stdout is `uerzoo(1)`: every option of the top level and the list of
/// subcommands. `--dir` writes `uerzoo.1` and `uerzoo-SUBCOMMAND.1` for each subcommand
/// (their options in full), ready for a `man1` folder on MANPATH.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    uerzoo man | man -l -\n  \
    uerzoo man --dir ~/.local/share/man/man1    # then: man uerzoo-fill-mask")]
pub struct Args {
    /// Write uerzoo.1 and uerzoo-SUBCOMMAND.1 into this folder (made if missing).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // NAME reads `uerzoo - ABOUT`: the about without the name `--help` starts it with.
    let cmd = crate::Cli::command().about("the UER-py Chinese model zoo without Python");
    match args.dir {
        None => clap_mangen::Man::new(cmd)
            .render(&mut std::io::stdout())
            .context("writing the man page")?,
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(cmd, &dir)
                .with_context(|| format!("writing man pages into {}", dir.display()))?;
            println!("wrote the man pages into {}", dir.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
