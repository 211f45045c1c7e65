//! Whether a loaded baseline may be trusted: its signature (when a public
//! key is configured) and its generation against the highest one seen
//! before (rollback). Every refusal is exit 65 with a sentence saying which.

use ed25519_dalek::VerifyingKey;

use crate::error::{Error, Result};
use crate::rollback;
use crate::settings::Settings;
use crate::signing::{self, Refusal};
use crate::store::Meta;

/// Verifies `meta` against `key` (if any), then the rollback state.
pub fn verify(s: &Settings, meta: &Meta, key: Option<&VerifyingKey>) -> Result<()> {
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
                path: s.db.clone(),
                msg: msg.into(),
            });
        }
    }
    match rollback::check_and_record(&s.state_path, meta) {
        // A state file we may not write (an unprivileged check of a
        // root-owned baseline) weakens rollback detection; say so.
        Err(Error::Io { op, path, source })
            if source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            if !s.quiet {
                eprintln!(
                    "libwarden: warning: {op} {}: {source}; rollback detection is not recorded",
                    path.display()
                );
            }
            Ok(())
        }
        other => other,
    }
}

/// "generation 3 of 2026-11-27T02:50:00Z (signed)" for summaries.
pub fn describe(meta: &Meta) -> String {
    format!(
        "generation {} of {}{}",
        meta.generation,
        utc(meta.written),
        if meta.signature.is_some() {
            ", signed"
        } else {
            ", unsigned"
        }
    )
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (civil-from-days).
pub fn utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::utc(1_764_210_600), "2025-11-27T02:30:00Z");
        assert_eq!(super::utc(951_782_400), "2000-02-29T00:00:00Z");
    }
}
