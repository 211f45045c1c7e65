//! Default init: one package index parse, full MD5 lanes.

use std::process::{Command, Output};

use crate::provenance::{dpkg, dpkg_root, install};
use crate::util::{find, json_lines, kinds, TestRoot};

const MA: &str = "usr/lib/x86_64-linux-gnu";

/// How many times the traced run opened a path ending in `suffix` to read
/// it (`O_PATH` descriptors only resolve and stat).
pub(crate) fn opens(trace: &str, suffix: &str) -> usize {
    trace
        .lines()
        .filter(|l| l.contains("open") && !l.contains("ENOENT") && !l.contains("O_PATH"))
        .filter(|l| l.split('"').nth(1).is_some_and(|p| p.ends_with(suffix)))
        .count()
}

/// `libwarden --root R --db D --format json ARGS` under strace: its
/// output and the trace of its opens.
pub(crate) fn traced(t: &TestRoot, args: &[&str]) -> (Output, String) {
    let log = t.dir.path().join("trace");
    let _ = std::fs::remove_file(&log);
    let o = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=open,openat,openat2", "-o"])
        .arg(&log)
        .arg(crate::util::bin())
        .arg("--root")
        .arg(t.root())
        .arg("--db")
        .arg(t.db())
        .args(["--format", "json"])
        .args(args)
        .env_remove("LD_PRELOAD")
        .output()
        .unwrap();
    let trace = std::fs::read_to_string(&log).unwrap();
    (o, trace)
}

/// `init` reads dpkg's database once (status, each package's md5sums and
/// list) and gets from that one read the paths whose MD5 the scan computes,
/// the index provenance judges with (a hand-edited packaged library is
/// `modified_vs_package` at once, an unpackaged one `unpackaged`), the
/// index the next check takes from the generation, and the owners the
/// generation records (a library that leaves with its package is a
/// `package_update`, which only a recorded owner explains).
#[test]
fn init_reads_the_package_database_once_for_digests_verdicts_and_owners() {
    if Command::new("strace").arg("-V").output().is_err() {
        eprintln!("SKIPPED: strace not installed (.ci/deps has it)");
        return;
    }
    let t = TestRoot::debian();
    dpkg_root(&t);
    install(
        &t,
        "libone1",
        "1.0",
        &[
            ("lib/x86_64-linux-gnu/libone.so.1", 1),
            ("lib/x86_64-linux-gnu/libedit.so.1", 2),
        ],
    );
    install(
        &t,
        "libtwo1",
        "2.0",
        &[("usr/lib/x86_64-linux-gnu/libtwo.so.1", 3)],
    );
    t.compile_so(
        &format!("{MA}/libedit.so.1"),
        "libedit.so.1",
        "int g(void){return 9;}",
    );
    let (o, trace) = traced(&t, &["init"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    for f in [
        "var/lib/dpkg/status",
        "info/libone1.md5sums",
        "info/libtwo1.md5sums",
        "info/libone1.list",
    ] {
        assert_eq!(opens(&trace, f), 1, "{f} opened once:\n{trace}");
    }
    let f = json_lines(&o.stdout);
    let p = |n: &str| format!("/{MA}/{n}");
    assert!(
        find(&f, "modified_vs_package", &p("libedit.so.1")).is_some(),
        "{:?}",
        kinds(&f)
    );
    assert!(
        find(&f, "unpackaged", &p("libfoo.so.1.2.3")).is_some(),
        "{:?}",
        kinds(&f)
    );
    for clean in ["libone.so.1", "libtwo.so.1"] {
        assert!(f.iter().all(|x| x["path"] != p(clean)), "{:?}", kinds(&f));
    }
    assert!(err.contains("dpkg database: 2 packages"), "{err}");

    // The next check judges with the index the generation kept.
    let o = t.run(&["--format", "json", "check"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("unchanged since the baseline"), "{err}");
    let f = json_lines(&o.stdout);
    assert!(
        find(&f, "modified_vs_package", &p("libedit.so.1")).is_some(),
        "{:?}",
        kinds(&f)
    );

    // Removed with its package: explained by the owner init recorded.
    dpkg(&t, &["-r", "libtwo1"]);
    assert!(!t.path(&format!("{MA}/libtwo.so.1")).exists());
    let (_, f) = t.check_json();
    let up =
        find(&f, "package_update", &p("libtwo.so.1")).unwrap_or_else(|| panic!("{:?}", kinds(&f)));
    assert!(
        up["detail"].as_str().unwrap().contains("package removal"),
        "{up}"
    );
}
