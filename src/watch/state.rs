//! Transitions, not repeats: the last thing reported for each finding, so
//! a deviation is reported when it appears or changes, not again on every
//! rescan. Time stamps are left out of the comparison on purpose: a `touch`
//! of a file already reported as changed is not news.

use std::collections::{HashMap, HashSet};

use crate::finding::{Finding, Kind, Severity};
use crate::pipeline::Origin;
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
            target: r.target.as_deref().map(<[u8]>::to_vec),
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

/// What makes two findings the same finding: the path, the kind and, for
/// a finding without records (the audit's), its sentence.
type Id = (Vec<u8>, Kind, String);

fn id(f: &Finding) -> Id {
    let sentence = if f.before.is_none() && f.after.is_none() {
        f.detail.clone()
    } else {
        String::new()
    };
    (f.path.clone(), f.kind, sentence)
}

/// The last-reported state of every standing finding.
#[derive(Default)]
pub struct Transitions {
    last: HashMap<Id, (Origin, Fingerprint)>,
}

impl Transitions {
    /// Takes a verdict whose judges covered the findings `covers` says yes
    /// to (by judge and path): returns the findings that are news (new, or
    /// changed since reported) and forgets the covered ones that are gone
    /// (back to the baseline, or no longer found by the audit).
    pub fn apply<'v>(
        &mut self,
        findings: &'v [Finding],
        origins: &[Origin],
        covers: impl Fn(Origin, &[u8]) -> bool,
    ) -> Vec<&'v Finding> {
        let mut news = Vec::new();
        let mut now: HashSet<Id> = HashSet::new();
        for (f, &o) in findings.iter().zip(origins) {
            let key = id(f);
            let fp = Fingerprint::of(f);
            if self.last.get(&key).map(|(_, p)| p) != Some(&fp) {
                news.push(f);
                self.last.insert(key.clone(), (o, fp));
            }
            now.insert(key);
        }
        self.last
            .retain(|k, (o, _)| now.contains(k) || !covers(*o, &k.0));
        news
    }

    /// Reported paths directly inside `dir`.
    pub fn children_of(&self, dir: &[u8]) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = self
            .last
            .keys()
            .map(|k| &k.0)
            .filter(|p| is_child(p, dir))
            .cloned()
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Paths with a standing finding.
    pub fn len(&self) -> usize {
        self.last.keys().map(|k| &k.0).collect::<HashSet<_>>().len()
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
        let mut r = Record::test_file("/usr/lib/libx.so", h);
        r.mode = 0o100000 | mode;
        r.class = FileClass::ElfDyn;
        r
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
        let all = |_: Origin, _: &[u8]| true;
        let ch = [Origin::Change];
        let f = [content(rec(2, 0o755))];
        assert_eq!(t.apply(&f, &ch, all).len(), 1);
        assert!(t.apply(&f, &ch, all).is_empty());
        // A touch (new mtime) is not news; new bytes are.
        let mut touched = rec(2, 0o755);
        touched.mtime = (99, 0);
        assert!(t.apply(&[content(touched)], &ch, all).is_empty());
        let f = [content(rec(3, 0o755))];
        assert_eq!(t.apply(&f, &ch, all).len(), 1);
        // A run that did not cover the path keeps it.
        assert!(t.apply(&[], &[], |_, q| q != p).is_empty());
        assert_eq!(t.len(), 1);
        // Back to the baseline, then the same deviation again: news again.
        assert!(t.apply(&[], &[], all).is_empty());
        assert!(t.is_empty());
        assert_eq!(t.apply(&f, &ch, all).len(), 1);
        assert_eq!(t.children_of(b"/usr/lib"), vec![p.to_vec()]);
        assert!(t.children_of(b"/usr").is_empty());
        // Two audit sentences about one path are two findings.
        let audit = |d: &str| Finding::audit(Kind::Rpath, Severity::High, p.to_vec(), d.into());
        let a = [audit("one"), audit("two")];
        assert_eq!(t.apply(&a, &[Origin::Audit; 2], all).len(), 2);
        assert_eq!(t.len(), 1);
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
