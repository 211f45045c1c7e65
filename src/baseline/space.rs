//! Free space where a generation is about to be written. sled reports a
//! full disk late (and, in 0.34, can then hang in its flush), so a write
//! that clearly cannot fit is refused before it starts.

use std::path::Path;

/// Bytes a generation of `payload` encoded bytes needs at the least: the
/// records once (sled's log holds each chunk once, plus headers) and the
/// fixed cost of a fresh database (its first segments, config and
/// snapshot). An underestimate on purpose: it refuses only writes that
/// clearly cannot fit; one that does not fit after all fails with ENOSPC
/// inside its own directory and leaves the live generation alone.
pub fn needed(payload: u64) -> u64 {
    payload + payload / 8 + (1 << 20)
}

/// Bytes available to this user on the file system holding `path`, if the
/// platform says.
pub fn available(path: &Path) -> Option<u64> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
        // SAFETY: statvfs fills the struct it is given; `c` is a valid C string.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
            return None;
        }
        #[allow(clippy::unnecessary_cast)]
        Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_covers_the_payload_and_a_fresh_database() {
        assert!(needed(0) >= 1 << 20);
        assert!(needed(10 << 20) > 10 << 20);
        let t = tempfile::tempdir().unwrap();
        #[cfg(unix)]
        assert!(available(t.path()).is_some());
    }
}
