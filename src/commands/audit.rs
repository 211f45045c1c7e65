//! `audit`: what is dangerous right now, with no baseline needed: snapshot
//! the search paths, run the loader audit and provenance (unpackaged,
//! modified against the package, unsigned or badly signed modules and PE
//! images), report, exit with the bitmask (provenance findings set bit 8,
//! as in `check`). When a baseline exists and verifies, what it
//! acknowledges is silent here too; one that does not verify lends no
//! acknowledgement.

use crate::acknowledge::Acks;
use crate::baseline;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::finding;
use crate::output::{self, messages};
use crate::pipeline::{self, Judges, Reference};
use crate::sys::OsStrExt;

pub fn run(s: &Config) -> Result<i32> {
    let snap = s.plan.snapshot(&[], false);
    super::show(&snap);
    let mut judge = pipeline::Judge::new(&s.plan, &snap.scan.records, Judges::AUDIT, false);
    judge.use_scan_digests(&snap.scan);
    judge.acknowledge(acknowledgements(s));
    let v = judge.run(
        Reference::Nothing,
        (&snap.sp, snap.registry.as_ref(), &snap.scan.records),
        Judges::AUDIT,
        None,
    );
    super::emit(s, &v.findings, &Default::default())?;
    super::to_eventlog(s, &v.findings, &Default::default())?;
    messages::notes(&v.notes);
    let tail = format!(
        "{}{}",
        output::count_by_kind(&v.findings),
        super::acknowledged_tail(v.acknowledged.len(), false)
    );
    super::summary("audit", &snap, &tail);
    Ok(finding::exit_bits(&v.findings))
}

/// The acknowledgements of the baseline, when there is one that verifies.
fn acknowledgements(s: &Config) -> Acks {
    match baseline::load(&s.baseline, s.plan.root.host().as_os_str().as_bytes()) {
        Ok((b, _)) => Acks::from_pairs(&b.extra),
        Err(Error::NoBaseline(_)) => Acks::default(),
        Err(e) => {
            messages::warning(&format!(
                "no acknowledgement applies: the baseline was not usable ({e})"
            ));
            Acks::default()
        }
    }
}
