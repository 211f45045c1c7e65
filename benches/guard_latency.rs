//! Benchmark of `libwarden guard` (not a test: it asserts nothing and is
//! run by hand, as root): what the guard adds to a library open and to a
//! process start, on a fixture root whose search dir holds `LW_BENCH_LIBS`
//! gcc-built shared objects of 256 KiB each (guard marks only the
//! fixture's dirs, `--scope dirs`, so the rest of the machine is not
//! slowed). For guard off, `guard` (monitor) and `guard --enforce`:
//!
//! - `dlopen` + `dlclose` latency, p50 / p99, of baselined libraries
//!   - uncached: the first open after each library's ctime changed (a
//!     `chmod` to the same mode), so the guard's identity match fails and
//!     it reads and hashes the whole file before answering;
//!   - cached: the same libraries opened again (the digest cache answers);
//! - a process start: `fork` + `execv("/usr/bin/true")` + `waitpid`,
//!   `LW_BENCH_EXECS` times, inside a chroot of the fixture that holds
//!   copies of `true`, the loader and libc (so each start opens a guarded
//!   loader and libc), p50 / p99 and the total;
//! - the guard's CPU while idle for `LW_BENCH_IDLE_SECS` (utime + stime
//!   from /proc/PID/stat) and its RSS (VmRSS) idle and after the runs.
//!
//! Run: `sudo cargo bench --bench guard_latency`. Knobs (environment):
//! `LW_BENCH_LIBS` (50), `LW_BENCH_ROUNDS` (20), `LW_BENCH_EXECS` (1000),
//! `LW_BENCH_IDLE_SECS` (10).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn env_num(k: &str, default: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn proc_status(pid: u32, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .map(|l| l[key.len()..].trim().to_string())
        .unwrap_or_default()
}

/// utime + stime in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    n(14) + n(15)
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

/// The measuring program: `open PATH...` prints the ns of each dlopen +
/// dlclose; `exec ROOT N` chroots into ROOT and prints the ns of each of N
/// fork + exec of /usr/bin/true + wait.
const HARNESS: &str = r#"
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
static long long now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1000000000LL+t.tv_nsec;}
int main(int c,char**v){
  if(c>1&&!strcmp(v[1],"open")){
    for(int i=2;i<c;i++){long long a=now();void*h=dlopen(v[i],RTLD_NOW|RTLD_LOCAL);long long b=now();
      if(h)dlclose(h);printf("%lld %d\n",b-a,h!=0);}
    return 0;}
  if(c>3&&!strcmp(v[1],"exec")){
    if(chroot(v[2])||chdir("/")){perror("chroot");return 2;}
    int n=atoi(v[3]);
    for(int i=0;i<n;i++){long long a=now();pid_t p=fork();
      if(p==0){char*av[]={"/usr/bin/true",0};execv(av[0],av);_exit(127);}
      int st;waitpid(p,&st,0);long long b=now();printf("%lld %d\n",b-a,WIFEXITED(st)&&WEXITSTATUS(st)==0);}
    return 0;}
  return 2;}
"#;

fn sh(cmd: &mut Command) {
    let st = cmd.status().expect("run a fixture command");
    assert!(st.success(), "{cmd:?} failed");
}

struct Fixture {
    dir: tempfile::TempDir,
    libs: Vec<PathBuf>,
    bin: PathBuf,
}

impl Fixture {
    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root")
            .arg(self.root())
            .arg("--db")
            .arg(self.dir.path().join("db"));
        c.args(args);
        c
    }
}

fn build(n: u64) -> Fixture {
    let dir = tempfile::Builder::new()
        .prefix("lw-guard-bench")
        .tempdir()
        .unwrap();
    let root = dir.path().join("root");
    let lib = root.join("usr/lib/x86_64-linux-gnu");
    for d in ["etc", "usr/lib/x86_64-linux-gnu", "usr/lib64", "usr/bin"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
    std::os::unix::fs::symlink("usr/lib64", root.join("lib64")).unwrap();
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
    std::fs::write(root.join("etc/ld.so.conf"), "/usr/lib/x86_64-linux-gnu\n").unwrap();
    // The host's true, loader and libc, for the process starts.
    sh(Command::new("cp")
        .arg("/usr/bin/true")
        .arg(root.join("usr/bin/true")));
    let ldso = std::fs::canonicalize("/lib64/ld-linux-x86-64.so.2").unwrap();
    sh(Command::new("cp")
        .arg(&ldso)
        .arg(root.join("usr/lib64/ld-linux-x86-64.so.2")));
    let libc = std::fs::canonicalize("/lib/x86_64-linux-gnu/libc.so.6").unwrap();
    sh(Command::new("cp").arg(&libc).arg(lib.join("libc.so.6")));
    let src = dir.path().join("lib.c");
    let mut libs = Vec::new();
    for i in 0..n {
        std::fs::write(
            &src,
            format!(
                "const char pad{i}[256*1024] = {{ {i} }};\nint f{i}(void){{return pad{i}[{i}];}}\n"
            ),
        )
        .unwrap();
        let out = lib.join(format!("libbench{i}.so"));
        sh(Command::new("gcc")
            .args(["-shared", "-fPIC", "-O0", "-o"])
            .arg(&out)
            .arg(&src));
        libs.push(out);
    }
    let harness = dir.path().join("harness.c");
    std::fs::write(&harness, HARNESS).unwrap();
    sh(Command::new("gcc")
        .arg("-O2")
        .arg("-o")
        .arg(dir.path().join("harness"))
        .arg(&harness)
        .arg("-ldl"));
    Fixture {
        dir,
        libs,
        bin: PathBuf::from(env!("CARGO_BIN_EXE_libwarden")),
    }
}

/// Runs the harness; the ns of each operation (failures included: a
/// refused open is timed too, and counted).
fn harness(f: &Fixture, args: &[&str], paths: &[PathBuf]) -> (Vec<u64>, usize) {
    let out = Command::new(f.dir.path().join("harness"))
        .args(args)
        .args(paths)
        .env_remove("LD_PRELOAD")
        .output()
        .unwrap();
    let mut ns = Vec::new();
    let mut failed = 0;
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let mut it = l.split(' ');
        if let (Some(t), Some(ok)) = (it.next(), it.next()) {
            ns.push(t.parse().unwrap_or(0));
            if ok != "1" {
                failed += 1;
            }
        }
    }
    (ns, failed)
}

fn start_guard(f: &Fixture, mode: &str) -> Child {
    let keys = f.dir.path().join("keys");
    let mut args: Vec<String> = Vec::new();
    if mode == "enforce" {
        args.extend([
            "--verify-with".into(),
            keys.join("libwarden.pub").display().to_string(),
        ]);
    }
    args.extend(["--format", "json", "guard", "--scope", "dirs"].map(String::from));
    if mode == "enforce" {
        args.push("--enforce".into());
    }
    let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let mut c = f.cmd(&a);
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let err = child.stderr.take().unwrap();
    let mut lines = BufReader::new(err).lines();
    for l in lines.by_ref() {
        let l = l.unwrap_or_default();
        if l.contains("libwarden guard:") && l.contains("marks") {
            break;
        }
    }
    // Keep draining stderr so the guard never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    child
}

fn touch_ctimes(libs: &[PathBuf]) {
    use std::os::unix::fs::PermissionsExt;
    for l in libs {
        // Same mode: only the ctime changes, which defeats the identity
        // match and makes the guard hash the file on its first open.
        let _ = std::fs::set_permissions(l, std::fs::Permissions::from_mode(0o644));
    }
}

fn row(name: &str, mode: &str, ns: &mut [u64], failed: usize) {
    ns.sort_unstable();
    println!(
        "| {name:<32} | {mode:<8} | {:>6} | {:>9.1} | {:>9.1} | {failed:>6} |",
        ns.len(),
        pct(ns, 0.5),
        pct(ns, 0.99)
    );
}

fn main() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: the guard bench needs root (fanotify permission events)");
        return;
    }
    let n = env_num("LW_BENCH_LIBS", 50);
    let rounds = env_num("LW_BENCH_ROUNDS", 20);
    let execs = env_num("LW_BENCH_EXECS", 1000);
    let idle = env_num("LW_BENCH_IDLE_SECS", 10);
    eprintln!("building {n} libraries of 256 KiB...");
    let f = build(n);
    let keys = f.dir.path().join("keys");
    sh(Command::new(&f.bin).arg("keygen").arg(&keys));
    sh(&mut f.cmd(&[
        "init",
        "--sign-with",
        keys.join("libwarden.key").to_str().unwrap(),
    ]));
    let root = f.root();
    let root_s = root.to_str().unwrap().to_string();
    let execs_s = execs.to_string();

    println!(
        "| operation                        | guard    |      n |  p50 (us) |  p99 (us) | failed |"
    );
    println!(
        "|----------------------------------|----------|--------|-----------|-----------|--------|"
    );
    let mut summary = Vec::new();
    for mode in ["off", "monitor", "enforce"] {
        touch_ctimes(&f.libs);
        let guard = (mode != "off").then(|| start_guard(&f, mode));
        if let Some(g) = &guard {
            let pid = g.id();
            let rss_start = proc_status(pid, "VmRSS:");
            let t0 = cpu_ticks(pid);
            std::thread::sleep(Duration::from_secs(idle));
            let t1 = cpu_ticks(pid);
            // SAFETY: sysconf cannot fail for _SC_CLK_TCK.
            let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
            summary.push(format!(
                "{mode}: idle CPU {:.3}% over {idle} s, RSS {rss_start} idle",
                (t1 - t0) as f64 / hz / idle as f64 * 100.0
            ));
        }
        let (mut first, failed) = harness(&f, &["open"], &f.libs);
        row("dlopen, uncached (hash)", mode, &mut first, failed);
        let mut cached = Vec::new();
        let mut cfail = 0;
        for _ in 0..rounds {
            let (ns, fl) = harness(&f, &["open"], &f.libs);
            cached.extend(ns);
            cfail += fl;
        }
        row("dlopen, cached", mode, &mut cached, cfail);
        let (mut ex, xf) = harness(&f, &["exec", &root_s, &execs_s], &[]);
        let total: u64 = ex.iter().sum();
        row(
            &format!("fork+exec /usr/bin/true x{execs}"),
            mode,
            &mut ex,
            xf,
        );
        summary.push(format!(
            "{mode}: {execs} process starts in {:.1} ms",
            total as f64 / 1e6
        ));
        if let Some(mut g) = guard {
            summary.push(format!(
                "{mode}: RSS {} after the runs",
                proc_status(g.id(), "VmRSS:")
            ));
            let _ = g.kill();
            let _ = g.wait();
        }
    }
    println!();
    for s in summary {
        println!("- {s}");
    }
}
