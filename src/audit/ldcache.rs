//! `/etc/ld.so.cache`: the loader looks a SONAME up here before any
//! directory. Parsed by [`crate::formats::ldcache`]; every entry must name
//! an existing file inside the search paths. Entries of `glibc-hwcaps`
//! subdirs (the cache's extension) must lie in the subdir they name. A
//! cache older than its configuration is noted.

use crate::sys::MetadataExt;
use rayon::prelude::*;
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
    let entries: Vec<_> = cache
        .new
        .iter()
        .chain(cache.old.iter())
        .filter(|e| seen.insert(e.path.clone()))
        .collect();
    // The resolutions, on every core: each costs a confined lstat per
    // component (and a readlink per symlink), a cache holds thousands of
    // entries, and the rest of the judge waits for them.
    let resolutions: Vec<_> = entries
        .par_iter()
        .map(|e| {
            if !e.path.starts_with(b"/") {
                return None;
            }
            let logical = super::path(&e.path);
            let resolved = cx.root.resolve(&logical);
            // A path with `.` or `..` is resolved leniently on its own
            // (lexical normalisation first, which the strict resolution
            // does not do).
            let canon = match &resolved {
                Ok(p) if crate::rootfs::normalize(&logical) == logical => p.clone(),
                _ => cx.root.resolve_lenient(&logical),
            };
            Some((logical, resolved.is_ok(), canon))
        })
        .collect();
    for (e, resolution) in entries.into_iter().zip(resolutions) {
        let mut push = |sev, detail: String| {
            a.findings.push(Finding::audit(
                Kind::LoaderConfig,
                sev,
                e.path.clone(),
                format!("ld.so.cache entry for {}: {detail}", show(&e.soname)),
            ))
        };
        let Some((logical, resolved, canon)) = resolution else {
            push(Severity::High, "relative path".into());
            continue;
        };
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
        } else if !resolved {
            push(
                Severity::Low,
                "the file does not exist (a library removed without running ldconfig?)".into(),
            );
        } else if let Some(h) = e.hwcaps.as_deref().filter(|h| !in_hwcaps_dir(&e.path, h)) {
            push(
                Severity::High,
                format!(
                    "glibc-hwcaps entry for {} whose file is not in a glibc-hwcaps/{} dir (a crafted cache)",
                    show(h),
                    show(h)
                ),
            );
        } else if let Some(sys) = shadowed(cx, objs, &canon, &e.soname) {
            let detail = match &e.hwcaps {
                Some(h) => format!(
                    "a glibc-hwcaps ({}) library the loader prefers, on CPUs that support it, over the system copy {}",
                    show(h),
                    sys.display()
                ),
                None => format!(
                    "resolves to a library outside the system dirs while the system copy is {}",
                    sys.display()
                ),
            };
            push(Severity::High, detail);
        }
    }
}

/// Whether `path` is directly in a `glibc-hwcaps/NAME` dir.
fn in_hwcaps_dir(path: &[u8], name: &[u8]) -> bool {
    let mut parts = path.rsplit(|&b| b == b'/');
    parts.next();
    parts.next() == Some(name) && parts.next() == Some(b"glibc-hwcaps".as_slice())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_lies_in_the_hwcaps_subdir_it_names() {
        assert!(in_hwcaps_dir(
            b"/usr/lib/glibc-hwcaps/x86-64-v3/libfoo.so.1",
            b"x86-64-v3"
        ));
        assert!(!in_hwcaps_dir(b"/usr/lib/libfoo.so.1", b"x86-64-v3"));
        assert!(!in_hwcaps_dir(b"/tmp/x86-64-v3/libfoo.so.1", b"x86-64-v3"));
    }
}
