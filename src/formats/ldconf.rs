//! `/etc/ld.so.conf` as ldconfig reads it: comments from `#`, blank lines,
//! `include` lines whose glob patterns are relative to the including file's
//! directory, nested includes (a file already read is not read again, which
//! also breaks cycles), `hwcap` lines (ignored by current glibc), and
//! directories separated by white space, `:` or `,`.

use crate::sys::OsStrExt;
use std::collections::HashSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// How the parser reads files and expands globs; [`crate::rootfs::Root`]
/// implements it for a real tree, tests with a map.
pub trait ConfSource {
    /// The bytes of a logical path.
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>>;
    /// Matches of an absolute glob pattern, sorted, like glob(3).
    fn glob(&self, pattern: &Path) -> Vec<PathBuf>;
    /// A key that identifies a file whatever the path to it (for cycles).
    fn identity(&self, path: &Path) -> PathBuf;
}

/// One directory named by a configuration line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfDir {
    /// As written (trailing slashes removed). May be relative or odd: the
    /// audit judges it, the parser only reports it.
    pub dir: PathBuf,
    pub file: PathBuf,
    pub line: usize,
}

/// One `include` pattern, kept so its directory can be watched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Include {
    pub pattern: PathBuf,
    pub file: PathBuf,
    pub line: usize,
}

/// Everything a configuration tree said.
#[derive(Clone, Debug, Default)]
pub struct LdConf {
    pub dirs: Vec<ConfDir>,
    /// Every configuration file read, in reading order.
    pub files: Vec<PathBuf>,
    pub includes: Vec<Include>,
    pub warnings: Vec<String>,
}

/// How deep includes may nest before the parser stops (ldconfig has no
/// limit but reads each file once; this bounds pathological trees).
const MAX_DEPTH: usize = 32;

/// Parses `path` (normally `/etc/ld.so.conf`) and everything it includes.
/// A missing top-level file is not an error: glibc runs without one.
pub fn parse(src: &dyn ConfSource, path: &Path) -> LdConf {
    let mut conf = LdConf::default();
    let mut seen = HashSet::new();
    parse_file(src, path, 0, &mut seen, &mut conf);
    conf
}

fn parse_file(
    src: &dyn ConfSource,
    path: &Path,
    depth: usize,
    seen: &mut HashSet<PathBuf>,
    conf: &mut LdConf,
) {
    if depth > MAX_DEPTH {
        conf.warnings.push(format!(
            "{}: includes nested deeper than {MAX_DEPTH}; not read",
            path.display()
        ));
        return;
    }
    if !seen.insert(src.identity(path)) {
        if depth > 0 {
            conf.warnings.push(format!(
                "{}: included more than once (include cycle?); read once",
                path.display()
            ));
        }
        return;
    }
    let bytes = match src.read(path) {
        Ok(b) => b,
        Err(e) => {
            if depth > 0 || e.kind() != std::io::ErrorKind::NotFound {
                conf.warnings
                    .push(format!("{}: cannot read: {e}", path.display()));
            }
            return;
        }
    };
    conf.files.push(path.to_path_buf());
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        let text = match raw.iter().position(|&b| b == b'#') {
            Some(p) => &raw[..p],
            None => raw,
        };
        let text = text.trim_ascii();
        if text.is_empty() {
            continue;
        }
        if let Some(rest) = keyword(text, b"include", false) {
            for pat in rest.split(|b| *b == b' ' || *b == b'\t') {
                if pat.is_empty() {
                    continue;
                }
                let pattern = include_pattern(path, pat);
                conf.includes.push(Include {
                    pattern: pattern.clone(),
                    file: path.to_path_buf(),
                    line,
                });
                for m in src.glob(&pattern) {
                    parse_file(src, &m, depth + 1, seen, conf);
                }
            }
        } else if keyword(text, b"hwcap", true).is_some() {
            // glibc 2.37 and later ignore hwcap lines; older ones used them
            // only for subdirectory names below existing search dirs.
            continue;
        } else {
            for tok in text.split(|b| matches!(b, b' ' | b'\t' | b'\r' | b':' | b',')) {
                if tok.is_empty() {
                    continue;
                }
                let tok = strip_type_suffix(tok);
                let mut dir = tok;
                while dir.len() > 1 && dir.ends_with(b"/") {
                    dir = &dir[..dir.len() - 1];
                }
                conf.dirs.push(ConfDir {
                    dir: PathBuf::from(OsStr::from_bytes(dir)),
                    file: path.to_path_buf(),
                    line,
                });
            }
        }
    }
}

/// `include` and `hwcap` must be followed by a blank (space or tab).
fn keyword<'a>(text: &'a [u8], kw: &[u8], nocase: bool) -> Option<&'a [u8]> {
    let head = text.get(..kw.len())?;
    let matches = if nocase {
        head.eq_ignore_ascii_case(kw)
    } else {
        head == kw
    };
    match text.get(kw.len()) {
        Some(b' ') | Some(b'\t') if matches => Some(&text[kw.len() + 1..]),
        _ => None,
    }
}

/// Old configurations may say `dir=libc6`; ldconfig strips the type.
fn strip_type_suffix(tok: &[u8]) -> &[u8] {
    if let Some(p) = tok.iter().rposition(|&b| b == b'=') {
        let ty = &tok[p + 1..];
        if matches!(ty, b"libc4" | b"libc5" | b"libc6" | b"glibc2") {
            return &tok[..p];
        }
    }
    tok
}

/// A relative pattern is relative to the including file's directory.
fn include_pattern(including: &Path, pat: &[u8]) -> PathBuf {
    let p = Path::new(OsStr::from_bytes(pat));
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        including.parent().unwrap_or(Path::new("/")).join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// An in-memory tree: path → content.
    struct Mem(BTreeMap<PathBuf, Vec<u8>>);

    impl ConfSource for Mem {
        fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
            self.0
                .get(path)
                .cloned()
                .ok_or_else(|| std::io::ErrorKind::NotFound.into())
        }
        fn glob(&self, pattern: &Path) -> Vec<PathBuf> {
            let m = globset::GlobBuilder::new(&pattern.to_string_lossy())
                .literal_separator(true)
                .build()
                .unwrap()
                .compile_matcher();
            self.0.keys().filter(|k| m.is_match(k)).cloned().collect()
        }
        fn identity(&self, path: &Path) -> PathBuf {
            path.components().collect()
        }
    }

    fn mem(files: &[(&str, &str)]) -> Mem {
        Mem(files
            .iter()
            .map(|(p, c)| (PathBuf::from(p), c.as_bytes().to_vec()))
            .collect())
    }

    fn dirs(c: &LdConf) -> Vec<String> {
        c.dirs.iter().map(|d| d.dir.display().to_string()).collect()
    }

    #[test]
    fn debian_layout() {
        let m = mem(&[
            ("/etc/ld.so.conf", "include /etc/ld.so.conf.d/*.conf\n\n"),
            ("/etc/ld.so.conf.d/libc.conf", "# libc default configuration\n/usr/local/lib\n"),
            (
                "/etc/ld.so.conf.d/x86_64-linux-gnu.conf",
                "# Multiarch support\n/usr/local/lib/x86_64-linux-gnu\n/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n",
            ),
        ]);
        let c = parse(&m, Path::new("/etc/ld.so.conf"));
        assert_eq!(
            dirs(&c),
            [
                "/usr/local/lib",
                "/usr/local/lib/x86_64-linux-gnu",
                "/lib/x86_64-linux-gnu",
                "/usr/lib/x86_64-linux-gnu"
            ]
        );
        assert_eq!(c.dirs[0].file, Path::new("/etc/ld.so.conf.d/libc.conf"));
        assert_eq!(c.dirs[0].line, 2);
        assert_eq!(c.files.len(), 3);
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn separators_comments_hwcap_and_trailing_slashes() {
        let m = mem(&[(
            "/etc/ld.so.conf",
            "  /a:/b,/c\t/d   # trailing comment\n#/commented\nhwcap 1 foo\nHWCAP\t0 bar\n/e/// \n/f=libc6\ninclude\n",
        )]);
        let c = parse(&m, Path::new("/etc/ld.so.conf"));
        // A bare "include" with no blank after it is a directory name, as in ldconfig.
        assert_eq!(dirs(&c), ["/a", "/b", "/c", "/d", "/e", "/f", "include"]);
    }

    #[test]
    fn relative_include_and_cycles() {
        let m = mem(&[
            ("/etc/ld.so.conf", "include conf.d/*.conf\n"),
            ("/etc/conf.d/a.conf", "/x\ninclude /etc/ld.so.conf b.conf\n"),
            ("/etc/conf.d/b.conf", "/y\ninclude a.conf\n"),
        ]);
        let c = parse(&m, Path::new("/etc/ld.so.conf"));
        assert_eq!(dirs(&c), ["/x", "/y"]);
        assert_eq!(c.includes[0].pattern, Path::new("/etc/conf.d/*.conf"));
        assert!(c.warnings.iter().any(|w| w.contains("more than once")));
    }

    #[test]
    fn missing_top_level_file_is_silent_and_missing_include_warns() {
        let c = parse(&mem(&[]), Path::new("/etc/ld.so.conf"));
        assert!(c.dirs.is_empty() && c.warnings.is_empty());
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(data: Vec<u8>) {
            let m = Mem([(PathBuf::from("/etc/ld.so.conf"), data)].into_iter().collect());
            let _ = parse(&m, Path::new("/etc/ld.so.conf"));
        }
    }
}
