//! Flags and the config file resolved once into the plain [`Config`] every
//! command reads: the pipeline's [`Plan`] (root, search paths, scan,
//! provenance, audit settings), the baseline's [`Location`], the output
//! format. The file itself is [`file`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub mod file;

use crate::baseline::Location;
use crate::cli::{FormatArg, Global};
use crate::error::{Error, Result};
use crate::output::Format;
use crate::pipeline::Plan;
use crate::rootfs::Root;
use crate::scan::ScanOptions;
use file::FileConfig;

/// Everything a command needs to know about how it was asked to run.
pub struct Config {
    /// What the pipeline looks at and how.
    pub plan: Plan,
    /// Where the baseline lives and what it must satisfy.
    pub baseline: Location,
    pub format: Format,
    pub quiet: bool,
    pub threads: usize,
    /// `--io-threads` or the config key, when given.
    pub io_set: Option<usize>,
    pub manifest_exclude: globset::GlobSet,
    /// `guard`: paths never refused (the config's `guard_allow`).
    pub guard_allow: globset::GlobSet,
    /// `watch`: the config file's `rescan_interval`, if set.
    pub rescan_interval: Option<std::time::Duration>,
    /// `--eventlog`: findings also to the Windows event log.
    pub eventlog: bool,
    /// `--tag`: which image of an `--image` holding several.
    pub image_tag: Option<String>,
}

impl Config {
    pub fn resolve(g: &Global) -> Result<Config> {
        if g.eventlog && !cfg!(windows) {
            return Err(Error::Usage(
                "--eventlog: the Windows Event Log is Windows only (on Linux use --syslog or the journal)".into(),
            ));
        }
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
        let pubkey = g.verify_with.as_ref().or(cfg.baseline_pubkey.as_ref());
        let verify_key = match pubkey {
            Some(p) => Some(crate::baseline::signing::load_public(p)?),
            None => None,
        };
        let state_path = cfg
            .state_path
            .clone()
            .unwrap_or_else(|| crate::baseline::rollback::default_path(&db));
        let manifest_exclude = file::compile_globs(&cfg.manifest_exclude).map_err(Error::Usage)?;
        let guard_allow = file::compile_globs(&cfg.guard_allow).map_err(Error::Usage)?;
        let provenance_policy =
            crate::provenance::policy::Policy::new(&cfg.provenance).map_err(Error::Usage)?;
        let rescan_interval = match &cfg.rescan_interval {
            Some(r) => Some(crate::timefmt::parse_duration(r).map_err(Error::Usage)?),
            None => None,
        };
        let sha256 = extra_digests(&cfg.hashes)?;
        crate::output::set_host(host_label(&root));
        let plan = Plan {
            root,
            extra_paths: cfg.paths,
            scan: ScanOptions {
                threads,
                cross_filesystems: cfg.cross_filesystems,
                excludes: Arc::new(excludes),
                paranoid: false,
                io_threads,
                readahead: true,
                timing: false,
                sha256,
                // Progress only when stdout is not JSON for a program.
                show_progress: !g.quiet && g.format == FormatArg::Human,
                progress: None,
                digest_paths: None,
            },
            provenance: cfg.provenance,
            policy: provenance_policy,
            trusted_uids: cfg.trusted_uids,
            exec_dirs: cfg.audit_exec_dirs.unwrap_or_else(|| {
                crate::audit::DEFAULT_EXEC_DIRS
                    .iter()
                    .map(PathBuf::from)
                    .collect()
            }),
        };
        Ok(Config {
            plan,
            baseline: Location {
                db,
                state_path,
                verify_key,
                state_copy: pubkey.map(|p| crate::baseline::rollback::copy_path(p)),
                accept_generation: g.accept_generation,
                allow_other_root: g.allow_other_root,
                restart_signing: false,
            },
            manifest_exclude,
            guard_allow,
            format: match g.format {
                FormatArg::Human => Format::Human,
                FormatArg::Json => Format::Json,
                // `export` writes the allowlist; its messages stay human.
                FormatArg::Fapolicyd | FormatArg::Auditd | FormatArg::Applocker => Format::Human,
                FormatArg::Ecs => Format::Ecs,
            },
            quiet: g.quiet,
            threads,
            io_set,
            rescan_interval,
            eventlog: g.eventlog,
            image_tag: g.tag.clone(),
        })
    }

    /// Files in flight for a scan with `threads` hashing threads.
    pub fn io_threads_for(&self, threads: usize) -> usize {
        io_threads_for(self.io_set, threads)
    }
}

/// The `host` of finding lines: this machine, or the root judged (a
/// `--root` image is not the machine that judges it).
fn host_label(root: &Root) -> String {
    if root.is_slash() {
        crate::sys::hostname()
    } else {
        crate::escape::for_json(root.host().as_os_str().as_encoded_bytes())
    }
}

/// Whether the config's `hashes` asks for SHA-256 (the one extra digest
/// implemented); anything else is a usage error, not silently ignored.
fn extra_digests(names: &[String]) -> Result<bool> {
    let mut sha256 = false;
    for n in names {
        match n.to_ascii_lowercase().as_str() {
            "sha256" | "sha-256" => sha256 = true,
            // Always computed; naming it is harmless.
            "blake3" => {}
            other => {
                return Err(Error::Usage(format!(
                    "config: hashes: unknown digest {other:?} (known: sha256, blake3)"
                )))
            }
        }
    }
    Ok(sha256)
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
