//! Per-path debouncing: a path is checked once it has been quiet for a
//! while, so the burst of events of one save (create, write, close, rename)
//! becomes one check and one finding. A path that never goes quiet is
//! checked anyway after `max_wait`, so a busy file cannot hide.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub struct Debouncer {
    quiet: Duration,
    max_wait: Duration,
    /// First and last event of each pending path.
    pending: HashMap<PathBuf, (Instant, Instant)>,
    /// When each pending path is next looked at, earliest first.
    queue: BinaryHeap<Reverse<(Instant, PathBuf)>>,
}

impl Debouncer {
    pub fn new(quiet: Duration) -> Debouncer {
        Debouncer {
            quiet,
            max_wait: (quiet * 10).max(Duration::from_secs(1)),
            pending: HashMap::new(),
            queue: BinaryHeap::new(),
        }
    }

    /// Records an event for `path` at `now`.
    pub fn touch(&mut self, path: PathBuf, now: Instant) {
        match self.pending.get_mut(&path) {
            Some(times) => times.1 = now,
            None => {
                self.pending.insert(path.clone(), (now, now));
                self.queue.push(Reverse((now + self.quiet, path)));
            }
        }
    }

    /// When the engine should next call [`Debouncer::take_due`].
    pub fn next_due(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse((due, _))| *due)
    }

    /// The paths whose quiet time has passed, in no particular order.
    pub fn take_due(&mut self, now: Instant) -> Vec<PathBuf> {
        let mut out = Vec::new();
        while let Some(Reverse((due, _))) = self.queue.peek() {
            if *due > now {
                break;
            }
            let Some(Reverse((_, path))) = self.queue.pop() else {
                break;
            };
            let Some(&(first, last)) = self.pending.get(&path) else {
                continue;
            };
            if last + self.quiet <= now || first + self.max_wait <= now {
                self.pending.remove(&path);
                out.push(path);
            } else {
                let due = (last + self.quiet).min(first + self.max_wait);
                self.queue.push(Reverse((due, path)));
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_one_check_after_the_quiet_time() {
        let q = Duration::from_millis(100);
        let mut d = Debouncer::new(q);
        let t0 = Instant::now();
        let p = PathBuf::from("/usr/lib/libx.so");
        d.touch(p.clone(), t0);
        d.touch(p.clone(), t0 + Duration::from_millis(50));
        d.touch(
            PathBuf::from("/usr/lib/liby.so"),
            t0 + Duration::from_millis(60),
        );
        assert!(d.take_due(t0 + Duration::from_millis(100)).is_empty());
        let due = d.take_due(t0 + Duration::from_millis(160));
        assert_eq!(due.len(), 2, "{due:?}");
        assert!(d.is_empty());
        assert_eq!(d.next_due(), None);
    }

    #[test]
    fn a_path_that_never_goes_quiet_is_checked_anyway() {
        let q = Duration::from_millis(100);
        let mut d = Debouncer::new(q);
        let t0 = Instant::now();
        let p = PathBuf::from("/busy");
        let mut t = t0;
        let mut got = Vec::new();
        for _ in 0..40 {
            d.touch(p.clone(), t);
            t += Duration::from_millis(50);
            got.extend(d.take_due(t));
        }
        assert!(!got.is_empty(), "starved");
    }
}
