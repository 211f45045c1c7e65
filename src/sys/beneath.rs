//! Opening a path below a directory descriptor without ever leaving it:
//! no symlink is followed on the way (not even one inside the tree), no
//! `..` is accepted, and no absolute path. This is what keeps every read
//! under `--root` inside the root while the tree changes underneath: a
//! directory swapped for a symlink to `/etc` between two calls makes the
//! open fail instead of landing outside.
//!
//! Linux 5.6+ does it in one call, `openat2` with `RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`. Where the kernel (or a
//! seccomp filter of a container runtime) refuses `openat2`, the path is
//! walked one component at a time with `openat(dir, name, O_NOFOLLOW |
//! O_DIRECTORY)`, each step relative to the descriptor of the previous one.
//! Which of the two is used is decided once per process.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU8, Ordering};

/// `struct open_how` of `openat2(2)` (defined here: not every libc
/// version exports it).
#[cfg(target_os = "linux")]
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

#[cfg(target_os = "linux")]
const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
#[cfg(target_os = "linux")]
const RESOLVE_NO_SYMLINKS: u64 = 0x04;
#[cfg(target_os = "linux")]
const RESOLVE_BENEATH: u64 = 0x08;

const UNKNOWN: u8 = 0;
const OPENAT2: u8 = 1;
const WALK: u8 = 2;

/// Which implementation this process uses (detected on first use).
static MODE: AtomicU8 = AtomicU8::new(UNKNOWN);

/// Attempts of `openat2` that failed with `EAGAIN` (a rename elsewhere in
/// the tree during the lookup) before giving up.
const AGAIN: usize = 8;

/// Opens `rel` (a relative path, `/`-separated; empty means `dir` itself)
/// below `dir` with `flags` (`O_CLOEXEC` and `O_NOFOLLOW` are always
/// added). Fails with `ELOOP` when any component is a symlink (a final one
/// is opened as itself only with `O_PATH`, as `O_PATH | O_NOFOLLOW` does),
/// and with `EXDEV` for `..` or an absolute path.
pub fn open_beneath(dir: BorrowedFd<'_>, rel: &[u8], flags: libc::c_int) -> io::Result<OwnedFd> {
    if rel.starts_with(b"/") {
        return Err(io::Error::from_raw_os_error(libc::EXDEV));
    }
    let comps: Vec<&[u8]> = rel
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect();
    if comps.iter().any(|c| *c == b"..") {
        return Err(io::Error::from_raw_os_error(libc::EXDEV));
    }
    let flags = flags | libc::O_CLOEXEC | libc::O_NOFOLLOW;
    if mode() == OPENAT2 {
        return openat2(dir.as_raw_fd(), &comps, flags);
    }
    walk(dir.as_raw_fd(), &comps, flags)
}

fn mode() -> u8 {
    match MODE.load(Ordering::Relaxed) {
        UNKNOWN => {
            let m = detect();
            // A concurrent force_walk wins over detection.
            let _ = MODE.compare_exchange(UNKNOWN, m, Ordering::Relaxed, Ordering::Relaxed);
            MODE.load(Ordering::Relaxed)
        }
        m => m,
    }
}

/// Probes `openat2` on the working directory: a refusal of the call
/// itself (`ENOSYS` on old kernels, `EPERM` from seccomp filters, `E2BIG`
/// or `EINVAL` where the struct or a flag is unknown) selects the walk. A
/// probe, not the first real call, so that an `EPERM` of a real open
/// (`O_NOATIME` on another's file) is never taken for a missing syscall.
fn detect() -> u8 {
    #[cfg(target_os = "linux")]
    {
        let how = OpenHow {
            flags: (libc::O_PATH | libc::O_CLOEXEC | libc::O_DIRECTORY) as u64,
            mode: 0,
            resolve: RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
        };
        // SAFETY: a NUL-terminated path and a valid open_how of the size
        // passed; a returned fd is closed at once.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                libc::AT_FDCWD,
                c".".as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd >= 0 {
            // SAFETY: the probe's own fd.
            unsafe { libc::close(fd as RawFd) };
            return OPENAT2;
        }
    }
    WALK
}

#[cfg(target_os = "linux")]
fn openat2(dir: RawFd, comps: &[&[u8]], flags: libc::c_int) -> io::Result<OwnedFd> {
    let joined = if comps.is_empty() {
        b".".to_vec()
    } else {
        comps.join(&b'/')
    };
    let c = CString::new(joined).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let how = OpenHow {
        flags: flags as u64,
        mode: 0,
        resolve: RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    let mut tries = 0;
    loop {
        // SAFETY: c is NUL-terminated; how is a valid open_how of the size
        // passed; a returned fd is owned below.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir,
                c.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd >= 0 {
            // SAFETY: a fresh fd owned by nothing else.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
        }
        let e = io::Error::last_os_error();
        tries += 1;
        if e.raw_os_error() == Some(libc::EAGAIN) && tries < AGAIN {
            continue;
        }
        return Err(e);
    }
}

#[cfg(not(target_os = "linux"))]
fn openat2(dir: RawFd, comps: &[&[u8]], flags: libc::c_int) -> io::Result<OwnedFd> {
    walk(dir, comps, flags)
}

/// The fallback: one `openat` per component, each directory opened
/// `O_PATH | O_DIRECTORY | O_NOFOLLOW` relative to the previous one.
fn walk(dir: RawFd, comps: &[&[u8]], flags: libc::c_int) -> io::Result<OwnedFd> {
    let Some((last, middle)) = comps.split_last() else {
        return at(dir, b".", flags);
    };
    let mut cur: Option<OwnedFd> = None;
    for comp in middle {
        let from = cur.as_ref().map_or(dir, |f| f.as_raw_fd());
        let next = match at(
            from,
            comp,
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        ) {
            Ok(fd) => fd,
            // O_NOFOLLOW|O_DIRECTORY on a symlink says ENOTDIR; say ELOOP,
            // as openat2 does, so callers see one error for "a symlink".
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) && is_symlink_at(from, comp) => {
                return Err(io::Error::from_raw_os_error(libc::ELOOP));
            }
            Err(e) => return Err(e),
        };
        cur = Some(next);
    }
    let from = cur.as_ref().map_or(dir, |f| f.as_raw_fd());
    at(from, last, flags)
}

fn at(dir: RawFd, name: &[u8], flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: c is NUL-terminated; a returned fd is owned below.
    let fd = unsafe { libc::openat(dir, c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn is_symlink_at(dir: RawFd, name: &[u8]) -> bool {
    let Ok(c) = CString::new(name) else {
        return false;
    };
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: c is NUL-terminated; st is written by the kernel on success.
    let rc = unsafe { libc::fstatat(dir, c.as_ptr(), st.as_mut_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    // SAFETY: fstatat succeeded, so st is initialised.
    rc == 0 && unsafe { st.assume_init() }.st_mode & libc::S_IFMT == libc::S_IFLNK
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::fs::symlink;

    fn dir_fd(p: &std::path::Path) -> OwnedFd {
        std::fs::File::open(p).unwrap().into()
    }

    /// Every case, run through one implementation.
    fn cases(via: fn(RawFd, &[&[u8]], libc::c_int) -> io::Result<OwnedFd>) {
        let t = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("a/b")).unwrap();
        std::fs::write(t.path().join("a/b/f"), b"inside").unwrap();
        std::fs::write(out.path().join("f"), b"outside").unwrap();
        symlink(out.path(), t.path().join("a/abs")).unwrap();
        symlink("b", t.path().join("a/rel")).unwrap();
        symlink("b/f", t.path().join("a/flink")).unwrap();
        let root = dir_fd(t.path());
        let open = |rel: &str, flags| {
            let comps: Vec<&[u8]> = rel.split('/').map(|c| c.as_bytes()).collect();
            via(
                root.as_raw_fd(),
                &comps,
                flags | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            )
        };
        let read =
            |fd: OwnedFd| std::fs::read_to_string(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        // A plain path opens.
        let f = open("a/b/f", libc::O_RDONLY).unwrap();
        assert_eq!(read(f).unwrap(), "inside");
        // A symlink in a middle component: refused, even though the final
        // name is a regular file, relative link or absolute.
        for p in ["a/abs/f", "a/rel/f"] {
            let e = open(p, libc::O_RDONLY).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{p}: {e}");
        }
        // A final symlink is not followed.
        let e = open("a/flink", libc::O_RDONLY).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
        // ... but O_PATH opens the link itself.
        let l = open("a/flink", libc::O_PATH).unwrap();
        let meta = std::fs::File::from(l).metadata().unwrap();
        assert!(meta.file_type().is_symlink());
    }

    #[test]
    fn openat2_refuses_symlinks_and_opens_plain_paths() {
        if detect() != OPENAT2 {
            eprintln!("openat2 unavailable here: only the walk is tested");
            return;
        }
        cases(openat2);
    }

    #[test]
    fn the_walk_refuses_symlinks_and_opens_plain_paths() {
        cases(walk);
    }

    #[test]
    fn dotdot_and_absolute_paths_are_refused_before_any_lookup() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("a")).unwrap();
        let root = dir_fd(t.path());
        for p in ["..", "a/../..", "a/..", "/etc/passwd"] {
            let e = open_beneath(root.as_fd(), p.as_bytes(), libc::O_PATH).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EXDEV), "{p}");
        }
        // The directory itself, and `.` components, are fine.
        open_beneath(root.as_fd(), b"", libc::O_PATH | libc::O_DIRECTORY).unwrap();
        open_beneath(root.as_fd(), b"./a/.", libc::O_PATH | libc::O_DIRECTORY).unwrap();
    }
}
