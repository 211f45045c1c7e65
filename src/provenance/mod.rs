//! Provenance: who vouches for each library. Evidence comes from the
//! package databases (dpkg [`dpkg`], rpm [`rpm`], apk [`apk`], all feeding
//! one [`index::PackageDb`]), embedded Authenticode signatures ([`pe`]),
//! kernel module signatures ([`kmod`]), IMA xattrs ([`ima`]) and the
//! baseline itself; [`policy`] says which evidence counts where. The result is a set
//! of findings (`unpackaged`, `modified_vs_package`, `unsigned`,
//! `signature_invalid`, `untrusted_signer`) and the relabelling of content
//! changes that are package upgrades (`package_update`).
//!
//! Nothing found in a scanned tree is executed or loaded. Module
//! signatures and IMA are judged from the record's facts, which the
//! inspection gathered from the descriptor it hashed; only the package
//! digests (MD5, SHA-1, SHA-256..., all in one read, when the cached ones
//! are stale) and Authenticode read a file again, through an fd opened
//! without following symlinks, with caps.

pub mod apk;
pub mod authenticode;
pub mod cache;
pub mod dpkg;
pub mod index;
pub mod ldcache;
pub mod policy;
pub mod rpm;
pub mod scope;
pub mod transaction;

use crate::sys::MetadataExt;
use crate::sys::OsStrExt;
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::io::Read;
use std::path::Path;

use index::{Algo, FileDigest, MultiHasher};
use rayon::prelude::*;

use crate::facts::ModuleFact;
use crate::finding::{Finding, Kind, Note, Severity};
use crate::formats::elf::is_so_name;
use crate::formats::{ima, kmod, pe};
use crate::record::{file_name, FileClass, FileType, Record};
use crate::rootfs::Root;
use policy::{Evidence, Policy, ProvenanceConfig};

/// PE images above this size are not parsed (the largest system DLLs are
/// well below it).
const PE_CAP: u64 = 512 << 20;

/// Everything provenance needs from the settings.
pub struct Context<'a> {
    pub root: &'a Root,
    pub policy: &'a Policy,
    pub dpkg: Option<&'a dpkg::DpkgDb>,
    pub pe_trust: Option<&'a pe::TrustStore>,
    /// The run's Authenticode verifier (cached by content).
    pub authenticode: &'a authenticode::Authenticode,
    /// Public keys (SPKI DER) that IMA signatures are verified against.
    pub ima_keys: &'a [Vec<u8>],
    /// Package digests the scan computed in its own read, by BLAKE3 and
    /// algorithm (the scan's `ScanResult::digests`): used instead of
    /// reading a file again. Without them (or for a file not among them)
    /// the file is read.
    pub scan_digests: Option<&'a crate::pkgdigest::ContentDigests>,
    /// Whether [`Outcome::matched`] is filled: what explains a package
    /// transaction against a baseline, or an update's scope. Nothing else
    /// reads it, and for a first `init` it was every packaged library's
    /// path, package and version (42,000 here, held through the judges;
    /// the peak fell by 0.6 MiB: the heap had that room already).
    pub keep_matches: bool,
}

/// What provenance keeps in the baseline beside the records: the package
/// versions seen, and the MD5 of each packaged library keyed by its BLAKE3
/// (so `check` re-reads only files whose content changed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    pub versions: BTreeMap<String, String>,
    pub md5: BTreeMap<Vec<u8>, ([u8; 32], [u8; 16])>,
    /// The same for the other algorithms packages record (rpm's SHA-256,
    /// apk's SHA-1).
    pub digests: BTreeMap<Vec<u8>, ([u8; 32], FileDigest)>,
    /// Who signed each signed module or PE image (key id or subject),
    /// keyed by path, with the BLAKE3 of the content it was seen on.
    pub signers: BTreeMap<Vec<u8>, ([u8; 32], String)>,
    /// Authenticode verdicts by path: (BLAKE3 of the image, trust
    /// fingerprint, encoded verdict). Re-verified when either changes.
    pub pe: BTreeMap<Vec<u8>, PeCacheEntry>,
    /// The package that owned each path of the generation (files,
    /// symlinks, directories), when it was written: what tells a file that
    /// left with its package from one deleted by hand.
    pub owners: BTreeMap<Vec<u8>, String>,
}

/// The largest value of the owners' pairs (see [`State::to_pairs`]).
const OWNERS_CHUNK: usize = 32 << 10;

/// The owners' pairs: per package, its paths NUL-separated (no path holds
/// a NUL) in values of at most [`OWNERS_CHUNK`] bytes, keyed `o\0PKG\0N`:
/// a host's tens of thousands of owned paths would otherwise be as many
/// store entries, and one huge value per big package is rewritten whole
/// by the store. `owners` in path order, borrowed or owned.
fn owner_pairs<P: AsRef<[u8]>, K: AsRef<str> + Ord>(
    owners: impl Iterator<Item = (P, K)>,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut by_pkg: BTreeMap<K, Vec<Vec<u8>>> = BTreeMap::new();
    for (path, pkg) in owners {
        let path = path.as_ref();
        let chunks = by_pkg.entry(pkg).or_default();
        match chunks.last_mut() {
            Some(c) if c.len() + path.len() < OWNERS_CHUNK => {
                c.push(0);
                c.extend_from_slice(path);
            }
            _ => chunks.push(path.to_vec()),
        }
    }
    let mut out = Vec::new();
    for (pkg, chunks) in by_pkg {
        for (i, paths) in chunks.into_iter().enumerate() {
            let mut key = b"o\0".to_vec();
            key.extend_from_slice(pkg.as_ref().as_bytes());
            key.push(0);
            key.extend_from_slice(&(i as u32).to_be_bytes());
            out.push((key, paths));
        }
    }
    out
}

/// (BLAKE3 of the image, trust fingerprint, encoded [`pe::Verdict`]).
pub type PeCacheEntry = ([u8; 32], [u8; 32], Vec<u8>);

impl State {
    /// The cached package digest of `algo` for `path`, if it was computed
    /// on the content whose BLAKE3 is `blake3`.
    pub fn cached(&self, path: &[u8], blake3: [u8; 32], algo: Algo) -> Option<FileDigest> {
        match algo {
            Algo::Md5 => self
                .md5
                .get(path)
                .filter(|(b, _)| *b == blake3)
                .map(|(_, m)| FileDigest::Md5(*m)),
            _ => self
                .digests
                .get(path)
                .filter(|(b, d)| *b == blake3 && d.algo() == algo)
                .map(|(_, d)| *d),
        }
    }

    /// Key/value pairs for the store, sorted by key.
    pub fn to_pairs(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = self.pairs_but_owners();
        out.extend(owner_pairs(self.owners.iter()));
        out.sort();
        out
    }

    /// [`State::to_pairs`], consuming the state: each owned path is freed
    /// once it is in its pair (a host's owners are tens of thousands of
    /// paths, held twice otherwise while the pairs are built).
    pub fn into_pairs(mut self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let owners = std::mem::take(&mut self.owners);
        let mut out = self.pairs_but_owners();
        drop(self);
        out.extend(owner_pairs(owners.into_iter()));
        out.sort();
        out
    }

    /// Every pair but the owners', unsorted.
    fn pairs_but_owners(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::with_capacity(self.versions.len() + self.md5.len());
        for (k, v) in &self.md5 {
            let mut key = b"m\0".to_vec();
            key.extend_from_slice(k);
            let mut val = v.0.to_vec();
            val.extend_from_slice(&v.1);
            out.push((key, val));
        }
        for (k, (b, d)) in &self.digests {
            let mut key = b"d\0".to_vec();
            key.extend_from_slice(k);
            let mut val = b.to_vec();
            val.extend_from_slice(&d.encode());
            out.push((key, val));
        }
        for (k, (b, who)) in &self.signers {
            let mut key = b"s\0".to_vec();
            key.extend_from_slice(k);
            let mut val = b.to_vec();
            val.extend_from_slice(who.as_bytes());
            out.push((key, val));
        }
        for (k, (b, fp, verdict)) in &self.pe {
            let mut key = b"p\0".to_vec();
            key.extend_from_slice(k);
            let mut val = b.to_vec();
            val.extend_from_slice(fp);
            val.extend_from_slice(verdict);
            out.push((key, val));
        }
        for (k, v) in &self.versions {
            let mut key = b"v\0".to_vec();
            key.extend_from_slice(k.as_bytes());
            out.push((key, v.as_bytes().to_vec()));
        }
        out
    }

    /// The inverse of [`State::to_pairs`]; malformed pairs are dropped
    /// (they can only make `check` re-read a file or keep a change as
    /// `content`, never hide one).
    pub fn from_pairs(pairs: &[(Vec<u8>, Vec<u8>)]) -> State {
        Self::decode(pairs, true)
    }

    /// [`State::from_pairs`] without the owners: what every `check` needs.
    /// The owners (tens of thousands of paths on a host) are decoded by
    /// [`State::owners_from_pairs`] only when a transaction removed files.
    pub fn without_owners(pairs: &[(Vec<u8>, Vec<u8>)]) -> State {
        Self::decode(pairs, false)
    }

    /// The owners alone.
    pub fn owners_from_pairs(pairs: &[(Vec<u8>, Vec<u8>)]) -> BTreeMap<Vec<u8>, String> {
        let owners = pairs.iter().filter(|(k, _)| k.starts_with(b"o\0"));
        Self::decode_pairs(owners, true).owners
    }

    fn decode(pairs: &[(Vec<u8>, Vec<u8>)], owners: bool) -> State {
        Self::decode_pairs(pairs.iter(), owners)
    }

    fn decode_pairs<'p>(
        pairs: impl Iterator<Item = &'p (Vec<u8>, Vec<u8>)>,
        owners: bool,
    ) -> State {
        let mut s = State::default();
        for (k, v) in pairs {
            if let Some(path) = k.strip_prefix(b"m\0") {
                if let (Some(b), Some(m)) = (v.get(..32), v.get(32..48)) {
                    if v.len() == 48 {
                        if let (Ok(b), Ok(m)) = (b.try_into(), m.try_into()) {
                            s.md5.insert(path.to_vec(), (b, m));
                        }
                    }
                }
            } else if let Some(path) = k.strip_prefix(b"d\0") {
                if let (Some(b), Some(d)) = (v.get(..32), v.get(32..)) {
                    if let (Ok(b), Some(d)) = (b.try_into(), FileDigest::decode(d)) {
                        s.digests.insert(path.to_vec(), (b, d));
                    }
                }
            } else if let Some(path) = k.strip_prefix(b"s\0") {
                if let (Some(b), Some(who)) = (v.get(..32), v.get(32..)) {
                    if let (Ok(b), Ok(who)) = (b.try_into(), std::str::from_utf8(who)) {
                        s.signers.insert(path.to_vec(), (b, who.to_string()));
                    }
                }
            } else if let Some(path) = k.strip_prefix(b"p\0") {
                if let (Some(b), Some(fp), Some(verdict)) =
                    (v.get(..32), v.get(32..64), v.get(64..))
                {
                    if let (Ok(b), Ok(fp)) = (b.try_into(), fp.try_into()) {
                        s.pe.insert(path.to_vec(), (b, fp, verdict.to_vec()));
                    }
                }
            } else if let Some(rest) = k.strip_prefix(b"o\0").filter(|_| owners) {
                let pkg = rest.split(|&b| b == 0).next().unwrap_or_default();
                if let Ok(pkg) = std::str::from_utf8(pkg) {
                    for path in v.split(|&b| b == 0).filter(|p| p.starts_with(b"/")) {
                        s.owners.insert(path.to_vec(), pkg.to_string());
                    }
                }
            } else if let Some(name) = k.strip_prefix(b"v\0") {
                if let (Ok(n), Ok(v)) = (std::str::from_utf8(name), std::str::from_utf8(v)) {
                    s.versions.insert(n.to_string(), v.to_string());
                }
            }
        }
        s
    }
}

/// The outcome of evaluating every library.
#[derive(Debug, Default)]
pub struct Outcome {
    pub findings: Vec<Finding>,
    pub state: State,
    /// Libraries whose content matches their package: path → (package,
    /// version).
    pub matched: HashMap<Vec<u8>, (String, String)>,
    /// Libraries evaluated, and package MD5s computed (not from the cache).
    pub judged: usize,
    pub md5_computed: usize,
    /// Of those, the digests the scan computed in its own read.
    pub md5_from_scan: usize,
    /// The changes relabelled `package_update`, by path: the packages that
    /// explain each, with their version now (`None`: no longer installed).
    /// What `update --package-updates` moves to the new generation.
    pub explained: HashMap<Vec<u8>, Vec<(String, Option<String>)>>,
}

/// Loads every package database of the root (dpkg, rpm, apk) into one
/// index, or says (once) why package provenance cannot be checked. Each
/// database loaded is reported with its size and load time.
pub fn load_packages(
    root: &Root,
    admin: &Path,
    names: Option<&std::collections::HashSet<Vec<u8>>>,
    notes: &mut Vec<Note>,
) -> Option<dpkg::DpkgDb> {
    load_packages_with(root, admin, names, None, notes)
}

/// [`load_packages`], with every database's index taken from `read` (one
/// read of each whole database made earlier in the run) instead of reading
/// them again.
fn load_packages_with(
    root: &Root,
    admin: &Path,
    names: Option<&std::collections::HashSet<Vec<u8>>>,
    read: Option<&Packages>,
    notes: &mut Vec<Note>,
) -> Option<dpkg::DpkgDb> {
    let mut all: Option<index::PackageDb> = None;
    let mut loaded =
        |db: index::PackageDb, what: &str, took: std::time::Duration, notes: &mut Vec<Note>| {
            notes.push(Note::Status(format!(
                "{what} database: {} packages, {} files, loaded in {:.3} s",
                db.packages.len(),
                db.file_count(),
                took.as_secs_f64()
            )));
            match &mut all {
                Some(a) => a.merge(db),
                None => all = Some(db),
            }
        };
    let mut failed = false;
    let t = std::time::Instant::now();
    let dpkg = match (read, names) {
        (Some(r), Some(names)) => r.dpkg_for(names),
        _ => dpkg::DpkgDb::load_for(root, admin, names),
    };
    match dpkg {
        // The time is the read's, wherever it was made.
        Ok(Some(db)) => {
            let took = match (read, names) {
                (Some(r), Some(_)) => r.dpkg_took,
                _ => t.elapsed(),
            };
            loaded(db, "dpkg", took, notes)
        }
        Ok(None) => {}
        Err(e) => {
            failed = true;
            notes.push(Note::Warning(format!(
                "dpkg database at {} unreadable ({e}): package provenance not checked",
                admin.display()
            )));
        }
    }
    let t = std::time::Instant::now();
    let (rpm, took) = match (read, names) {
        (Some(r), Some(names)) => (r.rpm_for(names), r.rpm_took),
        _ => (rpm::load(root, names), t.elapsed()),
    };
    match rpm {
        Ok(rpm::Found::Db(db, warnings)) => {
            notes.extend(warnings.into_iter().map(Note::Warning));
            loaded(*db, "rpm", took, notes);
        }
        Ok(rpm::Found::Unsupported(why)) => {
            failed = true;
            notes.push(Note::Warning(format!(
                "{why}: rpm package provenance not checked"
            )));
        }
        Ok(rpm::Found::None) => {}
        Err(e) => {
            failed = true;
            notes.push(Note::Warning(format!(
                "rpm database unreadable ({e}): rpm package provenance not checked"
            )));
        }
    }
    let t = std::time::Instant::now();
    let (apk, took) = match (read, names) {
        (Some(r), Some(names)) => (r.apk_for(names), r.apk_took),
        _ => (apk::load(root, names), t.elapsed()),
    };
    match apk {
        Ok(Some(db)) => loaded(db, "apk", took, notes),
        Ok(None) => {}
        Err(e) => {
            failed = true;
            notes.push(Note::Warning(format!(
                "apk database at {} unreadable ({e}): apk package provenance not checked",
                apk::INSTALLED
            )));
        }
    }
    if all.is_none() && !failed {
        notes.push(Note::Warning(format!(
            "no dpkg database at {}, nor an rpm or apk database, in this root: package \
             provenance not checked",
            admin.display()
        )));
    }
    all
}

/// Whether provenance looks at this record at all: regular files that are
/// loadable objects, named like shared objects, or kernel modules.
pub fn is_candidate(r: &Record) -> bool {
    if r.ftype != FileType::File {
        return false;
    }
    let name = file_name(&r.path);
    matches!(
        r.class,
        FileClass::ElfDyn | FileClass::ElfOther | FileClass::PeDll
    ) || is_so_name(name)
        || kmod::is_module_name(name)
}

/// Evaluates every candidate in `records` (sorted). `baseline` (sorted)
/// provides `manifest` evidence; `prior` the cached MD5s.
pub fn evaluate(cx: &Context, records: &[Record], baseline: &[Record], prior: &State) -> Outcome {
    let per_file: Vec<FileVerdict> = with_before(records, baseline)
        .par_iter()
        .map(|&(r, before)| judge(cx, r, before, prior))
        .collect();
    let mut out = Outcome::default();
    if let Some(db) = cx.dpkg {
        for p in &db.packages {
            out.state.versions.insert(p.name.clone(), p.version.clone());
        }
    }
    out.judged = per_file.len();
    for v in per_file {
        out.md5_computed += v.md5_computed as usize;
        out.md5_from_scan += v.md5_from_scan as usize;
        out.findings.extend(v.findings);
        if let Some((path, b, digests)) = v.digests {
            for d in digests {
                if let FileDigest::Md5(m) = d {
                    out.state.md5.insert(path.clone(), (b, m));
                } else {
                    out.state.digests.insert(path.clone(), (b, d));
                }
            }
        }
        if let Some((path, entry)) = v.pe {
            out.state.pe.insert(path, entry);
        }
        if let Some((path, b, who)) = v.signer {
            out.state.signers.insert(path, (b, who));
        }
        if let Some((path, pkg)) = v.matched {
            out.matched.insert(path, pkg);
        }
    }
    out
}

/// Each candidate of `records` with its record in `baseline`. Both are
/// sorted by path (unique): one merge of the two, holding only the
/// candidates, where a map of the whole baseline (three MiB at 75,000
/// records) was built for every judgement. Lists that are not (a caller's
/// mistake) are matched by a map, as before.
fn with_before<'a>(
    records: &'a [Record],
    baseline: &'a [Record],
) -> Vec<(&'a Record, Option<&'a Record>)> {
    // Both passes over every record on every core (long shared prefixes).
    let sorted = |rs: &[Record]| rs.par_windows(2).all(|w| w[0].path < w[1].path);
    let candidates: Vec<&Record> = records.par_iter().filter(|r| is_candidate(r)).collect();
    let candidates = candidates.into_iter();
    if !(sorted(records) && sorted(baseline)) {
        let base: HashMap<&[u8], &Record> =
            baseline.iter().map(|r| (r.path.as_slice(), r)).collect();
        return candidates
            .map(|r| (r, base.get(r.path.as_slice()).copied()))
            .collect();
    }
    let mut j = 0;
    candidates
        .map(|r| {
            while baseline.get(j).is_some_and(|b| b.path < r.path) {
                j += 1;
            }
            (r, baseline.get(j).filter(|b| b.path == r.path))
        })
        .collect()
}

#[derive(Default)]
struct FileVerdict {
    findings: Vec<Finding>,
    /// The package digests of the content, by BLAKE3, for the cache.
    digests: Option<(Vec<u8>, [u8; 32], Vec<FileDigest>)>,
    matched: Option<(Vec<u8>, (String, String))>,
    md5_computed: bool,
    md5_from_scan: bool,
    signer: Option<(Vec<u8>, [u8; 32], String)>,
    pe: Option<(Vec<u8>, PeCacheEntry)>,
}

fn judge(cx: &Context, r: &Record, before: Option<&Record>, prior: &State) -> FileVerdict {
    let mut v = FileVerdict::default();
    let Some((accept, severity)) = cx.policy.rule_for(&r.path) else {
        return v;
    };
    let name = file_name(&r.path);
    let mut evidence: Vec<Evidence> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let mut bad = false;
    let mut signer: Option<String> = None;
    let finding = |kind, severity, detail: String| Finding {
        kind,
        severity,
        path: r.path.clone(),
        detail,
        changes: Vec::new(),
        before: None,
        after: Some(r.clone()),
    };

    // Package.
    let mut packaged = false;
    if let Some(db) = cx.dpkg {
        let owners = db.owners(&r.path);
        if !owners.is_empty() {
            packaged = true;
            let with_digest: Vec<_> = owners.iter().filter(|o| o.digest.is_some()).collect();
            if with_digest.is_empty() {
                evidence.push(Evidence::Package);
                let p = owners.first().and_then(|o| db.package(o));
                let what = p.map_or("digests", |p| p.manager.digests_name());
                notes.push(format!("packaged (no {what} to verify)"));
            } else {
                let mut algos: Vec<Algo> = with_digest
                    .iter()
                    .filter_map(|o| o.digest.map(|d| d.algo()))
                    .collect();
                algos.sort();
                algos.dedup();
                let cached: Option<Vec<FileDigest>> = r
                    .blake3
                    .and_then(|b| algos.iter().map(|&a| prior.cached(&r.path, b, a)).collect());
                let digests = match (r.blake3, cached) {
                    (Some(_), Some(c)) => Some(c),
                    (Some(b), None) => {
                        v.md5_computed = true;
                        let from_scan = from_scan(cx, b, &algos);
                        v.md5_from_scan = from_scan.is_some();
                        from_scan.or_else(|| file_digests(cx.root, r, &algos))
                    }
                    (None, _) => None,
                };
                if let (Some(d), Some(b)) = (&digests, r.blake3) {
                    v.digests = Some((r.path.clone(), b, d.clone()));
                }
                match digests {
                    None => notes.push("package digest not verified (unreadable)".into()),
                    Some(d) => {
                        let hit = with_digest
                            .iter()
                            .find(|o| o.digest.is_some_and(|x| d.contains(&x)));
                        match hit.and_then(|o| db.package(o)) {
                            Some(p) => {
                                evidence.push(Evidence::Package);
                                if cx.keep_matches {
                                    v.matched =
                                        Some((r.path.clone(), (p.name.clone(), p.version.clone())));
                                }
                            }
                            None => {
                                bad = true;
                                let o = with_digest.first();
                                let p = o.and_then(|o| db.package(o));
                                let (n, ver) =
                                    p.map_or(("?", "?"), |p| (p.name.as_str(), p.version.as_str()));
                                // dpkg's wording stays "(md5sums)"; the
                                // others name their algorithm.
                                let what = match (p, o.and_then(|o| o.digest)) {
                                    (Some(p), _) if p.manager == index::Manager::Dpkg => {
                                        p.manager.digests_name().to_string()
                                    }
                                    (Some(p), Some(d)) => {
                                        format!("{} {}", p.manager.digests_name(), d.algo().name())
                                    }
                                    _ => "package digests".to_string(),
                                };
                                v.findings.push(finding(
                                    Kind::ModifiedVsPackage,
                                    Severity::High,
                                    format!("content does not match package {n} {ver} ({what})"),
                                ));
                            }
                        }
                    }
                }
            }
        }
    }

    // Manifest: the baseline holds this very content.
    if matches!((before.and_then(|b| b.blake3), r.blake3), (Some(x), Some(y)) if x == y) {
        evidence.push(Evidence::Manifest);
    }

    // IMA and the module signature: facts the inspection gathered from the
    // descriptor it hashed (the xattr, the content digest it is checked
    // against, the module's trailer); none when it could not read the file.
    let facts = r.facts.as_deref();
    if let Some(x) = facts.and_then(|f| f.ima.as_ref()) {
        let now = x.digest.as_deref();
        match ima::parse(&x.xattr) {
            Some(ima::Ima::Hash { algo, digest }) => match now {
                Some(d) if d == digest.as_slice() => evidence.push(Evidence::Ima),
                Some(_) => {
                    bad = true;
                    v.findings.push(finding(
                        Kind::SignatureInvalid,
                        Severity::High,
                        format!("IMA {algo} hash in security.ima does not match the content"),
                    ));
                }
                None => notes.push(format!("IMA {algo} hash not verified")),
            },
            Some(ima::Ima::Signature { algo, key_id, sig }) => {
                if cx.ima_keys.is_empty() {
                    notes.push(format!(
                        "IMA {algo} signature by key {key_id} present, not verified (no ima_keys configured)"
                    ));
                } else {
                    let ok = now.is_some_and(|d| {
                        cx.ima_keys
                            .iter()
                            .any(|k| pe::rsa_verify_prehashed(k, algo, d, &sig))
                    });
                    if ok {
                        evidence.push(Evidence::Ima);
                    } else if now.is_none() {
                        notes.push(format!("IMA {algo} signature not verified (unreadable)"));
                    } else {
                        bad = true;
                        v.findings.push(finding(
                            Kind::SignatureInvalid,
                            Severity::High,
                            format!(
                                "IMA {algo} signature (key {key_id}) does not verify with any configured IMA key"
                            ),
                        ));
                    }
                }
            }
            Some(ima::Ima::Other(t)) => notes.push(format!("security.ima of unknown type {t}")),
            None => {}
        }
    }

    // Kernel module signature.
    let is_module = kmod::is_module_name(name);
    if is_module {
        match facts.and_then(|f| f.module.as_ref()) {
            Some(ModuleFact::Signed { key_id, hash }) => {
                evidence.push(Evidence::ModuleSignature);
                notes.push(format!("module signed, key {key_id}, {hash}"));
                signer = Some(format!("key {key_id} ({hash})"));
            }
            Some(ModuleFact::Unsigned) => {
                notes.push("no appended module signature".into());
            }
            Some(ModuleFact::Hidden(c)) => notes.push(format!(
                "{c}-compressed: an appended signature would be inside the compressed data, not checked"
            )),
            Some(ModuleFact::Malformed(why)) => {
                bad = true;
                v.findings.push(finding(
                    Kind::SignatureInvalid,
                    Severity::High,
                    format!("module signature block is malformed: {why}"),
                ));
            }
            Some(ModuleFact::Unreadable) | None => notes.push("module unreadable".into()),
        }
    }

    // Authenticode.
    let is_pe = matches!(r.class, FileClass::PeDll | FileClass::PeExe);
    if is_pe {
        let fp = cx.pe_trust.map_or([0; 32], |t| t.fingerprint_cached());
        let cached = match (r.blake3, prior.pe.get(&r.path)) {
            (Some(b), Some((pb, pfp, enc))) if b == *pb && fp == *pfp => pe::Verdict::decode(enc),
            _ => None,
        };
        let verdict = match cached {
            Some(v) => v,
            None => pe_verdict(cx, r),
        };
        if let (Some(b), Some(enc)) = (r.blake3, verdict.encode()) {
            v.pe = Some((r.path.clone(), (b, fp, enc)));
        }
        match verdict {
            pe::Verdict::Signed { signer: who } => {
                evidence.push(Evidence::Authenticode);
                notes.push(format!("Authenticode signed by {who}"));
                signer = Some(who);
            }
            pe::Verdict::Catalog { catalog } => {
                evidence.push(Evidence::Catalog);
                notes.push(format!("listed in catalog {catalog}"));
            }
            pe::Verdict::Unsigned => notes.push("no Authenticode signature".into()),
            pe::Verdict::Unreadable => notes.push("PE image unreadable".into()),
            pe::Verdict::NotPe => notes.push("PE headers malformed: no signature to check".into()),
            pe::Verdict::Malformed(why) => {
                bad = true;
                v.findings.push(finding(
                    Kind::SignatureInvalid,
                    Severity::High,
                    format!("Authenticode signature unusable: {why}"),
                ));
            }
            pe::Verdict::DigestMismatch => {
                bad = true;
                v.findings.push(finding(
                    Kind::SignatureInvalid,
                    Severity::High,
                    "Authenticode digest does not match the image: modified after signing".into(),
                ));
            }
            pe::Verdict::BadSignature(why) => {
                bad = true;
                v.findings.push(finding(
                    Kind::SignatureInvalid,
                    Severity::High,
                    format!("Authenticode signature does not verify: {why}"),
                ));
            }
            pe::Verdict::Untrusted { signer, why } => {
                if !accept.iter().any(|a| evidence.contains(a)) {
                    bad = true;
                    v.findings.push(finding(
                        Kind::UntrustedSigner,
                        severity,
                        format!("Authenticode signer {signer} is not trusted: {why}"),
                    ));
                }
            }
        }
    }

    // A signer other than the baseline's: re-signed with another key.
    if let (Some(who), Some(b)) = (&signer, r.blake3) {
        if let Some((_, then)) = prior.signers.get(&r.path) {
            if then != who {
                bad = true;
                v.findings.push(finding(
                    Kind::UntrustedSigner,
                    severity,
                    format!("signer changed since the baseline: {then} -> {who}"),
                ));
            }
        }
        v.signer = Some((r.path.clone(), b, who.clone()));
    }

    if bad || accept.iter().any(|a| evidence.contains(a)) {
        return v;
    }
    let signature_kind = (is_pe
        && (accept.contains(&Evidence::Authenticode) || accept.contains(&Evidence::Catalog)))
        || (is_module && accept.contains(&Evidence::ModuleSignature));
    let kind = if signature_kind {
        Kind::Unsigned
    } else if accept.contains(&Evidence::Package) {
        if cx.dpkg.is_none() {
            // No package database in this root: said once on stderr, not
            // as one finding per file.
            return v;
        }
        Kind::Unpackaged
    } else {
        Kind::Unsigned
    };
    let mut detail = match kind {
        Kind::Unpackaged if !packaged => "no installed package owns it".to_string(),
        _ => "no signature this location accepts".to_string(),
    };
    let names: Vec<&str> = accept.iter().map(evidence_name).collect();
    detail.push_str(&format!("; accepted here: {}", names.join(", ")));
    for n in notes {
        detail.push_str("; ");
        detail.push_str(&n);
    }
    v.findings.push(finding(kind, severity, detail));
    v
}

fn evidence_name(e: &Evidence) -> &'static str {
    match e {
        Evidence::Package => "package",
        Evidence::Authenticode => "authenticode",
        Evidence::Catalog => "catalog",
        Evidence::Ima => "ima",
        Evidence::Manifest => "manifest",
        Evidence::ModuleSignature => "module_signature",
    }
}

/// Opens a record's file for reading without following a symlink or
/// blocking, and only if it is still the file the scan saw.
fn open_checked(root: &Root, r: &Record) -> Option<std::fs::File> {
    let f = root.open_file(Path::new(OsStr::from_bytes(&r.path))).ok()?;
    let m = f.metadata().ok()?;
    let same = m.is_file() && m.ino() == r.inode && m.dev() == r.dev && m.size() == r.size;
    same.then_some(f)
}

/// The package digests of content `blake3` from what the scan computed in
/// the read that gave the BLAKE3: the same bytes, so the same verdict as
/// reading the file again. Every algorithm asked must be there (else the
/// file is read once for all of them); a digest of other content (another
/// BLAKE3) is never taken.
fn from_scan(cx: &Context, blake3: [u8; 32], algos: &[Algo]) -> Option<Vec<FileDigest>> {
    let got = cx.scan_digests?;
    algos
        .iter()
        .map(|&a| crate::pkgdigest::digest_of(got, &blake3, a))
        .collect()
}

/// The package digests of a record's content, every algorithm in one
/// streamed read (never mapped).
fn file_digests(root: &Root, r: &Record, algos: &[Algo]) -> Option<Vec<FileDigest>> {
    // An in-memory tree (an image) computed the package digests of the
    // files its package database owns from the layer streams, and only
    // for the content whose BLAKE3 is the record's.
    if let Some(tree) = root.tree() {
        let p = OsStr::from_bytes(&r.path);
        let mut out = Vec::with_capacity(algos.len());
        for &a in algos {
            out.push(FileDigest::from_bytes(a, &tree.digest(p, a.name())?)?);
        }
        return Some(out);
    }
    let mut f = open_checked(root, r)?;
    let mut h = MultiHasher::new(algos);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(buf.get(..n)?),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
    Some(h.finish())
}

/// The Authenticode verdict on a PE record's file. Most PE files on a
/// Linux host (Wine's DLLs, hundreds of MB of them) carry no signature:
/// their headers settle the verdict, so only the first bytes are read
/// (a `verify` of the whole image would read nothing else of it).
fn pe_verdict(cx: &Context, r: &Record) -> pe::Verdict {
    if cx.root.tree().is_none() && r.size <= PE_CAP {
        let head = open_checked(cx.root, r).and_then(|f| {
            let mut out = Vec::new();
            f.take(pe::HEADERS_PREFIX as u64)
                .read_to_end(&mut out)
                .ok()
                .map(|_| out)
        });
        if let Some(v) = head.and_then(|h| pe::verdict_from_headers(&h, cx.pe_trust)) {
            return v;
        }
    }
    read_all(cx.root, r, PE_CAP)
        .map(|bytes| cx.authenticode.verify(&bytes, cx.pe_trust))
        .unwrap_or(pe::Verdict::Unreadable)
}

/// A record's whole file, if it is at most `cap` bytes.
fn read_all(root: &Root, r: &Record, cap: u64) -> Option<Vec<u8>> {
    if root.tree().is_some() {
        // What the tree keeps in memory (nothing else can be read).
        return root
            .read_file(Path::new(OsStr::from_bytes(&r.path)), cap)
            .ok();
    }
    let f = open_checked(root, r)?;
    if f.metadata().ok()?.len() > cap {
        return None;
    }
    let mut out = Vec::new();
    f.take(cap).read_to_end(&mut out).ok()?;
    Some(out)
}

/// The record `path` ends at, its symlinks followed through the records
/// (sorted by path; their targets as scanned, directories canonicalised inside the root):
/// the scan's view, not the live tree's, so that a watcher whose records
/// lag the tree judges a path and its target alike. `None` for a dangling
/// chain or a loop.
pub fn follow<'r>(root: &Root, records: &'r [Record], path: &[u8]) -> Option<&'r Record> {
    let mut p = path.to_vec();
    for _ in 0..40 {
        let i = records
            .binary_search_by(|r| r.path.as_slice().cmp(p.as_slice()))
            .ok()?;
        let r = records.get(i)?;
        if r.ftype != FileType::Symlink {
            return Some(r);
        }
        let t = r.target.as_deref()?;
        let mut joined = Vec::new();
        if !t.starts_with(b"/") {
            joined.extend_from_slice(p.get(..p.len() - file_name(&p).len()).unwrap_or(b"/"));
        }
        joined.extend_from_slice(t);
        let logical = std::path::PathBuf::from(OsStr::from_bytes(&joined));
        let name = logical.file_name()?.to_os_string();
        let dir = root.resolve_lenient(logical.parent()?);
        p = dir.join(name).as_os_str().as_bytes().to_vec();
    }
    None
}

/// The evidence provenance judges with, loaded once per run (or once per
/// `watch` rescan): the dpkg database and the IMA keys. (Authenticode's
/// roots and catalogs are read by [`authenticode::Authenticode`].)
#[derive(Default)]
pub struct World {
    pub dpkg: Option<dpkg::DpkgDb>,
    pub ima_keys: Vec<Vec<u8>>,
    /// The dpkg database's files when it was read ([`dpkg::stamp`]).
    pub dpkg_stamp: Vec<(u64, u64, i64, i64)>,
}

/// Every package database (dpkg, rpm, apk) read once, before a walk that
/// reads every file, for every use the run has of it: the paths whose
/// package digests the scan computes in its read
/// ([`Packages::digest_paths`]), the index provenance judges with (cut to
/// the judged names, as a read with that cut gives: [`World::load_read`]),
/// and, for dpkg read with lists, the owners a new generation records
/// ([`Packages::with_lists`]). One parse of each instead of two or three.
pub struct Packages {
    /// dpkg's index of every name, or why it could not be read.
    dpkg: Result<Option<dpkg::DpkgDb>, String>,
    /// rpm's, as [`rpm::load`] found it (with its warnings).
    rpm: Result<rpm::Found, String>,
    /// apk's.
    apk: Result<Option<index::PackageDb>, String>,
    /// Every database's files before they were read ([`stamp`]).
    stamp: Vec<(u64, u64, i64, i64)>,
    dpkg_took: std::time::Duration,
    rpm_took: std::time::Duration,
    apk_took: std::time::Duration,
}

impl Packages {
    /// Reads every package database of `root` (with `lists`, dpkg's
    /// `.list` files too); `None` when provenance is off. With `scope`,
    /// only the claims on paths it holds are kept (the run's records all
    /// lie in it: [`scope::Scope::of`] its search paths).
    pub fn read(
        root: &Root,
        cfg: &ProvenanceConfig,
        lists: bool,
        scope: Option<&scope::Scope>,
    ) -> Option<Packages> {
        if cfg.disabled {
            return None;
        }
        let admin = admin_dir(cfg);
        let stamp = stamp(root, &admin);
        let t = std::time::Instant::now();
        let dpkg = match scope {
            Some(s) => dpkg::DpkgDb::load_within(root, &admin, lists, s),
            None if lists => dpkg::DpkgDb::load_with_lists(root, &admin, None),
            None => dpkg::DpkgDb::load_for(root, &admin, None),
        };
        let dpkg_took = t.elapsed();
        let t = std::time::Instant::now();
        let mut rpm = rpm::load(root, None);
        if let (Ok(rpm::Found::Db(db, _)), Some(s)) = (&mut rpm, scope) {
            db.retain_within(s);
        }
        let rpm_took = t.elapsed();
        let t = std::time::Instant::now();
        let mut apk = apk::load(root, None);
        if let (Ok(Some(db)), Some(s)) = (&mut apk, scope) {
            db.retain_within(s);
        }
        Some(Packages {
            dpkg: dpkg.map_err(|e| e.to_string()),
            rpm: rpm.map_err(|e| e.to_string()),
            apk: apk.map_err(|e| e.to_string()),
            stamp,
            dpkg_took,
            rpm_took,
            apk_took: t.elapsed(),
        })
    }

    /// The indexes read (what went wrong reading one is said when the
    /// evidence is loaded).
    fn dbs(&self) -> impl Iterator<Item = &index::PackageDb> {
        let rpm = match &self.rpm {
            Ok(rpm::Found::Db(db, _)) => Some(&**db),
            _ => None,
        };
        let dpkg = self.dpkg.as_ref().ok().and_then(Option::as_ref);
        let apk = self.apk.as_ref().ok().and_then(Option::as_ref);
        dpkg.into_iter().chain(rpm).chain(apk)
    }

    /// The paths some package records a digest for, with its algorithm
    /// (dpkg's MD5, rpm's FILEDIGESTALGO, apk's SHA-1), for the scan to
    /// compute it in its own read (the scan's `ScanOptions::digest_paths`);
    /// `None` when no package database was read.
    pub fn digest_paths(&self) -> Option<crate::pkgdigest::DigestPaths> {
        let n = self.dbs().map(|db| db.digest_count()).sum();
        let mut set = crate::pkgdigest::DigestPaths::with_capacity(n);
        let mut any = false;
        for db in self.dbs() {
            any = true;
            for (p, a) in db.digest_algos() {
                set.insert(p, a);
            }
        }
        any.then_some(set)
    }

    /// dpkg's index with lists (symlinks and directories), when it was
    /// read with them and answers for every one of `paths` (their names
    /// kept, their places in the scope it was read for).
    pub fn with_lists<'n>(
        &self,
        mut paths: impl Iterator<Item = &'n [u8]>,
    ) -> Option<&dpkg::DpkgDb> {
        let db = self.dpkg.as_ref().ok()?.as_ref()?;
        paths
            .all(|p| db.knows_name(file_name(p)) && db.holds(p))
            .then_some(db)
    }

    /// Whether every index read kept the claims on `path`'s place (a read
    /// cut to a scope answers only for records inside it).
    fn holds(&self, path: &[u8]) -> bool {
        self.dbs().all(|db| db.holds(path))
    }

    /// Keeps only what judging files named in `names` can ask (the
    /// snapshot's records, once the walk is over): memory for the rest of
    /// the run.
    pub fn retain_names(&mut self, names: &std::collections::HashSet<Vec<u8>>) {
        if let Ok(Some(db)) = &mut self.dpkg {
            db.retain_names(names);
        }
        if let Ok(rpm::Found::Db(db, _)) = &mut self.rpm {
            db.retain_names(names);
        }
        if let Ok(Some(db)) = &mut self.apk {
            db.retain_names(names);
        }
    }

    /// What reading dpkg's database cut to `names` would give.
    fn dpkg_for(
        &self,
        names: &std::collections::HashSet<Vec<u8>>,
    ) -> std::io::Result<Option<dpkg::DpkgDb>> {
        match &self.dpkg {
            Err(e) => Err(std::io::Error::other(e.clone())),
            Ok(db) => Ok(db.as_ref().map(|db| db.cut_to(names))),
        }
    }

    /// What [`rpm::load`] cut to `names` would give.
    fn rpm_for(&self, names: &std::collections::HashSet<Vec<u8>>) -> std::io::Result<rpm::Found> {
        match &self.rpm {
            Err(e) => Err(std::io::Error::other(e.clone())),
            Ok(rpm::Found::None) => Ok(rpm::Found::None),
            Ok(rpm::Found::Unsupported(why)) => Ok(rpm::Found::Unsupported(why.clone())),
            Ok(rpm::Found::Db(db, w)) => Ok(rpm::Found::Db(Box::new(db.cut_to(names)), w.clone())),
        }
    }

    /// What [`apk::load`] cut to `names` would give.
    fn apk_for(
        &self,
        names: &std::collections::HashSet<Vec<u8>>,
    ) -> std::io::Result<Option<index::PackageDb>> {
        match &self.apk {
            Err(e) => Err(std::io::Error::other(e.clone())),
            Ok(db) => Ok(db.as_ref().map(|db| db.cut_to(names))),
        }
    }
}

impl World {
    /// The paths of `root` with a package digest, and its algorithm (see
    /// [`Packages::digest_paths`]), from a read of its own.
    pub fn digest_paths(
        root: &Root,
        cfg: &ProvenanceConfig,
    ) -> Option<crate::pkgdigest::DigestPaths> {
        Packages::read(root, cfg, false, None)?.digest_paths()
    }

    /// The paths with a package digest, and its algorithm, from the index
    /// a generation kept (its `extra` pairs, [`cache`]) while every package
    /// database is unchanged since; `None` otherwise (or when provenance
    /// is off).
    pub fn cached_digest_paths(
        root: &Root,
        cfg: &ProvenanceConfig,
        extra: &[(Vec<u8>, Vec<u8>)],
    ) -> Option<crate::pkgdigest::DigestPaths> {
        if cfg.disabled {
            return None;
        }
        let now = stamp(root, &admin_dir(cfg));
        let db = cache::lookup(extra, &now, &std::collections::HashSet::new(), &[])?;
        let mut set = crate::pkgdigest::DigestPaths::default();
        for (p, a) in db.digest_algos() {
            set.insert(p, a);
        }
        Some(set)
    }

    /// Loads what judging `records` needs. With `names_only`, the dpkg
    /// index keeps only the file names of `records` (a one-shot run);
    /// without, all of it (a watcher judges files that appear later).
    pub fn load(
        root: &Root,
        cfg: &ProvenanceConfig,
        policy: &Policy,
        records: &[Record],
        names_only: bool,
    ) -> (World, Vec<Note>) {
        Self::load_cached(root, cfg, policy, records, names_only, &[])
    }

    /// [`World::load`], taking the package index from a generation's
    /// `extra` pairs when the databases did not change since it was stored
    /// ([`cache`]).
    pub fn load_cached(
        root: &Root,
        cfg: &ProvenanceConfig,
        policy: &Policy,
        records: &[Record],
        names_only: bool,
        extra: &[(Vec<u8>, Vec<u8>)],
    ) -> (World, Vec<Note>) {
        Self::load_read(root, cfg, policy, records, names_only, extra, None)
    }

    /// [`World::load_cached`], with every database's index cut from `read`
    /// (made earlier in the run) instead of read again, for a one-shot run
    /// (`names_only`).
    pub fn load_read(
        root: &Root,
        cfg: &ProvenanceConfig,
        policy: &Policy,
        records: &[Record],
        names_only: bool,
        extra: &[(Vec<u8>, Vec<u8>)],
        read: Option<&Packages>,
    ) -> (World, Vec<Note>) {
        // The records judged, found once (on every core: a pass over every
        // record, where each look was a fifth of the serial work of an
        // unchanged check).
        let candidates: Vec<&Record> = records.par_iter().filter(|r| is_candidate(r)).collect();
        // A read cut to a scope stands in only for records inside it (a
        // record elsewhere, which no snapshot of that scope makes, has the
        // databases read again for it).
        let read = read.filter(|r| names_only && candidates.iter().all(|rec| r.holds(&rec.path)));
        let mut notes = Vec::new();
        let admin = admin_dir(cfg);
        // A Windows image (or a tree whose rules never ask for packages)
        // does not need dpkg, nor a warning that it has none.
        let wants_dpkg = candidates.iter().any(|r| {
            policy
                .rule_for(&r.path)
                .is_some_and(|(accept, _)| accept.contains(&Evidence::Package))
        });
        // The stamp of what was read: a change since shows at the next run.
        let dpkg_stamp = match read {
            Some(r) => r.stamp.clone(),
            None => stamp(root, &admin),
        };
        let dpkg = if wants_dpkg {
            // Only the names of the files judged here are ever looked up.
            let names: Option<std::collections::HashSet<Vec<u8>>> = names_only.then(|| {
                candidates
                    .iter()
                    .map(|r| file_name(&r.path).to_vec())
                    .collect()
            });
            let t = std::time::Instant::now();
            let judged: Vec<&[u8]> = candidates.iter().map(|r| r.path.as_slice()).collect();
            match names
                .as_ref()
                .and_then(|n| cache::lookup(extra, &dpkg_stamp, n, &judged))
            {
                Some(db) => {
                    notes.extend(cache::notes(&db, t.elapsed()));
                    Some(db)
                }
                None => load_packages_with(root, &admin, names.as_ref(), read, &mut notes),
            }
        } else {
            None
        };
        let mut ima_keys = Vec::new();
        for p in &cfg.ima_keys {
            match std::fs::read(p) {
                Ok(b) => ima_keys.extend(pe::public_keys_from_pem(&b)),
                Err(e) => notes.push(Note::Warning(format!("ima_keys {}: {e}", p.display()))),
            }
        }
        (
            World {
                dpkg,
                ima_keys,
                dpkg_stamp,
            },
            notes,
        )
    }

    /// The extra pair that keeps this world's package index for the next
    /// run ([`cache`]), when it can stand in for a read.
    pub fn cache_pair(&self) -> Option<(Vec<u8>, Vec<u8>)> {
        cache::pair(self.dpkg.as_ref()?, &self.dpkg_stamp)
    }

    /// Whether a package database changed since this world was loaded.
    pub fn is_stale(&self, root: &Root, cfg: &ProvenanceConfig) -> bool {
        stamp(root, &admin_dir(cfg)) != self.dpkg_stamp
    }

    /// The context [`evaluate`] judges in.
    pub fn context<'a>(
        &'a self,
        root: &'a Root,
        policy: &'a Policy,
        authenticode: &'a authenticode::Authenticode,
    ) -> Context<'a> {
        Context {
            root,
            policy,
            dpkg: self.dpkg.as_ref(),
            pe_trust: authenticode.trust(root),
            authenticode,
            ima_keys: &self.ima_keys,
            scan_digests: None,
            keep_matches: true,
        }
    }
}

/// A package database file's identity: inode, size, and its times to the
/// nanosecond (folded into one number each). Whole seconds were not
/// enough: a database rewritten in place within the second it was read,
/// to the same size (a version `1.0-r0` becoming `1.1-r0`), kept its
/// stamp, and the cached index of the old content was used.
pub(crate) fn identity(m: &crate::rootfs::Meta) -> (u64, u64, i64, i64) {
    use crate::sys::MetadataExt;
    let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
    (
        m.ino(),
        m.size(),
        ns(m.mtime(), m.mtime_nsec()),
        ns(m.ctime(), m.ctime_nsec()),
    )
}

/// The identity of every package database's files now (dpkg, rpm, apk).
fn stamp(root: &Root, admin: &Path) -> Vec<(u64, u64, i64, i64)> {
    let mut v = dpkg::stamp(root, admin);
    v.extend(rpm::stamp(root));
    v.extend(apk::stamp(root));
    v
}

/// The package index read with lists (symlinks and directories), for the
/// names a package transaction's changes need, and the database's stamp
/// when it was read.
pub struct Index {
    pub db: dpkg::DpkgDb,
    stamp: Vec<(u64, u64, i64, i64)>,
}

impl Index {
    /// Reads the index for `names` (all with `None`); `None` when there
    /// is no package database (said in a note when it is unreadable).
    pub fn load(
        root: &Root,
        cfg: &ProvenanceConfig,
        names: Option<&std::collections::HashSet<Vec<u8>>>,
        notes: &mut Vec<Note>,
    ) -> Option<Index> {
        let admin = admin_dir(cfg);
        let stamp = dpkg::stamp(root, &admin);
        match dpkg::DpkgDb::load_with_lists(root, &admin, names) {
            Ok(Some(db)) => Some(Index { db, stamp }),
            Ok(None) => None,
            Err(e) => {
                notes.push(Note::Warning(format!(
                    "dpkg database at {} unreadable ({e}): package transactions not explained",
                    admin.display()
                )));
                None
            }
        }
    }

    /// Whether this index answers for `names` and the database is
    /// unchanged since it was read.
    pub fn covers(
        &self,
        root: &Root,
        cfg: &ProvenanceConfig,
        names: &std::collections::HashSet<Vec<u8>>,
    ) -> bool {
        names.iter().all(|n| self.db.knows_name(n))
            && dpkg::stamp(root, &admin_dir(cfg)) == self.stamp
    }
}

/// dpkg's admin dir inside the root.
pub fn admin_dir(cfg: &ProvenanceConfig) -> std::path::PathBuf {
    cfg.dpkg_admin_dir
        .clone()
        .unwrap_or_else(|| dpkg::ADMIN_DIR.into())
}

/// The largest `authenticode_roots` bundle read: a PEM of every root a
/// Windows or Mozilla store holds is well under 1 MiB.
const ROOTS_CAP: u64 = 8 << 20;

/// Reads the PEM bundle (a host path, outside the scanned root; bounded and
/// never blocking, like every operator-named file) and every catalog under
/// `Windows/System32/CatRoot` inside the root.
pub fn load_trust(root: &Root, pem: &Path, notes: &mut Vec<Note>) -> pe::TrustStore {
    let mut t = match crate::input::read_bounded(pem, ROOTS_CAP) {
        Ok(b) => pe::TrustStore::from_pem(&b),
        Err(e) => {
            notes.push(Note::Warning(format!(
                "authenticode_roots {}: {e}",
                pem.display()
            )));
            pe::TrustStore::default()
        }
    };
    if t.root_count() == 0 {
        return t;
    }
    for base in [
        "/Windows/System32/CatRoot",
        "/windows/system32/catroot",
        "/WINDOWS/system32/CatRoot",
    ] {
        let Ok(dir) = root.resolve(Path::new(base)) else {
            continue;
        };
        let mut cats = Vec::new();
        find_catalogs(root, &dir, 0, &mut cats);
        for c in cats {
            let Ok(bytes) = root.read_file(&c, 64 << 20) else {
                continue;
            };
            let name = c.display().to_string();
            if let Err(why) = t.add_catalog(&name, &bytes) {
                notes.push(Note::Warning(format!(
                    "catalog {} not used: {why}",
                    crate::escape::for_terminal(c.as_os_str().as_bytes())
                )));
            }
        }
        break;
    }
    t
}

fn find_catalogs(root: &Root, dir: &Path, depth: usize, out: &mut Vec<std::path::PathBuf>) {
    if depth > 4 || out.len() > 100_000 {
        return;
    }
    let Ok(mut names) = root.list_entries(dir) else {
        return;
    };
    names.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, ft) in names {
        let logical = dir.join(&name);
        if ft.is_dir() {
            find_catalogs(root, &logical, depth + 1, out);
        } else if ft.is_file() && name.as_bytes().to_ascii_lowercase().ends_with(b".cat") {
            out.push(logical);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An apk database rewritten in place, to the same size, within the
    /// second it was stamped: a different stamp (the cached index of the
    /// old content must not stand in for it).
    #[test]
    fn a_database_rewritten_in_place_within_the_second_changes_its_stamp() {
        let t = tempfile::tempdir().unwrap();
        let db = t.path().join("lib/apk/db");
        std::fs::create_dir_all(&db).unwrap();
        std::fs::write(db.join("installed"), "P:libq\nV:1.0-r0\n").unwrap();
        let root = Root::new(t.path()).unwrap();
        let before = apk::stamp(&root);
        assert_eq!(before.len(), 1);
        // Past the kernel's timestamp granularity (a jiffy), well within a
        // second most of the time.
        std::thread::sleep(std::time::Duration::from_millis(20));
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(db.join("installed"))
            .unwrap();
        f.write_all(b"P:libq\nV:1.1-r0\n").unwrap();
        drop(f);
        let after = apk::stamp(&root);
        assert_eq!(after[0].0, before[0].0, "same inode");
        assert_eq!(after[0].1, before[0].1, "same size");
        assert_ne!(after, before);
    }

    #[test]
    fn so_names() {
        assert!(is_so_name(b"libc.so.6"));
        assert!(is_so_name(b"libfoo.so"));
        assert!(!is_so_name(b"ld.so.cache"));
        assert!(!is_so_name(b"ld.so.conf"));
        assert!(!is_so_name(b"x.sock"));
    }

    #[test]
    fn many_owned_paths_are_a_few_bounded_pairs() {
        let mut s = State::default();
        for i in 0..5000 {
            s.owners.insert(
                format!("/usr/lib/jvm/jdk/lib/file-{i:05}.so").into_bytes(),
                "openjdk-17-jre-headless:amd64".into(),
            );
        }
        let pairs = s.to_pairs();
        assert!(pairs.len() > 1 && pairs.len() < 20, "{}", pairs.len());
        assert!(pairs.iter().all(|(_, v)| v.len() <= OWNERS_CHUNK));
        assert_eq!(State::from_pairs(&pairs), s);
        s.owners
            .insert(b"/usr/lib/libother.so".to_vec(), "other:amd64".into());
        s.versions.insert("other:amd64".into(), "1".into());
        s.md5
            .insert(b"/usr/lib/libother.so".to_vec(), ([1; 32], [2; 16]));
        assert_eq!(s.clone().into_pairs(), s.to_pairs());
    }

    /// The owners' chunks, measured before they are allocated, are the
    /// bytes a chunk grown path by path held (the pairs of generations
    /// written before), over lengths around the cap.
    #[test]
    fn owner_chunks_are_the_ones_grown_path_by_path() {
        let mut s = State::default();
        for i in 0..3000usize {
            let pkg = ["a", "b:amd64", "c"][i % 3];
            let path = format!("/usr/lib/{}/{i}", "x".repeat((i * 37) % 400));
            s.owners.insert(path.into_bytes(), pkg.into());
        }
        s.owners.insert(vec![b'/'; OWNERS_CHUNK + 10], "big".into());
        s.owners.insert(b"/short".to_vec(), "big".into());
        let mut grown: BTreeMap<&str, Vec<Vec<u8>>> = BTreeMap::new();
        for (path, pkg) in &s.owners {
            let chunks = grown.entry(pkg.as_str()).or_default();
            match chunks.last_mut() {
                Some(c) if c.len() + path.len() < OWNERS_CHUNK => {
                    c.push(0);
                    c.extend_from_slice(path);
                }
                _ => chunks.push(path.clone()),
            }
        }
        let want: Vec<(Vec<u8>, Vec<u8>)> = grown
            .into_iter()
            .flat_map(|(pkg, chunks)| {
                chunks.into_iter().enumerate().map(move |(i, c)| {
                    let mut key = b"o\0".to_vec();
                    key.extend_from_slice(pkg.as_bytes());
                    key.push(0);
                    key.extend_from_slice(&(i as u32).to_be_bytes());
                    (key, c)
                })
            })
            .collect();
        let got: Vec<(Vec<u8>, Vec<u8>)> = s
            .to_pairs()
            .into_iter()
            .filter(|(k, _)| k.starts_with(b"o\0"))
            .collect();
        assert!(want.len() > 6, "{}", want.len());
        assert_eq!(got, want);
        assert_eq!(State::from_pairs(&s.to_pairs()), s);
    }

    #[test]
    fn state_round_trips_through_pairs() {
        let mut s = State::default();
        s.versions.insert("libc6:amd64".into(), "2.36-9".into());
        s.md5.insert(b"/usr/lib/x.so".to_vec(), ([1; 32], [2; 16]));
        s.signers.insert(
            b"/usr/lib/modules/a.ko".to_vec(),
            ([3; 32], "key 01".into()),
        );
        s.owners
            .insert(b"/usr/lib/libx.so.1".to_vec(), "libx1:amd64".into());
        s.owners
            .insert(b"/usr/lib/libx.so.1.2".to_vec(), "libx1:amd64".into());
        s.owners.insert(b"/usr/lib/y".to_vec(), "liby".into());
        assert_eq!(State::from_pairs(&s.to_pairs()), s);
        assert_eq!(
            State::from_pairs(&[(b"m\0/x".to_vec(), vec![1, 2])]),
            State::default()
        );
    }
}
