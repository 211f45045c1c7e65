//! init / check / update / paths against fixture roots.

use std::os::unix::fs::PermissionsExt;

use crate::util::*;

#[test]
fn unchanged_root_checks_clean_and_quiet() {
    let t = TestRoot::debian();
    t.init();
    let o = t.run(&["check"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        o.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no findings"), "summary: {err}");
}

#[test]
fn every_kind_of_change_is_reported() {
    let t = TestRoot::debian();
    t.compile_so(
        "usr/local/lib/libbar.so.1",
        "libbar.so.1",
        "int bar(void){return 2;}",
    );
    t.compile_so(
        "usr/local/lib/libgone.so.1",
        "libgone.so.1",
        "int gone(void){return 3;}",
    );
    t.link("libfoo.so.1.2.3", "usr/lib/x86_64-linux-gnu/libalias.so");
    t.init();

    // add, modify, remove, chmod, chown, retarget a symlink, hidden .x.so
    t.compile_so(
        "usr/lib/x86_64-linux-gnu/libnew.so.1",
        "libnew.so.1",
        "int n(void){return 4;}",
    );
    t.compile_so(
        "usr/local/lib/libbar.so.1",
        "libbar.so.1",
        "int bar(void){return 5;}",
    );
    std::fs::remove_file(t.path("usr/local/lib/libgone.so.1")).unwrap();
    std::fs::set_permissions(
        t.path("usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    std::fs::remove_file(t.path("usr/lib/x86_64-linux-gnu/libalias.so")).unwrap();
    t.link("libnew.so.1", "usr/lib/x86_64-linux-gnu/libalias.so");
    t.compile_so("usr/lib/.x.so", ".x.so", "int x(void){return 6;}");
    if is_root() {
        std::os::unix::fs::lchown(t.path("usr/local/lib"), Some(1234), None).unwrap();
    }

    let (code, f) = t.check_json();
    assert_eq!(code & 7, 7, "bits 1, 2 and 4 must be set: {code} {f:#?}");
    assert!(
        find(&f, "added", "/usr/lib/x86_64-linux-gnu/libnew.so.1").is_some(),
        "{f:#?}"
    );
    assert!(find(&f, "added", "/usr/lib/.x.so").is_some(), "{f:#?}");
    assert!(
        find(&f, "content", "/usr/local/lib/libbar.so.1").is_some(),
        "{f:#?}"
    );
    assert!(
        find(&f, "removed", "/usr/local/lib/libgone.so.1").is_some(),
        "{f:#?}"
    );
    let chmod = find(&f, "metadata", "/usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3").expect("chmod");
    assert_eq!(chmod["severity"], "high", "world-writable library: {chmod}");
    assert_eq!(chmod["before"]["mode"], "0755");
    assert_eq!(chmod["after"]["mode"], "0777");
    let link = find(&f, "link", "/usr/lib/x86_64-linux-gnu/libalias.so").expect("retarget");
    assert_eq!(link["after"]["target"], "libnew.so.1");
    if is_root() {
        let chown = find(&f, "metadata", "/usr/local/lib").expect("chown of a lib dir");
        assert_eq!(chown["after"]["uid"], 1234);
    }
    // Sorted by path.
    let paths: Vec<&str> = f.iter().map(|x| x["path"].as_str().unwrap()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted);
}
