//! auditd watch rules (`-w PATH -p wa -k KEY`) for every search dir, the
//! loader and the loader's configuration files, for `auditctl -R` or
//! `/etc/audit/rules.d/libwarden.rules`. A directory watch covers its
//! whole subtree; a file watch may name a file that does not exist yet
//! (`/etc/ld.so.preload`: its creation is what matters).

use std::collections::BTreeSet;
use std::fmt::Write;
use std::path::PathBuf;

use super::Rendered;
use crate::searchpaths::SearchPaths;
use crate::sys::OsStrExt;

/// The default key, for `ausearch -k libwarden`.
pub const KEY: &str = "libwarden";

/// The rules for the search paths `sp`.
pub fn render(sp: &SearchPaths) -> Rendered {
    let mut paths: BTreeSet<PathBuf> = sp.walk_roots().map(|d| d.path.clone()).collect();
    paths.extend(sp.files.iter().map(|f| f.path.clone()));
    let mut out = Rendered {
        text: format!(
            "## libwarden: writes and attribute changes where shared libraries come from\n\
             ## (search dirs, the loader, ld.so.conf*); ausearch -k {KEY}\n"
        ),
        ..Rendered::default()
    };
    for p in paths {
        let b = p.as_os_str().as_bytes();
        // auditctl splits a rule on whitespace and has no quoting.
        if b.iter().any(|c| !c.is_ascii_graphic()) {
            out.skipped.push(format!(
                "{}: auditctl cannot name a path with whitespace or non-ASCII bytes",
                crate::escape::for_terminal(b)
            ));
            continue;
        }
        let _ = writeln!(out.text, "-w {} -p wa -k {KEY}", p.display());
        out.entries += 1;
    }
    out
}
