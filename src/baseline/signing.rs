//! Ed25519 keys for signing baseline generations and manifests. Key files
//! are one line of text each, so they can be handed around, pasted into
//! config management and read without a prompt:
//! `libwarden-ed25519-secret-v1 <64 hex>` (mode 0600) and
//! `libwarden-ed25519-public-v1 <64 hex>`.

use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use crate::error::{Error, Result};
use crate::escape;
use crate::sys::OpenOptionsNoFollow;

const SECRET_TAG: &str = "libwarden-ed25519-secret-v1";
const PUBLIC_TAG: &str = "libwarden-ed25519-public-v1";
pub const SECRET_FILE: &str = "libwarden.key";
pub const PUBLIC_FILE: &str = "libwarden.pub";

/// Writes a new key pair into `dir`: both files or neither. Nothing is
/// written while either name is taken, by a file or by a symlink (even a
/// dangling one); a directory created for the keys is 0700 whatever the
/// umask.
pub fn keygen(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    create_private_dir(dir)?;
    let secret = dir.join(SECRET_FILE);
    let public = dir.join(PUBLIC_FILE);
    for p in [&secret, &public] {
        // symlink_metadata: a dangling symlink exists too (`exists()`
        // follows it and says no).
        if std::fs::symlink_metadata(p).is_ok() {
            return Err(Error::Usage(format!(
                "{} exists; not overwriting a key (move it away first)",
                p.display()
            )));
        }
    }
    let mut seed = [0u8; 32];
    crate::baseline::store::fill_random(&mut seed)
        .map_err(|e| Error::io("read random bytes for", dir, e))?;
    let key = SigningKey::from_bytes(&seed);
    write_new(
        &secret,
        0o600,
        &format!("{SECRET_TAG} {}\n", escape::hex(&seed)),
    )?;
    let written = write_new(
        &public,
        0o644,
        &format!(
            "{PUBLIC_TAG} {}\n",
            escape::hex(key.verifying_key().as_bytes())
        ),
    );
    if let Err(e) = written {
        // A lone secret key is worse than none: nobody knows it exists.
        let _ = std::fs::remove_file(&secret);
        return Err(e);
    }
    // Best effort: the file itself was synced.
    let _ = crate::sys::sync_dir(dir);
    Ok((secret, public))
}

/// Creates `dir` (and missing parents) mode 0700, set explicitly so that
/// a umask of 000 cannot make it 0777; an existing directory is kept as
/// it is.
fn create_private_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
        .map_err(|e| Error::io("create key dir", dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io("restrict key dir", dir, e))?;
    }
    Ok(())
}

/// Creates `path` exclusively, never through a symlink, and removes it
/// again if it cannot be written whole.
fn write_new(path: &Path, mode: u32, text: &str) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .no_follow()
        .create_mode(mode)
        .open(path)
        .map_err(|e| Error::io("create", path, e))?;
    #[cfg(unix)]
    {
        // The umask may have narrowed the mode; it must not widen it, and
        // the public key must stay readable to whoever verifies.
        use std::os::unix::fs::PermissionsExt;
        let _ = f.set_permissions(std::fs::Permissions::from_mode(mode));
    }
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| {
            let _ = std::fs::remove_file(path);
            Error::io("write", path, e)
        })
}

/// A key file's text, read with [`crate::input::KEY_CAP`] as its bound
/// and without blocking: `/dev/zero` or a FIFO given as a key is refused
/// at once.
fn read_tagged(path: &Path, tag: &str) -> Result<[u8; 32]> {
    let text = crate::input::read_bounded_text(path, crate::input::KEY_CAP).map_err(|e| match e
        .kind()
    {
        std::io::ErrorKind::NotFound => Error::NotFound {
            what: "key file",
            path: path.to_path_buf(),
        },
        std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData => {
            Error::Usage(format!("key file {}: {e}", path.display()))
        }
        _ => Error::io("read key", path, e),
    })?;
    let bad = || {
        Error::Usage(format!(
            "{} is not a libwarden {tag} key file",
            path.display()
        ))
    };
    let mut it = text.split_whitespace();
    if it.next() != Some(tag) {
        return Err(bad());
    }
    let bytes = it.next().and_then(escape::unhex).ok_or_else(bad)?;
    bytes.try_into().map_err(|_| bad())
}

/// Loads a secret key written by [`keygen`].
pub fn load_secret(path: &Path) -> Result<SigningKey> {
    Ok(SigningKey::from_bytes(&read_tagged(path, SECRET_TAG)?))
}

/// Loads a public key written by [`keygen`].
pub fn load_public(path: &Path) -> Result<VerifyingKey> {
    let bytes = read_tagged(path, PUBLIC_TAG)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| {
        Error::Usage(format!(
            "{}: not a valid Ed25519 public key",
            path.display()
        ))
    })
}

/// Signs `msg`; returns (public key, signature).
pub fn sign(key: &SigningKey, msg: &[u8]) -> ([u8; 32], [u8; 64]) {
    (key.verifying_key().to_bytes(), key.sign(msg).to_bytes())
}

/// Why a signature was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    Unsigned,
    OtherKey,
    Invalid,
}

/// Verifies a stored (key, signature) pair over `msg` against `expected`.
pub fn verify(
    expected: &VerifyingKey,
    stored: Option<&([u8; 32], [u8; 64])>,
    msg: &[u8],
) -> std::result::Result<(), Refusal> {
    let Some((key, sig)) = stored else {
        return Err(Refusal::Unsigned);
    };
    if key != expected.as_bytes() {
        return Err(Refusal::OtherKey);
    }
    expected
        .verify(msg, &Signature::from_bytes(sig))
        .map_err(|_| Refusal::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_sign_verify_and_refusals() {
        let t = tempfile::tempdir().unwrap();
        let (s, p) = keygen(t.path()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&s).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(keygen(t.path()).is_err(), "never overwrites");
        let (sk, pk) = (load_secret(&s).unwrap(), load_public(&p).unwrap());
        let stored = sign(&sk, b"generation 7");
        assert_eq!(verify(&pk, Some(&stored), b"generation 7"), Ok(()));
        assert_eq!(
            verify(&pk, Some(&stored), b"generation 6"),
            Err(Refusal::Invalid)
        );
        assert_eq!(verify(&pk, None, b"x"), Err(Refusal::Unsigned));
        let other = SigningKey::from_bytes(&[3; 32]);
        assert_eq!(
            verify(&pk, Some(&sign(&other, b"x")), b"x"),
            Err(Refusal::OtherKey)
        );
        assert!(load_public(&s).is_err(), "a secret key is not a public key");
    }
}
