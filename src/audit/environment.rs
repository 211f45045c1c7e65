//! `LD_PRELOAD`, `LD_LIBRARY_PATH` and `LD_AUDIT` set for everyone: in
//! `/etc/environment`, `/etc/environment.d/*.conf`, `/etc/profile`,
//! `/etc/profile.d/*`,
//! `/etc/bash.bashrc`, `/etc/security/pam_env.conf`, and systemd units
//! (`Environment=`, and the files `EnvironmentFile=` names) under
//! `/etc/systemd/system` and `/usr/lib/systemd/system`. An empty element of
//! a path list (`::`, a leading or trailing `:`) means the current
//! directory and is a finding of its own. Units under `/usr/lib` are
//! records of the scan: their environment lines come from the facts the
//! inspection kept, so an unchanged `check` does not open them again.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{bytes, show, Audit, Context};
use crate::finding::{Finding, Kind, Severity};

/// The loader variables looked for.
pub const VARS: &[&str] = &["LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT"];
const CAP: u64 = 1 << 20;
/// At most this many unit files are read per dir.
const MAX_UNITS: usize = 20_000;

const ENV_FILES: &[&str] = &[
    "/etc/environment",
    "/etc/profile",
    "/etc/bash.bashrc",
    "/etc/security/pam_env.conf",
];
const UNIT_DIRS: &[&str] = &["/etc/systemd/system", "/usr/lib/systemd/system"];

/// One assignment of a loader variable found in a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub var: &'static str,
    pub value: Vec<u8>,
}

/// The loader variables a line assigns, in any of the syntaxes that set
/// them: `VAR=value`, `export VAR="value"`, systemd's
/// `Environment="VAR=value" ...`, pam_env's `VAR DEFAULT=value` /
/// `OVERRIDE=value`. A reference (`$VAR`), a test or `unset VAR` is not an
/// assignment. Lines starting with `#` are comments.
pub fn assignments(line: &[u8]) -> Vec<Assignment> {
    let mut out = Vec::new();
    let t = line.trim_ascii_start();
    if t.starts_with(b"#") || t.starts_with(b";") {
        return out;
    }
    for var in VARS {
        let v = var.as_bytes();
        let mut from = 0;
        while let Some(rel) = find(&line[from..], v) {
            let at = from + rel;
            from = at + v.len();
            let before = at.checked_sub(1).and_then(|i| line.get(i)).copied();
            if before.is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'$' | b'{'))
            {
                continue;
            }
            let rest = &line[at + v.len()..];
            let value_start = if let Some(r) = rest.strip_prefix(b"=") {
                r
            } else {
                // pam_env.conf: VAR [DEFAULT=value] [OVERRIDE=value]
                let r = rest.trim_ascii_start();
                if r.len() == rest.len() {
                    continue;
                }
                match r
                    .strip_prefix(b"DEFAULT=")
                    .or_else(|| r.strip_prefix(b"OVERRIDE="))
                {
                    Some(x) => x,
                    None => continue,
                }
            };
            out.push(Assignment {
                var,
                value: value_of(value_start),
            });
        }
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The value at the start of `s`: quoted, or up to a blank, `;` or `"`.
fn value_of(s: &[u8]) -> Vec<u8> {
    match s.first() {
        Some(&q @ (b'"' | b'\'')) => {
            let r = &s[1..];
            let end = r.iter().position(|&b| b == q).unwrap_or(r.len());
            r[..end].to_vec()
        }
        _ => {
            let end = s
                .iter()
                .position(|b| matches!(b, b' ' | b'\t' | b';' | b'"' | b'\'' | b'\r' | b'&' | b'|'))
                .unwrap_or(s.len());
            s[..end].to_vec()
        }
    }
}

/// True when a `:`-separated path list has an empty element, or an element
/// that is only a reference to the variable itself (empty when unset).
pub fn has_empty_element(value: &[u8], var: &str) -> bool {
    if value.is_empty() {
        return false;
    }
    let own = [format!("${var}"), format!("${{{var}}}")];
    // glibc splits LD_LIBRARY_PATH at `:` and `;`.
    value
        .split(|&b| b == b':' || b == b';')
        .any(|e| e.is_empty() || own.iter().any(|o| e == o.as_bytes()))
}

pub fn audit(cx: &Context, a: &mut Audit) {
    let mut files: Vec<PathBuf> = ENV_FILES.iter().map(PathBuf::from).collect();
    files.extend(cx.root.glob(Path::new("/etc/profile.d/*")));
    // systemd's environment generators read these for user sessions.
    files.extend(cx.root.glob(Path::new("/etc/environment.d/*.conf")));
    for f in &files {
        scan_file(cx, f, None, a);
    }
    let mut seen = BTreeSet::new();
    for d in UNIT_DIRS {
        let Ok(dir) = cx.root.resolve(Path::new(d)) else {
            continue;
        };
        if !seen.insert(dir.clone()) {
            continue;
        }
        for unit in unit_files(cx, &dir) {
            scan_unit(cx, &unit, a);
        }
    }
}

/// Regular unit files and drop-ins below `dir` (two levels; symlinks are
/// skipped: they point at units read elsewhere, or at /dev/null).
fn unit_files(cx: &Context, dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let list = |d: &Path| -> Vec<(PathBuf, std::fs::FileType)> {
        let Ok(rd) = cx.root.list_entries(d) else {
            return Vec::new();
        };
        let mut v: Vec<_> = rd
            .into_iter()
            .take(MAX_UNITS)
            .map(|(n, t)| (d.join(n), t))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    for (p, t) in list(dir) {
        if t.is_file() {
            out.push(p);
        } else if t.is_dir() {
            out.extend(
                list(&p)
                    .into_iter()
                    .filter(|(_, t)| t.is_file())
                    .map(|(q, _)| q),
            );
        }
    }
    out
}

/// A unit's environment lines: from its record's facts when the scan
/// inspected it (a unit under `/usr/lib`: never opened again), else read.
fn unit_lines(cx: &Context, unit: &Path) -> Option<Vec<(usize, Vec<u8>)>> {
    let fact = crate::scan::find(cx.records, bytes(unit))
        .and_then(|r| r.facts.as_ref())
        .and_then(|f| f.unit.as_ref())
        .filter(|u| u.complete);
    if let Some(u) = fact {
        return Some(
            u.lines
                .iter()
                .map(|(n, l)| (*n as usize, l.clone()))
                .collect(),
        );
    }
    let data = cx.root.read_file(unit, CAP).ok()?;
    Some(
        data.split(|&b| b == b'\n')
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim_ascii().to_vec()))
            .collect(),
    )
}

fn scan_unit(cx: &Context, unit: &Path, a: &mut Audit) {
    let Some(lines) = unit_lines(cx, unit) else {
        return;
    };
    for (no, t) in lines {
        if let Some(rest) = t.strip_prefix(b"Environment=") {
            report(cx, unit, no, rest, None, a);
        } else if let Some(rest) = t.strip_prefix(b"EnvironmentFile=") {
            for f in rest.split(|b| b.is_ascii_whitespace()) {
                let f = f.strip_prefix(b"-").unwrap_or(f);
                if f.starts_with(b"/") {
                    scan_file(cx, &super::path(f), Some(unit), a);
                }
            }
        }
    }
}

fn scan_file(cx: &Context, file: &Path, used_by: Option<&Path>, a: &mut Audit) {
    let Ok(data) = cx.root.read_file(file, CAP) else {
        return;
    };
    for (i, line) in data.split(|&b| b == b'\n').enumerate() {
        report(cx, file, i + 1, line, used_by, a);
    }
}

fn report(
    _cx: &Context,
    file: &Path,
    line: usize,
    text: &[u8],
    used_by: Option<&Path>,
    a: &mut Audit,
) {
    let via = used_by
        .map(|u| format!(" (EnvironmentFile of {})", u.display()))
        .unwrap_or_default();
    for asg in assignments(text) {
        let sev = if asg.var == "LD_LIBRARY_PATH" {
            Severity::Medium
        } else {
            Severity::High
        };
        a.findings.push(Finding::audit(
            Kind::Environment,
            sev,
            bytes(file).to_vec(),
            format!(
                "line {line}: {}={} set for every program started this way{via}",
                asg.var,
                show(&asg.value)
            ),
        ));
        if asg.var == "LD_LIBRARY_PATH" && has_empty_element(&asg.value, asg.var) {
            a.findings.push(Finding::audit(
                Kind::Environment,
                Severity::High,
                bytes(file).to_vec(),
                format!(
                    "line {line}: {} has an empty element (or one empty when unset): the current directory is searched{via}",
                    asg.var
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(line: &str) -> Vec<(String, String)> {
        assignments(line.as_bytes())
            .into_iter()
            .map(|a| (a.var.to_string(), String::from_utf8(a.value).unwrap()))
            .collect()
    }

    #[test]
    fn assignment_syntaxes() {
        let p = |v: &str, x: &str| vec![(v.to_string(), x.to_string())];
        assert_eq!(vals("LD_PRELOAD=/tmp/x.so"), p("LD_PRELOAD", "/tmp/x.so"));
        assert_eq!(
            vals("export LD_PRELOAD=\"/a b.so\""),
            p("LD_PRELOAD", "/a b.so")
        );
        assert_eq!(
            vals("Environment=\"LD_LIBRARY_PATH=/opt/lib:\" FOO=1"),
            p("LD_LIBRARY_PATH", "/opt/lib:")
        );
        assert_eq!(vals("LD_AUDIT DEFAULT=/x.so"), p("LD_AUDIT", "/x.so"));
        assert!(vals("# LD_PRELOAD=/x").is_empty());
        assert!(vals("unset LD_PRELOAD").is_empty());
        assert!(vals("[ -n \"$LD_PRELOAD\" ] && echo").is_empty());
        assert!(vals("MY_LD_PRELOAD=/x").is_empty());
        assert!(vals("x=${LD_PRELOAD}").is_empty());
    }

    #[test]
    fn empty_elements() {
        assert!(has_empty_element(b"/a::/b", "LD_LIBRARY_PATH"));
        assert!(has_empty_element(b":/a", "LD_LIBRARY_PATH"));
        assert!(has_empty_element(b"/a:", "LD_LIBRARY_PATH"));
        assert!(has_empty_element(b"/a;;/b", "LD_LIBRARY_PATH"));
        assert!(has_empty_element(b"$LD_LIBRARY_PATH:/a", "LD_LIBRARY_PATH"));
        assert!(!has_empty_element(b"/a:/b", "LD_LIBRARY_PATH"));
        assert!(!has_empty_element(b"", "LD_LIBRARY_PATH"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(line: Vec<u8>) {
            for a in assignments(&line) {
                let _ = has_empty_element(&a.value, a.var);
            }
        }
    }
}
