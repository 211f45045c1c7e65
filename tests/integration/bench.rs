//! `bench`: the generated tree is what it says, the figures count it
//! exactly, the JSON has its documented shape, no baseline is touched; and
//! the incremental check that bench's numbers assume still re-hashes a file
//! whose mtime was put back.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::util::*;

/// (entries, regular files, bytes, files and bytes per size class) of a
/// tree, counted independently of libwarden.
fn count(dir: &Path) -> (u64, u64, u64, [(u64, u64); 3]) {
    let (mut entries, mut files, mut bytes) = (1, 0, 0);
    let mut classes = [(0, 0); 3];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            entries += 1;
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() {
                files += 1;
                bytes += m.len();
                let c = if m.len() < 4096 {
                    0
                } else if m.len() <= 1 << 20 {
                    1
                } else {
                    2
                };
                classes[c].0 += 1;
                classes[c].1 += m.len();
            }
        }
    }
    (entries, files, bytes, classes)
}

fn bench(args: &[&str], db: &Path) -> (i32, Vec<Value>, String) {
    let o = Command::new(bin())
        .arg("--db")
        .arg(db)
        .args(args)
        .env_remove("LD_PRELOAD")
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        json_lines(&o.stdout),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn generated_tree_is_counted_exactly_and_json_has_its_shape() {
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tree");
    let db = t.path().join("db");
    let tree_s = tree.to_str().unwrap();
    let (code, lines, err) = bench(
        &[
            "--format",
            "json",
            "--threads",
            "2",
            "bench",
            "--generate",
            tree_s,
            "--scale",
            "0.003",
        ],
        &db,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines.len(), 1, "--threads 2 is one pass: {lines:?}");
    let (entries, files, bytes, classes) = count(&tree);
    // Many small files, some medium, four huge, a 64-deep chain.
    assert!(classes[0].0 >= 60 + 64, "{classes:?}");
    assert!(classes[1].0 >= 3, "{classes:?}");
    assert_eq!(classes[2].0, 4, "{classes:?}");
    assert!(tree
        .join("deep")
        .join("l00")
        .join("l01")
        .join("l02")
        .exists());
    let l = &lines[0];
    assert_eq!(l["threads"], 2);
    assert_eq!(l["path"], tree_s);
    assert_eq!(l["entries"], entries);
    assert_eq!(l["files"], files);
    assert_eq!(l["bytes"], bytes);
    assert_eq!(l["warnings"], 0);
    for k in ["wall_s", "mb_per_s", "files_per_s"] {
        assert!(l[k].as_f64().is_some_and(|x| x >= 0.0), "{k}: {l}");
    }
    for k in ["walk_s", "open_stat_s", "hash_s", "store_s"] {
        assert!(
            l["phases"][k].as_f64().is_some_and(|x| x >= 0.0),
            "{k}: {l}"
        );
    }
    let cls = l["classes"].as_array().unwrap();
    let labels: Vec<&str> = cls.iter().map(|c| c["class"].as_str().unwrap()).collect();
    assert_eq!(labels, ["<4KiB", "4KiB-1MiB", ">1MiB"]);
    for (c, (n, b)) in cls.iter().zip(classes) {
        assert_eq!(
            (c["files"].as_u64(), c["bytes"].as_u64()),
            (Some(n), Some(b))
        );
    }
    assert!(!db.exists(), "bench must not create a baseline");

    // Same scale again: the tree is reused, not rewritten or doubled.
    let (code, lines, err) = bench(
        &[
            "--format",
            "json",
            "bench",
            "--generate",
            tree_s,
            "--scale",
            "0.003",
        ],
        &db,
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("reusing"), "{err}");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads: Vec<u64> = lines
        .iter()
        .map(|l| l["threads"].as_u64().unwrap())
        .collect();
    assert_eq!(threads, (1..=cores as u64).collect::<Vec<_>>());
    assert!(lines
        .iter()
        .all(|l| l["files"] == files && l["bytes"] == bytes));
}

#[test]
fn generate_refuses_a_directory_it_did_not_make() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("precious"), "keep").unwrap();
    let (code, _, err) = bench(
        &["bench", "--generate", t.path().to_str().unwrap()],
        &t.path().join("db"),
    );
    assert_eq!(code, 74, "{err}");
    assert_eq!(std::fs::read(t.path().join("precious")).unwrap(), b"keep");
    assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 1);
}

#[test]
fn human_table_names_every_phase_and_class() {
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("a"), vec![1u8; 100]).unwrap();
    std::fs::write(tree.join("b"), vec![2u8; 5000]).unwrap();
    let o = Command::new(bin())
        .args(["--threads", "1", "bench"])
        .arg(&tree)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let out = String::from_utf8_lossy(&o.stdout);
    for w in [
        "walk",
        "open+stat",
        "hash",
        "store",
        "<4KiB",
        "4KiB-1MiB",
        ">1MiB",
    ] {
        assert!(out.contains(w), "{w} missing: {out}");
    }
    assert!(out.contains("3 entries, 2 files, 5.10 kB"), "{out}");
}

/// ctime, not mtime, is what makes skipping a re-hash safe: content
/// rewritten at the same size with its mtime put back (`touch -r`) must
/// still be re-hashed and reported.
#[test]
fn check_rehashes_a_file_whose_mtime_was_reset() {
    let t = TestRoot::debian();
    let rel = "usr/lib/x86_64-linux-gnu/libdata.so.1";
    t.write(rel, vec![b'a'; 10_000]);
    t.init();
    let p = t.path(rel);
    let before = std::fs::metadata(&p).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let mut content = vec![b'a'; 10_000];
    content[5000] = b'b';
    std::fs::write(&p, content).unwrap();
    let f = std::fs::File::options().write(true).open(&p).unwrap();
    f.set_modified(before.modified().unwrap()).unwrap();
    drop(f);
    let after = std::fs::metadata(&p).unwrap();
    assert_eq!(after.modified().unwrap(), before.modified().unwrap());
    assert_eq!(after.len(), before.len());
    let (code, f) = t.check_json();
    assert_eq!(code & 4, 4, "{f:#?}");
    assert!(
        find(&f, "content", "/usr/lib/x86_64-linux-gnu/libdata.so.1").is_some(),
        "{f:#?}"
    );
}

/// Every pass reports its peak RSS, and `--generate` adds the slope between
/// a half-scale tree beside DIR and DIR itself: entries counted exactly,
/// time and memory per 10k extra entries derived from the two passes.
#[test]
fn generate_reports_peak_rss_and_growth_per_10k_entries() {
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tree");
    let half = t.path().join("tree.half");
    let (code, lines, err) = bench(
        &[
            "--format",
            "json",
            "--threads",
            "1",
            "bench",
            "--generate",
            tree.to_str().unwrap(),
            "--scale",
            "0.004",
        ],
        &t.path().join("db"),
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("tree.half"), "{err}");
    let l = &lines[0];
    let (full_entries, ..) = count(&tree);
    let (half_entries, ..) = count(&half);
    assert!(half_entries < full_entries, "{half_entries} {full_entries}");
    let g = &l["growth"];
    assert_eq!(
        g["entries"],
        serde_json::json!([half_entries, full_entries])
    );
    let wall: Vec<f64> = g["wall_s"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(wall[1], l["wall_s"].as_f64().unwrap());
    let per_10k = (wall[1] - wall[0]) / (full_entries - half_entries) as f64 * 1e4;
    assert!((g["wall_s_per_10k_entries"].as_f64().unwrap() - per_10k).abs() < 1e-6);
    if cfg!(target_os = "linux") {
        // The process's resident set: at least the binary and its heap.
        let rss = l["peak_rss_bytes"].as_u64().unwrap();
        assert!(rss > 1 << 20 && rss < 4 << 30, "{rss}");
        let pair = g["peak_rss_bytes"].as_array().unwrap();
        assert_eq!(pair[1].as_u64(), Some(rss));
        let (a, b) = (pair[0].as_u64().unwrap(), rss);
        let slope = (b as f64 - a as f64) / (full_entries - half_entries) as f64 * 1e4;
        let got = g["peak_rss_bytes_per_10k_entries"].as_f64().unwrap();
        assert!((got - slope).abs() < 1.0, "{got} {slope}");
    } else {
        eprintln!("SKIPPED: peak RSS is reported on Linux only");
    }

    // The human table shows the same figures.
    let o = Command::new(bin())
        .args(["--threads", "1", "bench", "--generate"])
        .arg(&tree)
        .args(["--scale", "0.004"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("peak RSS MiB"), "{out}");
    assert!(
        out.contains(&format!("growth: {half_entries} -> {full_entries} entries")),
        "{out}"
    );
    assert!(out.contains("growth per 10k entries: "), "{out}");
}
