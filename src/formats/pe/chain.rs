//! What a certificate chain must satisfy before its signer may sign code,
//! checked the way Windows checks a code-signing chain: every certificate
//! that issued another is a CA (basicConstraints cA=TRUE; a configured
//! root may lack the extension, as v1 roots do) whose pathLenConstraint
//! the chain respects and whose keyUsage (when present) allows
//! keyCertSign; the signer's keyUsage (when present) allows
//! digitalSignature and its extendedKeyUsage (when present) allows code
//! signing; an extendedKeyUsage on an issuer constrains everything below
//! it (as Windows treats it); an unknown critical extension anywhere
//! rejects the chain (RFC 5280 §4.2: a certificate with a critical
//! extension the verifier does not process must be refused).
//!
//! The extension envelope (OID, critical flag, value) is walked with the
//! bounded reader in `formats::der`, so the certificate's signed bytes stay
//! exactly as they were read; the values that carry meaning here
//! (basicConstraints, keyUsage, extendedKeyUsage) are decoded with the
//! RustCrypto `x509-cert` types, strict DER.

use x509_cert::der::Decode;
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage};

use super::{describe_name, Cert};
use crate::formats::der;

/// id-kp-codeSigning.
pub const CODE_SIGNING: &str = "1.3.6.1.5.5.7.3.3";
/// Windows Hardware Driver Verification (WHQL-signed catalogs).
const WHQL: &str = "1.3.6.1.4.1.311.10.3.5";
/// Windows System Component Verification (the OS's own catalogs).
const SYSTEM_COMPONENT: &str = "1.3.6.1.4.1.311.10.3.6";

const BASIC_CONSTRAINTS: &str = "2.5.29.19";
const KEY_USAGE: &str = "2.5.29.15";
const EXT_KEY_USAGE: &str = "2.5.29.37";

/// Extensions that are understood well enough to be critical: the three
/// checked here, and identifiers that constrain nothing (subject and
/// authority key identifiers, alternative names, CRL distribution points,
/// authority information access).
const UNDERSTOOD: [&str; 9] = [
    BASIC_CONSTRAINTS,
    KEY_USAGE,
    EXT_KEY_USAGE,
    "2.5.29.14",
    "2.5.29.35",
    "2.5.29.17",
    "2.5.29.18",
    "2.5.29.31",
    "1.3.6.1.5.5.7.1.1",
];

/// More extensions than any real certificate carries.
const MAX_EXTENSIONS: usize = 64;
/// More extended key usages than any real certificate carries.
const MAX_EKUS: usize = 64;

/// What the signature is for: an image's embedded signature needs the
/// code-signing usage; a security catalog may also be signed for the
/// Windows driver or system-component usages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Code,
    Catalog,
}

impl Purpose {
    fn allowed(self, eku: &[String]) -> bool {
        eku.iter().any(|u| match self {
            Purpose::Code => u == CODE_SIGNING,
            Purpose::Catalog => [CODE_SIGNING, WHQL, SYSTEM_COMPONENT].contains(&u.as_str()),
        })
    }

    fn describe(self) -> &'static str {
        match self {
            Purpose::Code => "code signing (1.3.6.1.5.5.7.3.3)",
            Purpose::Catalog => "code or catalog signing",
        }
    }
}

/// The extensions of one certificate that decide what it may do.
#[derive(Clone, Debug, Default)]
pub(super) struct Constraints {
    basic: Option<BasicConstraints>,
    key_usage: Option<KeyUsage>,
    eku: Option<Vec<String>>,
    /// The first critical extension not understood.
    unknown_critical: Option<String>,
}

/// Reads the constraints out of the contents of a certificate's
/// `[3] Extensions` (`None`: a certificate without extensions). An error
/// says what is malformed; such a certificate cannot be in a trusted chain.
pub(super) fn constraints(exts: Option<&[u8]>) -> Result<Constraints, String> {
    let mut c = Constraints::default();
    let Some(exts) = exts else {
        return Ok(c);
    };
    let (seq, _) = der::expect(exts, der::SEQUENCE).ok_or("extensions do not parse")?;
    let list = der::all_children(seq.body, MAX_EXTENSIONS).ok_or("extensions do not parse")?;
    for e in list {
        let (id, critical, value) = extension(&e).ok_or("an extension does not parse")?;
        let dup = || format!("extension {id} appears twice");
        match id.as_str() {
            BASIC_CONSTRAINTS => {
                let v = BasicConstraints::from_der(value)
                    .map_err(|_| "basicConstraints does not parse".to_string())?;
                if c.basic.replace(v).is_some() {
                    return Err(dup());
                }
            }
            KEY_USAGE => {
                let v =
                    KeyUsage::from_der(value).map_err(|_| "keyUsage does not parse".to_string())?;
                if c.key_usage.replace(v).is_some() {
                    return Err(dup());
                }
            }
            EXT_KEY_USAGE => {
                // Counted before decoding: a SEQUENCE OF is decoded in
                // one pass, but nothing needs more than a handful.
                let n = der::expect(value, der::SEQUENCE)
                    .and_then(|(s, _)| der::all_children(s.body, MAX_EKUS));
                let v = n
                    .and_then(|_| ExtendedKeyUsage::from_der(value).ok())
                    .ok_or("extendedKeyUsage does not parse")?;
                let ids = v.0.iter().map(|o| o.to_string()).collect();
                if c.eku.replace(ids).is_some() {
                    return Err(dup());
                }
            }
            other if critical && !UNDERSTOOD.contains(&other) => {
                c.unknown_critical.get_or_insert(id);
            }
            _ => {}
        }
    }
    Ok(c)
}

/// (OID, critical, extnValue contents) of one `Extension`.
fn extension<'a>(e: &der::Tlv<'a>) -> Option<(String, bool, &'a [u8])> {
    if e.tag != der::SEQUENCE {
        return None;
    }
    let (oid, mut rest) = der::expect(e.body, der::OID)?;
    let mut critical = false;
    if let Some((t, r)) = der::read(rest) {
        if t.tag == 0x01 {
            // Any non-zero octet is TRUE (BER); DER says 0xff, but a
            // lenient read can only make the check stricter here.
            critical = t.body.iter().any(|&b| b != 0);
            rest = r;
        }
    }
    let (value, rest) = der::expect(rest, der::OCTET_STRING)?;
    if !rest.is_empty() {
        return None;
    }
    Some((der::oid_string(oid.body)?, critical, value.body))
}

/// Checks `path` (the signer first, the configured root it chains to last;
/// one element when the signer is itself a configured root) for `purpose`.
/// The error is one sentence naming the certificate and the rule.
pub(super) fn check(path: &[&Cert], purpose: Purpose) -> Result<(), String> {
    for c in path {
        let name = describe_name(c.subject);
        let k = c
            .constraints
            .as_ref()
            .map_err(|e| format!("certificate {name}: {e}"))?;
        if let Some(id) = &k.unknown_critical {
            return Err(format!(
                "certificate {name} has a critical extension {id} that is not supported"
            ));
        }
    }
    let Some((leaf, issuers)) = path.split_first() else {
        return Err("empty certificate chain".into());
    };
    let leaf_name = describe_name(leaf.subject);
    if let Ok(k) = &leaf.constraints {
        if k.key_usage.is_some_and(|u| !u.digital_signature()) {
            return Err(format!(
                "signer {leaf_name}'s keyUsage does not allow digitalSignature"
            ));
        }
        if let Some(eku) = k.eku.as_ref().filter(|e| !purpose.allowed(e)) {
            return Err(format!(
                "signer {leaf_name}'s extendedKeyUsage ({}) does not allow {}",
                list(eku),
                purpose.describe()
            ));
        }
    }
    let last = issuers.len();
    let mut child = leaf_name;
    for (i, c) in issuers.iter().enumerate() {
        let name = describe_name(c.subject);
        let is_root = i + 1 == last;
        let Ok(k) = &c.constraints else {
            continue; // refused above
        };
        match &k.basic {
            None if !is_root => {
                return Err(format!(
                    "{name} issued {child} but is not a CA (no basicConstraints)"
                ));
            }
            Some(b) if !b.ca => {
                return Err(format!(
                    "{name} issued {child} but is not a CA (basicConstraints cA is FALSE)"
                ));
            }
            Some(BasicConstraints {
                path_len_constraint: Some(n),
                ..
            }) if usize::from(*n) < i => {
                return Err(format!(
                    "{name} allows {n} intermediate CA(s) below it (pathLenConstraint) \
                     but the chain has {i}"
                ));
            }
            _ => {}
        }
        if k.key_usage.is_some_and(|u| !u.key_cert_sign()) {
            return Err(format!(
                "{name} issued {child} but its keyUsage does not allow keyCertSign"
            ));
        }
        if let Some(eku) = k.eku.as_ref().filter(|e| !purpose.allowed(e)) {
            return Err(format!(
                "{name}'s extendedKeyUsage ({}) does not allow {}, and it constrains what it issues",
                list(eku),
                purpose.describe()
            ));
        }
        child = name;
    }
    Ok(())
}

fn list(eku: &[String]) -> String {
    if eku.is_empty() {
        return "empty".into();
    }
    eku.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// DER of an Extension: OID (dotted, first two arcs 1.3 or 2.5 only),
    /// critical, value.
    fn ext(oid: &[u8], critical: bool, value: &[u8]) -> Vec<u8> {
        let mut body = vec![0x06, oid.len() as u8];
        body.extend_from_slice(oid);
        if critical {
            body.extend_from_slice(&[0x01, 0x01, 0xff]);
        }
        body.extend_from_slice(&[0x04, value.len() as u8]);
        body.extend_from_slice(value);
        let mut e = vec![0x30, body.len() as u8];
        e.extend(body);
        e
    }

    fn exts(list: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = list.concat();
        let mut v = vec![0x30, body.len() as u8];
        v.extend(body);
        v
    }

    const BC_OID: &[u8] = &[0x55, 0x1d, 0x13];
    const KU_OID: &[u8] = &[0x55, 0x1d, 0x0f];
    const NAME_CONSTRAINTS_OID: &[u8] = &[0x55, 0x1d, 0x1e];

    #[test]
    fn reads_basic_constraints_and_key_usage() {
        // cA TRUE, pathLen 0; keyUsage keyCertSign (bit 5).
        let e = exts(&[
            ext(
                BC_OID,
                true,
                &[0x30, 0x06, 0x01, 0x01, 0xff, 0x02, 0x01, 0x00],
            ),
            ext(KU_OID, true, &[0x03, 0x02, 0x02, 0x04]),
        ]);
        let c = constraints(Some(&e)).unwrap();
        assert_eq!(
            c.basic,
            Some(BasicConstraints {
                ca: true,
                path_len_constraint: Some(0)
            })
        );
        let ku = c.key_usage.unwrap();
        assert!(ku.key_cert_sign() && !ku.digital_signature());
        assert!(c.unknown_critical.is_none());
    }

    #[test]
    fn unknown_critical_extensions_are_kept_and_duplicates_refused() {
        let e = exts(&[ext(NAME_CONSTRAINTS_OID, true, &[0x30, 0x00])]);
        assert_eq!(
            constraints(Some(&e)).unwrap().unknown_critical.as_deref(),
            Some("2.5.29.30")
        );
        let e = exts(&[ext(NAME_CONSTRAINTS_OID, false, &[0x30, 0x00])]);
        assert!(constraints(Some(&e)).unwrap().unknown_critical.is_none());
        let bc = ext(BC_OID, false, &[0x30, 0x00]);
        let e = exts(&[bc.clone(), bc]);
        assert!(constraints(Some(&e)).unwrap_err().contains("twice"));
        // A malformed tail cannot hide an extension.
        let mut e = exts(&[ext(BC_OID, false, &[0x30, 0x00])]);
        e[1] += 1;
        e.push(0x30);
        assert!(constraints(Some(&e)).is_err());
    }

    #[test]
    fn purposes() {
        let code = vec![CODE_SIGNING.to_string()];
        let tls = vec!["1.3.6.1.5.5.7.3.1".to_string()];
        let whql = vec![WHQL.to_string()];
        assert!(Purpose::Code.allowed(&code) && Purpose::Catalog.allowed(&code));
        assert!(!Purpose::Code.allowed(&tls) && !Purpose::Catalog.allowed(&tls));
        assert!(!Purpose::Code.allowed(&whql) && Purpose::Catalog.allowed(&whql));
        assert!(!Purpose::Code.allowed(&[]));
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = constraints(Some(&data));
            let _ = BasicConstraints::from_der(&data);
            let _ = KeyUsage::from_der(&data);
            let _ = ExtendedKeyUsage::from_der(&data);
        }
    }
}
