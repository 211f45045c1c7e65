//! `audit`: what is dangerous right now, with no baseline needed: snapshot
//! the search paths, run the loader audit and provenance (unpackaged,
//! modified against the package, unsigned or badly signed modules and PE
//! images), report, exit with the bitmask (provenance findings set bit 8,
//! as in `check`).

use crate::config::Config;
use crate::error::Result;
use crate::finding;
use crate::output::{self, messages};
use crate::pipeline::{self, Judges, Reference};

pub fn run(s: &Config) -> Result<i32> {
    let snap = s.plan.snapshot(&[], false);
    super::show(&snap);
    let v = pipeline::judge(&s.plan, Reference::Nothing, &snap, Judges::AUDIT);
    super::emit(s, &v.findings, &Default::default())?;
    messages::notes(&v.notes);
    super::summary("audit", &snap, &output::count_by_kind(&v.findings));
    Ok(finding::exit_bits(&v.findings))
}
