//! `watch` as a Windows service, under Wine's Service Control Manager
//! (`services.exe`, `sc.exe`): `service install` registers it and its
//! event source, `sc start` runs it (StartPending, then Running), a DLL
//! dropped into the watched System32 of a fixture root is reported, `sc
//! stop` ends it (Stopped, exit 0, the process gone), `service uninstall`
//! removes both registrations; a service without its baseline stops with
//! exit 65 and an error event.
//!
//! The Event Log: Wine keeps no event log that can be read back
//! (`ReportEventW` records nothing; it writes each string to its debug
//! channel `eventlog`, at `err` for error events, `warn` for warnings and
//! `trace` for information). So what is asserted is what reaches
//! `ReportEventW`, through that channel: the finding's text line with the
//! event type its severity maps to. Not exercised: a real log's storage,
//! the binary data (the JSON object) attached to each event, and reading
//! events back with `wevtutil` or the Event Viewer.
//!
//! A Wine session ends, services included, when its last ordinary process
//! exits, and the next `wine` command starts a new one (where an
//! automatic-start service starts again). A sleeping helper process holds
//! one session for the whole test. The first process of a session starts
//! `wineboot`, which starts `services.exe`, and both inherit that
//! process's stderr and `WINEDEBUG`; the services `services.exe` starts
//! inherit them in turn. So the helper must be that first process, its
//! stderr a file here, which is how the `eventlog` channel is read: no
//! other wine command runs until this session's `services.exe` is seen
//! (in /proc) with the helper's file as its stderr. (Run right after the
//! helper was spawned, the next wine command could win that race on a
//! loaded machine: `services.exe` and the service then wrote to that
//! command's stderr with `WINEDEBUG=-all`, and the log stayed empty.)
//!
//! Wine's prefix takes most of the time (`wineboot --init`, tens of
//! seconds on a loaded machine); every step after it polls with a
//! generous deadline.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::wine::Wine;

const DEADLINE: Duration = Duration::from_secs(120);

/// Polls `f` until it gives a value or the deadline passes.
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>, log: impl Fn() -> String) -> T {
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out waiting for {what}:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `sc query libwarden`: the STATE line's name (RUNNING, STOPPED...) and
/// the whole output; None when the service does not exist.
fn state(w: &Wine) -> (Option<String>, String) {
    let o = w.wine(&["sc", "query", "libwarden"]);
    let out = text(&o);
    if !o.status.success() {
        return (None, out);
    }
    let st = out
        .lines()
        .find(|l| l.trim_start().starts_with("STATE"))
        .and_then(|l| l.split_whitespace().last())
        .map(str::to_string);
    (st, out)
}

/// Every process's pid and command line (arguments joined by spaces),
/// from /proc: Wine runs Windows processes as Linux ones.
fn processes() -> Vec<(u32, String)> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<u32>().ok()?;
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            Some((pid, String::from_utf8_lossy(&cmd).replace('\0', " ")))
        })
        .collect()
}

/// The pids of this test's `libwarden.exe service run` processes.
fn service_pids(bin: &Path) -> Vec<u32> {
    let needle = bin.to_string_lossy().replace('/', "\\");
    processes()
        .into_iter()
        .filter(|(_, cmd)| cmd.contains("service run") && cmd.contains(&needle))
        .map(|(pid, _)| pid)
        .collect()
}

fn findings(p: &Path) -> Vec<Value> {
    // Read while the service appends: a line still being written is
    // skipped, not an error.
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The running `services.exe` processes (of any prefix: another test's
/// may run too) and what each one's stderr is.
fn services_exe() -> Vec<(u32, Option<PathBuf>)> {
    processes()
        .into_iter()
        .filter(|(_, cmd)| cmd.to_ascii_lowercase().contains("services.exe"))
        .map(|(pid, _)| (pid, stderr_of(pid)))
        .collect()
}

/// What `pid`'s stderr (fd 2) is.
fn stderr_of(pid: u32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/fd/2")).ok()
}

#[test]
fn watch_runs_as_a_windows_service_under_wine_and_reports_to_the_event_log() {
    let Some(w) = Wine::new() else { return };
    let scratch = w.dir.path();

    // The session holder: started first, after the boot's server is gone,
    // so that services.exe (and the service) inherit its stderr.
    let src = scratch.join("hold.c");
    std::fs::write(
        &src,
        "#include <windows.h>\nint main(void){Sleep(600000);return 0;}\n",
    )
    .unwrap();
    let hold = w.bin().join("hold.exe");
    let st = Command::new("x86_64-w64-mingw32-gcc")
        .arg("-o")
        .arg(&hold)
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success(), "building the session holder");
    let _ = Command::new("wineserver")
        .arg("-k")
        .env("WINEPREFIX", w.prefix())
        .status();
    let _ = Command::new("wineserver")
        .arg("-w")
        .env("WINEPREFIX", w.prefix())
        .status();
    let log_path = scratch.join("wine-stderr.log");
    let mut holder = w
        .wine_cmd(&[hold.to_str().unwrap()])
        .env(
            "WINEDEBUG",
            "-all,err+eventlog,warn+eventlog,trace+eventlog",
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("wine starts the session holder");
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    // Before any other wine command: this session's services.exe, started
    // by the holder's wineboot, writing to the log.
    let log_file = std::fs::canonicalize(&log_path).unwrap();
    wait_for(
        "the holder's session to start services.exe with the log as its stderr",
        || {
            services_exe()
                .iter()
                .any(|(_, err)| err.as_deref() == Some(log_file.as_path()))
                .then_some(())
        },
        || {
            format!(
                "services.exe (pid, stderr): {:?}\n{}",
                services_exe(),
                log()
            )
        },
    );

    // A fixture root: a System32 with one DLL, its baseline beside it.
    crate::provenance::compile_dll_at(&w.c("fixture/Windows/System32/base.dll"), scratch, 21);
    let root = ["--root", "C:\\fixture", "--db", "C:\\fixture-db"];
    let o = w.libwarden(&[&root[..], &["init"]].concat());
    assert_eq!(o.status.code(), Some(0), "init: {}", text(&o));

    // Install: the service exists, stopped, with the watch's arguments
    // and the baseline named; the event source is registered.
    let o = w.libwarden(
        &[
            &root[..],
            &[
                "service",
                "install",
                "--debounce",
                "100ms",
                "--rescan-interval",
                "10s",
                "--output",
                "C:\\findings.jsonl",
            ],
        ]
        .concat(),
    );
    assert_eq!(o.status.code(), Some(0), "service install: {}", text(&o));
    eprintln!("service install: {}", text(&o));
    let (st, out) = state(&w);
    assert_eq!(st.as_deref(), Some("STOPPED"), "{out}");
    assert!(out.contains("SERVICE_NAME: libwarden"), "{out}");
    // A second install is refused, and says how to change the options.
    let o = w.libwarden(&[&root[..], &["service", "install"]].concat());
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    assert!(text(&o).contains("already installed"), "{}", text(&o));
    let o = w.wine(&[
        "reg",
        "query",
        "HKLM\\SYSTEM\\CurrentControlSet\\Services\\libwarden",
    ]);
    let svc = text(&o);
    assert!(
        svc.contains("service run") && svc.contains("C:\\fixture-db") && svc.contains("--output"),
        "{svc}"
    );
    // The restart-on-crash policy is not asserted: Wine's SCM accepts
    // SERVICE_CONFIG_FAILURE_ACTIONS but keeps no FailureActions value.
    let source = "HKLM\\SYSTEM\\CurrentControlSet\\Services\\EventLog\\Application\\libwarden";
    let o = w.wine(&["reg", "query", source]);
    let reg = text(&o);
    assert!(o.status.success(), "the event source: {reg}");
    assert!(
        reg.contains("EventMessageFile") && reg.contains("libwarden.exe"),
        "{reg}"
    );
    assert!(
        reg.contains("TypesSupported") && reg.contains("0x7"),
        "{reg}"
    );

    // Start: Running once the baseline is loaded.
    let o = w.wine(&["sc", "start", "libwarden"]);
    assert!(o.status.success(), "sc start: {}", text(&o));
    wait_for(
        "the service to run",
        || (state(&w).0.as_deref() == Some("RUNNING")).then_some(()),
        || format!("{}\n{}", state(&w).1, log()),
    );
    let pids = service_pids(&w.bin());
    assert_eq!(pids.len(), 1, "{}", log());
    assert_eq!(
        stderr_of(pids[0]).as_deref(),
        Some(log_file.as_path()),
        "the service's stderr is not the log"
    );
    wait_for(
        "the service's start message",
        || log().contains("libwarden service: watching").then_some(()),
        log,
    );

    // A DLL dropped into the watched System32 is reported, to the file
    // and to the event log (a medium finding: a warning event).
    // Built outside the watched dir and renamed in, as a dropper would:
    // a DLL the startup scan catches half-written would first be a "new
    // file" of low severity.
    let staged =
        crate::provenance::compile_dll_at(&w.c("fixture/staging/dropped.dll"), scratch, 22);
    std::fs::rename(&staged, w.c("fixture/Windows/System32/dropped.dll")).unwrap();
    let out = w.c("findings.jsonl");
    let added = wait_for(
        "the added finding",
        || {
            findings(&out).into_iter().find(|f| {
                f["kind"] == "added"
                    && f["path"]
                        .as_str()
                        .is_some_and(|p| p.eq_ignore_ascii_case("/Windows/System32/dropped.dll"))
            })
        },
        || format!("{:#?}\n{}", findings(&out), log()),
    );
    // The service reports Running once the baseline is loaded, before its
    // startup scan ends (a large System32 must not hit the SCM's start
    // timeout), so a DLL dropped right then is found by that scan.
    assert!(
        ["event", "rescan", "startup"]
            .iter()
            .any(|s| added["source"] == *s),
        "{added}"
    );
    let sev = added["severity"].as_str().unwrap_or("").to_string();
    let level = match sev.as_str() {
        "critical" | "high" => "err",
        "medium" => "warn",
        _ => "trace",
    };
    let line = format!(
        ":{level}:eventlog:ReportEventW L\"libwarden: {sev} added /Windows/System32/dropped.dll"
    );
    wait_for(
        "the finding's event",
        || {
            log()
                .lines()
                .any(|l| l.contains(&line) && l.contains("new PE DLL"))
                .then_some(())
        },
        || format!("wanted {line}\n{}", log()),
    );

    // Stop: Stopped with exit 0, the process ended.
    let o = w.wine(&["sc", "stop", "libwarden"]);
    assert!(o.status.success(), "sc stop: {}", text(&o));
    wait_for(
        "the service to stop",
        || {
            let (st, out) = state(&w);
            (st.as_deref() == Some("STOPPED")).then_some(out)
        },
        || format!("{}\n{}", state(&w).1, log()),
    );
    let (_, out) = state(&w);
    assert!(
        out.lines()
            .any(|l| l.contains("WIN32_EXIT_CODE") && l.contains(": 0 ")),
        "{out}"
    );
    wait_for(
        "the service process to end",
        || service_pids(&w.bin()).is_empty().then_some(()),
        log,
    );
    assert!(
        log().contains("libwarden service: stopped (exit 0)"),
        "{}",
        log()
    );

    // `check --eventlog` (the Task Scheduler route): the same finding,
    // with the event type of its severity, from a one-shot command.
    let mut c = w.wine_cmd(&[
        w.bin().join("libwarden.exe").to_str().unwrap(),
        "--root",
        "C:\\fixture",
        "--db",
        "C:\\fixture-db",
        "--eventlog",
        "check",
    ]);
    c.env(
        "WINEDEBUG",
        "-all,err+eventlog,warn+eventlog,trace+eventlog",
    );
    let o = w.output(c);
    assert_eq!(o.status.code().map(|c| c & 1), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .lines()
            .any(|l| l.contains(&line) && l.contains("new PE DLL")),
        "wanted {line}\n{}",
        text(&o)
    );

    // Uninstall: neither the service nor the event source is left.
    let o = w.libwarden(&["service", "uninstall"]);
    assert_eq!(o.status.code(), Some(0), "service uninstall: {}", text(&o));
    let (st, out) = state(&w);
    assert_eq!(st, None, "{out}");
    let o = w.wine(&["reg", "query", source]);
    assert!(
        !o.status.success(),
        "the event source is left: {}",
        text(&o)
    );
    let o = w.libwarden(&["service", "uninstall"]);
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    assert!(text(&o).contains("not installed"), "{}", text(&o));

    // A service that cannot start (no baseline at its --db) stops with
    // the exit code as its service-specific code, and says why as an
    // error event.
    let o = w.libwarden(&[
        "--root",
        "C:\\fixture",
        "--db",
        "C:\\no-baseline",
        "service",
        "install",
    ]);
    assert_eq!(o.status.code(), Some(0), "service install: {}", text(&o));
    let o = w.wine(&["sc", "start", "libwarden"]);
    assert!(o.status.success(), "sc start: {}", text(&o));
    let out = wait_for(
        "the failed service to stop",
        || {
            let (st, out) = state(&w);
            (st.as_deref() == Some("STOPPED") && !out.contains("WIN32_EXIT_CODE    : 0 "))
                .then_some(out)
        },
        || format!("{}\n{}", state(&w).1, log()),
    );
    assert!(
        out.lines()
            .any(|l| l.contains("SERVICE_EXIT_CODE") && l.contains(": 65 ")),
        "{out}"
    );
    wait_for(
        "the failure's error event",
        || {
            log()
                .lines()
                .any(|l| {
                    l.contains(
                        ":err:eventlog:ReportEventW L\"libwarden service: error: no baseline",
                    )
                })
                .then_some(())
        },
        log,
    );
    let o = w.libwarden(&["service", "uninstall"]);
    assert_eq!(o.status.code(), Some(0), "service uninstall: {}", text(&o));

    let _ = holder.kill();
    let _ = holder.wait();
}

/// The Linux build refuses the command with a usage error that points to
/// the systemd units, and `--eventlog` (check, watch) likewise.
#[test]
fn service_is_windows_only_elsewhere() {
    let t = crate::util::TestRoot::new();
    let o = t.run(&["service", "install"]);
    assert_eq!(o.status.code(), Some(64), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("service: Windows only; on Linux use the systemd units in dist/"),
        "{err}"
    );
    let o = t.run(&["service", "uninstall"]);
    assert_eq!(o.status.code(), Some(64), "{o:?}");
    let o = t.run(&["check", "--eventlog"]);
    assert_eq!(o.status.code(), Some(64), "{o:?}");
    let o = t.run(&["watch", "--eventlog"]);
    assert_eq!(o.status.code(), Some(64), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Windows only"),
        "{o:?}"
    );
}
