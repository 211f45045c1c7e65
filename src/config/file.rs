//! The TOML configuration file. Every key has a default, so libwarden runs
//! with no file at all; unknown keys are errors (a typo must not silently
//! disable monitoring).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// Where the configuration is read from when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/libwarden/config.toml";

/// The file as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Extra directories to monitor, recursively, beside the loader's own.
    #[serde(default)]
    pub paths: Vec<PathBuf>,
    /// Glob patterns over paths as seen inside the root; a match is neither
    /// scanned nor, for a directory, descended into.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Descend into other file systems mounted below a search dir.
    #[serde(default)]
    pub cross_filesystems: bool,
    /// Hashing threads; 0 means one per core.
    #[serde(default)]
    pub threads: usize,
    /// Files read at once (walker threads); 0 means four per thread (at
    /// most 64).
    /// More than the cores helps when the disk, not the CPU, is the limit.
    #[serde(default)]
    pub io_threads: usize,
    /// Baseline directory (overridden by `--db`).
    pub db: Option<PathBuf>,
    /// Public key every baseline must be signed with (`--verify-with`).
    pub baseline_pubkey: Option<PathBuf>,
    /// Where the highest generation seen per baseline is kept; outside the
    /// baseline directory, ideally on another file system.
    pub state_path: Option<PathBuf>,
    /// Globs of host-specific paths left out of `check --against`.
    #[serde(default)]
    pub manifest_exclude: Vec<String>,
    /// Owners besides root allowed to own search dirs and libraries
    /// (the audit's writable-path check).
    #[serde(default)]
    pub trusted_uids: Vec<u32>,
    /// Directories of executables whose RPATH/RUNPATH and `PT_INTERP` the
    /// audit reads (not recursively); default: the usual bin and sbin dirs.
    pub audit_exec_dirs: Option<Vec<PathBuf>>,
    /// `watch`: time between full rescans, e.g. "1h", "30m", "90s"
    /// (overridden by `--rescan-interval`).
    pub rescan_interval: Option<String>,
    /// `guard`: globs of paths (inside the root) never refused by
    /// `guard --enforce`, whatever the baseline says of them.
    #[serde(default)]
    pub guard_allow: Vec<String>,
    /// Extra digests beside BLAKE3, computed in the same read, stored in
    /// the baseline and reported (`file.hash.*` in ECS): `["sha256"]` for
    /// matching threat intelligence. Off by default: it costs hashing time.
    #[serde(default)]
    pub hashes: Vec<String>,
    /// Provenance: dpkg database, Authenticode roots, per-path policy.
    #[serde(default)]
    pub provenance: crate::provenance::policy::ProvenanceConfig,
}

impl FileConfig {
    /// Reads `path`. A missing file is fine only when it was not asked for
    /// by name.
    pub fn load(path: Option<&Path>) -> Result<FileConfig> {
        let (path, explicit) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_PATH), false),
        };
        // Bounded and non-blocking: `--config /dev/zero` or a FIFO is a
        // bad config at once, not a memory exhausted or a hang.
        let text = match crate::input::read_bounded_text(&path, crate::input::CONFIG_CAP) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                return Ok(FileConfig::default())
            }
            Err(e) => {
                return Err(Error::Config {
                    path,
                    msg: e.to_string(),
                })
            }
        };
        let cfg: FileConfig = toml::from_str(&text).map_err(|e| Error::Config {
            path: path.clone(),
            msg: e.to_string(),
        })?;
        cfg.excludes()
            .and_then(|_| compile_globs(&cfg.manifest_exclude))
            .and_then(|_| compile_globs(&cfg.guard_allow))
            .and_then(|_| crate::provenance::policy::Policy::new(&cfg.provenance).map(|_| ()))
            .map_err(|msg| Error::Config {
                path: path.clone(),
                msg,
            })?;
        if let Some(r) = &cfg.rescan_interval {
            crate::timefmt::parse_duration(r).map_err(|msg| Error::Config {
                path,
                msg: format!("rescan_interval: {msg}"),
            })?;
        }
        Ok(cfg)
    }

    /// The exclude patterns compiled into one matcher.
    pub fn excludes(&self) -> std::result::Result<globset::GlobSet, String> {
        compile_globs(&self.exclude)
    }
}

/// Compiles glob patterns over paths (`*` stays within one component).
pub fn compile_globs(patterns: &[String]) -> std::result::Result<globset::GlobSet, String> {
    {
        let mut b = globset::GlobSetBuilder::new();
        for pat in patterns {
            let g = globset::GlobBuilder::new(pat)
                .literal_separator(true)
                .build()
                .map_err(|e| format!("exclude pattern {pat:?}: {e}"))?;
            b.add(g);
        }
        b.build().map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_and_bad_globs_are_errors() {
        assert!(toml::from_str::<FileConfig>("pahts = []").is_err());
        let c: FileConfig = toml::from_str("exclude = [\"[\"]").unwrap();
        assert!(c.excludes().is_err());
        let c: FileConfig =
            toml::from_str("paths = [\"/opt/lib\"]\nexclude = [\"/usr/lib/**/*.pyc\"]").unwrap();
        assert!(c.excludes().unwrap().is_match("/usr/lib/python3/x/y.pyc"));
    }

    #[test]
    fn audit_keys() {
        let c: FileConfig =
            toml::from_str("trusted_uids = [998]\naudit_exec_dirs = [\"/opt/bin\"]").unwrap();
        assert_eq!(c.trusted_uids, [998]);
        assert_eq!(c.audit_exec_dirs, Some(vec![PathBuf::from("/opt/bin")]));
        assert!(FileConfig::default().audit_exec_dirs.is_none());
    }
}
