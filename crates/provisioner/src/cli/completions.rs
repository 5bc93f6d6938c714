//! `provisioner completions SHELL`: the completion script for bash, zsh or fish, on stdout.

use clap::{Args, CommandFactory, ValueEnum};

use super::{Cli, CliError};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  provisioner completions bash > /etc/bash_completion.d/provisioner\n  provisioner completions zsh > \"${fpath[1]}/_provisioner\"\n  provisioner completions fish > ~/.config/fish/completions/provisioner.fish"
)]
pub struct CompletionsArgs {
    /// The shell to write the script for.
    #[arg(value_enum)]
    pub shell: Shell,
}

pub fn run(args: CompletionsArgs) -> Result<(), CliError> {
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "provisioner", &mut script);
    super::doctor::write_stdout(&String::from_utf8_lossy(&script));
    Ok(())
}
