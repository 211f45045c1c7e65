//! The paths a run's records can have: the canonical directories its walk
//! covers (whole subtrees, or only their own entries) and the loader files
//! it tracks. A package index read for one run keeps only the claims on
//! paths in its scope: most of what a package database lists
//! (documentation, executables, locales) lies outside every search path
//! and is never asked for. The scope is recorded with the index, so that
//! an index stored for later runs stands in only for runs whose records
//! all lie inside it (a `check` with a `paths` directory the `init` did
//! not walk reads the databases again).

use crate::searchpaths::SearchPaths;
use crate::sys::OsStrExt;

/// Canonical directories (with whether their whole subtree is walked) and
/// tracked files; both sorted and without duplicates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    dirs: Vec<(Vec<u8>, bool)>,
    files: Vec<Vec<u8>>,
}

/// Whether `path` is `dir` or lies below it (bytes, on `/` boundaries).
fn below(dir: &[u8], path: &[u8]) -> bool {
    match path.strip_prefix(dir) {
        Some(rest) => rest.is_empty() || dir.ends_with(b"/") || rest.first() == Some(&b'/'),
        None => false,
    }
}

/// The directory part of `path` (`/` for a top-level name).
fn parent(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(0) => b"/",
        Some(i) => &path[..i],
        None => b"",
    }
}

impl Scope {
    /// A scope of these directories and files.
    pub fn new(
        dirs: impl IntoIterator<Item = (Vec<u8>, bool)>,
        files: impl IntoIterator<Item = Vec<u8>>,
    ) -> Scope {
        let mut dirs: Vec<(Vec<u8>, bool)> = dirs.into_iter().collect();
        dirs.sort();
        dirs.dedup();
        let mut files: Vec<Vec<u8>> = files.into_iter().collect();
        files.sort();
        files.dedup();
        Scope { dirs, files }
    }

    /// What a snapshot of `sp` records: the directories it walks and every
    /// tracked file (the scan records nothing else that a package can
    /// claim; a Windows registry's records are not files).
    pub fn of(sp: &SearchPaths) -> Scope {
        Scope::new(
            sp.walk_roots()
                .map(|d| (d.path.as_os_str().as_bytes().to_vec(), d.recursive)),
            sp.files
                .iter()
                .map(|f| f.path.as_os_str().as_bytes().to_vec()),
        )
    }

    /// Whether a record at the canonical `path` can be in this scope.
    pub fn holds(&self, path: &[u8]) -> bool {
        self.dirs.iter().any(|(d, deep)| {
            path == d.as_slice()
                || if *deep {
                    below(d, path)
                } else {
                    parent(path) == d.as_slice()
                }
        }) || self
            .files
            .binary_search_by(|f| f.as_slice().cmp(path))
            .is_ok()
    }

    /// Whether everything `other` holds, this scope holds too.
    pub fn covers(&self, other: &Scope) -> bool {
        let dir = |d: &[u8], deep: bool| {
            self.dirs.iter().any(|(s, sdeep)| {
                if *sdeep {
                    below(s, d)
                } else {
                    // A shallow dir holds its own entries only: it covers
                    // the same shallow dir, nothing deeper.
                    s.as_slice() == d && !deep
                }
            })
        };
        other.dirs.iter().all(|(d, deep)| dir(d, *deep))
            && other.files.iter().all(|f| self.holds(f))
    }

    /// The narrower of two scopes, when one covers the other; else one
    /// that holds nothing (an index of two parts cut apart answers for
    /// neither run's records: it is never stored, nor stands in for one).
    pub fn narrower(a: &Scope, b: &Scope) -> Scope {
        if a.covers(b) {
            b.clone()
        } else if b.covers(a) {
            a.clone()
        } else {
            Scope::default()
        }
    }

    /// Appends the scope to `out` (see [`Scope::decode`]).
    pub(crate) fn encode(&self, out: &mut Vec<u8>, put: fn(&mut Vec<u8>, &[u8])) {
        out.extend_from_slice(&(self.dirs.len() as u32).to_le_bytes());
        for (d, deep) in &self.dirs {
            out.push(u8::from(*deep));
            put(out, d);
        }
        out.extend_from_slice(&(self.files.len() as u32).to_le_bytes());
        for f in &self.files {
            put(out, f);
        }
    }

    /// Reads what [`Scope::encode`] wrote; `None` on anything malformed.
    pub(crate) fn decode(r: &mut crate::facts::Cursor) -> Option<Scope> {
        let n = r.u32()? as usize;
        if n.checked_mul(3)? > r.0.len() {
            return None;
        }
        let mut dirs = Vec::with_capacity(n);
        for _ in 0..n {
            let deep = match r.u8()? {
                0 => false,
                1 => true,
                _ => return None,
            };
            dirs.push((r.bytes(usize::from(u16::MAX))?, deep));
        }
        let n = r.u32()? as usize;
        if n.checked_mul(2)? > r.0.len() {
            return None;
        }
        let mut files = Vec::with_capacity(n);
        for _ in 0..n {
            files.push(r.bytes(usize::from(u16::MAX))?);
        }
        Some(Scope::new(dirs, files))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(dirs: &[(&str, bool)], files: &[&str]) -> Scope {
        Scope::new(
            dirs.iter().map(|(d, r)| (d.as_bytes().to_vec(), *r)),
            files.iter().map(|f| f.as_bytes().to_vec()),
        )
    }

    #[test]
    fn holds_subtrees_shallow_entries_and_files_on_name_boundaries() {
        let s = scope(
            &[("/usr/lib", true), ("/opt/x", false)],
            &["/etc/ld.so.cache"],
        );
        for p in [
            "/usr/lib",
            "/usr/lib/libc.so.6",
            "/usr/lib/x86_64-linux-gnu/a/b.so",
            "/opt/x",
            "/opt/x/liba.so",
            "/opt/x/sub",
            "/etc/ld.so.cache",
        ] {
            assert!(s.holds(p.as_bytes()), "{p}");
        }
        for p in [
            "/usr/lib64/libc.so.6",
            "/usr/libexec/x",
            "/usr/share/doc/libc6/copyright",
            "/opt/x/sub/deeper.so",
            "/opt/xy/liba.so",
            "/etc/ld.so.conf",
            "/",
        ] {
            assert!(!s.holds(p.as_bytes()), "{p}");
        }
        assert!(scope(&[("/", true)], &[]).holds(b"/anything/at/all"));
        assert!(!Scope::default().holds(b"/usr/lib/libc.so.6"));
    }

    #[test]
    fn covers_what_it_holds_and_narrower_picks_the_smaller() {
        let wide = scope(&[("/usr/lib", true), ("/opt", true)], &["/etc/ld.so.cache"]);
        let narrow = scope(
            &[("/usr/lib/x86_64-linux-gnu", true), ("/opt/x", false)],
            &[],
        );
        let other = scope(&[("/usr/local/lib", true)], &[]);
        assert!(wide.covers(&narrow));
        assert!(!narrow.covers(&wide));
        assert!(wide.covers(&wide));
        assert!(!wide.covers(&other));
        assert!(!scope(&[("/opt/x", false)], &[]).covers(&scope(&[("/opt/x", true)], &[])));
        assert_eq!(Scope::narrower(&wide, &narrow), narrow);
        assert_eq!(Scope::narrower(&narrow, &wide), narrow);
        assert_eq!(Scope::narrower(&wide, &other), Scope::default());
    }

    #[test]
    fn round_trips_and_refuses_damage() {
        fn put(out: &mut Vec<u8>, b: &[u8]) {
            out.extend_from_slice(&(b.len() as u16).to_le_bytes());
            out.extend_from_slice(b);
        }
        let s = scope(
            &[("/usr/lib", true), ("/opt/x", false)],
            &["/etc/ld.so.cache"],
        );
        let mut out = Vec::new();
        s.encode(&mut out, put);
        let mut r = crate::facts::Cursor(&out);
        assert_eq!(Scope::decode(&mut r), Some(s));
        assert!(r.is_empty());
        for cut in 0..out.len() {
            assert!(Scope::decode(&mut crate::facts::Cursor(&out[..cut])).is_none());
        }
        let mut huge = out.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Scope::decode(&mut crate::facts::Cursor(&huge)).is_none());
    }
}
