//! libwarden: file integrity monitoring for the places shared libraries
//! come from. See DESIGN.md for the data flow: search paths → walk →
//! inspect → records → baseline store / diff → findings → reporters.

pub mod audit;
pub mod bench;
pub mod cli;
pub mod commands;
pub mod config;
pub mod diff;
pub mod elf;
pub mod error;
pub mod escape;
pub mod facts;
pub mod finding;
pub mod inspect;
pub mod ldconf;
pub mod manifest;
pub mod provenance;
pub mod record;
pub mod report;
pub mod rollback;
pub mod rootfs;
pub mod scan;
pub mod searchpaths;
pub mod selfcheck;
pub mod settings;
pub mod signing;
pub mod store;
pub mod sys;
pub mod timefmt;
pub mod trust;
pub mod watch;
pub mod winreg;

use cli::{Cli, Command};
use error::Result;
use settings::Settings;

/// Runs one parsed command line; returns the exit code.
pub fn run(cli: &Cli) -> Result<i32> {
    // Resolved per command: keygen needs no baseline location at all.
    let settings = || Settings::resolve(&cli.global);
    match &cli.command {
        Command::Init { force, sign_with } => {
            commands::init::run(&settings()?, *force, sign_with.as_deref())
        }
        Command::Check { paranoid, against } => {
            commands::check::run(&settings()?, *paranoid, against.as_deref())
        }
        Command::Update {
            paranoid,
            sign_with,
            package_updates,
            paths,
        } => commands::update::run(
            &settings()?,
            *paranoid,
            sign_with.as_deref(),
            *package_updates,
            paths,
        ),
        Command::Paths => commands::paths::run(&settings()?),
        Command::Keygen { dir } => commands::keygen::run(dir, cli.global.quiet),
        Command::Export { sign_with, output } => {
            commands::export::run(&settings()?, sign_with.as_deref(), output.as_deref())
        }
        Command::Audit => commands::audit::run(&settings()?),
        Command::Watch(args) => commands::watch::run(&settings()?, args),
        Command::Bench(args) => commands::bench::run(&settings()?, args, &cli.global),
    }
}
