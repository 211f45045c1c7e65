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
}

impl FileConfig {
    /// Reads `path`. A missing file is fine only when it was not asked for
    /// by name.
    pub fn load(path: Option<&Path>) -> Result<FileConfig> {
        let (path, explicit) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_PATH), false),
        };
        let text = match std::fs::read_to_string(&path) {
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
        cfg.excludes().map_err(|msg| Error::Config { path, msg })?;
        Ok(cfg)
    }

    /// The exclude patterns compiled into one matcher.
    pub fn excludes(&self) -> std::result::Result<globset::GlobSet, String> {
        let mut b = globset::GlobSetBuilder::new();
        for pat in &self.exclude {
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
}
