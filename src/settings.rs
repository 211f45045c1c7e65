//! Flags and the config file resolved once into the plain settings every
//! command reads: the root, the baseline location, threads, excludes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cli::Global;
use crate::config::FileConfig;
use crate::error::{Error, Result};
use crate::report::Format;
use crate::rootfs::Root;
use crate::scan::ScanOptions;

/// Everything a command needs to know about how it was asked to run.
pub struct Settings {
    pub root: Root,
    /// The sled database directory.
    pub db: PathBuf,
    pub format: Format,
    pub quiet: bool,
    pub threads: usize,
    /// Files in flight (walker threads), at least `threads`.
    pub io_threads: usize,
    /// `--io-threads` or the config key, when given.
    pub io_set: Option<usize>,
    pub cross_filesystems: bool,
    pub excludes: Arc<globset::GlobSet>,
    pub extra_paths: Vec<PathBuf>,
    /// Every baseline must carry a valid signature by this key.
    pub verify_key: Option<ed25519_dalek::VerifyingKey>,
    /// Highest generation seen per baseline id (rollback detection).
    pub state_path: PathBuf,
    pub manifest_exclude: globset::GlobSet,
    /// Owners trusted besides root (config `trusted_uids`).
    pub trusted_uids: Vec<u32>,
    /// Executable dirs the audit reads (config `audit_exec_dirs`).
    pub exec_dirs: Vec<PathBuf>,
    /// `watch`: the config file's `rescan_interval`, if set.
    pub rescan_interval: Option<std::time::Duration>,
    /// Provenance configuration and compiled policy.
    pub provenance: crate::provenance::policy::ProvenanceConfig,
    pub provenance_policy: crate::provenance::policy::Policy,
}

impl Settings {
    pub fn resolve(g: &Global) -> Result<Settings> {
        let cfg = FileConfig::load(g.config.as_deref())?;
        let root = match &g.root {
            None => Root::slash(),
            Some(dir) => Root::new(dir).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::NotFound {
                    what: "root",
                    path: dir.clone(),
                },
                _ => Error::io("open root", dir, e),
            })?,
        };
        let threads = match g
            .threads
            .filter(|&n| n > 0)
            .or(Some(cfg.threads).filter(|&n| n > 0))
        {
            Some(n) if n > 1024 => return Err(Error::Usage("--threads: at most 1024".into())),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(2, |n| n.get()),
        };
        let io_set = match g
            .io_threads
            .filter(|&n| n > 0)
            .or(Some(cfg.io_threads).filter(|&n| n > 0))
        {
            Some(n) if n > 1024 => return Err(Error::Usage("--io-threads: at most 1024".into())),
            other => other,
        };
        let io_threads = io_threads_for(io_set, threads);
        let excludes = cfg.excludes().map_err(Error::Usage)?;
        let db = match g.db.clone().or_else(|| cfg.db.clone()) {
            Some(p) => p,
            None => default_db(&root)?,
        };
        let verify_key = match g.verify_with.as_ref().or(cfg.baseline_pubkey.as_ref()) {
            Some(p) => Some(crate::signing::load_public(p)?),
            None => None,
        };
        let state_path = cfg
            .state_path
            .clone()
            .unwrap_or_else(|| crate::rollback::default_path(&db));
        let manifest_exclude =
            crate::config::compile_globs(&cfg.manifest_exclude).map_err(Error::Usage)?;
        let provenance_policy =
            crate::provenance::policy::Policy::new(&cfg.provenance).map_err(Error::Usage)?;
        Ok(Settings {
            provenance: cfg.provenance.clone(),
            provenance_policy,
            root,
            verify_key,
            state_path,
            manifest_exclude,
            db,
            format: g.format,
            quiet: g.quiet,
            threads,
            io_threads,
            io_set,
            cross_filesystems: cfg.cross_filesystems,
            excludes: Arc::new(excludes),
            extra_paths: cfg.paths,
            trusted_uids: cfg.trusted_uids,
            exec_dirs: cfg.audit_exec_dirs.unwrap_or_else(|| {
                crate::audit::DEFAULT_EXEC_DIRS
                    .iter()
                    .map(PathBuf::from)
                    .collect()
            }),
            rescan_interval: match &cfg.rescan_interval {
                Some(r) => Some(crate::config::parse_duration(r).map_err(Error::Usage)?),
                None => None,
            },
        })
    }

    /// Files in flight for a scan with `threads` hashing threads.
    pub fn io_threads_for(&self, threads: usize) -> usize {
        io_threads_for(self.io_set, threads)
    }

    pub fn scan_options(&self, paranoid: bool) -> ScanOptions {
        ScanOptions {
            threads: self.threads,
            cross_filesystems: self.cross_filesystems,
            excludes: self.excludes.clone(),
            paranoid,
            io_threads: self.io_threads,
            readahead: true,
            timing: false,
        }
    }
}

/// The setting if given (never below `threads`), else four files in flight
/// per hashing thread, at most 64: a cold disk gets enough requests queued
/// to stay busy (0.9x of the b3sum floor with one per thread, 0.7x with
/// four, on /usr/lib here), while warm the extra threads cost nothing
/// measurable (they only wait on the same cores).
fn io_threads_for(set: Option<usize>, threads: usize) -> usize {
    match set {
        Some(n) => n.max(threads),
        None => (threads * 4).min(64).max(threads),
    }
}

/// The state directory: `/var/lib/libwarden` for root, the XDG state dir
/// otherwise.
pub fn state_dir() -> Result<PathBuf> {
    #[cfg(windows)]
    {
        // Windows keeps machine-wide program data in %ProgramData%.
        let pd = std::env::var_os("ProgramData")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .unwrap_or_else(|| PathBuf::from("C:\\ProgramData"));
        return Ok(pd.join("libwarden"));
    }
    #[allow(unreachable_code)]
    if crate::sys::is_privileged() {
        return Ok(PathBuf::from("/var/lib/libwarden"));
    }
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|x| Path::new(x).is_absolute()) {
        return Ok(PathBuf::from(x).join("libwarden"));
    }
    match std::env::var_os("HOME") {
        Some(h) => Ok(PathBuf::from(h).join(".local/state/libwarden")),
        None => Err(Error::Usage(
            "no HOME or XDG_STATE_HOME to keep the baseline in: give --db".into(),
        )),
    }
}

/// The baseline of the host lives in `STATE/baseline`; each `--root` gets
/// its own under `STATE/roots/`, so checking an image never touches the
/// host's baseline.
fn default_db(root: &Root) -> Result<PathBuf> {
    let state = state_dir()?;
    if root.is_slash() {
        return Ok(state.join("baseline"));
    }
    use crate::sys::OsStrExt;
    let bytes = root.host().as_os_str().as_bytes();
    let readable: String = bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'.' {
                b as char
            } else {
                '_'
            }
        })
        .collect();
    let tag = &crate::escape::hex(blake3::hash(bytes).as_bytes())[..12];
    Ok(state
        .join("roots")
        .join(format!("{}-{tag}", readable.trim_matches('_'))))
}
