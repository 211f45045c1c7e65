//! What sudo lets through to the commands it runs as root. sudo strips the
//! loader's variables by default; `env_keep` (or `env_check`) naming one,
//! `env_delete -=` taking one off the list, `setenv` or a `SETENV:` tag
//! (variables from the command line pass unchecked) hand the caller's
//! `LD_PRELOAD` to a root process. `env_file`/`restricted_env_file` name a
//! file whose assignments sudo applies: it is scanned like the other
//! environment files. `/etc/sudoers`, its `@include`/`#include` files and
//! `@includedir`/`#includedir` dirs (files without a `.` or a trailing
//! `~`, as sudo reads them) are read through the root, bounded.

use std::path::{Path, PathBuf};

use super::environment::VARS;
use super::{bytes, show, Audit, Context};
use crate::finding::{Finding, Kind, Severity};

pub const SUDOERS: &str = "/etc/sudoers";
const CAP: u64 = 1 << 20;
/// At most this many sudoers files, nested at most this deep.
const MAX_FILES: usize = 256;
const MAX_DEPTH: usize = 8;

/// One thing a sudoers line says about the loader's variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rule {
    /// `env_keep`/`env_check` (`=`/`+=`) naming a loader variable (or a
    /// wildcard covering one).
    Keeps { param: &'static str, entry: Vec<u8> },
    /// `env_delete -=` a loader variable.
    Undeletes(Vec<u8>),
    /// `Defaults setenv`.
    Setenv,
    /// A `SETENV:` tag in a user specification.
    SetenvTag,
    /// `env_file`/`restricted_env_file`: a file sudo reads variables from.
    EnvFile(Vec<u8>),
}

/// The lines of a sudoers file as sudo sees them: `\` at the end of a line
/// continues it; each with its first physical line number.
fn logical_lines(data: &[u8]) -> Vec<(usize, Vec<u8>)> {
    let mut out: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut cur: Option<(usize, Vec<u8>)> = None;
    for (i, line) in data.split(|&b| b == b'\n').enumerate() {
        let (cont, body) = match line.strip_suffix(b"\\") {
            Some(b) => (true, b),
            None => (false, line),
        };
        let c = cur.get_or_insert_with(|| (i + 1, Vec::new()));
        c.1.extend_from_slice(body);
        if !cont {
            out.extend(cur.take());
        }
    }
    out.extend(cur);
    out
}

/// Cuts a `#` comment: one that starts the line or follows a blank,
/// outside quotes (`#1000` as a uid follows no blank in a user list).
fn uncomment(line: &[u8]) -> &[u8] {
    let mut quoted = false;
    for (i, &b) in line.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            // `#1000` right after a blank is a uid in a user list, not a
            // comment.
            b'#' if !quoted
                && (i == 0 || line[i - 1].is_ascii_whitespace())
                && !line.get(i + 1).is_some_and(u8::is_ascii_digit) =>
            {
                return &line[..i];
            }
            _ => {}
        }
    }
    line
}

/// Splits at commas outside quotes.
fn params(s: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let (mut quoted, mut start) = (false, 0);
    for (i, &b) in s.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// Whether an `env_keep`/`env_check`/`env_delete` entry covers a loader
/// variable: `LD_PRELOAD`, `LD_*`, `*`.
fn covers_loader_var(entry: &[u8]) -> bool {
    let name = entry.split(|&b| b == b'=').next().unwrap_or(entry);
    match name.iter().position(|&b| b == b'*') {
        Some(star) => VARS.iter().any(|v| v.as_bytes().starts_with(&name[..star])),
        None => VARS.iter().any(|v| v.as_bytes() == name) || name.starts_with(b"LD_"),
    }
}

/// The rules of one logical line.
pub fn rules(line: &[u8]) -> Vec<Rule> {
    let mut out = Vec::new();
    let t = uncomment(line).trim_ascii();
    let Some(rest) = t.strip_prefix(b"Defaults") else {
        // A user specification: `user host = (runas) SETENV: /cmd`.
        if t.windows(7).any(|w| w == b"SETENV:") && !t.starts_with(b"#") && !t.starts_with(b"@") {
            out.push(Rule::SetenvTag);
        }
        return out;
    };
    // `Defaults:user`, `Defaults@host`, `Defaults>runas`, `Defaults!cmd`:
    // the binding runs to the first blank.
    let rest = match rest.first() {
        Some(b':' | b'@' | b'>' | b'!') => {
            let end = rest
                .iter()
                .position(|b| b.is_ascii_whitespace())
                .unwrap_or(rest.len());
            &rest[end..]
        }
        Some(b) if b.is_ascii_whitespace() => rest,
        _ => return out,
    };
    for p in params(rest) {
        let p = p.trim_ascii();
        let name_end = p
            .iter()
            .position(|&b| matches!(b, b'=' | b'+' | b'-') || b.is_ascii_whitespace())
            .unwrap_or(p.len());
        let name = &p[..name_end];
        let after = p[name_end..].trim_ascii_start();
        let (op, value) = if let Some(v) = after.strip_prefix(b"+=") {
            ("+=", v)
        } else if let Some(v) = after.strip_prefix(b"-=") {
            ("-=", v)
        } else if let Some(v) = after.strip_prefix(b"=") {
            ("=", v)
        } else {
            ("", after)
        };
        let value = value.trim_ascii();
        let value = value
            .strip_prefix(b"\"")
            .and_then(|v| v.strip_suffix(b"\""))
            .unwrap_or(value);
        let entries = || {
            value
                .split(|b| b.is_ascii_whitespace())
                .filter(|e| !e.is_empty())
        };
        match (name, op) {
            (b"env_keep" | b"env_check", "=" | "+=") => {
                let param = if name == b"env_keep" {
                    "env_keep"
                } else {
                    "env_check"
                };
                out.extend(
                    entries()
                        .filter(|e| covers_loader_var(e))
                        .map(|e| Rule::Keeps {
                            param,
                            entry: e.to_vec(),
                        }),
                );
            }
            (b"env_delete", "-=") => out.extend(
                entries()
                    .filter(|e| covers_loader_var(e))
                    .map(|e| Rule::Undeletes(e.to_vec())),
            ),
            (b"setenv", "") => out.push(Rule::Setenv),
            (b"env_file" | b"restricted_env_file", "=") if value.starts_with(b"/") => {
                out.push(Rule::EnvFile(value.to_vec()))
            }
            _ => {}
        }
    }
    out
}

/// An include line's target: `@include x`, `#include x`, and the
/// `includedir` forms (true). Relative paths are relative to the including
/// file's directory.
fn include(line: &[u8], file: &Path) -> Option<(PathBuf, bool)> {
    let t = line.trim_ascii();
    let (rest, dir) = [
        (&b"@includedir"[..], true),
        (b"#includedir", true),
        (b"@include", false),
        (b"#include", false),
    ]
    .iter()
    .find_map(|(kw, dir)| {
        t.strip_prefix(*kw)
            .filter(|r| r.first().is_some_and(u8::is_ascii_whitespace))
            .map(|r| (r.trim_ascii(), *dir))
    })?;
    let rest = rest
        .strip_prefix(b"\"")
        .and_then(|r| r.strip_suffix(b"\""))
        .unwrap_or(rest);
    if rest.is_empty() {
        return None;
    }
    let p = super::path(rest);
    let p = if p.is_absolute() {
        p
    } else {
        file.parent().unwrap_or(Path::new("/etc")).join(p)
    };
    Some((p, dir))
}

/// Reads sudoers and its includes; `env_file` scans an environment file
/// the way the environment audit does.
pub fn audit(cx: &Context, a: &mut Audit, env_file: &mut dyn FnMut(&Context, &Path, &mut Audit)) {
    let mut queue: Vec<(PathBuf, usize)> = vec![(PathBuf::from(SUDOERS), 0)];
    let mut seen: Vec<PathBuf> = Vec::new();
    while let Some((file, depth)) = queue.pop() {
        let id = cx.root.resolve_lenient(&file);
        if seen.contains(&id) || seen.len() >= MAX_FILES || depth > MAX_DEPTH {
            continue;
        }
        seen.push(id);
        let Ok(data) = cx.root.read_file(&file, CAP) else {
            continue;
        };
        let mut found: Vec<(PathBuf, usize)> = Vec::new();
        for (no, line) in logical_lines(&data) {
            if let Some((p, is_dir)) = include(&line, &file) {
                if is_dir {
                    let mut names: Vec<_> = cx
                        .root
                        .list_entries(&p)
                        .map(|v| v.into_iter().take(MAX_FILES).map(|(n, _)| n).collect())
                        .unwrap_or_default();
                    names.sort();
                    for n in names {
                        let nb = bytes(Path::new(&n));
                        if !nb.contains(&b'.') && !nb.ends_with(b"~") {
                            found.push((p.join(n), depth + 1));
                        }
                    }
                } else {
                    found.push((p, depth + 1));
                }
                continue;
            }
            for r in rules(&line) {
                report(cx, &file, no, r, a, env_file);
            }
        }
        // Read in file order (the queue pops from the end).
        queue.extend(found.into_iter().rev());
    }
}

fn report(
    cx: &Context,
    file: &Path,
    line: usize,
    r: Rule,
    a: &mut Audit,
    env_file: &mut dyn FnMut(&Context, &Path, &mut Audit),
) {
    let (sev, detail) = match r {
        Rule::Keeps { param, entry } => (
            if param == "env_keep" {
                Severity::High
            } else {
                Severity::Medium
            },
            format!(
                "line {line}: {param} lets {} through from the caller's environment to the commands sudo runs as root",
                show(&entry)
            ),
        ),
        Rule::Undeletes(entry) => (
            Severity::High,
            format!(
                "line {line}: env_delete -= {} takes it off the variables sudo strips",
                show(&entry)
            ),
        ),
        Rule::Setenv => (
            Severity::Medium,
            format!("line {line}: setenv: variables given on the sudo command line (LD_PRELOAD too) pass unchecked"),
        ),
        Rule::SetenvTag => (
            Severity::Medium,
            format!("line {line}: SETENV tag: variables given on the sudo command line (LD_PRELOAD too) pass unchecked for these commands"),
        ),
        Rule::EnvFile(p) => {
            env_file(cx, &super::path(&p), a);
            return;
        }
    };
    a.findings.push(Finding::audit(
        Kind::Environment,
        sev,
        bytes(file).to_vec(),
        detail,
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_of_defaults_lines() {
        let keep = |param, e: &str| Rule::Keeps {
            param,
            entry: e.as_bytes().to_vec(),
        };
        assert_eq!(
            rules(b"Defaults env_keep += \"LD_PRELOAD HOME\""),
            vec![keep("env_keep", "LD_PRELOAD")]
        );
        assert_eq!(
            rules(b"Defaults:alice env_check=\"LD_*\", !lecture"),
            vec![keep("env_check", "LD_*")]
        );
        assert_eq!(
            rules(b"Defaults\tenv_delete -= LD_AUDIT"),
            vec![Rule::Undeletes(b"LD_AUDIT".to_vec())]
        );
        assert_eq!(rules(b"Defaults setenv"), vec![Rule::Setenv]);
        assert_eq!(
            rules(b"Defaults env_file=/etc/sudoenv"),
            vec![Rule::EnvFile(b"/etc/sudoenv".to_vec())]
        );
        assert_eq!(
            rules(b"bob ALL=(ALL) SETENV: /usr/bin/make"),
            vec![Rule::SetenvTag]
        );
        // Stock Debian lines say nothing.
        for l in [
            "Defaults\tenv_reset",
            "Defaults\tmail_badpass",
            "Defaults\tsecure_path=\"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"",
            "Defaults\tuse_pty",
            "root\tALL=(ALL:ALL) ALL",
            "%sudo\tALL=(ALL:ALL) ALL",
            "# Defaults env_keep += \"LD_PRELOAD\"",
            "Defaults env_keep += \"LANG LC_*\"",
            "Defaults !setenv",
            "Defaults env_delete += LD_PRELOAD",
            "Defaultsx env_keep=LD_PRELOAD",
        ] {
            assert!(rules(l.as_bytes()).is_empty(), "{l}");
        }
        // A comment after the parameters.
        assert_eq!(rules(b"Defaults setenv # for make"), vec![Rule::Setenv]);
    }

    #[test]
    fn continued_lines_and_includes() {
        let l = logical_lines(b"Defaults env_keep += \"HOME \\\nLD_PRELOAD\"\nx\n");
        assert_eq!(l[0].0, 1);
        assert_eq!(rules(&l[0].1).len(), 1);
        assert_eq!(l[1], (3, b"x".to_vec()));
        let f = Path::new("/etc/sudoers");
        assert_eq!(
            include(b"@includedir /etc/sudoers.d", f),
            Some((PathBuf::from("/etc/sudoers.d"), true))
        );
        assert_eq!(
            include(b"#include local", f),
            Some((PathBuf::from("/etc/local"), false))
        );
        assert_eq!(include(b"#includes x", f), None);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(data: Vec<u8>) {
            for (_, l) in logical_lines(&data) {
                let _ = rules(&l);
                let _ = include(&l, Path::new("/etc/sudoers"));
            }
        }
    }
}
