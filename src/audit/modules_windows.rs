//! The modules loaded by each running process on Windows (what Sysmon's
//! event 7 reports), from Toolhelp snapshots (`kernel32`): the Windows
//! counterpart of the Linux `/proc/PID/maps` audit.
//!
//! For each module file, once whatever number of processes load it:
//! - in a monitored search path but not in the baseline (under `check`):
//!   loaded code libwarden has not vouched for;
//! - outside `Windows` and `Program Files` (directories users can write
//!   by default) and without an Authenticode signature;
//! - gone from disk (deleted or replaced after it was loaded).
//!
//! Processes libwarden may not open (protected, other sessions without
//! privilege) are counted in a note, never guessed at.

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::path::PathBuf;

use super::{Audit, Context};
use crate::finding::{Finding, Kind, Severity};
use crate::formats::pe;

const TH32CS_SNAPPROCESS: u32 = 0x2;
const TH32CS_SNAPMODULE: u32 = 0x8;
const TH32CS_SNAPMODULE32: u32 = 0x10;
const MAX_PATH: usize = 260;
/// The most bytes of a module read for its signature.
const PE_CAP: u64 = 256 << 20;

#[repr(C)]
struct ProcessEntry32W {
    size: u32,
    usage: u32,
    pid: u32,
    default_heap: usize,
    module_id: u32,
    threads: u32,
    parent_pid: u32,
    pri_class_base: i32,
    flags: u32,
    exe_file: [u16; MAX_PATH],
}

#[repr(C)]
struct ModuleEntry32W {
    size: u32,
    module_id: u32,
    pid: u32,
    glbl_usage: u32,
    proc_usage: u32,
    base_addr: *mut u8,
    base_size: u32,
    module: *mut c_void,
    name: [u16; 256],
    exe_path: [u16; MAX_PATH],
}

#[link(name = "kernel32")]
extern "system" {
    fn CreateToolhelp32Snapshot(flags: u32, pid: u32) -> *mut c_void;
    fn Process32FirstW(snap: *mut c_void, entry: *mut ProcessEntry32W) -> i32;
    fn Process32NextW(snap: *mut c_void, entry: *mut ProcessEntry32W) -> i32;
    fn Module32FirstW(snap: *mut c_void, entry: *mut ModuleEntry32W) -> i32;
    fn Module32NextW(snap: *mut c_void, entry: *mut ModuleEntry32W) -> i32;
    fn CloseHandle(h: *mut c_void) -> i32;
}

/// A snapshot handle, closed when dropped.
struct Snap(*mut c_void);

impl Snap {
    fn new(flags: u32, pid: u32) -> Option<Snap> {
        // SAFETY: plain call; the handle is checked before use.
        let h = unsafe { CreateToolhelp32Snapshot(flags, pid) };
        (!h.is_null() && h as isize != -1).then_some(Snap(h))
    }
}

impl Drop for Snap {
    fn drop(&mut self) {
        // SAFETY: a valid handle from CreateToolhelp32Snapshot, closed once.
        unsafe {
            CloseHandle(self.0);
        }
    }
}

fn wide(s: &[u16]) -> String {
    let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
    String::from_utf16_lossy(&s[..end])
}

/// (pid, name) of every process.
fn processes() -> Vec<(u32, String)> {
    let Some(snap) = Snap::new(TH32CS_SNAPPROCESS, 0) else {
        return Vec::new();
    };
    // SAFETY: all-zero is a valid value of this plain C struct.
    let mut e: ProcessEntry32W = unsafe { std::mem::zeroed() };
    e.size = std::mem::size_of::<ProcessEntry32W>() as u32;
    let mut out = Vec::new();
    // SAFETY: `e` is a properly sized entry with `size` set.
    let mut ok = unsafe { Process32FirstW(snap.0, &mut e) };
    // libwarden itself is the self-check's, not a finding about the host.
    let me = std::process::id();
    while ok != 0 {
        if e.pid != me {
            out.push((e.pid, wide(&e.exe_file)));
        }
        // SAFETY: as above.
        ok = unsafe { Process32NextW(snap.0, &mut e) };
    }
    out
}

/// The module paths loaded by `pid`; `None` when it cannot be opened.
fn modules(pid: u32) -> Option<Vec<String>> {
    let snap = Snap::new(TH32CS_SNAPMODULE | TH32CS_SNAPMODULE32, pid)?;
    // SAFETY: all-zero is a valid value of this plain C struct.
    let mut e: ModuleEntry32W = unsafe { std::mem::zeroed() };
    e.size = std::mem::size_of::<ModuleEntry32W>() as u32;
    let mut out = Vec::new();
    // SAFETY: `e` is a properly sized entry with `size` set.
    let mut ok = unsafe { Module32FirstW(snap.0, &mut e) };
    while ok != 0 {
        out.push(wide(&e.exe_path));
        // SAFETY: as above.
        ok = unsafe { Module32NextW(snap.0, &mut e) };
    }
    Some(out)
}

/// The logical path (`/Windows/System32/x.dll`) of a module on the system
/// drive; `None` for other drives and device paths.
fn logical(cx: &Context, module: &str) -> Option<PathBuf> {
    let rel = module.strip_prefix(r"\\?\").unwrap_or(module);
    let host = cx.root.host().to_string_lossy().to_ascii_lowercase();
    let drive = host.trim_end_matches('\\');
    let lower = rel.to_ascii_lowercase();
    let rest = lower.strip_prefix(drive).map(|_| &rel[drive.len()..])?;
    Some(PathBuf::from(rest.replace('\\', "/")))
}

fn user_writable(p: &std::path::Path) -> bool {
    let first = p
        .components()
        .nth(1)
        .map(|c| c.as_os_str().to_string_lossy().to_ascii_lowercase());
    !matches!(
        first.as_deref(),
        Some("windows" | "program files" | "program files (x86)")
    )
}

/// Runs the loaded-module audit of the live Windows host.
pub fn audit(cx: &Context, a: &mut Audit) {
    let procs = processes();
    if procs.is_empty() {
        a.notes
            .push("no process list (Toolhelp snapshot failed): loaded modules not audited".into());
        return;
    }
    let mut by_module: BTreeMap<String, Vec<(u32, String)>> = BTreeMap::new();
    let mut closed = 0usize;
    for (pid, name) in &procs {
        if *pid == 0 {
            continue;
        }
        match modules(*pid) {
            Some(m) => {
                for path in m {
                    by_module
                        .entry(path)
                        .or_default()
                        .push((*pid, name.clone()));
                }
            }
            None => closed += 1,
        }
    }
    if closed > 0 {
        a.notes.push(format!(
            "{closed} of {} processes could not be opened: their modules are not audited",
            procs.len()
        ));
    }
    for (module, pids) in by_module {
        let Some(lp) = logical(cx, &module) else {
            continue;
        };
        let key = crate::sys::OsStrExt::as_bytes(lp.as_os_str()).to_vec();
        let shown_pids = pids
            .iter()
            .take(5)
            .map(|(p, n)| format!("{n} ({p})"))
            .collect::<Vec<_>>()
            .join(", ");
        let more = if pids.len() > 5 {
            format!(" and {} more", pids.len() - 5)
        } else {
            String::new()
        };
        let mut push = |sev: Severity, why: &str| {
            a.findings.push(Finding::audit(
                Kind::Process,
                sev,
                key.clone(),
                format!("{why}; loaded by {shown_pids}{more}"),
            ))
        };
        let bytes = match cx.root.read_file(&lp, PE_CAP) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                push(Severity::Medium, "loaded module no longer on disk");
                continue;
            }
            Err(_) => None,
        };
        if let Some(base) = cx.baseline {
            let known = base.iter().any(|r| r.path.eq_ignore_ascii_case(&key));
            if cx.sp.covers(&lp) && !known {
                push(
                    Severity::High,
                    "loaded module in a search path but not in the baseline",
                );
                continue;
            }
        }
        if user_writable(&lp) {
            let signed = bytes.as_deref().is_some_and(|b| {
                matches!(
                    cx.authenticode.verify(b, None),
                    pe::Verdict::Signed { .. } | pe::Verdict::Untrusted { .. }
                )
            });
            if !signed {
                push(
                    Severity::High,
                    "unsigned module loaded from a directory users can write",
                );
            }
        }
    }
}
