//! Running processes, the Linux counterpart of Sysmon's image-load events
//! (live system only; skipped with a note under `--root`). For each
//! `/proc/PID`: loader variables in its environment, and every file-backed
//! executable mapping that is a `memfd:`, deleted, under a temporary or
//! user directory or a writable dir, or (with a baseline) inside the search
//! paths but missing from or different from the baseline. Processes that
//! exit mid-read are skipped; those that could not be read are counted.
//! libwarden's own process is never audited here (`selfcheck` judges it).

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::environment::VARS;
use super::{show, Audit, Context};
use crate::finding::{Finding, Kind, Severity};
use crate::scan;

const ENVIRON_CAP: u64 = 1 << 20;
const MAPS_CAP: u64 = 8 << 20;
/// PIDs named in one finding's detail before "and N more".
const SHOW_PIDS: usize = 8;
const DELETED: &[u8] = b" (deleted)";

/// One executable file mapping of `/proc/PID/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub inode: u64,
    /// The path as the kernel shows it, without " (deleted)".
    pub path: Vec<u8>,
    pub deleted: bool,
}

/// Executable file-backed mappings of a maps file, each path once.
pub fn exec_mappings(maps: &[u8]) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    for line in maps.split(|&b| b == b'\n') {
        // addr perms offset dev inode path: the path starts after the
        // fifth field and may contain blanks.
        let mut rest = line;
        let mut fields: Vec<&[u8]> = Vec::with_capacity(5);
        while fields.len() < 5 {
            rest = rest.trim_ascii_start();
            let end = rest
                .iter()
                .position(|b| b.is_ascii_whitespace())
                .unwrap_or(rest.len());
            if end == 0 {
                break;
            }
            fields.push(&rest[..end]);
            rest = &rest[end..];
        }
        if fields.len() < 5 || fields[1].get(2) != Some(&b'x') {
            continue;
        }
        let name = rest.trim_ascii_start();
        if name.is_empty() || name.starts_with(b"[") {
            continue;
        }
        let (path, deleted) = match name.strip_suffix(DELETED) {
            Some(p) => (p, true),
            None => (name, false),
        };
        let inode = std::str::from_utf8(fields[4])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if !out.iter().any(|m| m.path == path && m.inode == inode) {
            out.push(Mapping {
                inode,
                path: path.to_vec(),
                deleted,
            });
        }
    }
    out
}

/// The loader variables of an environ block.
pub fn loader_vars(environ: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    for kv in environ.split(|&b| b == 0) {
        for v in VARS {
            if let Some(val) = kv
                .strip_prefix(v.as_bytes())
                .and_then(|r| r.strip_prefix(b"="))
            {
                out.push((*v, val.to_vec()));
            }
        }
    }
    out
}

/// Reads at most `cap` bytes of a proc file.
fn read_proc(p: &Path, cap: u64) -> std::io::Result<Vec<u8>> {
    let f = std::fs::File::open(p)?;
    let mut out = Vec::new();
    f.take(cap).read_to_end(&mut out)?;
    Ok(out)
}

/// What one group of processes share, for one finding.
struct Group {
    severity: Severity,
    why: String,
    pids: Vec<(u32, String)>,
}

pub fn audit(cx: &Context, a: &mut Audit) {
    if !cx.root.is_slash() {
        a.notes
            .push("running processes are not audited under --root".into());
        return;
    }
    #[cfg(windows)]
    {
        super::modules_windows::audit(cx, a);
        return;
    }
    #[allow(unreachable_code)]
    let Ok(rd) = std::fs::read_dir("/proc") else {
        a.notes
            .push("cannot read /proc: running processes not audited".into());
        return;
    };
    let mut pids: Vec<u32> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    // libwarden itself is not a finding about the host (`cargo run` gives
    // it cargo's LD_LIBRARY_PATH and a binary under target/): the
    // self-check judges this process for injection. Only this process is
    // exempt: the cargo that started it, say, is audited as any other.
    let me = std::process::id();
    pids.retain(|&p| p != me);
    let (mut total, mut unreadable) = (0usize, 0usize);
    // (path, why) -> group; env (var, value) -> group.
    let mut maps_found: BTreeMap<(Vec<u8>, String), Group> = BTreeMap::new();
    let mut env_found: BTreeMap<(&'static str, Vec<u8>), Group> = BTreeMap::new();
    let mut dir_cache: HashMap<PathBuf, Option<String>> = HashMap::new();
    for pid in pids {
        let base = PathBuf::from(format!("/proc/{pid}"));
        let environ = read_proc(&base.join("environ"), ENVIRON_CAP);
        let maps = read_proc(&base.join("maps"), MAPS_CAP);
        let gone =
            |r: &std::io::Result<Vec<u8>>| r.as_ref().err().is_some_and(crate::sys::is_not_found);
        if gone(&environ) || gone(&maps) {
            continue;
        }
        total += 1;
        if environ.is_err() || maps.is_err() {
            unreadable += 1;
        }
        let comm = read_proc(&base.join("comm"), 64)
            .map(|c| String::from_utf8_lossy(c.trim_ascii_end()).into_owned())
            .unwrap_or_default();
        if let Ok(env) = &environ {
            for (var, val) in loader_vars(env) {
                let key = (var, val);
                if !env_found.contains_key(&key) {
                    let (severity, why) = judge_env(cx, key.0, &key.1, &mut dir_cache);
                    env_found.insert(
                        key.clone(),
                        Group {
                            severity,
                            why,
                            pids: Vec::new(),
                        },
                    );
                }
                if let Some(g) = env_found.get_mut(&key) {
                    g.pids.push((pid, comm.clone()));
                }
            }
        }
        let Ok(maps) = &maps else {
            continue;
        };
        // The program's own image, to tell it from a loaded library.
        let exe = std::fs::read_link(base.join("exe")).ok().map(|p| {
            let b = super::bytes(&p);
            b.strip_suffix(DELETED).unwrap_or(b).to_vec()
        });
        for m in exec_mappings(maps) {
            let is_exe = exe.as_deref() == Some(m.path.as_slice());
            if let Some((sev, why)) = judge_mapping(cx, &m, is_exe, &mut dir_cache) {
                maps_found
                    .entry((m.path.clone(), why.clone()))
                    .or_insert_with(|| Group {
                        severity: sev,
                        why,
                        pids: Vec::new(),
                    })
                    .pids
                    .push((pid, comm.clone()));
            }
        }
    }
    for ((path, _), g) in maps_found {
        a.findings.push(Finding::audit(
            Kind::Process,
            g.severity,
            path,
            format!("{}, mapped executable by {}", g.why, pids_text(&g.pids)),
        ));
    }
    for ((var, val), g) in env_found {
        let first = g.pids.first().map_or(0, |p| p.0);
        a.findings.push(Finding::audit(
            Kind::Process,
            g.severity,
            format!("/proc/{first}/environ").into_bytes(),
            format!(
                "{var}={} in the environment of {}{}",
                show(&val),
                pids_text(&g.pids),
                g.why
            ),
        ));
    }
    if unreadable > 0 {
        a.notes.push(format!(
            "{unreadable} of {total} processes could not be read (permission denied: not root, or protected by the kernel); they were not audited"
        ));
    }
}

fn pids_text(pids: &[(u32, String)]) -> String {
    let mut parts: Vec<String> = pids
        .iter()
        .take(SHOW_PIDS)
        .map(|(p, c)| format!("pid {p} ({})", show(c.as_bytes())))
        .collect();
    if pids.len() > SHOW_PIDS {
        parts.push(format!("{} more", pids.len() - SHOW_PIDS));
    }
    let n = pids.len();
    format!(
        "{n} process{}: {}",
        if n == 1 { "" } else { "es" },
        parts.join(", ")
    )
}

/// `LD_PRELOAD` and `LD_AUDIT` are always high. `LD_LIBRARY_PATH` is high
/// when an element is empty or relative (the current directory), temporary,
/// or writable by someone untrusted; into trusted dirs only (what build
/// tools such as cargo set) it is low.
fn judge_env(
    cx: &Context,
    var: &str,
    val: &[u8],
    dir_cache: &mut HashMap<PathBuf, Option<String>>,
) -> (Severity, String) {
    if var != "LD_LIBRARY_PATH" {
        return (Severity::High, String::new());
    }
    for e in val.split(|&b| b == b':' || b == b';') {
        if e.is_empty() || !e.starts_with(b"/") {
            return (
                Severity::High,
                "; an empty or relative element searches the current directory".into(),
            );
        }
        if super::tokens::is_tmp_like(e) {
            return (
                Severity::High,
                format!("; {} is a world-writable or user directory", show(e)),
            );
        }
        if let Some(w) = writers_cached(cx, dir_cache, super::path(e)) {
            return (Severity::High, format!("; {w}"));
        }
    }
    (
        Severity::Low,
        "; every element is writable only by trusted owners".into(),
    )
}

/// Who, other than trusted owners, can write `dir` or an ancestor (one
/// answer per directory per run: many processes map the same dirs).
fn writers_cached(
    cx: &Context,
    dir_cache: &mut HashMap<PathBuf, Option<String>>,
    dir: PathBuf,
) -> Option<String> {
    dir_cache
        .entry(dir)
        .or_insert_with_key(|dir| {
            cx.trust
                .chain_writers(cx.root, dir)
                .map(|(d, w)| format!("{} can be written by {w}", d.display()))
        })
        .clone()
}

fn judge_mapping(
    cx: &Context,
    m: &Mapping,
    is_exe: bool,
    dir_cache: &mut HashMap<PathBuf, Option<String>>,
) -> Option<(Severity, String)> {
    let p = &m.path;
    if p.starts_with(b"/memfd:") || p.starts_with(b"memfd:") {
        let why = if is_exe {
            "the program itself runs from a memfd (fileless execution; some container runtimes and sandboxes re-execute themselves this way)"
        } else {
            "code mapped from a memfd (a library loaded from memory, never from disk)"
        };
        return Some((Severity::High, why.into()));
    }
    if !p.starts_with(b"/") {
        return None;
    }
    if super::tokens::is_tmp_like(p) {
        let d = if m.deleted { " and deleted since" } else { "" };
        return Some((
            Severity::High,
            format!("code mapped from a world-writable or user directory{d}"),
        ));
    }
    if m.deleted {
        return Some((
            Severity::Medium,
            "code mapped from a file deleted since (a library replaced by an upgrade, or hidden after loading)".into(),
        ));
    }
    let path = super::path(p);
    let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
    if let Some(w) = writers_cached(cx, dir_cache, dir) {
        return Some((
            Severity::High,
            format!("code mapped from a writable dir: {w}"),
        ));
    }
    let base = cx.baseline?;
    if !cx.sp.covers(&path) {
        return None;
    }
    match scan::find(base, p) {
        None => Some((
            Severity::Medium,
            "code mapped from a file in the search paths that the baseline does not know".into(),
        )),
        Some(r) if m.inode != 0 && r.inode != m.inode => Some((
            Severity::Medium,
            format!(
                "the mapped file (inode {}) is not the one in the baseline (inode {})",
                m.inode, r.inode
            ),
        )),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines() {
        let maps = b"55d0-55d1 r--p 00000000 08:01 123 /usr/bin/sleep\n\
55d1-55d2 r-xp 00001000 08:01 123 /usr/bin/sleep\n\
7f00-7f01 r-xp 00000000 00:1a 77 /dev/shm/evil lib.so (deleted)\n\
7f01-7f02 r-xp 00000000 00:01 9 /memfd:x (deleted)\n\
7f02-7f03 r-xp 00000000 00:00 0 [vdso]\n\
7f03-7f04 rw-p 00000000 00:00 0\n\
garbage\n";
        let m = exec_mappings(maps);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].path, b"/usr/bin/sleep");
        assert_eq!(m[1].path, b"/dev/shm/evil lib.so");
        assert!(m[1].deleted);
        assert_eq!(m[1].inode, 77);
        assert_eq!(m[2].path, b"/memfd:x");
    }

    #[test]
    fn environ_vars() {
        let v = loader_vars(b"PATH=/bin\0LD_PRELOAD=/x.so\0LD_PRELOADX=1\0LD_AUDIT=\0");
        assert_eq!(
            v,
            vec![("LD_PRELOAD", b"/x.so".to_vec()), ("LD_AUDIT", Vec::new())]
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(data: Vec<u8>) {
            let _ = exec_mappings(&data);
            let _ = loader_vars(&data);
        }
    }
}
