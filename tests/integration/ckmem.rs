//! An unchanged check: memory and work near a metadata walk. The scan's
//! record of an unchanged path is the baseline's own, so a check holds one
//! set of records, not two; these tests hold it to judging exactly as a
//! check that shares nothing (`--paranoid` reads every file again) and to
//! a per-entry memory cost of about one set.

use crate::util::*;

const MA: &str = "usr/lib/x86_64-linux-gnu";

/// A tree of about `n` entries under the multiarch dir: real shared
/// objects (one gcc build, copies told apart by a trailing byte pattern,
/// so each has its own digest and ELF facts), symlinks to them, plain
/// files, in directories of 100 entries.
fn big_tree(t: &TestRoot, n: usize) {
    t.compile_so(
        &format!("{MA}/libseed.so.1"),
        "libseed.so.1",
        "int seed(void){return 7;}\n",
    );
    let so = std::fs::read(t.path(&format!("{MA}/libseed.so.1"))).unwrap();
    for i in 0..n {
        let dir = format!("{MA}/pkg{:03}", i / 100);
        if i % 100 == 0 {
            std::fs::create_dir_all(t.path(&dir)).unwrap();
        }
        match i % 4 {
            0 => {
                let mut b = so.clone();
                b.extend_from_slice(&(i as u64).to_le_bytes());
                t.write(&format!("{dir}/libgen{i}.so.1"), b);
            }
            1 => t.link(
                &format!("libgen{}.so.1", i - 1),
                &format!("{dir}/libgen{i}.so"),
            ),
            _ => t.write(&format!("{dir}/data{i}.txt"), format!("entry {i}\n")),
        }
    }
}

/// `check` in JSON with `extra` flags: exit code and what each finding
/// says (kind, path, severity, detail, changes, before and after), sorted,
/// without the time it was said.
fn check_said(t: &TestRoot, extra: &[&str]) -> (i32, Vec<String>) {
    let mut args = vec!["--format", "json", "check"];
    args.extend_from_slice(extra);
    let o = t.run(&args);
    let code = o.status.code().unwrap_or(-1);
    assert!(
        code < 64,
        "check {extra:?} failed ({code}): {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut said: Vec<String> = json_lines(&o.stdout)
        .iter()
        .map(|f| {
            format!(
                "{} {} {} {} {} {} {}",
                f["kind"],
                f["path"],
                f["severity"],
                f["detail"],
                f["changes"],
                f["before"],
                f["after"]
            )
        })
        .collect();
    said.sort();
    (code, said)
}

/// The shared records judge as records read afresh: an unchanged tree of a
/// few thousand entries, then one with every kind of change the diff
/// tells, give the same findings and exit code from a check that keeps
/// the baseline's records for unchanged paths as from one that reads
/// every file again (`--paranoid`, nothing shared).
#[test]
fn shared_records_judge_as_records_read_again() {
    let t = TestRoot::debian();
    big_tree(&t, 3000);
    t.init();
    let (code, unchanged) = check_said(&t, &[]);
    assert_eq!(
        (code, &unchanged),
        (0, &Vec::<String>::new()),
        "an unchanged tree"
    );
    assert_eq!(check_said(&t, &["--paranoid"]), (code, unchanged));

    // Content, permissions, a retargeted symlink, one gone, one new.
    let mut b = std::fs::read(t.path(&format!("{MA}/pkg001/libgen100.so.1"))).unwrap();
    b.push(0);
    t.write(&format!("{MA}/pkg001/libgen100.so.1"), b);
    let p = t.path(&format!("{MA}/pkg002/data202.txt"));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    let l = t.path(&format!("{MA}/pkg003/libgen301.so"));
    std::fs::remove_file(&l).unwrap();
    t.link("libgen304.so.1", &format!("{MA}/pkg003/libgen301.so"));
    std::fs::remove_file(t.path(&format!("{MA}/pkg004/data402.txt"))).unwrap();
    t.write(&format!("{MA}/pkg005/new.txt"), "new\n");

    let (code, changed) = check_said(&t, &[]);
    assert_ne!(code, 0, "changes set exit bits");
    for (kind, path) in [
        ("content", "pkg001/libgen100.so.1"),
        ("metadata", "pkg002/data202.txt"),
        ("link", "pkg003/libgen301.so"),
        ("removed", "pkg004/data402.txt"),
        ("added", "pkg005/new.txt"),
    ] {
        let want = format!("\"{kind}\" \"/{MA}/{path}\"");
        assert!(
            changed.iter().any(|s| s.starts_with(&want)),
            "no {kind} finding for {path} in {changed:#?}"
        );
    }
    assert_eq!(check_said(&t, &["--paranoid"]), (code, changed));
}

/// Runs `c` to its end; its exit code and peak resident set (KiB), from
/// `wait4`'s rusage of that one child (other tests' children run
/// meanwhile, which `RUSAGE_CHILDREN` would mix in).
#[cfg(target_os = "linux")]
// The child is reaped by the wait4 below, which std's `wait` cannot do
// with the child's own rusage.
#[allow(clippy::zombie_processes)]
fn exit_and_peak_kib(mut c: std::process::Command) -> (i32, i64) {
    use std::process::Stdio;
    let child = c
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid value; wait4 fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own child, not yet waited for.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    assert!(libc::WIFEXITED(status), "killed: status {status}");
    (libc::WEXITSTATUS(status), ru.ru_maxrss)
}

/// The peak of an unchanged `check` grows by about one set of records per
/// entry, not two: the cost of 8,000 more entries (the peak of a check of
/// 10,000 minus that of 2,000), which leaves out what does not grow with
/// the tree (the binary, its threads, sled's fixed allocations). Before
/// the scan shared the baseline's records it was about BEFORE bytes an
/// entry; the bound sits between.
#[cfg(target_os = "linux")]
#[test]
fn an_unchanged_check_holds_one_set_of_records() {
    let peak = |n: usize| {
        let t = TestRoot::debian();
        big_tree(&t, n);
        let (code, _) = exit_and_peak_kib(t.cmd(&["-q", "init"]));
        assert!(code < 64, "init failed: {code}");
        let mut best = i64::MAX;
        // The least of three: a peak is only ever raised by noise.
        for _ in 0..3 {
            let (code, kib) = exit_and_peak_kib(t.cmd(&["-q", "check"]));
            assert!(code < 64, "check failed: {code}");
            best = best.min(kib);
        }
        best
    };
    let (small, large) = (peak(SMALL), peak(LARGE));
    let per_entry = (large - small) * 1024 / (LARGE - SMALL) as i64;
    eprintln!(
        "check peak: {small} KiB at {SMALL} entries, {large} KiB at {LARGE}: {per_entry} bytes an entry"
    );
    assert!(
        per_entry < BOUND,
        "an unchanged check costs {per_entry} bytes an entry (bound {BOUND})"
    );
}
