//! Priorities for the journal. Under systemd, stdout and stderr are often
//! streams to journald (systemd.exec(5): `JOURNAL_STREAM` holds the
//! device and inode of that stream); each line then starts with an
//! sd-daemon `<N>` prefix (sd-daemon(3)), which journald strips and turns
//! into the line's priority, so `journalctl -p warning` shows warnings and
//! findings of medium severity and up. Output redirected elsewhere (a
//! file, a pipe, a terminal) gets no prefix, even inside a unit.

use std::sync::OnceLock;

use crate::finding::Severity;

/// syslog priorities (RFC 5424 / sd-daemon).
pub const CRIT: u8 = 2;
pub const ERR: u8 = 3;
pub const WARNING: u8 = 4;
pub const NOTICE: u8 = 5;
pub const INFO: u8 = 6;

/// The priority of a finding's severity (the same as its syslog severity).
pub fn of(s: Severity) -> u8 {
    match s {
        Severity::Critical => CRIT,
        Severity::High => ERR,
        Severity::Medium => WARNING,
        Severity::Low => NOTICE,
        Severity::Info => INFO,
    }
}

/// Which standard stream.
#[derive(Clone, Copy)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Whether `stream` is the journal's stream, decided once per process.
pub fn connected(stream: Stream) -> bool {
    static OUT: OnceLock<bool> = OnceLock::new();
    static ERR_: OnceLock<bool> = OnceLock::new();
    match stream {
        Stream::Stdout => *OUT.get_or_init(|| is_journal_fd(1)),
        Stream::Stderr => *ERR_.get_or_init(|| is_journal_fd(2)),
    }
}

/// `text` with a `<level>` prefix on each of its lines when `stream` goes
/// to the journal; as it is otherwise.
pub fn prefixed(stream: Stream, level: u8, text: &str) -> std::borrow::Cow<'_, str> {
    if !connected(stream) {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(prefix_lines(level, text))
}

/// Each line of `text` prefixed with `<level>`.
pub fn prefix_lines(level: u8, text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    for (i, l) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        if !l.is_empty() {
            out.push('<');
            out.push(char::from(b'0' + level.min(7)));
            out.push('>');
        }
        out.push_str(l);
    }
    out
}

/// `JOURNAL_STREAM` parsed as `DEVICE:INODE`.
fn journal_stream() -> Option<(u64, u64)> {
    let v = std::env::var("JOURNAL_STREAM").ok()?;
    let (d, i) = v.split_once(':')?;
    Some((d.parse().ok()?, i.parse().ok()?))
}

#[cfg(unix)]
fn is_journal_fd(fd: i32) -> bool {
    let Some((dev, ino)) = journal_stream() else {
        return false;
    };
    // SAFETY: fstat on a descriptor number writes only into `st`; an
    // invalid or closed descriptor is an error return.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return false;
    }
    st.st_dev as u64 == dev && st.st_ino as u64 == ino
}

#[cfg(not(unix))]
fn is_journal_fd(_fd: i32) -> bool {
    let _ = journal_stream;
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_gets_the_prefix() {
        assert_eq!(prefix_lines(4, "a\nb"), "<4>a\n<4>b");
        assert_eq!(prefix_lines(3, "x\n"), "<3>x\n");
        assert_eq!(of(Severity::Critical), 2);
        assert_eq!(of(Severity::Info), 6);
    }
}
