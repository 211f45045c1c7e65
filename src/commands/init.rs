//! `init`: scan every search path and write the first generation.

use std::os::unix::ffi::OsStrExt;

use crate::error::Result;
use crate::settings::Settings;
use crate::store::Store;

pub fn run(s: &Settings, force: bool) -> Result<i32> {
    // Take the store (and its lock) first: a refused init scans nothing.
    let store = Store::create(&s.db, force)?;
    let (sp, res) = super::scan_now(s, &[], true);
    super::warn(s, &sp, &res);
    let meta = store.write_generation(&res.records, s.root.host().as_os_str().as_bytes())?;
    let tail = format!(
        "baseline generation {} written to {}",
        meta.generation,
        s.db.display()
    );
    super::summary(s, "init", &res, &tail);
    Ok(0)
}
