//! `watch` against a fixture root: each kind of change reported once, a
//! save-by-rename as one `content`, hostile names as valid JSON, lost
//! events as a `monitoring_gap` plus a rescan, the watch limit, a search
//! root deleted and recreated, a baseline reload, signals, and syslog
//! through a real rsyslog. Every wait is bounded; the child is killed when
//! a test ends, whatever happened (`util::Watch`).

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

/// A fixture with a second library to replace by rename, and a baseline.
fn fixture() -> TestRoot {
    let t = TestRoot::debian();
    t.compile_so(
        "usr/lib/x86_64-linux-gnu/libbar.so.1",
        "libbar.so.1",
        "int bar(void){return 1;}",
    );
    t.init();
    t
}

/// Compiles a library outside the root, for copying in.
fn build_so(t: &TestRoot, name: &str, body: &str) -> PathBuf {
    t.compile_so(&format!("../build/{name}"), name, body);
    t.dir.path().join("build").join(name)
}

#[test]
fn watch_reports_each_change_once() {
    let t = fixture();
    let mut w = Watch::start(&t, &["--rescan-interval", "2s"], &[]);

    // A new library.
    t.compile_so(
        "usr/local/lib/libnew.so.1",
        "libnew.so.1",
        "int n(void){return 4;}",
    );
    let f = w.expect("added", "/usr/local/lib/libnew.so.1");
    assert_eq!(f["severity"], "medium", "{f}");
    assert_eq!(f["source"], "event", "{f}");
    assert!(f["time"].as_str().is_some_and(|s| s.ends_with('Z')), "{f}");

    // A library modified in place.
    t.compile_so(
        "usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3",
        "libfoo.so.1",
        "int foo(void){return 42;}",
    );
    let f = w.expect("content", "/usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3");
    assert_eq!(f["severity"], "high", "{f}");

    // A lib dir made world-writable.
    std::fs::set_permissions(
        t.path("usr/local/lib"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    let f = w.expect("metadata", "/usr/local/lib");
    assert_eq!(f["severity"], "high", "{f}");
    assert_eq!(f["after"]["mode"], "0777", "{f}");

    // A preload list.
    t.write("etc/ld.so.preload", "/tmp/evil.so\n");
    let f = w.expect("added", "/etc/ld.so.preload");
    assert_eq!(f["severity"], "critical", "{f}");

    // Save-by-rename over a library: one content finding, no add/remove.
    let new = build_so(&t, "libbar.so.1", "int bar(void){return 99;}");
    let tmp = t.path("usr/lib/x86_64-linux-gnu/.libbar.so.1.tmp");
    std::fs::copy(&new, &tmp).unwrap();
    std::fs::rename(&tmp, t.path("usr/lib/x86_64-linux-gnu/libbar.so.1")).unwrap();
    let f = w.expect("content", "/usr/lib/x86_64-linux-gnu/libbar.so.1");
    let changes = f["changes"].as_array().unwrap();
    assert!(changes.iter().any(|c| c == "inode"), "{f}");

    // Hostile names stay valid, reversible JSON.
    let evil = "lib\u{1b}[31m\"q]\\\n.so";
    std::fs::copy(&new, t.path("usr/local/lib").join(evil)).unwrap();
    w.expect("added", &format!("/usr/local/lib/{evil}"));
    use std::os::unix::ffi::OsStrExt;
    let raw = std::ffi::OsStr::from_bytes(b"lib\xff.so");
    std::fs::copy(&new, t.path("usr/local/lib").join(raw)).unwrap();
    let f = w.expect("added", "/usr/local/lib/lib\\xff.so");
    assert_eq!(
        f["path_hex"],
        hex(b"/usr/local/lib/lib\xff.so"),
        "non-UTF-8 name must come with its bytes: {f}"
    );

    // Two rescans later nothing is repeated, and the temp file of the
    // rename never showed up.
    w.wait_stderr("rescan (rescan) done");
    w.wait_stderr("rescan (rescan) done");
    w.drain(Duration::from_millis(300));
    for (kind, path) in [
        ("added", "/usr/local/lib/libnew.so.1"),
        ("content", "/usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3"),
        ("metadata", "/usr/local/lib"),
        ("added", "/etc/ld.so.preload"),
        ("content", "/usr/lib/x86_64-linux-gnu/libbar.so.1"),
    ] {
        assert_eq!(w.count(kind, path), 1, "{kind} {path}: {:#?}", w.seen);
    }
    assert!(
        !w.seen
            .iter()
            .any(|f| f["path"].as_str().is_some_and(|p| p.contains(".tmp"))
                || (f["path"] == "/usr/lib/x86_64-linux-gnu/libbar.so.1"
                    && f["kind"] != "content")),
        "a save-by-rename must be one content finding: {:#?}",
        w.seen
    );
    w.signal(libc::SIGTERM);
    assert_eq!(w.wait_exit(WAIT), Some(0));
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn lost_events_are_a_monitoring_gap_then_a_rescan_finds_the_change() {
    let t = fixture();
    let mut w = Watch::start(&t, &[], &[("LIBWARDEN_TEST_DROP_EVENTS", "LOST")]);
    let new = build_so(&t, "LOST.so", "int lost(void){return 1;}");
    std::fs::copy(&new, t.path("usr/local/lib/LOST.so")).unwrap();
    let gap = w.expect("monitoring_gap", "/");
    assert_eq!(gap["severity"], "high", "{gap}");
    assert!(
        gap["gap_start"].is_string() && gap["gap_end"].is_string(),
        "{gap}"
    );
    assert!(gap["detail"].as_str().unwrap().contains("rescan"), "{gap}");
    // Its events were dropped: only the rescan can have found it.
    let f = w.expect("added", "/usr/local/lib/LOST.so");
    assert_eq!(f["source"], "rescan", "{f}");
}

#[test]
fn exhausted_watch_limit_is_reported_and_covered_by_short_rescans() {
    let t = fixture();
    let mut w = Watch::start(
        &t,
        &["--rescan-interval", "2s"],
        &[("LIBWARDEN_TEST_MAX_WATCHES", "2")],
    );
    let err = w.stderr();
    assert!(
        err.contains("fs.inotify.max_user_watches") && err.contains("cannot be watched"),
        "{err}"
    );
    let gap = w
        .seen
        .iter()
        .find(|f| f["kind"] == "monitoring_gap")
        .cloned();
    let gap = gap.unwrap_or_else(|| {
        w.drain(Duration::from_secs(1));
        w.seen
            .iter()
            .find(|f| f["kind"] == "monitoring_gap")
            .cloned()
            .expect("a monitoring_gap finding for the unwatched dirs")
    });
    assert!(
        gap["detail"]
            .as_str()
            .unwrap()
            .contains("fs.inotify.max_user_watches"),
        "{gap}"
    );
    t.compile_so(
        "usr/local/lib/libunwatched.so",
        "libunwatched.so",
        "int u(void){return 1;}",
    );
    w.expect("added", "/usr/local/lib/libunwatched.so");
}

#[test]
fn a_deleted_and_recreated_search_root_is_watched_again() {
    let t = fixture();
    t.compile_so(
        "usr/local/lib/libold.so",
        "libold.so",
        "int o(void){return 1;}",
    );
    // A baseline that includes the library in /usr/local/lib.
    assert_eq!(t.run(&["update"]).status.code(), Some(0));
    let mut w = Watch::start(&t, &[], &[]);
    std::fs::remove_dir_all(t.path("usr/local/lib")).unwrap();
    w.expect("removed", "/usr/local/lib/libold.so");
    w.expect("removed", "/usr/local/lib");
    std::fs::create_dir(t.path("usr/local/lib")).unwrap();
    // Give the watcher its moment to see the directory come back, then
    // write into it.
    std::thread::sleep(Duration::from_millis(500));
    t.compile_so(
        "usr/local/lib/libback.so",
        "libback.so",
        "int b(void){return 1;}",
    );
    w.expect("added", "/usr/local/lib/libback.so");
}

#[test]
fn a_new_baseline_generation_is_loaded() {
    let t = fixture();
    let log = t.dir.path().join("findings.jsonl");
    let log_arg = log.to_str().unwrap().to_string();
    let mut w = Watch::start(&t, &["--output", &log_arg, "--stdout"], &[]);
    t.compile_so(
        "usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3",
        "libfoo.so.1",
        "int foo(void){return 7;}",
    );
    let f = w.expect("content", "/usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3");
    let accepted = f["after"]["blake3"].clone();
    // The watcher holds no lock: update works beside it.
    t.run_ok(&["update"]);
    w.signal(libc::SIGHUP);
    w.wait_stderr("loaded baseline generation 2");
    std::fs::set_permissions(
        t.path("usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    let f = w.expect("metadata", "/usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3");
    assert_eq!(
        f["before"]["blake3"], accepted,
        "diffed against the new baseline: {f}"
    );
    // The output file got the same findings as stdout.
    let end = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let got = json_lines(text.as_bytes());
        if got.len() >= 2 {
            assert_eq!(got[0]["kind"], "content", "{got:#?}");
            assert_eq!(got[1]["kind"], "metadata", "{got:#?}");
            break;
        }
        assert!(Instant::now() < end, "output file: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_update_is_picked_up_without_a_signal() {
    let t = fixture();
    let mut w = Watch::start(&t, &[], &[]);
    t.compile_so(
        "usr/local/lib/libfresh.so",
        "libfresh.so",
        "int f(void){return 1;}",
    );
    w.expect("added", "/usr/local/lib/libfresh.so");
    t.run_ok(&["update"]);
    // The store is polled every few seconds.
    w.wait_stderr("loaded baseline generation 2");
    std::fs::remove_file(t.path("usr/local/lib/libfresh.so")).unwrap();
    // Now part of the baseline, so its removal is a finding.
    w.expect("removed", "/usr/local/lib/libfresh.so");
}

#[test]
fn sigterm_exits_0_and_sigint_exits_130() {
    let t = fixture();
    let mut w = Watch::start(&t, &[], &[]);
    w.signal(libc::SIGTERM);
    assert_eq!(w.wait_exit(WAIT), Some(0), "{}", w.stderr());
    let mut w = Watch::start(&t, &[], &[]);
    w.signal(libc::SIGINT);
    assert_eq!(w.wait_exit(WAIT), Some(130), "{}", w.stderr());
}

/// A real rsyslogd on loopback ports, writing what it receives to a file.
struct Rsyslog {
    child: Child,
    dir: tempfile::TempDir,
    udp: u16,
    tcp: u16,
}

impl Rsyslog {
    fn start() -> Rsyslog {
        let bin = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or_else(|| {
                panic!(
                    "rsyslogd is not installed: the syslog test needs a real rsyslog. \
                     .ci/run installs it; locally: apt-get install -y rsyslog"
                )
            });
        let dir = tempfile::Builder::new()
            .prefix("lw-rsyslog")
            .tempdir()
            .unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = dir.path().display();
        // mmpstrucdata parses the structured data the way a SIEM would:
        // the test reads the unescaped path back from it.
        let conf = format!(
            r#"global(workDirectory="{d}")
module(load="imudp")
module(load="imtcp")
module(load="mmpstrucdata")
input(type="imudp" address="127.0.0.1" port="{udp}")
input(type="imtcp" address="127.0.0.1" port="{tcp}")
template(name="t" type="list") {{
  property(name="inputname") constant(value="|")
  property(name="msgid") constant(value="|")
  property(name="$!rfc5424-sd!libwarden@32473!path") constant(value="|")
  property(name="$!rfc5424-sd!libwarden@32473!severity") constant(value="|")
  property(name="syslogseverity-text") constant(value="|")
  property(name="msg")
  constant(value="\n")
}}
action(type="mmpstrucdata")
action(type="omfile" file="{d}/out.log" template="t")
"#
        );
        let conf_path = dir.path().join("rsyslog.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(bin)
            .arg("-n")
            .arg("-f")
            .arg(&conf_path)
            .arg("-i")
            .arg(dir.path().join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rsyslogd");
        let mut r = Rsyslog {
            child,
            dir,
            udp,
            tcp,
        };
        // Ready when a probe sent over UDP comes out in the file.
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let end = Instant::now() + WAIT;
        while !r.log().contains("probe") {
            if Instant::now() > end {
                let mut err = String::new();
                if let Some(mut e) = r.child.stderr.take() {
                    let _ = r.child.kill();
                    let _ = e.read_to_string(&mut err);
                }
                panic!("rsyslogd did not come up: {err}");
            }
            let _ = sock.send_to(b"<13>1 - - probe - probe - hello", ("127.0.0.1", udp));
            std::thread::sleep(Duration::from_millis(100));
        }
        r
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("out.log")).unwrap_or_default()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn syslog_reaches_a_real_rsyslog_over_udp_and_tcp() {
    let rs = Rsyslog::start();
    let t = fixture();
    let udp = format!("udp://127.0.0.1:{}", rs.udp);
    let tcp = format!("tcp://127.0.0.1:{}", rs.tcp);
    let mut w = Watch::start(&t, &["--syslog", &udp, "--syslog", &tcp, "--stdout"], &[]);
    // Every character RFC 5424 makes us escape in a PARAM-VALUE.
    let name = "lib\"q]\\x.so";
    let new = build_so(&t, "libq.so", "int q(void){return 1;}");
    std::fs::copy(&new, t.path("usr/local/lib").join(name)).unwrap();
    let path = format!("/usr/local/lib/{name}");
    w.expect("added", &path);
    t.write("etc/ld.so.preload", "/tmp/evil.so\n");
    w.expect("added", "/etc/ld.so.preload");
    let end = Instant::now() + WAIT;
    let want = [
        format!("imudp|added|{path}|medium|warning|"),
        format!("imtcp|added|{path}|medium|warning|"),
        "imudp|added|/etc/ld.so.preload|critical|crit|".to_string(),
        "imtcp|added|/etc/ld.so.preload|critical|crit|".to_string(),
    ];
    loop {
        let log = rs.log();
        if want.iter().all(|w| log.contains(w.as_str())) {
            break;
        }
        assert!(
            Instant::now() < end,
            "rsyslog did not receive every finding; want {want:#?}\ngot:\n{log}\nwatch stderr:\n{}",
            w.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn watching_a_windows_image_compares_its_registry_values_on_each_rescan() {
    use crate::windows::{clean_software, clean_system, image, write_hives};
    let t = image();
    t.init();
    let mut w = Watch::start(&t, &["--rescan-interval", "1s"], &[]);
    let mut soft = clean_software();
    soft.at("Microsoft\\Windows NT\\CurrentVersion\\Windows")
        .sz("AppInit_DLLs", "C:\\evil.dll");
    write_hives(&t, &clean_system(), &soft);
    let p = "/registry/HKLM/SOFTWARE/Microsoft/Windows NT/CurrentVersion/Windows/AppInit_DLLs";
    let f = w.expect("content", p);
    assert_eq!(f["source"], "rescan", "{f}");
    // The registry records were never taken for removed files.
    assert!(
        !w.seen.iter().any(|x| x["kind"] == "removed"),
        "{:#?}",
        w.seen
    );
}
