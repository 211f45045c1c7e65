//! The load guard (Linux): fanotify open-permission events on the search
//! paths of the guarded root, each opened ELF shared object judged against
//! the baseline ([`verdict`]), each load that matters reported as a `load`
//! finding naming the opener ([`process`]) and, with enforcement, unknown
//! or altered libraries refused.
//!
//! Threads and why:
//! - the reader (the caller's thread) reads events and hands each to the
//!   workers through a bounded queue. It never blocks on anything but the
//!   group: libwarden's own opens (a sink reopening its file) are answered
//!   here at once, so the guard cannot wait on itself;
//! - workers judge (hash from the event's descriptor) and answer;
//! - the watchdog answers allow for every event whose verdict is not ready
//!   by its deadline ([`Options::deadline`]);
//! - the emitter owns the sinks: nobody on the path of an answer waits for
//!   an output. Opens let through unjudged (queue full, deadline, an error)
//!   are counted and reported once a second as one `monitoring_gap`.
//!
//! Every permission event is answered exactly once ([`Pending::answer`]);
//! a [`Pending`] dropped unanswered (a worker that failed) answers allow.
//! If the process dies, the kernel answers allow for it (`sys::fanotify`).

pub mod process;
pub mod verdict;

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use serde_json::{json, Map, Value};

use crate::baseline::Baseline;
use crate::error::{Error, Result};
use crate::finding::{Finding, Kind, Severity};
use crate::output::messages;
use crate::output::sink::{Context, Sinks, Source};
use crate::pipeline::Plan;
use crate::record::{file_name, FileType};
use crate::searchpaths::{Origin, SearchPaths};
use crate::sys::fanotify::{Event, Group, Scope};
use crate::sys::OsStrExt;
use crate::watch::signals::Ctl;
use verdict::{Allowlist, Verdict};

/// What the guard does with a refusable load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Report it; every open is allowed at once, judged after.
    Monitor,
    /// Judge before answering, as enforcement does, and report what would
    /// have been refused; allow everything.
    DryRun,
    /// Refuse it.
    Enforce,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Monitor => "monitor",
            Mode::DryRun => "dry-run",
            Mode::Enforce => "enforce",
        }
    }
}

/// How the guard runs.
pub struct Options {
    pub mode: Mode,
    pub scope: Scope,
    /// The longest an opener waits for a verdict; then it is allowed.
    pub deadline: Duration,
    /// Events waiting for a worker before further ones are allowed unjudged.
    pub queue: usize,
    pub workers: usize,
    /// Logical paths never refused (the config's `guard_allow`).
    pub allow: globset::GlobSet,
    /// Test knob (`LIBWARDEN_GUARD_TEST_DELAY`): each verdict is held this
    /// long first, to make the deadline pass on purpose.
    pub test_delay: Duration,
}

/// The default [`Options::deadline`].
pub const DEFAULT_DEADLINE: Duration = Duration::from_millis(250);
/// The default [`Options::queue`].
pub const DEFAULT_QUEUE: usize = 1024;
/// Findings waiting for the emitter; past it they are counted and dropped.
const FINDINGS_QUEUE: usize = 4096;
/// Events read at once (each arrives with a descriptor).
const READ_BATCH: usize = 128;
/// The period of the gap report.
const GAP_PERIOD: Duration = Duration::from_secs(1);

/// One permission event in flight.
struct Pending {
    group: Arc<Group>,
    fd: OwnedFd,
    pid: i32,
    time: SystemTime,
    answered: AtomicBool,
}

impl Pending {
    /// Answers unless someone did already; true when this call answered.
    fn answer(&self, allow: bool) -> bool {
        if self.answered.swap(true, Ordering::AcqRel) {
            return false;
        }
        if let Err(e) = self.group.answer(self.fd.as_raw_fd(), allow) {
            // ENOENT: the kernel no longer waits for it (the opener was
            // killed). Nothing else is actionable here.
            if e.raw_os_error() != Some(libc::ENOENT) {
                messages::warning(&format!("guard: answer a permission event: {e}"));
            }
        }
        true
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        // Last line of defence: an event nobody answered is allowed.
        self.answer(true);
    }
}

/// Opens let through without a verdict, since the last report.
#[derive(Default)]
struct Gaps {
    queue_full: AtomicU64,
    late: AtomicU64,
    errors: AtomicU64,
    overflow: AtomicU64,
    findings_dropped: AtomicU64,
    first_ms: AtomicU64,
}

impl Gaps {
    fn note(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
        let now = ms(SystemTime::now());
        let _ = self
            .first_ms
            .compare_exchange(0, now, Ordering::AcqRel, Ordering::Relaxed);
    }

    /// The gap finding for what was counted since the last call, if any.
    fn take(&self) -> Option<(Finding, Context)> {
        let q = self.queue_full.swap(0, Ordering::AcqRel);
        let l = self.late.swap(0, Ordering::AcqRel);
        let e = self.errors.swap(0, Ordering::AcqRel);
        let o = self.overflow.swap(0, Ordering::AcqRel);
        let d = self.findings_dropped.swap(0, Ordering::AcqRel);
        let first = self.first_ms.swap(0, Ordering::AcqRel);
        if q + l + e + o + d == 0 {
            return None;
        }
        let mut parts = Vec::new();
        for (n, what) in [
            (q, "the verdict queue was full"),
            (l, "no verdict within the deadline"),
            (e, "the file could not be judged"),
            (o, "the kernel's event queue overflowed"),
            (
                d,
                "load findings were dropped (the outputs could not keep up)",
            ),
        ] {
            if n > 0 {
                parts.push(format!("{n}: {what}"));
            }
        }
        let now = SystemTime::now();
        let start = if first == 0 {
            now
        } else {
            SystemTime::UNIX_EPOCH + Duration::from_millis(first)
        };
        let mut fields = Map::new();
        fields.insert("unjudged".into(), json!(q + l + e + o));
        fields.insert("queue_full".into(), json!(q));
        fields.insert("late".into(), json!(l));
        fields.insert("errors".into(), json!(e));
        let f = Finding::audit(
            Kind::MonitoringGap,
            Severity::High,
            b"/".to_vec(),
            format!(
                "library opens were allowed without a verdict or not reported ({}); \
                 loads in this window were not judged",
                parts.join("; ")
            ),
        );
        let ctx = Context {
            time: now,
            source: Source::Guard,
            gap: Some((start, now)),
            fields: Some(Arc::new(fields)),
        };
        Some((f, ctx))
    }
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(1, |d| d.as_millis() as u64)
        .max(1)
}

/// What every worker shares.
struct Shared {
    root: crate::rootfs::Root,
    /// Owners besides root trusted with library dirs (the config's).
    trusted_uids: Vec<u32>,
    sp: SearchPaths,
    allowlist: Allowlist,
    /// Logical paths of the baseline's loader and libc: never refused.
    protected: Vec<Vec<u8>>,
    opts: Options,
    gaps: Arc<Gaps>,
    findings: Sender<(Finding, Context)>,
}

/// Runs the guard until SIGTERM/SIGINT (`ctl`); returns the exit code.
pub fn run(
    plan: &Plan,
    base: &Baseline,
    opts: Options,
    sinks: Sinks,
    ctl: Receiver<Ctl>,
) -> Result<i32> {
    let (sp, _) = plan.resolve();
    // Descriptors in flight: the queue, one per worker, one read's batch
    // (the kernel opens one per event it hands over), and the outputs.
    let fd_limit = crate::sys::fanotify::raise_fd_limit();
    let room = fd_limit.saturating_sub(READ_BATCH as u64 + opts.workers as u64 + 256) as usize;
    if opts.queue > room {
        messages::warning(&format!(
            "guard: --queue {} does not fit the descriptor limit ({fd_limit}): using {}",
            opts.queue,
            room.max(1)
        ));
    }
    let mut opts = opts;
    opts.queue = opts.queue.min(room.max(1));
    let group = Arc::new(Group::new().map_err(|e| {
        Error::Usage(format!(
            "guard: fanotify_init: {e} (the guard needs root and a kernel with \
             fanotify permission events)"
        ))
    })?);
    let marked = mark(&group, plan, &sp, base, opts.scope)?;
    let protected = protected(base, &sp);
    let (mode, scope, deadline, workers, queue) = (
        opts.mode,
        opts.scope,
        opts.deadline,
        opts.workers.max(1),
        opts.queue.max(1),
    );
    let gaps = Arc::new(Gaps::default());
    let (ftx, frx) = crossbeam_channel::bounded(FINDINGS_QUEUE);
    let shared = Arc::new(Shared {
        root: plan.root.clone(),
        trusted_uids: plan.trusted_uids.clone(),
        sp,
        allowlist: Allowlist::new(&base.records),
        protected,
        opts,
        gaps: gaps.clone(),
        findings: ftx,
    });

    let emitter = spawn("guard output", {
        let gaps = gaps.clone();
        move || emit_loop(sinks, frx, &gaps)
    })?;
    let (wtx, wrx) = crossbeam_channel::bounded::<Arc<Pending>>(queue);
    let (dtx, drx) = crossbeam_channel::unbounded::<(Instant, Weak<Pending>)>();
    let mut threads = Vec::new();
    for i in 0..workers {
        let (rx, sh) = (wrx.clone(), shared.clone());
        threads.push(spawn(&format!("guard worker {i}"), move || {
            for p in rx {
                work(&sh, &p);
            }
        })?);
    }
    drop(wrx);
    threads.push(spawn("guard watchdog", {
        let gaps = gaps.clone();
        move || watchdog(drx, &gaps)
    })?);

    messages::status(&format!(
        "libwarden guard: {} mode, {marked} marks ({}), verdict deadline {} ms, \
         baseline {}",
        mode.name(),
        scope_name(scope),
        deadline.as_millis(),
        base.describe()
    ));

    let me = std::process::id() as i32;
    let mut read_failing = false;
    let mut buf = vec![0u8; READ_BATCH * std::mem::size_of::<libc::fanotify_event_metadata>()];
    let code = loop {
        match ctl.try_recv() {
            Ok(Ctl::Hup) | Err(crossbeam_channel::TryRecvError::Empty) => {}
            Ok(c) => break c.exit_code(),
            Err(crossbeam_channel::TryRecvError::Disconnected) => break 0,
        }
        if !readable(&group, 200) {
            continue;
        }
        let events = match group.read(&mut buf) {
            Ok(e) => {
                read_failing = false;
                e
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                // The kernel has answered the event it could not hand
                // over (deny, for a permission event); go on, and say so.
                gaps.note(&gaps.errors);
                if !read_failing {
                    messages::warning(&format!("guard: read fanotify events: {e}"));
                }
                read_failing = true;
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        for ev in events {
            dispatch(ev, me, &group, &wtx, &dtx, deadline, &gaps);
        }
    };
    // Workers finish what is queued (each answers); the watchdog and the
    // emitter end when their senders are gone.
    drop(wtx);
    drop(dtx);
    for t in threads {
        let _ = t.join();
    }
    drop(shared);
    let _ = emitter.join();
    Ok(code)
}

fn scope_name(s: Scope) -> &'static str {
    match s {
        Scope::Dir => "search dirs",
        Scope::Mount => "mounts of the search dirs",
        Scope::Filesystem => "file systems of the search dirs",
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|e| Error::Internal(format!("cannot start {name}: {e}")))
}

/// Waits up to `ms` for the group to have events.
fn readable(group: &Group, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd: group.raw(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, ms) > 0 }
}

/// Hands one event on, or answers it here: libwarden's own opens at once,
/// and everything the queue has no room for.
fn dispatch(
    ev: Event,
    me: i32,
    group: &Arc<Group>,
    work: &Sender<Arc<Pending>>,
    watch: &Sender<(Instant, Weak<Pending>)>,
    deadline: Duration,
    gaps: &Gaps,
) {
    if ev.is_overflow() {
        gaps.note(&gaps.overflow);
    }
    let needs_answer = ev.needs_answer();
    let Some(fd) = ev.fd else { return };
    if !needs_answer {
        return;
    }
    let p = Arc::new(Pending {
        group: group.clone(),
        fd,
        pid: ev.pid,
        time: SystemTime::now(),
        answered: AtomicBool::new(false),
    });
    if ev.pid == me {
        p.answer(true);
        return;
    }
    let weak = Arc::downgrade(&p);
    match work.try_send(p) {
        Ok(()) => {
            let _ = watch.send((Instant::now() + deadline, weak));
        }
        Err(TrySendError::Full(p)) | Err(TrySendError::Disconnected(p)) => {
            p.answer(true);
            gaps.note(&gaps.queue_full);
        }
    }
}

/// Answers allow for each event still unanswered at its deadline. Deadlines
/// arrive in order (one delay after each read), so a FIFO suffices.
fn watchdog(rx: Receiver<(Instant, Weak<Pending>)>, gaps: &Gaps) {
    for (at, weak) in rx {
        let now = Instant::now();
        if at > now {
            std::thread::sleep(at - now);
        }
        if let Some(p) = weak.upgrade() {
            if p.answer(true) {
                gaps.note(&gaps.late);
            }
        }
    }
}

/// Judges one event, answers it (unless the watchdog did) and reports.
fn work(sh: &Shared, p: &Pending) {
    if !sh.opts.test_delay.is_zero() {
        std::thread::sleep(sh.opts.test_delay);
    }
    let Some(logical) = logical_path(&sh.root, &p.fd) else {
        // Outside the guarded root (or unnamed): not this guard's business.
        p.answer(true);
        return;
    };
    let quick = sh.allowlist.judge_cached(p.fd.as_fd(), &logical);
    let (judged, opener) = match quick {
        // Decided without a read and allowed in every mode: answered at
        // once; the opener is looked up only for a finding.
        Ok(Some(j)) if !j.verdict.refusable() => {
            p.answer(true);
            if j.verdict != Verdict::Known || !in_writable_dir(sh, &logical) {
                return;
            }
            (j, process::opener(p.pid))
        }
        quick => {
            // Read while the opener still waits for its answer: it is
            // alive and is the process that opened.
            let opener = process::opener(p.pid);
            if sh.opts.mode == Mode::Monitor {
                p.answer(true);
            }
            let j = match quick {
                Ok(Some(j)) => Ok(j),
                _ => sh.allowlist.judge(p.fd.as_fd(), &logical),
            };
            match j {
                Ok(j) => (j, opener),
                Err(_) => {
                    if p.answer(true) {
                        sh.gaps.note(&sh.gaps.errors);
                    }
                    return;
                }
            }
        }
    };
    let in_writable = in_writable_dir(sh, &logical);
    let writable = judged.verdict == Verdict::Known && in_writable;
    let refusable = judged.verdict.refusable() && may_refuse(sh, &logical, p.pid);
    let deny = refusable && sh.opts.mode == Mode::Enforce;
    let ours = p.answer(!deny);
    if !judged.verdict.refusable() && !writable {
        return;
    }
    let action = match (sh.opts.mode, refusable) {
        (Mode::Enforce, true) if ours => "denied",
        (Mode::Enforce, true) => "allowed_late",
        (Mode::DryRun, true) => "would_deny",
        _ => "allowed",
    };
    let (severity, why) = match judged.verdict {
        Verdict::Unknown => (Severity::High, "unknown to the baseline"),
        Verdict::Differs => (Severity::Critical, "its content differs from the baseline"),
        _ => (Severity::Medium, "it lies in a directory others can write"),
    };
    let exe = opener.exe.as_deref().unwrap_or(b"?");
    let uid = opener.uid.map_or("?".to_string(), |u| u.to_string());
    let f = Finding::audit(
        Kind::Load,
        severity,
        logical.clone(),
        format!(
            "pid {} ({}, uid {uid}) opened this library: {why}; {}",
            p.pid,
            crate::escape::for_terminal(exe),
            action.replace('_', " ")
        ),
    );
    let mut fields = Map::new();
    fields.insert("pid".into(), json!(p.pid));
    fields.insert("exe".into(), json!(crate::escape::for_json(exe)));
    fields.insert("uid".into(), opener.uid.map_or(Value::Null, |u| json!(u)));
    fields.insert(
        "verdict".into(),
        json!(verdict_name(judged.verdict, writable)),
    );
    fields.insert("action".into(), json!(action));
    fields.insert("mode".into(), json!(sh.opts.mode.name()));
    fields.insert("writable_dir".into(), json!(in_writable));
    fields.insert(
        "in_search_paths".into(),
        json!(sh
            .sp
            .covers(Path::new(std::ffi::OsStr::from_bytes(&logical)))),
    );
    fields.insert("event_time".into(), json!(crate::timefmt::rfc3339(p.time)));
    let ctx = Context {
        time: p.time,
        source: Source::Guard,
        gap: None,
        fields: Some(Arc::new(fields)),
    };
    if sh.findings.try_send((f, ctx)).is_err() {
        sh.gaps.note(&sh.gaps.findings_dropped);
    }
}

fn verdict_name(v: Verdict, writable: bool) -> &'static str {
    if writable {
        "writable_dir"
    } else {
        v.name()
    }
}

/// Enforcement is scoped: only ELF objects in the guarded search paths,
/// never pid 1, never the baseline's loader and libc, never the config's
/// allowlist.
fn may_refuse(sh: &Shared, logical: &[u8], pid: i32) -> bool {
    let path = Path::new(std::ffi::OsStr::from_bytes(logical));
    pid != 1
        && sh.sp.covers(path)
        && !sh.protected.iter().any(|p| p == logical)
        && !sh.opts.allow.is_match(path)
}

/// The opened file's path inside the root, from the descriptor the event
/// carries (the name it was opened by may have been renamed since; this is
/// the kernel's current name of that very file).
fn logical_path(root: &crate::rootfs::Root, fd: &OwnedFd) -> Option<Vec<u8>> {
    let host = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
    let bytes = host.as_os_str().as_bytes();
    if !bytes.starts_with(b"/") {
        return None; // memfd:, anon_inode:, a file of another mount namespace
    }
    if root.is_slash() {
        return Some(bytes.to_vec());
    }
    let logical = root.logical(&host)?;
    Some(logical.as_os_str().as_bytes().to_vec())
}

/// Whether the library's directory is writable by others than its owner,
/// or owned by someone other than root or a trusted uid: sticky temporary
/// directories included.
fn in_writable_dir(sh: &Shared, logical: &[u8]) -> bool {
    let Some(parent) = Path::new(std::ffi::OsStr::from_bytes(logical)).parent() else {
        return false;
    };
    use crate::sys::MetadataExt;
    match sh.root.lstat(parent) {
        Ok(m) => m.mode() & 0o022 != 0 || (m.uid() != 0 && !sh.trusted_uids.contains(&m.uid())),
        Err(_) => false,
    }
}

/// The baseline's loader and libc, by name: refusing either would stop
/// every program on the host, which no policy can want.
fn protected(base: &Baseline, sp: &SearchPaths) -> Vec<Vec<u8>> {
    let named = |name: &[u8]| {
        name.starts_with(b"ld-linux")
            || name.starts_with(b"ld64.so")
            || name.starts_with(b"ld-musl-")
            || name.starts_with(b"libc.so")
            || name.starts_with(b"libc.musl")
            || (name.starts_with(b"libc-") && name.ends_with(b".so"))
    };
    let mut out: Vec<Vec<u8>> = base
        .records
        .iter()
        .filter(|r| r.ftype == FileType::File && named(file_name(&r.path)))
        .map(|r| r.path.clone())
        .collect();
    out.extend(
        sp.files
            .iter()
            .filter(|f| f.origin == Origin::Loader)
            .map(|f| f.path.as_os_str().as_bytes().to_vec()),
    );
    out
}

/// Places the marks: each search dir (and, for `Scope::Dir`, each
/// directory below it that the baseline knows, since an inode mark sees
/// only its own entries). Opened through the root, so a symlink cannot
/// point the guard at a directory outside it.
fn mark(
    group: &Group,
    plan: &Plan,
    sp: &SearchPaths,
    base: &Baseline,
    scope: Scope,
) -> Result<usize> {
    let mut dirs: Vec<PathBuf> = sp.walk_roots().map(|d| d.path.clone()).collect();
    if scope == Scope::Dir {
        let recursive: Vec<&Path> = sp
            .walk_roots()
            .filter(|d| d.recursive)
            .map(|d| d.path.as_path())
            .collect();
        for r in &base.records {
            if r.ftype != FileType::Dir {
                continue;
            }
            let p = PathBuf::from(std::ffi::OsStr::from_bytes(&r.path));
            if recursive.iter().any(|d| p.starts_with(d)) && !dirs.contains(&p) {
                dirs.push(p);
            }
        }
    }
    let mut n = 0;
    let mut failed = Vec::new();
    for d in &dirs {
        let fd = match plan.root.open_dir(d) {
            Ok(fd) => fd,
            Err(e) => {
                failed.push(format!("{}: {e}", d.display()));
                continue;
            }
        };
        match group.mark(fd.as_raw_fd(), scope) {
            Ok(()) => n += 1,
            Err(e) => failed.push(format!("{}: {e}", d.display())),
        }
    }
    for f in &failed {
        messages::warning(&format!("guard: cannot mark {f}; its loads are not seen"));
    }
    if n == 0 {
        return Err(Error::Usage(format!(
            "guard: no search dir could be marked ({})",
            failed.join("; ")
        )));
    }
    Ok(n)
}

/// Owns the sinks: writes findings, and the gap report once a period.
fn emit_loop(mut sinks: Sinks, rx: Receiver<(Finding, Context)>, gaps: &Gaps) {
    let mut next = Instant::now() + GAP_PERIOD;
    loop {
        let wait = next.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok((f, ctx)) => {
                sinks.emit(&f, &ctx);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                if let Some((f, ctx)) = gaps.take() {
                    sinks.emit(&f, &ctx);
                }
                return;
            }
        }
        if Instant::now() >= next {
            if let Some((f, ctx)) = gaps.take() {
                sinks.emit(&f, &ctx);
            }
            next = Instant::now() + GAP_PERIOD;
        }
    }
}
