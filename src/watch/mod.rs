//! The realtime watcher behind `libwarden watch`. One pipeline:
//!
//! ```text
//! notify callback ──try_send──► bounded channel ──► engine (debounce per path)
//!   (events.rs)                                       │
//!                       inspect::inspect_path (rayon) ◄┘
//!                       pipeline::Judge on the touched paths (as `check`:
//!                         diff, provenance, the audit but for processes)
//!                       state::Transitions (report changes, not repeats)
//!                       output::sink::Sinks (stdout, file, syslog)
//! ```
//!
//! At start and on every rescan the whole snapshot is judged with every
//! judge, as `check` does; between rescans the engine keeps how the tree
//! differs from the baseline (a small overlay), so an event's judgement
//! sees the whole tree as it is now without a second copy of it.
//!
//! The engine owns all state on one thread and sleeps until the next
//! deadline (a debounced path, the periodic rescan, the baseline poll, the
//! fallback check of unwatched directories): no busy polling. It is never
//! silently blind: a lost event (inotify overflow, a full channel) becomes
//! a `monitoring_gap` finding and a full rescan; a directory the kernel
//! will not watch is named on stderr and checked every
//! [`FALLBACK_INTERVAL`]; a search root deleted and recreated is found
//! through a watch on its parent; a new baseline generation is picked up by
//! polling the store's files every [`BASELINE_POLL`] or at once on SIGHUP.

pub mod debounce;
pub mod events;
pub mod signals;
pub mod state;
pub mod watches;

use crate::sys::{MetadataExt, OsStrExt};
use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::Receiver;
use notify::Watcher as _;
use rayon::prelude::*;

use crate::baseline::{self, store::Store, Baseline, Location};
use crate::diff::{self, Classifier};
use crate::error::{Error, Result};
use crate::escape;
use crate::finding::{Finding, Kind, Note, Severity};
use crate::inspect::{self, Outcome};
use crate::output::messages;
use crate::pipeline::{Judge, Judges, Origin, Plan, Reference};
use crate::record::{FileType, Record};
use crate::scan;
use crate::searchpaths::SearchPaths;
use crate::winreg::Registry;

use crate::output::sink::{self, Context, Sinks, Source};
use debounce::Debouncer;
use events::{Gate, Msg};
use signals::Ctl;
use state::Transitions;
use watches::{Added, WatchSet};

/// Events waiting for the engine; beyond this the callback records a gap.
pub const QUEUE: usize = 65_536;
/// How often directories that could not be watched are checked.
pub const FALLBACK_INTERVAL: Duration = Duration::from_secs(30);
/// How often the baseline's files are `stat`ed for a new generation.
pub const BASELINE_POLL: Duration = Duration::from_secs(5);
/// How long changed paths wait for a package transaction (the dpkg lock)
/// to end before they are judged anyway.
pub const PACKAGE_WAIT: Duration = Duration::from_secs(300);
/// Paths handled per engine turn before signals are looked at again.
const BATCH: usize = 4096;

/// How a watch runs (from the flags and the config file).
pub struct Options {
    pub rescan_interval: Duration,
    pub debounce: Duration,
}

/// Identity of the store's files: changes when a generation is written.
type DbSig = Vec<(u64, u64, i64, i64)>;

fn db_sig(db: &Path) -> DbSig {
    ["db", "conf", "CURRENT"]
        .iter()
        .filter_map(|n| std::fs::metadata(db.join(n)).ok())
        .map(|m| (m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
        .collect()
}

/// Runs until SIGTERM/SIGINT; returns the exit code.
pub fn run(
    plan: &Plan,
    loc: &Location,
    opts: Options,
    mut sinks: Sinks,
    ctl: Receiver<Ctl>,
    baseline: Baseline,
) -> Result<i32> {
    let (tx, rx) = crossbeam_channel::bounded(QUEUE);
    let gate = Arc::new(Gate::default());
    // So that a gap after a stop (SIGSTOP, a suspend) starts before it.
    events::spawn_heartbeat(gate.clone())
        .map_err(|e| Error::Internal(format!("cannot start the heartbeat: {e}")))?;
    let handler = events::handler(tx, gate.clone(), SystemTime::now());
    let config = notify::Config::default().with_follow_symlinks(false);
    let watcher = notify::RecommendedWatcher::new(handler, config)
        .map_err(|e| Error::Internal(format!("cannot start the file watcher: {e}")))?;
    let now = Instant::now();
    let (sp, registry) = plan.resolve();
    let mut e = Engine {
        plan,
        loc,
        sp,
        registry,
        db_sig: db_sig(&loc.db),
        baseline,
        overlay: BTreeMap::new(),
        judge: Judge::unloaded(plan),
        said: HashSet::new(),
        busy_since: None,
        watches: WatchSet::new(watcher),
        debounce: Debouncer::new(opts.debounce),
        transitions: Transitions::default(),
        rescan_every: opts.rescan_interval,
        next_rescan: now + opts.rescan_interval,
        next_poll: now + BASELINE_POLL,
        next_fallback: None,
        resync_at: None,
        reported_limit: 0,
        last_reload_error: None,
        stop: false,
        quiet_time: opts.debounce,
        sinks: &mut sinks,
    };
    // Watches first, then the scan: nothing that happens in between is
    // missed (an event for a path the scan also saw is not reported twice).
    e.full_rescan(Source::Startup);
    messages::status(&format!(
        "libwarden watch: watching {} directories; baseline generation {} ({} entries); \
         {} deviation{} now; rescan every {}",
        e.watches.len(),
        e.baseline.meta.generation,
        e.baseline.records.len(),
        e.transitions.len(),
        if e.transitions.len() == 1 { "" } else { "s" },
        human_duration(e.rescan_every),
    ));
    let code = e.run(&rx, &ctl, &gate);
    // notify's drop removes the watches one syscall at a time, which takes
    // seconds with tens of thousands of them; the kernel drops them all at
    // once when the process exits, so a stop stays well under a second.
    std::mem::forget(e.watches);
    code
}

struct Engine<'a, W: notify::Watcher> {
    plan: &'a Plan,
    loc: &'a Location,
    sp: SearchPaths,
    registry: Option<Registry>,
    baseline: Baseline,
    /// Where the tree now differs from the baseline (the last rescan,
    /// updated by events): a path's record now, or `None` when it is gone.
    overlay: BTreeMap<Vec<u8>, Option<Record>>,
    /// The judges, with the provenance evidence loaded at the last rescan
    /// (or when the package database changed).
    judge: Judge<'a>,
    /// Notes already said.
    said: HashSet<String>,
    /// Since when the dpkg lock has been seen held, while it is.
    busy_since: Option<Instant>,
    db_sig: DbSig,
    watches: WatchSet<W>,
    debounce: Debouncer,
    transitions: Transitions,
    sinks: &'a mut Sinks,
    rescan_every: Duration,
    next_rescan: Instant,
    next_poll: Instant,
    next_fallback: Option<Instant>,
    /// A structural change (a search root or loader config) was seen:
    /// re-resolve the search paths and rescan at this time.
    resync_at: Option<Instant>,
    /// Unwatched directories already reported.
    reported_limit: usize,
    last_reload_error: Option<String>,
    /// Nobody to tell any more (stdout closed).
    stop: bool,
    quiet_time: Duration,
}

impl<W: notify::Watcher> Engine<'_, W> {
    fn run(&mut self, rx: &Receiver<Msg>, ctl: &Receiver<Ctl>, gate: &Gate) -> Result<i32> {
        loop {
            if let Ok(c) = ctl.try_recv() {
                if let Some(code) = self.control(c) {
                    return Ok(code);
                }
            }
            let deadline = [
                self.debounce.next_due(),
                Some(self.next_rescan),
                Some(self.next_poll),
                self.next_fallback,
                self.resync_at,
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(self.next_rescan);
            let wait = deadline.saturating_duration_since(Instant::now());
            crossbeam_channel::select! {
                recv(ctl) -> c => {
                    if let Ok(c) = c {
                        if let Some(code) = self.control(c) {
                            return Ok(code);
                        }
                    }
                }
                recv(rx) -> m => {
                    if let Ok(m) = m {
                        self.message(m);
                        // Take what else is queued in one go.
                        for _ in 0..BATCH {
                            match rx.try_recv() {
                                Ok(m) => self.message(m),
                                Err(_) => break,
                            }
                        }
                    }
                }
                default(wait) => {}
            }
            if let Some(since) = gate.take_full() {
                let detail = "the event queue was full: events were lost";
                self.gap(since, SystemTime::now(), detail);
            }
            let now = Instant::now();
            let due = self.debounce.take_due(now);
            if !due.is_empty() {
                self.check_paths(due, Source::Event);
            }
            if self.resync_at.is_some_and(|t| t <= now) {
                self.resync_at = None;
                self.full_rescan(Source::Rescan);
            }
            if self.next_rescan <= now {
                self.full_rescan(Source::Rescan);
            }
            if self.next_poll <= now {
                self.next_poll = now + BASELINE_POLL;
                self.reload(false);
            }
            if self.next_fallback.is_some_and(|t| t <= now) {
                self.fallback();
            }
            if self.stop {
                return Ok(0);
            }
        }
    }

    fn control(&mut self, c: Ctl) -> Option<i32> {
        match c {
            Ctl::Hup => {
                messages::status(
                    "libwarden watch: SIGHUP: reopening the output file, reloading the baseline",
                );
                self.sinks.reopen();
                self.reload(true);
                None
            }
            other => Some(other.exit_code()),
        }
    }

    fn message(&mut self, m: Msg) {
        match m {
            Msg::Paths(paths) => {
                let now = Instant::now();
                for p in paths {
                    self.route(p, now);
                }
            }
            Msg::Overflow { since, at } => {
                let detail = "the kernel's inotify queue overflowed: events were lost";
                self.gap(since, at, detail);
            }
            Msg::Error(e) => messages::error(&format!(
                "libwarden watch: warning: {}",
                escape::for_terminal(e.as_bytes())
            )),
        }
    }

    fn logical(&self, host: &Path) -> Vec<u8> {
        self.plan.root.logical_bytes(host)
    }

    fn host(&self, logical: &[u8]) -> PathBuf {
        self.plan
            .root
            .host_path(Path::new(OsStr::from_bytes(logical)))
    }

    fn excluded(&self, logical: &[u8]) -> bool {
        let ex = &self.plan.scan.excludes;
        !ex.is_empty() && ex.is_match(Path::new(OsStr::from_bytes(logical)))
    }

    /// Decides what an event on `host` means: a monitored path to check
    /// (debounced), a change above a search root (resync), or noise.
    fn route(&mut self, host: PathBuf, now: Instant) {
        let logical = self.logical(&host);
        if self.excluded(&logical) {
            return;
        }
        let lp = Path::new(OsStr::from_bytes(&logical));
        if self.sp.covers(lp) {
            self.debounce.touch(host, now);
        } else if self.structural(lp) {
            self.resync_at.get_or_insert(now + self.quiet_time);
        }
    }

    /// `lp` is a search root, a loader file's directory, or above one: its
    /// appearance or disappearance changes what is monitored.
    fn structural(&self, lp: &Path) -> bool {
        self.sp
            .dirs
            .iter()
            .map(|d| d.path.as_path())
            .chain(self.sp.files.iter().filter_map(|f| f.path.parent()))
            .any(|d| d.starts_with(lp))
    }

    /// Whether a directory at `logical` is to be watched: inside (or at) a
    /// recursive search dir, or a non-recursive one itself.
    fn wants_watch(&self, logical: &[u8]) -> bool {
        let lp = Path::new(OsStr::from_bytes(logical));
        self.sp
            .walk_roots()
            .any(|d| lp == d.path || (d.recursive && lp.starts_with(&d.path)))
    }

    /// Re-inspects paths (host), then judges them as `check` would and
    /// reports what changed. A directory that appeared is watched and its
    /// entries checked at once; one that went away takes its baseline
    /// entries with it. While a package transaction holds the dpkg lock,
    /// the paths wait for it to finish: its files may not match a
    /// database it has not written yet.
    fn check_paths(&mut self, mut todo: Vec<PathBuf>, source: Source) {
        let now = Instant::now();
        if self.judge.packages_busy() {
            // A transaction takes seconds; a lock held for longer is a
            // stuck or hostile one, and must not keep the watcher blind.
            let since = *self.busy_since.get_or_insert(now);
            if now.duration_since(since) < PACKAGE_WAIT {
                let later = now + self.quiet_time;
                for p in todo {
                    self.debounce.touch(p, later);
                }
                return;
            }
            self.say_once(&[Note::Warning(format!(
                "the dpkg lock has been held for over {}: judging changes without waiting for it",
                human_duration(PACKAGE_WAIT)
            ))]);
        } else {
            self.busy_since = None;
        }
        let mut seen: HashSet<PathBuf> = HashSet::new();
        let mut touched: HashSet<Vec<u8>> = HashSet::new();
        while !todo.is_empty() && !self.stop {
            todo.retain(|p| seen.insert(p.clone()));
            todo.sort();
            let root = &self.plan.root;
            let (baseline, overlay) = (&self.baseline.records, &self.overlay);
            let outs: Vec<(PathBuf, Vec<u8>, Outcome)> = todo
                .par_iter()
                .map(|host| {
                    let logical = root.logical_bytes(host);
                    let prior = match overlay.get(&logical) {
                        Some(now) => now.as_ref(),
                        None => scan::find(baseline, &logical),
                    };
                    let out = inspect::inspect_path_with(
                        root,
                        logical.clone(),
                        prior,
                        self.plan.scan.sha256,
                    );
                    (host.clone(), logical, out)
                })
                .collect();
            let mut more = Vec::new();
            for (host, logical, out) in outs {
                let now = match out {
                    Outcome::Record(r, warning) => {
                        if let Some(w) = warning {
                            self.warn(&logical, &w);
                        }
                        Some(r)
                    }
                    Outcome::Vanished => None,
                    // Its directory is a symlink now: nothing inside the
                    // root is there, and its name is not to be shown.
                    Outcome::Unreachable => None,
                    Outcome::Failed(w) => {
                        self.warn(&logical, &w);
                        continue;
                    }
                };
                let prior = scan::find(&self.baseline.records, &logical);
                // Back to the baseline's state: no longer in the overlay.
                let same = now.as_ref() == prior;
                let is_dir = now.as_ref().is_some_and(|r| r.ftype == FileType::Dir);
                let was_dir =
                    prior.is_some_and(|r| r.ftype == FileType::Dir) || self.watches.contains(&host);
                let mut fresh = false;
                if is_dir && self.wants_watch(&logical) {
                    match self.watches.add(&host) {
                        Added::New => fresh = true,
                        Added::Limit => self.limit_reached(),
                        Added::Failed(e) => self.warn(&logical, &format!("cannot watch: {e}")),
                        Added::Already | Added::Gone => {}
                    }
                } else if !is_dir && self.watches.contains(&host) {
                    self.watches.remove(&host);
                }
                if fresh {
                    // Whatever was created in it before the watch existed.
                    let dir = PathBuf::from(OsStr::from_bytes(&logical));
                    if let Ok(rd) = self.plan.root.list(&dir) {
                        more.extend(rd.into_iter().map(|n| host.join(n)));
                    }
                }
                if fresh || (was_dir && !is_dir) {
                    if self.structural(Path::new(OsStr::from_bytes(&logical))) {
                        // A search root came or went: re-resolve.
                        self.resync_at
                            .get_or_insert(Instant::now() + self.quiet_time);
                    }
                    more.extend(self.children(&logical).iter().map(|c| self.host(c)));
                }
                match now {
                    _ if same => self.overlay.remove(&logical),
                    now => self.overlay.insert(logical.clone(), now),
                };
                touched.insert(logical);
            }
            todo = more
                .into_iter()
                .filter(|p| !self.excluded(&self.logical(p)))
                .collect();
        }
        if touched.is_empty() || self.stop {
            return;
        }
        // A rebuilt ld.so.cache is explained by the libraries it lists: when
        // they change after it was judged (their events came later), judge
        // it again with them.
        let cache = crate::formats::ldcache::CACHE.as_bytes();
        if self.overlay.contains_key(cache)
            && touched
                .iter()
                .any(|p| crate::formats::elf::is_so_name(crate::record::file_name(p)))
        {
            touched.insert(cache.to_vec());
        }
        // The whole tree as it is now, for this judgement only.
        let current = merge(&self.baseline.records, &self.overlay);
        self.judge.refresh(&current);
        let v = self.judge.run(
            Reference::Baseline(&self.baseline),
            (&self.sp, self.registry.as_ref(), &current),
            Judges::EVENT,
            Some(&touched),
        );
        drop(current);
        self.say_once(&v.notes);
        let cls = Classifier::new(&self.sp);
        if v.findings.iter().zip(&v.origins).any(|(f, o)| {
            *o == Origin::Change && matches!(cls.role(&f.path), diff::Role::LoaderConfig)
        }) {
            // The search path may have changed.
            self.resync_at
                .get_or_insert(Instant::now() + self.quiet_time);
        }
        // The changes of the touched paths, and everything the audit says
        // (it looked at the whole tree); processes wait for the rescan.
        let news = self.transitions.apply(&v.findings, &v.origins, |o, p| {
            (o == Origin::Change && touched.contains(p)) || o == Origin::Audit
        });
        let news: Vec<Finding> = news.into_iter().cloned().collect();
        for f in &news {
            self.emit(f, source, None);
        }
    }

    /// Baseline and reported entries directly inside `dir` (logical).
    fn children(&self, dir: &[u8]) -> Vec<Vec<u8>> {
        let mut prefix = dir.to_vec();
        if prefix != b"/" {
            prefix.push(b'/');
        }
        let start = self
            .baseline
            .records
            .partition_point(|r| r.path.as_slice() < prefix.as_slice());
        let mut out: Vec<Vec<u8>> = self.baseline.records[start..]
            .iter()
            .take_while(|r| r.path.starts_with(&prefix))
            .filter(|r| state::is_child(&r.path, dir))
            .map(|r| r.path.clone())
            .collect();
        out.extend(self.transitions.children_of(dir));
        out
    }

    /// Re-resolves the search paths, brings the watches in line, takes a
    /// snapshot (incrementally: unchanged files are not re-read), judges
    /// it with every judge, as `check` does, and reports what changed
    /// since last reported.
    fn full_rescan(&mut self, source: Source) {
        let started = Instant::now();
        (self.sp, self.registry) = self.plan.resolve();
        self.sync_watches();
        // Unchanged files keep the baseline's digests and facts; files that
        // changed since are read again (there are few of them).
        let (res, notes) = self.plan.collect(
            &self.sp,
            self.registry.as_ref(),
            &self.baseline.records,
            false,
        );
        if source == Source::Startup {
            messages::notes(&notes);
            messages::path_warnings(&res.warnings);
        }
        let records = res.records;
        // New evidence each rescan: the package database may have changed.
        self.judge = Judge::new(self.plan, &records, Judges::ALL, true);
        let v = self.judge.run(
            Reference::Baseline(&self.baseline),
            (&self.sp, self.registry.as_ref(), &records),
            Judges::ALL,
            None,
        );
        self.overlay = overlay(&self.baseline.records, records);
        if source == Source::Startup {
            for n in v.notes.iter().filter(|n| matches!(n, Note::Status(_))) {
                messages::note(n);
            }
        }
        self.say_once(&v.notes);
        let news: Vec<Finding> = self
            .transitions
            .apply(&v.findings, &v.origins, |_, _| true)
            .into_iter()
            .cloned()
            .collect();
        for f in &news {
            self.emit(f, source, None);
        }
        let deviations = self.transitions.len();
        drop(v);
        release_memory();
        self.next_rescan = Instant::now() + self.rescan_every;
        if source != Source::Startup {
            messages::status(&format!(
                "libwarden watch: rescan ({}) done in {:.2} s: {} deviation{} from the baseline",
                source.name(),
                started.elapsed().as_secs_f64(),
                deviations,
                if deviations == 1 { "" } else { "s" }
            ));
        }
    }

    /// Watches every directory of the search paths, the directories of the
    /// loader's files, and the nearest existing parent of every search root
    /// (to see a root deleted and recreated, or created late).
    fn sync_watches(&mut self) {
        let mut want: Vec<PathBuf> = Vec::new();
        let cross = self.plan.scan.cross_filesystems;
        let roots: Vec<(PathBuf, bool)> = self
            .sp
            .walk_roots()
            .map(|d| (self.plan.root.host_path(&d.path), d.recursive))
            .collect();
        for (host, recursive) in roots {
            if recursive {
                want.extend(self.dirs_below(&host, cross));
            } else {
                want.push(host);
            }
        }
        let anchors: Vec<PathBuf> = self
            .sp
            .dirs
            .iter()
            .filter(|d| d.covered_by.is_none())
            .filter_map(|d| d.path.parent())
            .chain(self.sp.files.iter().filter_map(|f| f.path.parent()))
            .filter_map(|p| self.nearest_dir(p))
            .collect();
        want.extend(anchors);
        want.sort();
        want.dedup();
        let keep: HashSet<&PathBuf> = want.iter().collect();
        let stale: Vec<PathBuf> = self
            .watches
            .watched()
            .filter(|w| !keep.contains(w))
            .cloned()
            .collect();
        for w in stale {
            self.watches.remove(&w);
        }
        let mut limited = false;
        for w in &want {
            match self.watches.add(w) {
                Added::Limit => limited = true,
                Added::Failed(e) => {
                    let l = self.logical(w);
                    self.warn(&l, &format!("cannot watch: {e}"));
                }
                _ => {}
            }
        }
        self.watches.unwatched.retain(|u| keep.contains(u));
        if limited {
            self.limit_reached();
        }
    }

    /// Every directory at and below `top` (host), not following symlinks,
    /// on one file system unless `cross`, minus excluded ones.
    fn dirs_below(&self, top: &Path, cross: bool) -> Vec<PathBuf> {
        // Listed and stat'ed confined below the root (by logical path):
        // a directory swapped for a symlink is not followed outside.
        let root = &self.plan.root;
        let top = PathBuf::from(OsStr::from_bytes(&self.logical(top)));
        let Ok(meta) = root.lstat(&top) else {
            return Vec::new();
        };
        if !meta.is_dir() {
            return Vec::new();
        }
        let dev = meta.dev();
        let mut out = vec![root.host_path(&top)];
        let mut stack = vec![top];
        while let Some(d) = stack.pop() {
            let Ok(rd) = root.list_entries(&d) else {
                continue;
            };
            for (name, t) in rd {
                if !t.is_dir() {
                    continue;
                }
                let p = d.join(name);
                if !cross && root.lstat(&p).is_ok_and(|m| m.dev() != dev) {
                    continue;
                }
                if self.excluded(p.as_os_str().as_bytes()) {
                    continue;
                }
                out.push(root.host_path(&p));
                stack.push(p);
            }
        }
        out
    }

    /// The nearest existing directory at or above `logical`, on the host.
    fn nearest_dir(&self, logical: &Path) -> Option<PathBuf> {
        let mut p = Some(logical);
        while let Some(cur) = p {
            if self.plan.root.lstat(cur).is_ok_and(|m| m.is_dir()) {
                return Some(self.plan.root.host_path(cur));
            }
            p = cur.parent();
        }
        None
    }

    /// New directories could not be watched: say so, loudly, once per
    /// growth of the set, and check them every [`FALLBACK_INTERVAL`].
    fn limit_reached(&mut self) {
        let n = self.watches.unwatched.len();
        if n == 0 {
            return;
        }
        let every = FALLBACK_INTERVAL.min(self.rescan_every);
        self.next_fallback.get_or_insert(Instant::now() + every);
        if n <= self.reported_limit {
            return;
        }
        self.reported_limit = n;
        let names: Vec<String> = self
            .watches
            .unwatched
            .iter()
            .take(20)
            .map(|d| escape::for_terminal(&self.logical(d)))
            .collect();
        messages::error(&format!(
            "libwarden watch: error: the inotify watch limit is exhausted: {n} director{} cannot \
             be watched ({}{}). Raise fs.inotify.max_user_watches (sysctl -w \
             fs.inotify.max_user_watches=524288). Until then they are checked every {}.",
            if n == 1 { "y" } else { "ies" },
            names.join(", "),
            if n > names.len() { ", ..." } else { "" },
            human_duration(every),
        ));
        let first = self
            .watches
            .unwatched
            .iter()
            .next()
            .map(|d| self.logical(d))
            .unwrap_or_else(|| b"/".to_vec());
        let f = Finding {
            kind: Kind::MonitoringGap,
            severity: Severity::Medium,
            path: first,
            detail: format!(
                "{n} director{} not watched: fs.inotify.max_user_watches is exhausted; \
                 checked every {} instead",
                if n == 1 { "y is" } else { "ies are" },
                human_duration(every)
            ),
            changes: Vec::new(),
            before: None,
            after: None,
        };
        self.emit(&f, Source::Fallback, None);
    }

    /// Checks the directories that could not be watched: retries the
    /// watch, and checks their entries and their baseline entries.
    fn fallback(&mut self) {
        let dirs: Vec<PathBuf> = self.watches.unwatched.iter().cloned().collect();
        let mut todo = Vec::new();
        for d in dirs {
            if self.watches.add(&d) == Added::New {
                messages::status(&format!(
                    "libwarden watch: {} is watched again",
                    escape::for_terminal(&self.logical(&d))
                ));
            }
            todo.push(d.clone());
            let l = PathBuf::from(OsStr::from_bytes(&self.logical(&d)));
            if let Ok(rd) = self.plan.root.list_entries(&l) {
                todo.extend(
                    rd.into_iter()
                        .filter(|(_, t)| !t.is_dir())
                        .map(|(n, _)| d.join(n)),
                );
            }
            let l = self.logical(&d);
            todo.extend(self.children(&l).iter().map(|c| self.host(c)));
        }
        self.check_paths(todo, Source::Fallback);
        self.next_fallback = if self.watches.unwatched.is_empty() {
            self.reported_limit = 0;
            None
        } else {
            Some(Instant::now() + FALLBACK_INTERVAL.min(self.rescan_every))
        };
    }

    /// Events were lost between `since` and `until`: report the window,
    /// then rescan everything so nothing that happened in it is missed.
    fn gap(&mut self, since: SystemTime, until: SystemTime, why: &str) {
        let f = Finding {
            kind: Kind::MonitoringGap,
            severity: Severity::High,
            path: b"/".to_vec(),
            detail: format!(
                "{why}; changes between {} and {} may have been missed as events; a full rescan follows",
                sink::rfc3339(since),
                sink::rfc3339(until)
            ),
            changes: Vec::new(),
            before: None,
            after: None,
        };
        self.emit(&f, Source::Rescan, Some((since, until)));
        messages::status(&format!("libwarden watch: warning: {why}; rescanning"));
        self.full_rescan(Source::Rescan);
    }

    /// Loads a new baseline generation if there is one (`force`: look even
    /// if the store's files look unchanged), with the same trust checks
    /// as at start (signature, rollback): a refused generation leaves the
    /// watcher on the one it has.
    fn reload(&mut self, force: bool) {
        let sig = db_sig(&self.loc.db);
        if !force && sig == self.db_sig {
            return;
        }
        let current = self.baseline.meta.generation;
        let newer = Store::open(&self.loc.db)
            .and_then(|store| store.current_meta())
            .map(|m| m.is_some_and(|m| m.generation != current));
        let root = self.plan.root.host().as_os_str().as_bytes().to_vec();
        let r = match newer {
            Ok(true) => baseline::load(self.loc, &root).map(Some),
            Ok(false) => Ok(None),
            Err(e) => Err(e),
        };
        self.db_sig = db_sig(&self.loc.db);
        match r {
            Ok(loaded) => {
                self.last_reload_error = None;
                if let Some((b, notes)) = loaded {
                    messages::notes(&notes);
                    self.baseline = b;
                    messages::status(&format!(
                        "libwarden watch: loaded baseline generation {} ({} entries)",
                        self.baseline.meta.generation,
                        self.baseline.records.len()
                    ));
                    self.full_rescan(Source::Reload);
                }
            }
            Err(e) => {
                // Locked by an update in progress, say: the next poll
                // retries. A refused one is retried when the store changes.
                let msg = e.to_string();
                if self.last_reload_error.as_ref() != Some(&msg) {
                    messages::error(&format!(
                        "libwarden watch: error: keeping baseline generation {current}, \
                         cannot load the new one: {msg}"
                    ));
                    if refused(&e) {
                        self.refused_generation(current, &msg);
                    }
                }
                self.last_reload_error = Some(msg);
            }
        }
    }

    /// A new generation failed its trust checks (a signature, a rollback,
    /// damage): every sink hears of it, not only stderr. Until it is
    /// fixed the watcher judges against generation `current`, which is
    /// not the baseline the operator last wrote: a gap in what is
    /// monitored (an existing kind, so no consumer breaks).
    fn refused_generation(&mut self, current: u64, why: &str) {
        let f = Finding {
            kind: Kind::MonitoringGap,
            severity: Severity::High,
            path: b"/".to_vec(),
            detail: format!(
                "a new baseline generation was refused; still judging against generation \
                 {current}: {why}"
            ),
            changes: Vec::new(),
            before: None,
            after: None,
        };
        self.emit(&f, Source::Reload, None);
    }

    fn emit(&mut self, f: &Finding, source: Source, gap: Option<(SystemTime, SystemTime)>) {
        let ctx = Context {
            time: SystemTime::now(),
            source,
            gap,
            fields: None,
        };
        if !self.sinks.emit(f, &ctx) {
            self.stop = true;
        }
    }

    /// Notes of a judgement, each once for the life of the watcher; counts
    /// and timings (status notes) only at start.
    fn say_once(&mut self, notes: &[Note]) {
        for n in notes {
            if !matches!(n, Note::Status(_)) && self.said.insert(format!("{n:?}")) {
                messages::note(n);
            }
        }
    }

    fn warn(&self, logical: &[u8], msg: &str) {
        messages::status(&format!(
            "libwarden watch: warning: {}: {}",
            escape::for_terminal(logical),
            escape::for_terminal(msg.as_bytes())
        ));
    }
}

/// Whether a generation that could not be loaded was refused (its trust
/// checks or its contents failed), rather than not loadable yet (locked by
/// a writer, an I/O error): only a refusal is a finding.
fn refused(e: &Error) -> bool {
    matches!(
        e,
        Error::Rollback { .. }
            | Error::Signature { .. }
            | Error::CorruptBaseline { .. }
            | Error::NewerSchema { .. }
            | Error::NoBaseline(_)
    )
}

/// Where `now` (sorted) differs from `baseline` (sorted), by path.
fn overlay(baseline: &[Record], now: Vec<Record>) -> BTreeMap<Vec<u8>, Option<Record>> {
    let mut out = BTreeMap::new();
    let mut base = baseline.iter().peekable();
    for r in now {
        while let Some(b) = base.next_if(|b| b.path < r.path) {
            out.insert(b.path.clone(), None);
        }
        match base.next_if(|b| b.path == r.path) {
            Some(b) if *b == r => {}
            _ => {
                out.insert(r.path.clone(), Some(r));
            }
        }
    }
    for b in base {
        out.insert(b.path.clone(), None);
    }
    out
}

/// The records now: `baseline` with `overlay` applied, sorted by path.
fn merge(baseline: &[Record], overlay: &BTreeMap<Vec<u8>, Option<Record>>) -> Vec<Record> {
    let mut out = Vec::with_capacity(baseline.len() + overlay.len());
    let mut over = overlay.iter().peekable();
    for b in baseline {
        while let Some((_, now)) = over.next_if(|(p, _)| p.as_slice() < b.path.as_slice()) {
            out.extend(now.iter().cloned());
        }
        match over.next_if(|(p, _)| p.as_slice() == b.path.as_slice()) {
            Some((_, now)) => out.extend(now.iter().cloned()),
            None => out.push(b.clone()),
        }
    }
    out.extend(over.filter_map(|(_, now)| now.clone()));
    out
}

/// Hands the memory of a scan's transient records back to the system: a
/// long-running watcher should not keep its peak.
fn release_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// "1h", "30 min", "90 s" for messages.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s == 0 {
        format!("{} ms", d.as_millis())
    } else if s.is_multiple_of(3600) {
        format!("{} h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{} min", s / 60)
    } else {
        format!("{s} s")
    }
}

/// The record of a path now, for callers outside the engine (and tests).
pub fn record_now(root: &crate::rootfs::Root, logical: Vec<u8>) -> Option<Record> {
    match inspect::inspect_path(root, logical, None) {
        Outcome::Record(r, _) => Some(r),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(path: &str, h: u8) -> Record {
        let mut r = inspect::base_record(
            path.as_bytes().to_vec(),
            &inspect::Stat {
                mode: 0o100644,
                size: 1,
                uid: 0,
                gid: 0,
                dev: 1,
                ino: 2,
                nlink: 1,
                mtime: (1, 0),
                ctime: (1, 0),
            },
        );
        r.blake3 = Some([h; 32]);
        r
    }

    #[test]
    fn the_overlay_holds_only_differences_and_merges_back() {
        let base = vec![rec("/a", 1), rec("/b", 1), rec("/d", 1)];
        let now = vec![rec("/a", 1), rec("/b", 2), rec("/c", 1)];
        let o = overlay(&base, now.clone());
        let paths: Vec<&[u8]> = o.keys().map(|k| k.as_slice()).collect();
        assert_eq!(paths, [&b"/b"[..], b"/c", b"/d"]);
        assert_eq!(o[&b"/d".to_vec()], None);
        assert_eq!(merge(&base, &o), now);
        assert!(overlay(&base, base.clone()).is_empty());
        assert_eq!(merge(&base, &BTreeMap::new()), base);
    }

    #[test]
    fn durations_read_well() {
        use std::time::Duration;
        assert_eq!(super::human_duration(Duration::from_secs(3600)), "1 h");
        assert_eq!(super::human_duration(Duration::from_secs(90)), "90 s");
        assert_eq!(super::human_duration(Duration::from_millis(150)), "150 ms");
    }
}
