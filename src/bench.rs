//! Measuring throughput for `libwarden bench`: one timed pass of the real
//! scan over a tree (walk, open+stat, hash, then the store's encoding of the
//! records, nothing written), and the synthetic trees of `--generate`.
//!
//! The pass runs the same code as `init` with [`ScanOptions::timing`] on;
//! the per-phase figures are thread time summed over the walker threads,
//! the wall time is the pass as a user would wait for it.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::baseline::store::Encoder;
use crate::scan::{self, ClassStats, ScanOptions};

/// The result of one pass.
#[derive(Clone, Debug)]
pub struct Pass {
    pub threads: usize,
    pub io_threads: usize,
    pub entries: u64,
    pub files: u64,
    pub bytes: u64,
    pub warnings: usize,
    /// The whole pass: walk, inspect, sort, encode.
    pub wall: Duration,
    /// Thread time in the walker outside inspection.
    pub walk: Duration,
    /// Thread time in `lstat`, `open`, `fstat`.
    pub open_stat: Duration,
    /// Thread time reading and hashing.
    pub hash: Duration,
    /// Encoding every record as the store would (wall, one thread).
    pub store: Duration,
    /// Regular files by [`scan::SizeClass`].
    pub classes: [ClassStats; 3],
    /// The process's peak resident set during the pass, in bytes (see
    /// [`peak_rss`]); `None` where the platform does not say.
    pub peak_rss: Option<u64>,
}

impl Pass {
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.wall.as_secs_f64().max(1e-9)
    }

    pub fn files_per_s(&self) -> f64 {
        self.files as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

/// One timed pass over `dir` with `threads` hashing threads and
/// `io_threads` files in flight. Touches no baseline.
pub fn measure(dir: &Path, threads: usize, io_threads: usize) -> Pass {
    let mut opts = ScanOptions::with_threads(threads);
    opts.io_threads = io_threads.max(threads);
    opts.timing = true;
    peak_rss::reset();
    let start = Instant::now();
    let res = scan::scan_trees(&[dir], &opts);
    let t = Instant::now();
    let mut enc = Encoder::default();
    let mut encoded = 0usize;
    for r in &res.records {
        if let Some((_, chunk)) = enc.push(r) {
            encoded += chunk.len();
        }
    }
    let (tail, count, digest) = enc.finish();
    encoded += tail.map_or(0, |(_, c)| c.len());
    std::hint::black_box((encoded, count, digest));
    let store = t.elapsed();
    let wall = start.elapsed();
    // Read while the records are still alive: they are the pass's peak.
    let peak_rss = peak_rss::read();
    let st = &res.stats;
    Pass {
        threads,
        io_threads: opts.io_threads,
        entries: st.entries,
        files: st.files,
        bytes: st.bytes,
        warnings: res.warnings.len(),
        wall,
        walk: st.walk,
        open_stat: st.open_stat(),
        hash: st.hash(),
        store,
        classes: st.classes,
        peak_rss,
    }
}

/// How much more a pass costs per 10,000 extra entries: the slope between
/// a pass over a smaller tree of the same shape and one over the larger.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Growth {
    /// Entries of the smaller and the larger tree.
    pub entries: (u64, u64),
    /// Wall seconds of the two passes.
    pub wall: (f64, f64),
    /// Peak RSS bytes of the two passes, when known.
    pub peak_rss: Option<(u64, u64)>,
}

impl Growth {
    /// `None` when the larger tree is not larger.
    pub fn between(small: &Pass, large: &Pass) -> Option<Growth> {
        (large.entries > small.entries).then(|| Growth {
            entries: (small.entries, large.entries),
            wall: (small.wall.as_secs_f64(), large.wall.as_secs_f64()),
            peak_rss: small.peak_rss.zip(large.peak_rss),
        })
    }

    fn per_10k(&self, small: f64, large: f64) -> f64 {
        let extra = (self.entries.1 - self.entries.0) as f64;
        (large - small) / extra * 10_000.0
    }

    /// Extra wall seconds per 10,000 extra entries.
    pub fn wall_per_10k(&self) -> f64 {
        self.per_10k(self.wall.0, self.wall.1)
    }

    /// Extra peak RSS bytes per 10,000 extra entries (negative when noise
    /// or memory kept from the earlier pass outweighs the growth).
    pub fn rss_per_10k(&self) -> Option<f64> {
        self.peak_rss.map(|(s, l)| self.per_10k(s as f64, l as f64))
    }
}

/// The process's peak resident set, per pass. Linux keeps a high-water
/// mark (`VmHWM`) that writing 5 to `/proc/self/clear_refs` resets to the
/// current RSS, so each pass reports its own peak rather than the run's.
/// What the allocator kept from an earlier pass counts in the next one's
/// peak; passes over larger trees come later, so they mostly reuse it.
pub mod peak_rss {
    /// Starts a new high-water mark at the current RSS.
    pub fn reset() {
        #[cfg(target_os = "linux")]
        {
            // Without it (an old kernel, a locked-down /proc) the figure is
            // the process's peak so far: still an upper bound.
            let _ = std::fs::write("/proc/self/clear_refs", "5");
        }
    }

    /// The peak RSS in bytes since the last [`reset`].
    pub fn read() -> Option<u64> {
        #[cfg(target_os = "linux")]
        {
            let status = std::fs::read_to_string("/proc/self/status").ok()?;
            parse_vm_hwm(&status)
        }
        #[cfg(not(target_os = "linux"))]
        {
            None
        }
    }

    /// `VmHWM:     1234 kB` from a `/proc/<pid>/status` text, in bytes.
    pub fn parse_vm_hwm(status: &str) -> Option<u64> {
        let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
        let kb = line.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()?;
        kb.checked_mul(1024)
    }
}

/// MD5 throughput on one core: one stream at a time (what verifying one
/// file costs) against [`md5lanes::LANES`] streams in SIMD lanes.
#[derive(Clone, Copy, Debug)]
pub struct Md5Rates {
    /// GB/s (10^9 bytes) of one stream, the `md-5` crate.
    pub single: f64,
    /// GB/s of all lanes together.
    pub multi: f64,
    pub lanes: usize,
    /// The code the lanes ran: "avx512", "avx2", or "scalar" on a CPU
    /// with neither ([`crate::md5lanes::Kind::name`]).
    pub kind: &'static str,
}

/// Measures [`Md5Rates`] in memory on a fixed set of buffers (one per lane,
/// of slightly different sizes, fed in 1 MiB pieces as the scan reads), the
/// best of three rounds each: no file system, one thread.
pub fn md5_rates() -> Md5Rates {
    use crate::md5lanes::{Lanes, LANES};
    use md5::Digest;
    let bufs: Vec<Vec<u8>> = (0..LANES)
        .map(|i| {
            let mut x = 0x2545_f491_4f6c_dd1du64 ^ i as u64;
            (0..(4 << 20) - i * 4096)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        })
        .collect();
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    let best = |f: &mut dyn FnMut()| {
        (0..3)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .min()
            .unwrap_or_default()
    };
    let single = best(&mut || {
        for b in &bufs {
            std::hint::black_box(md5::Md5::digest(b));
        }
    });
    let mut kind = "scalar";
    let multi = best(&mut || {
        let mut lanes = Lanes::new();
        kind = lanes.kind();
        let mut at = 0;
        loop {
            let part: Vec<&[u8]> = bufs
                .iter()
                .map(|b| &b[at.min(b.len())..(at + (1 << 20)).min(b.len())])
                .collect();
            if part.iter().all(|p| p.is_empty()) {
                break;
            }
            lanes.update(&part);
            at += 1 << 20;
        }
        for i in 0..LANES {
            std::hint::black_box(lanes.finish(i));
        }
    });
    let rate = |d: Duration| total as f64 / 1e9 / d.as_secs_f64().max(1e-9);
    Md5Rates {
        single: rate(single),
        multi: rate(multi),
        lanes: LANES,
        kind,
    }
}

impl Md5Rates {
    /// The line `bench` prints (scripts grep for `^md5:`).
    pub fn line(&self) -> String {
        format!(
            "md5: single-stream {:.2} GB/s per core, multi-buffer ({} lanes, {}) {:.2} GB/s per core",
            self.single, self.lanes, self.kind, self.multi
        )
    }
}

/// What `--generate` wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Generated {
    /// Regular files, the marker file included.
    pub files: u64,
    pub bytes: u64,
    /// Directories below the tree's top.
    pub dirs: u64,
    pub symlinks: u64,
    /// False when an earlier tree of the same scale was reused.
    pub written: bool,
}

/// Marks a tree made by `--generate`, with its scale.
const MARKER: &str = ".libwarden-bench-tree";
/// Small files per directory.
const PER_DIR: u64 = 100;
/// Depth of the deep chain.
const DEPTH: u64 = 64;

/// The shape of a generated tree at `scale` (1.0 is about 1.3 GB).
struct Shape {
    small: u64,
    medium: u64,
    huge: u64,
    huge_size: u64,
}

impl Shape {
    fn at(scale: f64) -> Shape {
        let n = |base: f64| ((base * scale).round() as u64).max(1);
        Shape {
            small: n(20_000.0),
            medium: n(1_000.0),
            huge: 4,
            // Always over 1 MiB, so the class exists at any scale.
            huge_size: ((192u64 << 20) as f64 * scale)
                .round()
                .max((1 << 20) as f64 + 4096.0) as u64,
        }
    }

    /// Under 4 KiB, varied.
    fn small_size(i: u64) -> u64 {
        64 + (i * 997) % (4096 - 64)
    }

    /// 4 KiB to 1 MiB inclusive, varied.
    fn medium_size(i: u64) -> u64 {
        4096 + (i * 104_729) % ((1 << 20) - 4096 + 1)
    }
}

/// Builds a synthetic tree in `dir`: many small files (100 per directory),
/// medium ones, four huge ones, a chain of 64 nested directories with a
/// file in each, and a symlink. The same `scale` always gives the same
/// tree; an existing tree of the same scale is reused, any other non-empty
/// `dir` is refused.
pub fn generate(dir: &Path, scale: f64) -> io::Result<Generated> {
    let marker_text = format!("scale={scale}\n");
    let shape = Shape::at(scale);
    let mut g = Generated {
        files: 1,
        bytes: marker_text.len() as u64,
        dirs: 0,
        symlinks: 0,
        written: true,
    };
    let reuse = match std::fs::read(dir.join(MARKER)) {
        Ok(m) if m == marker_text.as_bytes() => true,
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "holds a generated tree of another scale",
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "exists, is not empty and was not made by --generate",
                ));
            }
            false
        }
        Err(e) => return Err(e),
    };
    g.written = !reuse;
    let pool = pool();
    let put = |path: &Path, size: u64, seed: u64, g: &mut Generated| -> io::Result<()> {
        g.files += 1;
        g.bytes += size;
        if reuse {
            return Ok(());
        }
        let mut f = File::create(path)?;
        let mut left = size;
        let mut off = (seed * 4099) as usize % (pool.len() / 2);
        while left > 0 {
            let n = left.min((pool.len() - off) as u64) as usize;
            f.write_all(&pool[off..off + n])?;
            left -= n as u64;
            off = 0;
        }
        Ok(())
    };
    let mkdir = |path: &Path, g: &mut Generated| -> io::Result<()> {
        g.dirs += 1;
        if reuse {
            return Ok(());
        }
        std::fs::create_dir_all(path)
    };

    mkdir(&dir.join("small"), &mut g)?;
    for i in 0..shape.small {
        let sub = dir.join(format!("small/d{:04}", i / PER_DIR));
        if i % PER_DIR == 0 {
            mkdir(&sub, &mut g)?;
        }
        put(
            &sub.join(format!("f{i:06}")),
            Shape::small_size(i),
            i,
            &mut g,
        )?;
    }
    mkdir(&dir.join("medium"), &mut g)?;
    for i in 0..shape.medium {
        let p = dir.join(format!("medium/m{i:05}"));
        put(&p, Shape::medium_size(i), i + 7, &mut g)?;
    }
    mkdir(&dir.join("huge"), &mut g)?;
    for i in 0..shape.huge {
        let p = dir.join(format!("huge/h{i}"));
        put(&p, shape.huge_size, i + 13, &mut g)?;
    }
    let mut deep = dir.join("deep");
    mkdir(&deep, &mut g)?;
    for level in 0..DEPTH {
        deep.push(format!("l{level:02}"));
        mkdir(&deep, &mut g)?;
        put(&deep.join("f"), 1024, level, &mut g)?;
    }
    if cfg!(unix) {
        g.symlinks += 1;
    }
    if !reuse {
        // Creating a symlink on Windows needs a privilege: no link there.
        #[cfg(unix)]
        std::os::unix::fs::symlink("huge/h0", dir.join("latest"))?;
        // Last, so an interrupted generation is never taken for a tree.
        std::fs::write(dir.join(MARKER), &marker_text)?;
    }
    Ok(g)
}

/// Where `--generate DIR` keeps its half-scale companion for the growth
/// figure: beside DIR (inside, it would be part of the measured tree).
pub fn half_dir(dir: &Path) -> Option<std::path::PathBuf> {
    let mut name = dir.file_name()?.to_os_string();
    name.push(".half");
    Some(dir.with_file_name(name))
}

/// 8 MiB of xorshift bytes: incompressible content to slice files from.
fn pool() -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut v = Vec::with_capacity(8 << 20);
    while v.len() < 8 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_hwm_is_parsed_and_bad_text_refused() {
        let st = "Name:\tx\nVmPeak:\t  9 kB\nVmHWM:\t   13564 kB\nVmRSS:\t 1 kB\n";
        assert_eq!(peak_rss::parse_vm_hwm(st), Some(13564 * 1024));
        for bad in [
            "",
            "VmHWM:\n",
            "VmHWM: x kB\n",
            "VmHWM: 12\n",
            "VmHWM: 99999999999999999999 kB",
        ] {
            assert_eq!(peak_rss::parse_vm_hwm(bad), None, "{bad:?}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn peak_rss_of_a_pass_sees_its_allocation() {
        peak_rss::reset();
        let before = peak_rss::read().expect("VmHWM on Linux");
        let v = vec![1u8; 64 << 20];
        // Touch every page so it is resident.
        let sum: u64 = v.iter().step_by(4096).map(|&b| b as u64).sum();
        std::hint::black_box(sum);
        let after = peak_rss::read().unwrap();
        assert!(after >= before + (60 << 20), "{before} -> {after}");
        drop(v);
    }

    #[test]
    fn growth_is_the_slope_per_10k_entries() {
        let pass = |entries, wall_ms, rss| Pass {
            threads: 1,
            io_threads: 1,
            entries,
            files: 0,
            bytes: 0,
            warnings: 0,
            wall: Duration::from_millis(wall_ms),
            walk: Duration::ZERO,
            open_stat: Duration::ZERO,
            hash: Duration::ZERO,
            store: Duration::ZERO,
            classes: Default::default(),
            peak_rss: rss,
        };
        let g = Growth::between(
            &pass(10_000, 500, Some(30 << 20)),
            &pass(30_000, 1500, Some(40 << 20)),
        )
        .unwrap();
        assert!((g.wall_per_10k() - 0.5).abs() < 1e-9);
        assert_eq!(g.rss_per_10k(), Some((5 << 20) as f64));
        let g = Growth::between(&pass(1, 1, None), &pass(2, 1, Some(1))).unwrap();
        assert_eq!(g.rss_per_10k(), None);
        assert!(Growth::between(&pass(5, 1, None), &pass(5, 2, None)).is_none());
    }

    #[test]
    fn half_tree_sits_beside_the_tree() {
        use std::path::PathBuf;
        assert_eq!(
            half_dir(Path::new("/tmp/t")),
            Some(PathBuf::from("/tmp/t.half"))
        );
        assert_eq!(
            half_dir(Path::new("/tmp/t/")),
            Some(PathBuf::from("/tmp/t.half"))
        );
        assert_eq!(half_dir(Path::new("t")), Some(PathBuf::from("t.half")));
        assert_eq!(half_dir(Path::new("/")), None);
        assert_eq!(half_dir(Path::new("..")), None);
    }

    #[test]
    fn size_classes_of_the_shape_hold() {
        use crate::scan::SizeClass;
        for i in 0..5000 {
            assert_eq!(SizeClass::of(Shape::small_size(i)), SizeClass::Small);
            assert_eq!(SizeClass::of(Shape::medium_size(i)), SizeClass::Medium);
        }
        for scale in [0.0001, 0.01, 1.0] {
            assert_eq!(SizeClass::of(Shape::at(scale).huge_size), SizeClass::Large);
        }
    }
}
