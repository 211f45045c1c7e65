//! One thin module per command: wiring and output only. Each runs the
//! pipeline ([`crate::pipeline`]) with the judges it needs and returns the
//! exit code of its findings or an error. What they share (printing a
//! snapshot's notes, the findings, the summary) lives here.

pub mod accept;
pub mod audit;
pub mod bench;
pub mod check;
pub mod export;
pub mod generate;
pub mod guard;
pub mod image;
pub mod imageops;
pub mod init;
pub mod keygen;
pub mod paths;
pub mod service;
pub mod update;
pub mod watch;

use crate::acknowledge::Ack;
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

/// Like [`emit`], with the acknowledged findings among them (sorted in),
/// each marked `"acknowledged": true` with who and when (JSON), or
/// `[acknowledged by WHO at TIME]` (human).
pub fn emit_with_acknowledged(
    s: &Config,
    findings: &[Finding],
    acknowledged: &[(Finding, Ack)],
    context: &serde_json::Map<String, serde_json::Value>,
) -> Result<()> {
    let mut items: Vec<output::Marked> = findings.iter().map(output::Marked::plain).collect();
    for (f, a) in acknowledged {
        let at = crate::baseline::verify::utc(a.at);
        let mut fields = serde_json::Map::new();
        fields.insert("acknowledged".into(), serde_json::Value::Bool(true));
        fields.insert("acknowledged_by".into(), a.by.clone().into());
        fields.insert("acknowledged_at".into(), at.clone().into());
        items.push(output::Marked {
            finding: f,
            fields,
            tag: Some(format!("acknowledged by {} at {at}", a.by)),
        });
    }
    items.sort_by(|a, b| output::order(a.finding, b.finding));
    let mut out = std::io::stdout().lock();
    output::write_marked(&mut out, &items, s.format, context)
        .map_err(|e| Error::io("write", "stdout", e))
}

/// With `--eventlog`, the findings of a one-shot command (`check`,
/// `audit`) to the Windows event log too, each with its JSON line
/// (`context` included) as the event data; a no-op otherwise.
pub fn to_eventlog(
    s: &Config,
    findings: &[Finding],
    context: &serde_json::Map<String, serde_json::Value>,
) -> Result<()> {
    if !s.eventlog {
        return Ok(());
    }
    #[cfg(windows)]
    {
        let log = output::eventlog::EventLog::open()
            .map_err(|e| Error::Internal(format!("open the event log: {e}")))?;
        let refused = findings
            .iter()
            .filter(|f| !log.report(f, &output::eventlog::data_with(f, context)))
            .count();
        if refused > 0 {
            messages::warning(&format!(
                "libwarden: warning: the event log refused {refused} of {} events",
                findings.len()
            ));
        }
    }
    #[cfg(not(windows))]
    let _ = (findings, context);
    Ok(())
}

/// "; 3 acknowledged (not shown: `check --all` shows them)" for a summary.
pub fn acknowledged_tail(n: usize, shown: bool) -> String {
    match (n, shown) {
        (0, _) => String::new(),
        (n, true) => format!("; {n} acknowledged (shown, setting no exit bit)"),
        (n, false) => format!("; {n} acknowledged, not shown (`check --all` shows them)"),
    }
}

/// Opens the `--syslog` targets of a one-shot command (a usage error for
/// one that does not parse), before anything is written.
pub fn open_syslogs(targets: &[String]) -> Result<Vec<output::syslog::Syslog>> {
    targets
        .iter()
        .map(|t| {
            output::syslog::Syslog::new(t).map_err(|e| Error::Usage(format!("--syslog {t}: {e}")))
        })
        .collect()
}

/// Sends `findings` to every syslog target, marked with `source` (what
/// `update` accepted, what `accept` acknowledged).
pub fn send_syslogs(
    logs: &mut [output::syslog::Syslog],
    findings: &[Finding],
    source: output::sink::Source,
) {
    let ctx = output::sink::Context {
        time: std::time::SystemTime::now(),
        source,
        gap: None,
        fields: None,
    };
    for log in logs.iter_mut() {
        for f in findings {
            log.send(f, &ctx);
        }
    }
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
