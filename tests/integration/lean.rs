//! The unchanged check that costs little more than a walk: the package
//! index kept in the generation stands in for reading the dpkg database
//! while that database is unchanged, and judges exactly as a fresh read
//! does (real `dpkg -i` into the fixture root).

#[allow(unused_imports)]
use crate::util::*;

use crate::provenance::{dpkg_root, install};

const MA: &str = "usr/lib/x86_64-linux-gnu";
const CACHED: &str = "unchanged since the baseline";

fn check(t: &TestRoot) -> (i32, Vec<serde_json::Value>, String) {
    let o = t.run(&["--format", "json", "check"]);
    (
        o.status.code().unwrap_or(-1),
        json_lines(&o.stdout),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// What a finding says, without the time it was said.
fn said(f: &[serde_json::Value]) -> Vec<String> {
    let mut v: Vec<String> = f
        .iter()
        .map(|x| {
            format!(
                "{} {} {} {}",
                x["kind"], x["path"], x["severity"], x["detail"]
            )
        })
        .collect();
    v.sort();
    v
}

/// Moves the status file's mtime: the database is "changed" for the
/// stamp, with the same packages in it.
fn touch_status(t: &TestRoot) {
    let st = t.path("var/lib/dpkg/status");
    let o = std::process::Command::new("touch")
        .args(["-d", "2001-02-03 04:05:06"])
        .arg(&st)
        .output()
        .unwrap();
    assert!(o.status.success());
}

fn packaged_root() -> TestRoot {
    let t = TestRoot::debian();
    dpkg_root(&t);
    install(
        &t,
        "libprov1",
        "1.0",
        &[("lib/x86_64-linux-gnu/libprov.so.1", 1)],
    );
    t.init();
    t
}

#[test]
fn an_unchanged_database_is_read_from_the_baseline_and_judges_as_a_fresh_read() {
    let t = packaged_root();
    let (code, cached, err) = check(&t);
    assert!(err.contains(CACHED), "{err}");
    assert!(!err.contains("loaded in"), "the database was parsed: {err}");
    // The fixture's libfoo belongs to no package; libprov does.
    assert!(
        find(
            &cached,
            "unpackaged",
            "/usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3"
        )
        .is_some(),
        "{:?}",
        said(&cached)
    );
    assert!(cached
        .iter()
        .all(|x| x["path"] != "/usr/lib/x86_64-linux-gnu/libprov.so.1"));

    touch_status(&t);
    let (code2, fresh, err) = check(&t);
    assert!(err.contains("dpkg database: 1 packages"), "{err}");
    assert!(err.contains("loaded in"), "{err}");
    assert!(!err.contains(CACHED), "{err}");
    assert_eq!(said(&cached), said(&fresh));
    assert_eq!(code, code2);
}

#[test]
fn a_hand_edit_is_held_to_the_package_digest_kept_in_the_baseline() {
    let t = packaged_root();
    let p = "/usr/lib/x86_64-linux-gnu/libprov.so.1";
    t.compile_so(
        &format!("{MA}/libprov.so.1"),
        "libprov.so.1",
        "int g(void){return 7;}",
    );
    let (_, cached, err) = check(&t);
    assert!(err.contains(CACHED), "{err}");
    let m =
        find(&cached, "modified_vs_package", p).unwrap_or_else(|| panic!("{:?}", said(&cached)));
    assert!(m["detail"].as_str().unwrap().contains("libprov1 1.0"));
    touch_status(&t);
    let (_, fresh, err) = check(&t);
    assert!(err.contains("loaded in"), "{err}");
    assert_eq!(said(&cached), said(&fresh));
}

#[test]
fn a_package_installed_or_a_new_library_name_reads_the_database_again() {
    let t = packaged_root();
    // A new name the stored index was not cut to: it cannot say who owns
    // it, so the database is read.
    t.compile_so(
        &format!("{MA}/libhand.so.1"),
        "libhand.so.1",
        "int h(void){return 3;}",
    );
    let (_, f, err) = check(&t);
    assert!(!err.contains(CACHED), "{err}");
    assert!(err.contains("loaded in"), "{err}");
    assert!(
        find(&f, "unpackaged", "/usr/lib/x86_64-linux-gnu/libhand.so.1").is_some(),
        "{:?}",
        said(&f)
    );

    // A package installed after the baseline: its library is packaged,
    // which only the database written since can say.
    install(
        &t,
        "libnew1",
        "2.0",
        &[("lib/x86_64-linux-gnu/libnew.so.1", 2)],
    );
    let (_, f, err) = check(&t);
    assert!(!err.contains(CACHED), "{err}");
    assert!(err.contains("dpkg database: 2 packages"), "{err}");
    assert!(
        find(&f, "unpackaged", "/usr/lib/x86_64-linux-gnu/libnew.so.1").is_none(),
        "{:?}",
        said(&f)
    );
    // The new file is explained by the install, as from a fresh read.
    assert!(
        find(
            &f,
            "package_update",
            "/usr/lib/x86_64-linux-gnu/libnew.so.1"
        )
        .is_some(),
        "{:?}",
        said(&f)
    );
}

#[test]
fn update_keeps_the_index_for_the_next_check() {
    let t = packaged_root();
    install(
        &t,
        "libnew1",
        "2.0",
        &[("lib/x86_64-linux-gnu/libnew.so.1", 2)],
    );
    t.run_ok(&["update", "--yes"]);
    let (code, f, err) = check(&t);
    assert!(err.contains(CACHED), "{err}");
    assert!(err.contains("dpkg database: 2 packages"), "{err}");
    assert!(
        f.iter()
            .all(|x| x["path"] != "/usr/lib/x86_64-linux-gnu/libnew.so.1"),
        "{:?}",
        said(&f)
    );
    touch_status(&t);
    let (code2, fresh, _) = check(&t);
    assert_eq!(said(&f), said(&fresh));
    assert_eq!(code, code2);
}
