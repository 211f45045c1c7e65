//! The registry audit of a Windows image: the values that decide which
//! DLLs Windows loads, judged as they are now and against the baseline.
//!
//! - `SafeDllSearchMode` = 0 (the current directory searched before
//!   System32), `CWDIllegalInDllSearch` explicitly 0 or weakened since the
//!   baseline;
//! - `KnownDLLs`: each entry present in System32 and carrying an
//!   Authenticode signature; an entry removed since the baseline;
//! - `AppInit_DLLs` loaded into every GUI process (`LoadAppInit_DLLs` = 1),
//!   native and `Wow6432Node`; `AppCertDlls`;
//! - LSA extension points (`Services\NTDS` `LsaDbExtPt`,
//!   `DirectoryServiceExtPt`) and packages beyond Windows' own;
//! - the .NET profiler (`COR_*`) in the system environment.
//!
//! Every finding is of kind `registry` (exit bit 8), its path the value's
//! record path.

use std::path::Path;

use super::{Audit, Context};
use crate::finding::{Finding, Kind, Severity};
use crate::formats::pe;
use crate::record::Record;
use crate::winreg::hive::Value;
use crate::winreg::{shown, value_path, Image, Snapshot, ENVIRONMENT};

pub const SESSION_MANAGER: &str = "SYSTEM\\CurrentControlSet\\Control\\Session Manager";
pub const KNOWN_DLLS: &str = "SYSTEM\\CurrentControlSet\\Control\\Session Manager\\KnownDLLs";
pub const APP_CERT: &str = "SYSTEM\\CurrentControlSet\\Control\\Session Manager\\AppCertDlls";
pub const LSA: &str = "SYSTEM\\CurrentControlSet\\Control\\Lsa";
pub const NTDS: &str = "SYSTEM\\CurrentControlSet\\Services\\NTDS";
pub const WINDOWS: [&str; 2] = [
    "SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Windows",
    "SOFTWARE\\Wow6432Node\\Microsoft\\Windows NT\\CurrentVersion\\Windows",
];

/// The most bytes of a KnownDLL read for its signature.
const DLL_CAP: u64 = 256 << 20;

/// Packages Windows itself lists (lower case, without `.dll`).
const DEFAULT_AUTH: &[&str] = &["msv1_0"];
const DEFAULT_NOTIFY: &[&str] = &["scecli", "rassfm"];
const DEFAULT_SECURITY: &[&str] = &[
    "kerberos", "msv1_0", "schannel", "wdigest", "tspkg", "pku2u", "cloudap", "negoexts",
];

/// Runs the registry audit when the root is a Windows image.
pub fn audit(cx: &Context, out: &mut Audit) {
    let Some(reg) = cx.registry else {
        return;
    };
    // What could not be read was already said when the records were made.
    judge(cx, &reg.image, &reg.snap, out);
}

fn finding(out: &mut Audit, sev: Severity, key: &str, name: &str, detail: String) {
    out.findings.push(Finding::audit(
        Kind::Registry,
        sev,
        value_path(key, name).into_bytes(),
        detail,
    ));
}

/// Judges a snapshot (split from [`audit`] for unit tests).
pub fn judge(cx: &Context, img: &Image, snap: &Snapshot, out: &mut Audit) {
    search_mode(cx.baseline, snap, out);
    known_dlls(cx, img, snap, out);
    appinit(snap, out);
    for v in snap.values_of(APP_CERT) {
        finding(
            out,
            Severity::High,
            APP_CERT,
            &v.name,
            format!(
                "AppCertDlls entry {}: loaded into every process that calls CreateProcess",
                shown(v)
            ),
        );
    }
    lsa(snap, out);
    profiler(snap, out);
}

fn search_mode(baseline: Option<&[Record]>, snap: &Snapshot, out: &mut Audit) {
    if let Some(v) = snap.get(SESSION_MANAGER, "SafeDllSearchMode") {
        if v.number() == Some(0) {
            finding(
                out,
                Severity::High,
                SESSION_MANAGER,
                "SafeDllSearchMode",
                "SafeDllSearchMode is 0: the current directory is searched for DLLs before System32"
                    .into(),
            );
        }
    }
    let now = snap
        .get(SESSION_MANAGER, "CWDIllegalInDllSearch")
        .map(|v| v.number());
    if let Some(Some(0)) = now {
        finding(
            out,
            Severity::Low,
            SESSION_MANAGER,
            "CWDIllegalInDllSearch",
            "CWDIllegalInDllSearch explicitly 0: DLLs are searched for in the current directory even on remote shares".into(),
        );
    }
    let Some(base) = baseline else { return };
    let path = value_path(SESSION_MANAGER, "CWDIllegalInDllSearch");
    let before = base
        .iter()
        .find(|r| r.path == path.as_bytes())
        .and_then(|r| r.target.as_deref())
        .and_then(|t| std::str::from_utf8(t).ok())
        .and_then(|t| t.strip_prefix("REG_DWORD "))
        .and_then(|n| n.trim().parse::<u64>().ok());
    let strength = |v: Option<u64>| match v {
        Some(0xffff_ffff) => 3,
        Some(2) => 2,
        Some(1) => 1,
        _ => 0,
    };
    let now_n = now.flatten();
    if let Some(b) = before {
        if strength(now_n) < strength(Some(b)) {
            let shown_now = now_n.map_or("absent".to_string(), |n| n.to_string());
            finding(
                out,
                Severity::Medium,
                SESSION_MANAGER,
                "CWDIllegalInDllSearch",
                format!("CWDIllegalInDllSearch weakened since the baseline: {shown_now} (was {b})"),
            );
        }
    }
}

/// The file a KnownDLLs value names, when it is a plain file name.
fn known_name(v: &Value) -> Option<String> {
    if v.name.eq_ignore_ascii_case("DllDirectory") || v.name.eq_ignore_ascii_case("DllDirectory32")
    {
        return None;
    }
    v.string()
}

fn known_dlls(cx: &Context, img: &Image, snap: &Snapshot, out: &mut Audit) {
    for v in snap.values_of(KNOWN_DLLS) {
        let Some(file) = known_name(v) else { continue };
        let show = crate::escape::for_terminal(file.as_bytes());
        if file.is_empty() || file.contains(['/', '\\', ':']) || file == ".." || file == "." {
            finding(
                out,
                Severity::High,
                KNOWN_DLLS,
                &v.name,
                format!("KnownDLLs entry is not a file name in System32: {show}"),
            );
            continue;
        }
        let Some(p) = crate::rootfs::find_ci(cx.root, &img.system32, &file) else {
            finding(
                out,
                Severity::High,
                KNOWN_DLLS,
                &v.name,
                format!("KnownDLLs entry {show} is not in System32: the loader falls back to the search order"),
            );
            continue;
        };
        if let Some((sev, why)) = unsigned(cx, &p) {
            finding(
                out,
                sev,
                KNOWN_DLLS,
                &v.name,
                format!("KnownDLLs entry {show}: {why}"),
            );
        }
    }
    // An entry gone since the baseline: that DLL is now found through the
    // search order, where a planted copy wins.
    if let Some(base) = cx.baseline {
        let prefix = format!(
            "{}/",
            value_path(KNOWN_DLLS, "x")
                .trim_end_matches('x')
                .trim_end_matches('/')
        );
        for r in base
            .iter()
            .filter(|r| r.path.starts_with(prefix.as_bytes()))
        {
            let name = String::from_utf8_lossy(&r.path[prefix.len()..]).into_owned();
            if name.eq_ignore_ascii_case("DllDirectory")
                || name.eq_ignore_ascii_case("DllDirectory32")
            {
                continue;
            }
            let still = snap
                .values_of(KNOWN_DLLS)
                .any(|v| value_path(KNOWN_DLLS, &v.name).as_bytes() == r.path.as_slice());
            if !still {
                let was = r
                    .target
                    .as_deref()
                    .map(crate::escape::for_terminal)
                    .unwrap_or_default();
                out.findings.push(Finding::audit(
                    Kind::Registry,
                    Severity::High,
                    r.path.clone(),
                    format!("KnownDLLs entry removed since the baseline (was {was}): that DLL is now found through the search order"),
                ));
            }
        }
    }
}

/// Why a System32 DLL does not count as signed, or `None` when it does:
/// an embedded Authenticode signature whose digest matches (whether its
/// signer is trusted is the provenance policy's call), or its digest in a
/// verified catalog under CatRoot when `authenticode_roots` is configured.
/// Without roots, catalogs cannot be verified: a DLL with no embedded
/// signature is then reported at low severity, saying so.
fn unsigned(cx: &Context, p: &Path) -> Option<(Severity, String)> {
    let bytes = match cx.root.read_file(p, DLL_CAP) {
        Ok(b) => b,
        Err(e) => return Some((Severity::Medium, format!("unreadable ({e})"))),
    };
    let bad = |w: String| Some((Severity::Medium, w));
    match cx.authenticode.verify(&bytes, None) {
        pe::Verdict::Unsigned => {}
        pe::Verdict::NotPe => return bad("not a PE image".into()),
        pe::Verdict::DigestMismatch => return bad("signature does not match the content".into()),
        pe::Verdict::Malformed(w) | pe::Verdict::BadSignature(w) => {
            return bad(format!("bad signature ({w})"))
        }
        _ => return None,
    }
    // Catalogs are read only when some KnownDLL has no embedded signature
    // and roots are configured (CatRoot can be large).
    let Some(t) = cx.authenticode.trust(cx.root) else {
        return Some((
            Severity::Low,
            "no embedded Authenticode signature (catalog signatures are checked only with authenticode_roots configured)".into(),
        ));
    };
    match cx.authenticode.verify(&bytes, Some(t)) {
        pe::Verdict::Catalog { .. } => None,
        _ => bad("not signed (no Authenticode signature, not in a verified catalog)".into()),
    }
}

fn appinit(snap: &Snapshot, out: &mut Audit) {
    for key in WINDOWS {
        let dlls = snap
            .get(key, "AppInit_DLLs")
            .and_then(|v| v.strings())
            .map(|s| s.join(" "))
            .unwrap_or_default();
        let dlls = dlls.trim();
        if dlls.is_empty() {
            continue;
        }
        let load = snap.get(key, "LoadAppInit_DLLs").and_then(|v| v.number());
        let show = crate::escape::for_terminal(dlls.as_bytes());
        if load == Some(1) {
            finding(
                out,
                Severity::High,
                key,
                "AppInit_DLLs",
                format!("AppInit_DLLs loaded into every process that loads user32.dll: {show}"),
            );
        } else {
            finding(
                out,
                Severity::Low,
                key,
                "AppInit_DLLs",
                format!("AppInit_DLLs set but not loaded (LoadAppInit_DLLs is not 1): {show}"),
            );
        }
    }
}

fn package(s: &str) -> String {
    let s = s.trim().to_ascii_lowercase();
    s.strip_suffix(".dll").unwrap_or(&s).to_string()
}

fn lsa(snap: &Snapshot, out: &mut Audit) {
    for name in ["LsaDbExtPt", "DirectoryServiceExtPt"] {
        if let Some(v) = snap.get(NTDS, name) {
            finding(
                out,
                Severity::Critical,
                NTDS,
                name,
                format!(
                    "{name} set: a DLL loaded into LSASS ({})",
                    crate::escape::for_terminal(shown(v).as_bytes())
                ),
            );
        }
    }
    for (name, defaults) in [
        ("Authentication Packages", DEFAULT_AUTH),
        ("Notification Packages", DEFAULT_NOTIFY),
        ("Security Packages", DEFAULT_SECURITY),
    ] {
        let Some(v) = snap.get(LSA, name) else {
            continue;
        };
        let extra: Vec<String> = v
            .strings()
            .unwrap_or_default()
            .iter()
            .map(|s| s.trim().trim_matches('"').to_string())
            .filter(|s| !s.is_empty() && !defaults.contains(&package(s).as_str()))
            .collect();
        if !extra.is_empty() {
            finding(
                out,
                Severity::High,
                LSA,
                name,
                format!(
                    "{name} beyond Windows' own, loaded into LSASS: {}",
                    crate::escape::for_terminal(extra.join(" ").as_bytes())
                ),
            );
        }
    }
}

fn profiler(snap: &Snapshot, out: &mut Audit) {
    for name in ["COR_ENABLE_PROFILING", "COR_PROFILER", "COR_PROFILER_PATH"] {
        let Some(v) = snap.get(ENVIRONMENT, name) else {
            continue;
        };
        let text = v
            .string()
            .or_else(|| v.number().map(|n| n.to_string()))
            .unwrap_or_default();
        if text.trim().is_empty() || (name == "COR_ENABLE_PROFILING" && text.trim() == "0") {
            continue;
        }
        finding(
            out,
            Severity::High,
            ENVIRONMENT,
            name,
            format!(
                "{name} in the system environment: a profiler DLL loaded into every .NET process ({})",
                crate::escape::for_terminal(text.as_bytes())
            ),
        );
    }
}
