//! `check`: scan, compare with the baseline, report, exit with the bitmask.

use std::os::unix::ffi::OsStrExt;

use crate::diff::{self, Classifier};
use crate::error::{Error, Result};
use crate::finding::{self, Finding};
use crate::record::Record;
use crate::report;
use crate::settings::Settings;
use crate::store::{Meta, Store};

/// Loads the live generation and closes the store at once, so the lock is
/// held only for the read.
pub fn load_baseline(s: &Settings) -> Result<(Meta, Vec<Record>)> {
    let store = Store::open(&s.db)?;
    let loaded = store.load()?;
    drop(store);
    let root = s.root.host().as_os_str().as_bytes();
    if loaded.0.root != root && !s.quiet {
        eprintln!(
            "libwarden: warning: this baseline was built for root {}, not {}",
            crate::escape::for_terminal(&loaded.0.root),
            crate::escape::for_terminal(root)
        );
    }
    Ok(loaded)
}

pub fn run(s: &Settings, paranoid: bool) -> Result<i32> {
    let (_meta, baseline) = load_baseline(s)?;
    let (sp, res) = super::scan_now(s, &baseline, paranoid);
    super::warn(s, &sp, &res);
    let mut findings: Vec<Finding> = diff::diff(&baseline, &res.records, &Classifier::new(&sp));
    let (audit, notes) = super::audit::run_audit(s, &sp, &res.records, Some(&baseline));
    findings.extend(audit);
    report::sort(&mut findings);
    let mut out = std::io::stdout().lock();
    report::write_findings(&mut out, &findings, s.format)
        .map_err(|e| Error::io("write", "stdout", e))?;
    super::audit::write_notes(s, &notes);
    super::summary(s, "check", &res, &report::count_by_kind(&findings));
    Ok(finding::exit_bits(&findings))
}
