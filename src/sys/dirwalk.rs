//! Walking directories by descriptor (Linux): a directory is listed with
//! `getdents64` on a descriptor opened relative to its parent's
//! (`openat(parent, name, O_DIRECTORY | O_NOFOLLOW)`), so a walk that
//! starts inside a root stays inside it by construction: a directory
//! swapped for a symlink fails the open (`ENOTDIR`) instead of being
//! listed on the other side. Each entry is then looked at relative to the same
//! descriptor (`fstatat`, `openat`), so no path is ever resolved twice.
//!
//! Compared with a walker that lists directories by path (`opendir` of the
//! full path, an `fstat` of the fresh descriptor, a `statx` per directory
//! for the device), a directory costs `openat` + `getdents64` (twice for a
//! small one: the second says the end) + `close`, and nothing else.
//!
//! [`run`] spreads directory jobs over threads: each thread keeps the last
//! subdirectory it found to walk next (depth first, its state warm) and
//! puts the others on a shared stack for idle threads to take.
//! [`run_scheduled`] also lets some jobs go before the stack ([`Slot`]):
//! listings, so that a walk knows its files early, and the largest files.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use crate::largest::LargestFirst;

/// Bytes asked of `getdents64` per call (glibc's `readdir` uses 32 KiB;
/// a library directory of ~1,000 entries fits in two or three calls).
const DIRENT_BUF: usize = 32 << 10;

/// `linux_dirent64` up to its name: `d_ino` (8), `d_off` (8),
/// `d_reclen` (2), `d_type` (1).
const DIRENT_HEADER: usize = 19;

/// `d_type` values of `getdents64` (the same as `<dirent.h>`).
pub const DT_UNKNOWN: u8 = 0;
pub const DT_FIFO: u8 = 1;
pub const DT_CHR: u8 = 2;
pub const DT_DIR: u8 = 4;
pub const DT_BLK: u8 = 6;
pub const DT_REG: u8 = 8;
pub const DT_LNK: u8 = 10;
pub const DT_SOCK: u8 = 12;

/// Opens the directory `name` of `parent` for listing, without following
/// a symlink: anything but a directory, a symlink included, gives
/// `ENOTDIR` (`O_DIRECTORY` is checked before `O_NOFOLLOW`).
pub fn open_dir_at(parent: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: name is NUL-terminated and outlives the call.
    let fd = unsafe { libc::openat(parent.as_raw_fd(), name.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads a directory's entries one buffer at a time; `.` and `..` are
/// left out. The buffer is reused across directories (one per thread).
pub struct DirReader {
    buf: Vec<u8>,
    len: usize,
    pos: usize,
}

/// One directory entry, borrowed from the reader's buffer.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    /// The name, NUL-terminated (for `*at` calls).
    pub name: &'a CStr,
    /// `d_type` ([`DT_UNKNOWN`] when the filesystem does not say).
    pub dtype: u8,
}

impl Entry<'_> {
    /// The name without its NUL.
    pub fn bytes(&self) -> &[u8] {
        self.name.to_bytes()
    }
}

impl Default for DirReader {
    fn default() -> Self {
        DirReader::new()
    }
}

impl DirReader {
    pub fn new() -> DirReader {
        DirReader {
            buf: vec![0u8; DIRENT_BUF],
            len: 0,
            pos: 0,
        }
    }

    /// Starts listing another directory.
    pub fn reset(&mut self) {
        self.len = 0;
        self.pos = 0;
    }

    /// The next entry of `dir`, `None` at the end. A record the kernel
    /// would never write (a length that leaves the buffer, no NUL) ends
    /// the buffer with `EIO` rather than being read past.
    pub fn next(&mut self, dir: BorrowedFd<'_>) -> io::Result<Option<Entry<'_>>> {
        loop {
            if self.pos >= self.len {
                if !self.fill(dir)? {
                    return Ok(None);
                }
                continue;
            }
            let rest = &self.buf[self.pos..self.len];
            let Some(reclen) = rest
                .get(16..18)
                .map(|b| u16::from_ne_bytes([b[0], b[1]]) as usize)
            else {
                return Err(self.corrupt());
            };
            if reclen <= DIRENT_HEADER || reclen > rest.len() {
                return Err(self.corrupt());
            }
            let dtype = rest[18];
            let start = self.pos + DIRENT_HEADER;
            let end = self.pos + reclen;
            self.pos = end;
            let Ok(name) = CStr::from_bytes_until_nul(&self.buf[start..end]) else {
                return Err(self.corrupt());
            };
            let b = name.to_bytes();
            if b.is_empty() || b == b"." || b == b".." {
                continue;
            }
            // Re-borrow from the buffer for the caller's lifetime (the
            // loop above borrowed mutably).
            let name = CStr::from_bytes_until_nul(&self.buf[start..end])
                .map_err(|_| io::Error::from_raw_os_error(libc::EIO))?;
            return Ok(Some(Entry { name, dtype }));
        }
    }

    fn corrupt(&mut self) -> io::Error {
        self.pos = self.len;
        io::Error::from_raw_os_error(libc::EIO)
    }

    /// One `getdents64`; false at the end of the directory.
    fn fill(&mut self, dir: BorrowedFd<'_>) -> io::Result<bool> {
        loop {
            // SAFETY: the kernel writes at most buf.len() bytes into buf.
            let n = unsafe {
                libc::syscall(
                    libc::SYS_getdents64,
                    dir.as_raw_fd(),
                    self.buf.as_mut_ptr(),
                    self.buf.len(),
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            self.pos = 0;
            self.len = (n as usize).min(self.buf.len());
            return Ok(self.len > 0);
        }
    }
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`.
pub fn lstat_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: name is NUL-terminated; st is written by the kernel on success.
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstatat succeeded, so st is initialised.
    Ok(unsafe { st.assume_init() })
}

/// Where a job waits for a thread (see [`run_scheduled`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// The shared stack, depth first: of what a job adds, the thread keeps
    /// the last one to do next.
    Stack,
    /// Before the stack while it holds fewer jobs than the budget (a
    /// listing, taken early so that what it finds is known early), last
    /// in, first out.
    Early,
    /// Before everything else, the largest key first.
    First(u64),
}

/// Jobs waiting for a thread, and how many threads are working on one.
struct Queue<J> {
    jobs: Vec<J>,
    early: Vec<J>,
    first: LargestFirst<J>,
    /// [`Slot::Early`] jobs go first while fewer stack jobs than this wait.
    budget: usize,
    busy: usize,
    /// A worker panicked: everyone stops (its panic is re-raised when the
    /// scope joins it).
    abort: bool,
}

impl<J> Queue<J> {
    fn new(budget: usize) -> Queue<J> {
        Queue {
            jobs: Vec::new(),
            early: Vec::new(),
            first: LargestFirst::default(),
            budget,
            busy: 0,
            abort: false,
        }
    }

    fn push(&mut self, job: J, slot: Slot) {
        match slot {
            Slot::Stack => self.jobs.push(job),
            Slot::Early => self.early.push(job),
            Slot::First(key) => self.first.push(key, job),
        }
    }

    fn pop(&mut self) -> Option<J> {
        if let Some(j) = self.first.pop() {
            return Some(j);
        }
        if self.jobs.len() < self.budget {
            if let Some(j) = self.early.pop() {
                return Some(j);
            }
        }
        self.jobs.pop().or_else(|| self.early.pop())
    }
}

/// Runs `work` on every job, and on every job it adds, on `threads`
/// threads. Each thread has its own state from `state` (dropped on that
/// thread when it is done: the place to hand results over). `work` gets
/// the thread's state, the job, and a vector to push new jobs into.
pub fn run<J, S>(
    threads: usize,
    jobs: Vec<J>,
    state: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, J, &mut Vec<J>) + Sync,
) where
    J: Send,
{
    run_counting_idle(threads, jobs, &AtomicUsize::new(0), state, work)
}

/// [`run`], keeping in `idle` how many threads are waiting for a job
/// (none queued, others still working): the walk's tail, when spare
/// cores may help the threads still at work.
pub fn run_counting_idle<J, S>(
    threads: usize,
    jobs: Vec<J>,
    idle: &AtomicUsize,
    state: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, J, &mut Vec<J>) + Sync,
) where
    J: Send,
{
    run_scheduled(threads, jobs, idle, (|_: &J| Slot::Stack, 0), state, work)
}

/// [`run_counting_idle`] with each job's place in the queue chosen by
/// `order.0` (see [`Slot`]); `order.1` is the budget of [`Slot::Early`].
pub fn run_scheduled<J, S>(
    threads: usize,
    jobs: Vec<J>,
    idle: &AtomicUsize,
    order: (impl Fn(&J) -> Slot + Sync, usize),
    state: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, J, &mut Vec<J>) + Sync,
) where
    J: Send,
{
    let (slot, budget) = order;
    let mut queue = Queue::new(budget);
    // The first jobs in their given order (the stack's last taken first).
    for j in jobs {
        let s = slot(&j);
        queue.push(j, s);
    }
    let queue = Mutex::new(queue);
    let wake = Condvar::new();
    let threads = threads.max(1);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let _guard = AbortOnPanic(&queue, &wake);
                let mut st = state();
                let mut found: Vec<J> = Vec::new();
                let mut next = take(&queue, &wake, idle, false);
                while let Some(job) = next {
                    work(&mut st, job, &mut found);
                    // Depth first on this thread (its last stack job); the
                    // rest for anyone, each in its slot.
                    next = found.pop();
                    if next.as_ref().is_some_and(|j| slot(j) != Slot::Stack) {
                        found.extend(next.take());
                    }
                    if !found.is_empty() {
                        let mut q = lock(&queue);
                        for j in found.drain(..) {
                            let s = slot(&j);
                            q.push(j, s);
                        }
                        drop(q);
                        wake.notify_all();
                    }
                    if next.is_none() {
                        next = take(&queue, &wake, idle, true);
                    }
                }
            });
        }
    });
}

/// The next job from the shared stack, waiting while others work (they
/// may add some); `None` when nothing is left anywhere. `was_busy`: the
/// caller just finished a job.
fn take<J>(
    queue: &Mutex<Queue<J>>,
    wake: &Condvar,
    idle: &AtomicUsize,
    was_busy: bool,
) -> Option<J> {
    let mut q = lock(queue);
    if was_busy {
        q.busy -= 1;
    }
    loop {
        if q.abort {
            return None;
        }
        if let Some(j) = q.pop() {
            q.busy += 1;
            return Some(j);
        }
        if q.busy == 0 {
            drop(q);
            wake.notify_all();
            return None;
        }
        idle.fetch_add(1, Ordering::Relaxed);
        q = wake.wait(q).unwrap_or_else(|e| e.into_inner());
        idle.fetch_sub(1, Ordering::Relaxed);
    }
}

fn lock<J>(queue: &Mutex<Queue<J>>) -> MutexGuard<'_, Queue<J>> {
    queue.lock().unwrap_or_else(|e| e.into_inner())
}

/// Wakes and stops the other threads if this one unwinds, so the scope
/// can join them and re-raise the panic instead of waiting forever.
struct AbortOnPanic<'a, J>(&'a Mutex<Queue<J>>, &'a Condvar);

impl<J> Drop for AbortOnPanic<'_, J> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            lock(self.0).abort = true;
            self.1.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::ffi::OsStrExt;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn open(p: &std::path::Path) -> OwnedFd {
        let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
        // SAFETY: c is NUL-terminated.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) };
        assert!(fd >= 0);
        // SAFETY: fresh descriptor.
        unsafe { OwnedFd::from_raw_fd(fd) }
    }

    fn names(dir: &OwnedFd, r: &mut DirReader) -> Vec<(Vec<u8>, u8)> {
        r.reset();
        let mut v = Vec::new();
        while let Some(e) = r.next(dir.as_fd()).unwrap() {
            v.push((e.bytes().to_vec(), e.dtype));
        }
        v.sort();
        v
    }

    #[test]
    fn lists_every_name_once_across_buffer_refills() {
        let t = tempfile::tempdir().unwrap();
        // Long names: ~5,000 entries of ~60 bytes need several buffers.
        let mut want = Vec::new();
        for i in 0..5000 {
            let n = format!("{i:05}-{}", "x".repeat(50));
            std::fs::write(t.path().join(&n), b"").unwrap();
            want.push((n.into_bytes(), DT_REG));
        }
        std::fs::create_dir(t.path().join("sub")).unwrap();
        std::os::unix::fs::symlink("nowhere", t.path().join("ln")).unwrap();
        want.push((b"sub".to_vec(), DT_DIR));
        want.push((b"ln".to_vec(), DT_LNK));
        want.sort();
        let dir = open(t.path());
        let mut r = DirReader::new();
        let got = names(&dir, &mut r);
        // tmpfs and ext4 fill d_type; a filesystem that does not would
        // give DT_UNKNOWN, which the caller stats.
        let got_names: Vec<_> = got.iter().map(|(n, _)| n.clone()).collect();
        let want_names: Vec<_> = want.iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(got_names, want_names);
        for ((_, g), (_, w)) in got.iter().zip(&want) {
            assert!(*g == *w || *g == DT_UNKNOWN);
        }
        // The reader is reusable: a second listing is the same.
        assert_eq!(names(&dir, &mut r).len(), 0, "descriptor at its end");
        let again = open(t.path());
        assert_eq!(names(&again, &mut r), got);
    }

    #[test]
    fn a_symlink_is_not_opened_as_a_directory() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        std::os::unix::fs::symlink("d", t.path().join("ln")).unwrap();
        std::fs::write(t.path().join("f"), b"").unwrap();
        let parent = open(t.path());
        assert!(open_dir_at(parent.as_fd(), c"d").is_ok());
        // O_DIRECTORY is checked first: a symlink is "not a directory".
        let e = open_dir_at(parent.as_fd(), c"ln").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTDIR));
        let e = open_dir_at(parent.as_fd(), c"f").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTDIR));
        let st = lstat_at(parent.as_fd(), c"ln").unwrap();
        assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFLNK);
    }

    #[test]
    fn run_does_every_job_and_the_jobs_they_add() {
        // A binary tree of depth 12 as jobs: 2^13 - 1 of them.
        let done = AtomicUsize::new(0);
        let per_thread = Mutex::new(Vec::new());
        struct S<'a>(usize, &'a Mutex<Vec<usize>>);
        impl Drop for S<'_> {
            fn drop(&mut self) {
                self.1.lock().unwrap().push(self.0);
            }
        }
        run(
            3,
            vec![0u32],
            || S(0, &per_thread),
            |s, depth, more| {
                s.0 += 1;
                done.fetch_add(1, Ordering::Relaxed);
                if depth < 12 {
                    more.push(depth + 1);
                    more.push(depth + 1);
                }
            },
        );
        assert_eq!(done.load(Ordering::Relaxed), (1 << 13) - 1);
        let counts = per_thread.lock().unwrap();
        assert_eq!(counts.len(), 3, "every thread's state is dropped");
        assert_eq!(counts.iter().sum::<usize>(), (1 << 13) - 1);
    }

    #[test]
    fn idle_counts_the_threads_waiting_while_the_last_job_runs() {
        // One long job and nothing queued: the other three threads wait
        // (the walk's tail); the job sees them, and none is left counted.
        let idle = AtomicUsize::new(0);
        let seen = AtomicUsize::new(0);
        run_counting_idle(
            4,
            vec![0u8],
            &idle,
            || (),
            |_, _, _| {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
                while idle.load(Ordering::Relaxed) < 3 && std::time::Instant::now() < deadline {
                    std::thread::yield_now();
                }
                seen.store(idle.load(Ordering::Relaxed), Ordering::Relaxed);
            },
        );
        // `idle` is the one passed in: the counter the job read.
        assert_eq!(seen.load(Ordering::Relaxed), 3);
        assert_eq!(idle.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_queue_gives_first_jobs_by_size_then_early_ones_within_the_budget_then_the_stack() {
        let mut q = Queue::new(2);
        q.push("s1", Slot::Stack);
        q.push("e1", Slot::Early);
        q.push("f5", Slot::First(5));
        q.push("f9", Slot::First(9));
        q.push("f5b", Slot::First(5));
        q.push("e2", Slot::Early);
        // The largest first; equal keys in the order they came.
        assert_eq!(q.pop(), Some("f9"));
        assert_eq!(q.pop(), Some("f5"));
        assert_eq!(q.pop(), Some("f5b"));
        // One stack job waits, under the budget of two: the last early one.
        assert_eq!(q.pop(), Some("e2"));
        // Two wait: the budget is reached, the stack goes first.
        q.push("s2", Slot::Stack);
        assert_eq!(q.pop(), Some("s2"));
        assert_eq!(q.pop(), Some("e1"));
        assert_eq!(q.pop(), Some("s1"));
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn a_thread_keeps_the_last_stack_job_it_found_and_queues_the_others_by_slot() {
        let order = Mutex::new(Vec::new());
        let slot = |j: &&str| match j.as_bytes()[0] {
            b'f' => Slot::First(u64::from(j.as_bytes()[1] - b'0')),
            b'e' => Slot::Early,
            _ => Slot::Stack,
        };
        run_scheduled(
            1,
            vec!["root"],
            &AtomicUsize::new(0),
            (slot, 8),
            || (),
            |_, job, more| {
                order.lock().unwrap().push(job);
                match job {
                    "root" => more.extend(["s", "e", "f3", "f7", "own"]),
                    "own" => more.extend(["e2", "f1"]),
                    _ => {}
                }
            },
        );
        // `own` (the last found, a stack job) on the same thread at once;
        // `f1` came last but goes to the queue: first by size, then the
        // early ones (last in first), then the stack.
        assert_eq!(
            *order.lock().unwrap(),
            ["root", "own", "f7", "f3", "f1", "e2", "e", "s"]
        );
    }

    #[test]
    fn run_with_no_jobs_returns() {
        run(2, Vec::<u8>::new(), || (), |_, _, _| {});
    }
}
