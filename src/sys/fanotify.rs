//! fanotify (Linux): a notification group with permission events for
//! opens, its marks, reading its events and answering them.
//!
//! The kernel holds every opener of a marked object until the group
//! answers its permission event. When the group's last descriptor closes
//! (the process exits, or is killed with SIGKILL), the kernel answers every
//! pending and future event of the group with allow: a guard that dies can
//! never leave the host refusing opens (`fsnotify_destroy_group` ->
//! `fanotify_release`, which sets each queued permission event to
//! `FAN_ALLOW`; `tests/integration/guard.rs` kills one mid-run).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// What the group asks of the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The directory's own entries (an inode mark with `FAN_EVENT_ON_CHILD`).
    Dir,
    /// The mount the path is on.
    Mount,
    /// The whole file system the path is on, through every mount of it.
    Filesystem,
}

/// One event read from the group.
#[derive(Debug)]
pub struct Event {
    pub mask: u64,
    /// The opener's thread group id.
    pub pid: i32,
    /// The opened file, as a new descriptor of the group's (read-only).
    /// `None` for an overflow event.
    pub fd: Option<OwnedFd>,
}

impl Event {
    /// A permission event: it must be answered.
    pub fn needs_answer(&self) -> bool {
        self.mask & (libc::FAN_OPEN_PERM | libc::FAN_OPEN_EXEC_PERM | libc::FAN_ACCESS_PERM) != 0
    }

    pub fn is_overflow(&self) -> bool {
        self.mask & libc::FAN_Q_OVERFLOW != 0
    }
}

/// A fanotify group.
pub struct Group {
    fd: OwnedFd,
}

/// The size of one event's fixed part.
const META: usize = std::mem::size_of::<libc::fanotify_event_metadata>();

impl Group {
    /// A group for permission events (`FAN_CLASS_CONTENT`) whose event
    /// descriptors are opened read-only and close-on-exec. Not `O_NOATIME`:
    /// without `CAP_FOWNER` that open fails for files of other owners, and
    /// the kernel answers deny for an event whose descriptor it could not
    /// open (`fanotify_read`), as it does when the process is out of
    /// descriptors ([`raise_fd_limit`]).
    pub fn new() -> io::Result<Group> {
        // SAFETY: plain system call; the result is checked.
        let fd = unsafe {
            libc::fanotify_init(
                libc::FAN_CLASS_CONTENT | libc::FAN_CLOEXEC,
                (libc::O_RDONLY | libc::O_LARGEFILE | libc::O_CLOEXEC) as u32,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor that nothing else owns.
        Ok(Group {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Asks for open permission events on `dir` (an open descriptor of a
    /// directory, `O_PATH` allowed) or the mount or file system it is on.
    pub fn mark(&self, dir: RawFd, scope: Scope) -> io::Result<()> {
        let (flags, mask) = match scope {
            Scope::Dir => (
                libc::FAN_MARK_ADD,
                libc::FAN_OPEN_PERM | libc::FAN_EVENT_ON_CHILD,
            ),
            Scope::Mount => (
                libc::FAN_MARK_ADD | libc::FAN_MARK_MOUNT,
                libc::FAN_OPEN_PERM,
            ),
            Scope::Filesystem => (
                libc::FAN_MARK_ADD | libc::FAN_MARK_FILESYSTEM,
                libc::FAN_OPEN_PERM,
            ),
        };
        // "." relative to `dir`: the directory itself. (A null path would
        // need a descriptor that is not `O_PATH`.)
        // SAFETY: a valid NUL-terminated path and descriptors.
        let r =
            unsafe { libc::fanotify_mark(self.fd.as_raw_fd(), flags, mask, dir, c".".as_ptr()) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Blocks until events are available; reads what fits in `buf` and
    /// parses it. A malformed record ends the batch (its descriptor, if
    /// any, is taken so that it is closed; with no descriptor to answer
    /// there is nothing the kernel waits for).
    pub fn read(&self, buf: &mut [u8]) -> io::Result<Vec<Event>> {
        let n = loop {
            // SAFETY: `buf` is valid for `buf.len()` bytes.
            let r = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if r >= 0 {
                break r as usize;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        };
        Ok(parse(&buf[..n.min(buf.len())]))
    }

    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Answers a permission event.
    pub fn answer(&self, event_fd: RawFd, allow: bool) -> io::Result<()> {
        let resp = libc::fanotify_response {
            fd: event_fd,
            response: if allow {
                libc::FAN_ALLOW
            } else {
                libc::FAN_DENY
            },
        };
        let len = std::mem::size_of::<libc::fanotify_response>();
        // SAFETY: `resp` is a valid response of `len` bytes.
        let r = unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                (&resp as *const libc::fanotify_response).cast(),
                len,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Raises the soft limit on open descriptors to the hard one and returns
/// it. Every event read holds a descriptor until it is answered, and the
/// kernel refuses (denies) the open behind an event it cannot give us a
/// descriptor for: the queue of events in flight must stay well below it.
pub fn raise_fd_limit() -> u64 {
    // SAFETY: `lim` is written by getrlimit before it is read.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to an rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    if lim.rlim_cur < lim.rlim_max {
        let want = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: valid pointer to an rlimit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    lim.rlim_cur as u64
}

/// Parses a buffer of event records. Each record's length comes from the
/// kernel, but is checked anyway: shorter than the fixed part, longer than
/// what is left, or of another version ends the parse.
pub fn parse(buf: &[u8]) -> Vec<Event> {
    let mut out = Vec::new();
    let mut off = 0;
    while buf.len() - off >= META {
        // SAFETY: META bytes are in bounds; read_unaligned needs no
        // alignment and the struct is plain integers.
        let m: libc::fanotify_event_metadata =
            unsafe { std::ptr::read_unaligned(buf[off..].as_ptr().cast()) };
        let len = m.event_len as usize;
        let fd = (m.fd >= 0).then(|| {
            // SAFETY: the kernel installed this descriptor for us; we own it.
            unsafe { OwnedFd::from_raw_fd(m.fd) }
        });
        if m.vers != libc::FANOTIFY_METADATA_VERSION || len < META || len > buf.len() - off {
            // Kept, so that its descriptor is answered and closed; what
            // follows cannot be framed.
            out.push(Event {
                mask: m.mask,
                pid: m.pid,
                fd,
            });
            break;
        }
        out.push(Event {
            mask: m.mask,
            pid: m.pid,
            fd,
        });
        off += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(mask: u64, fd: i32, pid: i32, len: u32) -> Vec<u8> {
        let m = libc::fanotify_event_metadata {
            event_len: len,
            vers: libc::FANOTIFY_METADATA_VERSION,
            reserved: 0,
            metadata_len: META as u16,
            mask,
            fd,
            pid,
        };
        // SAFETY: plain integers, viewed as bytes.
        unsafe { std::slice::from_raw_parts(&m as *const _ as *const u8, META) }.to_vec()
    }

    #[test]
    fn parses_records_and_stops_at_a_bad_length() {
        let mut buf = record(libc::FAN_Q_OVERFLOW, -1, 7, META as u32);
        buf.extend(record(libc::FAN_Q_OVERFLOW, -1, 8, 4));
        buf.extend(record(libc::FAN_Q_OVERFLOW, -1, 9, META as u32));
        let ev = parse(&buf);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].pid, 7);
        assert!(ev[0].is_overflow() && ev[0].fd.is_none());
        // A truncated tail and garbage parse to nothing, without a panic.
        assert!(parse(&buf[..META - 1]).is_empty());
        let _ = parse(&[0xff; 100]);
    }
}
