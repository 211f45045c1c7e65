//! Package transactions understood as a whole: real packages built with
//! `dpkg-deb --build`, installed, upgraded and removed with `dpkg --root`
//! in a fixture root, `ld.so.cache` rebuilt there by the real `ldconfig
//! -r` (as libc-bin's trigger does). `check` must report every change the
//! transaction explains as `package_update` (info, exit 0), and keep loud
//! what it does not (a hand edit, a retargeted symlink, a stale cache).
//! And `audit`, with no baseline, judging provenance.

use std::process::Command;

use serde_json::Value;

use crate::provenance::{dpkg, dpkg_root, sh};
use crate::util::*;

const MA: &str = "usr/lib/x86_64-linux-gnu";

/// What one package version ships.
struct Pkg<'a> {
    name: &'a str,
    version: &'a str,
    /// (path relative to `/`, SONAME, a number compiled into it).
    libs: &'a [(&'a str, &'a str, i32)],
    /// (target, path relative to `/`).
    links: &'a [(&'a str, &'a str)],
}

/// Builds the package with `dpkg-deb --build` and installs it with
/// `dpkg --root` (dpkg writes the md5sums itself).
fn install(t: &TestRoot, p: &Pkg) {
    let dir = t.dir.path().join(format!("pkg-{}-{}", p.name, p.version));
    std::fs::create_dir_all(dir.join("DEBIAN")).unwrap();
    for (rel, soname, n) in p.libs {
        let out = dir.join(rel);
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        let src = t.dir.path().join(format!("tx{n}.c"));
        std::fs::write(&src, format!("int f{n}(void){{return {n};}}\n")).unwrap();
        sh(Command::new("gcc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(&out)
            .arg(&src)
            .arg(format!("-Wl,-soname,{soname}")));
    }
    for (target, rel) in p.links {
        let at = dir.join(rel);
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, at).unwrap();
    }
    std::fs::write(
        dir.join("DEBIAN/control"),
        format!(
            "Package: {}\nVersion: {}\nArchitecture: amd64\nMaintainer: t <t@example.org>\nDescription: fixture\n",
            p.name, p.version
        ),
    )
    .unwrap();
    let deb = t.dir.path().join(format!("{}_{}.deb", p.name, p.version));
    sh(Command::new("dpkg-deb")
        .args(["--build", "--root-owner-group"])
        .arg(&dir)
        .arg(&deb));
    dpkg(t, &["-i", deb.to_str().unwrap()]);
}

/// Rebuilds the root's `ld.so.cache` as the end of a transaction does.
fn ldconfig(t: &TestRoot) {
    sh(Command::new("ldconfig").arg("-r").arg(t.root()));
}

/// A root whose only library dir is the multiarch one, with an empty
/// dpkg database and a cache ldconfig built; `None` (said loudly) when
/// this is not root (`ldconfig -r` chroots).
fn root() -> Option<TestRoot> {
    if !is_root() {
        eprintln!("SKIPPED: ldconfig -r needs root (CI runs as root)");
        return None;
    }
    let t = TestRoot::new();
    dpkg_root(&t);
    t.write("etc/ld.so.conf", "/usr/lib/x86_64-linux-gnu\n");
    ldconfig(&t);
    Some(t)
}

fn check(t: &TestRoot) -> (i32, Vec<Value>) {
    t.check_json()
}

fn kinds(f: &[Value]) -> Vec<(String, String, String)> {
    f.iter()
        .map(|x| {
            (
                x["kind"].as_str().unwrap_or("").to_string(),
                x["severity"].as_str().unwrap_or("").to_string(),
                x["path"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn abs(rel: &str) -> String {
    format!("/{rel}")
}

/// Asserts a clean transaction: exit 0, every finding an info
/// `package_update`, exactly the paths expected.
fn only_updates(code: i32, f: &[Value], paths: &[&str]) {
    assert_eq!(code, 0, "{:#?}", kinds(f));
    assert!(
        f.iter()
            .all(|x| x["kind"] == "package_update" && x["severity"] == "info"),
        "{:#?}",
        kinds(f)
    );
    let mut got: Vec<&str> = f.iter().map(|x| x["path"].as_str().unwrap()).collect();
    got.sort();
    let mut want = paths.to_vec();
    want.sort();
    assert_eq!(got, want, "{:#?}", kinds(f));
}

/// v1 of the fixture library: the real file and its SONAME link.
fn v1() -> Pkg<'static> {
    Pkg {
        name: "libtx1",
        version: "1.0",
        libs: &[("usr/lib/x86_64-linux-gnu/libtx.so.1.0", "libtx.so.1", 1)],
        links: &[("libtx.so.1.0", "usr/lib/x86_64-linux-gnu/libtx.so.1")],
    }
}

#[test]
fn upgrade_replacing_file_and_symlink_and_the_cache_is_only_package_updates() {
    let Some(t) = root() else { return };
    install(&t, &v1());
    ldconfig(&t);
    t.init();
    let (code, f) = check(&t);
    assert_eq!((code, f.len()), (0, 0), "{:#?}", kinds(&f));

    // Same file names, new content: dpkg replaces the file and the link
    // (new inodes, the same target), ldconfig writes a new cache.
    install(
        &t,
        &Pkg {
            version: "1.1",
            libs: &[("usr/lib/x86_64-linux-gnu/libtx.so.1.0", "libtx.so.1", 2)],
            ..v1()
        },
    );
    ldconfig(&t);
    let (code, f) = check(&t);
    let lib = abs(&format!("{MA}/libtx.so.1.0"));
    let link = abs(&format!("{MA}/libtx.so.1"));
    only_updates(code, &f, &[&lib, &link, "/etc/ld.so.cache"]);
    let d = |p: &str| find(&f, "package_update", p).unwrap()["detail"].to_string();
    assert!(d(&lib).contains("libtx1 1.0 -> 1.1"), "{}", d(&lib));
    assert!(d(&link).contains("symlink it ships"), "{}", d(&link));
    assert!(d("/etc/ld.so.cache").contains("entries are what"));

    // --package-updates accepts all of them.
    let o = t.run_ok(&["--format", "json", "update", "--package-updates"]);
    assert_eq!(json_lines(&o.stdout).len(), 3);
    let (code, f) = check(&t);
    assert_eq!((code, f.len()), (0, 0), "{:#?}", kinds(&f));
}

#[test]
fn soname_link_switched_to_a_new_version_and_the_old_file_removed() {
    let Some(t) = root() else { return };
    install(&t, &v1());
    ldconfig(&t);
    t.init();
    // 1.2 ships libtx.so.1.2 and points the link at it; dpkg removes
    // libtx.so.1.0, which the new version no longer ships.
    install(
        &t,
        &Pkg {
            version: "1.2",
            libs: &[("usr/lib/x86_64-linux-gnu/libtx.so.1.2", "libtx.so.1", 3)],
            links: &[("libtx.so.1.2", "usr/lib/x86_64-linux-gnu/libtx.so.1")],
            ..v1()
        },
    );
    ldconfig(&t);
    let (code, f) = check(&t);
    let old = abs(&format!("{MA}/libtx.so.1.0"));
    let new = abs(&format!("{MA}/libtx.so.1.2"));
    let link = abs(&format!("{MA}/libtx.so.1"));
    only_updates(code, &f, &[&old, &new, &link, "/etc/ld.so.cache"]);
    let gone = find(&f, "package_update", &old).unwrap();
    assert!(
        gone["detail"]
            .as_str()
            .unwrap()
            .contains("no longer ships it"),
        "{gone}"
    );

    let o = t.run_ok(&["--format", "json", "update", "--package-updates"]);
    assert_eq!(json_lines(&o.stdout).len(), 4);
    let (code, f) = check(&t);
    assert_eq!((code, f.len()), (0, 0), "{:#?}", kinds(&f));
}

#[test]
fn new_package_then_its_removal_are_package_updates() {
    let Some(t) = root() else { return };
    install(&t, &v1());
    ldconfig(&t);
    t.init();
    // A new package with its library, SONAME link and a private dir.
    let yaml = Pkg {
        name: "libyaml-0-2",
        version: "0.2.5-1",
        libs: &[
            (
                "usr/lib/x86_64-linux-gnu/libyaml-0.so.2.0.9",
                "libyaml-0.so.2",
                4,
            ),
            ("usr/lib/x86_64-linux-gnu/yaml/libplug.so", "libplug.so", 5),
        ],
        links: &[(
            "libyaml-0.so.2.0.9",
            "usr/lib/x86_64-linux-gnu/libyaml-0.so.2",
        )],
    };
    install(&t, &yaml);
    ldconfig(&t);
    let (code, f) = check(&t);
    let file = abs(&format!("{MA}/libyaml-0.so.2.0.9"));
    let link = abs(&format!("{MA}/libyaml-0.so.2"));
    let dir = abs(&format!("{MA}/yaml"));
    let plug = abs(&format!("{MA}/yaml/libplug.so"));
    only_updates(code, &f, &[&file, &link, &dir, &plug, "/etc/ld.so.cache"]);
    assert!(find(&f, "package_update", &file).unwrap()["detail"]
        .as_str()
        .unwrap()
        .contains("package install: libyaml-0-2 0.2.5-1"));
    t.run_ok(&["update", "--package-updates"]);
    let (code, f) = check(&t);
    assert_eq!((code, f.len()), (0, 0), "{:#?}", kinds(&f));

    // Removed again: everything it shipped left with it.
    dpkg(&t, &["-r", "libyaml-0-2"]);
    ldconfig(&t);
    let (code, f) = check(&t);
    only_updates(code, &f, &[&file, &link, &dir, &plug, "/etc/ld.so.cache"]);
    let gone = find(&f, "package_update", &file).unwrap();
    assert!(
        gone["detail"]
            .as_str()
            .unwrap()
            .contains("package removal: libyaml-0-2 0.2.5-1 (removed)"),
        "{gone}"
    );
    t.run_ok(&["update", "--package-updates"]);
    let (code, f) = check(&t);
    assert_eq!((code, f.len()), (0, 0), "{:#?}", kinds(&f));
}

#[test]
fn what_the_upgrade_does_not_explain_stays_loud() {
    let Some(t) = root() else { return };
    install(
        &t,
        &Pkg {
            libs: &[
                ("usr/lib/x86_64-linux-gnu/libtx.so.1.0", "libtx.so.1", 1),
                ("usr/lib/x86_64-linux-gnu/libtxb.so.1", "libtxb.so.1", 6),
                ("usr/lib/x86_64-linux-gnu/libtxc.so.1", "libtxc.so.1", 7),
            ],
            ..v1()
        },
    );
    ldconfig(&t);
    t.init();
    install(
        &t,
        &Pkg {
            version: "2.0",
            libs: &[
                ("usr/lib/x86_64-linux-gnu/libtx.so.1.0", "libtx.so.1", 11),
                ("usr/lib/x86_64-linux-gnu/libtxb.so.1", "libtxb.so.1", 16),
                ("usr/lib/x86_64-linux-gnu/libtxc.so.1", "libtxc.so.1", 17),
            ],
            ..v1()
        },
    );
    // Inside the same transaction: one library edited by hand, one the
    // package still ships deleted, and, after ldconfig, a library dropped
    // by hand that the cache has no entry for.
    t.compile_so(
        &format!("{MA}/libtxb.so.1"),
        "libtxb.so.1",
        "int evil(void){return 666;}",
    );
    std::fs::remove_file(t.path(&format!("{MA}/libtxc.so.1"))).unwrap();
    ldconfig(&t);
    t.compile_so(
        &format!("{MA}/libdropped.so.1"),
        "libdropped.so.1",
        "int d(void){return 0;}",
    );
    let (code, f) = check(&t);
    let p = |n: &str| abs(&format!("{MA}/{n}"));
    assert!(
        find(&f, "package_update", &p("libtx.so.1.0")).is_some(),
        "{:#?}",
        kinds(&f)
    );
    let edited =
        find(&f, "content", &p("libtxb.so.1")).unwrap_or_else(|| panic!("{:#?}", kinds(&f)));
    assert_eq!(edited["severity"], "high");
    let m = find(&f, "modified_vs_package", &p("libtxb.so.1")).unwrap();
    assert_eq!(m["severity"], "high");
    assert!(
        find(&f, "removed", &p("libtxc.so.1")).is_some(),
        "{:#?}",
        kinds(&f)
    );
    assert!(
        find(&f, "added", &p("libdropped.so.1")).is_some(),
        "{:#?}",
        kinds(&f)
    );
    let cache =
        find(&f, "content", "/etc/ld.so.cache").unwrap_or_else(|| panic!("{:#?}", kinds(&f)));
    assert!(
        cache["detail"]
            .as_str()
            .unwrap()
            .contains("no entry for /usr/lib/x86_64-linux-gnu/libdropped.so.1"),
        "{cache}"
    );
    assert_eq!(code & 4, 4);
    assert_eq!(code & 2, 2);
    assert_eq!(code & 8, 8);

    // --package-updates takes the upgrade alone.
    let o = t.run_ok(&["--format", "json", "update", "--package-updates"]);
    let took = json_lines(&o.stdout);
    assert_eq!(
        kinds(&took),
        [
            ("package_update".into(), "info".into(), p("libtx.so.1")),
            ("package_update".into(), "info".into(), p("libtx.so.1.0"))
        ],
    );
    let (_, f) = check(&t);
    assert!(
        find(&f, "content", &p("libtxb.so.1")).is_some(),
        "{:#?}",
        kinds(&f)
    );
    assert!(
        find(&f, "removed", &p("libtxc.so.1")).is_some(),
        "{:#?}",
        kinds(&f)
    );
}

#[test]
fn a_symlink_retargeted_by_hand_during_an_upgrade_stays_loud() {
    let Some(t) = root() else { return };
    install(&t, &v1());
    ldconfig(&t);
    t.init();
    install(
        &t,
        &Pkg {
            version: "1.1",
            libs: &[("usr/lib/x86_64-linux-gnu/libtx.so.1.0", "libtx.so.1", 2)],
            ..v1()
        },
    );
    // The package's link now leads to a library no package ships.
    t.compile_so(
        &format!("{MA}/.hidden/libtx.so.1.0"),
        "libtx.so.1",
        "int evil(void){return 666;}",
    );
    let link = t.path(&format!("{MA}/libtx.so.1"));
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(".hidden/libtx.so.1.0", &link).unwrap();
    let (code, f) = check(&t);
    let l = find(&f, "link", &abs(&format!("{MA}/libtx.so.1")))
        .unwrap_or_else(|| panic!("{:#?}", kinds(&f)));
    assert_ne!(l["severity"], "info");
    assert!(find(&f, "package_update", &abs(&format!("{MA}/libtx.so.1.0"))).is_some());
    assert_eq!(code & 4, 4);
}

/// `watch` judges the same transaction as `check` does, with the same
/// `package_update` findings (the pipeline's one judge).
#[test]
fn watch_sees_the_transaction_as_check_does() {
    let Some(t) = root() else { return };
    install(&t, &v1());
    ldconfig(&t);
    t.init();
    let new = abs(&format!("{MA}/libtx.so.1.2"));
    let old = abs(&format!("{MA}/libtx.so.1.0"));
    let link = abs(&format!("{MA}/libtx.so.1"));
    crate::pipeline::assert_watch_matches_check(
        &t,
        |t| {
            install(
                t,
                &Pkg {
                    version: "1.2",
                    libs: &[("usr/lib/x86_64-linux-gnu/libtx.so.1.2", "libtx.so.1", 3)],
                    links: &[("libtx.so.1.2", "usr/lib/x86_64-linux-gnu/libtx.so.1")],
                    ..v1()
                },
            );
            ldconfig(t);
        },
        &[
            ("package_update", &new, Some("info")),
            ("package_update", &old, Some("info")),
            ("package_update", &link, Some("info")),
            ("package_update", "/etc/ld.so.cache", Some("info")),
        ],
    );
}

/// Compiles a relocatable object (what a kernel module is, to the ELF
/// sniffer) at `rel`.
fn compile_module(t: &TestRoot, rel: &str) {
    let out = t.path(rel);
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let src = t.dir.path().join("mod.c");
    std::fs::write(&src, "int init_module(void){return 0;}\n").unwrap();
    sh(Command::new("gcc").arg("-c").arg("-o").arg(&out).arg(&src));
}

fn audit(t: &TestRoot) -> (i32, Vec<Value>, String) {
    let o = t.run(&["--format", "json", "audit"]);
    (
        o.status.code().unwrap_or(-1),
        json_lines(&o.stdout),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A host compromised before any `init`: `audit` needs no baseline to
/// flag a library no package owns, a packaged one edited, and an unsigned
/// kernel module, with bit 8.
#[test]
fn audit_judges_provenance_without_a_baseline() {
    let t = TestRoot::new();
    dpkg_root(&t);
    t.write("etc/ld.so.conf", "/usr/lib/x86_64-linux-gnu\n");
    install(
        &t,
        &Pkg {
            libs: &[
                ("usr/lib/x86_64-linux-gnu/libtx.so.1.0", "libtx.so.1", 1),
                ("usr/lib/x86_64-linux-gnu/libtxb.so.1", "libtxb.so.1", 2),
            ],
            ..v1()
        },
    );
    t.compile_so(
        &format!("{MA}/libdropped.so.1"),
        "libdropped.so.1",
        "int d(void){return 0;}",
    );
    t.compile_so(
        &format!("{MA}/libtxb.so.1"),
        "libtxb.so.1",
        "int evil(void){return 666;}",
    );
    // dpkg spells it /lib/modules; merged /usr puts it under /usr/lib.
    compile_module(&t, "lib/modules/6.1.0-test/kernel/drivers/rootkit.ko");
    assert!(!t.db().exists(), "no baseline");
    let (code, f, err) = audit(&t);
    let u = find(&f, "unpackaged", &abs(&format!("{MA}/libdropped.so.1")))
        .unwrap_or_else(|| panic!("{:#?}\n{err}", kinds(&f)));
    assert_eq!(u["severity"], "high");
    let m = find(
        &f,
        "modified_vs_package",
        &abs(&format!("{MA}/libtxb.so.1")),
    )
    .unwrap_or_else(|| panic!("{:#?}", kinds(&f)));
    assert_eq!(m["severity"], "high");
    let k = find(
        &f,
        "unsigned",
        "/usr/lib/modules/6.1.0-test/kernel/drivers/rootkit.ko",
    )
    .unwrap_or_else(|| panic!("{:#?}", kinds(&f)));
    assert_eq!(k["severity"], "high");
    assert!(
        f.iter()
            .all(|x| x["path"] != abs(&format!("{MA}/libtx.so.1.0"))),
        "{:#?}",
        kinds(&f)
    );
    assert_eq!(code & 8, 8, "{:#?}", kinds(&f));
    assert!(!t.db().exists(), "audit writes no baseline");
}

/// The same fixture, every library packaged and the cache built by
/// ldconfig: `audit` is quiet and exits 0.
#[test]
fn audit_of_a_clean_packaged_root_is_quiet() {
    let Some(t) = root() else { return };
    install(&t, &v1());
    ldconfig(&t);
    let (code, f, err) = audit(&t);
    assert_eq!((code, f.len()), (0, 0), "{:#?}\n{err}", kinds(&f));
    assert!(err.contains("dpkg database: 1 packages"), "{err}");
}

/// A rebuilt cache that names a library which is not where it says stays
/// loud, with the reason.
#[test]
fn a_cache_naming_a_missing_library_stays_loud() {
    let Some(t) = root() else { return };
    install(&t, &v1());
    ldconfig(&t);
    t.init();
    install(
        &t,
        &Pkg {
            version: "1.2",
            libs: &[("usr/lib/x86_64-linux-gnu/libtx.so.1.2", "libtx.so.1", 3)],
            links: &[("libtx.so.1.2", "usr/lib/x86_64-linux-gnu/libtx.so.1")],
            ..v1()
        },
    );
    ldconfig(&t);
    // The SONAME link the cache names, deleted by hand.
    std::fs::remove_file(t.path(&format!("{MA}/libtx.so.1"))).unwrap();
    let (code, f) = check(&t);
    let cache = f
        .iter()
        .find(|x| x["path"] == "/etc/ld.so.cache")
        .unwrap_or_else(|| panic!("{:#?}", kinds(&f)));
    assert_ne!(cache["kind"], "package_update", "{cache}");
    assert_ne!(cache["severity"], "info", "{cache}");
    assert!(
        cache["detail"]
            .as_str()
            .unwrap()
            .contains("not a shared object there"),
        "{cache}"
    );
    let gone = find(&f, "removed", &abs(&format!("{MA}/libtx.so.1")))
        .unwrap_or_else(|| panic!("{:#?}", kinds(&f)));
    assert_ne!(gone["severity"], "info");
    assert_ne!(code, 0);
}
