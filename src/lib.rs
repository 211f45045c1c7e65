//! libwarden: file integrity monitoring for the places shared libraries
//! come from. ARCHITECTURE.md draws the layers; imports point down them:
//!
//! - app: `cli`, `config`, `commands`
//! - engines: `pipeline` (snapshot + judge), `watch`, `bench`
//! - judges: `diff`, `audit`, `provenance`, `selfcheck`
//! - baseline and output: `baseline`, `output`
//! - collect: `searchpaths`, `scan`, `inspect`, `winreg`
//! - model and formats: `record`, `finding`, `error`, `rootfs`, `formats`
//! - platform: `sys`, `escape`, `timefmt`

pub mod audit;
pub mod baseline;
pub mod bench;
pub mod cli;
pub mod commands;
pub mod config;
pub mod diff;
pub mod error;
pub mod escape;
pub mod facts;
pub mod finding;
pub mod formats;
pub mod input;
pub mod inspect;
pub mod output;
pub mod pipeline;
pub mod provenance;
pub mod record;
pub mod rootfs;
pub mod scan;
pub mod searchpaths;
pub mod selfcheck;
pub mod sys;
pub mod timefmt;
pub mod watch;
pub mod winreg;

use cli::{Cli, Command};
use config::Config;
use error::Result;

/// Runs one parsed command line; returns the exit code.
pub fn run(cli: &Cli) -> Result<i32> {
    commands::mark_start();
    output::messages::set_quiet(cli.global.quiet);
    // Resolved per command: keygen needs no baseline location at all.
    let settings = || Config::resolve(&cli.global);
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
            unsigned,
            package_updates,
            paths,
        } => commands::update::run(
            &settings()?,
            *paranoid,
            sign_with.as_deref(),
            *unsigned,
            *package_updates,
            paths,
        ),
        Command::Paths => commands::paths::run(&settings()?),
        Command::Keygen { dir } => commands::keygen::run(dir),
        Command::Export { sign_with, output } => {
            commands::export::run(&settings()?, sign_with.as_deref(), output.as_deref())
        }
        Command::Audit => commands::audit::run(&settings()?),
        Command::Watch(args) => commands::watch::run(&settings()?, args),
        Command::Bench(args) => commands::bench::run(&settings()?, args, &cli.global),
        Command::Generate { what, dir } => commands::generate::run(*what, dir),
    }
}
