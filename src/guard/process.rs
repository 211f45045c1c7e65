//! Who opened a library: the process behind a fanotify event, read from
//! the host's `/proc` (the opener is a live process of this host whatever
//! `--root` is). Bounded reads; a process gone by now is "unknown", never
//! an error.

use std::io::Read;
use std::path::PathBuf;

/// What is known of an opener.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Opener {
    pub pid: i32,
    /// `/proc/PID/exe` as raw bytes; `None` when it could not be read.
    pub exe: Option<Vec<u8>>,
    /// The real uid.
    pub uid: Option<u32>,
}

/// `/proc/PID/status` is about 1.5 KiB; the `Uid:` line is near its top.
const STATUS_CAP: u64 = 16 * 1024;

/// Reads what `/proc` says of `pid` now. While the opener waits for a
/// permission answer it cannot exit, so this is the process that opened.
pub fn opener(pid: i32) -> Opener {
    let dir = PathBuf::from(format!("/proc/{pid}"));
    let exe = std::fs::read_link(dir.join("exe"))
        .ok()
        .map(|p| p.into_os_string().into_encoded_bytes());
    let uid = std::fs::File::open(dir.join("status"))
        .and_then(|f| {
            let mut s = Vec::new();
            f.take(STATUS_CAP).read_to_end(&mut s)?;
            Ok(s)
        })
        .ok()
        .and_then(|s| real_uid(&s));
    Opener { pid, exe, uid }
}

/// The first number of the `Uid:` line (real, effective, saved, fs).
fn real_uid(status: &[u8]) -> Option<u32> {
    let line = status
        .split(|&b| b == b'\n')
        .find(|l| l.starts_with(b"Uid:"))?;
    let rest = std::str::from_utf8(&line[4..]).ok()?;
    rest.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_real_uid_and_survives_junk() {
        assert_eq!(
            real_uid(b"Name:\tx\nUid:\t1000\t0\t0\t0\nGid:\t0\n"),
            Some(1000)
        );
        assert_eq!(real_uid(b"Uid:\n"), None);
        assert_eq!(real_uid(b"\xff\xfe"), None);
        let me = opener(std::process::id() as i32);
        assert!(me.exe.is_some());
        // SAFETY: getuid cannot fail.
        assert_eq!(me.uid, Some(unsafe { libc::getuid() }));
        assert_eq!(opener(-5).exe, None);
    }
}
