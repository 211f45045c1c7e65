//! `DT_RPATH` and `DT_RUNPATH` of every ELF object in the search paths and
//! the executable dirs. An entry is a finding when it is empty or relative
//! (the current directory of whoever runs the program), in a temporary or
//! user directory, missing where someone untrusted could create it, or
//! writable by someone untrusted; and `$ORIGIN` in a setuid or setgid file.
//! RUNPATH into existing root-owned dirs that nobody else can write is
//! normal (Debian ships several) and not reported.

use std::collections::HashMap;
use std::path::PathBuf;

use super::objects::{self, Object};
use super::perms::Writers;
use super::tokens::{self, Expansion};
use super::{bytes, show, Audit, Context};
use crate::finding::{Finding, Kind, Severity};

pub fn audit(cx: &Context, objs: &[Object], a: &mut Audit) {
    let ex = Expansion::for_root(cx.root);
    // Many objects name the same dirs: judge each dir once.
    let mut dir_cache: HashMap<PathBuf, DirState> = HashMap::new();
    for o in objs {
        for (tag, list) in [("RPATH", &o.info.rpath), ("RUNPATH", &o.info.runpath)] {
            for s in list {
                for elem in s.split(|&b| b == b':') {
                    if let Some((sev, why)) = judge(cx, o, elem, &ex, &mut dir_cache) {
                        a.findings.push(Finding::audit(
                            Kind::Rpath,
                            sev,
                            bytes(&o.path).to_vec(),
                            format!("{tag} entry \"{}\": {why}", show(elem)),
                        ));
                    }
                }
            }
        }
    }
}

#[derive(Clone)]
enum DirState {
    Fine,
    Writable(PathBuf, Writers),
    Missing(Option<(PathBuf, Writers)>),
}

fn judge(
    cx: &Context,
    o: &Object,
    elem: &[u8],
    ex: &Expansion,
    cache: &mut HashMap<PathBuf, DirState>,
) -> Option<(Severity, String)> {
    if elem.is_empty() {
        return Some((
            Severity::High,
            "empty entry: the current directory of whoever runs it".into(),
        ));
    }
    let origin = objects::origin(o);
    let e = tokens::expand(elem, Some(&origin), ex);
    if e.used_origin && o.setid() {
        return Some((
            Severity::High,
            format!(
                "$ORIGIN in a set{}id file (mode {:04o})",
                if o.mode & 0o4000 != 0 { "u" } else { "g" },
                o.mode & 0o7777
            ),
        ));
    }
    if !e.text.starts_with(b"/") {
        return Some((
            Severity::High,
            "relative entry: resolved against the current directory of whoever runs it".into(),
        ));
    }
    if tokens::is_tmp_like(&e.text) {
        return Some((
            Severity::High,
            format!("{} is a world-writable or user directory", show(&e.text)),
        ));
    }
    let dir = crate::rootfs::normalize(&super::path(&e.text));
    let state = cache
        .entry(dir.clone())
        .or_insert_with(|| {
            let exists = cx
                .root
                .resolve(&dir)
                .is_ok_and(|p| cx.root.lstat(&p).is_ok_and(|m| m.is_dir()));
            match (exists, cx.trust.chain_writers(cx.root, &dir)) {
                (true, None) => DirState::Fine,
                (true, Some((p, w))) => DirState::Writable(p, w),
                (false, w) => DirState::Missing(w),
            }
        })
        .clone();
    match state {
        DirState::Fine => None,
        DirState::Writable(p, w) => Some((
            w.severity(),
            format!("{} can be written by {w}", p.display()),
        )),
        DirState::Missing(Some((p, w))) => Some((
            Severity::High,
            format!(
                "{} does not exist and {w} can create it (at {})",
                dir.display(),
                p.display()
            ),
        )),
        // Missing where only a trusted owner could create it (LLVM's
        // `$ORIGIN/../lib`, say): nothing to report.
        DirState::Missing(None) => None,
    }
}
