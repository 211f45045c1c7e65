//! The verdict on one opened file, decided only from the event's
//! descriptor: its identity (fstat), its first bytes and, when the
//! baseline's identity does not vouch for it, its BLAKE3 digest (pread).
//! The path is never opened again: what the opener gets is what was judged.
//!
//! The allowlist is the baseline: a path it knows with the same identity
//! (dev, inode, ctime, size) or the same digest is known; a path it does
//! not know is unknown; a path whose content differs differs. Digests are
//! cached per identity, so a library opened by every process is hashed once
//! until it changes (a write changes its ctime).

use std::collections::HashMap;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Mutex;

use crate::record::{FileClass, FileType, Record};

/// What the guard concluded about an opened file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not a regular ELF shared object: not the guard's business.
    NotLibrary,
    /// The baseline's own library at its own path.
    Known,
    /// An ELF shared object at a path the baseline does not know.
    Unknown,
    /// A path the baseline knows, with other content.
    Differs,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::NotLibrary => "not_library",
            Verdict::Known => "known",
            Verdict::Unknown => "unknown",
            Verdict::Differs => "differs",
        }
    }

    /// Whether enforcement refuses it.
    pub fn refusable(self) -> bool {
        matches!(self, Verdict::Unknown | Verdict::Differs)
    }
}

/// The identity the baseline's records carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    pub dev: u64,
    pub inode: u64,
    pub ctime: (i64, u32),
    pub size: u64,
}

impl Identity {
    fn of_record(r: &Record) -> Identity {
        Identity {
            dev: r.dev,
            inode: r.inode,
            ctime: r.ctime,
            size: r.size,
        }
    }
}

/// What the baseline says of one regular file.
struct Entry {
    identity: Identity,
    blake3: Option<[u8; 32]>,
}

/// Content facts per identity, so each version of a file is read once.
#[derive(Clone, Copy)]
struct Content {
    class: FileClass,
    digest: Option<[u8; 32]>,
}

/// The most identities remembered; past it the cache starts over (a bound
/// against a flood of distinct files, not a size anyone should reach).
const CACHE_MAX: usize = 65_536;
/// Read size for hashing.
const CHUNK: usize = 256 * 1024;
/// What is read of a file to tell a shared object from anything else
/// (`FileClass::sniff` wants the first 64 bytes).
const HEAD: usize = 64;

/// The baseline as an allowlist, plus the digest cache.
pub struct Allowlist {
    by_path: HashMap<Vec<u8>, Entry>,
    cache: Mutex<HashMap<Identity, Content>>,
}

/// A judged file: the verdict and how the guard got there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Judged {
    pub verdict: Verdict,
    /// The file was hashed for this verdict (no cache, no identity match).
    pub hashed: bool,
}

impl Allowlist {
    pub fn new(records: &[Record]) -> Allowlist {
        let by_path = records
            .iter()
            .filter(|r| r.ftype == FileType::File)
            .map(|r| {
                (
                    r.path.clone(),
                    Entry {
                        identity: Identity::of_record(r),
                        blake3: r.blake3,
                    },
                )
            })
            .collect();
        Allowlist {
            by_path,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Judges the file open at `fd`, known to the guard as `path` (logical),
    /// reading it if nothing cheaper decides.
    pub fn judge(&self, fd: BorrowedFd<'_>, path: &[u8]) -> std::io::Result<Judged> {
        let id = match self.decide(fd, path)? {
            Decided::Done(j) => return Ok(j),
            Decided::NeedsRead(id) => id,
        };
        let c = read_content(fd, id.size)?;
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(id, c);
        }
        Ok(Judged {
            verdict: self.verdict(path, c),
            hashed: true,
        })
    }

    /// The verdict if it needs no read of the file (not a regular file,
    /// the baseline's identity, a cached digest); `None` otherwise.
    pub fn judge_cached(&self, fd: BorrowedFd<'_>, path: &[u8]) -> std::io::Result<Option<Judged>> {
        Ok(match self.decide(fd, path)? {
            Decided::Done(j) => Some(j),
            Decided::NeedsRead(_) => None,
        })
    }

    fn decide(&self, fd: BorrowedFd<'_>, path: &[u8]) -> std::io::Result<Decided> {
        let st = fstat(fd)?;
        let done = |verdict| {
            Ok(Decided::Done(Judged {
                verdict,
                hashed: false,
            }))
        };
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return done(Verdict::NotLibrary);
        }
        let id = Identity {
            dev: st.st_dev,
            inode: st.st_ino,
            ctime: (st.st_ctime, st.st_ctime_nsec as u32),
            size: st.st_size as u64,
        };
        // The baseline's own file, untouched since it was hashed (a write
        // or a rename over it changes the ctime): known without a read,
        // as `check` trusts it.
        if let Some(e) = self.by_path.get(path) {
            if e.identity == id && e.blake3.is_some() {
                return done(Verdict::Known);
            }
        }
        match self.cache.lock().ok().and_then(|c| c.get(&id).copied()) {
            Some(c) => done(self.verdict(path, c)),
            None => Ok(Decided::NeedsRead(id)),
        }
    }

    fn verdict(&self, path: &[u8], content: Content) -> Verdict {
        if content.class != FileClass::ElfDyn {
            return Verdict::NotLibrary;
        }
        match self.by_path.get(path) {
            None => Verdict::Unknown,
            Some(e) if e.blake3.is_some() && e.blake3 == content.digest => Verdict::Known,
            Some(_) => Verdict::Differs,
        }
    }
}

enum Decided {
    Done(Judged),
    NeedsRead(Identity),
}

fn fstat(fd: BorrowedFd<'_>) -> std::io::Result<libc::stat> {
    // SAFETY: `st` is written by the kernel before it is read.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and a valid out pointer.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st)
}

/// Reads at `off` through the descriptor (never moving a shared offset:
/// the opener's file position is the opener's).
fn pread(fd: BorrowedFd<'_>, buf: &mut [u8], off: u64) -> std::io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for writes of its length.
        let r = unsafe {
            libc::pread(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                off as libc::off_t,
            )
        };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// The class from the first bytes and, for a shared object, the digest of
/// the whole file (read to its end, whatever `size` said: the buffer is
/// fixed, so a growing file costs time, not memory). Any other file costs
/// one read of [`HEAD`] bytes.
fn read_content(fd: BorrowedFd<'_>, size: u64) -> std::io::Result<Content> {
    let mut head = [0u8; HEAD];
    let n = pread(fd, &mut head, 0)?;
    let class = FileClass::sniff(&head[..n]);
    if class != FileClass::ElfDyn {
        return Ok(Content {
            class,
            digest: None,
        });
    }
    let mut buf = vec![0u8; CHUNK.min(size.max(HEAD as u64) as usize)];
    let mut h = blake3::Hasher::new();
    let mut off = 0u64;
    loop {
        let k = pread(fd, &mut buf, off)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        off += k as u64;
    }
    Ok(Content {
        class,
        digest: Some(*h.finalize().as_bytes()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RecordData;
    use std::os::fd::AsFd;

    fn elf(tail: &[u8]) -> Vec<u8> {
        let mut v = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x03\0".to_vec();
        v.extend_from_slice(tail);
        v
    }

    #[test]
    fn known_unknown_differs_and_not_a_library() {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("libx.so");
        std::fs::write(&lib, elf(b"one")).unwrap();
        let rec = Record::from(RecordData {
            path: b"/lib/libx.so".to_vec(),
            ftype: FileType::File,
            size: 21,
            mode: 0o100644,
            uid: 0,
            gid: 0,
            dev: 1,
            inode: 1,
            nlink: 1,
            mtime: (0, 0),
            ctime: (0, 0),
            blake3: Some(*blake3::hash(&elf(b"one")).as_bytes()),
            sha256: None,
            unhashed: None,
            target: None,
            class: FileClass::ElfDyn,
            facts: None,
        });
        let a = Allowlist::new(&[rec]);
        let f = std::fs::File::open(&lib).unwrap();
        let j = a.judge(f.as_fd(), b"/lib/libx.so").unwrap();
        assert_eq!(j.verdict, Verdict::Known);
        assert!(j.hashed, "the record's identity is not this file's");
        // Cached now: the same identity is not read again.
        let j = a.judge(f.as_fd(), b"/lib/libx.so").unwrap();
        assert_eq!((j.verdict, j.hashed), (Verdict::Known, false));
        assert_eq!(
            a.judge(f.as_fd(), b"/lib/liby.so").unwrap().verdict,
            Verdict::Unknown
        );
        std::fs::write(&lib, elf(b"two")).unwrap();
        let f = std::fs::File::open(&lib).unwrap();
        assert_eq!(
            a.judge(f.as_fd(), b"/lib/libx.so").unwrap().verdict,
            Verdict::Differs
        );
        let txt = dir.path().join("notes");
        std::fs::write(&txt, b"\x7fEL").unwrap();
        let f = std::fs::File::open(&txt).unwrap();
        assert_eq!(
            a.judge(f.as_fd(), b"/lib/notes").unwrap().verdict,
            Verdict::NotLibrary
        );
        let d = std::fs::File::open(dir.path()).unwrap();
        assert_eq!(
            a.judge(d.as_fd(), b"/lib").unwrap().verdict,
            Verdict::NotLibrary
        );
    }
}
