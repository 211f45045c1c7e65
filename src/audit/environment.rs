//! `LD_PRELOAD`, `LD_LIBRARY_PATH` and `LD_AUDIT` set for everyone: in
//! `/etc/environment`, `/etc/environment.d/*.conf`, `/etc/profile`,
//! `/etc/profile.d/*`, `/etc/bash.bashrc`, zsh's and csh's startup files,
//! `/etc/security/pam_env.conf` and the files `pam_env` is told to read in
//! `/etc/pam.d`, systemd's `DefaultEnvironment=` (`system.conf`,
//! `user.conf` and their `.d` dirs), crontab environment lines
//! (`/etc/crontab`, `/etc/cron.d`, the user crontabs), systemd units
//! (`Environment=`, and the files `EnvironmentFile=` names) under
//! `/etc/systemd/{system,user}` and `/usr/lib/systemd/{system,user}`, and
//! what sudo keeps or sets (see `sudoers`). An empty element of
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
    // zsh reads zshenv for every shell, scripts included.
    "/etc/zsh/zshenv",
    "/etc/zshenv",
    "/etc/zsh/zprofile",
    "/etc/zsh/zshrc",
    "/etc/csh.cshrc",
    "/etc/csh.login",
    "/etc/systemd/system.conf",
    "/etc/systemd/user.conf",
    "/usr/lib/systemd/system.conf",
    "/usr/lib/systemd/user.conf",
    "/etc/crontab",
];
/// Globs of more environment files: drop-ins of systemd's manager
/// configuration (`DefaultEnvironment=`), crontabs.
const ENV_GLOBS: &[&str] = &[
    "/etc/profile.d/*",
    // systemd's environment generators read these for user sessions.
    "/etc/environment.d/*.conf",
    "/etc/systemd/system.conf.d/*.conf",
    "/etc/systemd/user.conf.d/*.conf",
    "/usr/lib/systemd/system.conf.d/*.conf",
    "/usr/lib/systemd/user.conf.d/*.conf",
    "/etc/cron.d/*",
    "/var/spool/cron/crontabs/*",
    "/var/spool/cron/*",
];
const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/usr/lib/systemd/system",
    "/etc/systemd/user",
    "/usr/lib/systemd/user",
];
/// At most this many files of one glob are read.
const MAX_GLOB: usize = 4096;

/// One assignment of a loader variable found in a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub var: &'static str,
    pub value: Vec<u8>,
}

/// The loader variables a line assigns, in any of the syntaxes that set
/// them: `VAR=value`, `export VAR="value"`, systemd's
/// `Environment="VAR=value" ...`, pam_env's `VAR DEFAULT=value` /
/// `OVERRIDE=value`, csh's `setenv VAR value`. A reference (`$VAR`), a test or `unset VAR` is not an
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
            let setenv = line[..at].trim_ascii_end().ends_with(b"setenv")
                && line[..at].len() > line[..at].trim_ascii_end().len();
            let value_start = if let Some(r) = rest.strip_prefix(b"=") {
                r
            } else if setenv && rest.first().is_some_and(|b| b.is_ascii_whitespace()) {
                // csh: setenv VAR value
                rest.trim_ascii_start()
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
    for g in ENV_GLOBS {
        files.extend(cx.root.glob(Path::new(g)).into_iter().take(MAX_GLOB));
    }
    let mut pam = pam_env_files(cx);
    files.append(&mut pam);
    let mut read = BTreeSet::new();
    for f in &files {
        // One file, however many ways it is named.
        if read.insert(cx.root.resolve_lenient(f)) {
            scan_file(cx, f, None, a);
        }
    }
    super::sudoers::audit(cx, a, &mut |cx, file, a| {
        if read.insert(cx.root.resolve_lenient(file)) {
            scan_file(cx, file, None, a);
        }
    });
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

/// The files `pam_env` is told to read (`conffile=`, `envfile=`) by the
/// PAM configuration in `/etc/pam.d`.
fn pam_env_files(cx: &Context) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for f in cx
        .root
        .glob(Path::new("/etc/pam.d/*"))
        .into_iter()
        .take(MAX_GLOB)
    {
        let Ok(data) = cx.root.read_file(&f, CAP) else {
            continue;
        };
        out.extend(pam_env_args(&data).into_iter().map(|p| super::path(&p)));
    }
    out
}

/// The absolute paths in `conffile=`/`envfile=` arguments of `pam_env.so`
/// lines of one PAM file.
pub fn pam_env_args(data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for line in data.split(|&b| b == b'\n') {
        let t = line.trim_ascii_start();
        if t.starts_with(b"#") {
            continue;
        }
        let mut words = t
            .split(|b| b.is_ascii_whitespace())
            .filter(|w| !w.is_empty());
        if !words.any(|w| w.ends_with(b"pam_env.so") || w == b"pam_env") {
            continue;
        }
        for w in words {
            for key in [&b"conffile="[..], b"envfile="] {
                if let Some(p) = w.strip_prefix(key).filter(|p| p.starts_with(b"/")) {
                    out.push(p.to_vec());
                }
            }
        }
    }
    out
}

/// Regular unit files and drop-ins below `dir` (two levels; symlinks are
/// skipped: they point at units read elsewhere, or at /dev/null).
fn unit_files(cx: &Context, dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let list = |d: &Path| -> Vec<(PathBuf, crate::rootfs::FileKind)> {
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

pub(crate) fn scan_file(cx: &Context, file: &Path, used_by: Option<&Path>, a: &mut Audit) {
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
        assert_eq!(
            vals("  setenv LD_PRELOAD /tmp/x.so"),
            p("LD_PRELOAD", "/tmp/x.so")
        );
        assert_eq!(
            vals("DefaultEnvironment=\"LD_AUDIT=/a.so\" X=1"),
            p("LD_AUDIT", "/a.so")
        );
        assert!(vals("setenv LD_PRELOADX /x").is_empty());
        assert!(vals("echo $LD_PRELOAD").is_empty());
    }

    #[test]
    fn pam_env_conffiles() {
        let pam = b"# auth required pam_env.so conffile=/no\nsession  required pam_env.so readenv=1 envfile=/etc/default/locale\nauth optional pam_env.so conffile=/etc/security/x.conf user_readenv=0\nauth required pam_unix.so conffile=/not/this\n";
        assert_eq!(
            pam_env_args(pam),
            vec![
                b"/etc/default/locale".to_vec(),
                b"/etc/security/x.conf".to_vec()
            ]
        );
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
