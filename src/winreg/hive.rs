//! A bounded, read-only parser of Windows registry hive files (the `regf`
//! format of `Windows/System32/config/SYSTEM`, `SOFTWARE`, ...).
//!
//! Only what the audit needs: the base block, cells inside the hive bins,
//! key nodes (`nk`), value nodes (`vk`), subkey lists (`lf`, `lh`, `li`,
//! `ri`), value lists and big data (`db`). Every offset is checked against
//! the buffer and every count against what the bytes can hold, so any
//! input, truncated or hostile, gives an error and never a panic. The
//! parser never follows a structure recursively beyond a fixed depth, and
//! lookups go by name, so a cyclic hive cannot loop.

use std::fmt;

/// The base block is 4096 bytes; cell offsets count from its end.
const BASE: usize = 4096;
/// Data larger than this is split into `db` segments (hive version 1.4+).
const BIG_DATA_SEGMENT: usize = 16344;
/// The most value data returned for one value (hostile sizes stop here).
pub const MAX_VALUE_DATA: usize = 16 << 20;
/// The most value data read of one key, all values together.
const MAX_KEY_DATA: usize = 64 << 20;
/// The most subkeys or values read from one list.
const MAX_LIST: usize = 1 << 20;

pub const REG_NONE: u32 = 0;
pub const REG_SZ: u32 = 1;
pub const REG_EXPAND_SZ: u32 = 2;
pub const REG_BINARY: u32 = 3;
pub const REG_DWORD: u32 = 4;
pub const REG_DWORD_BIG_ENDIAN: u32 = 5;
pub const REG_MULTI_SZ: u32 = 7;
pub const REG_QWORD: u32 = 11;

/// Why a hive (or a part of it) could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HiveError {
    /// Not a `regf` file, or a base block too short.
    NotAHive,
    /// An offset or a length points outside the file.
    OutOfBounds(usize),
    /// A cell has the wrong signature or an impossible size.
    BadCell(usize, &'static str),
}

impl fmt::Display for HiveError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            HiveError::NotAHive => f.write_str("not a registry hive (no regf base block)"),
            HiveError::OutOfBounds(o) => write!(f, "offset {o:#x} outside the hive"),
            HiveError::BadCell(o, why) => write!(f, "bad cell at {o:#x}: {why}"),
        }
    }
}

impl std::error::Error for HiveError {}

type Result<T> = std::result::Result<T, HiveError>;

/// A hive file in memory.
pub struct Hive<'a> {
    data: &'a [u8],
    root: u32,
    minor: u32,
}

/// A key node, by its cell offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key(u32);

/// One value of a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value {
    pub name: String,
    pub kind: u32,
    pub data: Vec<u8>,
}

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(o..o.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(o..o.checked_add(4)?)?.try_into().ok()?,
    ))
}

impl<'a> Hive<'a> {
    /// Checks the base block. The checksum and sequence numbers are not
    /// required to match: a hive copied from a running system is often
    /// "dirty", and its cells are still what the system reads.
    pub fn parse(data: &'a [u8]) -> Result<Hive<'a>> {
        if data.len() < BASE || !data.starts_with(b"regf") {
            return Err(HiveError::NotAHive);
        }
        let root = u32_at(data, 36).ok_or(HiveError::NotAHive)?;
        let minor = u32_at(data, 24).ok_or(HiveError::NotAHive)?;
        let h = Hive { data, root, minor };
        h.nk(Key(root))?;
        Ok(h)
    }

    /// The root key.
    pub fn root(&self) -> Key {
        Key(self.root)
    }

    /// The data of the allocated cell at `off` (without its size field).
    fn cell(&self, off: u32) -> Result<&'a [u8]> {
        let at = (off as usize)
            .checked_add(BASE)
            .ok_or(HiveError::OutOfBounds(off as usize))?;
        let size = u32_at(self.data, at).ok_or(HiveError::OutOfBounds(at))? as i32;
        // Allocated cells have a negative size; a free cell is never a
        // target of a live offset, but a hive may lie: read it anyway if
        // its bounds hold.
        let len = size.unsigned_abs() as usize;
        if len < 4 {
            return Err(HiveError::BadCell(at, "size below 4"));
        }
        let end = at.checked_add(len).ok_or(HiveError::OutOfBounds(at))?;
        self.data
            .get(at + 4..end)
            .ok_or(HiveError::OutOfBounds(end))
    }

    fn nk(&self, k: Key) -> Result<&'a [u8]> {
        let c = self.cell(k.0)?;
        if c.len() < 76 || !c.starts_with(b"nk") {
            return Err(HiveError::BadCell(k.0 as usize + BASE, "not a key node"));
        }
        Ok(c)
    }

    /// The key's name.
    pub fn key_name(&self, k: Key) -> Result<String> {
        let c = self.nk(k)?;
        let flags = u16_at(c, 2).unwrap_or(0);
        let len = u16_at(c, 72).unwrap_or(0) as usize;
        let raw = c
            .get(76..76 + len)
            .ok_or(HiveError::BadCell(k.0 as usize, "name past the cell"))?;
        Ok(decode_name(raw, flags & 0x20 != 0))
    }

    /// The key's last-write time (a Windows FILETIME).
    pub fn key_time(&self, k: Key) -> Result<u64> {
        let c = self.nk(k)?;
        Ok(u32_at(c, 4).unwrap_or(0) as u64 | (u32_at(c, 8).unwrap_or(0) as u64) << 32)
    }

    /// The key's subkeys, in the hive's order.
    pub fn subkeys(&self, k: Key) -> Result<Vec<Key>> {
        let c = self.nk(k)?;
        let n = u32_at(c, 20).unwrap_or(0) as usize;
        if n == 0 {
            return Ok(Vec::new());
        }
        let list = u32_at(c, 28).unwrap_or(u32::MAX);
        let mut out = Vec::new();
        self.collect_list(list, 0, &mut out)?;
        Ok(out)
    }

    fn collect_list(&self, off: u32, depth: u32, out: &mut Vec<Key>) -> Result<()> {
        let c = self.cell(off)?;
        let sig = c
            .get(..2)
            .ok_or(HiveError::BadCell(off as usize, "short list"))?;
        let n = u16_at(c, 2).unwrap_or(0) as usize;
        let (stride, nested) = match sig {
            b"lf" | b"lh" => (8, false),
            b"li" => (4, false),
            b"ri" if depth == 0 => (4, true),
            _ => return Err(HiveError::BadCell(off as usize, "not a subkey list")),
        };
        for i in 0..n {
            if out.len() >= MAX_LIST {
                break;
            }
            let Some(o) = u32_at(c, 4 + i * stride) else {
                return Err(HiveError::BadCell(off as usize, "list past the cell"));
            };
            if nested {
                self.collect_list(o, depth + 1, out)?;
            } else {
                out.push(Key(o));
            }
        }
        Ok(())
    }

    /// The subkey named `name` (ASCII case-insensitive, as Windows compares).
    pub fn subkey(&self, k: Key, name: &str) -> Result<Option<Key>> {
        for s in self.subkeys(k)? {
            // A damaged sibling does not hide a good one.
            if let Ok(n) = self.key_name(s) {
                if n.eq_ignore_ascii_case(name) {
                    return Ok(Some(s));
                }
            }
        }
        Ok(None)
    }

    /// Follows a backslash-separated path from the root.
    pub fn open(&self, path: &str) -> Result<Option<Key>> {
        let mut k = self.root();
        for part in path.split('\\').filter(|p| !p.is_empty()) {
            match self.subkey(k, part)? {
                Some(s) => k = s,
                None => return Ok(None),
            }
        }
        Ok(Some(k))
    }

    /// The key's values, in the hive's order. A value whose node or data
    /// is damaged is skipped.
    pub fn values(&self, k: Key) -> Result<Vec<Value>> {
        let c = self.nk(k)?;
        let n = (u32_at(c, 36).unwrap_or(0) as usize).min(MAX_LIST);
        if n == 0 {
            return Ok(Vec::new());
        }
        let list = self.cell(u32_at(c, 40).unwrap_or(u32::MAX))?;
        let mut out = Vec::new();
        // Every entry may point at the same huge value: bound the total.
        let mut budget = MAX_KEY_DATA;
        for i in 0..n {
            let Some(o) = u32_at(list, i * 4) else { break };
            if let Ok(v) = self.value_at(o) {
                if v.data.len() > budget {
                    return Err(HiveError::BadCell(
                        o as usize,
                        "values of one key too large",
                    ));
                }
                budget -= v.data.len();
                out.push(v);
            }
        }
        Ok(out)
    }

    /// The value named `name` (case-insensitive; "" is the default value).
    pub fn value(&self, k: Key, name: &str) -> Result<Option<Value>> {
        Ok(self
            .values(k)?
            .into_iter()
            .find(|v| v.name.eq_ignore_ascii_case(name)))
    }

    fn value_at(&self, off: u32) -> Result<Value> {
        let c = self.cell(off)?;
        if c.len() < 20 || !c.starts_with(b"vk") {
            return Err(HiveError::BadCell(off as usize, "not a value node"));
        }
        let name_len = u16_at(c, 2).unwrap_or(0) as usize;
        let size = u32_at(c, 4).unwrap_or(0);
        let data_off = u32_at(c, 8).unwrap_or(0);
        let kind = u32_at(c, 12).unwrap_or(0);
        let flags = u16_at(c, 16).unwrap_or(0);
        let raw_name = c
            .get(20..20 + name_len)
            .ok_or(HiveError::BadCell(off as usize, "value name past the cell"))?;
        let name = decode_name(raw_name, flags & 1 != 0);
        let data = if size & 0x8000_0000 != 0 {
            // Up to four bytes live in the offset field itself.
            let n = ((size & 0x7fff_ffff) as usize).min(4);
            data_off.to_le_bytes()[..n].to_vec()
        } else {
            let n = size as usize;
            if n > MAX_VALUE_DATA {
                return Err(HiveError::BadCell(off as usize, "value data too large"));
            }
            if n == 0 {
                Vec::new()
            } else {
                self.data_at(data_off, n)?
            }
        };
        Ok(Value { name, kind, data })
    }

    fn data_at(&self, off: u32, n: usize) -> Result<Vec<u8>> {
        let c = self.cell(off)?;
        if n > BIG_DATA_SEGMENT && self.minor >= 4 && c.starts_with(b"db") {
            let segs = u16_at(c, 2).unwrap_or(0) as usize;
            let list = self.cell(u32_at(c, 4).unwrap_or(u32::MAX))?;
            let mut out = Vec::with_capacity(n.min(MAX_VALUE_DATA));
            for i in 0..segs {
                let Some(o) = u32_at(list, i * 4) else {
                    return Err(HiveError::BadCell(off as usize, "segment list short"));
                };
                let seg = self.cell(o)?;
                let take = (n - out.len()).min(BIG_DATA_SEGMENT).min(seg.len());
                out.extend_from_slice(&seg[..take]);
                if out.len() >= n {
                    break;
                }
            }
            if out.len() < n {
                return Err(HiveError::BadCell(off as usize, "big data short"));
            }
            return Ok(out);
        }
        c.get(..n)
            .map(<[u8]>::to_vec)
            .ok_or(HiveError::BadCell(off as usize, "value data past the cell"))
    }
}

/// Names are Latin-1 when "compressed", UTF-16LE otherwise.
fn decode_name(raw: &[u8], compressed: bool) -> String {
    if compressed {
        raw.iter().map(|&b| b as char).collect()
    } else {
        utf16(raw)
    }
}

/// UTF-16LE bytes to a string, lossily; an odd last byte is dropped.
pub fn utf16(raw: &[u8]) -> String {
    let units: Vec<u16> = raw
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

impl Value {
    /// A REG_SZ / REG_EXPAND_SZ as text, up to its first NUL. Other types
    /// give `None`.
    pub fn string(&self) -> Option<String> {
        match self.kind {
            REG_SZ | REG_EXPAND_SZ => {
                let s = utf16(&self.data);
                Some(s.split('\0').next().unwrap_or("").to_string())
            }
            _ => None,
        }
    }

    /// A REG_MULTI_SZ as its strings (empty ones dropped); a REG_SZ as one
    /// string. Windows reads both for the package lists.
    pub fn strings(&self) -> Option<Vec<String>> {
        match self.kind {
            REG_MULTI_SZ | REG_SZ | REG_EXPAND_SZ => Some(
                utf16(&self.data)
                    .split('\0')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
            ),
            _ => None,
        }
    }

    /// A REG_DWORD (or big-endian DWORD, or QWORD) as a number.
    pub fn number(&self) -> Option<u64> {
        let d = &self.data;
        match self.kind {
            REG_DWORD if d.len() >= 4 => Some(u32_at(d, 0)? as u64),
            REG_DWORD_BIG_ENDIAN if d.len() >= 4 => {
                Some(u32::from_be_bytes(d.get(..4)?.try_into().ok()?) as u64)
            }
            REG_QWORD if d.len() >= 8 => Some(u64::from_le_bytes(d.get(..8)?.try_into().ok()?)),
            _ => None,
        }
    }

    /// A short human rendering of the data for a detail sentence.
    pub fn display(&self) -> String {
        if let Some(n) = self.number() {
            return n.to_string();
        }
        match self.kind {
            REG_MULTI_SZ => self.strings().unwrap_or_default().join(" "),
            REG_SZ | REG_EXPAND_SZ => self.string().unwrap_or_default(),
            _ => {
                let hex: String = self
                    .data
                    .iter()
                    .take(32)
                    .map(|b| format!("{b:02x}"))
                    .collect();
                if self.data.len() > 32 {
                    format!("{hex}…")
                } else {
                    hex
                }
            }
        }
    }
}

/// The name of a value type.
pub fn type_name(kind: u32) -> &'static str {
    match kind {
        REG_NONE => "REG_NONE",
        REG_SZ => "REG_SZ",
        REG_EXPAND_SZ => "REG_EXPAND_SZ",
        REG_BINARY => "REG_BINARY",
        REG_DWORD => "REG_DWORD",
        REG_DWORD_BIG_ENDIAN => "REG_DWORD_BIG_ENDIAN",
        REG_MULTI_SZ => "REG_MULTI_SZ",
        REG_QWORD => "REG_QWORD",
        _ => "REG_other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny hive: root "ROOT" with one subkey "Sub" holding values.
    pub(crate) fn tiny() -> Vec<u8> {
        let mut w = crate::winreg::testwriter::Writer::new();
        let sub = w.key(
            "Sub",
            &[],
            &[
                ("Dword", REG_DWORD, 7u32.to_le_bytes().to_vec()),
                ("Text", REG_SZ, wide("hello")),
                ("Multi", REG_MULTI_SZ, multi(&["a", "b"])),
                ("Big", REG_BINARY, vec![0xab; 40_000]),
            ],
        );
        let root = w.key("ROOT", &[sub], &[]);
        w.finish(root)
    }

    pub(crate) fn wide(s: &str) -> Vec<u8> {
        let mut v: Vec<u8> = s.encode_utf16().flat_map(u16::to_le_bytes).collect();
        v.extend_from_slice(&[0, 0]);
        v
    }

    fn multi(items: &[&str]) -> Vec<u8> {
        let mut v = Vec::new();
        for i in items {
            v.extend(wide(i));
        }
        v.extend_from_slice(&[0, 0]);
        v
    }

    #[test]
    fn reads_keys_and_values() {
        let bytes = tiny();
        let h = Hive::parse(&bytes).unwrap();
        assert_eq!(h.key_name(h.root()).unwrap(), "ROOT");
        let k = h.open("sub").unwrap().unwrap();
        assert_eq!(h.value(k, "dword").unwrap().unwrap().number(), Some(7));
        assert_eq!(
            h.value(k, "Text").unwrap().unwrap().string().as_deref(),
            Some("hello")
        );
        assert_eq!(
            h.value(k, "Multi").unwrap().unwrap().strings(),
            Some(vec!["a".to_string(), "b".to_string()])
        );
        assert_eq!(h.value(k, "Big").unwrap().unwrap().data, vec![0xab; 40_000]);
        assert_eq!(h.open("Sub\\Missing").unwrap(), None);
    }

    #[test]
    fn not_a_hive() {
        assert_eq!(Hive::parse(b"regf").err(), Some(HiveError::NotAHive));
        assert_eq!(Hive::parse(&[0; 8192]).err(), Some(HiveError::NotAHive));
    }

    #[test]
    fn every_truncation_is_an_error_or_a_read() {
        let bytes = tiny();
        for n in (0..bytes.len()).step_by(97) {
            if let Ok(h) = Hive::parse(&bytes[..n]) {
                let _ = h.open("Sub").map(|k| k.map(|k| h.values(k)));
            }
        }
    }

    fn walk(h: &Hive, k: Key, depth: u32) {
        if depth > 4 {
            return;
        }
        let _ = h.key_name(k);
        let _ = h.key_time(k);
        if let Ok(vs) = h.values(k) {
            for v in vs {
                let _ = (v.display(), v.strings(), v.number());
            }
        }
        if let Ok(subs) = h.subkeys(k) {
            for s in subs.into_iter().take(8) {
                walk(h, s, depth + 1);
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(body in proptest::collection::vec(proptest::num::u8::ANY, 0..9000)) {
            let mut b = b"regf".to_vec();
            b.extend(body);
            if let Ok(h) = Hive::parse(&b) {
                walk(&h, h.root(), 0);
            }
        }

        #[test]
        fn flipped_bytes_never_panic(
            flips in proptest::collection::vec((0usize..80_000, proptest::num::u8::ANY), 1..16),
            cut in 0usize..80_000,
        ) {
            let mut b = tiny();
            for (at, v) in flips {
                let n = b.len();
                b[at % n] = v;
            }
            b.truncate(cut.max(4096));
            if let Ok(h) = Hive::parse(&b) {
                walk(&h, h.root(), 0);
            }
        }
    }
}

#[cfg(test)]
mod hostile {
    use super::*;

    /// A key whose 60 000 values all point at one 16 MB value: refused,
    /// not 960 GB allocated.
    #[test]
    fn many_values_sharing_one_big_value_are_bounded() {
        let mut w = crate::winreg::testwriter::Writer::new();
        let big = vec![1u8; 1 << 20];
        let k = w.key("K", &[], &[("v", REG_BINARY, big)]);
        let mut bytes = w.finish(k);
        // Point the key's value list at a list of 60 000 copies of its
        // one value offset, appended as a new cell.
        let h = Hive::parse(&bytes).unwrap();
        let nk = h.nk(h.root()).unwrap();
        let list = u32_at(nk, 40).unwrap();
        let vk = u32_at(h.cell(list).unwrap(), 0).unwrap();
        let n = 60_000u32;
        let at = bytes.len() - BASE;
        let size = (4 + 4 * n as usize).div_ceil(8) * 8;
        bytes.extend_from_slice(&(-(size as i32)).to_le_bytes());
        for _ in 0..n {
            bytes.extend_from_slice(&vk.to_le_bytes());
        }
        bytes.resize(BASE + at + size, 0);
        let root = BASE + u32_at(&bytes, 36).unwrap() as usize + 4;
        bytes[root + 36..root + 40].copy_from_slice(&n.to_le_bytes());
        bytes[root + 40..root + 44].copy_from_slice(&(at as u32).to_le_bytes());
        let h = Hive::parse(&bytes).unwrap();
        assert!(h.values(h.root()).is_err());
    }
}
