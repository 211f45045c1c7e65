//! Tests for `guard`: real fanotify permission events on the fixture's own
//! directories (`--scope dirs`, so nothing else on the machine is marked),
//! real programs loading real gcc-built libraries through the host's ld.so.

#[allow(unused_imports)]
use crate::util::*;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::Receiver;
use serde_json::Value;

const LIBDIR: &str = "usr/lib/x86_64-linux-gnu";
const EVIL: &str = "/usr/lib/x86_64-linux-gnu/libevil.so";
const FOO: &str = "/usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3";

/// Whether fanotify permission events work here (root, a kernel with
/// them); says why not, loudly.
fn fanotify_available() -> bool {
    if !is_root() {
        eprintln!("SKIPPED: guard tests need root (fanotify permission events)");
        return false;
    }
    // SAFETY: plain system calls; the descriptor is closed at once.
    let fd = unsafe { libc::fanotify_init(libc::FAN_CLASS_CONTENT | libc::FAN_CLOEXEC, 0) };
    if fd < 0 {
        eprintln!(
            "SKIPPED: fanotify_init(FAN_CLASS_CONTENT) failed: {}",
            std::io::Error::last_os_error()
        );
        return false;
    }
    unsafe { libc::close(fd) };
    true
}

/// A root with libfoo (baselined) and, after the baseline, libevil in the
/// same search dir; a program that dlopens its argument and one that does
/// nothing (for LD_PRELOAD). The programs live outside the root.
fn fixture(signed: bool) -> (TestRoot, Option<std::path::PathBuf>) {
    let t = TestRoot::debian();
    let key = if signed {
        let keys = t.dir.path().join("keys");
        t.run_ok(&["keygen", keys.to_str().unwrap()]);
        t.run_ok(&[
            "init",
            "--sign-with",
            keys.join("libwarden.key").to_str().unwrap(),
        ]);
        Some(keys.join("libwarden.pub"))
    } else {
        t.init();
        None
    };
    t.compile_so(
        &format!("{LIBDIR}/libevil.so"),
        "libevil.so",
        "int evil(void){return 666;}",
    );
    let dl = "#include <dlfcn.h>\n#include <stdio.h>\n\
              int main(int c, char **v){ void *h = dlopen(v[1], RTLD_NOW);\
              if (!h) { fprintf(stderr, \"dlopen: %s\\n\", dlerror()); return 3; } return 0; }";
    t.compile_exe("../bin/dl", dl, &["-ldl"]);
    t.compile_exe("../bin/nop", "int main(void){return 0;}", &[]);
    (t, key)
}

/// A running `libwarden --format json guard --scope dirs ...`: findings and
/// stderr read on threads, every wait bounded, killed when dropped.
struct Guard {
    child: Child,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    seen: Vec<Value>,
}

impl Guard {
    fn start(t: &TestRoot, extra: &[&str], env: &[(&str, &str)]) -> Guard {
        let mut args = vec!["--format", "json"];
        args.extend_from_slice(extra);
        let mut cmd = t.cmd(&args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn libwarden guard");
        let (tx, lines) = crossbeam_channel::unbounded();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let (etx, erx) = crossbeam_channel::unbounded();
        let (log, err) = (stderr.clone(), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                log.lock().unwrap().push_str(&format!("{l}\n"));
                let _ = etx.send(l);
            }
        });
        let end = Instant::now() + WAIT;
        loop {
            match erx.recv_timeout(end.saturating_duration_since(Instant::now())) {
                Ok(l) if l.contains("libwarden guard:") && l.contains("marks") => break,
                Ok(_) => {}
                Err(_) => panic!("guard did not start:\n{}", stderr.lock().unwrap()),
            }
        }
        Guard {
            child,
            lines,
            stderr,
            seen: Vec::new(),
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Reads findings until one matches `pred`; the finding and when it
    /// was read.
    fn expect(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> (Value, SystemTime) {
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return (v.clone(), SystemTime::now());
        }
        let end = Instant::now() + WAIT;
        loop {
            match self
                .lines
                .recv_timeout(end.saturating_duration_since(Instant::now()))
            {
                Ok(l) => {
                    let v: Value = serde_json::from_str(&l)
                        .unwrap_or_else(|e| panic!("invalid JSON line {l:?}: {e}"));
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return (v, SystemTime::now());
                    }
                }
                Err(_) => panic!(
                    "no {what} within {WAIT:?}; findings: {:#?}\nstderr:\n{}",
                    self.seen,
                    self.stderr()
                ),
            }
        }
    }

    fn drain(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while let Ok(l) = self
            .lines
            .recv_timeout(end.saturating_duration_since(Instant::now()))
        {
            self.seen.push(serde_json::from_str(&l).unwrap());
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn load_of<'a>(path: &'a str) -> impl Fn(&Value) -> bool + 'a {
    move |v| v["kind"] == "load" && v["path"] == path
}

/// Runs `prog` (bounded) with `LD_PRELOAD` set to `preload`.
fn preload(t: &TestRoot, preload: &str) -> std::process::Output {
    let mut c = Command::new(t.dir.path().join("bin/nop"));
    c.env("LD_PRELOAD", t.root().join(preload.trim_start_matches('/')));
    output_within(c, WAIT)
}

fn dlopen(t: &TestRoot, lib: &str) -> std::process::Output {
    let mut c = Command::new(t.dir.path().join("bin/dl"));
    c.arg(t.root().join(lib.trim_start_matches('/')));
    c.env_remove("LD_PRELOAD");
    output_within(c, WAIT)
}

fn rfc3339_secs(v: &Value) -> f64 {
    // "2026-12-01T14:20:26.123Z" -> seconds of the day (enough for a delta
    // within one test).
    let s = v.as_str().unwrap();
    let t = &s[11..s.len() - 1];
    let mut parts = t.split(':');
    let h: f64 = parts.next().unwrap().parse().unwrap();
    let m: f64 = parts.next().unwrap().parse().unwrap();
    let sec: f64 = parts.next().unwrap().parse().unwrap();
    h * 3600.0 + m * 60.0 + sec
}

#[test]
fn an_ld_preload_of_an_unknown_library_is_a_load_finding_naming_pid_exe_uid_and_library() {
    if !fanotify_available() {
        return;
    }
    let (t, _) = fixture(false);
    let mut g = Guard::start(&t, &["guard", "--scope", "dirs"], &[]);
    // The baselined library first: silent.
    let o = preload(&t, FOO);
    assert!(o.status.success(), "{o:?}");
    let mut c = Command::new(t.dir.path().join("bin/nop"));
    c.env("LD_PRELOAD", t.root().join(EVIL.trim_start_matches('/')));
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    let started = SystemTime::now();
    let child = c.spawn().unwrap();
    let pid = child.id();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "monitor mode refuses nothing: {o:?}");
    let (f, read_at) = g.expect("load finding for libevil", load_of(EVIL));
    assert_eq!(f["pid"], pid, "{f}");
    let exe = t.dir.path().join("bin/nop");
    assert_eq!(f["exe"], exe.to_str().unwrap(), "{f}");
    assert_eq!(f["uid"], 0, "{f}");
    assert_eq!(f["verdict"], "unknown", "{f}");
    assert_eq!(f["action"], "allowed", "{f}");
    assert_eq!(f["source"], "guard", "{f}");
    assert_eq!(f["severity"], "high", "{f}");
    assert_eq!(f["in_search_paths"], true, "{f}");
    assert_eq!(f["writable_dir"], false, "{f}");
    // Latency from the event to the finding on stdout, for the record (the
    // suite never asserts on speed).
    let lat = read_at.duration_since(started).unwrap_or_default();
    eprintln!(
        "guard: load finding read {:?} after the program started (event_time {})",
        lat, f["event_time"]
    );
    assert!(rfc3339_secs(&f["event_time"]) >= rfc3339_secs(&f["time"]) - 0.001);
    g.drain(Duration::from_millis(500));
    assert!(
        !g.seen.iter().any(load_of(FOO)),
        "a baselined library is silent: {:#?}",
        g.seen
    );
}

#[test]
fn enforce_refuses_an_unknown_library_and_loads_a_baselined_one() {
    if !fanotify_available() {
        return;
    }
    let (t, key) = fixture(true);
    let key = key.unwrap();
    let mut g = Guard::start(
        &t,
        &[
            "--verify-with",
            key.to_str().unwrap(),
            "guard",
            "--enforce",
            "--scope",
            "dirs",
        ],
        &[],
    );
    let o = preload(&t, EVIL);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cannot open shared object file"),
        "ld.so must fail to open the unknown preload: {err}"
    );
    let o = dlopen(&t, EVIL);
    assert_eq!(
        o.status.code(),
        Some(3),
        "dlopen of the unknown library fails: {o:?}"
    );
    let o = dlopen(&t, FOO);
    assert_eq!(
        o.status.code(),
        Some(0),
        "the baselined library loads: {o:?}"
    );
    let o = preload(&t, FOO);
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (f, _) = g.expect("a denied load", |v| {
        load_of(EVIL)(v) && v["action"] == "denied"
    });
    assert_eq!(f["mode"], "enforce");
    // A library changed after the baseline differs: refused too.
    t.compile_so(
        &format!("{LIBDIR}/libfoo.so.1.2.3"),
        "libfoo.so.1",
        "int foo(void){return 2;}",
    );
    let o = dlopen(&t, FOO);
    assert_eq!(
        o.status.code(),
        Some(3),
        "an altered library is refused: {o:?}"
    );
    let (f, _) = g.expect("the altered library", |v| {
        load_of(FOO)(v) && v["verdict"] == "differs"
    });
    assert_eq!(f["severity"], "critical");
}

#[test]
fn enforce_refuses_an_unsigned_baseline() {
    if !fanotify_available() {
        return;
    }
    let (t, _) = fixture(false);
    let o = output_within(t.cmd(&["guard", "--enforce", "--scope", "dirs"]), WAIT);
    assert_eq!(o.status.code(), Some(64), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("signed baseline"));
    // Nothing was marked: the unknown library still loads.
    assert_eq!(dlopen(&t, EVIL).status.code(), Some(0));
}

#[test]
fn dry_run_reports_what_it_would_deny_and_denies_nothing() {
    if !fanotify_available() {
        return;
    }
    let (t, _) = fixture(false);
    let mut g = Guard::start(&t, &["guard", "--dry-run", "--scope", "dirs"], &[]);
    assert_eq!(dlopen(&t, EVIL).status.code(), Some(0));
    let (f, _) = g.expect("would_deny", load_of(EVIL));
    assert_eq!(f["action"], "would_deny", "{f}");
}

#[test]
fn kill_9_of_an_enforcing_guard_leaves_opens_working_even_those_it_held() {
    if !fanotify_available() {
        return;
    }
    let (t, key) = fixture(true);
    let key = key.unwrap();
    // Every verdict is held 30 s, the deadline is longer: an open made now
    // waits on the guard until the guard dies.
    let g = Guard::start(
        &t,
        &[
            "--verify-with",
            key.to_str().unwrap(),
            "guard",
            "--enforce",
            "--scope",
            "dirs",
            "--verdict-timeout",
            "60s",
        ],
        &[("LIBWARDEN_GUARD_TEST_DELAY", "30s")],
    );
    let mut held = Command::new(t.dir.path().join("bin/dl"));
    held.arg(t.root().join(EVIL.trim_start_matches('/')));
    held.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut held = held.spawn().unwrap();
    // Wait until the opener is blocked in the kernel on the guard's answer.
    let end = Instant::now() + WAIT;
    loop {
        let wchan =
            std::fs::read_to_string(format!("/proc/{}/wchan", held.id())).unwrap_or_default();
        if wchan.contains("fanotify") || wchan.contains("fsnotify") {
            eprintln!("opener held in {wchan}");
            break;
        }
        assert!(
            held.try_wait().unwrap().is_none(),
            "the opener should be held by the guard"
        );
        assert!(
            Instant::now() < end,
            "the opener never blocked (wchan {wchan:?})"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(g.pid(), libc::SIGKILL) };
    let end = Instant::now() + WAIT;
    let st = loop {
        if let Some(st) = held.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < end,
            "the held open was not released by the kernel"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // The kernel answered allow for the dead group: the library loaded.
    assert_eq!(st.code(), Some(0), "the held open was allowed");
    assert_eq!(dlopen(&t, EVIL).status.code(), Some(0));
    assert!(std::fs::read(t.path(&format!("{LIBDIR}/libfoo.so.1.2.3"))).is_ok());
    drop(g);
}

#[test]
fn a_verdict_past_its_deadline_fails_open_with_a_gap_finding() {
    if !fanotify_available() {
        return;
    }
    let (t, key) = fixture(true);
    let key = key.unwrap();
    let mut g = Guard::start(
        &t,
        &[
            "--verify-with",
            key.to_str().unwrap(),
            "guard",
            "--enforce",
            "--scope",
            "dirs",
            "--verdict-timeout",
            "50ms",
        ],
        &[("LIBWARDEN_GUARD_TEST_DELAY", "1s")],
    );
    let o = dlopen(&t, EVIL);
    assert_eq!(
        o.status.code(),
        Some(0),
        "without a verdict in time the open is allowed: {o:?}"
    );
    let (gap, _) = g.expect("a guard monitoring_gap", |v| {
        v["kind"] == "monitoring_gap" && v["source"] == "guard"
    });
    assert!(gap["late"].as_u64().unwrap() >= 1, "{gap}");
    assert!(gap["gap_start"].is_string() && gap["gap_end"].is_string());
    let (f, _) = g.expect("the late verdict", load_of(EVIL));
    assert_eq!(f["action"], "allowed_late", "{f}");
}

#[test]
fn a_full_verdict_queue_fails_open_with_a_gap_finding() {
    if !fanotify_available() {
        return;
    }
    let (t, _) = fixture(false);
    let mut g = Guard::start(
        &t,
        &[
            "guard",
            "--dry-run",
            "--scope",
            "dirs",
            "--queue",
            "1",
            "--workers",
            "1",
            "--verdict-timeout",
            "20s",
        ],
        &[("LIBWARDEN_GUARD_TEST_DELAY", "2s")],
    );
    // Six opens at once (each verdict takes 2 s, far longer than starting
    // six processes even on a loaded machine): one is judged, one waits,
    // the rest find the queue full and are allowed at once.
    let kids: Vec<Child> = (0..6)
        .map(|_| {
            Command::new("cat")
                .arg(t.path(&format!("{LIBDIR}/libfoo.so.1.2.3")))
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut k in kids {
        assert!(k.wait().unwrap().success());
    }
    let (gap, _) = g.expect("a queue_full gap", |v| {
        v["kind"] == "monitoring_gap" && v["queue_full"].as_u64().unwrap_or(0) >= 1
    });
    assert_eq!(gap["source"], "guard");
}

// ---- export --format fapolicyd | auditd | applocker ----

fn export(t: &TestRoot, format: &str) -> (String, String) {
    let o = t.run(&["--format", format, "export"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    (
        String::from_utf8(o.stdout).unwrap(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// fapolicyd-cli, if installed (the `fapolicyd` package of .ci/deps).
fn fapolicyd_cli() -> bool {
    let ok = Command::new("fapolicyd-cli")
        .arg("--help")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("--trust-file"));
    if !ok {
        eprintln!("SKIPPED: fapolicyd-cli is not installed (apt install fapolicyd)");
    }
    ok
}

#[test]
fn the_fapolicyd_trust_file_is_what_fapolicyd_cli_computes_itself() {
    let t = TestRoot::debian();
    t.compile_so(
        "usr/lib/x86_64-linux-gnu/lib space.so",
        "libspace.so",
        "int s(void){return 7;}",
    );
    t.write("usr/lib/x86_64-linux-gnu/notes.txt", "not an ELF object\n");
    t.init();
    // Changed after the baseline: left out, never exported with its new
    // digest.
    t.compile_so(
        "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        "ld-linux-x86-64.so.2",
        "int changed(void){return 9;}",
    );
    let (text, err) = export(&t, "fapolicyd");
    assert!(
        text.starts_with("# AUTOGENERATED FILE VERSION 2\n"),
        "{text}"
    );
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    let foo = format!("{FOO} ");
    let entry = lines.iter().find(|l| l.starts_with(&foo)).expect(&text);
    let bytes = std::fs::read(t.path(&format!("{LIBDIR}/libfoo.so.1.2.3"))).unwrap();
    let sha = Command::new("sha256sum")
        .arg(t.path(&format!("{LIBDIR}/libfoo.so.1.2.3")))
        .output()
        .unwrap();
    let sha = String::from_utf8(sha.stdout).unwrap();
    assert_eq!(
        *entry,
        format!("{FOO} {} {}", bytes.len(), &sha[..64]),
        "path, size and SHA-256 (sha256sum's)"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("/usr/lib/x86_64-linux-gnu/lib%20space.so ")),
        "whitespace is %-escaped as fapolicyd's version 2 format wants: {text}"
    );
    assert!(!text.contains("notes.txt"), "only ELF objects: {text}");
    assert!(!text.contains("ld-linux-x86-64.so.2 "), "{text}");
    assert!(
        err.contains("ld-linux-x86-64.so.2: its content changed since the baseline"),
        "{err}"
    );

    if !fapolicyd_cli() {
        return;
    }
    // fapolicyd-cli has no offline validator for a trust file, but
    // `--file update PREFIX --trust-file NAME` parses trust.d/NAME (a
    // parse error fails), recomputes size and SHA-256 of every entry under
    // PREFIX from the file on disk, and writes the file back in its own
    // format. An unchanged file is fapolicyd agreeing with every field. It
    // needs no daemon and no trust database. The entries name host paths
    // here (the fixture's root prefixed), under a name of this test's own.
    let name = format!("libwarden-test-{}", std::process::id());
    let trust_d = std::path::Path::new("/etc/fapolicyd/trust.d");
    if !trust_d.is_dir() {
        eprintln!("SKIPPED: {} does not exist", trust_d.display());
        return;
    }
    let root = t.root();
    let root = root.to_str().unwrap();
    let mut hosted = String::new();
    for l in text.lines() {
        if l.starts_with('#') {
            hosted.push_str(l);
        } else {
            hosted.push_str(&format!("{root}{l}"));
        }
        hosted.push('\n');
    }
    let file = trust_d.join(&name);
    std::fs::write(&file, &hosted).unwrap();
    let o = Command::new("fapolicyd-cli")
        .args(["--file", "update", root, "--trust-file", &name])
        .output()
        .unwrap();
    let after = std::fs::read_to_string(&file).unwrap_or_default();
    let _ = std::fs::remove_file(&file);
    assert!(o.status.success(), "fapolicyd-cli: {o:?}");
    assert_eq!(after, hosted, "fapolicyd rewrote entries it disagrees with");
}

#[test]
fn auditd_rules_watch_every_search_dir_the_loader_and_ld_so_conf() {
    let t = TestRoot::debian();
    t.init();
    let (text, _) = export(&t, "auditd");
    let rules: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    for want in [
        "/usr/lib",
        "/usr/lib64",
        "/usr/local/lib",
        "/etc/ld.so.conf",
        "/etc/ld.so.conf.d",
        "/etc/ld.so.preload",
        "/etc/ld.so.cache",
    ] {
        let rule = format!("-w {want} -p wa -k libwarden");
        assert!(rules.contains(&rule.as_str()), "{rule} missing:\n{text}");
    }
    assert!(
        rules.iter().any(|r| r.contains("ld-linux-x86-64.so.2")),
        "the loader is watched:\n{text}"
    );
    // auditctl's grammar for a watch (auditctl(8)): -w PATH -p [r|w|x|a]
    // -k KEY, the key at most 31 bytes.
    for r in &rules {
        let f: Vec<&str> = r.split(' ').collect();
        assert_eq!(f.len(), 6, "{r}");
        assert!(f[0] == "-w" && f[1].starts_with('/') && f[2] == "-p" && f[4] == "-k");
        assert!(f[3].chars().all(|c| "rwxa".contains(c)));
        assert!(f[5].len() <= 31);
    }

    // The real auditctl, when the kernel's audit subsystem answers: load
    // the rules under this test's own key (on the fixture's host paths, so
    // nothing of the machine is watched), list them, delete them.
    let listed = Command::new("auditctl").arg("-l").output();
    if !listed.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED: auditctl -l fails here (no auditd, or no kernel audit): {listed:?}");
        return;
    }
    let key = format!("lw-test-{}", std::process::id());
    let root = t.root();
    let hosted: String = rules
        .iter()
        .map(|r| {
            r.replacen("-w ", &format!("-w {}", root.display()), 1)
                .replace("-k libwarden", &format!("-k {key}"))
                + "\n"
        })
        .collect();
    let file = t.dir.path().join("libwarden.rules");
    std::fs::write(&file, &hosted).unwrap();
    let load = Command::new("auditctl")
        .arg("-R")
        .arg(&file)
        .output()
        .unwrap();
    let list = Command::new("auditctl")
        .args(["-l", "-k", &key])
        .output()
        .unwrap();
    let del = Command::new("auditctl")
        .args(["-D", "-k", &key])
        .output()
        .unwrap();
    assert!(load.status.success(), "auditctl -R: {load:?}\n{hosted}");
    assert!(del.status.success(), "auditctl -D -k: {del:?}");
    let list = String::from_utf8_lossy(&list.stdout);
    assert_eq!(
        list.lines().filter(|l| l.contains(&key)).count(),
        rules.len(),
        "every rule loaded: {list}"
    );
}

#[test]
fn applocker_rules_hold_the_authenticode_sha256_osslsigncode_computes() {
    if Command::new("osslsigncode")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: osslsigncode is not installed");
        return;
    }
    let t = TestRoot::new();
    let sys = "Windows/System32";
    let ca = crate::provenance::make_ca(t.dir.path(), "Test Root CA");
    let leaf = crate::provenance::make_leaf(t.dir.path(), &ca, "Test Publisher");
    let signed = crate::provenance::compile_dll(&t, &format!("{sys}/signed.dll"), 1);
    crate::provenance::sign_dll(&signed, &leaf, &ca.1);
    crate::provenance::compile_dll(&t, &format!("{sys}/a&b.dll"), 2);
    t.write(&format!("{sys}/readme.txt"), "not a DLL");
    t.init();
    let (xml, err) = export(&t, "applocker");
    assert!(xml.starts_with("<AppLockerPolicy Version=\"1\">"), "{xml}");
    assert!(xml.contains("<RuleCollection Type=\"Dll\" EnforcementMode=\"AuditOnly\">"));
    assert_eq!(xml.matches("<FileHashRule ").count(), 2, "{xml}\n{err}");
    assert_eq!(xml.matches("</FileHashRule>").count(), 2);
    assert!(xml.contains("Name=\"a&amp;b.dll\""), "{xml}");
    assert!(!xml.contains("readme"));
    // The shape of the AppLocker schema: each rule an Id GUID, a Name, a
    // UserOrGroupSid and an Action, holding Conditions/FileHashCondition/
    // FileHash with Type, Data (0x + hex), SourceFileName, SourceFileLength.
    for rule in xml.split("<FileHashRule ").skip(1) {
        let attr = |name: &str| -> String {
            let at = rule
                .find(&format!(" {name}=\""))
                .or_else(|| rule.starts_with(&format!("{name}=\"")).then_some(0));
            let at = at.unwrap_or_else(|| panic!("{name} missing in {rule}"));
            let rest = &rule[at..];
            let v = &rest[rest.find('"').unwrap() + 1..];
            v[..v.find('"').unwrap()].to_string()
        };
        let id = attr("Id");
        assert_eq!(id.len(), 36, "{id}");
        assert_eq!(id.matches('-').count(), 4);
        assert_eq!(attr("Action"), "Allow");
        assert_eq!(attr("UserOrGroupSid"), "S-1-1-0");
        assert_eq!(attr("Type"), "SHA256");
        let data = attr("Data");
        assert!(data.starts_with("0x") && data.len() == 66, "{data}");
        let inner = rule.find("<Conditions>").unwrap();
        assert!(rule[inner..].find("<FileHashCondition>").is_some());
        let len: u64 = attr("SourceFileLength").parse().unwrap();
        assert!(len > 0);
    }
    // The digest of the signed DLL is the one osslsigncode calculates.
    let v = Command::new("osslsigncode")
        .args(["verify", "-in"])
        .arg(&signed)
        .output()
        .unwrap();
    let v = String::from_utf8_lossy(&v.stdout).into_owned() + &String::from_utf8_lossy(&v.stderr);
    let calc = v
        .lines()
        .find_map(|l| l.strip_prefix("Calculated message digest :"))
        .unwrap_or_else(|| panic!("osslsigncode printed no digest: {v}"))
        .trim()
        .to_uppercase();
    assert_eq!(calc.len(), 64, "{v}");
    let rule = xml
        .split("<FileHashRule ")
        .find(|r| r.contains("Name=\"signed.dll\""))
        .unwrap();
    assert!(
        rule.contains(&format!("Data=\"0x{calc}\"")),
        "{rule}\nosslsigncode: {calc}"
    );
}

#[test]
fn enforce_never_refuses_a_config_allowlist_entry() {
    if !fanotify_available() {
        return;
    }
    let (t, key) = fixture(true);
    let cfg = t.dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        "guard_allow = [\"/usr/lib/x86_64-linux-gnu/libevil*.so\"]\n",
    )
    .unwrap();
    let mut g = Guard::start(
        &t,
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--verify-with",
            key.unwrap().to_str().unwrap(),
            "guard",
            "--enforce",
            "--scope",
            "dirs",
        ],
        &[],
    );
    assert_eq!(dlopen(&t, EVIL).status.code(), Some(0), "allowlisted");
    let (f, _) = g.expect("the allowed load", load_of(EVIL));
    assert_eq!(f["verdict"], "unknown", "still reported: {f}");
    assert_eq!(f["action"], "allowed", "{f}");
}

#[test]
fn a_baselined_library_in_a_directory_others_can_write_is_reported_not_refused() {
    if !fanotify_available() {
        return;
    }
    let t = TestRoot::debian();
    t.compile_so(
        "usr/local/lib/libopen.so",
        "libopen.so",
        "int o(void){return 3;}",
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        t.path("usr/local/lib"),
        std::fs::Permissions::from_mode(0o1777),
    )
    .unwrap();
    t.init();
    t.compile_exe(
        "../bin/dl",
        "#include <dlfcn.h>\nint main(int c, char **v){ return dlopen(v[1], RTLD_NOW) ? 0 : 3; }",
        &["-ldl"],
    );
    let mut g = Guard::start(&t, &["guard", "--dry-run", "--scope", "dirs"], &[]);
    assert_eq!(
        dlopen(&t, "/usr/local/lib/libopen.so").status.code(),
        Some(0)
    );
    let (f, _) = g.expect("writable_dir", load_of("/usr/local/lib/libopen.so"));
    assert_eq!(f["verdict"], "writable_dir", "{f}");
    assert_eq!(f["severity"], "medium", "{f}");
    assert_eq!(f["action"], "allowed", "{f}");
}

#[test]
fn sigterm_ends_the_guard_cleanly() {
    if !fanotify_available() {
        return;
    }
    let (t, _) = fixture(false);
    let mut g = Guard::start(&t, &["guard", "--scope", "dirs"], &[]);
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(g.pid(), libc::SIGTERM) };
    let end = Instant::now() + WAIT;
    let st = loop {
        if let Some(st) = g.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < end, "guard did not end on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(st.code(), Some(0), "{}", g.stderr());
    assert_eq!(dlopen(&t, EVIL).status.code(), Some(0));
}
