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
        // The rollback state first: it is written after the generation it
        // names, so the copy never names one newer than the store's (and
        // a verified check refuses a baseline with no rollback state).
        let snap = t.dir.path().join(format!("snap{round}"));
        std::fs::create_dir_all(&snap).unwrap();
        if let Ok(state) = std::fs::read(t.dir.path().join("state/baseline.generations")) {
            std::fs::write(snap.join("db.generations"), state).unwrap();
        }
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

/// Runs `c` to its end, or kills it and fails after [`WAIT`]: a hang is a
/// failure, not a stuck test run.
fn output_within(mut c: Command, what: &str) -> std::process::Output {
    let mut child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {WAIT:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn copy_dir(from: &Path, to: &Path) {
    assert!(Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap()
        .success());
}

#[test]
fn deleting_the_rollback_state_does_not_accept_an_older_generation() {
    let t = TestRoot::debian();
    let (sk, pk) = keys(&t);
    let state = t.dir.path().join("state/baseline.generations");
    let copy = PathBuf::from(format!("{pk}.generations"));
    // A fresh init records the state at once: the first verified check
    // is not refused (and writes the copy beside the public key).
    assert_eq!(t.run(&["init", "--sign-with", &sk]).status.code(), Some(0));
    let o = t.run(&["--verify-with", &pk, "check"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(exists(&state) && exists(&copy), "both copies of the state");
    let old = t.dir.path().join("old-copy");
    copy_dir(&t.db(), &old);
    t.compile_so(
        "usr/local/lib/libnew.so",
        "libnew.so",
        "int n(void){return 1;}",
    );
    let o = t.run(&["update", "--sign-with", &sk]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = t.run(&["--verify-with", &pk, "check"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    // The attacker restores the signed generation 1 and deletes the state
    // beside it: the copy beside the key still knows generation 2.
    std::fs::remove_dir_all(t.db()).unwrap();
    copy_dir(&old, &t.db());
    std::fs::remove_file(&state).unwrap();
    for _ in 0..2 {
        let o = t.run(&["--verify-with", &pk, "check"]);
        assert_eq!(o.status.code(), Some(65), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("rolled back") && stderr(&o).contains("generation 2"),
            "{}",
            stderr(&o)
        );
    }
    let o = t.run(&["update", "--sign-with", &sk]);
    assert_eq!(o.status.code(), Some(65), "{}", stderr(&o));

    // Both copies deleted: no "first use", a refusal that says how to
    // re-pin, for check and for update alike, every time.
    std::fs::remove_file(&copy).unwrap();
    let _ = std::fs::remove_file(&state);
    for args in [
        &["--verify-with", &pk, "check"][..],
        &["update", "--sign-with", &sk][..],
        &["--verify-with", &pk, "check"][..],
    ] {
        let o = t.run(args);
        assert_eq!(o.status.code(), Some(65), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("rollback state is missing")
                && stderr(&o).contains("--accept-generation 1"),
            "{}",
            stderr(&o)
        );
    }
    assert!(
        !exists(&state) && !exists(&copy),
        "a refusal records nothing"
    );

    // Re-pinning names the generation: another number is refused.
    let o = t.run(&["--verify-with", &pk, "--accept-generation", "2", "check"]);
    assert_eq!(o.status.code(), Some(65), "{}", stderr(&o));
    let o = t.run(&["--verify-with", &pk, "--accept-generation", "1", "check"]);
    let code = o.status.code().unwrap();
    assert!(code < 64, "{code}: {}", stderr(&o));
    assert!(stderr(&o).contains("re-pinned"), "{}", stderr(&o));
    let o = t.run(&["--verify-with", &pk, "check"]);
    assert!(o.status.code().unwrap() < 64, "{}", stderr(&o));
}

#[test]
fn a_key_file_that_is_dev_zero_or_a_fifo_is_refused_at_once() {
    let t = TestRoot::debian();
    let (sk, _) = keys(&t);
    assert_eq!(t.run(&["init", "--sign-with", &sk]).status.code(), Some(0));
    let fifo = t.dir.path().join("key.fifo");
    crate::util::mkfifo(&fifo, 0o600);
    for bad in ["/dev/zero", fifo.to_str().unwrap()] {
        for args in [
            &["--verify-with", bad, "check"][..],
            &["update", "--sign-with", bad][..],
            &["init", "--force", "--sign-with", bad][..],
            &["export", "--sign-with", bad][..],
        ] {
            let o = output_within(t.cmd(args), &format!("{args:?}"));
            assert_eq!(o.status.code(), Some(64), "{args:?}: {}", stderr(&o));
            assert!(
                stderr(&o).contains(bad) && stderr(&o).contains("not a regular file"),
                "{args:?}: {}",
                stderr(&o)
            );
        }
    }
}

#[test]
fn update_of_a_signed_baseline_without_a_key_refuses_instead_of_dropping_the_signature() {
    let t = TestRoot::debian();
    let (sk, pk) = keys(&t);
    assert_eq!(t.run(&["init", "--sign-with", &sk]).status.code(), Some(0));
    t.compile_so(
        "usr/local/lib/libnew.so",
        "libnew.so",
        "int n(void){return 1;}",
    );
    let o = t.run(&["update"]);
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--sign-with") && stderr(&o).contains("--unsigned"),
        "{}",
        stderr(&o)
    );
    // Nothing was written: generation 1, signed, still judges.
    let o = t.run(&["--verify-with", &pk, "--format", "json", "check"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(json_lines(&o.stdout)[0]["baseline"]["generation"], 1);

    // Dropping signing is explicit, and refused where a key says every
    // generation must be signed.
    let o = t.run(&["--verify-with", &pk, "update", "--unsigned"]);
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
    let o = t.run(&["update", "--unsigned"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("not signed"), "{}", stderr(&o));
    let (_, f) = t.check_json();
    assert!(f.is_empty(), "{f:#?}");

    // Signing restarts on the unsigned generation libwarden wrote.
    t.compile_so(
        "usr/local/lib/libnewer.so",
        "libnewer.so",
        "int m(void){return 1;}",
    );
    let o = t.run(&["update", "--sign-with", &sk]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("signing restarts"), "{}", stderr(&o));
    let o = t.run(&["--verify-with", &pk, "check"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("generation 3 of") && stderr(&o).contains("(signed)"),
        "{}",
        stderr(&o)
    );

    // An unsigned generation written behind libwarden's back is not signed
    // over.
    forge_generation(&t.db(), None);
    let o = t.run(&["update", "--sign-with", &sk]);
    assert_eq!(o.status.code(), Some(65), "{}", stderr(&o));
    assert!(stderr(&o).contains("without the key"), "{}", stderr(&o));
}

#[test]
fn a_baseline_of_another_root_is_not_used_silently() {
    let t = TestRoot::debian();
    t.init();
    let other = TestRoot::debian();
    let with_db = |root: &Path, args: &[&str]| {
        let mut c = Command::new(bin());
        c.arg("--root").arg(root).arg("--db").arg(t.db()).args(args);
        c
    };
    for args in [&["check"][..], &["update"][..], &["watch"][..]] {
        let o = output_within(with_db(&other.root(), args), &format!("{args:?}"));
        assert_eq!(o.status.code(), Some(64), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("was built for root") && stderr(&o).contains("--allow-other-root"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    // The refused update wrote nothing.
    let o = t.run(&["--format", "json", "check"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    // A copy of the root at a new path: allowed when said, with a warning;
    // an update then pins the baseline to the new path.
    let moved = t.dir.path().join("moved-root");
    copy_dir(&t.root(), &moved);
    let o = output_within(
        with_db(&moved, &["--allow-other-root", "check"]),
        "check --allow-other-root",
    );
    assert!(o.status.code().unwrap() < 64, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--allow-other-root says"),
        "{}",
        stderr(&o)
    );
    // (Every inode changed with the copy, the loader's too: a critical
    // metadata change, which a bare update accepts only with --yes.)
    let o = output_within(
        with_db(&moved, &["--allow-other-root", "update", "--yes"]),
        "update --allow-other-root",
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = output_within(with_db(&moved, &["check"]), "check of the moved root");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("built for root"), "{}", stderr(&o));
    // export judges nothing: any root will do.
    let o = output_within(with_db(&other.root(), &["export"]), "export");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn keygen_with_a_dangling_public_key_symlink_writes_nothing() {
    let t = TestRoot::new();
    for (planted, other) in [
        ("libwarden.pub", "libwarden.key"),
        ("libwarden.key", "libwarden.pub"),
    ] {
        let dir = t.dir.path().join(format!("keys-{planted}"));
        std::fs::create_dir(&dir).unwrap();
        let target = t.dir.path().join(format!("target-of-{planted}"));
        std::os::unix::fs::symlink(&target, dir.join(planted)).unwrap();
        let o = Command::new(bin())
            .arg("keygen")
            .arg(&dir)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
        assert!(stderr(&o).contains(planted), "{}", stderr(&o));
        assert!(
            !exists(&dir.join(other)),
            "{other} written beside {planted}"
        );
        assert!(!exists(&target), "the symlink was followed");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    }
}

#[test]
fn keygen_under_umask_000_creates_a_private_directory() {
    use std::os::unix::fs::PermissionsExt;
    let t = TestRoot::new();
    let dir = t.dir.path().join("new/keys");
    let o = Command::new("sh")
        .arg("-c")
        .arg("umask 000; exec \"$0\" keygen \"$1\"")
        .arg(bin())
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("libwarden.key")), 0o600);
    assert_eq!(mode(&dir.join("libwarden.pub")), 0o644);
}
