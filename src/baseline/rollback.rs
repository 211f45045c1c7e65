//! The highest generation seen for each baseline id, kept outside the
//! baseline's directory: whoever restores an old copy of the baseline
//! directory restores it whole, but not this file. One line per baseline:
//! `<baseline id hex> <generation> <written seconds> <signer>`, where the
//! signer is the hex public key that signed that generation or `-` for an
//! unsigned one (lines written before the signer was kept have three
//! fields and read as [`Signer::Unknown`]).
//!
//! A baseline that must verify with a key keeps a second copy of the same
//! lines beside that public key ([`copy_path`]): an attacker who can write
//! the baseline directory and its parent (and so delete or restore the
//! first file) does not control the directory of the trust anchor, and
//! whoever does can replace the key itself. [`super::verify`] decides what
//! the two copies mean together.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::baseline::store::Meta;
use crate::error::{Error, Result};
use crate::escape;
use crate::sys::OpenOptionsNoFollow;

/// The largest state file read: a line is under 200 bytes, so this is
/// thousands of baselines; anything larger is not a state file.
pub const STATE_CAP: u64 = 1 << 20;

/// The default place: a sibling of the baseline directory
/// (`/var/lib/libwarden/baseline` → `/var/lib/libwarden/baseline.generations`).
pub fn default_path(db: &Path) -> PathBuf {
    with_suffix(db, ".generations")
}

/// The second copy for baselines verified with the public key at `key`:
/// `/etc/libwarden/libwarden.pub` → `/etc/libwarden/libwarden.pub.generations`.
pub fn copy_path(key: &Path) -> PathBuf {
    with_suffix(key, ".generations")
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut name = p.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    p.with_file_name(name)
}

/// Who signed the recorded generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signer {
    /// A line written before signers were recorded.
    Unknown,
    Unsigned,
    Key([u8; 32]),
}

impl Signer {
    pub fn of(meta: &Meta) -> Signer {
        match &meta.signature {
            Some((k, _)) => Signer::Key(*k),
            None => Signer::Unsigned,
        }
    }
}

/// One recorded generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    pub generation: u64,
    pub written: i64,
    pub signer: Signer,
}

impl Seen {
    pub fn of(meta: &Meta) -> Seen {
        Seen {
            generation: meta.generation,
            written: meta.written,
            signer: Signer::of(meta),
        }
    }
}

/// The whole file (`None` when it does not exist), read with a bound and
/// without blocking: a FIFO or a device put in its place is an error, not
/// a hang.
fn read(path: &Path) -> std::io::Result<Option<String>> {
    match crate::input::read_bounded_text(path, STATE_CAP) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The recorded generation for a baseline id.
pub fn seen(path: &Path, id: &[u8; 16]) -> Result<Option<Seen>> {
    let Some(text) = read(path).map_err(|e| Error::io("read generation state", path, e))? else {
        return Ok(None);
    };
    let want = escape::hex(id);
    for line in text.lines() {
        let mut it = line.split_whitespace();
        if it.next() != Some(want.as_str()) {
            continue;
        }
        let g = it.next().and_then(|g| g.parse().ok());
        let w = it.next().and_then(|w| w.parse().ok()).unwrap_or(0);
        let signer = match it.next() {
            None => Some(Signer::Unknown),
            Some("-") => Some(Signer::Unsigned),
            Some(k) => escape::unhex(k)
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .map(Signer::Key),
        };
        return match (g, signer) {
            (Some(generation), Some(signer)) => Ok(Some(Seen {
                generation,
                written: w,
                signer,
            })),
            _ => Err(Error::CorruptBaseline {
                path: path.to_path_buf(),
                msg: "unreadable generation state line".into(),
            }),
        };
    }
    Ok(None)
}

/// Writes `meta`'s generation for its baseline id, replacing the id's
/// line (also when it held a higher generation: the caller decided).
/// Atomic and durable: a new temp file (never following a symlink planted
/// in its place), fsynced, renamed over the old one, the directory fsynced.
pub fn record(path: &Path, meta: &Meta) -> Result<()> {
    let id = escape::hex(&meta.baseline_id);
    let old = read(path)
        .map_err(|e| Error::io("read generation state", path, e))?
        .unwrap_or_default();
    let mut out = String::with_capacity(old.len() + 128);
    for line in old.lines() {
        if !line.starts_with(&id) && !line.trim().is_empty() {
            out.push_str(line);
            out.push('\n');
        }
    }
    let signer = match Signer::of(meta) {
        Signer::Key(k) => escape::hex(&k),
        _ => "-".into(),
    };
    out.push_str(&format!(
        "{id} {} {} {signer}\n",
        meta.generation, meta.written
    ));
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create state dir", dir, e))?;
    // One temp name per process: two runs recording at once (a watch
    // reloading beside a cron check) each rename a whole file.
    let tmp = with_suffix(path, &format!(".tmp.{}", std::process::id()));
    // A leftover of a crash, or a symlink someone planted: unlinking
    // removes the entry itself, never what a symlink points to.
    let _ = std::fs::remove_file(&tmp);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .no_follow()
            .create_mode(0o644)
            .open(&tmp)?;
        f.write_all(out.as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        // Best effort: the file itself was synced.
        let _ = crate::sys::sync_dir(dir);
        Ok(())
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io("write generation state", path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(id: u8, generation: u64, signed: bool) -> Meta {
        Meta {
            schema: 3,
            generation,
            baseline_id: [id; 16],
            written: 100 + generation as i64,
            count: 0,
            digest: [0; 32],
            root: b"/".to_vec(),
            signature: signed.then_some(([9; 32], [0; 64])),
        }
    }

    #[test]
    fn lines_round_trip_per_baseline_with_their_signer() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("s/baseline.generations");
        assert_eq!(seen(&p, &[1; 16]).unwrap(), None);
        record(&p, &meta(1, 3, true)).unwrap();
        record(&p, &meta(2, 7, false)).unwrap();
        record(&p, &meta(1, 4, true)).unwrap();
        assert_eq!(
            seen(&p, &[1; 16]).unwrap(),
            Some(Seen::of(&meta(1, 4, true)))
        );
        assert_eq!(
            seen(&p, &[2; 16]).unwrap().map(|s| s.signer),
            Some(Signer::Unsigned)
        );
        // A line of an older libwarden (no signer field) still reads.
        std::fs::write(&p, format!("{} 5 99\n", escape::hex(&[1; 16]))).unwrap();
        assert_eq!(
            seen(&p, &[1; 16])
                .unwrap()
                .map(|s| (s.generation, s.signer)),
            Some((5, Signer::Unknown))
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_planted_temp_symlink_is_replaced_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("baseline.generations");
        let victim = t.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let tmp = with_suffix(&p, &format!(".tmp.{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, tmp).unwrap();
        record(&p, &meta(1, 1, false)).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert!(seen(&p, &[1; 16]).unwrap().is_some());
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_or_device_as_the_state_file_is_an_error_at_once() {
        let t = tempfile::tempdir().unwrap();
        let fifo = t.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: c is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(seen(&fifo, &[1; 16]).is_err());
        assert!(seen(Path::new("/dev/zero"), &[1; 16]).is_err());
    }
}
