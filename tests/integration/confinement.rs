//! Confinement under `--root` while the tree changes: a directory inside
//! the root swapped for a symlink to an outside directory, over and over,
//! while libwarden walks, hashes and reads configuration. Nothing from the
//! other side (content, digest or name) may reach a record, a finding,
//! stdout or stderr.

use std::ffi::CString;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::util::*;

/// The mark every outside name carries.
const SECRET: &str = "OUTSIDE-SECRET";

/// Rounds of the race in a normal test run; `LIBWARDEN_RACE_ROUNDS`
/// overrides (the attack run used 240).
fn rounds(default: usize) -> usize {
    std::env::var("LIBWARDEN_RACE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// An outside directory of `n` uniquely named, uniquely filled files (and
/// a subdirectory of more), with the BLAKE3 hex digests of their contents.
fn outside_tree(dir: &Path, n: usize) -> Vec<String> {
    std::fs::create_dir_all(dir.join(format!("{SECRET}-DIR"))).unwrap();
    let mut digests = Vec::new();
    for i in 0..n {
        let body = format!("outside file {i}: {SECRET} content\n");
        let name = if i % 10 == 0 {
            format!("{SECRET}-DIR/{SECRET}-{i}.so")
        } else {
            format!("{SECRET}-{i}.so")
        };
        std::fs::write(dir.join(name), &body).unwrap();
        digests.push(blake3::hash(body.as_bytes()).to_hex().to_string());
    }
    digests
}

/// Swaps `a` and `b` (one a directory, one a symlink) atomically, again
/// and again, until stopped; counts the swaps.
struct Swapper {
    stop: Arc<AtomicBool>,
    swaps: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Swapper {
    fn start(a: &Path, b: &Path) -> Swapper {
        let stop = Arc::new(AtomicBool::new(false));
        let swaps = Arc::new(AtomicUsize::new(0));
        let (a, b) = (cstr(a), cstr(b));
        let (st, sw) = (stop.clone(), swaps.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                // SAFETY: two NUL-terminated paths.
                let rc = unsafe {
                    libc::renameat2(
                        libc::AT_FDCWD,
                        a.as_ptr(),
                        libc::AT_FDCWD,
                        b.as_ptr(),
                        libc::RENAME_EXCHANGE,
                    )
                };
                assert_eq!(rc, 0, "renameat2: {}", std::io::Error::last_os_error());
                sw.fetch_add(1, Ordering::Relaxed);
            }
        });
        Swapper {
            stop,
            swaps,
            thread: Some(thread),
        }
    }

    /// Stops swapping, leaving the pair as it was at the start (an even
    /// number of swaps). Returns the swap count.
    fn stop(mut self, a: &Path, b: &Path) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        let n = self.swaps.load(Ordering::Relaxed);
        if n % 2 == 1 {
            let (a, b) = (cstr(a), cstr(b));
            // SAFETY: two NUL-terminated paths.
            let rc = unsafe {
                libc::renameat2(
                    libc::AT_FDCWD,
                    a.as_ptr(),
                    libc::AT_FDCWD,
                    b.as_ptr(),
                    libc::RENAME_EXCHANGE,
                )
            };
            assert_eq!(rc, 0);
        }
        n
    }
}

fn cstr(p: &Path) -> CString {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// Asserts that nothing from outside shows in one run's output.
fn assert_clean(what: &str, out: &std::process::Output, digests: &[String]) {
    for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let text = String::from_utf8_lossy(bytes);
        assert!(
            !text.contains(SECRET),
            "{what}: an outside name reached {stream}:\n{text}"
        );
        if let Some(d) = digests.iter().find(|d| text.contains(d.as_str())) {
            panic!("{what}: the digest of an outside file ({d}) reached {stream}:\n{text}");
        }
    }
    assert!(
        matches!(out.status.code(), Some(0..=15)),
        "{what}: exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_directory_swapped_for_an_outside_symlink_during_check_never_yields_outside_records_or_names() {
    let t = TestRoot::debian();
    let lib = t.path("usr/lib/x86_64-linux-gnu");
    let sub = lib.join("sub");
    std::fs::create_dir_all(sub.join("deeper")).unwrap();
    for i in 0..5 {
        std::fs::write(sub.join(format!("inside-{i}.so")), format!("inside {i}\n")).unwrap();
    }
    std::fs::write(sub.join("deeper/inside.so"), "deeper\n").unwrap();
    let outside = t.dir.path().join("outside");
    let digests = outside_tree(&outside, 201);
    let link = lib.join("sub.link");
    std::os::unix::fs::symlink(&outside, &link).unwrap();

    let n = rounds(12);
    let mut swaps = 0;
    for round in 0..n {
        let swapper = Swapper::start(&sub, &link);
        let init = t.run(&["--format", "json", "init", "--force"]);
        let check = t.run(&["--format", "json", "check", "--paranoid"]);
        swaps += swapper.stop(&sub, &link);
        assert_clean(&format!("round {round}: init"), &init, &digests);
        assert_clean(&format!("round {round}: check"), &check, &digests);
        // The baseline itself: every record, with its digest.
        let export = t.run(&["export"]);
        assert_clean(&format!("round {round}: export"), &export, &digests);
    }
    eprintln!("{n} rounds, {swaps} swaps");
    // The walk still sees the real directory when nothing races.
    let export = t.run_ok(&["export"]);
    let text = String::from_utf8_lossy(&export.stdout);
    assert!(
        text.contains("/usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3"),
        "{text}"
    );
}

/// Runs `paths` while `etc/ld.so.conf.d` is swapped with an outside
/// directory whose conf names an outside library directory.
#[test]
fn a_config_directory_swapped_for_an_outside_symlink_is_never_read() {
    let t = TestRoot::debian();
    let outside = t.dir.path().join("outside-conf");
    std::fs::create_dir_all(&outside).unwrap();
    // Same name as an inside file, and one only outside.
    std::fs::write(
        outside.join("libc.conf"),
        format!("/usr/lib/{SECRET}-LIBC\n"),
    )
    .unwrap();
    std::fs::write(
        outside.join(format!("{SECRET}.conf")),
        format!("/usr/lib/{SECRET}-ONLY\n"),
    )
    .unwrap();
    let dir = t.path("etc/ld.so.conf.d");
    let link = t.path("etc/ld.so.conf.d.link");
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    // One run in about 80 hit the window before the fix (debug build).
    let n = rounds(12) * 16;
    let swapper = Swapper::start(&dir, &link);
    let mut outs = Vec::new();
    for _ in 0..n {
        outs.push(t.run(&["paths"]));
    }
    let swaps = swapper.stop(&dir, &link);
    eprintln!("{n} runs of paths, {swaps} swaps");
    for (i, o) in outs.iter().enumerate() {
        assert_clean(&format!("paths run {i}"), o, &[]);
    }
    // Unraced, the inside configuration is read.
    let o = t.run_ok(&["paths"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("/usr/local/lib"));
}

/// A root-relative read whose parent directory is, at the time of the
/// read, a symlink to outside the root: refused, not followed (both the
/// absolute target and a relative one climbing out).
#[test]
fn a_dpkg_database_whose_directory_is_an_outside_symlink_is_not_read() {
    let t = TestRoot::debian();
    let outside = t.dir.path().join("outside-dpkg");
    std::fs::create_dir_all(outside.join("info")).unwrap();
    std::fs::write(
        outside.join("status"),
        format!(
            "Package: {SECRET}\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1\n\n"
        ),
    )
    .unwrap();
    std::fs::write(
        outside.join(format!("info/{SECRET}.list")),
        "/usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3\n",
    )
    .unwrap();
    std::fs::create_dir_all(t.path("var/lib")).unwrap();
    std::os::unix::fs::symlink(&outside, t.path("var/lib/dpkg")).unwrap();
    t.init();
    let o = t.run(&["--format", "json", "check"]);
    assert_clean("check", &o, &[]);
    let o = t.run(&["--format", "json", "audit"]);
    assert_clean("audit", &o, &[]);
}

/// Two 3 GB sparse hives in a Windows image: refused with a warning each,
/// the audit goes on, and nothing near their size is read.
#[test]
fn two_sparse_3_gb_hives_are_refused_with_a_warning_and_the_audit_goes_on() {
    let t = TestRoot::new();
    for d in [
        "Windows/System32/config",
        "Windows/SysWOW64",
        "Program Files",
    ] {
        std::fs::create_dir_all(t.path(d)).unwrap();
    }
    for h in ["SYSTEM", "SOFTWARE"] {
        let f = std::fs::File::create(t.path(&format!("Windows/System32/config/{h}"))).unwrap();
        f.set_len(3 << 30).unwrap();
    }
    let o = t.run(&["audit"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        matches!(o.status.code(), Some(0..=15)),
        "exit {:?}: {err}",
        o.status.code()
    );
    for h in ["SYSTEM", "SOFTWARE"] {
        assert!(
            err.contains(&format!("{h} hive")) && err.contains("larger than"),
            "no warning for the {h} hive: {err}"
        );
    }
}
