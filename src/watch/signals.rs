//! Signals without async-signal-safety worries: SIGTERM, SIGINT and SIGHUP
//! are blocked in every thread (before any is spawned) and one thread takes
//! them with `sigwait`, turning each into a message for the engine.
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
pub struct Blocked(libc::sigset_t);

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
