//! Acknowledged findings: standing audit and provenance findings an
//! operator has seen and judged harmless (`libwarden accept`). Each
//! acknowledgement is stored in the baseline generation, as an extra pair
//! under [`ACK_PREFIX`], so it is covered by the generation's digest and
//! signature and by the rollback protection: an intruder cannot add one
//! without the signing key.
//!
//! An acknowledgement names the state it was accepted for, the *subject*
//! of the finding: the file's BLAKE3 digest (an unpackaged or unsigned
//! library), the `DT_RPATH`/`DT_RUNPATH` entry and why it is dangerous (the
//! detail of an `rpath` finding), the mapped file and what is wrong with it
//! or the loader variable and its value (a `process` finding, without the
//! PIDs, which change every run), or the finding's detail sentence when
//! nothing better identifies it. A finding whose subject has changed no
//! longer matches and is loud again.
//!
//! Only findings about the host's standing state can be acknowledged;
//! changes against the baseline are accepted by `update`, which moves the
//! baseline itself.

use std::collections::HashMap;

pub use crate::baseline::store::ACK_PREFIX;
use crate::finding::{Finding, Kind};
use crate::record::Record;
use crate::scan;

/// The kinds `accept` may acknowledge: audit and provenance findings.
/// Changes (`added`, `content`, ...) are `update`'s; a monitoring gap and
/// an expected package update set no exit bit.
pub const KINDS: &[Kind] = &[
    Kind::Preload,
    Kind::LoaderConfig,
    Kind::Writable,
    Kind::Rpath,
    Kind::Loader,
    Kind::Environment,
    Kind::Process,
    Kind::ModifiedVsPackage,
    Kind::Unpackaged,
    Kind::Unsigned,
    Kind::SignatureInvalid,
    Kind::UntrustedSigner,
    Kind::Registry,
    Kind::SideLoading,
];

/// Whether findings of `kind` can be acknowledged.
pub fn acceptable(kind: Kind) -> bool {
    KINDS.contains(&kind)
}

/// The acceptable kind named `name` (as in JSON: `unpackaged`, `rpath`).
pub fn kind_named(name: &str) -> Option<Kind> {
    KINDS.iter().copied().find(|k| k.name() == name)
}

/// Longest stored field: a path or a state longer than this is not ours.
const FIELD_CAP: usize = 64 << 10;

/// Who acknowledged a finding, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    pub kind: Kind,
    /// The finding's path as the acknowledgement keys it (a process's
    /// environment finding: `/proc/*/environ`).
    pub path: Vec<u8>,
    /// The subject's state it was accepted for.
    pub state: Vec<u8>,
    /// The user who ran `accept`.
    pub by: String,
    /// Seconds since the epoch.
    pub at: i64,
}

impl Ack {
    fn key(&self) -> Vec<u8> {
        let mut k = ACK_PREFIX.to_vec();
        k.extend_from_slice(self.kind.name().as_bytes());
        k.push(0);
        k.extend_from_slice(&self.path);
        k.push(0);
        k.extend_from_slice(&self.state);
        k
    }

    fn value(&self) -> Vec<u8> {
        let mut v = self.at.to_le_bytes().to_vec();
        v.extend_from_slice(self.by.as_bytes());
        v
    }

    /// The inverse of [`Ack::key`] and [`Ack::value`]; `None` for a pair
    /// that is not a well-formed acknowledgement.
    fn decode(k: &[u8], v: &[u8]) -> Option<Ack> {
        let rest = k.strip_prefix(ACK_PREFIX)?;
        let kind_end = rest.iter().position(|&b| b == 0)?;
        let name = std::str::from_utf8(&rest[..kind_end]).ok()?;
        let kind =
            kind_named(name).or_else(|| (name == Kind::Removed.name()).then_some(Kind::Removed))?;
        let rest = &rest[kind_end + 1..];
        // Paths hold no NUL: the first one ends it; the state may hold any.
        let path_end = rest.iter().position(|&b| b == 0)?;
        let (path, state) = (&rest[..path_end], &rest[path_end + 1..]);
        if path.is_empty() || path.len() > FIELD_CAP || state.len() > FIELD_CAP {
            return None;
        }
        let at = i64::from_le_bytes(v.get(..8)?.try_into().ok()?);
        let by = std::str::from_utf8(v.get(8..)?).ok()?;
        if by.len() > 256 {
            return None;
        }
        Some(Ack {
            kind,
            path: path.to_vec(),
            state: state.to_vec(),
            by: by.to_string(),
            at,
        })
    }
}

/// Which findings an acknowledgement may key: any command's, or also an
/// image's standing facts that have a change's kind.
#[derive(Clone, Copy)]
enum Scope {
    Finding,
    Standing,
}

impl Scope {
    fn takes(self, kind: Kind) -> bool {
        acceptable(kind) || (matches!(self, Scope::Standing) && kind == Kind::Removed)
    }
}

/// The acknowledgements of one generation.
#[derive(Clone, Debug, Default)]
pub struct Acks {
    by_subject: HashMap<(Kind, Vec<u8>, Vec<u8>), Ack>,
}

impl Acks {
    /// The acknowledgements among a generation's extra pairs. Malformed
    /// ones are dropped: that can only make a finding loud, never hide one.
    pub fn from_pairs(pairs: &[(Vec<u8>, Vec<u8>)]) -> Acks {
        let mut a = Acks::default();
        for (k, v) in pairs.iter().filter(|(k, _)| k.starts_with(ACK_PREFIX)) {
            if let Some(ack) = Ack::decode(k, v) {
                a.insert(ack);
            }
        }
        a
    }

    /// As extra pairs, sorted by key.
    pub fn to_pairs(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out: Vec<(Vec<u8>, Vec<u8>)> = self
            .by_subject
            .values()
            .map(|a| (a.key(), a.value()))
            .collect();
        out.sort();
        out
    }

    /// `extra` without its acknowledgements, plus these: the extra pairs of
    /// a new generation (sorted, unique keys).
    pub fn merge_into(&self, extra: &[(Vec<u8>, Vec<u8>)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out: Vec<(Vec<u8>, Vec<u8>)> = extra
            .iter()
            .filter(|(k, _)| !k.starts_with(ACK_PREFIX))
            .cloned()
            .collect();
        out.extend(self.to_pairs());
        out.sort();
        out.dedup_by(|a, b| a.0 == b.0);
        out
    }

    pub fn is_empty(&self) -> bool {
        self.by_subject.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_subject.len()
    }

    /// Keeps the first acknowledgement of a subject (its original time).
    fn insert(&mut self, a: Ack) {
        self.by_subject
            .entry((a.kind, a.path.clone(), a.state.clone()))
            .or_insert(a);
    }

    /// The acknowledgement `f` matches, given the records it was judged
    /// with (sorted by path).
    pub fn find(&self, f: &Finding, records: &[Record]) -> Option<&Ack> {
        self.lookup(f, records, Scope::Finding)
    }

    /// Like [`Acks::find`], for a standing fact of an image that has a
    /// change's kind: a library deleted by a whiteout in an upper layer
    /// (`removed`). Only the image commands ask this, for the findings of
    /// their audit, never for a diff's.
    pub fn find_standing(&self, f: &Finding, records: &[Record]) -> Option<&Ack> {
        self.lookup(f, records, Scope::Standing)
    }

    /// Acknowledges `f` in its current state; false when its kind cannot
    /// be acknowledged.
    pub fn accept(&mut self, f: &Finding, records: &[Record], by: &str, at: i64) -> bool {
        self.acknowledge(f, records, by, at, Scope::Finding)
    }

    /// Like [`Acks::accept`], for the findings [`Acks::find_standing`]
    /// knows.
    pub fn accept_standing(&mut self, f: &Finding, records: &[Record], by: &str, at: i64) -> bool {
        self.acknowledge(f, records, by, at, Scope::Standing)
    }

    fn lookup(&self, f: &Finding, records: &[Record], scope: Scope) -> Option<&Ack> {
        if self.by_subject.is_empty() || !scope.takes(f.kind) {
            return None;
        }
        let (path, state) = subject(f, records);
        self.by_subject.get(&(f.kind, path, state))
    }

    fn acknowledge(
        &mut self,
        f: &Finding,
        records: &[Record],
        by: &str,
        at: i64,
        scope: Scope,
    ) -> bool {
        if !scope.takes(f.kind) {
            return false;
        }
        let (path, state) = subject(f, records);
        self.insert(Ack {
            kind: f.kind,
            path,
            state,
            by: by.to_string(),
            at,
        });
        true
    }
}

/// What an acknowledgement of `f` is keyed on: its path (normalised where
/// it names a PID) and the state of its subject.
fn subject(f: &Finding, records: &[Record]) -> (Vec<u8>, Vec<u8>) {
    let detail = f.detail.as_bytes();
    match f.kind {
        Kind::Process => {
            if is_proc_environ(&f.path) {
                // "VAR=value in the environment of 2 processes: pid ...":
                // the variable and its value, not who has it.
                let state = before(detail, b" in the environment of ");
                (b"/proc/*/environ".to_vec(), [b"env:", state].concat())
            } else {
                // "<why>, mapped executable by 2 processes: ...": the
                // mapped file (the path) and what is wrong with it.
                let state = before(detail, b", mapped executable by ");
                (f.path.clone(), [b"map:", state].concat())
            }
        }
        // The entry and why it is dangerous, not the file's bytes: a
        // rebuild with the same RUNPATH stays acknowledged, a new one
        // does not.
        Kind::Rpath => (f.path.clone(), [b"detail:", detail].concat()),
        // Who may write it, not what it holds.
        Kind::Writable => (f.path.clone(), [b"detail:", detail].concat()),
        _ => match scan::find(records, &f.path).and_then(|r| r.blake3) {
            Some(d) => (
                f.path.clone(),
                format!("blake3:{}", crate::escape::hex(&d)).into_bytes(),
            ),
            None => (f.path.clone(), [b"detail:", detail].concat()),
        },
    }
}

/// `/proc/<digits>/environ`.
fn is_proc_environ(p: &[u8]) -> bool {
    p.strip_prefix(b"/proc/")
        .and_then(|r| r.strip_suffix(b"/environ"))
        .is_some_and(|pid| !pid.is_empty() && pid.iter().all(u8::is_ascii_digit))
}

/// `s` up to the first `sep` (all of it when there is none).
fn before<'a>(s: &'a [u8], sep: &[u8]) -> &'a [u8] {
    s.windows(sep.len())
        .position(|w| w == sep)
        .map_or(s, |i| &s[..i])
}

/// Who is acknowledging: the user behind `sudo` when there is one, else
/// the login name, else the uid.
pub fn who() -> String {
    let name = ["SUDO_USER", "USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()));
    let mut s = name.unwrap_or_else(|| "unknown".into());
    s.retain(|c| !c.is_control());
    s.truncate(64);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::Severity;

    fn rec(p: &str, h: u8) -> Record {
        Record::test_file(p, h)
    }

    fn f(kind: Kind, path: &str, detail: &str) -> Finding {
        Finding::audit(kind, Severity::High, path.into(), detail.into())
    }

    #[test]
    fn a_digest_keyed_ack_follows_the_content() {
        let mut a = Acks::default();
        let u = f(Kind::Unpackaged, "/usr/lib/x.so", "no package owns it");
        assert!(a.accept(&u, &[rec("/usr/lib/x.so", 1)], "root", 5));
        assert!(a.find(&u, &[rec("/usr/lib/x.so", 1)]).is_some());
        assert!(a.find(&u, &[rec("/usr/lib/x.so", 2)]).is_none());
        // Round trip through the stored pairs.
        let back = Acks::from_pairs(&a.to_pairs());
        let got = back.find(&u, &[rec("/usr/lib/x.so", 1)]).unwrap();
        assert_eq!((got.by.as_str(), got.at), ("root", 5));
    }

    #[test]
    fn process_acks_ignore_pids_and_changes_are_never_acknowledged() {
        let mut a = Acks::default();
        let e1 = f(
            Kind::Process,
            "/proc/10/environ",
            "LD_LIBRARY_PATH=/opt/x in the environment of 1 process: pid 10 (java)",
        );
        let e2 = f(
            Kind::Process,
            "/proc/99/environ",
            "LD_LIBRARY_PATH=/opt/x in the environment of 2 processes: pid 99 (java), pid 100 (x)",
        );
        let e3 = f(
            Kind::Process,
            "/proc/99/environ",
            "LD_LIBRARY_PATH=/tmp in the environment of 1 process: pid 99 (java)",
        );
        a.accept(&e1, &[], "root", 1);
        assert!(a.find(&e2, &[]).is_some());
        assert!(a.find(&e3, &[]).is_none());
        let c = f(Kind::Content, "/usr/lib/x.so", "content changed");
        assert!(!a.accept(&c, &[], "root", 1));
        assert!(a.find(&c, &[]).is_none());
    }

    #[test]
    fn a_removed_library_is_acknowledged_only_as_a_standing_fact() {
        let mut a = Acks::default();
        let r = f(Kind::Removed, "/usr/lib/gone.so", "deleted by a whiteout");
        // A diff's removal is update's to accept, never an acknowledgement.
        assert!(!a.accept(&r, &[], "root", 1));
        assert!(a.find_standing(&r, &[]).is_none());
        assert!(a.accept_standing(&r, &[], "root", 2));
        assert!(a.find(&r, &[]).is_none());
        assert_eq!(a.find_standing(&r, &[]).map(|k| k.at), Some(2));
        // The standing door takes the other kinds like the ordinary one.
        let u = f(Kind::Unpackaged, "/usr/lib/x.so", "no package owns it");
        assert!(a.accept_standing(&u, &[rec("/usr/lib/x.so", 1)], "root", 3));
        assert!(a.find(&u, &[rec("/usr/lib/x.so", 1)]).is_some());
        let c = f(Kind::Content, "/usr/lib/x.so", "content changed");
        assert!(!a.accept_standing(&c, &[], "root", 4));
        assert!(a.find_standing(&c, &[]).is_none());
        // Through the stored pairs: the removal's acknowledgement is kept.
        let back = Acks::from_pairs(&a.to_pairs());
        assert!(back.find_standing(&r, &[]).is_some());
    }

    #[test]
    fn malformed_pairs_are_dropped_and_other_pairs_kept_on_merge() {
        let pairs = vec![
            (b"a\0rpath".to_vec(), vec![0; 8]),
            (b"a\0nonsense\0/x\0s".to_vec(), vec![0; 8]),
            (b"a\0rpath\0/x\0detail:y".to_vec(), vec![1]),
            (b"m\0/x".to_vec(), vec![7; 48]),
        ];
        let a = Acks::from_pairs(&pairs);
        assert!(a.is_empty());
        let mut b = Acks::default();
        b.accept(&f(Kind::Rpath, "/x", "y"), &[], "me", 3);
        let merged = b.merge_into(&pairs);
        assert_eq!(merged.len(), 2);
        assert!(merged.iter().any(|(k, _)| k == b"m\0/x"));
        assert_eq!(Acks::from_pairs(&merged).len(), 1);
    }
}
