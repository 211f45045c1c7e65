//! IMA: the `security.ima` extended attribute. A file may carry a digest
//! of its content (`IMA_XATTR_DIGEST_NG`, type 0x04, or the old SHA-1
//! `IMA_XATTR_DIGEST`, 0x01) or a signature (`EVM_IMA_XATTR_DIGSIG`, 0x03,
//! version 2). A digest is checked against the content; a signature is
//! verified (RSA PKCS#1 v1.5 over the content digest, as `evmctl` makes
//! them) against the keys of the `ima_keys` config, or reported as not
//! verified when none is configured. The xattr is read, and the content
//! digest computed, by the inspection (from the descriptor it hashes, with
//! [`ContentHasher`]); this module only parses and names.

use sha2::Digest;

/// What `security.ima` holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ima {
    /// A digest of the content with the named hash algorithm.
    Hash { algo: &'static str, digest: Vec<u8> },
    /// A v2 signature; `key_id` is the last 4 bytes of the key's SKI, hex.
    Signature {
        algo: &'static str,
        key_id: String,
        sig: Vec<u8>,
    },
    /// Present but not understood.
    Other(u8),
}

/// `hash_algo` numbers of the kernel's `hash_info.h`.
fn algo_name(n: u8) -> &'static str {
    match n {
        1 => "md5",
        2 => "sha1",
        4 => "sha256",
        5 => "sha384",
        6 => "sha512",
        7 => "sha224",
        _ => "unknown",
    }
}

/// Parses an xattr value.
pub fn parse(v: &[u8]) -> Option<Ima> {
    let t = *v.first()?;
    Some(match t {
        0x01 => Ima::Hash {
            algo: "sha1",
            digest: v.get(1..)?.to_vec(),
        },
        0x04 => Ima::Hash {
            algo: algo_name(*v.get(1)?),
            digest: v.get(2..)?.to_vec(),
        },
        0x03 if v.get(1) == Some(&2) => {
            let algo = algo_name(*v.get(2)?);
            let key_id = crate::escape::hex(v.get(3..7)?);
            let n = u16::from_be_bytes([*v.get(7)?, *v.get(8)?]) as usize;
            let sig = v.get(9..9usize.checked_add(n)?)?.to_vec();
            Ima::Signature { algo, key_id, sig }
        }
        other => Ima::Other(other),
    })
}

/// A content digest with an IMA algorithm, fed as the content is read (the
/// inspection feeds it from the same reads as BLAKE3).
#[derive(Clone)]
pub enum ContentHasher {
    Sha1(sha1::Sha1),
    Sha224(sha2::Sha224),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl ContentHasher {
    /// `None` for an algorithm libwarden does not implement.
    pub fn new(algo: &str) -> Option<ContentHasher> {
        Some(match algo {
            "sha1" => ContentHasher::Sha1(sha1::Sha1::new()),
            "sha224" => ContentHasher::Sha224(sha2::Sha224::new()),
            "sha256" => ContentHasher::Sha256(sha2::Sha256::new()),
            "sha384" => ContentHasher::Sha384(sha2::Sha384::new()),
            "sha512" => ContentHasher::Sha512(sha2::Sha512::new()),
            _ => return None,
        })
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            ContentHasher::Sha1(d) => d.update(data),
            ContentHasher::Sha224(d) => d.update(data),
            ContentHasher::Sha256(d) => d.update(data),
            ContentHasher::Sha384(d) => d.update(data),
            ContentHasher::Sha512(d) => d.update(data),
        }
    }

    pub fn finish(self) -> Vec<u8> {
        match self {
            ContentHasher::Sha1(d) => d.finalize().to_vec(),
            ContentHasher::Sha224(d) => d.finalize().to_vec(),
            ContentHasher::Sha256(d) => d.finalize().to_vec(),
            ContentHasher::Sha384(d) => d.finalize().to_vec(),
            ContentHasher::Sha512(d) => d.finalize().to_vec(),
        }
    }
}

/// The algorithm of the content digest an xattr value is checked against:
/// that of its hash, or the one its signature was made over.
pub fn content_algo(xattr: &[u8]) -> Option<&'static str> {
    match parse(xattr)? {
        Ima::Hash { algo, .. } | Ima::Signature { algo, .. } => Some(algo),
        Ima::Other(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn kinds() {
        assert_eq!(
            parse(&[4, 4, 1, 2]),
            Some(Ima::Hash {
                algo: "sha256",
                digest: vec![1, 2]
            })
        );
        assert_eq!(
            parse(&[3, 2, 4, 0xde, 0xad, 0xbe, 0xef, 0, 1, 9]),
            Some(Ima::Signature {
                algo: "sha256",
                key_id: "deadbeef".into(),
                sig: vec![9],
            })
        );
        assert_eq!(parse(&[]), None);
    }

    #[test]
    fn content_digests_match_the_one_shot_digests() {
        let data = b"abc";
        let mut h = ContentHasher::new("sha256").unwrap();
        h.update(&data[..1]);
        h.update(&data[1..]);
        assert_eq!(h.finish(), sha2::Sha256::digest(data).to_vec());
        let mut h = ContentHasher::new("sha1").unwrap();
        h.update(data);
        assert_eq!(h.finish(), sha1::Sha1::digest(data).to_vec());
        assert!(ContentHasher::new("md5").is_none());
        assert_eq!(content_algo(&[4, 6, 0]), Some("sha512"));
        assert_eq!(content_algo(&[9]), None);
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse(&data);
        }
    }
}
