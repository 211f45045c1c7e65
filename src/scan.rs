//! The parallel scan: walks every search path (never honouring ignore files
//! or hidden-file rules found inside the monitored trees, never following
//! symlinks), inspects each entry on the walker's own threads and returns
//! the records sorted by path.
//!
//! Two walkers give the same records and warnings ([`Walker`]). On Linux
//! directories are listed by descriptor ([`crate::sys::dirwalk`]): each is
//! opened relative to its parent's descriptor without following a symlink,
//! and its entries are inspected relative to the same descriptor, so the
//! walk is confined by construction and costs one `fstatat` per entry
//! (none for a regular file that will be read anyway: its `fstat` after
//! the open serves) plus `openat`/`getdents64`/`close` per directory. A
//! directory swapped for a symlink between its `fstatat` and its open
//! fails the open (`O_NOFOLLOW`) and is reported as [`SWAPPED`].
//!
//! The portable walker (`ignore`, every platform) lists directories by host path, so a directory
//! swapped for a symlink can make it list a directory outside the root.
//! What it lists is only a hint: every entry is inspected relative to the
//! root's descriptor without following symlinks (see `inspect`), so only
//! what is really inside the root is recorded; a directory that cannot be
//! reached that way is not descended into, and its entries are dropped
//! with one warning naming the nearest directory that can (never a name
//! from the other side).

use std::hash::Hasher;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use ignore::{DirEntry, ParallelVisitor, ParallelVisitorBuilder, WalkBuilder, WalkState};
use rayon::iter::ParallelIterator;
use rayon::slice::ParallelSlice;
#[cfg(target_os = "linux")]
use std::ffi::CString;
#[cfg(target_os = "linux")]
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

#[cfg(target_os = "linux")]
use crate::sys::dirwalk::{self, DirReader, Slot};

use crate::inspect::{ContentDigests, Cost, DigestPaths, Inspector, LargeGate, Outcome};
#[cfg(unix)]
use crate::inspect::{DrainPool, LaneEngine};
#[cfg(unix)]
use crate::pkgdigest::Algo;
use crate::record::{FileType, Record};
use crate::rootfs::Root;
use crate::searchpaths::SearchPaths;

/// How a scan runs.
#[derive(Clone)]
pub struct ScanOptions {
    /// Walker threads (at least 1).
    pub threads: usize,
    pub cross_filesystems: bool,
    pub excludes: Arc<globset::GlobSet>,
    /// Re-hash files whose identity is unchanged (ignore `prior`).
    pub paranoid: bool,
    /// Files in flight: walker threads that open and read. More than
    /// `threads` keeps a cold disk busy while every core hashes (see
    /// `Config::io_threads_for` for the default).
    pub io_threads: usize,
    /// Readahead hints for large files (`posix_fadvise`).
    pub readahead: bool,
    /// Time each phase per size class (for `bench`); off in normal scans.
    pub timing: bool,
    /// Also compute SHA-256 of every hashed file (config `hashes`).
    pub sha256: bool,
    /// The command wants a progress display (a terminal, not `-q`, not
    /// JSON); the engine then passes [`ScanOptions::progress`].
    pub show_progress: bool,
    /// Counters the walk keeps up to date for a progress display.
    pub progress: Option<Arc<Progress>>,
    /// Paths with a package digest (and its algorithm), known before the
    /// walk: the digest is computed in the same read as BLAKE3 and handed
    /// to provenance in [`ScanResult::digests`]. `None`: provenance reads
    /// them again itself.
    pub digest_paths: Option<Arc<DigestPaths>>,
}

/// What a running scan has done so far, updated by every walker thread
/// (relaxed atomics: a display needs no ordering).
#[derive(Debug, Default)]
pub struct Progress {
    /// Entries inspected.
    pub entries: AtomicU64,
    /// Bytes read and hashed.
    pub bytes: AtomicU64,
}

impl ScanOptions {
    /// Default options with `threads` workers (for `bench` and tests).
    pub fn with_threads(threads: usize) -> ScanOptions {
        ScanOptions {
            threads,
            cross_filesystems: false,
            excludes: Arc::new(globset::GlobSet::empty()),
            paranoid: true,
            io_threads: threads,
            readahead: true,
            timing: false,
            sha256: false,
            show_progress: false,
            progress: None,
            digest_paths: None,
        }
    }

    fn walker_threads(&self) -> usize {
        self.threads.max(self.io_threads).max(1)
    }
}

/// Keeps glibc's allocator from holding freed memory: a scan allocates a
/// record per file on several threads, then merges and frees per-thread
/// batches. With a per-thread arena each and a sliding mmap threshold,
/// freed batches stayed resident and peak RSS of `check` over /usr/lib
/// rose by ~15 MiB. A fixed threshold returns large blocks to the kernel on
/// free; two arenas bound the per-thread heaps. No effect on other libcs.
pub fn limit_allocator_slack() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any
    // thread is started.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// A problem with one path that did not stop the scan.
#[derive(Clone, Debug)]
pub struct Warning {
    pub path: Vec<u8>,
    pub message: String,
}

/// Counters for the summary line and `bench`.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub entries: u64,
    pub files: u64,
    pub bytes: u64,
    pub hashed_files: u64,
    pub hashed_bytes: u64,
    pub elapsed: Duration,
    /// With [`ScanOptions::timing`]: thread time spent in the walker outside
    /// inspection (reading directories, handing out work, waiting for it),
    /// summed over threads.
    pub walk: Duration,
    /// Per regular-file size class (see [`SizeClass`]); the timings only
    /// with [`ScanOptions::timing`].
    pub classes: [ClassStats; 3],
    /// Thread time in `lstat`/`open`/`fstat` of entries that are not
    /// regular files.
    pub other_open_stat: Duration,
}

impl Stats {
    /// Thread time in `lstat`, `open` and `fstat`, all entries.
    pub fn open_stat(&self) -> Duration {
        self.other_open_stat + self.classes.iter().map(|c| c.open_stat).sum::<Duration>()
    }

    /// Thread time reading and hashing.
    pub fn hash(&self) -> Duration {
        self.classes.iter().map(|c| c.hash).sum()
    }
}

/// Regular files by size: small files cost syscalls, large ones bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeClass {
    /// Under 4 KiB.
    Small,
    /// 4 KiB to 1 MiB.
    Medium,
    /// Over 1 MiB.
    Large,
}

impl SizeClass {
    pub const ALL: [SizeClass; 3] = [SizeClass::Small, SizeClass::Medium, SizeClass::Large];

    pub fn of(size: u64) -> SizeClass {
        if size < 4 << 10 {
            SizeClass::Small
        } else if size <= 1 << 20 {
            SizeClass::Medium
        } else {
            SizeClass::Large
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            SizeClass::Small => "<4KiB",
            SizeClass::Medium => "4KiB-1MiB",
            SizeClass::Large => ">1MiB",
        }
    }
}

/// Counters of one size class.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClassStats {
    pub files: u64,
    pub bytes: u64,
    /// Thread time in `lstat`, `open` and `fstat`.
    pub open_stat: Duration,
    /// Thread time reading and hashing.
    pub hash: Duration,
}

/// What a scan found.
#[derive(Debug, Default)]
pub struct ScanResult {
    /// Sorted by path, one per path.
    pub records: Vec<Record>,
    pub warnings: Vec<Warning>,
    pub stats: Stats,
    /// Package digests computed in the scan's read (see
    /// [`ScanOptions::digest_paths`]), by the BLAKE3 of the same content;
    /// sorted (see [`crate::pkgdigest::digest_of`]).
    pub digests: Arc<ContentDigests>,
}

/// Which walker lists the directories (both give the same results; the
/// portable one is kept for other platforms and to compare against).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Walker {
    /// By directory descriptor on Linux ([`crate::sys::dirwalk`]); the
    /// portable walker elsewhere.
    Native,
    /// The `ignore` crate's parallel walker, by path.
    Portable,
}

/// Scans everything `sp` monitors. `prior` (sorted by path) lets unchanged
/// files keep their digests without being read.
pub fn scan(root: &Root, sp: &SearchPaths, opts: &ScanOptions, prior: &[Record]) -> ScanResult {
    scan_with(root, sp, opts, prior, Walker::Native)
}

/// [`scan`] with the walker chosen.
pub fn scan_with(
    root: &Root,
    sp: &SearchPaths,
    opts: &ScanOptions,
    prior: &[Record],
    walker: Walker,
) -> ScanResult {
    let start = Instant::now();
    let prior = if opts.paranoid { &[][..] } else { prior };
    let prior = &Prior::new(prior);
    let (tx, rx) = crossbeam_channel::unbounded::<Part>();

    let deep: Vec<&Path> = sp
        .walk_roots()
        .filter(|d| d.recursive)
        .map(|d| d.path.as_path())
        .collect();
    let shallow: Vec<&Path> = sp
        .walk_roots()
        .filter(|d| !d.recursive)
        .map(|d| d.path.as_path())
        .collect();
    std::thread::scope(|s| {
        for (dirs, depth) in [(deep, None), (shallow, Some(1))] {
            if dirs.is_empty() {
                continue;
            }
            let tx = tx.clone();
            s.spawn(move || walk(root, &dirs, depth, opts, prior, tx, walker));
        }
    });
    let mut part = Part::default();
    let mut insp = Inspector::new(root);
    insp.sha256 = opts.sha256;
    insp.digest_paths = opts.digest_paths.clone();
    for f in sp.loose_files() {
        let logical = f.path.as_os_str().as_encoded_bytes().to_vec();
        let at = prior.index_of(&logical);
        let p = prior.at(at);
        let mut cost = Cost::default();
        let out = shared(insp.inspect(logical.clone(), None, p, &mut cost), p);
        // A tracked loader file may well not exist (no preload list is the
        // normal case); its appearance is what gets reported.
        match out {
            Outcome::Vanished => {}
            Outcome::Unreachable => part.warnings.push(swapped(root, &logical)),
            out => part.take(logical, out, cost, (prior, at)),
        }
    }
    part.digests = std::mem::take(&mut insp.digests);
    drop(tx);

    finish(std::iter::once(part).chain(rx).collect(), start, prior)
}

/// Scans the trees below `dirs` (host paths) on their own: no search paths,
/// no baseline, every file hashed (for `bench`).
pub fn scan_trees(dirs: &[&Path], opts: &ScanOptions) -> ScanResult {
    scan_trees_with(dirs, opts, Walker::Native)
}

/// [`scan_trees`] with the walker chosen.
pub fn scan_trees_with(dirs: &[&Path], opts: &ScanOptions, walker: Walker) -> ScanResult {
    let start = Instant::now();
    let root = Root::slash();
    let prior = Prior::new(&[]);
    let (tx, rx) = crossbeam_channel::unbounded::<Part>();
    // Inspection is confined below `/` without following symlinks, so the
    // operator's directories are canonicalised first (`/lib` on merged
    // /usr is a symlink).
    let canonical: Vec<std::path::PathBuf> = dirs
        .iter()
        .map(|d| std::fs::canonicalize(d).unwrap_or_else(|_| d.to_path_buf()))
        .collect();
    let dirs: Vec<&Path> = canonical.iter().map(|d| d.as_path()).collect();
    if !dirs.is_empty() {
        walk(&root, &dirs, None, opts, &prior, tx, walker);
    }
    finish(rx.into_iter().collect(), start, &prior)
}

/// Merges the threads' batches into one sorted result.
fn finish(parts: Vec<Part>, start: Instant, prior: &Prior) -> ScanResult {
    // Sized exactly before merging: growing by doubling would briefly hold
    // twice the records (peak memory is a stated limit).
    let mut result = ScanResult {
        records: Vec::with_capacity(parts.iter().map(|p| p.records.len()).sum()),
        ..ScanResult::default()
    };
    let mut ranks = Vec::with_capacity(result.records.capacity());
    let mut digests = ContentDigests::new();
    for p in parts {
        digests.extend(p.digests);
        result.records.extend(p.records);
        ranks.extend(p.ranks);
        result.warnings.extend(p.warnings);
        add_stats(&mut result.stats, &p.stats);
    }
    sort_by_path(&mut result.records, &ranks, prior);
    drop(ranks);
    // Overlapping walks (a non-recursive dir holding a recursive one) see
    // the boundary directory twice. (Looked for on every core first: the
    // dedup compares every adjacent pair on one thread.)
    if result
        .records
        .par_windows(2)
        .any(|w| w[0].path == w[1].path)
    {
        result.records.dedup_by(|a, b| a.path == b.path);
    }
    result
        .warnings
        .sort_by(|a, b| (&a.path, &a.message).cmp(&(&b.path, &b.message)));
    // One warning per directory that changed under several threads.
    result
        .warnings
        .dedup_by(|a, b| a.path == b.path && a.message == b.message);
    crate::pkgdigest::sort_content(&mut digests);
    result.digests = Arc::new(digests);
    result.stats.entries = result.records.len() as u64;
    result.stats.elapsed = start.elapsed();
    result
}

fn add_stats(a: &mut Stats, b: &Stats) {
    a.files += b.files;
    a.bytes += b.bytes;
    a.hashed_files += b.hashed_files;
    a.hashed_bytes += b.hashed_bytes;
    a.walk += b.walk;
    a.other_open_stat += b.other_open_stat;
    for (x, y) in a.classes.iter_mut().zip(&b.classes) {
        x.files += y.files;
        x.bytes += y.bytes;
        x.open_stat += y.open_stat;
        x.hash += y.hash;
    }
}

/// Sorts `records` by path. Those shared with `prior` (an unchanged
/// check: nearly all) are put in its order by their place in it, without
/// a compare; the rest are sorted by path and merged in. A sort by path
/// alone compares long shared prefixes some seventeen times per record, on
/// the one thread that waits for the walk (a twentieth of an unchanged
/// check). A prior that is not sorted (no caller's) costs the full sort.
fn sort_by_path(records: &mut Vec<Record>, ranks: &[u32], prior: &Prior) {
    // One slot per prior record (the handle's niche makes a slot a
    // pointer wide): the shared records land at their place directly.
    let mut slots: Vec<Option<Record>> = Vec::new();
    let mut own: Vec<Record> = Vec::new();
    // The walkers' ranks when there is one per record (from `finish`,
    // whenever there is a prior); looked up here otherwise (no prior: no
    // lookup finds anything).
    let walked = ranks.len() == records.len();
    for (k, r) in records.drain(..).enumerate() {
        let rank = match walked {
            true => Some(ranks[k]).filter(|&i| i != NO_RANK),
            false => prior.rank(&r),
        };
        match rank {
            Some(i) => {
                if slots.is_empty() {
                    slots.resize(prior.records.len(), None);
                }
                // Two walks over one boundary directory (a non-recursive
                // dir holding a recursive one) see it twice: the duplicate
                // is removed after the sort.
                match &mut slots[i as usize] {
                    s @ None => *s = Some(r),
                    Some(_) => own.push(r),
                }
            }
            None => own.push(r),
        }
    }
    // On every core: at the end of a first walk this is every record,
    // sorted while nothing else runs.
    rayon::slice::ParallelSliceMut::par_sort_unstable_by(&mut own[..], |a, b| a.path.cmp(&b.path));
    let mut own = own.into_iter().peekable();
    for r in slots.into_iter().flatten() {
        while let Some(o) = own.next_if(|o| o.path <= r.path) {
            records.push(o);
        }
        records.push(r);
    }
    records.extend(own);
    // Every adjacent pair compared: long shared prefixes, on every core.
    if !records.par_windows(2).all(|w| w[0].path <= w[1].path) {
        records.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    }
}

/// The baseline indexed by path: an open-addressing table of record
/// indices, each beside 32 bits of its path's hash. A hash lookup costs one
/// or two cache misses; a binary search over 70,000 records costs about
/// seventeen, each a compare of long shared prefixes, for every file of
/// the walk. Eight bytes a slot, at most two thirds full: a map of path slices
/// (24 bytes a slot, 3 MiB at 75,000 records) was held through the whole
/// walk, where the peak memory of a check is.
pub struct Prior<'a> {
    /// (index + 1, high hash bits); index 0 is an empty slot.
    slots: Vec<(u32, u32)>,
    records: &'a [Record],
}

impl<'a> Prior<'a> {
    pub fn new(records: &'a [Record]) -> Prior<'a> {
        // Past u32 indices (never: a baseline holds at most 2^24 records
        // as loaded) the records are simply not indexed.
        let n = if records.len() < (u32::MAX / 4) as usize {
            records.len()
        } else {
            0
        };
        // At most two thirds full (over half only just past a power of
        // two): a hit costs one or two probes, each a tag compare before
        // any path compare.
        let size = if n == 0 {
            0
        } else {
            (n + n / 2 + 1).next_power_of_two()
        };
        let mut p = Prior {
            slots: vec![(0, 0); size],
            records,
        };
        for (i, r) in records.iter().enumerate().take(n) {
            let (mut at, tag) = p.place(&r.path);
            loop {
                match p.slots[at] {
                    (0, _) => {
                        p.slots[at] = (i as u32 + 1, tag);
                        break;
                    }
                    // A duplicate path (no sorted baseline has one): the
                    // first is kept, as a map's insert would keep the last;
                    // either is that path's record.
                    (j, t) if t == tag && records[j as usize - 1].path == r.path => break,
                    _ => at = (at + 1) & (size - 1),
                }
            }
        }
        p
    }

    /// The first slot to probe for `path`, and its tag.
    fn place(&self, path: &[u8]) -> (usize, u32) {
        let mut h = FxHasher::default();
        h.write(path);
        let h = h.finish();
        (
            (h as usize) & (self.slots.len().wrapping_sub(1)),
            (h >> 32) as u32,
        )
    }

    fn index_of(&self, path: &[u8]) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let (mut at, tag) = self.place(path);
        loop {
            match self.slots[at] {
                (0, _) => return None,
                (j, t) if t == tag => {
                    let i = j - 1;
                    if self.records.get(i as usize).is_some_and(|r| r.path == path) {
                        return Some(i);
                    }
                }
                _ => {}
            }
            at = (at + 1) & (self.slots.len() - 1);
        }
    }

    pub fn get(&self, path: &[u8]) -> Option<&'a Record> {
        self.at(self.index_of(path))
    }

    /// The record at a place [`Prior::index_of`] gave.
    fn at(&self, at: Option<u32>) -> Option<&'a Record> {
        at.and_then(|i| self.records.get(i as usize))
    }

    /// The place in the prior of the record `r` shares (is, not equals).
    fn rank(&self, r: &Record) -> Option<u32> {
        self.rank_at(r, self.index_of(&r.path))
    }

    /// [`Prior::rank`], with the place of `r`'s path already looked up.
    fn rank_at(&self, r: &Record, at: Option<u32>) -> Option<u32> {
        at.filter(|_| self.at(at).is_some_and(|p| p.shares(r)))
    }
}

/// The multiply-rotate hash of rustc (FxHash): fast on short keys, and
/// the keys are our own baseline's paths, not attacker-chosen lookups that
/// could matter for anything but speed.
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The outcome with the prior record in place of an equal one: the scan
/// of an unchanged path holds the baseline's record, not a copy, so an
/// unchanged `check` keeps one set of records in memory, not two (and
/// the diff finds them equal at a pointer compare).
fn shared(out: Outcome, prior: Option<&Record>) -> Outcome {
    match out {
        Outcome::Record(r, None) => Outcome::Record(r.or_shared(prior), None),
        other => other,
    }
}

/// The prior record of a path, by binary search of the sorted baseline.
pub fn find<'a>(prior: &'a [Record], path: &[u8]) -> Option<&'a Record> {
    prior
        .binary_search_by(|r| r.path.as_slice().cmp(path))
        .ok()
        .map(|i| &prior[i])
}

fn walk(
    root: &Root,
    dirs: &[&Path],
    max_depth: Option<usize>,
    opts: &ScanOptions,
    prior: &Prior,
    tx: Sender<Part>,
    walker: Walker,
) {
    #[cfg(target_os = "linux")]
    if walker == Walker::Native {
        return walk_fds(root, dirs, max_depth, opts, prior, tx);
    }
    let _ = walker;
    walk_ignore(root, dirs, max_depth, opts, prior, tx)
}

/// The portable walk: `ignore`'s parallel walker lists by host path, the
/// visitor inspects confined (see the module docs).
fn walk_ignore(
    root: &Root,
    dirs: &[&Path],
    max_depth: Option<usize>,
    opts: &ScanOptions,
    prior: &Prior,
    tx: Sender<Part>,
) {
    let mut b = WalkBuilder::new(root.host_path(dirs[0]));
    for d in &dirs[1..] {
        b.add(root.host_path(d));
    }
    // An attacker who can write in a lib dir could hide a library with a
    // planted .ignore or a leading dot: no filter but our own config.
    b.standard_filters(false)
        .hidden(false)
        .parents(false)
        .ignore(false)
        .git_ignore(false)
        .git_global(false)
        .git_exclude(false)
        .require_git(false)
        .follow_links(false)
        .same_file_system(!opts.cross_filesystems)
        .max_depth(max_depth)
        .threads(opts.walker_threads());
    if !opts.excludes.is_empty() {
        let ex = opts.excludes.clone();
        let root = root.clone();
        b.filter_entry(move |e| {
            let logical = root.logical_bytes(e.path());
            use crate::sys::OsStrExt;
            e.depth() == 0 || !ex.is_match(Path::new(std::ffi::OsStr::from_bytes(&logical)))
        });
    }
    let mut builder = Builder::new(root, prior, tx, opts, None);
    b.build_parallel().visit(&mut builder);
}

/// What a thread of the descriptor walk does next: list a directory, or
/// inspect a batch of the regular files a listing found.
#[cfg(target_os = "linux")]
enum WalkJob {
    Dir(DirJob),
    Files(FileJob),
    /// One large file the lanes will read, by its size (see
    /// [`FIRST_SIZE`]).
    Large(FileJob, u64),
}

/// A file the lanes read of at least this size is started before the
/// others, the largest first (a first generation: see
/// [`Builder::sizing`]).
#[cfg(target_os = "linux")]
const FIRST_SIZE: u64 = 1 << 20;

/// Listings before inspections while fewer file batches than this wait:
/// each holds its directory's descriptor.
#[cfg(target_os = "linux")]
const EARLY_BUDGET: usize = 256;

/// Regular files of one directory per [`FileJob`] at most. A listing
/// hands its files out in batches, after its subdirectories: one thread
/// used to inspect a whole directory while the others waited for the
/// subdirectories it had not handed out yet (`/usr/lib/x86_64-linux-gnu`
/// and its `wine/` took a third of a default `init` that way, on one
/// core of two). Small, because sizes are not known at the listing: 256
/// files of `wine/x86_64-windows` (210 MB) held one thread 0.9 s past
/// the others; a default `init` took 2.12 s (median of 5) with 256, 1.93 s
/// with 64, 1.87 s with 32, and an unchanged `check` the same.
#[cfg(target_os = "linux")]
const FILES_PER_JOB: usize = 32;

/// Regular files (by their directory entries) of one listed directory.
#[cfg(target_os = "linux")]
struct FileJob {
    /// The directory's logical path, ending in `/`.
    dir: Vec<u8>,
    fd: Arc<OwnedFd>,
    /// The entries' names, each ended by a NUL (no name holds one).
    names: Vec<u8>,
}

/// A directory to list (descriptor walk).
#[cfg(target_os = "linux")]
struct DirJob {
    logical: Vec<u8>,
    /// Its depth below the walk root (0: the root itself).
    depth: usize,
    /// The walk root's device, when the walk stays on one filesystem.
    dev: Option<u64>,
    /// Its parent's descriptor and its name there; `None` for a walk root,
    /// which is inspected and opened confined below the root.
    from: Option<(Arc<OwnedFd>, CString)>,
}

/// One thread of the descriptor walk: the visitor the portable walk uses
/// too, and a buffer for listings.
#[cfg(target_os = "linux")]
struct FdWalker<'a> {
    v: Visitor<'a>,
    reader: DirReader,
    /// See [`Builder::sizing`].
    sizing: bool,
}

/// The descriptor walk (Linux; see the module docs): the same pruning,
/// excludes, depth limit and outcomes as [`walk_ignore`].
#[cfg(target_os = "linux")]
fn walk_fds(
    root: &Root,
    dirs: &[&Path],
    max_depth: Option<usize>,
    opts: &ScanOptions,
    prior: &Prior,
    tx: Sender<Part>,
) {
    let idle = Arc::new(AtomicUsize::new(0));
    let builder = Builder::new(root, prior, tx, opts, Some(idle.clone()));
    let sizing = builder.sizing();
    let jobs = dirs
        .iter()
        .map(|d| {
            WalkJob::Dir(DirJob {
                logical: root.logical_bytes(&root.host_path(d)),
                depth: 0,
                dev: None,
                from: None,
            })
        })
        .collect();
    let excludes = (!opts.excludes.is_empty()).then_some(&*opts.excludes);
    let cross = opts.cross_filesystems;
    let slot = |j: &WalkJob| match j {
        WalkJob::Dir(_) if sizing => Slot::Early,
        WalkJob::Large(_, size) => Slot::First(*size),
        _ => Slot::Stack,
    };
    dirwalk::run_scheduled(
        opts.walker_threads(),
        jobs,
        &idle,
        (slot, EARLY_BUDGET),
        || FdWalker {
            v: builder.visitor(),
            reader: DirReader::new(),
            sizing,
        },
        |w, job, more| match job {
            WalkJob::Dir(d) => w.walk_dir(d, max_depth, cross, excludes, more),
            WalkJob::Files(f) => w.inspect_files(f, 0),
            WalkJob::Large(f, size) => w.inspect_files(f, size),
        },
    );
}

#[cfg(target_os = "linux")]
impl FdWalker<'_> {
    /// Lists one directory and inspects its entries; the subdirectories to
    /// descend into go to `more`.
    fn walk_dir(
        &mut self,
        job: DirJob,
        max_depth: Option<usize>,
        cross: bool,
        excludes: Option<&globset::GlobSet>,
        more: &mut Vec<WalkJob>,
    ) {
        let DirJob {
            logical,
            depth,
            mut dev,
            from,
        } = job;
        let opened = match from {
            Some((parent, name)) => dirwalk::open_dir_at(parent.as_fd(), &name),
            None => {
                // A walk root: its own record first, as any entry's.
                let Some(root_dev) = self.v.timed_inspect(logical.clone(), None, 0) else {
                    return;
                };
                if !cross {
                    dev = Some(root_dev);
                }
                if max_depth == Some(0) {
                    return;
                }
                use crate::sys::OsStrExt;
                let path = Path::new(std::ffi::OsStr::from_bytes(&logical));
                self.v.root.open(path, libc::O_RDONLY | libc::O_DIRECTORY)
            }
        };
        let fd = match opened {
            Ok(fd) => Arc::new(fd),
            Err(e) => {
                self.v.dir_error(&logical, &e);
                return;
            }
        };
        self.v.insp.enter_dir(&logical, fd.clone());
        let child_depth = depth + 1;
        let descend_below = max_depth.is_none_or(|m| child_depth < m);
        self.reader.reset();
        let mut path = logical.clone();
        if !path.ends_with(b"/") {
            path.push(b'/');
        }
        let base = path.len();
        // The regular files go out in batches (see [`FILES_PER_JOB`]),
        // after the subdirectories: the last batch is this thread's next
        // job, the rest (and the subdirectories) anyone's at once.
        let mut names = Vec::new();
        let mut batched = 0;
        loop {
            let entry = match self.reader.next(fd.as_fd()) {
                Ok(Some(e)) => e,
                Ok(None) => break,
                Err(e) => {
                    self.v.dir_error(&logical, &e);
                    break;
                }
            };
            path.truncate(base);
            path.extend_from_slice(entry.bytes());
            if let Some(ex) = excludes {
                use crate::sys::OsStrExt;
                if ex.is_match(Path::new(std::ffi::OsStr::from_bytes(&path))) {
                    continue;
                }
            }
            let hint = match entry.dtype {
                dirwalk::DT_REG => Some(FileType::File),
                dirwalk::DT_DIR => Some(FileType::Dir),
                dirwalk::DT_LNK => Some(FileType::Symlink),
                dirwalk::DT_FIFO => Some(FileType::Fifo),
                dirwalk::DT_SOCK => Some(FileType::Socket),
                dirwalk::DT_CHR => Some(FileType::CharDevice),
                dirwalk::DT_BLK => Some(FileType::BlockDevice),
                // DT_UNKNOWN (or anything new): the inspector's lstat decides.
                _ => None,
            };
            if hint == Some(FileType::File) {
                if let Some(size) = large(self.sizing, &self.v, fd.as_fd(), entry.name, &path) {
                    let mut name = entry.bytes().to_vec();
                    name.push(0);
                    more.push(WalkJob::Large(
                        FileJob {
                            dir: path[..base].to_vec(),
                            fd: fd.clone(),
                            names: name,
                        },
                        size,
                    ));
                    continue;
                }
                names.extend_from_slice(entry.bytes());
                names.push(0);
                batched += 1;
                if batched == FILES_PER_JOB {
                    more.push(WalkJob::Files(FileJob {
                        dir: path[..base].to_vec(),
                        fd: fd.clone(),
                        names: std::mem::take(&mut names),
                    }));
                    batched = 0;
                }
                continue;
            }
            let name = entry.name.to_owned();
            let Some(sub_dev) = self.v.timed_inspect(path.clone(), hint, 0) else {
                continue;
            };
            // A directory on another filesystem is recorded, not entered
            // (as `ignore`'s same_file_system).
            if descend_below && dev.is_none_or(|d| d == sub_dev) {
                more.push(WalkJob::Dir(DirJob {
                    logical: path.clone(),
                    depth: child_depth,
                    dev,
                    from: Some((fd.clone(), name)),
                }));
            }
        }
        if batched > 0 {
            path.truncate(base);
            more.push(WalkJob::Files(FileJob {
                dir: path,
                fd,
                names,
            }));
        }
    }

    /// Inspects a batch of one directory's regular files, reached through
    /// the directory's descriptor (as when it was listed).
    /// `size`: the size of a [`WalkJob::Large`]'s file.
    fn inspect_files(&mut self, job: FileJob, size: u64) {
        let FileJob { dir, fd, names } = job;
        self.v.insp.enter_dir(&dir, fd);
        let mut path = dir;
        let base = path.len();
        for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
            path.truncate(base);
            path.extend_from_slice(name);
            // A regular file by its entry: nothing to descend into.
            let _ = self
                .v
                .timed_inspect(path.clone(), Some(FileType::File), size);
        }
        // A drainer whose batch held no packaged file reads the pool's
        // files all the same.
        self.v.pump_lanes();
    }
}

/// `f`, counted in `busy` (inspections running: the gate of BLAKE3's
/// multi-threaded mode) while it runs.
fn counted<T>(busy: &Option<Arc<AtomicUsize>>, f: impl FnOnce() -> T) -> T {
    if let Some(b) = busy {
        b.fetch_add(1, Ordering::Relaxed);
    }
    let out = f();
    if let Some(b) = busy {
        b.fetch_sub(1, Ordering::Relaxed);
    }
    out
}

/// The size of `name` (a regular file by its entry, at `path`) when the
/// walk sizes files (`sizing`: see [`Builder::sizing`]) and it is one the
/// lanes read of at least [`FIRST_SIZE`].
#[cfg(target_os = "linux")]
fn large(
    sizing: bool,
    v: &Visitor<'_>,
    dir: BorrowedFd<'_>,
    name: &std::ffi::CStr,
    path: &[u8],
) -> Option<u64> {
    if !sizing || !v.reads_in_lanes(path) {
        return None;
    }
    let st = dirwalk::lstat_at(dir, name).ok()?;
    let size = u64::try_from(st.st_size).ok()?;
    (st.st_mode & libc::S_IFMT == libc::S_IFREG && size >= FIRST_SIZE).then_some(size)
}

impl<'a> Builder<'a> {
    /// `idle`: the walk's count of threads waiting for work, when it keeps
    /// one (see [`LargeGate`]).
    fn new(
        root: &'a Root,
        prior: &'a Prior<'a>,
        tx: Sender<Part>,
        opts: &ScanOptions,
        idle: Option<Arc<AtomicUsize>>,
    ) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let parallel_large = (cores > 1).then(|| LargeGate::new(cores, idle));
        Builder {
            root,
            prior,
            tx,
            parallel_large,
            timing: opts.timing,
            readahead: opts.readahead,
            sha256: opts.sha256,
            digest_paths: opts.digest_paths.clone(),
            progress: opts.progress.clone(),
            // One drainer per hashing thread: more only take turns.
            #[cfg(unix)]
            drain: Arc::new(DrainPool::new(opts.threads.clamp(1, cores))),
        }
    }

    /// Whether the walk learns the sizes of the files the lanes will read
    /// as it lists them (one `fstatat` each), to start the largest first:
    /// a first generation, which reads every file. A file's MD5 is one
    /// chain, at most one lane's speed however many lanes are free, and
    /// a lane is one of sixteen: a 128 MB file found late (`/usr/lib/jvm`
    /// after most of `/usr/lib`) was most of a default `init`'s last
    /// 0.4 s, two cores running near-empty lanes. Found as early as the
    /// listings allow (they go before the inspections), the large files
    /// share full lanes from the start and end with the rest.
    #[cfg(target_os = "linux")]
    fn sizing(&self) -> bool {
        self.prior.slots.is_empty() && self.digest_paths.is_some() && LaneEngine::useful()
    }

    /// One walker thread's visitor.
    fn visitor(&self) -> Visitor<'a> {
        let mut insp = Inspector::new(self.root);
        insp.parallel_large = self.parallel_large.clone();
        insp.timing = self.timing;
        insp.fadvise = self.readahead;
        insp.sha256 = self.sha256;
        insp.digest_paths = self.digest_paths.clone();
        #[cfg(unix)]
        let lanes = (self.digest_paths.is_some() && LaneEngine::useful()).then(LaneEngine::new);
        Visitor {
            #[cfg(unix)]
            lanes,
            #[cfg(unix)]
            drain: self.drain.clone(),
            root: self.root,
            prior: self.prior,
            tx: self.tx.clone(),
            insp,
            part: Part::default(),
            last: self.timing.then(Instant::now),
            busy: self.parallel_large.as_ref().map(|g| g.busy.clone()),
            swapped: Default::default(),
            progress: self.progress.clone(),
        }
    }
}

struct Builder<'a> {
    root: &'a Root,
    prior: &'a Prior<'a>,
    tx: Sender<Part>,
    parallel_large: Option<LargeGate>,
    timing: bool,
    readahead: bool,
    sha256: bool,
    digest_paths: Option<Arc<DigestPaths>>,
    progress: Option<Arc<Progress>>,
    /// Where the walkers' lanes go when the walk is over.
    #[cfg(unix)]
    drain: Arc<DrainPool<'a>>,
}

impl<'s, 'a: 's> ParallelVisitorBuilder<'s> for Builder<'a> {
    fn build(&mut self) -> Box<dyn ParallelVisitor + 's> {
        Box::new(self.visitor())
    }
}

/// Records per batch sent by a walker thread.
const PART_RECORDS: usize = 4096;

/// One thread's share of the results, sent in batches and when the thread
/// is done.
#[derive(Default)]
struct Part {
    records: Vec<Record>,
    /// For each of `records`, its place in the prior when it is the prior's
    /// own record (shared), else [`NO_RANK`]: found on the walker threads,
    /// so the merge after the walk places them without a lookup.
    ranks: Vec<u32>,
    warnings: Vec<Warning>,
    stats: Stats,
    /// Package digests computed in this thread's reads.
    digests: ContentDigests,
}

/// A record not shared with the prior (see [`Part::ranks`]).
const NO_RANK: u32 = u32::MAX;

impl Part {
    /// Keeps one outcome; `prior` is where its path's record is in the
    /// prior, when it has one.
    fn take(&mut self, logical: Vec<u8>, out: Outcome, cost: Cost, prior: (&Prior, Option<u32>)) {
        match out {
            Outcome::Record(r, warn) => {
                if let Some(message) = warn {
                    self.warnings.push(Warning {
                        path: r.path.clone(),
                        message,
                    });
                }
                if r.ftype == FileType::File {
                    self.stats.files += 1;
                    self.stats.bytes += r.size;
                    let c = &mut self.stats.classes[SizeClass::of(r.size) as usize];
                    c.files += 1;
                    c.bytes += r.size;
                    c.open_stat += cost.open_stat;
                    c.hash += cost.hash;
                } else {
                    self.stats.other_open_stat += cost.open_stat;
                }
                if cost.hashed {
                    self.stats.hashed_files += 1;
                    self.stats.hashed_bytes += cost.hashed_bytes;
                }
                // None kept without a prior (a first walk): the merge sorts.
                let (p, at) = prior;
                if !p.slots.is_empty() {
                    self.ranks.push(p.rank_at(&r, at).unwrap_or(NO_RANK));
                }
                self.records.push(r);
            }
            // Deleted between the listing and the open: not a warning (the
            // diff reports it if the baseline had it). Silent also because
            // the listing may have been of a directory outside the root
            // (see the module docs): its names must not be shown.
            // Unreachable entries are reported by the visitor, per directory.
            Outcome::Vanished | Outcome::Unreachable => {
                self.stats.other_open_stat += cost.open_stat;
            }
            Outcome::Failed(message) => {
                self.stats.other_open_stat += cost.open_stat;
                self.warnings.push(Warning {
                    path: logical,
                    message,
                })
            }
        }
    }
}

struct Visitor<'a> {
    /// Packaged files read in turns for multi-buffer MD5 (see
    /// [`LaneEngine`]); `None` when no MD5s are wanted or no SIMD lanes.
    #[cfg(unix)]
    lanes: Option<LaneEngine<'a>>,
    #[cfg(unix)]
    drain: Arc<DrainPool<'a>>,
    root: &'a Root,
    prior: &'a Prior<'a>,
    tx: Sender<Part>,
    insp: Inspector,
    part: Part,
    /// With timing: when this thread last left `visit`.
    last: Option<Instant>,
    /// Inspections running now, across threads (see
    /// [`Inspector::parallel_large`]).
    busy: Option<Arc<AtomicUsize>>,
    /// Directories already warned about as changed during the walk.
    swapped: std::collections::HashSet<Vec<u8>>,
    progress: Option<Arc<Progress>>,
}

impl ParallelVisitor for Visitor<'_> {
    fn visit(&mut self, entry: Result<DirEntry, ignore::Error>) -> WalkState {
        if let Some(last) = self.last {
            self.part.stats.walk += last.elapsed();
        }
        let state = self.visit_entry(entry);
        if self.last.is_some() {
            self.last = Some(Instant::now());
        }
        state
    }
}

impl Visitor<'_> {
    fn visit_entry(&mut self, entry: Result<DirEntry, ignore::Error>) -> WalkState {
        let entry = match entry {
            Ok(e) => e,
            Err(err) => {
                self.walk_error(&err);
                return WalkState::Continue;
            }
        };
        let logical = self.root.logical_bytes(entry.path());
        let hint = entry.file_type().map(|t| {
            use crate::sys::FileTypeExt;
            if t.is_file() {
                FileType::File
            } else if t.is_dir() {
                FileType::Dir
            } else if t.is_symlink() {
                FileType::Symlink
            } else if t.is_fifo() {
                FileType::Fifo
            } else if t.is_socket() {
                FileType::Socket
            } else if t.is_char_device() {
                FileType::CharDevice
            } else if t.is_block_device() {
                FileType::BlockDevice
            } else {
                FileType::Unknown
            }
        });
        // Descend only into what is a directory inside the root right now:
        // the walker has opened it by host path already, and if that was a
        // symlink to the outside, its listing must not be walked.
        if self.inspect_entry(logical, hint, 0).is_some() {
            WalkState::Continue
        } else {
            WalkState::Skip
        }
    }

    /// [`Visitor::inspect_entry`], the time since the last one counted as
    /// walking (with timing).
    #[cfg(target_os = "linux")]
    fn timed_inspect(
        &mut self,
        logical: Vec<u8>,
        hint: Option<FileType>,
        size: u64,
    ) -> Option<u64> {
        if let Some(last) = self.last {
            self.part.stats.walk += last.elapsed();
        }
        let dev = self.inspect_entry(logical, hint, size);
        if self.last.is_some() {
            self.last = Some(Instant::now());
        }
        dev
    }

    /// Whether a regular file at `logical` is read in this thread's lanes.
    #[cfg(unix)]
    fn reads_in_lanes(&self, logical: &[u8]) -> bool {
        self.lanes.is_some()
            && self
                .insp
                .digest_paths
                .as_ref()
                .is_some_and(|m| m.wants(logical, Algo::Md5))
    }

    /// Inspects one entry (in the lanes, or now) and keeps its outcome;
    /// the device of what is a directory inside the root right now, the
    /// only thing a walk may descend into. `size`: the file's size when
    /// the walk knows it (a [`WalkJob::Large`]'s), else 0.
    fn inspect_entry(
        &mut self,
        logical: Vec<u8>,
        hint: Option<FileType>,
        size: u64,
    ) -> Option<u64> {
        let at = self.prior.index_of(&logical);
        let prior = self.prior.at(at);
        // No lanes elsewhere: nothing orders by size.
        #[cfg(not(unix))]
        let _ = size;
        #[cfg(unix)]
        let in_lanes = hint == Some(FileType::File) && self.reads_in_lanes(&logical);
        #[cfg(unix)]
        if let (true, Some(lanes)) = (in_lanes, self.lanes.as_mut()) {
            // Reading in the lanes counts as an inspection running.
            let (insp, drain) = (&mut self.insp, &self.drain);
            counted(&self.busy, || {
                lanes.defer(insp, (logical, size), hint, prior, drain)
            });
            self.take_lanes();
            // A regular file by its entry: nothing to descend into.
            return None;
        }
        let mut cost = Cost::default();
        let insp = &mut self.insp;
        let out = shared(
            counted(&self.busy, || {
                insp.inspect(logical.clone(), hint, prior, &mut cost)
            }),
            prior,
        );
        let dir_dev = match &out {
            Outcome::Record(r, _) if r.ftype == FileType::Dir => Some(r.dev),
            _ => None,
        };
        self.keep(logical, out, cost, at);
        dir_dev
    }

    /// A directory that could not be opened or listed (descriptor walk):
    /// gone is nothing to say (the diff reports it), a symlink now is a
    /// swapped directory, anything else a warning on the directory, as the
    /// portable walker words it.
    #[cfg(target_os = "linux")]
    fn dir_error(&mut self, logical: &[u8], e: &std::io::Error) {
        use crate::sys::OsStrExt;
        let swapped = || {
            let path = Path::new(std::ffi::OsStr::from_bytes(logical));
            self.root
                .lstat(path)
                .is_ok_and(|m| m.file_type().is_symlink())
        };
        match e.raw_os_error() {
            Some(libc::ENOENT) => {}
            // A symlink fails the open as "not a directory" (O_DIRECTORY
            // comes first): only a symlink now means swapped.
            Some(libc::ELOOP) => self.warn_swapped(logical),
            Some(libc::ENOTDIR) if swapped() => self.warn_swapped(logical),
            _ => self.part.warnings.push(Warning {
                path: logical.to_vec(),
                message: e.to_string(),
            }),
        }
    }

    /// Adds one inspection's outcome to this thread's batch.
    fn keep(&mut self, logical: Vec<u8>, out: Outcome, cost: Cost, at: Option<u32>) {
        if let Some(p) = &self.progress {
            p.entries.fetch_add(1, Ordering::Relaxed);
            p.bytes.fetch_add(cost.hashed_bytes, Ordering::Relaxed);
        }
        if matches!(out, Outcome::Unreachable) {
            self.warn_swapped(&logical);
        }
        self.part.take(logical, out, cost, (self.prior, at));
        if self.part.records.len() >= PART_RECORDS {
            // Hand over full batches: a thread's vector never grows by
            // doubling past this, so the merge holds the records about once.
            self.part.digests = std::mem::take(&mut self.insp.digests);
            let _ = self.tx.send(std::mem::take(&mut self.part));
            self.part.records.reserve_exact(PART_RECORDS);
            if !self.prior.slots.is_empty() {
                self.part.ranks.reserve_exact(PART_RECORDS);
            }
        }
    }

    /// A drainer's lanes, read while the pool keeps them busy (see
    /// [`LaneEngine::pump`]).
    #[cfg(target_os = "linux")]
    fn pump_lanes(&mut self) {
        let Some(lanes) = self.lanes.as_mut() else {
            return;
        };
        let (insp, drain) = (&mut self.insp, &self.drain);
        counted(&self.busy, || lanes.pump(insp, drain));
        self.take_lanes();
    }

    /// What the lanes finished, into the batch.
    #[cfg(unix)]
    fn take_lanes(&mut self) {
        let done = self
            .lanes
            .as_mut()
            .map(|l| l.take_done())
            .unwrap_or_default();
        for (logical, out, cost) in done {
            let at = self.prior.index_of(&logical);
            let out = shared(out, self.prior.at(at));
            self.keep(logical, out, cost, at);
        }
    }

    /// One warning per directory whose entries could not be reached.
    fn warn_swapped(&mut self, logical: &[u8]) {
        let w = swapped(self.root, logical);
        if self.swapped.insert(w.path.clone()) {
            self.part.warnings.push(w);
        }
    }

    /// An error of the walker itself (a directory that cannot be listed):
    /// reported with its path only if that path is inside the root right
    /// now; otherwise it may be a name from outside (see the module docs).
    fn walk_error(&mut self, err: &ignore::Error) {
        let w = walk_warning(self.root, err);
        use crate::sys::OsStrExt;
        let reachable = w.path.is_empty()
            || self
                .root
                .lstat(Path::new(std::ffi::OsStr::from_bytes(&w.path)))
                .is_ok();
        if reachable {
            self.part.warnings.push(w);
        } else if !err.io_error().is_some_and(crate::sys::is_not_found) {
            self.warn_swapped(&w.path);
        }
    }
}

/// The message for entries dropped because their directory could not be
/// reached inside the root.
pub const SWAPPED: &str =
    "entries below changed while being walked (a directory was replaced by a symlink): skipped";

/// The warning for `logical`, whose directory could not be reached
/// inside the root: it names the nearest directory that can be.
fn swapped(root: &Root, logical: &[u8]) -> Warning {
    Warning {
        path: reachable_ancestor(root, logical),
        message: SWAPPED.into(),
    }
}

/// The nearest proper ancestor of `logical` that is a directory reached
/// inside the root without a symlink (`/` at worst).
fn reachable_ancestor(root: &Root, logical: &[u8]) -> Vec<u8> {
    use crate::sys::OsStrExt;
    let mut p = logical;
    while let Some(i) = p.iter().rposition(|&b| b == b'/') {
        p = &p[..i];
        if p.is_empty() {
            break;
        }
        let path = Path::new(std::ffi::OsStr::from_bytes(p));
        if root.lstat(path).is_ok_and(|m| m.is_dir()) {
            return p.to_vec();
        }
    }
    b"/".to_vec()
}

impl Drop for Visitor<'_> {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(mut lanes) = self.lanes.take() {
            let (insp, drain) = (&mut self.insp, &self.drain);
            counted(&self.busy, || lanes.drain_shared(insp, drain));
            self.lanes = Some(lanes);
            self.take_lanes();
        }
        self.part.digests = std::mem::take(&mut self.insp.digests);
        let _ = self.tx.send(std::mem::take(&mut self.part));
    }
}

fn walk_warning(root: &Root, err: &ignore::Error) -> Warning {
    // ignore wraps the path and depth around the I/O error.
    fn path_of(e: &ignore::Error) -> Option<&Path> {
        match e {
            ignore::Error::WithPath { path, .. } => Some(path),
            ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
                path_of(err)
            }
            _ => None,
        }
    }
    Warning {
        path: path_of(err)
            .map(|p| root.logical_bytes(p))
            .unwrap_or_default(),
        message: innermost(err),
    }
}

fn innermost(e: &ignore::Error) -> String {
    match e {
        ignore::Error::WithPath { err, .. }
        | ignore::Error::WithDepth { err, .. }
        | ignore::Error::WithLineNumber { err, .. } => innermost(err),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(p: &str, h: u8) -> Record {
        Record::test_file(p, h)
    }

    fn paths(rs: &[Record]) -> Vec<&[u8]> {
        rs.iter().map(|r| r.path.as_slice()).collect()
    }

    /// A first generation's walk sizes the files the lanes read and starts
    /// the large ones first, out of walk order and on the threads that
    /// drain (four walkers, two drainers): every file still gets its
    /// record and its package digest, as in a walk in order.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_walk_that_sizes_files_gives_every_file_its_record_and_package_digest() {
        use md5::Digest;
        let t = tempfile::tempdir().unwrap();
        let top = t.path().canonicalize().unwrap();
        let mut files = Vec::new();
        for d in 0..4usize {
            let dir = top.join(format!("d{d}")).join("sub");
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..40usize {
                let n = match i % 10 {
                    0 => FIRST_SIZE as usize * (1 + d) + i,
                    1 => FIRST_SIZE as usize - 1,
                    _ => i * 97,
                };
                let mut x = (d * 1000 + i) as u32 | 1;
                let data: Vec<u8> = (0..n)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        x as u8
                    })
                    .collect();
                let p = dir.join(format!("f{i}"));
                std::fs::write(&p, &data).unwrap();
                files.push((p.as_os_str().as_encoded_bytes().to_vec(), data));
            }
        }
        let mut wanted = DigestPaths::default();
        for (p, _) in &files {
            wanted.insert(p, Algo::Md5);
        }
        let mut opts = ScanOptions::with_threads(2);
        opts.io_threads = 4;
        opts.digest_paths = Some(Arc::new(wanted));
        let r = scan_trees(&[&top], &opts);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        for (p, data) in &files {
            let rec = r.records.iter().find(|x| x.path == *p).unwrap();
            let b3 = *blake3::hash(data).as_bytes();
            assert_eq!(rec.blake3, Some(b3));
            assert_eq!(rec.size, data.len() as u64);
            let md5: [u8; 16] = md5::Md5::digest(data).into();
            assert_eq!(
                crate::pkgdigest::digest_of(&r.digests, &b3, Algo::Md5),
                Some(crate::pkgdigest::FileDigest::Md5(md5)),
                "{}",
                String::from_utf8_lossy(p)
            );
        }
    }

    #[test]
    fn records_shared_with_the_prior_sort_by_their_place_in_it_and_the_rest_merge_in() {
        let prior: Vec<Record> = ["/a", "/a/b", "/a/c", "/b", "/d"]
            .iter()
            .map(|p| rec(p, 1))
            .collect();
        let index = Prior::new(&prior);
        // Walk order: shared ones out of order, a changed one (equal path,
        // not shared), new ones before, between and after.
        let walk = vec![
            prior[3].clone(),
            rec("/e", 2),
            prior[0].clone(),
            rec("/a/c", 2),
            rec("/0", 2),
            prior[4].clone(),
            prior[1].clone(),
            rec("/a/bb", 2),
        ];
        let mut got = walk.clone();
        sort_by_path(&mut got, &[], &index);
        assert_eq!(
            paths(&got),
            ["/0", "/a", "/a/b", "/a/bb", "/a/c", "/b", "/d", "/e"].map(str::as_bytes)
        );
        // The changed record is the scan's, not the prior's.
        assert!(!got[4].shares(&prior[2]));
        assert!(got[1].shares(&prior[0]));
        // The ranks the walkers found (a path's place, kept only for the
        // prior's own record) place them the same way, without a lookup.
        let mut walked = walk.clone();
        let ranks: Vec<u32> = walk
            .iter()
            .map(|r| {
                let at = index.index_of(&r.path);
                index.rank_at(r, at).unwrap_or(NO_RANK)
            })
            .collect();
        assert_eq!(ranks.iter().filter(|&&r| r != NO_RANK).count(), 4);
        sort_by_path(&mut walked, &ranks, &index);
        assert_eq!(paths(&walked), paths(&got));
        assert!(walked.iter().zip(&got).all(|(a, b)| a.shares(b)));
    }

    #[test]
    fn an_unsorted_prior_still_gives_records_sorted_by_path() {
        let prior: Vec<Record> = ["/z", "/a", "/m"].iter().map(|p| rec(p, 1)).collect();
        let index = Prior::new(&prior);
        let mut got: Vec<Record> = prior.iter().rev().cloned().chain([rec("/b", 2)]).collect();
        sort_by_path(&mut got, &[], &index);
        assert_eq!(paths(&got), ["/a", "/b", "/m", "/z"].map(str::as_bytes));
    }

    #[test]
    fn the_prior_finds_each_of_its_records_and_nothing_else() {
        let prior: Vec<Record> = (0..5000)
            .map(|i| rec(&format!("/usr/lib/l{i}.so"), 1))
            .collect();
        let index = Prior::new(&prior);
        for r in &prior {
            assert!(index.get(&r.path).is_some_and(|p| p.shares(r)));
            assert_eq!(
                index.rank(r).map(|i| &prior[i as usize].path),
                Some(&r.path)
            );
        }
        for absent in ["/usr/lib/l5000.so", "", "/usr/lib/l1.s", "/usr/lib/l1.so/"] {
            assert!(index.get(absent.as_bytes()).is_none(), "{absent}");
        }
        // Equal but not shared: found by path, but not ranked.
        let copy = rec("/usr/lib/l7.so", 1);
        assert!(index.get(&copy.path).is_some());
        assert_eq!(index.rank(&copy), None);
        let empty = Prior::new(&[]);
        assert!(empty.get(b"/usr/lib/l1.so").is_none());
        // A duplicate path is found (either of its records).
        let dup = vec![rec("/a", 1), rec("/a", 2), rec("/b", 3)];
        let index = Prior::new(&dup);
        assert_eq!(index.get(b"/a").map(|r| r.blake3), Some(Some([1; 32])));
        assert_eq!(index.get(b"/b").map(|r| r.blake3), Some(Some([3; 32])));
    }

    #[test]
    fn a_record_seen_twice_by_overlapping_walks_is_kept_next_to_itself() {
        let prior: Vec<Record> = ["/a", "/b"].iter().map(|p| rec(p, 1)).collect();
        let index = Prior::new(&prior);
        let mut got = vec![prior[1].clone(), prior[0].clone(), prior[1].clone()];
        sort_by_path(&mut got, &[], &index);
        assert_eq!(paths(&got), ["/a", "/b", "/b"].map(str::as_bytes));
    }

    #[test]
    fn nothing_shared_sorts_by_path() {
        let index = Prior::new(&[]);
        let mut got = vec![rec("/c", 1), rec("/a", 1), rec("/b", 1)];
        sort_by_path(&mut got, &[], &index);
        assert_eq!(paths(&got), ["/a", "/b", "/c"].map(str::as_bytes));
    }
}
