//! `bench [PATH]`: walk and hash a tree without touching any baseline, for
//! each thread count from 1 to the cores (or `--threads N` only), and
//! report throughput per phase and per file-size class.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::bench::{self, Growth, Pass};
use crate::cli::{BenchArgs, Global};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::escape;
use crate::output::{self, messages, Format};
use crate::scan::SizeClass;

/// The tree measured when none is named.
pub const DEFAULT_PATH: &str = "/usr/lib";

pub fn run(s: &Config, a: &BenchArgs, g: &Global) -> Result<i32> {
    if a.runs == 0 || a.runs > 100 {
        return Err(Error::Usage("bench --runs: 1 to 100".into()));
    }
    if !(a.scale > 0.0 && a.scale <= 100.0) {
        return Err(Error::Usage("bench --scale: above 0, at most 100".into()));
    }
    let mut half = None;
    if let Some(dir) = &a.generate {
        generate(dir, a.scale)?;
        // The growth figure's smaller tree: same shape, half the scale.
        let h = bench::half_dir(dir)
            .ok_or_else(|| Error::Usage("bench --generate: DIR needs a name".into()))?;
        generate(&h, a.scale / 2.0)?;
        half = Some(h);
    }
    let path: PathBuf = a
        .path
        .clone()
        .or_else(|| a.generate.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH));
    if std::fs::symlink_metadata(&path).is_err() {
        return Err(Error::NotFound { what: "path", path });
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let counts: Vec<usize> = match g.threads.filter(|&n| n > 0) {
        Some(n) => vec![n.min(1024)],
        None => (1..=cores).collect(),
    };
    let io_for = |t: usize| s.io_set.map_or(t, |n| n.max(t));
    // The smaller tree first, in a process that has not yet grown, so that
    // memory kept from a larger pass does not inflate its peak.
    let half_pass = half.as_ref().and_then(|h| {
        let t = *counts.last()?;
        Some(median_pass(h, t, io_for(t), a.runs))
    });
    let mut passes = Vec::new();
    for &t in &counts {
        // One file in flight per thread unless asked otherwise, so that the
        // sweep shows how hashing scales with cores; `--io-threads` (or the
        // config key) adds files in flight, as for a cold disk.
        let median = median_pass(&path, t, io_for(t), a.runs);
        messages::status(&format!(
            "libwarden bench: {} thread{}: {:.3} s",
            t,
            if t == 1 { "" } else { "s" },
            median.wall.as_secs_f64()
        ));
        passes.push(median);
    }
    let growth = half_pass
        .as_ref()
        .zip(passes.last())
        .and_then(|(h, p)| Growth::between(h, p));
    // After the passes, so it does not warm or cool anything they measure.
    let md5 = bench::md5_rates();
    let mut out = std::io::stdout().lock();
    let r = match s.format {
        Format::Json | Format::Ecs => {
            write_json(&mut out, &path, cores, a.runs, &passes, growth, &md5)
        }
        Format::Human => write_human(&mut out, &path, cores, a.runs, &passes, growth)
            .and_then(|_| writeln!(out, "\n{}", md5.line())),
    };
    match r {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::io("write", "stdout", e))
        }
        _ => Ok(0),
    }
}

/// Builds (or reuses) a `--generate` tree and says which.
fn generate(dir: &Path, scale: f64) -> Result<()> {
    let gen = bench::generate(dir, scale).map_err(|e| Error::io("generate", dir, e))?;
    messages::status(&format!(
        "libwarden bench: {} {}: {} files ({}), {} directories, {} symlink",
        if gen.written { "generated" } else { "reusing" },
        escape::for_terminal(bytes(dir)),
        gen.files,
        output::human_bytes(gen.bytes),
        gen.dirs,
        gen.symlinks
    ));
    Ok(())
}

/// The median (by wall time) of `runs` passes.
fn median_pass(path: &Path, threads: usize, io: usize, runs: usize) -> Pass {
    let mut all: Vec<Pass> = (0..runs)
        .map(|_| bench::measure(path, threads, io))
        .collect();
    all.sort_by_key(|p| p.wall);
    all.swap_remove(all.len() / 2)
}

fn bytes(p: &Path) -> &[u8] {
    use crate::sys::OsStrExt;
    p.as_os_str().as_bytes()
}

fn secs(d: std::time::Duration) -> f64 {
    d.as_secs_f64()
}

/// One JSON object per thread count (JSON Lines, like every command).
fn write_json(
    out: &mut dyn Write,
    path: &Path,
    cores: usize,
    runs: usize,
    passes: &[Pass],
    growth: Option<Growth>,
    md5: &bench::Md5Rates,
) -> std::io::Result<()> {
    for (i, p) in passes.iter().enumerate() {
        let classes: Vec<_> = SizeClass::ALL
            .iter()
            .map(|&c| {
                let s = &p.classes[c as usize];
                json!({
                    "class": c.label(),
                    "files": s.files,
                    "bytes": s.bytes,
                    "open_stat_s": secs(s.open_stat),
                    "hash_s": secs(s.hash),
                })
            })
            .collect();
        let mut v = json!({
            "path": escape::for_json(bytes(path)),
            "cores": cores,
            "threads": p.threads,
            "io_threads": p.io_threads,
            "runs": runs,
            "entries": p.entries,
            "files": p.files,
            "bytes": p.bytes,
            "warnings": p.warnings,
            "wall_s": secs(p.wall),
            "mb_per_s": p.mb_per_s(),
            "files_per_s": p.files_per_s(),
            "phases": {
                "walk_s": secs(p.walk),
                "open_stat_s": secs(p.open_stat),
                "hash_s": secs(p.hash),
                "store_s": secs(p.store),
            },
            "classes": classes,
            "peak_rss_bytes": p.peak_rss,
            "md5": {
                "single_stream_gb_s": md5.single,
                "multi_buffer_gb_s": md5.multi,
                "lanes": md5.lanes,
                "simd": md5.kind,
            },
        });
        // Measured at the sweep's last thread count: on that line only.
        if let (Some(g), true) = (growth, i + 1 == passes.len()) {
            v["growth"] = growth_json(&g);
        }
        writeln!(out, "{v}")?;
    }
    out.flush()
}

fn growth_json(g: &Growth) -> serde_json::Value {
    json!({
        "entries": [g.entries.0, g.entries.1],
        "wall_s": [g.wall.0, g.wall.1],
        "peak_rss_bytes": g.peak_rss.map(|(a, b)| [a, b]),
        "wall_s_per_10k_entries": g.wall_per_10k(),
        "peak_rss_bytes_per_10k_entries": g.rss_per_10k(),
    })
}

fn mib(b: u64) -> f64 {
    b as f64 / (1u64 << 20) as f64
}

fn write_human(
    out: &mut dyn Write,
    path: &Path,
    cores: usize,
    runs: usize,
    passes: &[Pass],
    growth: Option<Growth>,
) -> std::io::Result<()> {
    let Some(first) = passes.first() else {
        return Ok(());
    };
    writeln!(
        out,
        "{}: {} entries, {} files, {}; {} core{}; median of {} run{}",
        escape::for_terminal(bytes(path)),
        first.entries,
        first.files,
        output::human_bytes(first.bytes),
        cores,
        if cores == 1 { "" } else { "s" },
        runs,
        if runs == 1 { "" } else { "s" },
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "threads  io   wall s      MB/s    files/s  peak RSS MiB  |  thread-seconds: walk  open+stat    hash   store"
    )?;
    for p in passes {
        let rss = p.peak_rss.map_or("-".into(), |b| format!("{:.1}", mib(b)));
        writeln!(
            out,
            "{:>7} {:>3} {:>8.3} {:>9.1} {:>10.0} {:>13}  |                 {:>5.3} {:>10.3} {:>7.3} {:>7.3}",
            p.threads,
            p.io_threads,
            secs(p.wall),
            p.mb_per_s(),
            p.files_per_s(),
            rss,
            secs(p.walk),
            secs(p.open_stat),
            secs(p.hash),
            secs(p.store),
        )?;
    }
    for p in passes {
        writeln!(out)?;
        writeln!(out, "by file size, {} thread(s):", p.threads)?;
        writeln!(
            out,
            "class          files   files%        bytes  bytes%  open+stat s   hash s  hash MB/s/thread"
        )?;
        for &c in &SizeClass::ALL {
            let s = &p.classes[c as usize];
            let pct = |a: u64, b: u64| 100.0 * a as f64 / (b.max(1)) as f64;
            let rate = s.bytes as f64 / 1e6 / secs(s.hash).max(1e-9);
            writeln!(
                out,
                "{:<10} {:>9} {:>7.1}% {:>12} {:>6.1}% {:>12.3} {:>8.3} {:>17.1}",
                c.label(),
                s.files,
                pct(s.files, p.files),
                output::human_bytes(s.bytes),
                pct(s.bytes, p.bytes),
                secs(s.open_stat),
                secs(s.hash),
                if s.files == 0 { 0.0 } else { rate },
            )?;
        }
    }
    if let Some(g) = growth {
        write_growth(out, &g)?;
    }
    out.flush()
}

/// The slope between the half-scale and the full generated tree.
fn write_growth(out: &mut dyn Write, g: &Growth) -> std::io::Result<()> {
    writeln!(out)?;
    let rss = |b: Option<u64>| b.map_or("-".into(), |b| format!("{:.1} MiB", mib(b)));
    writeln!(
        out,
        "growth: {} -> {} entries: wall {:.3} -> {:.3} s, peak RSS {} -> {}",
        g.entries.0,
        g.entries.1,
        g.wall.0,
        g.wall.1,
        rss(g.peak_rss.map(|p| p.0)),
        rss(g.peak_rss.map(|p| p.1)),
    )?;
    writeln!(
        out,
        "growth per 10k entries: {:+.3} s wall, {} peak RSS",
        g.wall_per_10k(),
        g.rss_per_10k().map_or("-".into(), |b| format!(
            "{:+.2} MiB",
            b / (1u64 << 20) as f64
        )),
    )
}
