//! `generate man|complete-bash|complete-zsh|complete-fish DIR` (hidden):
//! man pages (`clap_mangen`) and shell completions (`clap_complete`) from
//! the clap definition itself, so they never drift from the flags. The
//! Debian package runs it at build time (`dist/deb/build`).

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;

use crate::cli::{Cli, Generate};
use crate::error::{Error, Result};

pub fn run(what: Generate, dir: &Path) -> Result<i32> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    let mut cmd = Cli::command();
    cmd.build();
    match what {
        Generate::Man => man_pages(&cmd, dir)?,
        Generate::CompleteBash => complete(clap_complete::Shell::Bash, dir)?,
        Generate::CompleteZsh => complete(clap_complete::Shell::Zsh, dir)?,
        Generate::CompleteFish => complete(clap_complete::Shell::Fish, dir)?,
    }
    Ok(0)
}

/// `libwarden.1`, then `libwarden-CMD.1` for every visible command.
fn man_pages(cmd: &clap::Command, dir: &Path) -> Result<()> {
    write_page(cmd.clone(), &dir.join("libwarden.1"))?;
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = format!("libwarden-{}", sub.get_name());
        // The page's NAME and SYNOPSIS say `libwarden-check`; the global
        // options are shown on each page, as they apply to each command.
        let page = sub
            .clone()
            .name(name.clone())
            .bin_name(format!("libwarden {}", sub.get_name()));
        write_page(page, &dir.join(format!("{name}.1")))?;
    }
    Ok(())
}

fn write_page(cmd: clap::Command, path: &Path) -> Result<()> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd)
        .section("1")
        .source(format!("libwarden {}", env!("CARGO_PKG_VERSION")))
        .manual("libwarden manual")
        .render(&mut buf)
        .map_err(|e| Error::io("render man page", path, e))?;
    write(path, &buf)
}

fn complete(shell: clap_complete::Shell, dir: &Path) -> Result<()> {
    let mut cmd = Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "libwarden", &mut buf);
    let name = match shell {
        clap_complete::Shell::Bash => "libwarden",
        clap_complete::Shell::Zsh => "_libwarden",
        clap_complete::Shell::Fish => "libwarden.fish",
        _ => "libwarden.completion",
    };
    write(&dir.join(name), &buf)
}

fn write(path: &Path, data: &[u8]) -> Result<()> {
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(data))
        .map_err(|e| Error::io("write", path, e))
}
