//! One pipeline for `check` and `watch`: the same change gives the same
//! findings from both (the diff, provenance and the loader audit alike),
//! and an unchanged `check` answers from the baseline without opening a
//! single library.
//!
//! The equivalence tests compare sets of (kind, path, severity): what
//! `check` reports after a change minus what it reported before, against
//! what a running `watch` reports for that change. Kinds about running
//! processes and about the watcher itself (`process`, `monitoring_gap`)
//! are left out: only one side can have them.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::provenance::{dpkg_root, install};
use crate::util::*;

const MA: &str = "usr/lib/x86_64-linux-gnu";
const LOADER: &str = "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2";

/// (kind, path, severity) of one finding.
type Key = (String, String, String);

/// Kinds only one side can report.
const ONE_SIDED: &[&str] = &["process", "monitoring_gap"];

fn key_of(f: &Value) -> Key {
    let s = |k: &str| f[k].as_str().unwrap_or("").to_string();
    (s("kind"), s("path"), s("severity"))
}

fn keys<'a>(findings: impl IntoIterator<Item = &'a Value>) -> BTreeSet<Key> {
    findings
        .into_iter()
        .filter(|f| !ONE_SIDED.contains(&f["kind"].as_str().unwrap_or("")))
        .map(key_of)
        .collect()
}

/// `check --format json` as a set of keys; it must have run to the end
/// (an exit code of 0–15: clean or findings).
fn check_keys(t: &TestRoot) -> BTreeSet<Key> {
    let o = t.run(&["--format", "json", "check"]);
    assert!(
        matches!(o.status.code(), Some(0..=15)),
        "check failed ({:?}): {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    keys(&json_lines(&o.stdout))
}

fn key(kind: &str, path: &str, severity: &str) -> Key {
    (kind.to_string(), path.to_string(), severity.to_string())
}

/// What a watch reported after the change (`seen` from the mark on), its
/// startup scan left out.
fn reported(seen: &[Value]) -> BTreeSet<Key> {
    keys(seen.iter().filter(|f| f["source"] != "startup"))
}

/// kind, path, severity, source and detail of each finding (the records
/// are long).
fn brief(findings: &[Value]) -> Vec<String> {
    findings
        .iter()
        .map(|f| {
            let (k, p, s) = key_of(f);
            format!("{k} {p} {s} ({}): {}", f["source"], f["detail"])
        })
        .collect()
}

/// A finding B − A must hold: kind, path and, where the scenario is about
/// it, severity.
pub(crate) type Must<'a> = (&'a str, &'a str, Option<&'a str>);

/// The rule: on a fixture with a baseline, `change` gives a running watch
/// exactly the findings it adds to `check` (B − A, as a set of keys). B − A
/// must hold every finding of `must`, so the comparison is never between
/// two empty sets.
pub(crate) fn assert_watch_matches_check(
    t: &TestRoot,
    change: impl FnOnce(&TestRoot),
    must: &[Must],
) {
    assert!(!must.is_empty());
    let before = check_keys(t);
    let mut w = Watch::start(t, &["--rescan-interval", "1h"], &[]);
    // The startup scan is over before "watching" is printed; its findings
    // (standing deviations) may still be in the pipe.
    w.drain(Duration::from_millis(300));
    let mark = w.seen.len();

    change(t);
    // check does not write the baseline: it can run beside the watch.
    let after = check_keys(t);
    let want: BTreeSet<Key> = after.difference(&before).cloned().collect();
    for (kind, path, severity) in must {
        assert!(
            want.iter()
                .any(|(k, p, s)| k == kind && p == path && severity.is_none_or(|want| s == want)),
            "check reports no {kind} {severity:?} finding for {path} after the change; \
             it reports {want:#?}"
        );
    }

    w.read_until(WAIT, |seen| want.is_subset(&reported(&seen[mark..])));
    // Anything more the watch has to say about it.
    w.drain(Duration::from_millis(500));
    let got = reported(&w.seen[mark..]);
    let missing: Vec<&Key> = want.difference(&got).collect();
    let extra: Vec<&Key> = got.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "watch and check disagree about the change\n\
         only check (missing from watch): {missing:#?}\n\
         only watch: {extra:#?}\n\
         check before: {before:#?}\ncheck after: {after:#?}\n\
         watch findings: {:#?}\nwatch stderr:\n{}",
        brief(&w.seen[mark..]),
        w.stderr()
    );
}

/// The harness itself: a change both have always judged alike.
#[test]
fn watch_matches_check_on_a_rewritten_library() {
    let t = TestRoot::debian();
    t.init();
    let lib = format!("{MA}/libfoo.so.1.2.3");
    assert_watch_matches_check(
        &t,
        |t| t.compile_so(&lib, "libfoo.so.1", "int foo(void){return 42;}"),
        &[("content", &format!("/{lib}"), Some("high"))],
    );
}

#[test]
fn watch_matches_check_on_a_package_upgrade() {
    let t = TestRoot::debian();
    dpkg_root(&t);
    let lib = format!("{MA}/libpipe.so.1");
    install(&t, "libpipe1", "1.0", &[(lib.as_str(), 1)]);
    t.init();
    assert_watch_matches_check(
        &t,
        |t| install(t, "libpipe1", "2.0", &[(lib.as_str(), 2)]),
        &[("package_update", &format!("/{lib}"), Some("info"))],
    );
}

#[test]
fn watch_matches_check_on_a_new_preload_list() {
    let t = TestRoot::debian();
    t.init();
    let lib = format!("/{MA}/libfoo.so.1");
    assert_watch_matches_check(
        &t,
        |t| t.write("etc/ld.so.preload", format!("{lib}\n")),
        &[
            ("added", "/etc/ld.so.preload", Some("critical")),
            ("preload", "/etc/ld.so.preload", None),
            ("preload", &lib, None),
        ],
    );
}

#[test]
fn watch_matches_check_on_an_unpackaged_library() {
    let t = TestRoot::debian();
    dpkg_root(&t);
    t.init();
    let lib = format!("{MA}/libstray.so.1");
    let p = format!("/{lib}");
    assert_watch_matches_check(
        &t,
        |t| t.compile_so(&lib, "libstray.so.1", "int stray(void){return 1;}"),
        &[("added", &p, None), ("unpackaged", &p, None)],
    );
}

#[test]
fn watch_matches_check_on_a_world_writable_lib_dir() {
    let t = TestRoot::debian();
    t.init();
    assert_watch_matches_check(
        &t,
        |t| {
            std::fs::set_permissions(
                t.path("usr/local/lib"),
                std::fs::Permissions::from_mode(0o777),
            )
            .unwrap()
        },
        &[
            ("metadata", "/usr/local/lib", Some("high")),
            ("writable", "/usr/local/lib", None),
        ],
    );
}

#[test]
fn watch_matches_check_on_a_patched_loader() {
    let t = TestRoot::debian();
    t.init();
    let ld = format!("/{LOADER}");
    assert_watch_matches_check(
        &t,
        |t| {
            let p = t.path(LOADER);
            let orig = std::fs::read(&p).unwrap();
            let needle = b"/etc/ld.so.preload";
            let at = orig
                .windows(needle.len())
                .position(|w| w == needle)
                .expect("the fixture loader holds the preload path");
            let mut patched = orig;
            patched[at..at + needle.len()].copy_from_slice(b"/var/tmp/.hidden.x");
            std::fs::write(&p, patched).unwrap();
        },
        &[("content", &ld, None), ("loader", &ld, None)],
    );
}

/// Compiles a relocatable object (what a kernel module is) at `rel`.
fn compile_object(t: &TestRoot, rel: &str) {
    let out = t.path(rel);
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let src = t.dir.path().join("obj.c");
    std::fs::write(&src, "int init_module(void){return 0;}\n").unwrap();
    let st = Command::new("gcc")
        .arg("-c")
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
        .expect("gcc must be installed (.ci/deps installs it)");
    assert!(st.success(), "gcc -c failed for {rel}");
}

/// One successful open in an strace log: its flags and the path of the
/// descriptor it returned (as `-y` prints it).
struct Open {
    flags: String,
    fd_path: PathBuf,
}

/// The open calls of an `strace -f -y` log: the successful ones, and the
/// lines that are neither a success nor a failure as this parser knows
/// them (so that a change of format cannot hide an open). An interrupted
/// call is joined with its `<... resumed>` line.
fn opens_in(log: &str) -> (Vec<Open>, Vec<String>) {
    let mut pending: std::collections::HashMap<&str, String> = Default::default();
    let mut opens = Vec::new();
    let mut unknown = Vec::new();
    for line in log.lines() {
        let (pid, call) = match line.split_once(' ') {
            Some((p, rest)) if !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()) => {
                (p, rest.trim_start())
            }
            _ => ("", line),
        };
        let call = if let Some(head) = call.strip_suffix("<unfinished ...>") {
            pending.insert(pid, head.trim_end().to_string());
            continue;
        } else if call.starts_with("<... ") {
            let Some((_, tail)) = call.split_once("resumed>") else {
                continue;
            };
            match pending.remove(pid) {
                Some(head) => format!("{head}{tail}"),
                None => {
                    unknown.push(line.to_string());
                    continue;
                }
            }
        } else {
            call.to_string()
        };
        if !["open(", "openat(", "openat2("]
            .iter()
            .any(|c| call.starts_with(c))
        {
            continue;
        }
        match parse_open(&call) {
            Some(Ok((flags, fd_path))) => opens.push(Open { flags, fd_path }),
            Some(Err(())) => {}
            None => unknown.push(line.to_string()),
        }
    }
    // A call still unfinished when its process ended returned nothing.
    (opens, unknown)
}

/// `openat(AT_FDCWD</cwd>, "/p", O_RDONLY|O_CLOEXEC)   = 3</p>`: the flags
/// and the descriptor's path; `Err` for a failed call, `None` when the line
/// is not understood.
fn parse_open(call: &str) -> Option<Result<(String, PathBuf), ()>> {
    // The result: `)`, alignment spaces, `= `. The fixture's paths hold no
    // `)`, so the first such `)` ends the arguments.
    let (args, result) = call.match_indices(')').find_map(|(i, _)| {
        let rest = call[i + 1..].trim_start_matches(' ');
        rest.strip_prefix("= ").map(|r| (&call[..i], r))
    })?;
    // `-1 ENOENT (...)`, or `?` for a call cut short by the exit.
    if result.starts_with('-') || result.starts_with('?') {
        return Some(Err(()));
    }
    let lt = result.find('<')?;
    result[..lt].parse::<u32>().ok()?;
    let gt = result.rfind('>')?;
    let path = &result[lt + 1..gt];
    let path = path.strip_suffix(" (deleted)").unwrap_or(path);
    // The flags follow the quoted path.
    let flags = args.rsplit_once("\", ").map(|(_, f)| f)?;
    Some(Ok((flags.to_string(), PathBuf::from(path))))
}

fn has_flag(flags: &str, flag: &str) -> bool {
    flags
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|f| f == flag)
}

/// The fixture's library search dirs on the host, symlinks resolved
/// (`lib -> usr/lib`): the kernel names an open descriptor by its real path.
fn library_dirs(t: &TestRoot) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = [
        "usr/lib",
        "usr/lib64",
        "usr/local/lib",
        "lib",
        "lib64",
        "lib32",
        "usr/lib32",
        "libx32",
        "usr/libx32",
    ]
    .iter()
    .filter_map(|d| std::fs::canonicalize(t.path(d)).ok())
    .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

fn under(p: &Path, dirs: &[PathBuf]) -> bool {
    dirs.iter().any(|d| p.starts_with(d))
}

/// `libwarden --format json ARGS` against the fixture under `strace -f
/// -y`: its output and the files (not directories) it opened in the
/// library dirs, as host paths, in the order opened. Asserts that the log
/// was understood and shows the baseline being opened (so an empty list
/// means nothing was opened, not that strace saw nothing).
fn traced(t: &TestRoot, args: &[&str]) -> (std::process::Output, Vec<String>) {
    let log = t.dir.path().join("strace.log");
    let o = Command::new("strace")
        .args(["-f", "-y", "-e", "trace=open,openat,openat2", "-o"])
        .arg(&log)
        .arg(bin())
        .arg("--root")
        .arg(t.root())
        .arg("--db")
        .arg(t.db())
        .arg("--format")
        .arg("json")
        .args(args)
        .env_remove("LD_PRELOAD")
        .output()
        .expect("strace must be installed (.ci/deps installs it)");
    let log = std::fs::read_to_string(&log).unwrap();
    let (opens, unknown) = opens_in(&log);
    assert!(
        unknown.is_empty(),
        "strace lines this test does not understand:\n{}",
        unknown.join("\n")
    );
    let db = std::fs::canonicalize(t.db()).unwrap_or(t.db());
    assert!(
        opens.iter().any(|o| o.fd_path.starts_with(&db)),
        "the log shows no open of the baseline: strace saw nothing?\n{log}"
    );
    let dirs = library_dirs(t);
    assert!(!dirs.is_empty());
    let files = opens
        .iter()
        .filter(|o| !has_flag(&o.flags, "O_DIRECTORY") && !has_flag(&o.flags, "O_PATH"))
        .filter(|o| under(&o.fd_path, &dirs))
        // A directory opened without O_DIRECTORY reads no file.
        .filter(|o| !o.fd_path.is_dir())
        .map(|o| o.fd_path.display().to_string())
        .collect();
    (o, files)
}

/// A fixture with one of everything the judges learn from a file's
/// content: ELF headers (the audit), the loader's preload string, a kernel
/// module's signature trailer, an IMA hash (provenance), a systemd unit's
/// environment lines (the environment audit). Baselined.
fn facts_fixture() -> TestRoot {
    let t = TestRoot::debian();
    for (name, n) in [("liba.so.1", 1), ("libb.so.2", 2), ("libc-like.so.6", 3)] {
        t.compile_so(
            &format!("{MA}/{name}"),
            name,
            &format!("int f{n}(void){{return {n};}}"),
        );
    }
    t.compile_so(
        "usr/local/lib/liblocal.so",
        "liblocal.so",
        "int l(void){return 4;}",
    );
    t.compile_so(
        "usr/lib64/lib64only.so.1",
        "lib64only.so.1",
        "int s(void){return 5;}",
    );
    // A kernel module: /usr/lib is searched as a whole tree.
    compile_object(&t, "usr/lib/modules/6.1.0/kernel/x.ko");
    t.write(
        "usr/lib/systemd/system/evil.service",
        "[Service]\nEnvironment=LD_PRELOAD=/tmp/e.so\nExecStart=/bin/true\n",
    );
    // An IMA hash that matches (sha256, `security.ima` type 4, algo 4).
    let lib = t.path(&format!("{MA}/liba.so.1"));
    let sha = Command::new("sha256sum").arg(&lib).output().unwrap();
    let sha = String::from_utf8_lossy(&sha.stdout)[..64].to_string();
    let set = Command::new("setfattr")
        .args(["-n", "security.ima", "-v"])
        .arg(format!("0x0404{sha}"))
        .arg(&lib)
        .status()
        .expect("setfattr must be installed (.ci/deps installs attr)");
    assert!(set.success());
    t.init();
    t
}

/// What the fixture reports on every check: an unsigned module and a unit
/// that preloads.
fn facts_findings() -> BTreeSet<Key> {
    BTreeSet::from([
        key("unsigned", "/usr/lib/modules/6.1.0/kernel/x.ko", "high"),
        key(
            "environment",
            "/usr/lib/systemd/system/evil.service",
            "high",
        ),
    ])
}

#[test]
fn unchanged_check_opens_no_library_file() {
    let t = facts_fixture();
    // Standing findings an unchanged check must go on reporting without
    // reading the files they are about.
    let (code, f) = t.check_json();
    assert_eq!((code, keys(&f)), (8, facts_findings()), "{f:#?}");
    let (o, opened) = traced(&t, &["check"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(8), "under strace: {err}");
    assert_eq!(keys(&json_lines(&o.stdout)), facts_findings(), "{err}");
    assert!(
        opened.is_empty(),
        "an unchanged check opened {} file(s) in the library dirs:\n{}",
        opened.len(),
        opened.join("\n")
    );
}

#[test]
fn paranoid_check_reads_each_library_file_once() {
    let t = facts_fixture();
    let (o, mut opened) = traced(&t, &["check", "--paranoid"]);
    assert_eq!(
        keys(&json_lines(&o.stdout)),
        facts_findings(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Every regular file of the lib dirs, each opened exactly once: the
    // facts come from the read that hashes it.
    let mut files: Vec<String> = Vec::new();
    for d in library_dirs(&t) {
        for e in walk(&d) {
            files.push(e.display().to_string());
        }
    }
    files.sort();
    files.dedup();
    opened.sort();
    assert_eq!(opened, files);
}

/// Regular files at and below `dir`, symlinks not followed.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            out.extend(walk(&e.path()));
        } else if ft.is_file() {
            out.push(e.path());
        }
    }
    out
}

/// Holds the root's dpkg lock as dpkg does (an fcntl write lock) until
/// dropped.
struct DpkgLock {
    // Held, never read: the lock lives as long as the descriptor.
    _file: std::fs::File,
}

impl DpkgLock {
    fn take(t: &TestRoot) -> DpkgLock {
        use std::os::fd::AsRawFd;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(t.path("var/lib/dpkg/lock"))
            .unwrap();
        // SAFETY: a zeroed flock is valid; fcntl gets a valid fd and pointer.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = libc::F_WRLCK as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        let rc = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLK, &fl) };
        assert_eq!(rc, 0, "cannot lock: {}", std::io::Error::last_os_error());
        DpkgLock { _file: f }
    }
}

/// A library that changes while dpkg holds its lock is judged when the
/// transaction ends: its files may not match md5sums dpkg has not written
/// yet, and a half-done upgrade must not be reported as tampering.
#[test]
fn watch_waits_for_a_package_transaction_to_end() {
    let t = TestRoot::debian();
    dpkg_root(&t);
    let lib = format!("{MA}/libwait.so.1");
    install(&t, "libwait1", "1.0", &[(lib.as_str(), 1)]);
    t.init();
    let mut w = Watch::start(&t, &["--rescan-interval", "1h"], &[]);
    w.drain(Duration::from_millis(300));
    let mark = w.seen.len();
    let lock = DpkgLock::take(&t);
    // dpkg itself cannot run while the test holds its lock: the library
    // is rewritten as an unpacking dpkg would.
    t.compile_so(&lib, "libwait.so.1", "int f(void){return 2;}");
    w.drain(Duration::from_secs(2));
    assert!(
        w.seen[mark..].is_empty(),
        "judged while dpkg held its lock: {:#?}",
        brief(&w.seen[mark..])
    );
    drop(lock);
    let path = format!("/{lib}");
    let f = w.expect("content", &path);
    assert_eq!(f["source"], "event", "{f}");
}
