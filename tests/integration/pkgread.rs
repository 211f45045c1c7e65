//! rpm and apk package digests verified in the read that gives the BLAKE3.
//! Each command reads every package database once, before the walk; the
//! walk computes the SHA-256 (rpm) or SHA-1 (apk) of every owned file it
//! reads in that same read, so no owned library is opened a second time
//! for its package digest. Traced with strace: the opens are counted.
//! And `update --image` records the package state a later `check --image`
//! judges an upgrade against.

use std::path::Path;
use std::process::{Command, Output};

use crate::imagejudge::Layers;
use crate::initcpu::{opens, traced};
use crate::packagedb::{apk_db, compile, image_tools, rpm_install, rpm_usable};
use crate::util::{find, image_run, json_lines, kinds, TestRoot};

fn strace_usable() -> bool {
    let ok = Command::new("strace").arg("-V").output().is_ok();
    if !ok {
        eprintln!("\n*** SKIPPED: strace not installed (.ci/deps has it) ***\n");
    }
    ok
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// An edited owned library is `modified_vs_package` naming `algo` and
/// `pkg`, a stray one `unpackaged`, the untouched ones quiet.
fn assert_verdicts(
    f: &[serde_json::Value],
    edited: &str,
    stray: &str,
    clean: &[&str],
    algo: &str,
    pkg: &str,
) {
    let m = find(f, "modified_vs_package", edited).unwrap_or_else(|| panic!("{:?}", kinds(f)));
    let detail = m["detail"].as_str().unwrap();
    assert!(
        detail.contains(algo) && detail.contains(pkg),
        "{detail} should name {algo} and {pkg}"
    );
    assert!(find(f, "unpackaged", stray).is_some(), "{:?}", kinds(f));
    for p in clean {
        assert!(f.iter().all(|x| x["path"] != *p), "{p}: {:?}", kinds(f));
    }
}

/// The owned libraries' file names (what the traced opens end with).
fn name(p: &str) -> &str {
    Path::new(p).file_name().unwrap().to_str().unwrap()
}

#[test]
fn rpm_root_init_and_check_read_rpmdb_and_each_owned_library_once() {
    if !rpm_usable() || !strace_usable() {
        return;
    }
    let t = TestRoot::new();
    let (a, b, c) = (
        "/usr/lib64/librda.so.1",
        "/usr/lib64/librdb.so.1",
        "/usr/lib64/librdc.so.1",
    );
    rpm_install(
        &t,
        "librd",
        "1.0",
        // rpm records /lib64/...; the scan reaches it as /usr/lib64/...
        &[
            ("lib64/librda.so.1", 1),
            ("usr/lib64/librdb.so.1", 2),
            ("usr/lib64/librdc.so.1", 3),
        ],
    );
    t.compile_so(&b[1..], "librdb.so.1", "int g(void){return 7;}");
    let stray = "/usr/lib64/libstray.so.1";
    t.compile_so(&stray[1..], "libstray.so.1", "int s(void){return 0;}");

    let (o, trace) = traced(&t, &["init"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_eq!(opens(&trace, "rpmdb.sqlite"), 1, "rpmdb.sqlite:\n{trace}");
    for p in [a, b, c, stray] {
        assert_eq!(opens(&trace, name(p)), 1, "{p} opened once:\n{trace}");
    }
    assert!(err.contains("rpm database: 1 packages"), "{err}");
    assert!(err.contains("3 in the scan's read"), "{err}");
    let f = json_lines(&o.stdout);
    assert_verdicts(&f, b, stray, &[a, c], "sha256", "librd.x86_64 1.0-1");

    // A library edited since: the check reads it once (its SHA-256 in
    // that read, the paths that want one from the index the generation
    // kept), the others not at all, and no database.
    t.compile_so(&c[1..], "librdc.so.1", "int h(void){return 8;}");
    let (o, trace) = traced(&t, &["check"]);
    let err = stderr(&o);
    assert_eq!(opens(&trace, "rpmdb.sqlite"), 0, "{err}\n{trace}");
    assert!(err.contains("unchanged since the baseline"), "{err}");
    assert_eq!(opens(&trace, name(c)), 1, "{c} opened once:\n{trace}");
    for p in [a, b, stray] {
        assert_eq!(opens(&trace, name(p)), 0, "{p} not read:\n{trace}");
    }
    let f = json_lines(&o.stdout);
    assert!(find(&f, "content", c).is_some(), "{:?}", kinds(&f));
    assert_verdicts(&f, c, stray, &[a], "sha256", "librd.x86_64 1.0-1");
    assert!(find(&f, "modified_vs_package", b).is_some());
    assert_eq!(o.status.code().map(|c| c & 12), Some(12), "{err}");

    // Every file read again: each once, the database once.
    let (o, trace) = traced(&t, &["check", "--paranoid"]);
    assert_eq!(opens(&trace, "rpmdb.sqlite"), 1, "{trace}");
    for p in [a, b, c, stray] {
        assert_eq!(opens(&trace, name(p)), 1, "{p} opened once:\n{trace}");
    }
    let f = json_lines(&o.stdout);
    assert_verdicts(&f, c, stray, &[a], "sha256", "librd.x86_64 1.0-1");
}

#[test]
fn apk_root_init_and_check_read_installed_and_each_owned_library_once() {
    if !strace_usable() {
        return;
    }
    let t = TestRoot::new();
    t.write("etc/ld.so.conf", "");
    let (a, b, c) = (
        "usr/lib/libqa.so.1",
        "usr/lib/libqb.so.1",
        "usr/lib/libqc.so.1",
    );
    for (i, p) in [a, b, c].into_iter().enumerate() {
        compile(&t, &t.path(p), 50 + i as i32);
    }
    apk_db(&t, &[("libq", "1.0-r0", &[a, b, c])]);
    compile(&t, &t.path(b), 98);
    let stray = "/usr/lib/libloose.so";
    t.compile_so(&stray[1..], "libloose.so", "int l(void){return 0;}");
    let (pa, pb, pc) = (format!("/{a}"), format!("/{b}"), format!("/{c}"));

    let (o, trace) = traced(&t, &["init"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    // The database as a package database (by its path); the walk also
    // reads it as a file of /usr/lib, by its name in its directory.
    assert_eq!(opens(&trace, "apk/db/installed"), 1, "{trace}");
    for p in [a, b, c, &stray[1..]] {
        assert_eq!(opens(&trace, name(p)), 1, "{p} opened once:\n{trace}");
    }
    assert!(err.contains("apk database: 1 packages"), "{err}");
    assert!(err.contains("3 in the scan's read"), "{err}");
    let f = json_lines(&o.stdout);
    assert_verdicts(&f, &pb, stray, &[&pa, &pc], "sha1", "libq 1.0-r0");

    compile(&t, &t.path(c), 99);
    let (o, trace) = traced(&t, &["check"]);
    let err = stderr(&o);
    assert_eq!(opens(&trace, "apk/db/installed"), 0, "{err}\n{trace}");
    assert_eq!(opens(&trace, name(c)), 1, "{c} opened once:\n{trace}");
    for p in [a, b] {
        assert_eq!(opens(&trace, name(p)), 0, "{p} not read:\n{trace}");
    }
    let f = json_lines(&o.stdout);
    assert!(find(&f, "content", &pc).is_some(), "{:?}", kinds(&f));
    assert_verdicts(&f, &pc, stray, &[&pa], "sha1", "libq 1.0-r0");
}

/// `update --image` takes the package state (versions, owners, digests)
/// with the records, as `init --image` does: the next upgrade in a later
/// image is a `package_update` from the accepted version, not a content
/// change against the first image's.
#[test]
fn update_image_records_the_package_state_a_later_upgrade_is_judged_against() {
    if !image_tools() {
        return;
    }
    let t = TestRoot::new();
    t.write("etc/ld.so.conf", "");
    let (a, b) = ("usr/lib/libua.so.1", "usr/lib/libub.so.1");
    let build = |n: i32, version: &str| {
        compile(&t, &t.path(a), n);
        compile(&t, &t.path(b), n + 1);
        apk_db(&t, &[("libu", version, &[a, b])]);
    };
    build(60, "1.0-r0");
    let l = Layers::new(&t);
    l.layer(&t, true);
    let (code, f, err) = image_run(&t, &l.img, &["--name", "app", "init"]);
    assert_eq!(code, 0, "{:?} {err}", kinds(&f));

    // 1.1 in layer 2, accepted.
    build(70, "1.1-r0");
    l.layer(&t, false);
    let (code, f, err) = image_run(&t, &l.img, &["--name", "app", "update"]);
    assert_eq!(code, 0, "{:?} {err}", kinds(&f));
    let (code, f, err) = image_run(&t, &l.img, &["--name", "app", "check"]);
    assert_eq!((code, f.len()), (0, 0), "{:?}\n{err}", kinds(&f));

    // 1.2 in layer 3: an upgrade from the version update accepted.
    build(80, "1.2-r0");
    l.layer(&t, false);
    let (code, f, err) = image_run(&t, &l.img, &["--name", "app", "check"]);
    for p in [a, b] {
        let p = format!("/{p}");
        let up = find(&f, "package_update", &p).unwrap_or_else(|| panic!("{:?}\n{err}", kinds(&f)));
        let detail = up["detail"].as_str().unwrap();
        assert!(detail.contains("1.1-r0 -> 1.2-r0"), "{detail}");
        assert!(find(&f, "content", &p).is_none(), "{:?}", kinds(&f));
    }
    // The database file itself changed: the only bit set.
    assert_eq!(code & 3, 0, "{:?}", kinds(&f));
}
