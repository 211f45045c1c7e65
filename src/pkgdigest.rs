//! Package digests: the algorithms package databases record for their
//! files ([`Algo`], a value [`FileDigest`]), one read into several of them
//! ([`MultiHasher`]), the paths a scan is to compute which of them for
//! ([`DigestPaths`], known before the walk from the package databases) and
//! the digests it computed, keyed by the BLAKE3 of the same bytes
//! ([`ContentDigests`]).
//!
//! Kept below both the scan and provenance, so that the scan computes
//! dpkg's MD5s, rpm's SHA-256 (or SHA-1, SHA-512...) and apk's SHA-1 in the
//! read that gives BLAKE3, and provenance takes them from there instead of
//! reading every owned file a second time, without either importing the
//! other. This module depends on nothing else of the crate.

use md5::Digest;

/// A digest a package database records for a file. dpkg's md5sums are MD5,
/// rpm's FILEDIGESTS usually SHA-256 (any of FILEDIGESTALGO's), apk's `Z:Q1`
/// SHA-1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileDigest {
    Md5([u8; 16]),
    Sha1([u8; 20]),
    Sha224([u8; 28]),
    Sha256([u8; 32]),
    Sha384([u8; 48]),
    Sha512([u8; 64]),
}

/// The algorithm of a [`FileDigest`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algo {
    Md5,
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl Algo {
    pub const ALL: [Algo; 6] = [
        Algo::Md5,
        Algo::Sha1,
        Algo::Sha224,
        Algo::Sha256,
        Algo::Sha384,
        Algo::Sha512,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Algo::Md5 => "md5",
            Algo::Sha1 => "sha1",
            Algo::Sha224 => "sha224",
            Algo::Sha256 => "sha256",
            Algo::Sha384 => "sha384",
            Algo::Sha512 => "sha512",
        }
    }

    /// The byte the baseline stores it as.
    fn code(self) -> u8 {
        match self {
            Algo::Md5 => 1,
            Algo::Sha1 => 2,
            Algo::Sha224 => 3,
            Algo::Sha256 => 4,
            Algo::Sha384 => 5,
            Algo::Sha512 => 6,
        }
    }
}

impl FileDigest {
    pub fn algo(&self) -> Algo {
        match self {
            FileDigest::Md5(_) => Algo::Md5,
            FileDigest::Sha1(_) => Algo::Sha1,
            FileDigest::Sha224(_) => Algo::Sha224,
            FileDigest::Sha256(_) => Algo::Sha256,
            FileDigest::Sha384(_) => Algo::Sha384,
            FileDigest::Sha512(_) => Algo::Sha512,
        }
    }

    pub fn bytes(&self) -> &[u8] {
        match self {
            FileDigest::Md5(b) => b,
            FileDigest::Sha1(b) => b,
            FileDigest::Sha224(b) => b,
            FileDigest::Sha256(b) => b,
            FileDigest::Sha384(b) => b,
            FileDigest::Sha512(b) => b,
        }
    }

    /// A digest of `algo` from its raw bytes; `None` on a wrong length.
    pub fn from_bytes(algo: Algo, b: &[u8]) -> Option<FileDigest> {
        Some(match algo {
            Algo::Md5 => FileDigest::Md5(b.try_into().ok()?),
            Algo::Sha1 => FileDigest::Sha1(b.try_into().ok()?),
            Algo::Sha224 => FileDigest::Sha224(b.try_into().ok()?),
            Algo::Sha256 => FileDigest::Sha256(b.try_into().ok()?),
            Algo::Sha384 => FileDigest::Sha384(b.try_into().ok()?),
            Algo::Sha512 => FileDigest::Sha512(b.try_into().ok()?),
        })
    }

    /// A digest of `algo` from lowercase or uppercase hex.
    pub fn from_hex(algo: Algo, hex: &[u8]) -> Option<FileDigest> {
        if !hex.len().is_multiple_of(2) || hex.len() > 128 {
            return None;
        }
        let mut raw = Vec::with_capacity(hex.len() / 2);
        for pair in hex.chunks_exact(2) {
            let hi = (*pair.first()? as char).to_digit(16)?;
            let lo = (*pair.get(1)? as char).to_digit(16)?;
            raw.push((hi * 16 + lo) as u8);
        }
        FileDigest::from_bytes(algo, &raw)
    }

    /// `algo byte ‖ digest`, as the baseline keeps it.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![self.algo().code()];
        v.extend_from_slice(self.bytes());
        v
    }

    pub fn decode(b: &[u8]) -> Option<FileDigest> {
        let (code, rest) = b.split_first()?;
        let algo = Algo::ALL.into_iter().find(|a| a.code() == *code)?;
        FileDigest::from_bytes(algo, rest)
    }
}

/// Streams content once into every algorithm asked for.
pub struct MultiHasher {
    hashers: Vec<(Algo, Box<dyn DynHasher>)>,
}

/// An object-safe view of the RustCrypto hashers.
pub trait DynHasher: Send {
    fn update(&mut self, data: &[u8]);
    fn finish(self: Box<Self>) -> Vec<u8>;
}

impl<D: Digest + Send + 'static> DynHasher for D {
    fn update(&mut self, data: &[u8]) {
        Digest::update(self, data);
    }
    fn finish(self: Box<Self>) -> Vec<u8> {
        (*self).finalize().to_vec()
    }
}

impl MultiHasher {
    pub fn new(algos: &[Algo]) -> MultiHasher {
        let mut hashers: Vec<(Algo, Box<dyn DynHasher>)> = Vec::new();
        for &a in algos {
            if hashers.iter().any(|(b, _)| *b == a) {
                continue;
            }
            let h: Box<dyn DynHasher> = match a {
                Algo::Md5 => Box::new(md5::Md5::new()),
                Algo::Sha1 => Box::new(sha1::Sha1::new()),
                Algo::Sha224 => Box::new(sha2::Sha224::new()),
                Algo::Sha256 => Box::new(sha2::Sha256::new()),
                Algo::Sha384 => Box::new(sha2::Sha384::new()),
                Algo::Sha512 => Box::new(sha2::Sha512::new()),
            };
            hashers.push((a, h));
        }
        MultiHasher { hashers }
    }

    pub fn update(&mut self, data: &[u8]) {
        for (_, h) in &mut self.hashers {
            h.update(data);
        }
    }

    pub fn finish(self) -> Vec<FileDigest> {
        self.hashers
            .into_iter()
            .filter_map(|(a, h)| FileDigest::from_bytes(a, &h.finish()))
            .collect()
    }
}

/// A set of [`Algo`]s (one bit each).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AlgoSet(u8);

impl AlgoSet {
    pub const EMPTY: AlgoSet = AlgoSet(0);

    fn bit(a: Algo) -> u8 {
        1 << (a.code() - 1)
    }

    pub fn of(algos: &[Algo]) -> AlgoSet {
        algos.iter().fold(AlgoSet::EMPTY, |s, &a| s.with(a))
    }

    pub fn with(self, a: Algo) -> AlgoSet {
        AlgoSet(self.0 | Self::bit(a))
    }

    pub fn without(self, a: Algo) -> AlgoSet {
        AlgoSet(self.0 & !Self::bit(a))
    }

    pub fn contains(self, a: Algo) -> bool {
        self.0 & Self::bit(a) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The algorithms in the set, in [`Algo::ALL`]'s order.
    pub fn iter(self) -> impl Iterator<Item = Algo> {
        Algo::ALL.into_iter().filter(move |&a| self.contains(a))
    }
}

/// The paths whose package digests the scan computes in its own read, with
/// the algorithms each wants (dpkg's MD5, rpm's FILEDIGESTALGO, apk's
/// SHA-1; several when several databases own a path), known before the
/// walk. Kept as 64-bit hashes of the paths: a collision only costs a
/// digest nobody asked for (provenance looks results up by the content's
/// BLAKE3 and the algorithm), and ~100k packaged files take about a
/// megabyte instead of ten.
///
/// The paths are hashed with foldhash under one random seed per set (the
/// same value for a path in every thread that asks): two paths whose
/// hashes collide only make the scan compute a digest nobody asked for,
/// and a seed chosen at run time gives no way to plant such pairs (see
/// `fasthash`, which the crate's other path maps use).
#[derive(Debug, Default)]
pub struct DigestPaths {
    algos: std::collections::HashMap<u64, AlgoSet, foldhash::fast::RandomState>,
    state: foldhash::fast::RandomState,
}

impl DigestPaths {
    /// An empty set with room for `n` paths.
    pub fn with_capacity(n: usize) -> DigestPaths {
        DigestPaths {
            algos: std::collections::HashMap::with_capacity_and_hasher(n, Default::default()),
            state: Default::default(),
        }
    }

    fn path_hash(&self, path: &[u8]) -> u64 {
        use std::hash::BuildHasher;
        self.state.hash_one(path)
    }

    /// `path` wants `algo` (besides what it wanted already).
    pub fn insert(&mut self, path: &[u8], algo: Algo) {
        let h = self.path_hash(path);
        let s = self.algos.entry(h).or_default();
        *s = s.with(algo);
    }

    /// The algorithms `path` wants (empty: none).
    pub fn algos(&self, path: &[u8]) -> AlgoSet {
        self.algos
            .get(&self.path_hash(path))
            .copied()
            .unwrap_or_default()
    }

    /// Whether `path` wants `algo`.
    pub fn wants(&self, path: &[u8], algo: Algo) -> bool {
        self.algos(path).contains(algo)
    }

    pub fn len(&self) -> usize {
        self.algos.len()
    }

    pub fn is_empty(&self) -> bool {
        self.algos.is_empty()
    }
}

/// Package digests computed in the scan's read, by the BLAKE3 of the same
/// bytes: what provenance needs of a file's content, whatever its path.
/// A file that changed while it was read is recorded without a BLAKE3 and
/// leaves no digest here, so nothing can be looked up for content that was
/// not read whole. Sorted by ([`sort_content`]) once the scan is done (see
/// [`digest_of`]).
///
/// dpkg's MD5s (nearly all of them on a Debian host: one per packaged
/// library read) are kept at 48 bytes each, the other algorithms (rpm's,
/// apk's) apart at their enum's 97: the scan's tens of thousands live
/// through the judges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContentDigests {
    md5: Vec<Md5Entry>,
    other: Vec<([u8; 32], FileDigest)>,
}

impl ContentDigests {
    /// None yet.
    pub const fn new() -> ContentDigests {
        ContentDigests {
            md5: Vec::new(),
            other: Vec::new(),
        }
    }

    /// How many are held.
    pub fn len(&self) -> usize {
        self.md5.len() + self.other.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.md5.capacity() * std::mem::size_of::<([u8; 32], [u8; 16])>()
            + self.other.capacity() * std::mem::size_of::<([u8; 32], FileDigest)>()
    }
}

impl Extend<([u8; 32], FileDigest)> for ContentDigests {
    fn extend<I: IntoIterator<Item = ([u8; 32], FileDigest)>>(&mut self, it: I) {
        for (b, d) in it {
            match d {
                FileDigest::Md5(m) => self.md5.push((b, m)),
                d => self.other.push((b, d)),
            }
        }
    }
}

/// An MD5 of [`ContentDigests`] as the digest it is.
type Md5Entry = ([u8; 32], [u8; 16]);
type ToDigest = fn(Md5Entry) -> ([u8; 32], FileDigest);

impl IntoIterator for ContentDigests {
    type Item = ([u8; 32], FileDigest);
    type IntoIter = std::iter::Chain<
        std::iter::Map<std::vec::IntoIter<Md5Entry>, ToDigest>,
        std::vec::IntoIter<([u8; 32], FileDigest)>,
    >;
    fn into_iter(self) -> Self::IntoIter {
        let md5: ToDigest = |(b, m)| (b, FileDigest::Md5(m));
        self.md5.into_iter().map(md5).chain(self.other)
    }
}

impl FromIterator<([u8; 32], FileDigest)> for ContentDigests {
    fn from_iter<I: IntoIterator<Item = ([u8; 32], FileDigest)>>(it: I) -> Self {
        let mut d = ContentDigests::new();
        d.extend(it);
        d
    }
}

/// Sorts `d` by BLAKE3 and algorithm and drops repeats (the same content
/// read under several paths); gives back the room growing left.
pub fn sort_content(d: &mut ContentDigests) {
    d.md5.sort_unstable_by_key(|a| a.0);
    d.md5.dedup_by(|a, b| a.0 == b.0);
    d.md5.shrink_to_fit();
    d.other.sort_unstable_by_key(|a| (a.0, a.1.algo()));
    d.other
        .dedup_by(|a, b| a.0 == b.0 && a.1.algo() == b.1.algo());
    d.other.shrink_to_fit();
}

/// The digest of `algo` of the content whose BLAKE3 is `blake3`, from a
/// sorted [`ContentDigests`].
pub fn digest_of(d: &ContentDigests, blake3: &[u8; 32], algo: Algo) -> Option<FileDigest> {
    if algo == Algo::Md5 {
        return d
            .md5
            .binary_search_by(|(b, _)| b.cmp(blake3))
            .ok()
            .and_then(|i| d.md5.get(i))
            .map(|(_, m)| FileDigest::Md5(*m));
    }
    d.other
        .binary_search_by(|(b, x)| (b, x.algo()).cmp(&(blake3, algo)))
        .ok()
        .and_then(|i| d.other.get(i))
        .map(|(_, x)| *x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_round_trip_and_reject_wrong_lengths() {
        let d = FileDigest::from_hex(Algo::Sha256, &[b'a'; 64]).unwrap();
        assert_eq!(FileDigest::decode(&d.encode()), Some(d));
        assert!(FileDigest::from_hex(Algo::Sha256, &[b'a'; 40]).is_none());
        assert!(FileDigest::from_hex(Algo::Md5, b"zz").is_none());
        assert!(FileDigest::decode(&[9, 1, 2]).is_none());
        assert!(FileDigest::decode(&[]).is_none());
    }

    #[test]
    fn one_pass_gives_every_algorithm() {
        let mut h = MultiHasher::new(&[Algo::Md5, Algo::Sha256, Algo::Md5, Algo::Sha1]);
        h.update(b"hello\n");
        let v = h.finish();
        assert_eq!(v.len(), 3);
        let hex =
            |d: &FileDigest| -> String { d.bytes().iter().map(|b| format!("{b:02x}")).collect() };
        assert_eq!(hex(&v[0]), "b1946ac92492d2347c6235b4d2611184");
        assert_eq!(
            hex(&v[1]),
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
        );
        assert_eq!(hex(&v[2]), "f572d396fae9206628714fb2ce00f72e94f2258f");
    }

    #[test]
    fn paths_carry_the_algorithms_each_wants() {
        let mut p = DigestPaths::default();
        p.insert(b"/usr/lib/libdpkg.so.1", Algo::Md5);
        p.insert(b"/usr/lib64/librpm.so.1", Algo::Sha256);
        p.insert(b"/usr/lib64/libboth.so.1", Algo::Sha256);
        p.insert(b"/usr/lib64/libboth.so.1", Algo::Md5);
        p.insert(b"/lib/libapk.so.1", Algo::Sha1);
        assert_eq!(p.len(), 4);
        assert_eq!(p.algos(b"/usr/lib/libdpkg.so.1"), AlgoSet::of(&[Algo::Md5]));
        assert!(p.wants(b"/usr/lib64/librpm.so.1", Algo::Sha256));
        assert!(!p.wants(b"/usr/lib64/librpm.so.1", Algo::Md5));
        let both = p.algos(b"/usr/lib64/libboth.so.1");
        assert_eq!(both.iter().collect::<Vec<_>>(), [Algo::Md5, Algo::Sha256]);
        assert_eq!(both.without(Algo::Md5), AlgoSet::of(&[Algo::Sha256]));
        assert!(p.algos(b"/usr/lib/unowned.so").is_empty());
        assert!(p.wants(b"/lib/libapk.so.1", Algo::Sha1));
        assert!(AlgoSet::of(&Algo::ALL).iter().eq(Algo::ALL));
    }

    /// A digest is found only under the BLAKE3 of the bytes it was computed
    /// from and under its own algorithm: the content a file holds when it
    /// is judged (another BLAKE3) never takes the digest of what was read.
    #[test]
    fn content_digests_answer_only_for_their_blake3_and_algorithm() {
        let read = *blake3::hash(b"the bytes the scan read").as_bytes();
        let now = *blake3::hash(b"what the file holds when judged").as_bytes();
        let sha256 = FileDigest::Sha256([7; 32]);
        let md5 = FileDigest::Md5([8; 16]);
        let mut d: ContentDigests = [
            (read, sha256),
            ([0xff; 32], FileDigest::Sha1([1; 20])),
            (read, md5),
            (read, sha256),
            ([0; 32], FileDigest::Sha256([2; 32])),
            (now, FileDigest::Md5([9; 16])),
            (now, FileDigest::Md5([9; 16])),
        ]
        .into_iter()
        .collect();
        sort_content(&mut d);
        assert_eq!(d.len(), 5, "the repeats dropped");
        assert_eq!(
            digest_of(&d, &now, Algo::Md5),
            Some(FileDigest::Md5([9; 16]))
        );
        // What goes in comes out (a part's digests joining the scan's).
        let mut again = ContentDigests::new();
        again.extend(d.clone());
        sort_content(&mut again);
        assert_eq!(again, d);
        assert_eq!(digest_of(&d, &read, Algo::Sha256), Some(sha256));
        assert_eq!(digest_of(&d, &read, Algo::Md5), Some(md5));
        assert_eq!(digest_of(&d, &read, Algo::Sha1), None);
        assert_eq!(digest_of(&d, &now, Algo::Sha256), None);
        assert_eq!(digest_of(&ContentDigests::new(), &read, Algo::Sha256), None);
    }
}
