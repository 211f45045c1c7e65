//! An rpm header: the blob rpm's database stores per installed package
//! (and, after an 8-byte magic, the header of a package file).
//!
//! Layout (big-endian): `il` (index entries), `dl` (data bytes), `il`
//! entries of 16 bytes (tag, type, offset into the data, count), the data.
//! Only the tags provenance needs are decoded; every offset and count is
//! checked against the blob, so a hostile header gives an error, never a
//! panic or an allocation larger than the blob itself.

use std::collections::HashMap;

/// The magic before a header in a package file (absent in the database).
pub const MAGIC: [u8; 8] = [0x8e, 0xad, 0xe8, 0x01, 0, 0, 0, 0];

/// rpm's own limits (`hdrchkTags`, `hdrchkData`): far above any real
/// package, small enough that a length field cannot make us walk forever.
const MAX_ENTRIES: usize = 0xffff;
const MAX_DATA: usize = 256 << 20;

pub const TAG_NAME: u32 = 1000;
pub const TAG_VERSION: u32 = 1001;
pub const TAG_RELEASE: u32 = 1002;
pub const TAG_EPOCH: u32 = 1003;
pub const TAG_ARCH: u32 = 1022;
pub const TAG_FILESIZES: u32 = 1028;
pub const TAG_FILEMODES: u32 = 1030;
pub const TAG_FILEDIGESTS: u32 = 1035;
pub const TAG_FILEFLAGS: u32 = 1037;
pub const TAG_DIRINDEXES: u32 = 1116;
pub const TAG_BASENAMES: u32 = 1117;
pub const TAG_DIRNAMES: u32 = 1118;
pub const TAG_LONGFILESIZES: u32 = 5008;
pub const TAG_FILEDIGESTALGO: u32 = 5011;

/// `FILEFLAGS` bits.
pub const RPMFILE_CONFIG: u32 = 1 << 0;
pub const RPMFILE_GHOST: u32 = 1 << 6;

const TYPE_INT16: u32 = 3;
const TYPE_INT32: u32 = 4;
const TYPE_INT64: u32 = 5;
const TYPE_STRING: u32 = 6;
const TYPE_STRING_ARRAY: u32 = 8;
const TYPE_I18NSTRING: u32 = 9;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("header truncated")]
    Truncated,
    #[error("header declares {0} index entries (more than rpm allows)")]
    TooManyEntries(usize),
    #[error("header declares {0} data bytes (more than rpm allows)")]
    TooMuchData(usize),
    #[error("tag {0}: {1}")]
    BadTag(u32, &'static str),
    #[error("file lists disagree: {0}")]
    Inconsistent(&'static str),
}

/// One file of a package, as its header lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderFile {
    /// Absolute path (dirname ‖ basename).
    pub path: Vec<u8>,
    /// Hex digest; empty for non-regular files and ghosts.
    pub digest: Vec<u8>,
    pub mode: Option<u16>,
    pub flags: u32,
    pub size: Option<u64>,
}

/// What provenance needs of a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub version: String,
    pub release: String,
    pub arch: Option<String>,
    pub epoch: Option<u32>,
    /// `FILEDIGESTALGO` (a PGP hash algorithm number); 1 (MD5) when absent,
    /// as rpm says.
    pub digest_algo: u32,
    pub files: Vec<HeaderFile>,
}

impl Header {
    /// `[epoch:]version-release`.
    pub fn evr(&self) -> String {
        match self.epoch {
            Some(e) if e != 0 => format!("{e}:{}-{}", self.version, self.release),
            _ => format!("{}-{}", self.version, self.release),
        }
    }
}

struct Entry {
    ty: u32,
    offset: usize,
    count: usize,
}

struct Raw<'a> {
    data: &'a [u8],
    entries: HashMap<u32, Entry>,
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(s.try_into().ok()?))
}

impl<'a> Raw<'a> {
    fn parse(blob: &'a [u8]) -> Result<Raw<'a>, HeaderError> {
        let blob = blob.strip_prefix(&MAGIC[..]).unwrap_or(blob);
        let il = be32(blob, 0).ok_or(HeaderError::Truncated)? as usize;
        let dl = be32(blob, 4).ok_or(HeaderError::Truncated)? as usize;
        if il > MAX_ENTRIES {
            return Err(HeaderError::TooManyEntries(il));
        }
        if dl > MAX_DATA {
            return Err(HeaderError::TooMuchData(dl));
        }
        let index_end = 8 + il * 16;
        let data = blob
            .get(index_end..index_end + dl)
            .ok_or(HeaderError::Truncated)?;
        let mut entries = HashMap::new();
        for i in 0..il {
            let at = 8 + i * 16;
            let (Some(tag), Some(ty), Some(offset), Some(count)) = (
                be32(blob, at),
                be32(blob, at + 4),
                be32(blob, at + 8),
                be32(blob, at + 12),
            ) else {
                return Err(HeaderError::Truncated);
            };
            // The first one wins, as in rpm's lookup of a sorted index.
            entries.entry(tag).or_insert(Entry {
                ty,
                offset: offset as usize,
                count: count as usize,
            });
        }
        Ok(Raw { data, entries })
    }

    /// The `count` NUL-terminated strings of a string-typed tag.
    fn strings(&self, tag: u32) -> Result<Option<Vec<&'a [u8]>>, HeaderError> {
        let Some(e) = self.entries.get(&tag) else {
            return Ok(None);
        };
        if !matches!(e.ty, TYPE_STRING | TYPE_STRING_ARRAY | TYPE_I18NSTRING) {
            return Err(HeaderError::BadTag(tag, "not a string"));
        }
        // Each string takes at least its NUL: a count above the bytes left
        // is a lie, rejected before anything is allocated for it.
        let mut rest = self
            .data
            .get(e.offset..)
            .ok_or(HeaderError::BadTag(tag, "offset past the data"))?;
        if e.count > rest.len() {
            return Err(HeaderError::BadTag(tag, "count past the data"));
        }
        let n = if e.ty == TYPE_STRING { 1 } else { e.count };
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let nul = rest
                .iter()
                .position(|&b| b == 0)
                .ok_or(HeaderError::BadTag(tag, "unterminated string"))?;
            out.push(&rest[..nul]);
            rest = &rest[nul + 1..];
        }
        Ok(Some(out))
    }

    fn string(&self, tag: u32) -> Result<Option<String>, HeaderError> {
        Ok(self
            .strings(tag)?
            .and_then(|v| v.first().map(|s| String::from_utf8_lossy(s).into_owned())))
    }

    /// The integers of an INT16/INT32/INT64 tag, widened.
    fn ints(&self, tag: u32) -> Result<Option<Vec<u64>>, HeaderError> {
        let Some(e) = self.entries.get(&tag) else {
            return Ok(None);
        };
        let width = match e.ty {
            TYPE_INT16 => 2,
            TYPE_INT32 => 4,
            TYPE_INT64 => 8,
            _ => return Err(HeaderError::BadTag(tag, "not an integer")),
        };
        let len = e
            .count
            .checked_mul(width)
            .ok_or(HeaderError::BadTag(tag, "count overflows"))?;
        let bytes = e
            .offset
            .checked_add(len)
            .and_then(|end| self.data.get(e.offset..end))
            .ok_or(HeaderError::BadTag(tag, "past the data"))?;
        Ok(Some(
            bytes
                .chunks_exact(width)
                .map(|c| c.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
                .collect(),
        ))
    }
}

/// Parses a header blob (with or without the magic).
pub fn parse(blob: &[u8]) -> Result<Header, HeaderError> {
    let raw = Raw::parse(blob)?;
    let name = raw
        .string(TAG_NAME)?
        .ok_or(HeaderError::BadTag(TAG_NAME, "missing"))?;
    let version = raw.string(TAG_VERSION)?.unwrap_or_default();
    let release = raw.string(TAG_RELEASE)?.unwrap_or_default();
    let arch = raw.string(TAG_ARCH)?;
    let epoch = raw
        .ints(TAG_EPOCH)?
        .and_then(|v| v.first().copied())
        .map(|e| e as u32);
    let digest_algo = raw
        .ints(TAG_FILEDIGESTALGO)?
        .and_then(|v| v.first().copied())
        .map_or(1, |a| a as u32);

    let basenames = raw.strings(TAG_BASENAMES)?.unwrap_or_default();
    let n = basenames.len();
    let mut files = Vec::with_capacity(n);
    if n > 0 {
        let dirnames = raw
            .strings(TAG_DIRNAMES)?
            .ok_or(HeaderError::Inconsistent("basenames without dirnames"))?;
        let dirindexes = raw
            .ints(TAG_DIRINDEXES)?
            .ok_or(HeaderError::Inconsistent("basenames without dirindexes"))?;
        if dirindexes.len() != n {
            return Err(HeaderError::Inconsistent("dirindexes"));
        }
        // Optional per-file arrays: used only when their length agrees.
        let per_file = |v: Option<Vec<u64>>| v.filter(|v| v.len() == n);
        let digests = raw.strings(TAG_FILEDIGESTS)?.filter(|v| v.len() == n);
        let modes = per_file(raw.ints(TAG_FILEMODES)?);
        let flags = per_file(raw.ints(TAG_FILEFLAGS)?);
        let sizes = per_file(raw.ints(TAG_LONGFILESIZES)?).or(per_file(raw.ints(TAG_FILESIZES)?));
        for (i, base) in basenames.iter().enumerate() {
            let dir = usize::try_from(dirindexes[i])
                .ok()
                .and_then(|d| dirnames.get(d))
                .ok_or(HeaderError::Inconsistent("dirindex out of range"))?;
            let mut path = Vec::with_capacity(dir.len() + base.len());
            path.extend_from_slice(dir);
            path.extend_from_slice(base);
            files.push(HeaderFile {
                path,
                digest: digests
                    .as_ref()
                    .and_then(|d| d.get(i))
                    .map(|d| d.to_vec())
                    .unwrap_or_default(),
                mode: modes.as_ref().and_then(|m| m.get(i)).map(|&m| m as u16),
                flags: flags
                    .as_ref()
                    .and_then(|f| f.get(i))
                    .map_or(0, |&f| f as u32),
                size: sizes.as_ref().and_then(|s| s.get(i)).copied(),
            });
        }
    }
    Ok(Header {
        name,
        version,
        release,
        arch,
        epoch,
        digest_algo,
        files,
    })
}

/// Builds a header blob from `(tag, type, payload)` (payload already
/// encoded, big-endian): the inverse of [`parse`] for tests and benches.
pub fn build(tags: &[(u32, u32, u32, Vec<u8>)]) -> Vec<u8> {
    let mut index = Vec::new();
    let mut data: Vec<u8> = Vec::new();
    for (tag, ty, count, payload) in tags {
        let align = match *ty {
            TYPE_INT16 => 2,
            TYPE_INT32 => 4,
            TYPE_INT64 => 8,
            _ => 1,
        };
        while !data.len().is_multiple_of(align) {
            data.push(0);
        }
        index.extend_from_slice(&tag.to_be_bytes());
        index.extend_from_slice(&ty.to_be_bytes());
        index.extend_from_slice(&(data.len() as u32).to_be_bytes());
        index.extend_from_slice(&count.to_be_bytes());
        data.extend_from_slice(payload);
    }
    let mut out = Vec::new();
    out.extend_from_slice(&((tags.len()) as u32).to_be_bytes());
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(&index);
    out.extend_from_slice(&data);
    out
}

/// Encoders for [`build`].
pub mod enc {
    use super::*;

    pub fn string(tag: u32, s: &str) -> (u32, u32, u32, Vec<u8>) {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        (tag, TYPE_STRING, 1, v)
    }

    pub fn strings(tag: u32, items: &[&[u8]]) -> (u32, u32, u32, Vec<u8>) {
        let mut v = Vec::new();
        for s in items {
            v.extend_from_slice(s);
            v.push(0);
        }
        (tag, TYPE_STRING_ARRAY, items.len() as u32, v)
    }

    pub fn int32(tag: u32, items: &[u32]) -> (u32, u32, u32, Vec<u8>) {
        let v = items.iter().flat_map(|i| i.to_be_bytes()).collect();
        (tag, TYPE_INT32, items.len() as u32, v)
    }

    pub fn int16(tag: u32, items: &[u16]) -> (u32, u32, u32, Vec<u8>) {
        let v = items.iter().flat_map(|i| i.to_be_bytes()).collect();
        (tag, TYPE_INT16, items.len() as u32, v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<u8> {
        build(&[
            enc::string(TAG_NAME, "libfoo"),
            enc::string(TAG_VERSION, "1.0"),
            enc::string(TAG_RELEASE, "1"),
            enc::int32(TAG_EPOCH, &[2]),
            enc::string(TAG_ARCH, "x86_64"),
            enc::int32(TAG_FILESIZES, &[6, 5]),
            enc::int16(TAG_FILEMODES, &[0o100644, 0o100644]),
            enc::strings(TAG_FILEDIGESTS, &[b"aa", b"bb"]),
            enc::int32(TAG_FILEFLAGS, &[RPMFILE_CONFIG, 0]),
            enc::int32(TAG_DIRINDEXES, &[0, 1]),
            enc::strings(TAG_BASENAMES, &[b"foo.conf", b"libfoo.so.1"]),
            enc::strings(TAG_DIRNAMES, &[b"/etc/", b"/usr/lib64/"]),
            enc::int32(TAG_FILEDIGESTALGO, &[8]),
        ])
    }

    #[test]
    fn parses_names_versions_and_files() {
        let h = parse(&sample()).unwrap();
        assert_eq!(h.name, "libfoo");
        assert_eq!(h.evr(), "2:1.0-1");
        assert_eq!(h.arch.as_deref(), Some("x86_64"));
        assert_eq!(h.digest_algo, 8);
        assert_eq!(h.files.len(), 2);
        assert_eq!(h.files[1].path, b"/usr/lib64/libfoo.so.1");
        assert_eq!(h.files[1].digest, b"bb");
        assert_eq!(h.files[0].flags & RPMFILE_CONFIG, RPMFILE_CONFIG);
        assert_eq!(h.files[1].mode, Some(0o100644));
        assert_eq!(h.files[1].size, Some(5));
        let mut with_magic = MAGIC.to_vec();
        with_magic.extend_from_slice(&sample());
        assert_eq!(parse(&with_magic).unwrap(), h);
    }

    #[test]
    fn lying_lengths_are_errors() {
        let mut b = sample();
        b[0..4].copy_from_slice(&0x00ff_ffffu32.to_be_bytes());
        assert_eq!(parse(&b), Err(HeaderError::TooManyEntries(0x00ff_ffff)));
        let mut b = sample();
        b[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(parse(&b), Err(HeaderError::TooMuchData(_))));
        // A string array whose count exceeds the data.
        let b = build(&[
            enc::string(TAG_NAME, "x"),
            (TAG_BASENAMES, TYPE_STRING_ARRAY, u32::MAX, b"a\0".to_vec()),
        ]);
        assert!(parse(&b).is_err());
        // A dirindex out of range.
        let b = build(&[
            enc::string(TAG_NAME, "x"),
            enc::strings(TAG_BASENAMES, &[b"a"]),
            enc::strings(TAG_DIRNAMES, &[b"/"]),
            enc::int32(TAG_DIRINDEXES, &[7]),
        ]);
        assert_eq!(
            parse(&b),
            Err(HeaderError::Inconsistent("dirindex out of range"))
        );
        assert_eq!(parse(&[0, 0, 0]), Err(HeaderError::Truncated));
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let _ = parse(&data);
        }

        #[test]
        fn truncations_and_flips_never_panic(cut in 0usize..600, at in 0usize..600, x in any::<u8>()) {
            let mut b = sample();
            if let Some(p) = b.get_mut(at) { *p ^= x; }
            b.truncate(cut);
            let _ = parse(&b);
        }
    }
}
