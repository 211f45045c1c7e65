//! A small ELF reader of our own, for the facts the loader audit needs:
//! `e_type`, `PT_INTERP`, and from the dynamic section `DT_SONAME`,
//! `DT_NEEDED`, `DT_RPATH` and `DT_RUNPATH`. 32- and 64-bit, both endians.
//!
//! Files in a scanned tree are hostile: every offset and size is checked
//! against the file length with checked arithmetic, every read is bounded
//! (the whole file is never read), counts are capped, and no input can make
//! it panic (a property test feeds it random and truncated bytes). It reads
//! through [`ReadAt`], from a file descriptor with `pread` or from a buffer.
//!
//! It also owns the file-name tests for ELF objects that both the
//! inspection (deciding which facts to gather) and the judges use: shared
//! object names and the dynamic loader's names.

use crate::sys::FileExt;
use std::fs::File;

/// At most this many program headers are read (Linux allows 65535).
const MAX_PHNUM: usize = 4096;
/// Real program header entries are 32 or 56 bytes; larger ones are allowed
/// (the format permits padding) up to this.
const MAX_PHENTSIZE: usize = 256;
/// At most this many bytes of the dynamic section are read.
const MAX_DYNAMIC: u64 = 1 << 20;
/// Strings longer than this are cut (a real RPATH is far shorter).
pub const MAX_STR: u64 = 4096;
/// At most this many DT_NEEDED/DT_RPATH/DT_RUNPATH strings are kept.
pub const MAX_STRINGS: usize = 1024;

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const DT_STRSZ: u64 = 10;
const DT_SONAME: u64 = 14;
const DT_RPATH: u64 = 15;
const DT_RUNPATH: u64 = 29;

/// `e_type` values.
pub const ET_EXEC: u16 = 2;
pub const ET_DYN: u16 = 3;

/// Bounded positional reads from something of known length.
pub trait ReadAt {
    /// The total length in bytes.
    fn size(&self) -> u64;
    /// Fills `buf` from `off`; false if that range is not entirely there or
    /// the read failed.
    fn read_exact_at(&self, off: u64, buf: &mut [u8]) -> bool;
}

impl ReadAt for [u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn read_exact_at(&self, off: u64, buf: &mut [u8]) -> bool {
        let Ok(start) = usize::try_from(off) else {
            return false;
        };
        let Some(end) = start.checked_add(buf.len()) else {
            return false;
        };
        match self.get(start..end) {
            Some(src) => {
                buf.copy_from_slice(src);
                true
            }
            None => false,
        }
    }
}

/// An open file and the size `fstat` gave; reads use `pread`, so the file
/// position never matters and nothing is mapped.
pub struct FileAt<'a> {
    pub file: &'a File,
    pub len: u64,
}

impl ReadAt for FileAt<'_> {
    fn size(&self) -> u64 {
        self.len
    }
    fn read_exact_at(&self, off: u64, buf: &mut [u8]) -> bool {
        match off.checked_add(buf.len() as u64) {
            Some(end) if end <= self.len => self.file.read_exact_at(buf, off).is_ok(),
            _ => false,
        }
    }
}

/// What the audit knows about one ELF file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ElfInfo {
    pub is_64: bool,
    pub big_endian: bool,
    pub e_type: u16,
    pub e_machine: u16,
    /// `PT_INTERP`, without its terminating NUL.
    pub interp: Option<Vec<u8>>,
    pub soname: Option<Vec<u8>>,
    pub needed: Vec<Vec<u8>>,
    /// Every `DT_RPATH` string (normally at most one).
    pub rpath: Vec<Vec<u8>>,
    /// Every `DT_RUNPATH` string (normally at most one).
    pub runpath: Vec<Vec<u8>>,
    /// True when a `PT_DYNAMIC` segment was found.
    pub dynamic: bool,
}

/// Why a file could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// No ELF magic, or an unknown class or data encoding.
    NotElf,
    /// A header or table lies beyond the end of the file or is inconsistent.
    Malformed(&'static str),
}

impl std::fmt::Display for ElfError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ElfError::NotElf => f.write_str("not an ELF file"),
            ElfError::Malformed(why) => write!(f, "malformed ELF: {why}"),
        }
    }
}

/// Byte order and word size of one file.
#[derive(Clone, Copy)]
struct Layout {
    is_64: bool,
    big: bool,
}

impl Layout {
    fn u16(self, b: &[u8], at: usize) -> Option<u16> {
        let a: [u8; 2] = b.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(if self.big {
            u16::from_be_bytes(a)
        } else {
            u16::from_le_bytes(a)
        })
    }
    fn u32(self, b: &[u8], at: usize) -> Option<u32> {
        let a: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(if self.big {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        })
    }
    fn u64(self, b: &[u8], at: usize) -> Option<u64> {
        let a: [u8; 8] = b.get(at..at.checked_add(8)?)?.try_into().ok()?;
        Some(if self.big {
            u64::from_be_bytes(a)
        } else {
            u64::from_le_bytes(a)
        })
    }
    /// A word: 8 bytes in ELF64, 4 in ELF32.
    fn word(self, b: &[u8], at: usize) -> Option<u64> {
        if self.is_64 {
            self.u64(b, at)
        } else {
            self.u32(b, at).map(u64::from)
        }
    }
}

/// One program header, the fields we use.
#[derive(Clone, Copy, Debug)]
struct Phdr {
    p_type: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

/// Parses the ELF facts of `src`. Never panics; reads only what it needs.
pub fn parse<R: ReadAt + ?Sized>(src: &R) -> Result<ElfInfo, ElfError> {
    let mut ident = [0u8; 64];
    let hlen = src.size().min(64) as usize;
    if hlen < 20 || !src.read_exact_at(0, &mut ident[..hlen]) {
        return Err(ElfError::NotElf);
    }
    let ident = &ident[..hlen];
    if !ident.starts_with(b"\x7fELF") {
        return Err(ElfError::NotElf);
    }
    let is_64 = match ident.get(4) {
        Some(1) => false,
        Some(2) => true,
        _ => return Err(ElfError::NotElf),
    };
    let big = match ident.get(5) {
        Some(1) => false,
        Some(2) => true,
        _ => return Err(ElfError::NotElf),
    };
    let l = Layout { is_64, big };
    let short = ElfError::Malformed("truncated header");
    let mut info = ElfInfo {
        is_64,
        big_endian: big,
        e_type: l.u16(ident, 16).ok_or(short)?,
        e_machine: l.u16(ident, 18).ok_or(short)?,
        ..ElfInfo::default()
    };
    let (phoff, phentsize, phnum, min_ent) = if is_64 {
        (
            l.u64(ident, 32).ok_or(short)?,
            l.u16(ident, 54).ok_or(short)?,
            l.u16(ident, 56).ok_or(short)?,
            56usize,
        )
    } else {
        (
            u64::from(l.u32(ident, 28).ok_or(short)?),
            l.u16(ident, 42).ok_or(short)?,
            l.u16(ident, 44).ok_or(short)?,
            32usize,
        )
    };
    let phentsize = usize::from(phentsize);
    let phnum = usize::from(phnum);
    if phnum == 0 {
        // A relocatable object or a stripped oddity: no segments to read.
        return Ok(info);
    }
    if phentsize < min_ent {
        return Err(ElfError::Malformed("program header entry too small"));
    }
    if phnum > MAX_PHNUM {
        return Err(ElfError::Malformed("too many program headers"));
    }
    if phentsize > MAX_PHENTSIZE {
        return Err(ElfError::Malformed("program header entry too large"));
    }
    // Both bounded above: the product is at most 1 MiB. Checked against the
    // file before anything is allocated.
    let table_len = phentsize * phnum;
    if phoff
        .checked_add(table_len as u64)
        .is_none_or(|end| end > src.size())
    {
        return Err(ElfError::Malformed(
            "program headers beyond the end of the file",
        ));
    }
    let mut table = vec![0u8; table_len];
    if !src.read_exact_at(phoff, &mut table) {
        return Err(ElfError::Malformed(
            "program headers beyond the end of the file",
        ));
    }
    let mut phdrs = Vec::with_capacity(phnum);
    for ent in table.chunks_exact(phentsize) {
        let p = if is_64 {
            Phdr {
                p_type: l.u32(ent, 0).ok_or(short)?,
                offset: l.u64(ent, 8).ok_or(short)?,
                vaddr: l.u64(ent, 16).ok_or(short)?,
                filesz: l.u64(ent, 32).ok_or(short)?,
            }
        } else {
            Phdr {
                p_type: l.u32(ent, 0).ok_or(short)?,
                offset: u64::from(l.u32(ent, 4).ok_or(short)?),
                vaddr: u64::from(l.u32(ent, 8).ok_or(short)?),
                filesz: u64::from(l.u32(ent, 16).ok_or(short)?),
            }
        };
        phdrs.push(p);
    }
    if let Some(p) = phdrs.iter().find(|p| p.p_type == PT_INTERP) {
        info.interp = read_str(src, p.offset, p.offset.saturating_add(p.filesz));
    }
    if let Some(p) = phdrs.iter().find(|p| p.p_type == PT_DYNAMIC) {
        info.dynamic = true;
        read_dynamic(src, l, p, &phdrs, &mut info);
    }
    Ok(info)
}

/// Reads the dynamic section and the strings it names.
fn read_dynamic<R: ReadAt + ?Sized>(
    src: &R,
    l: Layout,
    dynp: &Phdr,
    phdrs: &[Phdr],
    info: &mut ElfInfo,
) {
    let entsize: usize = if l.is_64 { 16 } else { 8 };
    let avail = src.size().saturating_sub(dynp.offset);
    let want = dynp.filesz.min(avail).min(MAX_DYNAMIC) as usize;
    let want = want - want % entsize;
    let mut buf = vec![0u8; want];
    if want == 0 || !src.read_exact_at(dynp.offset, &mut buf) {
        return;
    }
    let mut strtab = None;
    let mut strsz = None;
    let mut wanted: Vec<(u64, u64)> = Vec::new();
    for ent in buf.chunks_exact(entsize) {
        let (Some(tag), Some(val)) = (l.word(ent, 0), l.word(ent, entsize / 2)) else {
            break;
        };
        match tag {
            DT_NULL => break,
            DT_STRTAB => strtab = Some(val),
            DT_STRSZ => strsz = Some(val),
            DT_NEEDED | DT_SONAME | DT_RPATH | DT_RUNPATH if wanted.len() < MAX_STRINGS * 2 => {
                wanted.push((tag, val));
            }
            _ => {}
        }
    }
    let Some(str_off) = strtab.and_then(|a| vaddr_to_offset(phdrs, a)) else {
        return;
    };
    let end = match strsz {
        Some(n) => str_off.saturating_add(n),
        None => src.size(),
    };
    for (tag, val) in wanted {
        let Some(at) = str_off.checked_add(val) else {
            continue;
        };
        let Some(s) = read_str(src, at, end) else {
            continue;
        };
        match tag {
            DT_SONAME if info.soname.is_none() => info.soname = Some(s),
            DT_NEEDED if info.needed.len() < MAX_STRINGS => info.needed.push(s),
            DT_RPATH if info.rpath.len() < MAX_STRINGS => info.rpath.push(s),
            DT_RUNPATH if info.runpath.len() < MAX_STRINGS => info.runpath.push(s),
            _ => {}
        }
    }
}

/// The file offset of a virtual address, through the `PT_LOAD` segment
/// that maps it from the file.
fn vaddr_to_offset(phdrs: &[Phdr], addr: u64) -> Option<u64> {
    phdrs
        .iter()
        .filter(|p| p.p_type == PT_LOAD)
        .find(|p| addr >= p.vaddr && addr - p.vaddr < p.filesz)
        .and_then(|p| p.offset.checked_add(addr - p.vaddr))
}

/// A NUL-terminated string at `at`, never past `end`, the file's end or
/// [`MAX_STR`] bytes. A string cut by a bound is returned as far as it goes;
/// one starting out of bounds is `None`.
fn read_str<R: ReadAt + ?Sized>(src: &R, at: u64, end: u64) -> Option<Vec<u8>> {
    let end = end.min(src.size());
    if at >= end {
        return None;
    }
    let n = (end - at).min(MAX_STR) as usize;
    let mut buf = vec![0u8; n];
    if !src.read_exact_at(at, &mut buf) {
        return None;
    }
    if let Some(p) = buf.iter().position(|&b| b == 0) {
        buf.truncate(p);
    }
    Some(buf)
}

/// Parses an open regular file of length `len`.
pub fn parse_file(file: &File, len: u64) -> Result<ElfInfo, ElfError> {
    parse(&FileAt { file, len })
}

/// `*.so` or `*.so.<digit>...` (not `ld.so.cache`, `ld.so.conf`).
pub fn is_so_name(name: &[u8]) -> bool {
    name.windows(3).enumerate().any(|(i, w)| {
        w == b".so"
            && match name.get(i + 3) {
                None => true,
                Some(b'.') => name.get(i + 4).is_some_and(|c| c.is_ascii_digit()),
                _ => false,
            }
    })
}

/// `ld-linux-x86-64.so.2`, `ld64.so.1`, `ld-musl-x86_64.so.1`, `ld-2.36.so`,
/// `ld.so.1`, `ld-linux.so.2`: a real loader's name, nothing appended.
pub fn is_canonical_loader_name(name: &[u8]) -> bool {
    let Ok(s) = std::str::from_utf8(name) else {
        return false;
    };
    let digits_dots = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    let ident = |t: &str| {
        t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    if let Some(v) = s.strip_prefix("ld-").and_then(|r| r.strip_suffix(".so")) {
        // Old glibc: ld-2.31.so
        return digits_dots(v);
    }
    if s == "ld.so.1" {
        return true;
    }
    let Some((stem, ver)) = s.split_once(".so.") else {
        return false;
    };
    if !digits_dots(ver) {
        return false;
    }
    (stem.starts_with("ld-linux") || stem.starts_with("ld64") || stem.starts_with("ld-musl-"))
        && ident(stem)
}

/// A glibc loader's name (musl's loader has no preload list).
pub fn is_glibc_loader(name: &[u8]) -> bool {
    is_canonical_loader_name(name) && !name.starts_with(b"ld-musl-")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a minimal dynamic ELF: header, three program headers
    /// (PT_LOAD over the whole file, PT_INTERP, PT_DYNAMIC), the dynamic
    /// section and a string table.
    pub(crate) fn build(
        is_64: bool,
        big: bool,
        e_type: u16,
        dyn_strings: &[(u64, &str)],
    ) -> Vec<u8> {
        let interp = b"/lib64/ld-linux-x86-64.so.2\0";
        let (ehsize, phent, dynent) = if is_64 { (64, 56, 16) } else { (52, 32, 8) };
        let phoff = ehsize;
        let interp_off = phoff + 3 * phent;
        let mut strtab = vec![0u8];
        let mut dyns = Vec::new();
        for (tag, s) in dyn_strings {
            dyns.push((*tag, strtab.len() as u64));
            strtab.extend_from_slice(s.as_bytes());
            strtab.push(0);
        }
        let dyn_off = interp_off + interp.len();
        let dyn_len = (dyns.len() + 3) * dynent;
        let str_off = dyn_off + dyn_len;
        let total = str_off + strtab.len();
        let vbase = 0x1000u64;
        dyns.push((DT_STRTAB, vbase + str_off as u64));
        dyns.push((DT_STRSZ, strtab.len() as u64));
        dyns.push((DT_NULL, 0));

        let mut f = vec![0u8; total];
        let put = |f: &mut Vec<u8>, at: usize, v: u64, n: usize| {
            let bytes = v.to_be_bytes();
            let be = &bytes[8 - n..];
            for i in 0..n {
                f[at + i] = if big { be[i] } else { be[n - 1 - i] };
            }
        };
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = if is_64 { 2 } else { 1 };
        f[5] = if big { 2 } else { 1 };
        f[6] = 1;
        put(&mut f, 16, e_type as u64, 2);
        put(&mut f, 18, 62, 2);
        let w = if is_64 { 8 } else { 4 };
        if is_64 {
            put(&mut f, 32, phoff as u64, 8);
            put(&mut f, 54, phent as u64, 2);
            put(&mut f, 56, 3, 2);
        } else {
            put(&mut f, 28, phoff as u64, 4);
            put(&mut f, 42, phent as u64, 2);
            put(&mut f, 44, 3, 2);
        }
        let segs = [
            (PT_LOAD, 0u64, vbase, total as u64),
            (
                PT_INTERP,
                interp_off as u64,
                vbase + interp_off as u64,
                interp.len() as u64,
            ),
            (
                PT_DYNAMIC,
                dyn_off as u64,
                vbase + dyn_off as u64,
                dyn_len as u64,
            ),
        ];
        for (i, (t, off, va, sz)) in segs.iter().enumerate() {
            let at = phoff + i * phent;
            put(&mut f, at, *t as u64, 4);
            if is_64 {
                put(&mut f, at + 8, *off, 8);
                put(&mut f, at + 16, *va, 8);
                put(&mut f, at + 32, *sz, 8);
            } else {
                put(&mut f, at + 4, *off, 4);
                put(&mut f, at + 8, *va, 4);
                put(&mut f, at + 16, *sz, 4);
            }
        }
        f[interp_off..interp_off + interp.len()].copy_from_slice(interp);
        for (i, (tag, val)) in dyns.iter().enumerate() {
            let at = dyn_off + i * dynent;
            put(&mut f, at, *tag, w);
            put(&mut f, at + w, *val, w);
        }
        f[str_off..].copy_from_slice(&strtab);
        f
    }

    #[test]
    fn all_four_layouts_parse() {
        for is_64 in [true, false] {
            for big in [false, true] {
                let f = build(
                    is_64,
                    big,
                    ET_DYN,
                    &[
                        (DT_NEEDED, "libc.so.6"),
                        (DT_SONAME, "libx.so.1"),
                        (DT_RUNPATH, "$ORIGIN/../lib:/tmp/x"),
                        (DT_RPATH, "/opt/a"),
                    ],
                );
                let i = parse(f.as_slice()).unwrap();
                assert_eq!((i.is_64, i.big_endian, i.e_type), (is_64, big, ET_DYN));
                assert_eq!(
                    i.interp.as_deref(),
                    Some(&b"/lib64/ld-linux-x86-64.so.2"[..])
                );
                assert_eq!(i.soname.as_deref(), Some(&b"libx.so.1"[..]));
                assert_eq!(i.needed, vec![b"libc.so.6".to_vec()]);
                assert_eq!(i.runpath, vec![b"$ORIGIN/../lib:/tmp/x".to_vec()]);
                assert_eq!(i.rpath, vec![b"/opt/a".to_vec()]);
            }
        }
    }

    #[test]
    fn our_own_executable_parses() {
        let exe = std::env::current_exe().unwrap();
        let f = File::open(&exe).unwrap();
        let len = f.metadata().unwrap().len();
        let i = parse_file(&f, len).unwrap();
        assert!(i.e_type == ET_DYN || i.e_type == ET_EXEC);
    }

    #[test]
    fn every_truncation_of_a_valid_file_is_safe() {
        let f = build(true, false, ET_DYN, &[(DT_SONAME, "libx.so.1")]);
        for n in 0..f.len() {
            let _ = parse(&f[..n]);
        }
        assert_eq!(parse(&b"MZ\0\0"[..]), Err(ElfError::NotElf));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_random_bytes(data: Vec<u8>) {
            let _ = parse(data.as_slice());
        }

        #[test]
        fn never_panics_on_mutated_valid_files(
            is_64: bool,
            big: bool,
            flips in proptest::collection::vec((0usize..4096, proptest::num::u8::ANY), 1..16),
            cut in 0usize..4096,
        ) {
            let mut f = build(is_64, big, ET_DYN, &[(DT_NEEDED, "libc.so.6"), (DT_RPATH, "/x")]);
            for (at, v) in flips {
                let n = f.len();
                f[at % n] = v;
            }
            let n = f.len();
            f.truncate(n - cut % n);
            let _ = parse(f.as_slice());
        }
    }
}
