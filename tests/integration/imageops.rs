//! Image baselines: update, accept, export, tags.
//!
//! One OCI layout built with umoci holds two tags: `v1` (one layer: an
//! ld.so.conf naming `/opt/app/lib`, three gcc-built libraries) and `v2`
//! (v1 plus a layer that deletes one library with a whiteout, rebuilds
//! another, adds a third and plants `/etc/ld.so.preload`); skopeo exports
//! `v2` as a `docker save` archive.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::imagebase::{app_v1, app_v2};
use crate::packagedb::image_tools;
use crate::provenance::sh;
use crate::util::{find, image_run, json_lines, kinds, TestRoot};

const MA: &str = "usr/lib/x86_64-linux-gnu";

struct Images {
    /// The two-tag layout.
    layout: PathBuf,
    /// `v2` as a docker archive.
    tar: PathBuf,
}

impl Images {
    fn tag(&self, t: &str) -> PathBuf {
        PathBuf::from(format!("{}:{t}", self.layout.display()))
    }
}

fn build(t: &TestRoot) -> Images {
    let dir = t.dir.path().join("images");
    std::fs::create_dir_all(&dir).unwrap();
    let layout = dir.join("app");
    let (r1, r2) = (
        format!("{}:v1", layout.display()),
        format!("{}:v2", layout.display()),
    );
    sh(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout));
    sh(Command::new("umoci").args(["new", "--image", &r1]));
    let b1 = dir.join("b1");
    sh(Command::new("umoci")
        .args(["unpack", "--rootless", "--image", &r1])
        .arg(&b1));
    app_v1(t, &b1.join("rootfs"), 80);
    sh(Command::new("umoci")
        .args(["repack", "--refresh-bundle", "--image", &r1])
        .arg(&b1));
    // v2: a second layer over v1, under its own tag in the same layout.
    sh(Command::new("umoci").args(["tag", "--image", &r1, "v2"]));
    let b2 = dir.join("b2");
    sh(Command::new("umoci")
        .args(["unpack", "--rootless", "--image", &r2])
        .arg(&b2));
    let rootfs = b2.join("rootfs");
    app_v2(t, &rootfs, 91);
    std::fs::write(
        rootfs.join("etc/ld.so.preload"),
        "/opt/app/lib/libnew.so.1\n",
    )
    .unwrap();
    sh(Command::new("umoci")
        .args(["repack", "--image", &r2])
        .arg(&b2));
    let tar = dir.join("v2.tar");
    sh(Command::new("skopeo")
        .args(["--insecure-policy", "copy"])
        .arg(format!("oci:{r2}"))
        .arg(format!("docker-archive:{}:app:v2", tar.display())));
    for b in [b1, b2] {
        let _ = std::fs::remove_dir_all(b);
    }
    Images { layout, tar }
}

/// `libwarden --db DB --format json ARGS` (no --image).
fn run_db(t: &TestRoot, args: &[&str]) -> (i32, String, String) {
    let o = Command::new(crate::util::bin())
        .arg("--db")
        .arg(t.db())
        .args(["--format", "json"])
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn generations(store: &Path) -> usize {
    std::fs::read_dir(store)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("gen-")
        })
        .count()
}

fn listed(t: &TestRoot) -> Vec<Value> {
    let (code, out, err) = run_db(t, &["images"]);
    assert_eq!(code, 0, "{err}");
    json_lines(out.as_bytes())
}

#[test]
fn update_then_accept_make_check_of_new_image_against_old_name_quiet() {
    if !image_tools() {
        return;
    }
    let t = TestRoot::new();
    let im = build(&t);
    let (v1, v2) = (im.tag("v1"), im.tag("v2"));
    let (code, f, err) = image_run(&t, &v1, &["--name", "app", "init"]);
    assert_eq!((code, f.len()), (0, 0), "{err}");

    let (code, f, err) = image_run(&t, &v2, &["--name", "app", "check"]);
    assert!(
        find(&f, "added", "/opt/app/lib/libnew.so.1").is_some(),
        "{:?} {err}",
        kinds(&f)
    );
    assert!(find(&f, "content", &format!("/{MA}/libmod.so.1")).is_some());
    assert!(find(&f, "removed", &format!("/{MA}/libgone.so.1")).is_some());
    assert!(find(&f, "preload", "/etc/ld.so.preload").is_some());
    // The preload list is a loader file: a new one is a change too.
    assert!(find(&f, "added", "/etc/ld.so.preload").is_some());
    // The host's preload audit also names the library the list loads.
    assert!(find(&f, "preload", "/opt/app/lib/libnew.so.1").is_some());
    assert_eq!(f.len(), 6, "{:?}", kinds(&f));
    assert_eq!(code, 1 | 2 | 4 | 8);

    // A dry run writes nothing.
    let store = t.db().join("images/app");
    let (code, f, err) = image_run(&t, &v2, &["--name", "app", "update", "--dry-run"]);
    assert_eq!((code, f.len()), (0, 4), "{:?} {err}", kinds(&f));
    assert!(f.iter().all(|x| x["dry_run"] == true));
    assert_eq!(generations(&store), 1);

    // Only below a PATH: the edited library stays a change.
    let (code, f, err) = image_run(&t, &v2, &["--name", "app", "update", "/opt/app/lib"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        kinds(&f),
        [("added".into(), "/opt/app/lib/libnew.so.1".into())]
    );
    assert_eq!(f[0]["accepted"], true);
    assert_eq!(f[0]["layer"], 2);
    let (code, f, _) = image_run(&t, &v2, &["--name", "app", "check"]);
    assert_eq!(
        code,
        1 | 2 | 4 | 8,
        "the preload list is still added: {:?}",
        kinds(&f)
    );
    assert!(find(&f, "added", "/opt/app/lib/libnew.so.1").is_none());

    // All of it: the changes go, the preload list stands (not a change).
    // A new preload list is critical: a bare update takes it only with
    // --yes, as the host's does.
    let (code, _, err) = image_run(&t, &v2, &["--name", "app", "update"]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("critical"), "{err}");
    let (code, f, err) = image_run(&t, &v2, &["--name", "app", "update", "--yes"]);
    assert_eq!((code, f.len()), (0, 3), "{:?} {err}", kinds(&f));
    assert!(err.contains("standing"), "{err}");
    let (code, f, err) = image_run(&t, &v2, &["--name", "app", "check"]);
    assert_eq!(
        kinds(&f),
        [
            ("preload".into(), "/etc/ld.so.preload".into()),
            ("preload".into(), "/opt/app/lib/libnew.so.1".into())
        ],
        "{err}"
    );
    assert_eq!(code, 8);
    assert_eq!(f[0]["baseline"]["generation"], 3);

    // accept --image acknowledges it: the check is quiet, --all shows it.
    let (code, f, err) = image_run(&t, &v2, &["--name", "app", "accept", "--all-standing"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(f.len(), 2, "{:?}", kinds(&f));
    assert_eq!(f[0]["acknowledged"], true);
    let (code, f, err) = image_run(&t, &v2, &["--name", "app", "check"]);
    assert_eq!((code, f.len()), (0, 0), "{:?} {err}", kinds(&f));
    // Two: the preload list (accept; the finding on the library it loads
    // goes with the list's acknowledgement), and the whiteout behind
    // the removal update accepted (which would otherwise stand in its
    // place).
    let (code, f, _) = image_run(&t, &v2, &["--name", "app", "check", "--all"]);
    assert!(err.contains("2 acknowledged"), "{err} {:?}", kinds(&f));
    assert_eq!((code, f.len()), (0, 2), "{:?}", kinds(&f));
    assert!(f.iter().all(|x| x["acknowledged"] == true));
    assert!(find(&f, "removed", &format!("/{MA}/libgone.so.1")).is_some());

    // The generation before stays beside the live one, as the host's does.
    assert_eq!(
        generations(&store),
        2,
        "the live generation and the one before"
    );
    assert_eq!(listed(&t)[0]["generation"], 4, "init, two updates, accept");
    // v1 against the new generation: the reverse changes, and v1 has no
    // preload list (nothing acknowledged is hiding a change).
    let (code, f, _) = image_run(&t, &v1, &["--name", "app", "check"]);
    assert_eq!(code, 1 | 2 | 4, "{:?}", kinds(&f));
}

#[test]
fn image_whiteout_standing_acknowledged_and_signed_image_baseline_needs_key() {
    if !image_tools() {
        return;
    }
    let t = TestRoot::new();
    let im = build(&t);
    let v2 = im.tag("v2");
    let keys = t.dir.path().join("keys");
    let o = Command::new(crate::util::bin())
        .arg("keygen")
        .arg(&keys)
        .output()
        .unwrap();
    assert!(o.status.success());
    let secret = keys.join("libwarden.key");
    let secret = secret.to_str().unwrap();
    let (code, f, err) = image_run(&t, &v2, &["init", "--sign-with", secret]);
    assert_eq!(code, 0, "{err}");
    // The preload list and the library it loads, and the whiteout.
    assert_eq!(f.len(), 3, "whiteout and preload standing: {:?}", kinds(&f));
    let (code, f, _) = image_run(&t, &v2, &["check"]);
    assert_eq!(code, 2 | 8, "{:?}", kinds(&f));

    // A signed baseline is not built on without the key (64), as the host's.
    let (code, _, err) = image_run(&t, &v2, &["accept", "--all-standing"]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("--sign-with"), "{err}");
    // `--kind preload` narrows: the whiteout removal stays.
    let (code, f, err) = image_run(
        &t,
        &v2,
        &[
            "accept",
            "--kind",
            "preload",
            "--all-standing",
            "--sign-with",
            secret,
        ],
    );
    assert_eq!((code, f.len()), (0, 2), "{:?} {err}", kinds(&f));
    let (code, f, _) = image_run(&t, &v2, &["check"]);
    assert_eq!(code, 2, "{:?}", kinds(&f));
    assert!(f[0]["detail"]
        .as_str()
        .unwrap()
        .contains("whiteout in layer 2"));
    // Named by its path, the whiteout removal is acknowledged too.
    let lib = format!("/{MA}/libgone.so.1");
    let (code, _, err) = image_run(&t, &v2, &["accept", &lib, "--sign-with", secret]);
    assert_eq!(code, 0, "{err}");
    let (code, f, err) = image_run(&t, &v2, &["check"]);
    assert_eq!((code, f.len()), (0, 0), "{:?} {err}", kinds(&f));
    assert!(err.contains("(signed)"), "{err}");
    // Nothing to change: update writes a generation with nothing accepted.
    let (code, f, err) = image_run(&t, &v2, &["update", "--unsigned"]);
    assert_eq!((code, f.len()), (0, 0), "{err}");
    let (code, f, _) = image_run(&t, &v2, &["check"]);
    assert_eq!((code, f.len()), (0, 0), "acknowledgements carried over");
    // A package-update-only update has nothing to go by in an image.
    let (code, _, _) = image_run(&t, &v2, &["update", "--package-updates"]);
    assert_eq!(code, 64);
}

#[test]
fn export_and_images_list_image_baselines() {
    if !image_tools() {
        return;
    }
    let t = TestRoot::new();
    let im = build(&t);
    let (v1, v2) = (im.tag("v1"), im.tag("v2"));
    assert_eq!(image_run(&t, &v1, &["--name", "one", "init"]).0, 0);
    assert_eq!(image_run(&t, &v2, &["init"]).0, 0);

    let o = Command::new(crate::util::bin())
        .arg("--db")
        .arg(t.db())
        .arg("--image")
        .arg(&v2)
        .arg("export")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    for lib in [
        format!("/{MA}/libmod.so.1\t"),
        format!("/{MA}/libkeep.so.1\t"),
        "/opt/app/lib/libnew.so.1\t".to_string(),
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&lib)),
            "{lib} not in {text}"
        );
    }
    assert!(!text.contains("libgone"), "{text}");
    assert!(text.contains("generation 1"), "{text}");
    // By name, without the image at hand: v1's records.
    let (code, out, err) = run_db(&t, &["--name", "one", "export"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("libgone.so.1\t"), "{out}");
    assert!(!out.contains("libnew"), "{out}");
    // The allowlists describe a host's disk: refused for an image.
    let (code, _, _) = image_run(&t, &v2, &["--format", "fapolicyd", "export"]);
    assert_eq!(code, 64);
    // --name on a host command is a usage error.
    assert_eq!(run_db(&t, &["--name", "one", "check"]).0, 64);

    // paths --image: the dirs and files the baseline holds records of,
    // each record under one of them.
    let (code, p, err) = image_run(&t, &v2, &["paths"]);
    assert_eq!(code, 0, "{err}");
    let dirs: Vec<&str> = p
        .iter()
        .filter(|x| x["kind"] == "dir")
        .map(|x| x["path"].as_str().unwrap())
        .collect();
    let files: Vec<&str> = p
        .iter()
        .filter(|x| x["kind"] == "file")
        .map(|x| x["path"].as_str().unwrap())
        .collect();
    let app = p.iter().find(|x| x["path"] == "/opt/app/lib").unwrap();
    assert_eq!(app["origins"][0], "/etc/ld.so.conf.d/app.conf:1");
    assert_eq!(app["exists"], true);
    let ma = p.iter().find(|x| x["path"] == format!("/{MA}")).unwrap();
    assert_eq!(ma["exists"], true, "{ma}");
    let pre = p
        .iter()
        .find(|x| x["path"] == "/etc/ld.so.preload")
        .unwrap();
    assert_eq!(
        (pre["exists"].clone(), pre["layer"].clone()),
        (true.into(), 2.into())
    );
    let paths: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split('\t').next().map(str::to_string))
        .collect();
    assert!(paths.len() >= 5, "{text}");
    for r in &paths {
        assert!(
            files.contains(&r.as_str())
                || dirs
                    .iter()
                    .any(|d| r == d || r.starts_with(&format!("{}/", d.trim_end_matches('/')))),
            "{r} is in the baseline but under no dir of paths --image: {dirs:?} {files:?}"
        );
    }

    let l = listed(&t);
    assert_eq!(l.len(), 2, "{l:?}");
    let one = l.iter().find(|x| x["name"] == "one").unwrap();
    assert_eq!(one["tags"], serde_json::json!(["v1"]));
    assert_eq!(one["generation"], 1);
    assert_eq!(one["format"], "oci");
    assert!(one["written"].as_str().unwrap().ends_with('Z'));
    let own = l.iter().find(|x| x["name"] != "one").unwrap();
    assert_eq!(own["name"], own["image"], "default name: the image id");
    assert!(own["image"].as_str().unwrap().starts_with("sha256:"));
    assert!(own["records"].as_u64().unwrap() >= 3);
    assert_ne!(one["image"], own["image"]);
}

#[test]
fn two_tag_layout_needs_a_tag_and_each_tag_has_its_own_baseline() {
    if !image_tools() {
        return;
    }
    let t = TestRoot::new();
    let im = build(&t);
    // No choice among two images: refused, listing the tags.
    let (code, _, err) = image_run(&t, &im.layout, &["audit"]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("v1") && err.contains("v2"), "{err}");
    assert!(err.contains("--tag"), "{err}");
    let (code, _, err) = image_run(&t, &im.tag("v3"), &["audit"]);
    assert_eq!(code, 64, "{err}");
    // Both spellings, and the transport prefix skopeo users write.
    let (code, f, err) = image_run(&t, &im.tag("v1"), &["init"]);
    assert_eq!((code, f.len()), (0, 0), "{err}");
    let (code, _, err) = image_run(&t, &im.layout, &["--tag", "v2", "init"]);
    assert_eq!(code, 0, "{err}");
    let oci_v1 = PathBuf::from(format!("oci:{}:v1", im.layout.display()));
    let (code, f, err) = image_run(&t, &oci_v1, &["check"]);
    assert_eq!(
        (code, f.len()),
        (0, 0),
        "v1 against its own baseline: {err}"
    );
    let (code, _, _) = image_run(&t, &im.tag("v1"), &["--tag", "v2", "check"]);
    assert_eq!(code, 64, "two different tags");
    // v2 against its own: only its standing findings, no change.
    let (code, f, err) = image_run(&t, &im.layout, &["--tag", "v2", "check"]);
    assert_eq!(code, 2 | 8, "{:?} {err}", kinds(&f));
    let id = f[0]["image"].as_str().unwrap().to_string();
    assert_eq!(f[0]["image_name"], id.as_str());
    assert!(f
        .iter()
        .all(|x| x["kind"] != "added" && x["kind"] != "content"));

    // The docker archive of v2: the same default name, so the same
    // baseline judges it (quiet but for the same standing findings).
    let (code, f2, err) = image_run(&t, &im.tar, &["check"]);
    assert_eq!(code, 2 | 8, "{:?} {err}", kinds(&f2));
    assert_eq!(f2[0]["image_name"], id.as_str());
    assert_eq!(kinds(&f), kinds(&f2));
    let (code, _, err) = image_run(
        &t,
        &PathBuf::from(format!("{}:app:v2", im.tar.display())),
        &["check"],
    );
    assert_eq!(code, 2 | 8, "{err}");
    let (code, _, err) = image_run(&t, &im.tar, &["--tag", "nope", "check"]);
    assert_eq!(code, 64, "{err}");
    assert_eq!(listed(&t).len(), 2);
}

/// Every value under a key named `key`, anywhere in `v`.
fn values_of<'a>(v: &'a Value, key: &str, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == key {
                    out.push(x);
                }
                values_of(x, key, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| values_of(x, key, out)),
        _ => {}
    }
}

#[test]
fn image_ecs_has_member_mtime_no_1970_ctime_and_images_dir_is_private() {
    if !image_tools() {
        return;
    }
    let t = TestRoot::new();
    let im = build(&t);
    assert_eq!(
        image_run(&t, &im.tag("v1"), &["--name", "app", "init"]).0,
        0
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for d in [t.db(), t.db().join("images"), t.db().join("images/app")] {
            let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{d:?} is {mode:o}");
        }
    }
    let o = Command::new(crate::util::bin())
        .arg("--db")
        .arg(t.db())
        .arg("--image")
        .arg(im.tag("v2"))
        .args(["--name", "app", "--format", "ecs", "check"])
        .output()
        .unwrap();
    let docs = json_lines(&o.stdout);
    assert!(!docs.is_empty(), "{}", String::from_utf8_lossy(&o.stderr));
    let content = docs
        .iter()
        .find(|d| d.to_string().contains("libmod.so.1") && d.to_string().contains("\"content\""))
        .unwrap_or_else(|| panic!("{docs:?}"));
    // The ECS `file.*` of an image's record: the member's mtime, no
    // ctime or inode (a tar member has none; the raw records under
    // `libwarden.before/after` keep their zeros, as in the JSON output).
    let mtime = content["file"]["mtime"]
        .as_str()
        .unwrap_or_else(|| panic!("{content}"));
    assert!(!mtime.starts_with("1970"), "{content}");
    for d in &docs {
        let mut c = Vec::new();
        values_of(&d["file"], "ctime", &mut c);
        values_of(&d["file"], "inode", &mut c);
        assert!(c.is_empty(), "a tar member has no ctime or inode: {d}");
    }
}
