//! `service install | uninstall | run`: `watch` as a Windows service. The
//! command line the Service Control Manager will start is built here from
//! the flags given to `install` (paths made absolute: a service starts in
//! System32); the SCM calls and the status protocol are in
//! [`crate::service`]. Elsewhere the command is a usage error that points
//! to the systemd units.

use std::ffi::OsString;
use std::path::Path;

use crate::cli::{Global, ServiceCmd, WatchArgs};
use crate::error::{Error, Result};

/// What non-Windows builds say.
pub const WINDOWS_ONLY: &str = "service: Windows only; on Linux use the systemd units in dist/";

pub fn run(global: &Global, cmd: &ServiceCmd) -> Result<i32> {
    #[cfg(not(windows))]
    {
        let _ = (global, cmd);
        Err(Error::Usage(WINDOWS_ONLY.into()))
    }
    #[cfg(windows)]
    windows::run(global, cmd)
}

fn absolute(p: &Path) -> Result<OsString> {
    std::path::absolute(p)
        .map(|a| a.into_os_string())
        .map_err(|e| Error::io("resolve", p, e))
}

fn duration(d: std::time::Duration) -> OsString {
    // humantime writes "1h 30m"; one argument without spaces reads back.
    humantime::format_duration(d)
        .to_string()
        .replace(' ', "")
        .into()
}

/// The arguments the service is started with: the global options that
/// shape the watch, then `service run` and the watch options. `db` is the
/// baseline the installing administrator's own commands resolve to: named
/// explicitly, because the service account's `%ProgramData%` need not be
/// the administrator's (under Wine it is not).
pub fn launch_arguments(
    global: &Global,
    db: Option<&Path>,
    args: &WatchArgs,
) -> Result<Vec<OsString>> {
    let mut v: Vec<OsString> = Vec::new();
    let path = |flag: &str, p: &Option<std::path::PathBuf>, v: &mut Vec<OsString>| {
        if let Some(p) = p {
            v.push(flag.into());
            v.push(absolute(p)?);
        }
        Ok::<(), Error>(())
    };
    path("--config", &global.config, &mut v)?;
    path("--root", &global.root, &mut v)?;
    path(
        "--db",
        &global.db.clone().or(db.map(Path::to_path_buf)),
        &mut v,
    )?;
    path("--verify-with", &global.verify_with, &mut v)?;
    if let Some(n) = global.threads {
        v.extend(["--threads".into(), n.to_string().into()]);
    }
    if let Some(n) = global.io_threads {
        v.extend(["--io-threads".into(), n.to_string().into()]);
    }
    if global.allow_other_root {
        v.push("--allow-other-root".into());
    }
    v.extend(["service".into(), "run".into()]);
    if let Some(d) = args.rescan_interval {
        v.extend(["--rescan-interval".into(), duration(d)]);
    }
    v.extend(["--debounce".into(), duration(args.debounce)]);
    path("--output", &args.output, &mut v)?;
    for t in &args.syslog {
        v.extend(["--syslog".into(), t.into()]);
    }
    if args.stdout {
        v.push("--stdout".into());
    }
    Ok(v)
}

#[cfg(windows)]
mod windows {
    use super::*;
    use crate::cli::{Cli, Command};
    use crate::config::Config;
    use crate::output::messages;
    use crate::watch::signals::Ctl;

    pub fn run(global: &Global, cmd: &ServiceCmd) -> Result<i32> {
        match cmd {
            ServiceCmd::Install(args) => {
                let exe = std::env::current_exe()
                    .map_err(|e| Error::Internal(format!("the running executable: {e}")))?;
                // Refuse now what the service would fail on at every start.
                let s = Config::resolve(global)?;
                let launch = launch_arguments(global, Some(&s.baseline.db), args)?;
                if let Some(w) = crate::service::install(&exe, launch)? {
                    messages::warning(&format!("libwarden service: warning: {w}"));
                }
                messages::status(&format!(
                    "libwarden service: installed {} (automatic start, LocalSystem, restarted after a crash); start it with `sc start {}`",
                    crate::service::NAME,
                    crate::service::NAME
                ));
                Ok(0)
            }
            ServiceCmd::Uninstall => {
                crate::service::uninstall()?;
                messages::status("libwarden service: uninstalled");
                Ok(0)
            }
            ServiceCmd::Run(_) => crate::service::dispatch(body),
        }
    }

    /// The service's work: the command line it was started with, parsed
    /// again (the SCM calls in on its own thread), then the watcher with
    /// the event log as a sink and the SCM's stop as its stop.
    fn body(ctl: crossbeam_channel::Receiver<Ctl>, running: &dyn Fn()) -> Result<i32> {
        let cli = Cli::try_parse_from(std::env::args_os())
            .map_err(|e| Error::Usage(format!("the service's command line: {e}")))?;
        let Command::Service(ServiceCmd::Run(args)) = &cli.command else {
            return Err(Error::Usage(
                "the service's command line is not `service run`".into(),
            ));
        };
        messages::set_quiet(cli.global.quiet);
        let s = Config::resolve(&cli.global)?;
        crate::commands::watch::engine(&s, args, true, ctl, running)
    }

    use clap::Parser;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[OsString]) -> Cli {
        let mut all: Vec<OsString> = vec!["libwarden".into()];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).unwrap()
    }

    #[test]
    fn the_launch_arguments_parse_back_to_the_same_watch() {
        let cli = parse(&[
            "--config".into(),
            "rel.toml".into(),
            "--db".into(),
            "/var/db".into(),
            "--threads".into(),
            "3".into(),
            "service".into(),
            "install".into(),
            "--rescan-interval".into(),
            "1h30m".into(),
            "--debounce".into(),
            "1.5s".into(),
            "--output".into(),
            "out.jsonl".into(),
            "--syslog".into(),
            "udp://127.0.0.1:514".into(),
        ]);
        let Command::Service(ServiceCmd::Install(args)) = &cli.command else {
            panic!("{cli:?}")
        };
        let launch = launch_arguments(&cli.global, Some(Path::new("/default/db")), args).unwrap();
        let back = parse(&launch);
        let Command::Service(ServiceCmd::Run(run)) = &back.command else {
            panic!("{back:?}")
        };
        assert_eq!(run.rescan_interval, args.rescan_interval);
        assert_eq!(run.debounce, std::time::Duration::from_millis(1500));
        assert_eq!(run.syslog, args.syslog);
        // Relative paths are made absolute: the service starts elsewhere.
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(run.output.as_deref(), Some(cwd.join("out.jsonl").as_path()));
        assert_eq!(
            back.global.config.as_deref(),
            Some(cwd.join("rel.toml").as_path())
        );
        assert_eq!(
            back.global.db.as_deref(),
            Some(std::path::Path::new("/var/db"))
        );
        assert_eq!(back.global.threads, Some(3));
    }

    #[test]
    fn without_db_the_resolved_baseline_is_named() {
        let cli = parse(&["service".into(), "install".into()]);
        let Command::Service(ServiceCmd::Install(args)) = &cli.command else {
            panic!("{cli:?}")
        };
        let launch = launch_arguments(&cli.global, Some(Path::new("/resolved/db")), args).unwrap();
        let back = parse(&launch);
        assert_eq!(back.global.db.as_deref(), Some(Path::new("/resolved/db")));
        assert!(matches!(back.command, Command::Service(ServiceCmd::Run(_))));
        assert_eq!(back.global.config, None);
    }
}
