//! `init`: snapshot every search path and write the first generation, with
//! the provenance state it was judged with; show the standing findings
//! (audit and provenance, as `check` will report them) and how to
//! acknowledge them. The exit code is 0 once the baseline is written: the
//! findings are shown, not judged (`check` exits with their bits).

use std::path::Path;

use crate::baseline;
use crate::config::Config;
use crate::error::Result;
use crate::finding::Finding;
use crate::output::{self, messages};
use crate::pipeline::{self, Judges, Reference};
use crate::provenance;
use crate::sys::OsStrExt;

pub fn run(s: &Config, force: bool, sign_with: Option<&Path>) -> Result<i32> {
    let key = sign_with.map(baseline::signing::load_secret).transpose()?;
    // Take the store (and its lock) first: a refused init scans nothing.
    let store = baseline::create(&s.baseline, force)?;
    let mut snap = s.plan.snapshot_to_record();
    super::show(&snap);
    // Who owns each record does not depend on the verdict: found on the
    // other core while the judges run (the judge is mostly serial).
    let judging = std::time::Instant::now();
    let (v, owners) = rayon::join(
        || pipeline::judge(&s.plan, Reference::Nothing, &snap, Judges::STANDING),
        || pipeline::owners_of(&s.plan, &snap.scan.records, Some(&snap)),
    );
    // The package index has no use left: freed on another thread while
    // the generation is written, not held through the write.
    if let Some(p) = snap.packages.take() {
        // (No thread to be had: dropped here, when the closure is.)
        let _ = std::thread::Builder::new().spawn(move || drop(p));
    }
    let judged = judging.elapsed();
    messages::notes(&v.notes);
    let state = v.provenance.map(|o| {
        let mut state = o.state;
        state.owners = owners;
        state
    });
    // The digests the scan computed for the package database have served
    // too; the state, the records and the pairs go to the store, each
    // dropped once it is encoded.
    snap.scan.digests = Default::default();
    let mut extra = state.map(provenance::State::into_pairs).unwrap_or_default();
    // The package index for the checks after it (unchanged databases are
    // not read again).
    extra.extend(v.package_cache);
    extra.sort();
    let records = std::mem::take(&mut snap.scan.records);
    let writing = std::time::Instant::now();
    let meta = baseline::commit_owned(
        &s.baseline,
        store,
        records,
        extra,
        s.plan.root.host().as_os_str().as_bytes(),
        key.as_ref(),
    )?;
    let written = writing.elapsed();
    super::emit(s, &v.findings, &Default::default())?;
    standing_summary(&v.findings);
    let tail = format!(
        "baseline {} written to {} (judges {:.2} s, store write {:.2} s)",
        baseline::verify::describe(&meta),
        s.baseline.db.display(),
        judged.as_secs_f64(),
        written.as_secs_f64()
    );
    super::summary("init", &snap, &tail);
    Ok(0)
}

/// One line per kind of standing finding on stderr, then how to
/// acknowledge them.
fn standing_summary(findings: &[Finding]) {
    if findings.is_empty() {
        return;
    }
    let mut kinds: Vec<(crate::finding::Kind, usize, crate::finding::Severity)> = Vec::new();
    for f in findings {
        match kinds.iter_mut().find(|(k, _, _)| *k == f.kind) {
            Some((_, n, worst)) => {
                *n += 1;
                *worst = (*worst).max(f.severity);
            }
            None => kinds.push((f.kind, 1, f.severity)),
        }
    }
    kinds.sort();
    for (k, n, worst) in &kinds {
        messages::status(&format!(
            "libwarden init: standing: {n} {} (worst: {})",
            k.name(),
            worst.name()
        ));
    }
    messages::status(&format!(
        "libwarden init: {} standing; `check` reports them until they are fixed or \
         acknowledged: review the list, then `libwarden accept --all-standing` (or \
         `accept --kind KIND`, `accept PATH|GLOB..`) records them in the baseline",
        output::count_by_kind(findings)
    ));
}
