//! The notify callback: the first stage of the pipeline. It runs on
//! notify's own thread and must never block, so it only filters (open and
//! access events are noise), then `try_send`s to the bounded channel. A full
//! channel is never a silent drop: the time is recorded in the [`Gate`] and
//! the engine reports a monitoring gap and rescans. notify's rescan flag
//! (an inotify queue overflow) is handled before any per-path logic.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Sender, TrySendError};
use notify::{Event, EventKind};

/// Test hook: events for file names starting with this value are dropped
/// and reported as an inotify queue overflow, as if the kernel had lost
/// them. Lets a test prove the gap is reported and the rescan finds what
/// the lost events would have shown.
pub const ENV_TEST_DROP: &str = "LIBWARDEN_TEST_DROP_EVENTS";

/// What the callback hands the engine.
#[derive(Debug)]
pub enum Msg {
    /// Paths (on the host) that something happened to.
    Paths(Vec<PathBuf>),
    /// The kernel's queue overflowed: events after `since` may be lost.
    Overflow { since: SystemTime, at: SystemTime },
    /// An error from the watcher.
    Error(String),
}

/// Shared between the callback and the engine: when events were last
/// handed on, and when the channel was first found full (0: never).
#[derive(Default)]
pub struct Gate {
    last_delivered_ms: AtomicU64,
    full_since_ms: AtomicU64,
}

impl Gate {
    /// Takes the time the channel was first found full, if it was.
    pub fn take_full(&self) -> Option<SystemTime> {
        match self.full_since_ms.swap(0, Ordering::AcqRel) {
            0 => None,
            ms => Some(from_ms(ms)),
        }
    }

    fn mark_full(&self, now: SystemTime) {
        let _ = self.full_since_ms.compare_exchange(
            0,
            to_ms(now).max(1),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    fn last_delivered(&self, or: SystemTime) -> SystemTime {
        match self.last_delivered_ms.load(Ordering::Acquire) {
            0 => or,
            ms => from_ms(ms),
        }
    }
}

fn to_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// The event handler to give notify. `started` is the lower bound of a gap
/// when no event was delivered yet.
pub fn handler(
    tx: Sender<Msg>,
    gate: Arc<Gate>,
    started: SystemTime,
) -> impl FnMut(notify::Result<Event>) + Send + 'static {
    let drop_prefix = std::env::var_os(ENV_TEST_DROP).filter(|p| !p.is_empty());
    move |res| {
        let now = SystemTime::now();
        let msg = match res {
            Ok(ev) if ev.need_rescan() => overflow(&gate, started, now),
            Ok(ev) if matches!(ev.kind, EventKind::Access(_)) => return,
            Ok(ev) if ev.paths.is_empty() => return,
            Ok(ev) => {
                if let Some(prefix) = &drop_prefix {
                    use crate::sys::OsStrExt;
                    let hit = ev.paths.iter().any(|p| {
                        p.file_name()
                            .is_some_and(|n| n.as_bytes().starts_with(prefix.as_bytes()))
                    });
                    if hit {
                        let msg = overflow(&gate, started, now);
                        send(&tx, &gate, msg, now);
                        return;
                    }
                }
                Msg::Paths(ev.paths)
            }
            Err(e) => Msg::Error(match e.kind {
                notify::ErrorKind::MaxFilesWatch => format!(
                    "inotify watch limit reached (fs.inotify.max_user_watches){}",
                    paths_suffix(&e.paths)
                ),
                _ => e.to_string(),
            }),
        };
        let delivered = matches!(msg, Msg::Paths(_));
        if send(&tx, &gate, msg, now) && delivered {
            gate.last_delivered_ms.store(to_ms(now), Ordering::Release);
        }
    }
}

fn overflow(gate: &Gate, started: SystemTime, now: SystemTime) -> Msg {
    Msg::Overflow {
        since: gate.last_delivered(started),
        at: now,
    }
}

fn paths_suffix(paths: &[PathBuf]) -> String {
    match paths.first() {
        Some(p) => format!(": {}", p.display()),
        None => String::new(),
    }
}

/// Never blocks. False when the message could not be queued (the gate
/// then holds the time, for the engine to report as a gap).
fn send(tx: &Sender<Msg>, gate: &Gate, msg: Msg, now: SystemTime) -> bool {
    match tx.try_send(msg) {
        Ok(()) => true,
        Err(TrySendError::Full(_)) => {
            gate.mark_full(now);
            false
        }
        Err(TrySendError::Disconnected(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{AccessKind, CreateKind};

    #[test]
    fn a_full_channel_is_recorded_not_lost_silently() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let gate = Arc::new(Gate::default());
        let mut h = handler(tx, gate.clone(), SystemTime::now());
        let ev = |p: &str| Ok(Event::new(EventKind::Create(CreateKind::File)).add_path(p.into()));
        h(ev("/a"));
        assert!(gate.take_full().is_none());
        h(ev("/b"));
        assert!(gate.take_full().is_some());
        assert!(gate.take_full().is_none());
        assert!(matches!(rx.try_recv(), Ok(Msg::Paths(p)) if p == [PathBuf::from("/a")]));
    }

    #[test]
    fn access_is_ignored_and_rescan_comes_first() {
        let (tx, rx) = crossbeam_channel::bounded(8);
        let gate = Arc::new(Gate::default());
        let mut h = handler(tx, gate, SystemTime::now());
        h(Ok(
            Event::new(EventKind::Access(AccessKind::Any)).add_path("/a".into())
        ));
        assert!(rx.try_recv().is_err());
        h(Ok(
            Event::new(EventKind::Other).set_flag(notify::event::Flag::Rescan)
        ));
        assert!(matches!(rx.try_recv(), Ok(Msg::Overflow { .. })));
    }
}
