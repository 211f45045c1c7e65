//! The Linux directory-fd walker gives what the portable walker gives.
//!
//! Each test builds a fixture tree, scans it with both walkers
//! (`scan::Walker::Native`, `scan::Walker::Portable`) and asserts the same
//! records (every field, digests and facts included) and the same
//! warnings. Both run in-process through the library, as `check` and
//! `init` run them.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use libwarden::record::{FileType, Record};
use libwarden::rootfs::Root;
use libwarden::scan::{self, ScanOptions, ScanResult, Walker};
use libwarden::searchpaths::SearchPaths;

use crate::util::{self, TestRoot};

fn warnings(r: &ScanResult) -> Vec<(String, String)> {
    r.warnings
        .iter()
        .map(|w| {
            (
                String::from_utf8_lossy(&w.path).into_owned(),
                w.message.clone(),
            )
        })
        .collect()
}

fn paths(r: &[Record]) -> Vec<String> {
    r.iter()
        .map(|r| String::from_utf8_lossy(&r.path).into_owned())
        .collect()
}

/// Asserts both results are the same, record by record (a readable
/// message for the first difference), and returns the native one.
fn same(native: ScanResult, portable: ScanResult) -> ScanResult {
    assert_eq!(
        paths(&native.records),
        paths(&portable.records),
        "the same paths"
    );
    for (a, b) in native.records.iter().zip(&portable.records) {
        assert_eq!(
            a,
            b,
            "the same record for {}",
            String::from_utf8_lossy(&a.path)
        );
        assert_eq!(
            a.facts.as_deref(),
            b.facts.as_deref(),
            "the same facts for {}",
            String::from_utf8_lossy(&a.path)
        );
    }
    assert_eq!(warnings(&native), warnings(&portable), "the same warnings");
    assert_eq!(native.stats.files, portable.stats.files);
    assert_eq!(native.stats.hashed_files, portable.stats.hashed_files);
    native
}

/// Both walkers over host directories (everything hashed, as `bench`).
fn both_trees(dirs: &[&Path], opts: &ScanOptions) -> ScanResult {
    let n = scan::scan_trees_with(dirs, opts, Walker::Native);
    let p = scan::scan_trees_with(dirs, opts, Walker::Portable);
    same(n, p)
}

/// Both walkers over what the root's search paths name, confined below
/// the root, with `prior` as the baseline (as `check`).
fn both_rooted(root: &Path, extra: &[PathBuf], opts: &ScanOptions, prior: &[Record]) -> ScanResult {
    let root = Root::new(root).unwrap();
    let sp = SearchPaths::resolve(&root, extra, None);
    let n = scan::scan_with(&root, &sp, opts, prior, Walker::Native);
    let p = scan::scan_with(&root, &sp, opts, prior, Walker::Portable);
    same(n, p)
}

fn find<'a>(r: &'a ScanResult, path: &[u8]) -> Option<&'a Record> {
    r.records.iter().find(|x| x.path == path)
}

/// Names a walker could trip on: hidden, leading dash, spaces, a newline,
/// bytes that are not UTF-8, the longest name allowed; and the ignore
/// files a walker must not honour.
fn odd_names(dir: &Path) {
    for name in [
        &b".hidden"[..],
        b"-rf",
        b"with space",
        b"new\nline",
        b"\xff\xfe-not-utf8",
        b"tab\there",
        b"*glob?[x]",
    ] {
        std::fs::write(dir.join(OsStr::from_bytes(name)), name).unwrap();
    }
    std::fs::write(dir.join("a".repeat(255)), b"long").unwrap();
    std::fs::create_dir(dir.join(".hidden-dir")).unwrap();
    std::fs::write(
        dir.join(".hidden-dir/libhidden.so.1"),
        b"\x7fELF not really",
    )
    .unwrap();
    std::fs::create_dir(dir.join(OsStr::from_bytes(b"dir-\xc3\x28"))).unwrap();
    std::fs::write(dir.join(OsStr::from_bytes(b"dir-\xc3\x28/inner")), b"x").unwrap();
    // An attacker's planted ignore files hide nothing.
    std::fs::write(dir.join(".ignore"), "*\n").unwrap();
    std::fs::write(dir.join(".gitignore"), "*\n").unwrap();
    std::fs::write(dir.join(".hidden-dir/.ignore"), "*\n").unwrap();
}

/// Symlinks of every awkward kind: loops, to the parent, to the outside,
/// dangling, a chain.
fn links(dir: &Path) {
    symlink("loop-b", dir.join("loop-a")).unwrap();
    symlink("loop-a", dir.join("loop-b")).unwrap();
    symlink("self", dir.join("self")).unwrap();
    symlink("..", dir.join("up")).unwrap();
    symlink(".", dir.join("here")).unwrap();
    symlink("/etc", dir.join("outside")).unwrap();
    symlink("/nonexistent/lib.so", dir.join("dangling")).unwrap();
    std::fs::write(dir.join("libreal.so.1.2"), b"real").unwrap();
    symlink("libreal.so.1.2", dir.join("libreal.so.1")).unwrap();
    symlink("libreal.so.1", dir.join("libreal.so")).unwrap();
}

/// A chain of `depth` nested directories, a file at every level.
fn deep(dir: &Path, depth: usize) {
    let mut p = dir.to_path_buf();
    for i in 0..depth {
        p.push(format!("d{i}"));
        std::fs::create_dir(&p).unwrap();
        std::fs::write(p.join("f"), format!("{i}")).unwrap();
    }
}

/// FIFOs, a socket and (as root) devices: recorded, never opened (a FIFO
/// opened for reading without O_NONBLOCK would hang the walk).
fn specials(dir: &Path) {
    util::mkfifo(&dir.join("fifo"), 0o644);
    util::mkfifo(&dir.join("libfifo.so"), 0o644);
    let _sock = std::os::unix::net::UnixListener::bind(dir.join("sock")).unwrap();
    if util::is_root() {
        for (name, kind) in [("chr", libc::S_IFCHR), ("blk", libc::S_IFBLK)] {
            let c = std::ffi::CString::new(dir.join(name).as_os_str().as_bytes()).unwrap();
            // SAFETY: c is NUL-terminated; /dev/null's numbers (1, 3).
            let rc = unsafe { libc::mknod(c.as_ptr(), kind | 0o600, libc::makedev(1, 3)) };
            assert_eq!(rc, 0, "mknod {name}");
        }
    } else {
        eprintln!("SKIPPED: device nodes in the walker fixture need root");
    }
}

/// A compiled library and a plain copy (ELF facts on both walkers).
fn libraries(t: &TestRoot, rel: &str) {
    t.compile_so(
        &format!("{rel}/libwalk.so.1"),
        "libwalk.so.1",
        "int walk(void) { return 1; }\n",
    );
}

#[test]
fn odd_names_links_deep_trees_and_special_files_give_the_same_records() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("lib");
    std::fs::create_dir(&d).unwrap();
    odd_names(&d);
    links(&d);
    deep(&d, 120);
    std::fs::create_dir(d.join("specials")).unwrap();
    specials(&d.join("specials"));
    std::fs::create_dir(d.join("empty")).unwrap();
    let opts = ScanOptions::with_threads(2);
    let r = both_trees(&[&d], &opts);

    let b = |s: &str| d.join(s).into_os_string().into_vec();
    use std::os::unix::ffi::OsStringExt;
    // The odd names are all there, hidden ones and those under .ignore too.
    for name in [
        ".hidden",
        "-rf",
        "with space",
        "new\nline",
        ".hidden-dir/libhidden.so.1",
    ] {
        assert!(find(&r, &b(name)).is_some(), "{name} recorded");
    }
    let raw = [d.as_os_str().as_bytes(), b"/\xff\xfe-not-utf8"].concat();
    assert!(
        find(&r, &raw).is_some(),
        "the non-UTF-8 name is recorded as its bytes"
    );
    // Symlinks are recorded with their targets, never followed.
    let up = find(&r, &b("up")).unwrap();
    assert_eq!(up.ftype, FileType::Symlink);
    assert_eq!(up.target.as_deref(), Some(&b".."[..]));
    assert!(
        find(&r, &b("outside/passwd")).is_none(),
        "a symlink to /etc is not walked"
    );
    assert!(find(&r, &b("here/libreal.so.1.2")).is_none());
    // The whole depth, and nothing opened that must not be.
    let deepest: String = (0..120).map(|i| format!("d{i}/")).collect::<String>() + "f";
    assert!(find(&r, &b(&deepest)).is_some(), "120 levels deep");
    assert_eq!(find(&r, &b("specials/fifo")).unwrap().ftype, FileType::Fifo);
    assert_eq!(
        find(&r, &b("specials/sock")).unwrap().ftype,
        FileType::Socket
    );
    assert!(find(&r, &b("specials/libfifo.so"))
        .unwrap()
        .blake3
        .is_none());
    assert!(r.warnings.is_empty(), "no warnings: {:?}", warnings(&r));
}

/// Drops the calling thread's capabilities to bypass file permissions
/// (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), so a mode-000 directory is as
/// unreadable to a root test run as to anyone. Capabilities are per
/// thread, and threads started from this one inherit them: the walk's
/// threads see the same, other tests are untouched (called on a thread
/// that ends with the scan).
fn drop_dac_capabilities() {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut h = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let mut d = [Data::default(); 2];
    // SAFETY: capget/capset with a v3 header and two data words.
    unsafe {
        assert_eq!(libc::syscall(libc::SYS_capget, &mut h, d.as_mut_ptr()), 0);
        d[0].effective &= !((1 << 1) | (1 << 2));
        assert_eq!(libc::syscall(libc::SYS_capset, &mut h, d.as_ptr()), 0);
    }
}

#[test]
fn unreadable_directories_and_files_give_the_same_warnings() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("lib");
    std::fs::create_dir_all(d.join("locked/inner")).unwrap();
    std::fs::write(d.join("locked/libsecret.so"), b"secret").unwrap();
    std::fs::create_dir(d.join("nolist")).unwrap();
    std::fs::write(d.join("nolist/f"), b"x").unwrap();
    std::fs::create_dir(d.join("nosearch")).unwrap();
    std::fs::write(d.join("nosearch/f"), b"x").unwrap();
    std::fs::write(d.join("unreadable.so"), b"x").unwrap();
    let mode = |p: &str, m: u32| {
        std::fs::set_permissions(d.join(p), std::fs::Permissions::from_mode(m)).unwrap()
    };
    mode("locked", 0o000);
    mode("nolist", 0o311); // search, no read: cannot be listed
    mode("nosearch", 0o644); // read, no search: listed, entries not reachable
    mode("unreadable.so", 0o000);
    // A thread of its own: its capabilities, and its walk's, are dropped.
    let r = std::thread::scope(|s| {
        s.spawn(|| {
            if util::is_root() {
                drop_dac_capabilities();
            }
            both_trees(&[&d], &ScanOptions::with_threads(2))
        })
        .join()
        .unwrap()
    });
    let w = warnings(&r);
    let locked = d.join("locked").to_string_lossy().into_owned();
    assert!(
        w.iter()
            .any(|(p, m)| *p == locked && m.contains("Permission denied")),
        "the locked dir is warned about: {w:?}"
    );
    let nolist = d.join("nolist").to_string_lossy().into_owned();
    assert!(w.iter().any(|(p, _)| *p == nolist), "{w:?}");
    // The directories themselves are recorded, their content is not.
    assert!(find(&r, d.join("locked").as_os_str().as_bytes()).is_some());
    assert!(find(&r, d.join("locked/libsecret.so").as_os_str().as_bytes()).is_none());
    let u = find(&r, d.join("unreadable.so").as_os_str().as_bytes()).unwrap();
    assert!(
        u.blake3.is_none(),
        "an unreadable file is recorded unhashed"
    );
    for p in ["locked", "nolist", "nosearch"] {
        mode(p, 0o755);
    }
}

#[test]
fn excludes_depth_limits_and_the_baseline_give_the_same_records_below_a_root() {
    let t = TestRoot::debian();
    let lib = "usr/lib/x86_64-linux-gnu";
    libraries(&t, lib);
    odd_names(&t.path(lib));
    links(&t.path(lib));
    deep(&t.path(lib), 10);
    std::fs::create_dir_all(t.path("usr/lib/x86_64-linux-gnu/skipme/sub")).unwrap();
    t.write("usr/lib/x86_64-linux-gnu/skipme/sub/libx.so", b"x");
    t.write("usr/lib/x86_64-linux-gnu/libkeep.so.debug", b"x");
    // /lib inside the root is a symlink to usr/lib: both walkers record
    // below the canonical path only.
    let mut opts = ScanOptions::with_threads(2);
    let mut g = globset::GlobSetBuilder::new();
    g.add(globset::Glob::new("**/skipme").unwrap());
    g.add(globset::Glob::new("*.debug").unwrap());
    opts.excludes = Arc::new(g.build().unwrap());
    let first = both_rooted(&t.root(), &[], &opts, &[]);
    let has = |r: &ScanResult, p: &str| find(r, p.as_bytes()).is_some();
    assert!(has(&first, "/usr/lib/x86_64-linux-gnu/libwalk.so.1"));
    assert!(has(&first, "/usr/lib/x86_64-linux-gnu/d0/d1/d2/f"));
    assert!(
        !has(&first, "/usr/lib/x86_64-linux-gnu/skipme"),
        "excluded dir"
    );
    assert!(!has(&first, "/usr/lib/x86_64-linux-gnu/skipme/sub/libx.so"));
    assert!(!has(&first, "/usr/lib/x86_64-linux-gnu/libkeep.so.debug"));
    let elf = find(&first, b"/usr/lib/x86_64-linux-gnu/libwalk.so.1").unwrap();
    assert!(elf.facts.is_some(), "ELF facts from the walk's read");

    // An unchanged check: the baseline's digests kept, nothing read.
    let mut opts = opts.clone();
    opts.paranoid = false;
    let again = both_rooted(&t.root(), &[], &opts, &first.records);
    assert_eq!(again.stats.hashed_files, 0, "nothing re-read");
    assert_eq!(again.records, first.records);
    // One changed file is read again, by both walkers.
    t.write(&format!("{lib}/libreal.so.1.2"), b"changed!");
    let changed = both_rooted(&t.root(), &[], &opts, &first.records);
    assert_eq!(changed.stats.hashed_files, 1);
}

#[test]
fn packaged_files_through_the_md5_lanes_give_the_same_records_and_md5s() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("lib");
    std::fs::create_dir(&d).unwrap();
    let mut md5 = libwarden::pkgdigest::DigestPaths::default();
    // Files of many sizes in several directories, all "packaged": the
    // lanes hold some while the walk moves on to other directories. The
    // first directory's files go out in several batches (32 each), after
    // its subdirectory.
    for sub in 0..6 {
        let s = match sub {
            5 => d.join("pkg0/deeper"),
            _ => d.join(format!("pkg{sub}")),
        };
        std::fs::create_dir(&s).unwrap();
        for i in 0..if sub == 0 { 100 } else { 25usize } {
            let p = s.join(format!("lib{i}.so"));
            let len = (i * 7919 + sub * 104_729) % (48 << 10);
            std::fs::write(&p, vec![(i + sub) as u8; len]).unwrap();
            md5.insert(p.as_os_str().as_bytes(), libwarden::pkgdigest::Algo::Md5);
        }
    }
    let mut opts = ScanOptions::with_threads(2);
    opts.digest_paths = Some(Arc::new(md5));
    let n = scan::scan_trees_with(&[&d], &opts, Walker::Native);
    let p = scan::scan_trees_with(&[&d], &opts, Walker::Portable);
    assert_eq!(n.digests, p.digests, "the same MD5s");
    assert_eq!(
        n.records
            .iter()
            .filter(|r| r.path.ends_with(b".so"))
            .count(),
        225
    );
    assert!(!n.digests.is_empty(), "MD5s computed in the walk's read");
    same(n, p);
}

#[test]
fn a_directory_swapped_for_a_symlink_is_not_walked_into() {
    // The swap itself cannot be timed against a running walk; what it
    // leaves is checked: a walk root whose subdirectory is now a symlink
    // to the outside, and a walk root that is itself one, list nothing
    // from the other side with either walker.
    let t = TestRoot::new();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("libevil.so"), b"evil").unwrap();
    t.write("usr/lib/x86_64-linux-gnu/libok.so", b"ok");
    symlink(outside.path(), t.path("usr/lib/x86_64-linux-gnu/swapped")).unwrap();
    let opts = ScanOptions::with_threads(2);
    let extra = [PathBuf::from("/usr/lib/x86_64-linux-gnu")];
    let r = both_rooted(&t.root(), &extra, &opts, &[]);
    assert!(r.records.iter().all(|x| !x.path.ends_with(b"libevil.so")));
    let s = find(&r, b"/usr/lib/x86_64-linux-gnu/swapped").unwrap();
    assert_eq!(s.ftype, FileType::Symlink);
}
