//! `uerzoo completions SHELL`: the shell's completion script on stdout (clap_complete).

use clap::CommandFactory;
use clap_complete::Shell;
use std::process::ExitCode;

/// Print the completion script for a shell (subcommands, options, their values).
///
/// Load it for this shell session, or save it where the shell looks on start.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    source <(uerzoo completions bash)                       # bash, this session\n  \
    uerzoo completions bash > ~/.local/share/bash-completion/completions/uerzoo\n  \
    uerzoo completions zsh > ~/.zfunc/_uerzoo                # with fpath+=(~/.zfunc) before compinit\n  \
    uerzoo completions fish > ~/.config/fish/completions/uerzoo.fish\n  \
    uerzoo completions powershell >> $PROFILE")]
pub struct Args {
    /// The shell: bash, zsh, fish, powershell (or elvish).
    #[arg(value_name = "SHELL")]
    shell: Shell,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut cmd = crate::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "uerzoo", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
