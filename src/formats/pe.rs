//! Authenticode for PE images, offline: parse the PE headers (bounded),
//! compute the Authenticode digest (the file minus the checksum field, the
//! certificate-table directory entry and the certificate table), take the
//! PKCS#7 SignedData out of the first `WIN_CERTIFICATE`, compare its
//! `SpcIndirectDataContent` digest, verify the signer's RSA signature over
//! the signed attributes and the chain up to a root of the configured PEM
//! bundle. Security catalogs (`CatRoot/**/*.cat`) are read the same way:
//! a verified catalog's member digests make a DLL "catalog-signed".
//!
//! The chain is checked the way Windows checks one for code signing
//! (`chain` module below): every issuing certificate must be a CA
//! (basicConstraints cA, pathLenConstraint), the signer's keyUsage must
//! allow digitalSignature and its extendedKeyUsage code signing, an
//! extendedKeyUsage on an issuer constrains what it issues, and an
//! unknown critical extension anywhere in the chain rejects it. The
//! signed attributes' contentType must name the signed content.
//!
//! Limits, said plainly: RSA (PKCS#1 v1.5) signatures only (ECDSA-signed
//! images are reported untrusted with that reason); certificate validity
//! periods and revocation are not checked (an offline image has no
//! trustworthy "now"); name and policy constraints are not implemented (a
//! chain marking them critical is rejected); counter-signatures
//! (timestamps) are ignored.

use std::collections::HashSet;

use sha2::Digest;

use super::der::{self, Tlv};

pub mod chain;

pub use chain::Purpose;

/// The eContentType (and signed contentType attribute) of an Authenticode
/// signature: SPC_INDIRECT_DATA.
const SPC_INDIRECT_DATA: &str = "1.3.6.1.4.1.311.2.1.4";
/// The eContentType of a security catalog: a certificate trust list.
const CTL: &str = "1.3.6.1.4.1.311.10.1";

/// Names the rules a verdict was judged under: part of the trust
/// fingerprint, so a verdict cached in a baseline by a build with other
/// rules (before the chain checks, say) is judged again, not reused.
const RULES: &[u8] = b"authenticode rules 2: chain constraints, contentType";

/// What an image's signature says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Valid signature chaining to a configured root.
    Signed {
        signer: String,
    },
    /// No embedded signature, but the digest is in a verified catalog.
    Catalog {
        catalog: String,
    },
    Unsigned,
    Unreadable,
    /// The headers do not parse as a PE image: there is no signature to
    /// check (the loader would refuse it too).
    NotPe,
    /// The image or its signature blob cannot be parsed.
    Malformed(&'static str),
    /// The signed digest is not the image's: modified after signing.
    DigestMismatch,
    /// The digest matches but the signature over it does not verify.
    BadSignature(&'static str),
    /// Valid signature whose signer does not chain to a trusted root.
    Untrusted {
        signer: String,
        why: String,
    },
}

impl Verdict {
    /// A compact encoding for the verdict cache; `None` for verdicts that
    /// are not cached (rare failures, re-examined every time).
    pub fn encode(&self) -> Option<Vec<u8>> {
        let (tag, text) = match self {
            Verdict::Signed { signer } => (1, signer.clone()),
            Verdict::Catalog { catalog } => (2, catalog.clone()),
            Verdict::Unsigned => (3, String::new()),
            Verdict::NotPe => (4, String::new()),
            Verdict::DigestMismatch => (5, String::new()),
            Verdict::Untrusted { signer, why } => (6, format!("{signer}\0{why}")),
            _ => return None,
        };
        let mut v = vec![tag];
        v.extend_from_slice(text.as_bytes());
        Some(v)
    }

    pub fn decode(v: &[u8]) -> Option<Verdict> {
        let text = std::str::from_utf8(v.get(1..)?).ok()?.to_string();
        Some(match v.first()? {
            1 => Verdict::Signed { signer: text },
            2 => Verdict::Catalog { catalog: text },
            3 => Verdict::Unsigned,
            4 => Verdict::NotPe,
            5 => Verdict::DigestMismatch,
            6 => {
                let (signer, why) = text.split_once('\0')?;
                Verdict::Untrusted {
                    signer: signer.to_string(),
                    why: why.to_string(),
                }
            }
            _ => return None,
        })
    }
}

/// The offsets the Authenticode digest skips.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub checksum_off: usize,
    pub certdir_off: usize,
    /// (file offset, size) of the certificate table; (0, 0) when none.
    pub cert_table: (usize, usize),
}

/// Parses the headers Authenticode needs. `None` for anything that is not a
/// well-formed PE image.
pub fn layout(b: &[u8]) -> Option<Layout> {
    if b.get(..2)? != b"MZ" {
        return None;
    }
    let pe = u32::from_le_bytes(b.get(0x3c..0x40)?.try_into().ok()?) as usize;
    if b.get(pe..pe.checked_add(4)?)? != b"PE\0\0" {
        return None;
    }
    let opt = pe.checked_add(24)?;
    let magic = u16::from_le_bytes(b.get(opt..opt + 2)?.try_into().ok()?);
    let (nrva_off, dirs_off) = match magic {
        0x10b => (92, 96),
        0x20b => (108, 112),
        _ => return None,
    };
    let nrva = u32::from_le_bytes(b.get(opt + nrva_off..opt + nrva_off + 4)?.try_into().ok()?);
    let checksum_off = opt + 64;
    let certdir_off = opt + dirs_off + 4 * 8;
    if nrva < 5 || b.len() < certdir_off + 8 {
        return None;
    }
    let off = u32::from_le_bytes(b.get(certdir_off..certdir_off + 4)?.try_into().ok()?) as usize;
    let size =
        u32::from_le_bytes(b.get(certdir_off + 4..certdir_off + 8)?.try_into().ok()?) as usize;
    let cert_table = if off == 0 || size == 0 {
        (0, 0)
    } else {
        if off < certdir_off + 8 || off.checked_add(size)? > b.len() {
            return None;
        }
        (off, size)
    };
    Some(Layout {
        checksum_off,
        certdir_off,
        cert_table,
    })
}

/// How many leading bytes [`verdict_from_headers`] is given: the headers
/// [`layout`] reads sit in the first few KiB of any image a linker writes.
pub const HEADERS_PREFIX: usize = 64 << 10;

/// The verdict on an image from its first bytes, when they settle it: with
/// no certificate table and no catalogs to look the image up in, [`verify`]
/// of the whole image reads nothing but these headers and says `Unsigned`,
/// so this says the same without the rest of the file. `None`: the whole
/// image is needed (a signature, catalogs, or headers not in `prefix`).
pub fn verdict_from_headers(prefix: &[u8], trust: Option<&TrustStore>) -> Option<Verdict> {
    if trust.is_some_and(|t| !t.catalog.is_empty()) {
        return None;
    }
    let l = layout(prefix)?;
    (l.cert_table.1 == 0).then_some(Verdict::Unsigned)
}

/// The Authenticode digest with `algo` ("sha1" or "sha256").
pub fn authenticode_digest(b: &[u8], l: &Layout, algo: &str) -> Option<Vec<u8>> {
    let end = if l.cert_table.1 > 0 {
        l.cert_table.0
    } else {
        b.len()
    };
    let parts = [
        b.get(..l.checksum_off)?,
        b.get(l.checksum_off + 4..l.certdir_off)?,
        b.get(l.certdir_off + 8..end)?,
    ];
    fn run<D: Digest>(mut d: D, parts: &[&[u8]]) -> Vec<u8> {
        for p in parts {
            d.update(p);
        }
        d.finalize().to_vec()
    }
    Some(match algo {
        "sha1" => run(sha1::Sha1::new(), &parts),
        "sha256" => run(sha2::Sha256::new(), &parts),
        "sha384" => run(sha2::Sha384::new(), &parts),
        "sha512" => run(sha2::Sha512::new(), &parts),
        _ => return None,
    })
}

/// The PKCS#7 blob of the first `WIN_CERT_TYPE_PKCS_SIGNED_DATA` entry.
pub fn pkcs7_blob<'a>(b: &'a [u8], l: &Layout) -> Option<&'a [u8]> {
    let (off, size) = l.cert_table;
    let table = b.get(off..off.checked_add(size)?)?;
    let mut pos = 0usize;
    while pos + 8 <= table.len() {
        let len = u32::from_le_bytes(table.get(pos..pos + 4)?.try_into().ok()?) as usize;
        let ctype = u16::from_le_bytes(table.get(pos + 6..pos + 8)?.try_into().ok()?);
        if len < 8 {
            return None;
        }
        if ctype == 2 {
            return table.get(pos + 8..pos.checked_add(len)?);
        }
        pos = pos.checked_add(len.checked_add(7)? & !7)?;
    }
    None
}

/// Roots trusted for Authenticode and catalogs, plus the member digests of
/// every catalog that verified against them.
#[derive(Debug, Default)]
pub struct TrustStore {
    roots: Vec<Vec<u8>>,
    catalog: std::collections::HashMap<Vec<u8>, String>,
    fp: std::sync::OnceLock<[u8; 32]>,
}

impl TrustStore {
    /// Parses a PEM bundle of CERTIFICATE blocks.
    pub fn from_pem(pem: &[u8]) -> TrustStore {
        let text = String::from_utf8_lossy(pem);
        let mut roots = Vec::new();
        let mut cur: Option<String> = None;
        for line in text.lines() {
            let line = line.trim();
            if line == "-----BEGIN CERTIFICATE-----" {
                cur = Some(String::new());
            } else if line == "-----END CERTIFICATE-----" {
                if let Some(b) = cur.take().and_then(|s| base64_decode(&s)) {
                    if Cert::parse(&b).is_some() {
                        roots.push(b);
                    }
                }
            } else if let Some(c) = cur.as_mut() {
                c.push_str(line);
            }
        }
        TrustStore {
            roots,
            ..Default::default()
        }
    }

    pub fn root_count(&self) -> usize {
        self.roots.len()
    }

    /// [`TrustStore::fingerprint`], computed once (call it only after the
    /// last catalog was added).
    pub fn fingerprint_cached(&self) -> [u8; 32] {
        *self.fp.get_or_init(|| self.fingerprint())
    }

    /// A digest of everything a verdict depends on besides the image: the
    /// roots and the catalog members. Cached verdicts are reused only
    /// under the same fingerprint.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(RULES);
        for r in &self.roots {
            h.update(&(r.len() as u64).to_le_bytes());
            h.update(r);
        }
        let mut members: Vec<_> = self.catalog.iter().collect();
        members.sort();
        for (d, name) in members {
            h.update(&(d.len() as u64).to_le_bytes());
            h.update(d);
            h.update(&(name.len() as u64).to_le_bytes());
            h.update(name.as_bytes());
        }
        *h.finalize().as_bytes()
    }

    /// Adds the members of one catalog file if its signature verifies and
    /// chains to a root. Returns how many digests it contributed.
    pub fn add_catalog(&mut self, name: &str, cat: &[u8]) -> Result<usize, String> {
        let sd = der::signed_data(cat).ok_or("not PKCS#7 SignedData")?;
        if sd.content_type != CTL {
            return Err(format!("content type {} is not a CTL", sd.content_type));
        }
        let content = sd.content.ok_or("no CTL content")?;
        let signer = verify_signed_data(&sd, &content, self, Purpose::Catalog)
            .map_err(|v| format!("{v:?}"))?;
        let ctl = if content.tag == der::OCTET_STRING {
            content.body
        } else {
            content.raw
        };
        let mut digests = Vec::new();
        collect_digests(ctl, 0, &mut digests);
        let n = digests.len();
        for d in digests {
            self.catalog
                .insert(d.to_vec(), format!("{name} (signed by {signer})"));
        }
        Ok(n)
    }
}

/// Every DigestInfo-shaped value (`SEQ { SEQ { OID, ..}, OCTET STRING }`)
/// below `b`: the member hashes of a CTL sit in such structures.
fn collect_digests<'a>(b: &'a [u8], depth: usize, out: &mut Vec<&'a [u8]>) {
    if depth > 16 || out.len() > 1 << 20 {
        return;
    }
    for t in der::children(b) {
        if t.tag & 0x20 == 0 {
            continue;
        }
        let kids = der::children(t.body);
        if t.tag == der::SEQUENCE && kids.len() == 2 {
            if let (Some(a), Some(d)) = (kids.first(), kids.get(1)) {
                let is_alg = a.tag == der::SEQUENCE
                    && der::children(a.body).first().map(|o| o.tag) == Some(der::OID);
                if is_alg && d.tag == der::OCTET_STRING && matches!(d.body.len(), 20 | 32 | 48 | 64)
                {
                    out.push(d.body);
                    continue;
                }
            }
        }
        collect_digests(t.body, depth + 1, out);
    }
}

/// Judges one PE image.
pub fn verify(b: &[u8], trust: Option<&TrustStore>) -> Verdict {
    let Some(l) = layout(b) else {
        return Verdict::NotPe;
    };
    if l.cert_table.1 == 0 {
        if let Some(t) = trust.filter(|t| !t.catalog.is_empty()) {
            for algo in ["sha256", "sha1"] {
                if let Some(name) = authenticode_digest(b, &l, algo)
                    .as_ref()
                    .and_then(|d| t.catalog.get(d))
                {
                    return Verdict::Catalog {
                        catalog: name.clone(),
                    };
                }
            }
        }
        return Verdict::Unsigned;
    }
    let Some(blob) = pkcs7_blob(b, &l) else {
        return Verdict::Malformed("certificate table without a PKCS#7 entry");
    };
    let Some(sd) = der::signed_data(blob) else {
        return Verdict::Malformed("unparsable PKCS#7");
    };
    if sd.content_type != SPC_INDIRECT_DATA {
        return Verdict::Malformed("PKCS#7 content is not SpcIndirectDataContent");
    }
    let Some(content) = sd.content else {
        return Verdict::Malformed("no SpcIndirectDataContent");
    };
    let Some((algo, signed_digest)) = spc_digest(&content) else {
        return Verdict::Malformed("unparsable SpcIndirectDataContent");
    };
    match authenticode_digest(b, &l, der::digest_name(&algo)) {
        None => return Verdict::Malformed("unsupported digest algorithm"),
        Some(d) if d != signed_digest => return Verdict::DigestMismatch,
        Some(_) => {}
    }
    let empty = TrustStore::default();
    match verify_signed_data(&sd, &content, trust.unwrap_or(&empty), Purpose::Code) {
        Ok(signer) => Verdict::Signed { signer },
        Err(v) => v,
    }
}

/// (digest algorithm OID, digest) of an `SpcIndirectDataContent`.
fn spc_digest(content: &Tlv) -> Option<(String, Vec<u8>)> {
    let kids = der::children(content.body);
    let di = kids.get(1)?;
    let (alg, rest) = der::expect(di.body, der::SEQUENCE)?;
    let (oid, _) = der::expect(alg.body, der::OID)?;
    let (dg, _) = der::expect(rest, der::OCTET_STRING)?;
    Some((der::oid_string(oid.body)?, dg.body.to_vec()))
}

/// Verifies the first signer of `sd` over `content` and its chain for
/// `purpose`; returns the signer's subject on success.
fn verify_signed_data(
    sd: &der::SignedData,
    content: &Tlv,
    trust: &TrustStore,
    purpose: Purpose,
) -> Result<String, Verdict> {
    let si = sd
        .signers
        .first()
        .ok_or(Verdict::Malformed("no SignerInfo"))?;
    let certs: Vec<Cert> = sd
        .certificates
        .iter()
        .filter_map(|c| Cert::parse(c))
        .collect();
    let signer = certs
        .iter()
        .find(|c| {
            if si.by_ski {
                c.ski == Some(si.key_id)
            } else {
                Some(c.issuer) == si.issuer && c.serial == si.key_id
            }
        })
        .ok_or(Verdict::BadSignature(
            "signer certificate not in the signature",
        ))?;
    let halg = der::digest_name(&si.digest_alg);
    // PKCS#7 (Authenticode, catalogs) digests the content octets; CMS the
    // octets inside the eContent OCTET STRING: both are `body`.
    let content_digest =
        hash(halg, &[content.body]).ok_or(Verdict::BadSignature("unsupported digest algorithm"))?;
    let signed = match &si.signed_attrs {
        Some(attrs) => {
            let md = message_digest(attrs.body)?;
            if md != content_digest.as_slice() {
                return Err(Verdict::DigestMismatch);
            }
            check_content_type(attrs.body, &sd.content_type)?;
            let mut set = attrs.raw.to_vec();
            if let Some(first) = set.first_mut() {
                *first = der::SET;
            }
            set
        }
        None => content.body.to_vec(),
    };
    if !is_rsa(signer.spki) {
        // Not a verdict on the image: libwarden cannot check this one.
        return Err(Verdict::Untrusted {
            signer: describe_name(signer.subject),
            why: "signature algorithm not supported (RSA only): not verified".into(),
        });
    }
    if !rsa_verify(signer.spki, halg, &signed, si.signature) {
        return Err(Verdict::BadSignature("signer's signature does not verify"));
    }
    let name = describe_name(signer.subject);
    chain_to_root(signer, &certs, trust, purpose).map_err(|why| Verdict::Untrusted {
        signer: name.clone(),
        why,
    })?;
    Ok(name)
}

/// Builds the chain from `leaf` through `pool` to a configured root and
/// checks it for `purpose` ([`chain::check`]).
fn chain_to_root(
    leaf: &Cert,
    pool: &[Cert],
    trust: &TrustStore,
    purpose: Purpose,
) -> Result<(), String> {
    if trust.roots.is_empty() {
        return Err("no authenticode_roots configured".into());
    }
    let roots: Vec<Cert> = trust.roots.iter().filter_map(|r| Cert::parse(r)).collect();
    let mut path: Vec<&Cert> = vec![leaf];
    let mut cur = leaf;
    let mut seen: HashSet<&[u8]> = HashSet::new();
    for _ in 0..8 {
        if roots.iter().any(|r| r.raw == cur.raw) {
            return chain::check(&path, purpose);
        }
        if let Some(r) = roots
            .iter()
            .find(|r| r.subject == cur.issuer && cur.verified_by(r))
        {
            path.push(r);
            return chain::check(&path, purpose);
        }
        let Some(up) = pool
            .iter()
            .find(|c| c.subject == cur.issuer && c.raw != cur.raw && cur.verified_by(c))
        else {
            return Err(format!(
                "no trusted root issued {}",
                describe_name(cur.issuer)
            ));
        };
        if !seen.insert(up.raw) {
            break;
        }
        path.push(up);
        cur = up;
    }
    Err("certificate chain too long or looping".into())
}

/// More signed attributes than any signer writes (Authenticode has four
/// or five).
const MAX_SIGNED_ATTRS: usize = 64;

/// The one value of the signed attribute `oid` (`Ok(None)`: absent). The
/// attributes must all parse; an attribute given twice or with other than
/// one value is refused (RFC 5652 §5.3), so no second copy can say
/// something else.
fn signed_attr<'a>(attrs: &'a [u8], oid: &str) -> Result<Option<Tlv<'a>>, &'static str> {
    let list =
        der::all_children(attrs, MAX_SIGNED_ATTRS).ok_or("signed attributes do not parse")?;
    let mut found = None;
    for a in list {
        let parsed = der::expect(a.body, der::OID).and_then(|(o, rest)| {
            let (set, _) = der::expect(rest, der::SET)?;
            Some((der::oid_string(o.body)?, set))
        });
        let Some((id, set)) = parsed.filter(|_| a.tag == der::SEQUENCE) else {
            return Err("signed attributes do not parse");
        };
        if id != oid {
            continue;
        }
        if found.is_some() {
            return Err("a signed attribute appears twice");
        }
        match der::all_children(set.body, 2).as_deref() {
            Some([v]) => found = Some(*v),
            _ => return Err("a signed attribute has other than one value"),
        }
    }
    Ok(found)
}

/// The signed messageDigest attribute.
fn message_digest(attrs: &[u8]) -> Result<&[u8], Verdict> {
    match signed_attr(attrs, "1.2.840.113549.1.9.4").map_err(Verdict::BadSignature)? {
        Some(v) if v.tag == der::OCTET_STRING => Ok(v.body),
        Some(_) => Err(Verdict::BadSignature(
            "messageDigest is not an OCTET STRING",
        )),
        None => Err(Verdict::BadSignature("no messageDigest attribute")),
    }
}

/// The signed contentType attribute must name the signed content
/// (RFC 5652 §11.1): SPC_INDIRECT_DATA for an image, a CTL for a catalog.
/// Without it the signer's signature could be one made over a different
/// kind of content that happens to carry the same digest.
fn check_content_type(attrs: &[u8], content_type: &str) -> Result<(), Verdict> {
    let v = signed_attr(attrs, "1.2.840.113549.1.9.3")
        .map_err(Verdict::BadSignature)?
        .ok_or(Verdict::BadSignature("no signed contentType attribute"))?;
    let named = (v.tag == der::OID)
        .then(|| der::oid_string(v.body))
        .flatten();
    if named.as_deref() != Some(content_type) {
        return Err(Verdict::BadSignature(if content_type == CTL {
            "signed contentType attribute is not a certificate trust list"
        } else {
            "signed contentType attribute is not SPC_INDIRECT_DATA"
        }));
    }
    Ok(())
}

fn hash(algo: &str, parts: &[&[u8]]) -> Option<Vec<u8>> {
    fn run<D: Digest>(mut d: D, parts: &[&[u8]]) -> Vec<u8> {
        for p in parts {
            d.update(p);
        }
        d.finalize().to_vec()
    }
    Some(match algo {
        "sha1" => run(sha1::Sha1::new(), parts),
        "sha256" => run(sha2::Sha256::new(), parts),
        "sha384" => run(sha2::Sha384::new(), parts),
        "sha512" => run(sha2::Sha512::new(), parts),
        _ => return None,
    })
}

/// Whether a SubjectPublicKeyInfo holds an RSA key.
fn is_rsa(spki: &[u8]) -> bool {
    let alg_oid = der::expect(spki, der::SEQUENCE)
        .and_then(|(s, _)| der::expect(s.body, der::SEQUENCE))
        .and_then(|(a, _)| der::expect(a.body, der::OID))
        .and_then(|(o, _)| der::oid_string(o.body));
    alg_oid.as_deref() == Some("1.2.840.113549.1.1.1")
}

/// RSA PKCS#1 v1.5 verification of `sig` over `msg` hashed with `halg`.
fn rsa_verify(spki: &[u8], halg: &str, msg: &[u8], sig: &[u8]) -> bool {
    match hash(halg, &[msg]) {
        Some(h) => rsa_verify_prehashed(spki, halg, &h, sig),
        None => false,
    }
}

/// RSA PKCS#1 v1.5 verification of `sig` over an already computed digest.
pub fn rsa_verify_prehashed(spki: &[u8], halg: &str, digest: &[u8], sig: &[u8]) -> bool {
    use rsa::pkcs8::DecodePublicKey;
    let Ok(key) = rsa::RsaPublicKey::from_public_key_der(spki) else {
        return false;
    };
    let scheme = match halg {
        "sha1" => rsa::Pkcs1v15Sign::new::<sha1::Sha1>(),
        "sha256" => rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
        "sha384" => rsa::Pkcs1v15Sign::new::<sha2::Sha384>(),
        "sha512" => rsa::Pkcs1v15Sign::new::<sha2::Sha512>(),
        _ => return false,
    };
    key.verify(scheme, digest, sig).is_ok()
}

/// The public keys (SubjectPublicKeyInfo DER) in a PEM file of
/// `CERTIFICATE` and/or `PUBLIC KEY` blocks, or in a single DER
/// certificate (as IMA keys are often shipped, `x509_ima.der`).
pub fn public_keys_from_pem(pem: &[u8]) -> Vec<Vec<u8>> {
    if let Some(c) = Cert::parse(pem) {
        return vec![c.spki.to_vec()];
    }
    let text = String::from_utf8_lossy(pem);
    let mut out = Vec::new();
    let mut cur: Option<(String, String)> = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            cur = Some((label.to_string(), String::new()));
        } else if line.starts_with("-----END ") {
            if let Some((label, body)) = cur.take() {
                let Some(der) = base64_decode(&body) else {
                    continue;
                };
                match label.as_str() {
                    "CERTIFICATE" => {
                        if let Some(c) = Cert::parse(&der) {
                            out.push(c.spki.to_vec());
                        }
                    }
                    "PUBLIC KEY" => out.push(der),
                    _ => {}
                }
            }
        } else if let Some((_, body)) = cur.as_mut() {
            body.push_str(line);
        }
    }
    out
}

/// The parts of an X.509 certificate the chain check needs.
#[derive(Clone, Debug)]
struct Cert<'a> {
    raw: &'a [u8],
    tbs: &'a [u8],
    serial: &'a [u8],
    issuer: &'a [u8],
    subject: &'a [u8],
    spki: &'a [u8],
    ski: Option<&'a [u8]>,
    /// What the certificate may do, or why its extensions are unusable.
    constraints: Result<chain::Constraints, String>,
    sig_alg: String,
    sig: &'a [u8],
}

impl<'a> Cert<'a> {
    fn parse(raw: &'a [u8]) -> Option<Cert<'a>> {
        let (c, _) = der::expect(raw, der::SEQUENCE)?;
        let (tbs, rest) = der::expect(c.body, der::SEQUENCE)?;
        let (alg, rest) = der::expect(rest, der::SEQUENCE)?;
        let (aoid, _) = der::expect(alg.body, der::OID)?;
        let (bits, _) = der::expect(rest, 0x03)?;
        let mut f = der::children(tbs.body).into_iter().peekable();
        if f.peek().map(|t| t.tag) == Some(0xa0) {
            f.next();
        }
        let serial = f.next().filter(|t| t.tag == der::INTEGER)?;
        let _sigalg = f.next()?;
        let issuer = f.next().filter(|t| t.tag == der::SEQUENCE)?;
        let _validity = f.next()?;
        let subject = f.next().filter(|t| t.tag == der::SEQUENCE)?;
        let spki = f.next().filter(|t| t.tag == der::SEQUENCE)?;
        let mut ski = None;
        let mut exts = None;
        for t in f {
            if t.tag == 0xa3 {
                ski = find_ski(t.body);
                exts = Some(t.body);
            }
        }
        Some(Cert {
            raw: c.raw,
            tbs: tbs.raw,
            serial: serial.body,
            issuer: issuer.raw,
            subject: subject.raw,
            spki: spki.raw,
            ski,
            constraints: chain::constraints(exts),
            sig_alg: der::oid_string(aoid.body)?,
            sig: bits.body.get(1..)?,
        })
    }

    /// Whether `issuer`'s key signed this certificate.
    fn verified_by(&self, issuer: &Cert) -> bool {
        let halg = match self.sig_alg.as_str() {
            "1.2.840.113549.1.1.5" => "sha1",
            "1.2.840.113549.1.1.11" => "sha256",
            "1.2.840.113549.1.1.12" => "sha384",
            "1.2.840.113549.1.1.13" => "sha512",
            _ => return false,
        };
        rsa_verify(issuer.spki, halg, self.tbs, self.sig)
    }
}

/// The subjectKeyIdentifier extension (2.5.29.14) in `[3] Extensions`.
fn find_ski(exts: &[u8]) -> Option<&[u8]> {
    let (seq, _) = der::expect(exts, der::SEQUENCE)?;
    for e in der::children(seq.body) {
        let (oid, rest) = der::expect(e.body, der::OID)?;
        if der::oid_string(oid.body)? == "2.5.29.14" {
            let mut rest = rest;
            if let Some((t, r)) = der::read(rest) {
                if t.tag == 0x01 {
                    rest = r;
                }
            }
            let (wrap, _) = der::expect(rest, der::OCTET_STRING)?;
            let (id, _) = der::expect(wrap.body, der::OCTET_STRING)?;
            return Some(id.body);
        }
    }
    None
}

/// The CN of a Name (or a hex digest of it when it has none).
fn describe_name(name: &[u8]) -> String {
    if let Some((seq, _)) = der::expect(name, der::SEQUENCE) {
        for rdn in der::children(seq.body) {
            for atv in der::children(rdn.body) {
                let kids = der::children(atv.body);
                if let (Some(o), Some(v)) = (kids.first(), kids.get(1)) {
                    if der::oid_string(o.body).as_deref() == Some("2.5.4.3") {
                        return format!("CN={}", String::from_utf8_lossy(v.body));
                    }
                }
            }
        }
    }
    format!(
        "name {}",
        &crate::escape::hex(blake3::hash(name).as_bytes())[..16]
    )
}

/// Standard base64 (PEM bodies); `None` on any invalid character.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            _ => return None,
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn minimal_pe(pe32plus: bool) -> Vec<u8> {
        let mut b = vec![0u8; 0x200];
        b[..2].copy_from_slice(b"MZ");
        b[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        b[0x80..0x84].copy_from_slice(b"PE\0\0");
        let opt = 0x80 + 24;
        let (magic, nrva_off): (u16, usize) = if pe32plus { (0x20b, 108) } else { (0x10b, 92) };
        b[opt..opt + 2].copy_from_slice(&magic.to_le_bytes());
        b[opt + nrva_off..opt + nrva_off + 4].copy_from_slice(&16u32.to_le_bytes());
        b
    }

    #[test]
    fn unsigned_minimal_images() {
        for plus in [false, true] {
            let b = minimal_pe(plus);
            assert!(layout(&b).is_some());
            assert_eq!(verify(&b, None), Verdict::Unsigned);
        }
        assert_eq!(verify(b"MZ", None), Verdict::NotPe);
    }

    #[test]
    fn digest_skips_checksum() {
        let mut b = minimal_pe(true);
        let l = layout(&b).unwrap();
        let d1 = authenticode_digest(&b, &l, "sha256").unwrap();
        b[l.checksum_off] = 0xff;
        assert_eq!(authenticode_digest(&b, &l, "sha256").unwrap(), d1);
        b[l.checksum_off + 4] ^= 1;
        assert_ne!(authenticode_digest(&b, &l, "sha256").unwrap(), d1);
    }

    #[test]
    fn verdicts_round_trip() {
        for v in [
            Verdict::Signed {
                signer: "CN=a".into(),
            },
            Verdict::Unsigned,
            Verdict::Untrusted {
                signer: "CN=b".into(),
                why: "no root".into(),
            },
        ] {
            assert_eq!(Verdict::decode(&v.encode().unwrap()), Some(v));
        }
        assert_eq!(Verdict::BadSignature("x").encode(), None);
        assert_eq!(Verdict::decode(&[6, b'x']), None);
    }

    #[test]
    fn base64() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
    }

    #[test]
    fn headers_settle_only_an_unsigned_image() {
        let b = minimal_pe(true);
        assert_eq!(verdict_from_headers(&b, None), Some(Verdict::Unsigned));
        // Headers cut short: the whole image is needed.
        assert_eq!(verdict_from_headers(&b[..0x90], None), None);
        // A certificate table: the signature must be read.
        let mut signed = b.clone();
        let l = layout(&b).unwrap();
        signed[l.certdir_off..l.certdir_off + 4].copy_from_slice(&0x100u32.to_le_bytes());
        signed[l.certdir_off + 4..l.certdir_off + 8].copy_from_slice(&0x10u32.to_le_bytes());
        assert_eq!(verdict_from_headers(&signed, None), None);
        // Catalogs to look the image up in: its digest must be computed.
        let mut t = TrustStore::default();
        t.catalog.insert(vec![0; 32], "x.cat".into());
        assert_eq!(verdict_from_headers(&b, Some(&t)), None);
    }

    proptest! {
        #[test]
        fn a_verdict_from_headers_is_the_whole_images(
            plus in any::<bool>(),
            off in prop_oneof![Just(0u32), 0u32..0x400],
            size in prop_oneof![Just(0u32), 0u32..0x400],
            tail in 0usize..0x400,
            cut in 0usize..0x800,
        ) {
            let mut b = minimal_pe(plus);
            let l = layout(&b).unwrap();
            b[l.certdir_off..l.certdir_off + 4].copy_from_slice(&off.to_le_bytes());
            b[l.certdir_off + 4..l.certdir_off + 8].copy_from_slice(&size.to_le_bytes());
            b.resize(b.len() + tail, 0);
            let prefix = &b[..cut.min(b.len())];
            if let Some(v) = verdict_from_headers(prefix, None) {
                prop_assert_eq!(v, verify(&b, None));
            }
        }

        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let _ = verify(&data, None);
            let mut t = TrustStore::default();
            let _ = t.add_catalog("x", &data);
            let _ = Cert::parse(&data);
        }

        #[test]
        fn never_panics_on_mutated_pe(pos in 0usize..0x200, val: u8, cut in 0usize..0x200, plus: bool) {
            let mut b = minimal_pe(plus);
            b[pos] = val;
            b.truncate(cut.max(1));
            let _ = verify(&b, None);
        }
    }
}
