//! Reporters: a human table (hostile names escaped), JSON Lines (one
//! stable object per finding, each with `time` and `host`) and ECS
//! documents ([`ecs`]). Findings go to stdout sorted by path; the summary
//! and warnings go to stderr. A closed pipe ends output quietly.

pub mod ecs;
pub mod eventlog;
pub mod journal;
pub mod messages;
pub mod progress;
pub mod sink;
pub mod syslog;

use std::io::{self, Write};
use std::sync::OnceLock;
use std::time::SystemTime;

use serde_json::{json, Map, Value};

use crate::escape;
use crate::finding::Finding;

/// Output format of findings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
    /// Elastic Common Schema documents, one per line.
    Ecs,
}

static HOST: OnceLock<String> = OnceLock::new();

/// What every finding line names as its `host`: this machine's name, or
/// the root judged (`--root`), set once when the configuration is resolved.
pub fn set_host(label: String) {
    let _ = HOST.set(label);
}

/// The `host` of finding lines ([`set_host`], else this machine's name).
pub fn host() -> &'static str {
    HOST.get_or_init(crate::sys::hostname)
}

/// Sorts findings by path (then kind) for deterministic output.
pub fn sort(findings: &mut [Finding]) {
    findings.sort_by(order);
}

/// The order of every report: by path, then kind.
pub fn order(a: &Finding, b: &Finding) -> std::cmp::Ordering {
    a.path.cmp(&b.path).then(a.kind.cmp(&b.kind))
}

/// One finding as a JSON object.
pub fn to_json(f: &Finding) -> Value {
    to_json_with(f, &Map::new())
}

/// One finding as a JSON object, with `extra` fields appended (for
/// example which baseline generation it was found against).
pub fn to_json_with(f: &Finding, extra: &Map<String, Value>) -> Value {
    let mut m = Map::new();
    m.insert("kind".into(), json!(f.kind.name()));
    m.insert("severity".into(), json!(f.severity.name()));
    m.insert("path".into(), json!(escape::for_json(&f.path)));
    if escape::needs_hex(&f.path) {
        m.insert("path_hex".into(), json!(escape::hex(&f.path)));
    }
    m.insert("detail".into(), json!(f.detail));
    if !f.changes.is_empty() {
        m.insert("changes".into(), json!(f.changes));
    }
    if let Some(b) = &f.before {
        m.insert(
            "before".into(),
            serde_json::to_value(b).unwrap_or(Value::Null),
        );
    }
    if let Some(a) = &f.after {
        m.insert(
            "after".into(),
            serde_json::to_value(a).unwrap_or(Value::Null),
        );
    }
    for (k, v) in extra {
        m.insert(k.clone(), v.clone());
    }
    Value::Object(m)
}

/// Writes findings to `out`. A broken pipe (`| head`) is not an error.
pub fn write_findings(out: &mut dyn Write, findings: &[Finding], format: Format) -> io::Result<()> {
    write_findings_with(out, findings, format, &Map::new())
}

/// [`write_findings`] with `extra` fields on every JSON object. Every line
/// carries `time` (now: when the findings were judged) and `host`.
pub fn write_findings_with(
    out: &mut dyn Write,
    findings: &[Finding],
    format: Format,
    extra: &Map<String, Value>,
) -> io::Result<()> {
    let items: Vec<Marked> = findings.iter().map(Marked::plain).collect();
    write_marked(out, &items, format, extra)
}

/// A finding with what marks it out from the others in one report (an
/// acknowledged one in `check --all`).
pub struct Marked<'a> {
    pub finding: &'a Finding,
    /// Added to its JSON object (under `libwarden.*` in ECS).
    pub fields: Map<String, Value>,
    /// Appended to its human line, in brackets.
    pub tag: Option<String>,
}

impl<'a> Marked<'a> {
    pub fn plain(f: &'a Finding) -> Marked<'a> {
        Marked {
            finding: f,
            fields: Map::new(),
            tag: None,
        }
    }
}

/// [`write_findings_with`] for findings each with its own marks (in the
/// order given: the caller sorts). A broken pipe is not an error.
pub fn write_marked(
    out: &mut dyn Write,
    items: &[Marked],
    format: Format,
    extra: &Map<String, Value>,
) -> io::Result<()> {
    let mut extra = extra.clone();
    let now = SystemTime::now();
    if format == Format::Json {
        extra.insert("time".into(), json!(crate::timefmt::rfc3339(now)));
        extra.insert("host".into(), json!(host()));
    }
    match write_items(out, items, format, &extra, now) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

fn write_items(
    out: &mut dyn Write,
    items: &[Marked],
    format: Format,
    extra: &Map<String, Value>,
    now: SystemTime,
) -> io::Result<()> {
    // Under systemd, each finding line carries its severity's priority.
    let journal = journal::connected(journal::Stream::Stdout);
    let prefix = |out: &mut dyn Write, f: &Finding| -> io::Result<()> {
        if journal {
            write!(out, "<{}>", journal::of(f.severity))?;
        }
        Ok(())
    };
    match format {
        Format::Ecs => {
            for m in items {
                prefix(out, m.finding)?;
                let doc = if m.fields.is_empty() {
                    ecs::document(m.finding, now, host(), extra)
                } else {
                    let mut own = extra.clone();
                    own.extend(m.fields.clone());
                    ecs::document(m.finding, now, host(), &own)
                };
                serde_json::to_writer(&mut *out, &doc)?;
                out.write_all(b"\n")?;
            }
        }
        Format::Json => {
            for m in items {
                prefix(out, m.finding)?;
                let mut v = to_json_with(m.finding, extra);
                if let Value::Object(o) = &mut v {
                    for (k, x) in &m.fields {
                        o.insert(k.clone(), x.clone());
                    }
                }
                serde_json::to_writer(&mut *out, &v)?;
                out.write_all(b"\n")?;
            }
        }
        Format::Human => {
            for m in items {
                let f = m.finding;
                prefix(out, f)?;
                write!(
                    out,
                    "{:<8} {:<13} {}  {}",
                    f.severity.name(),
                    f.kind.name(),
                    escape::for_terminal(&f.path),
                    escape::for_terminal(f.detail.as_bytes())
                )?;
                match &m.tag {
                    Some(t) => writeln!(out, "  [{}]", escape::for_terminal(t.as_bytes()))?,
                    None => writeln!(out)?,
                }
            }
        }
    }
    out.flush()
}

/// "1.23 GB" style sizes for summaries.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// "3 findings: 1 added, 2 content" for the summary line.
pub fn count_by_kind(findings: &[Finding]) -> String {
    if findings.is_empty() {
        return "no findings".into();
    }
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for f in findings {
        match counts.iter_mut().find(|(k, _)| *k == f.kind.name()) {
            Some((_, n)) => *n += 1,
            None => counts.push((f.kind.name(), 1)),
        }
    }
    let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let s = if findings.len() == 1 { "" } else { "s" };
    format!("{} finding{s}: {}", findings.len(), parts.join(", "))
}
