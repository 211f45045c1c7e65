//! A minimal writer of registry hive files (`regf`) for test fixtures: one
//! hive bin, `nk` keys with sorted `lh` subkey lists, `vk` values with
//! inline, plain or big (`db`) data. The library's unit tests include this
//! same file, and the integration tests prove its output valid by reading
//! it back with `hivexsh` (Debian `libhivex-bin`) when installed.

#![allow(dead_code)]

pub const REG_SZ: u32 = 1;
pub const REG_EXPAND_SZ: u32 = 2;
pub const REG_BINARY: u32 = 3;
pub const REG_DWORD: u32 = 4;
pub const REG_MULTI_SZ: u32 = 7;
pub const REG_QWORD: u32 = 11;

const NONE: u32 = 0xffff_ffff;
const SEGMENT: usize = 16344;

/// Builds a hive bottom-up: keys are written children first.
pub struct Writer {
    /// The hive bins area; offset 0 is the first hbin header.
    bin: Vec<u8>,
}

impl Default for Writer {
    fn default() -> Self {
        Self::new()
    }
}

impl Writer {
    pub fn new() -> Writer {
        let mut bin = Vec::new();
        bin.extend_from_slice(b"hbin");
        bin.extend_from_slice(&0u32.to_le_bytes()); // offset of this bin
        bin.extend_from_slice(&0u32.to_le_bytes()); // size, patched in finish
        bin.extend_from_slice(&[0; 20]);
        Writer { bin }
    }

    fn alloc(&mut self, data: &[u8]) -> u32 {
        let off = self.bin.len() as u32;
        let size = (4 + data.len()).div_ceil(8) * 8;
        self.bin.extend_from_slice(&(-(size as i32)).to_le_bytes());
        self.bin.extend_from_slice(data);
        self.bin.resize(off as usize + size, 0);
        off
    }

    fn put_u32(&mut self, cell: u32, field: usize, v: u32) {
        let at = cell as usize + 4 + field;
        self.bin[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn value(&mut self, name: &str, kind: u32, data: &[u8]) -> u32 {
        let (size, data_off) = if data.len() <= 4 {
            let mut inline = [0u8; 4];
            inline[..data.len()].copy_from_slice(data);
            (data.len() as u32 | 0x8000_0000, u32::from_le_bytes(inline))
        } else if data.len() > SEGMENT {
            let segs: Vec<u32> = data.chunks(SEGMENT).map(|c| self.alloc(c)).collect();
            let list: Vec<u8> = segs.iter().flat_map(|s| s.to_le_bytes()).collect();
            let list = self.alloc(&list);
            let mut db = b"db".to_vec();
            db.extend_from_slice(&(segs.len() as u16).to_le_bytes());
            db.extend_from_slice(&list.to_le_bytes());
            db.extend_from_slice(&0u32.to_le_bytes());
            (data.len() as u32, self.alloc(&db))
        } else {
            (data.len() as u32, self.alloc(data))
        };
        let mut vk = b"vk".to_vec();
        vk.extend_from_slice(&(name.len() as u16).to_le_bytes());
        vk.extend_from_slice(&size.to_le_bytes());
        vk.extend_from_slice(&data_off.to_le_bytes());
        vk.extend_from_slice(&kind.to_le_bytes());
        vk.extend_from_slice(&1u16.to_le_bytes()); // ASCII name
        vk.extend_from_slice(&0u16.to_le_bytes());
        vk.extend_from_slice(name.as_bytes());
        self.alloc(&vk)
    }

    /// Writes a key with already written `children` (nk offsets) and its
    /// values; returns its offset. Names are ASCII.
    pub fn key(&mut self, name: &str, children: &[u32], values: &[(&str, u32, Vec<u8>)]) -> u32 {
        let vals: Vec<u32> = values
            .iter()
            .map(|(n, k, d)| self.value(n, *k, d))
            .collect();
        let val_list = if vals.is_empty() {
            NONE
        } else {
            let b: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
            self.alloc(&b)
        };
        // Windows binary-searches subkey lists: sorted by upper-case name.
        let mut kids: Vec<(String, u32)> = children
            .iter()
            .map(|&c| (self.name_of(c).to_ascii_uppercase(), c))
            .collect();
        kids.sort();
        let sub_list = if kids.is_empty() {
            NONE
        } else {
            let mut lh = b"lh".to_vec();
            lh.extend_from_slice(&(kids.len() as u16).to_le_bytes());
            for (n, c) in &kids {
                lh.extend_from_slice(&c.to_le_bytes());
                let h = n
                    .bytes()
                    .fold(0u32, |h, b| h.wrapping_mul(37).wrapping_add(b as u32));
                lh.extend_from_slice(&h.to_le_bytes());
            }
            self.alloc(&lh)
        };
        let max_sub = kids.iter().map(|(n, _)| n.len() * 2).max().unwrap_or(0) as u32;
        let max_vname = values.iter().map(|v| v.0.len() * 2).max().unwrap_or(0) as u32;
        let max_vdata = values.iter().map(|v| v.2.len()).max().unwrap_or(0) as u32;
        let mut nk = b"nk".to_vec();
        nk.extend_from_slice(&0x20u16.to_le_bytes()); // ASCII name
        nk.extend_from_slice(&0x01d9_0000_0000_0000u64.to_le_bytes()); // time
        nk.extend_from_slice(&0u32.to_le_bytes()); // access bits
        nk.extend_from_slice(&0u32.to_le_bytes()); // parent, patched below
        nk.extend_from_slice(&(kids.len() as u32).to_le_bytes());
        nk.extend_from_slice(&0u32.to_le_bytes());
        nk.extend_from_slice(&sub_list.to_le_bytes());
        nk.extend_from_slice(&NONE.to_le_bytes());
        nk.extend_from_slice(&(vals.len() as u32).to_le_bytes());
        nk.extend_from_slice(&val_list.to_le_bytes());
        nk.extend_from_slice(&NONE.to_le_bytes()); // security
        nk.extend_from_slice(&NONE.to_le_bytes()); // class
        for v in [max_sub, 0, max_vname, max_vdata, 0] {
            nk.extend_from_slice(&v.to_le_bytes());
        }
        nk.extend_from_slice(&(name.len() as u16).to_le_bytes());
        nk.extend_from_slice(&0u16.to_le_bytes());
        nk.extend_from_slice(name.as_bytes());
        let me = self.alloc(&nk);
        for (_, c) in kids {
            self.put_u32(c, 16, me);
        }
        me
    }

    fn name_of(&self, nk: u32) -> String {
        let at = nk as usize + 4;
        let len = u16::from_le_bytes([self.bin[at + 72], self.bin[at + 73]]) as usize;
        String::from_utf8_lossy(&self.bin[at + 76..at + 76 + len]).into_owned()
    }

    /// The whole file, with `root` as the root key.
    pub fn finish(mut self, root: u32) -> Vec<u8> {
        // Root flags: hive entry, no delete, ASCII name.
        let at = root as usize + 4 + 2;
        self.bin[at..at + 2].copy_from_slice(&0x2cu16.to_le_bytes());
        // Fill the bin to a 4 KiB multiple with one free cell.
        let used = self.bin.len();
        let total = used.div_ceil(4096) * 4096;
        if total > used {
            let free = (total - used) as i32;
            self.bin.extend_from_slice(&free.to_le_bytes());
            self.bin.resize(total, 0);
        }
        let size = self.bin.len() as u32;
        self.bin[8..12].copy_from_slice(&size.to_le_bytes());
        let mut base = vec![0u8; 4096];
        base[..4].copy_from_slice(b"regf");
        for (o, v) in [
            (4, 1u32),
            (8, 1),
            (20, 1),
            (24, 5),
            (28, 0),
            (32, 1),
            (36, root),
            (40, size),
            (44, 1),
        ] {
            base[o..o + 4].copy_from_slice(&v.to_le_bytes());
        }
        let mut sum = 0u32;
        for i in 0..127 {
            sum ^= u32::from_le_bytes(base[i * 4..i * 4 + 4].try_into().unwrap_or([0; 4]));
        }
        let sum = match sum {
            0 => 1,
            0xffff_ffff => 0xffff_fffe,
            s => s,
        };
        base[508..512].copy_from_slice(&sum.to_le_bytes());
        base.extend(self.bin);
        base
    }
}

/// A key tree to write in one go.
#[derive(Clone, Debug, Default)]
pub struct Node {
    pub name: String,
    pub values: Vec<(String, u32, Vec<u8>)>,
    pub children: Vec<Node>,
}

impl Node {
    pub fn new(name: &str) -> Node {
        Node {
            name: name.to_string(),
            ..Node::default()
        }
    }

    /// The key at a backslash path below this one, created as needed.
    pub fn at(&mut self, path: &str) -> &mut Node {
        let mut n = self;
        for part in path.split('\\').filter(|p| !p.is_empty()) {
            let i = match n
                .children
                .iter()
                .position(|c| c.name.eq_ignore_ascii_case(part))
            {
                Some(i) => i,
                None => {
                    n.children.push(Node::new(part));
                    n.children.len() - 1
                }
            };
            n = &mut n.children[i];
        }
        n
    }

    /// Sets (replaces) a value.
    pub fn set(&mut self, name: &str, kind: u32, data: Vec<u8>) -> &mut Node {
        self.values.retain(|v| !v.0.eq_ignore_ascii_case(name));
        self.values.push((name.to_string(), kind, data));
        self
    }

    pub fn sz(&mut self, name: &str, s: &str) -> &mut Node {
        self.set(name, REG_SZ, wide(s))
    }

    pub fn dword(&mut self, name: &str, v: u32) -> &mut Node {
        self.set(name, REG_DWORD, v.to_le_bytes().to_vec())
    }

    pub fn multi(&mut self, name: &str, items: &[&str]) -> &mut Node {
        let mut d = Vec::new();
        for i in items {
            d.extend(wide(i));
        }
        d.extend_from_slice(&[0, 0]);
        self.set(name, REG_MULTI_SZ, d)
    }

    pub fn remove(&mut self, name: &str) -> &mut Node {
        self.values.retain(|v| !v.0.eq_ignore_ascii_case(name));
        self
    }

    fn write(&self, w: &mut Writer) -> u32 {
        let kids: Vec<u32> = self.children.iter().map(|c| c.write(w)).collect();
        let vals: Vec<(&str, u32, Vec<u8>)> = self
            .values
            .iter()
            .map(|(n, k, d)| (n.as_str(), *k, d.clone()))
            .collect();
        w.key(&self.name, &kids, &vals)
    }

    /// The hive file with this node as its root.
    pub fn to_hive(&self) -> Vec<u8> {
        let mut w = Writer::new();
        let root = self.write(&mut w);
        w.finish(root)
    }
}

/// UTF-16LE with a terminating NUL, as REG_SZ stores text.
pub fn wide(s: &str) -> Vec<u8> {
    let mut v: Vec<u8> = s.encode_utf16().flat_map(u16::to_le_bytes).collect();
    v.extend_from_slice(&[0, 0]);
    v
}
