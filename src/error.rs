//! Typed errors for the library and their mapping to the exit codes of
//! CONTRACT.md. Every error names the path and the operation it concerns.

use std::io;
use std::path::{Path, PathBuf};

/// Exit codes shared by every command (CONTRACT.md).
pub mod code {
    pub const CLEAN: i32 = 0;
    pub const USAGE: i32 = 64;
    pub const BASELINE: i32 = 65;
    pub const NO_INPUT: i32 = 66;
    pub const INTERNAL: i32 = 70;
    pub const IO: i32 = 74;
    pub const INTERRUPTED: i32 = 130;
}

/// An error that stops a run. Per-file problems are not errors: they become
/// warnings or findings and the scan goes on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    #[error("bad config {path}: {msg}")]
    Config { path: PathBuf, msg: String },
    #[error("no baseline at {0}: run `libwarden init` first")]
    NoBaseline(PathBuf),
    #[error("baseline at {path} is corrupt: {msg}")]
    CorruptBaseline { path: PathBuf, msg: String },
    /// The baseline exists but this user may not read it: an I/O
    /// problem of the run (74), not a bad baseline (65), so that a script
    /// never answers it with `init --force`.
    #[error(
        "baseline at {path} cannot be read: {source}; run libwarden as a user allowed to read it"
    )]
    UnreadableBaseline {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A new generation could not be written (disk full, a store stuck in
    /// its flush, a failure inside sled); `msg` says which generation is
    /// still the live one.
    #[error("cannot write the baseline at {path}: {msg}")]
    StoreWrite { path: PathBuf, msg: String },
    #[error("baseline at {path} uses schema {found}, newer than this libwarden understands ({supported}): upgrade libwarden")]
    NewerSchema {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("baseline at {path} is locked by another running libwarden; wait for it to finish and try again")]
    Locked { path: PathBuf },
    #[error("a baseline already exists at {0}; use `libwarden update` to accept changes, or `init --force` to replace it")]
    BaselineExists(PathBuf),
    #[error("baseline rolled back: it is generation {found}, but generation {seen} (written at {seen_written}, seconds since the epoch) was seen before; an older copy of the baseline was restored")]
    Rollback {
        found: u64,
        seen: u64,
        seen_written: i64,
    },
    #[error("baseline at {path} refused: {msg}")]
    Signature { path: PathBuf, msg: String },
    #[error("{what} {path} does not exist")]
    NotFound { what: &'static str, path: PathBuf },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("interrupted")]
    Interrupted,
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The process exit code this error maps to.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::Config { .. } => code::USAGE,
            Error::NoBaseline(_)
            | Error::CorruptBaseline { .. }
            | Error::NewerSchema { .. }
            | Error::Locked { .. }
            | Error::BaselineExists(_)
            | Error::Rollback { .. }
            | Error::Signature { .. } => code::BASELINE,
            Error::NotFound { .. } => code::NO_INPUT,
            Error::Io { .. } | Error::UnreadableBaseline { .. } | Error::StoreWrite { .. } => {
                code::IO
            }
            Error::Interrupted => code::INTERRUPTED,
            Error::Internal(_) => code::INTERNAL,
        }
    }

    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// An I/O error of the baseline at `path` (`op` on `at`): a permission
    /// refusal is its own error ("cannot be read", the baseline may be
    /// fine), anything else plain I/O.
    pub fn baseline_io(
        op: &'static str,
        path: &Path,
        at: impl Into<PathBuf>,
        source: io::Error,
    ) -> Self {
        if source.kind() == io::ErrorKind::PermissionDenied {
            Error::UnreadableBaseline {
                path: path.to_path_buf(),
                source,
            }
        } else {
            Error::io(op, at, source)
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
