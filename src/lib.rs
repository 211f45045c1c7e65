//! libwarden: file integrity monitoring for the places shared libraries
//! come from. See DESIGN.md for the data flow: search paths → walk →
//! inspect → records → baseline store / diff → findings → reporters.

pub mod bench;
pub mod cli;
pub mod commands;
pub mod config;
pub mod diff;
pub mod error;
pub mod escape;
pub mod finding;
pub mod inspect;
pub mod ldconf;
pub mod record;
pub mod report;
pub mod rootfs;
pub mod scan;
pub mod searchpaths;
pub mod settings;
pub mod store;

use cli::{Cli, Command};
use error::Result;
use settings::Settings;

/// Runs one parsed command line; returns the exit code.
pub fn run(cli: &Cli) -> Result<i32> {
    let s = Settings::resolve(&cli.global)?;
    match &cli.command {
        Command::Init { force } => commands::init::run(&s, *force),
        Command::Check { paranoid } => commands::check::run(&s, *paranoid),
        Command::Update { paranoid, paths } => commands::update::run(&s, *paranoid, paths),
        Command::Paths => commands::paths::run(&s),
        Command::Bench(args) => commands::bench::run(&s, args, &cli.global),
    }
}
