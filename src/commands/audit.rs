//! `audit`: what is dangerous right now, with no baseline needed: scan the
//! search paths, run every audit, report, exit with the bitmask.

use crate::audit::{self, perms::Trust, Context};
use crate::error::{Error, Result};
use crate::finding::{self, Finding};
use crate::record::Record;
use crate::report;
use crate::searchpaths::SearchPaths;
use crate::settings::Settings;

pub fn run(s: &Settings) -> Result<i32> {
    let (sp, res) = super::scan_now(s, &[], false);
    super::warn(s, &sp, &res);
    let (mut findings, notes) = run_audit(s, &sp, &res.records, None);
    report::sort(&mut findings);
    let mut out = std::io::stdout().lock();
    report::write_findings(&mut out, &findings, s.format)
        .map_err(|e| Error::io("write", "stdout", e))?;
    write_notes(s, &notes);
    super::summary(s, "audit", &res, &report::count_by_kind(&findings));
    Ok(finding::exit_bits(&findings))
}

/// Runs the audits over a scan; `check` passes its baseline so the audit
/// can say what the baseline knows.
pub fn run_audit(
    s: &Settings,
    sp: &SearchPaths,
    records: &[Record],
    baseline: Option<&[Record]>,
) -> (Vec<Finding>, Vec<String>) {
    let cx = Context {
        root: &s.root,
        sp,
        records,
        baseline,
        trust: Trust::new(&s.root, &s.trusted_uids),
        exec_dirs: &s.exec_dirs,
        authenticode_roots: s.provenance.authenticode_roots.as_deref(),
    };
    let a = audit::run(&cx);
    (a.findings, a.notes)
}

/// Notes of the audit on stderr (unless quiet).
pub fn write_notes(s: &Settings, notes: &[String]) {
    if s.quiet {
        return;
    }
    for n in notes {
        eprintln!(
            "libwarden: note: {}",
            crate::escape::for_terminal(n.as_bytes())
        );
    }
}
