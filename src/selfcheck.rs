//! libwarden checks its own process before trusting what it reads: a
//! preload rootkit that got itself loaded into the monitor could hide
//! exactly the files the monitor looks for. The release binary is static,
//! so the dynamic loader never runs for it and `LD_PRELOAD` or
//! `/etc/ld.so.preload` cannot inject anything; their presence in our own
//! environment, or any shared object mapped into us that a plain build
//! does not need, is reported as a critical finding about the host.

use crate::sys::OsStrExt;

use crate::finding::{Finding, Kind, Severity};

/// Loader variables that inject code into a process. (`LD_LIBRARY_PATH`
/// only redirects lookups, and cargo sets it for every test run: the audit
/// judges it where it is configured, not here.)
const LOADER_VARS: &[&str] = &["LD_PRELOAD", "LD_AUDIT"];

/// Objects a dynamically linked build of libwarden legitimately maps.
fn expected_object(name: &[u8]) -> bool {
    const OK: &[&[u8]] = &[
        b"libc.so",
        b"libm.so",
        b"libgcc_s.so",
        b"libpthread.so",
        b"libdl.so",
        b"librt.so",
    ];
    OK.iter().any(|p| name.starts_with(p)) || crate::diff::is_loader_name(name)
}

/// Findings about this process: loader variables in its environment and
/// unexpected shared objects mapped into it.
pub fn run() -> Vec<Finding> {
    let mut out = Vec::new();
    for var in LOADER_VARS {
        if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            let static_note = if is_static() {
                "this static binary ignores it, but every dynamically linked program started from the same environment loads it"
            } else {
                "the loader applied it to libwarden itself"
            };
            out.push(finding(
                v.as_bytes().to_vec(),
                format!(
                    "{var} is set in libwarden's own environment ({}): {static_note}",
                    crate::escape::for_terminal(v.as_bytes())
                ),
            ));
        }
    }
    for obj in mapped_objects() {
        let name = obj.rsplit(|&b| b == b'/').next().unwrap_or(&obj);
        if !expected_object(name) {
            out.push(finding(
                obj.clone(),
                "a shared object libwarden does not link against is mapped into its own process (preloaded or injected)".into(),
            ));
        }
    }
    out
}

fn finding(path: Vec<u8>, detail: String) -> Finding {
    Finding {
        kind: Kind::Preload,
        severity: Severity::Critical,
        path,
        detail,
        changes: Vec::new(),
        before: None,
        after: None,
    }
}

/// Shared objects in `/proc/self/maps`, other than our own executable.
fn mapped_objects() -> Vec<Vec<u8>> {
    let Ok(maps) = std::fs::read("/proc/self/maps") else {
        return Vec::new();
    };
    let exe = std::fs::read_link("/proc/self/exe")
        .map(|p| p.as_os_str().as_bytes().to_vec())
        .unwrap_or_default();
    let mut seen: Vec<Vec<u8>> = Vec::new();
    for line in maps.split(|&b| b == b'\n') {
        // address perms offset dev inode path: the path is the sixth field
        // and may itself hold spaces.
        let mut fields = line.splitn(6, |&b| b == b' ');
        let Some(path) = fields.nth(5) else { continue };
        let path = path.trim_ascii_start();
        let path = path.strip_suffix(b" (deleted)").unwrap_or(path);
        if !path.starts_with(b"/")
            || path == exe.as_slice()
            || !path.windows(3).any(|w| w == b".so")
        {
            continue;
        }
        if !seen.iter().any(|s| s == path) {
            seen.push(path.to_vec());
        }
    }
    seen
}

/// True when no dynamic loader is mapped: the binary is static.
pub fn is_static() -> bool {
    !mapped_objects().iter().any(|p| {
        let name = p.rsplit(|&b| b == b'/').next().unwrap_or(p);
        crate::diff::is_loader_name(name)
    })
}
