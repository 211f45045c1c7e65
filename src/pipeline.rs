//! The one pipeline every command runs: [`Plan::snapshot`] collects (search
//! paths, walk, inspection, the Windows registry), [`Judge`] judges (diff
//! against the reference, provenance with the package-update relabelling,
//! the loader audit, the self-check). `init`, `check`, `update`, `audit`
//! and `watch` differ only in what they snapshot, which judges they ask
//! for and what they do with the verdict, so the same change gives the
//! same findings whichever command saw it.
//!
//! Nothing here prints: snapshots and verdicts carry their notes, and the
//! command hands them to the output layer.

use std::borrow::Cow;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use crate::acknowledge::{Ack, Acks};
use crate::audit::{self, objects::ExecObjects, perms::Trust};
use crate::baseline::Baseline;
use crate::diff::{self, Classifier};
use crate::finding::{Finding, Kind, Note};
use crate::provenance::{
    self, authenticode::Authenticode, policy::Policy, policy::ProvenanceConfig,
};
use crate::record::Record;
use crate::rootfs::Root;
use crate::scan::{self, ScanOptions, ScanResult};
use crate::searchpaths::SearchPaths;
use crate::winreg::{self, Registry};

/// What to look at and how: the part of the configuration the pipeline
/// reads (no flags, no file formats: the config layer builds it).
pub struct Plan {
    pub root: Root,
    /// Extra directories monitored beside the loader's own.
    pub extra_paths: Vec<PathBuf>,
    /// How the walk runs (`paranoid` is set per snapshot).
    pub scan: ScanOptions,
    pub provenance: ProvenanceConfig,
    pub policy: Policy,
    /// Owners trusted besides root (the writable-path audit).
    pub trusted_uids: Vec<u32>,
    /// Executable dirs whose ELF files the audit reads.
    pub exec_dirs: Vec<PathBuf>,
}

/// The state of the monitored paths now.
pub struct Snapshot {
    pub sp: SearchPaths,
    /// The scan: records sorted by path (registry records included),
    /// per-path warnings, statistics.
    pub scan: ScanResult,
    pub registry: Option<Registry>,
    /// Search-path warnings and what could not be read of the registry.
    pub notes: Vec<Note>,
    /// The package database as read before the walk (a walk that reads
    /// every file), for the judge and the owners to use instead of reading
    /// it again.
    pub packages: Option<Arc<provenance::Packages>>,
}

impl Plan {
    /// The registry (of a Windows image) and the search paths it implies.
    pub fn resolve(&self) -> (SearchPaths, Option<Registry>) {
        let registry = winreg::read(&self.root);
        let sp = SearchPaths::resolve(&self.root, &self.extra_paths, registry.as_ref());
        (sp, registry)
    }

    pub fn scan_options(&self, paranoid: bool) -> ScanOptions {
        ScanOptions {
            paranoid,
            ..self.scan.clone()
        }
    }

    /// Resolves the search paths and scans them, reusing digests and facts
    /// from `prior` for files whose identity is unchanged (unless
    /// `paranoid`).
    pub fn snapshot(&self, prior: &[Record], paranoid: bool) -> Snapshot {
        let (sp, registry) = self.resolve();
        self.snapshot_of(sp, registry, prior, paranoid)
    }

    /// [`Plan::snapshot`] against `base` (`check`, `update`): the files
    /// read (those changed since) get their package digests in the scan's
    /// read too, the paths that want them taken from the package index
    /// the generation kept while the databases are unchanged, else from
    /// the databases read once before the walk (the judge needs them then
    /// anyway).
    pub fn snapshot_against(&self, base: &Baseline, paranoid: bool) -> Snapshot {
        let (sp, registry) = self.resolve();
        self.snapshot_read(sp, registry, &base.records, &base.extra, paranoid, false)
    }

    /// The snapshot a first generation is made of: every file read, and
    /// the package database read once with its lists, which give the
    /// owners the generation records ([`owners_of`]).
    pub fn snapshot_to_record(&self) -> Snapshot {
        let (sp, registry) = self.resolve();
        self.snapshot_read(sp, registry, &[], &[], true, true)
    }

    /// [`Plan::snapshot`] of search paths already resolved.
    pub fn snapshot_of(
        &self,
        sp: SearchPaths,
        registry: Option<Registry>,
        prior: &[Record],
        paranoid: bool,
    ) -> Snapshot {
        self.snapshot_read(sp, registry, prior, &[], paranoid, false)
    }

    /// [`Plan::snapshot_of`]; with `lists`, a package database read before
    /// the walk includes each package's lists; `extra`, the pairs of the
    /// generation `prior` comes from (see [`Plan::snapshot_against`]).
    fn snapshot_read(
        &self,
        sp: SearchPaths,
        registry: Option<Registry>,
        prior: &[Record],
        extra: &[(Vec<u8>, Vec<u8>)],
        paranoid: bool,
        lists: bool,
    ) -> Snapshot {
        // A progress line on a terminal while the disk is read (init, check,
        // update, audit; the watcher's rescans print none).
        let display =
            crate::output::progress::start(self.scan.show_progress, "scan", prior.len() as u64);
        let mut opts = self.scan_options(paranoid);
        opts.progress = display.as_ref().map(|d| d.counters.clone());
        // When every file is read anyway (no prior to reuse), the packaged
        // ones get their package digests (dpkg's MD5, rpm's SHA-256, apk's
        // SHA-1) in the same read: the databases are read first, once; the
        // judge and the owners cut what they need from that read.
        // Against a generation only changed files are read: while the
        // databases are unchanged, the index the generation kept says which
        // want which digest and nothing is parsed (an unchanged check loads
        // nothing more); once they changed, the judge reads them anyway, so
        // they are read now instead.
        let reads_all = paranoid || prior.is_empty();
        let kept = (!reads_all && !extra.is_empty())
            .then(|| provenance::World::cached_digest_paths(&self.root, &self.provenance, extra))
            .flatten();
        let mut packages = (reads_all || (!extra.is_empty() && kept.is_none()))
            .then(|| {
                // Claims on paths no record of `sp` can have are left out.
                let scope = provenance::scope::Scope::of(&sp);
                provenance::Packages::read(&self.root, &self.provenance, lists, Some(&scope))
            })
            .flatten();
        opts.digest_paths = match &packages {
            Some(p) => p.digest_paths(),
            None => kept,
        }
        .map(Arc::new);
        if packages.is_some() {
            // What parsing the package database freed, before the walk.
            crate::sys::release_free_memory();
        }
        let (scan, notes) = self.collect_with(&sp, registry.as_ref(), prior, &opts);
        drop(display);
        // Only this snapshot's records are judged with it: the claims on
        // other names (documentation, executables, locales) go. Not for a
        // first generation (`lists`): its judge and owners are the index's
        // last users, and each cuts what it needs from the whole read (the
        // same answers: a record's claims are those on its own name); the
        // caller drops the index once both are done, so cutting it here
        // would be serial work for memory held a moment longer.
        if let Some(p) = packages.as_mut().filter(|_| !lists) {
            let names: HashSet<Vec<u8>> = scan
                .records
                .iter()
                .map(|r| crate::record::file_name(&r.path).to_vec())
                .collect();
            p.retain_names(&names);
        }
        let packages = packages.map(Arc::new);
        Snapshot {
            sp,
            scan,
            registry,
            notes,
            packages,
        }
    }

    /// Walks and inspects what `sp` monitors and adds the registry's
    /// records; the notes are the search paths' warnings and what could
    /// not be read of the registry.
    pub fn collect(
        &self,
        sp: &SearchPaths,
        registry: Option<&Registry>,
        prior: &[Record],
        paranoid: bool,
    ) -> (ScanResult, Vec<Note>) {
        self.collect_with(sp, registry, prior, &self.scan_options(paranoid))
    }

    fn collect_with(
        &self,
        sp: &SearchPaths,
        registry: Option<&Registry>,
        prior: &[Record],
        opts: &ScanOptions,
    ) -> (ScanResult, Vec<Note>) {
        let mut scan = scan::scan(&self.root, sp, opts, prior);
        // The walkers' batches, read buffers and the baseline's index are
        // freed: give their pages back before the judges allocate.
        crate::sys::release_free_memory();
        // A Windows image's registry values are baselined like files.
        let mut notes: Vec<Note> = winreg::add_records(registry, &mut scan.records)
            .into_iter()
            .map(Note::Info)
            .collect();
        notes.extend(sp.warnings.iter().cloned().map(Note::Warning));
        (scan, notes)
    }
}

/// What a snapshot is judged against.
#[derive(Clone, Copy)]
pub enum Reference<'a> {
    /// Nothing (`init`, `audit`): no changes, no `manifest` evidence.
    Nothing,
    /// The local baseline: changes, cached provenance, package updates.
    Baseline(&'a Baseline),
    /// A golden manifest (`check --against`): its records, already
    /// portable, and ours made portable the same way (both without the
    /// host-specific paths the config leaves out).
    Manifest {
        theirs: &'a [Record],
        ours: &'a [Record],
    },
}

/// Which judges run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Judges {
    pub diff: bool,
    pub provenance: bool,
    pub audit: bool,
    /// The process audit (part of the audit; left out of `watch` events).
    pub processes: bool,
    pub selfcheck: bool,
}

impl Judges {
    /// `check`, and `watch` at start and on every rescan.
    pub const ALL: Judges = Judges {
        diff: true,
        provenance: true,
        audit: true,
        processes: true,
        selfcheck: true,
    };
    /// `update`: what is to be accepted.
    pub const CHANGES: Judges = Judges {
        diff: true,
        provenance: true,
        audit: false,
        processes: false,
        selfcheck: false,
    };
    /// `init`: provenance for the state it records, and the audit for the
    /// standing findings it shows (a first baseline has no changes).
    pub const STANDING: Judges = Judges {
        diff: false,
        provenance: true,
        audit: true,
        processes: true,
        selfcheck: true,
    };
    /// `audit`: the loader audit and provenance, with no baseline (so a
    /// host compromised before the first `init` is judged too).
    pub const AUDIT: Judges = Judges {
        diff: false,
        provenance: true,
        audit: true,
        processes: true,
        selfcheck: false,
    };
    /// A `watch` event: everything the touched paths can change.
    pub const EVENT: Judges = Judges {
        diff: true,
        provenance: true,
        audit: true,
        processes: false,
        selfcheck: false,
    };
}

/// Which judge a finding came from (`watch` replaces, on an event, only
/// what the judges that ran could have said).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The diff and provenance: about the path judged.
    Change,
    /// The loader audit, but for the processes.
    Audit,
    /// The process audit.
    Processes,
    /// The self-check of libwarden's own process.
    SelfCheck,
}

/// What the judges said.
#[derive(Default)]
pub struct Verdict {
    /// Sorted by path, then kind; neither excluded nor acknowledged.
    pub findings: Vec<Finding>,
    /// The judge of each finding (same order).
    pub origins: Vec<Origin>,
    /// Findings an acknowledgement in the baseline silences (sorted):
    /// `check --all` shows them, nothing else does.
    pub acknowledged: Vec<(Finding, Ack)>,
    pub notes: Vec<Note>,
    /// Provenance's outcome (its state for the next generation, the
    /// libraries that match their package), when it ran.
    pub provenance: Option<provenance::Outcome>,
    /// The provenance state the reference baseline recorded.
    pub prior: provenance::State,
    /// The package index judged with, as the next generation keeps it
    /// (`provenance::cache`), when provenance ran with one that can.
    pub package_cache: Option<(Vec<u8>, Vec<u8>)>,
}

/// The judges with what they need loaded: the provenance evidence (dpkg
/// database, Authenticode roots, IMA keys). A one-shot command makes one
/// per run; `watch` keeps one and makes a new one on each rescan.
pub struct Judge<'a> {
    plan: &'a Plan,
    world: Option<provenance::World>,
    /// Authenticode verdicts for provenance and the Windows audits.
    authenticode: Authenticode,
    /// The executable dirs' ELF objects, read by the first audit.
    exec: ExecObjects,
    /// Notes of loading, handed out with the first verdict.
    notes: Vec<Note>,
    /// Acknowledgements for a run with no baseline reference (`audit`
    /// reads them from the baseline when there is one).
    acks: Acks,
    /// The package index with symlinks and directories, read when a
    /// change needs explaining ([`Judge::index_for`]).
    index: Option<provenance::Index>,
    /// Package digests the scan computed in its read
    /// ([`ScanResult::digests`]).
    scan_digests: Option<Arc<crate::inspect::ContentDigests>>,
}

impl<'a> Judge<'a> {
    /// Loads the evidence for judging `records` with `judges`. With
    /// `long_lived`, nothing is cut to the names of today's records.
    pub fn new(plan: &'a Plan, records: &[Record], judges: Judges, long_lived: bool) -> Judge<'a> {
        Judge::new_cached(plan, records, judges, long_lived, &[])
    }

    /// [`Judge::new`] with a generation's extra pairs, whose package index
    /// stands in for reading the databases when they did not change
    /// (`provenance::cache`).
    pub fn new_cached(
        plan: &'a Plan,
        records: &[Record],
        judges: Judges,
        long_lived: bool,
        extra: &[(Vec<u8>, Vec<u8>)],
    ) -> Judge<'a> {
        Judge::new_read(plan, records, judges, long_lived, extra, None)
    }

    /// [`Judge::new_cached`] with the package database the snapshot read
    /// (see [`Snapshot::packages`]).
    fn new_read(
        plan: &'a Plan,
        records: &[Record],
        judges: Judges,
        long_lived: bool,
        extra: &[(Vec<u8>, Vec<u8>)],
        read: Option<&provenance::Packages>,
    ) -> Judge<'a> {
        let mut j = Judge::unloaded(plan);
        if judges.provenance && !plan.provenance.disabled {
            let (w, n) = provenance::World::load_read(
                &plan.root,
                &plan.provenance,
                &plan.policy,
                records,
                !long_lived,
                extra,
                read,
            );
            j.world = Some(w);
            j.notes = n;
        }
        j
    }

    /// A judge with no evidence loaded yet (`watch`, before its first
    /// snapshot says what the evidence is for).
    pub fn unloaded(plan: &'a Plan) -> Judge<'a> {
        Judge {
            plan,
            world: None,
            authenticode: Authenticode::new(plan.provenance.authenticode_roots.as_deref()),
            exec: ExecObjects::default(),
            notes: Vec::new(),
            acks: Acks::default(),
            index: None,
            scan_digests: None,
        }
    }

    /// The digest algorithms (`md5`, `sha256`...) the loaded package
    /// databases record for their files: what an image computes for
    /// provenance in its second pass ([`crate::imagejudge`]).
    pub fn package_algos(&self) -> Vec<&'static str> {
        let Some(db) = self.world.as_ref().and_then(|w| w.dpkg.as_ref()) else {
            return Vec::new();
        };
        provenance::index::Algo::ALL
            .into_iter()
            .filter(|a| db.paths_with(*a).next().is_some())
            .map(|a| a.name())
            .collect()
    }

    /// Lets provenance use the package digests `scan` computed instead of
    /// reading those files again.
    pub fn use_scan_digests(&mut self, scan: &ScanResult) {
        self.scan_digests = Some(scan.digests.clone());
    }

    /// Silences what `acks` acknowledges when judging against no baseline
    /// (a baseline reference brings its own).
    pub fn acknowledge(&mut self, acks: Acks) {
        self.acks = acks;
    }

    /// The package index that knows who claims paths named `names`
    /// (symlinks and directories too): the one read before if it covers
    /// them and the database did not change since, else read again.
    fn index_for(&mut self, names: &HashSet<Vec<u8>>) -> Option<&provenance::dpkg::DpkgDb> {
        let fresh = self
            .index
            .as_ref()
            .is_some_and(|i| i.covers(&self.plan.root, &self.plan.provenance, names));
        if !fresh {
            let mut notes = Vec::new();
            self.index = provenance::Index::load(
                &self.plan.root,
                &self.plan.provenance,
                Some(names),
                &mut notes,
            );
            self.notes.extend(notes);
        }
        self.index.as_ref().map(|i| &i.db)
    }

    /// Reads the provenance evidence again if the package database changed
    /// since it was read (a long-lived judge: `watch`). True when it did.
    pub fn refresh(&mut self, records: &[Record]) -> bool {
        let stale = self
            .world
            .as_ref()
            .is_some_and(|w| w.is_stale(&self.plan.root, &self.plan.provenance));
        if stale {
            let (w, n) = load_world(self.plan, records, false);
            self.world = Some(w);
            self.notes.extend(n);
        }
        stale
    }

    /// Whether a package transaction is under way (its files may not
    /// match a database it has not finished writing).
    pub fn packages_busy(&self) -> bool {
        self.world.as_ref().is_some_and(|w| w.dpkg.is_some())
            && (provenance::dpkg::busy(
                &self.plan.root,
                &provenance::admin_dir(&self.plan.provenance),
            ) || provenance::rpm::busy(&self.plan.root))
    }

    /// Judges `records` (with the search paths and registry they were
    /// collected with) against `reference`. With `only`, the changes and
    /// provenance are judged for those paths alone (a `watch` event); the
    /// audit, when asked for, always looks at everything.
    pub fn run<'r>(
        &mut self,
        reference: Reference<'r>,
        snap: (&SearchPaths, Option<&Registry>, &'r [Record]),
        judges: Judges,
        only: Option<&HashSet<Vec<u8>>>,
    ) -> Verdict {
        let (sp, registry, records) = snap;
        let mut v = Verdict {
            notes: std::mem::take(&mut self.notes),
            ..Verdict::default()
        };
        let mut rest: Vec<(Origin, Finding)> = Vec::new();
        // The records of the `only` paths (all of them, borrowed, without),
        // sorted: a binary search per path, not a pass over the whole tree.
        let pick = |rs: &'r [Record]| -> Cow<'r, [Record]> {
            match only {
                None => Cow::Borrowed(rs),
                Some(o) => {
                    let mut v: Vec<Record> = o
                        .iter()
                        .filter_map(|p| scan::find(rs, p))
                        .cloned()
                        .collect();
                    v.sort_unstable_by(|a, b| a.path.cmp(&b.path));
                    Cow::Owned(v)
                }
            }
        };
        let now = pick(records);
        // What the changes are judged against (and the `manifest`
        // evidence), and, against a golden manifest, our records made
        // portable as its are.
        let (mut base, portable) = match reference {
            Reference::Nothing => (Cow::Borrowed(&[][..]), None),
            Reference::Baseline(b) => (pick(&b.records), None),
            Reference::Manifest { theirs, ours } => (pick(theirs), Some(pick(ours))),
        };
        // An exclude added after the baseline was written: what it leaves
        // out is not scanned now, so leave it out of the reference too
        // (else every excluded file is `removed`).
        if !self.plan.scan.excludes.is_empty()
            && base.iter().any(|r| excluded(self.plan, sp, &r.path))
        {
            base = Cow::Owned(
                base.iter()
                    .filter(|r| !excluded(self.plan, sp, &r.path))
                    .cloned()
                    .collect(),
            );
        }
        if judges.diff {
            let ours = portable.as_deref().unwrap_or(&now);
            v.findings
                .extend(diff::diff(&base, ours, &Classifier::new(sp)));
        }
        if let Reference::Baseline(b) = reference {
            v.prior = provenance::State::without_owners(&b.extra);
        }
        if let (true, Some(world)) = (judges.provenance, &self.world) {
            let mut cx = world.context(&self.plan.root, &self.plan.policy, &self.authenticode);
            cx.scan_digests = self.scan_digests.as_deref();
            // Which package each library matched explains changes against
            // a reference; with none (a first `init`, an image's standing
            // findings) nothing asks.
            cx.keep_matches = !matches!(reference, Reference::Nothing);
            let started = std::time::Instant::now();
            // The golden manifest, or the baseline, is the `manifest`
            // evidence.
            let mut out = provenance::evaluate(&cx, &now, &base, &v.prior);
            v.notes.push(Note::Status(format!(
                "provenance: {} libraries judged, {} digests computed ({} in the scan's read), in {:.3} s",
                out.judged,
                out.md5_computed,
                out.md5_from_scan,
                started.elapsed().as_secs_f64()
            )));
            if matches!(reference, Reference::Baseline(_)) {
                // Only when packages changed since the baseline is there
                // anything to explain (and an index to read).
                let changed = provenance::transaction::changed(&v.prior, &out.state.versions);
                if !changed.is_empty() {
                    // Only files gone in a transaction need the owners.
                    if let Reference::Baseline(b) = reference {
                        if v.findings.iter().any(|f| f.kind == Kind::Removed) {
                            // Read again from the store when the baseline
                            // was loaded without them (`check`).
                            match b.owner_pairs() {
                                Ok(pairs) => {
                                    v.prior.owners = provenance::State::owners_from_pairs(&pairs)
                                }
                                Err(e) => v.notes.push(Note::Warning(format!(
                                    "the package owners of the baseline could not be read ({e}): files removed with their package are reported as removed"
                                ))),
                            }
                        }
                    }
                    let names = provenance::transaction::names_needed(&v.findings);
                    if !names.is_empty() {
                        self.index_for(&names);
                    }
                    let world = self.world.as_ref();
                    if let Some(world) = world {
                        let cx =
                            world.context(&self.plan.root, &self.plan.policy, &self.authenticode);
                        let tx = provenance::transaction::Tx {
                            cx: &cx,
                            sp,
                            records,
                            prior: &v.prior,
                            index: self
                                .index
                                .as_ref()
                                .map(|i| &i.db)
                                .filter(|_| !names.is_empty()),
                        };
                        let now_versions = out.state.versions.clone();
                        provenance::transaction::explain(
                            &mut v.findings,
                            &tx,
                            &changed,
                            &now_versions,
                            &mut out,
                        );
                    }
                }
            }
            v.findings.append(&mut out.findings);
            v.provenance = Some(out);
            v.package_cache = self.world.as_ref().and_then(provenance::World::cache_pair);
        }
        if judges.audit {
            let baseline = match reference {
                // The audit says what the baseline knows; a golden
                // manifest has no inodes to compare process mappings with.
                Reference::Baseline(b) => Some(&b.records[..]),
                _ => None,
            };
            let cx = audit::Context {
                root: &self.plan.root,
                sp,
                records,
                baseline,
                trust: Trust::new(&self.plan.root, &self.plan.trusted_uids),
                exec_dirs: &self.plan.exec_dirs,
                authenticode: &self.authenticode,
                exec: &self.exec,
                registry,
                processes: judges.processes,
            };
            let a = audit::run(&cx);
            rest.extend(a.findings.into_iter().map(|f| {
                let o = match f.kind {
                    crate::finding::Kind::Process => Origin::Processes,
                    _ => Origin::Audit,
                };
                (o, f)
            }));
            v.notes.extend(a.notes.into_iter().map(Note::Info));
        }
        v.notes.extend(self.authenticode.take_notes());
        if judges.selfcheck {
            rest.extend(
                crate::selfcheck::run()
                    .into_iter()
                    .map(|f| (Origin::SelfCheck, f)),
            );
        }
        let mut all: Vec<(Origin, Finding)> = std::mem::take(&mut v.findings)
            .into_iter()
            .map(|f| (Origin::Change, f))
            .chain(rest)
            .collect();
        // Excluded paths are not judged: the audit's findings about them
        // are as silent as their changes.
        if !self.plan.scan.excludes.is_empty() {
            all.retain(|(_, f)| !excluded(self.plan, sp, &f.path));
        }
        all.sort_by(|a, b| crate::output::order(&a.1, &b.1));
        // One place for every command: what the baseline acknowledges is
        // silent, kept aside for `check --all`.
        let parsed;
        let acks = match reference {
            Reference::Baseline(b) => {
                parsed = Acks::from_pairs(&b.extra);
                &parsed
            }
            _ => &self.acks,
        };
        if !acks.is_empty() {
            let mut kept = Vec::with_capacity(all.len());
            for (o, f) in all {
                match acks.find(&f, records) {
                    Some(a) => {
                        let a = a.clone();
                        v.acknowledged.push((f, a));
                    }
                    None => kept.push((o, f)),
                }
            }
            all = kept;
        }
        (v.origins, v.findings) = all.into_iter().unzip();
        v
    }
}

/// Whether the configured excludes leave `path` out of the walk: the path
/// or one of its directories below the search root it is under matches
/// (the walk prunes an excluded directory, never a search root itself;
/// loose tracked files and paths outside the search roots are never
/// excluded, as the scan never leaves them out).
pub fn excluded(plan: &Plan, sp: &SearchPaths, path: &[u8]) -> bool {
    let ex = &plan.scan.excludes;
    if ex.is_empty() {
        return false;
    }
    use crate::sys::OsStrExt;
    let matches = |p: &[u8]| ex.is_match(std::path::Path::new(std::ffi::OsStr::from_bytes(p)));
    // The deepest search root above `path`: the walk starts there.
    let top = sp
        .walk_roots()
        .map(|d| d.path.as_os_str().as_bytes())
        .filter(|r| {
            r.len() < path.len()
                && path.starts_with(r)
                && (r.ends_with(b"/") || path.get(r.len()) == Some(&b'/'))
        })
        .map(<[u8]>::len)
        .max();
    let Some(top) = top else {
        return false;
    };
    if matches(path) {
        return true;
    }
    // Every directory between that root and `path`.
    let mut end = path.len();
    while let Some(i) = path[..end].iter().rposition(|&b| b == b'/') {
        if i <= top {
            break;
        }
        if matches(&path[..i]) {
            return true;
        }
        end = i;
    }
    false
}

/// The provenance evidence for judging `records` under `plan`.
fn load_world(plan: &Plan, records: &[Record], names_only: bool) -> (provenance::World, Vec<Note>) {
    provenance::World::load(
        &plan.root,
        &plan.provenance,
        &plan.policy,
        records,
        names_only,
    )
}

/// Judges a whole snapshot once.
pub fn judge(plan: &Plan, reference: Reference, snap: &Snapshot, judges: Judges) -> Verdict {
    let extra = match reference {
        Reference::Baseline(b) => &b.extra[..],
        _ => &[],
    };
    let mut j = Judge::new_read(
        plan,
        &snap.scan.records,
        judges,
        false,
        extra,
        snap.packages.as_deref(),
    );
    j.use_scan_digests(&snap.scan);
    j.run(
        reference,
        (&snap.sp, snap.registry.as_ref(), &snap.scan.records),
        judges,
        None,
    )
}

/// Who owns each of `records` now (files, symlinks, directories): what a
/// new generation records, so that a later check can tell a file that
/// left with its package from one deleted by hand. Empty when provenance
/// is off or there is no package database.
pub fn owners(plan: &Plan, records: &[Record]) -> std::collections::BTreeMap<Vec<u8>, String> {
    owners_of(plan, records, None)
}

/// [`owners`], from the package database `snap` read with its lists
/// ([`Plan::snapshot_to_record`]) when it did.
pub fn owners_of(
    plan: &Plan,
    records: &[Record],
    snap: Option<&Snapshot>,
) -> std::collections::BTreeMap<Vec<u8>, String> {
    if plan.provenance.disabled {
        return Default::default();
    }
    let paths = records.iter().map(|r| r.path.as_slice());
    if let Some(db) = snap
        .and_then(|s| s.packages.as_deref())
        .and_then(|p| p.with_lists(paths))
    {
        return provenance::transaction::owners(db, records);
    }
    let names: HashSet<Vec<u8>> = records
        .iter()
        .map(|r| crate::record::file_name(&r.path).to_vec())
        .collect();
    let mut notes = Vec::new();
    match provenance::Index::load(&plan.root, &plan.provenance, Some(&names), &mut notes) {
        Some(i) => provenance::transaction::owners(&i.db, records),
        None => Default::default(),
    }
}
