//! Hostile input: special files, loops, unreadable and hostile names, deep
//! trees, planted ignore files, a damaged or locked baseline. Each gets a
//! finding or a warning, and the run goes on without panicking or hanging.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

/// Waits for a child with a bound; a hang is a test failure, not a stall.
fn wait_bounded(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("libwarden did not finish within {limit:?}: it hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run_bounded(t: &TestRoot, args: &[&str]) -> Output {
    let child = t
        .cmd(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_bounded(child, Duration::from_secs(60))
}

fn no_panic(o: &Output) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "panic: {err}");
}

#[test]
fn special_files_and_broken_links_never_block_or_stop_the_scan() {
    let t = TestRoot::debian();
    let lib = t.path("usr/lib/x86_64-linux-gnu");
    crate::util::mkfifo(&lib.join("libfifo.so"), 0o644);
    let _sock = std::os::unix::net::UnixListener::bind(lib.join("libsock.so")).unwrap();
    t.link("libloop2.so", "usr/lib/x86_64-linux-gnu/libloop1.so");
    t.link("libloop1.so", "usr/lib/x86_64-linux-gnu/libloop2.so");
    t.link(".", "usr/lib/x86_64-linux-gnu/dirloop");
    t.link(
        "/nonexistent/libdangling.so.9",
        "usr/lib/x86_64-linux-gnu/libdangling.so",
    );
    if is_root() {
        let c = std::ffi::CString::new(lib.join("libnull.so").as_os_str().as_bytes()).unwrap();
        assert_eq!(
            unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o644, libc::makedev(1, 3)) },
            0
        );
    }
    let o = run_bounded(&t, &["init"]);
    no_panic(&o);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // The FIFO is swapped for a regular file: a type change.
    std::fs::remove_file(lib.join("libfifo.so")).unwrap();
    std::fs::write(lib.join("libfifo.so"), b"now a file").unwrap();
    let o = run_bounded(&t, &["--format", "json", "check"]);
    no_panic(&o);
    let f = json_lines(&o.stdout);
    let ty = find(&f, "type", "/usr/lib/x86_64-linux-gnu/libfifo.so").expect("type change");
    assert_eq!(ty["before"]["type"], "fifo");
    assert_eq!(ty["after"]["type"], "file");
    assert_eq!(f.len(), 1, "only the FIFO changed: {f:#?}");
    assert_eq!(o.status.code(), Some(4));
}

#[test]
fn hostile_names_keep_json_valid_and_terminals_safe() {
    let t = TestRoot::debian();
    t.init();
    let lib = t.path("usr/lib/x86_64-linux-gnu");
    let names: [&[u8]; 4] = [
        b"lib\xff\xfe.so",
        b"lib\nfake.so: content changed",
        b"\x1b[31mred\x1b[0m.so",
        b"\xe2\x80\xaeos.bil",
    ];
    for n in names {
        std::fs::write(lib.join(std::ffi::OsStr::from_bytes(n)), b"x").unwrap();
    }
    let o = t.run(&["--format", "json", "check"]);
    let f = json_lines(&o.stdout);
    assert_eq!(f.len(), 4, "{f:#?}");
    let bad = f
        .iter()
        .find(|x| x["path_hex"].is_string())
        .expect("path_hex for invalid UTF-8");
    let want: String = b"/usr/lib/x86_64-linux-gnu/lib\xff\xfe.so"
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(bad["path_hex"], want.as_str());
    assert_eq!(bad["path"], "/usr/lib/x86_64-linux-gnu/lib\\xff\\xfe.so");
    assert!(f
        .iter()
        .any(|x| x["path"] == "/usr/lib/x86_64-linux-gnu/lib\nfake.so: content changed"));

    let o = t.run(&["check"]);
    let out = String::from_utf8(o.stdout).unwrap();
    assert_eq!(out.lines().count(), 4, "one line per finding: {out}");
    assert!(
        !out.contains('\x1b') && !out.contains('\u{202e}'),
        "raw escapes reached the terminal: {out:?}"
    );
    assert!(out.contains("\\u{1b}[31mred"), "{out}");
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(!err.contains('\x1b'), "{err:?}");
}

#[test]
fn planted_ignore_files_and_hidden_names_hide_nothing() {
    let t = TestRoot::debian();
    t.write("usr/lib/.ignore", "*.so\n");
    t.write("usr/lib/.gitignore", "*\n");
    t.write("usr/lib/x86_64-linux-gnu/.ignore", "*\n");
    std::fs::create_dir_all(t.path("usr/lib/.git")).unwrap();
    t.init();
    t.compile_so(
        "usr/lib/x86_64-linux-gnu/libhidden.so",
        "libhidden.so",
        "int h(void){return 1;}",
    );
    t.compile_so("usr/lib/.x.so", ".x.so", "int x(void){return 1;}");
    t.compile_so(
        "usr/lib/.hidden/libdeep.so",
        "libdeep.so",
        "int d(void){return 1;}",
    );
    let (code, f) = t.check_json();
    for p in [
        "/usr/lib/x86_64-linux-gnu/libhidden.so",
        "/usr/lib/.x.so",
        "/usr/lib/.hidden/libdeep.so",
    ] {
        let a = find(&f, "added", p).unwrap_or_else(|| panic!("{p} not reported: {f:#?}"));
        assert_eq!(a["after"]["class"], "elf_dyn");
    }
    assert_eq!(code & 1, 1);
}

#[test]
fn a_tree_deeper_than_path_max_warns_and_goes_on() {
    let t = TestRoot::debian();
    // Built with mkdirat/openat: the full path is longer than PATH_MAX.
    let name = std::ffi::CString::new("d".repeat(200)).unwrap();
    let top = std::ffi::CString::new(t.path("usr/lib").as_os_str().as_bytes()).unwrap();
    let mut fd = unsafe { libc::open(top.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) };
    assert!(fd >= 0);
    for _ in 0..30 {
        unsafe {
            assert_eq!(libc::mkdirat(fd, name.as_ptr(), 0o755), 0);
            let next = libc::openat(fd, name.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
            libc::close(fd);
            assert!(next >= 0);
            fd = next;
        }
    }
    unsafe { libc::close(fd) };
    let o = run_bounded(&t, &["init"]);
    no_panic(&o);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("warning"),
        "the unreachable depth must be reported: {err}"
    );
    let o = run_bounded(&t, &["check"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn missing_search_dirs_are_listed_and_do_not_stop_init() {
    let t = TestRoot::debian();
    t.write("etc/ld.so.conf.d/opt.conf", "/opt/missing/lib\n");
    let o = t.run(&["--format", "json", "paths"]);
    let p = json_lines(&o.stdout);
    let m = p
        .iter()
        .find(|x| x["path"] == "/opt/missing/lib")
        .expect("listed");
    assert_eq!(m["exists"], false);
    assert_eq!(m["origins"][0], "/etc/ld.so.conf.d/opt.conf:1");
    t.init();
    // The directory appears later, with a library in it: reported.
    t.compile_so(
        "opt/missing/lib/libopt.so",
        "libopt.so",
        "int o(void){return 1;}",
    );
    let (code, f) = t.check_json();
    assert!(
        find(&f, "added", "/opt/missing/lib/libopt.so").is_some(),
        "{f:#?}"
    );
    assert_eq!(code & 1, 1);
}

/// Runs a command as `nobody` (tests run as root in CI).
fn as_nobody(t: &TestRoot, args: &[&str]) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(bin())
        .arg("--root")
        .arg(t.root())
        .arg("--db")
        .arg(t.db())
        .args(args)
        .output()
        .expect("setpriv (util-linux)")
}

#[test]
fn unreadable_files_are_warned_about_and_reported_unverified() {
    if !is_root() {
        eprintln!("skipped: needs root to run the scan as an unprivileged user");
        return;
    }
    let t = TestRoot::debian();
    std::fs::set_permissions(t.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(t.dir.path().join("state"), Some(65534), Some(65534)).unwrap();
    let secret = t.path("usr/lib/x86_64-linux-gnu/libsecret.so");
    std::fs::write(&secret, b"secret").unwrap();
    let o = as_nobody(&t, &["init"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
    let o = as_nobody(&t, &["--format", "json", "check"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("libsecret.so") && err.contains("Permission denied"),
        "{err}"
    );
    let f = json_lines(&o.stdout);
    let u = find(&f, "unverified", "/usr/lib/x86_64-linux-gnu/libsecret.so").expect("unverified");
    assert_eq!(u["after"]["unhashed"], "unreadable");
    assert_eq!(o.status.code(), Some(4));
}

#[test]
fn baseline_errors_are_plain_and_exit_65() {
    let t = TestRoot::debian();
    let o = t.run(&["check"]);
    assert_eq!(o.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&o.stderr).contains("run `libwarden init`"));

    t.init();
    let o = t.run(&["init"]);
    assert_eq!(o.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));
    assert_eq!(t.run(&["init", "--force"]).status.code(), Some(0));

    // Another libwarden is writing the baseline: a second writer is told
    // so; a reader needs no lock (it reads the complete live generation).
    let held = libwarden::baseline::store::Store::open_for_write(&t.db()).unwrap();
    let o = t.run(&["update"]);
    assert_eq!(o.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&o.stderr).contains("locked by another running libwarden"));
    assert_eq!(t.run(&["check"]).status.code(), Some(0));
    drop(held);
    assert_eq!(t.run(&["update"]).status.code(), Some(0));
    assert_eq!(t.run(&["check"]).status.code(), Some(0));

    let o = Command::new(bin())
        .args(["--root", "/nonexistent/root", "check"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(66));
    let o = Command::new(bin())
        .args(["check", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(64));
}

#[test]
fn a_damaged_store_is_reported_never_trusted_or_panicked_on() {
    for damage in ["truncate", "garbage"] {
        let t = TestRoot::debian();
        t.init();
        let db = live_generation_dir(&t.db()).join("db");
        // sled keeps the free tail of its log zeroed: cutting zeros away
        // damages nothing, so cut into the bytes that hold data.
        let bytes = std::fs::read(&db).unwrap();
        let len = bytes.iter().rposition(|&b| b != 0).unwrap() as u64 + 1;
        match damage {
            "truncate" => {
                let f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
                f.set_len(len / 3).unwrap();
            }
            _ => {
                let junk: Vec<u8> = (0..len).map(|i| (i * 131 % 251) as u8).collect();
                std::fs::write(&db, junk).unwrap();
            }
        }
        let o = run_bounded(&t, &["check"]);
        no_panic(&o);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(65), "{damage}: {err}");
        assert!(err.contains("corrupt"), "{damage}: {err}");
    }
}
