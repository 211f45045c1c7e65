//! `/etc/ld.so.preload`: its mere presence is a finding (an empty one too:
//! it may have been emptied to hide, or be about to be filled). Entries are
//! parsed as ld.so does (separated by blanks, tabs, newlines and `:`, `#`
//! comments to the end of the line), tokens expanded, and each target judged: does it exist, who
//! owns it, who can write its directory, does the baseline know it. The
//! file a patched loader reads instead (see `loader`) is audited the same
//! way.

use crate::sys::MetadataExt;
use std::path::{Path, PathBuf};

use super::tokens::{self, Expansion};
use super::{bytes, show, Audit, Context};
use crate::finding::{Finding, Kind, Severity};
use crate::scan;

pub const PRELOAD: &str = "/etc/ld.so.preload";
/// A preload list is tiny; more than this is hostile or broken.
const CAP: u64 = 1 << 20;

/// The entries of a preload file as ld.so splits them: `#` starts a
/// comment that runs to the end of the line; names are separated by blank,
/// tab, newline and `:`. A NUL byte is treated as one more separator (ld.so
/// may stop there or not, depending on where it falls; showing what follows
/// it is the safe side).
pub fn entries(data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for line in data.split(|&b| b == b'\n') {
        let line = match line.iter().position(|&b| b == b'#') {
            Some(p) => &line[..p],
            None => line,
        };
        out.extend(
            line.split(|b| matches!(b, b' ' | b'\t' | b':' | b'\0'))
                .filter(|e| !e.is_empty())
                .map(|e| e.to_vec()),
        );
    }
    out
}

pub fn audit(cx: &Context, a: &mut Audit) {
    audit_list(cx, Path::new(PRELOAD), None, a);
}

/// Audits `p` as a preload list: the list itself, then each entry's
/// target. `patched_loader` is the loader patched to read it instead of
/// [`PRELOAD`]: such a list is hidden on purpose (critical), and its
/// absence is already said by the loader's finding.
pub fn audit_list(cx: &Context, p: &Path, patched_loader: Option<&Path>, a: &mut Audit) {
    let at = bytes(p).to_vec();
    let data = match cx.root.read_file(p, CAP) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A symlink to nowhere is still something planted there.
            if cx
                .root
                .resolve_parent(p)
                .is_ok_and(|q| cx.root.lstat(&q).is_ok())
            {
                a.findings.push(Finding::audit(
                    Kind::Preload,
                    Severity::High,
                    at,
                    "preload list is a dangling symlink".into(),
                ));
            }
            return;
        }
        Err(e) => {
            a.findings.push(Finding::audit(
                Kind::Preload,
                Severity::High,
                at,
                format!("preload list exists but cannot be read: {e}"),
            ));
            return;
        }
    };
    let list = entries(&data);
    let via = patched_loader
        .map(|l| {
            format!(
                " (read instead of {PRELOAD} by the patched loader {})",
                l.display()
            )
        })
        .unwrap_or_default();
    let (sev, detail) = if list.is_empty() {
        (
            Severity::Medium,
            format!("preload list exists but names nothing (an empty list is unusual: emptied to hide, or ready to be filled){via}"),
        )
    } else {
        let names: Vec<String> = list.iter().map(|e| show(e)).collect();
        (
            Severity::High,
            format!(
                "preload list: every dynamically linked program loads {}{via}",
                names.join(", ")
            ),
        )
    };
    // A list only a patched loader reads is hidden on purpose.
    let sev = if patched_loader.is_some() {
        Severity::Critical
    } else {
        sev
    };
    a.findings
        .push(Finding::audit(Kind::Preload, sev, at, detail));
    let ex = Expansion::for_root(cx.root);
    for e in &list {
        let mut f = judge(cx, e, &ex);
        if patched_loader.is_some() {
            f.severity = Severity::Critical;
            f.detail.push_str(&format!("; listed in {}", p.display()));
        }
        a.findings.push(f);
    }
}

/// One preload entry's target.
fn judge(cx: &Context, entry: &[u8], ex: &Expansion) -> Finding {
    let exp = tokens::expand(entry, None, ex);
    let mut facts: Vec<String> = Vec::new();
    let mut sev = Severity::High;
    if exp.used_token {
        facts.push(format!("expands to {}", show(&exp.text)));
    }
    if exp.used_origin {
        facts.push("$ORIGIN makes it relative to each program's own directory".into());
        return Finding::audit(
            Kind::Preload,
            Severity::Critical,
            exp.text,
            format!("preload entry {}: {}", show(entry), facts.join("; ")),
        );
    }
    // A name without a slash is looked up like a DT_NEEDED name.
    let target: PathBuf = if exp.text.contains(&b'/') {
        super::path(&exp.text)
    } else {
        match search(cx, &exp.text) {
            Some(p) => {
                facts.push(format!("found in the search paths at {}", p.display()));
                p
            }
            None => {
                facts.push("a bare name not found in the search paths".into());
                sev = Severity::Critical;
                super::path(&exp.text)
            }
        }
    };
    if !target.is_absolute() {
        sev = Severity::Critical;
    } else {
        if tokens::is_tmp_like(bytes(&target)) {
            facts.push("in a world-writable or user directory".into());
            sev = Severity::Critical;
        }
        match cx.root.stat(&target) {
            Ok(m) => {
                if cx.trust.trusts(m.uid()) {
                    facts.push(format!("exists, owned by uid {}", m.uid()));
                } else {
                    facts.push(format!("exists, owned by untrusted uid {}", m.uid()));
                    sev = Severity::Critical;
                }
                if let Some(w) = cx.trust.writers(m.uid(), m.gid(), m.mode()) {
                    facts.push(format!("the file can be written by {w}"));
                    sev = Severity::Critical;
                }
            }
            Err(_) => facts.push("does not exist".into()),
        }
        let dir = target.parent().unwrap_or(Path::new("/"));
        match cx.trust.chain_writers(cx.root, dir) {
            Some((d, w)) => {
                facts.push(format!("{} can be written by {w}", d.display()));
                sev = Severity::Critical;
            }
            None => facts.push("its directory is writable only by trusted owners".into()),
        }
        if let Some(base) = cx.baseline {
            let canon = cx.root.resolve_lenient(&target);
            if scan::find(base, bytes(&canon)).is_some() {
                facts.push("known to the baseline".into());
            } else {
                facts.push("not in the baseline".into());
                sev = Severity::Critical;
            }
        }
    }
    Finding::audit(
        Kind::Preload,
        sev,
        bytes(&target).to_vec(),
        format!("preloaded into every program: {}", facts.join("; ")),
    )
}

/// The first search dir holding `name`, in walk order.
fn search(cx: &Context, name: &[u8]) -> Option<PathBuf> {
    let name = super::path(name);
    cx.sp
        .dirs
        .iter()
        .filter(|d| d.exists)
        .map(|d| d.path.join(&name))
        .find(|p| cx.root.resolve(p).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_as_ld_so_does() {
        assert_eq!(
            entries(b" /a.so:/b.so\t/c.so # /x.so\n\n::/d.so \0/e.so"),
            vec![
                b"/a.so".to_vec(),
                b"/b.so".to_vec(),
                b"/c.so".to_vec(),
                b"/d.so".to_vec(),
                b"/e.so".to_vec()
            ]
        );
        assert!(entries(b"\n").is_empty());
        assert!(entries(b"").is_empty());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(data: Vec<u8>) {
            for e in entries(&data) {
                assert!(!e.is_empty());
            }
        }
    }
}
