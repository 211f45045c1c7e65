//! The loader audit against fixture roots built from real compiled objects,
//! and live against a real process. Each scenario is found with exit bit 8
//! and gone once undone.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use serde_json::Value;

use crate::util::*;

/// `audit --format json`: exit code and findings.
pub(crate) fn audit_json(t: &TestRoot) -> (i32, Vec<Value>) {
    let o = t.run(&["--format", "json", "audit"]);
    let code = o.status.code().unwrap_or(-1);
    assert!(
        code < 16,
        "audit failed: {code} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    (code, json_lines(&o.stdout))
}

/// The findings of `kind` at `path`.
pub(crate) fn at<'a>(f: &'a [Value], kind: &str, path: &str) -> Vec<&'a Value> {
    f.iter()
        .filter(|x| x["kind"] == kind && x["path"] == path)
        .collect()
}

/// The one finding of `kind` at `path` whose detail holds `text`.
pub(crate) fn one<'a>(f: &'a [Value], kind: &str, path: &str, text: &str) -> &'a Value {
    at(f, kind, path)
        .into_iter()
        .find(|x| x["detail"].as_str().unwrap_or("").contains(text))
        .unwrap_or_else(|| panic!("no {kind} finding at {path} with {text:?}: {f:#?}"))
}

pub(crate) fn assert_clean(t: &TestRoot, what: &str) {
    let (code, f) = audit_json(t);
    assert_eq!((code, f.len()), (0, 0), "{what}: {f:#?}");
}

fn chmod(p: &std::path::Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn the_stock_fixture_audits_clean() {
    let t = TestRoot::debian();
    let o = t.run(&["audit"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.stdout.is_empty());
    // Under --root the processes of the host are none of its business.
    assert!(String::from_utf8_lossy(&o.stderr).contains("not audited under --root"));
}

#[test]
fn a_preload_list_naming_a_library_in_tmp() {
    let t = TestRoot::debian();
    std::fs::create_dir_all(t.path("tmp")).unwrap();
    chmod(&t.path("tmp"), 0o1777);
    t.compile_so("tmp/evil.so", "evil.so", "int evil(void){return 1;}");
    t.write("etc/ld.so.preload", "/tmp/evil.so\n");
    let (code, f) = audit_json(&t);
    assert_eq!(code & 8, 8, "{f:#?}");
    let list = one(&f, "preload", "/etc/ld.so.preload", "/tmp/evil.so");
    assert_eq!(list["severity"], "high");
    let target = one(&f, "preload", "/tmp/evil.so", "world-writable");
    assert_eq!(target["severity"], "critical");
    assert!(target["detail"]
        .as_str()
        .unwrap()
        .contains("exists, owned by uid"));

    // Even an empty list is reported; none at all is clean.
    t.write("etc/ld.so.preload", "\n");
    let (code, f) = audit_json(&t);
    assert_eq!(code & 8, 8);
    assert_eq!(
        one(&f, "preload", "/etc/ld.so.preload", "names nothing")["severity"],
        "medium"
    );
    std::fs::remove_file(t.path("etc/ld.so.preload")).unwrap();
    assert_clean(&t, "preload list removed");
}

#[test]
fn a_preload_entry_using_platform_and_colons() {
    let t = TestRoot::debian();
    let arch = std::env::consts::ARCH;
    t.compile_so(
        &format!("usr/lib/{arch}/libp.so"),
        "libp.so",
        "int p(void){return 1;}",
    );
    t.write(
        "etc/ld.so.preload",
        "# comment /not/this.so\n/usr/lib/${PLATFORM}/libp.so:/usr/$LIB/libmissing.so\n",
    );
    let (code, f) = audit_json(&t);
    assert_eq!(code & 8, 8, "{f:#?}");
    let p = one(
        &f,
        "preload",
        &format!("/usr/lib/{arch}/libp.so"),
        "expands to",
    );
    assert!(p["detail"].as_str().unwrap().contains("exists"), "{p}");
    let m = one(
        &f,
        "preload",
        &format!("/usr/lib/{arch}-linux-gnu/libmissing.so"),
        "does not exist",
    );
    assert_eq!(m["severity"], "high");
    assert!(at(&f, "preload", "/not/this.so").is_empty());
    std::fs::remove_file(t.path("etc/ld.so.preload")).unwrap();
    assert_clean(&t, "preload list removed");
}

#[test]
fn a_new_conf_dir_holding_a_library_with_a_system_soname() {
    let t = TestRoot::debian();
    t.compile_so(
        "opt/libfoo.so.1",
        "libfoo.so.1",
        "int foo(void){return 666;}",
    );
    t.write("etc/ld.so.conf.d/00-opt.conf", "/opt\n");
    let (code, f) = audit_json(&t);
    assert_eq!(code & 8, 8, "{f:#?}");
    let s = one(&f, "loader_config", "/opt/libfoo.so.1", "shadows");
    assert_eq!(s["severity"], "high");
    assert!(s["detail"]
        .as_str()
        .unwrap()
        .contains("/usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3"));
    std::fs::remove_file(t.path("etc/ld.so.conf.d/00-opt.conf")).unwrap();
    assert_clean(&t, "conf removed");
}

#[test]
fn conf_dirs_that_are_relative_temporary_or_creatable() {
    let t = TestRoot::debian();
    chmod(&t.path("usr/local/lib"), 0o755);
    t.write(
        "etc/ld.so.conf.d/bad.conf",
        "lib/rel\n/tmp/libs\n/var/tmp/x\n",
    );
    let (code, f) = audit_json(&t);
    assert_eq!(code & 8, 8);
    one(&f, "loader_config", "lib/rel", "relative");
    one(
        &f,
        "loader_config",
        "/tmp/libs",
        "world-writable or user directory",
    );
    one(&f, "loader_config", "/var/tmp/x", "bad.conf:3");
    std::fs::remove_file(t.path("etc/ld.so.conf.d/bad.conf")).unwrap();
    assert_clean(&t, "conf removed");
}

#[test]
fn a_sticky_world_writable_lib_dir() {
    let t = TestRoot::debian();
    t.compile_so(
        "usr/local/lib/libl.so.1",
        "libl.so.1",
        "int l(void){return 1;}",
    );
    chmod(&t.path("usr/local/lib"), 0o1777);
    let (code, f) = audit_json(&t);
    assert_eq!(code & 8, 8, "{f:#?}");
    let w = one(&f, "writable", "/usr/local/lib", "everyone (sticky");
    assert_eq!(w["severity"], "high");
    // A missing conf dir below it can now be created by anyone.
    one(
        &f,
        "loader_config",
        "/usr/local/lib/x86_64-linux-gnu",
        "can create it",
    );
    chmod(&t.path("usr/local/lib"), 0o755);
    assert_clean(&t, "mode restored");

    // A library anyone can write, and an ancestor dir.
    chmod(&t.path("usr/local/lib/libl.so.1"), 0o666);
    chmod(&t.path("usr"), 0o775);
    let (_, f) = audit_json(&t);
    one(
        &f,
        "writable",
        "/usr/local/lib/libl.so.1",
        "library can be written by everyone",
    );
    one(&f, "writable", "/usr", "ancestor of search dir");
    chmod(&t.path("usr/local/lib/libl.so.1"), 0o755);
    chmod(&t.path("usr"), 0o755);
    assert_clean(&t, "modes restored");
}

#[test]
fn an_untrusted_owner_unless_trusted_in_config() {
    if !is_root() {
        eprintln!("needs root to chown: skipped");
        return;
    }
    let t = TestRoot::debian();
    std::os::unix::fs::lchown(t.path("usr/local/lib"), Some(4321), None).unwrap();
    let (code, f) = audit_json(&t);
    assert_eq!(code & 8, 8, "{f:#?}");
    one(&f, "writable", "/usr/local/lib", "uid 4321 (owner)");
    let cfg = t.dir.path().join("config.toml");
    std::fs::write(&cfg, "trusted_uids = [4321]\n").unwrap();
    let o = t.run(&[
        "--config",
        cfg.to_str().unwrap(),
        "--format",
        "json",
        "audit",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn rpath_and_runpath_into_dangerous_dirs() {
    let t = TestRoot::debian();
    let main = "int main(void){return 0;}";
    t.compile_exe(
        "usr/bin/tool",
        main,
        &["-Wl,--enable-new-dtags", "-Wl,-rpath,/tmp/x"],
    );
    t.compile_so_with(
        "usr/lib/x86_64-linux-gnu/libr.so.1",
        "libr.so.1",
        "int r(void){return 1;}",
        &[
            "-Wl,--disable-new-dtags",
            "-Wl,-rpath,$ORIGIN/../lib:/dev/shm",
        ],
    );
    // Packaged style: RUNPATH into an existing root-owned dir is fine.
    std::fs::create_dir_all(t.path("usr/lib/x86_64-linux-gnu/private")).unwrap();
    t.compile_exe(
        "usr/bin/fine",
        main,
        &[
            "-Wl,--enable-new-dtags",
            "-Wl,-rpath,/usr/lib/x86_64-linux-gnu/private",
        ],
    );
    t.compile_exe("usr/bin/suid", main, &["-Wl,-rpath,$ORIGIN/../lib"]);
    chmod(&t.path("usr/bin/suid"), 0o4755);
    t.compile_exe("usr/bin/cwd", main, &["-Wl,-rpath,:/usr/lib"]);

    let (code, f) = audit_json(&t);
    assert_eq!(code & 8, 8, "{f:#?}");
    one(&f, "rpath", "/usr/bin/tool", "RUNPATH entry \"/tmp/x\"");
    one(
        &f,
        "rpath",
        "/usr/lib/x86_64-linux-gnu/libr.so.1",
        "RPATH entry \"/dev/shm\"",
    );
    assert_eq!(
        at(&f, "rpath", "/usr/lib/x86_64-linux-gnu/libr.so.1").len(),
        1,
        "{f:#?}"
    );
    assert!(at(&f, "rpath", "/usr/bin/fine").is_empty(), "{f:#?}");
    one(&f, "rpath", "/usr/bin/suid", "$ORIGIN in a setuid file");
    one(&f, "rpath", "/usr/bin/cwd", "empty entry");

    for p in [
        "usr/bin/tool",
        "usr/bin/suid",
        "usr/bin/cwd",
        "usr/lib/x86_64-linux-gnu/libr.so.1",
    ] {
        std::fs::remove_file(t.path(p)).unwrap();
    }
    assert_clean(&t, "objects removed");
}

#[test]
fn a_loader_whose_preload_path_was_patched() {
    let t = TestRoot::debian();
    let ld = t.path("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2");
    let orig = std::fs::read(&ld).unwrap();
    let needle = b"/etc/ld.so.preload";
    let at_ = orig
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the fixture loader holds the preload path");
    let mut patched = orig.clone();
    patched[at_..at_ + needle.len()].copy_from_slice(b"/var/tmp/.hidden.x");
    std::fs::write(&ld, &patched).unwrap();
    let (code, f) = audit_json(&t);
    assert_eq!(code & 8, 8, "{f:#?}");
    let l = one(
        &f,
        "loader",
        "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        "no longer contains",
    );
    assert_eq!(l["severity"], "critical");
    std::fs::write(&ld, &orig).unwrap();
    assert_clean(&t, "loader restored");
}

#[test]
fn a_loader_backup_and_an_unknown_interpreter() {
    let t = TestRoot::debian();
    std::fs::copy(
        t.path("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
        t.path("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2.bak"),
    )
    .unwrap();
    t.compile_exe(
        "usr/sbin/odd",
        "int main(void){return 0;}",
        &["-Wl,--dynamic-linker=/tmp/ld.so"],
    );
    let (code, f) = audit_json(&t);
    assert_eq!(code & 8, 8, "{f:#?}");
    let b = one(
        &f,
        "loader",
        "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2.bak",
        "backup",
    );
    assert_eq!(b["severity"], "critical");
    one(&f, "loader", "/usr/sbin/odd", "PT_INTERP names /tmp/ld.so");
    std::fs::remove_file(t.path("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2.bak")).unwrap();
    std::fs::remove_file(t.path("usr/sbin/odd")).unwrap();
    assert_clean(&t, "removed");
}

#[test]
fn loader_variables_in_environment_files_and_units() {
    let t = TestRoot::debian();
    t.write(
        "etc/environment",
        "PATH=\"/usr/bin\"\nLD_PRELOAD=/usr/lib/libe.so\n",
    );
    t.write(
        "etc/profile.d/x.sh",
        "if [ -n \"$LD_PRELOAD\" ]; then unset LD_PRELOAD; fi\nexport LD_LIBRARY_PATH=$LD_LIBRARY_PATH:/opt/lib\n",
    );
    t.write(
        "etc/systemd/system/x.service",
        "[Service]\nEnvironment=\"LD_AUDIT=/opt/a.so\" FOO=1\nEnvironmentFile=-/etc/default/x\n",
    );
    t.write("etc/default/x", "LD_LIBRARY_PATH=/opt/lib::/usr/lib\n");
    let (code, f) = audit_json(&t);
    assert_eq!(code & 8, 8, "{f:#?}");
    assert_eq!(
        one(
            &f,
            "environment",
            "/etc/environment",
            "LD_PRELOAD=/usr/lib/libe.so"
        )["severity"],
        "high"
    );
    assert_eq!(
        at(&f, "environment", "/etc/profile.d/x.sh").len(),
        2,
        "{f:#?}"
    );
    one(&f, "environment", "/etc/profile.d/x.sh", "empty element");
    one(
        &f,
        "environment",
        "/etc/systemd/system/x.service",
        "LD_AUDIT=/opt/a.so",
    );
    one(
        &f,
        "environment",
        "/etc/default/x",
        "EnvironmentFile of /etc/systemd/system/x.service",
    );
    one(&f, "environment", "/etc/default/x", "empty element");
    for p in [
        "etc/environment",
        "etc/profile.d/x.sh",
        "etc/systemd/system/x.service",
    ] {
        std::fs::remove_file(t.path(p)).unwrap();
    }
    assert_clean(&t, "removed");
}

/// A `glibc-ld.so.cache1.1` file with (soname, path) entries.
fn ld_so_cache(entries: &[(&str, &str)]) -> Vec<u8> {
    let n = entries.len();
    let str_base = 48 + 24 * n;
    let mut strings = Vec::new();
    let mut table = Vec::new();
    for (k, v) in entries {
        let ko = (str_base + strings.len()) as u32;
        strings.extend_from_slice(k.as_bytes());
        strings.push(0);
        let vo = (str_base + strings.len()) as u32;
        strings.extend_from_slice(v.as_bytes());
        strings.push(0);
        for x in [0x303u32, ko, vo, 0] {
            table.extend_from_slice(&x.to_le_bytes());
        }
        table.extend_from_slice(&[0; 8]);
    }
    let mut b = b"glibc-ld.so.cache1.1".to_vec();
    b.extend_from_slice(&(n as u32).to_le_bytes());
    b.extend_from_slice(&(strings.len() as u32).to_le_bytes());
    b.push(2);
    b.extend_from_slice(&[0; 19]);
    b.extend_from_slice(&table);
    b.extend_from_slice(&strings);
    b
}

#[test]
fn ld_so_cache_entries_must_name_existing_files_in_the_search_paths() {
    let t = TestRoot::debian();
    t.write(
        "etc/ld.so.cache",
        ld_so_cache(&[
            ("libfoo.so.1", "/lib/x86_64-linux-gnu/libfoo.so.1"),
            ("libevil.so.1", "/srv/evil/libevil.so.1"),
            ("libgone.so.1", "/usr/lib/x86_64-linux-gnu/libgone.so.1"),
        ]),
    );
    let (code, f) = audit_json(&t);
    assert_eq!(code & 8, 8, "{f:#?}");
    assert_eq!(
        one(
            &f,
            "loader_config",
            "/srv/evil/libevil.so.1",
            "outside the search paths"
        )["severity"],
        "high"
    );
    one(
        &f,
        "loader_config",
        "/usr/lib/x86_64-linux-gnu/libgone.so.1",
        "does not exist",
    );
    assert!(at(&f, "loader_config", "/lib/x86_64-linux-gnu/libfoo.so.1").is_empty());

    // A cache resolving a system SONAME into a configured non-system dir,
    // even one listed after the system dirs.
    t.compile_so("opt/libfoo.so.1", "libfoo.so.1", "int foo(void){return 9;}");
    t.write("etc/ld.so.conf.d/zz-opt.conf", "/opt\n");
    t.write(
        "etc/ld.so.cache",
        ld_so_cache(&[("libfoo.so.1", "/opt/libfoo.so.1")]),
    );
    let (code, f) = audit_json(&t);
    assert_eq!(code & 8, 8, "{f:#?}");
    one(
        &f,
        "loader_config",
        "/opt/libfoo.so.1",
        "system copy is /usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3",
    );
    std::fs::remove_file(t.path("etc/ld.so.conf.d/zz-opt.conf")).unwrap();

    // A cache older than its configuration is noted (info: no exit bit).
    t.write("etc/ld.so.cache", empty_ld_so_cache());
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(t.path("etc/ld.so.cache"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let (code, f) = audit_json(&t);
    assert_eq!(code, 0, "{f:#?}");
    assert_eq!(
        one(&f, "loader_config", "/etc/ld.so.cache", "older than")["severity"],
        "info"
    );
}

#[test]
fn check_merges_the_audit_and_says_what_the_baseline_knows() {
    let t = TestRoot::debian();
    t.init();
    t.compile_so(
        "usr/lib/x86_64-linux-gnu/libnew.so.1",
        "libnew.so.1",
        "int n(void){return 1;}",
    );
    t.write(
        "etc/ld.so.preload",
        "/usr/lib/x86_64-linux-gnu/libfoo.so.1 /usr/lib/x86_64-linux-gnu/libnew.so.1\n",
    );
    let (code, f) = t.check_json();
    assert_eq!(code & 9, 9, "added and policy bits: {code} {f:#?}");
    find(&f, "added", "/etc/ld.so.preload").expect("the diff still reports it");
    let known = one(
        &f,
        "preload",
        "/usr/lib/x86_64-linux-gnu/libfoo.so.1",
        "known to the baseline",
    );
    assert_eq!(known["severity"], "high");
    let new = one(
        &f,
        "preload",
        "/usr/lib/x86_64-linux-gnu/libnew.so.1",
        "not in the baseline",
    );
    assert_eq!(new["severity"], "critical");
    let paths: Vec<&str> = f.iter().map(|x| x["path"].as_str().unwrap()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted, "sorted by path");
}

#[test]
fn a_process_running_with_a_deleted_preload_from_dev_shm() {
    let t = TestRoot::new();
    // The live audit hashes the whole host tree, which takes over 30 s on a
    // loaded 2-core machine: the child must outlive it (killed on drop).
    let Some(child) = Preloaded::start(&t, "audit", 600, false) else {
        return;
    };
    let (so, pid) = (child.so.clone(), child.pid);
    std::fs::remove_file(&so).unwrap();

    // The processes alone: provenance (which `audit` judges too) would read
    // every packaged library of this host first, for minutes in a debug
    // build, while `sleep` runs out.
    let cfg = t.dir.path().join("no-provenance.toml");
    std::fs::write(&cfg, "[provenance]\ndisabled = true\n").unwrap();
    let o = Command::new(bin())
        .arg("--config")
        .arg(&cfg)
        .args(["--format", "json", "--db"])
        .arg(t.db())
        .arg("audit")
        .env_remove("LD_PRELOAD")
        .output()
        .unwrap();
    let code = o.status.code().unwrap_or(-1);
    let f = json_lines(&o.stdout);
    assert_eq!(code & 8, 8, "{code} {}", String::from_utf8_lossy(&o.stderr));
    let m = one(&f, "process", &so, &format!("pid {pid} (sleep)"));
    assert_eq!(m["severity"], "high");
    assert!(
        m["detail"].as_str().unwrap().contains("deleted since"),
        "{m}"
    );
    let env = f
        .iter()
        .find(|x| child.is_environ_finding(x))
        .unwrap_or_else(|| panic!("no environ finding: {f:#?}"));
    assert_eq!(env["severity"], "high");
    drop(child);
}

#[test]
fn hostile_objects_and_loader_files_never_stop_or_hang_the_audit() {
    let t = TestRoot::debian();
    let good = std::fs::read(t.path("usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3")).unwrap();
    // Truncated copies of a real object, and ELF magic over garbage.
    for n in [5, 20, 64, 100, 1000, good.len() / 2] {
        t.write(
            &format!("usr/lib/x86_64-linux-gnu/libcut{n}.so"),
            &good[..n.min(good.len())],
        );
    }
    let mut garbage = b"\x7fELF\x02\x01\x01".to_vec();
    garbage.extend((0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8));
    t.write("usr/lib/x86_64-linux-gnu/libgarbage.so", &garbage);
    // A FIFO where the preload list goes, garbage for the cache.
    let fifo = t.path("etc/ld.so.preload");
    crate::util::mkfifo(&fifo, 0o644);
    t.write(
        "etc/ld.so.cache",
        b"glibc-ld.so.cache1.1\xff\xff\xff\xff\x00",
    );
    let (code, f) = audit_json(&t);
    assert_eq!(code & 8, 8, "{f:#?}");
    assert_eq!(
        one(&f, "preload", "/etc/ld.so.preload", "cannot be read")["severity"],
        "high"
    );
    one(&f, "loader_config", "/etc/ld.so.cache", "cannot be parsed");
}
