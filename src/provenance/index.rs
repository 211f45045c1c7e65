//! The package index every package manager feeds: who owns which
//! canonical path, with which digest (and of which algorithm), whether it is
//! a config file, its mode. dpkg ([`super::dpkg`]), rpm ([`super::rpm`]) and
//! apk ([`super::apk`]) each load into one [`PackageDb`], and several of
//! them merge into one, so every rule that judges a package (ownership, a
//! digest mismatch, an update) is written once.

use std::collections::HashSet;

use super::scope::Scope;
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

/// The version byte of [`PackageDb::encode`]'s output (2: with the scope
/// the claims were cut to; an index of version 1 is not read, and the
/// databases are read instead).
const CACHE_VERSION: u8 = 2;

/// A length-prefixed (u16) byte string; longer ones are cut (no name,
/// version or path of a package database comes near).
fn put(out: &mut Vec<u8>, b: &[u8]) {
    let b = &b[..b.len().min(usize::from(u16::MAX))];
    out.extend_from_slice(&(b.len() as u16).to_le_bytes());
    out.extend_from_slice(b);
}

/// The end of a chain, an empty table slot, no digest.
const NONE: u32 = u32::MAX;
/// Set in a claim's digest reference: an index into the digests of other
/// algorithms than MD5 (rpm's SHA-256, apk's SHA-1), not into the MD5s.
const OTHER: u32 = 1 << 31;
/// A claim's flags.
const CONFIG: u8 = 1;
const MODE: u8 = 2;

/// One path: its bytes in the arena, the first of its claims with or
/// without a digest, the first of the packages that list it beyond those.
#[derive(Clone, Copy, Debug)]
struct Entry {
    off: u32,
    len: u32,
    files: u32,
    others: u32,
}

/// One package's claim on a path (chained per path in the order they
/// came): 16 bytes, the digest in a side array by algorithm.
#[derive(Clone, Copy, Debug)]
struct Claim {
    pkg: u32,
    next: u32,
    digest: u32,
    flags: u8,
}

/// A package listing a path without a digest (a symlink, a directory).
#[derive(Clone, Copy, Debug)]
struct Listing {
    pkg: u32,
    next: u32,
}

/// The loaded index, keyed by canonical path.
///
/// Laid out for the ~100k paths a desktop's dpkg lists, held through the
/// walk: every path's bytes in one arena, a table of entry indices hashed
/// with a per-index random seed ([`crate::fasthash`]: the paths come from
/// package lists and scanned trees), the claims in one array chained per
/// path, MD5s (what dpkg records) at 16 bytes each and other digests apart.
/// A path of two owners (a shared file) has two chained claims.
#[derive(Debug, Default)]
pub struct PackageDb {
    pub packages: Vec<Package>,
    arena: Vec<u8>,
    entries: Vec<Entry>,
    /// Open addressing, linear probing, at most 3/4 full; a power of two
    /// long (or empty).
    table: Vec<u32>,
    hasher: crate::fasthash::State,
    claims: Vec<Claim>,
    md5s: Vec<[u8; 16]>,
    digests: Vec<FileDigest>,
    /// The mode of each claim that records one (rpm, apk), by claim.
    modes: FastMap<u32, u32>,
    listings: Vec<Listing>,
    /// Paths holding at least one claim (with or without a digest).
    with_claims: usize,
    /// Files listed by the packages, before filtering.
    listed: usize,
    /// The file names kept (`None`: all of them).
    names: Option<FastSet<Vec<u8>>>,
    /// Whether the lists beyond the digests (dpkg's `.list`: symlinks,
    /// directories) were loaded (`DpkgDb::load_with_lists`).
    lists: bool,
    /// Names every cut keeps (those a dpkg diversion involves: a claim
    /// moves from one name to the other).
    pinned: Box<[Vec<u8>]>,
    /// The paths claims were kept on (`None`: every path).
    scope: Option<Box<Scope>>,
}

impl PackageDb {
    fn path(&self, e: &Entry) -> &[u8] {
        let start = e.off as usize;
        self.arena
            .get(start..start + e.len as usize)
            .unwrap_or_default()
    }

    fn slot(&self, key: &[u8]) -> usize {
        let mask = self.table.len().wrapping_sub(1);
        (std::hash::BuildHasher::hash_one(&self.hasher, key) as usize) & mask
    }

    /// The index of `key`'s entry, if it has one.
    fn find_at(&self, key: &[u8]) -> Option<usize> {
        if self.table.is_empty() {
            return None;
        }
        let mask = self.table.len() - 1;
        let mut i = self.slot(key);
        loop {
            let k = *self.table.get(i)? as usize;
            if self.path(self.entries.get(k)?) == key {
                return Some(k);
            }
            i = (i + 1) & mask;
        }
    }

    /// The entry of `key`, if it has one.
    fn find(&self, key: &[u8]) -> Option<&Entry> {
        self.entries.get(self.find_at(key)?)
    }

    /// Room in the table for `n` entries in all.
    fn grow(&mut self, n: usize) {
        let want = (n.saturating_mul(4) / 3 + 1).next_power_of_two().max(16);
        if want <= self.table.len() {
            return;
        }
        self.table = vec![NONE; want];
        let mask = want - 1;
        for (k, e) in self.entries.iter().enumerate() {
            let mut i = self.slot(self.path(e));
            while self.table.get(i).is_some_and(|&t| t != NONE) {
                i = (i + 1) & mask;
            }
            if let Some(t) = self.table.get_mut(i) {
                *t = k as u32;
            }
        }
    }

    /// The index of `key`'s entry, made if it has none; `None` only past
    /// 4 GiB of paths or 4G entries (no package database comes near).
    fn entry(&mut self, key: &[u8]) -> Option<usize> {
        self.grow(self.entries.len() + 1);
        let mask = self.table.len() - 1;
        let mut i = self.slot(key);
        loop {
            match *self.table.get(i)? {
                NONE => break,
                k => {
                    if self.path(self.entries.get(k as usize)?) == key {
                        return Some(k as usize);
                    }
                }
            }
            i = (i + 1) & mask;
        }
        let off = u32::try_from(self.arena.len()).ok()?;
        let len = u32::try_from(key.len()).ok()?;
        off.checked_add(len)?;
        let k = u32::try_from(self.entries.len())
            .ok()
            .filter(|&k| k != NONE)?;
        self.arena.extend_from_slice(key);
        self.entries.push(Entry {
            off,
            len,
            files: NONE,
            others: NONE,
        });
        *self.table.get_mut(i)? = k;
        Some(k as usize)
    }

    /// The claims chained from `head`, with their indices.
    fn chain(&self, head: u32) -> impl Iterator<Item = (u32, &Claim)> + '_ {
        std::iter::successors(
            self.claims.get(head as usize).map(|c| (head, c)),
            move |(_, c)| self.claims.get(c.next as usize).map(|n| (c.next, n)),
        )
    }

    fn listings(&self, head: u32) -> impl Iterator<Item = &Listing> + '_ {
        std::iter::successors(self.listings.get(head as usize), move |l| {
            self.listings.get(l.next as usize)
        })
    }

    fn digest(&self, d: u32) -> Option<FileDigest> {
        match d {
            NONE => None,
            d if d & OTHER != 0 => self.digests.get((d & !OTHER) as usize).copied(),
            d => self.md5s.get(d as usize).map(|m| FileDigest::Md5(*m)),
        }
    }

    fn algo(&self, d: u32) -> Option<Algo> {
        match d {
            NONE => None,
            d if d & OTHER != 0 => self.digests.get((d & !OTHER) as usize).map(|x| x.algo()),
            _ => Some(Algo::Md5),
        }
    }

    fn owner(&self, i: u32, c: &Claim) -> Owner {
        Owner {
            pkg: c.pkg,
            digest: self.digest(c.digest),
            config: c.flags & CONFIG != 0,
            mode: (c.flags & MODE != 0)
                .then(|| self.modes.get(&i).copied())
                .flatten(),
        }
    }

    fn owners_at(&self, head: u32) -> Vec<Owner> {
        self.chain(head).map(|(i, c)| self.owner(i, c)).collect()
    }

    /// Every path with claims (with or without a digest) and its chain.
    fn claimed(&self) -> impl Iterator<Item = (&[u8], u32)> + '_ {
        self.entries
            .iter()
            .filter(|e| e.files != NONE)
            .map(|e| (self.path(e), e.files))
    }

    /// Who owns `path` (canonical, as the scan records it), in the order
    /// the claims were added.
    pub fn owners(&self, path: &[u8]) -> Vec<Owner> {
        self.find(path)
            .map_or_else(Vec::new, |e| self.owners_at(e.files))
    }

    pub fn package(&self, o: &Owner) -> Option<&Package> {
        self.packages.get(o.pkg as usize)
    }

    /// Every package that claims `path` in any way (a file with or without
    /// a digest, a symlink, a directory). Complete only for databases
    /// loaded with lists and for names [`PackageDb::knows_name`] accepts.
    pub fn claimants(&self, path: &[u8]) -> Vec<&Package> {
        let Some(e) = self.find(path) else {
            return Vec::new();
        };
        let mut out: Vec<&Package> = self
            .chain(e.files)
            .filter_map(|(_, c)| self.packages.get(c.pkg as usize))
            .collect();
        for l in self.listings(e.others) {
            if let Some(p) = self.packages.get(l.pkg as usize) {
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
        let e = self.find(path)?;
        self.chain(e.files)
            .find_map(|(_, c)| self.packages.get(c.pkg as usize))
            .or_else(|| {
                self.listings(e.others)
                    .find_map(|l| self.packages.get(l.pkg as usize))
            })
    }

    /// Whether this database can answer [`PackageDb::claimants`] for a path
    /// named `name`: it was loaded with lists and did not leave the name
    /// out.
    pub fn knows_name(&self, name: &[u8]) -> bool {
        self.lists && self.names.as_ref().is_none_or(|n| n.contains(name))
    }

    /// Whether this database answers [`PackageDb::claimants`] for every
    /// path (read with lists, cut to no names nor scope).
    pub fn lists_every_name(&self) -> bool {
        self.lists && self.names.is_none() && self.scope.is_none()
    }

    /// Whether claims on files named `name` were kept (the index was not
    /// cut to names leaving it out).
    pub fn keeps_name(&self, name: &[u8]) -> bool {
        self.names.as_ref().is_none_or(|n| n.contains(name))
    }

    /// Whether claims on the canonical `path` were kept (the index was not
    /// cut to a scope leaving it out).
    pub fn holds(&self, path: &[u8]) -> bool {
        self.scope.as_ref().is_none_or(|s| s.holds(path))
    }

    /// Whether this index answers for a record at `path`: claims on its
    /// name and on its place were both kept.
    pub fn answers_for(&self, path: &[u8]) -> bool {
        self.keeps_name(crate::record::file_name(path)) && self.holds(path)
    }

    /// The scope the claims were cut to (`None`: every path).
    pub fn scope(&self) -> Option<&Scope> {
        self.scope.as_deref()
    }

    /// Records that package `pkg` lists `key` without a digest (a symlink,
    /// a directory).
    pub fn add_other(&mut self, key: impl AsRef<[u8]>, pkg: u32) {
        let Some(k) = self.entry(key.as_ref()) else {
            return;
        };
        let Some(head) = self.entries.get(k).map(|e| e.others) else {
            return;
        };
        let mut last = None;
        let mut i = head;
        while let Some(l) = self.listings.get(i as usize) {
            if l.pkg == pkg {
                return;
            }
            last = Some(i);
            i = l.next;
        }
        let n = self.listings.len() as u32;
        self.listings.push(Listing { pkg, next: NONE });
        match last.and_then(|l| self.listings.get_mut(l as usize)) {
            Some(l) => l.next = n,
            None => {
                if let Some(e) = self.entries.get_mut(k) {
                    e.others = n;
                }
            }
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
        self.grow(self.entries.len() + files + others);
        self.claims.reserve(files);
        self.md5s.reserve(files);
    }

    /// Gives back what growing left unused (once an index is loaded).
    pub fn shrink_to_fit(&mut self) {
        self.arena.shrink_to_fit();
        self.entries.shrink_to_fit();
        self.claims.shrink_to_fit();
        self.md5s.shrink_to_fit();
        self.digests.shrink_to_fit();
        self.listings.shrink_to_fit();
        self.modes.shrink_to_fit();
    }

    /// Names [`PackageDb::cut_to`] always keeps.
    pub fn set_pinned(&mut self, names: HashSet<Vec<u8>>) {
        self.pinned = names.into_iter().collect();
    }

    /// Records that only claims on paths `scope` holds are kept (the
    /// loader left the others out).
    pub fn set_scope(&mut self, scope: Option<Scope>) {
        self.scope = scope.map(Box::new);
    }

    /// An empty index with this one's packages and what it was read with
    /// (the count listed, pinned names, scope), `names` the names kept.
    fn emptied(&self, names: Option<FastSet<Vec<u8>>>, lists: bool) -> PackageDb {
        PackageDb {
            packages: self.packages.clone(),
            listed: self.listed,
            names,
            lists,
            pinned: self.pinned.clone(),
            scope: self.scope.clone(),
            ..PackageDb::default()
        }
    }

    /// Copies `path`'s claims (chain `files`) and listings (`others`)
    /// from `from`.
    fn copy_entry(&mut self, from: &PackageDb, path: &[u8], files: u32, others: u32) {
        for (i, c) in from.chain(files) {
            self.add(path, from.owner(i, c));
        }
        for l in from.listings(others) {
            self.add_other(path, l.pkg);
        }
    }

    /// The names a cut to `names` keeps: those asked and the pinned ones,
    /// as far as this index kept them.
    fn keep(&self, names: &HashSet<Vec<u8>>) -> FastSet<Vec<u8>> {
        let mut keep: FastSet<Vec<u8>> = names
            .iter()
            .chain(self.pinned.iter())
            .filter(|n| self.keeps_name(n))
            .cloned()
            .collect();
        keep.shrink_to_fit();
        keep
    }

    /// A copy cut to claims on files named in `names` (and the pinned
    /// names), without the lists: the index that reading the database
    /// with that cut gives, taken from one read of every name instead of
    /// a second read.
    pub fn cut_to(&self, names: &HashSet<Vec<u8>>) -> PackageDb {
        let keep = self.keep(names);
        let mut out = self.emptied(None, false);
        for (path, head) in self.claimed() {
            if keep.contains(crate::record::file_name(path)) {
                out.copy_entry(self, path, head, NONE);
            }
        }
        out.names = Some(keep);
        out.shrink_to_fit();
        out
    }

    /// Drops the claims on files not named in `names` (nor pinned), lists
    /// included: what a read cut to those names would have kept.
    pub fn retain_names(&mut self, names: &HashSet<Vec<u8>>) {
        let keep = self.keep(names);
        self.retain(|p| keep.contains(crate::record::file_name(p)));
        self.names = Some(keep);
    }

    /// Drops the claims on paths `scope` does not hold, and records the
    /// cut (the narrower of it and any cut before).
    pub fn retain_within(&mut self, scope: &Scope) {
        self.retain(|p| scope.holds(p));
        self.scope = Some(Box::new(match self.scope.as_deref() {
            Some(s) => Scope::narrower(s, scope),
            None => scope.clone(),
        }));
    }

    /// Keeps the paths `keep` accepts, with all their claims and lists.
    fn retain(&mut self, keep: impl Fn(&[u8]) -> bool) {
        let names = self.names.take();
        let mut out = self.emptied(names, self.lists);
        for e in &self.entries {
            let path = self.path(e);
            if (e.files != NONE || e.others != NONE) && keep(path) {
                out.copy_entry(self, path, e.files, e.others);
            }
        }
        out.shrink_to_fit();
        *self = out;
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
    pub fn add(&mut self, key: impl AsRef<[u8]>, o: Owner) {
        let Some(k) = self.entry(key.as_ref()) else {
            return;
        };
        let Some(head) = self.entries.get(k).map(|e| e.files) else {
            return;
        };
        let mut last = None;
        for (i, c) in self.chain(head) {
            if self.owner(i, c) == o {
                return;
            }
            last = Some(i);
        }
        let digest = match o.digest {
            None => NONE,
            Some(FileDigest::Md5(m)) => {
                self.md5s.push(m);
                (self.md5s.len() - 1) as u32
            }
            Some(d) => {
                self.digests.push(d);
                (self.digests.len() - 1) as u32 | OTHER
            }
        };
        let n = self.claims.len() as u32;
        let flags = if o.config { CONFIG } else { 0 } | if o.mode.is_some() { MODE } else { 0 };
        self.claims.push(Claim {
            pkg: o.pkg,
            next: NONE,
            digest,
            flags,
        });
        if let Some(m) = o.mode {
            self.modes.insert(n, m);
        }
        match last.and_then(|l| self.claims.get_mut(l as usize)) {
            Some(c) => c.next = n,
            None => {
                if let Some(e) = self.entries.get_mut(k) {
                    e.files = n;
                    self.with_claims += 1;
                }
            }
        }
    }

    /// How many paths hold claims with or without a digest (an upper bound
    /// on [`PackageDb::digest_algos`]' distinct paths).
    pub fn digest_count(&self) -> usize {
        self.with_claims
    }

    /// The paths some package records a digest of algorithm `algo` for.
    pub fn paths_with(&self, algo: Algo) -> impl Iterator<Item = &[u8]> + '_ {
        self.claimed()
            .filter(move |(_, head)| {
                self.chain(*head)
                    .any(|(_, c)| self.algo(c.digest) == Some(algo))
            })
            .map(|(p, _)| p)
    }

    /// Every path some package records a digest for, with the digest's
    /// algorithm (a path twice when two packages record two algorithms).
    pub fn digest_algos(&self) -> impl Iterator<Item = (&[u8], Algo)> + '_ {
        self.claimed().flat_map(move |(p, head)| {
            self.chain(head)
                .filter_map(move |(_, c)| self.algo(c.digest).map(|a| (p, a)))
        })
    }

    /// Removes and returns the claims on `key`.
    pub fn take(&mut self, key: &[u8]) -> Vec<Owner> {
        let Some(k) = self.find_at(key) else {
            return Vec::new();
        };
        let Some(head) = self.entries.get(k).map(|e| e.files) else {
            return Vec::new();
        };
        let out = self.owners_at(head);
        // (The claims stay in the array, unreachable: diversions are few.)
        if let Some(e) = self.entries.get_mut(k).filter(|e| e.files != NONE) {
            e.files = NONE;
            self.with_claims -= 1;
        }
        out
    }

    /// Merges `other` in (several package managers in one root).
    pub fn merge(&mut self, other: PackageDb) {
        let base = self.packages.len() as u32;
        self.packages.extend(other.packages.iter().cloned());
        self.listed += other.listed;
        self.pinned = self
            .pinned
            .iter()
            .chain(other.pinned.iter())
            .cloned()
            .collect();
        // Lists and the name cut describe dpkg's part; a merged index
        // answers claimants only as far as both parts do, and for the
        // paths both parts kept.
        self.lists = self.lists && other.lists;
        self.scope = match (self.scope.take(), other.scope.as_deref()) {
            (None, b) => b.cloned().map(Box::new),
            (Some(a), None) => Some(a),
            (Some(a), Some(b)) => Some(Box::new(Scope::narrower(&a, b))),
        };
        for e in &other.entries {
            let path = other.path(e);
            for (i, c) in other.chain(e.files) {
                let mut o = other.owner(i, c);
                o.pkg += base;
                self.add(path, o);
            }
            for l in other.listings(e.others) {
                self.add_other(path, l.pkg + base);
            }
        }
    }

    /// The index as a generation stores it (see `provenance::cache`):
    /// packages, the names it was cut to, the scope, and the claims on the
    /// paths it kept. `None` for an index that cannot stand in for a
    /// database read (one of every name, or one with lists: those are not
    /// cached).
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
        match &self.scope {
            None => out.push(0),
            Some(s) => {
                out.push(1);
                s.encode(&mut out, put);
            }
        }
        let mut files: Vec<(&[u8], u32)> = self.claimed().collect();
        files.sort_by(|a, b| a.0.cmp(b.0));
        out.extend_from_slice(&(files.len() as u32).to_le_bytes());
        for (path, head) in files {
            put(&mut out, path);
            let owners = self.owners_at(head);
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
        db.scope = match r.u8()? {
            0 => None,
            1 => Some(Box::new(Scope::decode(&mut r)?)),
            _ => return None,
        };
        let n = r.u32()?;
        let n = room(&r, n, 4)?;
        db.reserve(n, 0);
        for _ in 0..n {
            let path = r.bytes(usize::from(u16::MAX))?;
            let k = r.u16()?;
            let k = room(&r, u32::from(k), 5)?;
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
                db.add(
                    &path,
                    Owner {
                        pkg,
                        digest,
                        config: flags & 1 != 0,
                        mode,
                    },
                );
            }
        }
        db.listed = usize::try_from(r.u64()?).ok()?;
        db.shrink_to_fit();
        r.is_empty().then_some(db)
    }

    /// The heap bytes this index holds, from its capacities (a hash set
    /// slot is its entry plus one control byte): what its memory is
    /// measured by.
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let packages: usize = self
            .packages
            .iter()
            .map(|p| size_of::<Package>() + p.name.capacity() + p.version.capacity())
            .sum();
        let names = self.names.as_ref().map_or(0, |n| {
            n.capacity() * (size_of::<Vec<u8>>() + 1)
                + n.iter().map(|k| k.capacity()).sum::<usize>()
        });
        packages
            + names
            + self.arena.capacity()
            + self.entries.capacity() * size_of::<Entry>()
            + self.table.capacity() * size_of::<u32>()
            + self.claims.capacity() * size_of::<Claim>()
            + self.md5s.capacity() * 16
            + self.digests.capacity() * size_of::<FileDigest>()
            + self.modes.capacity() * (size_of::<(u32, u32)>() + 1)
            + self.listings.capacity() * size_of::<Listing>()
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
        db.add(b"/x", owner(p, Some(FileDigest::Sha256([1; 32]))));
        db.add(b"/x", owner(q, Some(FileDigest::Md5([2; 16]))));
        db.add(b"/y", owner(p, Some(FileDigest::Sha512([3; 64]))));
        db.add(b"/z", owner(p, None));
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
            b"/x",
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
            b"/x",
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

    fn pkg(db: &mut PackageDb, name: &str, manager: Manager) -> u32 {
        db.add_package(Package {
            name: name.into(),
            version: "1".into(),
            manager,
        })
    }

    fn scope(dirs: &[&str]) -> Scope {
        Scope::new(dirs.iter().map(|d| (d.as_bytes().to_vec(), true)), [])
    }

    /// Every kind of claim (MD5, SHA-256, SHA-512, none; config; a mode;
    /// two owners of one path) comes back from the encoding as it went in,
    /// with the names and the scope it was cut to; an index encoded by the
    /// build before (version 1, no scope) is not read.
    #[test]
    fn the_compact_index_round_trips_every_kind_of_claim() {
        let mut db = PackageDb::default();
        let a = pkg(&mut db, "a", Manager::Dpkg);
        let b = pkg(&mut db, "b.x86_64", Manager::Rpm);
        let claims = [
            (
                &b"/usr/lib/x"[..],
                a,
                Some(FileDigest::Md5([1; 16])),
                false,
                None,
            ),
            (
                b"/usr/lib/x",
                b,
                Some(FileDigest::Sha256([2; 32])),
                true,
                Some(0o100755),
            ),
            (
                b"/usr/lib/y",
                b,
                Some(FileDigest::Sha512([3; 64])),
                false,
                Some(0o100644),
            ),
            (b"/usr/lib/z", a, None, false, None),
        ];
        for (p, pkg, digest, config, mode) in claims {
            db.add(
                p,
                Owner {
                    pkg,
                    digest,
                    config,
                    mode,
                },
            );
        }
        db.add_other(b"/usr/lib/link", a);
        db.count_listed(99);
        db.set_names(Some(
            ["x", "y", "z", "link"]
                .iter()
                .map(|n| n.as_bytes().to_vec())
                .collect(),
        ));
        db.set_scope(Some(scope(&["/usr/lib"])));
        let bytes = db.encode().unwrap();
        let back = PackageDb::decode(&bytes).unwrap();
        for (p, ..) in claims {
            assert_eq!(back.owners(p), db.owners(p));
        }
        assert_eq!(back.owners(b"/usr/lib/x").len(), 2);
        assert_eq!(back.owners(b"/usr/lib/x")[1].mode, Some(0o100755));
        assert!(back.owners(b"/usr/lib/x")[1].config);
        // The lists are not stored: the encoded index answers for files.
        assert!(back.owners(b"/usr/lib/link").is_empty());
        assert_eq!(back.scope(), Some(&scope(&["/usr/lib"])));
        assert!(!back.holds(b"/opt/x"));
        assert!(back.answers_for(b"/usr/lib/x") && !back.answers_for(b"/usr/lib/w"));
        assert_eq!(back.file_count(), 99);
        assert_eq!(back.encode(), Some(bytes.clone()));
        let mut old = bytes;
        old[0] = 1;
        assert!(PackageDb::decode(&old).is_none());
    }

    /// A file two packages ship keeps both claims, in the order they came,
    /// each once however often it is listed; a listing by a package that
    /// also has a digest for it counts once among the claimants.
    #[test]
    fn shared_files_keep_both_owners_in_order_and_once() {
        let mut db = PackageDb::default();
        let a = pkg(&mut db, "a", Manager::Dpkg);
        let b = pkg(&mut db, "b", Manager::Dpkg);
        let o = |pkg, m| Owner {
            pkg,
            digest: Some(FileDigest::Md5([m; 16])),
            ..Owner::default()
        };
        for _ in 0..3 {
            db.add(b"/l/s.so", o(b, 2));
            db.add(b"/l/s.so", o(a, 1));
            db.add_other(b"/l/s.so", a);
            db.add_other(b"/l/d", b);
        }
        let owners = db.owners(b"/l/s.so");
        assert_eq!(owners, [o(b, 2), o(a, 1)]);
        let names = |ps: Vec<&Package>| ps.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(db.claimants(b"/l/s.so")), ["b", "a"]);
        assert_eq!(names(db.claimants(b"/l/d")), ["b"]);
        assert_eq!(
            db.first_claimant(b"/l/d").map(|p| p.name.as_str()),
            Some("b")
        );
        assert_eq!(db.digest_count(), 1);
        // Taken (a diversion moves them): gone, the others stay.
        assert_eq!(db.take(b"/l/s.so"), owners);
        assert!(db.owners(b"/l/s.so").is_empty());
        assert_eq!(names(db.claimants(b"/l/s.so")), ["a"]);
        assert_eq!(db.digest_count(), 0);
        assert!(db.take(b"/l/s.so").is_empty());
    }

    /// Tens of thousands of paths (the table grows many times, paths that
    /// share prefixes and lengths): each found with its own claim, absent
    /// ones not, and the estimate of the heap is what the arrays hold.
    #[test]
    fn many_paths_grow_the_table_and_each_is_found() {
        let mut db = PackageDb::default();
        let a = pkg(&mut db, "a", Manager::Dpkg);
        let n = 30_000u32;
        for i in 0..n {
            let mut m = [0u8; 16];
            m[..4].copy_from_slice(&i.to_le_bytes());
            db.add(
                format!("/usr/lib/d{}/lib{i}.so", i % 97),
                Owner {
                    pkg: a,
                    digest: Some(FileDigest::Md5(m)),
                    ..Owner::default()
                },
            );
        }
        db.shrink_to_fit();
        assert_eq!(db.digest_count(), n as usize);
        for i in (0..n).step_by(7) {
            let got = db.owners(format!("/usr/lib/d{}/lib{i}.so", i % 97).as_bytes());
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].digest.unwrap().encode()[1..5], i.to_le_bytes());
        }
        assert!(db.owners(b"/usr/lib/d1/lib0.so").is_empty());
        assert!(db.owners(b"").is_empty());
        assert_eq!(db.digest_algos().count(), n as usize);
        assert_eq!(db.paths_with(Algo::Md5).count(), n as usize);
        assert_eq!(db.paths_with(Algo::Sha256).count(), 0);
        // Paths ~20 bytes, an entry, a claim, an MD5, a table slot each.
        let per = db.heap_bytes() / n as usize;
        assert!((60..120).contains(&per), "{per} bytes per path");
        assert!(PackageDb::default().owners(b"/x").is_empty());
    }

    /// Kept within a scope: the claims and lists on paths it holds, with
    /// the answers they had; the scope recorded, narrowed by a second cut;
    /// names cut after that keep both cuts.
    #[test]
    fn retain_within_and_retain_names_keep_exactly_what_they_hold() {
        let mut db = PackageDb::default();
        let a = pkg(&mut db, "a", Manager::Dpkg);
        let b = pkg(&mut db, "b", Manager::Dpkg);
        let md5 = |pkg, m| Owner {
            pkg,
            digest: Some(FileDigest::Md5([m; 16])),
            ..Owner::default()
        };
        db.add(b"/usr/lib/x/liba.so", md5(a, 1));
        db.add(b"/usr/lib/x/liba.so", md5(b, 2));
        db.add(b"/usr/lib64/libb.so", md5(b, 3));
        db.add(b"/usr/share/doc/a/copyright", md5(a, 4));
        db.add(b"/opt/liba.so", md5(a, 5));
        db.add_other(b"/usr/lib/x/liba.so.1", a);
        db.add_other(b"/usr/share/doc/a", a);
        db.set_lists(true);
        assert!(db.lists_every_name());
        db.retain_within(&scope(&["/usr/lib", "/usr/lib64"]));
        assert!(!db.lists_every_name());
        assert_eq!(db.owners(b"/usr/lib/x/liba.so"), [md5(a, 1), md5(b, 2)]);
        assert_eq!(db.owners(b"/usr/lib64/libb.so"), [md5(b, 3)]);
        assert!(db.owners(b"/opt/liba.so").is_empty());
        assert!(db.owners(b"/usr/share/doc/a/copyright").is_empty());
        assert_eq!(db.claimants(b"/usr/lib/x/liba.so.1").len(), 1);
        assert!(db.claimants(b"/usr/share/doc/a").is_empty());
        assert!(db.knows_name(b"liba.so.1"));
        assert!(db.holds(b"/usr/lib/x/liba.so") && !db.holds(b"/opt/liba.so"));
        assert_eq!(db.digest_count(), 2);
        db.retain_within(&scope(&["/usr/lib"]));
        assert_eq!(db.scope(), Some(&scope(&["/usr/lib"])));
        assert!(db.owners(b"/usr/lib64/libb.so").is_empty());
        let names = ["liba.so".as_bytes().to_vec()].into_iter().collect();
        let cut = db.cut_to(&names);
        db.retain_names(&names);
        for d in [&db, &cut] {
            assert_eq!(d.owners(b"/usr/lib/x/liba.so").len(), 2);
            assert!(d.answers_for(b"/usr/lib/y/liba.so"));
            assert!(!d.answers_for(b"/usr/lib/x/liba.so.1"));
            assert!(!d.answers_for(b"/usr/lib64/liba.so"));
        }
        assert!(db.claimants(b"/usr/lib/x/liba.so.1").is_empty());
        assert_eq!(cut.encode().unwrap(), {
            let mut d = PackageDb {
                packages: db.packages.clone(),
                ..PackageDb::default()
            };
            d.add(b"/usr/lib/x/liba.so", md5(a, 1));
            d.add(b"/usr/lib/x/liba.so", md5(b, 2));
            d.set_names(Some(names.clone()));
            d.set_scope(Some(scope(&["/usr/lib"])));
            d.encode().unwrap()
        });
    }

    /// Several managers merged: packages rebased, claims and lists kept,
    /// the scope the narrower of the parts' (none when neither covers the
    /// other: such an index answers for no run's records).
    #[test]
    fn merging_managers_keeps_every_claim_and_the_narrower_scope() {
        let part = |name: &str, m: Manager, path: &[u8], s: Option<Scope>| {
            let mut d = PackageDb::default();
            let p = pkg(&mut d, name, m);
            d.add(
                path,
                Owner {
                    pkg: p,
                    digest: Some(FileDigest::Sha1([7; 20])),
                    ..Owner::default()
                },
            );
            d.add_other(b"/usr/lib/dir", p);
            d.set_scope(s);
            d
        };
        let mut a = part("a", Manager::Dpkg, b"/usr/lib/a.so", Some(scope(&["/usr"])));
        a.merge(part(
            "b",
            Manager::Rpm,
            b"/usr/lib/b.so",
            Some(scope(&["/usr/lib"])),
        ));
        a.merge(part("c", Manager::Apk, b"/usr/lib/a.so", None));
        assert_eq!(a.scope(), Some(&scope(&["/usr/lib"])));
        assert_eq!(a.managers(), [Manager::Dpkg, Manager::Rpm, Manager::Apk]);
        let names: Vec<String> = a
            .claimants(b"/usr/lib/a.so")
            .iter()
            .map(|p| p.name.clone())
            .collect();
        assert_eq!(names, ["a", "c"]);
        assert_eq!(a.package(&a.owners(b"/usr/lib/b.so")[0]).unwrap().name, "b");
        assert_eq!(a.claimants(b"/usr/lib/dir").len(), 3);
        a.merge(part(
            "d",
            Manager::Rpm,
            b"/opt/d.so",
            Some(scope(&["/opt"])),
        ));
        assert_eq!(a.scope(), Some(&Scope::default()));
        assert!(!a.holds(b"/usr/lib/a.so"));
    }
}
