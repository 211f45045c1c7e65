//! Windows images audited offline from Linux: registry hives written by
//! the test writer in `regf` (and read back by `hivexsh` to prove them
//! valid), one scenario per registry finding, registry values in the
//! baseline.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::regf::{wide, Node, REG_EXPAND_SZ};
use crate::util::{json_lines, TestRoot};

const SM: &str = "ControlSet001\\Control\\Session Manager";
const P_SM: &str = "/registry/HKLM/SYSTEM/CurrentControlSet/Control/Session Manager";
const P_WIN: &str = "/registry/HKLM/SOFTWARE/Microsoft/Windows NT/CurrentVersion/Windows";
const P_WOW: &str =
    "/registry/HKLM/SOFTWARE/Wow6432Node/Microsoft/Windows NT/CurrentVersion/Windows";
const P_LSA: &str = "/registry/HKLM/SYSTEM/CurrentControlSet/Control/Lsa";
const P_NTDS: &str = "/registry/HKLM/SYSTEM/CurrentControlSet/Services/NTDS";

/// A SYSTEM hive as a fresh Windows install has it (the parts audited).
pub(crate) fn clean_system() -> Node {
    let mut n = Node::new("ROOT");
    n.at("Select").dword("Current", 1).dword("Default", 1);
    n.at(SM).dword("ProtectionMode", 1);
    n.at(&format!("{SM}\\KnownDLLs"))
        .set(
            "DllDirectory",
            REG_EXPAND_SZ,
            wide("%SystemRoot%\\system32"),
        )
        .sz("kernel32", "kernel32.dll");
    n.at(&format!("{SM}\\Environment")).set(
        "Path",
        REG_EXPAND_SZ,
        wide("%SystemRoot%\\system32;%SystemRoot%"),
    );
    n.at("ControlSet001\\Control\\Lsa")
        .multi("Authentication Packages", &["msv1_0"])
        .multi("Notification Packages", &["scecli"])
        .multi("Security Packages", &["\"\""]);
    n.at("ControlSet001\\Services\\Tcpip").dword("Start", 1);
    n
}

pub(crate) fn clean_software() -> Node {
    let mut n = Node::new("ROOT");
    for k in [
        "Microsoft\\Windows NT\\CurrentVersion\\Windows",
        "Wow6432Node\\Microsoft\\Windows NT\\CurrentVersion\\Windows",
    ] {
        n.at(k).sz("AppInit_DLLs", "").dword("LoadAppInit_DLLs", 0);
    }
    n
}

/// A root holding a Windows image: System32 with a signed kernel32.dll,
/// SysWOW64, and the two hives.
pub(crate) fn image() -> TestRoot {
    let t = TestRoot::new();
    let dll = crate::provenance::compile_dll(&t, "Windows/System32/kernel32.dll", 1);
    let ca = crate::provenance::make_ca(t.dir.path(), "Test Windows CA");
    let leaf = crate::provenance::make_leaf(t.dir.path(), &ca, "Test Windows");
    crate::provenance::sign_dll(&dll, &leaf, &ca.1);
    std::fs::create_dir_all(t.path("Windows/SysWOW64")).unwrap();
    write_hives(&t, &clean_system(), &clean_software());
    t
}

pub(crate) fn write_hives(t: &TestRoot, system: &Node, software: &Node) {
    // Real images spell it `config` and the hives in capitals; any case works.
    t.write("Windows/System32/config/SYSTEM", system.to_hive());
    t.write("Windows/System32/config/SOFTWARE", software.to_hive());
}

/// `audit` of the registry and side-loading concerns alone: provenance
/// (which `audit` judges too) is off, as the DLLs these tests plant are
/// unsigned on purpose; `provenance.rs` tests their signatures.
fn audit(t: &TestRoot) -> (i32, Vec<Value>, String) {
    let cfg = t.dir.path().join("no-provenance.toml");
    std::fs::write(&cfg, "[provenance]\ndisabled = true\n").unwrap();
    let o = t.run(&[
        "--config",
        cfg.to_str().unwrap(),
        "--format",
        "json",
        "audit",
    ]);
    (
        o.status.code().unwrap_or(-1),
        json_lines(&o.stdout),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn registry(f: &[Value]) -> Vec<(String, String)> {
    f.iter()
        .filter(|f| f["kind"] == "registry")
        .map(|f| {
            (
                f["path"].as_str().unwrap_or("").to_string(),
                f["detail"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Returns the hivexsh binary, or says loudly why the check is skipped.
fn hivexsh() -> Option<PathBuf> {
    let ok = Command::new("hivexsh")
        .arg("-h")
        .output()
        .map(|_| true)
        .unwrap_or(false);
    if !ok {
        eprintln!(
            "\n*** SKIPPED: hivexsh not found; install Debian's libhivex-bin to prove the test hive writer valid ***\n"
        );
        return None;
    }
    Some(PathBuf::from("hivexsh"))
}

fn hivexsh_script(hive: &Path, script: &str) -> String {
    use std::io::Write;
    let mut c = Command::new("hivexsh")
        .arg(hive)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let o = c.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "hivexsh refused {}: {}",
        hive.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn hivexsh_reads_what_the_test_writer_writes() {
    if hivexsh().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut sys = clean_system();
    sys.at(SM).dword("SafeDllSearchMode", 0).set(
        "Big",
        crate::regf::REG_BINARY,
        vec![0x5a; 40_000],
    );
    sys.at("ControlSet001\\Control\\Lsa")
        .multi("Notification Packages", &["scecli", "evil"]);
    for i in 0..40 {
        sys.at(&format!("ControlSet001\\Services\\svc{i:02}"))
            .dword("Start", i);
    }
    let p = dir.path().join("SYSTEM");
    std::fs::write(&p, sys.to_hive()).unwrap();
    let out = hivexsh_script(
        &p,
        "cd ControlSet001\\Control\\Session Manager\nlsval\ncd KnownDLLs\nlsval\ncd \\ControlSet001\\Control\\Lsa\nlsval\ncd \\ControlSet001\\Services\nls\n",
    );
    assert!(
        out.contains("\"SafeDllSearchMode\"=dword:00000000"),
        "{out}"
    );
    assert!(out.contains("\"kernel32\"=\"kernel32.dll\""), "{out}");
    // The 40 000 bytes sit in a `db` big-data cell: hivex reassembles them.
    let big = format!("\"Big\"=hex(3):{}\n", vec!["5a"; 40_000].join(","));
    assert!(out.contains(&big), "big data not read back");
    assert!(
        out.contains("\"Notification Packages\"=hex(7):73,00,63,00"),
        "{out}"
    );
    assert!(
        out.contains("svc00") && out.contains("svc39") && out.contains("Tcpip"),
        "{out}"
    );
    let q = dir.path().join("SOFTWARE");
    std::fs::write(&q, clean_software().to_hive()).unwrap();
    let out = hivexsh_script(
        &q,
        "cd Wow6432Node\\Microsoft\\Windows NT\\CurrentVersion\\Windows\nlsval\n",
    );
    assert!(out.contains("\"LoadAppInit_DLLs\"=dword:00000000"), "{out}");
}

#[test]
fn a_clean_windows_image_has_no_registry_findings() {
    let t = image();
    let (code, f, err) = audit(&t);
    assert_eq!(registry(&f), Vec::<(String, String)>::new(), "{err}");
    assert_eq!(code, 0, "{f:?}\n{err}");
}

type Edit = fn(&mut Node, &mut Node);

#[test]
fn each_registry_scenario_is_found_with_bit_8_and_gone_once_undone() {
    let t = image();
    let scenarios: Vec<(&str, String, Edit)> = vec![
        (
            "SafeDllSearchMode 0",
            format!("{P_SM}/SafeDllSearchMode"),
            |s, _| {
                s.at(SM).dword("SafeDllSearchMode", 0);
            },
        ),
        (
            "SafeDllSearchMode 0 in the control set Select\\Current names",
            format!("{P_SM}/SafeDllSearchMode"),
            |s, _| {
                let mut two = s.at("ControlSet001").clone();
                two.name = "ControlSet002".into();
                two.at("Control\\Session Manager")
                    .dword("SafeDllSearchMode", 0);
                s.children.push(two);
                s.at("Select").dword("Current", 2);
            },
        ),
        (
            "CWDIllegalInDllSearch explicitly 0",
            format!("{P_SM}/CWDIllegalInDllSearch"),
            |s, _| {
                s.at(SM).dword("CWDIllegalInDllSearch", 0);
            },
        ),
        (
            "KnownDLLs entry not in System32",
            format!("{P_SM}/KnownDLLs/evil"),
            |s, _| {
                s.at(&format!("{SM}\\KnownDLLs")).sz("evil", "evil.dll");
            },
        ),
        (
            "KnownDLLs entry naming a path",
            format!("{P_SM}/KnownDLLs/up"),
            |s, _| {
                s.at(&format!("{SM}\\KnownDLLs"))
                    .sz("up", "..\\..\\Users\\Public\\x.dll");
            },
        ),
        (
            "AppInit_DLLs loaded",
            format!("{P_WIN}/AppInit_DLLs"),
            |_, w| {
                w.at("Microsoft\\Windows NT\\CurrentVersion\\Windows")
                    .sz("AppInit_DLLs", "C:\\ProgramData\\evil.dll")
                    .dword("LoadAppInit_DLLs", 1);
            },
        ),
        (
            "AppInit_DLLs loaded (WOW64)",
            format!("{P_WOW}/AppInit_DLLs"),
            |_, w| {
                w.at("Wow6432Node\\Microsoft\\Windows NT\\CurrentVersion\\Windows")
                    .sz("AppInit_DLLs", "C:\\ProgramData\\evil32.dll")
                    .dword("LoadAppInit_DLLs", 1);
            },
        ),
        ("AppCertDlls", format!("{P_SM}/AppCertDlls/x"), |s, _| {
            s.at(&format!("{SM}\\AppCertDlls"))
                .sz("x", "C:\\ProgramData\\cert.dll");
        }),
        ("NTDS LsaDbExtPt", format!("{P_NTDS}/LsaDbExtPt"), |s, _| {
            s.at("ControlSet001\\Services\\NTDS")
                .sz("LsaDbExtPt", "C:\\ProgramData\\lsa.dll");
        }),
        (
            "NTDS DirectoryServiceExtPt",
            format!("{P_NTDS}/DirectoryServiceExtPt"),
            |s, _| {
                s.at("ControlSet001\\Services\\NTDS")
                    .sz("DirectoryServiceExtPt", "C:\\ProgramData\\ds.dll");
            },
        ),
        (
            "Authentication Packages",
            format!("{P_LSA}/Authentication Packages"),
            |s, _| {
                s.at("ControlSet001\\Control\\Lsa")
                    .multi("Authentication Packages", &["msv1_0", "evilauth"]);
            },
        ),
        (
            "Notification Packages",
            format!("{P_LSA}/Notification Packages"),
            |s, _| {
                s.at("ControlSet001\\Control\\Lsa")
                    .multi("Notification Packages", &["scecli", "pwfilter"]);
            },
        ),
        (
            "Security Packages",
            format!("{P_LSA}/Security Packages"),
            |s, _| {
                s.at("ControlSet001\\Control\\Lsa")
                    .multi("Security Packages", &["kerberos", "mimilib"]);
            },
        ),
        (
            "COR_ENABLE_PROFILING",
            format!("{P_SM}/Environment/COR_ENABLE_PROFILING"),
            |s, _| {
                s.at(&format!("{SM}\\Environment"))
                    .sz("COR_ENABLE_PROFILING", "1");
            },
        ),
        (
            "COR_PROFILER",
            format!("{P_SM}/Environment/COR_PROFILER"),
            |s, _| {
                s.at(&format!("{SM}\\Environment"))
                    .sz("COR_PROFILER", "{cf0d821e-299b-5307-a3d8-b283c03916db}");
            },
        ),
        (
            "COR_PROFILER_PATH",
            format!("{P_SM}/Environment/COR_PROFILER_PATH"),
            |s, _| {
                s.at(&format!("{SM}\\Environment"))
                    .sz("COR_PROFILER_PATH", "C:\\ProgramData\\prof.dll");
            },
        ),
    ];
    for (what, path, edit) in scenarios {
        let (mut sys, mut soft) = (clean_system(), clean_software());
        edit(&mut sys, &mut soft);
        write_hives(&t, &sys, &soft);
        let (code, f, err) = audit(&t);
        let found = registry(&f);
        assert!(
            found.iter().any(|(p, _)| *p == path),
            "{what}: no registry finding at {path}: {found:?}\n{err}"
        );
        assert_eq!(code & 8, 8, "{what}: exit {code}");
        // Undone: nothing left.
        write_hives(&t, &clean_system(), &clean_software());
        let (code, f, err) = audit(&t);
        assert_eq!(
            registry(&f),
            Vec::<(String, String)>::new(),
            "{what} undone\n{err}"
        );
        assert_eq!(code, 0, "{what} undone: {f:?}");
    }
}

#[test]
fn an_unsigned_known_dll_is_a_registry_finding() {
    let t = image();
    crate::provenance::compile_dll(&t, "Windows/System32/plain.dll", 2);
    let mut sys = clean_system();
    sys.at(&format!("{SM}\\KnownDLLs")).sz("plain", "plain.dll");
    write_hives(&t, &sys, &clean_software());
    let (code, f, _) = audit(&t);
    let found = registry(&f);
    assert!(
        found
            .iter()
            .any(|(p, d)| *p == format!("{P_SM}/KnownDLLs/plain")
                && d.contains("no embedded Authenticode signature")),
        "{found:?}"
    );
    assert_eq!(code & 8, 8);
}

fn check(t: &TestRoot) -> (i32, Vec<Value>) {
    t.check_json()
}

#[test]
fn registry_values_are_in_the_baseline_and_a_change_is_reported_like_a_file_change() {
    let t = image();
    let mut sys = clean_system();
    sys.at(SM).dword("CWDIllegalInDllSearch", 0xffff_ffff);
    sys.at(&format!("{SM}\\KnownDLLs")).sz("gdi32", "gdi32.dll");
    crate::provenance::compile_dll(&t, "Windows/System32/gdi32.dll", 3);
    // gdi32 stays unsigned: accept that one registry finding as known.
    write_hives(&t, &sys, &clean_software());
    t.init();
    let (code, f) = check(&t);
    // Only the standing policy findings (the unsigned gdi32.dll, signers
    // without configured roots); no change.
    assert_eq!(code & 7, 0, "{f:#?}");

    // A value changed: content (bit 4), with the values shown.
    let mut soft = clean_software();
    soft.at("Microsoft\\Windows NT\\CurrentVersion\\Windows")
        .sz("AppInit_DLLs", "C:\\evil.dll")
        .dword("LoadAppInit_DLLs", 1);
    // A KnownDLLs entry removed, CWDIllegalInDllSearch weakened.
    sys.at(&format!("{SM}\\KnownDLLs")).remove("gdi32");
    sys.at(SM).dword("CWDIllegalInDllSearch", 1);
    write_hives(&t, &sys, &soft);
    let (code, f) = check(&t);
    let at = |kind: &str, path: &str| {
        f.iter()
            .find(|x| x["kind"] == kind && x["path"] == path)
            .unwrap_or_else(|| panic!("no {kind} at {path}: {f:#?}"))
            .clone()
    };
    let c = at("content", &format!("{P_WIN}/AppInit_DLLs"));
    assert!(c["detail"].as_str().unwrap().contains("evil.dll"), "{c}");
    at("content", &format!("{P_WIN}/LoadAppInit_DLLs"));
    at("registry", &format!("{P_WIN}/AppInit_DLLs"));
    at("removed", &format!("{P_SM}/KnownDLLs/gdi32"));
    let r = f
        .iter()
        .find(|x| {
            x["kind"] == "registry"
                && x["path"] == format!("{P_SM}/KnownDLLs/gdi32")
                && x["detail"]
                    .as_str()
                    .unwrap()
                    .contains("removed since the baseline")
        })
        .unwrap_or_else(|| panic!("{f:#?}"));
    assert_eq!(r["severity"], "high");
    let w = f
        .iter()
        .find(|x| {
            x["kind"] == "registry"
                && x["path"] == format!("{P_SM}/CWDIllegalInDllSearch")
                && x["detail"].as_str().unwrap().contains("weakened")
        })
        .unwrap_or_else(|| panic!("{f:#?}"));
    assert!(
        w["detail"].as_str().unwrap().contains("was 4294967295"),
        "{w}"
    );
    assert_eq!(code & (2 | 4 | 8), 2 | 4 | 8, "{f:#?}");

    // Accepted: the baseline now holds the new values.
    let o = t.run(&["update"]);
    assert!(o.status.success() || o.status.code() == Some(0), "{o:?}");
    let (code, f) = check(&t);
    assert_eq!(code & 7, 0, "after update no change remains: {f:#?}");
    assert!(
        f.iter()
            .all(|x| x["path"] != format!("{P_SM}/KnownDLLs/gdi32")),
        "the removal is accepted with the baseline: {f:#?}"
    );
}

/// Builds a console program with mingw at `rel`.
fn compile_exe(t: &TestRoot, rel: &str) -> PathBuf {
    let out = t.path(rel);
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let src = t.dir.path().join("prog.c");
    std::fs::write(&src, "int main(void){return 0;}\n").unwrap();
    let st = Command::new("x86_64-w64-mingw32-gcc")
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
        .expect("x86_64-w64-mingw32-gcc must be installed (gcc-mingw-w64-x86-64)");
    assert!(st.success());
    out
}

fn sign(t: &TestRoot, file: &Path) {
    let ca = crate::provenance::make_ca(t.dir.path(), "Side CA");
    let leaf = crate::provenance::make_leaf(t.dir.path(), &ca, "Side Vendor");
    crate::provenance::sign_dll(file, &leaf, &ca.1);
}

fn of_kind(f: &[Value], kind: &str) -> Vec<(String, String)> {
    f.iter()
        .filter(|x| x["kind"] == kind)
        .map(|x| {
            (
                x["path"].as_str().unwrap_or("").to_string(),
                x["severity"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn an_unsigned_dll_beside_a_signed_program_is_side_loading() {
    let t = image();
    crate::provenance::compile_dll(&t, "Windows/System32/version.dll", 4);
    let exe = compile_exe(&t, "Program Files/Vendor App/app.exe");
    sign(&t, &exe);
    let (code, f, err) = audit(&t);
    assert_eq!(of_kind(&f, "side_loading"), vec![], "{err}");
    assert_eq!(code, 0, "{f:#?}");

    crate::provenance::compile_dll(&t, "Program Files/Vendor App/VERSION.dll", 5);
    crate::provenance::compile_dll(&t, "Program Files/Vendor App/helper.dll", 6);
    let signed = crate::provenance::compile_dll(&t, "Program Files/Vendor App/good.dll", 7);
    sign(&t, &signed);
    // An unsigned program's neighbours are not judged: nothing vouches
    // for the program either.
    compile_exe(&t, "ProgramData/tool/tool.exe");
    crate::provenance::compile_dll(&t, "ProgramData/tool/version.dll", 8);
    let (code, f, _) = audit(&t);
    assert_eq!(
        of_kind(&f, "side_loading"),
        vec![
            (
                "/Program Files/Vendor App/VERSION.dll".to_string(),
                "high".to_string()
            ),
            (
                "/Program Files/Vendor App/helper.dll".to_string(),
                "low".to_string()
            ),
        ],
    );
    assert_eq!(code & 8, 8);
}

#[test]
fn a_dll_in_a_user_writable_system_path_directory_is_found() {
    let t = image();
    crate::provenance::compile_dll(&t, "Windows/System32/version.dll", 4);
    std::fs::create_dir_all(t.path("Tools")).unwrap();
    let mut sys = clean_system();
    sys.at(&format!("{SM}\\Environment")).set(
        "Path",
        REG_EXPAND_SZ,
        wide(
            "%SystemRoot%\\system32;%SystemRoot%;C:\\tools;D:\\elsewhere;%SystemRoot%\\nonexistent",
        ),
    );
    write_hives(&t, &sys, &clean_software());
    let (code, f, err) = audit(&t);
    assert_eq!(
        of_kind(&f, "writable"),
        vec![("/Tools".to_string(), "high".to_string())],
        "{err}"
    );
    assert_eq!(of_kind(&f, "side_loading"), vec![]);
    assert_eq!(code, 8);
    // The PATH directories are search paths: baselined like System32.
    let paths = String::from_utf8_lossy(&t.run(&["paths"]).stdout).into_owned();
    let tools = paths.lines().find(|l| l.contains("/Tools"));
    assert!(
        tools.is_some_and(|l| l.contains("windows system PATH")),
        "{paths}"
    );

    crate::provenance::compile_dll(&t, "Tools/version.dll", 9);
    crate::provenance::compile_dll(&t, "Tools/other.dll", 10);
    let (_, f, _) = audit(&t);
    assert_eq!(
        of_kind(&f, "side_loading"),
        vec![
            ("/Tools/other.dll".to_string(), "high".to_string()),
            ("/Tools/version.dll".to_string(), "critical".to_string()),
        ]
    );

    // Back to the default PATH: nothing.
    write_hives(&t, &clean_system(), &clean_software());
    let (code, f, _) = audit(&t);
    assert_eq!(of_kind(&f, "side_loading"), vec![]);
    assert_eq!(code, 0, "{f:#?}");
}

#[test]
fn a_known_dll_in_a_verified_catalog_counts_as_signed() {
    use crate::provenance::{authenticode_sha256, ctl, sign_catalog};
    let t = image();
    let ca = crate::provenance::make_ca(t.dir.path(), "Catalog Root");
    let listed = crate::provenance::compile_dll(&t, "Windows/System32/listed.dll", 12);
    crate::provenance::compile_dll(&t, "Windows/System32/unlisted.dll", 13);
    let cats = t.path("Windows/System32/CatRoot/{F750E6C3-38EE-11D1-85E5-00C04FC295EE}");
    sign_catalog(
        &t,
        &ctl(&[authenticode_sha256(&listed)]),
        &ca,
        &cats.join("os.cat"),
    );
    let mut sys = clean_system();
    sys.at(&format!("{SM}\\KnownDLLs"))
        .sz("listed", "listed.dll")
        .sz("unlisted", "unlisted.dll");
    write_hives(&t, &sys, &clean_software());
    let cfg = t.dir.path().join("lw.toml");
    std::fs::write(
        &cfg,
        format!(
            "[provenance]\nauthenticode_roots = \"{}\"\n",
            ca.1.display()
        ),
    )
    .unwrap();
    let o = t.run(&[
        "--config",
        cfg.to_str().unwrap(),
        "--format",
        "json",
        "audit",
    ]);
    let found = registry(&json_lines(&o.stdout));
    assert!(
        !found.iter().any(|(p, _)| p.ends_with("/KnownDLLs/listed")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|(p, d)| p.ends_with("/KnownDLLs/unlisted")
                && d.contains("not in a verified catalog")),
        "{found:?}"
    );
}
