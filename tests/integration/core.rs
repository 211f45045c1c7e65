//! init / check / update / paths against fixture roots.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::util::*;

#[test]
fn unchanged_root_checks_clean_and_quiet() {
    let t = TestRoot::debian();
    t.init();
    let o = t.run_ok(&["check"]);
    assert!(
        o.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no findings"), "summary: {err}");
}

#[test]
fn every_kind_of_change_is_reported() {
    let t = TestRoot::debian();
    t.compile_so(
        "usr/local/lib/libbar.so.1",
        "libbar.so.1",
        "int bar(void){return 2;}",
    );
    t.compile_so(
        "usr/local/lib/libgone.so.1",
        "libgone.so.1",
        "int gone(void){return 3;}",
    );
    t.link("libfoo.so.1.2.3", "usr/lib/x86_64-linux-gnu/libalias.so");
    t.init();

    // add, modify, remove, chmod, chown, retarget a symlink, hidden .x.so
    t.compile_so(
        "usr/lib/x86_64-linux-gnu/libnew.so.1",
        "libnew.so.1",
        "int n(void){return 4;}",
    );
    t.compile_so(
        "usr/local/lib/libbar.so.1",
        "libbar.so.1",
        "int bar(void){return 5;}",
    );
    std::fs::remove_file(t.path("usr/local/lib/libgone.so.1")).unwrap();
    std::fs::set_permissions(
        t.path("usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    std::fs::remove_file(t.path("usr/lib/x86_64-linux-gnu/libalias.so")).unwrap();
    t.link("libnew.so.1", "usr/lib/x86_64-linux-gnu/libalias.so");
    t.compile_so("usr/lib/.x.so", ".x.so", "int x(void){return 6;}");
    if is_root() {
        std::os::unix::fs::lchown(t.path("usr/local/lib"), Some(1234), None).unwrap();
    }

    let (code, f) = t.check_json();
    assert_eq!(code & 7, 7, "bits 1, 2 and 4 must be set: {code} {f:#?}");
    assert!(
        find(&f, "added", "/usr/lib/x86_64-linux-gnu/libnew.so.1").is_some(),
        "{f:#?}"
    );
    assert!(find(&f, "added", "/usr/lib/.x.so").is_some(), "{f:#?}");
    assert!(
        find(&f, "content", "/usr/local/lib/libbar.so.1").is_some(),
        "{f:#?}"
    );
    assert!(
        find(&f, "removed", "/usr/local/lib/libgone.so.1").is_some(),
        "{f:#?}"
    );
    let chmod = find(&f, "metadata", "/usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3").expect("chmod");
    assert_eq!(chmod["severity"], "high", "world-writable library: {chmod}");
    assert_eq!(chmod["before"]["mode"], "0755");
    assert_eq!(chmod["after"]["mode"], "0777");
    let link = find(&f, "link", "/usr/lib/x86_64-linux-gnu/libalias.so").expect("retarget");
    assert_eq!(link["after"]["target"], "libnew.so.1");
    if is_root() {
        let chown = find(&f, "metadata", "/usr/local/lib").expect("chown of a lib dir");
        assert_eq!(chown["after"]["uid"], 1234);
    }
    // Sorted by path.
    let paths: Vec<&str> = f.iter().map(|x| x["path"].as_str().unwrap()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted);
}

#[test]
fn update_accepts_everything_or_only_the_named_subtrees() {
    let t = TestRoot::debian();
    t.init();
    t.compile_so(
        "usr/local/lib/libone.so",
        "libone.so",
        "int one(void){return 1;}",
    );
    t.compile_so(
        "usr/lib/x86_64-linux-gnu/libtwo.so",
        "libtwo.so",
        "int two(void){return 2;}",
    );

    let o = t.run_ok(&["--format", "json", "update", "/usr/local/lib"]);
    let accepted = json_lines(&o.stdout);
    assert!(
        find(&accepted, "added", "/usr/local/lib/libone.so").is_some(),
        "{accepted:#?}"
    );
    assert!(accepted
        .iter()
        .all(|f| f["path"].as_str().unwrap().starts_with("/usr/local/lib")));

    let (code, f) = t.check_json();
    assert!(
        find(&f, "added", "/usr/local/lib/libone.so").is_none(),
        "accepted: {f:#?}"
    );
    assert!(
        find(&f, "added", "/usr/lib/x86_64-linux-gnu/libtwo.so").is_some(),
        "not accepted: {f:#?}"
    );
    assert_eq!(code, 1);

    // Through a symlinked spelling (merged /usr): /lib is /usr/lib.
    t.run_ok(&["update", "/lib/x86_64-linux-gnu/libtwo.so"]);
    assert_eq!(t.check_json(), (0, vec![]));

    let o = t.run(&["update", "/nowhere"]);
    assert_eq!(o.status.code(), Some(66));
    let o = t.run(&["update", "relative/path"]);
    assert_eq!(o.status.code(), Some(64));

    std::fs::remove_file(t.path("usr/local/lib/libone.so")).unwrap();
    assert_eq!(t.run(&["update"]).status.code(), Some(0));
    assert_eq!(t.check_json(), (0, vec![]));
}

#[test]
fn content_change_with_restored_mtime_is_caught_by_ctime() {
    let t = TestRoot::debian();
    t.compile_so(
        "usr/local/lib/libsame.so",
        "libsame.so",
        "int s(void){return 1;}",
    );
    t.init();
    let p = t.path("usr/local/lib/libsame.so");
    let before = std::fs::metadata(&p).unwrap();
    let mut bytes = std::fs::read(&p).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff; // same size
    std::fs::write(&p, &bytes).unwrap();
    // touch -r: put the old mtime back.
    let status = std::process::Command::new("touch")
        .arg("-d")
        .arg(format!("@{}.{:09}", before.mtime(), before.mtime_nsec()))
        .arg(&p)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(std::fs::metadata(&p).unwrap().mtime(), before.mtime());
    let (code, f) = t.check_json();
    let c = find(&f, "content", "/usr/local/lib/libsame.so")
        .expect("content change behind a reset mtime");
    assert_eq!(c["severity"], "high");
    assert_eq!(code, 4);
}

#[test]
fn paths_follow_ld_so_conf_includes_and_dedupe_merged_usr() {
    let t = TestRoot::debian();
    t.write(
        "etc/ld.so.conf",
        "include ld.so.conf.d/*.conf\n/opt/a:/opt/b,/opt/c  # comment\nhwcap 0 nosegneg\n",
    );
    t.write("etc/ld.so.conf.d/nested.conf", "include /etc/more/*.conf\n");
    t.write("etc/more/x.conf", "/opt/nested\ninclude /etc/ld.so.conf\n");
    std::fs::create_dir_all(t.path("opt/a")).unwrap();
    let o = t.run(&["--format", "json", "paths"]);
    assert_eq!(o.status.code(), Some(0));
    let p = json_lines(&o.stdout);
    let get = |path: &str| {
        p.iter()
            .find(|x| x["path"] == path)
            .unwrap_or_else(|| panic!("{path} missing: {p:#?}"))
    };
    assert_eq!(get("/opt/a")["origins"][0], "/etc/ld.so.conf:2");
    assert_eq!(get("/opt/c")["exists"], false);
    assert_eq!(get("/opt/nested")["origins"][0], "/etc/more/x.conf:1");
    // /lib and /usr/lib are one directory, walked once.
    let usr = get("/usr/lib");
    assert_eq!(usr["aliases"], serde_json::json!(["/lib", "/usr/lib"]));
    assert!(p.iter().all(|x| x["path"] != "/lib"));
    assert_eq!(get("/usr/lib/x86_64-linux-gnu")["covered_by"], "/usr/lib");
    assert_eq!(get("/etc/ld.so.preload")["exists"], false);
    assert_eq!(
        get("/usr/lib64/ld-linux-x86-64.so.2")["origins"][0],
        "dynamic loader"
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("more than once"), "include cycle noted: {err}");
}

#[test]
fn loader_files_appearing_are_reported_with_their_weight() {
    let t = TestRoot::debian();
    t.init();
    t.write("etc/ld.so.preload", "\n");
    t.write("etc/ld.so.conf.d/zz-evil.conf", "/dev/shm\n");
    t.write("etc/ld.so.conf.d/.hidden.conf", "/tmp\n");
    let (code, f) = t.check_json();
    assert_eq!(
        find(&f, "added", "/etc/ld.so.preload").expect("preload")["severity"],
        "critical"
    );
    assert_eq!(
        find(&f, "added", "/etc/ld.so.conf.d/zz-evil.conf").expect("conf")["severity"],
        "high"
    );
    assert!(
        find(&f, "added", "/etc/ld.so.conf.d/.hidden.conf").is_some(),
        "{f:#?}"
    );
    assert_eq!(code & 1, 1);
}

#[test]
fn absolute_symlinks_in_the_root_never_escape_it() {
    let t = TestRoot::debian();
    // An image whose ld.so.conf is a symlink to the host's: it must resolve
    // inside the image (where it does not exist), never to the host.
    std::fs::remove_file(t.path("etc/ld.so.conf")).unwrap();
    t.link("/etc/ld.so.conf.d/libc.conf", "etc/ld.so.conf");
    t.write("etc/ld.so.conf.d/libc.conf", "/opt/inside\n");
    t.link("/usr/lib", "usr/local/lib/escape");
    let o = t.run(&["--format", "json", "paths"]);
    let p = json_lines(&o.stdout);
    assert!(p.iter().any(|x| x["path"] == "/opt/inside"), "{p:#?}");
    t.init();
    let o = t.run(&["--format", "json", "check"]);
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn a_windows_image_is_baselined_and_checked() {
    let t = TestRoot::new();
    std::fs::create_dir_all(t.path("WINDOWS/system32/drivers")).unwrap();
    std::fs::create_dir_all(t.path("WINDOWS/SysWOW64")).unwrap();
    let mut dll = vec![0u8; 512];
    dll[..2].copy_from_slice(b"MZ");
    dll[60..64].copy_from_slice(&128u32.to_le_bytes());
    dll[128..132].copy_from_slice(b"PE\0\0");
    dll[128 + 22..128 + 24].copy_from_slice(&0x2102u16.to_le_bytes()); // DLL flag
    t.write("WINDOWS/system32/kernel32.dll", &dll);
    let o = t.run(&["--format", "json", "paths"]);
    let p = json_lines(&o.stdout);
    for d in ["/WINDOWS/system32", "/WINDOWS/SysWOW64", "/WINDOWS"] {
        assert!(
            p.iter()
                .any(|x| x["path"] == d && x["origins"][0] == "windows system dir"),
            "{d}: {p:#?}"
        );
    }
    t.init();
    t.write("WINDOWS/system32/evil.dll", &dll);
    t.write("WINDOWS/version.dll", &dll);
    let (code, f) = t.check_json();
    assert_eq!(
        find(&f, "added", "/WINDOWS/system32/evil.dll").expect("dll")["after"]["class"],
        "pe_dll"
    );
    assert!(find(&f, "added", "/WINDOWS/version.dll").is_some());
    // These hand-made DLLs carry no Authenticode signature: the default
    // policy for a Windows image flags them too (bit 8).
    assert!(find(&f, "unsigned", "/WINDOWS/system32/evil.dll").is_some());
    assert_eq!(code, 1 | 8);
}

/// A small deterministic generator, so a failing run can be replayed.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn killing_init_or_update_at_random_points_never_leaves_a_mixed_baseline() {
    let t = TestRoot::debian();
    for i in 0..1500 {
        t.write(
            &format!("usr/lib/many/d{}/lib{i}.so", i % 30),
            format!("library {i}"),
        );
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("seed {seed}");
    let mut rng = Lcg(seed);
    let kill_after = |rng: &mut Lcg, args: &[&str]| {
        let mut child = t
            .cmd(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_micros(rng.next(120_000)));
        let _ = child.kill();
        let _ = child.wait();
    };

    // Before any complete init: a check finds a complete baseline or none.
    for _ in 0..6 {
        kill_after(&mut rng, &["init", "--force"]);
        let (code, f) = t.check_json();
        assert!(
            code == 0 || code == 65,
            "seed {seed}: half an init read as a baseline: {code} {f:#?}"
        );
    }
    t.run(&["init", "--force"]);
    assert_eq!(t.check_json(), (0, vec![]));

    // Generation N is "lib0 says v0"; N+1 would say "v1". A killed update
    // leaves exactly one of them, never a mix and never corruption.
    for round in 0..8 {
        t.write("usr/lib/many/d0/lib0.so", format!("version {}", round + 1));
        kill_after(&mut rng, &["update"]);
        let (code, f) = t.check_json();
        assert!(
            code == 0 || code == 4,
            "seed {seed} round {round}: exit {code}: {f:#?}"
        );
        assert!(
            f.len() <= 1,
            "seed {seed}: more than the one changed file: {f:#?}"
        );
        t.run(&["update"]);
    }
}

/// A power cut at the K-th durable operation, for the test below: an
/// LD_PRELOAD shim over the libc calls that change what is on disk
/// (writes to regular files, fsync, fdatasync, sync_file_range, rename,
/// unlink, rmdir, mkdir, truncate, fallocate). `LW_CUT_MODE=count` writes
/// how many there were to `LW_CUT_COUNT` at exit. From the K-th on
/// (`LW_CUT_AT`), `drop` makes every one return success without touching
/// the disk (a file created after the cut is created in `LW_CUT_SCRATCH`
/// instead, `O_TRUNC` truncates nothing), so the process runs on believing
/// it wrote; `unsynced` does the same and first undoes every earlier write
/// no sync has made durable yet (the most a power cut may lose, in order);
/// `kill` SIGKILLs the process at the K-th (a crash: the page cache keeps
/// every earlier write).
const POWER_CUT_SHIM: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static long at = -1, n = 0;
static int mode = 0; /* 0 count, 1 drop, 2 kill, 3 unsynced */
static const char *scratch;

__attribute__((constructor)) static void init(void) {
    const char *m = getenv("LW_CUT_MODE"), *k = getenv("LW_CUT_AT");
    if (m && !strcmp(m, "drop")) mode = 1;
    if (m && !strcmp(m, "kill")) mode = 2;
    if (m && !strcmp(m, "unsynced")) mode = 3;
    if (k) at = atol(k);
    scratch = getenv("LW_CUT_SCRATCH");
}

__attribute__((destructor)) static void fini(void) {
    const char *p = getenv("LW_CUT_COUNT");
    if (mode == 0 && p) {
        int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        char b[32];
        int len = snprintf(b, sizeof b, "%ld\n", n);
        if (fd >= 0) { (void)!write(fd, b, len); close(fd); }
    }
}


/* unsynced: what each write before the cut overwrote, until a sync of its
   file makes it durable; at the cut every undo still held is applied, newest
   first, so the disk keeps only what was synced. */
struct undo { dev_t dev; ino_t ino; char path[512]; off_t off, oldsize; size_t len; char *old; struct undo *prev; };
static struct undo *undos;
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pread)(int, void *, size_t, off_t);
static void remember(int fd, off_t off, size_t len) {
    struct stat st;
    if (mode != 3 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return;
    if (!real_pread) real_pread = dlsym(RTLD_NEXT, "pread");
    struct undo *u = calloc(1, sizeof *u);
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t l = readlink(link, u->path, sizeof u->path - 1);
    if (l <= 0) { free(u); return; }
    u->path[l] = 0;
    u->dev = st.st_dev; u->ino = st.st_ino; u->off = off; u->len = len; u->oldsize = st.st_size;
    u->old = malloc(len ? len : 1);
    ssize_t got = off < st.st_size ? real_pread(fd, u->old, len, off) : 0;
    if (got < 0) got = 0;
    u->len = got; /* bytes beyond the old end go with the truncation */
    u->prev = undos; undos = u;
}
static void synced(int fd, off_t off, off_t len, int whole) {
    struct stat st;
    if (mode != 3 || fstat(fd, &st) != 0) return;
    for (struct undo **p = &undos; *p;) {
        struct undo *u = *p;
        if (u->dev == st.st_dev && u->ino == st.st_ino &&
            (whole || (u->off >= off && (len == 0 || u->off + (off_t)u->len <= off + len)))) {
            *p = u->prev; free(u->old); free(u);
        } else p = &u->prev;
    }
}
static void undo_all(void) {
    static int (*ro)(const char *, int, ...);
    static int (*rt)(int, off_t);
    if (!ro) ro = dlsym(RTLD_NEXT, "open");
    if (!rt) rt = dlsym(RTLD_NEXT, "ftruncate");
    if (!real_pwrite) real_pwrite = dlsym(RTLD_NEXT, "pwrite");
    for (struct undo *u = undos; u; u = u->prev) {
        int fd = ro(u->path, O_WRONLY);
        if (fd < 0) continue;
        struct stat st;
        if (fstat(fd, &st) == 0 && st.st_dev == u->dev && st.st_ino == u->ino) {
            if (u->len) (void)!real_pwrite(fd, u->old, u->len, u->off);
            if (st.st_size > u->oldsize) (void)!rt(fd, u->oldsize);
        }
        close(fd);
    }
    undos = 0;
}

/* True when this operation is lost: it is the cut or after it. */
static int lost(void) {
    if (mode == 0) { __atomic_add_fetch(&n, 1, __ATOMIC_SEQ_CST); return 0; }
    long i = __atomic_add_fetch(&n, 1, __ATOMIC_SEQ_CST);
    if (i < at) return 0;
    if (mode == 2) { kill(getpid(), SIGKILL); for (;;) pause(); }
    if (mode == 3 && i == at) undo_all();
    return 1;
}
static int cut(void) { return (mode == 1 || mode == 3) && n >= at; }

static int regular(int fd) {
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

#define REAL(ret, name, ...) \
    static ret (*real)(__VA_ARGS__); \
    if (!real) real = dlsym(RTLD_NEXT, name);

ssize_t write(int fd, const void *b, size_t c) {
    REAL(ssize_t, "write", int, const void *, size_t);
    if (regular(fd) && lost()) return c;
    remember(fd, lseek(fd, 0, SEEK_CUR), c);
    return real(fd, b, c);
}
ssize_t pwrite(int fd, const void *b, size_t c, off_t o) {
    REAL(ssize_t, "pwrite", int, const void *, size_t, off_t);
    if (regular(fd) && lost()) return c;
    remember(fd, o, c);
    return real(fd, b, c, o);
}
ssize_t pwrite64(int fd, const void *b, size_t c, off_t o) {
    REAL(ssize_t, "pwrite64", int, const void *, size_t, off_t);
    if (regular(fd) && lost()) return c;
    remember(fd, o, c);
    return real(fd, b, c, o);
}
static ssize_t iolen(const struct iovec *v, int k) {
    ssize_t s = 0;
    for (int i = 0; i < k; i++) s += v[i].iov_len;
    return s;
}
ssize_t writev(int fd, const struct iovec *v, int k) {
    REAL(ssize_t, "writev", int, const struct iovec *, int);
    if (regular(fd) && lost()) return iolen(v, k);
    remember(fd, lseek(fd, 0, SEEK_CUR), iolen(v, k));
    return real(fd, v, k);
}
ssize_t pwritev(int fd, const struct iovec *v, int k, off_t o) {
    REAL(ssize_t, "pwritev", int, const struct iovec *, int, off_t);
    if (regular(fd) && lost()) return iolen(v, k);
    remember(fd, o, iolen(v, k));
    return real(fd, v, k, o);
}
ssize_t pwritev64(int fd, const struct iovec *v, int k, off_t o) {
    REAL(ssize_t, "pwritev64", int, const struct iovec *, int, off_t);
    if (regular(fd) && lost()) return iolen(v, k);
    remember(fd, o, iolen(v, k));
    return real(fd, v, k, o);
}
int fsync(int fd) {
    REAL(int, "fsync", int);
    if (lost()) return 0;
    synced(fd, 0, 0, 1);
    return real(fd);
}
int fdatasync(int fd) {
    REAL(int, "fdatasync", int);
    if (lost()) return 0;
    synced(fd, 0, 0, 1);
    return real(fd);
}
int sync_file_range(int fd, off_t o, off_t c, unsigned f) {
    REAL(int, "sync_file_range", int, off_t, off_t, unsigned);
    if (lost()) return 0;
    if (f & SYNC_FILE_RANGE_WAIT_AFTER) synced(fd, o, c, 0);
    return real(fd, o, c, f);
}
int rename(const char *a, const char *b) {
    REAL(int, "rename", const char *, const char *);
    if (lost()) return 0;
    return real(a, b);
}
int renameat(int d1, const char *a, int d2, const char *b) {
    REAL(int, "renameat", int, const char *, int, const char *);
    if (lost()) return 0;
    return real(d1, a, d2, b);
}
int renameat2(int d1, const char *a, int d2, const char *b, unsigned f) {
    REAL(int, "renameat2", int, const char *, int, const char *, unsigned);
    if (lost()) return 0;
    return real(d1, a, d2, b, f);
}
int unlink(const char *p) {
    REAL(int, "unlink", const char *);
    if (lost()) return 0;
    return real(p);
}
int unlinkat(int d, const char *p, int f) {
    REAL(int, "unlinkat", int, const char *, int);
    if (lost()) return 0;
    return real(d, p, f);
}
int rmdir(const char *p) {
    REAL(int, "rmdir", const char *);
    if (lost()) return 0;
    return real(p);
}
int mkdir(const char *p, mode_t m) {
    REAL(int, "mkdir", const char *, mode_t);
    if (lost()) { struct stat st; if (stat(p, &st) == 0) { errno = EEXIST; return -1; } return 0; }
    return real(p, m);
}
int ftruncate(int fd, off_t l) {
    REAL(int, "ftruncate", int, off_t);
    if (lost()) return 0;
    return real(fd, l);
}
int ftruncate64(int fd, off_t l) {
    REAL(int, "ftruncate64", int, off_t);
    if (lost()) return 0;
    return real(fd, l);
}
int fallocate(int fd, int m, off_t o, off_t l) {
    REAL(int, "fallocate", int, int, off_t, off_t);
    if (lost()) return 0;
    return real(fd, m, o, l);
}
int fallocate64(int fd, int m, off_t o, off_t l) {
    REAL(int, "fallocate64", int, int, off_t, off_t);
    if (lost()) return 0;
    return real(fd, m, o, l);
}

/* After the cut nothing new reaches the disk: a file created then is
   created in the scratch directory, and O_TRUNC does not truncate. */
static int reopen(int (*real)(int, const char *, int, ...), int dir, const char *p,
                  int flags, mode_t m) {
    if (cut() && (flags & (O_CREAT | O_TRUNC))) {
        struct stat st;
        if (fstatat(dir, p, &st, 0) != 0 && (flags & O_CREAT) && scratch) {
            char tmp[4096];
            snprintf(tmp, sizeof tmp, "%s/f%ld-%d", scratch, n, rand());
            return real(AT_FDCWD, tmp, flags & ~O_TRUNC, m);
        }
        flags &= ~O_TRUNC;
        if (flags & O_EXCL) { errno = EEXIST; return -1; }
    }
    return real(dir, p, flags, m);
}
static int openat_any(const char *name, int dir, const char *p, int flags, mode_t m) {
    static int (*ra)(int, const char *, int, ...), (*ra64)(int, const char *, int, ...);
    if (!ra) ra = dlsym(RTLD_NEXT, "openat");
    if (!ra64) ra64 = dlsym(RTLD_NEXT, "openat64");
    return reopen(name[6] ? ra64 : ra, dir, p, flags, m);
}
#define MODE_ARG mode_t m = 0; if (f & (O_CREAT | O_TMPFILE)) { va_list a; va_start(a, f); m = va_arg(a, int); va_end(a); }
int open(const char *p, int f, ...) { MODE_ARG return openat_any("openat", AT_FDCWD, p, f, m); }
int open64(const char *p, int f, ...) { MODE_ARG return openat_any("openat64", AT_FDCWD, p, f, m); }
int openat(int d, const char *p, int f, ...) { MODE_ARG return openat_any("openat", d, p, f, m); }
int openat64(int d, const char *p, int f, ...) { MODE_ARG return openat_any("openat64", d, p, f, m); }
"#;

/// `check --format json` with the plain binary after a cut: the exit
/// code, the set of (kind, path) found, the generation judged against
/// (from the summary) and stderr.
fn judged(t: &TestRoot, db: &std::path::Path) -> (i32, Vec<(String, String)>, Option<u64>, String) {
    let o = std::process::Command::new(bin())
        .arg("--root")
        .arg(t.root())
        .arg("--db")
        .arg(db)
        .args(["--format", "json", "check"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let mut found: Vec<(String, String)> = json_lines(&o.stdout)
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap().into(),
                f["path"].as_str().unwrap().into(),
            )
        })
        .collect();
    found.sort();
    let generation = err
        .split("against baseline generation ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|g| g.parse().ok());
    (o.status.code().unwrap_or(-1), found, generation, err)
}

#[test]
fn writes_dropped_after_any_point_of_an_update_leave_generation_n_or_n_minus_1() {
    let t = TestRoot::debian();
    for i in 0..400 {
        t.write(
            &format!("usr/lib/many/d{}/lib{i}.so", i % 10),
            format!("library {i}"),
        );
    }
    // The shim and a copy of the (dynamically linked) binary live beside
    // the root, never inside the scanned tree.
    let tools = t.dir.path().join("power-cut");
    let scratch = tools.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let src = tools.join("shim.c");
    std::fs::write(&src, POWER_CUT_SHIM).unwrap();
    let shim = tools.join("shim.so");
    let st = std::process::Command::new("gcc")
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&shim)
        .arg(&src)
        .arg("-ldl")
        .status()
        .unwrap();
    assert!(st.success(), "the shim does not build");
    let lw = tools.join("libwarden");
    std::fs::copy(bin(), &lw).unwrap();
    let run = |db: &std::path::Path, args: &[&str], mode: &str, at: usize, count: &str| {
        std::process::Command::new(&lw)
            .arg("--root")
            .arg(t.root())
            .arg("--db")
            .arg(db)
            .arg("-q")
            .args(args)
            .env("LD_PRELOAD", &shim)
            .env("LW_CUT_MODE", mode)
            .env("LW_CUT_AT", at.to_string())
            .env("LW_CUT_SCRATCH", &scratch)
            .env("LW_CUT_COUNT", tools.join(count))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
    };
    // Generation 1: lib0 says v1, libadded does not exist; generation 2:
    // lib0 says v2 and libadded exists. Anything else is a mix.
    let lib0 = "usr/lib/many/d0/lib0.so";
    let added = "usr/lib/many/d1/libadded.so";
    let gen1_state = |t: &TestRoot| {
        t.write(lib0, "version 1");
        let _ = std::fs::remove_file(t.path(added));
    };
    let gen2_state = |t: &TestRoot| {
        t.write(lib0, "version 2");
        t.write(added, "added in generation 2");
    };
    let gen1_findings = vec![
        ("added".to_string(), format!("/{added}")),
        ("content".to_string(), format!("/{lib0}")),
    ];
    // How many durable operations init and update make.
    let counted = |name: &str| -> usize {
        std::fs::read_to_string(tools.join(name))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let golden = tools.join("golden/db");
    std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
    gen1_state(&t);
    assert!(run(&golden, &["init"], "count", 0, "init.count").success());
    let n_init = counted("init.count");
    // A reader opens the store too: a `check` on the first generation.
    let probe = tools.join("probe/db");
    copy_baseline(&golden, &probe);
    // (Exit 8 at most: the audit reports the shim in LD_PRELOAD.)
    let st = run(&probe, &["check"], "count", 0, "check.count");
    assert!(st.code().is_some_and(|c| c & !8 == 0), "check: {st:?}");
    let n_check = counted("check.count");
    let probe = tools.join("probe2/db");
    copy_baseline(&golden, &probe);
    gen2_state(&t);
    assert!(run(&probe, &["update"], "count", 0, "update.count").success());
    let n_update = counted("update.count");
    eprintln!("durable operations: init {n_init}, check {n_check}, update {n_update}");
    assert!(n_init > 3 && n_update > 3, "the shim sees nothing");

    let phases = [("init", n_init), ("check", n_check), ("update", n_update)];
    let mut failures = Vec::new();
    let modes = ["drop", "unsynced", "kill"];
    for mode in modes {
        for (phase, n) in phases {
            for k in 1..=n {
                let db = tools.join(format!("{mode}-{phase}-{k}/db"));
                gen1_state(&t);
                if phase == "init" {
                    run(&db, &["init"], mode, k, "unused");
                } else {
                    copy_baseline(&golden, &db);
                    if phase == "update" {
                        gen2_state(&t);
                    }
                    run(&db, &[phase], mode, k, "unused");
                }
                // The power is back: generation 2's files are on disk.
                gen2_state(&t);
                let (code, found, generation, err) = judged(&t, &db);
                let ok = match (phase, generation) {
                    // A cut init leaves no baseline, or files of an
                    // unfinished first generation and no pointer (which
                    // `init` refuses to replace without --force), or a
                    // complete generation 1.
                    ("init", None) => {
                        code == 65
                            && (err.contains("no baseline")
                                || err.contains("no pointer to a current generation"))
                    }
                    (_, Some(1)) => code == 5 && found == gen1_findings,
                    ("update", Some(2)) => code == 0 && found.is_empty(),
                    _ => false,
                };
                // And the baseline takes the next update.
                let next = ok
                    && (generation.is_none() || {
                        let o = std::process::Command::new(bin())
                            .arg("--root")
                            .arg(t.root())
                            .arg("--db")
                            .arg(&db)
                            .args(["-q", "update"])
                            .output()
                            .unwrap();
                        o.status.success() && judged(&t, &db).0 == 0
                    });
                if !next {
                    failures.push(format!(
                        "{mode} at operation {k} of {n} ({phase}): exit {code}, generation \
                         {generation:?}, findings {found:?}, stderr: {}",
                        err.trim()
                    ));
                }
                let _ = std::fs::remove_dir_all(db.parent().unwrap());
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cuts left neither generation 1 nor 2:\n{}",
        failures.len(),
        modes.len() * (n_init + n_check + n_update),
        failures.join("\n")
    );
}

/// Copies a baseline directory and its rollback state (`<db>.generations`).
fn copy_baseline(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    assert!(std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap()
        .success());
    let state = |db: &std::path::Path| {
        let mut s = db.as_os_str().to_owned();
        s.push(".generations");
        std::path::PathBuf::from(s)
    };
    if state(from).exists() {
        std::fs::copy(state(from), state(to)).unwrap();
    }
}
