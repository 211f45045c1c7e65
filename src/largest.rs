//! A queue that gives its largest item first, and items of equal size in
//! the order they came: longest-first scheduling of the walk's jobs and
//! of the files the MD5 lanes read (a file's MD5 is one serial chain, so
//! the longest chains start first and the short ones fill in around them).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Items by a size key, the largest first, then first come first served.
pub struct LargestFirst<T> {
    heap: BinaryHeap<Keyed<T>>,
    arrivals: u64,
}

impl<T> Default for LargestFirst<T> {
    fn default() -> Self {
        LargestFirst {
            heap: BinaryHeap::new(),
            arrivals: 0,
        }
    }
}

impl<T> LargestFirst<T> {
    pub fn push(&mut self, key: u64, item: T) {
        self.arrivals += 1;
        self.heap.push(Keyed(key, self.arrivals, item));
    }

    pub fn pop(&mut self) -> Option<T> {
        self.heap.pop().map(|k| k.2)
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// (key, arrival, item), ordered by the key, then the earlier arrival
/// (`BinaryHeap` is a max-heap: a lower arrival number ranks higher).
struct Keyed<T>(u64, u64, T);

impl<T> PartialEq for Keyed<T> {
    fn eq(&self, o: &Self) -> bool {
        (self.0, self.1) == (o.0, o.1)
    }
}

impl<T> Eq for Keyed<T> {}

impl<T> PartialOrd for Keyed<T> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl<T> Ord for Keyed<T> {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.cmp(&o.0).then(o.1.cmp(&self.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_first_and_equal_keys_in_the_order_they_came() {
        let mut q = LargestFirst::default();
        for (k, v) in [
            (0, "a"),
            (9, "big"),
            (0, "b"),
            (2, "mid"),
            (9, "big2"),
            (0, "c"),
        ] {
            q.push(k, v);
        }
        assert_eq!(q.len(), 6);
        let got: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(got, ["big", "big2", "mid", "a", "b", "c"]);
        assert!(q.is_empty());
    }
}
