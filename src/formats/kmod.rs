//! Kernel module signatures: `sign-file` appends the PKCS#7 signature, a
//! `struct module_signature` (12 bytes) and the marker
//! `~Module signature appended~\n` to the module. Only the tail of the file
//! as stored is read: a compressed module (`.ko.xz`, `.ko.zst`, `.ko.gz`)
//! is signed before compression, so its signature is hidden inside the
//! compressed stream and reported as [`ModuleSig::Hidden`], never guessed.

use super::der;

pub const MARKER: &[u8] = b"~Module signature appended~\n";
/// `sizeof(struct module_signature)`.
const INFO_LEN: usize = 12;
/// `PKEY_ID_PKCS7`: the only id type current kernels produce.
const PKEY_ID_PKCS7: u8 = 2;
/// Signatures are a few KiB; a larger claimed length is malformed.
pub const MAX_SIG: usize = 64 << 10;
/// The fixed part of the tail: `struct module_signature` and the marker.
pub const TRAILER: usize = INFO_LEN + 28;

/// How many bytes of the tail [`inspect`] needs, judging from the last
/// [`TRAILER`] bytes: the whole signature when the marker is there (so a
/// module is read twice, briefly, and never whole).
pub fn tail_needed(trailer: &[u8]) -> usize {
    if trailer.len() != TRAILER || !trailer.ends_with(MARKER) {
        return trailer.len();
    }
    let n = u32::from_be_bytes([trailer[8], trailer[9], trailer[10], trailer[11]]) as usize;
    TRAILER + n.min(MAX_SIG)
}

/// What the tail of a module says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModuleSig {
    /// No marker at the end.
    Unsigned,
    /// Compressed: the signature, if any, is inside the compressed data.
    Hidden(&'static str),
    /// Marker present; the signer as the signature names it.
    Signed {
        /// Key identifier: serial number or subject key id, hex.
        key_id: String,
        /// Digest algorithm of the signature.
        hash: String,
    },
    /// Marker present but the structure before it does not hold together.
    Malformed(&'static str),
}

/// True for the file names of kernel modules.
pub fn is_module_name(name: &[u8]) -> bool {
    compression(name).is_some() || name.ends_with(b".ko")
}

/// The compression a module's name announces.
pub fn compression(name: &[u8]) -> Option<&'static str> {
    [(".ko.xz", "xz"), (".ko.zst", "zstd"), (".ko.gz", "gzip")]
        .iter()
        .find(|(suf, _)| name.ends_with(suf.as_bytes()))
        .map(|(_, c)| *c)
}

/// Judges a module from its name and the last bytes of the file (see
/// [`tail_needed`]; fewer is fine).
pub fn inspect(name: &[u8], tail: &[u8]) -> ModuleSig {
    if !tail.ends_with(MARKER) {
        if let Some(c) = compression(name) {
            return ModuleSig::Hidden(c);
        }
        return ModuleSig::Unsigned;
    }
    let Some(body) = tail.get(..tail.len() - MARKER.len()) else {
        return ModuleSig::Malformed("truncated");
    };
    let Some(info) = body.get(body.len().saturating_sub(INFO_LEN)..) else {
        return ModuleSig::Malformed("truncated");
    };
    if info.len() != INFO_LEN {
        return ModuleSig::Malformed("no module_signature header");
    }
    let (id_type, signer_len, key_id_len) = (info[2], info[3], info[4]);
    let sig_len = u32::from_be_bytes([info[8], info[9], info[10], info[11]]) as usize;
    if sig_len == 0 || sig_len > MAX_SIG {
        return ModuleSig::Malformed("bad signature length");
    }
    let before = body.len() - INFO_LEN;
    let Some(sig) = before
        .checked_sub(sig_len)
        .and_then(|start| body.get(start..before))
    else {
        return ModuleSig::Malformed("signature longer than the file");
    };
    if id_type != PKEY_ID_PKCS7 || signer_len != 0 || key_id_len != 0 {
        return ModuleSig::Malformed("not a PKCS#7 module signature");
    }
    match der::signed_data(sig) {
        Some(sd) => match sd.signers.first() {
            Some(si) => ModuleSig::Signed {
                key_id: crate::escape::hex(si.key_id),
                hash: der::digest_name(&si.digest_alg).to_string(),
            },
            None => ModuleSig::Malformed("PKCS#7 without a signer"),
        },
        None => ModuleSig::Malformed("unparsable PKCS#7"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tail_needed_reads_only_the_signature() {
        let mut t = vec![0u8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0];
        t.extend_from_slice(MARKER);
        assert_eq!(tail_needed(&t), TRAILER + 256);
        t[8] = 0xff;
        assert_eq!(tail_needed(&t), TRAILER + MAX_SIG);
        assert_eq!(tail_needed(b"short"), 5);
    }

    #[test]
    fn unsigned_and_hidden() {
        assert_eq!(inspect(b"a.ko", b"\x7fELF..."), ModuleSig::Unsigned);
        assert_eq!(inspect(b"a.ko.xz", b"\xfd7zXZ"), ModuleSig::Hidden("xz"));
        assert!(is_module_name(b"a.ko.zst"));
        assert!(!is_module_name(b"a.so"));
    }

    #[test]
    fn marker_without_header_is_malformed() {
        assert!(matches!(inspect(b"a.ko", MARKER), ModuleSig::Malformed(_)));
        let mut t = vec![0u8; 4];
        t.extend_from_slice(&[0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 9]);
        t.extend_from_slice(MARKER);
        assert!(matches!(inspect(b"a.ko", &t), ModuleSig::Malformed(_)));
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..512), marker: bool) {
            let mut d = data;
            if marker {
                d.extend_from_slice(MARKER);
            }
            let _ = inspect(b"m.ko", &d);
            let _ = tail_needed(d.get(d.len().saturating_sub(TRAILER)..).unwrap_or_default());
            for n in 0..d.len().min(64) {
                let _ = inspect(b"m.ko", &d[n..]);
            }
        }
    }
}
