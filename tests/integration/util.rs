//! Fixture helper: a fake root (`etc/ld.so.conf` with includes, lib dirs,
//! real `.so` files compiled by gcc, symlink chains) in a temp dir, a
//! runner for the built binary against it with `--root` and its own `--db`,
//! and a running `watch` whose findings are read with bounded waits.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use serde_json::Value;

/// A temp dir holding `root/` (the fake system) and `state/` (the baseline).
pub struct TestRoot {
    pub dir: tempfile::TempDir,
}

impl TestRoot {
    /// An empty root with `etc/` and the usual merged-/usr layout:
    /// `lib -> usr/lib`, `lib64 -> usr/lib64`.
    pub fn new() -> TestRoot {
        let dir = tempfile::Builder::new()
            .prefix("lw-test")
            .tempdir()
            .unwrap();
        let t = TestRoot { dir };
        for d in [
            "root/etc/ld.so.conf.d",
            "root/usr/lib/x86_64-linux-gnu",
            "root/usr/lib64",
            "root/usr/local/lib",
            "state",
        ] {
            std::fs::create_dir_all(t.dir.path().join(d)).unwrap();
        }
        symlink("usr/lib", t.root().join("lib")).unwrap();
        symlink("usr/lib64", t.root().join("lib64")).unwrap();
        t
    }

    /// A Debian-like root: ld.so.conf with an include, libc.conf and the
    /// multiarch conf, a compiled libfoo with its symlink chain, a loader.
    pub fn debian() -> TestRoot {
        let t = TestRoot::new();
        t.write("etc/ld.so.conf", "include /etc/ld.so.conf.d/*.conf\n\n");
        t.write(
            "etc/ld.so.conf.d/libc.conf",
            "# libc default configuration\n/usr/local/lib\n",
        );
        t.write(
            "etc/ld.so.conf.d/x86_64-linux-gnu.conf",
            "# Multiarch support\n/usr/local/lib/x86_64-linux-gnu\n/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n",
        );
        t.write("etc/ld.so.cache", empty_ld_so_cache());
        t.compile_so(
            "usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3",
            "libfoo.so.1",
            "int foo(void){return 1;}",
        );
        t.link("libfoo.so.1.2.3", "usr/lib/x86_64-linux-gnu/libfoo.so.1");
        t.link("libfoo.so.1", "usr/lib/x86_64-linux-gnu/libfoo.so");
        t.compile_so(
            "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            "ld-linux-x86-64.so.2",
            LOADER_SOURCE,
        );
        t.link(
            "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            "usr/lib64/ld-linux-x86-64.so.2",
        );
        t
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("state/baseline")
    }

    /// Host path of a root-relative path.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    pub fn link(&self, target: &str, rel: &str) {
        symlink(target, self.path(rel)).unwrap();
    }

    /// Compiles C source into a real shared object at `rel` with `soname`.
    /// Extra gcc arguments (e.g. `-Wl,-rpath,/tmp/x`) can follow.
    pub fn compile_so(&self, rel: &str, soname: &str, source: &str) {
        self.compile_so_with(rel, soname, source, &[]);
    }

    pub fn compile_so_with(&self, rel: &str, soname: &str, source: &str, extra: &[&str]) {
        let out = self.path(rel);
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        let src = self
            .dir
            .path()
            .join(format!("src-{}.c", soname.replace('/', "_")));
        std::fs::write(&src, source).unwrap();
        let status = Command::new("gcc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(&out)
            .arg(&src)
            .arg(format!("-Wl,-soname,{soname}"))
            .args(extra)
            .status()
            .expect("gcc must be installed (.ci/run installs it)");
        assert!(status.success(), "gcc failed for {rel}");
    }

    /// Compiles an executable at `rel` (extra args for RPATH etc.).
    pub fn compile_exe(&self, rel: &str, source: &str, extra: &[&str]) {
        let out = self.path(rel);
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        let src = self.dir.path().join("src-exe.c");
        std::fs::write(&src, source).unwrap();
        let status = Command::new("gcc")
            .arg("-o")
            .arg(&out)
            .arg(&src)
            .args(extra)
            .status()
            .unwrap();
        assert!(status.success(), "gcc failed for {rel}");
    }

    /// Runs libwarden with `--root` and `--db` of this fixture.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// The command, for callers that need to spawn or tweak it.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.arg("--root")
            .arg(self.root())
            .arg("--db")
            .arg(self.db())
            .args(args);
        c.env_remove("LD_PRELOAD");
        c
    }

    /// `init` that must succeed.
    pub fn init(&self) {
        self.run_ok(&["init"]);
    }

    /// Runs libwarden and asserts exit 0 (stderr in the failure message).
    pub fn run_ok(&self, args: &[&str]) -> Output {
        let o = self.run(args);
        assert_eq!(
            o.status.code(),
            Some(0),
            "libwarden {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        o
    }

    /// `check --format json`: exit code and parsed findings.
    pub fn check_json(&self) -> (i32, Vec<Value>) {
        let o = self.run(&["--format", "json", "check"]);
        (o.status.code().unwrap_or(-1), json_lines(&o.stdout))
    }
}

/// A valid `glibc-ld.so.cache1.1` file with no entries: the 48-byte
/// header, little-endian.
pub fn empty_ld_so_cache() -> Vec<u8> {
    let mut b = b"glibc-ld.so.cache1.1".to_vec();
    b.extend_from_slice(&[0; 8]); // nlibs, len_strings
    b.push(2); // flags: little endian
    b.extend_from_slice(&[0; 19]); // padding, extension offset, unused
    b
}

/// C source of the fixture's stand-in loader: like glibc's, it holds the
/// name of the preload list (the audit checks that it still does).
pub const LOADER_SOURCE: &str = "__attribute__((used)) const char preload_list[] = \"/etc/ld.so.preload\";\nint ld(void){return 0;}\n";

/// The built binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_libwarden"))
}

/// Parses JSON Lines; panics on any invalid line (output must stay valid).
pub fn json_lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8(out.to_vec())
        .expect("stdout must be UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("invalid JSON line {l:?}: {e}")))
        .collect()
}

/// The finding for `path` of `kind`, if any.
pub fn find<'a>(findings: &'a [Value], kind: &str, path: &str) -> Option<&'a Value> {
    findings
        .iter()
        .find(|f| f["kind"] == kind && f["path"] == path)
}

/// True when the tests run as root (chown, unreadable-as-user tests).
pub fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

pub fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

/// How long any single expected thing may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// A running `libwarden watch --format json --debounce 100ms`: its findings
/// and stderr read on threads, every wait bounded by [`WAIT`], the child
/// killed when the value is dropped.
pub struct Watch {
    child: Child,
    lines: Receiver<String>,
    err_lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    /// Disconnected once stderr reached its end (every line is in
    /// `stderr`).
    err_done: Receiver<()>,
    /// Every finding read so far.
    pub seen: Vec<Value>,
}

impl Watch {
    pub fn start(t: &TestRoot, extra: &[&str], env: &[(&str, &str)]) -> Watch {
        let mut args = vec!["--format", "json", "watch", "--debounce", "100ms"];
        args.extend_from_slice(extra);
        let mut cmd = t.cmd(&args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn libwarden watch");
        let (tx, lines) = crossbeam_channel::unbounded();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                match l {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            break;
                        }
                    }
                    Err(e) => panic!("stdout is not UTF-8: {e}"),
                }
            }
        });
        let (etx, err_lines) = crossbeam_channel::unbounded();
        let stderr = Arc::new(Mutex::new(String::new()));
        let log = stderr.clone();
        let err = child.stderr.take().unwrap();
        let (done_tx, err_done) = crossbeam_channel::bounded::<()>(0);
        std::thread::spawn(move || {
            let _done = done_tx;
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                log.lock().unwrap().push_str(&format!("{l}\n"));
                let _ = etx.send(l);
            }
        });
        let mut w = Watch {
            child,
            lines,
            err_lines,
            stderr,
            err_done,
            seen: Vec::new(),
        };
        // The startup scan of a large fixture on a loaded machine takes
        // longer than one ordinary wait.
        w.wait_stderr_within("libwarden watch: watching", WAIT * 3);
        w
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits for a stderr line containing `needle`.
    pub fn wait_stderr(&mut self, needle: &str) -> String {
        self.wait_stderr_within(needle, WAIT)
    }

    pub fn wait_stderr_within(&mut self, needle: &str, wait: Duration) -> String {
        let end = Instant::now() + wait;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.err_lines.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return l,
                Ok(_) => {}
                Err(_) => panic!(
                    "no stderr line with {needle:?} within {wait:?}; stderr:\n{}",
                    self.stderr()
                ),
            }
        }
    }

    /// Reads findings until one of `kind` for `path` arrives.
    pub fn expect(&mut self, kind: &str, path: &str) -> Value {
        if let Some(f) = find(&self.seen, kind, path) {
            return f.clone();
        }
        let end = Instant::now() + WAIT;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let v: Value = serde_json::from_str(&l)
                        .unwrap_or_else(|e| panic!("invalid JSON line {l:?}: {e}"));
                    self.seen.push(v.clone());
                    if v["kind"] == kind && v["path"] == path {
                        return v;
                    }
                }
                Err(_) => panic!(
                    "no {kind} finding for {path} within {WAIT:?}; findings: {:#?}\nstderr:\n{}",
                    self.seen,
                    self.stderr()
                ),
            }
        }
    }

    /// Reads whatever arrives within `d` (for "nothing more" assertions).
    pub fn drain(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while let Ok(l) = self
            .lines
            .recv_timeout(end.saturating_duration_since(Instant::now()))
        {
            let v: Value =
                serde_json::from_str(&l).unwrap_or_else(|e| panic!("invalid JSON line {l:?}: {e}"));
            self.seen.push(v);
        }
    }

    /// Reads findings until `done` holds for all of them so far, or until
    /// `within` has passed; whether `done` held. For tests that compare
    /// whole sets and want both sets in their failure message rather than
    /// a timeout panic.
    pub fn read_until(&mut self, within: Duration, done: impl Fn(&[Value]) -> bool) -> bool {
        let end = Instant::now() + within;
        while !done(&self.seen) {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let v: Value = serde_json::from_str(&l)
                        .unwrap_or_else(|e| panic!("invalid JSON line {l:?}: {e}"));
                    self.seen.push(v);
                }
                Err(_) => return false,
            }
        }
        true
    }

    pub fn count(&self, kind: &str, path: &str) -> usize {
        self.seen
            .iter()
            .filter(|f| f["kind"] == kind && f["path"] == path)
            .count()
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
    }

    /// Waits (bounded) for the process to end; its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let end = Instant::now() + within;
        loop {
            match self.child.try_wait() {
                // The exit comes before the reader thread has read the
                // last lines off the pipe (under load, long before):
                // what the caller reads next must be all of it.
                Ok(Some(st)) => {
                    let _ = self.err_done.recv_timeout(WAIT);
                    return st.code();
                }
                Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(20)),
                _ => panic!("watch did not exit within {within:?}:\n{}", self.stderr()),
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The directory of the live generation of the baseline at `db` (the one
/// its `CURRENT` pointer names): where the sled database an attacker or a
/// failing disk would damage lives.
pub fn live_generation_dir(db: &Path) -> PathBuf {
    let text = std::fs::read_to_string(db.join("CURRENT")).expect("a CURRENT pointer");
    let dir = text
        .lines()
        .find_map(|l| l.strip_prefix("generation "))
        .expect("a generation line");
    db.join(dir)
}

/// Runs `cmd` to its end, or kills it after `within` and panics: a hang is
/// a failure, not a stuck test run. stdout and stderr are collected.
pub fn output_within(mut cmd: Command, within: Duration) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn libwarden");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let o = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out, &mut b);
        b
    });
    let e = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err, &mut b);
        b
    });
    let end = Instant::now() + within;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("libwarden did not finish within {within:?}");
            }
        }
    };
    Output {
        status,
        stdout: o.join().unwrap(),
        stderr: e.join().unwrap(),
    }
}

impl Watch {
    /// Sends SIGSTOP and waits (bounded) until every thread is stopped: a
    /// thread busy in the kernel stops only on its way out.
    pub fn stop_fully(&self) {
        let pid = self.child.id();
        self.signal(libc::SIGSTOP);
        let end = Instant::now() + WAIT;
        loop {
            let stopped = std::fs::read_dir(format!("/proc/{pid}/task"))
                .map(|d| {
                    d.filter_map(|e| e.ok()).all(|e| {
                        std::fs::read_to_string(e.path().join("stat")).is_ok_and(|s| {
                            // The state follows the command name in parentheses.
                            s.rsplit_once(") ")
                                .is_some_and(|(_, rest)| rest.starts_with('T'))
                        })
                    })
                })
                .unwrap_or(false);
            if stopped {
                return;
            }
            assert!(Instant::now() < end, "watch did not stop within {WAIT:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Makes a FIFO at `p` (for tests that plant one where a file is read).
pub fn mkfifo(p: &Path, mode: libc::mode_t) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: c is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), mode) }, 0);
}

/// A `sleep` running with a shared object of its own preloaded
/// (`LD_PRELOAD`) from `/dev/shm` (a writable dir, as an attacker would
/// use), for the process audit. Killed, and the object removed, on drop.
pub struct Preloaded {
    child: Child,
    /// The preloaded object's path.
    pub so: String,
    pub pid: u32,
}

impl Preloaded {
    /// Builds `/dev/shm/lw-TAG-PID.so` and starts `sleep SECS` with it
    /// preloaded (as `nobody` when `as_nobody`), returning once the object
    /// is mapped. `None` (with a SKIPPED line) when there is no /dev/shm.
    pub fn start(t: &TestRoot, tag: &str, secs: u32, as_nobody: bool) -> Option<Preloaded> {
        if !Path::new("/dev/shm").is_dir() {
            eprintln!("SKIPPED: no /dev/shm for the preloaded object");
            return None;
        }
        let so = format!("/dev/shm/lw-{tag}-{}.so", std::process::id());
        let src = t.dir.path().join(format!("preload-{tag}.c"));
        std::fs::write(&src, "int lw_preloaded(void){return 7;}\n").unwrap();
        assert!(Command::new("gcc")
            .args(["-shared", "-fPIC", "-o", &so])
            .arg(&src)
            .status()
            .unwrap()
            .success());
        std::fs::set_permissions(&so, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        let mut cmd = if as_nobody {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid",
                "65534",
                "--regid",
                "65534",
                "--clear-groups",
                "--",
                "sleep",
            ]);
            c
        } else {
            Command::new("sleep")
        };
        let child = cmd
            .arg(secs.to_string())
            .env("LD_PRELOAD", &so)
            .spawn()
            .unwrap();
        let p = Preloaded {
            pid: child.id(),
            child,
            so,
        };
        let maps = format!("/proc/{}/maps", p.pid);
        let deadline = Instant::now() + WAIT;
        while !std::fs::read_to_string(&maps).is_ok_and(|m| m.contains(&p.so)) {
            assert!(Instant::now() < deadline, "sleep never mapped {}", p.so);
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(p)
    }

    /// Whether a finding is the process audit's report of this process's
    /// `LD_PRELOAD`.
    pub fn is_environ_finding(&self, f: &Value) -> bool {
        f["kind"] == "process"
            && f["detail"].as_str().is_some_and(|d| {
                d.contains(&format!("LD_PRELOAD={}", self.so))
                    && d.contains(&format!("pid {} ", self.pid))
            })
    }
}

impl Drop for Preloaded {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.so);
    }
}

/// The (kind, path) of each finding, in order.
pub fn kinds(f: &[Value]) -> Vec<(String, String)> {
    f.iter()
        .map(|x| {
            (
                x["kind"].as_str().unwrap_or("").to_string(),
                x["path"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// `libwarden --db DB --image IMAGE --format json ARGS`: exit code, JSON
/// lines, stderr.
pub fn image_run(t: &TestRoot, image: &Path, args: &[&str]) -> (i32, Vec<Value>, String) {
    let o = Command::new(bin())
        .arg("--db")
        .arg(t.db())
        .arg("--image")
        .arg(image)
        .args(["--format", "json"])
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        json_lines(&o.stdout),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}
