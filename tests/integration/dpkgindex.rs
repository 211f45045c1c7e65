//! The dpkg index: loaded with less work and less memory, judged the same.
//!
//! The databases here are dpkg's own formats written out (`status`,
//! `info/NAME.md5sums`, `info/NAME.list`, `diversions`) for hundreds of
//! packages, more than one parsing batch, so that the per-thread caches of
//! resolved directories all take part; the libraries are gcc-built.

use md5::Digest;

use crate::provenance::dpkg_root;
use crate::util::{find, json_lines, kinds, TestRoot};

const MA: &str = "usr/lib/x86_64-linux-gnu";

/// One package in the fixture's dpkg database: `files` are (path as dpkg
/// lists it, without the leading slash; content on disk at `at`, or none),
/// and `list` what its `.list` names besides.
pub(crate) struct Pkg<'a> {
    pub(crate) name: &'a str,
    pub(crate) version: &'a str,
    pub(crate) files: Vec<(String, Option<Vec<u8>>)>,
    pub(crate) list: Vec<String>,
}

fn md5_hex(b: &[u8]) -> String {
    md5::Md5::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// Writes `pkgs` into the database (status stanzas appended) with the
/// md5sums of the contents given.
pub(crate) fn register(t: &TestRoot, pkgs: &[Pkg]) {
    let mut status = std::fs::read_to_string(t.path("var/lib/dpkg/status")).unwrap_or_default();
    for p in pkgs {
        status.push_str(&format!(
            "Package: {}\nStatus: install ok installed\nArchitecture: amd64\nVersion: {}\nDescription: fixture\n\n",
            p.name, p.version
        ));
        let mut sums = String::new();
        let mut list = String::from("/.\n");
        for (path, content) in &p.files {
            let digest = match content {
                Some(c) => md5_hex(c),
                None => "0123456789abcdef0123456789abcdef".to_string(),
            };
            sums.push_str(&format!("{digest}  {path}\n"));
            list.push_str(&format!("/{path}\n"));
        }
        for l in &p.list {
            list.push_str(&format!("/{l}\n"));
        }
        t.write(&format!("var/lib/dpkg/info/{}.md5sums", p.name), sums);
        t.write(&format!("var/lib/dpkg/info/{}.list", p.name), list);
    }
    t.write("var/lib/dpkg/status", status);
}

/// A gcc-built library, made distinct per `i` by bytes after its end (the
/// ELF parser reads what the headers name; the digests see every byte).
pub(crate) fn library(t: &TestRoot, i: usize) -> Vec<u8> {
    let base = t.path("base.so");
    if !base.exists() {
        t.compile_so("base.so", "libbase.so", "int f(void){return 1;}");
    }
    let mut b = std::fs::read(base).unwrap();
    b.extend_from_slice(format!("\nvariant {i}\n").as_bytes());
    b
}

fn init_json(t: &TestRoot) -> (Vec<serde_json::Value>, String) {
    let o = t.run_ok(&["--format", "json", "init"]);
    (
        json_lines(&o.stdout),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn check(t: &TestRoot) -> (i32, Vec<serde_json::Value>) {
    t.check_json()
}

/// Packages listing their files through the merged-/usr symlinks (`/lib`,
/// `/lib64`) and directly, a nested directory symlink, and two packages
/// shipping the same file name in two directories of the same name
/// (`x86_64-linux-gnu/sub` and `lib64/sub`): each file keeps its own owner,
/// however many packages (parsed in batches, on several threads) come
/// between them.
#[test]
fn owners_stay_apart_through_symlinked_and_same_named_directories() {
    let t = TestRoot::debian();
    dpkg_root(&t);
    std::fs::create_dir_all(t.path(&format!("{MA}/sub"))).unwrap();
    std::fs::create_dir_all(t.path("usr/lib64/sub")).unwrap();
    t.link("sub", &format!("{MA}/alias"));
    let mut pkgs = Vec::new();
    let mut n = 0;
    let mut put = |rel: &str| -> Vec<u8> {
        n += 1;
        let b = library(&t, n);
        t.write(rel, &b);
        b
    };
    let mut names = Vec::new();
    for i in 0..160 {
        names.push((
            format!("libmu{i}"),
            format!("lib/x86_64-linux-gnu/libmu{i}.so.1"),
            format!("{MA}/libmu{i}.so.1"),
        ));
        names.push((
            format!("libre{i}"),
            format!("{MA}/libre{i}.so.1"),
            format!("{MA}/libre{i}.so.1"),
        ));
    }
    names.push((
        "libsa".into(),
        format!("{MA}/sub/libsame.so.1"),
        format!("{MA}/sub/libsame.so.1"),
    ));
    names.push((
        "libsb".into(),
        "lib64/sub/libsame.so.1".into(),
        "usr/lib64/sub/libsame.so.1".into(),
    ));
    names.push((
        "libal".into(),
        "lib/x86_64-linux-gnu/alias/libal.so.1".into(),
        format!("{MA}/sub/libal.so.1"),
    ));
    let contents: Vec<Vec<u8>> = names.iter().map(|(_, _, disk)| put(disk)).collect();
    for ((name, listed, _), content) in names.iter().zip(&contents) {
        pkgs.push(Pkg {
            name,
            version: "1.0",
            files: vec![(listed.clone(), Some(content.clone()))],
            list: vec!["lib".into(), "lib/x86_64-linux-gnu".into()],
        });
    }
    register(&t, &pkgs);

    let (f, err) = init_json(&t);
    assert!(err.contains("dpkg database: 323 packages"), "{err}");
    for (_, _, disk) in &names {
        let p = format!("/{disk}");
        assert!(
            f.iter().all(|x| x["path"] != p.as_str()),
            "packaged {p} has findings: {:?}",
            kinds(&f)
        );
    }
    assert!(
        find(&f, "unpackaged", &format!("/{MA}/libfoo.so.1.2.3")).is_some(),
        "{:?}",
        kinds(&f)
    );

    // An edit of one of the two same-named files is held to its own
    // package's digest, and only that one.
    t.write("usr/lib64/sub/libsame.so.1", library(&t, 9999));
    t.write(&format!("{MA}/libmu77.so.1"), library(&t, 9998));
    let (_, f) = check(&t);
    let m = find(&f, "modified_vs_package", "/usr/lib64/sub/libsame.so.1")
        .unwrap_or_else(|| panic!("{:?}", kinds(&f)));
    assert!(m["detail"].as_str().unwrap().contains("libsb 1.0"), "{m}");
    let m = find(&f, "modified_vs_package", &format!("/{MA}/libmu77.so.1"))
        .unwrap_or_else(|| panic!("{:?}", kinds(&f)));
    assert!(m["detail"].as_str().unwrap().contains("libmu77 1.0"), "{m}");
    assert!(find(
        &f,
        "modified_vs_package",
        &format!("/{MA}/sub/libsame.so.1")
    )
    .is_none());
    let flagged: Vec<_> = f
        .iter()
        .filter(|x| x["kind"] == "modified_vs_package")
        .collect();
    assert_eq!(flagged.len(), 2, "{:?}", kinds(&f));
}

/// A package whose md5sums name a file that is not there, paths spelled
/// with `./` and `//`, a diverted library, and a package without md5sums:
/// what exists is judged against the right package, the missing file is
/// no finding, the diverted name's replacement is nobody's.
#[test]
fn missing_odd_and_diverted_paths() {
    let t = TestRoot::debian();
    dpkg_root(&t);
    let dot = library(&t, 1);
    let dbl = library(&t, 2);
    let real = library(&t, 3);
    let local = library(&t, 4);
    let nosums = library(&t, 5);
    t.write(&format!("{MA}/libdot.so.1"), &dot);
    t.write(&format!("{MA}/libdbl.so.1"), &dbl);
    // libdv's file moved aside by a local diversion; another file in its
    // place.
    t.write(&format!("{MA}/libdv.so.1.real"), &real);
    t.write(&format!("{MA}/libdv.so.1"), &local);
    t.write(&format!("{MA}/libnosums.so.1"), &nosums);
    register(
        &t,
        &[
            Pkg {
                name: "libodd",
                version: "2",
                files: vec![
                    ("lib/x86_64-linux-gnu/libgone.so.1".into(), None),
                    (
                        "usr/lib/x86_64-linux-gnu/./libdot.so.1".into(),
                        Some(dot.clone()),
                    ),
                    (
                        "usr//lib/x86_64-linux-gnu/libdbl.so.1".into(),
                        Some(dbl.clone()),
                    ),
                ],
                list: vec![],
            },
            Pkg {
                name: "libdv",
                version: "3",
                files: vec![(format!("{MA}/libdv.so.1"), Some(real.clone()))],
                list: vec![],
            },
        ],
    );
    // A package with a `.list` only: owned, no digest to hold it to.
    let mut status = std::fs::read_to_string(t.path("var/lib/dpkg/status")).unwrap();
    status.push_str("Package: libnosums\nStatus: install ok installed\nVersion: 4\n\n");
    t.write("var/lib/dpkg/status", status);
    t.write(
        "var/lib/dpkg/info/libnosums.list",
        "/.\n/lib\n/lib/x86_64-linux-gnu/libnosums.so.1\n",
    );
    t.write(
        "var/lib/dpkg/diversions",
        format!("/{MA}/libdv.so.1\n/{MA}/libdv.so.1.real\n:\n"),
    );

    let (f, err) = init_json(&t);
    assert!(err.contains("dpkg database: 3 packages"), "{err}");
    for p in [
        "libdot.so.1",
        "libdbl.so.1",
        "libdv.so.1.real",
        "libnosums.so.1",
    ] {
        let p = format!("/{MA}/{p}");
        assert!(
            f.iter().all(|x| x["path"] != p.as_str()),
            "{p}: {:?}",
            kinds(&f)
        );
    }
    assert!(f
        .iter()
        .all(|x| !x["path"].as_str().unwrap_or("").contains("libgone")));
    assert!(
        find(&f, "unpackaged", &format!("/{MA}/libdv.so.1")).is_some(),
        "{:?}",
        kinds(&f)
    );

    // Unchanged: nothing new. Edited: held to the package's digest where
    // it has one.
    let (code, f) = check(&t);
    assert!(
        f.iter().all(|x| x["kind"] == "unpackaged"),
        "{code} {:?}",
        kinds(&f)
    );
    t.write(&format!("{MA}/libdot.so.1"), library(&t, 11));
    t.write(&format!("{MA}/libdv.so.1.real"), library(&t, 12));
    let (_, f) = check(&t);
    for (p, pkg) in [("libdot.so.1", "libodd 2"), ("libdv.so.1.real", "libdv 3")] {
        let m = find(&f, "modified_vs_package", &format!("/{MA}/{p}"))
            .unwrap_or_else(|| panic!("{p}: {:?}", kinds(&f)));
        assert!(m["detail"].as_str().unwrap().contains(pkg), "{m}");
    }
}

/// The owners `init` records (found while the judges run) are what a
/// later check needs to tell a library that left with its package from
/// one deleted by hand, and an upgrade still reads as one.
#[test]
fn removal_with_the_package_and_an_upgrade_read_as_package_updates() {
    let t = TestRoot::debian();
    dpkg_root(&t);
    let a = library(&t, 1);
    let b = library(&t, 2);
    let c = library(&t, 3);
    t.write(&format!("{MA}/libleave.so.1"), &a);
    t.write(&format!("{MA}/libstay.so.1"), &b);
    t.write(&format!("{MA}/libkeep.so.1"), &c);
    let pkg = |name: &'static str, version: &'static str, rel: &str, content: &[u8]| Pkg {
        name,
        version,
        files: vec![(
            format!("lib/x86_64-linux-gnu/{rel}"),
            Some(content.to_vec()),
        )],
        list: vec![],
    };
    register(
        &t,
        &[
            pkg("libleave1", "1", "libleave.so.1", &a),
            pkg("libstay1", "1", "libstay.so.1", &b),
            pkg("libkeep1", "1", "libkeep.so.1", &c),
        ],
    );
    t.init();
    // libleave1 removed (its stanza and info files gone with the file),
    // libstay1 upgraded, libkeep.so.1 deleted by hand.
    std::fs::remove_file(t.path(&format!("{MA}/libleave.so.1"))).unwrap();
    std::fs::remove_file(t.path("var/lib/dpkg/info/libleave1.md5sums")).unwrap();
    std::fs::remove_file(t.path("var/lib/dpkg/info/libleave1.list")).unwrap();
    std::fs::remove_file(t.path(&format!("{MA}/libkeep.so.1"))).unwrap();
    let b2 = library(&t, 20);
    t.write(&format!("{MA}/libstay.so.1"), &b2);
    t.write("var/lib/dpkg/status", "");
    register(
        &t,
        &[
            pkg("libstay1", "2", "libstay.so.1", &b2),
            pkg("libkeep1", "1", "libkeep.so.1", &c),
        ],
    );
    let (code, f) = check(&t);
    let gone = find(&f, "package_update", &format!("/{MA}/libleave.so.1"))
        .unwrap_or_else(|| panic!("{:?}", kinds(&f)));
    assert!(
        gone["detail"]
            .as_str()
            .unwrap()
            .contains("left with its package"),
        "{gone}"
    );
    let up = find(&f, "package_update", &format!("/{MA}/libstay.so.1"))
        .unwrap_or_else(|| panic!("{:?}", kinds(&f)));
    assert!(up["detail"].as_str().unwrap().contains("1 -> 2"), "{up}");
    assert!(
        find(&f, "removed", &format!("/{MA}/libkeep.so.1")).is_some(),
        "{:?}",
        kinds(&f)
    );
    assert_ne!(code, 0);
}
