//! The dpkg database of a (rooted) Debian system, read-only: `status` for
//! package versions, `info/*.md5sums` (and `info/*.list` for packages that
//! ship no md5sums) for who owns which file with which digest, and
//! `diversions` for files a package moved aside. Paths are normalised to
//! the canonical form the scan sees: dpkg records merged-`/usr` files as
//! `/lib/...` while they are reached at `/usr/lib/...`.
//!
//! libwarden never runs dpkg: the files are parsed here, with caps on every
//! read, and parse errors only drop the malformed line.

use crate::sys::OsStrExt;
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::scope::Scope;
use crate::record::file_name;
use crate::rootfs::Root;

/// Where dpkg keeps its state, inside the root.
pub const ADMIN_DIR: &str = "/var/lib/dpkg";
/// Cap on `status` (the real one is well under 1 MiB per 1000 packages).
const STATUS_CAP: u64 = 256 << 20;
/// Cap on one `.md5sums`/`.list` file.
const INFO_CAP: u64 = 64 << 20;
/// Packages whose info files are parsed together (in parallel) before
/// their claims go into the index.
const PARSE_BATCH: usize = 128;

/// The identity of the database's files now (`status`, `info/`, the
/// diversions): it changes when a package transaction writes them, so a
/// long-running watcher knows to read the database again.
pub fn stamp(root: &Root, admin: &Path) -> Vec<(u64, u64, i64, i64)> {
    ["status", "info", "diversions"]
        .iter()
        .filter_map(|n| {
            let p = root.resolve(&admin.join(n)).ok()?;
            root.lstat(&p).ok()
        })
        .map(|m| super::identity(&m))
        .collect()
}

/// True while a dpkg transaction holds the database lock: files it is
/// unpacking may not match the md5sums it has not written yet. Asked
/// with `F_GETLK` on a read-only descriptor: nothing is written and no
/// lock is taken.
#[cfg(unix)]
pub fn busy(root: &Root, admin: &Path) -> bool {
    write_locked(root, &admin.join("lock"))
}

/// Whether someone holds a write lock (`fcntl`) on the file at `lock` in
/// the root (dpkg's `lock`, rpm's `.rpm.lock`).
#[cfg(unix)]
pub fn write_locked(root: &Root, lock: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(p) = root.resolve(lock) else {
        return false;
    };
    let Ok(f) = root.open_file(&p) else {
        return false;
    };
    // SAFETY: a zeroed flock is a valid argument; fcntl fills it in.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: a valid fd and a valid flock pointer.
    let rc = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETLK, &mut fl) };
    rc == 0 && i32::from(fl.l_type) != libc::F_UNLCK
}

#[cfg(not(unix))]
pub fn busy(_root: &Root, _admin: &Path) -> bool {
    false
}

#[cfg(not(unix))]
pub fn write_locked(_root: &Root, _lock: &Path) -> bool {
    false
}

// The index dpkg feeds (packages are named as their info files are:
// `name`, or `name:arch` for Multi-Arch: same packages).
use super::index::{FileDigest, Manager};
pub use super::index::{Owner, Package, PackageDb as DpkgDb};

impl DpkgDb {
    /// Loads the database inside `root`. `Ok(None)` when the root has no
    /// dpkg database at all (no `status` file); an error only when it
    /// exists but cannot be read.
    pub fn load(root: &Root, admin: &Path) -> std::io::Result<Option<DpkgDb>> {
        Self::load_for(root, admin, None)
    }

    /// Like [`DpkgDb::load`], keeping only files whose name is in `names`
    /// (the file names of the libraries being judged). A file's name is
    /// the same however merged-/usr spells its directory, so the filter is
    /// safe before canonicalisation, and it keeps memory flat: most of what
    /// dpkg lists (documentation, locales, executables) is never asked for.
    /// Names involved in a diversion are always kept.
    pub fn load_for(
        root: &Root,
        admin: &Path,
        names: Option<&HashSet<Vec<u8>>>,
    ) -> std::io::Result<Option<DpkgDb>> {
        Self::load_inner(root, admin, names, false, None)
    }

    /// Like [`DpkgDb::load_for`], reading each package's `.list` beside
    /// its `.md5sums` too, so that the symlinks and directories a package
    /// ships are known ([`DpkgDb::claimants`]). Twice the reading: asked
    /// for only when a change needs explaining, or when a generation is
    /// written.
    pub fn load_with_lists(
        root: &Root,
        admin: &Path,
        names: Option<&HashSet<Vec<u8>>>,
    ) -> std::io::Result<Option<DpkgDb>> {
        Self::load_inner(root, admin, names, true, None)
    }

    /// Like [`DpkgDb::load_with_lists`] (or [`DpkgDb::load`], without
    /// `lists`) of every name, keeping only the claims on paths `scope`
    /// holds (those a run's records can have; see [`Scope`]): a desktop's
    /// dpkg lists more than twice what lies under the library dirs.
    pub fn load_within(
        root: &Root,
        admin: &Path,
        lists: bool,
        scope: &Scope,
    ) -> std::io::Result<Option<DpkgDb>> {
        Self::load_inner(root, admin, None, lists, Some(scope))
    }

    fn load_inner(
        root: &Root,
        admin: &Path,
        names: Option<&HashSet<Vec<u8>>>,
        lists: bool,
        scope: Option<&Scope>,
    ) -> std::io::Result<Option<DpkgDb>> {
        let status = match root.read_file(&admin.join("status"), STATUS_CAP) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut versions: HashMap<String, String> = HashMap::new();
        for st in parse_status(&status) {
            if !st.has_files() {
                continue;
            }
            if let Some(arch) = &st.arch {
                versions.insert(format!("{}:{}", st.package, arch), st.version.clone());
            }
            versions.insert(st.package, st.version);
        }

        let info = admin.join("info");
        let mut stems: Vec<(String, bool, bool)> = Vec::new();
        if let Ok(dir) = root.resolve(&info) {
            if let Ok(rd) = root.list(&dir) {
                let mut seen: HashMap<String, usize> = HashMap::new();
                for name in rd {
                    let Some(name) = name.to_str() else { continue };
                    let (stem, is_md5) = if let Some(s) = name.strip_suffix(".md5sums") {
                        (s, true)
                    } else if let Some(s) = name.strip_suffix(".list") {
                        (s, false)
                    } else {
                        continue;
                    };
                    let i = *seen.entry(stem.to_string()).or_insert_with(|| {
                        stems.push((stem.to_string(), false, false));
                        stems.len() - 1
                    });
                    if let Some(entry) = stems.get_mut(i) {
                        if is_md5 {
                            entry.1 = true;
                        } else {
                            entry.2 = true;
                        }
                    }
                }
            }
        }
        stems.sort();

        // Reading and parsing the info files is independent per package;
        // canonicalising (cached lstats) and indexing stay sequential.
        use rayon::prelude::*;
        let installed: Vec<(String, String, bool, bool)> = stems
            .into_iter()
            .filter_map(|(stem, m, l)| {
                // Info files of packages no longer installed (config-files
                // state) do not vouch for anything.
                let version = versions.get(&stem)?.clone();
                Some((stem, version, m, l))
            })
            .collect();
        let diversions = root
            .read_file(&admin.join("diversions"), INFO_CAP)
            .map(|t| parse_diversions(&t))
            .unwrap_or_default();
        let pinned: HashSet<Vec<u8>> = diversions
            .iter()
            .flat_map(|d| [file_name(&d.from).to_vec(), file_name(&d.to).to_vec()])
            .collect();
        let names: Option<HashSet<Vec<u8>>> = names.map(|n| {
            let mut n = n.clone();
            n.extend(pinned.iter().cloned());
            n
        });
        let wanted = |p: &[u8]| names.as_ref().is_none_or(|n| n.contains(file_name(p)));
        // Claims outside the scope are left out once canonical, but for
        // those on a diverted name: a diversion may move one into it (those
        // left outside, or moved out of it, go once the diversions are
        // applied).
        let pinned_outside = std::sync::atomic::AtomicBool::new(false);
        let within = |c: &[u8]| match scope {
            None => true,
            Some(s) if s.holds(c) => true,
            Some(_) => {
                let keep = pinned.contains(file_name(c));
                if keep {
                    pinned_outside.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                keep
            }
        };
        let listed = std::sync::atomic::AtomicUsize::new(0);
        // Canonicalising is done where the lines are parsed, in parallel,
        // with one cache of resolved directories for the run ([`Canon`]).
        let canon = Canon::new(root);
        // A package's claims: canonical paths with the md5sums digest (or
        // none, from `.list` alone), and what `.list` adds without one.
        type Claims = (Vec<(Option<[u8; 16]>, Vec<u8>)>, Vec<Vec<u8>>);
        let parse = |(stem, _, has_md5, has_list): &(String, String, bool, bool)| -> Claims {
            let (files, others): Claims = if *has_md5 {
                let files: Vec<(Option<[u8; 16]>, Vec<u8>)> = root
                    .read_file(&info.join(format!("{stem}.md5sums")), INFO_CAP)
                    .map(|t| {
                        let all = parse_md5sums(&t);
                        listed.fetch_add(all.len(), std::sync::atomic::Ordering::Relaxed);
                        all.into_iter()
                            .filter(|(_, p)| wanted(p))
                            .map(|(m, p)| (Some(m), p))
                            .collect()
                    })
                    .unwrap_or_default();
                // What `.list` adds: the entries md5sums does not
                // name (symlinks and directories have no digest).
                let others = if lists && *has_list {
                    let sums: crate::fasthash::FastSet<&[u8]> =
                        files.iter().map(|(_, p)| p.as_slice()).collect();
                    root.read_file(&info.join(format!("{stem}.list")), INFO_CAP)
                        .map(|t| {
                            parse_list(&t)
                                .into_iter()
                                .filter(|p| wanted(p) && !sums.contains(p.as_slice()))
                                .collect()
                        })
                        .unwrap_or_default()
                } else {
                    Vec::new()
                };
                (files, others)
            } else if *has_list {
                root.read_file(&info.join(format!("{stem}.list")), INFO_CAP)
                    .map(|t| {
                        let all = parse_list(&t);
                        listed.fetch_add(all.len(), std::sync::atomic::Ordering::Relaxed);
                        let files = all
                            .into_iter()
                            .filter(|p| wanted(p))
                            .map(|p| (None, p))
                            .collect();
                        (files, Vec::new())
                    })
                    .unwrap_or_default()
            } else {
                (Vec::new(), Vec::new())
            };
            let mut memo = Memo::default();
            let files = files
                .iter()
                .map(|(m, p)| (*m, canon.file_with(p, &mut memo)))
                .filter(|(_, c)| within(c))
                .collect();
            let others = others
                .iter()
                .map(|p| canon.file_with(p, &mut memo))
                .filter(|c| within(c))
                .collect();
            (files, others)
        };
        let mut db = DpkgDb::default();
        db.set_lists(lists);
        // A batch of packages parsed at a time: besides the index, the
        // parsed lines of two batches are held, not those of every package.
        // The claims of one batch go into the index while the next batch is
        // parsed (the index is one map, filled by one thread; the parsing
        // would otherwise wait for it).
        type Installed = (String, String, bool, bool);
        let add = |db: &mut DpkgDb, batch: &[Installed], parsed: Vec<Claims>| {
            let (files, others) = parsed
                .iter()
                .fold((0, 0), |(f, o), (a, b)| (f + a.len(), o + b.len()));
            db.reserve(files, others);
            for ((name, version, _, _), (claims, others)) in batch.iter().zip(parsed) {
                let pkg = db.add_package(Package {
                    name: name.clone(),
                    version: version.clone(),
                    manager: Manager::Dpkg,
                });
                for (md5, key) in claims {
                    let digest = md5.map(FileDigest::Md5);
                    db.add(
                        key,
                        Owner {
                            pkg,
                            digest,
                            ..Owner::default()
                        },
                    );
                }
                for key in others {
                    db.add_other(key, pkg);
                }
            }
        };
        let mut pending: Option<(&[Installed], Vec<Claims>)> = None;
        for batch in installed.chunks(PARSE_BATCH) {
            let (parsed, ()) = rayon::join(
                || batch.par_iter().map(parse).collect::<Vec<Claims>>(),
                || {
                    if let Some((b, p)) = pending.take() {
                        add(&mut db, b, p);
                    }
                },
            );
            pending = Some((batch, parsed));
        }
        if let Some((b, p)) = pending.take() {
            add(&mut db, b, p);
        }
        db.count_listed(listed.load(std::sync::atomic::Ordering::Relaxed));

        // A diverted file of package P (not the diverter) lives at `to`.
        {
            for d in diversions {
                let from = canon.file(&d.from);
                let to = canon.file(&d.to);
                let owners = db.take(&from);
                let (moved, kept): (Vec<Owner>, Vec<Owner>) = owners.into_iter().partition(|o| {
                    d.by.as_deref() != db.packages.get(o.pkg as usize).map(|p| base(&p.name))
                });
                for o in kept {
                    db.add(from.clone(), o);
                }
                if !moved.is_empty() && scope.is_some_and(|s| !s.holds(&to)) {
                    pinned_outside.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                for o in moved {
                    db.add(to.clone(), o);
                }
            }
        }
        if let Some(s) = scope {
            if pinned_outside.load(std::sync::atomic::Ordering::Relaxed) {
                db.retain_within(s);
            } else {
                db.set_scope(Some(s.clone()));
            }
        }
        db.set_names(names);
        db.set_pinned(pinned);
        db.shrink_to_fit();
        Ok(Some(db))
    }
}

/// A package name without its `:arch` qualifier.
fn base(name: &str) -> &str {
    name.split(':').next().unwrap_or(name)
}

/// Canonicalises dpkg's paths inside the root, one `lstat` per distinct
/// directory: the parent is resolved (cached), the file name appended.
/// Shared by the threads that parse the info files: the cache is behind a
/// lock, read far more than written (a directory is resolved once per run,
/// whichever thread meets it first; two meeting it together both resolve
/// it, to the same answer), and each caller keeps the last directory it
/// asked for ([`Memo`]): the lines of one package's lists mostly share it,
/// and then no lock nor lookup is taken.
pub(super) struct Canon<'a> {
    root: &'a Root,
    dirs: std::sync::RwLock<crate::fasthash::FastMap<Vec<u8>, Vec<u8>>>,
}

/// The last directory one caller of [`Canon::file_with`] canonicalised: as
/// dpkg spelled it, and canonical.
#[derive(Default)]
pub(super) struct Memo(Option<(Vec<u8>, Vec<u8>)>);

impl<'a> Canon<'a> {
    pub(super) fn new(root: &'a Root) -> Self {
        Canon {
            root,
            dirs: Default::default(),
        }
    }

    pub(super) fn file(&self, path: &[u8]) -> Vec<u8> {
        self.file_with(path, &mut Memo::default())
    }

    /// [`Canon::file`], remembering the directory in `memo`.
    pub(super) fn file_with(&self, path: &[u8], memo: &mut Memo) -> Vec<u8> {
        match path.iter().rposition(|&b| b == b'/') {
            Some(i) if i + 1 < path.len() => {
                let (dir, name) = path.split_at(i);
                let name = name.get(1..).unwrap_or_default();
                let known = memo.0.as_ref().is_some_and(|(raw, _)| raw == dir);
                if !known {
                    memo.0 = Some((dir.to_vec(), self.dir(dir)));
                }
                let dir = memo.0.as_ref().map_or(&b"/"[..], |(_, c)| c.as_slice());
                // Built at its final size: the index holds ~100k of these
                // for the whole walk.
                let slash = usize::from(dir != b"/");
                let mut out = Vec::with_capacity(dir.len() + slash + name.len());
                out.extend_from_slice(dir);
                if slash == 1 {
                    out.push(b'/');
                }
                out.extend_from_slice(name);
                out
            }
            _ => path.to_vec(),
        }
    }

    fn dir(&self, dir: &[u8]) -> Vec<u8> {
        if dir.is_empty() || dir == b"/" {
            return b"/".to_vec();
        }
        {
            let dirs = self.dirs.read().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = dirs.get(dir) {
                return c.clone();
            }
        }
        let (parent, name) = match dir.iter().rposition(|&b| b == b'/') {
            Some(i) => (&dir[..i], &dir[i + 1..]),
            None => (&b""[..], dir),
        };
        let mut cand = self.dir(parent);
        let resolved = if name == b"." || name == b".." || name.is_empty() {
            // Not in dpkg's output; resolve the whole thing the slow way.
            self.root
                .resolve_lenient(Path::new(OsStr::from_bytes(dir)))
                .as_os_str()
                .as_bytes()
                .to_vec()
        } else {
            if cand != b"/" {
                cand.push(b'/');
            }
            cand.extend_from_slice(name);
            let logical = PathBuf::from(OsStr::from_bytes(&cand));
            match self.root.lstat(&logical) {
                Ok(m) if m.file_type().is_symlink() => self
                    .root
                    .resolve_lenient(&logical)
                    .as_os_str()
                    .as_bytes()
                    .to_vec(),
                _ => cand,
            }
        };
        self.dirs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(dir.to_vec(), resolved.clone());
        resolved
    }
}

/// One stanza of `status`, the fields libwarden needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusEntry {
    pub package: String,
    pub arch: Option<String>,
    pub version: String,
    /// The third word of `Status:` (installed, unpacked, config-files...).
    pub state: String,
}

impl StatusEntry {
    /// Whether the package's files are on disk.
    pub fn has_files(&self) -> bool {
        !matches!(self.state.as_str(), "not-installed" | "config-files" | "")
    }
}

/// Parses `status` (RFC 822-like stanzas separated by blank lines).
/// Stanzas without a package name or version are skipped.
pub fn parse_status(text: &[u8]) -> Vec<StatusEntry> {
    let mut out = Vec::new();
    let mut cur: (Option<String>, Option<String>, Option<String>, String) =
        (None, None, None, String::new());
    let mut flush = |cur: &mut (Option<String>, Option<String>, Option<String>, String)| {
        let c = std::mem::take(cur);
        if let (Some(package), Some(version)) = (c.0, c.2) {
            out.push(StatusEntry {
                package,
                arch: c.1,
                version,
                state: c.3,
            });
        }
    };
    for line in text.split(|&b| b == b'\n') {
        if line.is_empty() {
            flush(&mut cur);
            continue;
        }
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (field, value) = line.split_at(colon);
        let value = String::from_utf8_lossy(value.get(1..).unwrap_or_default())
            .trim()
            .to_string();
        match field {
            b"Package" => cur.0 = Some(value),
            b"Architecture" => cur.1 = Some(value),
            b"Version" => cur.2 = Some(value),
            b"Status" => cur.3 = value.split_whitespace().nth(2).unwrap_or("").to_string(),
            _ => {}
        }
    }
    flush(&mut cur);
    out
}

/// Parses an `.md5sums` file: `HEX32  path/without/leading/slash` lines.
/// Returns absolute paths.
pub fn parse_md5sums(text: &[u8]) -> Vec<([u8; 16], Vec<u8>)> {
    let mut out = Vec::new();
    for line in text.split(|&b| b == b'\n') {
        let (Some(hex), Some(rest)) = (line.get(..32), line.get(32..)) else {
            continue;
        };
        let Some(md5) = unhex16(hex) else { continue };
        let name = trim_leading(rest, b' ');
        let name = trim_leading(name, b'/');
        if name.is_empty() || !rest.starts_with(b" ") {
            continue;
        }
        let mut p = Vec::with_capacity(name.len() + 1);
        p.push(b'/');
        p.extend_from_slice(name);
        out.push((md5, p));
    }
    out
}

/// Parses a `.list` file: one absolute path per line (`/.` for the root).
pub fn parse_list(text: &[u8]) -> Vec<Vec<u8>> {
    text.split(|&b| b == b'\n')
        .filter(|l| l.starts_with(b"/") && l.len() > 2)
        .map(|l| l.to_vec())
        .collect()
}

/// One entry of `diversions`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diversion {
    pub from: Vec<u8>,
    pub to: Vec<u8>,
    /// The diverting package; `None` for a local diversion (`:`).
    pub by: Option<String>,
}

/// Parses `diversions`: triples of lines (from, to, package or `:`).
pub fn parse_diversions(text: &[u8]) -> Vec<Diversion> {
    let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    lines
        .chunks_exact(3)
        .filter_map(|c| {
            let (from, to, by) = (c.first()?, c.get(1)?, c.get(2)?);
            if !from.starts_with(b"/") || !to.starts_with(b"/") {
                return None;
            }
            let by = String::from_utf8_lossy(by).trim().to_string();
            Some(Diversion {
                from: from.to_vec(),
                to: to.to_vec(),
                by: (by != ":").then_some(by),
            })
        })
        .collect()
}

fn trim_leading(mut s: &[u8], b: u8) -> &[u8] {
    while let Some(rest) = s.strip_prefix(&[b]) {
        s = rest;
    }
    s
}

fn unhex16(h: &[u8]) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        let hi = (*h.get(2 * i)? as char).to_digit(16)?;
        let lo = (*h.get(2 * i + 1)? as char).to_digit(16)?;
        *o = (hi * 16 + lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A merged-/usr root (`/lib` a symlink to `usr/lib`) holding `files`
    /// (root-relative path, text).
    fn merged_usr_root(files: &[(&str, &str)]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("usr/lib/x86_64-linux-gnu")).unwrap();
        std::os::unix::fs::symlink("usr/lib", t.path().join("lib")).unwrap();
        for (rel, text) in files {
            write_in(&t, rel, text);
        }
        t
    }

    /// Writes `text` at `rel` inside `t`, making its directories.
    fn write_in(t: &tempfile::TempDir, rel: &str, text: &str) {
        let p = t.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn status_stanzas() {
        let s = b"Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.36-9\nDescription: x\n more\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n";
        let v = parse_status(s);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].package, "libc6");
        assert_eq!(v[0].arch.as_deref(), Some("amd64"));
        assert_eq!(v[0].version, "2.36-9");
        assert!(v[0].has_files());
        assert!(!v[1].has_files());
    }

    #[test]
    fn md5sums_lines() {
        let s = b"0123456789abcdef0123456789abcdef  lib/x86_64-linux-gnu/libc.so.6\nbad line\n";
        let v = parse_md5sums(s);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].1, b"/lib/x86_64-linux-gnu/libc.so.6");
        assert_eq!(v[0].0[0], 0x01);
    }

    #[test]
    fn diversions_triples() {
        let s = b"/usr/bin/a\n/usr/bin/a.distrib\ndash\n/x\n/y\n:\n/trunc\n";
        let v = parse_diversions(s);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].by.as_deref(), Some("dash"));
        assert_eq!(v[1].by, None);
    }

    #[test]
    fn merged_usr_paths_are_canonical() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("usr/lib/x86_64-linux-gnu")).unwrap();
        std::os::unix::fs::symlink("usr/lib", t.path().join("lib")).unwrap();
        let root = Root::new(t.path()).unwrap();
        let c = Canon::new(&root);
        assert_eq!(
            c.file(b"/lib/x86_64-linux-gnu/libc.so.6"),
            b"/usr/lib/x86_64-linux-gnu/libc.so.6"
        );
        assert_eq!(c.file(b"/usr/lib/x"), b"/usr/lib/x");
        assert_eq!(c.file(b"/nonexistent/x"), b"/nonexistent/x");
    }

    #[test]
    fn load_indexes_canonical_paths_versions_and_diversions() {
        let t = merged_usr_root(&[]);
        let w = |rel: &str, text: &str| write_in(&t, rel, text);
        w(
            "var/lib/dpkg/status",
            "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.36\n\n\
             Package: old\nStatus: deinstall ok config-files\nVersion: 1\n\n\
             Package: nomd5\nStatus: install ok installed\nVersion: 3\n",
        );
        w(
            "var/lib/dpkg/info/libc6:amd64.md5sums",
            "00000000000000000000000000000001  lib/x86_64-linux-gnu/libc.so.6\n\
             00000000000000000000000000000002  usr/lib/x86_64-linux-gnu/libdiv.so\n",
        );
        w("var/lib/dpkg/info/libc6:amd64.list", "/.\n/lib\n");
        w(
            "var/lib/dpkg/info/old.md5sums",
            "00000000000000000000000000000003  usr/lib/old.so\n",
        );
        w("var/lib/dpkg/info/nomd5.list", "/.\n/usr/lib/nomd5.so\n");
        w(
            "var/lib/dpkg/diversions",
            "/usr/lib/x86_64-linux-gnu/libdiv.so\n/usr/lib/x86_64-linux-gnu/libdiv.so.distrib\nlocal-pkg\n",
        );
        let root = Root::new(t.path()).unwrap();
        let db = DpkgDb::load(&root, Path::new(ADMIN_DIR)).unwrap().unwrap();
        let o = db.owners(b"/usr/lib/x86_64-linux-gnu/libc.so.6");
        assert_eq!(o.len(), 1);
        assert_eq!(db.package(&o[0]).unwrap().version, "2.36");
        assert_eq!(
            o[0].digest,
            FileDigest::from_hex(
                super::super::index::Algo::Md5,
                b"00000000000000000000000000000001"
            )
        );
        assert!(db.owners(b"/lib/x86_64-linux-gnu/libc.so.6").is_empty());
        assert!(
            db.owners(b"/usr/lib/old.so").is_empty(),
            "config-files only"
        );
        assert_eq!(db.owners(b"/usr/lib/nomd5.so")[0].digest, None);
        assert!(db.owners(b"/usr/lib/x86_64-linux-gnu/libdiv.so").is_empty());
        assert_eq!(
            db.owners(b"/usr/lib/x86_64-linux-gnu/libdiv.so.distrib")
                .len(),
            1
        );
        // Filtered by the names being judged: the same answers for those,
        // nothing kept for the rest, diverted names kept whatever asked.
        let names: HashSet<Vec<u8>> = [b"libc.so.6".to_vec()].into_iter().collect();
        let f = DpkgDb::load_for(&root, Path::new(ADMIN_DIR), Some(&names))
            .unwrap()
            .unwrap();
        assert_eq!(f.owners(b"/usr/lib/x86_64-linux-gnu/libc.so.6"), o);
        assert!(f.owners(b"/usr/lib/nomd5.so").is_empty());
        assert_eq!(
            f.owners(b"/usr/lib/x86_64-linux-gnu/libdiv.so.distrib")
                .len(),
            1
        );
        assert_eq!(f.file_count(), db.file_count());
        let none = tempfile::tempdir().unwrap();
        let r = Root::new(none.path()).unwrap();
        assert!(DpkgDb::load(&r, Path::new(ADMIN_DIR)).unwrap().is_none());
    }

    /// One read of every name with lists, cut to some names, is the index
    /// a read with that cut gives (what the judge gets from the one read a
    /// run makes), diversions included, whatever the names.
    #[test]
    fn a_cut_of_one_full_read_is_the_read_with_that_cut() {
        let t = merged_usr_root(&[]);
        let w = |rel: &str, text: &str| write_in(&t, rel, text);
        w(
            "var/lib/dpkg/status",
            "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.36\n\n\
             Package: libz\nStatus: install ok installed\nVersion: 1\n\n\
             Package: nomd5\nStatus: install ok installed\nVersion: 3\n",
        );
        w(
            "var/lib/dpkg/info/libc6:amd64.md5sums",
            "00000000000000000000000000000001  lib/x86_64-linux-gnu/libc.so.6\n\
             00000000000000000000000000000002  usr/lib/x86_64-linux-gnu/libdiv.so\n\
             00000000000000000000000000000004  usr/share/doc/libc6/copyright\n",
        );
        w(
            "var/lib/dpkg/info/libc6:amd64.list",
            "/.\n/lib\n/lib/x86_64-linux-gnu/libc.so.6\n/lib/x86_64-linux-gnu/libc.so\n",
        );
        w(
            "var/lib/dpkg/info/libz.md5sums",
            "00000000000000000000000000000005  usr/lib/x86_64-linux-gnu/libz.so.1.3\n\
             00000000000000000000000000000006  usr/lib/x86_64-linux-gnu/libc.so.6\n",
        );
        w("var/lib/dpkg/info/nomd5.list", "/.\n/usr/lib/nomd5.so\n");
        w(
            "var/lib/dpkg/diversions",
            "/usr/lib/x86_64-linux-gnu/libdiv.so\n/usr/lib/x86_64-linux-gnu/libdiv.so.distrib\nlocal-pkg\n",
        );
        let root = Root::new(t.path()).unwrap();
        let admin = Path::new(ADMIN_DIR);
        let full = DpkgDb::load_with_lists(&root, admin, None)
            .unwrap()
            .unwrap();
        assert!(full.lists_every_name());
        let sets: [&[&str]; 5] = [
            &[],
            &["libc.so.6"],
            &["libc.so.6", "libz.so.1.3", "nomd5.so"],
            &["libdiv.so", "copyright", "absent.so"],
            &["libc.so", "libz.so.1.3"],
        ];
        // The same once the full read keeps only the names of a scan's
        // records (every name asked for below, and one more).
        let mut kept = DpkgDb::load_with_lists(&root, admin, None)
            .unwrap()
            .unwrap();
        let mut all: HashSet<Vec<u8>> = sets
            .iter()
            .flat_map(|s| s.iter())
            .map(|n| n.as_bytes().to_vec())
            .collect();
        all.insert(b"libc.so.6".to_vec());
        kept.retain_names(&all);
        assert!(!kept.lists_every_name());
        assert!(kept.knows_name(b"libc.so"));
        assert!(!kept.knows_name(b"nomd5.so.2"));
        assert_eq!(
            kept.claimants(b"/usr/lib/x86_64-linux-gnu/libc.so").len(),
            1
        );
        for set in sets {
            let names: HashSet<Vec<u8>> = set.iter().map(|n| n.as_bytes().to_vec()).collect();
            let read = DpkgDb::load_for(&root, admin, Some(&names))
                .unwrap()
                .unwrap();
            for from in [&full, &kept] {
                let cut = from.cut_to(&names);
                assert!(!cut.lists_every_name());
                // The encoding holds packages, the names cut to, every
                // claim and the count listed: equal bytes, equal indexes.
                assert_eq!(cut.encode(), read.encode(), "{set:?}");
                assert!(cut.encode().is_some());
            }
        }
    }

    #[test]
    fn lists_add_symlinks_and_directories_for_the_names_asked() {
        let t = merged_usr_root(&[]);
        let w = |rel: &str, text: &str| write_in(&t, rel, text);
        w(
            "var/lib/dpkg/status",
            "Package: libq1\nStatus: install ok installed\nVersion: 1\n",
        );
        w(
            "var/lib/dpkg/info/libq1.md5sums",
            "00000000000000000000000000000001  lib/x86_64-linux-gnu/libq.so.1.0\n",
        );
        w(
            "var/lib/dpkg/info/libq1.list",
            "/.\n/lib\n/lib/x86_64-linux-gnu\n/lib/x86_64-linux-gnu/libq.so.1.0\n\
             /lib/x86_64-linux-gnu/libq.so.1\n/lib/x86_64-linux-gnu/q-plugins\n",
        );
        let root = Root::new(t.path()).unwrap();
        let admin = Path::new(ADMIN_DIR);
        let link = b"/usr/lib/x86_64-linux-gnu/libq.so.1";
        // Without lists: the digest-bearing file only, and no claim known.
        let plain = DpkgDb::load(&root, admin).unwrap().unwrap();
        assert!(plain.claimants(link).is_empty());
        assert!(!plain.knows_name(b"libq.so.1"));
        let all = DpkgDb::load_with_lists(&root, admin, None)
            .unwrap()
            .unwrap();
        let names =
            |p: &[u8]| -> Vec<String> { all.claimants(p).iter().map(|p| p.name.clone()).collect() };
        assert_eq!(names(link), ["libq1"]);
        assert_eq!(names(b"/usr/lib/x86_64-linux-gnu/q-plugins"), ["libq1"]);
        assert_eq!(names(b"/usr/lib/x86_64-linux-gnu/libq.so.1.0"), ["libq1"]);
        // The file with a digest is not listed twice.
        assert_eq!(
            all.owners(b"/usr/lib/x86_64-linux-gnu/libq.so.1.0").len(),
            1
        );
        assert!(all.knows_name(b"anything"));
        // Cut to some names: those known, the others not answered for.
        let some: HashSet<Vec<u8>> = [b"libq.so.1".to_vec()].into_iter().collect();
        let cut = DpkgDb::load_with_lists(&root, admin, Some(&some))
            .unwrap()
            .unwrap();
        assert_eq!(cut.claimants(link).len(), 1);
        assert!(cut.knows_name(b"libq.so.1"));
        assert!(!cut.knows_name(b"q-plugins"));
    }

    /// The threads that parse share one cache of resolved directories,
    /// each with its memo of the last: the index is the same on one
    /// thread as on several,
    /// across batches, with directories reached through symlinks (`/lib`,
    /// a symlinked subdirectory) and same-named directories elsewhere.
    #[test]
    fn threads_sharing_the_directory_cache_give_the_index_one_thread_gives() {
        let t = tempfile::tempdir().unwrap();
        let w = |rel: &str, text: &str| write_in(&t, rel, text);
        for d in ["usr/lib/x86_64-linux-gnu/sub", "usr/lib64/sub"] {
            std::fs::create_dir_all(t.path().join(d)).unwrap();
        }
        std::os::unix::fs::symlink("usr/lib", t.path().join("lib")).unwrap();
        std::os::unix::fs::symlink("usr/lib64", t.path().join("lib64")).unwrap();
        std::os::unix::fs::symlink("sub", t.path().join("usr/lib/x86_64-linux-gnu/alias")).unwrap();
        let mut status = String::new();
        let dirs = [
            "lib/x86_64-linux-gnu",
            "usr/lib/x86_64-linux-gnu",
            "lib/x86_64-linux-gnu/alias",
            "lib/x86_64-linux-gnu/sub",
            "lib64/sub",
            "usr/lib64/sub",
            "usr/share/doc",
        ];
        for i in 0..(3 * PARSE_BATCH + 7) {
            let name = format!("p{i}");
            status.push_str(&format!(
                "Package: {name}\nStatus: install ok installed\nVersion: {i}\n\n"
            ));
            let mut sums = String::new();
            let mut list = String::from("/.\n");
            for (j, d) in dirs.iter().enumerate() {
                sums.push_str(&format!("{:032x}  {d}/lib{i}.so\n", i * 16 + j));
                sums.push_str(&format!("{:032x}  {d}/same.so\n", i * 16 + j));
                list.push_str(&format!("/{d}\n/{d}/link{i}.so\n"));
            }
            w(&format!("var/lib/dpkg/info/{name}.md5sums"), &sums);
            w(&format!("var/lib/dpkg/info/{name}.list"), &list);
        }
        w("var/lib/dpkg/status", &status);
        let root = Root::new(t.path()).unwrap();
        let load = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| DpkgDb::load_with_lists(&root, Path::new(ADMIN_DIR), None))
                .unwrap()
                .unwrap()
        };
        let one = load(1);
        let four = load(4);
        let mut names: HashSet<Vec<u8>> = HashSet::new();
        for i in 0..(3 * PARSE_BATCH + 7) {
            names.insert(format!("lib{i}.so").into_bytes());
            names.insert(format!("link{i}.so").into_bytes());
        }
        names.insert(b"same.so".to_vec());
        assert_eq!(one.cut_to(&names).encode(), four.cut_to(&names).encode());
        let owner = |db: &DpkgDb, p: &[u8]| -> Vec<String> {
            db.claimants(p).iter().map(|p| p.name.clone()).collect()
        };
        for db in [&one, &four] {
            // Through /lib and the alias, the same canonical file; the two
            // `sub` directories apart.
            let alias = b"/usr/lib/x86_64-linux-gnu/sub/lib2.so";
            // (Two claims of p2: two spellings, two digests.)
            assert_eq!(owner(db, alias), ["p2", "p2"]);
            assert_eq!(db.owners(alias).len(), 2, "listed through alias and sub");
            assert_eq!(db.owners(b"/usr/lib64/sub/lib2.so").len(), 2);
            assert_eq!(
                db.owners(b"/usr/lib64/sub/same.so").len(),
                2 * (3 * PARSE_BATCH + 7)
            );
            assert!(db.owners(b"/lib64/sub/same.so").is_empty());
            assert_eq!(owner(db, b"/usr/lib/x86_64-linux-gnu/link5.so"), ["p5"]);
            assert_eq!(
                db.first_claimant(b"/usr/lib/x86_64-linux-gnu/link5.so")
                    .map(|p| p.name.as_str()),
                Some("p5")
            );
            assert_eq!(
                db.first_claimant(b"/usr/lib/x86_64-linux-gnu/lib4.so")
                    .map(|p| p.name.as_str()),
                db.claimants(b"/usr/lib/x86_64-linux-gnu/lib4.so")
                    .first()
                    .map(|p| p.name.as_str())
            );
            assert!(db.first_claimant(b"/usr/lib/none.so").is_none());
        }
    }

    /// The paths the index holds are allocated at their length: ~100k of
    /// them live through the walk.
    #[test]
    fn canonical_paths_are_allocated_at_their_length() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("usr/lib/x86_64-linux-gnu")).unwrap();
        std::os::unix::fs::symlink("usr/lib", t.path().join("lib")).unwrap();
        let root = Root::new(t.path()).unwrap();
        let c = Canon::new(&root);
        for p in [
            &b"/lib/x86_64-linux-gnu/libc.so.6"[..],
            b"/usr/lib/x86_64-linux-gnu/libm.so.6",
            b"/libtop.so",
            b"/lib/x86_64-linux-gnu/libc.so.6",
        ] {
            let out = c.file(p);
            assert_eq!(
                out.capacity(),
                out.len(),
                "{}",
                String::from_utf8_lossy(&out)
            );
        }
        assert_eq!(c.file(b"/libtop.so"), b"/libtop.so");
    }

    /// A read within a scope keeps exactly what a read of everything
    /// retained to that scope keeps, diversions included (a claim a
    /// diversion moves into the scope from outside is kept, one it moves
    /// out goes), with or without lists, and records the scope.
    #[test]
    fn a_read_within_a_scope_is_the_full_read_retained_to_it() {
        let t = merged_usr_root(&[
            (
                "var/lib/dpkg/status",
                "Package: libc6\nStatus: install ok installed\nVersion: 2.36\n\n\
                 Package: opt\nStatus: install ok installed\nVersion: 1\n",
            ),
            (
                "var/lib/dpkg/info/libc6.md5sums",
                "00000000000000000000000000000001  lib/x86_64-linux-gnu/libc.so.6\n\
                 00000000000000000000000000000002  usr/lib/x86_64-linux-gnu/libdiv.so\n\
                 00000000000000000000000000000003  usr/share/doc/libc6/copyright\n",
            ),
            (
                "var/lib/dpkg/info/libc6.list",
                "/.\n/lib\n/usr/share/doc/libc6\n/lib/x86_64-linux-gnu/libc.so\n",
            ),
            (
                "var/lib/dpkg/info/opt.md5sums",
                "00000000000000000000000000000004  opt/x/libo.so\n\
                 00000000000000000000000000000005  opt/x/libp.so\n",
            ),
            (
                "var/lib/dpkg/diversions",
                "/opt/x/libo.so\n/usr/lib/x86_64-linux-gnu/libo.so.distrib\nlocal\n\
                 /usr/lib/x86_64-linux-gnu/libdiv.so\n/opt/div/libdiv.so\nlocal\n",
            ),
        ]);
        let root = Root::new(t.path()).unwrap();
        let admin = Path::new(ADMIN_DIR);
        let scope = Scope::new([(b"/usr/lib".to_vec(), true)], []);
        let names: HashSet<Vec<u8>> = [
            "libc.so.6",
            "libc.so",
            "libo.so.distrib",
            "libdiv.so",
            "libp.so",
        ]
        .iter()
        .map(|n| n.as_bytes().to_vec())
        .collect();
        for lists in [false, true] {
            let within = DpkgDb::load_within(&root, admin, lists, &scope)
                .unwrap()
                .unwrap();
            let mut full = DpkgDb::load_inner(&root, admin, None, lists, None)
                .unwrap()
                .unwrap();
            full.retain_within(&scope);
            assert_eq!(within.scope(), Some(&scope));
            assert_eq!(within.cut_to(&names).encode(), full.cut_to(&names).encode());
            assert_eq!(within.file_count(), 5);
            let moved_in = within.owners(b"/usr/lib/x86_64-linux-gnu/libo.so.distrib");
            assert_eq!(moved_in.len(), 1);
            assert_eq!(within.package(&moved_in[0]).unwrap().name, "opt");
            assert!(within.owners(b"/opt/div/libdiv.so").is_empty());
            assert!(within.owners(b"/opt/x/libp.so").is_empty());
            assert!(within.owners(b"/usr/share/doc/libc6/copyright").is_empty());
            assert_eq!(
                within.owners(b"/usr/lib/x86_64-linux-gnu/libc.so.6").len(),
                1
            );
            assert_eq!(
                within.claimants(b"/usr/lib/x86_64-linux-gnu/libc.so").len(),
                usize::from(lists)
            );
            assert!(within.claimants(b"/usr/share/doc/libc6").is_empty());
            assert_eq!(within.digest_count(), 2);
        }
    }

    proptest! {
        #[test]
        fn parsers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse_status(&data);
            let _ = parse_md5sums(&data);
            let _ = parse_list(&data);
            let _ = parse_diversions(&data);
        }

        #[test]
        fn truncated_real_files_never_panic(n in 0usize..400) {
            let s = b"Package: a\nStatus: install ok installed\nVersion: 1\n\n0123456789abcdef0123456789abcdef  usr/lib/libz.so.1\n/usr/bin/a\n/usr/bin/a.distrib\ndash\n";
            let cut = &s[..n.min(s.len())];
            let _ = parse_status(cut);
            let _ = parse_md5sums(cut);
            let _ = parse_diversions(cut);
        }
    }
}
