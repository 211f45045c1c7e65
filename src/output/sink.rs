//! Where the watcher's findings go: stdout (JSON Lines or the human line),
//! an append-only JSON Lines file, syslog. Each finding carries when it was
//! seen and what found it (an event, a rescan, the startup scan).
//!
//! Sinks never block each other, nor the engine: each has its own bounded
//! queue ([`QUEUE`]) and writer thread. A sink that cannot keep up (a TCP
//! syslog peer that stopped reading, a file on a stalled disk) loses what
//! does not fit in its queue, never silently: the other sinks and stderr
//! are told when it starts dropping, and when it has caught up it gets a
//! `monitoring_gap` record of its own saying how many findings it missed
//! between which times. A sink that fails is reported on stderr once per
//! failure streak and retried on the next finding; the others go on.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use serde_json::{json, Value};

use super::syslog::Syslog;
use crate::error::{Error, Result};
use crate::escape;
use crate::finding::{Finding, Kind, Severity};
use crate::output::{self, Format};

/// What noticed a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The scan at start-up (deviations that existed before the watch).
    Startup,
    /// A file-system event.
    Event,
    /// A periodic or gap-recovery rescan.
    Rescan,
    /// The short-interval check of directories that could not be watched.
    Fallback,
    /// The rescan after a new baseline generation was loaded.
    Reload,
    /// The outputs themselves (one could not keep up).
    Output,
    /// Not a finding now: what `update` accepted into the baseline.
    Accepted,
    /// Not a finding now: what `accept` acknowledged.
    Acknowledged,
    /// The load guard (`guard`): a library load, or opens it let through
    /// unjudged.
    Guard,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Startup => "startup",
            Source::Event => "event",
            Source::Rescan => "rescan",
            Source::Fallback => "fallback",
            Source::Reload => "reload",
            Source::Output => "output",
            Source::Accepted => "accepted",
            Source::Acknowledged => "acknowledged",
            Source::Guard => "guard",
        }
    }
}

/// The circumstances of one finding.
#[derive(Clone, Debug)]
pub struct Context {
    pub time: SystemTime,
    pub source: Source,
    /// For a monitoring gap: the window in which changes may have been
    /// missed as events.
    pub gap: Option<(SystemTime, SystemTime)>,
    /// Fields of the event beyond the finding's own (the guard's pid, exe,
    /// uid, verdict), appended to the JSON object.
    pub fields: Option<Arc<serde_json::Map<String, Value>>>,
}

/// A finding as the watcher's JSON object: the `check` object (`time` and
/// `host` included) plus `source` and, for gaps, `gap_start`/`gap_end`.
pub fn to_json(f: &Finding, ctx: &Context) -> Value {
    let mut v = output::to_json(f);
    if let Value::Object(m) = &mut v {
        m.insert("time".into(), json!(rfc3339(ctx.time)));
        m.insert("host".into(), json!(output::host()));
        m.insert("source".into(), json!(ctx.source.name()));
        if let Some((a, b)) = ctx.gap {
            m.insert("gap_start".into(), json!(rfc3339(a)));
            m.insert("gap_end".into(), json!(rfc3339(b)));
        }
        if let Some(extra) = &ctx.fields {
            for (k, x) in extra.iter() {
                m.entry(k.clone()).or_insert_with(|| x.clone());
            }
        }
    }
    v
}

/// Findings a sink may have waiting before it drops new ones. A finding is
/// well under a kilobyte: a few megabytes per sink at worst, and room for a
/// full rescan's burst on a sink that is merely slow.
pub const QUEUE: usize = 4096;
/// How long the writers get at exit to deliver what is queued, and then
/// to finish. Both waits together fit well inside the stop backstop of
/// `watch` and `guard` (900 ms from the signal): a stop that the backstop
/// cut short would end the process before a stuck sink's drop count is
/// said, the one record of what it missed.
const DRAIN: Duration = Duration::from_millis(300);
/// A full sink whose writer has not taken a finding for this long is stuck
/// (one write blocked that long): it drops instead of holding the others.
const STUCK: Duration = Duration::from_secs(1);
/// The longest a sink that is slow but moving may hold the others before
/// it catches up (its queue runs empty); beyond it, it drops too. A burst
/// (the startup scan of a tree far from its baseline) is not a stall: a
/// file on a busy disk keeps every finding.
const HOLD: Duration = Duration::from_secs(10);

/// One sink's end of the pipe: writes findings, in order, on its thread.
trait Writer: Send {
    fn write(&mut self, f: &Finding, ctx: &Context);
    fn reopen(&mut self) {}
}

enum Job {
    Finding(Arc<(Finding, Context)>),
    /// Look at the shared flags (a reopen).
    Wake,
}

/// What a sink's producer side and its writer thread share.
#[derive(Default)]
struct Shared {
    /// Findings dropped since the last gap record, and the times of the
    /// first and last of them (ms since the epoch).
    dropped: AtomicU64,
    first_ms: AtomicU64,
    last_ms: AtomicU64,
    /// The other sinks were told that this one is dropping.
    announced: AtomicBool,
    reopen: AtomicBool,
    /// Stdout is a closed pipe.
    gone: AtomicBool,
    /// The writer found its queue empty since the producer last looked.
    caught_up: AtomicBool,
    /// Findings dropped in all, for the summary at exit.
    total_dropped: AtomicU64,
}

impl Shared {
    fn note_drop(&self, now: SystemTime) {
        let ms = to_ms(now);
        let _ = self
            .first_ms
            .compare_exchange(0, ms, Ordering::AcqRel, Ordering::Acquire);
        self.last_ms.store(ms, Ordering::Release);
        self.dropped.fetch_add(1, Ordering::AcqRel);
        self.total_dropped.fetch_add(1, Ordering::AcqRel);
    }

    /// The drops since the last call: how many, from when to when.
    fn take_drops(&self) -> Option<(u64, SystemTime, SystemTime)> {
        let n = self.dropped.swap(0, Ordering::AcqRel);
        if n == 0 {
            return None;
        }
        let first = self.first_ms.swap(0, Ordering::AcqRel);
        let last = self.last_ms.load(Ordering::Acquire).max(first);
        Some((n, from_ms(first), from_ms(last)))
    }
}

struct Lane {
    /// "stdout", "--output PATH", "syslog TARGET": for messages.
    name: String,
    tx: Option<Sender<Job>>,
    shared: Arc<Shared>,
    /// Disconnected when the writer thread has ended.
    done: Receiver<()>,
    is_stdout: bool,
    /// How long the producer waited for this sink since it last caught up.
    held: Duration,
}

/// Every configured sink.
pub struct Sinks {
    lanes: Vec<Lane>,
}

impl Sinks {
    /// Opens the file (append-only, created 0640) and the syslog targets,
    /// and starts a writer for each. stdout is written when no other sink
    /// is given, or with `stdout`.
    pub fn open(
        format: Format,
        output: Option<&PathBuf>,
        syslog: &[String],
        stdout: bool,
    ) -> Result<Sinks> {
        Sinks::open_with(format, output, syslog, false, stdout)
    }

    /// [`Sinks::open`], plus the Windows Event Log when `eventlog` (an
    /// error elsewhere): with it, as with a file, stdout is written only
    /// with `stdout`.
    pub fn open_with(
        format: Format,
        output: Option<&PathBuf>,
        syslog: &[String],
        eventlog: bool,
        stdout: bool,
    ) -> Result<Sinks> {
        #[cfg(windows)]
        let eventlog = match eventlog {
            false => None,
            true => Some(
                output::eventlog::EventLog::open()
                    .map_err(|e| Error::Internal(format!("open the event log: {e}")))?,
            ),
        };
        #[cfg(not(windows))]
        if eventlog {
            return Err(Error::Usage(
                "--eventlog: the Windows Event Log is Windows only (on Linux use --syslog or the journal)".into(),
            ));
        }
        let file = match output {
            None => None,
            Some(p) => Some(FileSink {
                path: p.clone(),
                file: open_output(p)?,
                failing: false,
            }),
        };
        let syslog = syslog
            .iter()
            .map(|t| {
                Syslog::new(t)
                    .map(|s| (t.clone(), s))
                    .map_err(|e| Error::Usage(format!("--syslog {t:?}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut sinks = Sinks { lanes: Vec::new() };
        #[cfg(windows)]
        let none_else = file.is_none() && syslog.is_empty() && eventlog.is_none();
        #[cfg(not(windows))]
        let none_else = file.is_none() && syslog.is_empty();
        if stdout || none_else {
            sinks.start("stdout".into(), true, |shared| {
                Box::new(StdoutSink { format, shared })
            })?;
        }
        if let Some(f) = file {
            let name = format!(
                "--output {}",
                escape::for_terminal(f.path.as_os_str().as_encoded_bytes())
            );
            sinks.start(name, false, |_| Box::new(f))?;
        }
        for (t, s) in syslog {
            sinks.start(format!("syslog {t}"), false, |_| Box::new(SyslogSink(s)))?;
        }
        #[cfg(windows)]
        if let Some(log) = eventlog {
            sinks.start("the event log".into(), false, |_| {
                Box::new(EventLogSink {
                    log,
                    failing: false,
                })
            })?;
        }
        Ok(sinks)
    }

    fn start(
        &mut self,
        name: String,
        is_stdout: bool,
        make: impl FnOnce(Arc<Shared>) -> Box<dyn Writer>,
    ) -> Result<()> {
        let shared = Arc::new(Shared::default());
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let (done_tx, done) = crossbeam_channel::bounded::<()>(0);
        let writer = make(shared.clone());
        let (n, sh) = (name.clone(), shared.clone());
        std::thread::Builder::new()
            .name(format!("sink {}", self.lanes.len()))
            .spawn(move || {
                let _done = done_tx;
                drain(writer, &rx, &sh, &n);
            })
            .map_err(|e| Error::Internal(format!("cannot start the writer of {name}: {e}")))?;
        self.lanes.push(Lane {
            name,
            tx: Some(tx),
            shared,
            done,
            is_stdout,
            held: Duration::ZERO,
        });
        Ok(())
    }

    /// Opens the output file again (after log rotation moved it away),
    /// before its next write.
    pub fn reopen(&mut self) {
        for l in &self.lanes {
            l.shared.reopen.store(true, Ordering::Release);
            if let Some(tx) = &l.tx {
                let _ = tx.try_send(Job::Wake);
            }
        }
    }

    /// Hands one finding to every sink; never waits for one. False when
    /// stdout was the only sink and it is gone (a closed pipe): the
    /// watcher has nobody to tell.
    pub fn emit(&mut self, f: &Finding, ctx: &Context) -> bool {
        let live = |l: &Lane| !(l.is_stdout && l.shared.gone.load(Ordering::Acquire));
        if !self.lanes.iter().any(live) {
            return false;
        }
        let item = Arc::new((f.clone(), ctx.clone()));
        let now = SystemTime::now();
        let mut started_dropping = Vec::new();
        for (i, l) in self.lanes.iter_mut().enumerate() {
            if !live(l) {
                continue;
            }
            let Some(tx) = &l.tx else { continue };
            let job = match tx.try_send(Job::Finding(item.clone())) {
                Err(TrySendError::Full(job)) => job,
                _ => continue,
            };
            if l.shared.caught_up.swap(false, Ordering::AcqRel) {
                l.held = Duration::ZERO;
            }
            // Dropping already, or held the others long enough: drop.
            if !l.shared.announced.load(Ordering::Acquire) && l.held < HOLD {
                let t = Instant::now();
                let r = tx.send_timeout(job, STUCK.min(HOLD - l.held));
                l.held += t.elapsed();
                if r.is_ok() {
                    continue;
                }
            }
            l.shared.note_drop(now);
            if !l.shared.announced.swap(true, Ordering::AcqRel) {
                started_dropping.push(i);
            }
        }
        for i in started_dropping {
            self.announce(i, now);
        }
        true
    }

    /// Lane `i` has started dropping findings: say so on stderr and to
    /// every other sink (which is where an operator will look).
    fn announce(&self, i: usize, since: SystemTime) {
        let name = &self.lanes[i].name;
        super::messages::loud_warning(&format!(
            "libwarden watch: warning: {name} cannot keep up: findings for it are dropped \
             (the other outputs get them); it gets a monitoring_gap record when it catches up"
        ));
        let f = gap_finding(format!(
            "{name} cannot keep up: findings for it are being dropped since {} (this output \
             gets them); it gets a record of what it missed when it catches up",
            rfc3339(since)
        ));
        let ctx = Context {
            time: since,
            source: Source::Output,
            gap: None,
            fields: None,
        };
        let item = Arc::new((f, ctx));
        for (j, l) in self.lanes.iter().enumerate() {
            if j == i {
                continue;
            }
            if let Some(tx) = &l.tx {
                if let Err(TrySendError::Full(_)) = tx.try_send(Job::Finding(item.clone())) {
                    l.shared.note_drop(since);
                }
            }
        }
    }
}

impl Drop for Sinks {
    /// Delivers what is queued, waiting at most [`DRAIN`] for sinks that
    /// are stuck; a sink that lost findings is named, with how many, on
    /// stderr and to the other sinks.
    fn drop(&mut self) {
        // Let each writer empty its queue (and, having caught up, report
        // its own drops) while the others can still hear of it.
        let end = Instant::now() + DRAIN;
        for l in &self.lanes {
            let Some(tx) = &l.tx else { continue };
            while !(tx.is_empty() && l.shared.dropped.load(Ordering::Acquire) == 0)
                && Instant::now() < end
            {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        for i in 0..self.lanes.len() {
            let l = &self.lanes[i];
            let lost = l.shared.dropped.load(Ordering::Acquire);
            if lost == 0 {
                continue;
            }
            let total = l.shared.total_dropped.load(Ordering::Acquire);
            let first = from_ms(l.shared.first_ms.load(Ordering::Acquire));
            let last = from_ms(l.shared.last_ms.load(Ordering::Acquire));
            let detail = format!(
                "{} did not catch up before the watch ended: {lost} finding{} dropped for it \
                 between {} and {} ({total} in all)",
                l.name,
                if lost == 1 { " was" } else { "s were" },
                rfc3339(first),
                rfc3339(last)
            );
            super::messages::loud_warning(&format!("libwarden watch: warning: {detail}"));
            let ctx = Context {
                time: SystemTime::now(),
                source: Source::Output,
                gap: Some((first, last)),
                fields: None,
            };
            let item = Arc::new((gap_finding(detail), ctx));
            for (j, other) in self.lanes.iter().enumerate() {
                if let (true, Some(tx)) = (j != i, &other.tx) {
                    let _ = tx.try_send(Job::Finding(item.clone()));
                }
            }
        }
        let queued: Vec<usize> = self
            .lanes
            .iter_mut()
            .map(|l| l.tx.take().map_or(0, |tx| tx.len()))
            .collect();
        let end = Instant::now() + DRAIN;
        for (l, n) in self.lanes.iter().zip(queued) {
            if l.done.recv_deadline(end) == Err(RecvTimeoutError::Timeout) {
                super::messages::loud_warning(&format!(
                    "libwarden watch: warning: {} is stuck: up to {n} queued finding{} not \
                     delivered at exit",
                    l.name,
                    if n == 1 { "" } else { "s" }
                ));
            }
        }
    }
}

/// A writer thread: writes each finding in order; whenever its queue is
/// empty (it has caught up), reports what it dropped before, to itself.
fn drain(mut w: Box<dyn Writer>, rx: &Receiver<Job>, shared: &Shared, name: &str) {
    while let Ok(job) = rx.recv() {
        if shared.reopen.swap(false, Ordering::AcqRel) {
            w.reopen();
        }
        if let Job::Finding(item) = job {
            w.write(&item.0, &item.1);
        }
        if rx.is_empty() {
            shared.caught_up.store(true, Ordering::Release);
            if let Some((n, first, last)) = shared.take_drops() {
                let detail = format!(
                    "{name} could not keep up: {n} finding{} dropped for it between {} and {} \
                     (the other outputs got them)",
                    if n == 1 { " was" } else { "s were" },
                    rfc3339(first),
                    rfc3339(last)
                );
                super::messages::loud_warning(&format!(
                    "libwarden watch: warning: {detail}; it has caught up"
                ));
                let ctx = Context {
                    time: SystemTime::now(),
                    source: Source::Output,
                    gap: Some((first, last)),
                    fields: None,
                };
                w.write(&gap_finding(detail), &ctx);
                shared.announced.store(false, Ordering::Release);
            }
        }
    }
}

fn gap_finding(detail: String) -> Finding {
    Finding {
        kind: Kind::MonitoringGap,
        severity: Severity::High,
        path: b"/".to_vec(),
        detail,
        changes: Vec::new(),
        before: None,
        after: None,
    }
}

fn to_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
        .max(1)
}

fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// The JSON line of a finding.
fn json_line(f: &Finding, ctx: &Context) -> Vec<u8> {
    let mut l = to_json(f, ctx).to_string().into_bytes();
    l.push(b'\n');
    l
}

struct StdoutSink {
    format: Format,
    shared: Arc<Shared>,
}

impl Writer for StdoutSink {
    fn write(&mut self, f: &Finding, ctx: &Context) {
        if self.shared.gone.load(Ordering::Acquire) {
            return;
        }
        let bytes = match self.format {
            Format::Json => json_line(f, ctx),
            Format::Ecs => {
                let mut extra = serde_json::Map::new();
                extra.insert("source".into(), json!(ctx.source.name()));
                if let Some((a, b)) = ctx.gap {
                    extra.insert("gap_start".into(), json!(rfc3339(a)));
                    extra.insert("gap_end".into(), json!(rfc3339(b)));
                }
                let mut l = output::ecs::document(f, ctx.time, output::host(), &extra)
                    .to_string()
                    .into_bytes();
                l.push(b'\n');
                l
            }
            Format::Human => format!(
                "{} {:<8} {:<14} {}  {}\n",
                rfc3339(ctx.time),
                f.severity.name(),
                f.kind.name(),
                escape::for_terminal(&f.path),
                escape::for_terminal(f.detail.as_bytes())
            )
            .into_bytes(),
        };
        let bytes = if output::journal::connected(output::journal::Stream::Stdout) {
            let mut b = format!("<{}>", output::journal::of(f.severity)).into_bytes();
            b.extend_from_slice(&bytes);
            b
        } else {
            bytes
        };
        let mut out = io::stdout().lock();
        if let Err(e) = out.write_all(&bytes).and_then(|_| out.flush()) {
            if e.kind() == io::ErrorKind::BrokenPipe {
                self.shared.gone.store(true, Ordering::Release);
            } else {
                super::messages::loud_warning(&format!(
                    "libwarden watch: warning: write stdout: {e}"
                ));
            }
        }
    }
}

struct FileSink {
    path: PathBuf,
    file: File,
    failing: bool,
}

impl Writer for FileSink {
    fn write(&mut self, f: &Finding, ctx: &Context) {
        // One write per line: with O_APPEND a line is never interleaved.
        match self.file.write_all(&json_line(f, ctx)) {
            Ok(()) => self.failing = false,
            Err(e) => {
                if !self.failing {
                    super::messages::loud_warning(&format!(
                        "libwarden watch: warning: write {}: {e}",
                        escape::for_terminal(self.path.as_os_str().as_encoded_bytes())
                    ));
                }
                self.failing = true;
            }
        }
    }

    fn reopen(&mut self) {
        match open_output(&self.path) {
            Ok(f) => {
                self.file = f;
                self.failing = false;
            }
            Err(e) => super::messages::loud_warning(&format!("libwarden watch: warning: {e}")),
        }
    }
}

struct SyslogSink(Syslog);

impl Writer for SyslogSink {
    fn write(&mut self, f: &Finding, ctx: &Context) {
        self.0.send(f, ctx);
    }
}

#[cfg(windows)]
struct EventLogSink {
    log: output::eventlog::EventLog,
    failing: bool,
}

#[cfg(windows)]
impl Writer for EventLogSink {
    fn write(&mut self, f: &Finding, ctx: &Context) {
        let ok = self.log.report(f, &output::eventlog::data(f, ctx));
        if !ok && !self.failing {
            super::messages::loud_warning(&format!(
                "libwarden watch: warning: the event log refused an event: {}",
                std::io::Error::last_os_error()
            ));
        }
        self.failing = !ok;
    }
}

/// The output file: appended to, created 0640, never truncated.
fn open_output(p: &PathBuf) -> Result<File> {
    use crate::sys::OpenOptionsNoFollow;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .create_mode(0o640)
        .cloexec()
        .open(p)
        .map_err(|e| Error::io("open output", p, e))
}

pub use crate::timefmt::rfc3339;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    type Got = Arc<Mutex<Vec<(Kind, String, Option<(SystemTime, SystemTime)>)>>>;

    /// Records what it is given; blocks on `gate` first while it is held.
    struct Probe {
        got: Got,
        gate: Option<Receiver<()>>,
    }

    impl Writer for Probe {
        fn write(&mut self, f: &Finding, ctx: &Context) {
            if let Some(g) = self.gate.take() {
                let _ = g.recv();
            }
            self.got
                .lock()
                .unwrap()
                .push((f.kind, f.detail.clone(), ctx.gap));
        }
    }

    fn finding(i: usize) -> Finding {
        Finding {
            kind: Kind::Added,
            severity: Severity::High,
            path: format!("/lib/{i}").into_bytes(),
            detail: String::new(),
            changes: Vec::new(),
            before: None,
            after: None,
        }
    }

    #[test]
    fn a_stuck_sink_drops_to_its_queue_and_reports_what_it_missed_while_the_other_gets_everything()
    {
        let (release, gate) = crossbeam_channel::bounded::<()>(0);
        let stuck = Arc::new(Mutex::new(Vec::new()));
        let fast = Arc::new(Mutex::new(Vec::new()));
        let mut sinks = Sinks { lanes: Vec::new() };
        let (s, f) = (stuck.clone(), fast.clone());
        sinks
            .start("stuck".into(), false, move |_| {
                Box::new(Probe {
                    got: s,
                    gate: Some(gate),
                })
            })
            .unwrap();
        sinks
            .start("fast".into(), false, move |_| {
                Box::new(Probe { got: f, gate: None })
            })
            .unwrap();
        let ctx = Context {
            time: SystemTime::now(),
            source: Source::Event,
            gap: None,
            fields: None,
        };
        // One in the stuck writer's hands, QUEUE waiting, 10 more.
        let n = QUEUE + 1 + 10;
        for i in 0..n {
            assert!(sinks.emit(&finding(i), &ctx));
            if i == 0 {
                // Let the writer take the first one before the queue fills.
                while !sinks.lanes[0].tx.as_ref().unwrap().is_empty() {
                    std::thread::yield_now();
                }
            }
        }
        drop(release);
        drop(sinks);
        let fast = fast.lock().unwrap();
        let added = fast.iter().filter(|g| g.0 == Kind::Added).count();
        assert_eq!(added, n, "the other sink gets every finding");
        let told: Vec<_> = fast.iter().filter(|g| g.0 == Kind::MonitoringGap).collect();
        assert_eq!(told.len(), 1, "{told:?}");
        assert!(told[0].1.contains("stuck cannot keep up"), "{told:?}");
        let stuck = stuck.lock().unwrap();
        assert_eq!(
            stuck.iter().filter(|g| g.0 == Kind::Added).count(),
            QUEUE + 1
        );
        let gap = stuck.last().unwrap();
        assert_eq!(gap.0, Kind::MonitoringGap);
        assert!(gap.1.contains("10 findings were dropped"), "{gap:?}");
        assert!(gap.2.is_some_and(|(a, b)| a <= b), "{gap:?}");
    }
}
