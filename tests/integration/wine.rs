//! The Windows build, run under Wine: it baselines `C:\windows\system32`
//! of a fresh `WINEPREFIX`, finds a dropped DLL, and reads the live
//! registry (through the registry API, which Wine implements) for
//! `SafeDllSearchMode` and `AppInit_DLLs` set with `wine reg add`, and
//! `watch` reports a DLL dropped while it runs (notify's Windows backend,
//! `ReadDirectoryChangesW`, which Wine maps to inotify).
//!
//! Needs the Rust target `x86_64-pc-windows-gnu` (the test builds
//! `libwarden.exe` with it into `target/windows`; or give a build in
//! `LIBWARDEN_WINDOWS_EXE`), `wine` and `x86_64-w64-mingw32-gcc`. Without
//! them each test says so loudly on stderr and passes.
//!
//! Wine 8 has no `ProcessPrng` in `bcryptprimitives.dll`, which Rust's
//! standard library imports; a shim DLL built here that forwards it to
//! `SystemFunction036` (advapi32) is put beside the executable, where
//! Windows looks first. It is test scaffolding, never shipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::util::json_lines;

const SHIM: &str = r#"#include <windows.h>
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG len);
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG n = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!SystemFunction036(data, n)) return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}
"#;

pub(crate) fn skip(why: &str) {
    eprintln!("\n*** SKIPPED Wine test: {why} ***\n");
}

/// The Windows build to run: `LIBWARDEN_WINDOWS_EXE`, or a debug build
/// made here (once per test run, in its own target dir so it does not wait
/// on the lock of the `cargo test` that runs us). `None` only when the
/// Rust target is not installed; a failing build with the target present
/// is a test failure.
fn windows_exe() -> Option<PathBuf> {
    use std::sync::OnceLock;
    static EXE: OnceLock<Option<PathBuf>> = OnceLock::new();
    if let Some(p) = std::env::var_os("LIBWARDEN_WINDOWS_EXE") {
        return Some(PathBuf::from(p));
    }
    EXE.get_or_init(|| {
        const TARGET: &str = "x86_64-pc-windows-gnu";
        let libdir = Command::new("rustc")
            .args(["--print", "target-libdir", "--target", TARGET])
            .output()
            .ok()?;
        let libdir = PathBuf::from(String::from_utf8_lossy(&libdir.stdout).trim());
        if !libdir.is_dir() {
            return None;
        }
        let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let target_dir = manifest_dir.join("target/windows");
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--locked",
                "--bin",
                "libwarden",
                "--target",
                TARGET,
            ])
            .env("CARGO_TARGET_DIR", &target_dir)
            .current_dir(&manifest_dir)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "the Windows build failed");
        Some(target_dir.join(TARGET).join("debug/libwarden.exe"))
    })
    .clone()
}

fn works(cmd: &str, arg: &str) -> bool {
    Command::new(cmd)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A fresh Wine prefix and the Windows build with its shim.
pub(crate) struct Wine {
    pub(crate) dir: tempfile::TempDir,
}

impl Wine {
    pub(crate) fn new() -> Option<Wine> {
        let Some(exe) = windows_exe() else {
            skip("the Rust target is not installed: `rustup target add x86_64-pc-windows-gnu` (.ci/deps does it)");
            return None;
        };
        if !works("wine", "--version") {
            skip("wine not installed (Debian: apt-get install wine64)");
            return None;
        }
        if !works("x86_64-w64-mingw32-gcc", "--version") {
            skip("x86_64-w64-mingw32-gcc not installed (gcc-mingw-w64-x86-64)");
            return None;
        }
        let dir = tempfile::Builder::new().prefix("lw-wine").tempdir().ok()?;
        let w = Wine { dir };
        std::fs::create_dir_all(w.bin()).ok()?;
        std::fs::create_dir_all(w.dir.path().join("home")).ok()?;
        std::fs::copy(&exe, w.bin().join("libwarden.exe")).ok()?;
        let src = w.dir.path().join("shim.c");
        std::fs::write(&src, SHIM).ok()?;
        let st = Command::new("x86_64-w64-mingw32-gcc")
            .args(["-shared", "-O2", "-o"])
            .arg(w.bin().join("bcryptprimitives.dll"))
            .arg(&src)
            .arg("-ladvapi32")
            .status()
            .ok()?;
        assert!(st.success(), "building the ProcessPrng shim failed");
        let o = w.wine(&["wineboot", "--init"]);
        assert!(o.status.success(), "wineboot: {o:?}");
        Some(w)
    }

    pub(crate) fn bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    pub(crate) fn prefix(&self) -> PathBuf {
        self.dir.path().join("prefix")
    }

    pub(crate) fn c(&self, rel: &str) -> PathBuf {
        self.prefix().join("drive_c").join(rel)
    }

    /// `wine ARGS` in this prefix, from the directory of the build.
    pub(crate) fn wine(&self, args: &[&str]) -> Output {
        self.output(self.wine_cmd(args))
    }

    /// Runs `c` to its exit with its output in files, not pipes: a wine
    /// command that starts the prefix's `services.exe` hands it the pipes,
    /// and reading them to their end would wait as long as that runs.
    pub(crate) fn output(&self, mut c: Command) -> Output {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let out = self.dir.path().join(format!("wine-{n}.out"));
        let err = self.dir.path().join(format!("wine-{n}.err"));
        let status = c
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .status()
            .expect("wine runs");
        let read = |p: &PathBuf| {
            let b = std::fs::read(p).unwrap_or_default();
            let _ = std::fs::remove_file(p);
            b
        };
        Output {
            status,
            stdout: read(&out),
            stderr: read(&err),
        }
    }

    /// The Windows build with `args`, as a command to spawn.
    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let exe = self.bin().join("libwarden.exe");
        let mut all = vec![exe.to_str().unwrap()];
        all.extend_from_slice(args);
        self.wine_cmd(&all)
    }

    pub(crate) fn wine_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("wine");
        c.args(args)
            .current_dir(self.bin())
            .env("WINEPREFIX", self.prefix())
            // The prefix's user folders link to $HOME: keep them empty,
            // or the side-loading audit walks the tester's home.
            .env("HOME", self.dir.path().join("home"))
            .env("WINEDEBUG", "-all")
            // No Mono or Gecko installer dialogs in a fresh prefix.
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
            .env_remove("DISPLAY");
        c
    }

    /// The Windows build with `args`.
    pub(crate) fn libwarden(&self, args: &[&str]) -> Output {
        let exe = self.bin().join("libwarden.exe");
        let mut all = vec![exe.to_str().unwrap()];
        all.extend_from_slice(args);
        self.wine(&all)
    }

    fn json(&self, args: &[&str]) -> (i32, Vec<Value>, String) {
        let mut all = vec!["--format", "json"];
        all.extend_from_slice(args);
        let o = self.libwarden(&all);
        (
            o.status.code().unwrap_or(-1),
            json_lines(&o.stdout),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    fn reg_add(&self, key: &str, name: &str, kind: &str, data: &str) {
        let o = self.wine(&["reg", "add", key, "/v", name, "/t", kind, "/d", data, "/f"]);
        assert!(o.status.success(), "reg add {key} {name}: {o:?}");
    }
}

impl Drop for Wine {
    fn drop(&mut self) {
        // Stop this prefix's wineserver (it lingers a few seconds).
        let _ = Command::new("wineserver")
            .arg("-k")
            .env("WINEPREFIX", self.prefix())
            .output();
    }
}

fn has(f: &[Value], kind: &str, path: &str) -> bool {
    f.iter().any(|x| {
        x["kind"] == kind
            && x["path"]
                .as_str()
                .is_some_and(|p| p.eq_ignore_ascii_case(path))
    })
}

fn exists(p: &Path) -> bool {
    std::fs::metadata(p).is_ok()
}

#[test]
fn windows_build_baselines_system32_and_finds_a_dropped_dll_and_registry_hooks() {
    let Some(w) = Wine::new() else { return };

    // Baseline in the default place, %ProgramData%\libwarden.
    let o = w.libwarden(&["init"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "init under Wine: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(exists(&w.c("ProgramData/libwarden/baseline")), "{o:?}");
    let paths = String::from_utf8_lossy(&w.libwarden(&["paths"]).stdout).into_owned();
    assert!(
        paths.to_ascii_lowercase().contains("/windows/system32"),
        "{paths}"
    );

    let (code, f, err) = w.json(&["check"]);
    assert_eq!(
        code & 7,
        0,
        "a fresh prefix against its own baseline: {f:#?}\n{err}"
    );

    // A DLL dropped into System32: added (bit 1), an unsigned PE DLL.
    let dll =
        crate::provenance::compile_dll_at(&w.c("windows/system32/dropped.dll"), w.dir.path(), 11);
    assert!(exists(&dll));
    let (code, f, err) = w.json(&["check"]);
    assert!(
        has(&f, "added", "/windows/system32/dropped.dll"),
        "{f:#?}\n{err}"
    );
    assert_eq!(code & 1, 1);

    // The live registry, read through the registry API.
    let (_, f, _) = w.json(&["audit"]);
    assert!(
        !f.iter().any(|x| x["kind"] == "registry"
            && x["path"]
                .as_str()
                .unwrap_or("")
                .contains("SafeDllSearchMode")),
        "{f:#?}"
    );
    w.reg_add(
        "HKLM\\System\\CurrentControlSet\\Control\\Session Manager",
        "SafeDllSearchMode",
        "REG_DWORD",
        "0",
    );
    let key = "HKLM\\Software\\Microsoft\\Windows NT\\CurrentVersion\\Windows";
    w.reg_add(key, "AppInit_DLLs", "REG_SZ", "C:\\evil.dll");
    w.reg_add(key, "LoadAppInit_DLLs", "REG_DWORD", "1");
    let (code, f, err) = w.json(&["audit"]);
    assert!(
        has(
            &f,
            "registry",
            "/registry/HKLM/SYSTEM/CurrentControlSet/Control/Session Manager/SafeDllSearchMode"
        ),
        "{f:#?}\n{err}"
    );
    assert!(
        has(
            &f,
            "registry",
            "/registry/HKLM/SOFTWARE/Microsoft/Windows NT/CurrentVersion/Windows/AppInit_DLLs"
        ),
        "{f:#?}\n{err}"
    );
    assert_eq!(code & 8, 8);
    // And against the baseline, the values are changes like a file's:
    // a fresh prefix has no AppInit_DLLs value, so it is added (bit 1).
    let (code, f, _) = w.json(&["check"]);
    let p = "/registry/HKLM/SOFTWARE/Microsoft/Windows NT/CurrentVersion/Windows/AppInit_DLLs";
    assert!(has(&f, "added", p) || has(&f, "content", p), "{f:#?}");
    assert!(has(&f, "registry", p), "{f:#?}");
    assert_eq!(code & 9, 9, "{f:#?}");

    // Loaded modules (Toolhelp): a program that loaded an unsigned DLL
    // from a directory users can write, still running.
    crate::provenance::compile_dll_at(&w.c("users/Public/evil.dll"), w.dir.path(), 13);
    let src = w.dir.path().join("loader.c");
    std::fs::write(
        &src,
        "#include <windows.h>\nint main(void){HMODULE h=LoadLibraryA(\"C:\\\\users\\\\Public\\\\evil.dll\");Sleep(120000);return h?0:1;}\n",
    )
    .unwrap();
    let st = Command::new("x86_64-w64-mingw32-gcc")
        .arg("-o")
        .arg(w.c("users/Public/loader.exe"))
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success());
    let mut loader = w
        .wine_cmd(&["C:\\users\\Public\\loader.exe"])
        .spawn()
        .expect("wine starts the loader");
    let mut found = false;
    let mut last = Vec::new();
    for _ in 0..20 {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let (_, f, _) = w.json(&["audit"]);
        found = has(&f, "process", "/users/Public/evil.dll");
        last = f;
        if found {
            break;
        }
    }
    let _ = loader.kill();
    let _ = loader.wait();
    assert!(found, "no process finding for the loaded DLL: {last:#?}");

    // `watch`, through notify's Windows backend (ReadDirectoryChangesW):
    // a DLL dropped into System32 while it runs is reported.
    let mut child = w
        .command(&["--format", "json", "watch", "--debounce", "100ms"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("wine starts");
    let (tx, rx) = std::sync::mpsc::channel::<(bool, String)>();
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send((true, l));
        }
    });
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx2.send((false, l));
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut log = String::new();
    let next = |log: &mut String| {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let got = rx.recv_timeout(left);
        if let Ok((_, l)) = &got {
            log.push_str(l);
            log.push('\n');
        }
        got.ok()
    };
    loop {
        match next(&mut log) {
            Some((false, l)) if l.contains("libwarden watch: watching") => break,
            Some(_) => {}
            None => panic!("watch did not start under Wine:\n{log}"),
        }
    }
    crate::provenance::compile_dll_at(
        &w.c("windows/system32/while-watching.dll"),
        w.dir.path(),
        12,
    );
    let found = loop {
        match next(&mut log) {
            Some((true, l)) => {
                let v: Value = serde_json::from_str(&l).unwrap_or_else(|e| panic!("{l}: {e}"));
                if v["kind"] == "added"
                    && v["path"].as_str().is_some_and(|p| {
                        p.eq_ignore_ascii_case("/windows/system32/while-watching.dll")
                    })
                {
                    break v;
                }
            }
            Some(_) => {}
            None => panic!("no added finding from watch under Wine:\n{log}"),
        }
    };
    assert_eq!(found["source"], "event", "{found}");
    let _ = child.kill();
    let _ = child.wait();
}
