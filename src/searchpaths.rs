//! The places a library can be loaded from, as the loader sees them: the
//! trusted directories, `ld.so.conf` and its includes, multiarch and `lib64`
//! directories, the loader's own files, a Windows image's system
//! directories, and the configuration's extra paths. Deduplicated by
//! canonical path, so merged `/usr` is scanned once.

use crate::sys::OsStrExt;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::formats::ldconf::{self, LdConf};
use crate::rootfs::{find_ci, Root};
use crate::winreg::Registry;

/// Directories glibc searches after the cache, whatever the configuration.
pub const TRUSTED_DIRS: &[&str] = &["/lib", "/usr/lib", "/lib64", "/usr/lib64"];
/// Other architecture-specific library directories, when present.
pub const EXTRA_ARCH_DIRS: &[&str] = &["/lib32", "/usr/lib32", "/libx32", "/usr/libx32"];
/// The loader's configuration and state, tracked whether they exist or not:
/// the appearance of one (a preload list above all) is a finding.
pub const LOADER_FILES: &[&str] = &["/etc/ld.so.conf", "/etc/ld.so.preload", "/etc/ld.so.cache"];
pub const LD_SO_CONF: &str = "/etc/ld.so.conf";
/// Names of dynamic loaders.
pub const LOADER_GLOBS: &[&str] = &["ld-linux*.so*", "ld64.so*", "ld-musl-*.so*"];

/// The `glibc-hwcaps` subdirectory names glibc (2.33 and later) knows, by
/// architecture, most capable first: the loader searches
/// `DIR/glibc-hwcaps/NAME` for each name the CPU supports before `DIR`
/// itself, and ldconfig puts what it finds there in the cache ahead of
/// `DIR`'s own libraries.
pub const HWCAPS_SUBDIRS: &[&str] = &[
    "x86-64-v4",
    "x86-64-v3",
    "x86-64-v2",
    "power11",
    "power10",
    "power9",
    "z17",
    "z16",
    "z15",
    "z14",
    "z13",
];

/// The `glibc-hwcaps` subdirectories of `dir` (canonical) that exist, in
/// the order the loader searches them: the known names most capable first,
/// then any other name (a future or foreign level still shadows its parent
/// on a CPU that supports it), sorted. Bounded: at most 64.
pub fn hwcaps_dirs(root: &Root, dir: &Path) -> Vec<PathBuf> {
    let base = dir.join("glibc-hwcaps");
    let Ok(entries) = root.list_entries(&base) else {
        return Vec::new();
    };
    let mut names: Vec<std::ffi::OsString> = entries
        .into_iter()
        .filter(|(_, t)| t.is_dir() || t.is_symlink())
        .map(|(n, _)| n)
        .take(64)
        .collect();
    let rank = |n: &std::ffi::OsString| {
        HWCAPS_SUBDIRS
            .iter()
            .position(|k| n.as_bytes() == k.as_bytes())
            .unwrap_or(HWCAPS_SUBDIRS.len())
    };
    names.sort_by(|a, b| (rank(a), a).cmp(&(rank(b), b)));
    names
        .into_iter()
        .map(|n| base.join(n))
        .filter(|p| root.is_dir(p))
        .collect()
}

/// Why a path is monitored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Trusted,
    Multiarch,
    Conf {
        file: PathBuf,
        line: usize,
    },
    Include {
        file: PathBuf,
        line: usize,
    },
    LoaderFile,
    Loader,
    Windows,
    /// A directory of the Windows system `PATH` (`Session Manager\Environment`).
    WindowsPath,
    Config,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Trusted => f.write_str("trusted dir"),
            Origin::Multiarch => f.write_str("multiarch dir"),
            Origin::Conf { file, line } => write!(f, "{}:{line}", file.display()),
            Origin::Include { file, line } => write!(f, "include at {}:{line}", file.display()),
            Origin::LoaderFile => f.write_str("loader file"),
            Origin::Loader => f.write_str("dynamic loader"),
            Origin::Windows => f.write_str("windows system dir"),
            Origin::WindowsPath => f.write_str("windows system PATH"),
            Origin::Config => f.write_str("libwarden config"),
        }
    }
}

/// One monitored directory.
#[derive(Clone, Debug)]
pub struct SearchDir {
    /// The canonical path inside the root.
    pub path: PathBuf,
    /// Every spelling that led here (`/lib`, `/usr/lib`), first first.
    pub aliases: Vec<PathBuf>,
    pub origins: Vec<Origin>,
    /// Whole subtree (true) or only its own entries.
    pub recursive: bool,
    pub exists: bool,
    /// A recursive dir that already holds this one: it is not walked twice.
    pub covered_by: Option<PathBuf>,
}

/// One monitored file outside a walk of its own.
#[derive(Clone, Debug)]
pub struct TrackedFile {
    /// Parent canonical, the name itself not followed.
    pub path: PathBuf,
    pub origin: Origin,
    pub exists: bool,
}

/// Everything to monitor.
#[derive(Clone, Debug, Default)]
pub struct SearchPaths {
    pub dirs: Vec<SearchDir>,
    pub files: Vec<TrackedFile>,
    pub ldconf: LdConf,
    pub warnings: Vec<String>,
    /// Where each dir is in `dirs`, and the files in `files`: a loader
    /// configuration naming thousands of either stays linear to resolve.
    dir_index: HashMap<PathBuf, usize>,
    file_index: HashSet<PathBuf>,
}

impl SearchPaths {
    /// Resolves every search path inside `root`.
    pub fn resolve(root: &Root, extra: &[PathBuf], registry: Option<&Registry>) -> SearchPaths {
        let mut sp = SearchPaths::default();
        if cfg!(windows) {
            // On Windows there is no ld.so: only the Windows search order.
            sp.add_windows(root, registry);
            for d in extra {
                sp.add_dir(root, d, Origin::Config, true);
            }
            sp.mark_covered();
            return sp;
        }
        for d in TRUSTED_DIRS {
            sp.add_dir(root, Path::new(d), Origin::Trusted, true);
        }
        for d in EXTRA_ARCH_DIRS {
            if root.resolve(Path::new(d)).is_ok() {
                sp.add_dir(root, Path::new(d), Origin::Trusted, true);
            }
        }
        for base in ["/lib", "/usr/lib"] {
            for d in root.glob(&Path::new(base).join("*-linux-*")) {
                if root.is_dir(&d) {
                    sp.add_dir(root, &d, Origin::Multiarch, true);
                }
            }
        }

        sp.ldconf = ldconf::parse(root, Path::new(LD_SO_CONF));
        sp.warnings.extend(sp.ldconf.warnings.iter().cloned());
        for cd in sp.ldconf.dirs.clone() {
            let origin = Origin::Conf {
                file: cd.file.clone(),
                line: cd.line,
            };
            if cd.dir.is_absolute() {
                sp.add_dir(root, &cd.dir, origin, true);
            } else {
                // The loader would resolve it against its working directory;
                // it is monitored nowhere, and the audit reports it.
                sp.warnings.push(format!(
                    "{}:{}: relative search dir {:?} is not monitored",
                    cd.file.display(),
                    cd.line,
                    cd.dir
                ));
            }
        }
        for f in LOADER_FILES {
            sp.add_file(root, Path::new(f), Origin::LoaderFile);
        }
        for f in sp.ldconf.files.clone() {
            sp.add_file(root, &f, Origin::LoaderFile);
        }
        // The directory of every include pattern is watched whole, so a new
        // file dropped there is seen even if no glob matches it yet.
        for inc in sp.ldconf.includes.clone() {
            if let Some(dir) = inc.pattern.parent() {
                if !dir.as_os_str().as_bytes().contains(&b'*') {
                    let origin = Origin::Include {
                        file: inc.file.clone(),
                        line: inc.line,
                    };
                    sp.add_dir(root, dir, origin, false);
                }
            }
        }
        for d in TRUSTED_DIRS {
            for g in LOADER_GLOBS {
                for f in root.glob(&Path::new(d).join(g)) {
                    sp.add_file(root, &f, Origin::Loader);
                }
            }
        }
        sp.add_windows(root, registry);
        for d in extra {
            sp.add_dir(root, d, Origin::Config, true);
        }
        sp.mark_covered();
        sp
    }

    /// A set resolved elsewhere (a container image's view, which is not a
    /// [`Root`]): `dirs` and `files` deduplicated by their canonical paths
    /// already. Marks covered dirs as [`SearchPaths::resolve`] does.
    pub fn from_parts(
        dirs: Vec<SearchDir>,
        files: Vec<TrackedFile>,
        ldconf: LdConf,
        warnings: Vec<String>,
    ) -> SearchPaths {
        let mut sp = SearchPaths {
            dir_index: dirs
                .iter()
                .enumerate()
                .map(|(i, d)| (d.path.clone(), i))
                .collect(),
            file_index: files.iter().map(|f| f.path.clone()).collect(),
            dirs,
            files,
            ldconf,
            warnings,
        };
        sp.mark_covered();
        sp
    }

    fn add_dir(&mut self, root: &Root, dir: &Path, origin: Origin, recursive: bool) {
        let (canonical, exists) = match root.resolve(dir) {
            Ok(p) => {
                let is_dir = root.lstat(&p).is_ok_and(|m| m.is_dir());
                (p, is_dir)
            }
            Err(_) => (root.resolve_lenient(dir), false),
        };
        if let Some(d) = self
            .dir_index
            .get(&canonical)
            .and_then(|&i| self.dirs.get_mut(i))
        {
            if !d.aliases.iter().any(|a| a == dir) {
                d.aliases.push(dir.to_path_buf());
            }
            if !d.origins.contains(&origin) {
                d.origins.push(origin);
            }
            d.recursive |= recursive;
            return;
        }
        self.dir_index.insert(canonical.clone(), self.dirs.len());
        self.dirs.push(SearchDir {
            path: canonical,
            aliases: vec![dir.to_path_buf()],
            origins: vec![origin],
            recursive,
            exists,
            covered_by: None,
        });
    }

    fn add_file(&mut self, root: &Root, file: &Path, origin: Origin) {
        let path = root
            .resolve_parent(file)
            .unwrap_or_else(|_| root.resolve_lenient(file));
        if !self.file_index.insert(path.clone()) {
            return;
        }
        let exists = root.lstat(&path).is_ok();
        self.files.push(TrackedFile {
            path,
            origin,
            exists,
        });
    }

    /// A root holding `Windows/System32` (any case) is a Windows image.
    fn add_windows(&mut self, root: &Root, registry: Option<&Registry>) {
        let Some(win) = find_ci(root, Path::new("/"), "windows") else {
            return;
        };
        let Some(sys32) = find_ci(root, &win, "system32") else {
            return;
        };
        self.add_dir(root, &sys32, Origin::Windows, true);
        if let Some(wow) = find_ci(root, &win, "syswow64") {
            self.add_dir(root, &wow, Origin::Windows, true);
        }
        // The Windows directory itself is searched, not its subtree (which
        // holds WinSxS and much else the loader never looks at directly).
        self.add_dir(root, &win, Origin::Windows, false);
        // So is every directory of the system PATH, flat.
        if let Some(reg) = registry {
            for d in crate::winreg::system_path_dirs(root, reg) {
                self.add_dir(root, &d, Origin::WindowsPath, false);
            }
        }
    }

    /// Marks dirs inside a recursive, existing dir as covered by it.
    fn mark_covered(&mut self) {
        let walkers: Vec<PathBuf> = self
            .dirs
            .iter()
            .filter(|d| d.recursive && d.exists)
            .map(|d| d.path.clone())
            .collect();
        for d in &mut self.dirs {
            d.covered_by = walkers
                .iter()
                .filter(|w| **w != d.path && d.path.starts_with(w))
                .min_by_key(|w| w.as_os_str().len())
                .cloned();
        }
    }

    /// The directories to walk: existing and not covered by another.
    pub fn walk_roots(&self) -> impl Iterator<Item = &SearchDir> {
        self.dirs
            .iter()
            .filter(|d| d.exists && d.covered_by.is_none())
    }

    /// Tracked files not already inside a walked directory.
    pub fn loose_files(&self) -> impl Iterator<Item = &TrackedFile> {
        self.files.iter().filter(move |f| {
            !self.walk_roots().any(|d| {
                if d.recursive {
                    f.path.starts_with(&d.path)
                } else {
                    f.path.parent() == Some(d.path.as_path())
                }
            })
        })
    }

    /// Whether a logical path lies in what this set monitors (for `update
    /// PATH` and the watcher).
    pub fn covers(&self, path: &Path) -> bool {
        self.files.iter().any(|f| f.path == path)
            || self.walk_roots().any(|d| {
                path == d.path
                    || if d.recursive {
                        path.starts_with(&d.path)
                    } else {
                        path.parent() == Some(d.path.as_path())
                    }
            })
    }

    /// The tracked loader file at `path`, if it is one.
    pub fn tracked(&self, path: &[u8]) -> Option<&TrackedFile> {
        self.files
            .iter()
            .find(|f| f.path.as_os_str().as_bytes() == path)
    }
}
