//! `init`'s peak memory and its store write: the records encoded once as
//! they stream into the store (each dropped once encoded), the extra pairs
//! in bounded batches, the header's count, digest and signature taken
//! from the bytes stored. What is written must read back as before, with
//! the same findings, signed, and a disk that fills up during the streamed
//! write must still leave the previous generation.

use std::path::Path;
use std::process::Command;

use md5::{Digest, Md5};

use crate::provenance::{dpkg_root, install};
use crate::store_safety::Tmpfs;
use crate::util::{find, json_lines, TestRoot};

const MA: &str = "usr/lib/x86_64-linux-gnu";

/// `n` small files under `usr/lib/bulk`, all owned by dpkg package `bulk`
/// (status, list and md5sums written as dpkg writes them): every file gets
/// its MD5 in the scan's read and an owner in the generation's extra
/// pairs, so both the records and the extra pairs grow with `n`.
fn packaged_bulk(t: &TestRoot, n: usize) {
    dpkg_root(t);
    let mut list = String::from("/usr\n/usr/lib\n/usr/lib/bulk\n");
    let mut sums = String::new();
    for d in 0..(n / 200).max(1) {
        list.push_str(&format!("/usr/lib/bulk/d{d:03}\n"));
    }
    for i in 0..n {
        let rel = format!(
            "usr/lib/bulk/d{:03}/libbulk-with-a-longish-name-{i:06}.so.1",
            i / 200
        );
        let body = format!("bulk library {i}\n");
        t.write(&rel, &body);
        list.push_str(&format!("/{rel}\n"));
        sums.push_str(&format!("{:x}  {rel}\n", Md5::digest(body.as_bytes())));
    }
    t.write("var/lib/dpkg/info/bulk.list", list);
    t.write("var/lib/dpkg/info/bulk.md5sums", sums);
    t.write(
        "var/lib/dpkg/status",
        "Package: bulk\nStatus: install ok installed\nVersion: 1.0\nArchitecture: amd64\n\n",
    );
}

/// (kind, path) of each finding, sorted.
fn subjects(f: &[serde_json::Value]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = f
        .iter()
        .map(|x| {
            (
                x["kind"].as_str().unwrap_or("").to_string(),
                x["path"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

/// A generation written by the streamed write (records, the provenance
/// state with its owners, the package index) is read by `check` with the
/// findings `init` showed, judged with the index and owners it kept, and
/// its signature (made on the store thread over the digest of the bytes
/// stored) verifies.
#[test]
fn a_streamed_generation_is_checked_with_the_findings_init_showed_and_its_signature_holds() {
    let t = TestRoot::debian();
    dpkg_root(&t);
    install(
        &t,
        "libone1",
        "1.0",
        &[
            ("lib/x86_64-linux-gnu/libone.so.1", 1),
            ("lib/x86_64-linux-gnu/libedit.so.1", 2),
        ],
    );
    t.compile_so(
        &format!("{MA}/libedit.so.1"),
        "libedit.so.1",
        "int g(void){return 9;}",
    );
    for i in 0..3000 {
        t.write(&format!("usr/lib/many/libmany-{i:05}.so"), format!("m {i}"));
    }
    let keys = t.dir.path().join("keys");
    let o = Command::new(crate::util::bin())
        .arg("keygen")
        .arg(&keys)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let secret = keys.join("libwarden.key");
    let public = keys.join("libwarden.pub");

    let o = t.run(&[
        "--format",
        "json",
        "init",
        "--sign-with",
        secret.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("(signed)"), "{err}");
    let at_init = json_lines(&o.stdout);
    let p = |n: &str| format!("/{MA}/{n}");
    assert!(find(&at_init, "modified_vs_package", &p("libedit.so.1")).is_some());

    let verify = format!("--verify-with={}", public.display());
    let o = t.run(&[&verify, "--format", "json", "check"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.code().unwrap_or(-1) < 64, "{err}");
    assert!(err.contains("unchanged since the baseline"), "{err}");
    assert_eq!(
        subjects(&json_lines(&o.stdout)),
        subjects(&at_init),
        "check after init: the standing findings, nothing else"
    );

    // Every record is there: one changed file among 3000 is that one.
    t.write("usr/lib/many/libmany-01234.so", "changed");
    let o = t.run(&[&verify, "--format", "json", "check"]);
    let f = json_lines(&o.stdout);
    let changed: Vec<_> = f.iter().filter(|x| x["kind"] == "content").collect();
    assert_eq!(changed.len(), 1, "{f:?}");
    assert_eq!(changed[0]["path"], "/usr/lib/many/libmany-01234.so");
}

/// Runs the built binary on `t`'s root with the baseline at `db`.
pub(crate) fn run_db(t: &TestRoot, db: &Path, args: &[&str]) -> std::process::Output {
    crate::util::output_within(
        {
            let mut c = Command::new(crate::util::bin());
            c.arg("--root")
                .arg(t.root())
                .arg("--db")
                .arg(db)
                .args(args)
                .env_remove("LD_PRELOAD");
            c
        },
        std::time::Duration::from_secs(150),
    )
}

/// The disk fills up while `update` streams generation 2 (its records and
/// then its extra pairs, the owners of every packaged file): at each of
/// several amounts of free space the write either completes or fails with
/// exit 74 saying generation 1 is intact, and `check` then judges against
/// the generation the exit code says is live, never a damaged one.
#[test]
fn a_disk_that_fills_during_the_streamed_write_leaves_the_previous_generation() {
    let t = TestRoot::debian();
    packaged_bulk(&t, 4000);
    let mut seen = Vec::new();
    for (n, free_kib) in [1500u64, 3000, 4500, 6000, 9000, 14000]
        .into_iter()
        .enumerate()
    {
        let Some(fs) = Tmpfs::mount("24m") else {
            return;
        };
        let db = fs.path().join("baseline");
        let o = run_db(&t, &db, &["-q", "init"]);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(0), "init: {err}");
        let rel = "usr/lib/bulk/d000/libbulk-with-a-longish-name-000007.so.1";
        t.write(rel, format!("changed {n}"));
        let (code, err, changed) =
            write_on_a_filling_disk(&t, &fs, &db, free_kib, &["-q", "update", "--yes"], rel);
        assert_eq!(
            changed,
            code == 74,
            "{free_kib} KiB: update exit {code}, check saw the change: {changed}"
        );
        seen.push(format!(
            "{free_kib} KiB free: update exit {code} {}",
            err.lines().last().unwrap_or("")
        ));
        // The file's own content again, for the next round.
        t.write(rel, "bulk library 7\n");
    }
    eprintln!("streamed write on a filling disk:\n  {}", seen.join("\n  "));
    // Both outcomes were met, and a write that failed inside the store
    // (past the free-space check that refuses before anything is written).
    assert!(
        seen.iter().any(|s| s.contains("exit 0")),
        "no write completed: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|s| s.contains("exit 74") && !s.contains("not enough free space")),
        "no write failed inside the store: {seen:?}"
    );
}

/// Runs `args` (a write of generation 2 over generation 1) on a disk
/// filled but for `free_kib`: it completes or fails with exit 74 saying
/// generation 1 is intact, never panics. Then `check` (on a disk with room
/// again) must judge against a readable generation. Returns the write's
/// exit code and stderr, and whether `check` reports `rel` as changed
/// (it does when generation 1 is still live).
pub(crate) fn write_on_a_filling_disk(
    t: &TestRoot,
    fs: &Tmpfs,
    db: &Path,
    free_kib: u64,
    args: &[&str],
    rel: &str,
) -> (i32, String, bool) {
    let filler = fs.fill_leaving(free_kib << 10);
    let o = run_db(t, db, args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!err.contains("panicked"), "{free_kib} KiB: {err}");
    let code = o.status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 74,
        "{free_kib} KiB: exit {code}: {err}"
    );
    if code == 74 {
        assert!(
            err.contains("generation 1 is intact"),
            "{free_kib} KiB: {err}"
        );
    }
    std::fs::remove_file(filler).unwrap();
    let o = run_db(t, db, &["--format", "json", "check"]);
    let changed = json_lines(&o.stdout)
        .iter()
        .any(|x| x["kind"] == "content" && x["path"] == format!("/{rel}"));
    let check = o.status.code().unwrap_or(-1);
    assert!(
        check < 64,
        "{free_kib} KiB: check exit {check}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    (code, err, changed)
}

/// The peak resident set of `init` over a tree of `n` packaged files.
#[cfg(target_os = "linux")]
fn init_peak_kib(peak: &crate::memory::Peak, n: usize) -> i64 {
    let t = TestRoot::debian();
    packaged_bulk(&t, n);
    let (code, kib) = peak.run(&t.cmd(&["-q", "init"]));
    assert_eq!(code, 0, "init over {n} files");
    kib
}

/// What `init` holds per entry grows by less than the old write's
/// doubling did: the records, the owners and the package index were held
/// whole while sled held them again (and the extra pairs twice more). The
/// growth of the peak from 4,000 to 12,000 packaged files, per 1,000 files,
/// stays under a bound the old write exceeded (see the report for the
/// figures each gave).
#[cfg(target_os = "linux")]
#[test]
fn init_peak_memory_grows_little_per_entry() {
    let Some(peak) = crate::memory::Peak::new() else {
        return;
    };
    let small = init_peak_kib(&peak, 4_000);
    let large = init_peak_kib(&peak, 12_000);
    let per_k = (large - small) as f64 / 8.0;
    eprintln!(
        "init peak: 4k files {small} KiB, 12k files {large} KiB: {per_k:.0} KiB per 1,000 files"
    );
    assert!(
        per_k <= PER_1000_FILES_KIB,
        "init's peak grows by {per_k:.0} KiB per 1,000 files (bound {PER_1000_FILES_KIB})"
    );
}

/// The bound of [`init_peak_memory_grows_little_per_entry`], KiB per
/// 1,000 files. Measured on a 2-core x86-64 build host, debug binaries,
/// 4,000 to 12,000 packaged files: before the streamed write 7,820 (51 to
/// 114 MiB: the write's doubling), after it 1,990 (33 to 48 MiB, the peak
/// now in the judges, before the write).
#[cfg(target_os = "linux")]
const PER_1000_FILES_KIB: f64 = 3000.0;
