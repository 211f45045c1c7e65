//! Inputs that must cost what they are worth: a loader configuration that
//! includes the same files thousands of times, operator-named files that
//! are devices or FIFOs (`--config`, `check --against`).

use std::time::Duration;

use crate::util::*;

/// Long enough for a loaded CI machine, far below what the quadratic
/// include handling took (tens of seconds to minutes).
const BOUND: Duration = Duration::from_secs(60);

#[test]
fn a_thousand_identical_include_lines_over_two_thousand_files_are_linear_and_warn_once_per_file() {
    const FILES: usize = 2_000;
    let t = TestRoot::debian();
    let mut conf = "include /etc/ld.so.conf.d/*.conf\n".repeat(1_000);
    conf.push_str("/usr/lib\n");
    t.write("etc/ld.so.conf", conf);
    // The fixture's two conf files plus 2,000 more.
    for i in 0..FILES {
        t.write(&format!("etc/ld.so.conf.d/z{i:05}.conf"), "");
    }
    let o = output_within(t.cmd(&["paths"]), BOUND);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    let dup = err
        .lines()
        .filter(|l| l.contains("included more than once"))
        .count();
    // Every included file is included 1,000 times: one warning each.
    assert_eq!(dup, FILES + 2, "{}", &err[..err.len().min(2000)]);
    // And the configuration was still read: the multiarch conf's dirs.
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("/usr/local/lib"), "{out}");
}

#[test]
fn a_config_or_against_file_that_is_dev_zero_or_a_fifo_is_refused_at_once() {
    let t = TestRoot::debian();
    let fifo = t.dir.path().join("fifo");
    crate::util::mkfifo(&fifo, 0o600);
    let fifo = fifo.to_str().unwrap().to_string();
    // Before: /dev/zero grew without bound, a FIFO blocked forever.
    let runs: [(&[&str], &str); 4] = [
        (&["--config", "/dev/zero", "paths"], "bad config"),
        (&["--config", &fifo, "paths"], "bad config"),
        (&["check", "--against", "/dev/zero"], "check --against"),
        (&["check", "--against", &fifo], "check --against"),
    ];
    for (args, says) in runs {
        let o = output_within(t.cmd(args), Duration::from_secs(30));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(64), "{args:?}: {err}");
        assert!(
            err.contains(says) && err.contains("not a regular file"),
            "{args:?}: {err}"
        );
    }
    // A manifest that is there but not a manifest is still a corrupt
    // reference, and a missing one still "does not exist".
    t.write("../junk", "not a manifest\n");
    let junk = t.dir.path().join("junk");
    let o = output_within(
        t.cmd(&["check", "--against", junk.to_str().unwrap()]),
        Duration::from_secs(30),
    );
    assert_eq!(
        o.status.code(),
        Some(65),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = output_within(t.cmd(&["check", "--against", "/nonexistent/m"]), BOUND);
    assert_eq!(
        o.status.code(),
        Some(66),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
