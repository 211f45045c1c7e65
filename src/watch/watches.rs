//! The set of inotify watches: one non-recursive watch per directory, added
//! by us (not by notify's recursive mode) so that we know exactly which
//! directories are watched, which are not, and why. A directory the kernel
//! refuses for lack of watches (ENOSPC, `fs.inotify.max_user_watches`) is
//! kept in `unwatched` and covered by short-interval checks instead.

use crate::sys::MetadataExt;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use notify::{RecursiveMode, Watcher};

/// Test hook: behave as if the kernel allowed only this many watches.
pub const ENV_TEST_MAX: &str = "LIBWARDEN_TEST_MAX_WATCHES";

/// What adding a watch did.
#[derive(Debug, PartialEq, Eq)]
pub enum Added {
    /// A new watch (a new directory, or a new one at an old path).
    New,
    /// This very directory was watched already.
    Already,
    /// Not there (any more), or not a directory.
    Gone,
    /// The watch limit is exhausted.
    Limit,
    Failed(String),
}

pub struct WatchSet<W: Watcher> {
    watcher: W,
    /// Watched directory (host path) and the (dev, inode) watched there.
    dirs: HashMap<PathBuf, (u64, u64)>,
    /// Directories that could not be watched for lack of watches.
    pub unwatched: BTreeSet<PathBuf>,
    test_max: Option<usize>,
}

impl<W: Watcher> WatchSet<W> {
    pub fn new(watcher: W) -> Self {
        WatchSet {
            watcher,
            dirs: HashMap::new(),
            unwatched: BTreeSet::new(),
            test_max: std::env::var(ENV_TEST_MAX)
                .ok()
                .and_then(|v| v.parse().ok()),
        }
    }

    pub fn len(&self) -> usize {
        self.dirs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }

    pub fn contains(&self, dir: &Path) -> bool {
        self.dirs.contains_key(dir)
    }

    pub fn watched(&self) -> impl Iterator<Item = &PathBuf> {
        self.dirs.keys()
    }

    /// Watches `dir` (never following a symlink: the caller passes real
    /// directories, and a symlink found here is refused).
    pub fn add(&mut self, dir: &Path) -> Added {
        let meta = match std::fs::symlink_metadata(dir) {
            Ok(m) if m.is_dir() => m,
            _ => return Added::Gone,
        };
        let id = (meta.dev(), meta.ino());
        if self.dirs.get(dir) == Some(&id) {
            return Added::Already;
        }
        if self.dirs.contains_key(dir) {
            // Another directory now lives at this path: start afresh.
            let _ = self.watcher.unwatch(dir);
            self.dirs.remove(dir);
        }
        if self.test_max.is_some_and(|max| self.dirs.len() >= max) {
            self.unwatched.insert(dir.to_path_buf());
            return Added::Limit;
        }
        match self.watcher.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                self.dirs.insert(dir.to_path_buf(), id);
                self.unwatched.remove(dir);
                Added::New
            }
            Err(e) => match e.kind {
                notify::ErrorKind::MaxFilesWatch => {
                    self.unwatched.insert(dir.to_path_buf());
                    Added::Limit
                }
                notify::ErrorKind::PathNotFound => Added::Gone,
                #[cfg(unix)]
                notify::ErrorKind::Io(ref io) if io.raw_os_error() == Some(libc::ENOSPC) => {
                    self.unwatched.insert(dir.to_path_buf());
                    Added::Limit
                }
                _ => Added::Failed(e.to_string()),
            },
        }
    }

    /// Stops watching `dir` (it left the monitored set, or is gone).
    pub fn remove(&mut self, dir: &Path) {
        if self.dirs.remove(dir).is_some() {
            let _ = self.watcher.unwatch(dir);
        }
        self.unwatched.remove(dir);
    }
}
