//! One module per command; each returns the exit code of its findings or an
//! error. What they share (scan the search paths now, print the summary)
//! lives here.

pub mod audit;
pub mod bench;
pub mod check;
pub mod export;
pub mod init;
pub mod keygen;
pub mod paths;
pub mod update;
pub mod watch;

use std::io::Write;

use crate::record::Record;
use crate::report;
use crate::scan::{self, ScanResult};
use crate::searchpaths::SearchPaths;
use crate::settings::Settings;

/// Resolves the search paths and scans them, reusing digests from `prior`
/// for files whose identity is unchanged (unless `paranoid`).
pub fn scan_now(s: &Settings, prior: &[Record], paranoid: bool) -> (SearchPaths, ScanResult) {
    let sp = SearchPaths::resolve(&s.root, &s.extra_paths);
    let mut result = scan::scan(&s.root, &sp, &s.scan_options(paranoid), prior);
    // A Windows image's registry values are baselined like files.
    for n in crate::winreg::add_records(&s.root, &mut result.records) {
        if !s.quiet {
            eprintln!(
                "libwarden: note: {}",
                crate::escape::for_terminal(n.as_bytes())
            );
        }
    }
    (sp, result)
}

/// Writes a new generation, releases the store's lock and records the
/// generation in the rollback state (outside the baseline directory).
pub fn commit_generation(
    s: &Settings,
    store: crate::store::Store,
    records: &[Record],
    extra: &[(Vec<u8>, Vec<u8>)],
    key: Option<&ed25519_dalek::SigningKey>,
) -> crate::error::Result<crate::store::Meta> {
    use crate::sys::OsStrExt;
    let meta = store.write_generation_with_extra(
        records,
        extra,
        s.root.host().as_os_str().as_bytes(),
        key,
    )?;
    drop(store);
    crate::rollback::record(&s.state_path, &meta)?;
    Ok(meta)
}

/// Prints search-path and per-file warnings (unless quiet).
pub fn warn(s: &Settings, sp: &SearchPaths, res: &ScanResult) {
    if s.quiet {
        return;
    }
    let mut err = std::io::stderr().lock();
    for w in &sp.warnings {
        let _ = writeln!(
            err,
            "libwarden: warning: {}",
            crate::escape::for_terminal(w.as_bytes())
        );
    }
    drop(err);
    report::write_warnings(&res.warnings);
}

/// The one-line summary on stderr.
pub fn summary(s: &Settings, verb: &str, res: &ScanResult, tail: &str) {
    if s.quiet {
        return;
    }
    let st = &res.stats;
    eprintln!(
        "libwarden {verb}: {} entries, {} files ({}), {} hashed ({}) in {:.2} s; {tail}; {} warning{}",
        st.entries,
        st.files,
        report::human_bytes(st.bytes),
        st.hashed_files,
        report::human_bytes(st.hashed_bytes),
        st.elapsed.as_secs_f64(),
        res.warnings.len(),
        if res.warnings.len() == 1 { "" } else { "s" },
    );
}
