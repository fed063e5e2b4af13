//! What a shell and `man` need, generated from the clap definitions so they
//! never drift from the real flags: `authpulse completions SHELL` prints a
//! completion script, `authpulse man` prints the `authpulse(1)` page (with
//! `--out DIR`, one page per subcommand too, `authpulse-validate(1)` …).
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;

pub const COMPLETIONS_EXAMPLE: &str = "\
Example:
  authpulse completions bash > /etc/bash_completion.d/authpulse
  authpulse completions zsh > \"${fpath[1]}/_authpulse\"
  authpulse completions fish > ~/.config/fish/completions/authpulse.fish

Exit status: 0 printed, 2 unknown shell.";

pub const MAN_EXAMPLE: &str = "\
Example:
  authpulse man | man -l -
  authpulse man --out /usr/local/share/man/man1

Exit status: 0 written, 1 the directory can't be written.";

pub fn completions<C: CommandFactory>(shell: clap_complete::Shell) -> ExitCode {
    let mut cmd = C::command();
    clap_complete::generate(shell, &mut cmd, "authpulse", &mut std::io::stdout());
    ExitCode::SUCCESS
}

pub fn man<C: CommandFactory>(out: Option<&Path>) -> anyhow::Result<ExitCode> {
    let cmd = C::command().name("authpulse");
    match out {
        None => {
            clap_mangen::Man::new(cmd)
                .render(&mut std::io::stdout())
                .context("cannot write the man page")?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("cannot write man pages to {}", dir.display()))?;
            println!("wrote man pages to {}", dir.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
