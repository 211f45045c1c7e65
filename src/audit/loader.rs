//! The dynamic loader. Its bytes must still contain `/etc/ld.so.preload`
//! (rootkits patch that string to move the preload list somewhere no one
//! looks; the file it names instead is audited as the preload list); every `PT_INTERP` must name a known loader path; and an ELF
//! file in a lib dir named like a loader backup (`ld-linux-x86-64.so.2.bak`,
//! `ld-2.36.so.orig`) is what a loader patch leaves behind.

use std::path::Path;

use super::objects::Object;
use super::{bytes, show, Audit, Context};
use crate::diff::is_loader_name;
use crate::facts::PRELOAD_STRING;
use crate::finding::{Finding, Kind, Severity};
use crate::formats::elf::{is_canonical_loader_name, is_glibc_loader};
use crate::record::{file_name, FileClass, FileType};
use crate::scan;

/// Directories a `PT_INTERP` may name (plus `/lib/<triplet>` and
/// `/usr/lib/<triplet>`).
const LOADER_DIRS: &[&str] = &[
    "/lib",
    "/lib64",
    "/lib32",
    "/libx32",
    "/usr/lib",
    "/usr/lib64",
    "/usr/lib32",
    "/usr/libx32",
];

pub fn audit(cx: &Context, objs: &[Object], a: &mut Audit) {
    patched(cx, objs, a);
    backups(cx, a);
    interps(objs, a);
}

/// A real glibc loader: named like one and carrying a loader's SONAME
/// (which also leaves out debug-info copies with the same name). Whether
/// its content still names the preload list is a fact the inspection
/// gathered while hashing it (see [`crate::facts::PRELOAD_STRING`]).
fn patched(cx: &Context, objs: &[Object], a: &mut Audit) {
    for r in cx.records.iter().filter(|r| {
        r.ftype == FileType::File
            && matches!(r.class, FileClass::ElfDyn | FileClass::ElfExec)
            && is_glibc_loader(file_name(&r.path))
            && objs
                .binary_search_by(|o| bytes(&o.path).cmp(&r.path[..]))
                .ok()
                .and_then(|i| objs[i].info.soname.as_deref())
                .is_some_and(is_glibc_loader)
    }) {
        match r.facts.as_deref().and_then(|f| f.preload_string) {
            Some(true) => {}
            Some(false) => moved_list(cx, r, a),
            // Every hashed loader has the fact; a record without it never
            // had its content looked at.
            None => a.findings.push(Finding::audit(
                Kind::Loader,
                Severity::Medium,
                r.path.clone(),
                "dynamic loader cannot be read to verify it: its content was not inspected".into(),
            )),
        }
    }
}

/// A loader patched to read its preload list from another file: the
/// finding names the file (the absolute paths in it a stock loader does
/// not hold), and each that exists is audited as a preload list.
fn moved_list(cx: &Context, r: &crate::record::Record, a: &mut Audit) {
    let mut paths: Vec<&[u8]> = r
        .facts
        .as_deref()
        .map(|f| f.preload_paths.iter().map(|p| &p[..]).collect())
        .unwrap_or_default();
    // Patched in place, the new path fits where the old one was: those
    // come first.
    paths.sort_by_key(|p| p.len() > PRELOAD_STRING.len());
    // The patch may also point at a file a stock loader names for another
    // purpose: one of those that holds preload entries is a suspect too.
    paths.extend(REUSABLE.iter().copied().filter(|p| holds_entries(cx, p)));
    let loader = super::path(&r.path);
    let mut detail = String::from(
        "dynamic loader no longer contains \"/etc/ld.so.preload\": patched to read its preload list from ",
    );
    match paths.as_slice() {
        [] => detail.push_str("another file (a rootkit technique)"),
        [one] => detail.push_str(&format!(
            "{} (a rootkit technique){}",
            show(one),
            exists_note(cx, one)
        )),
        more => {
            let names: Vec<String> = more
                .iter()
                .map(|p| format!("{}{}", show(p), exists_note(cx, p)))
                .collect();
            detail.push_str(&format!(
                "one of the paths a stock loader does not hold: {} (a rootkit technique)",
                names.join(", ")
            ));
        }
    }
    a.findings.push(Finding::audit(
        Kind::Loader,
        Severity::Critical,
        r.path.clone(),
        detail,
    ));
    for p in paths {
        let p = super::path(p);
        if cx
            .root
            .resolve(&p)
            .is_ok_and(|q| cx.root.lstat(&q).is_ok_and(|m| m.is_file()))
        {
            super::preload::audit_list(cx, &p, Some(&loader), a);
        }
    }
}

/// Files every glibc loader names, normally absent or empty, that a patch
/// could point the preload list at without adding a string.
const REUSABLE: &[&[u8]] = &[b"/etc/suid-debug", b"/etc/ld.so.nohwcap"];

/// Whether `p` is a file whose content parses to preload entries.
fn holds_entries(cx: &Context, p: &[u8]) -> bool {
    cx.root
        .read_file(&super::path(p), 1 << 20)
        .is_ok_and(|d| !super::preload::entries(&d).is_empty())
}

/// Whether a path the loader names exists now, for its finding.
fn exists_note(cx: &Context, p: &[u8]) -> &'static str {
    match cx.root.resolve(&super::path(p)) {
        Ok(q) if cx.root.lstat(&q).is_ok() => "",
        _ => " (does not exist now)",
    }
}

/// Looks like a loader, but something was appended or changed in its name.
pub fn is_backup_name(name: &[u8]) -> bool {
    let looks = is_loader_name(name)
        || (name.starts_with(b"ld-") && name.windows(3).any(|w| w == b".so"))
        || name.starts_with(b"ld.so.");
    looks && !is_canonical_loader_name(name)
}

fn backups(cx: &Context, a: &mut Audit) {
    for r in cx.records.iter().filter(|r| {
        r.ftype == FileType::File
            && r.class.is_loadable()
            && is_backup_name(file_name(&r.path))
            && !super::objects::is_debug_file(&r.path)
    }) {
        let known = cx
            .baseline
            .and_then(|b| scan::find(b, &r.path))
            .is_some_and(|b| b.blake3.is_some() && b.blake3 == r.blake3);
        let (sev, tail) = if known {
            (Severity::Medium, "; known to the baseline")
        } else {
            (Severity::Critical, "")
        };
        a.findings.push(Finding::audit(
            Kind::Loader,
            sev,
            r.path.clone(),
            format!("ELF file named like a backup of the dynamic loader (left behind when a loader is patched){tail}"),
        ));
    }
}

/// A `PT_INTERP` that is an absolute path to a loader name in a lib dir.
pub fn is_known_interp(interp: &[u8]) -> bool {
    let p = super::path(interp);
    let (Some(dir), Some(name)) = (p.parent(), p.file_name()) else {
        return false;
    };
    if !is_canonical_loader_name(bytes(Path::new(name))) {
        return false;
    }
    let d = bytes(dir);
    LOADER_DIRS.iter().any(|l| d == l.as_bytes())
        || ["/lib/", "/usr/lib/"].iter().any(|pre| {
            d.strip_prefix(pre.as_bytes())
                .is_some_and(|t| !t.contains(&b'/') && t.windows(7).any(|w| w == b"-linux-"))
        })
}

fn interps(objs: &[Object], a: &mut Audit) {
    for o in objs {
        let Some(i) = &o.info.interp else {
            continue;
        };
        if !is_known_interp(i) {
            a.findings.push(Finding::audit(
                Kind::Loader,
                Severity::High,
                bytes(&o.path).to_vec(),
                format!(
                    "PT_INTERP names {}, not a known dynamic loader path",
                    show(i)
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loader_names() {
        for n in [
            "ld-linux-x86-64.so.2",
            "ld-linux.so.2",
            "ld64.so.1",
            "ld-musl-x86_64.so.1",
            "ld-2.36.so",
            "ld-linux-aarch64.so.1",
        ] {
            assert!(is_canonical_loader_name(n.as_bytes()), "{n}");
            assert!(!is_backup_name(n.as_bytes()), "{n}");
        }
        for n in [
            "ld-linux-x86-64.so.2.bak",
            "ld-2.36.so.orig",
            "ld-linux-x86-64.so.2~",
            "ld-linux-x86-64.so.2.dpkg-new",
        ] {
            assert!(is_backup_name(n.as_bytes()), "{n}");
        }
        assert!(!is_backup_name(b"libld.so"));
        assert!(!is_backup_name(b"ldap.so"));
    }

    #[test]
    fn interp_paths() {
        assert!(is_known_interp(b"/lib64/ld-linux-x86-64.so.2"));
        assert!(is_known_interp(b"/lib/ld-linux-aarch64.so.1"));
        assert!(is_known_interp(
            b"/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
        ));
        assert!(!is_known_interp(b"/tmp/ld-linux-x86-64.so.2"));
        assert!(!is_known_interp(b"/lib64/ld-linux-x86-64.so.2.bak"));
        assert!(!is_known_interp(b"ld-linux-x86-64.so.2"));
        assert!(!is_known_interp(b"/lib/../tmp/ld-linux.so.2"));
    }
}
