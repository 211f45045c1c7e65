//! The loader's configuration files themselves: `/etc/ld.so.conf`, the
//! preload list, the cache and every file an `include` glob matches. One
//! (or include dir) that is a symlink into a temporary or writable place hands the search
//! order (or the preload list) to whoever can write there; an include match
//! that is a FIFO or a device makes ldconfig block, or read configuration
//! that a writer feeds it at that moment and that is never on disk; a
//! directory there is unreadable configuration, odd but harmless.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{bytes, Audit, Context};
use crate::finding::{Finding, Kind, Severity};
use crate::searchpaths::Origin;

/// At most this many matches of one include pattern are looked at (the
/// parser has its own, larger bounds on what it reads).
const MAX_MATCHES: usize = 4096;

pub fn audit(cx: &Context, a: &mut Audit) {
    if cfg!(windows) {
        return;
    }
    let mut paths: BTreeSet<PathBuf> = cx
        .sp
        .files
        .iter()
        .filter(|f| f.exists && f.origin == Origin::LoaderFile)
        .map(|f| f.path.clone())
        .collect();
    let mut matched: BTreeSet<PathBuf> = BTreeSet::new();
    for inc in &cx.sp.ldconf.includes {
        // The include dir itself (`/etc/ld.so.conf.d -> /tmp/x`).
        if let Some(dir) = inc.pattern.parent() {
            if let Ok(p) = cx.root.resolve_parent(dir) {
                paths.insert(p);
            }
        }
        for m in cx.root.glob(&inc.pattern).into_iter().take(MAX_MATCHES) {
            if let Ok(p) = cx.root.resolve_parent(&m) {
                matched.insert(p.clone());
                paths.insert(p);
            }
        }
    }
    for p in &paths {
        judge(cx, p, matched.contains(p), a);
    }
}

fn judge(cx: &Context, p: &Path, include_match: bool, a: &mut Audit) {
    let Ok(m) = cx.root.lstat(p) else {
        return;
    };
    let mut push = |sev, detail: String| {
        a.findings.push(Finding::audit(
            Kind::LoaderConfig,
            sev,
            bytes(p).to_vec(),
            detail,
        ))
    };
    if m.file_type().is_symlink() {
        let target = cx.root.resolve_lenient(p);
        let t = target.display();
        if super::tokens::is_tmp_like(bytes(&target)) {
            push(
                Severity::High,
                format!("loader configuration file is a symlink to {t}, in a world-writable or user directory: whoever can write there decides what it says"),
            );
        } else if let Some(w) = cx.trust.writers_of(cx.root, &target) {
            push(
                w.severity(),
                format!(
                    "loader configuration file is a symlink to {t}, which can be written by {w}"
                ),
            );
        } else if let Some((d, w)) = target
            .parent()
            .and_then(|d| cx.trust.chain_writers(cx.root, d))
        {
            push(
                w.severity(),
                format!(
                    "loader configuration file is a symlink to {t}; {} can be written by {w}, who can replace it",
                    d.display()
                ),
            );
        }
    }
    if !include_match {
        return;
    }
    // What ldconfig opens: the entry with its symlinks followed.
    let Ok(m) = cx.root.stat(p) else {
        return;
    };
    let ft = m.file_type();
    let what = if ft.is_fifo() {
        Some((Severity::High, "a FIFO: ldconfig blocks on it, or reads whatever a writer feeds it then (configuration that is never on disk)"))
    } else if ft.is_char_device() || ft.is_block_device() {
        Some((
            Severity::High,
            "a device: ldconfig reads whatever the device gives (or blocks on it)",
        ))
    } else if ft.is_socket() {
        Some((
            Severity::Medium,
            "a socket: not configuration ldconfig can read",
        ))
    } else if ft.is_dir() {
        Some((
            Severity::Low,
            "a directory: ldconfig cannot read it as configuration",
        ))
    } else {
        None
    };
    if let Some((sev, what)) = what {
        push(sev, format!("ld.so.conf include matches {what}"));
    }
}
