//! How much of a layer member is held in memory while it streams past, to
//! give the same facts as the whole file would with the least bytes held.
//! The first bytes decide ([`crate::inspect::fact_bytes`]): a file whose
//! facts need none of them (data, archives, a PE) keeps only those; a
//! loader, a module or a unit is held whole (up to
//! [`super::FACTS_CAP`]); a larger ELF object keeps its first
//! [`SPARSE_HEAD`] bytes and then only the ranges the ELF parser asks for
//! (its dynamic segment, the strings it names), captured as the stream
//! reaches them. The parser is re-run on what is held until it reads
//! nothing it lacks: then its result is the whole file's, and holding
//! stops. A range it asks for that has already streamed past (a layout
//! no linker writes) makes the ELF fact `Unparsable` with a warning, never
//! silently partial.

use std::cell::RefCell;

use crate::facts::{ElfFact, Facts};
use crate::formats::elf::ReadAt;
use crate::inspect::{self, FactBytes};
use crate::record::FileClass;

/// Bytes of a large ELF object held from its start: its headers and, for
/// every layout the common linkers write, its dynamic strings.
pub const SPARSE_HEAD: usize = 1 << 20;
/// Below this an ELF object is held whole (ranges would save little).
const SPARSE_MIN: u64 = 2 << 20;
/// Parser runs on one object before giving up on holding it in ranges.
const MAX_ROUNDS: usize = 64;

// One lives per member while it streams: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Mode {
    /// Until the first bytes say what the file is.
    Undecided,
    Head,
    All,
    Ranges {
        /// (offset, bytes captured so far, length wanted).
        ranges: Vec<(u64, Vec<u8>, usize)>,
        /// The facts, once the parser read only what is held.
        done: Option<Option<Facts>>,
        /// A range the parser wanted had streamed past unheld.
        lost: bool,
    },
}

/// One member's holding, fed its chunks in order.
pub struct Holding<'p> {
    path: &'p [u8],
    size: u64,
    keep: bool,
    pos: u64,
    mode: Mode,
    class: FileClass,
}

/// What is held, read at offsets; reads of anything else are recorded.
struct Probe<'a> {
    head: &'a [u8],
    ranges: &'a [(u64, Vec<u8>, usize)],
    size: u64,
    missed: RefCell<Vec<(u64, usize)>>,
}

impl ReadAt for Probe<'_> {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_exact_at(&self, off: u64, buf: &mut [u8]) -> bool {
        if self.head.read_exact_at(off, buf) {
            return true;
        }
        for (o, b, _) in self.ranges {
            if off >= *o && b.as_slice().read_exact_at(off - o, buf) {
                return true;
            }
        }
        let fits = off
            .checked_add(buf.len() as u64)
            .is_some_and(|e| e <= self.size);
        if fits {
            self.missed.borrow_mut().push((off, buf.len()));
        }
        false
    }
}

impl<'p> Holding<'p> {
    /// `keep`: the bytes are kept afterwards too (small files under
    /// `/etc`), so all of them are held.
    pub fn new(path: &'p [u8], size: u64, keep: bool) -> Holding<'p> {
        Holding {
            path,
            size,
            keep,
            pos: 0,
            mode: if size > super::FACTS_CAP && !keep {
                Mode::Head
            } else {
                Mode::Undecided
            },
            class: FileClass::Other,
        }
    }

    /// The next chunk of the member; `held` is the buffer of its first
    /// bytes (cleared by the caller before the first chunk).
    pub fn feed(&mut self, chunk: &[u8], held: &mut Vec<u8>) {
        let start = self.pos;
        self.pos += chunk.len() as u64;
        let mut rest = chunk;
        if matches!(self.mode, Mode::Undecided) {
            let take = super::HEAD.saturating_sub(held.len()).min(rest.len());
            held.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if held.len() >= super::HEAD || self.pos >= self.size {
                self.decide(held);
            }
        }
        let cap = match &self.mode {
            Mode::Head => super::HEAD,
            // What is kept was bounded by its caller (a package database
            // may be larger than the facts' cap).
            Mode::Undecided | Mode::All if self.keep => {
                usize::try_from(self.size).unwrap_or(usize::MAX)
            }
            Mode::Undecided | Mode::All => super::FACTS_CAP as usize,
            Mode::Ranges { .. } => SPARSE_HEAD,
        };
        let room = cap.saturating_sub(held.len());
        held.extend_from_slice(&rest[..rest.len().min(room)]);
        if let Mode::Ranges { ranges, .. } = &mut self.mode {
            for (off, b, len) in ranges.iter_mut() {
                fill(*off, b, *len, held, chunk, start);
            }
        }
        self.settle(held, chunk, start);
    }

    fn decide(&mut self, held: &mut Vec<u8>) {
        self.class = FileClass::sniff(&held[..held.len().min(super::HEAD)]);
        self.mode = match (self.keep, inspect::fact_bytes(self.path, self.class)) {
            (true, _) | (false, FactBytes::All) => Mode::All,
            (false, FactBytes::Head) => {
                held.truncate(super::HEAD);
                held.shrink_to(super::HEAD.max(1 << 16));
                Mode::Head
            }
            (false, FactBytes::Ranges) if self.size >= SPARSE_MIN => Mode::Ranges {
                ranges: Vec::new(),
                done: None,
                lost: false,
            },
            (false, FactBytes::Ranges) => Mode::All,
        };
    }

    /// With the head held and every wanted range complete, runs the
    /// parser on what is held; what it lacked becomes the next ranges.
    fn settle(&mut self, held: &[u8], chunk: &[u8], start: u64) {
        let Mode::Ranges { ranges, done, lost } = &mut self.mode else {
            return;
        };
        let mut rounds = 0;
        while done.is_none()
            && (held.len() >= SPARSE_HEAD || self.pos >= self.size)
            && ranges.iter().all(|(_, b, len)| b.len() == *len)
        {
            let probe = Probe {
                head: held,
                ranges,
                size: self.size,
                missed: RefCell::new(Vec::new()),
            };
            let facts = inspect::facts_at(self.path, self.class, &probe);
            let missed = probe.missed.into_inner();
            if missed.is_empty() {
                *done = Some(facts);
                ranges.clear();
                ranges.shrink_to_fit();
                return;
            }
            for (off, len) in missed {
                let mut b = Vec::with_capacity(len);
                fill(off, &mut b, len, held, chunk, start);
                // Not complete and not to come: streamed past unheld.
                if b.len() < len && off + (b.len() as u64) < self.pos {
                    *lost = true;
                }
                ranges.push((off, b, len));
            }
            rounds += 1;
            // The parser's reads are bounded; this many rounds is a file
            // built to make it chase its own tail.
            if rounds > MAX_ROUNDS {
                *lost = true;
            }
            if *lost {
                *done = Some(facts);
                return;
            }
        }
    }

    /// The class and facts of the member, once every chunk was fed, and a
    /// warning when its ELF fact could not be had from what was held.
    pub fn finish(mut self, held: &[u8]) -> (FileClass, Option<Facts>, Option<String>) {
        self.class = FileClass::sniff(&held[..held.len().min(super::HEAD)]);
        if matches!(self.mode, Mode::Undecided) {
            let mut h = held.to_vec();
            self.decide(&mut h);
            return (self.class, self.whole(&h), None);
        }
        let (facts, lost) = match std::mem::replace(&mut self.mode, Mode::Head) {
            Mode::Head if self.size > super::FACTS_CAP => (None, false),
            Mode::Head | Mode::All => (self.whole(held), false),
            Mode::Ranges {
                done: Some(facts),
                lost,
                ..
            } => (facts, lost),
            Mode::Ranges {
                done: None, ranges, ..
            } => {
                // The stream ended before the parser was satisfied (a
                // member shorter than its header says).
                let probe = Probe {
                    head: held,
                    ranges: &ranges,
                    size: self.size,
                    missed: RefCell::new(Vec::new()),
                };
                let facts = inspect::facts_at(self.path, self.class, &probe);
                let lost = !probe.missed.into_inner().is_empty();
                (facts, lost)
            }
            Mode::Undecided => (None, false),
        };
        if !lost {
            return (self.class, facts, None);
        }
        let facts = facts.map(|mut f| {
            f.elf = Some(ElfFact::Unparsable);
            f
        });
        let why = format!(
            "{}: the ELF parser wanted bytes that had streamed past; its headers are \
             reported unparsable",
            crate::escape::for_terminal(self.path)
        );
        (self.class, facts, Some(why))
    }

    fn whole(&self, held: &[u8]) -> Option<Facts> {
        inspect::facts_of_bytes(self.path, self.class, held)
    }
}

/// Appends to `b` (the bytes of `[off, off+len)` captured so far) what the
/// head or the current chunk (at `start`) hold next.
fn fill(off: u64, b: &mut Vec<u8>, len: usize, head: &[u8], chunk: &[u8], start: u64) {
    while b.len() < len {
        let at = off + b.len() as u64;
        let want = len - b.len();
        let src: &[u8] = if at < head.len() as u64 {
            &head[at as usize..]
        } else if at >= start && at < start + chunk.len() as u64 {
            &chunk[(at - start) as usize..]
        } else {
            return;
        };
        b.extend_from_slice(&src[..src.len().min(want)]);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The facts of `data` fed in `chunk`-byte pieces, and how many bytes
    /// the head buffer ended up holding.
    fn streamed(path: &[u8], data: &[u8], chunk: usize) -> (Option<Facts>, usize, Option<String>) {
        let mut held = Vec::new();
        let mut h = Holding::new(path, data.len() as u64, false);
        for c in data.chunks(chunk) {
            h.feed(c, &mut held);
        }
        let n = held.len();
        let (_, f, w) = h.finish(&held);
        (f, n, w)
    }

    fn whole(path: &[u8], data: &[u8]) -> Option<Facts> {
        let class = FileClass::sniff(&data[..data.len().min(super::super::HEAD)]);
        inspect::facts_of_bytes(path, class, data)
    }

    /// A gcc-built shared object with 3 MiB of read-only data between its
    /// dynamic strings and its dynamic segment, a SONAME, a RUNPATH and a
    /// NEEDED: the facts from the ranges are the whole file's, and far
    /// fewer bytes were held.
    #[test]
    fn large_elf_facts_from_ranges_equal_the_whole_files() {
        let dir = std::env::temp_dir().join(format!("lw-hold-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("big.c");
        std::fs::write(
            &src,
            "static const char pad[3 << 20] = {1};\nint f(int i){return pad[i];}\n",
        )
        .unwrap();
        let so = dir.join("libbig.so.1");
        let ok = std::process::Command::new("gcc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(&so)
            .arg(&src)
            .args(["-Wl,-soname,libbig.so.1", "-Wl,-rpath,/opt/big/lib", "-lm"])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("SKIPPED: gcc is needed to build the fixture");
            return;
        }
        let data = std::fs::read(&so).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(data.len() as u64 >= SPARSE_MIN);
        let path = b"/usr/lib/libbig.so.1";
        let want = whole(path, &data);
        let Some(ElfFact::Parsed(info)) = want.as_ref().and_then(|f| f.elf.clone()) else {
            panic!("{want:?}");
        };
        assert_eq!(info.soname.as_deref(), Some(&b"libbig.so.1"[..]));
        assert_eq!(info.runpath, vec![b"/opt/big/lib".to_vec()]);
        for chunk in [1 << 16, 4096, 1 << 20, 3 << 20] {
            let (got, held, warning) = streamed(path, &data, chunk);
            assert_eq!(got, want, "chunk {chunk}");
            assert!(warning.is_none(), "{warning:?}");
            assert!(held <= SPARSE_HEAD, "{held} bytes held");
        }
    }

    /// The shared objects this machine ships between the sizes held in
    /// ranges: the same facts as from their whole bytes (up to 20 files).
    #[test]
    fn installed_large_libraries_give_the_same_facts_from_ranges() {
        let Ok(rd) = std::fs::read_dir("/usr/lib/x86_64-linux-gnu") else {
            eprintln!("SKIPPED: no /usr/lib/x86_64-linux-gnu");
            return;
        };
        let mut n = 0;
        for e in rd.flatten() {
            let Ok(m) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            if !m.is_file() || m.len() < SPARSE_MIN || m.len() > super::super::FACTS_CAP {
                continue;
            }
            let Ok(data) = std::fs::read(e.path()) else {
                continue;
            };
            let path = e.path().as_os_str().as_encoded_bytes().to_vec();
            let (got, _, warning) = streamed(&path, &data, 1 << 16);
            assert_eq!(got, whole(&path, &data), "{:?}", e.path());
            assert!(warning.is_none(), "{warning:?}");
            n += 1;
            if n == 20 {
                break;
            }
        }
        if n == 0 {
            eprintln!("SKIPPED: no library of 2 to 64 MiB installed");
        }
    }

    /// Data and a PE-named file keep only their first bytes; a loader is
    /// held whole (its preload string is searched in every byte).
    #[test]
    fn what_is_held_follows_the_first_bytes() {
        let data = vec![7u8; 3 << 20];
        let (f, held, _) = streamed(b"/usr/lib/libicudata.a", &data, 1 << 16);
        assert_eq!(held, super::super::HEAD);
        assert_eq!(f, whole(b"/usr/lib/libicudata.a", &data));
        let (_, held, _) = streamed(b"/lib64/ld-linux-x86-64.so.2", &data, 1 << 16);
        assert_eq!(held, data.len());
    }

    /// A header that sends the parser to bytes already gone is reported,
    /// not silently partial: an ELF whose program headers sit past the
    /// head and point back before them.
    #[test]
    fn a_range_wanted_after_it_streamed_past_is_loud() {
        let mut data = vec![0u8; (SPARSE_MIN as usize) + 4096];
        data[..4].copy_from_slice(b"\x7fELF");
        data[4] = 2; // 64-bit
        data[5] = 1; // little-endian
        data[16..18].copy_from_slice(&3u16.to_le_bytes()); // ET_DYN
        let phoff = (SPARSE_MIN as usize) + 64;
        data[32..40].copy_from_slice(&(phoff as u64).to_le_bytes());
        data[54..56].copy_from_slice(&56u16.to_le_bytes());
        data[56..58].copy_from_slice(&1u16.to_le_bytes());
        // One PT_DYNAMIC at offset SPARSE_HEAD + 8 (streamed past unheld).
        let ph = &mut data[phoff..phoff + 56];
        ph[..4].copy_from_slice(&2u32.to_le_bytes());
        ph[8..16].copy_from_slice(&((SPARSE_HEAD + 8) as u64).to_le_bytes());
        ph[32..40].copy_from_slice(&64u64.to_le_bytes());
        let path = b"/usr/lib/libodd.so";
        let (f, _, warning) = streamed(path, &data, 1 << 16);
        assert!(warning.is_some());
        assert_eq!(f.and_then(|f| f.elf), Some(ElfFact::Unparsable));
    }
}
