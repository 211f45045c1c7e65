//! Transitions, not repeats: the last thing reported for each path, so a
//! deviation is reported when it appears or changes, not again on every
//! rescan. Time stamps are left out of the comparison on purpose: a `touch`
//! of a file already reported as changed is not news.

use std::collections::HashMap;

use crate::finding::{Finding, Kind, Severity};
use crate::record::{FileType, Record, Unhashed};

/// What of a record makes a deviation "the same" as one already reported.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Key {
    ftype: FileType,
    size: u64,
    perm: u32,
    uid: u32,
    gid: u32,
    inode: u64,
    nlink: u64,
    blake3: Option<[u8; 32]>,
    unhashed: Option<Unhashed>,
    target: Option<Vec<u8>>,
}

impl Key {
    fn of(r: &Record) -> Key {
        Key {
            ftype: r.ftype,
            size: r.size,
            perm: r.perm(),
            uid: r.uid,
            gid: r.gid,
            inode: r.inode,
            nlink: if r.ftype == FileType::Dir { 0 } else { r.nlink },
            blake3: r.blake3,
            unhashed: r.unhashed,
            target: r.target.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Fingerprint {
    kind: Kind,
    severity: Severity,
    before: Option<Key>,
    after: Option<Key>,
}

impl Fingerprint {
    fn of(f: &Finding) -> Fingerprint {
        Fingerprint {
            kind: f.kind,
            severity: f.severity,
            before: f.before.as_ref().map(Key::of),
            after: f.after.as_ref().map(Key::of),
        }
    }
}

/// Per-path last-reported state.
#[derive(Default)]
pub struct Transitions {
    last: HashMap<Vec<u8>, Fingerprint>,
}

impl Transitions {
    /// Records the state of `path` now (`None`: it matches the baseline).
    /// True when `finding` is news and must be reported.
    pub fn update(&mut self, path: &[u8], finding: Option<&Finding>) -> bool {
        match finding {
            None => {
                self.last.remove(path);
                false
            }
            Some(f) => {
                let fp = Fingerprint::of(f);
                if self.last.get(path) == Some(&fp) {
                    return false;
                }
                self.last.insert(path.to_vec(), fp);
                true
            }
        }
    }

    /// Forgets every path `keep` says no (after a full rescan: those paths
    /// are back to their baseline state).
    pub fn retain(&mut self, mut keep: impl FnMut(&[u8]) -> bool) {
        self.last.retain(|p, _| keep(p));
    }

    /// Reported paths directly inside `dir`.
    pub fn children_of(&self, dir: &[u8]) -> Vec<Vec<u8>> {
        self.last
            .keys()
            .filter(|p| is_child(p, dir))
            .cloned()
            .collect()
    }

    pub fn len(&self) -> usize {
        self.last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

/// `path` is an entry of `dir` (not deeper).
pub fn is_child(path: &[u8], dir: &[u8]) -> bool {
    let dir = if dir == b"/" { &b""[..] } else { dir };
    match path.strip_prefix(dir) {
        Some(rest) => rest.len() > 1 && rest[0] == b'/' && !rest[1..].contains(&b'/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::FileClass;

    fn rec(h: u8, mode: u32) -> Record {
        Record {
            path: b"/usr/lib/libx.so".to_vec(),
            ftype: FileType::File,
            size: 1,
            mode: 0o100000 | mode,
            uid: 0,
            gid: 0,
            dev: 1,
            inode: 2,
            nlink: 1,
            mtime: (1, 0),
            ctime: (1, 0),
            blake3: Some([h; 32]),
            unhashed: None,
            target: None,
            class: FileClass::ElfDyn,
            facts: None,
        }
    }

    fn content(after: Record) -> Finding {
        Finding {
            kind: Kind::Content,
            severity: Severity::High,
            path: after.path.clone(),
            detail: String::new(),
            changes: vec!["blake3"],
            before: Some(rec(1, 0o755)),
            after: Some(after),
        }
    }

    #[test]
    fn repeats_are_suppressed_changes_are_not() {
        let mut t = Transitions::default();
        let p = b"/usr/lib/libx.so";
        assert!(t.update(p, Some(&content(rec(2, 0o755)))));
        assert!(!t.update(p, Some(&content(rec(2, 0o755)))));
        // A touch (new mtime) is not news; new bytes are.
        let mut touched = rec(2, 0o755);
        touched.mtime = (99, 0);
        assert!(!t.update(p, Some(&content(touched))));
        assert!(t.update(p, Some(&content(rec(3, 0o755)))));
        // Back to the baseline, then the same deviation again: news again.
        assert!(!t.update(p, None));
        assert!(t.is_empty());
        assert!(t.update(p, Some(&content(rec(3, 0o755)))));
        assert_eq!(t.children_of(b"/usr/lib"), vec![p.to_vec()]);
        assert!(t.children_of(b"/usr").is_empty());
        t.retain(|_| false);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn children() {
        assert!(is_child(b"/a/b", b"/a"));
        assert!(is_child(b"/a", b"/"));
        assert!(!is_child(b"/a/b/c", b"/a"));
        assert!(!is_child(b"/ab", b"/a"));
        assert!(!is_child(b"/a", b"/a"));
    }
}
