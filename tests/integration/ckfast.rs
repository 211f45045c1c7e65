//! An unchanged `check` and one after changes: the same findings with less work.

use std::process::Command;

use crate::initcpu::{opens, traced};
use crate::provenance::{dpkg, dpkg_root, install};
use crate::util::{find, json_lines, kinds, TestRoot};

const MA: &str = "usr/lib/x86_64-linux-gnu";

fn p(n: &str) -> String {
    format!("/{MA}/{n}")
}

/// The opens of the live generation's data file (`gen-N/db`) in a trace:
/// one per load of the generation.
fn generation_reads(trace: &str) -> usize {
    trace
        .lines()
        .filter(|l| l.contains("open") && !l.contains("ENOENT") && !l.contains("O_PATH"))
        .filter_map(|l| l.split('"').nth(1))
        .filter(|path| {
            path.ends_with("/db")
                && path
                    .rsplit('/')
                    .nth(1)
                    .is_some_and(|d| d.starts_with("gen-"))
        })
        .count()
}

fn have_tools() -> bool {
    for tool in ["strace", "dpkg", "gcc"] {
        if Command::new(tool).arg("--version").output().is_err() {
            eprintln!("SKIPPED: {tool} not installed (.ci/deps has it)");
            return false;
        }
    }
    true
}

/// The package owners a generation records are left in the store by a
/// `check`: an unchanged host and a file deleted by hand (no package
/// changed) load the generation once; a library removed with its package
/// has them read again (a second read of the same, verified generation),
/// and the removal is still explained by its package, as it was when the
/// owners were loaded with the records.
#[test]
fn owners_are_read_from_the_store_only_when_a_package_removal_needs_them() {
    if !have_tools() {
        return;
    }
    let t = TestRoot::debian();
    dpkg_root(&t);
    install(&t, "libone1", "1.0", &[(&format!("{MA}/libone.so.1"), 1)]);
    install(&t, "libtwo1", "2.0", &[(&format!("{MA}/libtwo.so.1"), 2)]);
    let o = t.run(&["init"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // Unchanged: one read of the generation, and its standing findings.
    let (o, trace) = traced(&t, &["check"]);
    assert_eq!(generation_reads(&trace), 1, "{trace}");
    let standing = json_lines(&o.stdout);
    assert!(
        find(&standing, "unpackaged", &p("libfoo.so.1.2.3")).is_some(),
        "{:?}",
        kinds(&standing)
    );
    // Nor is the package database read: the generation holds its index.
    assert_eq!(opens(&trace, "var/lib/dpkg/status"), 0, "{trace}");

    // An unpackaged library deleted by hand: no package changed, so no
    // owner is asked for.
    std::fs::remove_file(t.path(&format!("{MA}/libfoo.so.1.2.3"))).unwrap();
    let (o, trace) = traced(&t, &["check"]);
    let f = json_lines(&o.stdout);
    assert!(f.iter().any(|x| x["kind"] == "removed"), "{:?}", kinds(&f));
    assert_eq!(generation_reads(&trace), 1, "{trace}");
    let o = t.run(&["update"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // Removed with its package: the owners are read again, and explain it.
    dpkg(&t, &["-r", "libtwo1"]);
    assert!(!t.path(&format!("{MA}/libtwo.so.1")).exists());
    let (o, trace) = traced(&t, &["check"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(generation_reads(&trace), 2, "{trace}");
    let f = json_lines(&o.stdout);
    let up = find(&f, "package_update", &p("libtwo.so.1"))
        .unwrap_or_else(|| panic!("{:?}\n{err}", kinds(&f)));
    assert!(
        up["detail"].as_str().unwrap().contains("package removal"),
        "{up}"
    );
    assert!(
        find(&f, "removed", &p("libtwo.so.1")).is_none(),
        "{:?}",
        kinds(&f)
    );
    assert!(!err.contains("could not be read"), "{err}");
}

/// A check after changed libraries gives the same findings whichever order
/// the walk met them in: records shared with the baseline and the scan's
/// own (changed, new) are merged into one list sorted by path, which the
/// diff and every judge rely on.
#[test]
fn changed_new_and_removed_files_among_unchanged_ones_are_all_reported() {
    let t = TestRoot::debian();
    let base = format!("{MA}/many");
    for i in 0..40 {
        t.compile_so(
            &format!("{base}/lib{i:02}.so"),
            &format!("lib{i:02}.so"),
            &format!("int f{i}(void){{return {i};}}"),
        );
    }
    let o = t.run(&["init"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Changed (every seventh), removed (every eleventh), new between
    // them (names that sort among the old ones).
    for i in (0..40).step_by(7) {
        let f = t.path(&format!("{base}/lib{i:02}.so"));
        let mut bytes = std::fs::read(&f).unwrap();
        bytes.push(0);
        std::fs::write(&f, bytes).unwrap();
    }
    for i in (5..40).step_by(11) {
        std::fs::remove_file(t.path(&format!("{base}/lib{i:02}.so"))).unwrap();
    }
    for i in [3, 17, 38] {
        t.compile_so(
            &format!("{base}/lib{i:02}a.so"),
            &format!("lib{i:02}a.so"),
            &format!("int g{i}(void){{return {i};}}"),
        );
    }
    let (_, f) = t.check_json();
    let at = |kind: &str| -> Vec<String> {
        let mut v: Vec<String> = f
            .iter()
            .filter(|x| x["kind"] == kind)
            .filter_map(|x| x["path"].as_str())
            .filter(|p| p.contains("/many/"))
            .map(|p| p.rsplit('/').next().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        at("content"),
        ["lib00.so", "lib07.so", "lib14.so", "lib21.so", "lib28.so", "lib35.so"],
        "{:?}",
        kinds(&f)
    );
    assert_eq!(
        at("removed"),
        ["lib05.so", "lib16.so", "lib27.so", "lib38.so"]
    );
    assert_eq!(at("added"), ["lib03a.so", "lib17a.so", "lib38a.so"]);
}
