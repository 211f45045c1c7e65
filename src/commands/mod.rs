//! One thin module per command: wiring and output only. Each runs the
//! pipeline ([`crate::pipeline`]) with the judges it needs and returns the
//! exit code of its findings or an error. What they share (printing a
//! snapshot's notes, the findings, the summary) lives here.

pub mod audit;
pub mod bench;
pub mod check;
pub mod export;
pub mod generate;
pub mod init;
pub mod keygen;
pub mod paths;
pub mod update;
pub mod watch;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::finding::Finding;
use crate::output::{self, messages};
use crate::pipeline::Snapshot;

/// A snapshot's notes, then its per-path warnings, on stderr.
pub fn show(snap: &Snapshot) {
    messages::notes(&snap.notes);
    messages::path_warnings(&snap.scan.warnings);
}

/// Findings on stdout in the configured format; `context` is added to
/// every JSON line.
pub fn emit(
    s: &Config,
    findings: &[Finding],
    context: &serde_json::Map<String, serde_json::Value>,
) -> Result<()> {
    let mut out = std::io::stdout().lock();
    output::write_findings_with(&mut out, findings, s.format, context)
        .map_err(|e| Error::io("write", "stdout", e))
}

/// When the command started (set by [`crate::run`]), for the summary's
/// time: the whole command's, baseline load, judges and commit included.
static STARTED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// Marks the start of the command (the first call wins).
pub fn mark_start() {
    let _ = STARTED.set(std::time::Instant::now());
}

/// The one-line summary on stderr: the time is the whole command's (the
/// scan's own in parentheses).
pub fn summary(verb: &str, snap: &Snapshot, tail: &str) {
    let st = &snap.scan.stats;
    let warnings = snap.scan.warnings.len();
    let total = STARTED.get().map_or(st.elapsed, |t| t.elapsed());
    messages::status(&format!(
        "libwarden {verb}: {} entries, {} files ({}), {} hashed ({}) in {:.2} s (scan {:.2} s); {tail}; {} warning{}",
        st.entries,
        st.files,
        output::human_bytes(st.bytes),
        st.hashed_files,
        output::human_bytes(st.hashed_bytes),
        total.as_secs_f64(),
        st.elapsed.as_secs_f64(),
        warnings,
        if warnings == 1 { "" } else { "s" },
    ));
}
