//! The rpm database of a (rooted) RHEL/Fedora/SUSE system, read-only:
//! `rpmdb.sqlite`'s `Packages` table, one header blob per installed
//! package, parsed by [`crate::formats::rpmheader`] into the shared
//! [`PackageDb`].
//!
//! Nothing is written into the root and nothing is opened by path outside
//! the confinement: the database file is read through [`Root`] (capped)
//! and handed to SQLite as an in-memory, read-only image
//! (`sqlite3_deserialize`), so no `-wal`, `-shm` or journal can appear
//! beside it. Changes still sitting in a non-empty `-wal` (a transaction
//! that did not checkpoint) are not seen: said as a warning. The older
//! Berkeley DB (`Packages`) and ndb (`Packages.db`) backends are not read:
//! said as a warning too.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::dpkg::Canon;
use super::index::{Algo, FileDigest, Manager, Owner, Package, PackageDb};
use crate::formats::rpmheader::{self, RPMFILE_CONFIG, RPMFILE_GHOST};
use crate::record::file_name;
use crate::rootfs::Root;

/// Where rpm keeps its database, inside the root: the classic place, and
/// the one Fedora ≥ 36 and openSUSE moved it to (`/var/lib/rpm` is then a
/// symlink, resolved inside the root).
pub const DB_DIRS: [&str; 2] = ["/var/lib/rpm", "/usr/lib/sysimage/rpm"];
/// Cap on `rpmdb.sqlite` (a full server install is well under 200 MiB).
const DB_CAP: u64 = 1 << 30;
/// Cap on one header blob (rpm's own limit on a header's data).
const BLOB_CAP: usize = 256 << 20;

/// What [`load`] found.
pub enum Found {
    /// No rpm database in this root.
    None,
    /// A database in a format that is not read (and why).
    Unsupported(String),
    /// Loaded, with the warnings met on the way (boxed: the index is
    /// many arrays wide, the other variants a word or three).
    Db(Box<PackageDb>, Vec<String>),
}

/// Whether `logical` names something in the root (symlinks followed
/// inside it).
fn exists(root: &Root, logical: &Path) -> bool {
    root.resolve(logical).is_ok_and(|p| root.lstat(&p).is_ok())
}

/// The rpm database directory of this root, and whether it has the sqlite
/// database (else an older backend's files).
fn locate(root: &Root) -> Option<(PathBuf, bool)> {
    for d in DB_DIRS {
        let dir = Path::new(d);
        if exists(root, &dir.join("rpmdb.sqlite")) {
            return Some((dir.to_path_buf(), true));
        }
        if ["Packages", "Packages.db"]
            .iter()
            .any(|n| exists(root, &dir.join(n)))
        {
            return Some((dir.to_path_buf(), false));
        }
    }
    None
}

/// True while an rpm transaction holds the database lock (`.rpm.lock`,
/// an `fcntl` write lock): asked without writing or locking anything.
pub fn busy(root: &Root) -> bool {
    DB_DIRS
        .iter()
        .any(|d| super::dpkg::write_locked(root, &Path::new(d).join(".rpm.lock")))
}

/// The identity of the database file now (a watcher reloads when it
/// changes).
pub fn stamp(root: &Root) -> Vec<(u64, u64, i64, i64)> {
    DB_DIRS
        .iter()
        .filter_map(|d| {
            let p = root.resolve(&Path::new(d).join("rpmdb.sqlite")).ok()?;
            root.lstat(&p).ok()
        })
        .map(|m| super::identity(&m))
        .collect()
}

/// Loads the rpm database of `root`, keeping only files named in `names`
/// when given (as dpkg does).
pub fn load(root: &Root, names: Option<&HashSet<Vec<u8>>>) -> std::io::Result<Found> {
    let Some((dir, sqlite)) = locate(root) else {
        return Ok(Found::None);
    };
    if !sqlite {
        return Ok(Found::Unsupported(format!(
            "rpm database at {} is Berkeley DB or ndb (Packages/Packages.db), which is not read; \
             only rpmdb.sqlite is",
            dir.display()
        )));
    }
    let file = root.resolve(&dir.join("rpmdb.sqlite"))?;
    let mut image = root.read_file(&file, DB_CAP)?;
    let mut warnings = Vec::new();
    let wal = root
        .resolve(&dir.join("rpmdb.sqlite-wal"))
        .ok()
        .and_then(|p| root.lstat(&p).ok())
        .map_or(0, |m| m.len());
    if wal > 0 {
        warnings.push(format!(
            "{}/rpmdb.sqlite-wal holds {wal} bytes not checkpointed into the database \
             (an rpm transaction under way or interrupted): they are not read",
            dir.display()
        ));
    }
    let blobs = read_blobs(&mut image).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}/rpmdb.sqlite: {e}", dir.display()),
        )
    })?;
    drop(image);
    let mut db = PackageDb::default();
    let canon = Canon::new(root);
    let mut bad = 0usize;
    for (hnum, blob) in blobs {
        match rpmheader::parse(&blob) {
            Ok(h) => index_header(&mut db, &canon, &h, names),
            Err(e) => {
                bad += 1;
                if bad <= 3 {
                    warnings.push(format!("rpm header {hnum} skipped: {e}"));
                }
            }
        }
    }
    if bad > 3 {
        warnings.push(format!("{bad} rpm headers skipped in all"));
    }
    Ok(Found::Db(Box::new(db), warnings))
}

/// The header blobs of an `rpmdb.sqlite` image, by `hnum`.
pub fn read_blobs(image: &mut [u8]) -> Result<Vec<(i64, Vec<u8>)>, String> {
    // rpm keeps its database in WAL mode (header bytes 18 and 19 are 2);
    // an in-memory image cannot be opened so: mark it rollback-journal
    // (1), which changes nothing of its content.
    if image.len() < 100 || !image.starts_with(b"SQLite format 3\0") {
        return Err("not an SQLite 3 database".into());
    }
    for b in image.iter_mut().skip(18).take(2) {
        if *b == 2 {
            *b = 1;
        }
    }
    let mut conn = rusqlite::Connection::open_in_memory().map_err(|e| e.to_string())?;
    conn.deserialize_read_exact("main", &image[..], image.len(), true)
        .map_err(|e| e.to_string())?;
    let mut stmt = conn
        .prepare("SELECT hnum, blob FROM Packages ORDER BY hnum")
        .map_err(|e| e.to_string())?;
    let rows = stmt
        .query_map([], |row| {
            let hnum: i64 = row.get(0)?;
            let blob = row.get_ref(1)?;
            Ok((hnum, blob.as_blob().map(|b| b.to_vec()).ok()))
        })
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for row in rows {
        let (hnum, blob) = row.map_err(|e| e.to_string())?;
        if let Some(b) = blob.filter(|b| b.len() <= BLOB_CAP) {
            out.push((hnum, b));
        }
    }
    Ok(out)
}

/// rpm's `FILEDIGESTALGO` (PGP hash algorithm ids) as ours.
pub fn algo(pgp: u32) -> Option<Algo> {
    match pgp {
        1 => Some(Algo::Md5),
        2 => Some(Algo::Sha1),
        8 => Some(Algo::Sha256),
        9 => Some(Algo::Sha384),
        10 => Some(Algo::Sha512),
        11 => Some(Algo::Sha224),
        _ => None,
    }
}

fn index_header(
    db: &mut PackageDb,
    canon: &Canon,
    h: &rpmheader::Header,
    names: Option<&HashSet<Vec<u8>>>,
) {
    // gpg-pubkey pseudo-packages own no files; they still get a version.
    let name = match &h.arch {
        Some(a) => format!("{}.{a}", h.name),
        None => h.name.clone(),
    };
    let pkg = db.add_package(Package {
        name,
        version: h.evr(),
        manager: Manager::Rpm,
    });
    let algo = algo(h.digest_algo);
    db.count_listed(h.files.len());
    for f in &h.files {
        // A ghost is owned but never shipped: its content is whatever
        // appeared there, so it vouches for nothing.
        if f.flags & RPMFILE_GHOST != 0 {
            continue;
        }
        if names.is_some_and(|n| !n.contains(file_name(&f.path))) {
            continue;
        }
        let regular = f.mode.is_none_or(|m| u32::from(m) & 0o170000 == 0o100000);
        let digest = match algo {
            Some(a) if regular && !f.digest.is_empty() => FileDigest::from_hex(a, &f.digest),
            _ => None,
        };
        let key = canon.file(&f.path);
        db.add(
            key,
            Owner {
                pkg,
                digest,
                config: f.flags & RPMFILE_CONFIG != 0,
                mode: f.mode.map(u32::from),
            },
        );
    }
}
