//! Alpine's installed-package database, `lib/apk/db/installed`: stanzas
//! separated by blank lines, one `K:value` per line. Read here: `P:`
//! (name), `V:` (version), `A:` (arch), `F:` (a directory, relative to
//! `/`), `R:` (a file in the last `F:`), `Z:` (the checksum of the last
//! `R:`: `Q1` + base64 of its SHA-1, or plain hex MD5 in old databases) and
//! `a:` (`uid:gid:mode` of the last `R:`). Other keys are skipped. Bounded
//! by the input: nothing is allocated beyond the lines themselves.

/// A checksum apk records for a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    Sha1([u8; 20]),
    Md5([u8; 16]),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApkFile {
    /// Absolute path.
    pub path: Vec<u8>,
    pub checksum: Option<Checksum>,
    pub mode: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApkPackage {
    pub name: String,
    pub version: String,
    pub arch: Option<String>,
    pub files: Vec<ApkFile>,
}

/// Parses the whole database. Stanzas without a name or a version are
/// dropped; a malformed line only loses itself.
pub fn parse(text: &[u8]) -> Vec<ApkPackage> {
    let mut out = Vec::new();
    let mut cur = ApkPackage::default();
    let mut dir: Vec<u8> = Vec::new();
    let flush = |cur: &mut ApkPackage, out: &mut Vec<ApkPackage>| {
        let p = std::mem::take(cur);
        if !p.name.is_empty() && !p.version.is_empty() {
            out.push(p);
        }
    };
    for line in text.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            flush(&mut cur, &mut out);
            dir.clear();
            continue;
        }
        let (Some(&key), Some(b':')) = (line.first(), line.get(1)) else {
            continue;
        };
        let value = line.get(2..).unwrap_or_default();
        let text = || String::from_utf8_lossy(value).trim().to_string();
        match key {
            b'P' => cur.name = text(),
            b'V' => cur.version = text(),
            b'A' => cur.arch = Some(text()),
            b'F' => {
                dir.clear();
                dir.push(b'/');
                dir.extend_from_slice(trim_slashes(value));
            }
            b'R' => {
                if value.is_empty() || value.contains(&b'/') {
                    continue;
                }
                let mut path = dir.clone();
                if path.is_empty() {
                    path.push(b'/');
                }
                if path.len() > 1 {
                    path.push(b'/');
                }
                path.extend_from_slice(value);
                cur.files.push(ApkFile {
                    path,
                    ..ApkFile::default()
                });
            }
            b'Z' => {
                if let Some(f) = cur.files.last_mut() {
                    f.checksum = checksum(value);
                }
            }
            b'a' => {
                if let Some(f) = cur.files.last_mut() {
                    f.mode = std::str::from_utf8(value)
                        .ok()
                        .and_then(|s| s.rsplit(':').next())
                        .and_then(|m| u32::from_str_radix(m.trim(), 8).ok());
                }
            }
            _ => {}
        }
    }
    flush(&mut cur, &mut out);
    out
}

fn trim_slashes(mut s: &[u8]) -> &[u8] {
    while let Some(r) = s.strip_prefix(b"/") {
        s = r;
    }
    while let Some(r) = s.strip_suffix(b"/") {
        s = r;
    }
    s
}

/// `Q1<base64 SHA-1>` or 32 hex digits (MD5).
pub fn checksum(v: &[u8]) -> Option<Checksum> {
    if let Some(b64) = v.strip_prefix(b"Q1") {
        let raw = base64_decode(b64)?;
        return Some(Checksum::Sha1(raw.as_slice().try_into().ok()?));
    }
    if v.len() == 32 {
        let mut out = [0u8; 16];
        for (o, pair) in out.iter_mut().zip(v.chunks_exact(2)) {
            let hi = (*pair.first()? as char).to_digit(16)?;
            let lo = (*pair.get(1)? as char).to_digit(16)?;
            *o = (hi * 16 + lo) as u8;
        }
        return Some(Checksum::Md5(out));
    }
    None
}

/// Standard base64 with padding; at most 64 bytes of output (a digest).
pub fn base64_decode(s: &[u8]) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(4) || s.len() > 88 {
        return None;
    }
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let quads = s.len() / 4;
    for (i, q) in s.chunks_exact(4).enumerate() {
        let last = i + 1 == quads;
        let pad = q.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in q.iter().take(4 - pad) {
            n = (n << 6) | val(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = n.to_be_bytes();
        out.extend_from_slice(bytes.get(1..4 - pad)?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_packages_dirs_files_and_checksums() {
        let db = b"C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\nF:lib\nR:ld-musl-x86_64.so.1\na:0:0:755\nZ:Q1+4bHbfv1J1Y7nXxljyBd9Xj5ACE=\nR:libc.musl-x86_64.so.1\nZ:Q1aGVsbG8haGVsbG8haGVsbG8h\n\nP:zlib\nV:1.3\nF:usr/lib/\nR:libz.so.1\nZ:0123456789abcdef0123456789abcdef\n\nV:no-name\n";
        let v = parse(db);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].name, "musl");
        assert_eq!(v[0].files[0].path, b"/lib/ld-musl-x86_64.so.1");
        assert_eq!(v[0].files[0].mode, Some(0o755));
        assert!(matches!(v[0].files[0].checksum, Some(Checksum::Sha1(_))));
        assert_eq!(v[0].files[1].checksum, None, "not 20 bytes");
        assert_eq!(v[1].files[0].path, b"/usr/lib/libz.so.1");
        assert!(matches!(v[1].files[0].checksum, Some(Checksum::Md5(_))));
    }

    #[test]
    fn base64_known_values() {
        assert_eq!(base64_decode(b"aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode(b"aGVsbG8h").unwrap(), b"hello!");
        assert_eq!(base64_decode(b"aGk=").unwrap(), b"hi");
        assert!(base64_decode(b"aGk").is_none());
        assert!(base64_decode(b"a=Gk").is_none());
        assert!(base64_decode(b"a===").is_none());
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse(&data);
            let _ = checksum(&data);
            let _ = base64_decode(&data);
        }
    }
}
