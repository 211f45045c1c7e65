//! DLL side-loading in a Windows image (ATT&CK T1574.001, T1574.002): a
//! signed program sits in a directory with an unsigned DLL, which Windows
//! loads from the program's directory before System32 — worst when the
//! DLL is named like a System32 one; and DLLs in directories of the system
//! `PATH` that non-administrators can write.
//!
//! Offline, NTFS ACLs are not in the extracted tree, so "writable by
//! non-administrators" is Windows' default: a directory outside
//! `Windows` and `Program Files` inherits the system drive's ACL, which
//! lets Authenticated Users create and modify (`C:\` grants `(OI)(CI)(IO)(M)`,
//! `ProgramData` lets users add files). An extracted tree whose Unix mode
//! bits make the directory world-writable counts too.
//!
//! Nothing found here is executed or loaded: images are read with capped
//! reads and judged by the Authenticode parser.

use std::collections::BTreeSet;
use std::path::Path;

use super::{Audit, Context};
use crate::finding::{Finding, Kind, Severity};
use crate::formats::pe;
use crate::rootfs::Root;
use crate::winreg::{Registry, ENVIRONMENT};

/// Trees under the image root where programs are installed or dropped.
const PROGRAM_TREES: &[&str] = &[
    "Program Files",
    "Program Files (x86)",
    "ProgramData",
    "Users",
];
/// How deep below a program tree directories are read.
const MAX_DEPTH: usize = 8;
/// The most directories read in all (a bound on hostile or huge images).
const MAX_DIRS: usize = 50_000;
/// The most bytes of one image read for its signature.
const PE_CAP: u64 = 256 << 20;

/// Runs the side-loading audit when the root is a Windows image.
pub fn audit(cx: &Context, out: &mut Audit) {
    let Some(reg) = cx.registry else {
        return;
    };
    let sys_names = dll_names(cx.root, &reg.image.system32);
    path_dirs(cx, reg, &sys_names, out);
    let mut budget = MAX_DIRS;
    for tree in PROGRAM_TREES {
        if let Some(d) = crate::rootfs::find_ci(cx.root, Path::new("/"), tree) {
            walk(cx, &d, 0, &sys_names, &mut budget, out);
        }
    }
    if budget == 0 {
        out.notes.push(format!(
            "side-loading audit stopped after {MAX_DIRS} directories"
        ));
    }
}

/// Lower-case names of the DLLs in a directory.
fn dll_names(root: &Root, dir: &Path) -> BTreeSet<String> {
    entries(root, dir)
        .into_iter()
        .filter(|(_, is_dir)| !is_dir)
        .map(|(n, _)| n.to_ascii_lowercase())
        .filter(|n| n.ends_with(".dll"))
        .collect()
}

/// The entries of a directory (name, is a real directory); symlinks are
/// neither followed nor listed as directories.
fn entries(root: &Root, dir: &Path) -> Vec<(String, bool)> {
    let Ok(resolved) = root.resolve(dir) else {
        return Vec::new();
    };
    let Ok(rd) = root.list_entries(&resolved) else {
        return Vec::new();
    };
    let mut v: Vec<(String, bool)> = rd
        .into_iter()
        .filter_map(|(name, ft)| {
            let name = name.to_str()?.to_string();
            if ft.is_symlink() {
                return None;
            }
            Some((name, ft.is_dir()))
        })
        .collect();
    v.sort();
    v
}

/// What a PE file's signature says, for this audit: signed (embedded,
/// valid digest, whatever the signer), or not.
fn is_signed(cx: &Context, p: &Path) -> bool {
    match cx.root.read_file(p, PE_CAP) {
        Ok(b) => matches!(
            cx.authenticode.verify(&b, None),
            pe::Verdict::Signed { .. }
                | pe::Verdict::Untrusted { .. }
                | pe::Verdict::Catalog { .. }
        ),
        Err(_) => false,
    }
}

fn walk(
    cx: &Context,
    dir: &Path,
    depth: usize,
    sys: &BTreeSet<String>,
    budget: &mut usize,
    out: &mut Audit,
) {
    if *budget == 0 || depth > MAX_DEPTH {
        return;
    }
    *budget -= 1;
    let ents = entries(cx.root, dir);
    let lower = |n: &str| n.to_ascii_lowercase();
    let dlls: Vec<&String> = ents
        .iter()
        .filter(|(n, d)| !d && lower(n).ends_with(".dll"))
        .map(|(n, _)| n)
        .collect();
    if !dlls.is_empty() {
        let signed_exe = ents
            .iter()
            .filter(|(n, d)| !d && lower(n).ends_with(".exe"))
            .find(|(n, _)| is_signed(cx, &dir.join(n)));
        if let Some((exe, _)) = signed_exe {
            for dll in dlls {
                let p = dir.join(dll);
                if is_signed(cx, &p) {
                    continue;
                }
                let shadows = sys.contains(&lower(dll));
                let (sev, why) = if shadows {
                    (
                        Severity::High,
                        "named like a System32 DLL: the program loads this copy first",
                    )
                } else {
                    (Severity::Low, "loaded from the program's directory first")
                };
                out.findings.push(Finding::audit(
                    Kind::SideLoading,
                    sev,
                    super::bytes(&p).to_vec(),
                    format!(
                        "unsigned DLL next to the signed program {}: {why}",
                        super::show(exe.as_bytes())
                    ),
                ));
            }
        }
    }
    for (n, is_dir) in &ents {
        if *is_dir {
            walk(cx, &dir.join(n), depth + 1, sys, budget, out);
        }
    }
}

/// Directories of the system `PATH` (from the SYSTEM hive), resolved
/// inside the root; DLLs in those a non-administrator can write.
fn path_dirs(cx: &Context, reg: &Registry, sys: &BTreeSet<String>, out: &mut Audit) {
    let (img, snap) = (&reg.image, &reg.snap);
    let Some(path) = snap.get(ENVIRONMENT, "Path").and_then(|v| v.string()) else {
        return;
    };
    for entry in path.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let Some(dir) = crate::winreg::resolve_windows_path(cx.root, img, entry) else {
            continue;
        };
        let Some(why) = user_writable(cx.root, &dir) else {
            continue;
        };
        let shown = super::show(entry.as_bytes());
        out.findings.push(Finding::audit(
            Kind::Writable,
            Severity::High,
            super::bytes(&dir).to_vec(),
            format!("directory {shown} on the system PATH {why}: a DLL dropped there is loaded by programs searching the PATH"),
        ));
        for dll in dll_names(cx.root, &dir) {
            let sev = if sys.contains(&dll) {
                Severity::Critical
            } else {
                Severity::High
            };
            let real = entries(cx.root, &dir)
                .into_iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(&dll))
                .map(|(n, _)| n)
                .unwrap_or(dll);
            out.findings.push(Finding::audit(
                Kind::SideLoading,
                sev,
                super::bytes(&dir.join(&real)).to_vec(),
                format!("DLL in {shown}, a directory on the system PATH {why}"),
            ));
        }
    }
}

/// Why non-administrators can write `dir`, or `None`.
fn user_writable(root: &Root, dir: &Path) -> Option<&'static str> {
    if let Ok(m) = root.stat(dir) {
        if crate::sys::MetadataExt::mode(&m) & 0o002 != 0 {
            return Some("writable by everyone (mode bits)");
        }
    }
    let first = dir
        .components()
        .nth(1)
        .map(|c| c.as_os_str().to_string_lossy().to_ascii_lowercase())?;
    match first.as_str() {
        "windows" | "program files" | "program files (x86)" => None,
        "programdata" => Some("under ProgramData, where users may create files by default"),
        "users" => Some("under Users"),
        _ => Some("outside Windows and Program Files, where the system drive's default ACL lets users create and modify"),
    }
}
