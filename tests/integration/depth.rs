//! Detection depth: what the loader and the kernel really do, against
//! fixture roots of real compiled objects (and a real loader copy).

use std::path::Path;

// The audit module's helpers: one way to run and read an audit.
use crate::audit::{assert_clean, at, audit_json, one};
use crate::util::*;

/// Rewrites `/etc/ld.so.preload` in the loader at `ld` to `to` (same
/// length, as bdvl patches it), returning the original bytes.
fn patch_loader(ld: &Path, to: &[u8]) -> Vec<u8> {
    let orig = std::fs::read(ld).unwrap();
    let needle = b"/etc/ld.so.preload";
    assert_eq!(to.len(), needle.len());
    let at_ = orig
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the loader holds the preload path");
    let mut patched = orig.clone();
    patched[at_..at_ + needle.len()].copy_from_slice(to);
    std::fs::write(ld, &patched).unwrap();
    orig
}

const LD: &str = "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2";

fn the_moved_preload_list_is_followed_in(t: &TestRoot) {
    let arch = std::env::consts::ARCH;
    t.compile_so(
        &format!("usr/lib/{arch}/libhide.so"),
        "libhide.so",
        "int readdir_hook(void){return 1;}",
    );
    std::fs::create_dir_all(t.path("var/tmp")).unwrap();
    t.write("var/tmp/.hidden.x", "/usr/lib/${PLATFORM}/libhide.so\n");
    let orig = patch_loader(&t.path(LD), b"/var/tmp/.hidden.x");

    let (code, f) = audit_json(t);
    assert_eq!(code & 8, 8, "{f:#?}");
    let l = one(
        &f,
        "loader",
        &format!("/{LD}"),
        "read its preload list from /var/tmp/.hidden.x (a rootkit technique)",
    );
    assert_eq!(l["severity"], "critical");
    let list = one(
        &f,
        "preload",
        "/var/tmp/.hidden.x",
        "every dynamically linked program loads /usr/lib/${PLATFORM}/libhide.so (read instead of /etc/ld.so.preload by the patched loader",
    );
    assert_eq!(list["severity"], "critical");
    let target = one(
        &f,
        "preload",
        &format!("/usr/lib/{arch}/libhide.so"),
        "expands to",
    );
    assert_eq!(target["severity"], "critical");
    assert!(target["detail"]
        .as_str()
        .unwrap()
        .contains("listed in /var/tmp/.hidden.x"));

    // Without the list, the loader's finding still names where it would be.
    std::fs::remove_file(t.path("var/tmp/.hidden.x")).unwrap();
    let (_, f) = audit_json(t);
    one(
        &f,
        "loader",
        &format!("/{LD}"),
        "/var/tmp/.hidden.x (a rootkit technique) (does not exist now)",
    );
    assert!(at(&f, "preload", "/var/tmp/.hidden.x").is_empty(), "{f:#?}");

    std::fs::write(t.path(LD), &orig).unwrap();
    std::fs::remove_file(t.path(&format!("usr/lib/{arch}/libhide.so"))).unwrap();
    assert_clean(t, "loader restored");
}

#[test]
fn a_patched_loaders_new_preload_list_is_audited_as_one() {
    the_moved_preload_list_is_followed_in(&TestRoot::debian());
}

/// The same with a copy of this machine's real glibc loader: none of the
/// other paths a stock loader holds is taken for the moved list.
#[test]
fn a_patched_copy_of_the_real_loader() {
    let host = Path::new("/lib64/ld-linux-x86-64.so.2");
    let Ok(real) = std::fs::read(host) else {
        eprintln!("SKIPPED: no {} on this machine", host.display());
        return;
    };
    if !real.windows(18).any(|w| w == b"/etc/ld.so.preload") {
        eprintln!("SKIPPED: {} holds no /etc/ld.so.preload", host.display());
        return;
    }
    let t = TestRoot::debian();
    std::fs::write(t.path(LD), &real).unwrap();
    assert_clean(&t, "the real loader, unpatched");
    the_moved_preload_list_is_followed_in(&t);
}

/// A shared object without a SONAME (as a hand-built implant often is).
fn compile_so_without_soname(t: &TestRoot, rel: &str, source: &str) {
    let out = t.path(rel);
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let src = t.dir.path().join("src-nosoname.c");
    std::fs::write(&src, source).unwrap();
    let status = std::process::Command::new("gcc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("gcc must be installed (.ci/deps installs it)");
    assert!(status.success(), "gcc failed for {rel}");
}

/// Builds the fixture's real `ld.so.cache` with this machine's ldconfig
/// (`-X`: no links are changed), or says why not.
fn ldconfig(t: &TestRoot) -> bool {
    let Ok(o) = std::process::Command::new("ldconfig")
        .arg("-X")
        .arg("-r")
        .arg(t.root())
        .output()
    else {
        eprintln!("SKIPPED: no ldconfig on this machine");
        return false;
    };
    assert!(
        o.status.success(),
        "ldconfig: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    true
}

#[test]
fn a_library_in_a_glibc_hwcaps_subdir_shadows_its_parents() {
    let t = TestRoot::debian();
    let hw = "usr/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v3/libfoo.so.1";
    t.compile_so(hw, "libfoo.so.1", "int foo(void){return 666;}");
    let (code, f) = audit_json(&t);
    assert_eq!(code & 8, 8, "{f:#?}");
    let s = one(
        &f,
        "loader_config",
        &format!("/{hw}"),
        "SONAME libfoo.so.1 shadows the system library /usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3",
    );
    assert_eq!(s["severity"], "high");
    assert!(s["detail"]
        .as_str()
        .unwrap()
        .contains("glibc-hwcaps subdir, searched before /usr/lib/x86_64-linux-gnu"));

    // Once ldconfig has run, the cache's hwcaps extension names it too
    // (spelled as the configuration names its dir first, /lib/...).
    if ldconfig(&t) {
        let (_, f) = audit_json(&t);
        let c = one(
            &f,
            "loader_config",
            &format!("/{}", hw.trim_start_matches("usr/")),
            "ld.so.cache entry for libfoo.so.1: a glibc-hwcaps (x86-64-v3) library the loader prefers",
        );
        assert_eq!(c["severity"], "high");
    }
    std::fs::remove_file(t.path(hw)).unwrap();
    if ldconfig(&t) {
        assert_clean(&t, "hwcaps library removed, cache rebuilt");
    } else {
        t.write("etc/ld.so.cache", empty_ld_so_cache());
        assert_clean(&t, "hwcaps library removed");
    }
}

#[test]
fn a_library_without_soname_shadows_by_its_file_name() {
    let t = TestRoot::debian();
    // /usr/local/lib comes first in the fixture's configuration.
    compile_so_without_soname(
        &t,
        "usr/local/lib/libfoo.so.1",
        "int foo(void){return 666;}",
    );
    let (code, f) = audit_json(&t);
    assert_eq!(code & 8, 8, "{f:#?}");
    let s = one(
        &f,
        "loader_config",
        "/usr/local/lib/libfoo.so.1",
        "file name (no SONAME: ldconfig and the loader go by the name) libfoo.so.1 shadows the system library /usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3",
    );
    assert_eq!(s["severity"], "high");
    // A plugin not named like a library is nobody's DT_NEEDED.
    std::fs::remove_file(t.path("usr/local/lib/libfoo.so.1")).unwrap();
    compile_so_without_soname(&t, "usr/local/lib/plugin.so", "int p(void){return 1;}");
    compile_so_without_soname(
        &t,
        "usr/lib/x86_64-linux-gnu/plugin.so",
        "int p(void){return 2;}",
    );
    assert_clean(&t, "only plugins without SONAME");
}

#[test]
fn loader_config_files_that_are_symlinks_fifos_devices_or_dirs() {
    use std::os::unix::fs::PermissionsExt;
    let t = TestRoot::debian();
    let chmod = |rel: &str, mode: u32| {
        std::fs::set_permissions(t.path(rel), std::fs::Permissions::from_mode(mode)).unwrap()
    };
    std::fs::create_dir_all(t.path("tmp")).unwrap();
    chmod("tmp", 0o1777);
    t.write("tmp/evil.conf", "/tmp\n");
    t.link("/tmp/evil.conf", "etc/ld.so.conf.d/zz-evil.conf");
    std::fs::create_dir_all(t.path("srv/conf")).unwrap();
    chmod("srv/conf", 0o777);
    std::fs::rename(t.path("etc/ld.so.conf"), t.path("srv/conf/ld.so.conf")).unwrap();
    t.link("/srv/conf/ld.so.conf", "etc/ld.so.conf");
    mkfifo(&t.path("etc/ld.so.conf.d/fifo.conf"), 0o644);
    std::fs::create_dir_all(t.path("etc/ld.so.conf.d/dir.conf")).unwrap();
    let device = is_root()
        && std::process::Command::new("mknod")
            .arg(t.path("etc/ld.so.conf.d/dev.conf"))
            .args(["c", "1", "3"])
            .status()
            .is_ok_and(|s| s.success());
    if !device {
        eprintln!("SKIPPED (device part): mknod needs root");
    }

    let (code, f) = audit_json(&t);
    assert_eq!(code & 8, 8, "{f:#?}");
    let s = one(
        &f,
        "loader_config",
        "/etc/ld.so.conf.d/zz-evil.conf",
        "symlink to /tmp/evil.conf, in a world-writable or user directory",
    );
    assert_eq!(s["severity"], "high");
    let c = one(
        &f,
        "loader_config",
        "/etc/ld.so.conf",
        "symlink to /srv/conf/ld.so.conf; /srv/conf can be written by everyone",
    );
    assert_eq!(c["severity"], "high");
    let fifo = one(&f, "loader_config", "/etc/ld.so.conf.d/fifo.conf", "a FIFO");
    assert_eq!(fifo["severity"], "high");
    let dir = one(
        &f,
        "loader_config",
        "/etc/ld.so.conf.d/dir.conf",
        "a directory",
    );
    assert_eq!(dir["severity"], "low");
    if device {
        let d = one(
            &f,
            "loader_config",
            "/etc/ld.so.conf.d/dev.conf",
            "a device",
        );
        assert_eq!(d["severity"], "high");
        std::fs::remove_file(t.path("etc/ld.so.conf.d/dev.conf")).unwrap();
    }

    for p in [
        "etc/ld.so.conf.d/zz-evil.conf",
        "etc/ld.so.conf.d/fifo.conf",
        "etc/ld.so.conf",
    ] {
        std::fs::remove_file(t.path(p)).unwrap();
    }
    std::fs::remove_dir(t.path("etc/ld.so.conf.d/dir.conf")).unwrap();
    std::fs::rename(t.path("srv/conf/ld.so.conf"), t.path("etc/ld.so.conf")).unwrap();
    chmod("srv/conf", 0o755);
    // A symlink to a root-owned file in a root-owned dir is fine.
    t.link("/srv/conf/ld.so.conf", "etc/ld.so.conf.d/zz-ok.conf");
    t.write("srv/conf/ld.so.conf", "/usr/local/lib\n");
    t.write("etc/ld.so.cache", empty_ld_so_cache());
    assert_clean(&t, "conf files restored");
}

/// Debian's stock sudoers.
const SUDOERS: &str = "#\n# This file MUST be edited with the 'visudo' command as root.\n#\nDefaults\tenv_reset\nDefaults\tmail_badpass\nDefaults\tsecure_path=\"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"\nDefaults\tuse_pty\n\n# User privilege specification\nroot\tALL=(ALL:ALL) ALL\n\n# Allow members of group sudo to execute any command\n%sudo\tALL=(ALL:ALL) ALL\n\n@includedir /etc/sudoers.d\n";

#[test]
fn more_places_that_set_the_loaders_environment() {
    let t = TestRoot::debian();
    t.write("etc/sudoers", SUDOERS);
    t.write(
        "etc/sudoers.d/README",
        "# sudo reads files here without a dot\n",
    );
    t.write("etc/pam.d/login", "session required pam_env.so readenv=1\n");
    t.write("etc/zsh/zshenv", "# global zshenv\n");
    t.write("etc/crontab", "SHELL=/bin/sh\nPATH=/usr/local/sbin:/usr/local/bin:/sbin:/bin:/usr/sbin:/usr/bin\n17 * * * * root cd / && run-parts --report /etc/cron.hourly\n");
    assert_clean(&t, "stock sudoers, PAM, zshenv and crontab");

    t.write(
        "etc/sudoers.d/keep",
        "Defaults env_keep += \"HOME \\\n  LD_PRELOAD\"\nDefaults:deploy setenv\nDefaults env_file=/etc/sudoenv\n",
    );
    t.write("etc/sudoenv", "LD_AUDIT=/tmp/sudo-audit.so\n");
    t.write(
        "etc/sudoers.d/ignored.txt",
        "Defaults env_keep += LD_AUDIT\n",
    );
    t.write(
        "etc/systemd/user/evil.service",
        "[Service]\nEnvironment=LD_PRELOAD=/tmp/u.so\nExecStart=/bin/true\n",
    );
    t.write(
        "usr/lib/systemd/user/pkg.service",
        "[Service]\nEnvironment=\"LD_AUDIT=/tmp/a.so\"\n",
    );
    t.write(
        "etc/systemd/system.conf.d/10-env.conf",
        "[Manager]\nDefaultEnvironment=\"LD_PRELOAD=/opt/p.so\" LANG=C\n",
    );
    t.write(
        "etc/zsh/zshenv",
        "# global zshenv\nexport LD_LIBRARY_PATH=/tmp/l:\n",
    );
    t.write("etc/csh.cshrc", "setenv LD_PRELOAD /tmp/c.so\n");
    t.write(
        "etc/cron.d/job",
        "LD_PRELOAD=/tmp/cron.so\n* * * * * root /bin/true\n",
    );
    t.write(
        "etc/pam.d/sshd",
        "session required pam_env.so envfile=/etc/default/sshenv\n",
    );
    t.write("etc/default/sshenv", "LD_PRELOAD=/tmp/pam.so\n");

    let (code, f) = audit_json(&t);
    assert_eq!(code & 8, 8, "{f:#?}");
    let e = "environment";
    let k = one(
        &f,
        e,
        "/etc/sudoers.d/keep",
        "line 1: env_keep lets LD_PRELOAD through",
    );
    assert_eq!(k["severity"], "high");
    assert_eq!(
        one(&f, e, "/etc/sudoers.d/keep", "line 3: setenv")["severity"],
        "medium"
    );
    assert!(at(&f, e, "/etc/sudoers.d/ignored.txt").is_empty(), "{f:#?}");
    for (path, what, sev) in [
        (
            "/etc/systemd/user/evil.service",
            "LD_PRELOAD=/tmp/u.so",
            "high",
        ),
        (
            "/usr/lib/systemd/user/pkg.service",
            "LD_AUDIT=/tmp/a.so",
            "high",
        ),
        (
            "/etc/systemd/system.conf.d/10-env.conf",
            "LD_PRELOAD=/opt/p.so",
            "high",
        ),
        ("/etc/zsh/zshenv", "LD_LIBRARY_PATH=/tmp/l:", "medium"),
        ("/etc/zsh/zshenv", "empty element", "high"),
        ("/etc/csh.cshrc", "LD_PRELOAD=/tmp/c.so", "high"),
        ("/etc/cron.d/job", "LD_PRELOAD=/tmp/cron.so", "high"),
        ("/etc/default/sshenv", "LD_PRELOAD=/tmp/pam.so", "high"),
        ("/etc/sudoenv", "LD_AUDIT=/tmp/sudo-audit.so", "high"),
    ] {
        assert_eq!(one(&f, e, path, what)["severity"], sev, "{path}");
    }

    for p in [
        "etc/sudoers.d/keep",
        "etc/sudoenv",
        "etc/systemd/user/evil.service",
        "usr/lib/systemd/user/pkg.service",
        "etc/systemd/system.conf.d/10-env.conf",
        "etc/csh.cshrc",
        "etc/cron.d/job",
        "etc/pam.d/sshd",
    ] {
        std::fs::remove_file(t.path(p)).unwrap();
    }
    t.write("etc/zsh/zshenv", "# global zshenv\n");
    assert_clean(&t, "all removed");
}

/// The kernel is judged live only: under --root, the host's kernel is none
/// of the image's business (its parsers and judgement are unit-tested on
/// fixture text in `audit::kernel`).
#[test]
fn the_kernel_is_not_audited_under_a_root() {
    let t = TestRoot::debian();
    let o = t.run(&["--format", "json", "audit"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(json_lines(&o.stdout).iter().all(|f| f["kind"] != "kernel"));
    assert!(String::from_utf8_lossy(&o.stderr)
        .contains("the running kernel is not audited under --root"));
}

/// Patched to a path the stock loader already names for another purpose
/// (`/etc/suid-debug`): no new string to find, but that file now holds
/// preload entries, and is audited as the list.
#[test]
fn a_loader_patched_to_a_path_it_already_names() {
    let t = TestRoot::debian();
    t.compile_so(
        "usr/lib/x86_64-linux-gnu/libhide.so",
        "libhide.so",
        "int h(void){return 1;}",
    );
    t.write("etc/suid-debug", "/usr/lib/x86_64-linux-gnu/libhide.so\n");
    assert_clean(&t, "an unpatched loader does not read it");
    let orig = patch_loader(&t.path(LD), b"/etc/suid-debug\0\0\0");
    let (_, f) = audit_json(&t);
    one(&f, "loader", &format!("/{LD}"), "/etc/suid-debug");
    let list = one(
        &f,
        "preload",
        "/etc/suid-debug",
        "libhide.so (read instead of /etc/ld.so.preload by the patched loader",
    );
    assert_eq!(list["severity"], "critical");
    std::fs::write(t.path(LD), &orig).unwrap();
    assert_clean(&t, "loader restored");
}
