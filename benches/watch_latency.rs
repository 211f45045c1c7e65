//! Benchmark of `libwarden watch` (not a test: it asserts nothing and is
//! run by hand): on a fixture root whose baseline holds 60,000 files it
//! measures
//!
//! - RSS of the watcher with that baseline loaded (VmRSS / VmHWM),
//! - CPU used while idle for 60 s (utime + stime from /proc/PID/stat),
//! - latency from a library write to its JSON line on stdout, p50 / p99 /
//!   max, over a burst of 1,000 library writes (the debounce is included;
//!   it is printed beside).
//!
//! Run: `cargo bench --bench watch_latency`. Knobs (environment):
//! `LW_BENCH_FILES` (60000), `LW_BENCH_WRITES` (1000), `LW_BENCH_IDLE_SECS`
//! (60), `LW_BENCH_DEBOUNCE` (150ms).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime 15.
    let n = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    n(14) + n(15)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let files = env_num("LW_BENCH_FILES", 60_000);
    let writes = env_num("LW_BENCH_WRITES", 1_000);
    let idle = Duration::from_secs(env_num("LW_BENCH_IDLE_SECS", 60));
    let debounce = std::env::var("LW_BENCH_DEBOUNCE").unwrap_or_else(|_| "150ms".into());
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_libwarden"));
    let tmp = tempfile::Builder::new()
        .prefix("lw-watch-bench")
        .tempdir()
        .expect("tempdir");
    let root = tmp.path().join("root");
    let db = tmp.path().join("db");
    let w = |rel: &str, data: &[u8]| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    };
    w("etc/ld.so.conf", b"include /etc/ld.so.conf.d/*.conf\n");
    w("etc/ld.so.conf.d/libc.conf", b"/usr/local/lib\n");
    std::fs::create_dir_all(root.join("usr/local/lib")).unwrap();

    // A real shared object, written again and again in the burst.
    let src = tmp.path().join("b.c");
    std::fs::write(&src, "int b(void){return 1;}\n").unwrap();
    let so = tmp.path().join("b.so");
    let ok = Command::new("gcc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&so)
        .arg(&src)
        .status()
        .is_ok_and(|s| s.success());
    let lib = if ok {
        std::fs::read(&so).unwrap()
    } else {
        eprintln!("gcc not found: writing ELF-headed bytes instead");
        let mut v = b"\x7fELF\x02\x01\x01".to_vec();
        v.resize(16 << 10, 0);
        v
    };

    eprintln!("creating {files} files...");
    let t = Instant::now();
    let per_dir = 100;
    for i in 0..files {
        let rel = format!(
            "usr/lib/x86_64-linux-gnu/bulk/d{:04}/lib{i}.so",
            i / per_dir
        );
        w(&rel, format!("library {i}\n").as_bytes());
    }
    eprintln!("  {:.1} s", t.elapsed().as_secs_f64());

    let run = |args: &[&str]| {
        let o = Command::new(&bin)
            .arg("--root")
            .arg(&root)
            .arg("--db")
            .arg(&db)
            .args(args)
            .output()
            .expect("run libwarden");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let t = Instant::now();
    run(&["-q", "init"]);
    eprintln!("init: {:.2} s", t.elapsed().as_secs_f64());

    let t = Instant::now();
    let mut child = Command::new(&bin)
        .arg("--root")
        .arg(&root)
        .arg("--db")
        .arg(&db)
        .args(["--format", "json", "watch", "--debounce", &debounce])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn watch");
    let pid = child.id();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        if err.read_line(&mut line).unwrap_or(0) == 0 {
            panic!("watch ended before it was ready");
        }
        if line.contains("libwarden watch: watching") {
            eprint!("{line}");
            break;
        }
    }
    let startup = t.elapsed();
    std::thread::spawn(move || {
        let mut l = String::new();
        while err.read_line(&mut l).unwrap_or(0) > 0 {
            l.clear();
        }
    });
    let (tx, rx) = crossbeam_channel::unbounded::<(String, Instant)>();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let now = Instant::now();
            let v: serde_json::Value = serde_json::from_str(&l).expect("valid JSON line");
            let _ = tx.send((v["path"].as_str().unwrap_or_default().to_string(), now));
        }
    });
    let rss_loaded = proc_status(pid, "VmRSS:");

    eprintln!("idle for {} s...", idle.as_secs());
    let c0 = cpu_ticks(pid);
    std::thread::sleep(idle);
    let c1 = cpu_ticks(pid);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let idle_cpu_s = (c1 - c0) as f64 / hz;

    eprintln!("burst of {writes} library writes...");
    let dir = root.join("usr/local/lib");
    let mut written: HashMap<String, Instant> = HashMap::new();
    let burst_start = Instant::now();
    for i in 0..writes {
        let name = format!("libburst{i}.so");
        let mut bytes = lib.clone();
        bytes.extend_from_slice(format!("{i}").as_bytes());
        let t = Instant::now();
        std::fs::write(dir.join(&name), &bytes).unwrap();
        written.insert(format!("/usr/local/lib/{name}"), t);
    }
    let burst_took = burst_start.elapsed();
    let mut lat = Vec::with_capacity(writes as usize);
    let end = Instant::now() + Duration::from_secs(60);
    while lat.len() < written.len() {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((path, at)) => {
                if let Some(t) = written.get(&path) {
                    lat.push(at.duration_since(*t));
                }
            }
            Err(_) => break,
        }
    }
    lat.sort();
    let rss_after = proc_status(pid, "VmRSS:");
    let hwm = proc_status(pid, "VmHWM:");
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let status = child.wait().ok().and_then(|s| s.code());

    println!("watch benchmark ({files} files in the baseline, debounce {debounce})");
    println!("  startup to ready:        {:.2} s", startup.as_secs_f64());
    println!("  RSS, baseline loaded:    {rss_loaded}");
    println!(
        "  idle CPU over {} s:      {:.3} s ({:.4} %)",
        idle.as_secs(),
        idle_cpu_s,
        100.0 * idle_cpu_s / idle.as_secs_f64()
    );
    println!(
        "  burst: {} writes in {:.1} ms, {} findings received",
        writes,
        burst_took.as_secs_f64() * 1e3,
        lat.len()
    );
    println!(
        "  write -> JSON line:      p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pct(&lat, 0.5).as_secs_f64() * 1e3,
        pct(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    println!("  RSS after the burst:     {rss_after} (peak {hwm})");
    println!("  exit on SIGTERM:         {status:?}");
}
