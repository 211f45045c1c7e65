//! Inspecting one path: the only place libwarden reads a monitored file.
//! What a path's inspection gives (a [`Stat`], an [`Outcome`], its
//! [`Cost`]) is the same everywhere; how a file is opened and read is not,
//! so each platform has its own [`Inspector`] with the same API: `unix`
//! (fd-relative `openat`/`fstatat`, `O_NOFOLLOW|O_NONBLOCK|O_NOATIME`) and
//! `windows` (std's portable calls, no digest reuse from file identity).

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::record::{FileClass, FileType, Record, Unhashed};
use crate::sys::MetadataExt;

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;

/// How often a file that keeps changing is re-read before giving up.
const RETRIES: usize = 3;
/// Read size for large files: big enough for BLAKE3's SIMD, small enough to
/// keep per-thread memory flat whatever the file size.
pub const CHUNK: usize = 1 << 20;
/// Files at least this large may use BLAKE3's multi-threaded mode.
pub const LARGE: u64 = 8 << 20;

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
    Record {
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
        unhashed: if ftype == FileType::File {
            None
        } else {
            Some(Unhashed::NotRegular)
        },
        target: None,
        class: FileClass::None,
        facts: None,
    }
}

/// Reads a whole open file into BLAKE3 through `buf` (reused per thread).
/// Returns the digest, the class sniffed from the first read, and the
/// bytes read. Files of at least [`LARGE`] bytes use BLAKE3's
/// multi-threaded mode while fewer than `parallel.1` inspections are
/// running (counted in `parallel.0`), i.e. only when cores would idle.
fn read_and_hash(
    mut file: &File,
    buf: &mut Vec<u8>,
    size: u64,
    parallel: Option<&(Arc<AtomicUsize>, usize)>,
    cost: &mut Cost,
) -> io::Result<([u8; 32], FileClass, u64)> {
    // One read sized to the file (plus one byte, to see growth) for
    // anything that fits a chunk; chunked reads beyond.
    let want = (size as usize).saturating_add(1).clamp(4096, CHUNK);
    if buf.len() < want {
        buf.resize(want, 0);
    }
    let mut hasher = blake3::Hasher::new();
    let mut total: u64 = 0;
    let mut class = FileClass::Other;
    let parallel = parallel.filter(|_| size >= LARGE);
    loop {
        let n = match file.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if total == 0 {
            class = FileClass::sniff(&buf[..n]);
        }
        if parallel.is_some_and(|(busy, cores)| busy.load(Ordering::Relaxed) < *cores) {
            hasher.update_rayon(&buf[..n]);
        } else {
            hasher.update(&buf[..n]);
        }
        total += n as u64;
        // A short read of a regular file sized under one chunk is EOF.
        if want < CHUNK && total == size && n < want {
            break;
        }
    }
    cost.hashed_bytes += total;
    cost.hashed = true;
    Ok((*hasher.finalize().as_bytes(), class, total))
}

/// Rewinds a file for another hashing pass.
fn seek_start(mut file: &File) -> io::Result<()> {
    use std::io::Seek;
    file.seek(io::SeekFrom::Start(0)).map(|_| ())
}

/// Convenience for single paths (tracked files, the watcher).
pub fn inspect_path(host: &Path, logical: Vec<u8>, prior: Option<&Record>) -> Outcome {
    Inspector::default().inspect(host, logical, None, prior, &mut Cost::default())
}
