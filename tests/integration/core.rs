//! init / check / update / paths against fixture roots.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::util::*;

#[test]
fn unchanged_root_checks_clean_and_quiet() {
    let t = TestRoot::debian();
    t.init();
    let o = t.run_ok(&["check"]);
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

#[test]
fn update_accepts_everything_or_only_the_named_subtrees() {
    let t = TestRoot::debian();
    t.init();
    t.compile_so(
        "usr/local/lib/libone.so",
        "libone.so",
        "int one(void){return 1;}",
    );
    t.compile_so(
        "usr/lib/x86_64-linux-gnu/libtwo.so",
        "libtwo.so",
        "int two(void){return 2;}",
    );

    let o = t.run_ok(&["--format", "json", "update", "/usr/local/lib"]);
    let accepted = json_lines(&o.stdout);
    assert!(
        find(&accepted, "added", "/usr/local/lib/libone.so").is_some(),
        "{accepted:#?}"
    );
    assert!(accepted
        .iter()
        .all(|f| f["path"].as_str().unwrap().starts_with("/usr/local/lib")));

    let (code, f) = t.check_json();
    assert!(
        find(&f, "added", "/usr/local/lib/libone.so").is_none(),
        "accepted: {f:#?}"
    );
    assert!(
        find(&f, "added", "/usr/lib/x86_64-linux-gnu/libtwo.so").is_some(),
        "not accepted: {f:#?}"
    );
    assert_eq!(code, 1);

    // Through a symlinked spelling (merged /usr): /lib is /usr/lib.
    t.run_ok(&["update", "/lib/x86_64-linux-gnu/libtwo.so"]);
    assert_eq!(t.check_json(), (0, vec![]));

    let o = t.run(&["update", "/nowhere"]);
    assert_eq!(o.status.code(), Some(66));
    let o = t.run(&["update", "relative/path"]);
    assert_eq!(o.status.code(), Some(64));

    std::fs::remove_file(t.path("usr/local/lib/libone.so")).unwrap();
    assert_eq!(t.run(&["update"]).status.code(), Some(0));
    assert_eq!(t.check_json(), (0, vec![]));
}

#[test]
fn content_change_with_restored_mtime_is_caught_by_ctime() {
    let t = TestRoot::debian();
    t.compile_so(
        "usr/local/lib/libsame.so",
        "libsame.so",
        "int s(void){return 1;}",
    );
    t.init();
    let p = t.path("usr/local/lib/libsame.so");
    let before = std::fs::metadata(&p).unwrap();
    let mut bytes = std::fs::read(&p).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff; // same size
    std::fs::write(&p, &bytes).unwrap();
    // touch -r: put the old mtime back.
    let status = std::process::Command::new("touch")
        .arg("-d")
        .arg(format!("@{}.{:09}", before.mtime(), before.mtime_nsec()))
        .arg(&p)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(std::fs::metadata(&p).unwrap().mtime(), before.mtime());
    let (code, f) = t.check_json();
    let c = find(&f, "content", "/usr/local/lib/libsame.so")
        .expect("content change behind a reset mtime");
    assert_eq!(c["severity"], "high");
    assert_eq!(code, 4);
}

#[test]
fn paths_follow_ld_so_conf_includes_and_dedupe_merged_usr() {
    let t = TestRoot::debian();
    t.write(
        "etc/ld.so.conf",
        "include ld.so.conf.d/*.conf\n/opt/a:/opt/b,/opt/c  # comment\nhwcap 0 nosegneg\n",
    );
    t.write("etc/ld.so.conf.d/nested.conf", "include /etc/more/*.conf\n");
    t.write("etc/more/x.conf", "/opt/nested\ninclude /etc/ld.so.conf\n");
    std::fs::create_dir_all(t.path("opt/a")).unwrap();
    let o = t.run(&["--format", "json", "paths"]);
    assert_eq!(o.status.code(), Some(0));
    let p = json_lines(&o.stdout);
    let get = |path: &str| {
        p.iter()
            .find(|x| x["path"] == path)
            .unwrap_or_else(|| panic!("{path} missing: {p:#?}"))
    };
    assert_eq!(get("/opt/a")["origins"][0], "/etc/ld.so.conf:2");
    assert_eq!(get("/opt/c")["exists"], false);
    assert_eq!(get("/opt/nested")["origins"][0], "/etc/more/x.conf:1");
    // /lib and /usr/lib are one directory, walked once.
    let usr = get("/usr/lib");
    assert_eq!(usr["aliases"], serde_json::json!(["/lib", "/usr/lib"]));
    assert!(p.iter().all(|x| x["path"] != "/lib"));
    assert_eq!(get("/usr/lib/x86_64-linux-gnu")["covered_by"], "/usr/lib");
    assert_eq!(get("/etc/ld.so.preload")["exists"], false);
    assert_eq!(
        get("/usr/lib64/ld-linux-x86-64.so.2")["origins"][0],
        "dynamic loader"
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("more than once"), "include cycle noted: {err}");
}

#[test]
fn loader_files_appearing_are_reported_with_their_weight() {
    let t = TestRoot::debian();
    t.init();
    t.write("etc/ld.so.preload", "\n");
    t.write("etc/ld.so.conf.d/zz-evil.conf", "/dev/shm\n");
    t.write("etc/ld.so.conf.d/.hidden.conf", "/tmp\n");
    let (code, f) = t.check_json();
    assert_eq!(
        find(&f, "added", "/etc/ld.so.preload").expect("preload")["severity"],
        "critical"
    );
    assert_eq!(
        find(&f, "added", "/etc/ld.so.conf.d/zz-evil.conf").expect("conf")["severity"],
        "high"
    );
    assert!(
        find(&f, "added", "/etc/ld.so.conf.d/.hidden.conf").is_some(),
        "{f:#?}"
    );
    assert_eq!(code & 1, 1);
}

#[test]
fn absolute_symlinks_in_the_root_never_escape_it() {
    let t = TestRoot::debian();
    // An image whose ld.so.conf is a symlink to the host's: it must resolve
    // inside the image (where it does not exist), never to the host.
    std::fs::remove_file(t.path("etc/ld.so.conf")).unwrap();
    t.link("/etc/ld.so.conf.d/libc.conf", "etc/ld.so.conf");
    t.write("etc/ld.so.conf.d/libc.conf", "/opt/inside\n");
    t.link("/usr/lib", "usr/local/lib/escape");
    let o = t.run(&["--format", "json", "paths"]);
    let p = json_lines(&o.stdout);
    assert!(p.iter().any(|x| x["path"] == "/opt/inside"), "{p:#?}");
    t.init();
    let o = t.run(&["--format", "json", "check"]);
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn a_windows_image_is_baselined_and_checked() {
    let t = TestRoot::new();
    std::fs::create_dir_all(t.path("WINDOWS/system32/drivers")).unwrap();
    std::fs::create_dir_all(t.path("WINDOWS/SysWOW64")).unwrap();
    let mut dll = vec![0u8; 512];
    dll[..2].copy_from_slice(b"MZ");
    dll[60..64].copy_from_slice(&128u32.to_le_bytes());
    dll[128..132].copy_from_slice(b"PE\0\0");
    dll[128 + 22..128 + 24].copy_from_slice(&0x2102u16.to_le_bytes()); // DLL flag
    t.write("WINDOWS/system32/kernel32.dll", &dll);
    let o = t.run(&["--format", "json", "paths"]);
    let p = json_lines(&o.stdout);
    for d in ["/WINDOWS/system32", "/WINDOWS/SysWOW64", "/WINDOWS"] {
        assert!(
            p.iter()
                .any(|x| x["path"] == d && x["origins"][0] == "windows system dir"),
            "{d}: {p:#?}"
        );
    }
    t.init();
    t.write("WINDOWS/system32/evil.dll", &dll);
    t.write("WINDOWS/version.dll", &dll);
    let (code, f) = t.check_json();
    assert_eq!(
        find(&f, "added", "/WINDOWS/system32/evil.dll").expect("dll")["after"]["class"],
        "pe_dll"
    );
    assert!(find(&f, "added", "/WINDOWS/version.dll").is_some());
    // These hand-made DLLs carry no Authenticode signature: the default
    // policy for a Windows image flags them too (bit 8).
    assert!(find(&f, "unsigned", "/WINDOWS/system32/evil.dll").is_some());
    assert_eq!(code, 1 | 8);
}

/// A small deterministic generator, so a failing run can be replayed.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn killing_init_or_update_at_random_points_never_leaves_a_mixed_baseline() {
    let t = TestRoot::debian();
    for i in 0..1500 {
        t.write(
            &format!("usr/lib/many/d{}/lib{i}.so", i % 30),
            format!("library {i}"),
        );
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("seed {seed}");
    let mut rng = Lcg(seed);
    let kill_after = |rng: &mut Lcg, args: &[&str]| {
        let mut child = t
            .cmd(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_micros(rng.next(120_000)));
        let _ = child.kill();
        let _ = child.wait();
    };

    // Before any complete init: a check finds a complete baseline or none.
    for _ in 0..6 {
        kill_after(&mut rng, &["init", "--force"]);
        let (code, f) = t.check_json();
        assert!(
            code == 0 || code == 65,
            "seed {seed}: half an init read as a baseline: {code} {f:#?}"
        );
    }
    t.run(&["init", "--force"]);
    assert_eq!(t.check_json(), (0, vec![]));

    // Generation N is "lib0 says v0"; N+1 would say "v1". A killed update
    // leaves exactly one of them, never a mix and never corruption.
    for round in 0..8 {
        t.write("usr/lib/many/d0/lib0.so", format!("version {}", round + 1));
        kill_after(&mut rng, &["update"]);
        let (code, f) = t.check_json();
        assert!(
            code == 0 || code == 4,
            "seed {seed} round {round}: exit {code}: {f:#?}"
        );
        assert!(
            f.len() <= 1,
            "seed {seed}: more than the one changed file: {f:#?}"
        );
        t.run(&["update"]);
    }
}
