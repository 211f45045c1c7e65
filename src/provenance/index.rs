//! The package index every package manager feeds: who owns which
//! canonical path, with which digest (and of which algorithm), whether it is
//! a config file, its mode. dpkg ([`super::dpkg`]), rpm ([`super::rpm`]) and
//! apk ([`super::apk`]) each load into one [`PackageDb`], and several of
//! them merge into one, so every rule that judges a package (ownership, a
//! digest mismatch, an update) is written once.

use std::collections::{HashMap, HashSet};

use md5::Digest;

/// A digest a package database records for a file. dpkg's md5sums are MD5,
/// rpm's FILEDIGESTS usually SHA-256 (any of FILEDIGESTALGO's), apk's `Z:Q1`
/// SHA-1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileDigest {
    Md5([u8; 16]),
    Sha1([u8; 20]),
    Sha224([u8; 28]),
    Sha256([u8; 32]),
    Sha384([u8; 48]),
    Sha512([u8; 64]),
}

/// The algorithm of a [`FileDigest`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algo {
    Md5,
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl Algo {
    pub const ALL: [Algo; 6] = [
        Algo::Md5,
        Algo::Sha1,
        Algo::Sha224,
        Algo::Sha256,
        Algo::Sha384,
        Algo::Sha512,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Algo::Md5 => "md5",
            Algo::Sha1 => "sha1",
            Algo::Sha224 => "sha224",
            Algo::Sha256 => "sha256",
            Algo::Sha384 => "sha384",
            Algo::Sha512 => "sha512",
        }
    }

    /// The byte the baseline stores it as.
    fn code(self) -> u8 {
        match self {
            Algo::Md5 => 1,
            Algo::Sha1 => 2,
            Algo::Sha224 => 3,
            Algo::Sha256 => 4,
            Algo::Sha384 => 5,
            Algo::Sha512 => 6,
        }
    }
}

impl FileDigest {
    pub fn algo(&self) -> Algo {
        match self {
            FileDigest::Md5(_) => Algo::Md5,
            FileDigest::Sha1(_) => Algo::Sha1,
            FileDigest::Sha224(_) => Algo::Sha224,
            FileDigest::Sha256(_) => Algo::Sha256,
            FileDigest::Sha384(_) => Algo::Sha384,
            FileDigest::Sha512(_) => Algo::Sha512,
        }
    }

    pub fn bytes(&self) -> &[u8] {
        match self {
            FileDigest::Md5(b) => b,
            FileDigest::Sha1(b) => b,
            FileDigest::Sha224(b) => b,
            FileDigest::Sha256(b) => b,
            FileDigest::Sha384(b) => b,
            FileDigest::Sha512(b) => b,
        }
    }

    /// A digest of `algo` from its raw bytes; `None` on a wrong length.
    pub fn from_bytes(algo: Algo, b: &[u8]) -> Option<FileDigest> {
        Some(match algo {
            Algo::Md5 => FileDigest::Md5(b.try_into().ok()?),
            Algo::Sha1 => FileDigest::Sha1(b.try_into().ok()?),
            Algo::Sha224 => FileDigest::Sha224(b.try_into().ok()?),
            Algo::Sha256 => FileDigest::Sha256(b.try_into().ok()?),
            Algo::Sha384 => FileDigest::Sha384(b.try_into().ok()?),
            Algo::Sha512 => FileDigest::Sha512(b.try_into().ok()?),
        })
    }

    /// A digest of `algo` from lowercase or uppercase hex.
    pub fn from_hex(algo: Algo, hex: &[u8]) -> Option<FileDigest> {
        if hex.len() % 2 != 0 || hex.len() > 128 {
            return None;
        }
        let mut raw = Vec::with_capacity(hex.len() / 2);
        for pair in hex.chunks_exact(2) {
            let hi = (*pair.first()? as char).to_digit(16)?;
            let lo = (*pair.get(1)? as char).to_digit(16)?;
            raw.push((hi * 16 + lo) as u8);
        }
        FileDigest::from_bytes(algo, &raw)
    }

    /// `algo byte ‖ digest`, as the baseline keeps it.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![self.algo().code()];
        v.extend_from_slice(self.bytes());
        v
    }

    pub fn decode(b: &[u8]) -> Option<FileDigest> {
        let (code, rest) = b.split_first()?;
        let algo = Algo::ALL.into_iter().find(|a| a.code() == *code)?;
        FileDigest::from_bytes(algo, rest)
    }
}

/// Streams content once into every algorithm asked for.
pub struct MultiHasher {
    hashers: Vec<(Algo, Box<dyn DynHasher>)>,
}

/// An object-safe view of the RustCrypto hashers.
pub trait DynHasher: Send {
    fn update(&mut self, data: &[u8]);
    fn finish(self: Box<Self>) -> Vec<u8>;
}

impl<D: Digest + Send + 'static> DynHasher for D {
    fn update(&mut self, data: &[u8]) {
        Digest::update(self, data);
    }
    fn finish(self: Box<Self>) -> Vec<u8> {
        (*self).finalize().to_vec()
    }
}

impl MultiHasher {
    pub fn new(algos: &[Algo]) -> MultiHasher {
        let mut hashers: Vec<(Algo, Box<dyn DynHasher>)> = Vec::new();
        for &a in algos {
            if hashers.iter().any(|(b, _)| *b == a) {
                continue;
            }
            let h: Box<dyn DynHasher> = match a {
                Algo::Md5 => Box::new(md5::Md5::new()),
                Algo::Sha1 => Box::new(sha1::Sha1::new()),
                Algo::Sha224 => Box::new(sha2::Sha224::new()),
                Algo::Sha256 => Box::new(sha2::Sha256::new()),
                Algo::Sha384 => Box::new(sha2::Sha384::new()),
                Algo::Sha512 => Box::new(sha2::Sha512::new()),
            };
            hashers.push((a, h));
        }
        MultiHasher { hashers }
    }

    pub fn update(&mut self, data: &[u8]) {
        for (_, h) in &mut self.hashers {
            h.update(data);
        }
    }

    pub fn finish(self) -> Vec<FileDigest> {
        self.hashers
            .into_iter()
            .filter_map(|(a, h)| FileDigest::from_bytes(a, &h.finish()))
            .collect()
    }
}

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
    files: HashMap<Vec<u8>, Vec<Owner>>,
    /// What a package lists beyond the files it has digests for (dpkg's
    /// `.list`: symlinks, directories), by canonical path: the packages
    /// (indices) that list it. Loaded only on request
    /// (`DpkgDb::load_with_lists`).
    others: HashMap<Vec<u8>, Vec<u32>>,
    /// Files listed by the packages, before filtering.
    listed: usize,
    /// The file names kept (`None`: all of them).
    names: Option<HashSet<Vec<u8>>>,
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
        let v = self.others.entry(key).or_default();
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
        self.names = names;
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
        let mut keep: HashSet<Vec<u8>> = names
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
            others: HashMap::new(),
            listed: self.listed,
            names: Some(keep),
            lists: false,
            pinned: self.pinned.clone(),
        }
    }

    /// Drops the claims on files not named in `names` (nor pinned), lists
    /// included: what a read cut to those names would have kept.
    pub fn retain_names(&mut self, names: &HashSet<Vec<u8>>) {
        let mut keep: HashSet<Vec<u8>> = names
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
        let v = self.files.entry(key).or_default();
        if !v.contains(&o) {
            v.push(o);
        }
    }

    /// The paths some package records a digest of algorithm `algo` for.
    pub fn paths_with(&self, algo: Algo) -> impl Iterator<Item = &[u8]> + '_ {
        self.files
            .iter()
            .filter(move |(_, o)| o.iter().any(|o| o.digest.is_some_and(|d| d.algo() == algo)))
            .map(|(p, _)| p.as_slice())
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
        let mut names = HashSet::with_capacity(n);
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

    #[test]
    fn digests_round_trip_and_reject_wrong_lengths() {
        let d = FileDigest::from_hex(Algo::Sha256, &[b'a'; 64]).unwrap();
        assert_eq!(FileDigest::decode(&d.encode()), Some(d));
        assert!(FileDigest::from_hex(Algo::Sha256, &[b'a'; 40]).is_none());
        assert!(FileDigest::from_hex(Algo::Md5, b"zz").is_none());
        assert!(FileDigest::decode(&[9, 1, 2]).is_none());
        assert!(FileDigest::decode(&[]).is_none());
    }

    #[test]
    fn one_pass_gives_every_algorithm() {
        let mut h = MultiHasher::new(&[Algo::Md5, Algo::Sha256, Algo::Md5, Algo::Sha1]);
        h.update(b"hello\n");
        let v = h.finish();
        assert_eq!(v.len(), 3);
        let hex =
            |d: &FileDigest| -> String { d.bytes().iter().map(|b| format!("{b:02x}")).collect() };
        assert_eq!(hex(&v[0]), "b1946ac92492d2347c6235b4d2611184");
        assert_eq!(
            hex(&v[1]),
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
        );
        assert_eq!(hex(&v[2]), "f572d396fae9206628714fb2ce00f72e94f2258f");
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
