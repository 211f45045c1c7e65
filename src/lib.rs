//! libwarden: file integrity monitoring for the places shared libraries
//! come from. ARCHITECTURE.md draws the layers; imports point down them:
//!
//! - app: `cli`, `config`, `commands`
//! - engines: `pipeline` (snapshot + judge), `watch`, `guard`, `bench`
//! - judges: `diff`, `audit`, `provenance`, `selfcheck`, `acknowledge`
//! - baseline and output: `baseline`, `output`, `allowlist`
//! - collect: `searchpaths`, `scan`, `inspect`, `winreg`
//! - model and formats: `record`, `finding`, `error`, `rootfs`, `formats`
//! - platform: `sys`, `escape`, `timefmt`

pub mod acknowledge;
pub mod allowlist;
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
pub mod fasthash;
pub mod finding;
pub mod formats;
#[cfg(target_os = "linux")]
pub mod guard;
pub mod image;
pub mod imagejudge;
pub mod input;
pub mod inspect;
pub mod largest;
pub mod md5lanes;
pub mod output;
pub mod pipeline;
pub mod pkgdigest;
pub mod provenance;
pub mod record;
pub mod rootfs;
pub mod scan;
pub mod searchpaths;
pub mod selfcheck;
#[cfg(windows)]
pub mod service;
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
    if cli.global.format.is_allowlist() && !matches!(cli.command, Command::Export { .. }) {
        return Err(error::Error::Usage(
            "--format fapolicyd|auditd|applocker is for `export` only".into(),
        ));
    }
    if let Some(image) = &cli.global.image {
        return match &cli.command {
            Command::Paths => commands::image::paths(&settings()?, image),
            Command::Audit => commands::image::audit(&settings()?, image),
            Command::Init { force, sign_with } => commands::image::init(
                &settings()?,
                image,
                cli.global.name.as_deref(),
                *force,
                sign_with.as_deref(),
            ),
            Command::Check {
                against: None, all, ..
            } => commands::image::check(&settings()?, image, cli.global.name.as_deref(), *all),
            Command::Update {
                paranoid,
                sign_with,
                unsigned,
                package_updates,
                dry_run,
                yes,
                syslog,
                paths,
            } => commands::imageops::update(
                &settings()?,
                image,
                cli.global.name.as_deref(),
                &commands::update::Options {
                    paranoid: *paranoid,
                    sign_with: sign_with.as_deref(),
                    unsigned: *unsigned,
                    package_updates: *package_updates,
                    dry_run: *dry_run,
                    yes: *yes,
                    syslog,
                },
                paths,
            ),
            Command::Accept(args) => {
                commands::imageops::accept(&settings()?, image, cli.global.name.as_deref(), args)
            }
            Command::Export { sign_with, output } => commands::imageops::export(
                &settings()?,
                Some(image),
                cli.global.name.as_deref(),
                sign_with.as_deref(),
                output.as_deref(),
                cli.global.format,
            ),
            Command::Check {
                against: Some(_), ..
            } => Err(error::Error::Usage(
                "check --image compares with the image's own baseline (--name), not --against"
                    .into(),
            )),
            _ => Err(error::Error::Usage(
                "--image works with paths, audit, init, check, update, accept and export".into(),
            )),
        };
    }
    if let Some(name) = &cli.global.name {
        // Only an image baseline has a name; `export --name` reads one
        // without the image at hand.
        return match &cli.command {
            Command::Export { sign_with, output } => commands::imageops::export(
                &settings()?,
                None,
                Some(name),
                sign_with.as_deref(),
                output.as_deref(),
                cli.global.format,
            ),
            _ => Err(error::Error::Usage(
                "--name names an image baseline: give --image too (or use `export --name`)".into(),
            )),
        };
    }
    match &cli.command {
        Command::Init { force, sign_with } => {
            commands::init::run(&settings()?, *force, sign_with.as_deref())
        }
        Command::Check {
            paranoid,
            all,
            against,
        } => commands::check::run(&settings()?, *paranoid, *all, against.as_deref()),
        Command::Update {
            paranoid,
            sign_with,
            unsigned,
            package_updates,
            dry_run,
            yes,
            syslog,
            paths,
        } => commands::update::run(
            &settings()?,
            &commands::update::Options {
                paranoid: *paranoid,
                sign_with: sign_with.as_deref(),
                unsigned: *unsigned,
                package_updates: *package_updates,
                dry_run: *dry_run,
                yes: *yes,
                syslog,
            },
            paths,
        ),
        Command::Accept(args) => commands::accept::run(&settings()?, args),
        Command::Paths => commands::paths::run(&settings()?),
        Command::Keygen { dir } => commands::keygen::run(dir),
        Command::Export { sign_with, output } => commands::export::run(
            &settings()?,
            sign_with.as_deref(),
            output.as_deref(),
            cli.global.format,
        ),
        Command::Audit => commands::audit::run(&settings()?),
        Command::Images => commands::imageops::list(&settings()?),
        Command::Watch(args) => commands::watch::run(&settings()?, args),
        Command::Service(cmd) => commands::service::run(&cli.global, cmd),
        Command::Bench(args) => commands::bench::run(&settings()?, args, &cli.global),
        Command::Guard(args) => commands::guard::run(&settings()?, args),
        Command::Generate { what, dir } => commands::generate::run(*what, dir),
    }
}
