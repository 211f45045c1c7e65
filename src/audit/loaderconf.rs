//! The search dirs `ld.so.conf` and its includes name: missing (whoever can
//! create it decides what loads from it), relative (resolved against the
//! current directory of whatever runs `ldconfig`), or in a temporary or
//! user directory. And shadowing: a library in a configured dir (or a
//! `glibc-hwcaps` subdir, searched before its parent) that comes before the
//! system dirs, carrying the SONAME of a system library (or its file name,
//! when it has no SONAME).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::objects::Object;
use super::{bytes, show, Audit, Context};
use crate::finding::{Finding, Kind, Severity};
use crate::searchpaths::Origin;

pub fn audit(cx: &Context, objs: &[Object], a: &mut Audit) {
    conf_dirs(cx, a);
    shadowing(cx, objs, a);
}

fn conf_dirs(cx: &Context, a: &mut Audit) {
    for cd in &cx.sp.ldconf.dirs {
        let at = format!("{}:{}", cd.file.display(), cd.line);
        let d = bytes(&cd.dir).to_vec();
        let mut push = |sev, detail: String| {
            a.findings.push(Finding::audit(
                Kind::LoaderConfig,
                sev,
                d.clone(),
                format!("{detail} ({at})"),
            ))
        };
        if !cd.dir.is_absolute() {
            push(
                Severity::High,
                "relative search dir: resolved against the current directory of whoever runs ldconfig".into(),
            );
            continue;
        }
        // Lexically, or once symlinks are resolved (`/opt/libs -> /tmp/x`).
        let canonical = cx.root.resolve_lenient(&cd.dir);
        if super::tokens::is_tmp_like(&d) || super::tokens::is_tmp_like(bytes(&canonical)) {
            push(
                Severity::High,
                "search dir in a world-writable or user directory".into(),
            );
        }
        let exists = cx
            .root
            .resolve(&cd.dir)
            .is_ok_and(|p| cx.root.lstat(&p).is_ok_and(|m| m.is_dir()));
        if exists {
            continue;
        }
        if let Some((p, w)) = cx.trust.chain_writers(cx.root, &cd.dir) {
            push(
                Severity::High,
                format!(
                    "search dir does not exist and {w} can create it (at {})",
                    p.display()
                ),
            );
        }
        // Missing where only root could create it: nothing an attacker
        // could use (the `paths` command lists it as missing).
    }
}

/// Is this search dir one of the system's own (a trusted or multiarch dir)?
pub(crate) fn is_system(origins: &[Origin]) -> bool {
    origins
        .iter()
        .any(|o| matches!(o, Origin::Trusted | Origin::Multiarch))
}

/// The search order as ldconfig builds the cache: the configured dirs in
/// the order of the configuration, then the trusted dirs, each preceded by
/// its `glibc-hwcaps` subdirs. Canonical paths, each once, with whether it
/// is a system dir and where it was configured.
pub(crate) fn search_order(cx: &Context) -> Vec<(PathBuf, bool, String)> {
    let mut order: Vec<(PathBuf, bool, String)> = Vec::new();
    let mut add = |p: PathBuf, why: String| {
        if order.iter().any(|(q, ..)| *q == p) {
            return;
        }
        for h in crate::searchpaths::hwcaps_dirs(cx.root, &p) {
            if !order.iter().any(|(q, ..)| *q == h) {
                let why = format!("glibc-hwcaps subdir, searched before {}", p.display());
                order.push((h, false, why));
            }
        }
        let system = cx
            .sp
            .dirs
            .iter()
            .find(|d| d.path == p)
            .is_some_and(|d| is_system(&d.origins));
        order.push((p, system, why));
    };
    for cd in &cx.sp.ldconf.dirs {
        if let Ok(p) = cx.root.resolve(&cd.dir) {
            add(p, format!("{}:{}", cd.file.display(), cd.line));
        }
    }
    for d in cx
        .sp
        .dirs
        .iter()
        .filter(|d| d.exists && is_system(&d.origins))
    {
        add(d.path.clone(), "trusted dir".into());
    }
    order
}

fn shadowing(cx: &Context, objs: &[Object], a: &mut Audit) {
    let order = search_order(cx);
    let rank: HashMap<&Path, usize> = order
        .iter()
        .enumerate()
        .map(|(i, (p, ..))| (p.as_path(), i))
        .collect();
    // SONAME -> (rank of its dir, path), for objects directly in a search
    // dir; an object without a SONAME goes by its file name, as ldconfig
    // files it (and as the loader finds it when it looks in the dir).
    let mut by_soname: HashMap<&[u8], Vec<(usize, &Path)>> = HashMap::new();
    for o in objs.iter().filter(|o| o.in_search_path) {
        let Some(dir) = o.path.parent() else {
            continue;
        };
        let Some(so) = o.info.soname.as_deref().or_else(|| library_name(&o.path)) else {
            continue;
        };
        if let Some(&r) = rank.get(dir) {
            by_soname.entry(so).or_default().push((r, &o.path));
        }
    }
    for (so, mut hits) in by_soname {
        if hits.len() < 2 {
            continue;
        }
        hits.sort();
        let (first_rank, first) = hits[0];
        let (_, first_system, why) = &order[first_rank];
        if *first_system {
            continue;
        }
        let Some(&(_, sys)) = hits.iter().find(|(r, _)| order[*r].1) else {
            continue;
        };
        if same_file(cx, first, sys) {
            continue;
        }
        let named = if objs
            .binary_search_by(|o| bytes(&o.path).cmp(bytes(first)))
            .ok()
            .is_some_and(|i| objs[i].info.soname.is_none())
        {
            "file name (no SONAME: ldconfig and the loader go by the name)"
        } else {
            "SONAME"
        };
        a.findings.push(Finding::audit(
            Kind::LoaderConfig,
            Severity::High,
            bytes(first).to_vec(),
            format!(
                "{named} {} shadows the system library {}: its dir comes first in the search order ({why})",
                show(so),
                sys.display()
            ),
        ));
    }
}

/// The file name of a library without a SONAME, when ldconfig would take
/// it for one: `lib*.so*` or `ld-*.so*` (plugins named otherwise are not
/// linked against by name).
fn library_name(p: &Path) -> Option<&[u8]> {
    let n = bytes(Path::new(p.file_name()?));
    let lib = n.starts_with(b"lib") || n.starts_with(b"ld-");
    (lib && n.windows(3).any(|w| w == b".so")).then_some(n)
}

pub(crate) fn same_file(cx: &Context, a: &Path, b: &Path) -> bool {
    use crate::sys::MetadataExt;
    match (cx.root.stat(a), cx.root.stat(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}
