//! Inspecting one path: the only place libwarden reads a monitored file.
//! A regular file is opened once (`O_NOFOLLOW|O_NONBLOCK|O_NOATIME`),
//! `fstat`ed, hashed from the same descriptor with `read` (never mmap: a
//! truncation mid-hash would be SIGBUS) and `fstat`ed again; a file that
//! changed while being hashed is retried, then reported. FIFOs, sockets and
//! devices are recorded from `lstat` and never opened.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::record::{FileClass, FileType, Record, Unhashed};

/// How often a file that keeps changing is re-read before giving up.
const RETRIES: usize = 3;
/// Read size for large files: big enough for BLAKE3's SIMD, small enough to
/// keep per-thread memory flat whatever the file size.
pub const CHUNK: usize = 1 << 20;
/// Files at least this large may use BLAKE3's multi-threaded mode.
pub const LARGE: u64 = 8 << 20;

/// Per-thread state reused across files: no allocation per file beyond the
/// record itself.
pub struct Inspector {
    buf: Vec<u8>,
    noatime: bool,
    /// Hash large files with rayon (set when other cores would sit idle).
    pub parallel_large: bool,
}

impl Default for Inspector {
    fn default() -> Self {
        Inspector {
            buf: Vec::new(),
            noatime: true,
            parallel_large: false,
        }
    }
}

/// What inspecting a path gave.
pub enum Outcome {
    /// The path's record; a warning may come with it (unreadable, unstable).
    Record(Record, Option<String>),
    /// It was gone by the time it was opened (deleted during the scan).
    Vanished,
    /// Not even `lstat` worked.
    Failed(String),
}

/// Bytes read by one inspection (for throughput figures).
#[derive(Clone, Copy, Debug, Default)]
pub struct Cost {
    pub hashed_bytes: u64,
    pub hashed: bool,
}

impl Inspector {
    /// Inspects `host` (a path on the host) and records it under `logical`.
    /// `hint` is the type from the directory entry, when known. With
    /// `prior`, a regular file whose identity (dev, inode, size, mtime,
    /// ctime) is unchanged keeps its old digest without being read.
    pub fn inspect(
        &mut self,
        host: &Path,
        logical: Vec<u8>,
        hint: Option<FileType>,
        prior: Option<&Record>,
        cost: &mut Cost,
    ) -> Outcome {
        match hint {
            Some(FileType::File) => {}
            Some(_) => return self.record_lstat(host, logical),
            None => {
                // Type unknown: one lstat decides, and serves the
                // incremental check as well.
                let meta = match std::fs::symlink_metadata(host) {
                    Ok(m) => m,
                    Err(e) => return lstat_error(e),
                };
                if !meta.file_type().is_file() {
                    return self.record_meta(host, logical, &meta);
                }
                if let Some(p) = prior.filter(|p| p.blake3.is_some()) {
                    let now = base_record(logical.clone(), &meta);
                    if now.same_identity(p) {
                        return Outcome::Record(reuse(now, p), None);
                    }
                }
                return self.hash_file(host, logical, cost);
            }
        }
        if let Some(p) = prior.filter(|p| p.blake3.is_some()) {
            match std::fs::symlink_metadata(host) {
                Ok(meta) => {
                    let now = base_record(logical.clone(), &meta);
                    if now.same_identity(p) {
                        return Outcome::Record(reuse(now, p), None);
                    }
                    if !meta.file_type().is_file() {
                        return self.record_meta(host, logical, &meta);
                    }
                }
                Err(e) => return lstat_error(e),
            }
        }
        self.hash_file(host, logical, cost)
    }

    fn record_lstat(&mut self, host: &Path, logical: Vec<u8>) -> Outcome {
        match std::fs::symlink_metadata(host) {
            Ok(meta) => self.record_meta(host, logical, &meta),
            Err(e) => lstat_error(e),
        }
    }

    /// A record from metadata alone (anything but a regular file, or a file
    /// that could not be opened).
    fn record_meta(&mut self, host: &Path, logical: Vec<u8>, meta: &Metadata) -> Outcome {
        let mut r = base_record(logical, meta);
        match r.ftype {
            FileType::File => {
                // Reached only when the file could not be opened.
                r.unhashed = Some(Unhashed::Unreadable);
            }
            FileType::Symlink => match std::fs::read_link(host) {
                Ok(t) => {
                    use std::os::unix::ffi::OsStrExt;
                    r.target = Some(t.as_os_str().as_bytes().to_vec());
                }
                Err(e) => {
                    return Outcome::Record(r, Some(format!("cannot read link: {e}")));
                }
            },
            _ => {}
        }
        Outcome::Record(r, None)
    }

    fn open(&mut self, host: &Path) -> io::Result<File> {
        let base = libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
        if self.noatime {
            match std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(base | libc::O_NOATIME)
                .open(host)
            {
                // O_NOATIME is only allowed on one's own files (or as root).
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => self.noatime = false,
                other => return other,
            }
        }
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(base)
            .open(host)
    }

    fn hash_file(&mut self, host: &Path, logical: Vec<u8>, cost: &mut Cost) -> Outcome {
        let file = match self.open(host) {
            Ok(f) => f,
            Err(e) => {
                return match e.raw_os_error() {
                    Some(libc::ENOENT) | Some(libc::ENOTDIR) => Outcome::Vanished,
                    // Replaced by a symlink, FIFO, socket (ENXIO) or device
                    // since the directory was read: record what is there now.
                    Some(libc::ELOOP) | Some(libc::ENXIO) | Some(libc::ENODEV) => {
                        self.record_lstat(host, logical)
                    }
                    _ => match self.record_lstat(host, logical) {
                        Outcome::Record(r, _) => {
                            Outcome::Record(r, Some(format!("cannot open: {e}")))
                        }
                        other => other,
                    },
                };
            }
        };
        let mut last_err = String::new();
        for _ in 0..RETRIES {
            let before = match file.metadata() {
                Ok(m) => m,
                Err(e) => return Outcome::Failed(format!("fstat: {e}")),
            };
            if !before.file_type().is_file() {
                // A FIFO or device swapped in: record it, never read it.
                return self.record_meta(host, logical, &before);
            }
            let mut rec = base_record(logical.clone(), &before);
            match self.hash_fd(&file, before.len(), cost) {
                Ok((hash, class, n)) => {
                    let after = match file.metadata() {
                        Ok(m) => m,
                        Err(e) => return Outcome::Failed(format!("fstat: {e}")),
                    };
                    let stable = n == before.len()
                        && after.len() == before.len()
                        && after.mtime() == before.mtime()
                        && after.mtime_nsec() == before.mtime_nsec()
                        && after.ctime() == before.ctime()
                        && after.ctime_nsec() == before.ctime_nsec();
                    if stable {
                        rec.blake3 = Some(hash);
                        rec.class = class;
                        return Outcome::Record(rec, None);
                    }
                    last_err = "changed while it was being hashed".into();
                }
                Err(e) => {
                    rec.unhashed = Some(Unhashed::Unreadable);
                    return Outcome::Record(rec, Some(format!("read error: {e}")));
                }
            }
            // Rewind for the next try: pread-style reads from offset 0.
            if let Err(e) = seek_start(&file) {
                return Outcome::Failed(format!("seek: {e}"));
            }
        }
        let meta = match file.metadata() {
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

    /// Reads the whole file from its descriptor into BLAKE3. Returns the
    /// digest, the class sniffed from the first read, and the bytes read.
    fn hash_fd(
        &mut self,
        mut file: &File,
        size: u64,
        cost: &mut Cost,
    ) -> io::Result<([u8; 32], FileClass, u64)> {
        // One read sized to the file (plus one byte, to see growth) for
        // anything that fits a chunk; chunked reads beyond.
        let want = (size as usize).saturating_add(1).clamp(4096, CHUNK);
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        let mut hasher = blake3::Hasher::new();
        let mut total: u64 = 0;
        let mut class = FileClass::Other;
        let parallel = self.parallel_large && size >= LARGE;
        loop {
            let n = match file.read(&mut self.buf[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if total == 0 {
                class = FileClass::sniff(&self.buf[..n]);
            }
            if parallel {
                hasher.update_rayon(&self.buf[..n]);
            } else {
                hasher.update(&self.buf[..n]);
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
}

fn seek_start(mut file: &File) -> io::Result<()> {
    use std::io::Seek;
    file.seek(io::SeekFrom::Start(0)).map(|_| ())
}

fn lstat_error(e: io::Error) -> Outcome {
    match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => Outcome::Vanished,
        _ => Outcome::Failed(format!("lstat: {e}")),
    }
}

/// The metadata part of a record.
pub fn base_record(path: Vec<u8>, m: &Metadata) -> Record {
    let ftype = FileType::from_mode(m.mode());
    Record {
        path,
        ftype,
        size: m.size(),
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
        dev: m.dev(),
        inode: m.ino(),
        nlink: m.nlink(),
        mtime: (m.mtime(), m.mtime_nsec() as u32),
        ctime: (m.ctime(), m.ctime_nsec() as u32),
        blake3: None,
        unhashed: if ftype == FileType::File {
            None
        } else {
            Some(Unhashed::NotRegular)
        },
        target: None,
        class: FileClass::None,
    }
}

/// Today's metadata with the prior digest and class (identity unchanged).
fn reuse(mut now: Record, prior: &Record) -> Record {
    now.blake3 = prior.blake3;
    now.class = prior.class;
    now.unhashed = None;
    now
}

/// Convenience for single paths (tracked files, the watcher).
pub fn inspect_path(host: &Path, logical: Vec<u8>, prior: Option<&Record>) -> Outcome {
    Inspector::default().inspect(host, logical, None, prior, &mut Cost::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn run(path: &Path, hint: Option<FileType>) -> Outcome {
        Inspector::default().inspect(path, b"/x".to_vec(), hint, None, &mut Cost::default())
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
        let out = Inspector::default().inspect(
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
}
