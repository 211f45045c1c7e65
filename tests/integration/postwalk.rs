//! What `init` does after the walk: the store write alongside the judges,
//! and what must hold whatever runs when (the generation read back with the
//! findings `init` showed, a failed write leaving the previous generation).

use crate::initmem::{run_db, write_on_a_filling_disk};
use crate::store_safety::Tmpfs;
use crate::util::{json_lines, TestRoot};

/// Names whose byte order is not their directory order (`-` and `.` sort
/// before `/`), in enough directories that the first walk's records are
/// sorted on every core and stored in many sled batches.
fn tricky_tree(t: &TestRoot, dirs: usize, per_dir: usize) -> usize {
    let mut n = 0;
    for d in 0..dirs {
        for i in 0..per_dir {
            for name in [
                format!("usr/lib/sorted/a{d:03}-{i:03}.so"),
                format!("usr/lib/sorted/a{d:03}.{i:03}.so"),
                format!("usr/lib/sorted/a{d:03}/{i:03}.so"),
                format!("usr/lib/sorted/A{d:03}_{i:03}.so"),
            ] {
                t.write(&name, format!("{name}\n"));
                n += 1;
            }
        }
    }
    n
}

/// The paths of an `export`, in its order.
fn exported_paths(out: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(out)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split('\t').next().map(str::to_string))
        .collect()
}

/// A first walk's records, sorted on every core, are stored in path byte
/// order, each once, and read back by `check` as the tree that was walked:
/// clean, and exactly the one file changed afterwards. `init` says how long
/// the judges and the store write took.
#[test]
fn a_first_walk_sorted_on_every_core_is_stored_in_byte_order_and_checks_clean() {
    let t = TestRoot::debian();
    let files = tricky_tree(&t, 40, 40);
    let o = t.run(&["--format", "json", "init"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("judges ") && err.contains("store write "),
        "the summary names the phases after the walk: {err}"
    );
    let at_init = json_lines(&o.stdout);

    let export = t.run_ok(&["export"]);
    let paths = exported_paths(&export.stdout);
    let ours: Vec<&String> = paths
        .iter()
        .filter(|p| p.starts_with("/usr/lib/sorted/") && p.ends_with(".so"))
        .collect();
    assert_eq!(ours.len(), files, "every file stored once");
    for w in paths.windows(2) {
        assert!(
            w[0].as_bytes() < w[1].as_bytes(),
            "stored out of byte order or twice: {:?} then {:?}",
            w[0],
            w[1]
        );
    }

    let (code, f) = t.check_json();
    assert!(code < 64, "check exit {code}: {f:?}");
    let kinds = |f: &[serde_json::Value]| {
        let mut v: Vec<(String, String)> = f
            .iter()
            .map(|x| (x["kind"].to_string(), x["path"].to_string()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(kinds(&f), kinds(&at_init), "check after init: nothing new");

    t.write("usr/lib/sorted/a017.020.so", "changed");
    let (_, f) = t.check_json();
    let changed: Vec<_> = f.iter().filter(|x| x["kind"] == "content").collect();
    assert_eq!(changed.len(), 1, "{f:?}");
    assert_eq!(changed[0]["path"], "/usr/lib/sorted/a017.020.so");
}

/// `init --force` over generation 1 on a disk that fills up while it
/// writes generation 2: at each amount of free space it either completes
/// or fails with exit 74 saying generation 1 is intact, and `check` then
/// judges against the generation the exit code says is live.
#[test]
fn init_force_on_a_filling_disk_exits_74_and_leaves_the_previous_generation() {
    let t = TestRoot::debian();
    tricky_tree(&t, 25, 40);
    let rel = "usr/lib/sorted/a003.007.so";
    let mut seen = Vec::new();
    for (n, free_kib) in [256u64, 1024, 3072, 16384].into_iter().enumerate() {
        let Some(fs) = Tmpfs::mount("24m") else {
            return;
        };
        let db = fs.path().join("baseline");
        let o = run_db(&t, &db, &["-q", "init"]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "init: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        t.write(rel, format!("changed {n}"));
        let (code, _, changed) =
            write_on_a_filling_disk(&t, &fs, &db, free_kib, &["-q", "init", "--force"], rel);
        assert_eq!(
            changed,
            code == 74,
            "{free_kib} KiB: init --force exit {code}, check saw the change: {changed}"
        );
        seen.push(format!("{free_kib} KiB free: exit {code}"));
        t.write(rel, format!("{rel}\n"));
    }
    eprintln!("init --force on a filling disk:\n  {}", seen.join("\n  "));
    assert!(
        seen.iter().any(|s| s.ends_with("exit 0")),
        "no write completed: {seen:?}"
    );
    assert!(
        seen.iter().any(|s| s.ends_with("exit 74")),
        "no write failed: {seen:?}"
    );
}
