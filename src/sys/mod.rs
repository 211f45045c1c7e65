//! What differs between platforms, in one place. Shared code imports the
//! extension traits from here (`crate::sys::OsStrExt`, `MetadataExt`...)
//! instead of `std::os::unix`: on Unix they are std's own; on Windows
//! ([`windows`]) they are implemented from what std offers there, and the
//! Unix-only facts (owner, group, inode, ctime) get fixed values that
//! Windows code paths never rely on (see each method).

#[cfg(unix)]
pub use std::os::unix::ffi::OsStrExt;
#[cfg(unix)]
pub use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, PermissionsExt};

#[cfg(unix)]
pub mod beneath;
#[cfg(target_os = "linux")]
pub mod dirwalk;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;

/// File type bits of `st_mode`, the same numbers on every platform (the
/// record encoding stores them).
pub const S_IFMT: u32 = 0o170000;
pub const S_IFSOCK: u32 = 0o140000;
pub const S_IFLNK: u32 = 0o120000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFBLK: u32 = 0o060000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFCHR: u32 = 0o020000;
pub const S_IFIFO: u32 = 0o010000;

/// Opens without following a final symlink, without blocking on a FIFO
/// and without leaking the descriptor to children (Unix); without
/// following a final reparse point (Windows).
pub trait OpenOptionsNoFollow {
    fn no_follow(&mut self) -> &mut Self;
    /// Close on exec only (files libwarden writes).
    fn cloexec(&mut self) -> &mut Self;
    /// The permission bits of a file created (Unix; ignored on Windows,
    /// where the directory's inherited ACL applies).
    fn create_mode(&mut self, mode: u32) -> &mut Self;
}

#[cfg(unix)]
impl OpenOptionsNoFollow for std::fs::OpenOptions {
    fn no_follow(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
    }
    fn cloexec(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_CLOEXEC)
    }
    fn create_mode(&mut self, mode: u32) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(mode)
    }
}

/// True when an I/O error means "no such file" (or process).
pub fn is_not_found(e: &std::io::Error) -> bool {
    #[cfg(unix)]
    if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ESRCH)) {
        return true;
    }
    e.kind() == std::io::ErrorKind::NotFound
}

/// True when an I/O error is a symlink loop (or a final symlink refused).
pub fn is_loop(e: &std::io::Error) -> bool {
    #[cfg(unix)]
    if e.raw_os_error() == Some(libc::ELOOP) {
        return true;
    }
    #[cfg(windows)]
    if e.raw_os_error() == Some(windows::ERROR_CANT_RESOLVE_FILENAME) {
        return true;
    }
    false
}

/// The error of a symlink chain too long to follow.
pub fn loop_error() -> std::io::Error {
    #[cfg(unix)]
    return std::io::Error::from_raw_os_error(libc::ELOOP);
    #[cfg(windows)]
    return std::io::Error::from_raw_os_error(windows::ERROR_CANT_RESOLVE_FILENAME);
}

/// True when the process runs with full privileges: uid 0 on Unix; on
/// Windows, always false (elevation is not checked: the baseline location
/// is the same, `%ProgramData%`).
pub fn is_privileged() -> bool {
    #[cfg(unix)]
    // SAFETY: geteuid has no preconditions.
    return unsafe { libc::geteuid() } == 0;
    #[cfg(windows)]
    return false;
}

/// Fills `buf` from the operating system's random source: `getrandom` on
/// Linux, `RtlGenRandom` (`SystemFunction036`, advapi32) on Windows.
pub fn fill_random(buf: &mut [u8]) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let mut done = 0;
        while done < buf.len() {
            // SAFETY: getrandom writes at most the remaining length into buf.
            let n =
                unsafe { libc::getrandom(buf[done..].as_mut_ptr().cast(), buf.len() - done, 0) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            done += n as usize;
        }
        Ok(())
    }
    #[cfg(windows)]
    {
        for chunk in buf.chunks_mut(1 << 30) {
            // SAFETY: the pointer and length describe `chunk`.
            if unsafe { windows::rtl_gen_random(chunk.as_mut_ptr(), chunk.len() as u32) } == 0 {
                return Err(std::io::Error::other("RtlGenRandom failed"));
            }
        }
        Ok(())
    }
    #[cfg(not(any(target_os = "linux", windows)))]
    {
        use std::io::Read;
        std::fs::File::open("/dev/urandom")?.read_exact(buf)
    }
}

/// Keeps others out of a directory libwarden owns (the baseline): mode
/// 0700 on Unix. On Windows the directory keeps the ACL it inherits
/// (`%ProgramData%` lets Users create files in subfolders): restrict it
/// with `icacls` at install time (README: Windows).
pub fn restrict_dir(path: &std::path::Path) {
    #[cfg(unix)]
    {
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700));
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Makes a directory's entries durable (a rename or a new file in it).
pub fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    // Windows cannot open a directory as a file to flush it; NTFS journals
    // the rename itself.
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Hands the free memory inside the allocator's heaps back to the kernel.
/// After a phase that allocated much and freed most of it between what it
/// keeps (the store's pages and read buffers between the decoded baseline
/// records), glibc keeps the freed pages resident: they count towards the
/// run's peak until reused. Nothing else happens; a no-op elsewhere.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the heaps to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(target_os = "linux")]
pub mod fanotify;

/// This host's name (printable ASCII, or `-`): the syslog HOSTNAME
/// field, the JSON `host`.
#[cfg(not(unix))]
pub fn hostname() -> String {
    let name: String = std::env::var("COMPUTERNAME")
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .collect();
    if name.is_empty() {
        "-".into()
    } else {
        name
    }
}

/// This host's name (printable ASCII, or `-`): the syslog HOSTNAME
/// field, the JSON `host`.
#[cfg(unix)]
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let name: String = if r == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        buf[..end]
            .iter()
            .filter(|b| b.is_ascii_graphic())
            .map(|&b| b as char)
            .collect()
    } else {
        String::new()
    };
    if name.is_empty() {
        "-".into()
    } else {
        name
    }
}
