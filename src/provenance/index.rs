//! The package index every package manager feeds: who owns which
//! canonical path, with which digest (and of which algorithm), whether it is
//! a config file, its mode. dpkg ([`super::dpkg`]), rpm ([`super::rpm`]) and
//! apk ([`super::apk`]) each load into one [`PackageDb`], and several of
//! them merge into one, so every rule that judges a package (ownership, a
//! digest mismatch, an update) is written once.

use std::collections::HashSet;

use crate::fasthash::{FastMap, FastSet};

pub use crate::pkgdigest::{Algo, DynHasher, FileDigest, MultiHasher};

/// Which package manager a package comes from (how findings name its
/// evidence).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Manager {
    #[default]
    Dpkg,
    Rpm,
    Apk,
}

impl Manager {
    /// How a finding names the list of digests the content was held to.
    pub fn digests_name(self) -> &'static str {
        match self {
            Manager::Dpkg => "md5sums",
            Manager::Rpm => "rpm database",
            Manager::Apk => "apk database",
        }
    }
}

/// One installed package instance. `name` is unique per instance within a
/// manager (`name:arch` for dpkg's Multi-Arch: same, `name.arch` for rpm);
/// `version` is the full version (rpm: `[epoch:]version-release`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub manager: Manager,
}

/// One package's claim on a path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Owner {
    /// Index into [`PackageDb::packages`].
    pub pkg: u32,
    /// The digest the package records; `None` when it records none (a
    /// dpkg package without md5sums, an rpm ghost or symlink).
    pub digest: Option<FileDigest>,
    /// Marked as a config file (rpm `%config`; dpkg conffiles are not read).
    pub config: bool,
    /// The mode the package installs it with, when the database says.
    pub mode: Option<u32>,
}

/// The version byte of [`PackageDb::encode`]'s output.
const CACHE_VERSION: u8 = 1;

/// A length-prefixed (u16) byte string; longer ones are cut (no name,
/// version or path of a package database comes near).
fn put(out: &mut Vec<u8>, b: &[u8]) {
    let b = &b[..b.len().min(usize::from(u16::MAX))];
    out.extend_from_slice(&(b.len() as u16).to_le_bytes());
    out.extend_from_slice(b);
}

/// The loaded index, keyed by canonical path.
#[derive(Debug, Default)]
pub struct PackageDb {
    pub packages: Vec<Package>,
    /// (A path has one owner but for the odd shared file: each list is
    /// allocated for one, not the four a first push would reserve.)
    files: FastMap<Vec<u8>, Vec<Owner>>,
    /// What a package lists beyond the files it has digests for (dpkg's
    /// `.list`: symlinks, directories), by canonical path: the packages
    /// (indices) that list it. Loaded only on request
    /// (`DpkgDb::load_with_lists`).
    others: FastMap<Vec<u8>, Vec<u32>>,
    /// Files listed by the packages, before filtering.
    listed: usize,
    /// The file names kept (`None`: all of them).
    names: Option<FastSet<Vec<u8>>>,
    /// Whether `others` was loaded.
    lists: bool,
    /// Names every cut keeps (those a dpkg diversion involves: a claim
    /// moves from one name to the other).
    /// (Boxed: the index stays small to move around.)
    pinned: Box<[Vec<u8>]>,
}

impl PackageDb {
    /// Who owns `path` (canonical, as the scan records it).
    pub fn owners(&self, path: &[u8]) -> &[Owner] {
        self.files.get(path).map_or(&[], |v| v.as_slice())
    }

    pub fn package(&self, o: &Owner) -> Option<&Package> {
        self.packages.get(o.pkg as usize)
    }

    /// Every package that claims `path` in any way (a file with or without
    /// a digest, a symlink, a directory). Complete only for databases
    /// loaded with lists and for names [`PackageDb::knows_name`] accepts.
    pub fn claimants(&self, path: &[u8]) -> Vec<&Package> {
        let mut out: Vec<&Package> = self
            .owners(path)
            .iter()
            .filter_map(|o| self.package(o))
            .collect();
        for i in self.others.get(path).map_or(&[][..], |v| v.as_slice()) {
            if let Some(p) = self.packages.get(*i as usize) {
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
        out
    }

    /// The first of [`PackageDb::claimants`] (the owner a generation
    /// records), without collecting them all.
    pub fn first_claimant(&self, path: &[u8]) -> Option<&Package> {
        if let Some(p) = self.owners(path).iter().find_map(|o| self.package(o)) {
            return Some(p);
        }
        self.others
            .get(path)
            .and_then(|v| v.iter().find_map(|i| self.packages.get(*i as usize)))
    }

    /// Whether this database can answer [`PackageDb::claimants`] for a path
    /// named `name`: it was loaded with lists and did not leave the name
    /// out.
    pub fn knows_name(&self, name: &[u8]) -> bool {
        self.lists && self.names.as_ref().is_none_or(|n| n.contains(name))
    }

    /// Whether this database answers [`PackageDb::claimants`] for every
    /// path (read with lists, cut to no names).
    pub fn lists_every_name(&self) -> bool {
        self.lists && self.names.is_none()
    }

    /// Whether claims on files named `name` were kept (the index was not
    /// cut to names leaving it out).
    pub fn keeps_name(&self, name: &[u8]) -> bool {
        self.names.as_ref().is_none_or(|n| n.contains(name))
    }

    /// Records that package `pkg` lists `key` without a digest (a symlink,
    /// a directory).
    pub fn add_other(&mut self, key: Vec<u8>, pkg: u32) {
        let v = self
            .others
            .entry(key)
            .or_insert_with(|| Vec::with_capacity(1));
        if !v.contains(&pkg) {
            v.push(pkg);
        }
    }

    /// Whether the lists beyond the digests were read.
    pub fn set_lists(&mut self, lists: bool) {
        self.lists = lists;
    }

    /// The file names the index was cut to (`None`: every name).
    pub fn set_names(&mut self, names: Option<HashSet<Vec<u8>>>) {
        self.names = names.map(|n| n.into_iter().collect());
    }

    /// Room for `files` more claims with a digest and `others` more
    /// without (what a batch of packages about to be added lists).
    pub fn reserve(&mut self, files: usize, others: usize) {
        self.files.reserve(files);
        self.others.reserve(others);
    }

    /// Names [`PackageDb::cut_to`] always keeps.
    pub fn set_pinned(&mut self, names: HashSet<Vec<u8>>) {
        self.pinned = names.into_iter().collect();
    }

    /// A copy cut to claims on files named in `names` (and the pinned
    /// names), without the lists: the index that reading the database
    /// with that cut gives, taken from one read of every name instead of
    /// a second read.
    pub fn cut_to(&self, names: &HashSet<Vec<u8>>) -> PackageDb {
        let mut keep: FastSet<Vec<u8>> = names
            .iter()
            .chain(self.pinned.iter())
            .filter(|n| self.keeps_name(n))
            .cloned()
            .collect();
        keep.shrink_to_fit();
        let files = self
            .files
            .iter()
            .filter(|(k, _)| keep.contains(crate::record::file_name(k)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        PackageDb {
            packages: self.packages.clone(),
            files,
            others: FastMap::default(),
            listed: self.listed,
            names: Some(keep),
            lists: false,
            pinned: self.pinned.clone(),
        }
    }

    /// Drops the claims on files not named in `names` (nor pinned), lists
    /// included: what a read cut to those names would have kept.
    pub fn retain_names(&mut self, names: &HashSet<Vec<u8>>) {
        let mut keep: FastSet<Vec<u8>> = names
            .iter()
            .chain(self.pinned.iter())
            .filter(|n| self.keeps_name(n))
            .cloned()
            .collect();
        keep.shrink_to_fit();
        let kept = |k: &Vec<u8>| keep.contains(crate::record::file_name(k));
        self.files.retain(|k, _| kept(k));
        self.others.retain(|k, _| kept(k));
        self.files.shrink_to_fit();
        self.others.shrink_to_fit();
        self.names = Some(keep);
    }

    /// Files the packages list, before any filtering by name.
    pub fn file_count(&self) -> usize {
        self.listed
    }

    /// Counts `n` more listed files (before filtering).
    pub fn count_listed(&mut self, n: usize) {
        self.listed += n;
    }

    /// Adds a package; its index for [`Owner::pkg`].
    pub fn add_package(&mut self, p: Package) -> u32 {
        self.packages.push(p);
        (self.packages.len() - 1) as u32
    }

    /// Records `o`'s claim on the canonical path `key` (once).
    pub fn add(&mut self, key: Vec<u8>, o: Owner) {
        let v = self
            .files
            .entry(key)
            .or_insert_with(|| Vec::with_capacity(1));
        if !v.contains(&o) {
            v.push(o);
        }
    }

    /// How many paths hold claims with or without a digest (an upper bound
    /// on [`PackageDb::digest_algos`]' distinct paths).
    pub fn digest_count(&self) -> usize {
        self.files.len()
    }

    /// The paths some package records a digest of algorithm `algo` for.
    pub fn paths_with(&self, algo: Algo) -> impl Iterator<Item = &[u8]> + '_ {
        self.files
            .iter()
            .filter(move |(_, o)| o.iter().any(|o| o.digest.is_some_and(|d| d.algo() == algo)))
            .map(|(p, _)| p.as_slice())
    }

    /// Every path some package records a digest for, with the digest's
    /// algorithm (a path twice when two packages record two algorithms).
    pub fn digest_algos(&self) -> impl Iterator<Item = (&[u8], Algo)> + '_ {
        self.files.iter().flat_map(|(p, owners)| {
            owners
                .iter()
                .filter_map(|o| o.digest.map(|d| (p.as_slice(), d.algo())))
        })
    }

    /// Removes and returns the claims on `key`.
    pub fn take(&mut self, key: &[u8]) -> Vec<Owner> {
        self.files.remove(key).unwrap_or_default()
    }

    /// Merges `other` in (several package managers in one root).
    pub fn merge(&mut self, other: PackageDb) {
        let base = self.packages.len() as u32;
        self.packages.extend(other.packages);
        self.listed += other.listed;
        self.pinned = self
            .pinned
            .iter()
            .chain(other.pinned.iter())
            .cloned()
            .collect();
        // Lists and the name cut describe dpkg's part; a merged index
        // answers claimants only as far as both parts do.
        self.lists = self.lists && other.lists;
        for (k, pkgs) in other.others {
            for p in pkgs {
                self.add_other(k.clone(), p + base);
            }
        }
        for (k, owners) in other.files {
            for mut o in owners {
                o.pkg += base;
                self.add(k.clone(), o);
            }
        }
    }

    /// The index as a generation stores it (see `provenance::cache`):
    /// packages, the names it was cut to, and the claims on the paths it
    /// kept. `None` for an index that cannot stand in for a database read
    /// (one of every name, or one with lists: those are not cached).
    pub fn encode(&self) -> Option<Vec<u8>> {
        let names = self.names.as_ref().filter(|_| !self.lists)?;
        let mut out = vec![CACHE_VERSION];
        out.extend_from_slice(&(self.packages.len() as u32).to_le_bytes());
        for p in &self.packages {
            out.push(p.manager as u8);
            put(&mut out, p.name.as_bytes());
            put(&mut out, p.version.as_bytes());
        }
        let mut sorted: Vec<&Vec<u8>> = names.iter().collect();
        sorted.sort();
        out.extend_from_slice(&(sorted.len() as u32).to_le_bytes());
        for n in sorted {
            put(&mut out, n);
        }
        let mut files: Vec<(&Vec<u8>, &Vec<Owner>)> = self.files.iter().collect();
        files.sort_by(|a, b| a.0.cmp(b.0));
        out.extend_from_slice(&(files.len() as u32).to_le_bytes());
        for (path, owners) in files {
            put(&mut out, path);
            out.extend_from_slice(&(owners.len().min(u16::MAX as usize) as u16).to_le_bytes());
            for o in owners.iter().take(u16::MAX as usize) {
                out.extend_from_slice(&o.pkg.to_le_bytes());
                let flags = u8::from(o.config)
                    | u8::from(o.mode.is_some()) << 1
                    | u8::from(o.digest.is_some()) << 2;
                out.push(flags);
                if let Some(m) = o.mode {
                    out.extend_from_slice(&m.to_le_bytes());
                }
                if let Some(d) = &o.digest {
                    put(&mut out, &d.encode());
                }
            }
        }
        out.extend_from_slice(&(self.listed as u64).to_le_bytes());
        Some(out)
    }

    /// Reads what [`PackageDb::encode`] wrote; `None` on anything
    /// malformed (the caller then reads the databases).
    pub fn decode(b: &[u8]) -> Option<PackageDb> {
        let mut r = crate::facts::Cursor(b);
        if r.u8()? != CACHE_VERSION {
            return None;
        }
        // Counts are bounded by the bytes left: each item takes at least
        // a few, so nothing is allocated past what the input holds.
        let room = |r: &crate::facts::Cursor, n: u32, least: usize| -> Option<usize> {
            let n = n as usize;
            (n.checked_mul(least)? <= r.0.len()).then_some(n)
        };
        let mut db = PackageDb::default();
        let n = r.u32()?;
        let n = room(&r, n, 5)?;
        db.packages.reserve_exact(n);
        for _ in 0..n {
            let manager = match r.u8()? {
                0 => Manager::Dpkg,
                1 => Manager::Rpm,
                2 => Manager::Apk,
                _ => return None,
            };
            let name = String::from_utf8(r.bytes(usize::from(u16::MAX))?).ok()?;
            let version = String::from_utf8(r.bytes(usize::from(u16::MAX))?).ok()?;
            db.packages.push(Package {
                name,
                version,
                manager,
            });
        }
        let n = r.u32()?;
        let n = room(&r, n, 2)?;
        let mut names = crate::fasthash::set_with_capacity(n);
        for _ in 0..n {
            names.insert(r.bytes(usize::from(u16::MAX))?);
        }
        db.names = Some(names);
        let n = r.u32()?;
        let n = room(&r, n, 4)?;
        db.files.reserve(n);
        for _ in 0..n {
            let path = r.bytes(usize::from(u16::MAX))?;
            let k = r.u16()?;
            let k = room(&r, u32::from(k), 5)?;
            let mut owners = Vec::with_capacity(k);
            for _ in 0..k {
                let pkg = r.u32()?;
                if pkg as usize >= db.packages.len() {
                    return None;
                }
                let flags = r.u8()?;
                if flags & !0b111 != 0 {
                    return None;
                }
                let mode = if flags & 2 != 0 { Some(r.u32()?) } else { None };
                let digest = if flags & 4 != 0 {
                    Some(FileDigest::decode(&r.bytes(usize::from(u8::MAX))?)?)
                } else {
                    None
                };
                owners.push(Owner {
                    pkg,
                    digest,
                    config: flags & 1 != 0,
                    mode,
                });
            }
            db.files.insert(path, owners);
        }
        db.listed = usize::try_from(r.u64()?).ok()?;
        r.is_empty().then_some(db)
    }

    /// The package managers that fed this index.
    pub fn managers(&self) -> Vec<Manager> {
        let mut v: Vec<Manager> = Vec::new();
        for p in &self.packages {
            if !v.contains(&p.manager) {
                v.push(p.manager);
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the scan is told to compute: each path with a digest, under
    /// the algorithm of each package's digest (two for a path two
    /// databases record differently), none for a claim without a digest.
    #[test]
    fn digest_algos_name_each_path_with_each_algorithm_recorded() {
        let mut db = PackageDb::default();
        let p = db.add_package(Package {
            name: "a".into(),
            version: "1".into(),
            manager: Manager::Rpm,
        });
        let q = db.add_package(Package {
            name: "b".into(),
            version: "1".into(),
            manager: Manager::Dpkg,
        });
        let owner = |pkg, digest| Owner {
            pkg,
            digest,
            ..Owner::default()
        };
        db.add(b"/x".to_vec(), owner(p, Some(FileDigest::Sha256([1; 32]))));
        db.add(b"/x".to_vec(), owner(q, Some(FileDigest::Md5([2; 16]))));
        db.add(b"/y".to_vec(), owner(p, Some(FileDigest::Sha512([3; 64]))));
        db.add(b"/z".to_vec(), owner(p, None));
        let mut got: Vec<(Vec<u8>, Algo)> =
            db.digest_algos().map(|(p, a)| (p.to_vec(), a)).collect();
        got.sort();
        assert_eq!(
            got,
            [
                (b"/x".to_vec(), Algo::Md5),
                (b"/x".to_vec(), Algo::Sha256),
                (b"/y".to_vec(), Algo::Sha512),
            ]
        );
    }

    #[test]
    fn merge_rebases_package_indices() {
        let mut a = PackageDb::default();
        let p = a.add_package(Package {
            name: "a".into(),
            version: "1".into(),
            manager: Manager::Dpkg,
        });
        a.add(
            b"/x".to_vec(),
            Owner {
                pkg: p,
                ..Owner::default()
            },
        );
        let mut b = PackageDb::default();
        let q = b.add_package(Package {
            name: "b".into(),
            version: "2".into(),
            manager: Manager::Rpm,
        });
        b.add(
            b"/x".to_vec(),
            Owner {
                pkg: q,
                ..Owner::default()
            },
        );
        a.merge(b);
        let o = a.owners(b"/x");
        assert_eq!(o.len(), 2);
        assert_eq!(a.package(&o[1]).unwrap().name, "b");
        assert_eq!(a.managers(), vec![Manager::Dpkg, Manager::Rpm]);
    }
}
