//! `guard`: library loads judged against the baseline as they happen, until
//! SIGTERM (exit 0) or SIGINT (exit 130). The machinery lives in
//! [`crate::guard`] (Linux only).

use crate::cli::GuardArgs;
use crate::config::Config;
use crate::error::{Error, Result};

/// The test knob: each verdict is held this long before it is made, so a
/// test can make the verdict deadline pass on purpose. Not for production.
pub const TEST_DELAY_ENV: &str = "LIBWARDEN_GUARD_TEST_DELAY";

#[cfg(target_os = "linux")]
pub fn run(s: &Config, args: &GuardArgs) -> Result<i32> {
    use crate::cli::GuardScope;
    use crate::guard::{self, Mode, Options};
    use crate::output::sink::Sinks;
    use crate::sys::fanotify::Scope;
    use crate::watch::signals;

    // Before any thread exists (the baseline store starts some), so that
    // every thread inherits the mask and only the signal thread sees them.
    let blocked = signals::block();
    let mode = match (args.enforce, args.dry_run) {
        (_, true) => Mode::DryRun,
        (true, false) => Mode::Enforce,
        (false, false) => Mode::Monitor,
    };
    let test_delay = match std::env::var(TEST_DELAY_ENV) {
        Ok(v) => crate::timefmt::parse_duration(&v)
            .map_err(|e| Error::Usage(format!("{TEST_DELAY_ENV}: {e}")))?,
        Err(_) => std::time::Duration::ZERO,
    };
    // Checked before anything is marked: enforcement trusts the baseline
    // with the host's ability to load libraries.
    let base = super::check::load_baseline(s)?;
    if mode == Mode::Enforce && (base.meta.signature.is_none() || s.baseline.verify_key.is_none()) {
        return Err(Error::Usage(
            "guard --enforce needs a signed baseline, verified with --verify-with PUB (or the \
             config's baseline_pubkey): an unsigned allowlist could be anyone's"
                .into(),
        ));
    }
    let (ctl_tx, ctl_rx) = crossbeam_channel::unbounded();
    signals::spawn(blocked, ctl_tx).map_err(|e| Error::Internal(format!("signal thread: {e}")))?;
    let sinks = Sinks::open(s.format, args.output.as_ref(), &args.syslog, args.stdout)?;
    let opts = Options {
        mode,
        scope: match args.scope {
            GuardScope::Filesystem => Scope::Filesystem,
            GuardScope::Mount => Scope::Mount,
            GuardScope::Dirs => Scope::Dir,
        },
        deadline: args.verdict_timeout,
        queue: args.queue,
        workers: args.workers,
        allow: s.guard_allow.clone(),
        test_delay,
    };
    guard::run(&s.plan, &base, opts, sinks, ctl_rx)
}

#[cfg(not(target_os = "linux"))]
pub fn run(_s: &Config, _args: &GuardArgs) -> Result<i32> {
    Err(Error::Usage(
        "guard needs Linux (fanotify); on Windows, export --format applocker".into(),
    ))
}
