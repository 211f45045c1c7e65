//! Provenance and the walk's audits on an image's in-memory view: real
//! images built with umoci from a fixture root holding a real dpkg
//! database (packages built with dpkg-deb, installed with `dpkg --root`)
//! and gcc-built libraries. Layer 1 is the root as installed; layer 2
//! edits a packaged library, adds an unowned one and one whose RUNPATH
//! points into `/tmp`, and makes a search dir world-writable. `audit
//! --image` and `check --image` must say what `audit --root` and `check
//! --root` say of the same tree.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use crate::packagedb::{image_tools, listing};
use crate::provenance::{dpkg_root, install, sh};
use serde_json::Value;

use crate::util::{find, image_run, json_lines, kinds, TestRoot};

const MA: &str = "usr/lib/x86_64-linux-gnu";

/// An OCI layout at `dir/img` (tag `t`) whose rootfs is kept in step with
/// the fixture's root: each [`Layers::layer`] copies the root into the
/// bundle and repacks it as one more layer.
pub(crate) struct Layers {
    pub(crate) img: PathBuf,
    bundle: PathBuf,
}

impl Layers {
    pub(crate) fn new(t: &TestRoot) -> Layers {
        let dir = t.dir.path().join("image");
        std::fs::create_dir_all(&dir).unwrap();
        let img = dir.join("img");
        let bundle = dir.join("bundle");
        let l = Layers { img, bundle };
        sh(Command::new("umoci").args(["init", "--layout"]).arg(&l.img));
        sh(Command::new("umoci").args(["new", "--image", &l.layout()]));
        sh(Command::new("umoci")
            .args(["unpack", "--rootless", "--image", &l.layout()])
            .arg(&l.bundle));
        l
    }

    fn layout(&self) -> String {
        format!("{}:t", self.img.display())
    }

    /// The fixture's root as it is now, as the next layer.
    pub(crate) fn layer(&self, t: &TestRoot, first: bool) {
        let rootfs = self.bundle.join("rootfs");
        std::fs::remove_dir_all(&rootfs).unwrap();
        // A plain copy (`cp -a`, never hard links): modes, links, times.
        sh(Command::new("cp").arg("-a").arg(t.root()).arg(&rootfs));
        let mut c = Command::new("umoci");
        c.arg("repack");
        if first {
            c.arg("--refresh-bundle");
        }
        sh(c.args(["--image", &self.layout()]).arg(&self.bundle));
    }
}

/// `libwarden --root ROOT --db DB --format json ARGS` of the fixture.
fn host_run(t: &TestRoot, args: &[&str]) -> (i32, Vec<serde_json::Value>, String) {
    let mut a = vec!["--format", "json"];
    a.extend_from_slice(args);
    let o = t.run(&a);
    (
        o.status.code().unwrap_or(-1),
        json_lines(&o.stdout),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn set(f: &[serde_json::Value]) -> BTreeSet<(String, String)> {
    kinds(f).into_iter().collect()
}

/// A root with a dpkg database owning one library: Debian-like (its
/// loader and libfoo, unowned), or with nothing else (`clean`).
fn packaged_root(clean: bool) -> TestRoot {
    let t = if clean {
        TestRoot::new()
    } else {
        TestRoot::debian()
    };
    dpkg_root(&t);
    install(&t, "libpkg1", "1.0", &[(&format!("{MA}/libpkg.so.1"), 81)]);
    t
}

/// Layer 2's changes, made in the fixture's root.
fn tamper(t: &TestRoot) {
    // The packaged library rebuilt: no longer what its package shipped.
    let lib = t.path(&format!("{MA}/libpkg.so.1"));
    let src = t.dir.path().join("edited.c");
    std::fs::write(&src, "int f(void){return 99;}\n").unwrap();
    std::fs::remove_file(&lib).unwrap();
    sh(Command::new("gcc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&src));
    // A library no package owns.
    t.compile_so(
        &format!("{MA}/libextra.so.1"),
        "libextra.so.1",
        "int extra(void){return 2;}",
    );
    // A library whose RUNPATH is a world-writable place.
    t.compile_so_with(
        &format!("{MA}/librun.so.1"),
        "librun.so.1",
        "int run(void){return 3;}",
        &["-Wl,--enable-new-dtags,-rpath,/tmp/evil"],
    );
    // A search dir anyone can write to.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        t.path("usr/local/lib"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
}

fn no_dpkg_tools() -> bool {
    let ok = Command::new("dpkg-deb")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("\n*** SKIPPED image judge test: needs dpkg-deb ***\n");
    }
    !ok
}

#[test]
fn layer_two_edits_a_packaged_library_adds_unowned_runpath_and_writable_as_on_the_root() {
    if !image_tools() || no_dpkg_tools() {
        return;
    }
    let t = packaged_root(false);
    let l = Layers::new(&t);
    l.layer(&t, true);
    tamper(&t);
    l.layer(&t, false);
    let before = listing(&l.img);

    let (code, f, err) = image_run(&t, &l.img, &["audit"]);
    assert!(err.contains("2 layers"), "{err}");
    let lib = format!("/{MA}/libpkg.so.1");
    let m =
        find(&f, "modified_vs_package", &lib).unwrap_or_else(|| panic!("{:?}\n{err}", kinds(&f)));
    assert_eq!(m["layer"], 2, "{m}");
    assert_eq!(
        m["image"].as_str().map(|s| s.starts_with("sha256:")),
        Some(true)
    );
    let u = find(&f, "unpackaged", &format!("/{MA}/libextra.so.1"))
        .unwrap_or_else(|| panic!("{:?}", kinds(&f)));
    assert_eq!(u["layer"], 2);
    let r = find(&f, "rpath", &format!("/{MA}/librun.so.1"))
        .unwrap_or_else(|| panic!("{:?}", kinds(&f)));
    assert!(r["detail"].as_str().unwrap().contains("/tmp/evil"), "{r}");
    assert!(
        find(&f, "writable", "/usr/local/lib").is_some(),
        "{:?}",
        kinds(&f)
    );
    assert!(err.contains("package digests (md5)"), "{err}");

    // The same tree as --root: the same findings.
    let (hcode, hf, herr) = host_run(&t, &["audit"]);
    assert_eq!(
        set(&f),
        set(&hf),
        "image vs root\nimage: {err}\nroot: {herr}"
    );
    assert_eq!(code, hcode, "{:?}", kinds(&f));
    assert_eq!(listing(&l.img), before, "reading wrote beside the image");
}

#[test]
fn a_clean_packaged_image_is_quiet_for_audit_init_and_check_as_its_root_is() {
    if !image_tools() || no_dpkg_tools() {
        return;
    }
    let t = packaged_root(true);
    let l = Layers::new(&t);
    l.layer(&t, true);
    let (code, f, err) = image_run(&t, &l.img, &["audit"]);
    let (hcode, hf, herr) = host_run(&t, &["audit"]);
    assert_eq!(set(&f), set(&hf), "image: {err}\nroot: {herr}");
    assert_eq!((code, f.len()), (0, 0), "{:?}\n{err}", kinds(&f));
    assert_eq!(hcode, 0);
    // Provenance did run: the package's library was judged and matched.
    assert!(err.contains("libraries judged"), "{err}");

    let (code, f, err) = image_run(&t, &l.img, &["--name", "v1", "init"]);
    assert_eq!(code, 0, "{:?} {err}", kinds(&f));
    let (code, f, err) = image_run(&t, &l.img, &["--name", "v1", "check"]);
    assert_eq!((code, f.len()), (0, 0), "{:?}\n{err}", kinds(&f));

    // The same image with layer 2 against v1's baseline: the diff and
    // provenance of a host's check.
    tamper(&t);
    l.layer(&t, false);
    let (code, f, err) = image_run(&t, &l.img, &["--name", "v1", "check"]);
    let lib = format!("/{MA}/libpkg.so.1");
    assert!(
        find(&f, "content", &lib).is_some(),
        "{:?}\n{err}",
        kinds(&f)
    );
    assert!(
        find(&f, "modified_vs_package", &lib).is_some(),
        "{:?}",
        kinds(&f)
    );
    assert!(
        find(&f, "added", &format!("/{MA}/libextra.so.1")).is_some(),
        "{:?}",
        kinds(&f)
    );
    assert!(find(&f, "rpath", &format!("/{MA}/librun.so.1")).is_some());
    assert_ne!(code, 0);
}

/// Exit code, JSON findings, stderr.
type Run = (i32, Vec<Value>, String);

/// `audit --image` of a two-layer image of `t` (layer 2 made by
/// `change`) and `audit --root` of the same tree: both, findings and exit.
fn image_and_root(t: &TestRoot, change: impl FnOnce(&TestRoot)) -> (Run, (i32, Vec<Value>)) {
    let l = Layers::new(t);
    l.layer(t, true);
    change(t);
    l.layer(t, false);
    let img = image_run(t, &l.img, &["audit"]);
    let (hcode, hf, _) = host_run(t, &["audit"]);
    (img, (hcode, hf))
}

#[test]
fn an_rpm_image_is_judged_against_its_rpmdb_sqlite_sha256() {
    if !image_tools() || !crate::packagedb::rpm_usable() {
        return;
    }
    let t = TestRoot::new();
    crate::packagedb::rpm_install(
        &t,
        "librp",
        "1.0",
        &[("usr/lib64/librpa.so.1", 1), ("usr/lib64/librpb.so.1", 2)],
    );
    let ((code, f, err), (hcode, hf)) = image_and_root(&t, |t| {
        t.compile_so(
            "usr/lib64/librpb.so.1",
            "librpb.so.1",
            "int g(void){return 7;}",
        );
        t.compile_so(
            "usr/lib64/libstray.so.1",
            "libstray.so.1",
            "int s(void){return 0;}",
        );
    });
    assert!(err.contains("rpm database: 1 packages"), "{err}");
    assert!(err.contains("package digests (sha256)"), "{err}");
    let m = find(&f, "modified_vs_package", "/usr/lib64/librpb.so.1")
        .unwrap_or_else(|| panic!("{:?}\n{err}", kinds(&f)));
    let detail = m["detail"].as_str().unwrap();
    assert!(
        detail.contains("librp.x86_64 1.0-1") && detail.contains("sha256"),
        "{detail}"
    );
    assert!(find(&f, "unpackaged", "/usr/lib64/libstray.so.1").is_some());
    assert!(
        f.iter().all(|x| x["path"] != "/usr/lib64/librpa.so.1"),
        "the untouched packaged library is vouched for: {:?}",
        kinds(&f)
    );
    assert_eq!(set(&f), set(&hf), "image vs root: {err}");
    assert_eq!(code, hcode);
    assert_eq!(code & 8, 8);
}

#[test]
fn an_apk_image_is_judged_against_its_installed_sha1() {
    if !image_tools() {
        return;
    }
    let t = TestRoot::new();
    t.write("etc/ld.so.conf", "");
    let a = "usr/lib/libapa.so.1";
    let b = "usr/lib/libapb.so.1";
    crate::packagedb::compile(&t, &t.path(a), 30);
    crate::packagedb::compile(&t, &t.path(b), 31);
    crate::packagedb::apk_db(&t, &[("libap", "1.0-r0", &[a, b])]);
    let ((code, f, err), (hcode, hf)) = image_and_root(&t, |t| {
        crate::packagedb::compile(t, &t.path(b), 99);
    });
    assert!(err.contains("apk database: 1 packages"), "{err}");
    let m = find(&f, "modified_vs_package", &format!("/{b}"))
        .unwrap_or_else(|| panic!("{:?}\n{err}", kinds(&f)));
    assert!(m["detail"].as_str().unwrap().contains("sha1"), "{m}");
    assert!(
        f.iter().all(|x| x["path"] != format!("/{a}")),
        "{:?}",
        kinds(&f)
    );
    assert_eq!(set(&f), set(&hf), "image vs root: {err}");
    assert_eq!(code, hcode);
}
