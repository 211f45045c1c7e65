//! The baseline store under a full disk and under damage: a write that
//! cannot finish fails (exit 74, a plain message) and leaves generation N
//! (or N−1) readable; nothing hangs; a damaged, unreadable or missing
//! baseline each says so, and `init` never replaces one without `--force`.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

/// A run may take this long; longer is a hang (the store's own watchdog
/// gives up on sled after 30 s and some).
const HANG: Duration = Duration::from_secs(150);

/// A tmpfs of a given size, unmounted when dropped.
pub(crate) struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (after saying so, loudly) when this machine cannot mount one.
    pub(crate) fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::Builder::new()
            .prefix("lw-full")
            .tempdir()
            .unwrap();
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match o {
            Ok(o) if o.status.success() => Some(Tmpfs { dir }),
            other => {
                eprintln!(
                    "\n*** SKIPPED: cannot mount a {size} tmpfs (needs root): {other:?} ***\n"
                );
                None
            }
        }
    }

    /// Fills the disk but for about `free` bytes.
    pub(crate) fn fill_leaving(&self, free: u64) -> PathBuf {
        let p = self.fill();
        let len = std::fs::metadata(&p).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(len.saturating_sub(free)).unwrap();
        p
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills what is left with a file; deleting it frees the space.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let p = self.path().join("filler");
        let mut f = std::fs::File::create(&p).unwrap();
        let block = vec![0x5au8; 4096];
        while f.write_all(&block).is_ok() {}
        // Whatever partial block is left.
        while f.write_all(&block[..1]).is_ok() {}
        let _ = f.sync_all();
        p
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Runs libwarden against `t`'s root and the baseline at `db`, bounded.
fn run_at(t: &TestRoot, db: &Path, args: &[&str]) -> Output {
    eprintln!("libwarden {args:?} on {}", db.display());
    let mut c = Command::new(bin());
    c.arg("--root").arg(t.root()).arg("--db").arg(db).args(args);
    bounded(c, args)
}

fn bounded(mut c: Command, what: &[&str]) -> Output {
    // Findings go to stdout and are not needed here; a pipe nobody reads
    // would block the run once full.
    let mut child = c
        .env_remove("LD_PRELOAD")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > HANG {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!(
                "libwarden {what:?} hung (> {HANG:?}): {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// What every run must satisfy: no panic, no Debug-printed error, and a
/// contract exit code.
fn sane(o: &Output, what: &str) -> i32 {
    let err = stderr(o);
    let code = o.status.code().unwrap_or(-1);
    assert!(!err.contains("panicked"), "{what}: panic: {err}");
    assert!(
        !err.contains("Os {"),
        "{what}: Debug-formatted error: {err}"
    );
    assert!(
        (0..16).contains(&code) || [65, 74].contains(&code),
        "{what}: exit {code}: {err}"
    );
    code
}

/// A lib tree whose baseline is a few MiB in the store: too big for the
/// smaller mounts, and two generations too big for the middle ones.
fn big_root() -> TestRoot {
    let t = TestRoot::debian();
    for i in 0..6000 {
        t.write(
            &format!(
                "usr/lib/bulk/d{:02}/libbulk-with-a-longish-name-{i:05}.so",
                i % 50
            ),
            format!("library {i}"),
        );
    }
    t
}

/// A check that must find a readable generation: never "corrupt", never
/// "no baseline" (there was one), findings allowed.
fn assert_readable(t: &TestRoot, db: &Path, what: &str) -> i32 {
    let o = run_at(t, db, &["-q", "check"]);
    let code = sane(&o, what);
    let err = stderr(&o);
    assert!(
        code < 64,
        "{what}: no readable generation: exit {code}: {err}"
    );
    code
}

#[test]
fn a_full_disk_never_hangs_init_or_update_and_leaves_generation_n_or_n_minus_1_readable() {
    let t = big_root();
    let mut summary = Vec::new();
    for size in ["64k", "256k", "1m", "2m", "4m", "8m"] {
        for middle_check in [false, true] {
            let Some(fs) = Tmpfs::mount(size) else {
                return;
            };
            let db = fs.path().join("baseline");
            let what = format!("{size} middle_check={middle_check}");

            // init on a disk that may be too small.
            let o = run_at(&t, &db, &["-q", "init"]);
            let code = sane(&o, &format!("{what}: init"));
            let init_err = stderr(&o);
            if code != 0 {
                assert_eq!(code, 74, "{what}: init: {init_err}");
            }
            let o = run_at(&t, &db, &["-q", "check"]);
            let check = sane(&o, &format!("{what}: check after init"));
            if check == 65 {
                // Nothing was written: "no baseline", not "corrupt".
                assert_ne!(code, 0, "{what}: init succeeded, check: {}", stderr(&o));
                assert!(stderr(&o).contains("no baseline"), "{what}: {}", stderr(&o));
                assert!(
                    init_err.contains("no generation was written"),
                    "{what}: {init_err}"
                );
                summary.push(format!("{what}: init refused (74), nothing written"));
                continue;
            }
            // The generation is live (even if only the rollback state could
            // not be written after it).
            assert_eq!(check, 0, "{what}: {}", stderr(&o));

            // Generation 2 must not fit: changes, then the rest of the disk
            // filled.
            for i in (0..6000).step_by(7) {
                t.write(
                    &format!(
                        "usr/lib/bulk/d{:02}/libbulk-with-a-longish-name-{i:05}.so",
                        i % 50
                    ),
                    format!("library {i} changed {size} {middle_check}"),
                );
            }
            let filler = fs.fill();
            let o = run_at(&t, &db, &["-q", "update"]);
            let code = sane(&o, &format!("{what}: update on a full disk"));
            assert_eq!(code, 74, "{what}: update on a full disk: {}", stderr(&o));
            assert!(
                stderr(&o).contains("generation 1 is intact"),
                "{what}: {}",
                stderr(&o)
            );
            if middle_check {
                // Still full: the reader must neither fail nor damage it.
                let code = assert_readable(&t, &db, &format!("{what}: check while full"));
                assert_eq!(code, 4, "{what}: generation 1 sees the changes");
            }
            std::fs::remove_file(filler).unwrap();
            let code = assert_readable(&t, &db, &format!("{what}: check after freeing"));
            assert_eq!(code, 4, "{what}: generation 1 is the live one");

            // With the space back, the next update works and is current.
            let o = run_at(&t, &db, &["-q", "update"]);
            let code = sane(&o, &format!("{what}: update after freeing"));
            if code == 0 {
                assert_eq!(assert_readable(&t, &db, &what), 0, "{what}");
                summary.push(format!("{what}: generation 1 survived, 2 written after"));
            } else {
                // Two generations do not fit on this size at all.
                assert_eq!(code, 74, "{what}: {}", stderr(&o));
                assert_eq!(assert_readable(&t, &db, &what), 4, "{what}");
                summary.push(format!("{what}: generation 1 survived, 2 does not fit"));
            }
            // Back to the unchanged tree for the next size.
            for i in (0..6000).step_by(7) {
                t.write(
                    &format!(
                        "usr/lib/bulk/d{:02}/libbulk-with-a-longish-name-{i:05}.so",
                        i % 50
                    ),
                    format!("library {i}"),
                );
            }
        }
    }
    eprintln!("disk-full matrix:\n  {}", summary.join("\n  "));
}

#[test]
fn a_write_that_passes_the_free_space_check_but_hits_enospc_in_sled_fails_cleanly() {
    // The free-space check refuses only what clearly cannot fit; between
    // its estimate and what sled really writes, sled itself meets ENOSPC
    // (where 0.34 used to hang in its flush).
    let t = big_root();
    let mut seen = Vec::new();
    for (n, free_kib) in [2300u64, 2500, 2700, 2900, 3100, 3400]
        .into_iter()
        .enumerate()
    {
        for middle_check in [false, true] {
            let Some(fs) = Tmpfs::mount("16m") else {
                return;
            };
            let db = fs.path().join("baseline");
            let what = format!("{free_kib} KiB free, middle_check={middle_check}");
            let o = run_at(&t, &db, &["-q", "init"]);
            assert_eq!(sane(&o, &what), 0, "{what}: {}", stderr(&o));
            let changed = format!("changed {n} {middle_check}");
            t.write(
                "usr/lib/bulk/d00/libbulk-with-a-longish-name-00000.so",
                &changed,
            );
            let filler = fs.fill_leaving(free_kib << 10);
            let o = run_at(&t, &db, &["-q", "update"]);
            let code = sane(&o, &format!("{what}: update"));
            assert!(code == 0 || code == 74, "{what}: {}", stderr(&o));
            if code == 74 {
                assert!(
                    stderr(&o).contains("generation 1 is intact"),
                    "{what}: {}",
                    stderr(&o)
                );
            }
            let expect = if code == 0 { 0 } else { 4 };
            if middle_check {
                let got = assert_readable(&t, &db, &format!("{what}: check while full"));
                assert_eq!(got, expect, "{what}");
            }
            std::fs::remove_file(filler).unwrap();
            let got = assert_readable(&t, &db, &format!("{what}: check after freeing"));
            assert_eq!(
                got,
                expect,
                "{what}: generation {}",
                if code == 0 { 2 } else { 1 }
            );
            seen.push(format!("{what}: update exit {code}: {}", stderr(&o).trim()));
            t.write(
                "usr/lib/bulk/d00/libbulk-with-a-longish-name-00000.so",
                "library 0",
            );
        }
    }
    eprintln!("near-full matrix:\n  {}", seen.join("\n  "));
}

#[test]
fn update_right_after_init_on_a_small_disk_never_hangs_or_loses_generation_1() {
    // No filler: the second generation simply may not fit beside the first.
    let t = big_root();
    for size in ["1m", "2m", "4m", "8m"] {
        let Some(fs) = Tmpfs::mount(size) else {
            return;
        };
        let db = fs.path().join("baseline");
        let o = run_at(&t, &db, &["-q", "init"]);
        if sane(&o, size) != 0 {
            continue;
        }
        t.write(
            "usr/lib/bulk/d00/libbulk-with-a-longish-name-00000.so",
            size,
        );
        for round in 0..3 {
            let o = run_at(&t, &db, &["-q", "update"]);
            let code = sane(&o, &format!("{size} update {round}"));
            assert!(code == 0 || code == 74, "{size}: {}", stderr(&o));
            let check = assert_readable(&t, &db, &format!("{size} check {round}"));
            // Either the update is live (clean) or generation N is (the one
            // changed file).
            assert_eq!(check, if code == 0 { 0 } else { 4 }, "{size} round {round}");
        }
        t.write(
            "usr/lib/bulk/d00/libbulk-with-a-longish-name-00000.so",
            "library 0",
        );
    }
}

/// The live generation's files, by path.
fn generation_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// A 20k-entry baseline, initialised in a fresh fixture.
fn twenty_k() -> TestRoot {
    let t = TestRoot::debian();
    for i in 0..20_000 {
        t.write(
            &format!("usr/lib/many/d{:03}/lib{i:05}.so", i % 200),
            format!("library {i}"),
        );
    }
    t.init();
    t
}

#[test]
fn a_deleted_blob_file_is_reported_corrupt_not_a_panic() {
    let t = twenty_k();
    let gen = live_generation_dir(&t.db());
    let copy = t.dir.path().join("pristine");
    assert!(Command::new("cp")
        .arg("-a")
        .arg(&gen)
        .arg(&copy)
        .status()
        .unwrap()
        .success());
    let blobs: Vec<PathBuf> = generation_files(&gen)
        .into_iter()
        .filter(|p| p.parent().is_some_and(|d| d.ends_with("blobs")))
        .collect();
    eprintln!("{} blob files in the live generation", blobs.len());
    // With or without blobs, deleting any file that holds part of the
    // generation must be reported, not panicked on; this covers blobs when
    // sled wrote some.
    let restore = || {
        std::fs::remove_dir_all(&gen).unwrap();
        assert!(Command::new("cp")
            .arg("-a")
            .arg(&copy)
            .arg(&gen)
            .status()
            .unwrap()
            .success());
    };
    let mut reported = 0;
    for f in blobs.iter().chain(std::iter::once(&gen.join("db"))) {
        std::fs::remove_file(f).unwrap();
        let o = run_at(&t, &t.db(), &["-q", "check"]);
        let code = sane(&o, &format!("{} deleted", f.display()));
        assert_ne!(code, 101, "{}", stderr(&o));
        // A blob sled no longer refers to (a page it rewrote) may go
        // without loss: then every record still verified against the
        // digest. Any other loss is "corrupt".
        if code == 65 {
            assert!(stderr(&o).contains("corrupt"), "{}", stderr(&o));
            reported += 1;
        } else {
            assert_eq!(code, 0, "{} deleted: {}", f.display(), stderr(&o));
        }
        restore();
    }
    assert!(reported > 0, "no deletion was reported");
    if !blobs.is_empty() {
        assert!(reported > 1, "no deleted blob was reported");
    }
    assert_eq!(run_at(&t, &t.db(), &["-q", "check"]).status.code(), Some(0));
}

#[test]
fn a_zeroed_truncated_or_bit_flipped_file_of_the_generation_is_corrupt_or_verified_never_absent() {
    let t = twenty_k();
    let gen = live_generation_dir(&t.db());
    let copy = t.dir.path().join("pristine");
    assert!(Command::new("cp")
        .arg("-a")
        .arg(t.db())
        .arg(&copy)
        .status()
        .unwrap()
        .success());
    // Every file but the blobs after the first three (their damage is
    // alike; the deletion test covers each).
    let mut blobs = 0;
    let mut files: Vec<PathBuf> = generation_files(&gen)
        .into_iter()
        .filter(|p| {
            let blob = p.parent().is_some_and(|d| d.ends_with("blobs"));
            blobs += blob as usize;
            !blob || blobs <= 3
        })
        .collect();
    files.push(t.db().join("CURRENT"));
    let mut corrupt = 0;
    for f in &files {
        for damage in ["zero", "truncate", "flip", "delete"] {
            let bytes = std::fs::read(f).unwrap();
            let data_len = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            match damage {
                "zero" => std::fs::write(f, vec![0u8; bytes.len()]).unwrap(),
                "truncate" => std::fs::write(f, &bytes[..data_len / 2]).unwrap(),
                "flip" => {
                    let mut b = bytes.clone();
                    if data_len > 0 {
                        b[data_len / 2] ^= 0x10;
                    }
                    std::fs::write(f, b).unwrap()
                }
                _ => std::fs::remove_file(f).unwrap(),
            }
            let what = format!("{damage} {}", f.display());
            let o = run_at(&t, &t.db(), &["-q", "check"]);
            let code = sane(&o, &what);
            let err = stderr(&o);
            assert!(
                !err.contains("no baseline"),
                "{what}: damage read as absence: {err}"
            );
            // Either the damage is reported, or it hit nothing the records
            // depend on and they still verified against their digest.
            if code == 65 {
                assert!(err.contains("corrupt"), "{what}: {err}");
                corrupt += 1;
            } else {
                assert_eq!(code, 0, "{what}: {err}");
            }
            // `init` refuses to replace it, damaged or not.
            let o = run_at(&t, &t.db(), &["-q", "init"]);
            assert_eq!(
                sane(&o, &what),
                65,
                "{what}: init replaced it: {}",
                stderr(&o)
            );
            assert!(stderr(&o).contains("--force"), "{what}: {}", stderr(&o));
            std::fs::remove_dir_all(t.db()).unwrap();
            assert!(Command::new("cp")
                .arg("-a")
                .arg(&copy)
                .arg(t.db())
                .status()
                .unwrap()
                .success());
        }
    }
    assert!(corrupt > 0, "no damage was detected at all");
    assert_eq!(run_at(&t, &t.db(), &["-q", "check"]).status.code(), Some(0));
}

#[test]
fn damaged_unreadable_and_missing_baselines_get_three_different_messages() {
    let t = TestRoot::debian();
    // Missing.
    let o = t.run(&["check"]);
    assert_eq!(o.status.code(), Some(65));
    let missing = stderr(&o);
    assert!(missing.contains("no baseline"), "{missing}");

    // Corrupt: the pointer zeroed, then the generation's data file zeroed.
    t.init();
    let pointer = t.db().join("CURRENT");
    let good = std::fs::read(&pointer).unwrap();
    std::fs::write(&pointer, vec![0u8; good.len()]).unwrap();
    let o = t.run(&["check"]);
    assert_eq!(o.status.code(), Some(65), "{}", stderr(&o));
    let corrupt = stderr(&o);
    assert!(
        corrupt.contains("corrupt") && !corrupt.contains("no baseline"),
        "{corrupt}"
    );
    std::fs::write(&pointer, &good).unwrap();
    let data = live_generation_dir(&t.db()).join("db");
    let len = std::fs::metadata(&data).unwrap().len();
    std::fs::write(&data, vec![0u8; len as usize]).unwrap();
    let o = t.run(&["check"]);
    assert_eq!(o.status.code(), Some(65), "{}", stderr(&o));
    assert!(stderr(&o).contains("corrupt"), "{}", stderr(&o));

    // Unreadable: the same baseline, as a user who may not read it.
    if !is_root() {
        eprintln!("\n*** SKIPPED the unreadable case: needs root to run as nobody ***\n");
        return;
    }
    t.run_ok(&["init", "--force"]);
    for d in [t.dir.path().to_path_buf(), t.dir.path().join("state")] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    assert_eq!(
        std::fs::metadata(t.db()).unwrap().permissions().mode() & 0o777,
        0o700,
        "the baseline directory is kept private"
    );
    let mut c = Command::new(bin());
    c.arg("--root")
        .arg(t.root())
        .arg("--db")
        .arg(t.db())
        .arg("check")
        .uid(65534)
        .gid(65534);
    let o = bounded(c, &["check as nobody"]);
    let unreadable = stderr(&o);
    assert_eq!(o.status.code(), Some(74), "{unreadable}");
    assert!(
        unreadable.contains("cannot be read") && unreadable.contains("ermission denied"),
        "{unreadable}"
    );
    assert!(
        !unreadable.contains("no baseline") && !unreadable.contains("corrupt"),
        "{unreadable}"
    );
    // Three different sentences.
    let line = |s: &str| {
        s.lines()
            .find(|l| l.contains("error"))
            .unwrap_or("")
            .to_string()
    };
    let (m, c, u) = (line(&missing), line(&corrupt), line(&unreadable));
    assert!(m != c && c != u && m != u, "{m}\n{c}\n{u}");
}

#[test]
fn init_refuses_to_replace_a_damaged_baseline_without_force() {
    let t = TestRoot::debian();
    t.init();
    let gen = live_generation_dir(&t.db());
    let data = gen.join("db");
    let len = std::fs::metadata(&data).unwrap().len() as usize;
    std::fs::write(&data, vec![0u8; len]).unwrap();
    let pointer_before = std::fs::read(t.db().join("CURRENT")).unwrap();
    let o = t.run(&["init"]);
    assert_eq!(o.status.code(), Some(65), "{}", stderr(&o));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    // Nothing was replaced.
    assert_eq!(
        std::fs::read(t.db().join("CURRENT")).unwrap(),
        pointer_before
    );
    assert_eq!(std::fs::read(&data).unwrap(), vec![0u8; len]);
    assert!(stderr(&t.run(&["check"])).contains("corrupt"));

    // Nor anything else at the path: a file, a directory with something in it.
    std::fs::remove_dir_all(t.db()).unwrap();
    std::fs::write(t.db(), b"not a baseline").unwrap();
    let o = t.run(&["init"]);
    assert_eq!(o.status.code(), Some(65), "{}", stderr(&o));
    assert_eq!(std::fs::read(t.db()).unwrap(), b"not a baseline");
    std::fs::remove_file(t.db()).unwrap();
    std::fs::create_dir(t.db()).unwrap();
    std::fs::write(t.db().join("notes.txt"), b"mine").unwrap();
    let o = t.run(&["init"]);
    assert_eq!(o.status.code(), Some(65), "{}", stderr(&o));
    assert_eq!(std::fs::read(t.db().join("notes.txt")).unwrap(), b"mine");

    // An empty directory is no baseline: init takes it.
    std::fs::remove_file(t.db().join("notes.txt")).unwrap();
    t.init();
    assert_eq!(t.run(&["check"]).status.code(), Some(0));

    // --force replaces a damaged one.
    let data = live_generation_dir(&t.db()).join("db");
    std::fs::write(&data, b"garbage").unwrap();
    t.run_ok(&["init", "--force"]);
    assert_eq!(t.run(&["check"]).status.code(), Some(0));
}
