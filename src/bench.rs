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
    /// "avx2", or "scalar" on a CPU without it.
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
