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
    /// digest and signature like the records.
    pub extra: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Baseline {
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

fn load_from(
    store: impl std::borrow::Borrow<Store>,
    loc: &Location,
    key: Option<&VerifyingKey>,
) -> Result<(Baseline, Vec<Note>)> {
    let (meta, records, extra) = store.borrow().load_with_extra()?;
    // Never build on, or judge against, a baseline that fails
    // verification.
    let notes = verify::verify(loc, &meta, key.or(loc.verify_key.as_ref()))?;
    Ok((
        Baseline {
            meta,
            records,
            extra,
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

    #[test]
    fn image_names_stay_one_directory_below_images() {
        assert_eq!(image_dir_name("sha256:ab12"), "sha256%3Aab12");
        assert_eq!(image_dir_name("../x"), "%2E.%2Fx");
        assert_eq!(image_dir_name(".."), "%2E.");
        assert_eq!(image_dir_name("app-v1.2"), "app-v1.2");
    }
}
