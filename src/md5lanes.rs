//! MD5 (RFC 1321) for package digests: dpkg records an MD5 of every file it
//! installs, and verifying a library means computing one. MD5 of one stream
//! is serial (each block's compression needs the previous one's result), so
//! a core computes it at about one block per ~300 cycles whatever its SIMD
//! width; independent files, however, can share a core: with AVX2 eight
//! 32-bit lanes compress one block of each of eight files in one pass, and
//! two such groups side by side keep the core's ALU ports busy while each
//! group waits on its own chain of steps (sixteen files per pass). With
//! AVX-512 (F and VL) the same registers take one instruction per round
//! function (`vpternlogd`) and per rotate (`vprold`) instead of three each:
//! a step's chain is four instructions instead of about six. One group of
//! sixteen lanes in zmm registers measured no faster than two groups in
//! ymm registers on an AMD EPYC with AVX-512 (a zmm instruction there
//! costs what two ymm ones do), so the ymm layout stays, AVX2's; 32 lanes
//! would double the scan's lane buffers.
//!
//! [`Md5`] is the scalar hasher, whose state can be stepped block by block
//! and finished; [`Lanes`] holds [`LANES`] of them and compresses the blocks
//! they have in common with the fastest SIMD code the CPU has ([`Kind`],
//! detected at run time), the rest (a lane's partial block; a single busy
//! lane, but with AVX-512) with the scalar code. A lane's hasher can be taken out at any time ([`Lanes::take`]) and
//! finished or fed on its own: the lanes are only a faster way to step the
//! same states, and give the same digests as the scalar path bit for bit
//! (tested against the `md-5` crate).
//!
//! Which paths want an MD5, and the MD5s a scan computed, are
//! [`crate::pkgdigest`]'s (with the other package digests).
//!
//! This module depends on nothing else of the crate.

/// Lanes compressed together: two ymm registers' worth of 32-bit lanes
/// (two groups of eight side by side; eight or fewer busy ones take one).
pub const LANES: usize = 16;

const BLOCK: usize = 64;

const INIT: [u32; 4] = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];

/// The additive constants: `floor(abs(sin(i + 1)) * 2^32)`.
const K: [u32; 64] = [
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
];

/// The 16 little-endian words of a block.
fn words(block: &[u8]) -> [u32; 16] {
    let mut w = [0u32; 16];
    for (w, c) in w.iter_mut().zip(block.chunks_exact(4)) {
        *w = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
    w
}

/// The 64 steps of MD5 (RFC 1321, 3.4), each with its round function, word,
/// index of its constant in [`K`] and shift, expanded by the caller's
/// `step!` (scalar or SIMD lanes): one schedule for all. The state
/// variables and the words are passed in, since names written here would
/// not reach the caller's; any further tokens are passed on to every
/// `step!`.
macro_rules! md5_steps {
    ($step:ident, $a:ident, $b:ident, $c:ident, $d:ident, $w:ident $(, $x:tt)*) => {
        $step!(f, $a, $b, $c, $d, $w[0], 0, 7 $(, $x)*);
        $step!(f, $d, $a, $b, $c, $w[1], 1, 12 $(, $x)*);
        $step!(f, $c, $d, $a, $b, $w[2], 2, 17 $(, $x)*);
        $step!(f, $b, $c, $d, $a, $w[3], 3, 22 $(, $x)*);
        $step!(f, $a, $b, $c, $d, $w[4], 4, 7 $(, $x)*);
        $step!(f, $d, $a, $b, $c, $w[5], 5, 12 $(, $x)*);
        $step!(f, $c, $d, $a, $b, $w[6], 6, 17 $(, $x)*);
        $step!(f, $b, $c, $d, $a, $w[7], 7, 22 $(, $x)*);
        $step!(f, $a, $b, $c, $d, $w[8], 8, 7 $(, $x)*);
        $step!(f, $d, $a, $b, $c, $w[9], 9, 12 $(, $x)*);
        $step!(f, $c, $d, $a, $b, $w[10], 10, 17 $(, $x)*);
        $step!(f, $b, $c, $d, $a, $w[11], 11, 22 $(, $x)*);
        $step!(f, $a, $b, $c, $d, $w[12], 12, 7 $(, $x)*);
        $step!(f, $d, $a, $b, $c, $w[13], 13, 12 $(, $x)*);
        $step!(f, $c, $d, $a, $b, $w[14], 14, 17 $(, $x)*);
        $step!(f, $b, $c, $d, $a, $w[15], 15, 22 $(, $x)*);
        $step!(g, $a, $b, $c, $d, $w[1], 16, 5 $(, $x)*);
        $step!(g, $d, $a, $b, $c, $w[6], 17, 9 $(, $x)*);
        $step!(g, $c, $d, $a, $b, $w[11], 18, 14 $(, $x)*);
        $step!(g, $b, $c, $d, $a, $w[0], 19, 20 $(, $x)*);
        $step!(g, $a, $b, $c, $d, $w[5], 20, 5 $(, $x)*);
        $step!(g, $d, $a, $b, $c, $w[10], 21, 9 $(, $x)*);
        $step!(g, $c, $d, $a, $b, $w[15], 22, 14 $(, $x)*);
        $step!(g, $b, $c, $d, $a, $w[4], 23, 20 $(, $x)*);
        $step!(g, $a, $b, $c, $d, $w[9], 24, 5 $(, $x)*);
        $step!(g, $d, $a, $b, $c, $w[14], 25, 9 $(, $x)*);
        $step!(g, $c, $d, $a, $b, $w[3], 26, 14 $(, $x)*);
        $step!(g, $b, $c, $d, $a, $w[8], 27, 20 $(, $x)*);
        $step!(g, $a, $b, $c, $d, $w[13], 28, 5 $(, $x)*);
        $step!(g, $d, $a, $b, $c, $w[2], 29, 9 $(, $x)*);
        $step!(g, $c, $d, $a, $b, $w[7], 30, 14 $(, $x)*);
        $step!(g, $b, $c, $d, $a, $w[12], 31, 20 $(, $x)*);
        $step!(h, $a, $b, $c, $d, $w[5], 32, 4 $(, $x)*);
        $step!(h, $d, $a, $b, $c, $w[8], 33, 11 $(, $x)*);
        $step!(h, $c, $d, $a, $b, $w[11], 34, 16 $(, $x)*);
        $step!(h, $b, $c, $d, $a, $w[14], 35, 23 $(, $x)*);
        $step!(h, $a, $b, $c, $d, $w[1], 36, 4 $(, $x)*);
        $step!(h, $d, $a, $b, $c, $w[4], 37, 11 $(, $x)*);
        $step!(h, $c, $d, $a, $b, $w[7], 38, 16 $(, $x)*);
        $step!(h, $b, $c, $d, $a, $w[10], 39, 23 $(, $x)*);
        $step!(h, $a, $b, $c, $d, $w[13], 40, 4 $(, $x)*);
        $step!(h, $d, $a, $b, $c, $w[0], 41, 11 $(, $x)*);
        $step!(h, $c, $d, $a, $b, $w[3], 42, 16 $(, $x)*);
        $step!(h, $b, $c, $d, $a, $w[6], 43, 23 $(, $x)*);
        $step!(h, $a, $b, $c, $d, $w[9], 44, 4 $(, $x)*);
        $step!(h, $d, $a, $b, $c, $w[12], 45, 11 $(, $x)*);
        $step!(h, $c, $d, $a, $b, $w[15], 46, 16 $(, $x)*);
        $step!(h, $b, $c, $d, $a, $w[2], 47, 23 $(, $x)*);
        $step!(i, $a, $b, $c, $d, $w[0], 48, 6 $(, $x)*);
        $step!(i, $d, $a, $b, $c, $w[7], 49, 10 $(, $x)*);
        $step!(i, $c, $d, $a, $b, $w[14], 50, 15 $(, $x)*);
        $step!(i, $b, $c, $d, $a, $w[5], 51, 21 $(, $x)*);
        $step!(i, $a, $b, $c, $d, $w[12], 52, 6 $(, $x)*);
        $step!(i, $d, $a, $b, $c, $w[3], 53, 10 $(, $x)*);
        $step!(i, $c, $d, $a, $b, $w[10], 54, 15 $(, $x)*);
        $step!(i, $b, $c, $d, $a, $w[1], 55, 21 $(, $x)*);
        $step!(i, $a, $b, $c, $d, $w[8], 56, 6 $(, $x)*);
        $step!(i, $d, $a, $b, $c, $w[15], 57, 10 $(, $x)*);
        $step!(i, $c, $d, $a, $b, $w[6], 58, 15 $(, $x)*);
        $step!(i, $b, $c, $d, $a, $w[13], 59, 21 $(, $x)*);
        $step!(i, $a, $b, $c, $d, $w[4], 60, 6 $(, $x)*);
        $step!(i, $d, $a, $b, $c, $w[11], 61, 10 $(, $x)*);
        $step!(i, $c, $d, $a, $b, $w[2], 62, 15 $(, $x)*);
        $step!(i, $b, $c, $d, $a, $w[9], 63, 21 $(, $x)*);
    };
}

/// One block into one state (`block` is exactly [`BLOCK`] bytes long).
fn compress(state: &mut [u32; 4], block: &[u8]) {
    let w = words(block);
    let [mut a, mut b, mut c, mut d] = *state;
    macro_rules! step {
        ($f:ident, $a:ident, $b:ident, $c:ident, $d:ident, $w:expr, $k:literal, $s:literal) => {
            let f = $f($b, $c, $d);
            $a = $b.wrapping_add(
                $a.wrapping_add(f)
                    .wrapping_add(K[$k])
                    .wrapping_add($w)
                    .rotate_left($s),
            );
        };
    }
    #[inline(always)]
    fn f(b: u32, c: u32, d: u32) -> u32 {
        d ^ (b & (c ^ d))
    }
    #[inline(always)]
    fn g(b: u32, c: u32, d: u32) -> u32 {
        c ^ (d & (b ^ c))
    }
    #[inline(always)]
    fn h(b: u32, c: u32, d: u32) -> u32 {
        b ^ c ^ d
    }
    #[inline(always)]
    fn i(b: u32, c: u32, d: u32) -> u32 {
        c ^ (b | !d)
    }
    md5_steps!(step, a, b, c, d, w);
    state[0] = state[0].wrapping_add(a);
    state[1] = state[1].wrapping_add(b);
    state[2] = state[2].wrapping_add(c);
    state[3] = state[3].wrapping_add(d);
}

/// A streaming MD5: [`Md5::update`] any number of times, then
/// [`Md5::finalize`].
#[derive(Clone, Debug)]
pub struct Md5 {
    state: [u32; 4],
    /// A partial block waiting for more bytes.
    buf: [u8; BLOCK],
    buffered: usize,
    /// Bytes fed so far (the length MD5 appends, modulo 2^64 bits).
    len: u64,
}

impl Default for Md5 {
    fn default() -> Md5 {
        Md5::new()
    }
}

impl Md5 {
    pub fn new() -> Md5 {
        Md5 {
            state: INIT,
            buf: [0; BLOCK],
            buffered: 0,
            len: 0,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        let rest = self.top_up(data);
        let mut blocks = rest.chunks_exact(BLOCK);
        for b in &mut blocks {
            compress(&mut self.state, b);
        }
        self.keep(blocks.remainder());
    }

    /// Counts `data` and completes the buffered partial block from it
    /// (compressing it when full); what is left of `data` starts on a block
    /// boundary (or is empty while a partial block is still buffered).
    fn top_up<'d>(&mut self, data: &'d [u8]) -> &'d [u8] {
        self.len = self.len.wrapping_add(data.len() as u64);
        if self.buffered == 0 {
            return data;
        }
        let n = (BLOCK - self.buffered).min(data.len());
        self.buf[self.buffered..self.buffered + n].copy_from_slice(&data[..n]);
        self.buffered += n;
        if self.buffered == BLOCK {
            let block = self.buf;
            compress(&mut self.state, &block);
            self.buffered = 0;
        }
        &data[n..]
    }

    /// Buffers a tail shorter than a block (after [`Md5::top_up`] left the
    /// buffer empty, or with an empty tail).
    fn keep(&mut self, tail: &[u8]) {
        debug_assert!(tail.is_empty() || self.buffered == 0);
        debug_assert!(tail.len() < BLOCK);
        let n = tail.len().min(BLOCK - self.buffered);
        self.buf[self.buffered..self.buffered + n].copy_from_slice(&tail[..n]);
        self.buffered += n;
    }

    pub fn finalize(mut self) -> [u8; 16] {
        let bits = self.len.wrapping_mul(8);
        let mut pad = [0u8; 2 * BLOCK];
        pad[0] = 0x80;
        // 0x80, zeros to 56 mod 64, then the length in bits.
        let zeros = (BLOCK + 55 - self.buffered) % BLOCK;
        let n = 1 + zeros;
        pad[n..n + 8].copy_from_slice(&bits.to_le_bytes());
        self.update(&pad[..n + 8]);
        debug_assert_eq!(self.buffered, 0);
        let mut out = [0u8; 16];
        for (o, s) in out.chunks_exact_mut(4).zip(self.state) {
            o.copy_from_slice(&s.to_le_bytes());
        }
        out
    }
}

/// Which code compresses the blocks that lanes have in common.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// AVX-512F and AVX-512VL: AVX2's registers, with one instruction
    /// per round function (`vpternlogd`) and per rotate (`vprold`).
    Avx512,
    /// AVX2: two groups of eight 32-bit lanes side by side.
    Avx2,
    /// One block at a time.
    Scalar,
}

impl Kind {
    /// The fastest this CPU runs (detected at run time).
    pub fn best() -> Kind {
        [Kind::Avx512, Kind::Avx2]
            .into_iter()
            .find(|k| k.available())
            .unwrap_or(Kind::Scalar)
    }

    /// Whether this CPU runs it.
    pub fn available(self) -> bool {
        match self {
            Kind::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Kind::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Kind::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vl")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The fewest lanes with a block for which a SIMD pass is faster than
    /// the scalar code. With AVX-512 even one: a group of eight with one
    /// busy lane steps it at the chain's latency (four instructions a
    /// step), faster than the scalar step (0.71 against 0.59 GB/s on one
    /// core of this AMD EPYC); AVX2's longer chain makes that no faster.
    fn fewest_busy(self) -> usize {
        match self {
            Kind::Avx512 => 1,
            Kind::Avx2 => 2,
            Kind::Scalar => usize::MAX,
        }
    }

    /// Its name in figures: "avx512", "avx2" or "scalar".
    pub fn name(self) -> &'static str {
        match self {
            Kind::Avx512 => "avx512",
            Kind::Avx2 => "avx2",
            Kind::Scalar => "scalar",
        }
    }
}

/// [`LANES`] MD5 hashers stepped together: [`Lanes::update`] feeds each
/// lane its own bytes, and the blocks two or more lanes have at once are
/// compressed in one SIMD pass.
#[derive(Clone, Debug)]
pub struct Lanes {
    lanes: [Md5; LANES],
    /// Always one this CPU runs.
    kind: Kind,
}

impl Default for Lanes {
    fn default() -> Lanes {
        Lanes::new()
    }
}

impl Lanes {
    /// Lanes using the fastest code this CPU runs.
    pub fn new() -> Lanes {
        Lanes {
            lanes: Default::default(),
            kind: Kind::best(),
        }
    }

    /// Lanes that compress one block at a time (for comparison).
    pub fn scalar() -> Lanes {
        Lanes {
            lanes: Default::default(),
            kind: Kind::Scalar,
        }
    }

    /// Lanes using `kind`'s code; `None` when this CPU cannot run it.
    pub fn with_kind(kind: Kind) -> Option<Lanes> {
        kind.available().then(|| Lanes {
            lanes: Default::default(),
            kind,
        })
    }

    /// Whether blocks of several lanes are compressed together.
    pub fn is_simd(&self) -> bool {
        self.kind != Kind::Scalar
    }

    /// What the multi-buffer path is, for figures ("avx512", "avx2",
    /// "scalar").
    pub fn kind(&self) -> &'static str {
        self.kind.name()
    }

    /// Feeds `inputs[i]` to lane `i` (at most [`LANES`] inputs; lanes
    /// beyond `inputs.len()` get nothing).
    pub fn update(&mut self, inputs: &[&[u8]]) {
        let mut rest: [&[u8]; LANES] = [&[]; LANES];
        for ((r, lane), d) in rest.iter_mut().zip(&mut self.lanes).zip(inputs) {
            *r = lane.top_up(d);
        }
        loop {
            let busy = rest.iter().filter(|r| r.len() >= BLOCK).count();
            if busy == 0 {
                break;
            }
            if busy < self.kind.fewest_busy() {
                self.alone(&mut rest);
                break;
            }
            self.shared_pass(&mut rest);
        }
        for (r, lane) in rest.iter().zip(&mut self.lanes) {
            lane.keep(r);
        }
    }

    /// Feeds each lane as much of `inputs[i]` as it can share SIMD passes
    /// with the others, and returns how many bytes of each it took: whole
    /// blocks as far as the shortest input with one goes (all of them for
    /// an input that is alone, or without SIMD), and a tail shorter than a
    /// block whole. The caller keeps the rest for the next call, refilling
    /// the lanes that took everything: lanes stay busy together instead of
    /// one long input finishing alone in scalar code.
    pub fn update_some(&mut self, inputs: &[&[u8]]) -> [usize; LANES] {
        let mut used = [0usize; LANES];
        let mut rest: [&[u8]; LANES] = [&[]; LANES];
        for ((r, lane), d) in rest.iter_mut().zip(&mut self.lanes).zip(inputs) {
            *r = lane.top_up(d);
        }
        let busy = rest.iter().filter(|r| r.len() >= BLOCK).count();
        if busy >= self.kind.fewest_busy() {
            self.shared_pass(&mut rest);
        } else {
            self.alone(&mut rest);
        }
        for (i, (r, lane)) in rest.iter().zip(&mut self.lanes).enumerate() {
            let given = inputs.get(i).map_or(0, |d| d.len());
            if r.len() < BLOCK {
                lane.keep(r);
                used[i] = given;
            } else {
                used[i] = given - r.len();
                // top_up counted all of it; the rest comes again.
                lane.len = lane.len.wrapping_sub(r.len() as u64);
            }
        }
        used
    }

    /// One SIMD pass over as many blocks as every lane with one has;
    /// `rest` keeps what each lane has left.
    fn shared_pass(&mut self, rest: &mut [&[u8]; LANES]) {
        let steps = rest
            .iter()
            .filter(|r| r.len() >= BLOCK)
            .map(|r| r.len() / BLOCK)
            .min()
            .unwrap_or(0);
        let mut states = [[0u32; 4]; LANES];
        let mut active = [false; LANES];
        for i in 0..LANES {
            active[i] = rest[i].len() >= BLOCK;
            states[i] = self.lanes[i].state;
        }
        compress_lanes(self.kind, &mut states, rest, &active, steps);
        for i in 0..LANES {
            if active[i] {
                self.lanes[i].state = states[i];
                rest[i] = &rest[i][steps * BLOCK..];
            }
        }
    }

    /// Every whole block of `rest` into its lane with the scalar code
    /// (too few busy lanes to share a SIMD pass); `rest` keeps the partial
    /// blocks.
    fn alone(&mut self, rest: &mut [&[u8]; LANES]) {
        for (r, lane) in rest.iter_mut().zip(&mut self.lanes) {
            let full = r.len() / BLOCK * BLOCK;
            for b in r[..full].chunks_exact(BLOCK) {
                compress(&mut lane.state, b);
            }
            *r = &r[full..];
        }
    }

    /// Feeds one lane alone.
    pub fn update_lane(&mut self, lane: usize, data: &[u8]) {
        if let Some(l) = self.lanes.get_mut(lane) {
            l.update(data);
        }
    }

    /// Takes lane `lane`'s hasher out (to finish it or feed it on its own),
    /// leaving a fresh one; `None` for a lane that does not exist.
    pub fn take(&mut self, lane: usize) -> Option<Md5> {
        self.lanes.get_mut(lane).map(std::mem::take)
    }

    /// Puts a hasher into lane `lane` (it goes on from its state).
    pub fn put(&mut self, lane: usize, h: Md5) {
        if let Some(l) = self.lanes.get_mut(lane) {
            *l = h;
        }
    }

    /// The digest of lane `lane`, which starts again empty.
    pub fn finish(&mut self, lane: usize) -> Option<[u8; 16]> {
        self.take(lane).map(Md5::finalize)
    }
}

/// Whether this CPU can run any of the SIMD lanes.
pub fn simd_available() -> bool {
    Kind::best() != Kind::Scalar
}

/// `steps` blocks of each active lane's data (which holds at least that
/// many) into its state, with `kind`'s code; inactive lanes' states are
/// left as they were.
fn compress_lanes(
    kind: Kind,
    states: &mut [[u32; 4]; LANES],
    data: &[&[u8]; LANES],
    active: &[bool; LANES],
    steps: usize,
) {
    // Checked again here (a cached flag) so that the unsafe call below
    // rests on this function alone, not on how the lanes were made.
    #[cfg(target_arch = "x86_64")]
    if kind != Kind::Scalar && kind.available() {
        // The active lanes packed into slots: one group of eight when
        // they fit, else sixteen. A slot without a lane reads an active
        // lane's bytes (always valid for `steps` blocks) and its result
        // is thrown away: no branch per lane in the loop, no buffer of
        // zeros to point at.
        let mut slot_of = [0usize; LANES];
        let mut n = 0;
        for i in 0..LANES {
            if !active[i] {
                continue;
            }
            if data[i].len() < steps * BLOCK {
                // Not what the caller passes (it counts whole blocks); a
                // lane short of bytes is never read past its end.
                return compress_lanes_scalar(states, data, active, steps);
            }
            slot_of[n] = i;
            n += 1;
        }
        if n == 0 {
            return;
        }
        let mut st = [[0u32; 4]; LANES];
        let mut ptrs = [data[slot_of[0]].as_ptr(); LANES];
        for s in 0..n {
            st[s] = states[slot_of[s]];
            ptrs[s] = data[slot_of[s]].as_ptr();
        }
        let w = avx2::WIDTH;
        // SAFETY: the CPU has the features of `kind` (checked just
        // above); every pointer is valid for `steps` blocks (checked
        // above), and the functions write only the slots' states.
        unsafe {
            match (kind, n <= w) {
                (Kind::Avx512, true) => avx512::compress::<1>(&mut st[..w], &ptrs[..w], steps),
                (Kind::Avx512, false) => avx512::compress::<2>(&mut st, &ptrs, steps),
                (_, true) => avx2::compress::<1>(&mut st[..w], &ptrs[..w], steps),
                (_, false) => avx2::compress::<2>(&mut st, &ptrs, steps),
            }
        }
        for s in 0..n {
            states[slot_of[s]] = st[s];
        }
        return;
    }
    compress_lanes_scalar(states, data, active, steps)
}

fn compress_lanes_scalar(
    states: &mut [[u32; 4]; LANES],
    data: &[&[u8]; LANES],
    active: &[bool; LANES],
    steps: usize,
) {
    for i in 0..LANES {
        if active[i] {
            let end = (steps * BLOCK).min(data[i].len() / BLOCK * BLOCK);
            for b in data[i][..end].chunks_exact(BLOCK) {
                compress(&mut states[i], b);
            }
        }
    }
}

/// One MD5 step in each of `$g` groups of lanes side by side, with the
/// vector operations of module `$v` (one register per group) and the
/// constants read from `$kt`. The step is a chain from the `b` the step
/// before computed: the round function of it, an add, the rotate, an
/// add; the message word and constant are added to `a` apart from the
/// chain, where they cost no latency.
#[cfg(target_arch = "x86_64")]
macro_rules! simd_step {
    ($f:ident, $a:ident, $b:ident, $c:ident, $d:ident, $w:expr, $k:literal, $s:literal, $v:ident, $g:ident, $kt:ident) => {
        let k = $v::set1($kt[$k]);
        for g in 0..$g {
            let t = $v::add(
                $v::$f($b[g], $c[g], $d[g]),
                $v::add($a[g], $v::add($w[g], k)),
            );
            $a[g] = $v::add($b[g], $v::rol::<$s, { 32 - $s }>(t));
        }
    };
}

/// `blocks` consecutive blocks of each of `$g * $v::WIDTH` lanes (lane
/// `i`'s from `$ptrs[i]`) into `$states`, with the operations of module
/// `$v`: the state stays in registers from one block to the next, each
/// block's words come in word-major order (word `j` of every lane of a
/// group in one register) from `$v::words`. Expanded inside a function
/// with `$v`'s target features, so that its operations inline.
#[cfg(target_arch = "x86_64")]
macro_rules! simd_compress {
    ($v:ident, $g:ident, $states:ident, $ptrs:ident, $blocks:ident) => {{
        let width = $v::WIDTH;
        // The constants through a pointer the optimiser cannot see
        // through: known constants it moves to the last add of each step,
        // onto the chain (one add more per step: a sixth slower, measured).
        let kt: &[u32; 64] = std::hint::black_box(&K);
        debug_assert!($states.len() == $g * width && $ptrs.len() == $g * width);
        let mut a: [$v::V; $g] = std::array::from_fn(|g| $v::state(&$states[g * width..], 0));
        let mut b: [$v::V; $g] = std::array::from_fn(|g| $v::state(&$states[g * width..], 1));
        let mut c: [$v::V; $g] = std::array::from_fn(|g| $v::state(&$states[g * width..], 2));
        let mut d: [$v::V; $g] = std::array::from_fn(|g| $v::state(&$states[g * width..], 3));
        for n in 0..$blocks {
            let w: [[$v::V; $g]; 16] = $v::words::<$g>($ptrs, n * BLOCK);
            let (a0, b0, c0, d0) = (a, b, c, d);
            md5_steps!(simd_step, a, b, c, d, w, $v, $g, kt);
            for g in 0..$g {
                a[g] = $v::add(a[g], a0[g]);
                b[g] = $v::add(b[g], b0[g]);
                c[g] = $v::add(c[g], c0[g]);
                d[g] = $v::add(d[g], d0[g]);
            }
        }
        for g in 0..$g {
            for (j, x) in [a[g], b[g], c[g], d[g]].into_iter().enumerate() {
                $v::set_state(&mut $states[g * width..(g + 1) * width], j, x);
            }
        }
    }};
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{BLOCK, K};

    /// The 32-bit lanes of one AVX2 register.
    pub(super) const WIDTH: usize = 8;
    const _: () = assert!(super::LANES == 2 * WIDTH);

    /// `blocks` consecutive blocks of each of `G * 8` lanes (lane `i`'s
    /// from `ptrs[i]`) into its state, in `G` groups of eight: one group's
    /// 64 steps are a chain of dependent instructions (each step needs the
    /// one before), so a core runs them at the chain's latency with ALU
    /// ports to spare; a second, independent group fills those ports (as
    /// ISA-L's `md5_mb` x8x2 does).
    ///
    /// # Safety
    /// The CPU must support AVX2; `states` and `ptrs` hold `G * 8` lanes,
    /// and each `ptrs[i]` must be valid for reads of `blocks * 64` bytes.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn compress<const G: usize>(
        states: &mut [[u32; 4]],
        ptrs: &[*const u8],
        blocks: usize,
    ) {
        simd_compress!(ops, G, states, ptrs, blocks)
    }

    /// The vector operations of [`compress`], on AVX2 registers: three
    /// instructions per round function and per rotate. Every function
    /// requires AVX2.
    pub(super) mod ops {
        use std::arch::x86_64::*;

        pub type V = __m256i;
        pub const WIDTH: usize = super::WIDTH;

        /// State word `j` of the first eight of `s`.
        #[inline]
        #[target_feature(enable = "avx2")]
        pub unsafe fn state(s: &[[u32; 4]], j: usize) -> V {
            let v: [u32; WIDTH] = std::array::from_fn(|i| s[i][j]);
            // v is 32 readable bytes.
            _mm256_loadu_si256(v.as_ptr().cast())
        }

        /// Lane `i` of `x` to state word `j` of `s[i]` (eight of them).
        #[inline]
        #[target_feature(enable = "avx2")]
        pub unsafe fn set_state(s: &mut [[u32; 4]], j: usize, x: V) {
            let mut v = [0u32; WIDTH];
            // v is 32 writable bytes.
            _mm256_storeu_si256(v.as_mut_ptr().cast(), x);
            for (s, v) in s.iter_mut().zip(v) {
                s[j] = v;
            }
        }

        /// The sixteen words of the block at `at` of each of `G` groups
        /// of eight lanes, word-major: two 8x8 transposes of eight
        /// 32-byte loads per group. Every `ptrs[i]` is valid for
        /// `at + 64` bytes.
        #[inline]
        #[target_feature(enable = "avx2")]
        pub unsafe fn words<const G: usize>(ptrs: &[*const u8], at: usize) -> [[V; G]; 16] {
            let mut w = [[_mm256_setzero_si256(); G]; 16];
            for g in 0..G {
                for half in 0..2 {
                    // Row i: words 8*half..8*half+8 of lane i (MD5's words
                    // are little-endian, as x86 loads them).
                    let r: [V; WIDTH] = std::array::from_fn(|i| {
                        _mm256_loadu_si256(ptrs[g * WIDTH + i].add(at + half * 32).cast())
                    });
                    for (j, col) in transpose8(r).into_iter().enumerate() {
                        w[half * 8 + j][g] = col;
                    }
                }
            }
            w
        }

        #[inline]
        #[target_feature(enable = "avx2")]
        pub unsafe fn set1(k: u32) -> V {
            _mm256_set1_epi32(k as i32)
        }

        #[inline]
        #[target_feature(enable = "avx2")]
        pub unsafe fn add(x: V, y: V) -> V {
            _mm256_add_epi32(x, y)
        }

        /// Rotate left by `S` (`R` is `32 - S`: a const generic cannot
        /// be computed from another in stable Rust).
        #[inline]
        #[target_feature(enable = "avx2")]
        pub unsafe fn rol<const S: i32, const R: i32>(x: V) -> V {
            _mm256_or_si256(_mm256_slli_epi32::<S>(x), _mm256_srli_epi32::<R>(x))
        }

        #[inline]
        #[target_feature(enable = "avx2")]
        pub unsafe fn f(b: V, c: V, d: V) -> V {
            _mm256_xor_si256(d, _mm256_and_si256(b, _mm256_xor_si256(c, d)))
        }

        #[inline]
        #[target_feature(enable = "avx2")]
        pub unsafe fn g(b: V, c: V, d: V) -> V {
            _mm256_xor_si256(c, _mm256_and_si256(d, _mm256_xor_si256(b, c)))
        }

        #[inline]
        #[target_feature(enable = "avx2")]
        pub unsafe fn h(b: V, c: V, d: V) -> V {
            _mm256_xor_si256(_mm256_xor_si256(b, c), d)
        }

        #[inline]
        #[target_feature(enable = "avx2")]
        pub unsafe fn i(b: V, c: V, d: V) -> V {
            let ones = _mm256_set1_epi32(-1);
            _mm256_xor_si256(c, _mm256_or_si256(b, _mm256_xor_si256(d, ones)))
        }

        /// Rows of eight 32-bit words to columns: out[j] holds word j of
        /// rows 0..8.
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn transpose8(r: [V; WIDTH]) -> [V; WIDTH] {
            // Pairs of rows interleaved by word, then by pairs of words:
            // each 128-bit half then holds one column's four rows (the
            // low half columns 0-3, the high half columns 4-7)...
            let t0 = _mm256_unpacklo_epi32(r[0], r[1]);
            let t1 = _mm256_unpackhi_epi32(r[0], r[1]);
            let t2 = _mm256_unpacklo_epi32(r[2], r[3]);
            let t3 = _mm256_unpackhi_epi32(r[2], r[3]);
            let t4 = _mm256_unpacklo_epi32(r[4], r[5]);
            let t5 = _mm256_unpackhi_epi32(r[4], r[5]);
            let t6 = _mm256_unpacklo_epi32(r[6], r[7]);
            let t7 = _mm256_unpackhi_epi32(r[6], r[7]);
            let u0 = _mm256_unpacklo_epi64(t0, t2);
            let u1 = _mm256_unpackhi_epi64(t0, t2);
            let u2 = _mm256_unpacklo_epi64(t1, t3);
            let u3 = _mm256_unpackhi_epi64(t1, t3);
            let u4 = _mm256_unpacklo_epi64(t4, t6);
            let u5 = _mm256_unpackhi_epi64(t4, t6);
            let u6 = _mm256_unpacklo_epi64(t5, t7);
            let u7 = _mm256_unpackhi_epi64(t5, t7);
            // ...and rows 0-3 meet rows 4-7 across the halves.
            [
                _mm256_permute2x128_si256::<0x20>(u0, u4),
                _mm256_permute2x128_si256::<0x20>(u1, u5),
                _mm256_permute2x128_si256::<0x20>(u2, u6),
                _mm256_permute2x128_si256::<0x20>(u3, u7),
                _mm256_permute2x128_si256::<0x31>(u0, u4),
                _mm256_permute2x128_si256::<0x31>(u1, u5),
                _mm256_permute2x128_si256::<0x31>(u2, u6),
                _mm256_permute2x128_si256::<0x31>(u3, u7),
            ]
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{avx2, BLOCK, K};

    /// `blocks` consecutive blocks of each of `G * 8` lanes into its
    /// state, as [`avx2::compress`] but with AVX-512's instructions on
    /// the same registers: `vpternlogd` computes each round function
    /// and `vprold` each rotate in one instruction, which shortens each
    /// step's chain from about six instructions to four.
    ///
    /// # Safety
    /// The CPU must support AVX-512F and AVX-512VL; `states` and `ptrs`
    /// hold `G * 8` lanes, and each `ptrs[i]` must be valid for reads of
    /// `blocks * 64` bytes.
    #[target_feature(enable = "avx512f,avx512vl")]
    pub(super) unsafe fn compress<const G: usize>(
        states: &mut [[u32; 4]],
        ptrs: &[*const u8],
        blocks: usize,
    ) {
        simd_compress!(ops, G, states, ptrs, blocks)
    }

    /// The vector operations of [`compress`]: AVX2 registers, AVX-512VL
    /// instructions. Every function requires AVX-512F and AVX-512VL.
    mod ops {
        use super::avx2::ops as avx2;
        use std::arch::x86_64::*;

        pub type V = __m256i;
        pub const WIDTH: usize = avx2::WIDTH;

        // Loads, stores, adds: AVX2's (AVX-512F implies AVX2).
        pub use avx2::{add, set1, set_state, state, words};

        #[inline]
        #[target_feature(enable = "avx512f,avx512vl")]
        pub unsafe fn rol<const S: i32, const R: i32>(x: V) -> V {
            _mm256_rol_epi32::<S>(x)
        }

        // The round functions as truth tables over (b, c, d), whose
        // inputs are the bytes 0xf0, 0xcc and 0xaa.

        /// `(b & c) | (!b & d)`.
        #[inline]
        #[target_feature(enable = "avx512f,avx512vl")]
        pub unsafe fn f(b: V, c: V, d: V) -> V {
            _mm256_ternarylogic_epi32::<0xca>(b, c, d)
        }

        /// `(b & d) | (c & !d)`.
        #[inline]
        #[target_feature(enable = "avx512f,avx512vl")]
        pub unsafe fn g(b: V, c: V, d: V) -> V {
            _mm256_ternarylogic_epi32::<0xe4>(b, c, d)
        }

        /// `b ^ c ^ d`.
        #[inline]
        #[target_feature(enable = "avx512f,avx512vl")]
        pub unsafe fn h(b: V, c: V, d: V) -> V {
            _mm256_ternarylogic_epi32::<0x96>(b, c, d)
        }

        /// `c ^ (b | !d)`.
        #[inline]
        #[target_feature(enable = "avx512f,avx512vl")]
        pub unsafe fn i(b: V, c: V, d: V) -> V {
            _mm256_ternarylogic_epi32::<0x39>(b, c, d)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5::Digest;

    /// Deterministic bytes (xorshift), so a failure can be replayed.
    fn bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9e3779b97f4a7c15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn reference(data: &[u8]) -> [u8; 16] {
        md5::Md5::digest(data).into()
    }

    /// Every path this CPU runs, the fastest first.
    fn kinds() -> Vec<Kind> {
        [Kind::Avx512, Kind::Avx2, Kind::Scalar]
            .into_iter()
            .filter(|k| k.available())
            .collect()
    }

    fn lanes(kind: Kind) -> Lanes {
        Lanes::with_kind(kind).expect("an available kind")
    }

    /// Each lane's digest is the `md-5` crate's of `data[i]`, the lane
    /// fed all of it (`what` names the case in a failure).
    fn assert_digests<D: AsRef<[u8]>>(lanes: &mut Lanes, data: &[D], what: &str) {
        for (i, d) in data.iter().enumerate() {
            let d = d.as_ref();
            assert_eq!(
                lanes.finish(i),
                Some(reference(d)),
                "{what}: lane {i}, length {}",
                d.len()
            );
        }
    }

    fn scalar(data: &[u8]) -> [u8; 16] {
        let mut h = Md5::new();
        h.update(data);
        h.finalize()
    }

    #[test]
    fn scalar_matches_md5_crate_for_every_length_to_4k() {
        for len in 0..=4096 {
            let d = bytes(len as u64, len);
            assert_eq!(scalar(&d), reference(&d), "length {len}");
        }
        // RFC 1321's own examples.
        assert_eq!(scalar(b"abc"), reference(b"abc"));
        assert_eq!(
            scalar(b""),
            [
                0xd4, 0x1d, 0x8c, 0xd9, 0x8f, 0x00, 0xb2, 0x04, 0xe9, 0x80, 0x09, 0x98, 0xec, 0xf8,
                0x42, 0x7e
            ]
        );
    }

    #[test]
    fn lanes_match_md5_crate_for_every_length_to_4k() {
        for kind in kinds() {
            // Sixteen different lengths per pass, every length covered.
            for base in (0..=4096usize).step_by(LANES) {
                let data: Vec<Vec<u8>> = (0..LANES)
                    .map(|i| bytes((base + i) as u64 ^ 0xabc, base + i))
                    .collect();
                let mut lanes = lanes(kind);
                let inputs: Vec<&[u8]> = data.iter().map(|d| d.as_slice()).collect();
                lanes.update(&inputs);
                assert_digests(&mut lanes, &data, &format!("{kind:?}"));
            }
        }
    }

    #[test]
    fn lanes_of_unequal_lengths_fed_in_odd_pieces() {
        for (kind, piece) in kinds()
            .into_iter()
            .flat_map(|k| [1usize, 7, 63, 64, 65, 1000, 4097, 1 << 20].map(|p| (k, p)))
        {
            // Several MiB in one lane only where the pieces are large (a
            // debug build steps the small ones slowly).
            let big = if piece >= 1000 { 3 << 20 } else { 20_000 };
            let lens = [
                0usize,
                1,
                63,
                64,
                65,
                1000,
                7_001,
                big,
                2,
                127,
                128,
                129,
                4096,
                5_000,
                9_999,
                big / 2,
            ];
            let data: Vec<Vec<u8>> = lens
                .iter()
                .enumerate()
                .map(|(i, &n)| bytes(i as u64 + 7, n))
                .collect();
            let mut lanes = lanes(kind);
            let mut at = [0usize; LANES];
            loop {
                // Each lane gets a piece of a different size per step.
                let inputs: Vec<&[u8]> = (0..LANES)
                    .map(|i| {
                        let want = piece + i * 3;
                        let end = (at[i] + want).min(data[i].len());
                        let s = &data[i][at[i]..end];
                        at[i] = end;
                        s
                    })
                    .collect();
                if inputs.iter().all(|s| s.is_empty()) {
                    break;
                }
                lanes.update(&inputs);
            }
            assert_digests(&mut lanes, &data, &format!("{kind:?}, piece {piece}"));
        }
    }

    #[test]
    fn a_lane_refilled_with_a_new_file_starts_clean() {
        let a = bytes(1, 5000);
        let b = bytes(2, 300);
        let c = bytes(3, 9000);
        for kind in kinds() {
            let mut lanes = lanes(kind);
            lanes.update(&[&a, &c[..4000]]);
            assert_eq!(lanes.finish(0), Some(reference(&a)));
            lanes.update(&[&b, &c[4000..]]);
            assert_eq!(lanes.finish(0), Some(reference(&b)));
            assert_eq!(lanes.finish(1), Some(reference(&c)));
            assert_eq!(lanes.finish(LANES), None);
            // A lane's state handed to the scalar path midway and back.
            lanes.update(&[&a[..100], &c[..3000]]);
            let mut h = lanes.take(1).unwrap();
            h.update(&c[3000..5001]);
            lanes.put(1, h);
            lanes.update(&[&a[100..], &c[5001..]]);
            assert_eq!(lanes.finish(0), Some(reference(&a)));
            assert_eq!(lanes.finish(1), Some(reference(&c)));
        }
    }

    /// Inputs taken in part, the rest given again with more appended (as
    /// the scan's lanes refill), give every lane its digest.
    #[test]
    fn lanes_taken_in_part_match() {
        for kind in kinds() {
            let lens = [
                0usize, 1, 64, 65, 200, 4_000, 70_001, 300_000, 3, 63, 128, 1_000, 8_191, 20_000,
                150_000, 64,
            ];
            let data: Vec<Vec<u8>> = lens
                .iter()
                .enumerate()
                .map(|(i, &n)| bytes(i as u64 + 11, n))
                .collect();
            let mut lanes = lanes(kind);
            // Per lane: bytes taken, and bytes handed so far (a window
            // that grows by a different piece per lane while it is not
            // taken whole).
            let mut taken = [0usize; LANES];
            let mut handed = [0usize; LANES];
            let mut calls = 0;
            while (0..LANES).any(|i| taken[i] < data[i].len()) {
                for i in 0..LANES {
                    if handed[i] == taken[i] {
                        handed[i] = (handed[i] + 1000 + i * 4097).min(data[i].len());
                    }
                }
                let inputs: Vec<&[u8]> =
                    (0..LANES).map(|i| &data[i][taken[i]..handed[i]]).collect();
                let used = lanes.update_some(&inputs);
                for i in 0..LANES {
                    assert!(used[i] <= inputs[i].len());
                    taken[i] += used[i];
                }
                calls += 1;
                assert!(calls < 100_000, "no progress");
            }
            assert_digests(&mut lanes, &data, &format!("{kind:?}"));
        }
    }

    #[test]
    fn large_inputs_match() {
        // Several MiB: one stream, and lanes of unequal large sizes fed in
        // 1 MiB pieces as the scan reads.
        let big = bytes(99, 6 << 20);
        assert_eq!(scalar(&big), reference(&big));
        let inputs: Vec<&[u8]> = (0..LANES)
            .map(|i| &big[i * 1000..(2 << 20) + i * 77_777])
            .collect();
        for kind in kinds() {
            let mut lanes = lanes(kind);
            // Every input is fed whole (the longest is under 4 MiB).
            for chunk in 0..4 {
                let part: Vec<&[u8]> = inputs
                    .iter()
                    .map(|d| &d[(chunk << 20).min(d.len())..((chunk + 1) << 20).min(d.len())])
                    .collect();
                lanes.update(&part);
            }
            assert_digests(&mut lanes, &inputs, &format!("{kind:?}"));
        }
    }

    /// Every count of busy lanes, in both group layouts (eight or fewer
    /// take one group of eight, more take two), the busy ones packed at
    /// the start or spread over the sixteen, of lengths that leave some
    /// lanes behind the others part way.
    #[test]
    fn every_count_of_busy_lanes_matches() {
        for kind in kinds() {
            for busy in 1..=LANES {
                for spread in [false, true] {
                    // Lane `i` is busy when among the first `busy`, or
                    // (spread) every other one first, then the rest.
                    let order: Vec<usize> = if spread {
                        (0..LANES).step_by(2).chain((1..LANES).step_by(2)).collect()
                    } else {
                        (0..LANES).collect()
                    };
                    let mut data: Vec<Vec<u8>> = vec![Vec::new(); LANES];
                    for (n, &i) in order[..busy].iter().enumerate() {
                        data[i] = bytes((busy * 100 + i) as u64, 3_000 + n * 517);
                    }
                    let mut lanes = lanes(kind);
                    // In two pieces, the first ending mid-block.
                    let first: Vec<&[u8]> = data.iter().map(|d| &d[..d.len().min(1_001)]).collect();
                    let rest: Vec<&[u8]> = data.iter().map(|d| &d[d.len().min(1_001)..]).collect();
                    lanes.update(&first);
                    lanes.update(&rest);
                    let what = format!("{kind:?}, {busy} busy, spread {spread}");
                    assert_digests(&mut lanes, &data, &what);
                }
            }
        }
    }

    /// Random calls (seeded, so a failure replays): pieces of random
    /// sizes to random lanes through `update`, `update_some` and
    /// `update_lane`, lanes taken out and fed on their own, finished and
    /// started again, each digest checked against the `md-5` crate.
    #[test]
    fn random_calls_match() {
        for kind in kinds() {
            let mut rng = 0x853c_49e6_748f_ea9bu64;
            let mut next = move |n: usize| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (rng % n as u64) as usize
            };
            let source = bytes(5, 1 << 20);
            let mut lanes = lanes(kind);
            // What each lane was fed since it last started.
            let mut fed: Vec<Vec<u8>> = vec![Vec::new(); LANES];
            let mut checked = 0;
            for _ in 0..2_000 {
                // Mostly short pieces, sometimes tens of KiB.
                let piece = |next: &mut dyn FnMut(usize) -> usize| {
                    let len = if next(8) == 0 {
                        next(40_000)
                    } else {
                        next(700)
                    };
                    let at = next(source.len() - len);
                    &source[at..at + len]
                };
                match next(10) {
                    0..=3 => {
                        let n = 1 + next(LANES);
                        let inputs: Vec<&[u8]> = (0..n)
                            .map(|_| {
                                if next(3) == 0 {
                                    &[][..]
                                } else {
                                    piece(&mut next)
                                }
                            })
                            .collect();
                        lanes.update(&inputs);
                        for (f, d) in fed.iter_mut().zip(&inputs) {
                            f.extend_from_slice(d);
                        }
                    }
                    4..=6 => {
                        let inputs: Vec<&[u8]> = (0..LANES).map(|_| piece(&mut next)).collect();
                        let used = lanes.update_some(&inputs);
                        for ((f, d), &u) in fed.iter_mut().zip(&inputs).zip(&used) {
                            assert!(u <= d.len());
                            f.extend_from_slice(&d[..u]);
                        }
                    }
                    7 => {
                        let i = next(LANES);
                        let d = piece(&mut next);
                        lanes.update_lane(i, d);
                        fed[i].extend_from_slice(d);
                    }
                    8 => {
                        // Out, fed alone, and back.
                        let i = next(LANES);
                        let mut h = lanes.take(i).expect("a lane");
                        let d = piece(&mut next);
                        h.update(d);
                        fed[i].extend_from_slice(d);
                        lanes.put(i, h);
                    }
                    _ => {
                        let i = next(LANES);
                        assert_eq!(
                            lanes.finish(i),
                            Some(reference(&fed[i])),
                            "{kind:?} lane {i}"
                        );
                        fed[i].clear();
                        checked += 1;
                    }
                }
            }
            assert_digests(&mut lanes, &fed, &format!("{kind:?}"));
            assert!(checked > 50, "{checked} digests checked midway");
        }
    }

    #[test]
    fn each_kind_is_run_only_where_the_cpu_has_it() {
        for kind in [Kind::Avx512, Kind::Avx2, Kind::Scalar] {
            let lanes = Lanes::with_kind(kind);
            assert_eq!(lanes.is_some(), kind.available(), "{kind:?}");
            if let Some(l) = lanes {
                assert_eq!(l.kind(), kind.name());
                assert_eq!(l.is_simd(), kind != Kind::Scalar);
            }
        }
        assert!(Kind::Scalar.available());
        // The fastest is chosen: AVX-512 over AVX2 over scalar.
        assert_eq!(Lanes::new().kind(), kinds()[0].name());
        assert_eq!(Kind::best(), kinds()[0]);
    }

    #[test]
    fn simd_is_used_where_the_cpu_has_it() {
        assert_eq!(Lanes::new().is_simd(), simd_available());
        assert!(!Lanes::scalar().is_simd());
    }
}
