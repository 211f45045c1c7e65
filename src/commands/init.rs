//! `init`: scan every search path and write the first generation.

use std::path::Path;

use crate::error::Result;
use crate::settings::Settings;
use crate::store::Store;

pub fn run(s: &Settings, force: bool, sign_with: Option<&Path>) -> Result<i32> {
    let key = sign_with.map(crate::signing::load_secret).transpose()?;
    // Take the store (and its lock) first: a refused init scans nothing.
    let store = Store::create(&s.db, force)?;
    let (sp, res) = super::scan_now(s, &[], true);
    super::warn(s, &sp, &res);
    let extra = crate::provenance::run(s, &res.records, &[], &Default::default())
        .map(|o| o.state.to_pairs())
        .unwrap_or_default();
    let meta = super::commit_generation(s, store, &res.records, &extra, key.as_ref())?;
    let tail = format!(
        "baseline {} written to {}",
        crate::trust::describe(&meta),
        s.db.display()
    );
    super::summary(s, "init", &res, &tail);
    Ok(0)
}
