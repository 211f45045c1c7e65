//! The loader audit: what is dangerous right now, with or without a
//! baseline. Each concern has its own file; all read the scanned tree only
//! through [`crate::rootfs::Root`] with capped reads, parse with parsers
//! that never panic, and never execute, load or write anything in it.
//!
//! - `preload`: `/etc/ld.so.preload` and what it names
//! - `loaderconf`: `ld.so.conf` search dirs and libraries shadowing
//!   system ones
//! - `conffiles`: the loader's configuration files as files: symlinks into
//!   writable places, include matches that are FIFOs, devices or dirs
//! - `ldcache`: `/etc/ld.so.cache`
//! - `perms`: who can write search dirs, their ancestors and libraries
//! - `rpath`: `DT_RPATH`/`DT_RUNPATH` of libraries and executables
//! - `loader`: the dynamic loader itself, `PT_INTERP`, loader backups
//! - `environment`: `LD_*` variables in environment files and units
//! - `sudoers`: what sudo lets through of the caller's `LD_*` variables
//! - `process`: running processes (live systems only)
//! - `kernel`: the running kernel's taint and modules (live systems only)
//! - `registry`: the registry of a Windows image
//! - `sideload`: DLL side-loading in a Windows image

pub mod conffiles;
pub mod environment;
pub mod kernel;
pub mod ldcache;
pub mod loader;
pub mod loaderconf;
#[cfg(windows)]
pub mod modules_windows;
pub mod objects;
pub mod perms;
pub mod preload;
pub mod process;
pub mod registry;
pub mod rpath;
pub mod sideload;
pub mod sudoers;
pub mod tokens;

use std::path::PathBuf;

use crate::finding::Finding;
use crate::record::Record;
use crate::rootfs::Root;
use crate::searchpaths::SearchPaths;

/// Executable directories whose ELF files are read by default (config key
/// `audit_exec_dirs`).
pub const DEFAULT_EXEC_DIRS: &[&str] = &[
    "/bin",
    "/sbin",
    "/usr/bin",
    "/usr/sbin",
    "/usr/local/bin",
    "/usr/local/sbin",
];

/// What the audit looks at.
pub struct Context<'a> {
    pub root: &'a Root,
    pub sp: &'a SearchPaths,
    /// The scan of the search paths, sorted by path.
    pub records: &'a [Record],
    /// The baseline, sorted by path, when the audit runs under `check`.
    pub baseline: Option<&'a [Record]>,
    pub trust: perms::Trust,
    pub exec_dirs: &'a [PathBuf],
    /// The run's Authenticode verifier (its roots and catalogs, for the
    /// catalog verdicts of the registry audit).
    pub authenticode: &'a crate::provenance::authenticode::Authenticode,
    /// The registry of a Windows image, read once per run.
    pub registry: Option<&'a crate::winreg::Registry>,
    /// The executable dirs' ELF objects, read on first use and kept for
    /// the judge's later runs.
    pub exec: &'a objects::ExecObjects,
    /// Whether to audit the running processes (not on every `watch`
    /// event: they are audited at start and on each rescan).
    pub processes: bool,
}

/// What the audit found, plus notes for stderr (things it could not look
/// at, counts) that are not findings.
#[derive(Debug, Default)]
pub struct Audit {
    pub findings: Vec<Finding>,
    pub notes: Vec<String>,
}

/// Runs every audit.
pub fn run(cx: &Context) -> Audit {
    let mut a = Audit::default();
    let objs = objects::collect(cx, &mut a.notes);
    preload::audit(cx, &mut a);
    loaderconf::audit(cx, &objs, &mut a);
    conffiles::audit(cx, &mut a);
    ldcache::audit(cx, &objs, &mut a);
    perms::audit(cx, &mut a);
    rpath::audit(cx, &objs, &mut a);
    loader::audit(cx, &objs, &mut a);
    environment::audit(cx, &mut a);
    if cx.processes {
        process::audit(cx, &mut a);
        kernel::audit(cx, &mut a);
    }
    registry::audit(cx, &mut a);
    sideload::audit(cx, &mut a);
    // Different audits can reach the same fact (a writable dir named by
    // two RPATHs of one file, say): report it once.
    a.findings
        .sort_by(|x, y| (&x.path, x.kind, &x.detail).cmp(&(&y.path, y.kind, &y.detail)));
    a.findings
        .dedup_by(|x, y| x.path == y.path && x.kind == y.kind && x.detail == y.detail);
    a
}

/// The bytes of a path.
pub(crate) fn bytes(p: &std::path::Path) -> &[u8] {
    use crate::sys::OsStrExt;
    p.as_os_str().as_bytes()
}

/// A path from bytes.
pub(crate) fn path(b: &[u8]) -> PathBuf {
    use crate::sys::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(b))
}

/// Escaped for a detail sentence.
pub(crate) fn show(b: &[u8]) -> String {
    crate::escape::for_terminal(b)
}
