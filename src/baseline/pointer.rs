//! `<db>/CURRENT`: which generation directory is live, with that
//! generation's [`Meta`] (and so its signature). Written to `CURRENT.tmp`,
//! fsynced, renamed over `CURRENT` and the directory fsynced: the switch to
//! a new generation is one atomic rename, made only after the generation's
//! own directory is complete and synced. A checksum line tells a damaged
//! pointer from an absent one.
//!
//! ```text
//! libwarden baseline store 1
//! schema 3
//! generation gen-00000000000000000003
//! meta <hex of Meta::encode>
//! check <BLAKE3 hex of the lines above>
//! ```

use std::io::{Read, Write};
use std::path::Path;

use super::store::{Meta, SCHEMA};
use crate::error::{Error, Result};
use crate::escape;

pub const NAME: &str = "CURRENT";
pub const TMP: &str = "CURRENT.tmp";
const MAGIC: &str = "libwarden baseline store 1";
/// A pointer is a few hundred bytes; a bigger file is not one.
const MAX_BYTES: u64 = 64 << 10;

/// The live generation as the pointer names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pointer {
    /// The generation's directory, relative to the baseline directory.
    pub dir: String,
    pub meta: Meta,
}

/// The name of generation `g`'s directory.
pub fn gen_dir(g: u64) -> String {
    format!("gen-{g:020}")
}

/// Reads the pointer of baseline directory `db`: `None` when there is none.
pub fn read(db: &Path) -> Result<Option<Pointer>> {
    let path = db.join(NAME);
    let mut f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unreadable(db, e)),
    };
    let mut bytes = Vec::new();
    Read::by_ref(&mut f)
        .take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| unreadable(db, e))?;
    let corrupt = |msg: &str| Error::CorruptBaseline {
        path: db.to_path_buf(),
        msg: format!("its pointer to the current generation ({NAME}) {msg}"),
    };
    if bytes.len() as u64 > MAX_BYTES {
        return Err(corrupt("is far too large"));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| corrupt("is not text"))?;
    let body_end = text
        .rfind("check ")
        .ok_or_else(|| corrupt("is truncated or damaged"))?;
    let (body, check) = text.split_at(body_end);
    let want = escape::hex(blake3::hash(body.as_bytes()).as_bytes());
    if check.trim_end_matches('\n') != format!("check {want}") {
        return Err(corrupt("is truncated or damaged (checksum mismatch)"));
    }
    let mut lines = body.lines();
    if lines.next() != Some(MAGIC) {
        return Err(corrupt("is not a libwarden store pointer"));
    }
    let schema: u32 = lines
        .next()
        .and_then(|l| l.strip_prefix("schema "))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| corrupt("has no schema"))?;
    if schema > SCHEMA {
        return Err(Error::NewerSchema {
            path: db.to_path_buf(),
            found: schema,
            supported: SCHEMA,
        });
    }
    let dir = lines
        .next()
        .and_then(|l| l.strip_prefix("generation "))
        .filter(|d| is_gen_dir(d))
        .ok_or_else(|| corrupt("names no generation"))?
        .to_string();
    let meta = lines
        .next()
        .and_then(|l| l.strip_prefix("meta "))
        .and_then(escape::unhex)
        .and_then(|b| Meta::decode(&b))
        .ok_or_else(|| corrupt("holds an unreadable generation header"))?;
    if lines.next().is_some() || meta.schema != schema || gen_dir(meta.generation) != dir {
        return Err(corrupt("does not agree with itself"));
    }
    Ok(Some(Pointer { dir, meta }))
}

/// Why a switch failed: before the rename (the old generation is still
/// live) or after it (the new one is, but the directory sync failed).
#[derive(Debug)]
pub enum WriteError {
    Before(std::io::Error),
    After(std::io::Error),
}

/// Makes `dir` (complete and synced) the live generation of `db`.
pub fn write(db: &Path, dir: &str, meta: &Meta) -> Result<(), WriteError> {
    let mut body = format!(
        "{MAGIC}\nschema {}\ngeneration {dir}\nmeta {}\n",
        meta.schema,
        escape::hex(&meta.encode())
    );
    let check = escape::hex(blake3::hash(body.as_bytes()).as_bytes());
    body.push_str(&format!("check {check}\n"));
    let tmp = db.join(TMP);
    let staged = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(body.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, db.join(NAME))
    })();
    if let Err(e) = staged {
        let _ = std::fs::remove_file(&tmp);
        return Err(WriteError::Before(e));
    }
    crate::sys::sync_dir(db).map_err(WriteError::After)
}

/// A generation directory's name (`gen-` and 20 digits).
pub fn is_gen_dir(name: &str) -> bool {
    name.strip_prefix("gen-")
        .is_some_and(|d| d.len() == 20 && d.bytes().all(|b| b.is_ascii_digit()))
}

fn unreadable(db: &Path, e: std::io::Error) -> Error {
    Error::baseline_io("read baseline", db, db.join(NAME), e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(g: u64) -> Meta {
        Meta {
            schema: SCHEMA,
            generation: g,
            baseline_id: [3; 16],
            written: 5,
            count: 2,
            digest: [9; 32],
            root: b"/".to_vec(),
            signature: Some(([1; 32], [2; 64])),
        }
    }

    #[test]
    fn a_pointer_round_trips_and_any_damage_is_corrupt_not_absent() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(read(t.path()).unwrap(), None);
        write(t.path(), &gen_dir(4), &meta(4)).unwrap();
        let p = read(t.path()).unwrap().unwrap();
        assert_eq!(p.meta, meta(4));
        assert_eq!(p.dir, gen_dir(4));
        let good = std::fs::read(t.path().join(NAME)).unwrap();
        let mut damaged = vec![
            vec![0u8; good.len()],
            good[..good.len() / 2].to_vec(),
            Vec::new(),
        ];
        for i in [0, 30, 60, 120, good.len() - 3] {
            let mut b = good.clone();
            b[i] ^= 0x04;
            damaged.push(b);
        }
        for b in damaged {
            std::fs::write(t.path().join(NAME), &b).unwrap();
            assert!(
                matches!(read(t.path()), Err(Error::CorruptBaseline { .. })),
                "{:?}",
                String::from_utf8_lossy(&b)
            );
        }
    }
}
