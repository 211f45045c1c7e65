//! Signals without async-signal-safety worries: SIGTERM, SIGINT and SIGHUP
//! are blocked in every thread (before any is spawned) and one thread takes
//! them with `sigwait`, turning each into a message for the engine.
//! On Windows the console control events stand in: Ctrl+C is SIGINT,
//! Ctrl+Break, closing the console, logoff and shutdown are SIGTERM; there
//! is no SIGHUP (`update` is picked up by the generation check anyway).
//! SIGTERM and SIGINT also arm a backstop: if the engine has not ended the
//! process within [`BACKSTOP`] (it may be deep in a rescan), this thread
//! ends it, so a stop never takes more than a second.

use std::time::Duration;

use crossbeam_channel::Sender;

use crate::error::code;

/// How long the engine gets to exit on its own.
pub const BACKSTOP: Duration = Duration::from_millis(900);

/// A signal, as a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ctl {
    /// SIGTERM: exit 0 (a requested stop is a clean end for a service).
    Term,
    /// SIGINT: exit 130 (interrupted, CONTRACT.md).
    Int,
    /// SIGHUP: reload the baseline.
    Hup,
}

impl Ctl {
    pub fn exit_code(self) -> i32 {
        match self {
            Ctl::Term | Ctl::Hup => code::CLEAN,
            Ctl::Int => code::INTERRUPTED,
        }
    }
}

/// The blocked set. Call before spawning any thread.
#[cfg(unix)]
pub struct Blocked(libc::sigset_t);

#[cfg(unix)]
pub fn block() -> Blocked {
    // SAFETY: the set is initialised by sigemptyset before use; the calls
    // only read and write it and the calling thread's mask.
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        Blocked(set)
    }
}

/// Starts the thread that waits for the blocked signals.
#[cfg(unix)]
pub fn spawn(blocked: Blocked, tx: Sender<Ctl>) -> std::io::Result<()> {
    let set = blocked.0;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let mut sig: libc::c_int = 0;
            // SAFETY: set is a valid, initialised signal set.
            if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                continue;
            }
            let ctl = match sig {
                libc::SIGTERM => Ctl::Term,
                libc::SIGINT => Ctl::Int,
                libc::SIGHUP => Ctl::Hup,
                _ => continue,
            };
            let _ = tx.send(ctl);
            if ctl != Ctl::Hup {
                std::thread::sleep(BACKSTOP);
                std::process::exit(ctl.exit_code());
            }
        })
        .map(|_| ())
}

/// Nothing to block on Windows: control events arrive on their own thread.
#[cfg(windows)]
pub struct Blocked;

#[cfg(windows)]
pub fn block() -> Blocked {
    Blocked
}

#[cfg(windows)]
static CTL_TX: std::sync::OnceLock<Sender<Ctl>> = std::sync::OnceLock::new();

#[cfg(windows)]
#[link(name = "kernel32")]
extern "system" {
    fn SetConsoleCtrlHandler(
        handler: Option<unsafe extern "system" fn(u32) -> i32>,
        add: i32,
    ) -> i32;
}

/// Runs on a thread Windows creates for the event; returning TRUE says it
/// is handled (for close, logoff and shutdown Windows ends the process
/// when the handler returns, so it waits for the engine, up to the
/// backstop).
#[cfg(windows)]
unsafe extern "system" fn on_ctrl(event: u32) -> i32 {
    const CTRL_C_EVENT: u32 = 0;
    let ctl = if event == CTRL_C_EVENT {
        Ctl::Int
    } else {
        Ctl::Term
    };
    if let Some(tx) = CTL_TX.get() {
        let _ = tx.send(ctl);
    }
    std::thread::sleep(BACKSTOP);
    std::process::exit(ctl.exit_code());
}

/// Installs the console control handler.
#[cfg(windows)]
pub fn spawn(_blocked: Blocked, tx: Sender<Ctl>) -> std::io::Result<()> {
    let _ = CTL_TX.set(tx);
    // SAFETY: registers a handler with the signature Windows expects.
    if unsafe { SetConsoleCtrlHandler(Some(on_ctrl), 1) } == 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
