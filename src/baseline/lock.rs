//! The writers' lock: an advisory lock (`flock`, `LockFileEx` on Windows)
//! on `<db>/lock`, held by `init` and `update` from before they read the
//! live generation until the new one is current. The kernel drops it when
//! the process ends however it ends, so a killed writer never leaves a
//! stale lock. Readers do not take it: they only open generations that are
//! complete, which no writer touches again.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fs2::FileExt;

use crate::error::{Error, Result};

/// The lock file's name inside the baseline directory.
pub const NAME: &str = "lock";

/// Held while it lives.
#[derive(Debug)]
pub struct WriterLock {
    _file: File,
}

/// Takes the lock of the baseline directory `db` (which must exist),
/// waiting up to `wait` for another writer to finish.
pub fn acquire(db: &Path, wait: Duration) -> Result<WriterLock> {
    let path: PathBuf = db.join(NAME);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied => Error::UnreadableBaseline {
                path: db.to_path_buf(),
                source: e,
            },
            _ => Error::io("lock baseline", &path, e),
        })?;
    let start = Instant::now();
    loop {
        match file.try_lock_exclusive() {
            Ok(()) => return Ok(WriterLock { _file: file }),
            Err(e) if e.kind() == fs2::lock_contended_error().kind() => {
                if start.elapsed() > wait {
                    return Err(Error::Locked {
                        path: db.to_path_buf(),
                    });
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(Error::io("lock baseline", &path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_told_the_baseline_is_locked_and_a_dropped_lock_frees_it() {
        let t = tempfile::tempdir().unwrap();
        let held = acquire(t.path(), Duration::from_millis(10)).unwrap();
        assert!(matches!(
            acquire(t.path(), Duration::from_millis(100)),
            Err(Error::Locked { .. })
        ));
        drop(held);
        assert!(acquire(t.path(), Duration::from_millis(10)).is_ok());
    }
}
