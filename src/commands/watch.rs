//! `watch`: realtime monitoring plus periodic rescans until SIGTERM (exit
//! 0) or SIGINT (exit 130). The machinery lives in [`crate::watch`].

use std::time::Duration;

use crate::cli::WatchArgs;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::output::sink::Sinks;
use crate::watch::{self, signals, Options};

/// Rescan interval when neither the flag nor the config sets one.
pub const DEFAULT_RESCAN: Duration = Duration::from_secs(3600);

pub fn run(s: &Config, args: &WatchArgs) -> Result<i32> {
    // Before any thread exists, so that every thread inherits the mask and
    // only the signal thread ever sees these signals.
    let blocked = signals::block();
    let (ctl_tx, ctl_rx) = crossbeam_channel::unbounded();
    signals::spawn(blocked, ctl_tx).map_err(|e| Error::Internal(format!("signal thread: {e}")))?;

    engine(s, args, s.eventlog, ctl_rx, &|| {})
}

/// The watcher with its stop messages from elsewhere (the signal thread,
/// or the Service Control Manager for `service run`); `ready` is called
/// once the sinks are open and the baseline is loaded, just before the
/// watch starts.
pub fn engine(
    s: &Config,
    args: &WatchArgs,
    eventlog: bool,
    ctl_rx: crossbeam_channel::Receiver<signals::Ctl>,
    ready: &dyn Fn(),
) -> Result<i32> {
    let opts = Options {
        rescan_interval: args
            .rescan_interval
            .or(s.rescan_interval)
            .unwrap_or(DEFAULT_RESCAN),
        debounce: args.debounce,
    };
    let sinks = Sinks::open_with(
        s.format,
        args.output.as_ref(),
        &args.syslog,
        eventlog,
        args.stdout,
    )?;
    // The baseline is read into memory and the store closed at once:
    // `check` and `update` keep working beside the watcher.
    let base = super::check::load_baseline(s)?;
    ready();
    watch::run(&s.plan, &s.baseline, opts, sinks, ctl_rx, base)
}
