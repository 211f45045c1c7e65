//! Facts: what the judges need to know about a file's content beyond its
//! digest. The audits need its ELF headers and whether a loader still names
//! `/etc/ld.so.preload`; provenance needs a kernel module's signature
//! trailer, the `security.ima` xattr, and the content digest that xattr is
//! checked against. The inspection gathers them from the descriptor it
//! hashes, in the same pass, and they are stored with the record: covered by
//! the generation's digest and signature, and reused with the digest, so a
//! file whose identity did not change is never opened again to learn them.
//!
//! Everything is bounded. Values are cut to the limits below when they are
//! made (the ELF reader already caps its strings), the encoding writes no
//! more than those limits, and decoding refuses anything beyond them or
//! anything malformed: a damaged or forged baseline value is rejected,
//! never trusted, and never makes a large allocation.

use std::sync::Arc;

use crate::formats::elf::{ElfInfo, MAX_STR, MAX_STRINGS};
use crate::formats::loaderpaths;

/// The string glibc's loader opens for its preload list; rootkits patch it
/// to move the list somewhere no one looks.
pub const PRELOAD_STRING: &[u8] = b"/etc/ld.so.preload";
/// Only this much of a loader is searched for [`PRELOAD_STRING`]: loaders
/// are a few hundred kB; this bounds a hostile one.
pub const LOADER_CAP: u64 = 64 << 20;
/// Text (key ids, algorithm names, reasons) is cut to this many bytes.
pub const MAX_TEXT: usize = 1024;
/// The largest `security.ima` value kept (an RSA-4096 signature is ~520
/// bytes).
pub const MAX_XATTR: usize = 4096;
/// The largest content digest (SHA-512).
pub const MAX_DIGEST: usize = 64;
/// Only this much of a unit file is read for its environment lines (as the
/// environment audit reads it).
pub const UNIT_CAP: u64 = 1 << 20;
/// At most this many environment lines of one unit are kept, each at most
/// [`MAX_LINE`] bytes; a unit with more is marked incomplete and the audit
/// reads it itself.
pub const MAX_UNIT_LINES: usize = 256;
pub const MAX_LINE: usize = 4096;

/// The facts of one regular file; `None` fields do not apply to it (not an
/// ELF object, not named like a loader or module, no `security.ima`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// ELF shared objects and executables: their headers.
    pub elf: Option<ElfFact>,
    /// Files named like a glibc loader: whether the first [`LOADER_CAP`]
    /// bytes contain [`PRELOAD_STRING`].
    pub preload_string: Option<bool>,
    /// A loader without [`PRELOAD_STRING`]: the absolute paths it holds
    /// that a stock loader does not (where its preload list went), at most
    /// [`loaderpaths::MAX_PATHS`]. Empty otherwise.
    pub preload_paths: Vec<Vec<u8>>,
    /// Files named like a kernel module: what the tail says.
    pub module: Option<ModuleFact>,
    /// The `security.ima` xattr, when the file has one (Linux).
    pub ima: Option<ImaFact>,
    /// Files in a systemd unit dir: their `Environment=` and
    /// `EnvironmentFile=` lines.
    pub unit: Option<UnitFact>,
}

/// The lines of a systemd unit (or drop-in) that set its environment,
/// trimmed, with their 1-based line numbers, from its first [`UNIT_CAP`]
/// bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnitFact {
    pub lines: Vec<(u32, Vec<u8>)>,
    /// False when a line was too long or there were too many: the facts do
    /// not tell the whole story, and the audit reads the file.
    pub complete: bool,
}

impl UnitFact {
    /// The environment lines of `data` (a unit's first bytes).
    pub fn of(data: &[u8]) -> UnitFact {
        let mut f = UnitFact {
            lines: Vec::new(),
            complete: true,
        };
        for (i, line) in data.split(|&b| b == b'\n').enumerate() {
            let t = line.trim_ascii();
            if !(t.starts_with(b"Environment=") || t.starts_with(b"EnvironmentFile=")) {
                continue;
            }
            if t.len() > MAX_LINE || f.lines.len() == MAX_UNIT_LINES || i >= u32::MAX as usize {
                f.complete = false;
                break;
            }
            f.lines.push((i as u32 + 1, t.to_vec()));
        }
        f
    }
}

/// Whether `path` (logical) lies in a systemd unit dir (system or user
/// units), where the environment audit reads every file.
pub fn is_unit_path(path: &[u8]) -> bool {
    path.windows(16).any(|w| w == b"/systemd/system/")
        || path.windows(14).any(|w| w == b"/systemd/user/")
}

/// An ELF object's headers, or the fact that they could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ElfFact {
    /// Shared: the audit's objects hold the same headers, not copies.
    Parsed(Arc<ElfInfo>),
    /// ELF magic, but the headers do not hold together.
    Unparsable,
}

/// A kernel module's appended signature, as `provenance::kmod` judged the
/// tail of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModuleFact {
    /// No signature marker at the end.
    Unsigned,
    /// Compressed (the named compression): a signature would be inside.
    Hidden(String),
    /// Marker present; the signer as the signature names it.
    Signed { key_id: String, hash: String },
    /// Marker present but the structure before it does not hold together.
    Malformed(String),
    /// The tail could not be read.
    Unreadable,
}

/// The raw `security.ima` value and, when it holds a digest or a signature
/// over one with an algorithm libwarden implements, that digest of the
/// content as it was hashed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImaFact {
    pub xattr: Vec<u8>,
    pub digest: Option<Vec<u8>>,
}

/// `s` cut to [`MAX_TEXT`] bytes at a character boundary.
pub fn text(s: &str) -> String {
    let mut end = s.len().min(MAX_TEXT);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

impl Facts {
    /// True when no fact applies (the file was looked at; nothing to say).
    pub fn is_empty(&self) -> bool {
        *self == Facts::default()
    }

    /// Appends the compact encoding (see [`Facts::decode`]).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match &self.elf {
            None => out.push(0),
            Some(ElfFact::Unparsable) => out.push(1),
            Some(ElfFact::Parsed(i)) => {
                out.push(2);
                out.push(
                    u8::from(i.is_64) | u8::from(i.big_endian) << 1 | u8::from(i.dynamic) << 2,
                );
                out.extend_from_slice(&i.e_type.to_le_bytes());
                out.extend_from_slice(&i.e_machine.to_le_bytes());
                for s in [&i.interp, &i.soname] {
                    match s {
                        None => out.push(0),
                        Some(s) => {
                            out.push(1);
                            put_bytes(out, s, MAX_STR as usize);
                        }
                    }
                }
                for list in [&i.needed, &i.rpath, &i.runpath] {
                    let n = list.len().min(MAX_STRINGS);
                    out.extend_from_slice(&(n as u16).to_le_bytes());
                    for s in &list[..n] {
                        put_bytes(out, s, MAX_STR as usize);
                    }
                }
            }
        }
        match self.preload_string {
            None => out.push(0),
            Some(true) => out.push(1),
            // Tag 2 (older generations) is a patched loader without paths.
            Some(false) if self.preload_paths.is_empty() => out.push(2),
            Some(false) => {
                out.push(3);
                let n = self.preload_paths.len().min(loaderpaths::MAX_PATHS);
                out.push(n as u8);
                for p in &self.preload_paths[..n] {
                    put_bytes(out, p, loaderpaths::MAX_PATH);
                }
            }
        }
        match &self.module {
            None => out.push(0),
            Some(ModuleFact::Unsigned) => out.push(1),
            Some(ModuleFact::Hidden(c)) => {
                out.push(2);
                put_text(out, c);
            }
            Some(ModuleFact::Signed { key_id, hash }) => {
                out.push(3);
                put_text(out, key_id);
                put_text(out, hash);
            }
            Some(ModuleFact::Malformed(why)) => {
                out.push(4);
                put_text(out, why);
            }
            Some(ModuleFact::Unreadable) => out.push(5),
        }
        match &self.ima {
            None => out.push(0),
            Some(ima) => {
                out.push(1);
                put_bytes(out, &ima.xattr, MAX_XATTR);
                match &ima.digest {
                    None => out.push(0),
                    Some(d) => {
                        out.push(1);
                        put_bytes(out, d, MAX_DIGEST);
                    }
                }
            }
        }
        match &self.unit {
            None => out.push(0),
            Some(u) => {
                let n = u.lines.len().min(MAX_UNIT_LINES);
                out.push(if u.complete && n == u.lines.len() {
                    1
                } else {
                    2
                });
                out.extend_from_slice(&(n as u16).to_le_bytes());
                for (no, line) in &u.lines[..n] {
                    out.extend_from_slice(&no.to_le_bytes());
                    put_bytes(out, line, MAX_LINE);
                }
            }
        }
    }

    /// Decodes exactly what [`Facts::encode`] wrote; `None` on anything
    /// truncated, extended, out of bounds or otherwise malformed.
    pub fn decode(v: &[u8]) -> Option<Facts> {
        let mut r = Cursor(v);
        let elf = match r.u8()? {
            0 => None,
            1 => Some(ElfFact::Unparsable),
            2 => {
                let flags = r.u8()?;
                if flags & !0b111 != 0 {
                    return None;
                }
                let e_type = r.u16()?;
                let e_machine = r.u16()?;
                let interp = r.opt_bytes(MAX_STR as usize)?;
                let soname = r.opt_bytes(MAX_STR as usize)?;
                let needed = r.list()?;
                let rpath = r.list()?;
                let runpath = r.list()?;
                Some(ElfFact::Parsed(Arc::new(ElfInfo {
                    is_64: flags & 1 != 0,
                    big_endian: flags & 2 != 0,
                    dynamic: flags & 4 != 0,
                    e_type,
                    e_machine,
                    interp,
                    soname,
                    needed,
                    rpath,
                    runpath,
                })))
            }
            _ => return None,
        };
        let mut preload_paths = Vec::new();
        let preload_string = match r.u8()? {
            0 => None,
            1 => Some(true),
            2 => Some(false),
            3 => {
                let n = usize::from(r.u8()?);
                if n == 0 || n > loaderpaths::MAX_PATHS {
                    return None;
                }
                for _ in 0..n {
                    preload_paths.push(r.bytes(loaderpaths::MAX_PATH)?);
                }
                Some(false)
            }
            _ => return None,
        };
        let module = match r.u8()? {
            0 => None,
            1 => Some(ModuleFact::Unsigned),
            2 => Some(ModuleFact::Hidden(r.text()?)),
            3 => Some(ModuleFact::Signed {
                key_id: r.text()?,
                hash: r.text()?,
            }),
            4 => Some(ModuleFact::Malformed(r.text()?)),
            5 => Some(ModuleFact::Unreadable),
            _ => return None,
        };
        let ima = match r.u8()? {
            0 => None,
            1 => {
                let xattr = r.bytes(MAX_XATTR)?;
                let digest = r.opt_bytes(MAX_DIGEST)?;
                Some(ImaFact { xattr, digest })
            }
            _ => return None,
        };
        let unit = match r.u8()? {
            0 => None,
            tag @ (1 | 2) => {
                let n = usize::from(r.u16()?);
                if n > MAX_UNIT_LINES {
                    return None;
                }
                let lines = (0..n)
                    .map(|_| Some((r.u32()?, r.bytes(MAX_LINE)?)))
                    .collect::<Option<Vec<_>>>()?;
                Some(UnitFact {
                    lines,
                    complete: tag == 1,
                })
            }
            _ => return None,
        };
        if !r.0.is_empty() {
            return None;
        }
        Some(Facts {
            elf,
            preload_string,
            preload_paths,
            module,
            ima,
            unit,
        })
    }
}

/// A u16 length and at most `cap` bytes of `b` (every cap fits a u16).
fn put_bytes(out: &mut Vec<u8>, b: &[u8], cap: usize) {
    let b = &b[..b.len().min(cap)];
    out.extend_from_slice(&(b.len() as u16).to_le_bytes());
    out.extend_from_slice(b);
}

fn put_text(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, text(s).as_bytes(), MAX_TEXT);
}

/// Reads a binary encoding front to back (the facts here, the record in
/// `crate::record`); every method is `None` past the end.
pub(crate) struct Cursor<'a>(pub(crate) &'a [u8]);

impl<'a> Cursor<'a> {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    pub(crate) fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    pub(crate) fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    pub(crate) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    pub(crate) fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    pub(crate) fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    pub(crate) fn bytes(&mut self, cap: usize) -> Option<Vec<u8>> {
        let n = usize::from(self.u16()?);
        if n > cap {
            return None;
        }
        Some(self.take(n)?.to_vec())
    }
    pub(crate) fn opt_bytes(&mut self, cap: usize) -> Option<Option<Vec<u8>>> {
        match self.u8()? {
            0 => Some(None),
            1 => Some(Some(self.bytes(cap)?)),
            _ => None,
        }
    }
    pub(crate) fn list(&mut self) -> Option<Vec<Vec<u8>>> {
        let n = usize::from(self.u16()?);
        if n > MAX_STRINGS {
            return None;
        }
        (0..n).map(|_| self.bytes(MAX_STR as usize)).collect()
    }
    pub(crate) fn text(&mut self) -> Option<String> {
        String::from_utf8(self.bytes(MAX_TEXT)?).ok()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Facts with every field set, each variant of its kind in turn.
    pub(crate) fn samples() -> Vec<Facts> {
        let info = ElfInfo {
            is_64: true,
            big_endian: false,
            e_type: crate::formats::elf::ET_DYN,
            e_machine: 62,
            interp: Some(b"/lib64/ld-linux-x86-64.so.2".to_vec()),
            soname: Some(b"libx.so.1\xff".to_vec()),
            needed: vec![b"libc.so.6".to_vec(), Vec::new()],
            rpath: vec![b"$ORIGIN/../lib".to_vec()],
            runpath: Vec::new(),
            dynamic: true,
        };
        let full = Facts {
            elf: Some(ElfFact::Parsed(Arc::new(info))),
            preload_string: Some(true),
            preload_paths: Vec::new(),
            module: Some(ModuleFact::Signed {
                key_id: "01ab".into(),
                hash: "sha256".into(),
            }),
            ima: Some(ImaFact {
                xattr: vec![4, 4, 1, 2],
                digest: Some(vec![9; 32]),
            }),
            unit: Some(UnitFact {
                lines: vec![(3, b"Environment=LD_PRELOAD=/x.so".to_vec())],
                complete: true,
            }),
        };
        let other = Facts {
            elf: Some(ElfFact::Unparsable),
            preload_string: Some(false),
            preload_paths: vec![b"/var/tmp/.hidden.x".to_vec(), b"/dev/shm/p".to_vec()],
            module: Some(ModuleFact::Malformed("truncated".into())),
            ima: Some(ImaFact {
                xattr: vec![3, 2],
                digest: None,
            }),
            unit: Some(UnitFact::default()),
        };
        let mut out = vec![Facts::default(), full, other];
        for m in [
            ModuleFact::Unsigned,
            ModuleFact::Hidden("xz".into()),
            ModuleFact::Unreadable,
        ] {
            out.push(Facts {
                module: Some(m),
                ..Facts::default()
            });
        }
        out
    }

    #[test]
    fn unit_lines_are_the_environment_ones_and_bounded() {
        let u = UnitFact::of(b"[Service]\n  Environment=\"LD_PRELOAD=/x.so\"\nExecStart=/bin/x\nEnvironmentFile=-/etc/default/x\n");
        assert!(u.complete);
        assert_eq!(
            u.lines,
            vec![
                (2, b"Environment=\"LD_PRELOAD=/x.so\"".to_vec()),
                (4, b"EnvironmentFile=-/etc/default/x".to_vec())
            ]
        );
        let many = "Environment=A=1\n".repeat(MAX_UNIT_LINES + 1);
        let u = UnitFact::of(many.as_bytes());
        assert!(!u.complete);
        assert_eq!(u.lines.len(), MAX_UNIT_LINES);
        assert!(is_unit_path(b"/usr/lib/systemd/system/x.service.d/a.conf"));
        assert!(is_unit_path(b"/usr/lib/systemd/user/x.service"));
        assert!(!is_unit_path(b"/usr/lib/systemd/system-generators/x"));
    }

    #[test]
    fn encoding_round_trips() {
        for f in samples() {
            let mut v = Vec::new();
            f.encode(&mut v);
            assert_eq!(Facts::decode(&v), Some(f));
        }
    }

    #[test]
    fn truncated_extended_or_altered_encodings_are_rejected() {
        for f in samples() {
            let mut v = Vec::new();
            f.encode(&mut v);
            for n in 0..v.len() {
                assert_eq!(Facts::decode(&v[..n]), None, "{f:?} cut at {n}");
            }
            let mut longer = v.clone();
            longer.push(0);
            assert_eq!(Facts::decode(&longer), None);
        }
        // A tag no encoder writes, and flag bits no encoder sets.
        assert_eq!(Facts::decode(&[3, 0, 0, 0]), None);
        assert_eq!(Facts::decode(&[0, 3, 0, 0]), None);
        assert_eq!(Facts::decode(&[0, 0, 6, 0]), None);
        assert_eq!(Facts::decode(&[0, 0, 0, 2]), None);
        assert_eq!(
            Facts::decode(&[2, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            None
        );
    }

    #[test]
    fn lengths_beyond_the_bounds_are_rejected() {
        // A module reason claiming more than MAX_TEXT bytes.
        let mut v = vec![0, 0, 4];
        v.extend_from_slice(&(MAX_TEXT as u16 + 1).to_le_bytes());
        v.extend(std::iter::repeat_n(b'a', MAX_TEXT + 1));
        v.push(0);
        assert_eq!(Facts::decode(&v), None);
        // An xattr longer than MAX_XATTR.
        let mut v = vec![0, 0, 0, 1];
        v.extend_from_slice(&(MAX_XATTR as u16 + 1).to_le_bytes());
        v.extend(std::iter::repeat_n(0, MAX_XATTR + 1));
        v.push(0);
        assert_eq!(Facts::decode(&v), None);
        // Text that is not UTF-8.
        assert_eq!(Facts::decode(&[0, 0, 2, 1, 0, 0xff, 0]), None);
    }

    #[test]
    fn oversized_values_are_cut_when_encoded_and_still_decode() {
        let long = "é".repeat(MAX_TEXT);
        assert!(text(&long).len() <= MAX_TEXT);
        let f = Facts {
            module: Some(ModuleFact::Malformed(long)),
            ima: Some(ImaFact {
                xattr: vec![1; MAX_XATTR + 10],
                digest: None,
            }),
            ..Facts::default()
        };
        let mut v = Vec::new();
        f.encode(&mut v);
        let back = Facts::decode(&v).unwrap();
        assert!(matches!(&back.module, Some(ModuleFact::Malformed(s)) if s.len() <= MAX_TEXT));
        assert_eq!(back.ima.unwrap().xattr.len(), MAX_XATTR);
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(data: Vec<u8>) {
            let _ = Facts::decode(&data);
        }

        #[test]
        fn decode_never_panics_on_mutated_encodings(
            which in 0usize..6,
            flips in proptest::collection::vec((0usize..512, proptest::num::u8::ANY), 1..8),
        ) {
            let mut v = Vec::new();
            samples()[which].encode(&mut v);
            for (at, b) in flips {
                let n = v.len();
                v[at % n] = b;
            }
            let _ = Facts::decode(&v);
        }
    }
}
