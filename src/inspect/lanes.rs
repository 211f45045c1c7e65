//! Packaged files read in turns, several per walker thread, so that their
//! MD5s share the SIMD lanes of one core ([`crate::md5lanes`]): MD5 of one
//! stream is serial, but eight files are eight independent streams.
//!
//! A file whose package digest is an MD5 is handed to the [`LaneEngine`]
//! instead of being inspected at once. The engine prepares, opens and
//! `fstat`s it exactly as the inspector does (the same code), then reads
//! one chunk of each open file per step, feeding each file's BLAKE3 and
//! facts as the inspector's own loop would and all the MD5s together. A
//! file that ends leaves its lane, and the next deferred file takes it, so
//! small files never wait for large ones; at most [`LANES`] files are open
//! per thread, and only one thread per core reads lanes ([`DrainPool`]).
//! The end of each file goes through the inspector's own check
//! ([`Inspector::hash_open`] with the try already made): the second
//! `fstat`, and the retries of a file that changed while it was read.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use super::unix::{read_ahead, Inspector, Prepared};
use super::{read_size, Cost, LargeGate, Outcome, Reading, Stat, LARGE};
use crate::largest::LargestFirst;
use crate::md5lanes::{Lanes, Md5, LANES};
use crate::pkgdigest::{Algo, AlgoSet, FileDigest};
use crate::record::{FileType, Record};

/// Bytes read per lane per step: eight lanes hold 512 KiB per thread, so
/// what a read copies is still cached when BLAKE3 and then the MD5 pass
/// read it (256 KiB per lane cost a third more CPU in all: 2 MiB of
/// buffers per thread went out of cache between the copy and the MD5).
const LANE_CHUNK: usize = 64 << 10;

/// A deferred file: its logical path, directory-entry type and prior record.
type Pending<'r> = (Vec<u8>, Option<FileType>, Option<&'r Record>);

/// A file a walker that ended leaves to the threads that drain: one in
/// flight in a lane (with its MD5 state and its read buffer, which may
/// hold bytes the MD5 has not taken yet), or one not started.
enum Handoff<'r> {
    Lane(Box<(Lane, Md5, Vec<u8>)>),
    Pending(Pending<'r>),
}

/// The files the walk's lanes read, from its first file to its last. One
/// thread per core drains (reads lanes); the other walker threads hand
/// their files over as they find them (see [`LaneEngine::defer`]), and at
/// the walk's end the drainers take what is left. Each walker thread once
/// emptied its own lanes at the end: the MD5 passes of the walk's end ran
/// with ever fewer lanes busy, eight engines on two cores (a fifth of a
/// default `init` here). A drainer whose lanes free up takes the next
/// file from the pool, so lanes stay full until the pool is empty.
pub struct DrainPool<'r> {
    state: Mutex<PoolState<'r>>,
}

struct PoolState<'r> {
    files: Queued<'r>,
    /// Threads draining now; at most `most`.
    drainers: usize,
    most: usize,
}

impl<'r> DrainPool<'r> {
    /// A pool drained by at most `drainers` threads at once.
    pub fn new(drainers: usize) -> DrainPool<'r> {
        DrainPool {
            state: Mutex::new(PoolState {
                files: Queued::default(),
                drainers: 0,
                most: drainers.max(1),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState<'r>> {
        // A drainer that panicked left whole files or none: go on.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The pool's files, the largest first: a file's MD5 is one chain, read
/// at one lane's pace, so the longest chains start first and the rest
/// fill the lanes around them (sizes known from a walk that sizes files;
/// the others count as empty, first come first served). Files in flight
/// (open, part read) go before any.
#[derive(Default)]
struct Queued<'r>(LargestFirst<Handoff<'r>>);

impl<'r> Queued<'r> {
    fn push(&mut self, h: Handoff<'r>, size: u64) {
        let key = match h {
            Handoff::Lane(_) => u64::MAX,
            Handoff::Pending(_) => size,
        };
        self.0.push(key, h);
    }

    /// At most `n` files, in turn.
    fn take(&mut self, n: usize) -> Vec<Handoff<'r>> {
        std::iter::from_fn(|| self.0.pop()).take(n).collect()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One thread's files in the lanes, and those waiting for one.
pub struct LaneEngine<'r> {
    pending: VecDeque<Pending<'r>>,
    lanes: Vec<Option<Lane>>,
    /// One read buffer per lane (allocated on first use).
    bufs: Vec<Vec<u8>>,
    md5: Lanes,
    done: Vec<(Vec<u8>, Outcome, Cost)>,
    /// Counted among the pool's drainers (see [`LaneEngine::defer`]).
    draining: bool,
    /// Reads take only what the page cache holds (see [`read_cached`]);
    /// false where the kernel does not offer that.
    nowait: bool,
    /// The last step read nothing, its lanes all waiting for the disk:
    /// the next one waits for the first of them.
    block_next: bool,
}

/// A file being read in a lane.
struct Lane {
    logical: Vec<u8>,
    file: File,
    before: Stat,
    reading: Reading,
    want: usize,
    cost: Cost,
    ended: bool,
    error: Option<io::Error>,
    /// Bytes of the last read in the lane's buffer, and how many of them
    /// the MD5 took so far: the next read waits until it took them all.
    filled: usize,
    taken: usize,
    /// The kernel was asked to read the whole file ahead (its first read
    /// found nothing cached).
    advised: bool,
}

impl Default for LaneEngine<'_> {
    fn default() -> Self {
        LaneEngine::new()
    }
}

impl<'r> LaneEngine<'r> {
    pub fn new() -> LaneEngine<'r> {
        LaneEngine {
            pending: VecDeque::new(),
            lanes: (0..LANES).map(|_| None).collect(),
            bufs: (0..LANES).map(|_| Vec::new()).collect(),
            md5: Lanes::new(),
            done: Vec::new(),
            draining: false,
            nowait: cfg!(target_os = "linux"),
            block_next: false,
        }
    }

    /// Whether lanes are worth it on this CPU (else the MD5 is computed
    /// in the inspector's own read, one file at a time).
    pub fn useful() -> bool {
        crate::md5lanes::simd_available()
    }

    /// Takes `logical` (a regular file, by its directory entry) into the
    /// lanes, or into `pool` for the threads that drain it.
    ///
    /// One thread per core reads lanes (a drainer); the other walker
    /// threads hand their files to the pool and walk on. Eight engines
    /// of sixteen lanes on two cores were 128 files in flight, each read
    /// at a 128th of the machine: a large file found early still ended
    /// last, and the walkers sat in their lanes while the listings that
    /// would find the next files waited. A drainer reads its lanes while
    /// they are all busy, from its own files and then the pool's; it walks
    /// on when they run short.
    /// `size`: the file's size when the walk knows it (else 0).
    pub fn defer(
        &mut self,
        insp: &mut Inspector,
        (logical, size): (Vec<u8>, u64),
        hint: Option<FileType>,
        prior: Option<&'r Record>,
        pool: &DrainPool<'r>,
    ) {
        if !self.draining {
            let mut st = pool.lock();
            if !self.claim(&mut st) {
                st.files
                    .push(Handoff::Pending((logical, hint, prior)), size);
                return;
            }
        }
        self.pending.push_back((logical, hint, prior));
        self.pump(insp, pool);
    }

    /// A drainer's lanes, read while they can all be kept busy (its own
    /// files first, then the pool's); nothing for a thread that does not
    /// drain.
    pub fn pump(&mut self, insp: &mut Inspector, pool: &DrainPool<'r>) {
        if !self.draining {
            return;
        }
        loop {
            self.fill(insp);
            self.take_from(pool);
            self.fill(insp);
            if !self.lanes.iter().all(|l| l.is_some()) {
                return;
            }
            self.step(insp);
        }
    }

    /// As many of the pool's files as there are free lanes.
    fn take_from(&mut self, pool: &DrainPool<'r>) {
        let free = self.lanes.iter().filter(|l| l.is_none()).count();
        if free == 0 {
            return;
        }
        let got = pool.lock().files.take(free);
        for h in got {
            self.adopt(h, pool);
        }
    }

    /// Reads everything deferred to its end, with the files of the other
    /// threads that end (see [`DrainPool`]); or, when enough threads drain
    /// already, hands this thread's files to them.
    pub fn drain_shared(&mut self, insp: &mut Inspector, pool: &DrainPool<'r>) {
        if !self.draining {
            let mut st = pool.lock();
            if !self.claim(&mut st) {
                // A drainer still runs: it empties the pool (it checks it
                // under this lock) before it stops.
                self.hand_off(&mut st.files);
                return;
            }
        }
        loop {
            self.fill(insp);
            let free = self.lanes.iter().filter(|l| l.is_none()).count();
            let mut st = pool.lock();
            let got = st.files.take(free);
            if got.is_empty() && self.pending.is_empty() && self.lanes.iter().all(Option::is_none) {
                st.drainers -= 1;
                self.draining = false;
                return;
            }
            drop(st);
            for h in got {
                self.adopt(h, pool);
            }
            self.fill(insp);
            if self.lanes.iter().any(Option::is_some) {
                self.step(insp);
            }
        }
    }

    /// Makes this engine one of the pool's drainers, unless enough drain.
    fn claim(&mut self, st: &mut PoolState<'r>) -> bool {
        if st.drainers >= st.most {
            return false;
        }
        st.drainers += 1;
        self.draining = true;
        true
    }

    /// Every file of this engine into `files` (the lanes in flight, open
    /// files, to be taken first).
    fn hand_off(&mut self, files: &mut Queued<'r>) {
        for p in self.pending.drain(..) {
            files.push(Handoff::Pending(p), 0);
        }
        for i in 0..LANES {
            if let Some(l) = self.lanes[i].take() {
                let md5 = self.md5.take(i).unwrap_or_default();
                let buf = std::mem::take(&mut self.bufs[i]);
                files.push(Handoff::Lane(Box::new((l, md5, buf))), 0);
            }
        }
    }

    /// A file from another engine: a started one into a free lane (the
    /// caller took no more than there are), one not started to the queue.
    fn adopt(&mut self, h: Handoff<'r>, pool: &DrainPool<'r>) {
        match h {
            Handoff::Pending(p) => self.pending.push_back(p),
            Handoff::Lane(b) => {
                let (lane, md5, buf) = *b;
                match self.lanes.iter().position(Option::is_none) {
                    Some(i) => {
                        self.lanes[i] = Some(lane);
                        self.md5.put(i, md5);
                        self.bufs[i] = buf;
                    }
                    // Never (see the caller); back to the pool, which this
                    // drainer looks at again before it stops.
                    None => pool
                        .lock()
                        .files
                        .push(Handoff::Lane(Box::new((lane, md5, buf))), 0),
                }
            }
        }
    }

    /// The inspections finished so far: (logical path, outcome, cost).
    pub fn take_done(&mut self) -> Vec<(Vec<u8>, Outcome, Cost)> {
        std::mem::take(&mut self.done)
    }

    /// Starts deferred files in the free lanes.
    fn fill(&mut self, insp: &mut Inspector) {
        for i in 0..LANES {
            while self.lanes[i].is_none() {
                let Some((logical, hint, prior)) = self.pending.pop_front() else {
                    return;
                };
                self.lanes[i] = self.start(insp, logical, hint, prior);
            }
        }
    }

    /// The inspector's steps up to the first read; `None` when the file
    /// needs no read (or cannot be read), its outcome then being done.
    fn start(
        &mut self,
        insp: &mut Inspector,
        logical: Vec<u8>,
        hint: Option<FileType>,
        prior: Option<&Record>,
    ) -> Option<Lane> {
        let mut cost = Cost::default();
        insp.unreachable = false;
        let key = logical.clone();
        let prepared = insp.prepare(&key, logical, hint, prior, &mut cost);
        let logical = match prepared {
            Prepared::Done(out) => {
                self.finished(insp, key, out, cost);
                return None;
            }
            Prepared::Read(l) => l,
        };
        let (file, logical) = match insp.open_to_read(&key, logical, &mut cost) {
            Ok(f) => f,
            Err(out) => {
                self.finished(insp, key, out, cost);
                return None;
            }
        };
        if insp.unreachable {
            self.finished(insp, key, Outcome::Unreachable, cost);
            return None;
        }
        let before = match insp.timed_fstat(&file, &mut cost) {
            Ok(m) => m,
            Err(e) => {
                self.finished(insp, key, Outcome::Failed(format!("fstat: {e}")), cost);
                return None;
            }
        };
        if !before.is_file() {
            // A FIFO or device swapped in: record it, never read it.
            let out = insp.record_meta(&key, logical, &before);
            self.finished(insp, key, out, cost);
            return None;
        }
        insp.advise(&file, before.size);
        // The MD5 is the lanes' (the reading computes none itself); the
        // other package digests the path wants, the reading's.
        let pkg = insp
            .digest_paths
            .as_ref()
            .map_or(AlgoSet::EMPTY, |p| p.algos(&logical))
            .without(Algo::Md5);
        let reading = Reading::new(&file, &logical, insp.sha256, pkg);
        Some(Lane {
            logical,
            file,
            before,
            reading,
            want: read_size(before.size, LANE_CHUNK),
            cost,
            ended: false,
            error: None,
            filled: 0,
            taken: 0,
            advised: false,
        })
    }

    /// One step of every busy lane: a lane whose last read the MD5 took
    /// whole reads its next chunk (digested and gathered at once), then
    /// the MD5s take what the lanes have in common ([`Lanes::update_some`]),
    /// so a long file shares its SIMD passes with the files that come
    /// after the short ones instead of running alone. Lanes whose file
    /// ended and whose bytes are all taken are finished and freed.
    fn step(&mut self, insp: &mut Inspector) {
        let t = insp.timing.then(Instant::now);
        // A large file's BLAKE3 takes the other cores while they would
        // idle (the inspector's own rule): the walk is over elsewhere and
        // these lanes are what is left. The caller counts itself busy.
        let rayon = insp.parallel_large.as_ref().is_some_and(LargeGate::open);
        let mut worked = [false; LANES];
        // Lanes whose next bytes are not in memory yet: the kernel reads
        // them while the others are digested. With one drainer per core,
        // a read that waited for the disk held sixteen lanes (a cold
        // default `init` took 0.98x the cold floor, 0.69x before).
        let mut waiting = 0;
        let mut block = std::mem::take(&mut self.block_next);
        let nowait = &mut self.nowait;
        for ((lane, buf), worked) in self.lanes.iter_mut().zip(&mut self.bufs).zip(&mut worked) {
            let Some(l) = lane else { continue };
            if l.taken < l.filled || l.ended || l.error.is_some() {
                continue;
            }
            // The last read sized to what is left (as the inspector's).
            l.want = read_size(l.before.size.saturating_sub(l.reading.total), LANE_CHUNK);
            if buf.len() < l.want {
                buf.resize(l.want, 0);
            }
            loop {
                let read = if std::mem::take(&mut block) {
                    (&l.file).read(&mut buf[..l.want])
                } else {
                    read_cached(&l.file, &mut buf[..l.want], nowait)
                };
                match read {
                    Ok(0) => l.ended = true,
                    Ok(n) => {
                        *worked = true;
                        (l.filled, l.taken) = (n, 0);
                        let rayon = rayon && l.before.size >= LARGE;
                        l.reading.feed(&l.file, &l.logical, &buf[..n], rayon);
                        l.ended = l.reading.at_end(l.before.size, n, l.want, LANE_CHUNK);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if !l.advised {
                            l.advised = true;
                            read_ahead(&l.file);
                        }
                        waiting += 1;
                    }
                    Err(e) => l.error = Some(e),
                }
                break;
            }
        }
        let inputs: Vec<&[u8]> = self
            .bufs
            .iter()
            .zip(&self.lanes)
            .map(|(b, l)| match l {
                Some(l) if l.error.is_none() => b.get(l.taken..l.filled).unwrap_or(&[]),
                _ => &[],
            })
            .collect();
        let used = self.md5.update_some(&inputs);
        for ((l, &n), worked) in self.lanes.iter_mut().zip(&used).zip(&mut worked) {
            if let Some(l) = l {
                l.taken += n;
                *worked |= n > 0;
            }
        }
        // Nothing to do but wait: the next step waits for one read
        // instead of asking again at once.
        self.block_next = waiting > 0 && !worked.iter().any(|&w| w);
        if let Some(t) = t {
            // The step's time, shared by the files it read or digested.
            let busy = worked.iter().filter(|&&w| w).count().max(1) as u32;
            let share = t.elapsed() / busy;
            for (l, &w) in self.lanes.iter_mut().zip(&worked) {
                if let (Some(l), true) = (l, w) {
                    l.cost.hash += share;
                }
            }
        }
        for i in 0..LANES {
            if self.lanes[i]
                .as_ref()
                .is_some_and(|l| (l.ended && l.taken >= l.filled) || l.error.is_some())
            {
                self.finish(insp, i);
            }
        }
    }

    /// Lane `i`'s file has been read: its digests go through the
    /// inspector's stability check (and retries) like any other try.
    fn finish(&mut self, insp: &mut Inspector, i: usize) {
        let Some(mut l) = self.lanes[i].take() else {
            return;
        };
        let md5 = self.md5.finish(i);
        let tried = match l.error.take() {
            Some(e) => Err(e),
            None => {
                let mut h = l.reading.finish(&l.file, &self.bufs[i], &mut l.cost);
                h.pkg.extend(md5.map(FileDigest::Md5));
                Ok(h)
            }
        };
        let key = l.logical.clone();
        insp.unreachable = false;
        let out = insp.hash_open(
            &key,
            l.logical,
            l.file,
            &mut l.cost,
            Some((l.before, tried)),
        );
        let out = if insp.unreachable {
            Outcome::Unreachable
        } else {
            out
        };
        self.finished(insp, key, out, l.cost);
    }

    fn finished(&mut self, insp: &mut Inspector, key: Vec<u8>, out: Outcome, cost: Cost) {
        // Whatever the calls said, a parent not reached inside the root
        // means nothing is known of the entry (as `Inspector::inspect`).
        let out = if insp.unreachable {
            Outcome::Unreachable
        } else {
            out
        };
        insp.unreachable = false;
        self.done.push((key, out, cost));
    }
}

/// Reads from `file`'s position what the page cache holds without waiting
/// for the disk (`preadv2` with `RWF_NOWAIT`): `WouldBlock` when none of
/// it is there yet. Where the kernel refuses the flag, `nowait` turns
/// false and this read (and the engine's next ones) wait as `read` does.
fn read_cached(file: &File, buf: &mut [u8], nowait: &mut bool) -> io::Result<usize> {
    #[cfg(target_os = "linux")]
    if *nowait {
        use std::os::fd::AsRawFd;
        let iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: one iovec over `buf`, which outlives the call; offset -1
        // reads at (and advances) the file position, as read(2) does.
        let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, -1, libc::RWF_NOWAIT) };
        if let Ok(n) = usize::try_from(n) {
            return Ok(n);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EOPNOTSUPP | libc::EINVAL | libc::ENOSYS) => *nowait = false,
            _ => return Err(e),
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nowait;
    (&*file).read(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::DigestPaths;
    use crate::rootfs::Root;
    use md5::Digest;
    use std::os::unix::ffi::OsStrExt;
    use std::sync::Arc;

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

    /// A cached read gives what `read` gives, from the file's position,
    /// and moves it; `nowait` off (a kernel without the flag) reads too.
    #[test]
    fn a_cached_read_reads_as_read_does_and_moves_the_position() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("f");
        let data = bytes(7, 200_000);
        std::fs::write(&p, &data).unwrap();
        let f = File::open(&p).unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65_536];
        let mut nowait = true;
        loop {
            match read_cached(&f, &mut buf, &mut nowait) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                // Not cached (a disk, not tmpfs): asked ahead, then waited for.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    read_ahead(&f);
                    nowait = false;
                    continue;
                }
                Err(e) => panic!("{e}"),
            }
            // Every other read as a kernel without RWF_NOWAIT would.
            nowait = !nowait;
        }
        assert_eq!(got, data);
    }

    #[test]
    fn the_pool_gives_files_in_flight_then_the_largest_then_in_arrival_order() {
        let pending = |p: &str| Handoff::Pending((p.as_bytes().to_vec(), None, None));
        let name = |h: &Handoff| match h {
            Handoff::Pending((p, _, _)) => String::from_utf8_lossy(p).into_owned(),
            Handoff::Lane(_) => "lane".into(),
        };
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("open");
        std::fs::write(&f, b"x").unwrap();
        let root = Root::slash();
        let insp = &mut Inspector::new(&root);
        let mut engine = LaneEngine::new();
        let lane = engine
            .start(
                insp,
                f.as_os_str().as_bytes().to_vec(),
                Some(FileType::File),
                None,
            )
            .unwrap();
        let mut q = Queued::default();
        q.push(pending("a0"), 0);
        q.push(pending("big"), 9 << 20);
        q.push(pending("b0"), 0);
        q.push(
            Handoff::Lane(Box::new((lane, Md5::default(), Vec::new()))),
            0,
        );
        q.push(pending("mid"), 2 << 20);
        let got: Vec<String> = q.take(10).iter().map(name).collect();
        assert_eq!(got, ["lane", "big", "mid", "a0", "b0"]);
        assert!(q.is_empty());
    }

    /// Files of many sizes (small ones among large ones, more files than
    /// lanes), an ELF object whose facts must come out the same, and a
    /// name that is not a regular file by the time it is opened.
    #[test]
    fn lanes_give_the_inspectors_records_and_the_package_digests_of_each_file() {
        let t = tempfile::tempdir().unwrap();
        let elf = crate::formats::elf::tests::build(
            true,
            false,
            crate::formats::elf::ET_DYN,
            &[(14, "libx.so.1")],
        );
        let sizes = [
            0usize,
            1,
            63,
            64,
            4095,
            4096,
            LANE_CHUNK - 1,
            LANE_CHUNK,
            LANE_CHUNK + 1,
            3 << 20,
            100,
            200,
            (1 << 20) + 7,
            5,
            9 << 20,
            17,
            33,
            70_000,
        ];
        let mut files: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            let p = t.path().join(format!("lib{i}.so.1"));
            let data = if i == 3 {
                elf.clone()
            } else {
                bytes(i as u64, n)
            };
            std::fs::write(&p, &data).unwrap();
            files.push((p.as_os_str().as_bytes().to_vec(), data));
        }
        // Listed as a file, a directory by the time it is looked at.
        let odd = t.path().join("libdir.so");
        std::fs::create_dir(&odd).unwrap();
        let mut paths = DigestPaths::default();
        for (i, (p, _)) in files.iter().enumerate() {
            paths.insert(p, Algo::Md5);
            // Some also owned by an rpm database: its SHA-256 from the
            // lane's own reads.
            if i % 3 == 0 {
                paths.insert(p, Algo::Sha256);
            }
        }
        let root = Root::slash();
        let mut insp = Inspector::new(&root);
        insp.digest_paths = Some(Arc::new(paths));
        let mut engine = LaneEngine::new();
        // Alone in its pool: it drains its own files.
        let pool = DrainPool::new(1);
        for (p, _) in &files {
            engine.defer(&mut insp, (p.clone(), 0), Some(FileType::File), None, &pool);
        }
        engine.defer(
            &mut insp,
            (odd.as_os_str().as_bytes().to_vec(), 0),
            Some(FileType::File),
            None,
            &pool,
        );
        engine.drain_shared(&mut insp, &pool);
        let done = engine.take_done();
        assert_eq!(done.len(), files.len() + 1);
        let mut digests = std::mem::take(&mut insp.digests);
        crate::pkgdigest::sort_content(&mut digests);
        for (p, data) in &files {
            let (_, out, cost) = done.iter().find(|(k, _, _)| k == p).unwrap();
            let Outcome::Record(r, None) = out else {
                panic!("{}: not a clean record", String::from_utf8_lossy(p))
            };
            let mut cost2 = Cost::default();
            let Outcome::Record(want, None) =
                Inspector::new(&root).inspect(p.clone(), None, None, &mut cost2)
            else {
                panic!()
            };
            assert_eq!(r, &want, "{}", data.len());
            assert_eq!(cost.hashed_bytes, data.len() as u64);
            let b3 = r.blake3.unwrap();
            let m = crate::pkgdigest::digest_of(&digests, &b3, Algo::Md5);
            let expect: [u8; 16] = md5::Md5::digest(data).into();
            assert_eq!(
                m,
                Some(FileDigest::Md5(expect)),
                "md5 of {} bytes",
                data.len()
            );
            let i = files.iter().position(|(q, _)| q == p).unwrap();
            let s = crate::pkgdigest::digest_of(&digests, &b3, Algo::Sha256);
            let expect: [u8; 32] = sha2::Sha256::digest(data).into();
            assert_eq!(
                s,
                (i % 3 == 0).then_some(FileDigest::Sha256(expect)),
                "sha256 of {} bytes",
                data.len()
            );
        }
        let odd = odd.as_os_str().as_bytes();
        let (_, out, _) = done.iter().find(|(k, _, _)| k == odd).unwrap();
        assert!(
            matches!(out, Outcome::Record(r, _) if r.ftype == FileType::Dir),
            "the directory is recorded as one"
        );
    }

    /// Threads that end with files in flight (part read, their MD5 part
    /// taken) and files not started hand them to the one drainer: every
    /// file comes out once, from whichever thread, with the digests of
    /// its whole content.
    #[test]
    fn files_handed_to_the_drainer_come_out_once_with_their_whole_digests() {
        let t = tempfile::tempdir().unwrap();
        let mut files: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for i in 0..90 {
            // Mostly small, every seventh several chunks long.
            let n = if i % 7 == 0 {
                5 * LANE_CHUNK + i
            } else {
                i * 997
            };
            let p = t.path().join(format!("lib{i}.so"));
            let data = bytes(1000 + i as u64, n);
            std::fs::write(&p, &data).unwrap();
            files.push((p.as_os_str().as_bytes().to_vec(), data));
        }
        let mut paths = DigestPaths::default();
        for (p, _) in &files {
            paths.insert(p, Algo::Md5);
        }
        let paths = Arc::new(paths);
        let root = Root::slash();
        let pool = DrainPool::new(1);
        let outs: Vec<_> = std::thread::scope(|s| {
            let threads: Vec<_> = files
                .chunks(30)
                .map(|share| {
                    let (root, paths, pool) = (&root, paths.clone(), &pool);
                    s.spawn(move || {
                        let mut insp = Inspector::new(root);
                        insp.digest_paths = Some(paths);
                        let mut engine = LaneEngine::new();
                        for (p, _) in share {
                            engine.defer(
                                &mut insp,
                                (p.clone(), 0),
                                Some(FileType::File),
                                None,
                                pool,
                            );
                        }
                        engine.drain_shared(&mut insp, pool);
                        (engine.take_done(), std::mem::take(&mut insp.digests))
                    })
                })
                .collect();
            threads.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(pool.lock().files.is_empty());
        assert_eq!(pool.lock().drainers, 0);
        let mut digests = crate::pkgdigest::ContentDigests::new();
        let mut done = Vec::new();
        for (d, g) in outs {
            done.extend(d);
            digests.extend(g);
        }
        crate::pkgdigest::sort_content(&mut digests);
        assert_eq!(done.len(), files.len());
        for (p, data) in &files {
            let hits: Vec<_> = done.iter().filter(|(k, _, _)| k == p).collect();
            assert_eq!(hits.len(), 1, "{}", String::from_utf8_lossy(p));
            let Outcome::Record(r, None) = &hits[0].1 else {
                panic!("{}: not a clean record", String::from_utf8_lossy(p))
            };
            let b3: [u8; 32] = blake3::hash(data).into();
            assert_eq!(r.blake3, Some(b3));
            let expect: [u8; 16] = md5::Md5::digest(data).into();
            assert_eq!(
                crate::pkgdigest::digest_of(&digests, &b3, Algo::Md5),
                Some(FileDigest::Md5(expect)),
                "md5 of {} bytes",
                data.len()
            );
        }
    }
}
