//! Fixture helper: a fake root (`etc/ld.so.conf` with includes, lib dirs,
//! real `.so` files compiled by gcc, symlink chains) in a temp dir, and a
//! runner for the built binary against it with `--root` and its own `--db`.

#![allow(dead_code)]

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// A temp dir holding `root/` (the fake system) and `state/` (the baseline).
pub struct TestRoot {
    pub dir: tempfile::TempDir,
}

impl TestRoot {
    /// An empty root with `etc/` and the usual merged-/usr layout:
    /// `lib -> usr/lib`, `lib64 -> usr/lib64`.
    pub fn new() -> TestRoot {
        let dir = tempfile::Builder::new()
            .prefix("lw-test")
            .tempdir()
            .unwrap();
        let t = TestRoot { dir };
        for d in [
            "root/etc/ld.so.conf.d",
            "root/usr/lib/x86_64-linux-gnu",
            "root/usr/lib64",
            "root/usr/local/lib",
            "state",
        ] {
            std::fs::create_dir_all(t.dir.path().join(d)).unwrap();
        }
        symlink("usr/lib", t.root().join("lib")).unwrap();
        symlink("usr/lib64", t.root().join("lib64")).unwrap();
        t
    }

    /// A Debian-like root: ld.so.conf with an include, libc.conf and the
    /// multiarch conf, a compiled libfoo with its symlink chain, a loader.
    pub fn debian() -> TestRoot {
        let t = TestRoot::new();
        t.write("etc/ld.so.conf", "include /etc/ld.so.conf.d/*.conf\n\n");
        t.write(
            "etc/ld.so.conf.d/libc.conf",
            "# libc default configuration\n/usr/local/lib\n",
        );
        t.write(
            "etc/ld.so.conf.d/x86_64-linux-gnu.conf",
            "# Multiarch support\n/usr/local/lib/x86_64-linux-gnu\n/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n",
        );
        t.write("etc/ld.so.cache", empty_ld_so_cache());
        t.compile_so(
            "usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3",
            "libfoo.so.1",
            "int foo(void){return 1;}",
        );
        t.link("libfoo.so.1.2.3", "usr/lib/x86_64-linux-gnu/libfoo.so.1");
        t.link("libfoo.so.1", "usr/lib/x86_64-linux-gnu/libfoo.so");
        t.compile_so(
            "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            "ld-linux-x86-64.so.2",
            LOADER_SOURCE,
        );
        t.link(
            "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            "usr/lib64/ld-linux-x86-64.so.2",
        );
        t
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("state/baseline")
    }

    /// Host path of a root-relative path.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    pub fn link(&self, target: &str, rel: &str) {
        symlink(target, self.path(rel)).unwrap();
    }

    /// Compiles C source into a real shared object at `rel` with `soname`.
    /// Extra gcc arguments (e.g. `-Wl,-rpath,/tmp/x`) can follow.
    pub fn compile_so(&self, rel: &str, soname: &str, source: &str) {
        self.compile_so_with(rel, soname, source, &[]);
    }

    pub fn compile_so_with(&self, rel: &str, soname: &str, source: &str, extra: &[&str]) {
        let out = self.path(rel);
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        let src = self
            .dir
            .path()
            .join(format!("src-{}.c", soname.replace('/', "_")));
        std::fs::write(&src, source).unwrap();
        let status = Command::new("gcc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(&out)
            .arg(&src)
            .arg(format!("-Wl,-soname,{soname}"))
            .args(extra)
            .status()
            .expect("gcc must be installed (.ci/run installs it)");
        assert!(status.success(), "gcc failed for {rel}");
    }

    /// Compiles an executable at `rel` (extra args for RPATH etc.).
    pub fn compile_exe(&self, rel: &str, source: &str, extra: &[&str]) {
        let out = self.path(rel);
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        let src = self.dir.path().join("src-exe.c");
        std::fs::write(&src, source).unwrap();
        let status = Command::new("gcc")
            .arg("-o")
            .arg(&out)
            .arg(&src)
            .args(extra)
            .status()
            .unwrap();
        assert!(status.success(), "gcc failed for {rel}");
    }

    /// Runs libwarden with `--root` and `--db` of this fixture.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// The command, for callers that need to spawn or tweak it.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.arg("--root")
            .arg(self.root())
            .arg("--db")
            .arg(self.db())
            .args(args);
        c.env_remove("LD_PRELOAD");
        c
    }

    /// `init` that must succeed.
    pub fn init(&self) {
        self.run_ok(&["init"]);
    }

    /// Runs libwarden and asserts exit 0 (stderr in the failure message).
    pub fn run_ok(&self, args: &[&str]) -> Output {
        let o = self.run(args);
        assert_eq!(
            o.status.code(),
            Some(0),
            "libwarden {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        o
    }

    /// `check --format json`: exit code and parsed findings.
    pub fn check_json(&self) -> (i32, Vec<Value>) {
        let o = self.run(&["--format", "json", "check"]);
        (o.status.code().unwrap_or(-1), json_lines(&o.stdout))
    }
}

/// A valid `glibc-ld.so.cache1.1` file with no entries: the 48-byte
/// header, little-endian.
pub fn empty_ld_so_cache() -> Vec<u8> {
    let mut b = b"glibc-ld.so.cache1.1".to_vec();
    b.extend_from_slice(&[0; 8]); // nlibs, len_strings
    b.push(2); // flags: little endian
    b.extend_from_slice(&[0; 19]); // padding, extension offset, unused
    b
}

/// C source of the fixture's stand-in loader: like glibc's, it holds the
/// name of the preload list (the audit checks that it still does).
pub const LOADER_SOURCE: &str = "__attribute__((used)) const char preload_list[] = \"/etc/ld.so.preload\";\nint ld(void){return 0;}\n";

/// The built binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_libwarden"))
}

/// Parses JSON Lines; panics on any invalid line (output must stay valid).
pub fn json_lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8(out.to_vec())
        .expect("stdout must be UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("invalid JSON line {l:?}: {e}")))
        .collect()
}

/// The finding for `path` of `kind`, if any.
pub fn find<'a>(findings: &'a [Value], kind: &str, path: &str) -> Option<&'a Value> {
    findings
        .iter()
        .find(|f| f["kind"] == kind && f["path"] == path)
}

/// True when the tests run as root (chown, unreadable-as-user tests).
pub fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

pub fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}
