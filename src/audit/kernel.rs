//! The running kernel (live systems only, like the process audit): its
//! taint (`/proc/sys/kernel/tainted`: an unsigned, out-of-tree, proprietary
//! or force-loaded module was loaded, which is how LKM rootkits such as
//! Diamorphine show even once they hide from the module list), each
//! module's own taint (`/sys/module/NAME/taint`, and the flags
//! `/proc/modules` appends), and every loaded module's file: one with no
//! file under `/lib/modules/$(uname -r)` (by `modules.dep`) was loaded from
//! elsewhere or had its file removed; under `check`, one whose file the
//! baseline does not know was planted since. The parsers take text and
//! never panic; every read is bounded.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{Audit, Context};
use crate::finding::{Finding, Kind, Severity};

pub const TAINTED: &str = "/proc/sys/kernel/tainted";
pub const PROC_MODULES: &str = "/proc/modules";
#[cfg(target_os = "linux")]
const OSRELEASE: &str = "/proc/sys/kernel/osrelease";
/// `/proc/modules` of a real system is a few tens of kB; `modules.dep` a
/// few MB.
#[cfg(target_os = "linux")]
const MODULES_CAP: u64 = 4 << 20;
#[cfg(target_os = "linux")]
const DEP_CAP: u64 = 32 << 20;
/// At most this many modules are judged.
const MAX_MODULES: usize = 16_384;

/// The kernel's taint letters, by bit (`kernel/panic.c`).
const TAINT_LETTERS: &[u8] = b"PFSRMBUDAWCIOELKXTNJ";

/// The letters of a taint mask, as the kernel prints them.
pub fn taint_letters(mask: u64) -> String {
    TAINT_LETTERS
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1u64 << bit) != 0)
        .map(|(_, &c)| c as char)
        .collect()
}

/// The taint letters that concern loaded code: severity, what it says of
/// the kernel, what it says of one module.
const JUDGED: &[(char, Severity, &str, &str)] = &[
    (
        'E',
        Severity::High,
        "an unsigned module was loaded",
        "it is unsigned",
    ),
    (
        'F',
        Severity::High,
        "a module was force-loaded",
        "it was force-loaded",
    ),
    (
        'O',
        Severity::Medium,
        "an out-of-tree module was loaded",
        "it is out-of-tree",
    ),
    (
        'P',
        Severity::Medium,
        "a proprietary module was loaded",
        "it is proprietary",
    ),
    (
        'R',
        Severity::Medium,
        "a module was force-unloaded",
        "it was force-unloaded",
    ),
    (
        'K',
        Severity::Low,
        "the kernel was live-patched",
        "it is a live patch",
    ),
];

/// What the taint letters of the kernel (or of one `module`) mean, and how
/// much that matters; `None` when none of those concerning loaded code is
/// set.
pub fn judge_letters(letters: &str, module: bool) -> Option<(Severity, String)> {
    let mut sev = Severity::Info;
    let mut why = Vec::new();
    for c in letters.chars() {
        if let Some((_, s, k, m)) = JUDGED.iter().find(|j| j.0 == c) {
            sev = sev.max(*s);
            why.push(format!("{} ({c})", if module { m } else { k }));
        }
    }
    (!why.is_empty()).then(|| (sev, why.join(", ")))
}

/// One line of `/proc/modules`: `name size refcount deps state address
/// [(flags)]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    pub name: String,
    /// The taint letters in parentheses at the end, if any.
    pub taint: String,
}

pub fn parse_proc_modules(text: &[u8]) -> Vec<Loaded> {
    let mut out = Vec::new();
    for line in text.split(|&b| b == b'\n').take(MAX_MODULES) {
        let mut words = line.split(|&b| b == b' ').filter(|w| !w.is_empty());
        let Some(name) = words.next() else {
            continue;
        };
        let taint = line
            .trim_ascii_end()
            .strip_suffix(b")")
            .and_then(|l| l.rsplit(|&b| b == b'(').next())
            .filter(|t| t.iter().all(u8::is_ascii_uppercase))
            .map(|t| String::from_utf8_lossy(t).into_owned())
            .unwrap_or_default();
        out.push(Loaded {
            name: crate::escape::for_terminal(name),
            taint,
        });
    }
    out
}

/// A module's name from its file name, as the kernel names it: the
/// extension (`.ko`, `.ko.xz`, `.ko.zst`, `.ko.gz`) off, `-` as `_`.
pub fn module_name(file: &[u8]) -> Option<String> {
    let base = file.rsplit(|&b| b == b'/').next()?;
    let at = base.windows(3).position(|w| w == b".ko")?;
    let name = &base[..at];
    (!name.is_empty()).then(|| {
        String::from_utf8_lossy(name)
            .chars()
            .map(|c| if c == '-' { '_' } else { c })
            .collect()
    })
}

/// Module name -> file (relative to the modules dir, or absolute) from
/// `modules.dep`: `kernel/fs/xfs/xfs.ko.zst: kernel/lib/libcrc32c.ko.zst`.
pub fn parse_modules_dep(text: &[u8]) -> HashMap<String, Vec<u8>> {
    let mut out = HashMap::new();
    for line in text.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let file = line[..colon].trim_ascii();
        if let Some(name) = module_name(file) {
            out.entry(name).or_insert_with(|| file.to_vec());
        }
    }
    out
}

/// What the audit knows of the kernel, read from the live system (or given
/// by a test).
#[derive(Debug, Default)]
pub struct KernelState {
    /// `/proc/sys/kernel/tainted`, when it could be read.
    pub tainted: Option<Vec<u8>>,
    /// `/proc/modules`, `None` on a kernel without module support.
    pub modules: Option<Vec<u8>>,
    /// `/sys/module/NAME/taint` of each module that has one, non-empty.
    pub module_taint: Vec<(String, String)>,
    /// `uname -r`.
    pub release: Option<String>,
    /// `modules.dep` of that release.
    pub modules_dep: Option<Vec<u8>>,
}

/// The findings for one kernel state. `in_baseline` says whether the
/// baseline knows a module file (logical path); `None` when there is no
/// baseline to ask.
pub fn judge(k: &KernelState, in_baseline: Option<&dyn Fn(&Path) -> bool>, a: &mut Audit) {
    if let Some(t) = &k.tainted {
        match std::str::from_utf8(t)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
        {
            Some(mask) => {
                let letters = taint_letters(mask);
                if let Some((sev, why)) = judge_letters(&letters, false) {
                    a.findings.push(Finding::audit(
                        Kind::Kernel,
                        sev,
                        TAINTED.as_bytes().to_vec(),
                        format!("kernel is tainted {letters} ({mask}): {why}"),
                    ));
                }
            }
            None => a.notes.push(format!("{TAINTED} does not hold a number")),
        }
    }
    let mut taints: HashMap<&str, String> = k
        .module_taint
        .iter()
        .map(|(n, t)| (n.as_str(), t.clone()))
        .collect();
    let loaded = k
        .modules
        .as_deref()
        .map(parse_proc_modules)
        .unwrap_or_default();
    for l in &loaded {
        if !l.taint.is_empty() {
            taints.entry(&l.name).or_insert_with(|| l.taint.clone());
        }
    }
    let mut names: Vec<&&str> = taints.keys().collect();
    names.sort();
    for n in names {
        let t = &taints[*n];
        if let Some((sev, why)) = judge_letters(t, true) {
            a.findings.push(Finding::audit(
                Kind::Kernel,
                sev,
                format!("/sys/module/{n}").into_bytes(),
                format!("loaded module {n} is tainted {t}: {why}"),
            ));
        }
    }
    if loaded.is_empty() {
        return;
    }
    let (Some(rel), Some(dep)) = (&k.release, &k.modules_dep) else {
        a.notes.push(format!(
            "no modules.dep for kernel {}: the files of loaded modules are not checked",
            k.release.as_deref().unwrap_or("(unknown release)")
        ));
        return;
    };
    let files = parse_modules_dep(dep);
    let dir = PathBuf::from(format!("/lib/modules/{rel}"));
    for l in &loaded {
        let path = format!("/sys/module/{}", l.name).into_bytes();
        match files.get(&l.name) {
            None => a.findings.push(Finding::audit(
                Kind::Kernel,
                Severity::High,
                path,
                format!(
                    "loaded module {} has no file under {} (loaded from elsewhere, or its file removed since)",
                    l.name,
                    dir.display()
                ),
            )),
            Some(f) => {
                let file = dir.join(super::path(f));
                if let Some(known) = in_baseline {
                    if !known(&file) {
                        a.findings.push(Finding::audit(
                            Kind::Kernel,
                            Severity::High,
                            path,
                            format!(
                                "loaded module {}: its file {} is not in the baseline",
                                l.name,
                                file.display()
                            ),
                        ));
                    }
                }
            }
        }
    }
}

/// Reads a pseudo-file (its size says nothing) up to `cap` bytes.
#[cfg(target_os = "linux")]
fn read_capped(p: &Path, cap: u64) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    std::fs::File::open(p)
        .ok()?
        .take(cap)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

/// The live kernel's state.
#[cfg(target_os = "linux")]
pub fn read_live(root: &crate::rootfs::Root) -> KernelState {
    let release = read_capped(Path::new(OSRELEASE), 256)
        .map(|r| String::from_utf8_lossy(r.trim_ascii()).into_owned())
        .filter(|r| !r.is_empty() && !r.contains('/'));
    let modules_dep = release.as_ref().and_then(|r| {
        root.read_file(
            &PathBuf::from(format!("/lib/modules/{r}/modules.dep")),
            DEP_CAP,
        )
        .ok()
    });
    let mut module_taint = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/sys/module") {
        for e in rd.filter_map(Result::ok).take(MAX_MODULES) {
            let Some(t) = read_capped(&e.path().join("taint"), 64) else {
                continue;
            };
            let t = String::from_utf8_lossy(t.trim_ascii()).into_owned();
            if !t.is_empty() {
                module_taint.push((
                    crate::escape::for_terminal(e.file_name().as_encoded_bytes()),
                    t,
                ));
            }
        }
    }
    KernelState {
        tainted: read_capped(Path::new(TAINTED), 64),
        modules: read_capped(Path::new(PROC_MODULES), MODULES_CAP),
        module_taint,
        release,
        modules_dep,
    }
}

pub fn audit(cx: &Context, a: &mut Audit) {
    if !cx.root.is_slash() {
        a.notes
            .push("the running kernel is not audited under --root".into());
    } else {
        #[cfg(target_os = "linux")]
        live(cx, a);
    }
}

/// The running kernel's taint and modules, against the baseline's module
/// files when there is one.
#[cfg(target_os = "linux")]
fn live(cx: &Context, a: &mut Audit) {
    let k = read_live(cx.root);
    let known = |p: &Path| {
        let canon = cx.root.resolve_lenient(p);
        cx.baseline
            .is_some_and(|b| crate::scan::find(b, super::bytes(&canon)).is_some())
    };
    let ask: Option<&dyn Fn(&Path) -> bool> = cx.baseline.map(|_| &known as _);
    judge(&k, ask, a);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taint_masks() {
        assert_eq!(taint_letters(0), "");
        assert_eq!(taint_letters(4096 + 8192), "OE");
        assert_eq!(taint_letters(1), "P");
        assert_eq!(judge_letters("OE", false).unwrap().0, Severity::High);
        assert_eq!(judge_letters("O", true).unwrap().0, Severity::Medium);
        assert_eq!(judge_letters("W", false).map(|x| x.0), None);
        assert_eq!(judge_letters("", false).map(|x| x.0), None);
    }

    #[test]
    fn proc_modules_and_dep() {
        let pm = b"diamorphine 16384 0 - Live 0x0000000000000000 (OE)\nxfs 1982464 1 - Live 0xffffffffc0a00000\nnls_utf8 16384 1 - Live 0xffffffffc09e4000\n\n";
        let l = parse_proc_modules(pm);
        assert_eq!(l.len(), 3);
        assert_eq!(l[0].name, "diamorphine");
        assert_eq!(l[0].taint, "OE");
        assert_eq!(l[1].taint, "");
        let dep = parse_modules_dep(
            b"kernel/fs/xfs/xfs.ko.zst: kernel/lib/libcrc32c.ko.zst\nkernel/fs/nls/nls-utf8.ko:\n",
        );
        assert_eq!(dep["xfs"], b"kernel/fs/xfs/xfs.ko.zst");
        assert_eq!(dep["nls_utf8"], b"kernel/fs/nls/nls-utf8.ko");
        assert_eq!(module_name(b"/x/y.ko.xz").as_deref(), Some("y"));
        assert_eq!(module_name(b"README"), None);
    }

    fn state(tainted: &str, modules: &str, dep: Option<&str>) -> KernelState {
        KernelState {
            tainted: Some(tainted.as_bytes().to_vec()),
            modules: Some(modules.as_bytes().to_vec()),
            module_taint: Vec::new(),
            release: Some("6.1.0-18-amd64".into()),
            modules_dep: dep.map(|d| d.as_bytes().to_vec()),
        }
    }

    #[test]
    fn a_rootkit_module_and_a_clean_kernel() {
        let dep = "kernel/fs/xfs/xfs.ko: \n";
        // Stock: untainted, every module with its file.
        let mut a = Audit::default();
        judge(
            &state(
                "0\n",
                "xfs 1982464 1 - Live 0xffffffffc0a00000\n",
                Some(dep),
            ),
            None,
            &mut a,
        );
        assert!(a.findings.is_empty(), "{:?}", a.findings);

        let mut a = Audit::default();
        let mut k = state(
            "12288\n",
            "diamorphine 16384 0 - Live 0x0000000000000000 (OE)\nxfs 1982464 1 - Live 0xffffffffc0a00000\n",
            Some(dep),
        );
        k.module_taint.push(("diamorphine".into(), "OE".into()));
        let known = |p: &Path| p != Path::new("/lib/modules/6.1.0-18-amd64/kernel/fs/xfs/xfs.ko");
        judge(&k, Some(&known), &mut a);
        let f = |path: &str, text: &str| {
            a.findings
                .iter()
                .find(|f| f.path == path.as_bytes() && f.detail.contains(text))
                .unwrap_or_else(|| panic!("{path} {text}: {:#?}", a.findings))
                .severity
        };
        assert_eq!(f(TAINTED, "tainted OE (12288): an out-of-tree module was loaded (O), an unsigned module was loaded (E)"), Severity::High);
        assert_eq!(
            f(
                "/sys/module/diamorphine",
                "tainted OE: it is out-of-tree (O), it is unsigned (E)"
            ),
            Severity::High
        );
        assert_eq!(
            f(
                "/sys/module/diamorphine",
                "has no file under /lib/modules/6.1.0-18-amd64"
            ),
            Severity::High
        );
        assert_eq!(
            f("/sys/module/xfs", "is not in the baseline"),
            Severity::High
        );
        assert_eq!(a.findings.len(), 4);

        // No modules.dep: noted, not guessed.
        let mut a = Audit::default();
        judge(&state("0", "xfs 1 1 - Live 0x0\n", None), None, &mut a);
        assert!(a.findings.is_empty());
        assert_eq!(a.notes.len(), 1);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(pm: Vec<u8>, dep: Vec<u8>, t: Vec<u8>) {
            let k = KernelState {
                tainted: Some(t),
                modules: Some(pm),
                module_taint: Vec::new(),
                release: Some("r".into()),
                modules_dep: Some(dep),
            };
            judge(&k, None, &mut Audit::default());
        }
    }
}
