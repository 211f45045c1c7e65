//! Inspecting one path on Windows: the same contract as the Unix
//! inspector (`inspect.rs`) — a regular file is opened once without
//! following a final reparse point, hashed from that handle with `read`,
//! and its metadata compared before and after; a file that changed while
//! being hashed is retried, then reported — built on std's portable file
//! API instead of `openat`/`fstatat`.
//!
//! One difference, on purpose: a prior digest is never reused from file
//! identity alone. Windows has no inode change time, and the last write
//! time can be set by anyone who can write the file, so size and write
//! time prove nothing; every `check` re-reads every file.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::{
    base_record, read_and_hash, seek_start, AlgoSet, ContentDigests, Cost, DigestPaths, Hashed,
    LargeGate, Outcome, Stat, RETRIES,
};
use crate::record::{FileType, Record, Unhashed};
use crate::rootfs::Root;
use crate::sys::OpenOptionsNoFollow;

/// Per-thread state reused across files.
pub struct Inspector {
    /// The root logical paths are below (host paths are derived from it:
    /// Windows has no `openat`, so lookups are by path, as before).
    root: Root,
    buf: Vec<u8>,
    /// Hash large files with rayon only while the gate is open (other
    /// cores would sit idle).
    pub parallel_large: Option<LargeGate>,
    /// Time the open+stat and hash phases into [`Cost`].
    pub timing: bool,
    /// Readahead hints: none on Windows (the flag is accepted and ignored).
    pub fadvise: bool,
    /// Also compute SHA-256 (config `hashes = ["sha256"]`).
    pub sha256: bool,
    /// Also compute the package digests these paths want (MD5, SHA-256,
    /// SHA-1...), kept in [`Inspector::digests`].
    pub digest_paths: Option<Arc<DigestPaths>>,
    /// The package digests computed, by BLAKE3, for files recorded with
    /// one (a file that changed while read leaves none).
    pub digests: ContentDigests,
}

impl Inspector {
    /// An inspector of paths below `root`.
    pub fn new(root: &Root) -> Inspector {
        Inspector {
            root: root.clone(),
            buf: Vec::new(),
            parallel_large: None,
            timing: false,
            fadvise: false,
            sha256: false,
            digest_paths: None,
            digests: ContentDigests::new(),
        }
    }

    /// Inspects `logical` (inside the root). `prior` is not used for
    /// digest reuse on Windows (see the module docs).
    pub fn inspect(
        &mut self,
        logical: Vec<u8>,
        _hint: Option<FileType>,
        _prior: Option<&Record>,
        cost: &mut Cost,
    ) -> Outcome {
        use crate::sys::OsStrExt;
        let host = self
            .root
            .host_path(Path::new(std::ffi::OsStr::from_bytes(&logical)));
        let host = host.as_path();
        let t = self.timing.then(Instant::now);
        let meta = self.lstat(host);
        if let Some(t) = t {
            cost.open_stat += t.elapsed();
        }
        match meta {
            Ok(m) if m.is_file() => self.hash_file(host, logical, cost),
            Ok(m) => record_meta(host, logical, &m),
            Err(e) => lstat_error(e),
        }
    }

    /// The metadata of `host` itself (a symlink or junction is not
    /// followed).
    pub fn lstat(&mut self, host: &Path) -> io::Result<Stat> {
        std::fs::symlink_metadata(host).map(|m| Stat::from(&m))
    }

    fn hash_file(&mut self, host: &Path, logical: Vec<u8>, cost: &mut Cost) -> Outcome {
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .no_follow()
            .open(host)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Outcome::Vanished,
            Err(e) => {
                return match std::fs::symlink_metadata(host) {
                    Ok(m) => {
                        let mut r = base_record(logical, &Stat::from(&m));
                        r.unhashed = Some(Unhashed::Unreadable);
                        Outcome::Record(r, Some(format!("cannot open: {e}")))
                    }
                    Err(e) => lstat_error(e),
                }
            }
        };
        let mut last_err = String::new();
        for _ in 0..RETRIES {
            let before = match file.metadata() {
                Ok(m) => Stat::from(&m),
                Err(e) => return Outcome::Failed(format!("metadata: {e}")),
            };
            if !before.is_file() {
                return record_meta(host, logical, &before);
            }
            let t = self.timing.then(Instant::now);
            let hashed = self.hash_handle(&file, before.size, cost, &logical);
            if let Some(t) = t {
                cost.hash += t.elapsed();
            }
            match hashed {
                Ok(Hashed {
                    digest,
                    sha256,
                    pkg,
                    class,
                    len: n,
                    facts,
                }) => {
                    let after = match file.metadata() {
                        Ok(m) => Stat::from(&m),
                        Err(e) => return Outcome::Failed(format!("metadata: {e}")),
                    };
                    if n == before.size && after.size == before.size && after.mtime == before.mtime
                    {
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
            if let Err(e) = seek_start(&file) {
                return Outcome::Failed(format!("seek: {e}"));
            }
        }
        let meta = match file.metadata() {
            Ok(m) => Stat::from(&m),
            Err(e) => return Outcome::Failed(format!("metadata: {e}")),
        };
        let mut rec = base_record(logical, &meta);
        rec.unhashed = Some(Unhashed::Unstable);
        Outcome::Record(
            rec,
            Some(format!("{last_err} ({RETRIES} tries); not verified")),
        )
    }

    fn hash_handle(
        &mut self,
        file: &File,
        size: u64,
        cost: &mut Cost,
        path: &[u8],
    ) -> io::Result<Hashed> {
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

/// No `security.ima` on Windows (IMA is Linux's): nothing to read.
pub(super) fn ima_xattr(_file: &File) -> Option<Vec<u8>> {
    None
}

fn record_meta(host: &Path, logical: Vec<u8>, meta: &Stat) -> Outcome {
    let mut r = base_record(logical, meta);
    match r.ftype {
        FileType::File => r.unhashed = Some(Unhashed::Unreadable),
        FileType::Symlink => match std::fs::read_link(host) {
            Ok(t) => r.target = Some(t.to_string_lossy().into_owned().into_bytes().into()),
            Err(e) => return Outcome::Record(r, Some(format!("cannot read link: {e}"))),
        },
        _ => {}
    }
    Outcome::Record(r, None)
}

fn lstat_error(e: io::Error) -> Outcome {
    if e.kind() == io::ErrorKind::NotFound {
        Outcome::Vanished
    } else {
        Outcome::Failed(format!("metadata: {e}"))
    }
}
