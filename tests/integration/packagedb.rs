//! rpm and apk provenance: packages built with `rpmbuild` and installed
//! with `rpm --root` into the fixture root (sqlite backend), and an apk
//! `installed` database written from the documented format with the real
//! SHA-1 of real libraries. The same findings as dpkg's: an edited library
//! is `modified_vs_package`, an unowned one `unpackaged`, an upgrade a
//! `package_update`.

use std::path::Path;
use std::process::Command;

use crate::provenance::sh;
use crate::util::{find, image_run, json_lines, kinds, TestRoot};

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// rpm and rpmbuild present (Debian's `rpm` package, in `.ci/deps`), and
/// root (rpm --root chowns what it installs).
pub(crate) fn rpm_usable() -> bool {
    let root = unsafe { libc::geteuid() } == 0;
    if !have("rpm") || !have("rpmbuild") || !root {
        eprintln!(
            "\n*** SKIPPED rpm test: needs rpm and rpmbuild (Debian package rpm) and root ***\n"
        );
        return false;
    }
    true
}

fn check(t: &TestRoot) -> (i32, Vec<serde_json::Value>, String) {
    let o = t.run(&["--format", "json", "check"]);
    (
        o.status.code().unwrap_or(-1),
        json_lines(&o.stdout),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Compiles `int f(void){return n;}` into `out`.
pub(crate) fn compile(t: &TestRoot, out: &Path, n: i32) {
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let src = t.dir.path().join(format!("r{n}.c"));
    std::fs::write(&src, format!("int f(void){{return {n};}}\n")).unwrap();
    sh(Command::new("gcc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(out)
        .arg(&src));
}

/// Builds an rpm `name-version-1.x86_64` holding the libraries (paths
/// relative to `/`, each compiled from `int f(void){return N;}`) with
/// rpmbuild, and installs (or upgrades to) it with `rpm --root`.
pub(crate) fn rpm_install(t: &TestRoot, name: &str, version: &str, libs: &[(&str, i32)]) {
    let work = t.dir.path().join(format!("rpm-{name}-{version}"));
    let stage = work.join("stage");
    let mut files = String::new();
    for (rel, n) in libs {
        compile(t, &stage.join(rel), *n);
        files.push_str(&format!("/{rel}\n"));
    }
    let spec = work.join("p.spec");
    std::fs::write(
        &spec,
        format!(
            "Name: {name}\nVersion: {version}\nRelease: 1\nSummary: fixture\nLicense: MIT\n\
             BuildArch: x86_64\n%description\nfixture\n%install\ncp -a {}/. %{{buildroot}}/\n\
             %files\n{files}",
            stage.display()
        ),
    )
    .unwrap();
    sh(Command::new("rpmbuild")
        .arg("-bb")
        .arg("--define")
        .arg(format!("_topdir {}", work.join("top").display()))
        // No stripping, no debuginfo, no build-id links: the libraries
        // are installed exactly as compiled.
        .args(["--define", "__os_install_post %{nil}"])
        .args(["--define", "debug_package %{nil}"])
        .args(["--define", "_build_id_links none"])
        .arg(&spec));
    let rpm = work
        .join("top/RPMS/x86_64")
        .join(format!("{name}-{version}-1.x86_64.rpm"));
    sh(Command::new("rpm")
        .arg("--root")
        .arg(t.root())
        .args(["--dbpath", "/var/lib/rpm"])
        .args(["--define", "_db_backend sqlite"])
        .args(["--nodeps", "--noscripts", "-U"])
        .arg(&rpm));
}

/// The names in `var/lib/rpm`, sorted.
fn rpmdb_listing(t: &TestRoot) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(t.path("var/lib/rpm"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn rpm_owned_libraries_are_packaged_and_edits_are_modified_vs_package() {
    if !rpm_usable() {
        return;
    }
    let t = TestRoot::new();
    // rpm records /lib64/...; the scan sees /usr/lib64/... (lib64 -> usr/lib64).
    rpm_install(
        &t,
        "librp",
        "1.0",
        &[("lib64/librpa.so.1", 1), ("usr/lib64/librpb.so.1", 2)],
    );
    assert!(t.path("usr/lib64/librpa.so.1").exists());
    assert!(
        t.path("var/lib/rpm/rpmdb.sqlite").exists(),
        "rpm did not write the sqlite backend: {:?}",
        rpmdb_listing(&t)
    );
    t.compile_so(
        "usr/lib64/libstray.so.1",
        "libstray.so.1",
        "int s(void){return 0;}",
    );
    t.init();
    let before = rpmdb_listing(&t);
    let (code, f, err) = check(&t);
    for p in ["/usr/lib64/librpa.so.1", "/usr/lib64/librpb.so.1"] {
        assert!(
            f.iter().all(|x| x["path"] != p),
            "packaged library flagged: {:?}",
            kinds(&f)
        );
    }
    let stray = find(&f, "unpackaged", "/usr/lib64/libstray.so.1")
        .unwrap_or_else(|| panic!("{:?} {err}", kinds(&f)));
    assert_eq!(stray["severity"], "high");
    assert_eq!(code & 8, 8);
    assert!(err.contains("rpm database: 1 packages"), "{err}");
    assert!(!err.contains("no dpkg database"), "{err}");
    assert_eq!(
        rpmdb_listing(&t),
        before,
        "reading the database wrote into the root"
    );

    // A hand edit of a packaged file: content and modified_vs_package,
    // judged against the package's SHA-256.
    t.compile_so(
        "usr/lib64/librpb.so.1",
        "librpb.so.1",
        "int g(void){return 7;}",
    );
    let (code, f, _) = check(&t);
    let p = "/usr/lib64/librpb.so.1";
    assert!(find(&f, "content", p).is_some(), "{:?}", kinds(&f));
    let m = find(&f, "modified_vs_package", p).unwrap_or_else(|| panic!("{:?}", kinds(&f)));
    assert_eq!(m["severity"], "high");
    let detail = m["detail"].as_str().unwrap();
    assert!(detail.contains("librp.x86_64 1.0-1"), "{detail}");
    assert!(detail.contains("sha256"), "{detail}");
    assert_eq!(code & 4, 4);
    assert_eq!(rpmdb_listing(&t), before);
}

#[test]
fn rpm_upgrade_is_package_update_and_a_hand_edit_stays_content() {
    if !rpm_usable() {
        return;
    }
    let t = TestRoot::new();
    let a = "usr/lib64/libupa.so.1";
    let b = "usr/lib64/libupb.so.1";
    rpm_install(&t, "libup", "1.0", &[(a, 10), (b, 11)]);
    t.init();
    let (code, f, _) = check(&t);
    assert_eq!((code, f.len()), (0, 0), "{:?}", kinds(&f));

    rpm_install(&t, "libup", "2.0", &[(a, 20), (b, 21)]);
    t.compile_so(b, "libupb.so.1", "int evil(void){return 666;}");
    let (code, f, _) = check(&t);
    let (pa, pb) = (format!("/{a}"), format!("/{b}"));
    let up = find(&f, "package_update", &pa).unwrap_or_else(|| panic!("{:?}", kinds(&f)));
    assert_eq!(up["severity"], "info");
    assert!(
        up["detail"].as_str().unwrap().contains("1.0-1 -> 2.0-1"),
        "{}",
        up["detail"]
    );
    assert!(find(&f, "content", &pa).is_none());
    assert!(find(&f, "content", &pb).is_some(), "{:?}", kinds(&f));
    assert!(find(&f, "modified_vs_package", &pb).is_some());
    assert_eq!(code & 4, 4);

    // --package-updates accepts exactly the upgrade; the SHA-256s are
    // cached in the new generation, so the next check reads nothing again.
    let o = t.run_ok(&["--format", "json", "update", "--package-updates"]);
    let accepted = json_lines(&o.stdout);
    assert_eq!(
        kinds(&accepted),
        vec![("package_update".into(), pa.clone())]
    );
    let (_, f, _) = check(&t);
    assert!(f.iter().all(|x| x["path"] != pa), "{:?}", kinds(&f));
    assert!(find(&f, "content", &pb).is_some(), "{:?}", kinds(&f));
}

#[test]
fn berkeley_db_rpm_database_is_a_clear_warning() {
    let t = TestRoot::debian();
    t.write("var/lib/rpm/Packages", vec![0u8; 4096]);
    t.init();
    let (code, f, err) = check(&t);
    assert_eq!(code, 0, "{:?}", kinds(&f));
    assert!(err.contains("Berkeley DB"), "{err}");
    assert_eq!(err.matches("not checked").count(), 1, "{err}");
}

#[test]
fn corrupt_rpmdb_is_a_warning_and_the_run_goes_on() {
    let t = TestRoot::debian();
    t.write(
        "var/lib/rpm/rpmdb.sqlite",
        b"SQLite format 3\0garbage".repeat(20),
    );
    t.init();
    let (code, _, err) = check(&t);
    assert_eq!(code, 0);
    assert!(err.contains("rpm database unreadable"), "{err}");
}

/// `Q1` + base64 of the file's SHA-1, computed by openssl.
fn apk_checksum(file: &Path) -> String {
    let o = Command::new("sh")
        .arg("-c")
        .arg("openssl dgst -sha1 -binary \"$1\" | base64")
        .arg("sh")
        .arg(file)
        .output()
        .unwrap();
    assert!(o.status.success());
    format!("Q1{}", String::from_utf8_lossy(&o.stdout).trim())
}

/// Writes `lib/apk/db/installed` for packages `(name, version, libs)`, each
/// lib a path relative to `/` already in the root, with its real checksum.
pub(crate) fn apk_db(t: &TestRoot, pkgs: &[(&str, &str, &[&str])]) {
    let mut s = String::new();
    for (name, version, libs) in pkgs {
        s.push_str(&format!(
            "C:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=\nP:{name}\nV:{version}\nA:x86_64\nS:1000\nI:4096\n\
             T:fixture\nU:https://example.org\nL:MIT\no:{name}\nt:1700000000\n"
        ));
        for rel in libs.iter() {
            let (dir, file) = rel.rsplit_once('/').unwrap();
            s.push_str(&format!("F:{dir}\nR:{file}\na:0:0:755\n"));
            s.push_str(&format!("Z:{}\n", apk_checksum(&t.path(rel))));
        }
        s.push('\n');
    }
    t.write("lib/apk/db/installed", s);
}

#[test]
fn apk_database_vouches_edits_unowned_and_upgrades() {
    let t = TestRoot::new();
    t.write("etc/ld.so.conf", "");
    let a = "usr/lib/libapa.so.1";
    let b = "lib/libapb.so.1"; // lib -> usr/lib: seen as /usr/lib/libapb.so.1
    compile(&t, &t.path(a), 30);
    compile(&t, &t.path(b), 31);
    apk_db(&t, &[("libap", "1.0-r0", &[a, b])]);
    t.compile_so(
        "usr/lib/libloose.so",
        "libloose.so",
        "int l(void){return 0;}",
    );
    t.init();
    let (code, f, err) = check(&t);
    assert!(err.contains("apk database: 1 packages"), "{err}");
    let pa = format!("/{a}");
    let pb = "/usr/lib/libapb.so.1".to_string();
    assert!(
        f.iter().all(|x| x["path"] != pa && x["path"] != pb),
        "{:?}",
        kinds(&f)
    );
    assert!(
        find(&f, "unpackaged", "/usr/lib/libloose.so").is_some(),
        "{:?}",
        kinds(&f)
    );
    assert_eq!(code & 8, 8);

    // An edit: modified_vs_package against the SHA-1.
    compile(&t, &t.path(b), 99);
    let (_, f, _) = check(&t);
    let m = find(&f, "modified_vs_package", &pb).unwrap_or_else(|| panic!("{:?}", kinds(&f)));
    let detail = m["detail"].as_str().unwrap();
    assert!(
        detail.contains("libap 1.0-r0") && detail.contains("sha1"),
        "{detail}"
    );

    // An upgrade: new content, new database entry, new version.
    compile(&t, &t.path(a), 40);
    compile(&t, &t.path(b), 41);
    apk_db(&t, &[("libap", "1.1-r0", &[a, b])]);
    let (_, f, _) = check(&t);
    for p in [&pa, &pb] {
        let up = find(&f, "package_update", p).unwrap_or_else(|| panic!("{:?}", kinds(&f)));
        assert!(up["detail"].as_str().unwrap().contains("1.0-r0 -> 1.1-r0"));
        assert!(find(&f, "content", p).is_none());
    }
    // The only content change is the database file itself (it lives
    // under /lib, a trusted directory the walk monitors like any other).
    let changed: Vec<_> = f.iter().filter(|x| x["kind"] == "content").collect();
    assert_eq!(changed.len(), 1, "{:?}", kinds(&f));
    assert_eq!(changed[0]["path"], "/usr/lib/apk/db/installed");
}

// ---- container images ------------------------------------------------------

/// umoci and skopeo present (Debian packages umoci and skopeo, in
/// `.ci/deps`).
pub(crate) fn image_tools() -> bool {
    let ok = Command::new("umoci")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        && Command::new("skopeo")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("\n*** SKIPPED image test: needs umoci and skopeo (Debian packages) ***\n");
    }
    ok
}

/// Builds an OCI layout at `dir/img` (tag `t`) with umoci: layer 1 a
/// loader configuration and two libraries; with `hijack`, layer 2 deletes
/// one library (a whiteout) and plants `/etc/ld.so.preload`. Also exported
/// with skopeo as a `docker save` archive `dir/img.tar`.
fn build_image(t: &TestRoot, hijack: bool) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = t
        .dir
        .path()
        .join(if hijack { "image-bad" } else { "image-clean" });
    std::fs::create_dir_all(&dir).unwrap();
    let img = dir.join("img");
    let bundle = dir.join("bundle");
    let layout = format!("{}:t", img.display());
    sh(Command::new("umoci").args(["init", "--layout"]).arg(&img));
    sh(Command::new("umoci").args(["new", "--image", &layout]));
    sh(Command::new("umoci")
        .args(["unpack", "--rootless", "--image", &layout])
        .arg(&bundle));
    let rootfs = bundle.join("rootfs");
    let ma = rootfs.join("usr/lib/x86_64-linux-gnu");
    std::fs::create_dir_all(rootfs.join("etc/ld.so.conf.d")).unwrap();
    std::fs::write(
        rootfs.join("etc/ld.so.conf"),
        "include /etc/ld.so.conf.d/*.conf\n",
    )
    .unwrap();
    std::fs::write(rootfs.join("etc/ld.so.conf.d/app.conf"), "/opt/app/lib\n").unwrap();
    compile(t, &ma.join("libgone.so.1"), 50);
    compile(t, &ma.join("libkeep.so.1"), 51);
    sh(Command::new("umoci")
        .args(["repack", "--refresh-bundle", "--image", &layout])
        .arg(&bundle));
    if hijack {
        std::fs::remove_file(ma.join("libgone.so.1")).unwrap();
        std::fs::write(
            rootfs.join("etc/ld.so.preload"),
            "/usr/lib/x86_64-linux-gnu/libkeep.so.1\n",
        )
        .unwrap();
        sh(Command::new("umoci")
            .args(["repack", "--image", &layout])
            .arg(&bundle));
    }
    let tar = dir.join("img.tar");
    sh(Command::new("skopeo")
        .args(["--insecure-policy", "copy"])
        .arg(format!("oci:{layout}"))
        .arg(format!("docker-archive:{}:t:latest", tar.display())));
    (img, tar)
}

/// Every file under `dir` with its size and mtime: what reading must not
/// change.
pub(crate) fn listing(dir: &Path) -> Vec<(std::path::PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                todo.push(e.path());
            } else {
                out.push((e.path(), m.len(), m.modified().unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn image_layers_preload_in_layer_two_and_a_whiteout_deleted_library() {
    if !image_tools() {
        return;
    }
    let t = TestRoot::new();
    let (oci, archive) = build_image(&t, true);
    let before = listing(oci.parent().unwrap());
    for image in [&oci, &archive] {
        let (code, f, err) = image_run(&t, image, &["audit"]);
        assert!(err.contains("2 layers"), "{err}");
        let p = find(&f, "preload", "/etc/ld.so.preload")
            .unwrap_or_else(|| panic!("{image:?}: {:?} {err}", kinds(&f)));
        assert!(
            p["detail"].as_str().unwrap().contains("layer 2"),
            "{}",
            p["detail"]
        );
        let gone = find(&f, "removed", "/usr/lib/x86_64-linux-gnu/libgone.so.1")
            .unwrap_or_else(|| panic!("{image:?}: {:?}", kinds(&f)));
        assert!(gone["detail"]
            .as_str()
            .unwrap()
            .contains("whiteout in layer 2"));
        assert!(
            find(&f, "removed", "/usr/lib/x86_64-linux-gnu/libkeep.so.1").is_none(),
            "{:?}",
            kinds(&f)
        );
        // The host's preload audit also names the library the list loads.
        assert!(
            find(&f, "preload", "/usr/lib/x86_64-linux-gnu/libkeep.so.1").is_some(),
            "{:?}",
            kinds(&f)
        );
        assert_eq!(f.len(), 3, "{:?}", kinds(&f));
        assert_eq!(code, 8 | 2, "{:?}", kinds(&f));

        // paths --image: the image's own loader configuration.
        let (code, p, err) = image_run(&t, image, &["paths"]);
        assert_eq!(code, 0, "{err}");
        let app = p
            .iter()
            .find(|x| x["path"] == "/opt/app/lib")
            .unwrap_or_else(|| panic!("{p:?}"));
        assert_eq!(app["origins"][0], "/etc/ld.so.conf.d/app.conf:1");
        assert_eq!(app["exists"], false);
        let pre = p
            .iter()
            .find(|x| x["path"] == "/etc/ld.so.preload")
            .unwrap();
        assert_eq!(pre["layer"], 2);
    }
    assert_eq!(
        listing(oci.parent().unwrap()),
        before,
        "reading wrote beside the image"
    );
}

#[test]
fn clean_image_is_quiet_and_a_tampered_layer_is_refused() {
    if !image_tools() {
        return;
    }
    let t = TestRoot::new();
    let (oci, archive) = build_image(&t, false);
    for image in [&oci, &archive] {
        let (code, f, err) = image_run(&t, image, &["audit"]);
        assert_eq!((code, f.len()), (0, 0), "{image:?}: {:?} {err}", kinds(&f));
        let (code, p, _) = image_run(&t, image, &["paths"]);
        assert_eq!(code, 0);
        let pre = p
            .iter()
            .find(|x| x["path"] == "/etc/ld.so.preload")
            .unwrap();
        assert_eq!(pre["exists"], false);
    }
    // One byte of a layer blob changed (the gzip header's mtime, which no
    // decoder checks): the content reads the same, the digest no longer
    // matches.
    let blobs = oci.join("blobs/sha256");
    let layer = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::read(p).unwrap().starts_with(&[0x1f, 0x8b]))
        .expect("a gzip layer");
    let mut b = std::fs::read(&layer).unwrap();
    b[4] ^= 0xff;
    std::fs::write(&layer, b).unwrap();
    let (code, _, err) = image_run(&t, &oci, &["audit"]);
    assert_ne!(code, 0);
    assert!(err.contains("does not match its digest"), "{err}");
    // --image works with paths, audit, init, check, update, accept and export only.
    let (code, _, err) = image_run(&t, &oci, &["watch"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("--image works with paths, audit, init, check"),
        "{err}"
    );
}

/// sha256 hex of a file, by sha256sum.
fn sha256_file(p: &Path) -> String {
    let o = Command::new("sha256sum").arg(p).output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Copies `file` into the layout's blobs; its digest and size.
fn put_blob(oci: &Path, file: &Path) -> (String, u64) {
    let hex = sha256_file(file);
    let dest = oci.join("blobs/sha256").join(&hex);
    std::fs::copy(file, &dest).unwrap();
    (
        format!("sha256:{hex}"),
        std::fs::metadata(&dest).unwrap().len(),
    )
}

#[test]
fn zstd_layers_read_like_gzip_ones() {
    if !image_tools() || !have("zstd") {
        return;
    }
    let t = TestRoot::new();
    let (oci, _) = build_image(&t, true);
    // Recompress every layer with zstd (the CLI) and rewrite the manifest
    // and index to name the new blobs, as a registry serving zstd would.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(oci.join("index.json")).unwrap()).unwrap();
    let mdigest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let mpath = oci.join("blobs/sha256").join(&mdigest["sha256:".len()..]);
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    let layers = manifest["layers"].as_array_mut().unwrap();
    assert_eq!(layers.len(), 2);
    for (i, l) in layers.iter_mut().enumerate() {
        let d = l["digest"].as_str().unwrap();
        let blob = oci.join("blobs/sha256").join(&d["sha256:".len()..]);
        let raw = t.dir.path().join(format!("layer{i}.tar"));
        sh(Command::new("sh")
            .arg("-c")
            .arg("gzip -dc \"$1\" > \"$2\" && zstd -q -f \"$2\" -o \"$2.zst\"")
            .arg("sh")
            .arg(&blob)
            .arg(&raw));
        let (digest, size) = put_blob(&oci, &raw.with_extension("tar.zst"));
        l["digest"] = digest.into();
        l["size"] = size.into();
        l["mediaType"] = "application/vnd.oci.image.layer.v1.tar+zstd".into();
    }
    let mfile = t.dir.path().join("manifest.json");
    std::fs::write(&mfile, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let (digest, size) = put_blob(&oci, &mfile);
    let mut index = index;
    index["manifests"][0]["digest"] = digest.into();
    index["manifests"][0]["size"] = size.into();
    std::fs::write(oci.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();

    let (code, f, err) = image_run(&t, &oci, &["audit"]);
    assert!(err.contains("2 layers (tar+zstd, tar+zstd)"), "{err}");
    assert!(
        find(&f, "preload", "/etc/ld.so.preload").is_some(),
        "{:?}",
        kinds(&f)
    );
    assert!(
        find(&f, "removed", "/usr/lib/x86_64-linux-gnu/libgone.so.1").is_some(),
        "{:?}",
        kinds(&f)
    );
    assert_eq!(code, 8 | 2);
}

/// A library that changes while rpm holds its transaction lock
/// (`.rpm.lock`, an fcntl write lock, as rpm takes it) is judged when the
/// lock is released, as with dpkg's.
#[test]
fn watch_waits_for_an_rpm_transaction_to_end() {
    if !rpm_usable() {
        return;
    }
    use std::os::fd::AsRawFd;
    use std::time::Duration;
    let t = TestRoot::new();
    let lib = "usr/lib64/librpmwait.so.1";
    rpm_install(&t, "librpmwait", "1.0", &[(lib, 1)]);
    t.init();
    let mut w = crate::util::Watch::start(&t, &["--rescan-interval", "1h"], &[]);
    w.drain(Duration::from_millis(300));
    let mark = w.seen.len();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(t.path("var/lib/rpm/.rpm.lock"))
        .unwrap();
    // SAFETY: a zeroed flock is valid; fcntl gets a valid fd and pointer.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    let rc = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLK, &fl) };
    assert_eq!(rc, 0, "cannot lock: {}", std::io::Error::last_os_error());
    t.compile_so(lib, "librpmwait.so.1", "int f(void){return 2;}");
    w.drain(Duration::from_secs(2));
    assert!(
        w.seen[mark..].is_empty(),
        "judged while rpm held its lock: {:?}",
        kinds(&w.seen[mark..])
    );
    drop(f);
    let got = w.expect("content", &format!("/{lib}"));
    assert_eq!(got["source"], "event", "{got}");
}
