//! `update [PATH..]`: accept the current state, everywhere or only at and
//! below the named paths, as a new generation; print what was accepted.

use crate::sys::OsStrExt;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::diff::{self, Classifier};
use crate::error::{Error, Result};
use crate::finding::Kind;
use crate::provenance;
use crate::record::Record;
use crate::report;
use crate::settings::Settings;
use crate::store::Store;

pub fn run(
    s: &Settings,
    paranoid: bool,
    sign_with: Option<&Path>,
    package_updates: bool,
    paths: &[PathBuf],
) -> Result<i32> {
    let key = sign_with.map(crate::signing::load_secret).transpose()?;
    // Hold the store across scan and write: a concurrent update must not
    // interleave with this one.
    let store = Store::open(&s.db)?;
    let (meta, baseline, extra) = store.load_with_extra()?;
    // Never build on a baseline that fails verification: with a signing
    // key, the current generation must carry that key's signature.
    let verify_key = key.as_ref().map(|k| k.verifying_key()).or(s.verify_key);
    crate::trust::verify(s, &meta, verify_key.as_ref())?;
    let (sp, res) = super::scan_now(s, &baseline, paranoid);
    super::warn(s, &sp, &res);

    let selected: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| select_key(s, p))
        .collect::<Result<_>>()?;
    let within =
        |path: &[u8]| selected.is_empty() || selected.iter().any(|sel| is_within(path, sel));
    if let Some(sel) = selected.iter().find(|sel| {
        !baseline.iter().any(|r| is_within(&r.path, sel))
            && !res.records.iter().any(|r| is_within(&r.path, sel))
    }) {
        return Err(Error::NotFound {
            what: "monitored path",
            path: PathBuf::from(std::ffi::OsStr::from_bytes(sel)),
        });
    }

    let mut accepted = diff::diff(&baseline, &res.records, &Classifier::new(&sp));
    let prior = provenance::State::from_pairs(&extra);
    let outcome = provenance::run(s, &res.records, &baseline, &prior);
    if let Some(out) = &outcome {
        provenance::relabel_updates(&mut accepted, out, &prior);
    }
    accepted.retain(|f| within(&f.path));
    if package_updates {
        // Exactly the expected upgrades; everything else stays flagged.
        accepted.retain(|f| f.kind == Kind::PackageUpdate);
    }
    report::sort(&mut accepted);

    let (next, extra) = if package_updates {
        let take: HashSet<&[u8]> = accepted.iter().map(|f| f.path.as_slice()).collect();
        let now: HashMap<&[u8], &Record> =
            res.records.iter().map(|r| (r.path.as_slice(), r)).collect();
        let mut next: Vec<Record> = baseline
            .iter()
            .map(|r| match now.get(r.path.as_slice()) {
                Some(n) if take.contains(r.path.as_slice()) => (*n).clone(),
                _ => r.clone(),
            })
            .collect();
        // Files a package installed since the baseline.
        let known: HashSet<&[u8]> = baseline.iter().map(|r| r.path.as_slice()).collect();
        next.extend(
            res.records
                .iter()
                .filter(|r| take.contains(r.path.as_slice()) && !known.contains(r.path.as_slice()))
                .cloned(),
        );
        next.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        let extra = next_state(&prior, outcome.as_ref(), &next, Some(&take));
        (next, extra)
    } else {
        let mut next: Vec<Record> = baseline.into_iter().filter(|r| !within(&r.path)).collect();
        next.extend(res.records.iter().filter(|r| within(&r.path)).cloned());
        next.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        let scope: HashSet<&[u8]> = next
            .iter()
            .map(|r| r.path.as_slice())
            .filter(|p| within(p))
            .collect();
        let extra = next_state(
            &prior,
            outcome.as_ref(),
            &next,
            (!selected.is_empty()).then_some(&scope),
        );
        (next, extra)
    };

    let meta = super::commit_generation(s, store, &next, &extra, key.as_ref())?;
    let mut out = std::io::stdout().lock();
    report::write_findings(&mut out, &accepted, s.format)
        .map_err(|e| Error::io("write", "stdout", e))?;
    let tail = format!(
        "accepted {}; baseline {}",
        report::count_by_kind(&accepted),
        crate::trust::describe(&meta)
    );
    super::summary(s, "update", &res, &tail);
    Ok(0)
}

/// The provenance state of the new generation. Package versions: all
/// current ones on a full update; otherwise the baseline's, with the
/// packages of the accepted paths (`scope`) moved to their current version.
/// Cached MD5s: whichever of old and new matches the record's BLAKE3.
fn next_state(
    prior: &provenance::State,
    outcome: Option<&provenance::Outcome>,
    next: &[Record],
    scope: Option<&HashSet<&[u8]>>,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let Some(out) = outcome else {
        return prior.to_pairs();
    };
    let mut st = provenance::State::default();
    match scope {
        None => st.versions = out.state.versions.clone(),
        Some(scope) => {
            st.versions = prior.versions.clone();
            for p in scope.iter() {
                if let Some((pkg, ver)) = out.matched.get(*p) {
                    st.versions.insert(pkg.clone(), ver.clone());
                }
            }
        }
    }
    for r in next {
        let Some(b) = r.blake3 else { continue };
        let hit = [out.state.md5.get(&r.path), prior.md5.get(&r.path)]
            .into_iter()
            .flatten()
            .find(|(hb, _)| *hb == b);
        if let Some(v) = hit {
            st.md5.insert(r.path.clone(), *v);
        }
        let hit = [out.state.signers.get(&r.path), prior.signers.get(&r.path)]
            .into_iter()
            .flatten()
            .find(|(hb, _)| *hb == b);
        if let Some(v) = hit {
            st.signers.insert(r.path.clone(), v.clone());
        }
        let hit = [out.state.pe.get(&r.path), prior.pe.get(&r.path)]
            .into_iter()
            .flatten()
            .find(|(hb, _, _)| *hb == b);
        if let Some(v) = hit {
            st.pe.insert(r.path.clone(), v.clone());
        }
    }
    st.to_pairs()
}

/// A user's path as the baseline key it selects: made absolute inside the
/// root, its directories resolved (the last component is not followed, so a
/// symlink can be accepted itself).
fn select_key(s: &Settings, p: &Path) -> Result<Vec<u8>> {
    if !p.is_absolute() {
        return Err(Error::Usage(format!(
            "update: {} must be an absolute path (inside --root)",
            p.display()
        )));
    }
    let resolved = s
        .root
        .resolve_parent(p)
        .unwrap_or_else(|_| s.root.resolve_lenient(p));
    Ok(resolved.as_os_str().as_bytes().to_vec())
}

/// `path` equals `sel` or lies below it.
fn is_within(path: &[u8], sel: &[u8]) -> bool {
    sel == b"/" || path == sel || (path.starts_with(sel) && path.get(sel.len()) == Some(&b'/'))
}

#[cfg(test)]
mod tests {
    #[test]
    fn within_respects_component_boundaries() {
        assert!(super::is_within(b"/usr/lib/x", b"/usr/lib"));
        assert!(super::is_within(b"/usr/lib", b"/usr/lib"));
        assert!(!super::is_within(b"/usr/lib64/x", b"/usr/lib"));
        assert!(super::is_within(b"/a", b"/"));
    }
}
