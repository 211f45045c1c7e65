//! Resolving paths inside a root (`--root DIR`, or `/`). Every symlink is
//! followed by hand, absolute targets are re-rooted and `..` stops at the
//! root, so nothing an image contains can lead libwarden outside it.

use crate::sys::OsStrExt;
use std::ffi::OsStr;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Symlinks followed while resolving one path before giving up (as Linux).
const MAX_LINKS: usize = 40;

/// The tree libwarden treats as `/`.
#[derive(Clone, Debug)]
pub struct Root {
    host: PathBuf,
}

impl Root {
    /// `dir` must exist; it is canonicalised on the host once.
    pub fn new(dir: &Path) -> io::Result<Root> {
        let host = std::fs::canonicalize(dir)?;
        // `\\?\C:\x` (what canonicalize gives on Windows) takes no `/`
        // separators; `C:\x` names the same directory and does.
        #[cfg(windows)]
        let host = match host.to_str().and_then(|s| s.strip_prefix(r"\\?\")) {
            Some(s) if s.as_bytes().get(1) == Some(&b':') => PathBuf::from(s),
            _ => host,
        };
        if !host.is_dir() {
            #[cfg(unix)]
            return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
            #[cfg(not(unix))]
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "not a directory",
            ));
        }
        Ok(Root { host })
    }

    /// The host's own `/`: on Windows, the system drive (`%SystemDrive%\`),
    /// so `/Windows/System32` is `C:\Windows\System32`.
    pub fn slash() -> Root {
        Root { host: slash_dir() }
    }

    pub fn is_slash(&self) -> bool {
        self.host == slash_dir()
    }

    /// The host directory behind the root.
    pub fn host(&self) -> &Path {
        &self.host
    }

    /// Where a logical (inside-the-root) path lives on the host. Lexical:
    /// call [`Root::resolve`] first for anything that may hold symlinks.
    pub fn host_path(&self, logical: &Path) -> PathBuf {
        let rel = logical.strip_prefix("/").unwrap_or(logical);
        #[cfg(windows)]
        let rel = &PathBuf::from(rel.to_string_lossy().replace('/', "\\"));
        if rel.as_os_str().is_empty() {
            self.host.clone()
        } else {
            self.host.join(rel)
        }
    }

    /// The logical path of a host path below the root.
    pub fn logical(&self, host: &Path) -> Option<PathBuf> {
        let rel = host.strip_prefix(&self.host).ok()?;
        Some(Path::new("/").join(rel))
    }

    /// The logical path of a host path, as raw bytes (the record key).
    pub fn logical_bytes(&self, host: &Path) -> Vec<u8> {
        #[cfg(windows)]
        {
            // Record paths use `/` on every platform: `/Windows/System32/x`.
            let rel = host.strip_prefix(&self.host).unwrap_or(host);
            let mut out = b"/".to_vec();
            out.extend(rel.to_string_lossy().replace('\\', "/").into_bytes());
            return out;
        }
        #[allow(unreachable_code)]
        if self.is_slash() {
            return host.as_os_str().as_bytes().to_vec();
        }
        let b = host.as_os_str().as_bytes();
        let r = self.host.as_os_str().as_bytes();
        match b.strip_prefix(r) {
            Some([]) => b"/".to_vec(),
            Some(rest) if rest.starts_with(b"/") => rest.to_vec(),
            _ => b.to_vec(),
        }
    }

    /// Canonical logical path: every symlink resolved inside the root. Fails
    /// with the error of the first component that does not exist, or ELOOP.
    pub fn resolve(&self, logical: &Path) -> io::Result<PathBuf> {
        self.resolve_inner(logical, true)
    }

    /// Like [`Root::resolve`] but the last component is not followed (for
    /// recording a symlink itself).
    pub fn resolve_parent(&self, logical: &Path) -> io::Result<PathBuf> {
        self.resolve_inner(logical, false)
    }

    fn resolve_inner(&self, logical: &Path, follow_last: bool) -> io::Result<PathBuf> {
        let mut todo: Vec<Vec<u8>> = components(logical);
        todo.reverse();
        let mut done = PathBuf::from("/");
        let mut links = 0;
        while let Some(c) = todo.pop() {
            match c.as_slice() {
                b"." => continue,
                b".." => {
                    done.pop();
                    continue;
                }
                _ => {}
            }
            let mut candidate = done.clone();
            push(&mut candidate, OsStr::from_bytes(&c));
            let host = self.host_path(&candidate);
            let meta = std::fs::symlink_metadata(&host)?;
            let last = todo.is_empty();
            if meta.file_type().is_symlink() && (follow_last || !last) {
                links += 1;
                if links > MAX_LINKS {
                    return Err(crate::sys::loop_error());
                }
                let target = std::fs::read_link(&host)?;
                if target.is_absolute() {
                    done = PathBuf::from("/");
                }
                let mut more = components(&target);
                more.reverse();
                todo.extend(more);
            } else {
                done = candidate;
            }
        }
        Ok(done)
    }

    /// Like [`Root::resolve`], but a missing tail is appended lexically, so a
    /// path that does not exist yet still gets the canonical form it would
    /// have (`/lib64/x` → `/usr/lib64/x` on merged `/usr`).
    pub fn resolve_lenient(&self, logical: &Path) -> PathBuf {
        let mut head = normalize(logical);
        let mut tail: Vec<std::ffi::OsString> = Vec::new();
        loop {
            if let Ok(p) = self.resolve(&head) {
                let mut p = p;
                for c in tail.iter().rev() {
                    push(&mut p, c);
                }
                return p;
            }
            match (head.file_name().map(|s| s.to_os_string()), head.parent()) {
                (Some(name), Some(parent)) => {
                    tail.push(name);
                    head = parent.to_path_buf();
                }
                _ => return normalize(logical),
            }
        }
    }
}

impl Root {
    /// Reads a small regular file inside the root, at most `cap` bytes.
    /// Opened without blocking and without following a final symlink (the
    /// path is resolved first), so a FIFO or a device planted where a config
    /// file should be cannot hang or disturb the run.
    pub fn read_file(&self, logical: &Path, cap: u64) -> io::Result<Vec<u8>> {
        use crate::sys::OpenOptionsNoFollow;
        use std::io::Read;
        let host = self.host_path(&self.resolve(logical)?);
        let f = std::fs::OpenOptions::new()
            .read(true)
            .no_follow()
            .open(&host)?;
        let meta = f.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        let mut out = Vec::with_capacity(meta.len().min(cap) as usize);
        f.take(cap).read_to_end(&mut out)?;
        Ok(out)
    }

    /// Expands an absolute glob pattern inside the root as glob(3) does:
    /// sorted, `*` and `?` never match a leading dot, symlinks on the way
    /// resolved inside the root. Returns logical paths in pattern form.
    pub fn glob(&self, pattern: &Path) -> Vec<PathBuf> {
        let mut current = vec![PathBuf::from("/")];
        for comp in components(pattern) {
            let text = String::from_utf8_lossy(&comp);
            let is_pattern = comp.iter().any(|b| matches!(b, b'*' | b'?' | b'['));
            let mut next = Vec::new();
            for base in &current {
                if !is_pattern {
                    next.push(base.join(OsStr::from_bytes(&comp)));
                    continue;
                }
                let Ok(matcher) = globset::GlobBuilder::new(&text)
                    .literal_separator(true)
                    .backslash_escape(true)
                    .build()
                    .map(|g| g.compile_matcher())
                else {
                    continue;
                };
                let Ok(dir) = self.resolve(base) else {
                    continue;
                };
                let Ok(rd) = std::fs::read_dir(self.host_path(&dir)) else {
                    continue;
                };
                let mut names: Vec<_> = rd
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name())
                    .filter(|n| {
                        (!n.as_bytes().starts_with(b".") || comp.starts_with(b"."))
                            && matcher.is_match(n)
                    })
                    .collect();
                names.sort();
                next.extend(names.into_iter().map(|n| base.join(n)));
            }
            current = next;
        }
        current.retain(|p| self.resolve(p).is_ok());
        current
    }
}

impl crate::formats::ldconf::ConfSource for Root {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        // ld.so.conf files are tiny; a huge one is hostile or broken.
        self.read_file(path, 1 << 20)
    }
    fn glob(&self, pattern: &Path) -> Vec<PathBuf> {
        Root::glob(self, pattern)
    }
    fn identity(&self, path: &Path) -> PathBuf {
        self.resolve_lenient(path)
    }
}

/// Lexical normalisation: absolute, no `.`, `..` applied, never above `/`.
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => push(&mut out, n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Appends one component to a logical path. Logical paths use `/` on
/// every platform (on Windows `PathBuf::push` would add `\\`).
pub fn push(p: &mut PathBuf, name: &OsStr) {
    #[cfg(windows)]
    {
        let mut s = std::mem::take(p).into_os_string();
        if !s.as_encoded_bytes().ends_with(b"/") {
            s.push("/");
        }
        s.push(name);
        *p = PathBuf::from(s);
    }
    #[cfg(not(windows))]
    p.push(name);
}

/// The directory `/` stands for on the host.
fn slash_dir() -> PathBuf {
    #[cfg(windows)]
    {
        let drive = std::env::var("SystemDrive").unwrap_or_else(|_| "C:".into());
        return PathBuf::from(format!("{drive}\\"));
    }
    #[allow(unreachable_code)]
    PathBuf::from("/")
}

fn is_sep(b: u8) -> bool {
    b == b'/' || (cfg!(windows) && b == b'\\')
}

fn components(p: &Path) -> Vec<Vec<u8>> {
    p.as_os_str()
        .as_bytes()
        .split(|&b| is_sep(b))
        .filter(|c| !c.is_empty())
        .map(|c| c.to_vec())
        .collect()
}

/// The entry of `dir` named `name` in any letter case.
pub fn find_ci(root: &Root, dir: &Path, name: &str) -> Option<PathBuf> {
    let rd = std::fs::read_dir(root.host_path(&root.resolve(dir).ok()?)).ok()?;
    let mut hits: Vec<_> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter(|n| n.as_bytes().eq_ignore_ascii_case(name.as_bytes()))
        .collect();
    hits.sort();
    hits.first().map(|n| {
        let mut p = dir.to_path_buf();
        push(&mut p, OsStr::new(n));
        p
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn absolute_links_are_rerooted_and_dotdot_stops_at_root() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path()).unwrap();
        std::fs::create_dir_all(t.path().join("usr/lib")).unwrap();
        symlink("usr/lib", t.path().join("lib")).unwrap();
        symlink("/etc/passwd", t.path().join("usr/lib/abs")).unwrap();
        symlink("../../../../../../usr", t.path().join("usr/lib/up")).unwrap();
        assert_eq!(
            root.resolve(Path::new("/lib")).unwrap(),
            Path::new("/usr/lib")
        );
        // /etc/passwd does not exist inside the root: the host's is never used.
        assert!(root.resolve(Path::new("/lib/abs")).is_err());
        assert_eq!(
            root.resolve(Path::new("/lib/up/lib")).unwrap(),
            Path::new("/usr/lib")
        );
        assert_eq!(
            root.resolve_parent(Path::new("/lib/abs")).unwrap(),
            Path::new("/usr/lib/abs")
        );
        assert_eq!(
            root.resolve_lenient(Path::new("/lib/missing/x")),
            Path::new("/usr/lib/missing/x")
        );
    }

    #[test]
    fn symlink_loops_end_in_eloop() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path()).unwrap();
        symlink("b", t.path().join("a")).unwrap();
        symlink("a", t.path().join("b")).unwrap();
        let e = root.resolve(Path::new("/a")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
    }
}
