//! Trusting the tool itself: signed generations, rollback detection,
//! golden manifests, crash safety of the store, and a static binary that a
//! preload rootkit cannot hook.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::util::*;

fn keys(t: &TestRoot) -> (String, String) {
    let dir = t.dir.path().join("keys");
    let o = Command::new(bin())
        .arg("keygen")
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let s = dir.join("libwarden.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&s).unwrap().permissions().mode() & 0o777,
        0o600
    );
    (
        s.display().to_string(),
        dir.join("libwarden.pub").display().to_string(),
    )
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes a new generation through the library, bypassing the CLI: what
/// an attacker with write access to the baseline directory could do.
fn forge_generation(db: &Path, signer: Option<&ed25519_dalek::SigningKey>) {
    let store = libwarden::baseline::store::Store::open(db).unwrap();
    let (meta, mut records) = store.load().unwrap();
    let r = records
        .iter_mut()
        .find(|r| r.path.ends_with(b"libfoo.so.1.2.3"))
        .unwrap();
    r.blake3 = Some([0xaa; 32]);
    store
        .write_generation(&records, &meta.root, signer)
        .unwrap();
}

#[test]
fn signed_baselines_refuse_tampering_other_keys_and_missing_signatures() {
    let t = TestRoot::debian();
    let (sk, pk) = keys(&t);
    assert_eq!(t.run(&["init", "--sign-with", &sk]).status.code(), Some(0));
    let o = t.run(&["--verify-with", &pk, "--format", "json", "check"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("generation 1 of") && stderr(&o).contains("signed"),
        "{}",
        stderr(&o)
    );

    // Flip one byte of one record inside the store: the digest catches it.
    {
        let db = sled::open(live_generation_dir(&t.db())).unwrap();
        let name = db
            .tree_names()
            .into_iter()
            .find(|n| n.starts_with(b"gen/"))
            .unwrap();
        let tree = db.open_tree(name).unwrap();
        // Records are stored in chunks of (u32 len, path, u32 len, value)
        // pairs; in a hashed file's value, byte 72 says a digest follows at
        // 73..105. Flip a digest byte: the record still decodes.
        let (k, v) = tree.iter().next().unwrap().unwrap();
        let mut v = v.to_vec();
        let mut at = 0;
        let field =
            |v: &[u8], at: usize| u32::from_le_bytes(v[at..at + 4].try_into().unwrap()) as usize;
        loop {
            let klen = field(&v, at);
            let vstart = at + 4 + klen + 4;
            let vlen = field(&v, at + 4 + klen);
            if v[vstart + 72] == 1 {
                v[vstart + 80] ^= 1;
                break;
            }
            at = vstart + vlen;
        }
        tree.insert(k, v).unwrap();
        db.flush().unwrap();
    }
    let o = t.run(&["--verify-with", &pk, "check"]);
    assert_eq!(o.status.code(), Some(65));
    assert!(stderr(&o).contains("altered"), "{}", stderr(&o));

    // A consistent but unsigned generation written by someone without the key.
    let t = TestRoot::debian();
    let (sk, pk) = keys(&t);
    t.run(&["init", "--sign-with", &sk]);
    forge_generation(&t.db(), None);
    let o = t.run(&["--verify-with", &pk, "check"]);
    assert_eq!(o.status.code(), Some(65));
    assert!(stderr(&o).contains("not signed"), "{}", stderr(&o));
    // Re-signed by an attacker's own key.
    forge_generation(
        &t.db(),
        Some(&ed25519_dalek::SigningKey::from_bytes(&[7; 32])),
    );
    let o = t.run(&["--verify-with", &pk, "check"]);
    assert_eq!(o.status.code(), Some(65));
    assert!(stderr(&o).contains("different key"), "{}", stderr(&o));
    // update with the real key refuses to build on the forged generation.
    let o = t.run(&["update", "--sign-with", &sk]);
    assert_eq!(o.status.code(), Some(65), "{}", stderr(&o));
}

#[test]
fn restoring_an_older_baseline_is_detected_as_rollback() {
    let t = TestRoot::debian();
    let (sk, pk) = keys(&t);
    t.run(&["init", "--sign-with", &sk]);
    let old = t.dir.path().join("old-copy");
    assert!(Command::new("cp")
        .arg("-a")
        .arg(t.db())
        .arg(&old)
        .status()
        .unwrap()
        .success());
    t.compile_so(
        "usr/local/lib/libnew.so",
        "libnew.so",
        "int n(void){return 1;}",
    );
    let o = t.run(&["update", "--sign-with", &sk]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        t.run(&["--verify-with", &pk, "check"]).status.code(),
        Some(0)
    );

    // The attacker restores the old (validly signed) generation 1.
    std::fs::remove_dir_all(t.db()).unwrap();
    assert!(Command::new("cp")
        .arg("-a")
        .arg(&old)
        .arg(t.db())
        .status()
        .unwrap()
        .success());
    let o = t.run(&["--verify-with", &pk, "check"]);
    assert_eq!(o.status.code(), Some(65), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("rolled back") && stderr(&o).contains("generation 1"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn json_findings_name_the_generation_they_were_judged_against() {
    let t = TestRoot::debian();
    t.init();
    t.compile_so("usr/local/lib/libx.so", "libx.so", "int x(void){return 1;}");
    let (_, f) = t.check_json();
    assert_eq!(f[0]["baseline"]["generation"], 1, "{f:#?}");
    assert_eq!(f[0]["baseline"]["signed"], false);
}

#[test]
fn golden_manifest_compares_hosts_and_refuses_tampering() {
    let reference = TestRoot::debian();
    let (sk, pk) = keys(&reference);
    reference.write("etc/hostname-lib.conf", "x");
    reference.init();
    let manifest = reference.dir.path().join("golden.manifest");
    let o = reference.run(&[
        "export",
        "--sign-with",
        &sk,
        "-o",
        manifest.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(text.starts_with("# libwarden manifest v1\n"));
    assert!(text
        .lines()
        .last()
        .unwrap()
        .starts_with("signature ed25519 "));

    // Another host built from the same image (other inodes, times).
    let host = TestRoot::debian();
    let against = [
        "--verify-with",
        &pk,
        "--format",
        "json",
        "check",
        "--against",
        manifest.to_str().unwrap(),
    ];
    let o = host.run(&against);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}\n{}",
        stderr(&o),
        String::from_utf8_lossy(&o.stdout)
    );

    host.compile_so(
        "usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3",
        "libfoo.so.1",
        "int foo(void){return 99;}",
    );
    std::fs::create_dir_all(host.path("usr/local/lib/site")).unwrap();
    let o = host.run(&against);
    let f = json_lines(&o.stdout);
    assert!(
        find(&f, "content", "/usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3").is_some(),
        "{f:#?}"
    );
    assert!(find(&f, "added", "/usr/local/lib/site").is_some(), "{f:#?}");
    assert_eq!(o.status.code(), Some(5));

    // Host-specific paths can be left out.
    let cfg = host.dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        "manifest_exclude = [\"/usr/local/lib/site\", \"/usr/lib/x86_64-linux-gnu/libfoo*\"]\n",
    )
    .unwrap();
    let mut args = vec!["--config", cfg.to_str().unwrap()];
    args.extend_from_slice(&against);
    assert_eq!(host.run(&args).status.code(), Some(0));

    // A tampered manifest fails its signature.
    std::fs::write(&manifest, text.replacen("\t0755\t", "\t0777\t", 1)).unwrap();
    let o = host.run(&against);
    assert_eq!(o.status.code(), Some(65), "{}", stderr(&o));
    assert!(stderr(&o).contains("signature"));
}

#[test]
fn snapshots_taken_mid_update_open_as_a_complete_signed_generation() {
    let t = TestRoot::debian();
    for i in 0..3000 {
        t.write(
            &format!("usr/lib/bulk/d{}/lib{i}.so", i % 40),
            format!("library {i}"),
        );
    }
    let (sk, pk) = keys(&t);
    t.run(&["init", "--sign-with", &sk]);
    let mut rng = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    eprintln!("seed {rng}");
    for round in 0..8u64 {
        for i in 0..200 {
            t.write(
                &format!("usr/lib/bulk/d{}/lib{i}.so", i % 40),
                format!("round {round} library {i}"),
            );
        }
        let mut child = t
            .cmd(&["update", "--sign-with", &sk])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(std::time::Duration::from_micros((rng >> 33) % 400_000));
        // The files as a power cut would find them: whatever reached them.
        let snap = t.dir.path().join(format!("snap{round}"));
        copy_tree(&t.db(), &snap.join("db"));
        child.wait().unwrap();
        let o = Command::new(bin())
            .arg("--root")
            .arg(t.root())
            .arg("--db")
            .arg(snap.join("db"))
            .args(["--verify-with", &pk, "-q", "check"])
            .output()
            .unwrap();
        let code = o.status.code().unwrap();
        assert!(
            code < 64,
            "round {round}: snapshot did not open as a complete signed generation: {code} {}",
            stderr(&o)
        );
    }
}

/// Copies a directory that is being written to: files that vanish while
/// copying are skipped (as they would be absent after a crash). The store's
/// `CURRENT` pointer is copied first: a power cut keeps the generation it
/// names, which was synced before the pointer was renamed into place,
/// whereas a pointer copied after the generations could name one whose
/// files were copied while still being written, a state no crash leaves.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    let Ok(rd) = std::fs::read_dir(from) else {
        return;
    };
    let mut entries: Vec<_> = rd.flatten().collect();
    entries.sort_by_key(|e| e.file_name() != "CURRENT");
    for e in entries {
        let dst = to.join(e.file_name());
        match e.file_type() {
            Ok(t) if t.is_dir() => copy_tree(&e.path(), &dst),
            Ok(_) => {
                if let Ok(bytes) = std::fs::read(e.path()) {
                    std::fs::write(dst, bytes).unwrap();
                }
            }
            Err(_) => {}
        }
    }
}

/// A release binary statically linked (the build the README documents).
fn static_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = Command::new("rustc").arg("-vV").output().unwrap();
        let host = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
            .unwrap();
        let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let target_dir = manifest_dir.join("target/static");
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--release",
                "--locked",
                "--bin",
                "libwarden",
                "--target",
                &host,
            ])
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .env("CARGO_TARGET_DIR", &target_dir)
            .current_dir(&manifest_dir)
            .status()
            .unwrap();
        assert!(status.success(), "static build failed");
        target_dir.join(host).join("release/libwarden")
    })
}

const HOOK: &str = r#"
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <string.h>
/* A rootkit's directory hook: hides every name containing "rootkit". */
struct dirent *readdir(DIR *d) {
    static struct dirent *(*real)(DIR *);
    if (!real) real = dlsym(RTLD_NEXT, "readdir");
    struct dirent *e;
    while ((e = real(d)) && strstr(e->d_name, "rootkit")) {}
    return e;
}
struct dirent64 *readdir64(DIR *d) {
    static struct dirent64 *(*real)(DIR *);
    if (!real) real = dlsym(RTLD_NEXT, "readdir64");
    struct dirent64 *e;
    while ((e = real(d)) && strstr(e->d_name, "rootkit")) {}
    return e;
}
"#;

#[test]
fn a_readdir_hook_in_ld_preload_cannot_hide_files_from_the_static_binary() {
    let t = TestRoot::debian();
    let hook = t.dir.path().join("hook/libhide.so");
    std::fs::create_dir_all(hook.parent().unwrap()).unwrap();
    let src = t.dir.path().join("hook.c");
    std::fs::write(&src, HOOK).unwrap();
    let st = Command::new("gcc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&hook)
        .arg(&src)
        .arg("-ldl")
        .status()
        .unwrap();
    assert!(st.success());
    t.init();
    t.compile_so(
        "usr/lib/x86_64-linux-gnu/librootkit.so",
        "librootkit.so",
        "int r(void){return 1;}",
    );

    // The hook works: a dynamically linked ls cannot see the file.
    let ls = Command::new("ls")
        .arg(t.path("usr/lib/x86_64-linux-gnu"))
        .env("LD_PRELOAD", &hook)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&ls.stdout);
    assert!(
        listing.contains("libfoo.so") && !listing.contains("librootkit"),
        "hook ineffective: {listing}"
    );

    let bin = static_binary();
    let file = Command::new("file").arg(bin).output();
    if let Ok(f) = file {
        let desc = String::from_utf8_lossy(&f.stdout).to_string();
        assert!(desc.contains("static"), "not a static binary: {desc}");
    }
    let o = Command::new(bin)
        .arg("--root")
        .arg(t.root())
        .arg("--db")
        .arg(t.db())
        .args(["--format", "json", "check"])
        .env("LD_PRELOAD", &hook)
        .output()
        .unwrap();
    let f = json_lines(&o.stdout);
    assert!(
        find(&f, "added", "/usr/lib/x86_64-linux-gnu/librootkit.so").is_some(),
        "hidden from the scan: {f:#?}"
    );
    let p = f
        .iter()
        .find(|x| x["kind"] == "preload")
        .expect("the preload must be reported");
    assert_eq!(p["severity"], "critical");
    assert_eq!(p["path"], hook.to_str().unwrap());
    assert_eq!(o.status.code().unwrap() & 9, 9, "added + policy bits");
}
