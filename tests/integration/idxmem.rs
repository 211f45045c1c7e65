//! The package index `init` holds through the walk and the judges: kept
//! small (claims no scanned root can hold are left out) without changing
//! any answer, in this run or in the `check`s that use the stored index.

use crate::dpkgindex::{library, register, Pkg};
use crate::provenance::dpkg_root;
use crate::util::{find, json_lines, kinds, TestRoot};

const MA: &str = "usr/lib/x86_64-linux-gnu";

/// A package claiming files inside the scanned roots (through merged-/usr
/// and directly, a symlink its `.list` names) and outside them (docs, an
/// executable, a library under `/opt` that no search path names): the
/// claims inside are judged exactly as when every claim was kept (a match
/// is no finding, an edit is `modified_vs_package` naming the package),
/// the owners recorded serve a later removal, and the unchanged check
/// takes the index the generation stored.
#[test]
fn claims_inside_the_roots_are_judged_as_before_those_outside_left_out() {
    let t = TestRoot::debian();
    dpkg_root(&t);
    let good = library(&t, 1);
    let bad = library(&t, 2);
    let gone = library(&t, 3);
    let out = library(&t, 4);
    t.write(&format!("{MA}/libmixin.so.1"), &good);
    t.write(&format!("{MA}/libmixbad.so.1"), library(&t, 20));
    t.write(&format!("{MA}/libmixgone.so.1"), &gone);
    t.link("libmixin.so.1", &format!("{MA}/libmixin.so"));
    t.write("opt/mix/lib/libmixout.so.1", library(&t, 40));
    t.write("usr/share/doc/libmix/copyright", b"c");
    t.write("usr/bin/mixtool", b"t");
    register(
        &t,
        &[
            Pkg {
                name: "libmix",
                version: "1.0",
                files: vec![
                    ("lib/x86_64-linux-gnu/libmixin.so.1".into(), Some(good)),
                    (format!("{MA}/libmixbad.so.1"), Some(bad)),
                    ("opt/mix/lib/libmixout.so.1".into(), Some(out)),
                    ("usr/share/doc/libmix/copyright".into(), None),
                    ("usr/bin/mixtool".into(), None),
                ],
                list: vec![format!("{MA}/libmixin.so")],
            },
            Pkg {
                name: "libmixgone",
                version: "1.0",
                files: vec![(format!("{MA}/libmixgone.so.1"), Some(gone))],
                list: vec![],
            },
        ],
    );
    let o = t.run_ok(&["--format", "json", "init"]);
    let f = json_lines(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    // Every line of the md5sums is counted, kept or not.
    assert!(err.contains("dpkg database: 2 packages, 6 files"), "{err}");
    let p = |n: &str| format!("/{MA}/{n}");
    assert!(
        f.iter().all(|x| x["path"] != p("libmixin.so.1").as_str()),
        "{:?}",
        kinds(&f)
    );
    let m = find(&f, "modified_vs_package", &p("libmixbad.so.1"))
        .unwrap_or_else(|| panic!("{:?}", kinds(&f)));
    assert!(m["detail"].as_str().unwrap().contains("libmix 1.0"), "{m}");
    assert!(
        find(&f, "unpackaged", &p("libfoo.so.1.2.3")).is_some(),
        "{:?}",
        kinds(&f)
    );
    assert!(f
        .iter()
        .all(|x| !x["path"].as_str().unwrap_or("").starts_with("/opt/")));

    // Unchanged: the stored index stands in for the databases.
    let o = t.run(&["check"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("its index read from the baseline"), "{err}");

    // libmixgone removed with its file: the owner init recorded says so.
    std::fs::remove_file(t.path(&p("libmixgone.so.1")[1..])).unwrap();
    std::fs::remove_file(t.path("var/lib/dpkg/info/libmixgone.md5sums")).unwrap();
    std::fs::remove_file(t.path("var/lib/dpkg/info/libmixgone.list")).unwrap();
    let status = std::fs::read_to_string(t.path("var/lib/dpkg/status")).unwrap();
    let kept: Vec<&str> = status
        .split("\n\n")
        .filter(|s| !s.contains("Package: libmixgone\n"))
        .collect();
    t.write("var/lib/dpkg/status", kept.join("\n\n"));
    let (_, f) = t.check_json();
    let g = find(&f, "package_update", &p("libmixgone.so.1"))
        .unwrap_or_else(|| panic!("{:?}", kinds(&f)));
    assert!(
        g["detail"]
            .as_str()
            .unwrap()
            .contains("left with its package"),
        "{g}"
    );
    assert!(find(&f, "modified_vs_package", &p("libmixbad.so.1")).is_some());
}

/// `init` without a `paths` dir, then a `check` whose config walks one:
/// the index stored with the generation was cut to the roots `init`
/// walked, so it must not stand in for this check even though every file
/// name in the new dir is one it kept (the same names live under
/// `/usr/lib`): the new dir's packaged files are judged against their
/// packages (a match is only `added`, an edit `modified_vs_package`).
#[test]
fn a_check_walking_a_paths_dir_the_init_did_not_judges_its_packaged_files() {
    let t = TestRoot::debian();
    dpkg_root(&t);
    let mk = |i| library(&t, i);
    let (v_here, w_here, v_opt, w_opt) = (mk(1), mk(2), mk(3), mk(4));
    t.write(&format!("{MA}/libv.so.1"), &v_here);
    t.write(&format!("{MA}/libw.so.1"), &w_here);
    t.write("opt/vendor/lib/libv.so.1", &v_opt);
    t.write("opt/vendor/lib/libw.so.1", mk(40));
    register(
        &t,
        &[
            Pkg {
                name: "libvw",
                version: "1",
                files: vec![
                    (format!("{MA}/libv.so.1"), Some(v_here)),
                    (format!("{MA}/libw.so.1"), Some(w_here)),
                ],
                list: vec![],
            },
            Pkg {
                name: "vendor",
                version: "7",
                files: vec![
                    ("opt/vendor/lib/libv.so.1".into(), Some(v_opt)),
                    ("opt/vendor/lib/libw.so.1".into(), Some(w_opt)),
                ],
                list: vec![],
            },
        ],
    );
    t.init();
    t.write("etc/lw.toml", "paths = [\"/opt/vendor/lib\"]\n");
    let cfg = t.path("etc/lw.toml");
    let cfg = cfg.to_str().unwrap();
    let o = t.run(&["--config", cfg, "--format", "json", "check"]);
    let f = json_lines(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("its index read from the baseline"), "{err}");
    let w = find(&f, "modified_vs_package", "/opt/vendor/lib/libw.so.1")
        .unwrap_or_else(|| panic!("{:?}", kinds(&f)));
    assert!(w["detail"].as_str().unwrap().contains("vendor 7"), "{w}");
    let of = |f: &[serde_json::Value], path: &str| -> Vec<String> {
        f.iter()
            .filter(|x| x["path"] == path)
            .map(|x| x["kind"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(
        of(&f, "/opt/vendor/lib/libv.so.1"),
        ["added"],
        "{:?}",
        kinds(&f)
    );
    assert!(
        of(&f, &format!("/{MA}/libv.so.1")).is_empty(),
        "{:?}",
        kinds(&f)
    );
    assert!(
        of(&f, &format!("/{MA}/libw.so.1")).is_empty(),
        "{:?}",
        kinds(&f)
    );

    // Accepted with the dir: the generation's index now answers for it,
    // and judges the same.
    t.run(&["--config", cfg, "update"]);
    let o = t.run(&["--config", cfg, "--format", "json", "check"]);
    let f = json_lines(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("its index read from the baseline"), "{err}");
    let w = find(&f, "modified_vs_package", "/opt/vendor/lib/libw.so.1")
        .unwrap_or_else(|| panic!("{:?}", kinds(&f)));
    assert!(w["detail"].as_str().unwrap().contains("vendor 7"), "{w}");
    assert!(
        of(&f, "/opt/vendor/lib/libv.so.1").is_empty(),
        "{:?}",
        kinds(&f)
    );
}
