//! Per-image baselines: `init --image` stores an image's records in a
//! baseline of its own (beside the host's, never over it), `check --image
//! NEW --name OLD` diffs NEW against OLD's. Images are real: built with
//! umoci from a rootfs holding gcc-built libraries, the second version by
//! unpacking the first and repacking a layer that adds, edits and deletes
//! (a whiteout) libraries; exported with skopeo as a `docker save` archive.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::packagedb::{compile, image_tools, listing};
use crate::provenance::sh;
use crate::util::{bin, find, image_run, kinds, live_generation_dir, TestRoot};

const MA: &str = "usr/lib/x86_64-linux-gnu";

/// An app image's first layer: an `ld.so.conf` naming `/opt/app/lib`
/// through an include, and three libraries in the multiarch dir (built
/// from `n`, `n + 1`, `n + 2`).
pub(crate) fn app_v1(t: &TestRoot, rootfs: &Path, n: i32) {
    std::fs::create_dir_all(rootfs.join("etc/ld.so.conf.d")).unwrap();
    std::fs::write(
        rootfs.join("etc/ld.so.conf"),
        "include /etc/ld.so.conf.d/*.conf\n",
    )
    .unwrap();
    std::fs::write(rootfs.join("etc/ld.so.conf.d/app.conf"), "/opt/app/lib\n").unwrap();
    std::fs::create_dir_all(rootfs.join("opt/app/lib")).unwrap();
    compile(t, &rootfs.join(MA).join("libgone.so.1"), n);
    compile(t, &rootfs.join(MA).join("libmod.so.1"), n + 1);
    compile(t, &rootfs.join(MA).join("libkeep.so.1"), n + 2);
}

/// Its second layer: libgone deleted (a whiteout), libmod rebuilt (from
/// `n`), libnew added in `/opt/app/lib` (from `n + 1`).
pub(crate) fn app_v2(t: &TestRoot, rootfs: &Path, n: i32) {
    std::fs::remove_file(rootfs.join(MA).join("libgone.so.1")).unwrap();
    compile(t, &rootfs.join(MA).join("libmod.so.1"), n);
    compile(t, &rootfs.join("opt/app/lib/libnew.so.1"), n + 1);
}

/// v1 (`dir/v1`, one layer): an ld.so.conf including `/opt/app/lib`, and
/// libgone, libmod, libkeep in the multiarch dir. v2 (`dir/v2`, a copy of
/// v1's layout with a second layer): libgone deleted (a whiteout), libmod
/// rebuilt, libnew added in `/opt/app/lib`. Also v2 as `dir/v2.tar`, a
/// `docker save` archive.
fn build_versions(t: &TestRoot) -> (PathBuf, PathBuf, PathBuf) {
    let dir = t.dir.path().join("images");
    std::fs::create_dir_all(&dir).unwrap();
    let (v1, v2) = (dir.join("v1"), dir.join("v2"));
    let l1 = format!("{}:t", v1.display());
    let b1 = dir.join("b1");
    sh(Command::new("umoci").args(["init", "--layout"]).arg(&v1));
    sh(Command::new("umoci").args(["new", "--image", &l1]));
    sh(Command::new("umoci")
        .args(["unpack", "--rootless", "--image", &l1])
        .arg(&b1));
    app_v1(t, &b1.join("rootfs"), 60);
    sh(Command::new("umoci")
        .args(["repack", "--refresh-bundle", "--image", &l1])
        .arg(&b1));

    sh(Command::new("cp").arg("-a").arg(&v1).arg(&v2));
    let l2 = format!("{}:t", v2.display());
    let b2 = dir.join("b2");
    sh(Command::new("umoci")
        .args(["unpack", "--rootless", "--image", &l2])
        .arg(&b2));
    app_v2(t, &b2.join("rootfs"), 71);
    sh(Command::new("umoci")
        .args(["repack", "--image", &l2])
        .arg(&b2));
    let tar = dir.join("v2.tar");
    sh(Command::new("skopeo")
        .args(["--insecure-policy", "copy"])
        .arg(format!("oci:{l2}"))
        .arg(format!("docker-archive:{}:t:latest", tar.display())));
    for b in [b1, b2] {
        let _ = std::fs::remove_dir_all(b);
    }
    (v1, v2, tar)
}

#[test]
fn image_v2_against_v1_baseline_gives_added_content_and_whiteout_removed() {
    if !image_tools() {
        return;
    }
    let t = TestRoot::debian();
    // The host's baseline first: image baselines must leave it alone.
    t.init();
    let host_gen = live_generation_dir(&t.db());
    let host_current = std::fs::read(t.db().join("CURRENT")).unwrap();
    let (v1, v2, v2tar) = build_versions(&t);
    let images = t.dir.path().join("images");
    let before = listing(&images);

    let (code, f, err) = image_run(&t, &v1, &["--name", "v1", "init"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        f.is_empty(),
        "a clean image has no standing findings: {:?}",
        kinds(&f)
    );
    assert!(err.contains("image baseline v1"), "{err}");

    // v1 against its own baseline: quiet.
    let (code, f, err) = image_run(&t, &v1, &["--name", "v1", "check"]);
    assert_eq!((code, f.len()), (0, 0), "{:?} {err}", kinds(&f));

    // v2 (OCI layout, then the docker archive of it) against v1's.
    for image in [&v2, &v2tar] {
        let (code, f, err) = image_run(&t, image, &["--name", "v1", "check"]);
        let new = find(&f, "added", "/opt/app/lib/libnew.so.1")
            .unwrap_or_else(|| panic!("{image:?}: {:?} {err}", kinds(&f)));
        assert_eq!(new["layer"], 2);
        assert_eq!(new["severity"], "medium");
        assert!(new["after"]["blake3"].is_string());
        let m = find(&f, "content", &format!("/{MA}/libmod.so.1"))
            .unwrap_or_else(|| panic!("{:?}", kinds(&f)));
        assert_eq!(m["layer"], 2);
        assert_ne!(m["before"]["blake3"], m["after"]["blake3"]);
        let gone = find(&f, "removed", &format!("/{MA}/libgone.so.1"))
            .unwrap_or_else(|| panic!("{:?}", kinds(&f)));
        assert_eq!(gone["layer"], 2, "removed by layer 2's whiteout");
        assert_eq!(
            f.len(),
            3,
            "exactly added, content, removed: {:?}",
            kinds(&f)
        );
        // added 1, removed 2, content 4.
        assert_eq!(code, 1 | 2 | 4, "{:?}", kinds(&f));
        for x in &f {
            assert_eq!(x["image_name"], "v1");
            assert!(x["image"].as_str().unwrap().starts_with("sha256:"), "{x}");
            assert_eq!(x["baseline"]["generation"], 1);
        }
    }

    // v2 under its own name (its digest by default): a baseline of its
    // own. Against it only the standing audit finding stays (layer 2
    // deletes a library of layer 1, as `audit --image` says), as a host's
    // standing findings stay in every `check`.
    let (code, _, err) = image_run(&t, &v2, &["check"]);
    assert_eq!(code, 65, "no baseline for v2's digest yet: {err}");
    let (code, f, err) = image_run(&t, &v2, &["init"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("image baseline sha256:"), "{err}");
    assert_eq!(kinds(&f).len(), 1, "{:?}", kinds(&f));
    let (code, f, err) = image_run(&t, &v2, &["check"]);
    let standing = find(&f, "removed", &format!("/{MA}/libgone.so.1"))
        .unwrap_or_else(|| panic!("{:?} {err}", kinds(&f)));
    assert!(standing["detail"]
        .as_str()
        .unwrap()
        .contains("whiteout in layer 2"));
    assert_eq!((code, f.len()), (2, 1), "{:?} {err}", kinds(&f));
    // A second init of a name is refused, as `init` is.
    let (code, _, _) = image_run(&t, &v1, &["--name", "v1", "init"]);
    assert_ne!(code, 0);

    // The host's baseline: same generation, same pointer, still quiet.
    assert_eq!(live_generation_dir(&t.db()), host_gen);
    assert_eq!(std::fs::read(t.db().join("CURRENT")).unwrap(), host_current);
    let (code, f) = t.check_json();
    assert_eq!((code, f.len()), (0, 0), "{:?}", kinds(&f));
    // Nothing written beside the images.
    assert_eq!(listing(&images), before, "reading wrote beside the image");
}

#[test]
fn image_baseline_names_are_confined_and_other_commands_still_refuse_image() {
    if !image_tools() {
        return;
    }
    let t = TestRoot::new();
    let (v1, _, _) = build_versions(&t);
    // A name that tries to climb stays one directory under images/.
    let (code, _, err) = image_run(&t, &v1, &["--name", "../../escape", "init"]);
    assert_eq!(code, 0, "{err}");
    assert!(!t.dir.path().join("escape").exists());
    let stores: Vec<String> = std::fs::read_dir(t.db().join("images"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(stores.len(), 1, "{stores:?}");
    assert!(
        !stores[0].contains('/') && !stores[0].starts_with('.'),
        "{stores:?}"
    );
    // The host has no baseline: its check says so (65), not "corrupt".
    let o = t.run(&["check"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(65), "{err}");
    assert!(!err.contains("corrupt"), "{err}");
    // The host's init is not refused because image baselines exist.
    t.init();
    // Signing as the host's: a signed image generation verifies, an
    // unsigned one is refused when a key is required.
    let keys = t.dir.path().join("keys");
    let o = Command::new(bin())
        .arg("keygen")
        .arg(&keys)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (secret, public) = (keys.join("libwarden.key"), keys.join("libwarden.pub"));
    let (secret, public) = (secret.to_str().unwrap(), public.to_str().unwrap());
    let (code, _, err) = image_run(
        &t,
        &v1,
        &["--name", "signed", "init", "--sign-with", secret],
    );
    assert_eq!(code, 0, "{err}");
    let (code, f, err) = image_run(
        &t,
        &v1,
        &["--name", "signed", "--verify-with", public, "check"],
    );
    assert_eq!((code, f.len()), (0, 0), "{err}");
    assert!(err.contains("(signed)"), "{err}");
    let (code, _, err) = image_run(
        &t,
        &v1,
        &["--name", "../../escape", "--verify-with", public, "check"],
    );
    assert_eq!(
        code, 65,
        "an unsigned image baseline under a required key: {err}"
    );
    let (code, _, err) = image_run(&t, &v1, &["watch"]);
    assert_eq!(code, 64, "{err}");
    let (code, _, err) = image_run(&t, &v1, &["check", "--against", "/nonexistent"]);
    assert_eq!(code, 64, "{err}");
}
