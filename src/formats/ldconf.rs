//! `/etc/ld.so.conf` as ldconfig reads it: comments from `#`, blank lines,
//! `include` lines whose glob patterns are relative to the including file's
//! directory, nested includes (a file already read is not read again, which
//! also breaks cycles), `hwcap` lines (ignored by current glibc), and
//! directories separated by white space, `:` or `,`.

use crate::sys::OsStrExt;
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::rc::Rc;

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

/// Bounds on one parse, whatever the tree holds. A real system reads a few
/// dozen files naming a few dozen directories through one or two include
/// patterns; these leave two orders of magnitude of room, and keep what a
/// hostile tree costs (here, and in resolving, walking and judging what it
/// names) to about a second and a few megabytes. Past a bound the rest is
/// not read, and a warning says so.
pub mod limits {
    /// Configuration files read.
    pub const FILES: usize = 4_096;
    /// Bytes of configuration read in all (each file is also capped by its
    /// [`super::ConfSource`], at 1 MiB for a real tree).
    pub const BYTES: u64 = 16 << 20;
    /// Directory entries named (each becomes a search path to resolve,
    /// watch and walk).
    pub const DIRS: usize = 4_096;
    /// Distinct include patterns expanded.
    pub const PATTERNS: usize = 1_024;
    /// Glob matches looked at in all (a pattern is expanded once, but a
    /// repeated one is looked at once more to name what it included again).
    pub const MATCHES: usize = 1 << 20;
}

/// How deep includes may nest before the parser stops (ldconfig has no
/// limit but reads each file once; this bounds pathological trees).
const MAX_DEPTH: usize = 32;

/// Parses `path` (normally `/etc/ld.so.conf`) and everything it includes.
/// A missing top-level file is not an error: glibc runs without one.
///
/// Linear in the input: each distinct pattern is expanded once, each file
/// read once (a visited set by identity), and a file included more than
/// once is named in one warning, however often it is included.
pub fn parse(src: &dyn ConfSource, path: &Path) -> LdConf {
    let mut p = Parser {
        src,
        conf: LdConf::default(),
        seen: HashSet::new(),
        ids: HashMap::new(),
        globs: HashMap::new(),
        said: HashSet::new(),
        bytes: 0,
        matches: 0,
        capped: false,
    };
    p.file(path, 0);
    p.conf
}

/// One include pattern's expansion, kept for the whole parse.
struct Expansion {
    matches: Rc<[PathBuf]>,
    /// Every match was read (or was known) when it was last expanded: a
    /// repeat can read nothing new.
    done: bool,
    /// A repeat has named its matches as included more than once: later
    /// repeats have nothing to add.
    repeated: bool,
}

struct Parser<'a> {
    src: &'a dyn ConfSource,
    conf: LdConf,
    /// Identities of the files read or tried: each is read once.
    seen: HashSet<PathBuf>,
    /// Path → identity, so a path met again costs no second lookup.
    ids: HashMap<PathBuf, PathBuf>,
    globs: HashMap<PathBuf, Expansion>,
    /// Warnings given (each once).
    said: HashSet<String>,
    bytes: u64,
    matches: usize,
    /// A bound of [`limits`] was hit: nothing more is read.
    capped: bool,
}

impl Parser<'_> {
    fn warn(&mut self, msg: String) {
        if self.said.insert(msg.clone()) {
            self.conf.warnings.push(msg);
        }
    }

    /// Stops the parse: a bound was hit while reading `at`.
    fn cap(&mut self, at: &Path, what: String) {
        if !self.capped {
            self.capped = true;
            self.warn(format!(
                "{}: the loader configuration exceeds {what}; the rest of it is not read",
                at.display()
            ));
        }
    }

    fn identity(&mut self, path: &Path) -> PathBuf {
        if let Some(id) = self.ids.get(path) {
            return id.clone();
        }
        let id = self.src.identity(path);
        self.ids.insert(path.to_path_buf(), id.clone());
        id
    }

    fn included_again(&mut self, path: &Path, id: PathBuf) {
        // Keyed by identity: one warning per file, whatever the spelling.
        if self.said.insert(format!("\0dup {}", id.display())) {
            self.conf.warnings.push(format!(
                "{}: included more than once (include cycle?); read once",
                path.display()
            ));
        }
    }

    /// Reads one file. True when it is now known (read, tried, or read
    /// before); false when it was left unread (too deep, or a bound).
    fn file(&mut self, path: &Path, depth: usize) -> bool {
        if self.capped {
            return false;
        }
        if depth > MAX_DEPTH {
            self.warn(format!(
                "{}: includes nested deeper than {MAX_DEPTH}; not read",
                path.display()
            ));
            return false;
        }
        let id = self.identity(path);
        if self.seen.contains(&id) {
            if depth > 0 {
                self.included_again(path, id);
            }
            return true;
        }
        if self.conf.files.len() >= limits::FILES {
            self.cap(path, format!("{} files", limits::FILES));
            return false;
        }
        self.seen.insert(id);
        let bytes = match self.src.read(path) {
            Ok(b) => b,
            Err(e) => {
                if depth > 0 || e.kind() != std::io::ErrorKind::NotFound {
                    self.warn(format!("{}: cannot read: {e}", path.display()));
                }
                return true;
            }
        };
        self.bytes += bytes.len() as u64;
        if self.bytes > limits::BYTES {
            self.cap(path, format!("{} bytes", limits::BYTES));
            return false;
        }
        self.conf.files.push(path.to_path_buf());
        for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            if self.capped {
                break;
            }
            self.line(path, i + 1, raw, depth);
        }
        true
    }

    fn line(&mut self, path: &Path, line: usize, raw: &[u8], depth: usize) {
        let text = match raw.iter().position(|&b| b == b'#') {
            Some(p) => &raw[..p],
            None => raw,
        };
        let text = text.trim_ascii();
        if text.is_empty() {
            return;
        }
        if let Some(rest) = keyword(text, b"include", false) {
            for pat in rest.split(|b| *b == b' ' || *b == b'\t') {
                if !pat.is_empty() {
                    self.include(include_pattern(path, pat), path, line, depth);
                }
            }
        } else if keyword(text, b"hwcap", true).is_some() {
            // glibc 2.37 and later ignore hwcap lines; older ones used them
            // only for subdirectory names below existing search dirs.
        } else {
            for tok in text.split(|b| matches!(b, b' ' | b'\t' | b'\r' | b':' | b',')) {
                if tok.is_empty() {
                    continue;
                }
                if self.conf.dirs.len() >= limits::DIRS {
                    self.cap(path, format!("{} directories", limits::DIRS));
                    return;
                }
                let mut dir = strip_type_suffix(tok);
                while dir.len() > 1 && dir.ends_with(b"/") {
                    dir = &dir[..dir.len() - 1];
                }
                self.conf.dirs.push(ConfDir {
                    dir: PathBuf::from(OsStr::from_bytes(dir)),
                    file: path.to_path_buf(),
                    line,
                });
            }
        }
    }

    /// One include pattern met in `file` at `line`: expanded the first
    /// time only; its matches read in glob order, as ldconfig does.
    fn include(&mut self, pattern: PathBuf, file: &Path, line: usize, depth: usize) {
        let matches = match self.globs.get_mut(&pattern) {
            None => {
                if self.globs.len() >= limits::PATTERNS {
                    self.cap(file, format!("{} include patterns", limits::PATTERNS));
                    return;
                }
                self.conf.includes.push(Include {
                    pattern: pattern.clone(),
                    file: file.to_path_buf(),
                    line,
                });
                let matches: Rc<[PathBuf]> = self.src.glob(&pattern).into();
                self.globs.insert(
                    pattern.clone(),
                    Expansion {
                        matches: matches.clone(),
                        done: false,
                        repeated: false,
                    },
                );
                matches
            }
            Some(x) if x.done => {
                // Everything it matches was read already: each is included
                // again, which is said once per file.
                if std::mem::replace(&mut x.repeated, true) {
                    return;
                }
                let matches = x.matches.clone();
                for m in matches.iter() {
                    if !self.count_match(file) {
                        return;
                    }
                    let id = self.identity(m);
                    if self.seen.contains(&id) {
                        self.included_again(m, id);
                    }
                }
                return;
            }
            // Met again while its first expansion is still being read (an
            // include inside one of its own matches): go on as ldconfig.
            Some(x) => x.matches.clone(),
        };
        let mut complete = true;
        for m in matches.iter() {
            if !self.count_match(file) {
                return;
            }
            complete &= self.file(m, depth + 1);
        }
        if complete && !self.capped {
            if let Some(x) = self.globs.get_mut(&pattern) {
                x.done = true;
            }
        }
    }

    /// Counts one glob match looked at; false when the bound is hit.
    fn count_match(&mut self, file: &Path) -> bool {
        self.matches += 1;
        if self.matches > limits::MATCHES {
            self.cap(file, format!("{} include matches", limits::MATCHES));
            return false;
        }
        true
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

    /// A [`Mem`] that counts what the parser asks of it.
    struct Counting {
        mem: Mem,
        reads: std::cell::Cell<usize>,
        globs: std::cell::Cell<usize>,
        identities: std::cell::Cell<usize>,
    }

    impl ConfSource for Counting {
        fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
            self.reads.set(self.reads.get() + 1);
            self.mem.read(path)
        }
        fn glob(&self, pattern: &Path) -> Vec<PathBuf> {
            self.globs.set(self.globs.get() + 1);
            self.mem.glob(pattern)
        }
        fn identity(&self, path: &Path) -> PathBuf {
            self.identities.set(self.identities.get() + 1);
            self.mem.identity(path)
        }
    }

    #[test]
    fn a_thousand_identical_include_lines_over_two_thousand_files_are_linear_and_warn_once_per_file(
    ) {
        const FILES: usize = 2_000;
        const LINES: usize = 1_000;
        let mut tree = BTreeMap::new();
        tree.insert(
            PathBuf::from("/etc/ld.so.conf"),
            "include /etc/ld.so.conf.d/*.conf\n"
                .repeat(LINES)
                .into_bytes(),
        );
        for i in 0..FILES {
            // The last file includes its own directory again, relatively.
            let body = if i == FILES - 1 {
                format!("/lib/d{i}\ninclude *.conf\n")
            } else {
                format!("/lib/d{i}\n")
            };
            tree.insert(
                PathBuf::from(format!("/etc/ld.so.conf.d/{i:05}.conf")),
                body.into_bytes(),
            );
        }
        let src = Counting {
            mem: Mem(tree),
            reads: Default::default(),
            globs: Default::default(),
            identities: Default::default(),
        };
        let c = parse(&src, Path::new("/etc/ld.so.conf"));
        // Every file read once, each directory once, in glob order.
        assert_eq!(src.reads.get(), FILES + 1);
        assert_eq!(c.files.len(), FILES + 1);
        assert_eq!(c.dirs.len(), FILES);
        assert_eq!(c.dirs[1].dir, Path::new("/lib/d1"));
        // One expansion per distinct pattern (the absolute one and the
        // relative one resolve to the same pattern), one identity per path.
        assert_eq!(src.globs.get(), 1);
        assert_eq!(c.includes.len(), 1);
        assert_eq!(src.identities.get(), FILES + 1);
        // Each file is included more than once: one warning each.
        let dup = c
            .warnings
            .iter()
            .filter(|w| w.contains("included more than once"))
            .count();
        assert_eq!(dup, FILES, "{:?}", &c.warnings[..c.warnings.len().min(5)]);
        let other: Vec<_> = c
            .warnings
            .iter()
            .filter(|w| !w.contains("more than once"))
            .take(3)
            .collect();
        assert_eq!(c.warnings.len(), FILES, "{other:?}");
    }

    #[test]
    fn a_file_included_once_is_not_warned_about_and_bounds_stop_a_hostile_tree() {
        let m = mem(&[
            ("/etc/ld.so.conf", "include a/*.conf\ninclude b/*.conf\n"),
            ("/etc/a/1.conf", "/one\n"),
            ("/etc/b/2.conf", "/two\n"),
        ]);
        let c = parse(&m, Path::new("/etc/ld.so.conf"));
        assert_eq!(dirs(&c), ["/one", "/two"]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);

        let many = "/d\n".repeat(limits::DIRS + 5);
        let m = Mem([(PathBuf::from("/etc/ld.so.conf"), many.into_bytes())]
            .into_iter()
            .collect());
        let c = parse(&m, Path::new("/etc/ld.so.conf"));
        assert_eq!(c.dirs.len(), limits::DIRS);
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("directories"), "{:?}", c.warnings);
    }

    #[test]
    fn a_pattern_first_met_too_deep_is_read_when_met_higher() {
        // a.conf includes itself down to the depth bound; the top file then
        // names deep/*.conf directly, which must still be read.
        let mut chain = Vec::new();
        for i in 0..=MAX_DEPTH + 1 {
            chain.push((
                format!("/etc/c{i}.conf"),
                format!("include /etc/c{}.conf\n", i + 1),
            ));
        }
        let last = MAX_DEPTH + 2;
        chain.push((
            format!("/etc/c{last}.conf"),
            "include /etc/deep/*.conf\n".into(),
        ));
        chain.push(("/etc/deep/x.conf".into(), "/deepdir\n".into()));
        chain.push((
            "/etc/ld.so.conf".into(),
            "include /etc/c0.conf\ninclude /etc/deep/*.conf\n".into(),
        ));
        let m = Mem(chain
            .into_iter()
            .map(|(p, c)| (PathBuf::from(p), c.into_bytes()))
            .collect());
        let c = parse(&m, Path::new("/etc/ld.so.conf"));
        assert_eq!(dirs(&c), ["/deepdir"]);
        assert!(c.warnings.iter().any(|w| w.contains("deeper")));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(data: Vec<u8>) {
            let m = Mem([(PathBuf::from("/etc/ld.so.conf"), data)].into_iter().collect());
            let _ = parse(&m, Path::new("/etc/ld.so.conf"));
        }
    }
}
