//! Living with libwarden as an admin tool: SIEM-ready lines (`time`,
//! `host`, ECS documents checked against the committed ECS field list),
//! extra digests, durations, journal priorities, the shipped units and the
//! Debian package.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

#[allow(unused_imports)]
use crate::util::*;

/// The committed ECS field list: field -> type, and the allowed values of
/// the categorization fields.
struct EcsReference {
    types: BTreeMap<String, String>,
    allowed: BTreeMap<String, Vec<String>>,
}

fn ecs_reference() -> EcsReference {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/data/ecs-fields-8.11.0.csv");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut r = EcsReference {
        types: BTreeMap::new(),
        allowed: BTreeMap::new(),
    };
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let cols: Vec<&str> = line.split(',').collect();
        match cols.as_slice() {
            ["Field", "Type"] => {}
            ["allowed", field, value] => r
                .allowed
                .entry(field.to_string())
                .or_default()
                .push(value.to_string()),
            [field, ty] => {
                r.types.insert(field.to_string(), ty.to_string());
            }
            _ => panic!("bad line in {}: {line}", path.display()),
        }
    }
    r
}

/// Every leaf of a document as (dotted name, value); arrays are leaves.
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&name, v, out);
            }
        }
        other => out.push((prefix.to_string(), other.clone())),
    }
}

fn is_rfc3339_utc(s: &str) -> bool {
    // 2026-12-01T14:20:25.123Z
    let b = s.as_bytes();
    b.len() == 24
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[23] == b'Z'
        && s[..4].parse::<u32>().is_ok()
}

/// Checks one ECS document: every non-`libwarden.*` field is in the list,
/// with a JSON value of its ECS type; categorization values are allowed.
fn check_ecs_document(r: &EcsReference, doc: &Value) {
    let mut leaves = Vec::new();
    flatten("", doc, &mut leaves);
    for (name, v) in &leaves {
        if name.starts_with("libwarden.") {
            continue;
        }
        let ty = r
            .types
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not an ECS 8.11 field: {doc}"));
        let values: Vec<&Value> = match v {
            Value::Array(a) => a.iter().collect(),
            one => vec![one],
        };
        assert!(!values.is_empty(), "{name} is an empty array: {doc}");
        for v in values {
            let ok = match ty.as_str() {
                "keyword" | "match_only_text" | "text" => v.is_string(),
                "long" => v.is_i64() || v.is_u64(),
                "float" => v.is_number(),
                "date" => v.as_str().is_some_and(is_rfc3339_utc),
                other => panic!("type {other} of {name} not handled by the test"),
            };
            assert!(ok, "{name}: {v} is not of ECS type {ty}: {doc}");
        }
        if let Some(allowed) = r.allowed.get(name) {
            let vals: Vec<&Value> = match v {
                Value::Array(a) => a.iter().collect(),
                one => vec![one],
            };
            for v in vals {
                assert!(
                    allowed.iter().any(|a| v == a),
                    "{name}: {v} is not an allowed value: {doc}"
                );
            }
        }
    }
    for required in [
        "@timestamp",
        "ecs.version",
        "event.kind",
        "event.category",
        "event.type",
        "event.severity",
        "event.risk_score",
        "rule.name",
        "host.name",
        "message",
    ] {
        assert!(
            leaves.iter().any(|(n, _)| n == required),
            "{required} missing: {doc}"
        );
    }
    assert_eq!(doc["rule.name"], Value::Null, "dotted keys are not used");
    assert_eq!(doc["rule"]["name"], doc["libwarden"]["kind"]);
    assert!(doc["ecs"]["version"].as_str().unwrap().starts_with("8."));
}

/// A root with one added, one changed and one removed library since init.
fn changed_root() -> TestRoot {
    let t = TestRoot::debian();
    t.compile_so(
        "usr/lib/x86_64-linux-gnu/libgone.so.1",
        "libgone.so.1",
        "int g(void){return 1;}",
    );
    t.init();
    t.compile_so(
        "usr/lib/x86_64-linux-gnu/libnew.so.1",
        "libnew.so.1",
        "int n(void){return 1;}",
    );
    t.compile_so(
        "usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3",
        "libfoo.so.1",
        "int foo(void){return 2;}",
    );
    std::fs::remove_file(t.path("usr/lib/x86_64-linux-gnu/libgone.so.1")).unwrap();
    t
}

#[test]
fn check_json_lines_carry_time_and_host() {
    let t = changed_root();
    let (code, f) = t.check_json();
    assert_eq!(code & 7, 7, "{f:#?}");
    assert!(f.len() >= 3, "{f:#?}");
    let root = t.root().display().to_string();
    for line in &f {
        let time = line["time"]
            .as_str()
            .unwrap_or_else(|| panic!("no time: {line}"));
        assert!(is_rfc3339_utc(time), "{time}");
        // Judged under --root: the host is the image judged.
        assert_eq!(line["host"], root.as_str(), "{line}");
    }
}

#[test]
fn ecs_documents_pass_the_committed_ecs_field_list() {
    let r = ecs_reference();
    let t = changed_root();
    // A world-writable search dir: a policy finding too.
    let o = t.run(&["--format", "ecs", "check"]);
    let docs = json_lines(&o.stdout);
    assert_eq!(
        o.status.code().unwrap_or(-1) & 7,
        7,
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for d in &docs {
        check_ecs_document(&r, d);
    }
    let by_kind = |k: &str| {
        docs.iter()
            .find(|d| d["rule"]["name"] == k)
            .unwrap_or_else(|| panic!("no {k}: {docs:#?}"))
    };
    let added = by_kind("added");
    assert_eq!(added["event"]["type"][0], "creation");
    assert_eq!(added["event"]["kind"], "alert");
    assert_eq!(
        added["file"]["path"],
        "/usr/lib/x86_64-linux-gnu/libnew.so.1"
    );
    assert_eq!(added["file"]["name"], "libnew.so.1");
    assert!(
        added["file"]["mode"].as_str().unwrap().len() == 4,
        "{added}"
    );
    assert!(
        added["libwarden"]["baseline"]["generation"].is_u64(),
        "{added}"
    );
    assert_eq!(by_kind("removed")["event"]["type"][0], "deletion");
    let content = by_kind("content");
    assert_eq!(content["event"]["type"][0], "change");
    assert!(
        content["libwarden"]["before"]["blake3"].is_string(),
        "{content}"
    );
    // No extra digest unless configured.
    assert!(content["file"].get("hash").is_none(), "{content}");
}

#[test]
fn ecs_process_findings_carry_the_pid() {
    let r = ecs_reference();
    let t = TestRoot::new();
    let Some(child) = Preloaded::start(&t, "ecs", 600, false) else {
        return;
    };
    let pid = child.pid;
    // The processes alone: hashing and judging the provenance of the whole
    // host would take minutes in a debug build.
    let cfg = t.dir.path().join("processes-only.toml");
    std::fs::write(
        &cfg,
        "exclude = [\"/**\"]\naudit_exec_dirs = []\n[provenance]\ndisabled = true\n",
    )
    .unwrap();
    let o = Command::new(bin())
        .arg("--config")
        .arg(&cfg)
        .args(["--format", "ecs", "--db"])
        .arg(t.db())
        .arg("audit")
        .env_remove("LD_PRELOAD")
        .output()
        .unwrap();
    drop(child);
    let docs = json_lines(&o.stdout);
    for d in &docs {
        check_ecs_document(&r, d);
    }
    let p = docs
        .iter()
        .find(|d| d["rule"]["name"] == "process" && d["process"]["pid"] == pid)
        .unwrap_or_else(|| panic!("no process document for pid {pid}: {docs:#?}"));
    assert_eq!(p["event"]["category"][0], "process");
    assert_eq!(p["host"]["name"].as_str().map(str::is_empty), Some(false));
}

#[test]
fn sha256_is_off_by_default_and_with_hashes_it_is_stored_and_reported() {
    let t = changed_root();
    let cfg = t.dir.path().join("config.toml");
    std::fs::write(&cfg, "hashes = [\"sha256\"]\n").unwrap();
    let cfg = cfg.to_str().unwrap().to_string();
    // A fresh baseline with the extra digest.
    t.run_ok(&["--config", &cfg, "init", "--force"]);
    t.compile_so(
        "usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3",
        "libfoo.so.1",
        "int foo(void){return 3;}",
    );
    let o = t.run(&["--config", &cfg, "--format", "ecs", "check"]);
    let docs = json_lines(&o.stdout);
    let content = docs
        .iter()
        .find(|d| d["rule"]["name"] == "content")
        .unwrap_or_else(|| panic!("{docs:#?} {}", String::from_utf8_lossy(&o.stderr)));
    let bytes = std::fs::read(t.path("usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3")).unwrap();
    let want = sha256_hex(&bytes);
    assert_eq!(
        content["file"]["hash"]["sha256"],
        want.as_str(),
        "{content}"
    );
    // The baseline record has one too (computed at init, stored).
    let before = content["libwarden"]["before"]["sha256"].as_str().unwrap();
    assert_eq!(before.len(), 64);
    assert_ne!(before, want);
    check_ecs_document(&ecs_reference(), content);
    // JSON carries it in the records as well.
    let (_, f) = {
        let o = t.run(&["--config", &cfg, "--format", "json", "check"]);
        (o.status.code(), json_lines(&o.stdout))
    };
    let c = find(&f, "content", "/usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3").unwrap();
    assert_eq!(c["after"]["sha256"], want.as_str());
    // Unknown digests are a usage error, not ignored.
    std::fs::write(&cfg, "hashes = [\"md4\"]\n").unwrap();
    assert_eq!(t.run(&["--config", &cfg, "check"]).status.code(), Some(64));
}

/// SHA-256 by coreutils, independent of the code under test.
fn sha256_hex(data: &[u8]) -> String {
    use std::io::Write;
    let mut c = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(data).unwrap();
    let o = c.wait_with_output().unwrap();
    String::from_utf8(o.stdout).unwrap()[..64].to_string()
}

#[test]
fn durations_are_parsed_as_users_write_them() {
    let t = TestRoot::new();
    let missing = t.dir.path().join("no-such-root");
    let missing = missing.to_str().unwrap();
    // Accepted by the parser: the run then stops at the missing root (66),
    // not at the flags (64).
    for (interval, debounce) in [("1h30m", "1.5s"), ("2w", "150ms"), ("90", "1s")] {
        let o = Command::new(bin())
            .args(["--root", missing, "watch", "--rescan-interval", interval])
            .args(["--debounce", debounce])
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(66),
            "{interval} {debounce}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    for bad in ["1x", "0s", ""] {
        let o = Command::new(bin())
            .args(["--root", missing, "watch", "--debounce", bad])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(64), "{bad:?}");
    }
}

/// A pipe: (read end, write end, "dev:ino" of the write end as systemd
/// puts it in `JOURNAL_STREAM`).
fn pipe_with_identity() -> (std::fs::File, std::os::fd::OwnedFd, String) {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0i32; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let (r, w) = unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            OwnedFd::from_raw_fd(fds[1]),
        )
    };
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::fstat(fds[1], &mut st) }, 0);
    (r, w, format!("{}:{}", st.st_dev, st.st_ino))
}

/// Runs `args` with stdout and stderr on pipes; `journal` picks which of
/// them `JOURNAL_STREAM` names. Returns (stdout, stderr).
fn run_as_under_systemd(t: &TestRoot, args: &[&str], journal: &str) -> (String, String) {
    use std::io::Read;
    let (mut out_r, out_w, out_id) = pipe_with_identity();
    let (mut err_r, err_w, err_id) = pipe_with_identity();
    let id = match journal {
        "stdout" => out_id,
        "stderr" => err_id,
        _ => "1:1".into(),
    };
    let mut c = t.cmd(args);
    c.env("JOURNAL_STREAM", id)
        .stdout(std::process::Stdio::from(out_w))
        .stderr(std::process::Stdio::from(err_w));
    let mut child = c.spawn().unwrap();
    drop(c);
    let mut err = String::new();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        out_r.read_to_string(&mut out).unwrap();
        out
    });
    err_r.read_to_string(&mut err).unwrap();
    let out = reader.join().unwrap();
    child.wait().unwrap();
    (out, err)
}

#[test]
fn under_systemd_lines_carry_the_journal_priority_of_their_severity() {
    let t = changed_root();
    // A preload list: a critical or high policy finding beside the changes.
    t.write("etc/ld.so.preload", "/tmp/evil.so\n");
    let (out, err) = run_as_under_systemd(&t, &["check"], "stdout");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() >= 4, "{out}");
    for l in &lines {
        let sev = l[3..].split_whitespace().next().unwrap();
        let want = match sev {
            "critical" => "<2>",
            "high" => "<3>",
            "medium" => "<4>",
            "low" => "<5>",
            "info" => "<6>",
            other => panic!("{other}: {l}"),
        };
        assert!(l.starts_with(want), "{l}");
    }
    // stderr is not the journal here: no prefixes there.
    assert!(
        !err.contains("<6>") && err.contains("libwarden check:"),
        "{err}"
    );

    // JSON too: the prefix comes before the object, which journald strips.
    let (out, _) = run_as_under_systemd(&t, &["--format", "json", "check"], "stdout");
    for l in out.lines() {
        assert!(l.starts_with('<') && l.as_bytes()[2] == b'>', "{l}");
        let v: Value = serde_json::from_str(&l[3..]).unwrap();
        assert!(v["time"].is_string());
    }

    // stderr to the journal: the summary at info, warnings at warning.
    t.write("etc/ld.so.conf.d/gone.conf", "/no/such/dir\n");
    let (out, err) = run_as_under_systemd(&t, &["check"], "stderr");
    assert!(!out.starts_with('<'), "{out}");
    let summary = err
        .lines()
        .find(|l| l.contains("libwarden check:"))
        .unwrap();
    assert!(summary.starts_with("<6>"), "{err}");
    for l in err.lines().filter(|l| l.contains(": warning: ")) {
        assert!(l.starts_with("<4>"), "{l}");
    }
    // An error (a missing baseline) at err priority.
    let empty = TestRoot::new();
    let (_, err) = run_as_under_systemd(&empty, &["check"], "stderr");
    assert!(
        err.lines().any(|l| l.starts_with("<3>libwarden: error:")),
        "{err}"
    );

    // A JOURNAL_STREAM naming some other stream: no prefixes anywhere.
    let (out, err) = run_as_under_systemd(&t, &["check"], "neither");
    assert!(!out.contains("<3>") && !err.contains("<6>"), "{out}{err}");
}

/// The capabilities a shipped unit keeps (`CapabilityBoundingSet=`), as
/// setpriv names them: `-all,+dac_read_search,...`.
fn unit_bounding_set(unit: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("dist")
        .join(unit);
    let text = std::fs::read_to_string(&path).unwrap();
    let caps: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .flat_map(|v| v.split_whitespace())
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_ascii_lowercase()))
        .collect();
    assert!(!caps.is_empty(), "{unit} has no CapabilityBoundingSet=");
    format!("-all,{}", caps.join(","))
}

/// `libwarden --format json audit` as the unit runs it: root, with only the
/// unit's bounding set (`None`: this process's), no inheritable caps, no
/// new privileges. The host's files are excluded (`cfg`): only the process
/// audit matters here, and hashing the host would take long.
fn audit_with_bounding_set(set: Option<&str>, t: &TestRoot) -> (Vec<Value>, String) {
    let cfg = t.dir.path().join("processes-only.toml");
    std::fs::write(&cfg, "exclude = [\"/**\"]\n").unwrap();
    let mut c = Command::new("setpriv");
    if let Some(set) = set {
        c.args(["--bounding-set", set]);
    }
    let o = c
        .args(["--inh-caps", "-all", "--no-new-privs", "--"])
        .arg(bin())
        .arg("--config")
        .arg(&cfg)
        .args(["--format", "json", "--db"])
        .arg(t.db())
        .arg("audit")
        .env_remove("LD_PRELOAD")
        .output()
        .unwrap();
    (
        json_lines(&o.stdout),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn the_check_units_capabilities_let_the_process_audit_read_every_process() {
    if !is_root() {
        eprintln!("SKIPPED: needs root (setpriv with a bounding set, a process of another user)");
        return;
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("SKIPPED: no setpriv (util-linux)");
        return;
    }
    if !Path::new("/dev/shm").is_dir() {
        eprintln!("SKIPPED: no /dev/shm for the preloaded object");
        return;
    }
    let t = TestRoot::new();
    // A process of another user (nobody) with a preloaded object: what a
    // root run finds and the old unit missed.
    let Some(child) = Preloaded::start(&t, "unit", 600, true) else {
        return;
    };
    let found = |f: &[Value]| f.iter().any(|x| child.is_environ_finding(x));

    let set = unit_bounding_set("libwarden-check.service");
    let (f, err) = audit_with_bounding_set(Some(&set), &t);
    // What root with every capability of this test reads.
    let (root_f, root_err) = audit_with_bounding_set(None, &t);
    // The set before CAP_SYS_PTRACE was added: the process is not read.
    let old = set.replace(",+sys_ptrace", "");
    let (old_f, old_err) = audit_with_bounding_set(Some(&old), &t);

    assert!(set.contains("+sys_ptrace"), "{set}");
    // Every process a root run reads (a container's init may be beyond
    // even root: the same count is unreadable then).
    assert_eq!(
        unreadable(&err),
        unreadable(&root_err),
        "under {set}: {err}\nas root: {root_err}"
    );
    assert!(found(&root_f), "{root_f:#?}\n{root_err}");
    assert!(
        found(&f),
        "under {set} the preloaded process of nobody was missed: {f:#?}\n{err}"
    );
    // And the test tells the difference: without it, it is missed.
    assert!(
        unreadable(&old_err) > unreadable(&root_err),
        "{old}: {old_err}"
    );
    assert!(!found(&old_f), "{old}: {old_f:#?}");
}

/// N of the audit's note "N of M processes could not be read" (0 without it).
fn unreadable(stderr: &str) -> usize {
    stderr
        .lines()
        .find_map(|l| {
            let at = l.find(" processes could not be read")?;
            let head = &l[..at];
            let n = head.split(" of ").next()?.rsplit(' ').next()?;
            n.parse().ok()
        })
        .unwrap_or(0)
}

/// Renders a man page with `man -l` (no pager, fixed width); its text.
fn render_man(page: &Path) -> String {
    let o = Command::new("man")
        .arg("-l")
        .arg(page)
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .env("MANWIDTH", "80")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "man -l {}: {}",
        page.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn man_pages_and_completions_come_from_the_command_line_definition() {
    let t = TestRoot::new();
    let man = t.dir.path().join("man");
    let o = Command::new(bin())
        .arg("generate")
        .arg("man")
        .arg(&man)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut pages: Vec<String> = std::fs::read_dir(&man)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    pages.sort();
    let want = [
        "audit", "bench", "check", "export", "init", "keygen", "paths", "update", "watch",
    ];
    for w in want {
        assert!(
            pages.contains(&format!("libwarden-{w}.1")),
            "{w}: {pages:?}"
        );
    }
    assert!(pages.contains(&"libwarden.1".to_string()), "{pages:?}");
    assert!(
        !pages
            .iter()
            .any(|p| p.contains("generate") || p.contains("help")),
        "{pages:?}"
    );
    if have("man") {
        for p in &pages {
            let text = render_man(&man.join(p));
            assert!(
                text.contains("NAME") && text.contains("SYNOPSIS"),
                "{p}: {text}"
            );
        }
        let main = render_man(&man.join("libwarden.1"));
        assert!(
            main.contains("Exit status") && main.contains("AIDE"),
            "{main}"
        );
        let watch = render_man(&man.join("libwarden-watch.1"));
        assert!(watch.contains("--rescan-interval"), "{watch}");
    } else {
        eprintln!("SKIPPED: no man to render the pages (man-db)");
    }

    let comp = t.dir.path().join("completions");
    for (what, file, marker) in [
        ("complete-bash", "libwarden", "complete -F"),
        ("complete-zsh", "_libwarden", "#compdef libwarden"),
        ("complete-fish", "libwarden.fish", "complete -c libwarden"),
    ] {
        let o = Command::new(bin())
            .arg("generate")
            .arg(what)
            .arg(&comp)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{what}");
        let text = std::fs::read_to_string(comp.join(file)).unwrap();
        assert!(text.contains(marker), "{what}: {marker}");
        assert!(text.contains("rescan-interval"), "{what}");
    }
    let o = Command::new("bash")
        .arg("-n")
        .arg(comp.join("libwarden"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The static release binary `.ci/run` builds, if it is there.
fn static_binary() -> Option<std::path::PathBuf> {
    let o = Command::new("rustc").arg("-vV").output().ok()?;
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let host = text
        .lines()
        .find_map(|l| l.strip_prefix("host: "))?
        .trim()
        .to_string();
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/static")
        .join(host)
        .join("release/libwarden");
    p.is_file().then_some(p)
}

fn ok(c: &mut Command) -> std::process::Output {
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "{c:?}: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

#[test]
fn the_debian_package_installs_verifies_and_removes_cleanly() {
    let Some(binary) = static_binary() else {
        eprintln!("SKIPPED: no static release binary at target/static/HOST/release/libwarden (.ci/run builds it first)");
        return;
    };
    if !is_root() {
        eprintln!("SKIPPED: dpkg --root with maintainer scripts needs root");
        return;
    }
    for tool in ["dpkg-deb", "dpkg", "systemd-analyze", "man", "gzip"] {
        if !have(tool) {
            eprintln!("SKIPPED: no {tool} (.ci/deps installs it)");
            return;
        }
    }
    let t = TestRoot::debian();
    let work = t.dir.path();
    let out = work.join("deb");
    let built = ok(
        Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/deb/build"))
            .arg(&binary)
            .arg(&out),
    );
    let deb = String::from_utf8(built.stdout).unwrap().trim().to_string();
    assert!(deb.ends_with(".deb") && Path::new(&deb).is_file(), "{deb}");

    // A fresh root with an empty dpkg database; the host's own systemd
    // units (targets the ours refer to) and /bin/kill for the verifier.
    let r = work.join("target-root");
    for d in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "usr/lib/systemd",
        "bin",
        "etc",
    ] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::write(r.join("var/lib/dpkg/status"), "").unwrap();
    ok(Command::new("cp")
        .arg("-a")
        .arg("/lib/systemd/system")
        .arg(r.join("usr/lib/systemd/")));
    ok(Command::new("cp").arg("/bin/kill").arg(r.join("bin/kill")));
    let dpkg = |args: &[&str]| {
        let mut c = Command::new("dpkg");
        c.arg(format!("--root={}", r.display()))
            .args(["--force-script-chrootless", "--log=/dev/null"])
            .args(args);
        c
    };
    ok(&mut dpkg(&["-i", &deb]));

    // What it installed.
    let listed = String::from_utf8(ok(&mut dpkg(&["-L", "libwarden"])).stdout).unwrap();
    let mut want: Vec<String> = [
        "/usr/bin/libwarden",
        "/lib/systemd/system/libwarden.service",
        "/lib/systemd/system/libwarden-check.service",
        "/lib/systemd/system/libwarden-check.timer",
        "/lib/systemd/system/libwarden-notify@.service",
        "/lib/systemd/system/libwarden-guard.service",
        "/usr/lib/libwarden/notify",
        "/etc/libwarden/config.toml",
        "/etc/default/libwarden",
        "/etc/cron.d/libwarden",
        "/usr/share/bash-completion/completions/libwarden",
        "/usr/share/zsh/vendor-completions/_libwarden",
        "/usr/share/fish/vendor_completions.d/libwarden.fish",
        "/usr/share/doc/libwarden/README.Debian",
        "/usr/share/doc/libwarden/copyright",
        "/usr/share/man/man1/libwarden.1.gz",
    ]
    .map(String::from)
    .to_vec();
    for c in [
        "audit", "check", "export", "init", "keygen", "paths", "update", "watch", "bench",
    ] {
        want.push(format!("/usr/share/man/man1/libwarden-{c}.1.gz"));
    }
    for w in &want {
        assert!(
            listed.lines().any(|l| l == w),
            "{w} not in dpkg -L:\n{listed}"
        );
    }
    let conffiles = String::from_utf8(
        ok(Command::new("dpkg-query")
            .arg(format!("--root={}", r.display()))
            .args(["-W", "-f=${Conffiles}", "libwarden"]))
        .stdout,
    )
    .unwrap();
    for c in [
        "/etc/libwarden/config.toml",
        "/etc/default/libwarden",
        "/etc/cron.d/libwarden",
    ] {
        assert!(conffiles.contains(c), "{c} is not a conffile: {conffiles}");
    }
    // Installing starts nothing: no unit enabled, the cron line commented.
    let wants = r.join("etc/systemd/system");
    if wants.exists() {
        let o = ok(Command::new("find")
            .arg(&wants)
            .arg("-name")
            .arg("libwarden*"));
        assert!(
            o.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
    let cron = std::fs::read_to_string(r.join("etc/cron.d/libwarden")).unwrap();
    assert!(
        cron.lines()
            .all(|l| l.trim().is_empty() || l.starts_with('#')),
        "{cron}"
    );
    assert!(cron.contains("/usr/bin/libwarden -q check"), "{cron}");

    // The units verify, with no warning, against the installed files.
    let units = [
        "libwarden.service",
        "libwarden-check.service",
        "libwarden-check.timer",
        "libwarden-notify@.service",
        "libwarden-guard.service",
    ];
    let mut verify = Command::new("systemd-analyze");
    verify
        .args(["verify", "--man=no"])
        .arg(format!("--root={}", r.display()));
    for u in units {
        verify.arg(format!("/lib/systemd/system/{u}"));
    }
    let v = verify.output().unwrap();
    assert!(
        v.status.success() && v.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&v.stderr)
    );
    for u in units {
        let text = std::fs::read_to_string(r.join("lib/systemd/system").join(u)).unwrap();
        assert!(
            !text.contains("/usr/local/"),
            "{u} names /usr/local: {text}"
        );
    }
    // Every man page renders; Documentation= of the units names pages that exist.
    for w in want.iter().filter(|w| w.ends_with(".1.gz")) {
        let text = render_man(&r.join(&w[1..]));
        assert!(text.contains("NAME"), "{w}: {text}");
    }

    // The installed binary runs, with the shipped (all commented) config.
    let lw = r.join("usr/bin/libwarden");
    let cfg = r.join("etc/libwarden/config.toml");
    let db = r.join("var/lib/libwarden/baseline");
    ok(Command::new(&lw)
        .arg("--config")
        .arg(&cfg)
        .arg("--root")
        .arg(t.root())
        .arg("--db")
        .arg(&db)
        .arg("init"));
    assert!(db.exists());

    // dpkg -r: program gone, configuration kept, baseline untouched.
    ok(&mut dpkg(&["-r", "libwarden"]));
    assert!(!lw.exists());
    assert!(cfg.exists(), "conffiles stay until purge");
    assert!(db.exists(), "dpkg -r removed the baseline");
    // dpkg -P: configuration gone, baseline still untouched.
    ok(&mut dpkg(&["-P", "libwarden"]));
    assert!(!cfg.exists());
    assert!(db.exists(), "dpkg -P removed the baseline");
    let o = ok(Command::new(bin())
        .arg("--root")
        .arg(t.root())
        .arg("--db")
        .arg(&db)
        .arg("check"));
    assert_eq!(o.status.code(), Some(0));
}

/// Runs `args` (with the fixture's --root and --db) under `script`, so that
/// stdout and stderr are a terminal; what the terminal showed.
fn on_a_terminal(t: &TestRoot, args: &[&str]) -> String {
    let mut line = format!(
        "{} --root {} --db {}",
        bin().display(),
        t.root().display(),
        t.db().display()
    );
    for a in args {
        line.push(' ');
        line.push_str(a);
    }
    let o = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env("TERM", "xterm")
        .env_remove("JOURNAL_STREAM")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn progress_is_drawn_on_a_terminal_only_and_the_summary_times_the_whole_command() {
    if !have("script") {
        eprintln!("SKIPPED: no script (util-linux) to run under a terminal");
        return;
    }
    let t = TestRoot::debian();
    let shown = on_a_terminal(&t, &["init"]);
    assert!(
        shown.contains("libwarden scan:") && shown.contains("entries") && shown.contains("read,"),
        "no progress line on a terminal: {shown:?}"
    );
    // The summary: the whole command's time, then the scan's own.
    let summary = shown
        .lines()
        .find(|l| l.contains("libwarden init:"))
        .unwrap_or_else(|| panic!("{shown:?}"));
    let whole: f64 = summary
        .split(") in ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let scan: f64 = summary
        .split("(scan ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(whole >= scan, "{summary}");
    // A check knows how many entries to expect: a bar with an ETA.
    let shown = on_a_terminal(&t, &["check"]);
    assert!(shown.contains("ETA"), "{shown:?}");
    // Never with -q, nor with JSON on stdout.
    for args in [&["-q", "check"][..], &["--format", "json", "check"][..]] {
        let shown = on_a_terminal(&t, args);
        assert!(!shown.contains("libwarden scan:"), "{args:?}: {shown:?}");
    }
    // Never on a pipe.
    let o = t.run(&["check"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !err.contains("libwarden scan:") && !err.contains('\r'),
        "{err}"
    );
}

/// Writes an executable shell script.
fn script_file(p: &Path, body: &str) {
    std::fs::write(p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

#[test]
fn on_findings_the_notify_unit_logs_a_warning_and_mails_root_the_checks_output() {
    // The nightly check as the unit runs it, with real findings.
    let t = changed_root();
    let check = t.run(&["--format", "json", "check"]);
    let code = check.status.code().unwrap();
    assert_eq!(code & 7, 7);
    let journal = t.dir.path().join("journal.txt");
    std::fs::write(&journal, &check.stdout).unwrap();
    // systemd's side, as OnFailure= leaves it: the failed unit's exit status
    // and invocation, its journal, systemd-cat; and a mailer. Stand-ins
    // here (no systemd as PID 1 in CI); the script is the shipped one.
    let stubs = t.dir.path().join("stubs");
    std::fs::create_dir_all(&stubs).unwrap();
    let log = t.dir.path().join("warning.txt");
    let mail = t.dir.path().join("mail.txt");
    script_file(
        &stubs.join("systemctl"),
        &format!(
            "case \"$*\" in *ExecMainStatus*) echo {code};; *InvocationID*) echo 0123abcd;; esac"
        ),
    );
    script_file(
        &stubs.join("journalctl"),
        &format!(
            "case \"$*\" in *_SYSTEMD_INVOCATION_ID=0123abcd*) cat {};; esac",
            journal.display()
        ),
    );
    script_file(
        &stubs.join("systemd-cat"),
        &format!("{{ echo \"args: $*\"; cat; }} >> {}", log.display()),
    );
    script_file(
        &stubs.join("sendmail"),
        &format!("{{ echo \"args: $*\"; cat; }} > {}", mail.display()),
    );
    let path = format!(
        "{}:{}",
        stubs.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let notify = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/notify");
    let o = Command::new(&notify)
        .arg("libwarden-check.service")
        .env("PATH", &path)
        .env("SENDMAIL", stubs.join("sendmail"))
        .env_remove("MAILTO")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let warning = std::fs::read_to_string(&log).unwrap();
    assert!(warning.contains("-p warning"), "{warning}");
    assert!(
        warning.contains("libwarden-check.service on ")
            && warning.contains(&format!(
                "reported findings (exit {code}: added, removed, changed"
            )),
        "{warning}"
    );
    let m = std::fs::read_to_string(&mail).unwrap();
    assert!(
        m.contains("args: -t -oi -odi") && m.contains("\nTo: root\n"),
        "{m}"
    );
    assert!(
        m.contains("Subject: libwarden: libwarden-check.service on "),
        "{m}"
    );
    assert!(
        m.contains("/usr/lib/x86_64-linux-gnu/libnew.so.1"),
        "the findings are in the mail: {m}"
    );
    // MAILTO="" : the journal line only.
    std::fs::remove_file(&mail).unwrap();
    let o = Command::new(&notify)
        .arg("libwarden-check.service")
        .env("PATH", &path)
        .env("SENDMAIL", stubs.join("sendmail"))
        .env("MAILTO", "")
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(!mail.exists());
}
