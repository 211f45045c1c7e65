//! The package MD5 of a dpkg-owned library computed in the scan's own read
//! (the index read before the walk), with the same verdicts as when
//! provenance reads the file again: real `dpkg -i` into the fixture root,
//! gcc-built libraries, one of them edited by hand after installation.

use crate::provenance::{dpkg_root, install};
use crate::util::*;

const MA: &str = "usr/lib/x86_64-linux-gnu";

/// A root with two packaged libraries, the second edited after install.
fn root_with_one_tampered() -> TestRoot {
    let t = TestRoot::debian();
    dpkg_root(&t);
    install(
        &t,
        "libsame1",
        "1.0",
        &[
            ("lib/x86_64-linux-gnu/libsame.so.1", 11),
            ("lib/x86_64-linux-gnu/libedit.so.1", 12),
        ],
    );
    t.compile_so(
        &format!("{MA}/libedit.so.1"),
        "libedit.so.1",
        "int f(void){return 99;}",
    );
    t
}

/// The provenance status line: (judged, computed, from the scan's read).
fn provenance_counts(stderr: &str) -> (usize, usize, usize) {
    let line = stderr
        .lines()
        .find(|l| l.contains("provenance:") && l.contains("libraries judged"))
        .unwrap_or_else(|| panic!("no provenance line in {stderr}"));
    let nums: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(3)
        .map(|s| s.parse().unwrap())
        .collect();
    (nums[0], nums[1], nums[2])
}

fn kinds_at(f: &[serde_json::Value], path: &str) -> Vec<String> {
    f.iter()
        .filter(|x| x["path"] == path)
        .map(|x| x["kind"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn init_takes_package_md5s_from_the_scans_read_with_the_same_verdicts() {
    let t = root_with_one_tampered();
    let o = t.run(&["--format", "json", "init"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let f = json_lines(&o.stdout);
    let edited = format!("/{MA}/libedit.so.1");
    let intact = format!("/{MA}/libsame.so.1");
    assert!(
        find(&f, "modified_vs_package", &edited).is_some(),
        "{:?}\n{err}",
        kinds_at(&f, &edited)
    );
    assert!(kinds_at(&f, &intact).is_empty(), "{f:?}");
    // Both packaged MD5s came with the scan: no second read.
    let (_, computed, from_scan) = provenance_counts(&err);
    assert_eq!((computed, from_scan), (2, 2), "{err}");

    // A later check whose files changed reads them once too: the paths
    // that want an MD5 come from the index the generation kept (the
    // database unchanged), and the verdict is the same.
    t.compile_so(
        &format!("{MA}/libsame.so.1"),
        "libsame.so.1",
        "int f(void){return 98;}",
    );
    let o = t.run(&["--format", "json", "check"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let f = json_lines(&o.stdout);
    assert!(find(&f, "modified_vs_package", &intact).is_some(), "{err}");
    let (_, computed, from_scan) = provenance_counts(&err);
    assert_eq!((computed, from_scan), (1, 1), "{err}");
}

#[test]
fn audit_and_paranoid_check_agree_with_init() {
    let t = root_with_one_tampered();
    t.init();
    let edited = format!("/{MA}/libedit.so.1");
    for args in [
        &["--format", "json", "audit"][..],
        &["--format", "json", "check", "--paranoid"][..],
    ] {
        let o = t.run(args);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        let f = json_lines(&o.stdout);
        assert!(
            find(&f, "modified_vs_package", &edited).is_some(),
            "{args:?}: {:?}\n{err}",
            kinds_at(&f, &edited)
        );
        let (_, computed, from_scan) = provenance_counts(&err);
        assert_eq!(computed, from_scan, "{args:?}: {err}");
    }
}

#[test]
fn an_unchanged_check_reads_nothing_for_provenance() {
    let t = root_with_one_tampered();
    t.init();
    let o = t.run(&["--format", "json", "check"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let f = json_lines(&o.stdout);
    // The standing finding stays (from the cached MD5), nothing is read.
    assert!(find(&f, "modified_vs_package", &format!("/{MA}/libedit.so.1")).is_some());
    let (_, computed, from_scan) = provenance_counts(&err);
    assert_eq!((computed, from_scan), (0, 0), "{err}");
}

#[test]
fn bench_prints_the_md5_lane_line() {
    let t = TestRoot::new();
    let o = t.run(&[
        "bench",
        "--runs",
        "1",
        "--threads",
        "1",
        t.path("usr/lib").to_str().unwrap(),
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out
        .lines()
        .find(|l| l.starts_with("md5: "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.starts_with("md5: single-stream ")
            && line.contains(" GB/s per core, multi-buffer (16 lanes, "),
        "{line}"
    );
    assert!(line.ends_with(" GB/s per core"), "{line}");
}
