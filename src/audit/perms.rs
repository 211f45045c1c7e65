//! Who can write what the loader reads. Every search dir and each of its
//! ancestors up to `/`, the loader's files and their directories, every
//! directory and loadable file the scan found: owned by root (or a trusted
//! uid) and writable by nobody else. A sticky `1777` dir is still a finding:
//! anyone can add a library to it.

use crate::sys::{MetadataExt, OsStrExt};
use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use super::{bytes, Audit, Context};
use crate::finding::{Finding, Kind, Severity};
use crate::record::FileType;
use crate::rootfs::Root;

/// The owners whose files are trusted: root, the config's `trusted_uids`,
/// and under `--root` the owner of the root directory itself (an image
/// unpacked by a user is owned by that user throughout).
#[derive(Clone, Debug)]
pub struct Trust {
    uids: Vec<u32>,
}

impl Trust {
    pub fn new(root: &Root, extra: &[u32]) -> Trust {
        let mut uids = vec![0];
        uids.extend_from_slice(extra);
        if !root.is_slash() {
            if let Ok(m) = root.lstat(Path::new("/")) {
                uids.push(m.uid());
            }
        }
        Trust { uids }
    }

    pub fn trusts(&self, uid: u32) -> bool {
        self.uids.contains(&uid)
    }

    /// Who besides the trusted can write an entry with these owner and
    /// mode bits; `None` when nobody can.
    pub fn writers(&self, uid: u32, gid: u32, mode: u32) -> Option<Writers> {
        let everyone = mode & 0o002 != 0;
        let w = Writers {
            owner: (!self.trusts(uid)).then_some(uid),
            // Everyone includes the group: name it only when it matters.
            group: (mode & 0o020 != 0 && !everyone).then_some(gid),
            everyone,
            sticky: mode & 0o1000 != 0,
        };
        (w.owner.is_some() || w.group.is_some() || w.everyone).then_some(w)
    }

    /// The writers of a logical path (not following a final symlink).
    pub fn writers_of(&self, root: &Root, logical: &Path) -> Option<Writers> {
        let m = root.lstat(logical).ok()?;
        if m.file_type().is_symlink() {
            return None;
        }
        self.writers(m.uid(), m.gid(), m.mode())
    }

    /// The first of `dir` (resolved inside the root) and its ancestors that
    /// someone untrusted can write. For a missing `dir`, the nearest
    /// existing ancestor is where it would be created, so that is judged.
    pub fn chain_writers(&self, root: &Root, dir: &Path) -> Option<(PathBuf, Writers)> {
        let canonical = root.resolve_lenient(dir);
        let mut cur: Option<&Path> = Some(canonical.as_path());
        while let Some(p) = cur {
            if root.lstat(p).is_ok() {
                if let Some(w) = self.writers_of(root, p) {
                    return Some((p.to_path_buf(), w));
                }
            }
            cur = p.parent();
        }
        None
    }
}

/// Who can write one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Writers {
    /// An untrusted owner.
    pub owner: Option<u32>,
    /// The group, when it has write permission.
    pub group: Option<u32>,
    pub everyone: bool,
    pub sticky: bool,
}

impl Writers {
    /// Everyone or an untrusted owner or group: high. Only the root group
    /// (gid 0) with a trusted owner: medium.
    pub fn severity(&self) -> Severity {
        if self.everyone || self.owner.is_some() || self.group.is_some_and(|g| g != 0) {
            Severity::High
        } else {
            Severity::Medium
        }
    }
}

impl fmt::Display for Writers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(u) = self.owner {
            parts.push(format!("uid {u} (owner)"));
        }
        if let Some(g) = self.group {
            parts.push(format!("group gid {g}"));
        }
        if self.everyone {
            parts.push(if self.sticky {
                "everyone (sticky: anyone can add files)".to_string()
            } else {
                "everyone".to_string()
            });
        }
        f.write_str(&parts.join(", "))
    }
}

/// Checks every search dir and its ancestors, the loader files and their
/// dirs, and each directory and loadable file of the scan.
pub fn audit(cx: &Context, a: &mut Audit) {
    if cfg!(windows) {
        // Mode bits on Windows are made up from the read-only flag; the
        // ACLs that decide who can write are not read yet.
        a.notes.push(
            "who can write search dirs is not audited on Windows (ACLs not read; not supported yet)"
                .into(),
        );
        return;
    }
    let mut seen: BTreeSet<PathBuf> = BTreeSet::new();
    let mut check = |p: &Path, what: &str, a: &mut Audit| {
        if !seen.insert(p.to_path_buf()) {
            return;
        }
        if let Some(w) = cx.trust.writers_of(cx.root, p) {
            a.findings.push(Finding::audit(
                Kind::Writable,
                w.severity(),
                bytes(p).to_vec(),
                format!("{what} can be written by {w}"),
            ));
        }
    };
    for d in cx.sp.dirs.iter().filter(|d| d.exists) {
        check(&d.path, "search dir", a);
        for anc in d.path.ancestors().skip(1) {
            let what = format!("ancestor of search dir {}", d.path.display());
            check(anc, &what, a);
        }
        // A symlink spelling (`/lib` -> `usr/lib`) can be replaced by
        // whoever can write the directory holding it.
        for alias in d.aliases.iter().filter(|al| **al != d.path) {
            let holder = alias
                .parent()
                .map(|p| cx.root.resolve_lenient(p))
                .unwrap_or_else(|| PathBuf::from("/"));
            for anc in holder.ancestors() {
                let what = format!("directory holding search path {}", alias.display());
                check(anc, &what, a);
            }
        }
    }
    for f in cx.sp.files.iter().filter(|f| f.exists) {
        check(&f.path, "loader file", a);
        for anc in f.path.ancestors().skip(1) {
            let what = format!("directory of loader file {}", f.path.display());
            check(anc, &what, a);
        }
    }
    // The records' paths are unique: only the few paths checked above can
    // repeat one, so the set is looked up, not grown by every record (a
    // set of tens of thousands of `PathBuf`s, compared by component, cost
    // more than the checks).
    for r in cx.records {
        let what = match r.ftype {
            FileType::Dir => "directory in a search path",
            FileType::File if r.class.is_loadable() => "library",
            _ => continue,
        };
        if seen.contains(Path::new(std::ffi::OsStr::from_bytes(&r.path))) {
            continue;
        }
        if let Some(w) = cx.trust.writers(r.uid, r.gid, r.mode) {
            a.findings.push(Finding::audit(
                Kind::Writable,
                w.severity(),
                r.path.clone(),
                format!("{what} can be written by {w}"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_can_write() {
        let t = Trust { uids: vec![0, 42] };
        assert_eq!(t.writers(0, 0, 0o40755), None);
        assert_eq!(t.writers(42, 0, 0o40755), None);
        let w = t.writers(0, 0, 0o41777).unwrap();
        assert!(w.everyone && w.sticky);
        assert_eq!(w.to_string(), "everyone (sticky: anyone can add files)");
        assert_eq!(w.severity(), Severity::High);
        let w = t.writers(1000, 50, 0o40775).unwrap();
        assert_eq!(w.to_string(), "uid 1000 (owner), group gid 50");
        assert_eq!(
            t.writers(0, 0, 0o40775).unwrap().severity(),
            Severity::Medium
        );
    }
}
