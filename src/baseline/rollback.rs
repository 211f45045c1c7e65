//! The highest generation seen for each baseline id, kept outside the
//! baseline's directory: whoever restores an old copy of the baseline
//! directory restores it whole, but not this file. One line per baseline:
//! `<baseline id hex> <generation> <written seconds>`.

use std::path::{Path, PathBuf};

use crate::baseline::store::Meta;
use crate::error::{Error, Result};
use crate::escape;

/// The default place: a sibling of the baseline directory
/// (`/var/lib/libwarden/baseline` → `/var/lib/libwarden/baseline.generations`).
pub fn default_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".generations");
    db.with_file_name(name)
}

/// The recorded (generation, written) for a baseline id.
pub fn seen(path: &Path, id: &[u8; 16]) -> Result<Option<(u64, i64)>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read generation state", path, e)),
    };
    let want = escape::hex(id);
    for line in text.lines() {
        let mut it = line.split_whitespace();
        if it.next() == Some(want.as_str()) {
            let g = it.next().and_then(|g| g.parse().ok());
            let w = it.next().and_then(|w| w.parse().ok()).unwrap_or(0);
            return match g {
                Some(g) => Ok(Some((g, w))),
                None => Err(Error::CorruptBaseline {
                    path: path.to_path_buf(),
                    msg: "unreadable generation state line".into(),
                }),
            };
        }
    }
    Ok(None)
}

/// Refuses a generation older than the highest seen; records a newer one.
pub fn check_and_record(path: &Path, meta: &Meta) -> Result<()> {
    if let Some((g, written)) = seen(path, &meta.baseline_id)? {
        if meta.generation < g {
            return Err(Error::Rollback {
                found: meta.generation,
                seen: g,
                seen_written: written,
            });
        }
        if meta.generation == g {
            return Ok(());
        }
    }
    record(path, meta)
}

/// Writes the generation for this baseline id (atomically: temp + rename).
pub fn record(path: &Path, meta: &Meta) -> Result<()> {
    let id = escape::hex(&meta.baseline_id);
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = String::with_capacity(old.len() + 64);
    for line in old.lines() {
        if !line.starts_with(&id) && !line.trim().is_empty() {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(&format!("{id} {} {}\n", meta.generation, meta.written));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create state dir", dir, e))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, out)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| Error::io("write generation state", path, e))
}
