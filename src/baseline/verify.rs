//! Whether a loaded baseline may be trusted: its signature (when a public
//! key is configured) and its generation against the highest one seen
//! before (rollback). Every refusal is exit 65 with a sentence saying which.

use ed25519_dalek::VerifyingKey;

use super::rollback;
use super::signing::{self, Refusal};
use super::store::Meta;
use super::Location;
use crate::error::{Error, Result};
use crate::finding::Note;

/// Verifies `meta` against `key` (if any), then the rollback state. A
/// rollback state that cannot be written is a warning, not a refusal.
pub fn verify(loc: &Location, meta: &Meta, key: Option<&VerifyingKey>) -> Result<Vec<Note>> {
    if let Some(key) = key {
        let msg = match signing::verify(key, meta.signature.as_ref(), &meta.signed_bytes()) {
            Ok(()) => None,
            Err(Refusal::Unsigned) => {
                Some("it is not signed, but a public key was given to verify it with")
            }
            Err(Refusal::OtherKey) => Some("it is signed by a different key than the one given"),
            Err(Refusal::Invalid) => {
                Some("its signature does not match its contents: the baseline was altered")
            }
        };
        if let Some(msg) = msg {
            return Err(Error::Signature {
                path: loc.db.clone(),
                msg: msg.into(),
            });
        }
    }
    match rollback::check_and_record(&loc.state_path, meta) {
        // A state file we may not write (an unprivileged check of a
        // root-owned baseline) weakens rollback detection; say so.
        Err(Error::Io { op, path, source })
            if source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            Ok(vec![Note::Warning(format!(
                "{op} {}: {source}; rollback detection is not recorded",
                path.display()
            ))])
        }
        other => other.map(|()| Vec::new()),
    }
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
