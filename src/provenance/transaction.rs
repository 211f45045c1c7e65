//! Package transactions understood as a whole: which changes against the
//! baseline a package install, upgrade or removal explains. Each one
//! becomes an info-level `package_update` (no exit bit); anything the
//! packages do not explain keeps its kind and severity, even inside the
//! same transaction.
//!
//! The rules judge only what the package index says now (who claims a
//! path, with which digest), the versions and owners the baseline recorded
//! ([`State`]), and the scan; nothing here reads a package database's own
//! format, so another database can answer the same questions. A package
//! "changed" when its version now differs from the baseline's, or it was
//! installed or removed since.
//!
//! - A file (content, added, or replaced with a new inode) whose content
//!   now matches the digest its package ships, when that package changed.
//! - A symlink (added, retargeted, or replaced) that a changed package
//!   claims, when it resolves inside the root to a file whose content
//!   matches its package (the same package, or another that changed too:
//!   a `-dev` link into its library package). A package's symlink targets
//!   are recorded in the package archive only, not in the database, so the
//!   target itself cannot be compared offline; what is checked is that it
//!   ends at the package's own content.
//! - A directory (added or replaced) that a changed package claims.
//! - A path gone since the baseline that the baseline recorded as owned by
//!   a package which changed since, and that no package claims now.
//! - `/etc/ld.so.cache` rewritten while packages changed, when its entries
//!   are what ld.so.conf and the libraries in the search dirs give
//!   ([`super::ldcache`]).
//!
//! A change that made a file newly writable by others, setuid, or owned by
//! someone else than root is never explained by a package.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::dpkg::DpkgDb;
use super::{Context, Outcome, State};
use crate::diff::{became_risky, Classifier, Role};
use crate::finding::{Finding, Kind, Severity};
use crate::record::{file_name, FileType, Record};
use crate::searchpaths::SearchPaths;

/// What the rules look at besides the findings.
pub struct Tx<'a> {
    /// Provenance's context: the root, and the digests packages ship.
    pub cx: &'a Context<'a>,
    pub sp: &'a SearchPaths,
    /// Every current record, sorted by path (also for a `watch` event).
    pub records: &'a [Record],
    /// What the baseline recorded: versions and owners.
    pub prior: &'a State,
    /// The package index with symlinks and directories, covering the
    /// names of [`names_needed`]; `None` when none was needed or none can
    /// be read (those changes then stay as they are).
    pub index: Option<&'a DpkgDb>,
}

/// Packages whose version now differs from the baseline's, including the
/// ones installed or removed since. Empty when the baseline recorded no
/// versions (an older generation: every change stays what it is).
pub fn changed(prior: &State, now: &BTreeMap<String, String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if prior.versions.is_empty() {
        return out;
    }
    for (name, v) in now {
        if prior.versions.get(name) != Some(v) {
            out.insert(name.clone());
        }
    }
    for name in prior.versions.keys() {
        if !now.contains_key(name) {
            out.insert(name.clone());
        }
    }
    out
}

/// The file names whose claimants the rules need from the index (paths
/// gone, symlinks and directories): the index is loaded for these only.
pub fn names_needed(findings: &[Finding]) -> HashSet<Vec<u8>> {
    findings
        .iter()
        .filter(|f| f.severity > Severity::Info)
        .filter(|f| match f.kind {
            Kind::Removed => true,
            Kind::Added | Kind::Metadata | Kind::Link => f
                .after
                .as_ref()
                .is_some_and(|a| matches!(a.ftype, FileType::Symlink | FileType::Dir)),
            _ => false,
        })
        .map(|f| file_name(&f.path).to_vec())
        .collect()
}

/// Relabels every finding a package change explains (see the module
/// documentation) and records in `out.explained` which packages did.
pub fn explain(
    findings: &mut [Finding],
    tx: &Tx,
    changed: &BTreeSet<String>,
    now: &BTreeMap<String, String>,
    out: &mut Outcome,
) {
    if changed.is_empty() {
        return;
    }
    let cls = Classifier::new(tx.sp);
    for f in findings.iter_mut() {
        if f.severity == Severity::Info {
            continue;
        }
        // Never explained: what lets someone else change the file now.
        if let (Some(b), Some(a)) = (&f.before, &f.after) {
            if became_risky(b, a) {
                continue;
            }
        }
        // A record replaced in place shows a new inode; anything else a
        // metadata finding says (a chmod, a chown) is no transaction's.
        let replaced = f.kind != Kind::Metadata || f.changes.contains(&"inode");
        let ftype = f.after.as_ref().map(|a| a.ftype);
        let why = match (f.kind, ftype) {
            (Kind::Removed, _) => removed(f, tx, changed, now),
            (Kind::Content | Kind::Metadata | Kind::Added, Some(FileType::File))
                if cls.role(&f.path) == Role::LoaderCache =>
            {
                match super::ldcache::consistent(tx.cx.root, tx.sp, tx.records) {
                    Ok(n) => Some((
                        format!(
                            "rewritten while packages changed ({}); its {n} entries are what \
                             ld.so.conf and the search dirs' libraries give",
                            list(changed, now, tx.prior)
                        ),
                        Vec::new(),
                    )),
                    Err(why) => {
                        f.detail
                            .push_str(&format!("; not what the search dirs give: {why}"));
                        None
                    }
                }
            }
            _ if !replaced => None,
            (Kind::Content | Kind::Added | Kind::Metadata, Some(FileType::File)) => {
                file(f, tx, changed, out)
            }
            (Kind::Added | Kind::Metadata | Kind::Link, Some(FileType::Symlink)) => {
                symlink(f, tx, changed, now, out)
            }
            (Kind::Added | Kind::Metadata, Some(FileType::Dir)) => directory(f, tx, changed, now),
            _ => None,
        };
        if let Some((detail, pkgs)) = why {
            f.kind = Kind::PackageUpdate;
            f.severity = Severity::Info;
            f.detail = detail;
            out.explained.insert(f.path.clone(), pkgs);
        }
    }
}

type Why = Option<(String, Vec<(String, Option<String>)>)>;

/// "P 1 -> 2", "P 2 (new)", "P 1 (removed)".
fn change(pkg: &str, now: &BTreeMap<String, String>, prior: &State) -> String {
    match (prior.versions.get(pkg), now.get(pkg)) {
        (Some(a), Some(b)) => format!("{pkg} {a} -> {b}"),
        (None, Some(b)) => format!("{pkg} {b} (new)"),
        (Some(a), None) => format!("{pkg} {a} (removed)"),
        (None, None) => pkg.to_string(),
    }
}

/// The changed packages, for a detail sentence (at most a few named).
fn list(changed: &BTreeSet<String>, now: &BTreeMap<String, String>, prior: &State) -> String {
    let mut parts: Vec<String> = changed
        .iter()
        .take(3)
        .map(|p| change(p, now, prior))
        .collect();
    if changed.len() > 3 {
        parts.push(format!("and {} more", changed.len() - 3));
    }
    parts.join(", ")
}

/// The package (and version) whose digest `r`'s content matches now.
fn matching(tx: &Tx, out: &Outcome, r: &Record) -> Option<(String, String)> {
    if let Some(m) = out.matched.get(&r.path) {
        return Some(m.clone());
    }
    // Not judged in this run (a `watch` event that touched only the
    // symlink): judge the target alone.
    if !super::is_candidate(r) {
        return None;
    }
    super::evaluate(tx.cx, std::slice::from_ref(r), &[], tx.prior)
        .matched
        .remove(&r.path)
}

fn file(f: &Finding, tx: &Tx, changed: &BTreeSet<String>, out: &Outcome) -> Why {
    let r = f.after.as_ref()?;
    let (pkg, ver) = matching(tx, out, r)?;
    if !changed.contains(&pkg) {
        return None;
    }
    let what = match f.kind {
        Kind::Added => "the new file matches the package",
        Kind::Metadata => "the file was replaced by the package's own content",
        _ => "the new content matches the package",
    };
    let detail = match tx.prior.versions.get(&pkg) {
        Some(then) => format!("package update: {pkg} {then} -> {ver}; {what}"),
        None => format!("package install: {pkg} {ver}; {what}"),
    };
    Some((detail, vec![(pkg, Some(ver))]))
}

/// The changed package among those that claim `path` now.
fn claimed_by_changed(tx: &Tx, path: &[u8], changed: &BTreeSet<String>) -> Option<String> {
    let index = tx.index?;
    index
        .claimants(path)
        .into_iter()
        .map(|p| p.name.clone())
        .find(|n| changed.contains(n))
}

fn symlink(
    f: &Finding,
    tx: &Tx,
    changed: &BTreeSet<String>,
    now: &BTreeMap<String, String>,
    out: &Outcome,
) -> Why {
    let pkg = claimed_by_changed(tx, &f.path, changed)?;
    let target =
        super::follow(tx.cx.root, tx.records, &f.path).filter(|r| r.ftype == FileType::File)?;
    let (tpkg, tver) = matching(tx, out, target)?;
    if tpkg != pkg && !changed.contains(&tpkg) {
        return None;
    }
    let shown = crate::escape::for_terminal(&target.path);
    let detail = format!(
        "package {}: {}; a symlink it ships, ending at {shown}, which matches package {tpkg} {tver}",
        if tx.prior.versions.contains_key(&pkg) {
            "update"
        } else {
            "install"
        },
        change(&pkg, now, tx.prior)
    );
    let mut pkgs = vec![(pkg.clone(), now.get(&pkg).cloned())];
    if tpkg != pkg {
        pkgs.push((tpkg, Some(tver)));
    }
    Some((detail, pkgs))
}

fn directory(
    f: &Finding,
    tx: &Tx,
    changed: &BTreeSet<String>,
    now: &BTreeMap<String, String>,
) -> Why {
    let pkg = claimed_by_changed(tx, &f.path, changed)?;
    let detail = format!(
        "package {}: {}; a directory it ships",
        if tx.prior.versions.contains_key(&pkg) {
            "update"
        } else {
            "install"
        },
        change(&pkg, now, tx.prior)
    );
    Some((detail, vec![(pkg.clone(), now.get(&pkg).cloned())]))
}

fn removed(
    f: &Finding,
    tx: &Tx,
    changed: &BTreeSet<String>,
    now: &BTreeMap<String, String>,
) -> Why {
    let pkg = tx.prior.owners.get(&f.path)?;
    if !changed.contains(pkg) {
        return None;
    }
    // Nobody may claim it now: a file a package still ships that is gone
    // was deleted by someone else.
    let index = tx.index?;
    if !index.knows_name(file_name(&f.path)) || !index.claimants(&f.path).is_empty() {
        return None;
    }
    let detail = match now.get(pkg) {
        Some(_) => format!(
            "package update: {}; the new version no longer ships it",
            change(pkg, now, tx.prior)
        ),
        None => format!(
            "package removal: {}; it left with its package",
            change(pkg, now, tx.prior)
        ),
    };
    Some((detail, vec![(pkg.clone(), now.get(pkg).cloned())]))
}

/// The owners the next generation records: for every record, the first
/// package that claims it in `index` (loaded with lists for the records'
/// names).
pub fn owners(index: &DpkgDb, records: &[Record]) -> BTreeMap<Vec<u8>, String> {
    records
        .iter()
        .filter_map(|r| {
            let p = index.first_claimant(&r.path)?;
            Some((r.path.clone(), p.name.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_packages_cover_upgrades_installs_and_removals() {
        let mut prior = State::default();
        prior.versions.insert("a".into(), "1".into());
        prior.versions.insert("b".into(), "1".into());
        prior.versions.insert("gone".into(), "1".into());
        let now: BTreeMap<String, String> = [("a", "1"), ("b", "2"), ("new", "1")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let c: Vec<String> = changed(&prior, &now).into_iter().collect();
        assert_eq!(c, ["b", "gone", "new"]);
        // An older baseline without versions explains nothing.
        assert!(changed(&State::default(), &now).is_empty());
    }
}
