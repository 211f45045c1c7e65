//! `init`: snapshot every search path and write the first generation, with
//! the provenance state it was judged with.

use std::path::Path;

use crate::baseline;
use crate::config::Config;
use crate::error::Result;
use crate::output::messages;
use crate::pipeline::{self, Judges, Reference};
use crate::sys::OsStrExt;

pub fn run(s: &Config, force: bool, sign_with: Option<&Path>) -> Result<i32> {
    let key = sign_with.map(baseline::signing::load_secret).transpose()?;
    // Take the store (and its lock) first: a refused init scans nothing.
    let store = baseline::create(&s.baseline, force)?;
    let snap = s.plan.snapshot(&[], true);
    super::show(&snap);
    let v = pipeline::judge(&s.plan, Reference::Nothing, &snap, Judges::PROVENANCE);
    messages::notes(&v.notes);
    let extra = v
        .provenance
        .map(|o| {
            let mut state = o.state;
            state.owners = pipeline::owners(&s.plan, &snap.scan.records);
            state.to_pairs()
        })
        .unwrap_or_default();
    let meta = baseline::commit(
        &s.baseline,
        store,
        &snap.scan.records,
        &extra,
        s.plan.root.host().as_os_str().as_bytes(),
        key.as_ref(),
    )?;
    let tail = format!(
        "baseline {} written to {}",
        baseline::verify::describe(&meta),
        s.baseline.db.display()
    );
    super::summary("init", &snap, &tail);
    Ok(0)
}
