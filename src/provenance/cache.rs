//! The package index a generation keeps for the runs after it: the index
//! provenance judged the generation's files with (cut to their names),
//! stored among the generation's extra pairs under [`KEY`] with the
//! identity of every package database file it came from
//! ([`super::World::dpkg_stamp`]: inode, size, mtime, ctime of dpkg's
//! `status`, `info/` and `diversions`, and of the rpm and apk databases).
//!
//! A `check` of a host whose packages did not change then reads that index
//! instead of parsing the databases (hundreds of md5sums files). It is
//! used only when every database file still has the identity recorded and
//! every file name judged now is one the index was cut to; anything else
//! (a package installed, a new library name, an undecodable value) reads
//! the databases as before. The pair is covered by the generation's digest
//! and signature like the records, so it is trusted as far as they are;
//! builds that do not know the key ignore it.

use std::collections::HashSet;

use super::index::{Manager, PackageDb};
use crate::finding::Note;

/// The extra pair's key.
pub const KEY: &[u8] = b"c\0packages";

/// The identity of the package databases' files ([`super::World`]).
pub type Stamp = [(u64, u64, i64, i64)];

/// The pair that stores `db` as read when the databases were `stamp`;
/// `None` when `db` is not one that can stand in for a read (every name,
/// or read with lists).
pub fn pair(db: &PackageDb, stamp: &Stamp) -> Option<(Vec<u8>, Vec<u8>)> {
    let body = db.encode()?;
    let mut v = Vec::with_capacity(4 + stamp.len() * 32 + body.len());
    v.extend_from_slice(&(stamp.len() as u32).to_le_bytes());
    for &(ino, size, mtime, ctime) in stamp {
        v.extend_from_slice(&ino.to_le_bytes());
        v.extend_from_slice(&size.to_le_bytes());
        v.extend_from_slice(&mtime.to_le_bytes());
        v.extend_from_slice(&ctime.to_le_bytes());
    }
    v.extend_from_slice(&body);
    Some((KEY.to_vec(), v))
}

/// The index stored in `extra`, when the databases are still `now`, it
/// was cut to every name in `names` and its scope holds every path in
/// `paths` (the records judged: an index cut to the library dirs of one
/// run does not stand in for a run that also walks a `paths` dir).
pub fn lookup(
    extra: &[(Vec<u8>, Vec<u8>)],
    now: &Stamp,
    names: &HashSet<Vec<u8>>,
    paths: &[&[u8]],
) -> Option<PackageDb> {
    let v = extra.iter().find(|(k, _)| k == KEY).map(|(_, v)| v)?;
    let mut r = crate::facts::Cursor(v);
    let n = r.u32()? as usize;
    if n != now.len() {
        return None;
    }
    for &(ino, size, mtime, ctime) in now {
        if (r.u64()?, r.u64()?, r.i64()?, r.i64()?) != (ino, size, mtime, ctime) {
            return None;
        }
    }
    let db = PackageDb::decode(r.0)?;
    (names.iter().all(|n| db.keeps_name(n)) && paths.iter().all(|p| db.holds(p))).then_some(db)
}

/// What a run says when it judged with the stored index.
pub fn notes(db: &PackageDb, took: std::time::Duration) -> Vec<Note> {
    let mut out = Vec::new();
    for m in db.managers() {
        let what = match m {
            Manager::Dpkg => "dpkg",
            Manager::Rpm => "rpm",
            Manager::Apk => "apk",
        };
        let n = db.packages.iter().filter(|p| p.manager == m).count();
        out.push(Note::Status(format!(
            "{what} database: {n} packages, unchanged since the baseline: its index read from the baseline in {:.3} s",
            took.as_secs_f64()
        )));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provenance::index::{Algo, FileDigest, Owner, Package};

    fn db() -> PackageDb {
        let mut db = PackageDb::default();
        let a = db.add_package(Package {
            name: "libfoo1:amd64".into(),
            version: "1.2-3".into(),
            manager: Manager::Dpkg,
        });
        let b = db.add_package(Package {
            name: "bar.x86_64".into(),
            version: "1:2-1".into(),
            manager: Manager::Rpm,
        });
        db.add(
            b"/usr/lib/libfoo.so.1",
            Owner {
                pkg: a,
                digest: FileDigest::from_hex(Algo::Md5, &[b'a'; 32]),
                ..Owner::default()
            },
        );
        db.add(
            b"/usr/lib/libfoo.so.1",
            Owner {
                pkg: b,
                digest: FileDigest::from_hex(Algo::Sha256, &[b'b'; 64]),
                config: true,
                mode: Some(0o100644),
            },
        );
        db.add(
            b"/usr/lib64/libbar.so",
            Owner {
                pkg: b,
                ..Owner::default()
            },
        );
        db.count_listed(1234);
        db.set_names(Some(
            [b"libfoo.so.1".to_vec(), b"libbar.so".to_vec()]
                .into_iter()
                .collect(),
        ));
        db
    }

    const STAMP: &Stamp = &[(7, 100, 1_700_000_000, 1_700_000_001), (8, 4096, 5, 6)];

    fn names(n: &[&str]) -> HashSet<Vec<u8>> {
        n.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn the_index_round_trips_while_the_databases_are_unchanged() {
        let d = db();
        let extra = vec![pair(&d, STAMP).unwrap()];
        let back = lookup(&extra, STAMP, &names(&["libfoo.so.1"]), &[]).unwrap();
        assert_eq!(back.packages, d.packages);
        assert_eq!(
            back.owners(b"/usr/lib/libfoo.so.1"),
            d.owners(b"/usr/lib/libfoo.so.1")
        );
        assert_eq!(
            back.owners(b"/usr/lib64/libbar.so"),
            d.owners(b"/usr/lib64/libbar.so")
        );
        assert!(back.owners(b"/usr/lib/other.so").is_empty());
        assert_eq!(back.file_count(), 1234);
        assert_eq!(back.managers(), vec![Manager::Dpkg, Manager::Rpm]);
        // Stored again, it is the same bytes (a later update keeps it).
        assert_eq!(pair(&back, STAMP), pair(&d, STAMP));
    }

    #[test]
    fn a_changed_database_or_a_name_it_was_not_cut_to_reads_the_databases() {
        let extra = vec![pair(&db(), STAMP).unwrap()];
        let moved = &[(7, 100, 1_700_000_000, 1_700_000_002), (8, 4096, 5, 6)];
        assert!(lookup(&extra, moved, &names(&["libfoo.so.1"]), &[]).is_none());
        assert!(lookup(&extra, &STAMP[..1], &names(&["libfoo.so.1"]), &[]).is_none());
        assert!(lookup(&extra, STAMP, &names(&["libnew.so.1"]), &[]).is_none());
        assert!(lookup(&[], STAMP, &names(&[]), &[]).is_none());
    }

    #[test]
    fn an_index_of_every_name_or_with_lists_is_not_stored() {
        let mut d = db();
        d.set_names(None);
        assert!(pair(&d, STAMP).is_none());
        let mut d = db();
        d.set_lists(true);
        assert!(pair(&d, STAMP).is_none());
    }

    #[test]
    fn damaged_values_are_refused_never_trusted_and_never_panic() {
        let (k, v) = pair(&db(), STAMP).unwrap();
        let all = names(&["libfoo.so.1"]);
        for cut in 0..v.len() {
            let extra = vec![(k.clone(), v[..cut].to_vec())];
            assert!(lookup(&extra, STAMP, &all, &[]).is_none(), "cut at {cut}");
        }
        // Every single-byte change past the stamp either fails to decode
        // or decodes to something; it never panics or allocates wildly.
        for i in 0..v.len() {
            for x in [0u8, 0xff, 0x7f] {
                let mut w = v.clone();
                w[i] = x;
                let _ = lookup(&[(k.clone(), w)], STAMP, &all, &[]);
            }
        }
        let mut huge = v.clone();
        // The package count (after the 68-byte stamp and version byte).
        huge[4 + 64 + 1..4 + 64 + 5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(lookup(&[(k, huge)], STAMP, &all, &[]).is_none());
    }
}
