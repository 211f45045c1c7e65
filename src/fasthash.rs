//! The hasher of in-memory maps keyed by paths and file names (the package
//! index, the paths that want a package digest): foldhash, seeded at
//! random per process and per map.
//!
//! Why not the standard SipHash: the package index hashes every path dpkg
//! lists (about 130k on a desktop) several times per run, and SipHash of
//! those was a measurable part of the serial time before and after the
//! walk. Why a non-cryptographic hash is sound here: the keys are
//! attacker-influenced (file names in the scanned trees, paths in package
//! lists), but a run is not interactive. Flooding one bucket needs many
//! keys that collide under this process's secret seed, chosen before the
//! run starts and without seeing any of its hashes; foldhash's seeded
//! folded multiplies give no input set that collides for every seed (its
//! "minimally DoS-resistant" claim, which is the one this needs). A
//! fixed-seed hasher (FxHash) would not be: collisions for it can be
//! computed offline and planted as file names.

use std::collections::{HashMap, HashSet};

/// The hasher state: a fresh random seed per map.
pub type State = foldhash::fast::RandomState;

/// A `HashMap` with [`State`].
pub type FastMap<K, V> = HashMap<K, V, State>;

/// A `HashSet` with [`State`].
pub type FastSet<K> = HashSet<K, State>;

/// An empty [`FastMap`] with room for `n` entries.
pub fn map_with_capacity<K, V>(n: usize) -> FastMap<K, V> {
    HashMap::with_capacity_and_hasher(n, State::default())
}

/// An empty [`FastSet`] with room for `n` entries.
pub fn set_with_capacity<K>(n: usize) -> FastSet<K> {
    HashSet::with_capacity_and_hasher(n, State::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    /// One map's state hashes a key the same every time (lookups find
    /// what was inserted); two maps' states are seeded apart, so a set of
    /// keys colliding in one is not known to collide in another.
    #[test]
    fn one_state_is_stable_and_states_differ() {
        let a = State::default();
        let b = State::default();
        let key: &[u8] = b"/usr/lib/x86_64-linux-gnu/libc.so.6";
        assert_eq!(a.hash_one(key), a.hash_one(key));
        let keys: Vec<Vec<u8>> = (0..64)
            .map(|i| format!("/lib/l{i}.so").into_bytes())
            .collect();
        let differ = keys
            .iter()
            .filter(|k| a.hash_one(k) != b.hash_one(k))
            .count();
        assert!(differ > 60, "two states hashed {differ}/64 keys apart");
    }

    #[test]
    fn maps_and_sets_behave_as_std_ones() {
        let mut m: FastMap<Vec<u8>, u32> = map_with_capacity(4);
        for i in 0..10_000u32 {
            m.insert(format!("/p/{i}").into_bytes(), i);
        }
        assert_eq!(m.len(), 10_000);
        assert_eq!(m.get(b"/p/1234".as_slice()), Some(&1234));
        assert_eq!(m.get(b"/p/10000".as_slice()), None);
        let mut s: FastSet<&[u8]> = set_with_capacity(0);
        assert!(s.insert(b"a"));
        assert!(!s.insert(b"a"));
    }
}
