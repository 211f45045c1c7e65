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

/// Entries of the two trees whose checks are compared.
#[cfg(target_os = "linux")]
const SMALL: usize = 2_000;
#[cfg(target_os = "linux")]
const LARGE: usize = 10_000;
/// Bytes of peak an entry may cost. A debug build of this tree measured
/// about 400 (one set of records, each the baseline's); before the scan
/// shared the baseline's records, and while sled's page cache still held
/// the whole generation during the decode, about 820 (two sets).
#[cfg(target_os = "linux")]
const BOUND: i64 = 600;

/// The peak of an unchanged `check` grows by about one set of records per
/// entry, not two: the cost of 8,000 more entries (the peak of a check of
/// 10,000 minus that of 2,000), which leaves out what does not grow with
/// the tree (the binary, its threads, sled's fixed allocations).
#[cfg(target_os = "linux")]
#[test]
fn an_unchanged_check_holds_one_set_of_records() {
    // The children's peaks through the small launcher (see `memory`): a
    // child spawned from this process starts at this process's peak.
    let Some(launcher) = crate::memory::Peak::new() else {
        return;
    };
    let peak = |n: usize| {
        let t = TestRoot::debian();
        big_tree(&t, n);
        t.init();
        let mut best = i64::MAX;
        // The least of three: a peak is only ever raised by noise.
        for _ in 0..3 {
            let (code, kib) = launcher.run(&t.cmd(&["-q", "check"]));
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
