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

    // A new library, renamed in whole as a package manager or a dropper
    // does (gcc writes its output in place: a watcher under load can see
    // it still empty, a `low` "new file", before it is an ELF library).
    let built = build_so(&t, "libnew.so.1", "int n(void){return 4;}");
    std::fs::rename(&built, t.path("usr/local/lib/libnew.so.1")).unwrap();
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

/// The findings in a watch's `--output` file so far.
fn output_lines(log: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    // The last line may be half written.
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    json_lines(complete.as_bytes())
}

/// Waits (bounded) until the output file holds a finding for which `want`
/// holds; that finding.
fn wait_output(
    log: &Path,
    what: &str,
    want: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let end = Instant::now() + WAIT;
    loop {
        let got = output_lines(log);
        if let Some(f) = got.iter().find(|f| want(f)) {
            return f.clone();
        }
        assert!(
            Instant::now() < end,
            "no {what} in the output file within {WAIT:?}; {} lines, last: {:#?}",
            got.len(),
            got.iter().rev().take(3).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_syslog_peer_that_stops_reading_does_not_stall_the_file_output() {
    use std::os::fd::AsRawFd;
    let t = fixture();
    // More findings than a sink's queue (4,096) plus the socket buffers
    // (a send buffer grows to 4 MiB) hold: the startup scan reports each
    // as added, in one burst.
    const FILES: usize = 20_000;
    for i in 0..FILES {
        t.write(&format!("usr/local/lib/bulk/lib{i}.so"), format!("{i}"));
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // Small receive buffers for the accepted connections: the peer's
    // window fills after a few messages.
    let small: libc::c_int = 4096;
    // SAFETY: a valid socket and a c_int option of the right size.
    unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&small as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    let port = listener.local_addr().unwrap().port();
    // Accepts every connection and never reads from any.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            held.push(s);
        }
    });
    let log = t.dir.path().join("findings.jsonl");
    let log_arg = log.to_str().unwrap().to_string();
    let syslog = format!("tcp://127.0.0.1:{port}");
    let mut w = Watch::start(&t, &["--output", &log_arg, "--syslog", &syslog], &[]);
    // The file gets every finding of the burst, whatever syslog does.
    let end = Instant::now() + WAIT * 3;
    loop {
        let n = output_lines(&log)
            .iter()
            .filter(|f| f["kind"] == "added")
            .count();
        if n >= FILES {
            break;
        }
        assert!(
            Instant::now() < end,
            "only {n} of {FILES} added findings in the output file:\n{}",
            w.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The drop is reported to the file and on stderr.
    let gap = wait_output(&log, "monitoring_gap about syslog", |f| {
        f["kind"] == "monitoring_gap"
            && f["detail"]
                .as_str()
                .is_some_and(|d| d.contains(&syslog) && d.contains("cannot keep up"))
    });
    assert_eq!(gap["source"], "output", "{gap}");
    assert!(w.stderr().contains("cannot keep up"), "{}", w.stderr());
    // And a change after the burst still reaches the file at once.
    t.write("usr/local/lib/libafter.so", "after");
    wait_output(&log, "added for libafter.so", |f| {
        f["kind"] == "added" && f["path"] == "/usr/local/lib/libafter.so"
    });
    w.signal(libc::SIGTERM);
    assert_eq!(w.wait_exit(WAIT), Some(0), "{}", w.stderr());
    // How many syslog missed is said: when it caught up (on stderr, and
    // to syslog itself), or at exit if it never did (on stderr and to the
    // file).
    let err = w.stderr();
    let counted: Vec<&str> = err
        .lines()
        .filter(|l| {
            l.contains(&syslog)
                && (l.contains("could not keep up") || l.contains("did not catch up"))
        })
        .collect();
    assert!(
        !counted.is_empty(),
        "no count of the dropped findings:\n{err}"
    );
    for l in &counted {
        eprintln!("{l}");
        assert!(l.contains(" dropped for it between "), "{l}");
    }
    if err.contains("did not catch up") {
        wait_output(&log, "the drop count at exit", |f| {
            f["kind"] == "monitoring_gap"
                && f["gap_start"].is_string()
                && f["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("did not catch up"))
        });
    }
}

#[test]
fn a_monitoring_gap_after_a_stop_spans_the_stop() {
    let t = fixture();
    // Events for DROP* names stand for what the kernel loses in an
    // inotify overflow while the process cannot read.
    let mut w = Watch::start(&t, &[], &[("LIBWARDEN_TEST_DROP_EVENTS", "DROP")]);
    std::thread::sleep(Duration::from_millis(1500));
    w.stop_fully();
    // Every heartbeat and event the process saw was before this.
    let stopped = std::time::SystemTime::now();
    // Queued while stopped: an ordinary event, delivered on resume, then
    // the lost one.
    t.write("usr/local/lib/libduring.so", "during");
    t.write("usr/local/lib/DROPme.so", "lost");
    std::thread::sleep(Duration::from_secs(5));
    let resumed = std::time::SystemTime::now();
    w.signal(libc::SIGCONT);
    let gap = w.expect("monitoring_gap", "/");
    let (start, end) = (
        gap["gap_start"].as_str().unwrap().to_string(),
        gap["gap_end"].as_str().unwrap().to_string(),
    );
    // RFC 3339 UTC with milliseconds: compared as text.
    let rfc = |t: std::time::SystemTime| {
        let ms = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        chrono_like(ms)
    };
    assert!(start <= rfc(stopped), "gap starts after the stop: {gap}");
    assert!(end >= rfc(resumed), "gap ends before the resume: {gap}");
    // The rescan that follows finds what the lost event would have shown.
    w.expect("added", "/usr/local/lib/DROPme.so");
}

/// Milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn chrono_like(ms: i64) -> String {
    let (secs, milli) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[test]
fn a_refused_generation_reaches_the_output_file() {
    let t = TestRoot::debian();
    // Generation 1 kept aside, generation 2 current: restoring the copy
    // of 1 under the watcher is a rollback, refused.
    t.init();
    let aside = t.dir.path().join("gen1");
    copy_tree(&t.db(), &aside);
    t.run_ok(&["update"]);
    let log = t.dir.path().join("findings.jsonl");
    let log_arg = log.to_str().unwrap().to_string();
    let mut w = Watch::start(&t, &["--output", &log_arg], &[]);
    std::fs::remove_dir_all(t.db()).unwrap();
    copy_tree(&aside, &t.db());
    w.signal(libc::SIGHUP);
    w.wait_stderr("cannot load the new one");
    let f = wait_output(&log, "a refused generation", |f| {
        f["kind"] == "monitoring_gap"
            && f["detail"]
                .as_str()
                .is_some_and(|d| d.contains("refused") && d.contains("generation 2"))
    });
    assert_eq!(f["severity"], "high", "{f}");
    // Said once, not on every poll of the store.
    w.signal(libc::SIGHUP);
    w.wait_stderr("SIGHUP");
    w.signal(libc::SIGTERM);
    assert_eq!(w.wait_exit(WAIT), Some(0), "{}", w.stderr());
    let n = output_lines(&log)
        .iter()
        .filter(|f| f["detail"].as_str().is_some_and(|d| d.contains("refused")))
        .count();
    assert_eq!(n, 1, "{:#?}", output_lines(&log));
}

/// Copies a directory tree (files and directories only).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}
