//! Inspecting one path: the only place libwarden reads a monitored file.
//! What a path's inspection gives (a [`Stat`], an [`Outcome`], its
//! [`Cost`]) is the same everywhere; how a file is opened and read is not,
//! so each platform has its own [`Inspector`] with the same API: `unix`
//! (fd-relative `openat`/`fstatat`, `O_NOFOLLOW|O_NONBLOCK|O_NOATIME`) and
//! `windows` (std's portable calls, no digest reuse from file identity).
//!
//! The pass that hashes a file also gathers its [`Facts`] (see
//! [`wants_facts`] for which files carry them) from the same descriptor:
//! the `security.ima` xattr before the content is digested, its content
//! digest and the loader's preload string from the same reads as BLAKE3,
//! and the ELF headers and a module's signature trailer right after, from
//! the buffer when the file fit in one read, else by bounded `pread`s. The
//! second `fstat` comes after all of it, so a file that changed meanwhile
//! is retried, facts and all. The judges read the facts, not the file.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::facts::{
    self, ElfFact, Facts, ImaFact, ModuleFact, UnitFact, LOADER_CAP, PRELOAD_STRING,
};
use crate::formats::elf::{self, FileAt, ReadAt};
use crate::pkgdigest::{Algo, FileDigest, MultiHasher};
pub use crate::pkgdigest::{AlgoSet, ContentDigests, DigestPaths};
// The pure parsers of module trailers and IMA values; nothing else of
// provenance is used here.
use crate::formats::{ima, kmod, loaderpaths};
use crate::record::{file_name, FileClass, FileType, Record, RecordData, Unhashed};
use crate::rootfs::Root;
use crate::sys::MetadataExt;

#[cfg(unix)]
mod lanes;
#[cfg(unix)]
pub use lanes::{DrainPool, LaneEngine};
#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix::ima_xattr;
#[cfg(unix)]
pub use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows::ima_xattr;
#[cfg(windows)]
pub use windows::*;

/// How often a file that keeps changing is re-read before giving up.
const RETRIES: usize = 3;
/// Read size for large files: big enough for BLAKE3's SIMD (and a few
/// syscalls per MB), small enough that what a read copies is still in
/// the core's cache when BLAKE3 (and the facts, the extra digests) read it
/// again. Measured on a 2-core EPYC (`init` of /usr/lib, 5.5 GB): 1 MiB
/// reads cost 4.4 s of kernel time, 128 KiB reads 4.1 s, 64 KiB reads
/// 2.0 s, the same as `b3sum --no-mmap`'s own 64 KiB reads.
pub const CHUNK: usize = 64 << 10;
/// Read size while a large file's BLAKE3 runs on several cores
/// ([`blake3::Hasher::update_rayon`]): each read is split between them.
pub const PARALLEL_CHUNK: usize = 1 << 20;
/// Files at least this large may use BLAKE3's multi-threaded mode.
pub const LARGE: u64 = 8 << 20;

/// When a large file's BLAKE3 may take other cores ([`blake3::Hasher::
/// update_rayon`]): only when they would idle otherwise. Fewer inspections
/// running than cores is not enough on its own: walker threads listing
/// directories keep the cores busy too, and each multi-threaded read
/// wakes the rayon pool, whose threads then spin before they sleep
/// (`init` of /usr/lib on 2 cores: ~0.5 s of CPU in `sched_yield`, the
/// whole `init` 10-15 % slower than without the mode). So with a walk
/// that reports its idle threads, the mode waits for one: the walk's
/// tail, when the last large files would otherwise hash on one core.
#[derive(Clone, Debug)]
pub struct LargeGate {
    /// Inspections running now, across threads (each counts itself).
    pub busy: Arc<AtomicUsize>,
    /// Walker threads waiting for work (`None`: a walk that does not
    /// say; then only `busy` decides).
    pub idle: Option<Arc<AtomicUsize>>,
    pub cores: usize,
}

impl LargeGate {
    pub fn new(cores: usize, idle: Option<Arc<AtomicUsize>>) -> LargeGate {
        LargeGate {
            busy: Arc::new(AtomicUsize::new(0)),
            idle,
            cores,
        }
    }

    /// Whether a large file may hash on several cores now.
    pub fn open(&self) -> bool {
        self.busy.load(Ordering::Relaxed) < self.cores
            && self
                .idle
                .as_ref()
                .is_none_or(|i| i.load(Ordering::Relaxed) > 0)
    }
}

/// The metadata libwarden records, from `lstat` or `fstat`.
#[derive(Clone, Copy, Debug)]
pub struct Stat {
    pub mode: u32,
    pub size: u64,
    pub uid: u32,
    pub gid: u32,
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    pub mtime: (i64, u32),
    pub ctime: (i64, u32),
}

impl Stat {
    pub fn is_file(&self) -> bool {
        self.mode & crate::sys::S_IFMT == crate::sys::S_IFREG
    }
}

impl From<&Metadata> for Stat {
    fn from(m: &Metadata) -> Stat {
        Stat {
            mode: m.mode(),
            size: m.size(),
            uid: m.uid(),
            gid: m.gid(),
            dev: m.dev(),
            ino: m.ino(),
            nlink: m.nlink(),
            mtime: (m.mtime(), m.mtime_nsec() as u32),
            ctime: (m.ctime(), m.ctime_nsec() as u32),
        }
    }
}

/// What inspecting a path gave.
pub enum Outcome {
    /// The path's record; a warning may come with it (unreadable, unstable).
    Record(Record, Option<String>),
    /// It was gone by the time it was opened (deleted during the scan).
    Vanished,
    /// Not even the metadata could be read.
    Failed(String),
    /// Its directory could not be reached inside the root without
    /// following a symlink (replaced by one during the walk): nothing is
    /// known of it, and nothing was read.
    Unreachable,
}

/// Bytes read by one inspection (for throughput figures), and with
/// `Inspector::timing` the time spent per phase.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cost {
    pub hashed_bytes: u64,
    pub hashed: bool,
    /// `lstat`, `open` and `fstat` calls.
    pub open_stat: Duration,
    /// Reading and hashing.
    pub hash: Duration,
}

/// The metadata part of a record.
pub fn base_record(path: Vec<u8>, m: &Stat) -> Record {
    let ftype = FileType::from_mode(m.mode);
    Record::from(RecordData {
        path,
        ftype,
        size: m.size,
        mode: m.mode,
        uid: m.uid,
        gid: m.gid,
        dev: m.dev,
        inode: m.ino,
        nlink: m.nlink,
        mtime: m.mtime,
        ctime: m.ctime,
        blake3: None,
        sha256: None,
        unhashed: if ftype == FileType::File {
            None
        } else {
            Some(Unhashed::NotRegular)
        },
        target: None,
        class: FileClass::None,
        facts: None,
    })
}

/// Whether a regular file's record carries [`Facts`]: ELF objects (the
/// audits read their headers) and whatever provenance judges (shared-object
/// and module names, PE DLLs). Every such file that is hashed gets facts,
/// empty or not, so a record without them was never looked at.
pub fn wants_facts(path: &[u8], class: FileClass) -> bool {
    wants_by_path(path) || wants_by_class(class)
}

/// By name (shared objects, modules) or place (systemd unit dirs, which
/// the environment audit reads whole).
fn wants_by_path(path: &[u8]) -> bool {
    wants_by_name(file_name(path)) || facts::is_unit_path(path)
}

fn wants_by_name(name: &[u8]) -> bool {
    elf::is_so_name(name) || kmod::is_module_name(name)
}

fn wants_by_class(class: FileClass) -> bool {
    matches!(
        class,
        FileClass::ElfDyn | FileClass::ElfExec | FileClass::ElfOther | FileClass::PeDll
    )
}

/// What one read-and-hash pass gives.
struct Hashed {
    digest: [u8; 32],
    /// SHA-256 of the same bytes, when asked for.
    sha256: Option<[u8; 32]>,
    /// The package digests of the same bytes asked for (an owned file's:
    /// dpkg's MD5, rpm's SHA-256..., apk's SHA-1).
    pkg: Vec<FileDigest>,
    /// Sniffed from the first read.
    class: FileClass,
    /// Bytes read.
    len: u64,
    facts: Option<Arc<Facts>>,
}

/// Reads a whole open file into BLAKE3 through `buf` (reused per thread),
/// gathering the facts of `path` (logical) on the way. The class is
/// sniffed from the first read. Files of at least [`LARGE`] bytes use
/// BLAKE3's multi-threaded mode while `parallel` is open, i.e. only when
/// cores would idle.
/// The package digests of `pkg` come from the same reads.
#[allow(clippy::too_many_arguments)]
fn read_and_hash(
    mut file: &File,
    buf: &mut Vec<u8>,
    size: u64,
    parallel: Option<&LargeGate>,
    cost: &mut Cost,
    path: &[u8],
    sha256: bool,
    pkg: AlgoSet,
) -> io::Result<Hashed> {
    // Reads of a chunk; the last one sized to what is left (plus one
    // byte, to see growth), so a file that fits a chunk takes one read and
    // the end needs no read of 0 bytes.
    let mut r = Reading::new(file, path, sha256, pkg);
    let parallel = parallel.filter(|_| size >= LARGE);
    loop {
        let rayon = parallel.is_some_and(LargeGate::open);
        let chunk = if rayon { PARALLEL_CHUNK } else { CHUNK };
        let want = read_size(size.saturating_sub(r.total), chunk);
        if buf.len() < want {
            buf.resize(want, 0);
        }
        let n = match file.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        r.feed(file, path, &buf[..n], rayon);
        if r.at_end(size, n, want, chunk) {
            break;
        }
    }
    Ok(r.finish(file, buf, cost))
}

/// The size of each read of a file of `size` bytes, at most `chunk`: the
/// whole file plus one byte (to see growth) when it fits.
fn read_size(size: u64, chunk: usize) -> usize {
    (size as usize).saturating_add(1).clamp(4096, chunk)
}

/// One file being read: the digests and facts fed from each read, in
/// order. Whoever reads (the inspector's loop, or the lanes that read
/// several files in turn) feeds it the same bytes the same way.
struct Reading {
    hasher: blake3::Hasher,
    /// The extra digests are fed from the same buffer: no second read.
    /// One SHA-256 serves the record (config `hashes`) and a package.
    sha: Option<sha2::Sha256>,
    /// Whether the record keeps the SHA-256 (else only a package asked).
    record_sha: bool,
    md5: Option<md5::Md5>,
    /// The package digests beyond MD5 and SHA-256 (SHA-1, SHA-512...).
    others: Option<MultiHasher>,
    /// The package digests asked for.
    pkg: AlgoSet,
    total: u64,
    reads: usize,
    class: FileClass,
    /// Decided from the name now, or from the class after the first read;
    /// either way before any content is digested.
    gather: Option<Gather>,
}

impl Reading {
    fn new(file: &File, path: &[u8], sha256: bool, pkg: AlgoSet) -> Reading {
        let others: Vec<Algo> = pkg
            .without(Algo::Md5)
            .without(Algo::Sha256)
            .iter()
            .collect();
        Reading {
            hasher: blake3::Hasher::new(),
            sha: (sha256 || pkg.contains(Algo::Sha256)).then(<sha2::Sha256 as sha2::Digest>::new),
            record_sha: sha256,
            md5: pkg.contains(Algo::Md5).then(<md5::Md5 as md5::Digest>::new),
            others: (!others.is_empty()).then(|| MultiHasher::new(&others)),
            pkg,
            total: 0,
            reads: 0,
            class: FileClass::Other,
            gather: wants_by_path(path).then(|| Gather::start(file, path)),
        }
    }

    /// The bytes of the next read (never empty) of the file at `path`.
    fn feed(&mut self, file: &File, path: &[u8], data: &[u8], rayon: bool) {
        if self.total == 0 {
            self.class = FileClass::sniff(data);
            if self.gather.is_none() && wants_by_class(self.class) {
                self.gather = Some(Gather::start(file, path));
            }
        }
        if rayon {
            self.hasher.update_rayon(data);
        } else {
            self.hasher.update(data);
        }
        if let Some(g) = &mut self.gather {
            g.feed(data);
        }
        if let Some(s) = &mut self.sha {
            sha2::Digest::update(s, data);
        }
        if let Some(m) = &mut self.md5 {
            md5::Digest::update(m, data);
        }
        if let Some(h) = &mut self.others {
            h.update(data);
        }
        self.total += data.len() as u64;
        self.reads += 1;
    }

    /// Whether the last read (`n` bytes of `want` asked) was the last: a
    /// short read of a regular file sized under one read (`chunk`) is EOF.
    fn at_end(&self, size: u64, n: usize, want: usize, chunk: usize) -> bool {
        want < chunk && self.total == size && n < want
    }

    /// The digests and facts; `buf` holds the last read's bytes (the whole
    /// file when one read took it all).
    fn finish(self, file: &File, buf: &[u8], cost: &mut Cost) -> Hashed {
        cost.hashed_bytes += self.total;
        cost.hashed = true;
        let whole = (self.reads <= 1).then(|| &buf[..self.total as usize]);
        let facts = self
            .gather
            .map(|g| Arc::new(g.finish(file, whole, self.total, self.class)));
        let sha256: Option<[u8; 32]> = self.sha.map(|s| sha2::Digest::finalize(s).into());
        let mut pkg = Vec::new();
        if let Some(m) = self.md5 {
            pkg.push(FileDigest::Md5(md5::Digest::finalize(m).into()));
        }
        if let Some(d) = sha256.filter(|_| self.pkg.contains(Algo::Sha256)) {
            pkg.push(FileDigest::Sha256(d));
        }
        pkg.extend(self.others.map(MultiHasher::finish).unwrap_or_default());
        Hashed {
            digest: *self.hasher.finalize().as_bytes(),
            sha256: sha256.filter(|_| self.record_sha),
            pkg,
            class: self.class,
            len: self.total,
            facts,
        }
    }
}

/// The facts of a file whose whole content is in memory (a container
/// image's layer member, read from its stream): the same parsers as a
/// file on disk, without the `security.ima` xattr (a tar member has none
/// that libwarden reads). `None` when the file needs no facts.
pub fn facts_of_bytes(path: &[u8], class: FileClass, data: &[u8]) -> Option<Facts> {
    if !wants_facts(path, class) {
        return None;
    }
    let name = file_name(path);
    let mut g = Gather {
        name: name.to_vec(),
        ima: None,
        preload: elf::is_glibc_loader(name).then(Search::default),
        unit: facts::is_unit_path(path).then(Vec::new),
    };
    g.feed(data);
    Some(g.finish_from(data, class))
}

/// Which bytes of a file its facts are made from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FactBytes {
    /// None beyond the first [`FileClass::sniff`] bytes (no facts, or
    /// facts no byte decides, as a PE's here).
    Head,
    /// Those the ELF parser reads at their offsets (headers, the dynamic
    /// segment, its strings): [`facts_at`] from any source that holds them
    /// gives what [`facts_of_bytes`] gives of the whole file.
    Ranges,
    /// Every byte: a glibc loader (the preload string is searched for),
    /// a kernel module (its tail), a systemd unit (its lines).
    All,
}

/// What of a file at `path` of `class` its facts need.
pub fn fact_bytes(path: &[u8], class: FileClass) -> FactBytes {
    let name = file_name(path);
    if !wants_facts(path, class) {
        FactBytes::Head
    } else if kmod::is_module_name(name) || elf::is_glibc_loader(name) || facts::is_unit_path(path)
    {
        FactBytes::All
    } else if matches!(class, FileClass::ElfDyn | FileClass::ElfExec) {
        FactBytes::Ranges
    } else {
        FactBytes::Head
    }
}

/// The facts of a file whose [`fact_bytes`] is [`FactBytes::Ranges`], from
/// positional reads of `src` (its `size` the file's).
pub fn facts_at<R: ReadAt + ?Sized>(path: &[u8], class: FileClass, src: &R) -> Option<Facts> {
    if !wants_facts(path, class) {
        return None;
    }
    let g = Gather {
        name: file_name(path).to_vec(),
        ima: None,
        preload: None,
        unit: None,
    };
    Some(g.finish_from(src, class))
}

/// Facts being gathered during one hashing pass.
struct Gather {
    name: Vec<u8>,
    /// The `security.ima` value and the content digest it is checked
    /// against, when libwarden implements its algorithm.
    ima: Option<(Vec<u8>, Option<ima::ContentHasher>)>,
    /// A glibc loader's name: searching for the preload string.
    preload: Option<Search>,
    /// A file in a systemd unit dir: its first bytes, for the
    /// environment lines.
    unit: Option<Vec<u8>>,
}

impl Gather {
    /// Reads the xattr (before the content: it says which digest to
    /// compute alongside BLAKE3).
    fn start(file: &File, path: &[u8]) -> Gather {
        let name = file_name(path).to_vec();
        let ima = ima_xattr(file).map(|x| {
            let hasher = ima::content_algo(&x).and_then(ima::ContentHasher::new);
            (x, hasher)
        });
        Gather {
            preload: elf::is_glibc_loader(&name).then(Search::default),
            name,
            ima,
            unit: facts::is_unit_path(path).then(Vec::new),
        }
    }

    fn feed(&mut self, data: &[u8]) {
        if let Some((_, Some(h))) = &mut self.ima {
            h.update(data);
        }
        if let Some(s) = &mut self.preload {
            s.feed(data);
        }
        if let Some(u) = &mut self.unit {
            let room = (facts::UNIT_CAP as usize).saturating_sub(u.len());
            u.extend_from_slice(&data[..data.len().min(room)]);
        }
    }

    /// The facts, once the content has been read (`whole` when it is all
    /// in the buffer; otherwise headers and tails are read with `pread`).
    fn finish(self, file: &File, whole: Option<&[u8]>, len: u64, class: FileClass) -> Facts {
        match whole {
            Some(b) => self.finish_from(b, class),
            None => self.finish_from(&FileAt { file, len }, class),
        }
    }

    fn finish_from<R: ReadAt + ?Sized>(self, src: &R, class: FileClass) -> Facts {
        let elf =
            matches!(class, FileClass::ElfDyn | FileClass::ElfExec).then(|| {
                match elf::parse(src) {
                    Ok(info) => ElfFact::Parsed(Arc::new(info)),
                    Err(_) => ElfFact::Unparsable,
                }
            });
        let module = kmod::is_module_name(&self.name).then(|| match module_tail(src) {
            None => ModuleFact::Unreadable,
            Some(tail) => match kmod::inspect(&self.name, &tail) {
                kmod::ModuleSig::Unsigned => ModuleFact::Unsigned,
                kmod::ModuleSig::Hidden(c) => ModuleFact::Hidden(c.to_string()),
                kmod::ModuleSig::Signed { key_id, hash } => ModuleFact::Signed {
                    key_id: facts::text(&key_id),
                    hash: facts::text(&hash),
                },
                kmod::ModuleSig::Malformed(why) => ModuleFact::Malformed(facts::text(why)),
            },
        });
        Facts {
            elf,
            preload_paths: match &self.preload {
                Some(s) if !s.found => s.paths.paths.clone(),
                _ => Vec::new(),
            },
            preload_string: self.preload.map(|s| s.found),
            module,
            ima: self.ima.map(|(xattr, h)| ImaFact {
                xattr,
                digest: h.map(ima::ContentHasher::finish),
            }),
            unit: self.unit.map(|u| UnitFact::of(&u)),
        }
    }
}

/// The last bytes of a module that [`kmod::inspect`] needs: the fixed
/// trailer, then as much as it says the signature takes.
fn module_tail<R: ReadAt + ?Sized>(src: &R) -> Option<Vec<u8>> {
    let len = src.size();
    let last = |n: u64| {
        let n = n.min(len);
        let mut b = vec![0u8; n as usize];
        src.read_exact_at(len - n, &mut b).then_some(b)
    };
    let trailer = last(kmod::TRAILER as u64)?;
    last(kmod::tail_needed(&trailer) as u64)
}

/// A search for [`PRELOAD_STRING`] in the first [`LOADER_CAP`] bytes of a
/// stream fed in chunks, matches across chunk boundaries included.
/// The absolute paths the loader holds are collected on the way: if the
/// string is missing, they say where the preload list went.
#[derive(Default)]
struct Search {
    /// The last `PRELOAD_STRING.len() - 1` bytes fed.
    carry: Vec<u8>,
    seen: u64,
    found: bool,
    paths: loaderpaths::PathScan,
}

impl Search {
    fn feed(&mut self, data: &[u8]) {
        if self.seen >= LOADER_CAP {
            return;
        }
        let room = (LOADER_CAP - self.seen).min(data.len() as u64) as usize;
        let data = &data[..room];
        self.seen += room as u64;
        self.paths.feed(data);
        if self.found {
            return;
        }
        let keep = PRELOAD_STRING.len() - 1;
        let contains = |b: &[u8]| b.windows(PRELOAD_STRING.len()).any(|w| w == PRELOAD_STRING);
        if !self.carry.is_empty() {
            let mut joint = self.carry.clone();
            joint.extend_from_slice(&data[..data.len().min(keep)]);
            if contains(&joint) {
                self.found = true;
                return;
            }
        }
        if contains(data) {
            self.found = true;
            return;
        }
        self.carry
            .extend_from_slice(&data[data.len().saturating_sub(keep)..]);
        let excess = self.carry.len().saturating_sub(keep);
        self.carry.drain(..excess);
    }
}

/// Rewinds a file for another hashing pass.
fn seek_start(mut file: &File) -> io::Result<()> {
    use std::io::Seek;
    file.seek(io::SeekFrom::Start(0)).map(|_| ())
}

/// Convenience for single paths (tracked files, the watcher): `logical`
/// is a canonical path inside `root`.
pub fn inspect_path(root: &Root, logical: Vec<u8>, prior: Option<&Record>) -> Outcome {
    inspect_path_with(root, logical, prior, false)
}

/// [`inspect_path`]; with `sha256`, a SHA-256 is computed alongside BLAKE3.
pub fn inspect_path_with(
    root: &Root,
    logical: Vec<u8>,
    prior: Option<&Record>,
    sha256: bool,
) -> Outcome {
    let mut insp = Inspector::new(root);
    insp.sha256 = sha256;
    insp.inspect(logical, None, prior, &mut Cost::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_large_gate_opens_only_for_spare_cores() {
        let idle = Arc::new(AtomicUsize::new(0));
        let g = LargeGate::new(2, Some(idle.clone()));
        g.busy.store(1, Ordering::Relaxed);
        // Walkers all at work (listing, hashing): no spare core.
        assert!(!g.open());
        // One waiting for work: the walk's tail.
        idle.store(1, Ordering::Relaxed);
        assert!(g.open());
        // As many inspections as cores: none to spare.
        g.busy.store(2, Ordering::Relaxed);
        assert!(!g.open());
        // A walk that keeps no idle count: inspections alone decide.
        let g = LargeGate::new(2, None);
        g.busy.store(1, Ordering::Relaxed);
        assert!(g.open());
    }
}
