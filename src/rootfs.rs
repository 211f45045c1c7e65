//! Resolving paths inside a root (`--root DIR`, or `/`). Every symlink is
//! followed by hand, absolute targets are re-rooted and `..` stops at the
//! root, so nothing an image contains can lead libwarden outside it.
//!
//! On Unix the root is also held open (one directory descriptor, opened
//! once), and every read below it goes through that descriptor with
//! [`crate::sys::beneath`]: no symlink is followed on the way, so a
//! directory swapped for a symlink to the outside while libwarden reads
//! makes the read fail instead of leaving the root. The logical paths these
//! operations take are canonical ([`Root::resolve`] makes them): a symlink
//! in one is refused, never followed. On Windows the same operations use
//! host paths, as before (no `openat` there).
//!
//! A root can also be a [`Tree`]: a filesystem held in memory (a container
//! image's merged layers, [`crate::image::View`]), answering the same
//! operations from what it holds. Every consumer of `Root` (provenance,
//! the audits) then judges an image with the code that judges a host,
//! without knowing which it reads. A tree has no descriptor: anything that
//! needs one (a lock probe, the walker) fails on it, as on a root that
//! could not be opened.

use crate::sys::OsStrExt;
use std::ffi::OsStr;
use std::io;
#[cfg(unix)]
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Symlinks followed while resolving one path before giving up (as Linux).
const MAX_LINKS: usize = 40;

/// The tree libwarden treats as `/`.
#[derive(Clone, Debug)]
pub struct Root {
    host: PathBuf,
    /// An in-memory tree that answers instead of the host directory.
    tree: Option<Arc<dyn Tree>>,
    /// The root directory, opened once (`O_PATH`); `None` only if even
    /// that failed, and then every confined operation fails.
    #[cfg(unix)]
    fd: Option<Arc<OwnedFd>>,
}

impl Root {
    /// `dir` must exist; it is canonicalised on the host once.
    pub fn new(dir: &Path) -> io::Result<Root> {
        let host = std::fs::canonicalize(dir)?;
        // `\\?\C:\x` (what canonicalize gives on Windows) takes no `/`
        // separators; `C:\x` names the same directory and does.
        #[cfg(windows)]
        let host = match host.to_str().and_then(|s| s.strip_prefix(r"\\?\")) {
            Some(s) if s.as_bytes().get(1) == Some(&b':') => PathBuf::from(s),
            _ => host,
        };
        if !host.is_dir() {
            #[cfg(unix)]
            return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
            #[cfg(not(unix))]
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "not a directory",
            ));
        }
        Ok(Root::at(host))
    }

    fn at(host: PathBuf) -> Root {
        Root {
            #[cfg(unix)]
            fd: open_dir(&host).ok().map(Arc::new),
            host,
            tree: None,
        }
    }

    /// A root answered by `tree`; `label` stands where a host directory
    /// would (the baseline's root key, messages). Never `/`.
    pub fn of_tree(label: &str, tree: Arc<dyn Tree>) -> Root {
        Root {
            host: PathBuf::from(label),
            tree: Some(tree),
            #[cfg(unix)]
            fd: None,
        }
    }

    /// The in-memory tree behind this root, if it is one.
    pub fn tree(&self) -> Option<&dyn Tree> {
        self.tree.as_deref()
    }

    /// The host's own `/`: on Windows, the system drive (`%SystemDrive%\`),
    /// so `/Windows/System32` is `C:\Windows\System32`.
    pub fn slash() -> Root {
        Root::at(slash_dir())
    }

    pub fn is_slash(&self) -> bool {
        self.tree.is_none() && self.host == slash_dir()
    }

    /// The host directory behind the root.
    pub fn host(&self) -> &Path {
        &self.host
    }

    /// Where a logical (inside-the-root) path lives on the host. Lexical:
    /// call [`Root::resolve`] first for anything that may hold symlinks.
    pub fn host_path(&self, logical: &Path) -> PathBuf {
        let rel = logical.strip_prefix("/").unwrap_or(logical);
        #[cfg(windows)]
        let rel = &PathBuf::from(rel.to_string_lossy().replace('/', "\\"));
        if rel.as_os_str().is_empty() {
            self.host.clone()
        } else {
            self.host.join(rel)
        }
    }

    /// The logical path of a host path below the root.
    pub fn logical(&self, host: &Path) -> Option<PathBuf> {
        let rel = host.strip_prefix(&self.host).ok()?;
        Some(Path::new("/").join(rel))
    }

    /// The logical path of a host path, as raw bytes (the record key).
    pub fn logical_bytes(&self, host: &Path) -> Vec<u8> {
        #[cfg(windows)]
        {
            // Record paths use `/` on every platform: `/Windows/System32/x`.
            let rel = host.strip_prefix(&self.host).unwrap_or(host);
            let mut out = b"/".to_vec();
            out.extend(rel.to_string_lossy().replace('\\', "/").into_bytes());
            return out;
        }
        #[allow(unreachable_code)]
        if self.is_slash() {
            return host.as_os_str().as_bytes().to_vec();
        }
        let b = host.as_os_str().as_bytes();
        let r = self.host.as_os_str().as_bytes();
        match b.strip_prefix(r) {
            Some([]) => b"/".to_vec(),
            Some(rest) if rest.starts_with(b"/") => rest.to_vec(),
            _ => b.to_vec(),
        }
    }

    /// Canonical logical path: every symlink resolved inside the root. Fails
    /// with the error of the first component that does not exist, or ELOOP.
    pub fn resolve(&self, logical: &Path) -> io::Result<PathBuf> {
        self.resolve_inner(logical, true)
    }

    /// Like [`Root::resolve`] but the last component is not followed (for
    /// recording a symlink itself).
    pub fn resolve_parent(&self, logical: &Path) -> io::Result<PathBuf> {
        self.resolve_inner(logical, false)
    }

    fn resolve_inner(&self, logical: &Path, follow_last: bool) -> io::Result<PathBuf> {
        let mut todo: Vec<Vec<u8>> = components(logical);
        todo.reverse();
        let mut done = PathBuf::from("/");
        let mut links = 0;
        while let Some(c) = todo.pop() {
            match c.as_slice() {
                b"." => continue,
                b".." => {
                    done.pop();
                    continue;
                }
                _ => {}
            }
            let mut candidate = done.clone();
            push(&mut candidate, OsStr::from_bytes(&c));
            // `done` holds no symlink: the confined lstat reaches
            // `candidate` without following one, even if the tree changes.
            let meta = self.lstat(&candidate)?;
            let last = todo.is_empty();
            if meta.file_type().is_symlink() && (follow_last || !last) {
                links += 1;
                if links > MAX_LINKS {
                    return Err(crate::sys::loop_error());
                }
                let target = self.read_link(&candidate)?;
                if target.is_absolute() {
                    done = PathBuf::from("/");
                }
                let mut more = components(&target);
                more.reverse();
                todo.extend(more);
            } else {
                done = candidate;
            }
        }
        Ok(done)
    }

    /// Like [`Root::resolve`], but a missing tail is appended lexically, so a
    /// path that does not exist yet still gets the canonical form it would
    /// have (`/lib64/x` → `/usr/lib64/x` on merged `/usr`).
    pub fn resolve_lenient(&self, logical: &Path) -> PathBuf {
        let mut head = normalize(logical);
        let mut tail: Vec<std::ffi::OsString> = Vec::new();
        loop {
            if let Ok(p) = self.resolve(&head) {
                let mut p = p;
                for c in tail.iter().rev() {
                    push(&mut p, c);
                }
                return p;
            }
            match (head.file_name().map(|s| s.to_os_string()), head.parent()) {
                (Some(name), Some(parent)) => {
                    tail.push(name);
                    head = parent.to_path_buf();
                }
                _ => return normalize(logical),
            }
        }
    }
}

impl Root {
    /// Reads a small regular file inside the root, at most `cap` bytes.
    /// Opened without blocking and without following a final symlink (the
    /// path is resolved first), so a FIFO or a device planted where a config
    /// file should be cannot hang or disturb the run.
    pub fn read_file(&self, logical: &Path, cap: u64) -> io::Result<Vec<u8>> {
        use std::io::Read;
        if let Some(t) = &self.tree {
            let p = self.resolve(logical)?;
            return t.read(rel_os(&p), cap);
        }
        let f = self.open_file(&self.resolve(logical)?)?;
        let meta = f.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        let mut out = Vec::with_capacity(meta.len().min(cap) as usize);
        f.take(cap).read_to_end(&mut out)?;
        Ok(out)
    }

    /// Expands an absolute glob pattern inside the root as glob(3) does:
    /// sorted, `*` and `?` never match a leading dot, symlinks on the way
    /// resolved inside the root. Returns logical paths in pattern form.
    pub fn glob(&self, pattern: &Path) -> Vec<PathBuf> {
        let mut current = vec![PathBuf::from("/")];
        for comp in components(pattern) {
            let text = String::from_utf8_lossy(&comp);
            let is_pattern = comp.iter().any(|b| matches!(b, b'*' | b'?' | b'['));
            let mut next = Vec::new();
            for base in &current {
                if !is_pattern {
                    next.push(base.join(OsStr::from_bytes(&comp)));
                    continue;
                }
                let Ok(matcher) = globset::GlobBuilder::new(&text)
                    .literal_separator(true)
                    .backslash_escape(true)
                    .build()
                    .map(|g| g.compile_matcher())
                else {
                    continue;
                };
                let Ok(dir) = self.resolve(base) else {
                    continue;
                };
                let Ok(rd) = self.list(&dir) else {
                    continue;
                };
                let mut names: Vec<_> = rd
                    .into_iter()
                    .filter(|n| {
                        (!n.as_bytes().starts_with(b".") || comp.starts_with(b"."))
                            && matcher.is_match(n)
                    })
                    .collect();
                names.sort();
                next.extend(names.into_iter().map(|n| base.join(n)));
            }
            current = next;
        }
        current.retain(|p| self.resolve(p).is_ok());
        current
    }
}

/// Confined operations on canonical logical paths (Unix: through the root
/// descriptor, never following a symlink; see the module docs).
#[cfg(unix)]
impl Root {
    /// The root directory's descriptor.
    pub fn fd(&self) -> io::Result<BorrowedFd<'_>> {
        self.fd
            .as_deref()
            .map(|f| f.as_fd())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))
    }

    /// A shared handle on the root descriptor (for inspectors that outlive
    /// a borrow).
    pub fn shared_fd(&self) -> Option<Arc<OwnedFd>> {
        self.fd.clone()
    }

    /// Opens `logical` below the root with `flags` (`O_NOFOLLOW` and
    /// `O_CLOEXEC` added): fails if any component is a symlink.
    pub fn open(&self, logical: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
        if self.tree.is_some() {
            return Err(no_descriptor());
        }
        crate::sys::beneath::open_beneath(self.fd()?, rel_bytes(logical), flags)
    }

    /// Opens a file for reading, without blocking on a FIFO.
    pub fn open_file(&self, logical: &Path) -> io::Result<std::fs::File> {
        self.open(logical, libc::O_RDONLY | libc::O_NONBLOCK)
            .map(std::fs::File::from)
    }

    /// Opens a directory (`O_PATH`: for `*at` calls, not for listing).
    pub fn open_dir(&self, logical: &Path) -> io::Result<OwnedFd> {
        self.open(logical, libc::O_PATH | libc::O_DIRECTORY)
    }

    /// The metadata of `logical` itself (a final symlink is not followed).
    pub fn lstat(&self, logical: &Path) -> io::Result<Meta> {
        if let Some(t) = &self.tree {
            return t.lstat(rel_os(logical));
        }
        std::fs::File::from(self.open(logical, libc::O_PATH)?)
            .metadata()
            .map(|m| Meta::of(&m))
    }

    /// The target of the symlink `logical` (`readlinkat` on the link
    /// itself, opened `O_PATH | O_NOFOLLOW`).
    pub fn read_link(&self, logical: &Path) -> io::Result<PathBuf> {
        if let Some(t) = &self.tree {
            return t.read_link(rel_os(logical));
        }
        let fd = self.open(logical, libc::O_PATH)?;
        readlink_fd(fd.as_raw_fd(), c"")
    }

    /// The names in directory `logical` (without `.` and `..`), read from
    /// a confined descriptor, unsorted.
    pub fn list(&self, logical: &Path) -> io::Result<Vec<std::ffi::OsString>> {
        if let Some(t) = &self.tree {
            return t.list(rel_os(logical));
        }
        let fd = self.open(logical, libc::O_RDONLY | libc::O_DIRECTORY)?;
        list_fd(fd)
    }
}

/// The same operations by host path (Windows has no `openat`; today's
/// behaviour, see the module docs).
#[cfg(not(unix))]
impl Root {
    pub fn open_file(&self, logical: &Path) -> io::Result<std::fs::File> {
        use crate::sys::OpenOptionsNoFollow;
        if self.tree.is_some() {
            return Err(no_descriptor());
        }
        std::fs::OpenOptions::new()
            .read(true)
            .no_follow()
            .open(self.host_path(logical))
    }

    pub fn lstat(&self, logical: &Path) -> io::Result<Meta> {
        if let Some(t) = &self.tree {
            return t.lstat(rel_os(logical));
        }
        std::fs::symlink_metadata(self.host_path(logical)).map(|m| Meta::of(&m))
    }

    pub fn read_link(&self, logical: &Path) -> io::Result<PathBuf> {
        if let Some(t) = &self.tree {
            return t.read_link(rel_os(logical));
        }
        std::fs::read_link(self.host_path(logical))
    }

    pub fn list(&self, logical: &Path) -> io::Result<Vec<std::ffi::OsString>> {
        if let Some(t) = &self.tree {
            return t.list(rel_os(logical));
        }
        std::fs::read_dir(self.host_path(logical))?
            .map(|e| e.map(|e| e.file_name()))
            .collect()
    }
}

impl Root {
    /// The metadata of what `logical` names, symlinks inside the root
    /// followed (the root's `stat`).
    pub fn stat(&self, logical: &Path) -> io::Result<Meta> {
        self.lstat(&self.resolve(logical)?)
    }

    /// Whether `logical` is a directory, symlinks inside the root followed.
    pub fn is_dir(&self, logical: &Path) -> bool {
        self.stat(logical).is_ok_and(|m| m.is_dir())
    }

    /// The entries of directory `logical` with their types (a symlink is
    /// a symlink: not followed), unsorted; an entry gone since the listing
    /// is left out.
    pub fn list_entries(&self, logical: &Path) -> io::Result<Vec<(std::ffi::OsString, FileKind)>> {
        let names = self.list(logical)?;
        Ok(names
            .into_iter()
            .filter_map(|n| {
                let mut p = logical.to_path_buf();
                push(&mut p, &n);
                let t = self.lstat(&p).ok()?.file_type();
                Some((n, t))
            })
            .collect())
    }

    /// The entries of directory `logical` with their types as the
    /// directory lists them (`d_type`; a symlink is a symlink), unsorted.
    /// On Linux one confined open and `getdents64`, an `fstatat` only
    /// where the filesystem gives no type: [`Root::list_entries`] looks
    /// every entry up again from the root (three calls each), which an
    /// executable dir of thousands of entries pays in full. An entry gone
    /// since the listing may still be listed.
    pub fn list_types(
        &self,
        logical: &Path,
    ) -> io::Result<Vec<(std::ffi::OsString, crate::record::FileType)>> {
        #[cfg(target_os = "linux")]
        {
            use crate::record::FileType;
            use crate::sys::dirwalk::{self, DirReader};
            use std::os::unix::ffi::OsStringExt;
            let fd = self.open(logical, libc::O_RDONLY | libc::O_DIRECTORY)?;
            let mut r = DirReader::new();
            let mut out = Vec::new();
            while let Some(e) = r.next(fd.as_fd())? {
                let t = match e.dtype {
                    dirwalk::DT_REG => FileType::File,
                    dirwalk::DT_DIR => FileType::Dir,
                    dirwalk::DT_LNK => FileType::Symlink,
                    dirwalk::DT_FIFO => FileType::Fifo,
                    dirwalk::DT_SOCK => FileType::Socket,
                    dirwalk::DT_CHR => FileType::CharDevice,
                    dirwalk::DT_BLK => FileType::BlockDevice,
                    _ => match dirwalk::lstat_at(fd.as_fd(), e.name) {
                        Ok(st) => FileType::from_mode(st.st_mode),
                        Err(_) => continue,
                    },
                };
                out.push((std::ffi::OsString::from_vec(e.bytes().to_vec()), t));
            }
            Ok(out)
        }
        #[cfg(not(target_os = "linux"))]
        {
            use crate::record::FileType;
            Ok(self
                .list_entries(logical)?
                .into_iter()
                .map(|(n, t)| {
                    let t = if t.is_symlink() {
                        FileType::Symlink
                    } else if t.is_dir() {
                        FileType::Dir
                    } else if t.is_file() {
                        FileType::File
                    } else {
                        FileType::Unknown
                    };
                    (n, t)
                })
                .collect())
        }
    }

    /// Whether anything (a dangling symlink too) is at `logical`.
    pub fn exists_nofollow(&self, logical: &Path) -> bool {
        self.lstat(logical).is_ok()
    }
}

/// What an in-memory tree answers (see the module docs). Paths are
/// canonical logical paths (`/usr/lib/x`), as the confined operations
/// take them: a symlink on the way is not followed ([`Root::resolve`]
/// follows them, through [`Tree::lstat`] and [`Tree::read_link`]).
pub trait Tree: Send + Sync + std::fmt::Debug {
    /// The metadata of the entry itself.
    fn lstat(&self, logical: &OsStr) -> io::Result<Meta>;
    /// A symlink's target.
    fn read_link(&self, logical: &OsStr) -> io::Result<PathBuf>;
    /// The names in a directory, unsorted.
    fn list(&self, logical: &OsStr) -> io::Result<Vec<std::ffi::OsString>>;
    /// A regular file's content, at most `cap` bytes; an error when the
    /// tree does not hold it (it keeps only what the judges read).
    fn read(&self, logical: &OsStr, cap: u64) -> io::Result<Vec<u8>>;
    /// The facts of a regular file's content, gathered when it was read.
    fn facts(&self, logical: &OsStr) -> Option<Arc<crate::facts::Facts>>;
    /// The digest (`md5`, `sha1`, `sha256`...) of a regular file's
    /// content, when the tree computed it (the package databases' own
    /// digests of the files they own).
    fn digest(&self, logical: &OsStr, algo: &str) -> Option<Vec<u8>>;
}

/// The error of an operation that needs a descriptor on a tree.
fn no_descriptor() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "an in-memory tree has no file descriptors",
    )
}

/// The logical path as a tree takes it.
fn rel_os(logical: &Path) -> &OsStr {
    logical.as_os_str()
}

/// What [`Root::lstat`] tells about an entry: the fields of `stat(2)`
/// libwarden reads, the same for a host file and an in-memory tree's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// Type and permission bits (`st_mode`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    pub mtime: i64,
    pub mtime_nsec: i64,
    pub ctime: i64,
    pub ctime_nsec: i64,
}

impl Meta {
    /// From a host file's metadata.
    pub fn of(m: &std::fs::Metadata) -> Meta {
        use crate::sys::MetadataExt;
        Meta {
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
            size: m.size(),
            dev: m.dev(),
            ino: m.ino(),
            nlink: m.nlink(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
            ctime: m.ctime(),
            ctime_nsec: m.ctime_nsec(),
        }
    }

    pub fn file_type(&self) -> FileKind {
        FileKind(self.mode & crate::sys::S_IFMT)
    }
    pub fn is_dir(&self) -> bool {
        self.file_type().is_dir()
    }
    pub fn is_file(&self) -> bool {
        self.file_type().is_file()
    }
    pub fn is_symlink(&self) -> bool {
        self.file_type().is_symlink()
    }
    pub fn len(&self) -> u64 {
        self.size
    }
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }
}

/// The type bits of an entry's mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileKind(pub u32);

impl FileKind {
    pub fn is_dir(&self) -> bool {
        self.0 == crate::sys::S_IFDIR
    }
    pub fn is_file(&self) -> bool {
        self.0 == crate::sys::S_IFREG
    }
    pub fn is_symlink(&self) -> bool {
        self.0 == crate::sys::S_IFLNK
    }
    pub fn is_fifo(&self) -> bool {
        self.0 == crate::sys::S_IFIFO
    }
    pub fn is_socket(&self) -> bool {
        self.0 == crate::sys::S_IFSOCK
    }
    pub fn is_block_device(&self) -> bool {
        self.0 == crate::sys::S_IFBLK
    }
    pub fn is_char_device(&self) -> bool {
        self.0 == crate::sys::S_IFCHR
    }
}

/// Metadata of a tree entry read through the platform's extension trait,
/// so code written against `std::fs::Metadata` reads both alike.
impl crate::sys::MetadataExt for Meta {
    fn dev(&self) -> u64 {
        self.dev
    }
    fn ino(&self) -> u64 {
        self.ino
    }
    fn mode(&self) -> u32 {
        self.mode
    }
    fn nlink(&self) -> u64 {
        self.nlink
    }
    fn uid(&self) -> u32 {
        self.uid
    }
    fn gid(&self) -> u32 {
        self.gid
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn mtime(&self) -> i64 {
        self.mtime
    }
    fn mtime_nsec(&self) -> i64 {
        self.mtime_nsec
    }
    fn ctime(&self) -> i64 {
        self.ctime
    }
    fn ctime_nsec(&self) -> i64 {
        self.ctime_nsec
    }
    #[cfg(unix)]
    fn rdev(&self) -> u64 {
        0
    }
    #[cfg(unix)]
    fn atime(&self) -> i64 {
        self.mtime
    }
    #[cfg(unix)]
    fn atime_nsec(&self) -> i64 {
        self.mtime_nsec
    }
    #[cfg(unix)]
    fn blksize(&self) -> u64 {
        4096
    }
    #[cfg(unix)]
    fn blocks(&self) -> u64 {
        self.size.div_ceil(512)
    }
}

/// A logical path as a path relative to the root.
#[cfg(unix)]
fn rel_bytes(logical: &Path) -> &[u8] {
    let b = logical.as_os_str().as_bytes();
    let mut i = 0;
    while b.get(i) == Some(&b'/') {
        i += 1;
    }
    &b[i..]
}

/// Opens the root directory itself (the operator named it: followed).
#[cfg(unix)]
fn open_dir(host: &Path) -> io::Result<OwnedFd> {
    let c = std::ffi::CString::new(host.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: c is NUL-terminated; the fd is owned below.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `readlinkat(dir, name)`, growing the buffer for long targets.
#[cfg(unix)]
pub fn readlink_fd(dir: std::os::fd::RawFd, name: &std::ffi::CStr) -> io::Result<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: name is NUL-terminated; buf is valid for buf.len() bytes.
        let n = unsafe { libc::readlinkat(dir, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        if n < buf.len() {
            buf.truncate(n);
            return Ok(PathBuf::from(std::ffi::OsString::from_vec(buf)));
        }
        if buf.len() >= 1 << 16 {
            return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
        }
        buf.resize(buf.len() * 4, 0);
    }
}

/// Lists a directory from its descriptor (`fdopendir`/`readdir`).
#[cfg(unix)]
fn list_fd(fd: OwnedFd) -> io::Result<Vec<std::ffi::OsString>> {
    use std::os::fd::IntoRawFd;
    use std::os::unix::ffi::OsStringExt;
    let raw = fd.into_raw_fd();
    // SAFETY: raw is an open directory fd; on success the DIR owns it.
    let dir = unsafe { libc::fdopendir(raw) };
    if dir.is_null() {
        let e = io::Error::last_os_error();
        // SAFETY: fdopendir failed, so raw is still ours to close.
        unsafe { libc::close(raw) };
        return Err(e);
    }
    let mut out = Vec::new();
    loop {
        // SAFETY: dir is a valid DIR*; errno is cleared to tell the end
        // from an error.
        let ent = unsafe {
            *libc::__errno_location() = 0;
            libc::readdir(dir)
        };
        if ent.is_null() {
            // SAFETY: reading errno right after readdir.
            let errno = unsafe { *libc::__errno_location() };
            // SAFETY: dir is valid and closed once.
            unsafe { libc::closedir(dir) };
            if errno != 0 {
                return Err(io::Error::from_raw_os_error(errno));
            }
            return Ok(out);
        }
        // SAFETY: d_name of a returned entry is NUL-terminated.
        let name = unsafe { std::ffi::CStr::from_ptr((*ent).d_name.as_ptr()) }.to_bytes();
        if name != b"." && name != b".." {
            out.push(std::ffi::OsString::from_vec(name.to_vec()));
        }
    }
}

impl crate::formats::ldconf::ConfSource for Root {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        // ld.so.conf files are tiny; a huge one is hostile or broken.
        self.read_file(path, 1 << 20)
    }
    fn glob(&self, pattern: &Path) -> Vec<PathBuf> {
        Root::glob(self, pattern)
    }
    fn identity(&self, path: &Path) -> PathBuf {
        self.resolve_lenient(path)
    }
}

/// Lexical normalisation: absolute, no `.`, `..` applied, never above `/`.
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => push(&mut out, n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Appends one component to a logical path. Logical paths use `/` on
/// every platform (on Windows `PathBuf::push` would add `\\`).
pub fn push(p: &mut PathBuf, name: &OsStr) {
    #[cfg(windows)]
    {
        let mut s = std::mem::take(p).into_os_string();
        if !s.as_encoded_bytes().ends_with(b"/") {
            s.push("/");
        }
        s.push(name);
        *p = PathBuf::from(s);
    }
    #[cfg(not(windows))]
    p.push(name);
}

/// The directory `/` stands for on the host.
fn slash_dir() -> PathBuf {
    #[cfg(windows)]
    {
        let drive = std::env::var("SystemDrive").unwrap_or_else(|_| "C:".into());
        return PathBuf::from(format!("{drive}\\"));
    }
    #[allow(unreachable_code)]
    PathBuf::from("/")
}

fn is_sep(b: u8) -> bool {
    b == b'/' || (cfg!(windows) && b == b'\\')
}

fn components(p: &Path) -> Vec<Vec<u8>> {
    p.as_os_str()
        .as_bytes()
        .split(|&b| is_sep(b))
        .filter(|c| !c.is_empty())
        .map(|c| c.to_vec())
        .collect()
}

/// The entry of `dir` named `name` in any letter case.
pub fn find_ci(root: &Root, dir: &Path, name: &str) -> Option<PathBuf> {
    let rd = root.list(&root.resolve(dir).ok()?).ok()?;
    let mut hits: Vec<_> = rd
        .into_iter()
        .filter(|n| n.as_bytes().eq_ignore_ascii_case(name.as_bytes()))
        .collect();
    hits.sort();
    hits.first().map(|n| {
        let mut p = dir.to_path_buf();
        push(&mut p, OsStr::new(n));
        p
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn list_types_gives_the_types_list_entries_gives_and_stays_inside() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path()).unwrap();
        std::fs::create_dir_all(t.path().join("bin/sub")).unwrap();
        std::fs::write(t.path().join("bin/tool"), b"x").unwrap();
        std::fs::write(t.path().join("bin/.hidden"), b"x").unwrap();
        symlink("tool", t.path().join("bin/link")).unwrap();
        symlink("/etc", t.path().join("bin/etc")).unwrap();
        let bin = Path::new("/bin");
        let mut typed = root.list_types(bin).unwrap();
        typed.sort_by(|a, b| a.0.cmp(&b.0));
        let mut plain: Vec<_> = root
            .list_entries(bin)
            .unwrap()
            .into_iter()
            .map(|(n, t)| {
                let t = if t.is_symlink() {
                    crate::record::FileType::Symlink
                } else if t.is_dir() {
                    crate::record::FileType::Dir
                } else {
                    crate::record::FileType::File
                };
                (n, t)
            })
            .collect();
        plain.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(typed, plain);
        assert_eq!(typed.len(), 5);
        // A directory reached through a symlink is not listed.
        symlink("bin", t.path().join("linked")).unwrap();
        assert!(root.list_types(Path::new("/linked")).is_err());
    }

    #[test]
    fn absolute_links_are_rerooted_and_dotdot_stops_at_root() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path()).unwrap();
        std::fs::create_dir_all(t.path().join("usr/lib")).unwrap();
        symlink("usr/lib", t.path().join("lib")).unwrap();
        symlink("/etc/passwd", t.path().join("usr/lib/abs")).unwrap();
        symlink("../../../../../../usr", t.path().join("usr/lib/up")).unwrap();
        assert_eq!(
            root.resolve(Path::new("/lib")).unwrap(),
            Path::new("/usr/lib")
        );
        // /etc/passwd does not exist inside the root: the host's is never used.
        assert!(root.resolve(Path::new("/lib/abs")).is_err());
        assert_eq!(
            root.resolve(Path::new("/lib/up/lib")).unwrap(),
            Path::new("/usr/lib")
        );
        assert_eq!(
            root.resolve_parent(Path::new("/lib/abs")).unwrap(),
            Path::new("/usr/lib/abs")
        );
        assert_eq!(
            root.resolve_lenient(Path::new("/lib/missing/x")),
            Path::new("/usr/lib/missing/x")
        );
    }

    #[test]
    fn a_confined_open_refuses_a_symlinked_parent_even_when_the_final_name_is_a_regular_file() {
        let t = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        std::fs::write(out.path().join("f"), b"outside").unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        std::fs::write(t.path().join("d/f"), b"inside").unwrap();
        symlink(out.path(), t.path().join("a")).unwrap();
        let root = Root::new(t.path()).unwrap();
        // The logical path names a regular file through a symlinked
        // directory: every confined operation refuses it.
        let a = Path::new("/a/f");
        let e = root.open_file(a).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
        assert!(root.lstat(a).is_err());
        assert!(root.list(Path::new("/a")).is_err());
        assert!(root.read_link(Path::new("/a/f")).is_err());
        // The link itself is inside, and can be read as a link.
        assert_eq!(root.read_link(Path::new("/a")).unwrap(), out.path());
        assert!(root
            .lstat(Path::new("/a"))
            .unwrap()
            .file_type()
            .is_symlink());
        // A real directory works.
        let mut s = String::new();
        use std::io::Read;
        root.open_file(Path::new("/d/f"))
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "inside");
        assert_eq!(root.list(Path::new("/d")).unwrap(), vec!["f"]);
        // read_file resolves inside the root: the absolute target is
        // re-rooted, where nothing is.
        assert!(root.read_file(a, 100).is_err());
    }

    #[test]
    fn symlink_loops_end_in_eloop() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path()).unwrap();
        symlink("b", t.path().join("a")).unwrap();
        symlink("a", t.path().join("b")).unwrap();
        let e = root.resolve(Path::new("/a")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
    }
}
