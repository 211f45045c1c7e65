//! `update [PATH..]`: accept the current state, everywhere or only at and
//! below the named paths, as a new generation; print what was accepted
//! (JSON lines marked `"accepted": true`; `--dry-run`: `"dry_run": true`,
//! and nothing is written). A bare `update` (no PATH) refuses to accept a
//! critical finding without `--yes` (exit 64): a new preload list or a
//! patched loader is what an attack looks like, and accepting everything
//! should not make one disappear unseen. Acknowledgements are carried
//! into the new generation.

use crate::sys::OsStrExt;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::acknowledge::Acks;
use crate::baseline;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::finding::Kind;
use crate::output::{self, messages};
use crate::pipeline::{self, Judges, Reference};
use crate::provenance;
use crate::record::Record;

/// How `update` was asked to run (its flags).
pub struct Options<'a> {
    pub paranoid: bool,
    pub sign_with: Option<&'a Path>,
    pub unsigned: bool,
    pub package_updates: bool,
    pub dry_run: bool,
    pub yes: bool,
    /// `--syslog` targets for what was accepted.
    pub syslog: &'a [String],
}

/// Critical findings named before "and N more" in a refusal.
const SHOW_CRITICAL: usize = 5;

pub fn run(s: &Config, o: &Options, paths: &[PathBuf]) -> Result<i32> {
    let (paranoid, unsigned, package_updates) = (o.paranoid, o.unsigned, o.package_updates);
    let mut logs = super::open_syslogs(o.syslog)?;
    let (store, base, key) = hold(
        s,
        o.sign_with,
        unsigned,
        o.dry_run,
        "update --unsigned: a public key is configured (--verify-with or baseline_pubkey), \
         so every generation must be signed and an unsigned one would be refused by every \
         check; give --sign-with KEY instead",
    )?;
    let root = s.plan.root.host().as_os_str().as_bytes();
    let snap = s.plan.snapshot_against(&base, paranoid);
    super::show(&snap);

    let selected: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| select_key(s, p))
        .collect::<Result<_>>()?;
    let within =
        |path: &[u8]| selected.is_empty() || selected.iter().any(|sel| is_within(path, sel));
    if let Some(sel) = selected.iter().find(|sel| {
        !base.records.iter().any(|r| is_within(&r.path, sel))
            && !snap.scan.records.iter().any(|r| is_within(&r.path, sel))
    }) {
        return Err(Error::NotFound {
            what: "monitored path",
            path: PathBuf::from(std::ffi::OsStr::from_bytes(sel)),
        });
    }

    let v = pipeline::judge(&s.plan, Reference::Baseline(&base), &snap, Judges::CHANGES);
    messages::notes(&v.notes);
    // With the owners, which the judge decodes only for removals: the next
    // generation keeps the baseline's for the paths not accepted.
    let prior = &provenance::State::from_pairs(&base.extra);
    let outcome = v.provenance.as_ref();
    let mut accepted = v.findings;
    accepted.retain(|f| within(&f.path));
    if package_updates {
        // Exactly the expected upgrades; everything else stays flagged.
        accepted.retain(|f| f.kind == Kind::PackageUpdate);
    }
    output::sort(&mut accepted);
    let critical: Vec<&crate::finding::Finding> = accepted
        .iter()
        .filter(|f| f.severity == crate::finding::Severity::Critical)
        .collect();
    let refusal =
        (selected.is_empty() && !o.yes && !critical.is_empty()).then(|| refuse_critical(&critical));
    if o.dry_run {
        let mut context = serde_json::Map::new();
        context.insert("dry_run".into(), serde_json::Value::Bool(true));
        super::emit(s, &accepted, &context)?;
        if let Some(why) = refusal {
            messages::warning(&format!(
                "without --yes, this update would be refused: {why}"
            ));
        }
        let tail = format!(
            "would accept {}; nothing written (dry run); baseline {}",
            output::count_by_kind(&accepted),
            base.describe()
        );
        super::summary("update", &snap, &tail);
        return Ok(0);
    }
    if let Some(why) = refusal {
        return Err(Error::Usage(why));
    }

    let records = &snap.scan.records;
    let (next, extra) = if package_updates {
        let take: HashSet<&[u8]> = accepted.iter().map(|f| f.path.as_slice()).collect();
        let now: HashMap<&[u8], &Record> = records.iter().map(|r| (r.path.as_slice(), r)).collect();
        // An accepted path that is gone left with its package.
        let mut next: Vec<Record> = base
            .records
            .iter()
            .filter_map(|r| match now.get(r.path.as_slice()) {
                Some(n) if take.contains(r.path.as_slice()) => Some((*n).clone()),
                None if take.contains(r.path.as_slice()) => None,
                _ => Some(r.clone()),
            })
            .collect();
        // Files a package installed since the baseline.
        let known: HashSet<&[u8]> = base.records.iter().map(|r| r.path.as_slice()).collect();
        next.extend(
            records
                .iter()
                .filter(|r| take.contains(r.path.as_slice()) && !known.contains(r.path.as_slice()))
                .cloned(),
        );
        next.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        let owners = pipeline::owners(&s.plan, &next);
        let extra = next_state(prior, outcome, &next, Some(&take), &owners);
        (next, extra)
    } else {
        let mut next: Vec<Record> = base
            .records
            .iter()
            .filter(|r| !within(&r.path))
            .cloned()
            .collect();
        next.extend(records.iter().filter(|r| within(&r.path)).cloned());
        next.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        let scope: HashSet<&[u8]> = next
            .iter()
            .map(|r| r.path.as_slice())
            .filter(|p| within(p))
            .collect();
        let owners = pipeline::owners(&s.plan, &next);
        let extra = next_state(
            prior,
            outcome,
            &next,
            (!selected.is_empty()).then_some(&scope),
            &owners,
        );
        (next, extra)
    };

    // What the operator acknowledged stays acknowledged; the package index
    // judged with is kept for the next check.
    let mut extra = extra;
    extra.extend(v.package_cache.clone());
    let extra = Acks::from_pairs(&base.extra).merge_into(&extra);
    let meta = baseline::commit_owned(&s.baseline, store, next, extra, root, key.as_ref())?;
    let mut context = serde_json::Map::new();
    context.insert("accepted".into(), serde_json::Value::Bool(true));
    super::emit(s, &accepted, &context)?;
    super::send_syslogs(&mut logs, &accepted, crate::output::sink::Source::Accepted);
    let tail = format!(
        "accepted {}; baseline {}",
        output::count_by_kind(&accepted),
        baseline::verify::describe(&meta)
    );
    super::summary("update", &snap, &tail);
    Ok(0)
}

/// Why a bare `update` will not accept `critical` findings (not empty).
pub(super) fn refuse_critical(critical: &[&crate::finding::Finding]) -> String {
    let mut named: Vec<String> = critical
        .iter()
        .take(SHOW_CRITICAL)
        .map(|f| format!("{} {}", f.kind.name(), crate::escape::for_terminal(&f.path)))
        .collect();
    if critical.len() > SHOW_CRITICAL {
        named.push(format!("{} more", critical.len() - SHOW_CRITICAL));
    }
    format!(
        "update with no PATH would accept {} critical finding{} ({}): a critical change is \
         what an attack looks like, so it is accepted only when named (`update PATH`) or \
         with --yes; `update --dry-run` lists everything it would accept",
        critical.len(),
        if critical.len() == 1 { "" } else { "s" },
        named.join(", ")
    )
}

/// The store held for writing, its current generation, and the key a new
/// one is signed with.
pub(super) type Held = (
    baseline::store::Store,
    baseline::Baseline,
    Option<ed25519_dalek::SigningKey>,
);

/// Opens the baseline for a command that writes a generation (`update`,
/// `accept`): the signing key, the store held from judging to writing (a
/// concurrent writer must not interleave), the live generation verified
/// for this root and, unless `dry_run`, signing kept. With a signing key,
/// the current generation must carry that key's signature, or be an
/// unsigned one libwarden recorded as such (signing restarts: `verify`
/// decides). Notes are printed.
pub(super) fn hold(
    s: &Config,
    sign_with: Option<&Path>,
    unsigned: bool,
    dry_run: bool,
    unsigned_refused: &str,
) -> Result<Held> {
    let root = s.plan.root.host().as_os_str().as_bytes();
    hold_at(
        &s.baseline,
        root,
        sign_with,
        unsigned,
        dry_run,
        unsigned_refused,
    )
}

/// [`hold`] for the baseline at `at`, recorded for `root` (an image's
/// baseline: `image:NAME`).
pub(super) fn hold_at(
    at: &baseline::Location,
    root: &[u8],
    sign_with: Option<&Path>,
    unsigned: bool,
    dry_run: bool,
    unsigned_refused: &str,
) -> Result<Held> {
    let key = sign_with.map(baseline::signing::load_secret).transpose()?;
    if unsigned && at.verify_key.is_some() {
        return Err(Error::Usage(unsigned_refused.into()));
    }
    let verify_key = key.as_ref().map(|k| k.verifying_key());
    let loc = baseline::Location {
        restart_signing: key.is_some(),
        ..at.clone()
    };
    let (store, base, mut notes) = baseline::load_held(&loc, verify_key.as_ref())?;
    notes.extend(baseline::verify::root(&loc, &base.meta, root)?);
    if !dry_run {
        signing_kept(&base.meta, key.is_some(), unsigned, &mut notes)?;
    }
    messages::notes(&notes);
    Ok((store, base, key))
}

/// A signed baseline stays signed unless the operator says otherwise: an
/// update without a key over a signed generation is refused (a usage
/// error: the key or `--unsigned` is missing from the command line), and
/// `--unsigned` drops signing with a warning.
pub(super) fn signing_kept(
    live: &baseline::store::Meta,
    have_key: bool,
    unsigned: bool,
    notes: &mut Vec<crate::finding::Note>,
) -> Result<()> {
    if have_key || live.signature.is_none() {
        return Ok(());
    }
    let live = baseline::verify::describe(live);
    if !unsigned {
        return Err(Error::Usage(format!(
            "the baseline is {live}: give --sign-with KEY to sign the new generation, or \
             --unsigned to stop signing this baseline (checks with --verify-with will then \
             refuse it)"
        )));
    }
    notes.push(crate::finding::Note::Warning(format!(
        "the baseline is {live}; as --unsigned says, the new generation is not signed \
         and nothing proves who wrote it"
    )));
    Ok(())
}

/// The provenance state of the new generation. Package versions: all
/// current ones on a full update; otherwise the baseline's, with the
/// packages of the accepted paths (`scope`) moved to their current version.
/// Cached MD5s: whichever of old and new matches the record's BLAKE3.
/// Owners: `owners` (now's) for the accepted paths, the baseline's for
/// the rest.
pub(super) fn next_state(
    prior: &provenance::State,
    outcome: Option<&provenance::Outcome>,
    next: &[Record],
    scope: Option<&HashSet<&[u8]>>,
    owners: &BTreeMap<Vec<u8>, String>,
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
                // The packages a transaction explained the change with:
                // their version now, or gone.
                for (pkg, ver) in out.explained.get(*p).into_iter().flatten() {
                    match ver {
                        Some(v) => st.versions.insert(pkg.clone(), v.clone()),
                        None => st.versions.remove(pkg),
                    };
                }
            }
        }
    }
    for r in next {
        let owner = match scope {
            Some(scope) if !scope.contains(r.path.as_slice()) => prior.owners.get(&r.path),
            _ => owners.get(&r.path),
        };
        if let Some(o) = owner {
            st.owners.insert(r.path.clone(), o.clone());
        }
        let Some(b) = r.blake3 else { continue };
        let hit = [out.state.md5.get(&r.path), prior.md5.get(&r.path)]
            .into_iter()
            .flatten()
            .find(|(hb, _)| *hb == b);
        if let Some(v) = hit {
            st.md5.insert(r.path.clone(), *v);
        }
        let hit = [out.state.digests.get(&r.path), prior.digests.get(&r.path)]
            .into_iter()
            .flatten()
            .find(|(hb, _)| *hb == b);
        if let Some(v) = hit {
            st.digests.insert(r.path.clone(), *v);
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
fn select_key(s: &Config, p: &Path) -> Result<Vec<u8>> {
    if !p.is_absolute() {
        return Err(Error::Usage(format!(
            "update: {} must be an absolute path (inside --root)",
            p.display()
        )));
    }
    let resolved = s
        .plan
        .root
        .resolve_parent(p)
        .unwrap_or_else(|_| s.plan.root.resolve_lenient(p));
    Ok(resolved.as_os_str().as_bytes().to_vec())
}

/// `path` equals `sel` or lies below it.
pub(super) fn is_within(path: &[u8], sel: &[u8]) -> bool {
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
