//! Portable, sorted, signable text manifests of a baseline: the golden
//! reference a fleet shares. One record per line, tab-separated, every path
//! percent-encoded so the file is plain ASCII whatever the names hold:
//!
//! ```text
//! # libwarden manifest v1
//! # baseline <id hex> generation <n> written <seconds>
//! # path type mode uid gid size class blake3 target
//! /usr/lib/libfoo.so.1<TAB>file<TAB>0644<TAB>0<TAB>0<TAB>15560<TAB>elf_dyn<TAB><hex><TAB>-
//! signature ed25519 <public key hex> <signature hex>
//! ```
//!
//! The optional last line signs every byte before it.

use std::fmt::Write as _;

use crate::baseline::store::Meta;
use crate::escape;
use crate::record::{FileClass, FileType, Record, RecordData};

pub const HEADER: &str = "# libwarden manifest v1";
const SIG_PREFIX: &str = "signature ed25519 ";

/// Renders records as a manifest body (no signature line).
pub fn render(meta: &Meta, records: &[Record]) -> String {
    let mut out = String::with_capacity(records.len() * 120);
    let _ = writeln!(out, "{HEADER}");
    let _ = writeln!(
        out,
        "# baseline {} generation {} written {}",
        escape::hex(&meta.baseline_id),
        meta.generation,
        meta.written
    );
    out.push_str("# path type mode uid gid size class blake3 target\n");
    for r in records {
        let size = if r.ftype == FileType::Dir {
            "-".to_string()
        } else {
            r.size.to_string()
        };
        let _ = writeln!(
            out,
            "{}\t{}\t{:04o}\t{}\t{}\t{}\t{}\t{}\t{}",
            pct(&r.path),
            r.ftype.name(),
            r.perm(),
            r.uid,
            r.gid,
            size,
            class_name(r.class),
            r.blake3
                .map_or_else(|| "-".to_string(), |h| escape::hex(&h)),
            r.target.as_deref().map_or_else(|| "-".to_string(), pct),
        );
    }
    out
}

/// Appends the signature line.
pub fn sign(body: &str, key: &ed25519_dalek::SigningKey) -> String {
    let (k, sig) = crate::baseline::signing::sign(key, body.as_bytes());
    format!(
        "{body}{SIG_PREFIX}{} {}\n",
        escape::hex(&k),
        escape::hex(&sig)
    )
}

/// A parsed manifest.
pub struct Manifest {
    pub records: Vec<Record>,
    /// (public key, signature) when signed.
    pub signature: Option<([u8; 32], [u8; 64])>,
    /// The bytes the signature covers.
    pub body: Vec<u8>,
}

/// Parses a manifest; the error names the line.
pub fn parse(text: &[u8]) -> Result<Manifest, String> {
    let mut body_end = text.len();
    let mut signature = None;
    let trimmed = text.strip_suffix(b"\n").unwrap_or(text);
    let last_start = trimmed
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    if let Some(rest) = trimmed[last_start..].strip_prefix(SIG_PREFIX.as_bytes()) {
        let rest = std::str::from_utf8(rest).map_err(|_| "signature line is not text")?;
        let mut it = rest.split(' ');
        let k = it
            .next()
            .and_then(escape::unhex)
            .and_then(|v| <[u8; 32]>::try_from(v).ok());
        let s = it
            .next()
            .and_then(escape::unhex)
            .and_then(|v| <[u8; 64]>::try_from(v).ok());
        match (k, s) {
            (Some(k), Some(s)) => signature = Some((k, s)),
            _ => return Err("malformed signature line".into()),
        }
        body_end = last_start;
    }
    let body = &text[..body_end];
    let mut lines = body.split(|&b| b == b'\n');
    if lines.next() != Some(HEADER.as_bytes()) {
        return Err("not a libwarden manifest (first line)".into());
    }
    let mut records = Vec::new();
    for (i, line) in lines.enumerate() {
        if line.is_empty() || line.starts_with(b"#") {
            continue;
        }
        let rec = parse_line(line).ok_or_else(|| format!("line {}: malformed record", i + 2))?;
        if records.last().is_some_and(|p: &Record| p.path >= rec.path) {
            return Err(format!("line {}: not sorted or duplicate path", i + 2));
        }
        records.push(rec);
    }
    Ok(Manifest {
        records,
        signature,
        body: body.to_vec(),
    })
}

fn parse_line(line: &[u8]) -> Option<Record> {
    let f: Vec<&[u8]> = line.split(|&b| b == b'\t').collect();
    if f.len() != 9 {
        return None;
    }
    let text = |b: &[u8]| std::str::from_utf8(b).ok().map(str::to_string);
    let ftype = type_from_name(&text(f[1])?)?;
    let perm = u32::from_str_radix(&text(f[2])?, 8).ok()?;
    let blake3 = match f[7] {
        b"-" => None,
        h => Some(escape::unhex(&text(h)?)?.try_into().ok()?),
    };
    Some(Record::from(RecordData {
        path: unpct(f[0])?,
        ftype,
        size: if f[5] == b"-" {
            0
        } else {
            text(f[5])?.parse().ok()?
        },
        mode: perm & 0o7777,
        uid: text(f[3])?.parse().ok()?,
        gid: text(f[4])?.parse().ok()?,
        dev: 0,
        inode: 0,
        nlink: 0,
        mtime: (0, 0),
        ctime: (0, 0),
        blake3,
        sha256: None,
        unhashed: None,
        target: if f[8] == b"-" {
            None
        } else {
            Some(unpct(f[8])?.into())
        },
        class: class_from_name(&text(f[6])?)?,
        facts: None,
    }))
}

/// Reduces a record to what a manifest compares: host-specific identity
/// (device, inode, links, times) and directory sizes are dropped.
pub fn portable(r: &Record) -> Record {
    let mut p = r.clone();
    p.mode &= 0o7777;
    p.dev = 0;
    p.inode = 0;
    p.nlink = 0;
    p.mtime = (0, 0);
    p.ctime = (0, 0);
    p.unhashed = None;
    // Not in a manifest: an extra digest of one side only is no change.
    p.sha256 = None;
    if p.ftype == FileType::Dir {
        p.size = 0;
    }
    p
}

fn pct(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len());
    for &c in b {
        if c <= b' ' || c >= 0x7f || c == b'%' {
            let _ = write!(s, "%{c:02X}");
        } else {
            s.push(c as char);
        }
    }
    s
}

fn unpct(b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

fn class_name(c: FileClass) -> &'static str {
    match c {
        FileClass::None => "none",
        FileClass::ElfDyn => "elf_dyn",
        FileClass::ElfExec => "elf_exec",
        FileClass::ElfOther => "elf_other",
        FileClass::PeDll => "pe_dll",
        FileClass::PeExe => "pe_exe",
        FileClass::Other => "other",
    }
}

fn class_from_name(s: &str) -> Option<FileClass> {
    FileClass::ALL.into_iter().find(|c| class_name(*c) == s)
}

fn type_from_name(s: &str) -> Option<FileType> {
    [
        FileType::File,
        FileType::Dir,
        FileType::Symlink,
        FileType::Fifo,
        FileType::Socket,
        FileType::CharDevice,
        FileType::BlockDevice,
        FileType::Unknown,
    ]
    .into_iter()
    .find(|t| t.name() == s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta {
            schema: crate::baseline::store::SCHEMA,
            generation: 2,
            baseline_id: [1; 16],
            written: 5,
            count: 0,
            digest: [0; 32],
            root: b"/".to_vec(),
            signature: None,
        }
    }

    #[test]
    fn round_trip_with_hostile_names_and_signature() {
        let mut a = crate::inspect::base_record(
            b"/lib/a\tb\n\xff%.so".to_vec(),
            &(&std::fs::metadata("/").unwrap()).into(),
        );
        a.ftype = FileType::File;
        a.blake3 = Some([7; 32]);
        a.class = FileClass::ElfDyn;
        let mut l = a.clone();
        l.path = b"/lib/z".to_vec();
        l.ftype = FileType::Symlink;
        l.blake3 = None;
        l.target = Some(b"a b".to_vec().into());
        let body = render(&meta(), &[a.clone(), l.clone()]);
        assert!(body.is_ascii());
        let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let signed = sign(&body, &key);
        let m = parse(signed.as_bytes()).unwrap();
        assert_eq!(m.records, vec![portable(&a), portable(&l)]);
        assert_eq!(m.body, body.as_bytes());
        let pk = key.verifying_key();
        assert!(crate::baseline::signing::verify(&pk, m.signature.as_ref(), &m.body).is_ok());
        let tampered = signed.replace("elf_dyn", "other");
        let m = parse(tampered.as_bytes()).unwrap();
        assert!(crate::baseline::signing::verify(&pk, m.signature.as_ref(), &m.body).is_err());
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(data: Vec<u8>) {
            let mut text = HEADER.as_bytes().to_vec();
            text.push(b'\n');
            text.extend_from_slice(&data);
            let _ = parse(&text);
            let _ = parse(&data);
        }
    }
}
