//! The fuzz corpus runner: one test per parser. Each runs every seed of
//! `fuzz/corpus/<target>/` (real inputs made by `fuzz/make-seeds.sh` and
//! `write_generated_seeds` below, committed), then mutated variants of them
//! (bit flips, byte sets, truncations, insertions, removals, splices of two
//! seeds, length-field bumps, repeats) drawn by proptest, and asserts that
//! the parser neither panics, nor hangs (a watchdog per target), nor
//! allocates beyond a bound (a counting allocator, per thread). A failing
//! input is shrunk by proptest and written to `target/fuzz-findings/`.
//!
//! - `LIBWARDEN_FUZZ_CASES`: mutated cases per target and batch (default
//!   300, so the whole runner stays well under 30 s in CI).
//! - `LIBWARDEN_FUZZ_SECS`: keep running batches (each with the next RNG
//!   seed) until this many seconds have passed, for long runs.
//! - `LIBWARDEN_FUZZ_SEED`: the first batch's RNG seed (default 0: the same
//!   cases every run).
//!
//! Run with `--nocapture` to see the case counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestError, TestRng, TestRunner};

// ---- allocation accounting ------------------------------------------------

/// Counts the bytes each thread holds, so a case can be checked for what it
/// allocated. The counters are const-initialised thread-locals without
/// destructors: touching them never allocates.
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static FUZZING: Cell<bool> = const { Cell::new(false) };
}

/// A single allocation larger than this in a fuzzed parser is refused
/// (the process aborts with "memory allocation of N bytes failed"), rather
/// than letting a hostile length reserve the machine's memory.
const HARD_CAP: usize = 1 << 30;

fn note(delta: isize) {
    let _ = LIVE.try_with(|l| {
        let v = l.get() + delta;
        l.set(v);
        let _ = PEAK.try_with(|p| {
            if v > p.get() {
                p.set(v)
            }
        });
    });
}

fn refused(size: usize) -> bool {
    size > HARD_CAP && FUZZING.try_with(Cell::get).unwrap_or(false)
}

// SAFETY: every call is forwarded to `System` unchanged; the bookkeeping
// only touches thread-locals that need no allocation.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if refused(l.size()) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            note(l.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if refused(l.size()) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            note(l.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        note(-(l.size() as isize));
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if refused(new) {
            return std::ptr::null_mut();
        }
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            note(new as isize - l.size() as isize);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// What one case may allocate beyond what its thread already held: a fixed
/// allowance plus a multiple of the input (parsers copy names and values
/// out of it).
fn alloc_budget(len: usize) -> isize {
    (32 << 20) + 64 * len as isize
}

/// Runs `f` on `input`; the peak of the bytes it held at once.
fn measured(f: fn(&[u8]), input: &[u8]) -> isize {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    FUZZING.with(|z| z.set(true));
    f(input);
    FUZZING.with(|z| z.set(false));
    PEAK.with(Cell::get) - base
}

// ---- mutations --------------------------------------------------------------

#[derive(Clone, Debug)]
enum Bump {
    Add(i16),
    Zero,
    Max,
    High,
}

#[derive(Clone, Debug)]
enum Mutation {
    Flip {
        at: u32,
        bit: u8,
    },
    Set {
        at: u32,
        byte: u8,
    },
    Truncate {
        at: u32,
    },
    Insert {
        at: u32,
        bytes: Vec<u8>,
    },
    Remove {
        at: u32,
        len: u16,
    },
    Splice {
        seed: u16,
        from: u32,
        len: u16,
        at: u32,
    },
    Bump {
        at: u32,
        width: u8,
        big_endian: bool,
        how: Bump,
    },
    Repeat {
        at: u32,
        len: u16,
        times: u8,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let bump = prop_oneof![
        any::<i16>().prop_map(Bump::Add),
        Just(Bump::Zero),
        Just(Bump::Max),
        Just(Bump::High),
    ];
    prop_oneof![
        3 => (any::<u32>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        2 => (any::<u32>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        1 => any::<u32>().prop_map(|at| Mutation::Truncate { at }),
        1 => (any::<u32>(), proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        1 => (any::<u32>(), 1u16..256).prop_map(|(at, len)| Mutation::Remove { at, len }),
        1 => (any::<u16>(), any::<u32>(), 1u16..512, any::<u32>())
            .prop_map(|(seed, from, len, at)| Mutation::Splice { seed, from, len, at }),
        3 => (any::<u32>(), prop_oneof![Just(1u8), Just(2), Just(4), Just(8)], any::<bool>(), bump)
            .prop_map(|(at, width, big_endian, how)| Mutation::Bump { at, width, big_endian, how }),
        1 => (any::<u32>(), 1u16..64, 2u8..32)
            .prop_map(|(at, len, times)| Mutation::Repeat { at, len, times }),
    ]
}

/// A position in `0..=len` (or `0..len` with `inside`) from a raw draw.
fn pos(at: u32, len: usize, inside: bool) -> Option<usize> {
    let n = if inside { len } else { len + 1 };
    (n > 0).then(|| at as usize % n)
}

fn apply(seed: &[u8], muts: &[Mutation], seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for m in muts {
        match m {
            Mutation::Flip { at, bit } => {
                if let Some(i) = pos(*at, b.len(), true) {
                    b[i] ^= 1 << bit;
                }
            }
            Mutation::Set { at, byte } => {
                if let Some(i) = pos(*at, b.len(), true) {
                    b[i] = *byte;
                }
            }
            Mutation::Truncate { at } => {
                if let Some(i) = pos(*at, b.len(), false) {
                    b.truncate(i);
                }
            }
            Mutation::Insert { at, bytes } => {
                if let Some(i) = pos(*at, b.len(), false) {
                    b.splice(i..i, bytes.iter().copied());
                }
            }
            Mutation::Remove { at, len } => {
                if let Some(i) = pos(*at, b.len(), true) {
                    let end = (i + *len as usize).min(b.len());
                    b.drain(i..end);
                }
            }
            Mutation::Splice {
                seed,
                from,
                len,
                at,
            } => {
                let other = &seeds[*seed as usize % seeds.len()];
                if let (Some(f), Some(i)) =
                    (pos(*from, other.len(), true), pos(*at, b.len(), false))
                {
                    let end = (f + *len as usize).min(other.len());
                    b.splice(i..i, other[f..end].iter().copied());
                }
            }
            Mutation::Bump {
                at,
                width,
                big_endian,
                how,
            } => {
                let w = *width as usize;
                if b.len() < w {
                    continue;
                }
                let i = *at as usize % (b.len() - w + 1);
                let mut raw = [0u8; 8];
                let field = &mut b[i..i + w];
                if *big_endian {
                    raw[8 - w..].copy_from_slice(field);
                } else {
                    raw[..w].copy_from_slice(field);
                }
                let v = if *big_endian {
                    u64::from_be_bytes(raw)
                } else {
                    u64::from_le_bytes(raw)
                };
                let mask = if w == 8 {
                    u64::MAX
                } else {
                    (1u64 << (8 * w)) - 1
                };
                let v = match how {
                    Bump::Add(d) => v.wrapping_add(*d as i64 as u64),
                    Bump::Zero => 0,
                    Bump::Max => u64::MAX,
                    Bump::High => 1 << (8 * w - 1),
                } & mask;
                if *big_endian {
                    field.copy_from_slice(&v.to_be_bytes()[8 - w..]);
                } else {
                    field.copy_from_slice(&v.to_le_bytes()[..w]);
                }
            }
            Mutation::Repeat { at, len, times } => {
                if let Some(i) = pos(*at, b.len(), true) {
                    let end = (i + *len as usize).min(b.len());
                    let chunk = b[i..end].to_vec();
                    for _ in 1..*times {
                        b.splice(end..end, chunk.iter().copied());
                    }
                }
            }
        }
        // Inputs stay small enough that a case is quick.
        b.truncate(1 << 20);
    }
    b
}

// ---- the runner -------------------------------------------------------------

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = corpus_dir(target);
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    names.sort();
    let s: Vec<Vec<u8>> = names.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert!(!s.is_empty(), "no seeds in {}", dir.display());
    s
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// How long a single case may run before the watchdog calls it a hang (a
/// bound to detect a hang in a debug build on a loaded machine, not a
/// timing assertion).
const STALL: Duration = Duration::from_secs(120);

/// Writes a failing input where it can be picked up and turned into a seed
/// or a regression test; returns its path.
fn keep_finding(target: &str, what: &str, input: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-findings");
    std::fs::create_dir_all(&dir).unwrap();
    let name = format!(
        "{target}-{what}-{}",
        &blake3::hash(input).to_hex().as_str()[..16]
    );
    let p = dir.join(name);
    std::fs::write(&p, input).unwrap();
    p
}

/// Runs target `name` (the parser call `f`) over its corpus and mutations.
fn run(name: &'static str, f: fn(&[u8])) {
    let seeds = Arc::new(seeds(name));
    let progress = Arc::new(AtomicU64::new(0));
    let current: Arc<Mutex<Vec<u8>>> = Arc::default();
    let (p, c, s) = (progress.clone(), current.clone(), seeds.clone());
    let worker = std::thread::Builder::new()
        .name(format!("fuzz-{name}"))
        .spawn(move || fuzz(name, f, &s, &p, &c))
        .unwrap();
    // The watchdog: a case that makes no progress for STALL is a hang.
    let mut last = (0, Instant::now());
    while !worker.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
        let now = progress.load(Ordering::Relaxed);
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > STALL {
            let input = current.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let p = keep_finding(name, "hang", &input);
            panic!("{name}: a case ran over {STALL:?}: {}", p.display());
        }
    }
    match worker.join() {
        Ok(report) => eprintln!("{report}"),
        Err(e) => std::panic::resume_unwind(e),
    }
}

/// The worker: seeds, then batches of mutated cases. Returns a summary.
fn fuzz(
    name: &'static str,
    f: fn(&[u8]),
    seeds: &[Vec<u8>],
    progress: &AtomicU64,
    current: &Mutex<Vec<u8>>,
) -> String {
    let started = Instant::now();
    let check = |input: &[u8]| -> Result<(), String> {
        *current.lock().unwrap_or_else(|e| e.into_inner()) = input.to_vec();
        progress.fetch_add(1, Ordering::Relaxed);
        let used = measured(f, input);
        if used > alloc_budget(input.len()) {
            return Err(format!(
                "held {used} bytes at once for a {}-byte input",
                input.len()
            ));
        }
        Ok(())
    };
    for (i, s) in seeds.iter().enumerate() {
        if let Err(e) = check(s) {
            panic!("{name}: seed {i}: {e}");
        }
    }
    let cases = env_u64("LIBWARDEN_FUZZ_CASES").unwrap_or(300) as u32;
    let budget = env_u64("LIBWARDEN_FUZZ_SECS").map(Duration::from_secs);
    let mut seed = env_u64("LIBWARDEN_FUZZ_SEED").unwrap_or(0);
    let strategy = (0..seeds.len(), proptest::collection::vec(mutation(), 1..6));
    let mut batches = 0u64;
    loop {
        let mut rng_seed = [0u8; 32];
        rng_seed[..8].copy_from_slice(&seed.to_le_bytes());
        rng_seed[8..16].copy_from_slice(&blake3::hash(name.as_bytes()).as_bytes()[..8]);
        let config = Config {
            cases,
            failure_persistence: None,
            max_shrink_iters: 4096,
            ..Config::default()
        };
        let mut runner =
            TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &rng_seed));
        let result = runner.run(&strategy, |(i, muts)| {
            let input = apply(&seeds[i], &muts, seeds);
            check(&input).map_err(TestCaseError::fail)
        });
        batches += 1;
        if let Err(e) = result {
            let (why, (i, muts)) = match e {
                TestError::Fail(why, v) => (why, v),
                TestError::Abort(why) => panic!("{name}: aborted: {why}"),
            };
            let input = apply(&seeds[i], &muts, seeds);
            let p = keep_finding(name, "crash", &input);
            panic!(
                "{name}: {why} (RNG seed {seed}, seed file #{i}, {muts:?}); input kept in {}",
                p.display()
            );
        }
        seed += 1;
        match budget {
            Some(b) if started.elapsed() < b => continue,
            _ => break,
        }
    }
    format!(
        "fuzz {name}: {} seeds, {} mutated cases ({batches} batch(es) of {cases}) in {:.1} s",
        seeds.len(),
        batches * cases as u64,
        started.elapsed().as_secs_f64()
    )
}

// ---- the targets -------------------------------------------------------------

/// The trusted root the PE and DER targets verify against, so the chain
/// checks run on mutated certificates too (the root made by make-seeds.sh).
fn trust() -> &'static libwarden::formats::pe::TrustStore {
    static T: OnceLock<libwarden::formats::pe::TrustStore> = OnceLock::new();
    T.get_or_init(|| {
        let pem =
            std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/pe-roots.pem")).unwrap();
        let t = libwarden::formats::pe::TrustStore::from_pem(&pem);
        assert_eq!(t.root_count(), 1);
        t
    })
}

fn elf(d: &[u8]) {
    let _ = libwarden::formats::elf::parse(d);
}

fn pe(d: &[u8]) {
    use libwarden::formats::pe;
    let _ = pe::verify(d, None);
    let _ = pe::verify(d, Some(trust()));
    if let Some(l) = pe::layout(d) {
        let _ = pe::pkcs7_blob(d, &l);
    }
    let _ = pe::Verdict::decode(d);
}

fn der(d: &[u8]) {
    use libwarden::formats::{der, pe};
    use x509_cert::der::Decode;
    let _ = der::read(d);
    let _ = der::children(d);
    let _ = der::all_children(d, 64);
    let _ = der::signed_data(d);
    let _ = der::oid_string(d);
    let _ = pe::public_keys_from_pem(d);
    let mut t = pe::TrustStore::from_pem(
        &std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/pe-roots.pem"))
            .unwrap_or_default(),
    );
    let _ = t.add_catalog("fuzz.cat", d);
    // The RustCrypto decoders libwarden uses, on the same inputs. Not
    // `Certificate::from_der`: its owned types (OctetString, BitString,
    // Any) allocate a TLV's claimed length, up to 256 MiB, before checking
    // that the input holds it (der 0.7 `Reader::read_vec`; a one-bit flip
    // of a 771-byte certificate made it hold 50 MB), which is why
    // libwarden walks certificates with `formats::der` and decodes only
    // these fixed-size values with the crate.
    let _ = x509_cert::ext::pkix::BasicConstraints::from_der(d);
    let _ = x509_cert::ext::pkix::KeyUsage::from_der(d);
    let _ = x509_cert::ext::pkix::ExtendedKeyUsage::from_der(d);
}

fn pem(d: &[u8]) {
    use libwarden::formats::pe;
    let _ = pe::TrustStore::from_pem(d).root_count();
    let _ = pe::public_keys_from_pem(d);
}

fn kmod(d: &[u8]) {
    use libwarden::formats::kmod;
    let tail = &d[d.len().saturating_sub(kmod::TRAILER)..];
    let _ = kmod::tail_needed(tail);
    let _ = kmod::inspect(b"x.ko", d);
    let _ = kmod::inspect(b"x.ko.xz", d);
}

fn ima(d: &[u8]) {
    use libwarden::formats::ima;
    let _ = ima::parse(d);
    let _ = ima::content_algo(d);
}

/// An ld.so.conf tree in memory: the input is `/etc/ld.so.conf`; every
/// include matches `a.conf` (the input again: a cycle) and `b.conf` (its
/// second half) in the pattern's directory. Every directory is the same
/// one (as if each were a symlink to it), so a file's identity is its
/// name: a real tree holds finitely many files, and one whose every path
/// were a new file would make `include sub/*.conf` exponential in the
/// nesting depth without saying anything about the parser.
struct Conf<'a>(&'a [u8]);

impl libwarden::formats::ldconf::ConfSource for Conf<'_> {
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        match path.file_name().and_then(|n| n.to_str()) {
            Some("ld.so.conf") | Some("a.conf") => Ok(self.0.to_vec()),
            Some("b.conf") => Ok(self.0[self.0.len() / 2..].to_vec()),
            _ => Err(std::io::ErrorKind::NotFound.into()),
        }
    }
    fn glob(&self, pattern: &Path) -> Vec<PathBuf> {
        let dir = pattern.parent().unwrap_or(Path::new("/"));
        vec![dir.join("a.conf"), dir.join("b.conf")]
    }
    fn identity(&self, path: &Path) -> PathBuf {
        path.file_name().map(PathBuf::from).unwrap_or_default()
    }
}

fn ldconf(d: &[u8]) {
    let _ = libwarden::formats::ldconf::parse(&Conf(d), Path::new("/etc/ld.so.conf"));
}

fn hive(d: &[u8]) {
    use libwarden::winreg::hive::Hive;
    let Ok(h) = Hive::parse(d) else {
        return;
    };
    // Walk the tree as the audits do, bounded: depth 8, 4096 keys.
    let mut stack = vec![(h.root(), 0)];
    let mut seen = 0;
    while let Some((k, depth)) = stack.pop() {
        seen += 1;
        if seen > 4096 {
            break;
        }
        let _ = h.key_name(k);
        let _ = h.key_time(k);
        if let Ok(vals) = h.values(k) {
            for v in vals {
                let _ = (v.display(), v.string(), v.strings(), v.number());
            }
        }
        let _ = h.value(k, "Path");
        let _ = h.subkey(k, "Control");
        if depth < 8 {
            if let Ok(kids) = h.subkeys(k) {
                stack.extend(kids.into_iter().map(|c| (c, depth + 1)));
            }
        }
    }
    let _ = h.open("ControlSet001\\Control\\Session Manager\\KnownDLLs");
}

fn manifest(d: &[u8]) {
    let _ = libwarden::baseline::manifest::parse(d);
}

fn record(d: &[u8]) {
    let _ = libwarden::record::Record::decode_value(b"/usr/lib/libx.so.1", d);
}

fn dpkg(d: &[u8]) {
    use libwarden::provenance::dpkg;
    for e in dpkg::parse_status(d) {
        let _ = e.has_files();
    }
    let _ = dpkg::parse_md5sums(d);
    let _ = dpkg::parse_list(d);
    let _ = dpkg::parse_diversions(d);
}

fn rpmheader(d: &[u8]) {
    if let Ok(h) = libwarden::formats::rpmheader::parse(d) {
        let _ = h.evr();
    }
}

fn apkdb(d: &[u8]) {
    let _ = libwarden::formats::apkdb::parse(d);
}

fn config(d: &[u8]) {
    // The config is read from a file: each worker thread has its own.
    thread_local! {
        static DIR: tempfile::TempDir = tempfile::tempdir().unwrap();
    }
    DIR.with(|t| {
        let p = t.path().join("config.toml");
        std::fs::write(&p, d).unwrap();
        let _ = libwarden::config::file::FileConfig::load(Some(&p));
    });
}

macro_rules! targets {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run(stringify!($name), super::$name);
            }
        )*
    };
}

/// One test per target, named for it: `cargo test --test integration
/// fuzz::targets::elf`.
mod targets {
    use super::run;
    targets!(
        elf, pe, der, pem, kmod, ima, ldconf, hive, manifest, record, dpkg, config, rpmheader,
        apkdb
    );
}

// ---- the runner itself ---------------------------------------------------------

fn planted_panic(d: &[u8]) {
    assert_ne!(d.first(), Some(&0x40), "planted");
}

fn planted_allocation(d: &[u8]) {
    if d.first() != Some(&0x41) {
        std::hint::black_box(Vec::<u8>::with_capacity(64 << 20));
    }
}

/// The runner's failure, as text (it panics with it).
fn runner_failure(f: fn(&[u8]), seed: &[u8]) -> String {
    let (p, c) = (AtomicU64::new(0), Mutex::new(Vec::new()));
    let seeds = vec![seed.to_vec()];
    let e = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        fuzz("planted", f, &seeds, &p, &c)
    }))
    .expect_err("the runner must fail");
    e.downcast_ref::<String>().cloned().unwrap_or_default()
}

#[test]
fn the_runner_finds_a_planted_panic_and_a_planted_allocation() {
    let why = runner_failure(planted_panic, &[0x41]);
    assert!(
        why.contains("planted") && why.contains("input kept in"),
        "{why}"
    );
    // Shrunk to the one byte that matters.
    let kept = PathBuf::from(why.rsplit("input kept in ").next().unwrap());
    assert_eq!(std::fs::read(kept).unwrap().first(), Some(&0x40));
    let why = runner_failure(planted_allocation, &[0x41]);
    assert!(why.contains("bytes at once"), "{why}");
}

// ---- seeds made in Rust --------------------------------------------------------

/// Writes the hive and record seeds (made with the test hive writer and the
/// inspection itself) into `fuzz/corpus/`. Run once when they change:
/// `LIBWARDEN_FUZZ_WRITE_SEEDS=1 cargo test --test integration
/// fuzz::write_generated_seeds -- --ignored`.
#[test]
#[ignore]
fn write_generated_seeds() {
    if std::env::var_os("LIBWARDEN_FUZZ_WRITE_SEEDS").is_none() {
        return;
    }
    use crate::regf::{Node, REG_BINARY, REG_EXPAND_SZ, REG_QWORD};
    let hives = corpus_dir("hive");
    std::fs::create_dir_all(&hives).unwrap();
    let mut sys = Node::new("SYSTEM");
    sys.at("Select").dword("Current", 1);
    sys.at("ControlSet001\\Control\\Session Manager\\KnownDLLs")
        .sz("kernel32", "kernel32.dll")
        .sz("DllDirectory", "%SystemRoot%\\system32");
    sys.at("ControlSet001\\Control\\Session Manager\\Environment")
        .set(
            "Path",
            REG_EXPAND_SZ,
            crate::regf::wide("%SystemRoot%\\system32;C:\\Tools"),
        )
        .multi("Multi", &["a", "bb", ""])
        .set("Q", REG_QWORD, 7u64.to_le_bytes().to_vec());
    std::fs::write(hives.join("system"), sys.to_hive()).unwrap();
    let mut big = Node::new("SOFTWARE");
    // More than one 16 KiB segment: a `db` big-data cell.
    big.at("Big").set("Blob", REG_BINARY, vec![0x5a; 20000]);
    for i in 0..40 {
        big.at(&format!("Many\\K{i:02}")).dword("n", i);
    }
    std::fs::write(hives.join("software"), big.to_hive()).unwrap();

    let records = corpus_dir("record");
    std::fs::create_dir_all(&records).unwrap();
    let t = tempfile::tempdir().unwrap();
    let unit = t.path().join("x.service");
    std::fs::write(
        &unit,
        "[Service]\nEnvironment=LD_PRELOAD=/tmp/x.so\nEnvironmentFile=/etc/default/x\n",
    )
    .unwrap();
    let link = t.path().join("link");
    std::os::unix::fs::symlink("libx.so.1", &link).unwrap();
    let c = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let cases: [(PathBuf, &str); 6] = [
        (c.join("elf/liba.so"), "/usr/lib/liba.so"),
        (c.join("kmod/signed.ko"), "/lib/modules/6.1.0/kernel/x.ko"),
        (unit, "/etc/systemd/system/x.service"),
        (link, "/usr/lib/libx.so"),
        (t.path().to_path_buf(), "/usr/lib"),
        (c.join("pe/signed.dll"), "/Windows/System32/signed.dll"),
    ];
    // Each case is placed at its logical path inside a root of its own:
    // the inspector reads only below a root.
    for (i, (host, logical)) in cases.iter().enumerate() {
        let image = tempfile::tempdir().unwrap();
        let at = image.path().join(logical.trim_start_matches('/'));
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        let meta = std::fs::symlink_metadata(host).unwrap();
        if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(host).unwrap(), &at).unwrap();
        } else if meta.is_dir() {
            std::fs::create_dir_all(&at).unwrap();
        } else {
            std::fs::copy(host, &at).unwrap();
        }
        let root = libwarden::rootfs::Root::new(image.path()).unwrap();
        match libwarden::inspect::inspect_path(&root, logical.as_bytes().to_vec(), None) {
            libwarden::inspect::Outcome::Record(r, _) => {
                let mut v = Vec::new();
                r.encode_value(&mut v);
                assert!(libwarden::record::Record::decode_value(logical.as_bytes(), &v).is_some());
                std::fs::write(records.join(format!("r{i}")), v).unwrap();
            }
            _ => panic!("{}", host.display()),
        }
    }
}
