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

/// How often the process says it is running (see [`Gate::beat`]).
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A heartbeat this much later than the one before means the process did
/// not run in between (SIGSTOP, a suspended machine, a starved host).
const STALL: Duration = Duration::from_secs(3);
/// How long after a stall an overflow is taken to come from it: the kernel
/// hands its overflow over as soon as the process reads again.
const STALL_RELEVANT: Duration = Duration::from_secs(60);

/// Shared between the callback and the engine: when events were last
/// handed on, when the channel was first found full (0: never), and when
/// the process was last known to be running.
#[derive(Default)]
pub struct Gate {
    last_delivered_ms: AtomicU64,
    full_since_ms: AtomicU64,
    /// The last heartbeat.
    beat_ms: AtomicU64,
    /// The last stall: the heartbeat before it, and the one that ended it.
    stall_from_ms: AtomicU64,
    stall_to_ms: AtomicU64,
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

    /// The process is running at `now`. Called every [`HEARTBEAT`] by
    /// [`spawn_heartbeat`] and by the callback before it handles anything,
    /// so whichever thread runs first after a stop sees the stall.
    pub fn beat(&self, now: SystemTime) {
        let ms = to_ms(now);
        let prev = self.beat_ms.fetch_max(ms, Ordering::AcqRel);
        if prev != 0 && ms > prev + STALL.as_millis() as u64 {
            self.stall_to_ms.store(ms, Ordering::Release);
            self.stall_from_ms.store(prev, Ordering::Release);
        }
    }

    /// The lower bound of a gap found at `now`: the last moment events were
    /// known to be read, which is before any stall that just ended (events
    /// read after a stop were queued during it, so their delivery time says
    /// nothing about when the kernel started losing them).
    fn gap_start(&self, started: SystemTime, now: SystemTime) -> SystemTime {
        let since = self.last_delivered(started);
        let (from, to) = (
            self.stall_from_ms.load(Ordering::Acquire),
            self.stall_to_ms.load(Ordering::Acquire),
        );
        if from != 0 && to_ms(now) <= to + STALL_RELEVANT.as_millis() as u64 {
            since.min(from_ms(from))
        } else {
            since
        }
    }
}

/// Starts the heartbeat thread (detached: it ends with the process).
pub fn spawn_heartbeat(gate: Arc<Gate>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("heartbeat".into())
        .spawn(move || loop {
            gate.beat(SystemTime::now());
            std::thread::sleep(HEARTBEAT);
        })
        .map(|_| ())
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
        gate.beat(now);
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
        since: gate.gap_start(started, now),
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
    fn an_overflow_after_a_stall_starts_before_the_stall() {
        let gate = Arc::new(Gate::default());
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        gate.beat(t0);
        // Stopped for a minute: events queued meanwhile are read (and
        // delivered) after it, then the overflow.
        let resumed = t0 + Duration::from_secs(60);
        gate.beat(resumed);
        gate.last_delivered_ms
            .store(to_ms(resumed), Ordering::Release);
        let Msg::Overflow { since, at } = overflow(&gate, t0, resumed) else {
            unreachable!()
        };
        assert_eq!((since, at), (t0, resumed));
        // Long after, an overflow is about what happened since delivery.
        let later = resumed + Duration::from_secs(3600);
        assert_eq!(gate.gap_start(t0, later), resumed);
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
