//! The baseline: generations in a sled store ([`store`]), their
//! signatures ([`signing`]), the rollback state kept outside the store
//! ([`rollback`]), the trust checks on loading ([`verify`]) and the
//! portable manifest ([`manifest`]). Commands go through the two doors
//! here: [`load`] (or [`load_held`] to keep the lock for a new generation)
//! and [`commit`] (or [`commit_owned`]).

mod lock;
pub mod manifest;
mod pointer;
pub mod rollback;
pub mod signing;
mod sleddb;
mod space;
pub mod store;
pub mod verify;
mod watchdog;

use std::path::PathBuf;

use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::error::Result;
use crate::finding::Note;
use crate::record::Record;
use store::{Meta, Store};

/// Where a baseline lives and what it must satisfy to be trusted.
#[derive(Clone, Debug)]
pub struct Location {
    /// The baseline directory (one sled database per generation, and the
    /// pointer to the live one: `store`).
    pub db: PathBuf,
    /// Highest generation seen per baseline id (rollback detection).
    pub state_path: PathBuf,
    /// Every generation must carry a valid signature by this key.
    pub verify_key: Option<VerifyingKey>,
    /// The second copy of the rollback state, beside the public key
    /// (`rollback::copy_path`), when one is configured.
    pub state_copy: Option<PathBuf>,
    /// `--accept-generation N`: the operator re-pins the rollback state to
    /// the live generation, which must be N.
    pub accept_generation: Option<u64>,
    /// `--allow-other-root`: a baseline built for another root path may
    /// judge this one (an image copied to a new place).
    pub allow_other_root: bool,
    /// `update --sign-with`: an unsigned live generation may be built on
    /// and signing restarted (`verify` decides whether this one may).
    pub restart_signing: bool,
}

/// Longest image baseline name (`--name`).
pub const IMAGE_NAME_MAX: usize = 200;

impl Location {
    /// The location of the baseline of the container image named `name`:
    /// a store of its own under [`store::IMAGES_DIR`] of this baseline
    /// directory, with the same keys, signing and rollback state (which
    /// keeps the highest generation per baseline id, so the two never mix).
    /// The host's generations are never read or written through it.
    pub fn for_image(&self, name: &str) -> std::result::Result<Location, String> {
        if name.is_empty() || name.len() > IMAGE_NAME_MAX {
            return Err(format!(
                "an image baseline name is 1 to {IMAGE_NAME_MAX} bytes"
            ));
        }
        let mut loc = self.clone();
        loc.db = self.db.join(store::IMAGES_DIR).join(image_dir_name(name));
        Ok(loc)
    }
}

/// `name` as one safe directory name: bytes outside `[A-Za-z0-9._-]`
/// percent-encoded (so `sha256:ab..` is `sha256%3Aab..`, and no name can
/// climb out with `/` or be `.` or `..`).
fn image_dir_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 8);
    for b in name.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' => out.push(b as char),
            b'.' if !out.is_empty() => out.push('.'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// One verified generation.
#[derive(Debug)]
pub struct Baseline {
    pub meta: Meta,
    /// Sorted by path.
    pub records: Vec<Record>,
    /// The generation's extra pairs (provenance state), covered by its
    /// digest and signature like the records. Without the package owners
    /// when loaded by [`load_lean`] (see [`Baseline::owner_pairs`]).
    pub extra: Vec<(Vec<u8>, Vec<u8>)>,
    /// The store the owners are read again from, when they were left out
    /// of `extra`.
    pub owners_elsewhere: Option<PathBuf>,
}

impl Baseline {
    /// The package owners' pairs (`o\0`, [`store::OWNER_PREFIX`]) of this
    /// generation: from `extra`, or, when it was loaded without them, read
    /// again from its store and checked against the same digest (the live
    /// generation must still be this one).
    pub fn owner_pairs(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let Some(db) = &self.owners_elsewhere else {
            return Ok(self
                .extra
                .iter()
                .filter(|(k, _)| k.starts_with(store::OWNER_PREFIX))
                .cloned()
                .collect());
        };
        Store::open(db)?.extra_of(&self.meta, store::Pairs::Only(store::OWNER_PREFIX))
    }

    /// "generation 3 of 2026-11-27T02:50:00Z (signed)".
    pub fn describe(&self) -> String {
        verify::describe(&self.meta)
    }
}

/// Loads the live generation (a reader takes no lock: it only opens a
/// complete generation no writer touches), then verifies signature and
/// generation. `root` is the root being judged: a baseline of another root
/// is refused unless the location allows it ([`verify::root`]).
pub fn load(loc: &Location, root: &[u8]) -> Result<(Baseline, Vec<Note>)> {
    let (b, mut notes) = load_from(Store::open(&loc.db)?, loc, None)?;
    notes.extend(verify::root(loc, &b.meta, root)?);
    Ok((b, notes))
}

/// Like [`load`], but keeps the store (and the writers' lock) for
/// [`commit`], so a concurrent update cannot interleave. `key`, when given, is the key the
/// live generation must verify with (else the location's).
pub fn load_held(
    loc: &Location,
    key: Option<&VerifyingKey>,
) -> Result<(Store, Baseline, Vec<Note>)> {
    let store = Store::open_for_write(&loc.db)?;
    let (b, notes) = load_from(&store, loc, key)?;
    Ok((store, b, notes))
}

/// Like [`load`], without the package owners among the extra pairs (a
/// `check`: an unchanged host never needs them; [`Baseline::owner_pairs`]
/// reads them when a judge does).
pub fn load_lean(loc: &Location, root: &[u8]) -> Result<(Baseline, Vec<Note>)> {
    let (mut b, mut notes) = load_keeping(
        Store::open(&loc.db)?,
        loc,
        None,
        store::Pairs::Without(store::OWNER_PREFIX),
    )?;
    b.owners_elsewhere = Some(loc.db.clone());
    notes.extend(verify::root(loc, &b.meta, root)?);
    Ok((b, notes))
}

fn load_from(
    store: impl std::borrow::Borrow<Store>,
    loc: &Location,
    key: Option<&VerifyingKey>,
) -> Result<(Baseline, Vec<Note>)> {
    load_keeping(store, loc, key, store::Pairs::All)
}

fn load_keeping(
    store: impl std::borrow::Borrow<Store>,
    loc: &Location,
    key: Option<&VerifyingKey>,
    keep: store::Pairs,
) -> Result<(Baseline, Vec<Note>)> {
    let (meta, records, extra) = store.borrow().load_keeping(keep)?;
    // Never build on, or judge against, a baseline that fails
    // verification.
    let notes = verify::verify(loc, &meta, key.or(loc.verify_key.as_ref()))?;
    Ok((
        Baseline {
            meta,
            records,
            extra,
            owners_elsewhere: None,
        },
        notes,
    ))
}

/// Takes the store for a first generation (refused over an existing one
/// unless `force`).
pub fn create(loc: &Location, force: bool) -> Result<Store> {
    Store::create(&loc.db, force)
}

/// Writes a new generation, releases the store's lock and records the
/// generation in the rollback state (outside the baseline directory).
pub fn commit(
    loc: &Location,
    store: Store,
    records: &[Record],
    extra: &[(Vec<u8>, Vec<u8>)],
    root: &[u8],
    key: Option<&SigningKey>,
) -> Result<Meta> {
    commit_owned(loc, store, records.to_vec(), extra.to_vec(), root, key)
}

/// [`commit`], consuming the records and extra pairs as they are written
/// (each dropped once stored: [`Store::write_generation_from`]), for a
/// command that needs neither afterwards.
pub fn commit_owned(
    loc: &Location,
    store: Store,
    records: Vec<Record>,
    extra: Vec<(Vec<u8>, Vec<u8>)>,
    root: &[u8],
    key: Option<&SigningKey>,
) -> Result<Meta> {
    let meta = store.write_generation_from(records, extra, root, key)?;
    drop(store);
    verify::record_written(loc, &meta)?;
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::{Pairs, OWNER_PREFIX};

    fn rec(p: &str) -> Record {
        Record::test_file(p, 7)
    }

    fn owner_pair(pkg: &str, paths: &str) -> (Vec<u8>, Vec<u8>) {
        let mut k = OWNER_PREFIX.to_vec();
        k.extend_from_slice(pkg.as_bytes());
        k.extend_from_slice(&[0, 0, 0, 0, 0]);
        (k, paths.as_bytes().to_vec())
    }

    /// The live generation's extra tree, opened raw (an attacker's view).
    fn live_extra(db: &std::path::Path, f: impl FnOnce(&sled::Tree)) {
        let p = pointer::read(db).unwrap().unwrap();
        let d = sleddb::SledDb::open(&db.join(p.dir), std::time::Duration::from_secs(3)).unwrap();
        let x = d
            .raw()
            .open_tree(sleddb::extra_name(p.meta.generation))
            .unwrap();
        f(&x);
        d.raw().flush().unwrap();
    }

    #[test]
    fn a_lean_load_leaves_the_owners_in_the_store_and_reads_them_for_its_generation_only() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::create(t.path(), false).unwrap();
        let owners = owner_pair("libc6", "/lib/libc.so.6\0/lib/libm.so.6");
        let version = (b"v\0libc6".to_vec(), b"2.36".to_vec());
        let extra = vec![owners.clone(), version.clone()];
        s.write_generation_with_extra(&[rec("/a"), rec("/b")], &extra, b"/", None)
            .unwrap();
        let (meta, recs, kept) = s.load_keeping(Pairs::Without(OWNER_PREFIX)).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(kept, vec![version.clone()]);
        let b = Baseline {
            meta: meta.clone(),
            records: recs,
            extra: kept,
            owners_elsewhere: Some(t.path().to_path_buf()),
        };
        assert_eq!(b.owner_pairs().unwrap(), vec![owners.clone()]);
        // Loaded whole, the owners come from the pairs in memory.
        let (m, r, all) = s.load_with_extra().unwrap();
        let whole = Baseline {
            meta: m,
            records: r,
            extra: all,
            owners_elsewhere: None,
        };
        assert_eq!(whole.owner_pairs().unwrap(), vec![owners.clone()]);
        // Another generation went live meanwhile: not its owners.
        s.write_generation_with_extra(&[rec("/a")], &extra, b"/", None)
            .unwrap();
        assert!(matches!(
            b.owner_pairs(),
            Err(crate::error::Error::CorruptBaseline { .. })
        ));
    }

    #[test]
    fn owners_left_out_of_a_lean_load_are_still_covered_by_the_digest() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::create(t.path(), false).unwrap();
        let extra = vec![
            owner_pair("libc6", "/lib/libc.so.6"),
            (b"v\0libc6".to_vec(), b"2.36".to_vec()),
        ];
        s.write_generation_with_extra(&[rec("/a")], &extra, b"/", None)
            .unwrap();
        live_extra(t.path(), |x| {
            x.insert(&extra[0].0, b"/lib/evil.so".to_vec()).unwrap();
        });
        let lean = s.load_keeping(Pairs::Without(OWNER_PREFIX));
        assert!(
            matches!(lean, Err(crate::error::Error::CorruptBaseline { .. })),
            "an altered owner must be detected by a load that leaves them out"
        );
        live_extra(t.path(), |x| {
            x.remove(&extra[0].0).unwrap();
        });
        assert!(s.load_keeping(Pairs::Without(OWNER_PREFIX)).is_err());
    }

    #[test]
    fn image_names_stay_one_directory_below_images() {
        assert_eq!(image_dir_name("sha256:ab12"), "sha256%3Aab12");
        assert_eq!(image_dir_name("../x"), "%2E.%2Fx");
        assert_eq!(image_dir_name(".."), "%2E.");
        assert_eq!(image_dir_name("app-v1.2"), "app-v1.2");
    }
}
