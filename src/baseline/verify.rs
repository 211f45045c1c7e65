//! Whether a loaded baseline may be trusted: its signature (when a public
//! key is configured), its generation against the highest one seen before
//! (rollback), and the root it was built for. Every refusal of the baseline
//! is exit 65 with a sentence saying which; a baseline paired with the
//! wrong `--root` is a usage error (64): the baseline is sound, the command
//! line is not.
//!
//! Rollback state that is missing for a baseline that must verify with a
//! key is not "first use": it is refused until the operator re-pins the
//! generation (`--accept-generation N`), so deleting the state file cannot
//! switch rollback detection off. A freshly written generation records the
//! state at once, so the normal path never meets that refusal.

use std::path::Path;

use ed25519_dalek::VerifyingKey;

use super::rollback::{self, Seen, Signer};
use super::signing::{self, Refusal};
use super::store::Meta;
use super::Location;
use crate::error::{Error, Result};
use crate::escape;
use crate::finding::Note;

/// Verifies `meta` against `key` (if any), then the rollback state. A
/// rollback state that cannot be written is a warning, not a refusal.
pub fn verify(loc: &Location, meta: &Meta, key: Option<&VerifyingKey>) -> Result<Vec<Note>> {
    let mut notes = Vec::new();
    if let Some(key) = key {
        let msg = match signing::verify(key, meta.signature.as_ref(), &meta.signed_bytes()) {
            Ok(()) => None,
            // `update --sign-with` may start signing an unsigned baseline;
            // the rollback check below decides whether this one may be.
            Err(Refusal::Unsigned) if loc.restart_signing => None,
            Err(Refusal::Unsigned) => {
                Some("it is not signed, but a public key was given to verify it with")
            }
            Err(Refusal::OtherKey) => Some("it is signed by a different key than the one given"),
            Err(Refusal::Invalid) => {
                Some("its signature does not match its contents: the baseline was altered")
            }
        };
        if let Some(msg) = msg {
            return Err(refused(loc, msg.into()));
        }
    }
    rollback_check(loc, meta, key.is_some(), &mut notes)?;
    Ok(notes)
}

fn refused(loc: &Location, msg: String) -> Error {
    Error::Signature {
        path: loc.db.clone(),
        msg,
    }
}

/// One place the rollback state is kept and what it says.
struct Place<'a> {
    path: &'a Path,
    /// `None`: it says nothing of this baseline (or could not be read).
    seen: Option<Seen>,
    readable: bool,
}

/// The rollback decision over both copies of the state (the one beside
/// the baseline, the one beside the public key), then the record of
/// `meta` in each copy that does not hold it yet.
fn rollback_check(
    loc: &Location,
    meta: &Meta,
    must_verify: bool,
    notes: &mut Vec<Note>,
) -> Result<()> {
    let mut places = Vec::new();
    for path in std::iter::once(loc.state_path.as_path()).chain(loc.state_copy.as_deref()) {
        match rollback::seen(path, &meta.baseline_id) {
            Ok(seen) => places.push(Place {
                path,
                seen,
                readable: true,
            }),
            // An unprivileged check of a root-owned state: say so, decide
            // on what can be read.
            Err(Error::Io {
                op,
                path: p,
                source,
            }) if source.kind() == std::io::ErrorKind::PermissionDenied => {
                notes.push(Note::Warning(format!(
                    "{op} {}: {source}; rollback detection cannot use it",
                    p.display()
                )));
                places.push(Place {
                    path,
                    seen: None,
                    readable: false,
                });
            }
            Err(e) => return Err(e),
        }
    }
    let best = places
        .iter()
        .filter_map(|p| p.seen)
        .max_by_key(|s| (s.generation, s.written));
    let here = Seen::of(meta);

    if let Some(pin) = loc.accept_generation {
        if pin != meta.generation {
            return Err(refused(
                loc,
                format!(
                    "--accept-generation {pin} was given, but the baseline is {}",
                    describe(meta)
                ),
            ));
        }
        notes.push(Note::Warning(format!(
            "rollback state re-pinned to {} as --accept-generation says (it recorded {})",
            describe(meta),
            match best {
                Some(s) => format!("generation {}", s.generation),
                None => "nothing for this baseline".into(),
            }
        )));
        if meta.signature.is_none() && loc.restart_signing && must_verify {
            restart_allowed(loc, meta, &here, notes)?;
        }
        write_all(&places, meta, |_| true, notes)?;
        return Ok(());
    }

    let Some(best) = best else {
        if must_verify {
            let where_ = places
                .iter()
                .map(|p| {
                    let unreadable = if p.readable { "" } else { " (unreadable)" };
                    format!("{}{unreadable}", p.path.display())
                })
                .collect::<Vec<_>>()
                .join(" nor ");
            return Err(refused(
                loc,
                format!(
                    "its rollback state is missing ({} records this baseline): it was deleted, \
                     or the baseline was copied here from elsewhere, so an older generation \
                     cannot be told from the newest. It is {}; if that is the generation you \
                     expect, re-pin it with `--accept-generation {}`",
                    if places.len() > 1 {
                        format!("neither {where_}")
                    } else {
                        format!("not {where_}")
                    },
                    describe(meta),
                    meta.generation
                ),
            ));
        }
        // Unverified and never seen: first use.
        write_all(&places[..1], meta, |_| true, notes)?;
        return Ok(());
    };

    if meta.generation < best.generation {
        return Err(Error::Rollback {
            found: meta.generation,
            seen: best.generation,
            seen_written: best.written,
        });
    }
    if meta.signature.is_none() && loc.restart_signing && must_verify {
        restart_allowed(loc, meta, &best, notes)?;
    }
    // The copy beside the baseline lost what the other one knows: someone
    // deleted or replaced it. Rollback detection held; say so loudly.
    if let Some(first) = places.first() {
        if first.readable && first.seen.is_none_or(|s| s.generation < best.generation) {
            notes.push(Note::Warning(format!(
                "the rollback state {} was {} (the copy beside the public key records \
                 generation {}): it was deleted or replaced; restoring it",
                first.path.display(),
                if first.seen.is_none() {
                    "missing"
                } else {
                    "older"
                },
                best.generation
            )));
        }
    }
    write_all(&places, meta, |s| s != Some(here), notes)
}

/// Whether `update --sign-with` may sign over the unsigned live generation:
/// only when libwarden itself recorded it as unsigned (an `update
/// --unsigned`), never when the last generation it recorded was signed
/// (an unsigned one written behind its back, or a copy restored).
fn restart_allowed(loc: &Location, meta: &Meta, best: &Seen, notes: &mut Vec<Note>) -> Result<()> {
    match best.signer {
        Signer::Key(k) => Err(refused(
            loc,
            format!(
                "{} is unsigned, but generation {} before it was signed (by key {}) and no \
                 libwarden recorded an unsigned generation since: refusing to sign over a \
                 generation written without the key",
                describe(meta),
                best.generation,
                &escape::hex(&k)[..16]
            ),
        )),
        Signer::Unsigned | Signer::Unknown => {
            notes.push(Note::Warning(format!(
                "{} is unsigned: signing restarts with the generation this update writes; \
                 what was accepted while unsigned is covered by no earlier signature",
                describe(meta)
            )));
            Ok(())
        }
    }
}

/// Records `meta` in every readable place whose entry `stale` says needs
/// it. A place that cannot be written is a warning: rollback detection is
/// then only as good as the other copy.
fn write_all(
    places: &[Place],
    meta: &Meta,
    stale: impl Fn(Option<Seen>) -> bool,
    notes: &mut Vec<Note>,
) -> Result<()> {
    for p in places.iter().filter(|p| p.readable && stale(p.seen)) {
        match rollback::record(p.path, meta) {
            Ok(()) => {}
            Err(Error::Io { op, path, source })
                if source.kind() == std::io::ErrorKind::PermissionDenied
                    || source.kind() == std::io::ErrorKind::ReadOnlyFilesystem =>
            {
                notes.push(Note::Warning(format!(
                    "{op} {}: {source}; rollback detection is not recorded there",
                    path.display()
                )));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Records a generation just written (by `init` or `update`) in the state
/// beside the baseline and, when a public key is configured, beside it.
/// The first must succeed; the copy is best effort (the next verified load
/// restores it from the first).
pub fn record_written(loc: &Location, meta: &Meta) -> Result<()> {
    rollback::record(&loc.state_path, meta)?;
    if let Some(copy) = &loc.state_copy {
        let _ = rollback::record(copy, meta);
    }
    Ok(())
}

/// The baseline was built for `root`, or the operator said it may judge
/// another (`--allow-other-root`: an image copied to a new path). A
/// baseline of one tree used for another reports every file in it as a
/// change, which is a mistake of the command line: refused as usage.
pub fn root(loc: &Location, meta: &Meta, root: &[u8]) -> Result<Vec<Note>> {
    if meta.root == root {
        return Ok(Vec::new());
    }
    let (built, now) = (escape::for_terminal(&meta.root), escape::for_terminal(root));
    if loc.allow_other_root {
        return Ok(vec![Note::Warning(format!(
            "the baseline at {} was built for root {built}; judging root {now} with it, \
             as --allow-other-root says",
            loc.db.display()
        ))]);
    }
    Err(Error::Usage(format!(
        "the baseline at {} was built for root {built}, not {now}: judged against another \
         tree's baseline, every file would be a finding. Give the matching --root (or this \
         root's own --db), or --allow-other-root if {now} is a copy of {built} at a new path",
        loc.db.display()
    )))
}

/// "generation 3 of 2026-11-27T02:50:00Z (signed)" for summaries.
pub fn describe(meta: &Meta) -> String {
    format!(
        "generation {} of {}{}",
        meta.generation,
        utc(meta.written),
        if meta.signature.is_some() {
            " (signed)"
        } else {
            " (unsigned)"
        }
    )
}

pub use crate::timefmt::utc;

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn loc(dir: &Path) -> Location {
        Location {
            db: dir.join("baseline"),
            state_path: dir.join("baseline.generations"),
            verify_key: None,
            state_copy: Some(dir.join("keys/libwarden.pub.generations")),
            accept_generation: None,
            allow_other_root: false,
            restart_signing: false,
        }
    }

    fn meta(generation: u64, key: Option<&SigningKey>) -> Meta {
        let mut m = Meta {
            schema: 3,
            generation,
            baseline_id: [4; 16],
            written: 1000 + generation as i64,
            count: 0,
            digest: [0; 32],
            root: b"/".to_vec(),
            signature: None,
        };
        if let Some(k) = key {
            m.signature = Some(signing::sign(k, &m.signed_bytes()));
        }
        m
    }

    #[test]
    fn a_verified_baseline_needs_rollback_state_and_either_copy_suffices() {
        let t = tempfile::tempdir().unwrap();
        let l = loc(t.path());
        let sk = SigningKey::from_bytes(&[1; 32]);
        let pk = sk.verifying_key();
        let (m1, m2) = (meta(1, Some(&sk)), meta(2, Some(&sk)));
        // Never seen and verified: refused, nothing recorded.
        let e = verify(&l, &m1, Some(&pk)).unwrap_err();
        assert!(e.to_string().contains("--accept-generation 1"), "{e}");
        assert!(!l.state_path.exists());
        // Unverified first use records; a fresh generation is recorded in
        // both places.
        verify(&l, &m1, None).unwrap();
        record_written(&l, &m2).unwrap();
        assert!(verify(&l, &m2, Some(&pk)).unwrap().is_empty());
        // Either copy alone still refuses generation 1; the lost one is
        // restored with a warning.
        std::fs::remove_file(&l.state_path).unwrap();
        assert!(matches!(
            verify(&l, &m1, Some(&pk)),
            Err(Error::Rollback { seen: 2, .. })
        ));
        let notes = verify(&l, &m2, Some(&pk)).unwrap();
        assert!(format!("{notes:?}").contains("restoring"), "{notes:?}");
        assert!(l.state_path.exists());
        std::fs::remove_file(l.state_copy.as_ref().unwrap()).unwrap();
        assert!(verify(&l, &m1, Some(&pk)).is_err());
        // Re-pinning names the generation it accepts.
        let pinned = Location {
            accept_generation: Some(1),
            ..l.clone()
        };
        assert!(verify(&pinned, &m2, Some(&pk)).is_err());
        verify(&pinned, &m1, Some(&pk)).unwrap();
        verify(&l, &m1, Some(&pk)).unwrap();
    }

    #[test]
    fn signing_restarts_only_on_an_unsigned_generation_libwarden_recorded() {
        let t = tempfile::tempdir().unwrap();
        let sk = SigningKey::from_bytes(&[1; 32]);
        let pk = sk.verifying_key();
        let l = Location {
            restart_signing: true,
            ..loc(t.path())
        };
        record_written(&l, &meta(1, Some(&sk))).unwrap();
        // Generation 2 unsigned, never recorded: written behind our back.
        let e = verify(&l, &meta(2, None), Some(&pk)).unwrap_err();
        assert!(e.to_string().contains("without the key"), "{e}");
        // Recorded as written unsigned (`update --unsigned`): allowed.
        record_written(&l, &meta(2, None)).unwrap();
        let notes = verify(&l, &meta(2, None), Some(&pk)).unwrap();
        assert!(format!("{notes:?}").contains("signing restarts"));
        // Without the restart, an unsigned generation fails verification.
        assert!(verify(&loc(t.path()), &meta(2, None), Some(&pk)).is_err());
    }

    #[test]
    fn another_root_is_a_usage_error_unless_allowed() {
        let t = tempfile::tempdir().unwrap();
        let m = meta(1, None);
        assert!(root(&loc(t.path()), &m, b"/").unwrap().is_empty());
        let e = root(&loc(t.path()), &m, b"/srv/image").unwrap_err();
        assert_eq!(e.exit_code(), crate::error::code::USAGE);
        let allowed = Location {
            allow_other_root: true,
            ..loc(t.path())
        };
        assert_eq!(root(&allowed, &m, b"/srv/image").unwrap().len(), 1);
    }
}
