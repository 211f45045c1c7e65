//! Files the operator names on the command line or in the config file
//! (`--config`, keys, `--against`): read with a bound and without
//! blocking, so `/dev/zero`, a FIFO or a multi-gigabyte file given by
//! mistake (or by a hostile wrapper) is a clear error, not a hang or an
//! exhausted memory. Symlinks are followed: these are the operator's own
//! paths, not paths inside a scanned tree.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// The largest config file read.
pub const CONFIG_CAP: u64 = 1 << 20;
/// The largest key file read (a key file is under 200 bytes).
pub const KEY_CAP: u64 = 64 << 10;
/// The largest manifest read by `check --against` (a few hundred bytes per
/// file; 512 MiB is over a million files).
pub const MANIFEST_CAP: u64 = 512 << 20;

/// Reads the regular file at `path`, at most `cap` bytes. A file that is
/// not regular (FIFO, device, directory) or larger than `cap` is an
/// `InvalidInput` error saying so.
pub fn read_bounded(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    let f = open_nonblocking(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    if meta.len() > cap {
        return Err(too_large(cap));
    }
    let mut out = Vec::with_capacity(meta.len() as usize);
    // The file may grow between fstat and read: read one byte past the cap
    // to tell a file that grew over it from one that fills it exactly.
    f.take(cap + 1).read_to_end(&mut out)?;
    if out.len() as u64 > cap {
        return Err(too_large(cap));
    }
    Ok(out)
}

/// Like [`read_bounded`], as UTF-8 text.
pub fn read_bounded_text(path: &Path, cap: u64) -> io::Result<String> {
    String::from_utf8(read_bounded(path, cap)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

fn too_large(cap: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("larger than {} bytes", cap),
    )
}

fn open_nonblocking(path: &Path) -> io::Result<File> {
    let mut o = std::fs::OpenOptions::new();
    o.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // O_NONBLOCK: opening a FIFO for reading waits for a writer.
        o.custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC);
    }
    o.open(path)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn devices_fifos_and_oversized_files_are_refused_without_blocking() {
        let t = tempfile::tempdir().unwrap();
        let fifo = t.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: c is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        for p in [fifo.as_path(), Path::new("/dev/zero"), t.path()] {
            let e = read_bounded(p, 1024).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{p:?}: {e}");
        }
        let big = t.path().join("big");
        std::fs::write(&big, vec![b'x'; 1025]).unwrap();
        assert!(read_bounded(&big, 1024).is_err());
        assert_eq!(read_bounded(&big, 1025).unwrap().len(), 1025);
    }
}
