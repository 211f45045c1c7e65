//! A minimal, bounded DER reader: enough to walk PKCS#7/CMS SignedData
//! (Authenticode, kernel module signatures, catalogs) without trusting a
//! single length. Every accessor returns `None` on malformed input.

/// One TLV: the identifier octet, the contents, and the whole encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tlv<'a> {
    pub tag: u8,
    pub body: &'a [u8],
    pub raw: &'a [u8],
}

pub const SEQUENCE: u8 = 0x30;
pub const SET: u8 = 0x31;
pub const OID: u8 = 0x06;
pub const OCTET_STRING: u8 = 0x04;
pub const INTEGER: u8 = 0x02;

/// Reads one TLV from the front of `input`; returns it and the rest.
/// Only definite lengths (DER), at most 4 length octets; high tag numbers
/// are not used by the structures read here and are rejected.
pub fn read(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let tag = *input.first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let first = *input.get(1)?;
    let (len, hdr) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *input.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = hdr.checked_add(len)?;
    let body = input.get(hdr..end)?;
    let raw = input.get(..end)?;
    let rest = input.get(end..)?;
    Some((Tlv { tag, body, raw }, rest))
}

/// The TLVs inside a constructed value, in order (stops at the first
/// malformed one).
pub fn children(body: &[u8]) -> Vec<Tlv<'_>> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        match read(rest) {
            Some((t, r)) => {
                out.push(t);
                rest = r;
            }
            None => break,
        }
        if out.len() > 4096 {
            break;
        }
    }
    out
}

/// The TLVs inside a constructed value when all of it parses, at most
/// `max` of them; `None` otherwise. For values where a malformed tail must
/// not hide anything (extensions, signed attributes), unlike [`children`].
pub fn all_children(body: &[u8], max: usize) -> Option<Vec<Tlv<'_>>> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        if out.len() >= max {
            return None;
        }
        let (t, r) = read(rest)?;
        out.push(t);
        rest = r;
    }
    Some(out)
}

/// Reads one TLV that must carry `tag`.
pub fn expect(input: &[u8], tag: u8) -> Option<(Tlv<'_>, &[u8])> {
    let (t, rest) = read(input)?;
    (t.tag == tag).then_some((t, rest))
}

/// Dotted form of an OID body, for messages and matching.
pub fn oid_string(body: &[u8]) -> Option<String> {
    let first = *body.first()?;
    let mut parts = vec![(first / 40) as u64, (first % 40) as u64];
    let mut v: u64 = 0;
    for &b in body.get(1..)? {
        v = v.checked_mul(128)? | (b & 0x7f) as u64;
        if b & 0x80 == 0 {
            parts.push(v);
            v = 0;
        }
    }
    Some(
        parts
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("."),
    )
}

/// OIDs of digest algorithms, by name.
pub fn digest_name(oid: &str) -> &'static str {
    match oid {
        "1.3.14.3.2.26" => "sha1",
        "2.16.840.1.101.3.4.2.1" => "sha256",
        "2.16.840.1.101.3.4.2.2" => "sha384",
        "2.16.840.1.101.3.4.2.3" => "sha512",
        "2.16.840.1.101.3.4.2.4" => "sha224",
        "1.2.840.113549.2.5" => "md5",
        _ => "unknown",
    }
}

/// The parts of a PKCS#7/CMS `ContentInfo` holding `SignedData` that
/// libwarden reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedData<'a> {
    /// OID of the encapsulated content type.
    pub content_type: String,
    /// The encapsulated content (inside its `[0] EXPLICIT`), if present.
    pub content: Option<Tlv<'a>>,
    /// DER of each certificate in `certificates`.
    pub certificates: Vec<&'a [u8]>,
    pub signers: Vec<SignerInfo<'a>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignerInfo<'a> {
    /// Issuer name DER (issuerAndSerialNumber), if that form is used.
    pub issuer: Option<&'a [u8]>,
    /// Serial number bytes (issuerAndSerialNumber) or the subject key
    /// identifier (`[0]` form).
    pub key_id: &'a [u8],
    pub by_ski: bool,
    pub digest_alg: String,
    pub signed_attrs: Option<Tlv<'a>>,
    pub signature_alg: String,
    pub signature: &'a [u8],
}

/// Parses a ContentInfo with SignedData (OID 1.2.840.113549.1.7.2).
pub fn signed_data(input: &[u8]) -> Option<SignedData<'_>> {
    let (ci, _) = expect(input, SEQUENCE)?;
    let (oid, rest) = expect(ci.body, OID)?;
    if oid_string(oid.body)? != "1.2.840.113549.1.7.2" {
        return None;
    }
    let (explicit, _) = expect(rest, 0xa0)?;
    let (sd, _) = expect(explicit.body, SEQUENCE)?;
    let (_version, rest) = expect(sd.body, INTEGER)?;
    let (_digest_algs, rest) = expect(rest, SET)?;
    let (eci, mut rest) = expect(rest, SEQUENCE)?;
    let (ct, eci_rest) = expect(eci.body, OID)?;
    let content = match read(eci_rest) {
        Some((t, _)) if t.tag == 0xa0 => read(t.body).map(|(c, _)| c),
        _ => None,
    };
    let mut certificates = Vec::new();
    if let Some((t, r)) = read(rest) {
        if t.tag == 0xa0 {
            certificates = children(t.body).iter().map(|c| c.raw).collect();
            rest = r;
        }
    }
    if let Some((t, r)) = read(rest) {
        if t.tag == 0xa1 {
            rest = r;
        }
    }
    let (sis, _) = expect(rest, SET)?;
    let signers = children(sis.body)
        .iter()
        .filter_map(|s| signer_info(s.body))
        .collect();
    Some(SignedData {
        content_type: oid_string(ct.body)?,
        content,
        certificates,
        signers,
    })
}

fn signer_info(body: &[u8]) -> Option<SignerInfo<'_>> {
    let (_version, rest) = expect(body, INTEGER)?;
    let (sid, rest) = read(rest)?;
    let (issuer, key_id, by_ski) = match sid.tag {
        SEQUENCE => {
            let (issuer, r) = expect(sid.body, SEQUENCE)?;
            let (serial, _) = expect(r, INTEGER)?;
            (Some(issuer.raw), serial.body, false)
        }
        0x80 => (None, sid.body, true),
        _ => return None,
    };
    let (dalg, mut rest) = expect(rest, SEQUENCE)?;
    let (doid, _) = expect(dalg.body, OID)?;
    let mut signed_attrs = None;
    if let Some((t, r)) = read(rest) {
        if t.tag == 0xa0 {
            signed_attrs = Some(t);
            rest = r;
        }
    }
    let (salg, rest) = expect(rest, SEQUENCE)?;
    let (soid, _) = expect(salg.body, OID)?;
    let (sig, _) = expect(rest, OCTET_STRING)?;
    Some(SignerInfo {
        issuer,
        key_id,
        by_ski,
        digest_alg: oid_string(doid.body)?,
        signed_attrs,
        signature_alg: oid_string(soid.body)?,
        signature: sig.body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_short_and_long_lengths() {
        let (t, rest) = read(&[0x04, 0x02, 1, 2, 9]).unwrap();
        assert_eq!((t.tag, t.body, rest), (4, &[1u8, 2][..], &[9u8][..]));
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend(std::iter::repeat_n(7, 0x80));
        assert_eq!(read(&long).unwrap().0.body.len(), 0x80);
        assert!(read(&[0x04, 0x85, 1, 1, 1, 1, 1]).is_none());
        assert!(read(&[0x04, 0x05, 1]).is_none());
        assert_eq!(all_children(&[4, 1, 0, 4, 0], 2).map(|v| v.len()), Some(2));
        assert_eq!(all_children(&[4, 1, 0, 4, 0], 1), None);
        assert_eq!(all_children(&[4, 1, 0, 4], 8), None);
        assert_eq!(
            oid_string(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02]).unwrap(),
            "1.2.840.113549.1.7.2"
        );
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let _ = read(&data);
            let _ = children(&data);
            let _ = all_children(&data, 64);
            let _ = signed_data(&data);
            let _ = oid_string(&data);
        }
    }
}
