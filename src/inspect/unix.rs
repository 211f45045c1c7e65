//! Inspecting one path: the only place libwarden reads a monitored file.
//! A regular file is opened once (`O_NOFOLLOW|O_NONBLOCK|O_NOATIME`),
//! `fstat`ed, hashed from the same descriptor with `read` (never mmap: a
//! truncation mid-hash would be SIGBUS) and `fstat`ed again; a file that
//! changed while being hashed is retried, then reported. FIFOs, sockets and
//! devices are recorded from `lstat` and never opened.
//!
//! Paths are looked up relative to their directory: the inspector keeps the
//! parent directory of the last entry open (`O_PATH`) and uses `fstatat` /
//! `openat` on the entry's name, so a walk that hands over one directory's
//! entries in a row pays one path lookup per directory instead of one per
//! file (the lookup was the largest cost of an unchanged `check`).
//!
//! Paths are logical (inside the root) and every lookup is confined: the
//! parent directory is opened relative to the root's descriptor without
//! following any symlink ([`crate::sys::beneath`]), and the entry itself
//! with `O_NOFOLLOW` / `AT_SYMLINK_NOFOLLOW` relative to that. A parent that
//! cannot be reached that way (a directory swapped for a symlink during the
//! walk) gives [`Outcome::Unreachable`]: nothing outside the root is ever
//! opened, stat'ed or recorded.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Instant;

use super::{
    base_record, read_and_hash, seek_start, wants_facts, AlgoSet, ContentDigests, Cost,
    DigestPaths, Hashed, LargeGate, Outcome, Stat, PARALLEL_CHUNK, RETRIES,
};
use crate::facts::{Facts, ImaFact, MAX_XATTR};
use crate::record::{FileType, Record, Unhashed};
use crate::rootfs::Root;

/// What [`Inspector::prepare`] leaves to do.
pub(super) enum Prepared {
    Done(Outcome),
    /// A regular file to open and read, recorded under this path.
    Read(Vec<u8>),
}

/// Per-thread state reused across files: no allocation per file beyond the
/// record itself.
pub struct Inspector {
    buf: Vec<u8>,
    noatime: bool,
    /// Hash large files with rayon only while the gate is open, i.e. when
    /// other cores would sit idle: with every core hashing its own file,
    /// the multi-threaded mode only adds scheduling.
    pub parallel_large: Option<LargeGate>,
    /// Time the open+stat and hash phases into [`Cost`] (for `bench`; off
    /// in normal scans, where the clock reads would be pure overhead).
    pub timing: bool,
    /// Readahead hints (`posix_fadvise`) before reading a file: helps a
    /// cold cache, costs a syscall per file when warm.
    pub fadvise: bool,
    /// Also compute SHA-256 (config `hashes = ["sha256"]`).
    pub sha256: bool,
    /// Also compute the package digests these paths want (MD5, SHA-256,
    /// SHA-1...), kept in [`Inspector::digests`].
    pub digest_paths: Option<Arc<DigestPaths>>,
    /// The package digests computed, by BLAKE3, for files recorded with
    /// one (a file that changed while read leaves none).
    pub digests: ContentDigests,
    /// The root every logical path is below.
    root: Option<Arc<OwnedFd>>,
    /// The parent directory (logical, without outer slashes) of the last
    /// path, held open; shared with a walker that listed it (see
    /// [`Inspector::enter_dir`]).
    dir: Option<(Vec<u8>, Arc<OwnedFd>)>,
    /// The last path's file name, NUL-terminated.
    name: Vec<u8>,
    /// The last path's parent could not be reached confined.
    pub(super) unreachable: bool,
}

impl Inspector {
    /// An inspector of paths below `root`.
    pub fn new(root: &Root) -> Inspector {
        Inspector {
            buf: Vec::new(),
            noatime: true,
            parallel_large: None,
            timing: false,
            fadvise: false,
            sha256: false,
            digest_paths: None,
            digests: ContentDigests::new(),
            root: root.shared_fd(),
            dir: None,
            name: Vec::new(),
            unreachable: false,
        }
    }
}

impl Stat {
    fn from_libc(st: &libc::stat) -> Stat {
        Stat {
            mode: st.st_mode,
            size: st.st_size as u64,
            uid: st.st_uid,
            gid: st.st_gid,
            dev: st.st_dev,
            ino: st.st_ino,
            nlink: st.st_nlink,
            mtime: (st.st_mtime, st.st_mtime_nsec as u32),
            ctime: (st.st_ctime, st.st_ctime_nsec as u32),
        }
    }

    /// Same test as [`RecordData::same_identity`], without building a record.
    fn same_identity(&self, r: &Record) -> bool {
        r.dev == self.dev
            && r.inode == self.ino
            && r.size == self.size
            && r.mtime == self.mtime
            && r.ctime == self.ctime
            && r.ftype == FileType::from_mode(self.mode)
    }
}

impl Inspector {
    /// The entries of directory `logical` are looked up relative to `fd`
    /// from now on (until a path of another directory comes): a walker
    /// that opened the directory confined to list it hands its descriptor
    /// over, so the directory is not looked up again by path.
    pub fn enter_dir(&mut self, logical: &[u8], fd: Arc<OwnedFd>) {
        self.dir = Some((trim_slashes(logical).to_vec(), fd));
    }

    /// Inspects `logical` (a canonical path inside the root) and records
    /// it. `hint` is the type from the directory entry, when known. With
    /// `prior`, a regular file whose identity (dev, inode, size, mtime,
    /// ctime) is unchanged keeps its old digest and facts without being
    /// read (unless the prior record lacks facts it should have: see
    /// `reusable`).
    pub fn inspect(
        &mut self,
        logical: Vec<u8>,
        hint: Option<FileType>,
        prior: Option<&Record>,
        cost: &mut Cost,
    ) -> Outcome {
        self.unreachable = false;
        let lookup = logical.clone();
        let out = self.inspect_confined(&lookup, logical, hint, prior, cost);
        if self.unreachable {
            // Whatever the calls said, the parent was not reached inside
            // the root: nothing about this entry is known.
            return Outcome::Unreachable;
        }
        out
    }

    /// Tests: inspects the host path `host` (below a `/` root) and records
    /// it as `logical`, which facts depend on.
    #[cfg(test)]
    pub(super) fn inspect_as(
        &mut self,
        host: &std::path::Path,
        logical: Vec<u8>,
        hint: Option<FileType>,
        prior: Option<&Record>,
        cost: &mut Cost,
    ) -> Outcome {
        use std::os::unix::ffi::OsStrExt;
        self.unreachable = false;
        let out = self.inspect_confined(host.as_os_str().as_bytes(), logical, hint, prior, cost);
        if self.unreachable {
            return Outcome::Unreachable;
        }
        out
    }

    /// Inspects what `host` (the lookup path below the root) names and
    /// records it under `logical`.
    fn inspect_confined(
        &mut self,
        host: &[u8],
        logical: Vec<u8>,
        hint: Option<FileType>,
        prior: Option<&Record>,
        cost: &mut Cost,
    ) -> Outcome {
        match self.prepare(host, logical, hint, prior, cost) {
            Prepared::Done(out) => out,
            Prepared::Read(logical) => self.hash_file(host, logical, cost),
        }
    }

    /// Everything of an inspection before the content is read: what needs
    /// no read (not a regular file, an unchanged identity) is done here.
    pub(super) fn prepare(
        &mut self,
        host: &[u8],
        logical: Vec<u8>,
        hint: Option<FileType>,
        prior: Option<&Record>,
        cost: &mut Cost,
    ) -> Prepared {
        match hint {
            Some(FileType::File) => {}
            Some(_) => return Prepared::Done(self.record_lstat(host, logical, cost)),
            None => {
                // Type unknown: one lstat decides, and serves the
                // incremental check as well.
                let meta = match self.timed_lstat(host, cost) {
                    Ok(m) => m,
                    Err(e) => return Prepared::Done(lstat_error(e)),
                };
                if !meta.is_file() {
                    return Prepared::Done(self.record_meta(host, logical, &meta));
                }
                if let Some(p) = prior.filter(|p| reusable(p, self.sha256)) {
                    if meta.same_identity(p) {
                        return Prepared::Done(Outcome::Record(
                            reuse(logical, &meta, p, self.sha256),
                            None,
                        ));
                    }
                }
                return Prepared::Read(logical);
            }
        }
        if let Some(p) = prior.filter(|p| reusable(p, self.sha256)) {
            match self.timed_lstat(host, cost) {
                Ok(meta) => {
                    if meta.same_identity(p) {
                        return Prepared::Done(Outcome::Record(
                            reuse(logical, &meta, p, self.sha256),
                            None,
                        ));
                    }
                    if !meta.is_file() {
                        return Prepared::Done(self.record_meta(host, logical, &meta));
                    }
                }
                Err(e) => return Prepared::Done(lstat_error(e)),
            }
        }
        Prepared::Read(logical)
    }

    fn record_lstat(&mut self, host: &[u8], logical: Vec<u8>, cost: &mut Cost) -> Outcome {
        match self.timed_lstat(host, cost) {
            Ok(meta) => self.record_meta(host, logical, &meta),
            Err(e) => lstat_error(e),
        }
    }

    fn timed_lstat(&mut self, host: &[u8], cost: &mut Cost) -> io::Result<Stat> {
        if !self.timing {
            return self.lstat(host);
        }
        let t = Instant::now();
        let r = self.lstat(host);
        cost.open_stat += t.elapsed();
        r
    }

    /// The directory fd and NUL-terminated name that `logical` is reached
    /// by: its parent, opened confined below the root once per directory.
    /// A parent that cannot be reached gives an error, and marks the
    /// inspection unreachable unless it is simply gone.
    fn locate(&mut self, logical: &[u8]) -> io::Result<RawFd> {
        self.name.clear();
        let trimmed = trim_slashes(logical);
        let (parent, name): (&[u8], &[u8]) = match trimmed.iter().rposition(|&b| b == b'/') {
            Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
            None if trimmed.is_empty() => (b"", b"."),
            None => (b"", trimmed),
        };
        if name.contains(&0) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        self.name.extend_from_slice(name);
        self.name.push(0);
        if let Some((p, fd)) = &self.dir {
            if p.as_slice() == parent {
                return Ok(fd.as_raw_fd());
            }
        }
        self.dir = None;
        let opened = match &self.root {
            Some(root) => crate::sys::beneath::open_beneath(
                root.as_fd(),
                parent,
                libc::O_PATH | libc::O_DIRECTORY,
            ),
            None => Err(io::Error::from_raw_os_error(libc::EBADF)),
        };
        match opened {
            Ok(owned) => {
                let raw = owned.as_raw_fd();
                self.dir = Some((parent.to_vec(), Arc::new(owned)));
                Ok(raw)
            }
            Err(e) => {
                // Gone (or replaced by a file) is a vanished entry; any
                // other failure (ELOOP: a symlink on the way) means the
                // entry is not reachable inside the root right now.
                if !matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) {
                    self.unreachable = true;
                }
                Err(e)
            }
        }
    }

    fn name_ptr(&self) -> io::Result<*const libc::c_char> {
        CStr::from_bytes_with_nul(&self.name)
            .map(|c| c.as_ptr())
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
    }

    /// The target of the symlink `logical`, by `readlinkat` on its
    /// confined parent.
    fn read_link(&mut self, logical: &[u8]) -> io::Result<Vec<u8>> {
        use std::os::unix::ffi::OsStrExt;
        let dirfd = self.locate(logical)?;
        let name = CStr::from_bytes_with_nul(&self.name)
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        crate::rootfs::readlink_fd(dirfd, name).map(|t| t.as_os_str().as_bytes().to_vec())
    }

    /// Readahead advice for a large file, when asked for.
    pub(super) fn advise(&self, file: &File, size: u64) {
        // Files past the size one read used to take (1 MiB): smaller ones
        // are read in a few reads anyway, and advice costs a syscall each.
        if self.fadvise && size > PARALLEL_CHUNK as u64 {
            // Queue the whole file now: the disk works on the next chunks
            // while this thread hashes the current one. Advice only; its
            // failure changes nothing.
            // SAFETY: a plain syscall on a valid fd.
            unsafe {
                libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL);
            }
            read_ahead(file);
        }
    }

    /// `security.ima` of a file that could not be opened for reading.
    /// `fgetxattr` does not work on the `O_PATH` descriptor that can still
    /// be had, and `lgetxattr` by host path would follow a swapped parent;
    /// so the file is opened `O_PATH | O_NOFOLLOW` relative to its confined
    /// parent, checked to be a regular file (`fstat` of that descriptor),
    /// and read through `/proc/self/fd/N`, which names exactly that inode
    /// (no further lookup is possible: it is not a symlink). Without
    /// `/proc`, nothing is read.
    fn path_ima_xattr(&mut self, logical: &[u8]) -> Option<Vec<u8>> {
        let dirfd = self.locate(logical).ok()?;
        let name = self.name_ptr().ok()?;
        // SAFETY: name is NUL-terminated; the fd is owned below.
        let fd = unsafe {
            libc::openat(
                dirfd,
                name,
                libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return None;
        }
        // SAFETY: a fresh fd owned by nothing else.
        let file = unsafe { File::from_raw_fd(fd) };
        if !fstat(&file).ok()?.is_file() {
            return None;
        }
        let c = std::ffi::CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()?;
        read_ima(|buf| {
            // SAFETY: c and the name are NUL-terminated; buf is valid for
            // buf.len() bytes.
            unsafe {
                libc::getxattr(
                    c.as_ptr(),
                    c"security.ima".as_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            }
        })
    }

    /// `lstat` of `host`, relative to its (cached) parent directory.
    pub fn lstat(&mut self, host: &[u8]) -> io::Result<Stat> {
        let dirfd = self.locate(host)?;
        let name = self.name_ptr()?;
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: name is NUL-terminated and outlives the call; st is
        // written by the kernel on success.
        let rc = unsafe { libc::fstatat(dirfd, name, st.as_mut_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fstatat succeeded, so st is initialised.
        Ok(Stat::from_libc(unsafe { &st.assume_init() }))
    }

    /// A record from metadata alone (anything but a regular file, or a file
    /// that could not be opened).
    pub(super) fn record_meta(&mut self, host: &[u8], logical: Vec<u8>, meta: &Stat) -> Outcome {
        let mut r = base_record(logical, meta);
        match r.ftype {
            FileType::File => {
                // Reached only when the file could not be opened.
                r.unhashed = Some(Unhashed::Unreadable);
                // Its security.ima can still be read without opening it,
                // so provenance can say one is there, though not verified.
                if wants_facts(&r.path, r.class) {
                    if let Some(xattr) = self.path_ima_xattr(host) {
                        let ima = Some(ImaFact {
                            xattr,
                            digest: None,
                        });
                        r.facts = Some(Arc::new(Facts {
                            ima,
                            ..Facts::default()
                        }));
                    }
                }
            }
            FileType::Symlink => match self.read_link(host) {
                Ok(t) => {
                    r.target = Some(t.into());
                }
                Err(e) => {
                    return Outcome::Record(r, Some(format!("cannot read link: {e}")));
                }
            },
            _ => {}
        }
        Outcome::Record(r, None)
    }

    fn open(&mut self, host: &[u8]) -> io::Result<File> {
        let base = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
        let dirfd = self.locate(host)?;
        let name = self.name_ptr()?;
        let open = |flags| {
            // SAFETY: name is NUL-terminated and outlives the call.
            let fd = unsafe { libc::openat(dirfd, name, flags) };
            if fd < 0 {
                Err(io::Error::last_os_error())
            } else {
                // SAFETY: a fresh fd, owned by the File from here on.
                Ok(unsafe { File::from_raw_fd(fd) })
            }
        };
        if self.noatime {
            match open(base | libc::O_NOATIME) {
                // O_NOATIME is only allowed on one's own files (or as root).
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => self.noatime = false,
                other => return other,
            }
        }
        open(base)
    }

    fn hash_file(&mut self, host: &[u8], logical: Vec<u8>, cost: &mut Cost) -> Outcome {
        let (file, logical) = match self.open_to_read(host, logical, cost) {
            Ok(f) => f,
            Err(out) => return out,
        };
        self.hash_open(host, logical, file, cost, None)
    }

    /// Opens a regular file to read it; what was there instead (gone, a
    /// symlink, a FIFO, unreadable) is the outcome. (Large as errors go:
    /// it is the record itself, made once per file either way.)
    #[allow(clippy::result_large_err)]
    pub(super) fn open_to_read(
        &mut self,
        host: &[u8],
        logical: Vec<u8>,
        cost: &mut Cost,
    ) -> Result<(File, Vec<u8>), Outcome> {
        let t = self.timing.then(Instant::now);
        let opened = self.open(host);
        if let Some(t) = t {
            cost.open_stat += t.elapsed();
        }
        match opened {
            Ok(f) => Ok((f, logical)),
            Err(e) => {
                Err(match e.raw_os_error() {
                    Some(libc::ENOENT) | Some(libc::ENOTDIR) => Outcome::Vanished,
                    // Replaced by a symlink, FIFO, socket (ENXIO) or device
                    // since the directory was read: record what is there now.
                    Some(libc::ELOOP) | Some(libc::ENXIO) | Some(libc::ENODEV) => {
                        self.record_lstat(host, logical, cost)
                    }
                    _ => match self.record_lstat(host, logical, cost) {
                        Outcome::Record(r, _) => {
                            Outcome::Record(r, Some(format!("cannot open: {e}")))
                        }
                        other => other,
                    },
                })
            }
        }
    }

    /// [`Inspector::hash_file`] from the open file on: `fstat`, read and
    /// hash, `fstat` again, retried while the file changes.
    /// With `first`, the first try was made elsewhere (the lanes: the
    /// `fstat` before it and what reading gave), and is judged the same.
    pub(super) fn hash_open(
        &mut self,
        host: &[u8],
        logical: Vec<u8>,
        file: File,
        cost: &mut Cost,
        mut first: Option<(Stat, io::Result<Hashed>)>,
    ) -> Outcome {
        let mut last_err = String::new();
        for _ in 0..RETRIES {
            let (before, hashed) = match first.take() {
                Some(done) => done,
                None => {
                    let before = match self.timed_fstat(&file, cost) {
                        Ok(m) => m,
                        Err(e) => return Outcome::Failed(format!("fstat: {e}")),
                    };
                    if !before.is_file() {
                        // A FIFO or device swapped in: record it, never read it.
                        return self.record_meta(host, logical, &before);
                    }
                    let t = self.timing.then(Instant::now);
                    let hashed = self.hash_fd(&file, before.size, cost, &logical);
                    if let Some(t) = t {
                        cost.hash += t.elapsed();
                    }
                    (before, hashed)
                }
            };
            match hashed {
                Ok(Hashed {
                    digest,
                    sha256,
                    pkg,
                    class,
                    len: n,
                    facts,
                }) => {
                    let after = match self.timed_fstat(&file, cost) {
                        Ok(m) => m,
                        Err(e) => return Outcome::Failed(format!("fstat: {e}")),
                    };
                    let stable = n == before.size
                        && after.size == before.size
                        && after.mtime == before.mtime
                        && after.ctime == before.ctime;
                    if stable {
                        let mut rec = base_record(logical, &before);
                        rec.blake3 = Some(digest);
                        rec.sha256 = sha256.map(Box::new);
                        self.digests.extend(pkg.into_iter().map(|d| (digest, d)));
                        rec.class = class;
                        rec.facts = facts;
                        return Outcome::Record(rec, None);
                    }
                    last_err = "changed while it was being hashed".into();
                }
                Err(e) => {
                    let mut rec = base_record(logical, &before);
                    rec.unhashed = Some(Unhashed::Unreadable);
                    return Outcome::Record(rec, Some(format!("read error: {e}")));
                }
            }
            // Rewind for the next try: pread-style reads from offset 0.
            if let Err(e) = seek_start(&file) {
                return Outcome::Failed(format!("seek: {e}"));
            }
        }
        let meta = match fstat(&file) {
            Ok(m) => m,
            Err(e) => return Outcome::Failed(format!("fstat: {e}")),
        };
        let mut rec = base_record(logical, &meta);
        rec.unhashed = Some(Unhashed::Unstable);
        Outcome::Record(
            rec,
            Some(format!("{last_err} ({RETRIES} tries); not verified")),
        )
    }

    pub(super) fn timed_fstat(&self, file: &File, cost: &mut Cost) -> io::Result<Stat> {
        if !self.timing {
            return fstat(file);
        }
        let t = Instant::now();
        let r = fstat(file);
        cost.open_stat += t.elapsed();
        r
    }

    /// Reads the whole file from its descriptor into BLAKE3 and gathers
    /// the facts of `name` (see [`read_and_hash`]), with readahead advice
    /// for large files.
    fn hash_fd(
        &mut self,
        file: &File,
        size: u64,
        cost: &mut Cost,
        path: &[u8],
    ) -> io::Result<Hashed> {
        self.advise(file, size);
        let pkg = self
            .digest_paths
            .as_ref()
            .map_or(AlgoSet::EMPTY, |p| p.algos(path));
        read_and_hash(
            file,
            &mut self.buf,
            size,
            self.parallel_large.as_ref(),
            cost,
            path,
            self.sha256,
            pkg,
        )
    }
}

/// `security.ima` of an open file, from its descriptor (`fgetxattr`): the
/// very file being hashed, whatever its path now names. `None` when it has
/// none, it is larger than [`MAX_XATTR`], or xattrs are unsupported.
pub(super) fn ima_xattr(file: &File) -> Option<Vec<u8>> {
    read_ima(|buf| {
        // SAFETY: a valid fd; the name is NUL-terminated; buf is valid for
        // buf.len() bytes.
        unsafe {
            libc::fgetxattr(
                file.as_raw_fd(),
                c"security.ima".as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        }
    })
}

/// Runs one `getxattr`-style call into a [`MAX_XATTR`] buffer.
fn read_ima(get: impl FnOnce(&mut [u8]) -> isize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; MAX_XATTR];
    let n = get(&mut buf);
    if n <= 0 {
        return None;
    }
    buf.truncate(n as usize);
    Some(buf)
}

/// A logical path without its leading (and trailing) slashes: the path
/// relative to the root.
fn trim_slashes(p: &[u8]) -> &[u8] {
    let start = p.iter().position(|&b| b != b'/').unwrap_or(p.len());
    let end = p.iter().rposition(|&b| b != b'/').map_or(start, |i| i + 1);
    &p[start..end.max(start)]
}

/// `fstat` of an open file.
fn fstat(file: &File) -> io::Result<Stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: a valid fd; st is written by the kernel on success.
    let rc = unsafe { libc::fstat(file.as_raw_fd(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstat succeeded, so st is initialised.
    Ok(Stat::from_libc(unsafe { &st.assume_init() }))
}

/// Asks the kernel to read all of `file` ahead (advice: its failure
/// changes nothing).
pub(super) fn read_ahead(file: &File) {
    // SAFETY: a plain syscall on a valid fd.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_WILLNEED);
    }
}

fn lstat_error(e: io::Error) -> Outcome {
    match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => Outcome::Vanished,
        _ => Outcome::Failed(format!("lstat: {e}")),
    }
}

/// Whether a prior record can stand for an unchanged file: it has a
/// digest, and the facts its class and name call for. A record written
/// before facts existed has none; its file is read once more so that the
/// judges get them (an upgraded baseline heals on the first `check`).
///
/// With `sha256` asked for, a prior record without one is read again (once:
/// the baseline written next has it).
fn reusable(prior: &Record, sha256: bool) -> bool {
    prior.blake3.is_some()
        && (prior.sha256.is_some() || !sha256)
        && (prior.facts.is_some() || !wants_facts(&prior.path, prior.class))
}

/// Today's metadata with the prior digest, class and facts (identity
/// unchanged): the prior record itself when nothing else changed either
/// (the usual case: no copy is made, and the diff sees the one record).
fn reuse(logical: Vec<u8>, meta: &Stat, prior: &Record, sha256: bool) -> Record {
    let same = meta.mode == prior.mode
        && meta.uid == prior.uid
        && meta.gid == prior.gid
        && meta.nlink == prior.nlink
        && prior.unhashed.is_none()
        && prior.target.is_none()
        && (sha256 || prior.sha256.is_none())
        && logical == prior.path;
    if same {
        return prior.clone();
    }
    let mut now = base_record(logical, meta);
    now.blake3 = prior.blake3;
    // Dropped when no longer asked for: the record says what the config does.
    now.sha256 = prior.sha256.clone().filter(|_| sha256);
    now.class = prior.class;
    now.facts = prior.facts.clone();
    now.unhashed = None;
    now
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::CHUNK;
    use std::io::Write;
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn run(path: &Path, hint: Option<FileType>) -> Outcome {
        Inspector::new(&Root::slash()).inspect_as(
            path,
            b"/x".to_vec(),
            hint,
            None,
            &mut Cost::default(),
        )
    }

    #[test]
    fn deleted_between_walk_and_open_is_vanished() {
        let t = tempfile::tempdir().unwrap();
        assert!(matches!(
            run(&t.path().join("gone.so"), Some(FileType::File)),
            Outcome::Vanished
        ));
        assert!(matches!(
            run(&t.path().join("gone.so"), None),
            Outcome::Vanished
        ));
    }

    #[test]
    fn fifo_is_recorded_without_blocking_even_when_walked_as_a_file() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("fifo.so");
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        // The walker believed it was a regular file (swapped after readdir).
        match run(&p, Some(FileType::File)) {
            Outcome::Record(r, _) => {
                assert_eq!(r.ftype, FileType::Fifo);
                assert_eq!(r.blake3, None);
            }
            _ => panic!("expected a record"),
        }
    }

    #[test]
    fn digest_matches_blake3_and_class_is_sniffed() {
        let t = tempfile::tempdir().unwrap();
        for size in [
            0usize,
            1,
            4095,
            4096,
            4097,
            CHUNK - 1,
            CHUNK,
            CHUNK + 1,
            3 * CHUNK + 17,
        ] {
            let p = t.path().join(format!("f{size}"));
            let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
            std::fs::write(&p, &data).unwrap();
            match run(&p, Some(FileType::File)) {
                Outcome::Record(r, None) => {
                    assert_eq!(
                        r.blake3,
                        Some(*blake3::hash(&data).as_bytes()),
                        "size {size}"
                    );
                    assert_eq!(r.size, size as u64);
                }
                _ => panic!("size {size}: expected a clean record"),
            }
        }
    }

    #[test]
    fn file_changing_while_hashed_is_reported_unstable() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("growing.so");
        // Large enough that each hash pass lasts long enough for the
        // writer to be scheduled during it, even on a loaded machine.
        let initial = 128u64 << 20;
        std::fs::write(&p, vec![1u8; initial as usize]).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (p, stop) = (p.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    f.write_all(&[2u8; 512]).unwrap();
                }
            })
        };
        // Only start hashing once the writer is really writing.
        while std::fs::metadata(&p).unwrap().len() == initial {
            std::thread::yield_now();
        }
        let out = run(&p, Some(FileType::File));
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        match out {
            Outcome::Record(r, Some(w)) => {
                assert_eq!(r.unhashed, Some(Unhashed::Unstable));
                assert_eq!(r.blake3, None);
                assert!(w.contains("changed while"), "{w}");
            }
            _ => panic!("expected an unstable record with a warning"),
        }
    }

    #[test]
    fn unchanged_identity_reuses_the_prior_digest_without_reading() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("lib.so");
        std::fs::write(&p, b"abc").unwrap();
        let Outcome::Record(mut prior, None) = run(&p, Some(FileType::File)) else {
            panic!()
        };
        prior.blake3 = Some([9; 32]); // a digest only the reuse path can give
        let mut cost = Cost::default();
        let out = Inspector::new(&Root::slash()).inspect_as(
            &p,
            b"/x".to_vec(),
            Some(FileType::File),
            Some(&prior),
            &mut cost,
        );
        let Outcome::Record(r, None) = out else {
            panic!()
        };
        assert_eq!(r.blake3, Some([9; 32]));
        assert!(!cost.hashed);
    }

    /// An unchanged file's record is the prior record itself (no copy);
    /// one whose metadata moved without its identity (here: the prior
    /// says another owner) is today's metadata with the prior digest.
    #[test]
    fn an_unchanged_file_keeps_the_prior_record_itself() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("lib.so");
        std::fs::write(&p, b"abc").unwrap();
        let Outcome::Record(prior, None) = run(&p, Some(FileType::File)) else {
            panic!()
        };
        let again = |prior: &Record| {
            let out = Inspector::new(&Root::slash()).inspect_as(
                &p,
                b"/x".to_vec(),
                Some(FileType::File),
                Some(prior),
                &mut Cost::default(),
            );
            let Outcome::Record(r, None) = out else {
                panic!()
            };
            r
        };
        let r = again(&prior);
        assert!(r.shares(&prior));
        let mut other = prior.clone();
        other.uid = prior.uid.wrapping_add(1);
        assert!(!other.shares(&prior), "a write copies a shared record");
        let r = again(&other);
        assert!(!r.shares(&other));
        assert_eq!(r, prior, "today's owner, the prior digest");
        // A record of a shared handle written to leaves the other as it was.
        assert_eq!(other.uid, prior.uid.wrapping_add(1));
    }

    use crate::facts::{ElfFact, Facts, ImaFact, ModuleFact, PRELOAD_STRING};
    use crate::record::FileClass;

    /// Inspects `data` written to `dir/name`; the record must be clean.
    fn facts_of(dir: &Path, name: &str, data: &[u8]) -> Record {
        let p = dir.join(name);
        std::fs::write(&p, data).unwrap();
        let logical = format!("/usr/lib/{name}").into_bytes();
        match Inspector::new(&Root::slash()).inspect_as(
            &p,
            logical,
            None,
            None,
            &mut Cost::default(),
        ) {
            Outcome::Record(r, None) => {
                assert_eq!(r.blake3, Some(*blake3::hash(data).as_bytes()), "{name}");
                r
            }
            _ => panic!("{name}: expected a clean record"),
        }
    }

    /// `data` padded to beyond one read chunk (the `pread` paths).
    fn padded(data: &[u8], front: bool) -> Vec<u8> {
        let pad = vec![0u8; CHUNK + 4096];
        if front {
            [&pad[..], data].concat()
        } else {
            [data, &pad[..]].concat()
        }
    }

    #[test]
    fn elf_facts_come_from_the_buffer_or_from_preads() {
        let t = tempfile::tempdir().unwrap();
        let elf = crate::formats::elf::tests::build(
            true,
            false,
            crate::formats::elf::ET_DYN,
            &[(14, "libx.so.1")],
        );
        for (name, data) in [("small.so", elf.clone()), ("large.so", padded(&elf, false))] {
            let r = facts_of(t.path(), name, &data);
            assert_eq!(r.class, FileClass::ElfDyn);
            let Some(ElfFact::Parsed(info)) = r.facts.as_ref().and_then(|f| f.elf.clone()) else {
                panic!("{name}: {:?}", r.facts)
            };
            assert_eq!(info.soname.as_deref(), Some(&b"libx.so.1"[..]), "{name}");
            assert_eq!(*info, crate::formats::elf::parse(data.as_slice()).unwrap());
        }
        // ELF magic and a dynamic type, but nothing that holds together.
        let mut bad = elf[..64].to_vec();
        bad[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        let r = facts_of(t.path(), "bad", &bad);
        assert_eq!(r.class, FileClass::ElfDyn);
        assert_eq!(r.facts.clone().unwrap().elf, Some(ElfFact::Unparsable));
    }

    #[test]
    fn files_that_need_no_facts_get_none_and_empty_candidates_get_empty_facts() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(facts_of(t.path(), "ld.so.conf", b"/usr/lib\n").facts, None);
        assert_eq!(facts_of(t.path(), "libc.a", b"!<arch>\n").facts, None);
        for name in ["libempty.so", "libc.so"] {
            let r = facts_of(
                t.path(),
                name,
                if name == "libc.so" { b"INPUT(x)" } else { b"" },
            );
            assert_eq!(r.facts.as_deref(), Some(&Facts::default()), "{name}");
        }
    }

    #[test]
    fn the_preload_string_is_found_across_read_chunks() {
        let t = tempfile::tempdir().unwrap();
        let loader = "ld-linux-x86-64.so.2";
        let mut with = vec![7u8; 3 * CHUNK];
        // Straddling the first chunk boundary.
        with[CHUNK - 5..CHUNK - 5 + PRELOAD_STRING.len()].copy_from_slice(PRELOAD_STRING);
        let r = facts_of(t.path(), loader, &with);
        assert_eq!(r.facts.clone().unwrap().preload_string, Some(true));
        let r = facts_of(t.path(), loader, b"\x7fELF... /etc/ld.so.preload ...");
        assert_eq!(r.facts.clone().unwrap().preload_string, Some(true));
        let r = facts_of(t.path(), loader, b"/etc/ld.so.prelaod");
        assert_eq!(r.facts.clone().unwrap().preload_string, Some(false));
        // Not a glibc loader's name: not searched.
        let r = facts_of(t.path(), "ld-musl-x86_64.so.1", PRELOAD_STRING);
        assert_eq!(r.facts.clone().unwrap().preload_string, None);
    }

    #[test]
    fn preload_search_finds_the_string_at_every_split() {
        let mut data = b"0123456789abcdef0123".to_vec();
        data.extend_from_slice(PRELOAD_STRING);
        data.extend_from_slice(b"tail");
        for a in 0..data.len() {
            for b in a..data.len() {
                let mut s = super::super::Search::default();
                for part in [&data[..a], &data[a..b], &data[b..]] {
                    s.feed(part);
                }
                assert!(s.found, "split at {a}, {b}");
            }
        }
        let mut s = super::super::Search::default();
        for c in PRELOAD_STRING[..PRELOAD_STRING.len() - 1].chunks(1) {
            s.feed(c);
        }
        assert!(!s.found);
    }

    #[test]
    fn module_facts_match_the_trailer_parser_from_buffer_and_preads() {
        let t = tempfile::tempdir().unwrap();
        let mut broken = b"\x7fELF module body".to_vec();
        broken.extend_from_slice(&[0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0x10, 0]);
        broken.extend_from_slice(crate::formats::kmod::MARKER);
        for large in [false, true] {
            let plain = if large {
                padded(b"\x7fELF", false)
            } else {
                b"\x7fELF".to_vec()
            };
            let r = facts_of(t.path(), "plain.ko", &plain);
            assert_eq!(r.facts.clone().unwrap().module, Some(ModuleFact::Unsigned));
            // The marker stays at the end; only the tail is ever parsed.
            let data = if large {
                padded(&broken, true)
            } else {
                broken.clone()
            };
            let r = facts_of(t.path(), "broken.ko", &data);
            let expect = match crate::formats::kmod::inspect(b"broken.ko", &data) {
                crate::formats::kmod::ModuleSig::Malformed(why) => why.to_string(),
                other => panic!("{other:?}"),
            };
            assert_eq!(
                r.facts.clone().unwrap().module,
                Some(ModuleFact::Malformed(expect))
            );
        }
        let r = facts_of(t.path(), "packed.ko.xz", b"\xfd7zXZ");
        assert_eq!(
            r.facts.clone().unwrap().module,
            Some(ModuleFact::Hidden("xz".into()))
        );
    }

    /// Sets `security.ima` on `p`; false where the file system or the
    /// privileges do not allow it.
    fn set_ima(p: &Path, value: &[u8]) -> bool {
        let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
        let rc = unsafe {
            libc::setxattr(
                c.as_ptr(),
                c"security.ima".as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        rc == 0
    }

    #[test]
    fn ima_xattr_and_its_content_digest_come_from_the_same_descriptor() {
        use sha2::Digest;
        let t = tempfile::tempdir().unwrap();
        for (name, data) in [
            ("libsmall.so", b"small library".to_vec()),
            ("liblarge.so", padded(b"large library", true)),
        ] {
            let p = t.path().join(name);
            std::fs::write(&p, &data).unwrap();
            let mut value = vec![4u8, 4];
            value.extend_from_slice(&[0; 32]);
            if !set_ima(&p, &value) {
                eprintln!("security.ima cannot be set here: skipped");
                return;
            }
            let logical = format!("/usr/lib/{name}").into_bytes();
            let Outcome::Record(r, None) = Inspector::new(&Root::slash()).inspect_as(
                &p,
                logical,
                None,
                None,
                &mut Cost::default(),
            ) else {
                panic!()
            };
            assert_eq!(
                r.facts.clone().unwrap().ima.clone(),
                Some(ImaFact {
                    xattr: value,
                    digest: Some(sha2::Sha256::digest(&data).to_vec()),
                }),
                "{name}"
            );
        }
        // A value of a type with no content digest is kept raw.
        let p = t.path().join("libodd.so");
        std::fs::write(&p, b"x").unwrap();
        assert!(set_ima(&p, &[9, 9]));
        let logical = b"/usr/lib/libodd.so".to_vec();
        let Outcome::Record(r, None) = Inspector::new(&Root::slash()).inspect_as(
            &p,
            logical,
            None,
            None,
            &mut Cost::default(),
        ) else {
            panic!()
        };
        let ima = r.facts.clone().unwrap().ima.clone().unwrap();
        assert_eq!((ima.xattr, ima.digest), (vec![9, 9], None));
    }

    #[test]
    fn a_file_that_cannot_be_opened_still_reports_its_ima_xattr() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("libsecret.so");
        std::fs::write(&p, b"x").unwrap();
        if !set_ima(&p, &[4, 4, 1]) {
            eprintln!("security.ima cannot be set here: skipped");
            return;
        }
        let mut insp = Inspector::new(&Root::slash());
        let meta = insp.lstat(p.as_os_str().as_bytes()).unwrap();
        // What the inspector records when the open was refused (as root, a
        // mode cannot refuse it, so the refusal is taken as given).
        let Outcome::Record(r, None) = insp.record_meta(
            p.as_os_str().as_bytes(),
            b"/usr/lib/libsecret.so".to_vec(),
            &meta,
        ) else {
            panic!()
        };
        assert_eq!(r.unhashed, Some(Unhashed::Unreadable));
        let ima = r.facts.clone().unwrap().ima.clone().unwrap();
        assert_eq!((ima.xattr, ima.digest), (vec![4, 4, 1], None));
    }

    #[test]
    fn a_prior_record_without_the_facts_it_needs_is_not_reused() {
        let t = tempfile::tempdir().unwrap();
        let elf = crate::formats::elf::tests::build(true, false, crate::formats::elf::ET_DYN, &[]);
        for (name, data, needs) in [
            ("lib.so.1", &elf[..], true),
            ("mod.ko", &b"not even ELF"[..], true),
            ("notes.txt", &b"plain"[..], false),
        ] {
            let p = t.path().join(name);
            std::fs::write(&p, data).unwrap();
            let logical = format!("/usr/lib/{name}").into_bytes();
            let Outcome::Record(mut prior, None) = Inspector::new(&Root::slash()).inspect_as(
                &p,
                logical.clone(),
                None,
                None,
                &mut Cost::default(),
            ) else {
                panic!()
            };
            assert_eq!(prior.facts.is_some(), needs, "{name}");
            // With its facts (or needing none): reused, facts shared.
            let mut cost = Cost::default();
            let Outcome::Record(r, None) = Inspector::new(&Root::slash()).inspect_as(
                &p,
                logical.clone(),
                Some(FileType::File),
                Some(&prior),
                &mut cost,
            ) else {
                panic!()
            };
            assert!(!cost.hashed, "{name}");
            assert_eq!(r.facts, prior.facts);
            if let (Some(a), Some(b)) = (&r.facts, &prior.facts) {
                assert!(Arc::ptr_eq(a, b));
            }
            // As an older build wrote it: no facts. Read again if it needs them.
            prior.facts = None;
            for hint in [None, Some(FileType::File)] {
                let mut cost = Cost::default();
                let Outcome::Record(r, None) = Inspector::new(&Root::slash()).inspect_as(
                    &p,
                    logical.clone(),
                    hint,
                    Some(&prior),
                    &mut cost,
                ) else {
                    panic!()
                };
                assert_eq!(cost.hashed, needs, "{name}");
                assert_eq!(r.facts.is_some(), needs, "{name}");
            }
        }
    }

    #[test]
    fn every_provenance_candidate_carries_facts() {
        let classes = FileClass::ALL;
        for name in [
            "libc.so.6",
            "libc.so",
            "a.ko",
            "a.ko.zst",
            "x.dll",
            "ld.so.cache",
            "crt1.o",
        ] {
            for class in classes {
                let mut r = base_record(format!("/usr/lib/{name}").into_bytes(), &fstat_of_root());
                r.ftype = FileType::File;
                r.class = class;
                if crate::provenance::is_candidate(&r) {
                    assert!(wants_facts(&r.path, class), "{name} {class:?}");
                }
            }
        }
    }

    fn fstat_of_root() -> Stat {
        fstat(&File::open("/").unwrap()).unwrap()
    }
}
