//! The apk database of a (rooted) Alpine system, read-only:
//! `lib/apk/db/installed`, parsed by [`crate::formats::apkdb`] into the
//! shared [`PackageDb`]. apk's `Z:Q1` checksums are SHA-1 of the content.

use std::collections::HashSet;
use std::path::Path;

use super::dpkg::Canon;
use super::index::{FileDigest, Manager, Owner, Package, PackageDb};
use crate::formats::apkdb::{self, Checksum};
use crate::record::file_name;
use crate::rootfs::Root;

/// Where apk keeps its database, inside the root.
pub const INSTALLED: &str = "/lib/apk/db/installed";
/// Cap on `installed` (a full Alpine install is a few MiB).
const CAP: u64 = 256 << 20;

/// The identity of the database file now.
pub fn stamp(root: &Root) -> Vec<(u64, u64, i64, i64)> {
    root.resolve(Path::new(INSTALLED))
        .ok()
        .and_then(|p| root.lstat(&p).ok())
        .map(|m| super::identity(&m))
        .into_iter()
        .collect()
}

/// Loads the apk database of `root`; `Ok(None)` when there is none.
pub fn load(root: &Root, names: Option<&HashSet<Vec<u8>>>) -> std::io::Result<Option<PackageDb>> {
    let text = match root.read_file(Path::new(INSTALLED), CAP) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut db = PackageDb::default();
    let canon = Canon::new(root);
    for p in apkdb::parse(&text) {
        // apk installs one instance per name; the arch is informative.
        let pkg = db.add_package(Package {
            name: p.name,
            version: p.version,
            manager: Manager::Apk,
        });
        db.count_listed(p.files.len());
        for f in p.files {
            if names.is_some_and(|n| !n.contains(file_name(&f.path))) {
                continue;
            }
            let digest = f.checksum.map(|c| match c {
                Checksum::Sha1(d) => FileDigest::Sha1(d),
                Checksum::Md5(d) => FileDigest::Md5(d),
            });
            let key = canon.file(&f.path);
            db.add(
                key,
                Owner {
                    pkg,
                    digest,
                    config: false,
                    mode: f.mode,
                },
            );
        }
    }
    Ok(Some(db))
}
