//! Micro-benchmarks of the costs `libwarden bench` reports as a whole:
//! hashing (in memory, and a file through the inspector: open, fstat, read,
//! hash, fstat), writing and loading a 100,000-record baseline, and diffing
//! two 100,000-record scans. Run with `cargo bench`; the end-to-end
//! comparison with other tools is `benches/compare.sh`.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};

use libwarden::baseline::store::Store;
use libwarden::diff::{self, Classifier};
use libwarden::inspect::{Cost, Inspector, Outcome, CHUNK};
use libwarden::record::{FileClass, FileType, Record, RecordData};
use libwarden::rootfs::Root;
use libwarden::searchpaths::SearchPaths;

const SIZES: [(usize, &str); 3] = [(4 << 10, "4KiB"), (64 << 10, "64KiB"), (64 << 20, "64MiB")];
const RECORDS: usize = 100_000;

fn data(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn hashing(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut g = c.benchmark_group("hash");
    for (n, name) in SIZES {
        let bytes = data(n);
        g.throughput(Throughput::Bytes(n as u64));
        if n >= 1 << 20 {
            g.sample_size(10);
        }
        // BLAKE3 over memory, read-sized pieces as the inspector feeds it.
        g.bench_with_input(BenchmarkId::new("memory", name), &bytes, |b, bytes| {
            b.iter(|| {
                let mut h = blake3::Hasher::new();
                for piece in bytes.chunks(CHUNK) {
                    h.update(piece);
                }
                black_box(h.finalize())
            })
        });
        // The whole per-file path of a scan, page cache warm.
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).expect("write input");
        let root = libwarden::rootfs::Root::new(dir.path()).expect("bench root");
        let mut insp = Inspector::new(&root);
        let logical = format!("/{name}").into_bytes();
        g.bench_with_input(BenchmarkId::new("file", name), &path, |b, _| {
            b.iter(|| {
                let mut cost = Cost::default();
                match insp.inspect(logical.clone(), None, None, &mut cost) {
                    Outcome::Record(r, None) => black_box(r.blake3),
                    _ => panic!("inspecting the benchmark input failed"),
                }
            })
        });
    }
    g.finish();
}

fn records(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| {
            Record::from(RecordData {
                path: format!("/usr/lib/x86_64-linux-gnu/pkg{:04}/lib{i:06}.so.1", i / 100)
                    .into_bytes(),
                ftype: FileType::File,
                size: (i as u64 * 7919) % (1 << 20),
                mode: 0o100644,
                uid: 0,
                gid: 0,
                dev: 2049,
                inode: 1_000_000 + i as u64,
                nlink: 1,
                mtime: (1_700_000_000 + i as i64, 0),
                ctime: (1_700_000_000 + i as i64, 0),
                blake3: Some(*blake3::hash(&i.to_le_bytes()).as_bytes()),
                sha256: None,
                unhashed: None,
                target: None,
                class: FileClass::ElfDyn,
                facts: None,
            })
        })
        .collect()
}

fn store(c: &mut Criterion) {
    let recs = records(RECORDS);
    let mut g = c.benchmark_group("store");
    g.sample_size(10);
    g.throughput(Throughput::Elements(RECORDS as u64));
    g.bench_function("write_100k", |b| {
        b.iter_batched(
            || tempfile::tempdir().expect("temp dir"),
            |dir| {
                let s = Store::create(&dir.path().join("db"), false).expect("create");
                black_box(s.write_generation(&recs, b"/", None).expect("write"));
                drop(s);
                dir
            },
            BatchSize::PerIteration,
        )
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("db");
    Store::create(&db, false)
        .and_then(|s| s.write_generation(&recs, b"/", None))
        .expect("write");
    g.bench_function("load_100k", |b| {
        b.iter(|| {
            let s = Store::open(&db).expect("open");
            let (_, loaded) = s.load().expect("load");
            assert_eq!(loaded.len(), RECORDS);
            black_box(loaded)
        })
    });
    g.finish();
}

fn diffing(c: &mut Criterion) {
    let before = records(RECORDS);
    // One file in a hundred changed, one added and one removed per thousand.
    let mut after = before.clone();
    for (i, r) in after.iter_mut().enumerate() {
        if i % 100 == 0 {
            r.blake3 = Some([0; 32]);
            r.ctime.0 += 1;
        }
    }
    after.retain(|r| r.inode % 1000 != 1);
    for i in 0..RECORDS / 1000 {
        let mut r = before[i * 1000].clone();
        r.path.extend_from_slice(b".new");
        after.push(r);
    }
    after.sort_by(|a, b| a.path.cmp(&b.path));
    let root = Root::new(&PathBuf::from("/")).expect("root");
    let sp = SearchPaths::resolve(&root, &[], None);
    let cls = Classifier::new(&sp);
    let mut g = c.benchmark_group("diff");
    g.throughput(Throughput::Elements(RECORDS as u64));
    g.bench_function("diff_100k", |b| {
        b.iter(|| black_box(diff::diff(&before, &after, &cls)))
    });
    g.finish();
}

criterion_group!(benches, hashing, store, diffing);
criterion_main!(benches);
