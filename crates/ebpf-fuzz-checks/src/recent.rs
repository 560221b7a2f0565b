//! [`Recent`]: the last few results of a deterministic, costly function of an input, so that
//! the next inputs libFuzzer derives from it (which mostly leave that part alone) skip the work.
//! The compile cache ([`crate::engines::CompileCache`]) and the structured program generator
//! ([`crate::generate::structured_program`]) keep theirs in one.

use std::collections::VecDeque;

/// At most `capacity` (key, value) pairs, most recently used first; the least recently used
/// makes room for a new one.
#[derive(Debug)]
pub struct Recent<K, V> {
    entries: VecDeque<(K, V)>,
    capacity: usize,
}

impl<K, V: Clone> Recent<K, V> {
    /// An empty cache of at most `capacity` entries (0: keeps nothing).
    pub fn new(capacity: usize) -> Recent<K, V> {
        Recent {
            entries: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// The value of the first key `matches` accepts, which becomes the most recently used.
    pub fn find(&mut self, matches: impl Fn(&K) -> bool) -> Option<V> {
        let at = self.entries.iter().position(|(k, _)| matches(k))?;
        let entry = self.entries.remove(at)?;
        let value = entry.1.clone();
        self.entries.push_front(entry);
        Some(value)
    }

    /// Keeps `value` for `key` as the most recently used, dropping the least recently used if
    /// the cache is full.
    pub fn insert(&mut self, key: K, value: V) {
        if self.capacity > 0 {
            self.entries.truncate(self.capacity - 1);
            self.entries.push_front((key, value));
        }
    }
}
