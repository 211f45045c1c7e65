//! Findings as Elastic Common Schema documents (`--format ecs`): the ECS
//! fields a SIEM indexes (`@timestamp`, `event.*`, `rule.name`, `file.*`,
//! `host.name`, `process.pid`), everything libwarden-specific under
//! `libwarden.*`. The field names and types come from the ECS reference
//! ([`ECS_VERSION`]); `tests/integration/data/ecs-fields-8.11.0.csv` is the list the
//! integration test holds every document to.

use std::time::SystemTime;

use serde_json::{json, Map, Value};

use crate::escape;
use crate::finding::{Finding, Kind, Severity};
use crate::record::{FileType, Record};
use crate::timefmt;

/// The ECS release whose field reference these documents follow.
pub const ECS_VERSION: &str = "8.11.0";

/// `event.category` and `event.type` of a kind (ECS allowed values).
///
/// Exhaustive on purpose: a new kind does not compile until it is mapped.
fn categorize(kind: Kind) -> (&'static [&'static str], &'static [&'static str]) {
    const FILE: &[&str] = &["file"];
    const CONFIG: &[&str] = &["configuration"];
    const PACKAGE: &[&str] = &["file", "package"];
    match kind {
        Kind::Added => (FILE, &["creation"]),
        Kind::Removed => (FILE, &["deletion"]),
        Kind::Content | Kind::Metadata | Kind::Type | Kind::Link => (FILE, &["change"]),
        Kind::Unverified => (FILE, &["info"]),
        Kind::Preload | Kind::LoaderConfig | Kind::Environment => (CONFIG, &["info"]),
        Kind::Writable | Kind::Rpath | Kind::Loader => (FILE, &["info"]),
        Kind::Process => (&["process"], &["info"]),
        Kind::MonitoringGap => (&["host"], &["info"]),
        Kind::PackageUpdate | Kind::ModifiedVsPackage => (PACKAGE, &["change"]),
        Kind::Unpackaged => (PACKAGE, &["info"]),
        Kind::Unsigned | Kind::UntrustedSigner => (FILE, &["info"]),
        Kind::SignatureInvalid => (&["file", "intrusion_detection"], &["info"]),
        Kind::Registry => (&["registry", "configuration"], &["change"]),
        Kind::SideLoading => (FILE, &["info"]),
        // A library being loaded (the guard), as ECS files library loads.
        Kind::Load => (&["library", "process"], &["start"]),
        // Kernel taint and modules: ECS files kernel modules as drivers.
        Kind::Kernel => (&["driver"], &["info"]),
    }
}

/// `event.severity` (ascending, 1 info to 5 critical) and `event.risk_score`
/// (0 to 100, the low/medium/high/critical defaults of Elastic's detection
/// rules: 21, 47, 73, 99).
fn severity_numbers(s: Severity) -> (u8, f64) {
    match s {
        Severity::Info => (1, 0.0),
        Severity::Low => (2, 21.0),
        Severity::Medium => (3, 47.0),
        Severity::High => (4, 73.0),
        Severity::Critical => (5, 99.0),
    }
}

/// `file.type`: ECS names `file`, `dir`, `symlink`; the rest keep
/// libwarden's name.
fn file_type(t: FileType) -> &'static str {
    t.name()
}

/// The pids of a process finding: `/proc/PID/...` in its path, then every
/// `pid N` of its detail (the audit names each process it groups that way).
pub fn pids(f: &Finding) -> Vec<u64> {
    let mut out = Vec::new();
    if f.kind != Kind::Process {
        return out;
    }
    if let Some(rest) = f.path.strip_prefix(b"/proc/") {
        let end = rest
            .iter()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(rest.len());
        if let Some(n) = std::str::from_utf8(&rest[..end])
            .ok()
            .and_then(|s| s.parse().ok())
        {
            out.push(n);
        }
    }
    let mut d = f.detail.as_str();
    while let Some(at) = d.find("pid ") {
        d = &d[at + 4..];
        let end = d.find(|c: char| !c.is_ascii_digit()).unwrap_or(d.len());
        if let Ok(n) = d[..end].parse::<u64>() {
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }
    out
}

/// The `file.*` object of a record.
fn file_fields(path: &[u8], r: Option<&Record>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("path".into(), json!(escape::for_json(path)));
    let name = crate::record::file_name(path);
    m.insert("name".into(), json!(escape::for_json(name)));
    let dir = &path[..path.len() - name.len()];
    let dir = match dir {
        b"/" => dir,
        d => d.strip_suffix(b"/").unwrap_or(d),
    };
    if !dir.is_empty() {
        m.insert("directory".into(), json!(escape::for_json(dir)));
    }
    if let Some(ext) = name
        .iter()
        .rposition(|&b| b == b'.')
        .filter(|&i| i > 0 && i + 1 < name.len())
        .map(|i| &name[i + 1..])
    {
        m.insert("extension".into(), json!(escape::for_json(ext)));
    }
    let Some(r) = r else {
        return m;
    };
    m.insert("type".into(), json!(file_type(r.ftype)));
    m.insert("size".into(), json!(r.size));
    m.insert("mode".into(), json!(format!("{:04o}", r.perm())));
    m.insert("uid".into(), json!(r.uid.to_string()));
    m.insert("gid".into(), json!(r.gid.to_string()));
    // A record of a container image (a tar member) has no inode and no
    // ctime: both are 0 there, never on a real file, and are left out
    // rather than shown as inode 0 changed in 1970. The member's mtime is
    // real and stays.
    if r.inode != 0 {
        m.insert("inode".into(), json!(r.inode.to_string()));
    }
    m.insert("mtime".into(), json!(stamp(r.mtime)));
    if r.ctime != (0, 0) {
        m.insert("ctime".into(), json!(stamp(r.ctime)));
    }
    if let Some(t) = &r.target {
        m.insert("target_path".into(), json!(escape::for_json(t)));
    }
    if let Some(h) = &r.sha256 {
        m.insert("hash".into(), json!({ "sha256": escape::hex(&h[..]) }));
    }
    m
}

/// A record timestamp (seconds, nanoseconds) as RFC 3339.
fn stamp((s, ns): (i64, u32)) -> String {
    let t = if s >= 0 {
        std::time::UNIX_EPOCH + std::time::Duration::new(s as u64, ns.min(999_999_999))
    } else {
        std::time::UNIX_EPOCH
    };
    timefmt::rfc3339(t)
}

/// One finding as an ECS document. `extra` (the baseline generation, the
/// watcher's source) goes under `libwarden.*` with the rest of libwarden's
/// own fields.
pub fn document(f: &Finding, time: SystemTime, host: &str, extra: &Map<String, Value>) -> Value {
    let (category, etype) = categorize(f.kind);
    let (sev, risk) = severity_numbers(f.severity);
    // An expected upgrade (info) or a gap in monitoring is worth indexing
    // but not alerting on.
    let kind = if f.severity == Severity::Info || f.kind == Kind::MonitoringGap {
        "event"
    } else {
        "alert"
    };
    let mut doc = Map::new();
    doc.insert("@timestamp".into(), json!(timefmt::rfc3339(time)));
    doc.insert("message".into(), json!(f.detail));
    doc.insert("ecs".into(), json!({ "version": ECS_VERSION }));
    doc.insert(
        "event".into(),
        json!({
            "kind": kind,
            "category": category,
            "type": etype,
            "action": f.kind.name(),
            "severity": sev,
            "risk_score": risk,
            "module": "libwarden",
            "dataset": "libwarden.finding",
            "reason": f.detail,
        }),
    );
    doc.insert(
        "rule".into(),
        json!({ "name": f.kind.name(), "ruleset": "libwarden" }),
    );
    doc.insert("host".into(), json!({ "name": host }));
    doc.insert(
        "agent".into(),
        json!({ "type": "libwarden", "version": env!("CARGO_PKG_VERSION") }),
    );
    let record = f.after.as_ref().or(f.before.as_ref());
    let pids = pids(f);
    if f.kind == Kind::Process {
        if let Some(first) = pids.first() {
            doc.insert("process".into(), json!({ "pid": first }));
        }
    } else if f.kind != Kind::MonitoringGap {
        doc.insert("file".into(), Value::Object(file_fields(&f.path, record)));
    }
    let mut own = Map::new();
    own.insert("kind".into(), json!(f.kind.name()));
    own.insert("severity".into(), json!(f.severity.name()));
    own.insert("path".into(), json!(escape::for_json(&f.path)));
    if escape::needs_hex(&f.path) {
        own.insert("path_hex".into(), json!(escape::hex(&f.path)));
    }
    if !f.changes.is_empty() {
        own.insert("changes".into(), json!(f.changes));
    }
    if pids.len() > 1 {
        own.insert("pids".into(), json!(pids));
    }
    for (side, r) in [("before", &f.before), ("after", &f.after)] {
        if let Some(r) = r {
            own.insert(side.into(), serde_json::to_value(r).unwrap_or(Value::Null));
        }
    }
    for (k, v) in extra {
        own.insert(k.clone(), v.clone());
    }
    doc.insert("libwarden".into(), Value::Object(own));
    Value::Object(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(kind: Kind, path: &str, detail: &str) -> Finding {
        Finding::audit(kind, Severity::High, path.into(), detail.into())
    }

    #[test]
    fn pids_come_from_the_proc_path_and_the_detail() {
        let f = finding(
            Kind::Process,
            "/proc/42/environ",
            "LD_PRELOAD=x in the environment of pid 42 (a), pid 7 (b)",
        );
        assert_eq!(pids(&f), vec![42, 7]);
        let f = finding(
            Kind::Process,
            "/tmp/evil.so",
            "mapped executable by pid 9 (sh)",
        );
        assert_eq!(pids(&f), vec![9]);
        assert!(pids(&finding(Kind::Added, "/proc/1/x", "pid 3")).is_empty());
    }

    #[test]
    fn file_fields_split_the_path() {
        let m = file_fields(b"/usr/lib/libz.so.1", None);
        assert_eq!(m["name"], "libz.so.1");
        assert_eq!(m["directory"], "/usr/lib");
        assert_eq!(m["extension"], "1");
        let m = file_fields(b"/evil", None);
        assert_eq!(m["directory"], "/");
        assert!(m.get("extension").is_none());
    }

    #[test]
    fn info_and_gaps_are_events_the_rest_alerts() {
        let doc = document(
            &finding(Kind::Added, "/x", "d"),
            std::time::UNIX_EPOCH,
            "h",
            &Map::new(),
        );
        assert_eq!(doc["event"]["kind"], "alert");
        assert_eq!(doc["event"]["type"][0], "creation");
        let mut f = finding(Kind::PackageUpdate, "/x", "d");
        f.severity = Severity::Info;
        let doc = document(&f, std::time::UNIX_EPOCH, "h", &Map::new());
        assert_eq!(doc["event"]["kind"], "event");
        assert_eq!(doc["@timestamp"], "1970-01-01T00:00:00.000Z");
    }
}
