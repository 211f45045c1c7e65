//! What libwarden knows about one path: the unit stored in a baseline and
//! compared by `check`. Paths are raw bytes (never lossy UTF-8), as seen
//! inside `--root`.
//!
//! A record's stored value is versioned: [`ENCODING_V1`] holds the metadata
//! and digest; [`ENCODING_V2`] appends the file's [`Facts`]. Both decode (a
//! V1 value has no facts, which makes the next inspection gather them).

use std::sync::Arc;

use serde::{Serialize, Serializer};

use crate::escape;
use crate::facts::Facts;

/// The type of a file system entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileType {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
    Unknown,
}

impl FileType {
    pub fn from_mode(mode: u32) -> Self {
        match mode & crate::sys::S_IFMT {
            crate::sys::S_IFREG => FileType::File,
            crate::sys::S_IFDIR => FileType::Dir,
            crate::sys::S_IFLNK => FileType::Symlink,
            crate::sys::S_IFIFO => FileType::Fifo,
            crate::sys::S_IFSOCK => FileType::Socket,
            crate::sys::S_IFCHR => FileType::CharDevice,
            crate::sys::S_IFBLK => FileType::BlockDevice,
            _ => FileType::Unknown,
        }
    }

    fn tag(self) -> u8 {
        self as u8
    }

    fn from_tag(t: u8) -> Option<Self> {
        Some(match t {
            0 => FileType::File,
            1 => FileType::Dir,
            2 => FileType::Symlink,
            3 => FileType::Fifo,
            4 => FileType::Socket,
            5 => FileType::CharDevice,
            6 => FileType::BlockDevice,
            7 => FileType::Unknown,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            FileType::File => "file",
            FileType::Dir => "dir",
            FileType::Symlink => "symlink",
            FileType::Fifo => "fifo",
            FileType::Socket => "socket",
            FileType::CharDevice => "char_device",
            FileType::BlockDevice => "block_device",
            FileType::Unknown => "unknown",
        }
    }
}

/// What kind of loadable object a regular file is, from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileClass {
    /// Not a regular file, or not read.
    None,
    /// ELF `ET_DYN` (shared objects, PIE executables, the loader).
    ElfDyn,
    /// ELF `ET_EXEC`.
    ElfExec,
    /// ELF relocatable (kernel modules, `.o`) or other ELF types.
    ElfOther,
    /// A PE image with the DLL flag.
    PeDll,
    /// Any other PE/MZ image.
    PeExe,
    /// A regular file that is none of the above.
    Other,
}

impl FileClass {
    /// Every class, in tag order.
    pub const ALL: [FileClass; 7] = [
        FileClass::None,
        FileClass::ElfDyn,
        FileClass::ElfExec,
        FileClass::ElfOther,
        FileClass::PeDll,
        FileClass::PeExe,
        FileClass::Other,
    ];

    fn from_tag(t: u8) -> Option<Self> {
        Some(match t {
            0 => FileClass::None,
            1 => FileClass::ElfDyn,
            2 => FileClass::ElfExec,
            3 => FileClass::ElfOther,
            4 => FileClass::PeDll,
            5 => FileClass::PeExe,
            6 => FileClass::Other,
            _ => return None,
        })
    }

    /// Classifies a file from its leading bytes (the first read of a hash
    /// pass), without a second read.
    pub fn sniff(head: &[u8]) -> Self {
        if head.len() >= 18 && head.starts_with(b"\x7fELF") {
            let little = head[5] != 2;
            let e_type = if little {
                u16::from_le_bytes([head[16], head[17]])
            } else {
                u16::from_be_bytes([head[16], head[17]])
            };
            return match e_type {
                3 => FileClass::ElfDyn,
                2 => FileClass::ElfExec,
                _ => FileClass::ElfOther,
            };
        }
        if head.len() >= 64 && head.starts_with(b"MZ") {
            let off = u32::from_le_bytes([head[60], head[61], head[62], head[63]]) as usize;
            // Characteristics sit 22 bytes after the "PE\0\0" signature.
            if let Some(sig) = head.get(off..off + 24) {
                if &sig[..4] == b"PE\0\0" {
                    let ch = u16::from_le_bytes([sig[22], sig[23]]);
                    return if ch & 0x2000 != 0 {
                        FileClass::PeDll
                    } else {
                        FileClass::PeExe
                    };
                }
            }
            return FileClass::PeExe;
        }
        FileClass::Other
    }

    pub fn is_loadable(self) -> bool {
        matches!(
            self,
            FileClass::ElfDyn | FileClass::ElfExec | FileClass::ElfOther | FileClass::PeDll
        )
    }
}

/// Why a regular file has no digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unhashed {
    /// Not a regular file: nothing to hash.
    NotRegular,
    /// Permission denied or another read error.
    Unreadable,
    /// Kept changing while it was hashed, through every retry.
    Unstable,
}

/// One path's state: a shared handle on its [`RecordData`], so a copy costs
/// a reference count, not the record. A scan's record of an unchanged path
/// is the baseline's own (see `scan`): an unchanged `check` then holds the
/// records once, not a baseline set and a scan set. Fields read through
/// `Deref`; a write (`DerefMut`) copies the data first if it is shared, so a
/// handle behaves as an owned record.
#[derive(Clone, PartialEq, Eq)]
pub struct Record(Arc<RecordData>);

impl std::ops::Deref for Record {
    type Target = RecordData;
    fn deref(&self) -> &RecordData {
        &self.0
    }
}

impl std::ops::DerefMut for Record {
    fn deref_mut(&mut self) -> &mut RecordData {
        Arc::make_mut(&mut self.0)
    }
}

impl From<RecordData> for Record {
    fn from(d: RecordData) -> Record {
        Record(Arc::new(d))
    }
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for Record {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl Record {
    /// A regular file's record for unit tests: `path`, content `[h; 32]`,
    /// fixed metadata (one fixture for every module's tests).
    #[cfg(test)]
    pub fn test_file(path: &str, h: u8) -> Record {
        Record::from(RecordData {
            path: path.as_bytes().to_vec(),
            ftype: FileType::File,
            size: 1,
            mode: 0o100644,
            uid: 0,
            gid: 0,
            dev: 1,
            inode: 2,
            nlink: 1,
            mtime: (1, 0),
            ctime: (1, 0),
            blake3: Some([h; 32]),
            sha256: None,
            unhashed: None,
            target: None,
            class: FileClass::Other,
            facts: None,
        })
    }

    /// Whether two handles share one record (neither was written to since
    /// one was cloned from the other).
    pub fn shares(&self, other: &Record) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// `self`, or `prior` in its place when the two are equal: the scan
    /// keeps the baseline's record of an unchanged path instead of a copy.
    pub fn or_shared(self, prior: Option<&Record>) -> Record {
        match prior {
            Some(p) if *p == self => p.clone(),
            _ => self,
        }
    }
}

/// What a [`Record`] holds. Timestamps are (seconds, nanoseconds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecordData {
    #[serde(serialize_with = "ser_path")]
    pub path: Vec<u8>,
    #[serde(rename = "type")]
    pub ftype: FileType,
    pub size: u64,
    #[serde(serialize_with = "ser_mode")]
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub dev: u64,
    pub inode: u64,
    pub nlink: u64,
    pub mtime: (i64, u32),
    pub ctime: (i64, u32),
    #[serde(serialize_with = "ser_hash")]
    pub blake3: Option<[u8; 32]>,
    /// SHA-256 of the same bytes, when the config asks for it (`hashes =
    /// ["sha256"]`), for matching threat intelligence; computed in the
    /// same read as BLAKE3. Boxed: most baselines have none, and a record
    /// stays small without it.
    #[serde(
        serialize_with = "ser_boxed_hash",
        skip_serializing_if = "Option::is_none"
    )]
    pub sha256: Option<Box<[u8; 32]>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unhashed: Option<Unhashed>,
    #[serde(serialize_with = "ser_target", skip_serializing_if = "Option::is_none")]
    pub target: Option<Box<[u8]>>,
    pub class: FileClass,
    /// What the judges need from the content, gathered with the digest:
    /// `None` when the file was not looked at for facts (not a regular file,
    /// not hashed, a class that needs none, or a value written before facts
    /// existed). Shared, not copied, when an unchanged file's record is
    /// carried over from the baseline. Kept out of the JSON `before`/`after`
    /// records.
    #[serde(skip)]
    pub facts: Option<Arc<Facts>>,
}

fn ser_path<S: Serializer>(p: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&escape::for_json(p))
}

fn ser_mode<S: Serializer>(m: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{:04o}", m & 0o7777))
}

fn ser_hash<S: Serializer>(h: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
    match h {
        Some(h) => s.serialize_str(&escape::hex(h)),
        None => s.serialize_none(),
    }
}

fn ser_boxed_hash<S: Serializer>(h: &Option<Box<[u8; 32]>>, s: S) -> Result<S::Ok, S::Error> {
    ser_hash(&h.as_deref().copied(), s)
}

fn ser_target<S: Serializer>(t: &Option<Box<[u8]>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&escape::for_json(t)),
        None => s.serialize_none(),
    }
}

/// The last component of a path (the whole path when it has no `/`).
pub fn file_name(path: &[u8]) -> &[u8] {
    path.rsplit(|&b| b == b'/').next().unwrap_or(path)
}

impl RecordData {
    /// Permission bits (with setuid/setgid/sticky), without the type.
    pub fn perm(&self) -> u32 {
        self.mode & 0o7777
    }

    /// True when dev, inode, size, mtime and ctime all match: the content
    /// cannot have changed without one of them moving (ctime cannot be set
    /// from user space), so the old digest can be reused.
    pub fn same_identity(&self, other: &RecordData) -> bool {
        self.dev == other.dev
            && self.inode == other.inode
            && self.size == other.size
            && self.mtime == other.mtime
            && self.ctime == other.ctime
            && self.ftype == other.ftype
    }

    /// Encodes everything but the path (the store's key) in a compact,
    /// versioned binary form: [`ENCODING_V2`], or [`ENCODING_V3`] when
    /// there is a SHA-256 (so a baseline without extra digests stays
    /// readable by the builds before them).
    pub fn encode_value(&self, out: &mut Vec<u8>) {
        out.push(if self.sha256.is_some() {
            ENCODING_V3
        } else {
            ENCODING_V2
        });
        out.push(self.ftype.tag());
        out.push(self.class as u8);
        out.push(match self.unhashed {
            None => 0,
            Some(Unhashed::NotRegular) => 1,
            Some(Unhashed::Unreadable) => 2,
            Some(Unhashed::Unstable) => 3,
        });
        for v in [self.size, self.dev, self.inode, self.nlink] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [self.mode, self.uid, self.gid] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for (s, ns) in [self.mtime, self.ctime] {
            out.extend_from_slice(&s.to_le_bytes());
            out.extend_from_slice(&ns.to_le_bytes());
        }
        match &self.blake3 {
            Some(h) => {
                out.push(1);
                out.extend_from_slice(h);
            }
            None => out.push(0),
        }
        match &self.target {
            Some(t) => {
                out.push(1);
                out.extend_from_slice(&(t.len() as u32).to_le_bytes());
                out.extend_from_slice(t);
            }
            None => out.push(0),
        }
        match &self.facts {
            None => out.push(0),
            Some(f) => {
                out.push(1);
                // Length-prefixed, so the facts decode from exactly their
                // own bytes.
                let at = out.len();
                out.extend_from_slice(&[0; 4]);
                f.encode(out);
                let n = (out.len() - at - 4) as u32;
                out[at..at + 4].copy_from_slice(&n.to_le_bytes());
            }
        }
        if let Some(h) = &self.sha256 {
            out.extend_from_slice(&h[..]);
        }
    }
}

impl Record {
    /// Decodes a value written by [`RecordData::encode_value`], or by a build
    /// that wrote [`ENCODING_V1`]. `None` on any malformed input: a corrupt
    /// baseline is reported, never trusted.
    pub fn decode_value(path: &[u8], v: &[u8]) -> Option<Record> {
        let mut r = crate::facts::Cursor(v);
        let version = r.u8()?;
        if !(ENCODING_V1..=ENCODING_V3).contains(&version) {
            return None;
        }
        let ftype = FileType::from_tag(r.u8()?)?;
        let class = FileClass::from_tag(r.u8()?)?;
        let unhashed = match r.u8()? {
            0 => None,
            1 => Some(Unhashed::NotRegular),
            2 => Some(Unhashed::Unreadable),
            3 => Some(Unhashed::Unstable),
            _ => return None,
        };
        let (size, dev, inode, nlink) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?);
        let (mode, uid, gid) = (r.u32()?, r.u32()?, r.u32()?);
        let mtime = (r.i64()?, r.u32()?);
        let ctime = (r.i64()?, r.u32()?);
        let blake3 = match r.u8()? {
            0 => None,
            1 => Some(r.take(32)?.try_into().ok()?),
            _ => return None,
        };
        let target = match r.u8()? {
            0 => None,
            1 => {
                let n = r.u32()? as usize;
                Some(r.take(n)?.to_vec())
            }
            _ => return None,
        };
        let facts = match version {
            ENCODING_V1 => None,
            _ => match r.u8()? {
                0 => None,
                1 => {
                    let n = r.u32()? as usize;
                    Some(Arc::new(Facts::decode(r.take(n)?)?))
                }
                _ => return None,
            },
        };
        let sha256 = match version {
            ENCODING_V3 => Some(Box::new(r.take(32)?.try_into().ok()?)),
            _ => None,
        };
        if !r.is_empty() {
            return None;
        }
        Some(Record::from(RecordData {
            path: path.to_vec(),
            ftype,
            size,
            mode,
            uid,
            gid,
            dev,
            inode,
            nlink,
            mtime,
            ctime,
            blake3,
            sha256,
            unhashed,
            target: target.map(Vec::into_boxed_slice),
            class,
            facts,
        }))
    }
}

/// Metadata, digest, symlink target, class.
pub const ENCODING_V1: u8 = 1;
/// The bytes of a value without a digest, a link target or facts (what
/// every value holds at the least): version, type, class, unhashed; size,
/// dev, inode, nlink; mode, uid, gid; mtime, ctime; the three presence
/// bytes.
pub const VALUE_MIN_LEN: usize = 4 + 4 * 8 + 3 * 4 + 2 * (8 + 4) + 3;
/// [`ENCODING_V1`] followed by the optional, length-prefixed [`Facts`].
pub const ENCODING_V2: u8 = 2;
/// [`ENCODING_V2`] followed by the 32-byte SHA-256 of the content.
pub const ENCODING_V3: u8 = 3;

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample(path: &[u8]) -> Record {
        Record::from(RecordData {
            path: path.to_vec(),
            ftype: FileType::Symlink,
            size: 42,
            mode: 0o120777,
            uid: 0,
            gid: 0,
            dev: 2049,
            inode: 77,
            nlink: 1,
            mtime: (1_700_000_000, 5),
            ctime: (-3, 999_999_999),
            blake3: Some([7; 32]),
            sha256: None,
            unhashed: None,
            target: Some(b"libfoo.so.1.2\xff".to_vec().into()),
            class: FileClass::ElfDyn,
            facts: None,
        })
    }

    /// The sample without facts and with each sample of facts.
    fn samples(path: &[u8]) -> Vec<Record> {
        let mut out = vec![sample(path)];
        for f in crate::facts::tests::samples() {
            let mut r = sample(path);
            r.facts = Some(Arc::new(f));
            out.push(r);
        }
        out
    }

    #[test]
    fn encoding_round_trips() {
        for r in samples(b"/usr/lib/libfoo.so.1") {
            let mut v = Vec::new();
            r.encode_value(&mut v);
            assert_eq!(v[0], ENCODING_V2);
            assert_eq!(Record::decode_value(&r.path, &v), Some(r.clone()));
            // With a SHA-256: V3, and every truncation or extension refused.
            let mut r = r;
            r.sha256 = Some(Box::new([3; 32]));
            let mut v = Vec::new();
            r.encode_value(&mut v);
            assert_eq!(v[0], ENCODING_V3);
            assert_eq!(Record::decode_value(&r.path, &v), Some(r.clone()));
            for n in 0..v.len() {
                assert_eq!(Record::decode_value(&r.path, &v[..n]), None);
            }
            v.push(0);
            assert_eq!(Record::decode_value(&r.path, &v), None);
        }
    }

    #[test]
    fn no_value_is_shorter_than_the_least_the_store_counts_on() {
        let mut bare = sample(b"/x");
        bare.blake3 = None;
        bare.target = None;
        let mut v = Vec::new();
        bare.encode_value(&mut v);
        assert_eq!(v.len(), VALUE_MIN_LEN);
        for r in samples(b"/x") {
            let mut v = Vec::new();
            r.encode_value(&mut v);
            assert!(v.len() >= VALUE_MIN_LEN);
        }
    }

    #[test]
    fn truncated_or_extended_values_are_rejected() {
        for r in samples(b"/x") {
            let mut v = Vec::new();
            r.encode_value(&mut v);
            for n in 0..v.len() {
                assert_eq!(Record::decode_value(b"/x", &v[..n]), None);
            }
            v.push(0);
            assert_eq!(Record::decode_value(b"/x", &v), None);
        }
    }

    /// The value this build's predecessor wrote: V2 minus the facts byte,
    /// under the V1 tag.
    fn v1_value(r: &Record) -> Vec<u8> {
        let mut bare = r.clone();
        bare.facts = None;
        let mut v = Vec::new();
        bare.encode_value(&mut v);
        assert_eq!(v.pop(), Some(0));
        v[0] = ENCODING_V1;
        v
    }

    #[test]
    fn v1_values_still_decode_without_facts() {
        let r = sample(b"/usr/lib/libfoo.so.1");
        let v = v1_value(&r);
        assert_eq!(Record::decode_value(&r.path, &v), Some(r.clone()));
        for n in 0..v.len() {
            assert_eq!(Record::decode_value(&r.path, &v[..n]), None);
        }
        // A V1 value carries no facts section: one appended is garbage.
        let mut longer = v.clone();
        longer.push(0);
        assert_eq!(Record::decode_value(&r.path, &longer), None);
        // And an unknown version is refused.
        let mut v4 = v;
        v4[0] = 4;
        assert_eq!(Record::decode_value(&r.path, &v4), None);
    }

    #[test]
    fn facts_with_a_wrong_length_or_garbage_are_rejected() {
        let mut r = sample(b"/x");
        r.facts = Some(Arc::default());
        let mut v = Vec::new();
        r.encode_value(&mut v);
        // ... 1 (facts present), u32 length 4, four empty tags.
        let at = v.len() - 4 - 4;
        for (len, what) in [(3u32, "short"), (5, "long"), (u32::MAX, "huge")] {
            let mut bad = v.clone();
            bad[at..at + 4].copy_from_slice(&len.to_le_bytes());
            assert_eq!(Record::decode_value(b"/x", &bad), None, "{what}");
        }
        let mut bad = v.clone();
        bad[at - 1] = 2;
        assert_eq!(Record::decode_value(b"/x", &bad), None);
        let mut bad = v;
        let n = bad.len();
        bad[n - 1] = 0xee;
        assert_eq!(Record::decode_value(b"/x", &bad), None);
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(data: Vec<u8>) {
            let _ = Record::decode_value(b"/x", &data);
        }
    }

    #[test]
    fn an_equal_record_gives_way_to_the_prior_and_a_write_copies() {
        let prior = sample(b"/usr/lib/libfoo.so.1");
        let fresh = sample(b"/usr/lib/libfoo.so.1");
        assert!(!fresh.shares(&prior));
        let kept = fresh.or_shared(Some(&prior));
        assert!(kept.shares(&prior), "equal: the prior record is kept");
        let mut moved = sample(b"/usr/lib/libfoo.so.1");
        moved.nlink = 2;
        let moved = moved.or_shared(Some(&prior));
        assert!(!moved.shares(&prior), "different: today's record stays");
        assert_eq!(moved.nlink, 2);
        assert!(sample(b"/x").or_shared(None).nlink == 1);
        // Copy on write: the other handle keeps what it had.
        let mut written = kept.clone();
        written.mode = 0o100600;
        assert!(!written.shares(&prior));
        assert_eq!(prior.mode, 0o120777);
        assert_eq!(kept, prior);
    }

    #[test]
    fn sniff_classes() {
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[5] = 1;
        elf[16] = 3;
        assert_eq!(FileClass::sniff(&elf), FileClass::ElfDyn);
        assert_eq!(FileClass::sniff(b"\x7fELF"), FileClass::Other);
        assert_eq!(FileClass::sniff(b"hello"), FileClass::Other);
    }
}
