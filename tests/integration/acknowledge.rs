//! Acknowledged findings (`accept`), the safe `update` (`--dry-run`, the
//! refusal of a bare update over a critical finding), excludes applied to
//! the baseline, and a first run that makes sense (`init` shows the
//! standing findings; libwarden never reports its own process).

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::provenance::{dpkg_root, sh};
use crate::util::*;

const MA: &str = "usr/lib/x86_64-linux-gnu";

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(t: &TestRoot, args: &[&str]) -> (i32, Vec<Value>, String) {
    let mut a = vec!["--format", "json"];
    a.extend_from_slice(args);
    let o = t.run(&a);
    (code(&o), json_lines(&o.stdout), err(&o))
}

fn kinds(f: &[Value]) -> Vec<String> {
    f.iter()
        .map(|x| format!("{} {}", x["kind"], x["path"]))
        .collect()
}

/// The generation `CURRENT` names (the live one).
fn generation(t: &TestRoot) -> String {
    live_generation_dir(&t.db())
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// A library whose RUNPATH names `/tmp/<dir>` (an rpath finding).
fn rpath_lib(t: &TestRoot, runpath: &str, body: &str) {
    t.compile_so_with(
        &format!("{MA}/libr.so.1"),
        "libr.so.1",
        body,
        &["-Wl,--enable-new-dtags", &format!("-Wl,-rpath,{runpath}")],
    );
}

#[test]
fn an_accepted_rpath_is_silent_until_its_runpath_changes() {
    let t = TestRoot::debian();
    rpath_lib(&t, "/tmp/x", "int r(void){return 1;}");
    let lib = "/usr/lib/x86_64-linux-gnu/libr.so.1";

    // init shows the standing finding, says how to acknowledge it, and
    // still exits 0.
    let (c, f, e) = json(&t, &["init"]);
    assert_eq!(c, 0, "{e}");
    assert!(find(&f, "rpath", lib).is_some(), "{:?}", kinds(&f));
    assert!(e.contains("standing: 1 rpath"), "{e}");
    assert!(e.contains("libwarden accept"), "{e}");

    let (c, f) = t.check_json();
    assert_eq!(c & 8, 8, "{:?}", kinds(&f));

    let (c, f, e) = json(&t, &["accept", "--kind", "rpath", lib]);
    assert_eq!(c, 0, "{e}");
    let a = find(&f, "rpath", lib).unwrap_or_else(|| panic!("{:?} {e}", kinds(&f)));
    assert_eq!(a["accepted"], true);
    assert_eq!(a["acknowledged"], true);

    // Silent: exit 0, nothing on stdout.
    let o = t.run(&["check"]);
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert!(
        o.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(err(&o).contains("1 acknowledged"), "{}", err(&o));
    // The audit reads the baseline's acknowledgements too.
    let (c, f, e) = json(&t, &["audit"]);
    assert!(find(&f, "rpath", lib).is_none(), "{:?} {e}", kinds(&f));
    assert_eq!(c & 8, 0, "{:?}", kinds(&f));

    // `check --all` shows it, marked, with no exit bit.
    let (c, f, _) = json(&t, &["check", "--all"]);
    assert_eq!(c, 0);
    let m = find(&f, "rpath", lib).expect("check --all shows it");
    assert_eq!(m["acknowledged"], true);
    assert!(m["acknowledged_by"].is_string() && m["acknowledged_at"].is_string());
    let o = t.run(&["check", "--all"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("[acknowledged by "),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );

    // A rebuild with the same RUNPATH: a content change, still no rpath;
    // `update` accepts the change and keeps the acknowledgement.
    rpath_lib(&t, "/tmp/x", "int r(void){return 2;}");
    let (c, f) = t.check_json();
    assert!(find(&f, "content", lib).is_some(), "{:?}", kinds(&f));
    assert!(find(&f, "rpath", lib).is_none(), "{:?}", kinds(&f));
    assert_eq!(c, 4, "{:?}", kinds(&f));
    t.run_ok(&["update"]);
    let o = t.run(&["check"]);
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert!(o.stdout.is_empty());

    // A new RUNPATH is a new subject: loud again.
    rpath_lib(&t, "/dev/shm", "int r(void){return 2;}");
    let (c, f) = t.check_json();
    let r = find(&f, "rpath", lib).unwrap_or_else(|| panic!("{:?}", kinds(&f)));
    assert!(r["detail"].as_str().unwrap().contains("/dev/shm"), "{r}");
    assert!(r.get("acknowledged").is_none());
    assert_eq!(c & 8, 8);
}

#[test]
fn an_acknowledged_unpackaged_library_is_loud_again_when_its_content_changes() {
    let t = TestRoot::debian();
    dpkg_root(&t);
    let foo = "/usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3";
    t.init();
    let (c, f) = t.check_json();
    assert!(find(&f, "unpackaged", foo).is_some(), "{:?}", kinds(&f));
    assert_eq!(c & 8, 8);

    // Everything standing, by kind and glob.
    let (c, _, e) = json(
        &t,
        &["accept", "--kind", "unpackaged", "/usr/lib/**/libfoo*"],
    );
    assert_eq!(c, 0, "{e}");
    let (c, f) = t.check_json();
    assert!(find(&f, "unpackaged", foo).is_none(), "{:?}", kinds(&f));
    // Accepting all the rest leaves a silent check.
    let (c2, _, e) = json(&t, &["accept", "--all-standing"]);
    assert_eq!(c2, 0, "{e}");
    let o = t.run(&["check"]);
    assert_eq!(code(&o), 0, "{c} {}", err(&o));
    assert!(
        o.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );

    // New bytes: the acknowledgement was for the old digest.
    t.compile_so(
        &format!("{MA}/libfoo.so.1.2.3"),
        "libfoo.so.1",
        "int foo(void){return 9;}",
    );
    let (c, f) = t.check_json();
    let u = find(&f, "unpackaged", foo).unwrap_or_else(|| panic!("{:?}", kinds(&f)));
    assert!(u.get("acknowledged").is_none());
    assert_eq!(c & 12, 12, "content and policy: {:?}", kinds(&f));
}

#[test]
fn accept_names_what_it_acknowledges_and_refuses_nothing_named() {
    let t = TestRoot::debian();
    rpath_lib(&t, "/tmp/x", "int r(void){return 1;}");
    t.init();
    let before = generation(&t);
    // Nothing named: a usage error, nothing written.
    let o = t.run(&["accept"]);
    assert_eq!(code(&o), 64, "{}", err(&o));
    assert!(err(&o).contains("--all-standing"), "{}", err(&o));
    let o = t.run(&["accept", "--kind", "added", "--all-standing"]);
    assert_eq!(code(&o), 64, "{}", err(&o));
    // A dry run shows it and writes nothing.
    let (c, f, e) = json(&t, &["accept", "--all-standing", "--dry-run"]);
    assert_eq!(c, 0, "{e}");
    let d = find(&f, "rpath", "/usr/lib/x86_64-linux-gnu/libr.so.1").expect("listed");
    assert_eq!(d["dry_run"], true);
    assert_eq!(generation(&t), before);
    let (c, _) = t.check_json();
    assert_eq!(c & 8, 8);
}

/// Writes a generation over the live one as an intruder with write access
/// to the baseline directory but not the signing key would: the live
/// records and pairs, plus an acknowledgement of every finding `check
/// --all` reports now, through the store's own API.
fn forge_acknowledgements(t: &TestRoot, key: Option<&Path>) {
    use libwarden::acknowledge::Acks;
    use libwarden::baseline::store::Store;
    use libwarden::finding::{Finding, Kind, Severity};
    let (_, f, _) = json(t, &["check", "--all"]);
    assert!(!f.is_empty());
    let store = Store::open_for_write(&t.db()).unwrap();
    let (_, records, extra) = store.load_with_extra().unwrap();
    let mut acks = Acks::from_pairs(&extra);
    for x in &f {
        let kind = libwarden::acknowledge::kind_named(x["kind"].as_str().unwrap());
        let Some(kind): Option<Kind> = kind else {
            continue;
        };
        let g = Finding::audit(
            kind,
            Severity::High,
            x["path"].as_str().unwrap().as_bytes().to_vec(),
            x["detail"].as_str().unwrap().to_string(),
        );
        acks.accept(&g, &records, "intruder", 1);
    }
    let signer = key.map(|k| libwarden::baseline::signing::load_secret(k).unwrap());
    let root = t.root();
    store
        .write_generation_with_extra(
            &records,
            &acks.merge_into(&extra),
            root.as_os_str().as_encoded_bytes(),
            signer.as_ref(),
        )
        .unwrap();
}

#[test]
fn acknowledgements_are_covered_by_the_signature_and_the_digest() {
    let t = TestRoot::debian();
    rpath_lib(&t, "/tmp/x", "int r(void){return 1;}");
    let keys = t.dir.path().join("keys");
    t.run_ok(&["keygen", keys.to_str().unwrap()]);
    let (sk, pk) = (keys.join("libwarden.key"), keys.join("libwarden.pub"));
    let (sk, pk) = (sk.to_str().unwrap(), pk.to_str().unwrap());
    t.run_ok(&["init", "--sign-with", sk]);

    // Without the key, a signed baseline takes no acknowledgement.
    let o = t.run(&["accept", "--all-standing"]);
    assert_eq!(code(&o), 64, "{}", err(&o));
    assert!(err(&o).contains("--sign-with"), "{}", err(&o));

    // An intruder's generation: unsigned, or signed by another key.
    let other = t.dir.path().join("other");
    t.run_ok(&["keygen", other.to_str().unwrap()]);
    for key in [None, Some(other.join("libwarden.key"))] {
        forge_acknowledgements(&t, key.as_deref());
        let o = t.run(&["--verify-with", pk, "check"]);
        assert_eq!(code(&o), 65, "{key:?}: {}", err(&o));
        assert!(o.stdout.is_empty());
    }
    // (Without a public key to verify with, the forgery would have
    // silenced the finding: it is the signature that stops it.)
    let o = t.run(&["check"]);
    assert_eq!(code(&o), 0, "{}", err(&o));
}

#[test]
fn an_acknowledgement_edited_into_the_live_generation_is_a_damaged_baseline() {
    let t = TestRoot::debian();
    rpath_lib(&t, "/tmp/x", "int r(void){return 1;}");
    t.init();
    // What a real acknowledgement looks like, from a copy of the baseline.
    let copy = t.dir.path().join("copy");
    sh(Command::new("cp").arg("-a").arg(t.db()).arg(&copy));
    let o = t
        .cmd(&["accept", "--all-standing"])
        .arg("--db")
        .arg(&copy)
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", err(&o));
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = {
        let db = sled::open(live_generation_dir(&copy)).unwrap();
        let mut v = Vec::new();
        for name in db.tree_names() {
            if name.starts_with(b"extra/") {
                for kv in db.open_tree(&name).unwrap().iter() {
                    let (k, val) = kv.unwrap();
                    if k.starts_with(b"a\0") {
                        v.push((k.to_vec(), val.to_vec()));
                    }
                }
            }
        }
        v
    };
    assert!(!pairs.is_empty(), "accept stored no acknowledgement");
    // The intruder copies it into the live generation of the real one.
    {
        let db = sled::open(live_generation_dir(&t.db())).unwrap();
        let name = db
            .tree_names()
            .into_iter()
            .find(|n| n.starts_with(b"extra/"))
            .unwrap_or_else(|| format!("extra/{:020}", 1).as_bytes().into());
        let tree = db.open_tree(name).unwrap();
        for (k, v) in &pairs {
            tree.insert(k.as_slice(), v.as_slice()).unwrap();
        }
        db.flush().unwrap();
    }
    let o = t.run(&["check"]);
    assert_eq!(code(&o), 65, "{}", err(&o));
    assert!(o.stdout.is_empty());
}

#[test]
fn an_exclude_added_after_init_floods_nothing() {
    let t = TestRoot::debian();
    for i in 0..5 {
        t.compile_so(
            &format!("{MA}/jdk/lib/libj{i}.so"),
            &format!("libj{i}.so"),
            "int j(void){return 1;}",
        );
    }
    t.compile_so_with(
        &format!("{MA}/jdk/lib/librp.so"),
        "librp.so",
        "int r(void){return 1;}",
        &["-Wl,--enable-new-dtags", "-Wl,-rpath,/tmp/x"],
    );
    t.init();
    let (c, f) = t.check_json();
    assert!(
        find(&f, "rpath", "/usr/lib/x86_64-linux-gnu/jdk/lib/librp.so").is_some(),
        "{:?}",
        kinds(&f)
    );
    assert_eq!(c & 8, 8);
    t.write(
        "etc/lw.toml",
        "exclude = [\"/usr/lib/x86_64-linux-gnu/jdk\"]\n",
    );
    let cfg = t.path("etc/lw.toml");
    let (c, f, e) = json(&t, &["--config", cfg.to_str().unwrap(), "check"]);
    assert!(f.iter().all(|x| x["kind"] != "removed"), "{:?}", kinds(&f));
    assert!(f.is_empty(), "{:?} {e}", kinds(&f));
    assert_eq!(c, 0, "{e}");
}

#[test]
fn update_dry_run_lists_what_it_would_accept_and_writes_nothing() {
    let t = TestRoot::debian();
    t.init();
    t.compile_so(
        &format!("{MA}/libnew.so.1"),
        "libnew.so.1",
        "int n(void){return 1;}",
    );
    let before = generation(&t);
    let (c, f, e) = json(&t, &["update", "--dry-run"]);
    assert_eq!(c, 0, "{e}");
    let a = find(&f, "added", "/usr/lib/x86_64-linux-gnu/libnew.so.1")
        .unwrap_or_else(|| panic!("{:?}", kinds(&f)));
    assert_eq!(a["dry_run"], true);
    assert!(a.get("accepted").is_none());
    assert!(e.contains("nothing written"), "{e}");
    assert_eq!(generation(&t), before);
    let (c, f) = t.check_json();
    assert_eq!(c & 1, 1, "{:?}", kinds(&f));
    // The real one marks what it accepted, on stdout and in syslog.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let target = format!("udp://{}", udp.local_addr().unwrap());
    let (c, f, e) = json(&t, &["update", "--syslog", &target]);
    assert_eq!(c, 0, "{e}");
    let a = find(&f, "added", "/usr/lib/x86_64-linux-gnu/libnew.so.1").unwrap();
    assert_eq!(a["accepted"], true);
    assert_ne!(generation(&t), before);
    let mut buf = [0u8; 8192];
    let n = udp.recv(&mut buf).expect("a syslog message");
    let msg = String::from_utf8_lossy(&buf[..n]);
    assert!(
        msg.contains("source=\"accepted\"") && msg.contains("libnew.so.1"),
        "{msg}"
    );
}

#[test]
fn a_bare_update_refuses_a_critical_preload_list_without_yes() {
    let t = TestRoot::debian();
    t.init();
    t.write(
        "etc/ld.so.preload",
        "/usr/lib/x86_64-linux-gnu/libfoo.so.1\n",
    );
    let (_, f, _) = json(&t, &["update", "--dry-run"]);
    let p = find(&f, "added", "/etc/ld.so.preload").unwrap_or_else(|| panic!("{:?}", kinds(&f)));
    assert_eq!(p["severity"], "critical");
    let before = generation(&t);
    let o = t.run(&["update"]);
    assert_eq!(code(&o), 64, "{}", err(&o));
    assert!(
        err(&o).contains("critical") && err(&o).contains("/etc/ld.so.preload"),
        "{}",
        err(&o)
    );
    assert!(o.stdout.is_empty());
    assert_eq!(generation(&t), before);
    let (c, f) = t.check_json();
    assert!(find(&f, "added", "/etc/ld.so.preload").is_some());
    assert_eq!(c & 1, 1);
    // Named, it is accepted.
    t.run_ok(&["update", "/etc/ld.so.preload"]);
    let (_, f) = t.check_json();
    assert!(
        find(&f, "added", "/etc/ld.so.preload").is_none(),
        "{:?}",
        kinds(&f)
    );
    // And --yes accepts one in a bare update.
    t.write(
        "etc/ld.so.preload",
        "/usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3\n",
    );
    assert_eq!(code(&t.run(&["update"])), 64);
    t.run_ok(&["update", "--yes"]);
}

#[test]
fn the_process_audit_never_reports_the_running_libwarden() {
    if !Path::new("/proc/self/environ").exists() {
        eprintln!("SKIPPED: no /proc: the process audit does not run here");
        return;
    }
    let t = TestRoot::new();
    let dir = format!("/tmp/lw-self-{}", std::process::id());
    // The processes are the point: leave the host's libraries unread.
    let cfg = t.dir.path().join("lw.toml");
    std::fs::write(&cfg, "exclude = [\"/**\"]\naudit_exec_dirs = []\n").unwrap();
    // Another process with the same variable is still reported: only
    // libwarden's own process is exempt.
    let mut other = Command::new("sleep")
        .arg("30")
        .env("LD_LIBRARY_PATH", &dir)
        .spawn()
        .unwrap();
    let pid = other.id();
    let lw = Command::new(bin())
        .args(["--format", "json", "--db"])
        .arg(t.db())
        .arg("--config")
        .arg(&cfg)
        .arg("audit")
        .env_remove("LD_PRELOAD")
        .env("LD_LIBRARY_PATH", &dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let me = lw.id();
    let o = lw.wait_with_output().unwrap();
    let _ = other.kill();
    let _ = other.wait();
    let f = json_lines(&o.stdout);
    let with_dir: Vec<&Value> = f
        .iter()
        .filter(|x| {
            x["kind"] == "process"
                && x["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains(&format!("LD_LIBRARY_PATH={dir}")))
        })
        .collect();
    assert_eq!(with_dir.len(), 1, "{with_dir:#?} {}", err(&o));
    let d = with_dir[0]["detail"].as_str().unwrap();
    assert!(d.contains(&format!("pid {pid} (sleep)")), "{d}");
    assert!(d.contains("1 process:"), "libwarden reported itself: {d}");
    assert!(!d.contains("libwarden"), "{d}");
    // No process finding names the running libwarden (other libwarden
    // processes, of tests running beside this one, may rightly be named:
    // a binary under /tmp is mapped from a writable dir).
    let own = format!("pid {me} (");
    assert!(
        f.iter()
            .all(|x| x["kind"] != "process"
                || !x["detail"].as_str().is_some_and(|d| d.contains(&own))),
        "libwarden (pid {me}) reported itself: {f:#?}"
    );
}

#[test]
fn watch_is_silent_about_what_is_acknowledged_and_loud_about_the_rest() {
    let t = TestRoot::debian();
    rpath_lib(&t, "/tmp/x", "int r(void){return 1;}");
    t.init();
    t.run_ok(&["accept", "--all-standing"]);
    let mut w = Watch::start(&t, &[], &[]);
    // A new library with a RUNPATH into /tmp: the event's audit reports
    // it; the acknowledged one stays silent.
    t.compile_so_with(
        &format!("{MA}/libs.so.1"),
        "libs.so.1",
        "int s(void){return 1;}",
        &["-Wl,--enable-new-dtags", "-Wl,-rpath,/tmp/y"],
    );
    w.expect("rpath", "/usr/lib/x86_64-linux-gnu/libs.so.1");
    w.drain(std::time::Duration::from_millis(500));
    assert_eq!(
        w.count("rpath", "/usr/lib/x86_64-linux-gnu/libr.so.1"),
        0,
        "{:#?}",
        w.seen
    );
}

#[test]
fn accept_all_standing_refuses_a_critical_finding_unless_named_or_yes() {
    let t = TestRoot::debian();
    std::fs::create_dir_all(t.path("tmp")).unwrap();
    std::fs::set_permissions(
        t.path("tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
    t.compile_so("tmp/evil.so", "evil.so", "int evil(void){return 1;}");
    t.write("etc/ld.so.preload", "/tmp/evil.so\n");
    t.init();
    let (_, f) = t.check_json();
    let c = find(&f, "preload", "/tmp/evil.so").unwrap_or_else(|| panic!("{:?}", kinds(&f)));
    assert_eq!(c["severity"], "critical");
    let before = generation(&t);
    let o = t.run(&["accept", "--all-standing"]);
    assert_eq!(code(&o), 64, "{}", err(&o));
    assert!(err(&o).contains("/tmp/evil.so") && err(&o).contains("--yes"));
    assert_eq!(generation(&t), before);
    // Everything but the critical one, by kind.
    t.run_ok(&["accept", "--kind", "preload", "/etc/ld.so.preload"]);
    let (_, f) = t.check_json();
    assert!(
        find(&f, "preload", "/etc/ld.so.preload").is_none(),
        "{:?}",
        kinds(&f)
    );
    assert!(
        find(&f, "preload", "/tmp/evil.so").is_some(),
        "{:?}",
        kinds(&f)
    );
    // Named, or with --yes, it is acknowledged.
    t.run_ok(&["accept", "--all-standing", "--yes"]);
    let o = t.run(&["check"]);
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert!(
        o.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}
