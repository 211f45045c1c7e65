//! Loading an rpm database of 500 installed packages (`rpmdb.sqlite`, 100
//! files each, SHA-256 digests: the size of a small server install): the
//! whole index, and the index cut to the file names a one-shot run judges.
//! The database is written here with the schema rpm uses and headers in
//! rpm's format. Run with `cargo bench --bench rpmdb`.

use std::collections::HashSet;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};

use libwarden::formats::rpmheader::{self, enc};
use libwarden::provenance::rpm;
use libwarden::rootfs::Root;

const PACKAGES: usize = 500;
const FILES: usize = 100;

/// One package's header: `FILES` files over 4 directories.
fn header(i: usize) -> Vec<u8> {
    let names: Vec<Vec<u8>> = (0..FILES)
        .map(|f| {
            if f % 10 == 0 {
                format!("libpkg{i}-{f}.so.1").into_bytes()
            } else {
                format!("file{i}-{f}").into_bytes()
            }
        })
        .collect();
    let names: Vec<&[u8]> = names.iter().map(|n| n.as_slice()).collect();
    let digests: Vec<Vec<u8>> = (0..FILES)
        .map(|f| format!("{:064x}", i * FILES + f).into_bytes())
        .collect();
    let digests: Vec<&[u8]> = digests.iter().map(|d| d.as_slice()).collect();
    let dirs: [&[u8]; 4] = [
        b"/usr/lib64/",
        b"/usr/share/doc/pkg/",
        b"/usr/bin/",
        b"/etc/pkg/",
    ];
    let idx: Vec<u32> = (0..FILES).map(|f| (f % 4) as u32).collect();
    rpmheader::build(&[
        enc::string(rpmheader::TAG_NAME, &format!("pkg{i}")),
        enc::string(rpmheader::TAG_VERSION, "1.0"),
        enc::string(rpmheader::TAG_RELEASE, "1.el9"),
        enc::string(rpmheader::TAG_ARCH, "x86_64"),
        enc::int32(rpmheader::TAG_FILESIZES, &[4096; FILES]),
        enc::int16(rpmheader::TAG_FILEMODES, &[0o100755; FILES]),
        enc::strings(rpmheader::TAG_FILEDIGESTS, &digests),
        enc::int32(rpmheader::TAG_FILEFLAGS, &[0; FILES]),
        enc::int32(rpmheader::TAG_DIRINDEXES, &idx),
        enc::strings(rpmheader::TAG_BASENAMES, &names),
        enc::strings(rpmheader::TAG_DIRNAMES, &dirs),
        enc::int32(rpmheader::TAG_FILEDIGESTALGO, &[8]),
    ])
}

fn make_root() -> tempfile::TempDir {
    let t = tempfile::tempdir().expect("temp dir");
    let dir = t.path().join("var/lib/rpm");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::create_dir_all(t.path().join("usr/lib64")).expect("mkdir");
    let conn = rusqlite::Connection::open(dir.join("rpmdb.sqlite")).expect("sqlite");
    conn.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE 'Packages' (hnum INTEGER PRIMARY KEY AUTOINCREMENT,blob BLOB NOT NULL);",
    )
    .expect("schema");
    for i in 0..PACKAGES {
        conn.execute("INSERT INTO Packages (blob) VALUES (?1)", [header(i)])
            .expect("insert");
    }
    drop(conn);
    t
}

fn load(c: &mut Criterion) {
    let t = make_root();
    let root = Root::new(t.path()).expect("root");
    let size = std::fs::metadata(t.path().join("var/lib/rpm/rpmdb.sqlite"))
        .expect("db")
        .len();
    eprintln!(
        "rpmdb.sqlite: {PACKAGES} packages, {} files, {size} bytes",
        PACKAGES * FILES
    );
    let names: HashSet<Vec<u8>> = (0..PACKAGES)
        .map(|i| format!("libpkg{i}-0.so.1").into_bytes())
        .collect();
    let mut g = c.benchmark_group("rpmdb_500_packages");
    g.sample_size(20);
    g.bench_function("load_all", |b| {
        b.iter(|| black_box(rpm::load(&root, None).expect("load")))
    });
    g.bench_function("load_names_judged", |b| {
        b.iter(|| black_box(rpm::load(&root, Some(&names)).expect("load")))
    });
    g.finish();
}

criterion_group!(benches, load);
criterion_main!(benches);
