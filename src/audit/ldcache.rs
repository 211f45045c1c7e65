//! `/etc/ld.so.cache`: the loader looks a SONAME up here before any
//! directory. Parsed by [`crate::formats::ldcache`]; every entry must name
//! an existing file inside the search paths. A cache older than its
//! configuration is noted.

use crate::sys::MetadataExt;
use std::path::Path;

use super::loaderconf::{is_system, same_file};
use super::objects::Object;
use super::{show, Audit, Context};
use crate::finding::{Finding, Kind, Severity};
pub use crate::formats::ldcache::CACHE;
use crate::formats::ldcache::{parse, CAP};

pub fn audit(cx: &Context, objs: &[Object], a: &mut Audit) {
    let p = Path::new(CACHE);
    let data = match cx.root.read_file(p, CAP) {
        Ok(d) => d,
        Err(_) => return,
    };
    let cache = match parse(&data) {
        Ok(c) => c,
        Err(why) => {
            a.findings.push(Finding::audit(
                Kind::LoaderConfig,
                Severity::Info,
                CACHE.as_bytes().to_vec(),
                format!(
                    "cannot be parsed ({why}): the loader ignores it and searches the default dirs"
                ),
            ));
            return;
        }
    };
    stale(cx, a);
    let mut seen = std::collections::HashSet::new();
    for e in cache.new.iter().chain(cache.old.iter()) {
        if !seen.insert(e.path.clone()) {
            continue;
        }
        let mut push = |sev, detail: String| {
            a.findings.push(Finding::audit(
                Kind::LoaderConfig,
                sev,
                e.path.clone(),
                format!("ld.so.cache entry for {}: {detail}", show(&e.soname)),
            ))
        };
        if !e.path.starts_with(b"/") {
            push(Severity::High, "relative path".into());
            continue;
        }
        let logical = super::path(&e.path);
        let canon = cx.root.resolve_lenient(&logical);
        let inside = cx.sp.covers(&canon)
            || cx
                .sp
                .dirs
                .iter()
                .any(|d| d.aliases.iter().any(|al| logical.starts_with(al)));
        if !inside {
            push(
                Severity::High,
                "points outside the search paths (a cache crafted or built from a changed configuration)".into(),
            );
        } else if cx.root.resolve(&logical).is_err() {
            push(
                Severity::Low,
                "the file does not exist (a library removed without running ldconfig?)".into(),
            );
        } else if let Some(sys) = shadowed(cx, objs, &canon, &e.soname) {
            push(
                Severity::High,
                format!(
                    "resolves to a library outside the system dirs while the system copy is {}",
                    sys.display()
                ),
            );
        }
    }
}

/// The system library with `soname` that the cache entry at `canon`
/// (outside the system dirs) shadows, if any.
fn shadowed<'o>(cx: &Context, objs: &'o [Object], canon: &Path, soname: &[u8]) -> Option<&'o Path> {
    let system_dir = |d: &Path| {
        cx.sp
            .dirs
            .iter()
            .any(|s| s.path == d && is_system(&s.origins))
    };
    if canon.parent().is_some_and(system_dir) {
        return None;
    }
    objs.iter()
        .filter(|o| o.in_search_path && o.info.soname.as_deref() == Some(soname))
        .filter(|o| o.path.parent().is_some_and(system_dir))
        .find(|o| !same_file(cx, &o.path, canon))
        .map(|o| o.path.as_path())
}

/// Notes a cache older than a configuration file or include dir.
fn stale(cx: &Context, a: &mut Audit) {
    let mtime = |p: &Path| {
        cx.root
            .lstat(&cx.root.resolve_parent(p).ok()?)
            .ok()
            .map(|m| (m.mtime(), m.mtime_nsec()))
    };
    let Some(cache_m) = mtime(Path::new(CACHE)) else {
        return;
    };
    let newer = cx
        .sp
        .ldconf
        .files
        .iter()
        .filter_map(|f| Some((mtime(&cx.root.resolve_lenient(f))?, f)))
        .filter(|(m, _)| *m > cache_m)
        .max();
    if let Some((_, f)) = newer {
        a.findings.push(Finding::audit(
            Kind::LoaderConfig,
            Severity::Info,
            CACHE.as_bytes().to_vec(),
            format!(
                "older than {}: ldconfig has not run since the configuration changed",
                f.display()
            ),
        ));
    }
}
