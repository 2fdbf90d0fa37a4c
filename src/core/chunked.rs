//! An ordered map stored as a run of sorted chunks of at most `CHUNK` pairs.
//!
//! A mailbox's queue grows at its end (ids only increase) and shrinks anywhere.
//! A `BTreeMap` that grows at its end leaves every node a little over half full;
//! here a chunk is filled to the last slot before the next one starts, so a held
//! message costs its key and value and almost nothing more.
//!
//! Finding a key is a binary search over the chunks' first keys, then one inside
//! a chunk: O(log n). Inserting past the last key and removing are O(`CHUNK`)
//! plus, when a chunk empties or two small neighbours merge, a move of the chunk
//! list (n / `CHUNK` pointers). Inserting before the last key (only loads and
//! replays of data that was out of order) may split a chunk the same way.

use std::collections::VecDeque;

/// Most pairs per chunk.
const CHUNK: usize = 64;
/// A chunk smaller than this merges with a neighbour that has room.
const SMALL: usize = CHUNK / 4;

#[derive(Clone, Debug)]
pub struct ChunkedMap<K, V> {
    chunks: VecDeque<Vec<(K, V)>>,
    len: usize,
}

impl<K, V> Default for ChunkedMap<K, V> {
    fn default() -> Self {
        ChunkedMap { chunks: VecDeque::new(), len: 0 }
    }
}

impl<K: Ord, V> ChunkedMap<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The chunk that holds `key`, or where it would go: the last one whose first
    /// key is not after it (the first chunk for a key before every other).
    fn chunk_of(&self, key: &K) -> usize {
        self.chunks.partition_point(|c| c.first().is_some_and(|(k, _)| k <= key)).saturating_sub(1)
    }

    /// (chunk, position in it) of `key`: `Ok` where it is, `Err` where it would go.
    fn locate(&self, key: &K) -> Option<(usize, Result<usize, usize>)> {
        let c = self.chunk_of(key);
        let chunk = self.chunks.get(c)?;
        Some((c, chunk.binary_search_by(|(k, _)| k.cmp(key))))
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        match self.locate(key)? {
            (c, Ok(i)) => Some(&self.chunks[c][i].1),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        match self.locate(key)? {
            (c, Ok(i)) => Some(&mut self.chunks[c][i].1),
            _ => None,
        }
    }

    pub fn contains_key(&self, key: &K) -> bool {
        matches!(self.locate(key), Some((_, Ok(_))))
    }

    /// Inserts or replaces; returns the value replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        // The common case: past the last key.
        let last_full = match self.chunks.back() {
            Some(last) if last.last().is_some_and(|(k, _)| *k < key) => Some(last.len() >= CHUNK),
            Some(_) => None,
            None => Some(true),
        };
        if let Some(full) = last_full {
            if full {
                // The first chunk grows from small (a small mailbox stays small);
                // later ones start at their full size.
                let capacity = if self.chunks.is_empty() { 1 } else { CHUNK };
                self.chunks.push_back(Vec::with_capacity(capacity));
            }
            if let Some(last) = self.chunks.back_mut() {
                last.push((key, value));
            }
            self.len += 1;
            return None;
        }
        let (mut c, found) = self.locate(&key)?;
        let mut at = match found {
            Ok(i) => return Some(std::mem::replace(&mut self.chunks[c][i].1, value)),
            Err(i) => i,
        };
        if self.chunks[c].len() >= CHUNK {
            let mut right = Vec::with_capacity(CHUNK);
            right.extend(self.chunks[c].drain(CHUNK / 2..));
            self.chunks.insert(c + 1, right);
            if at > CHUNK / 2 {
                c += 1;
                at -= CHUNK / 2;
            }
        }
        self.chunks[c].insert(at, (key, value));
        self.len += 1;
        None
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let (c, Ok(i)) = self.locate(key)? else { return None };
        let (_, value) = self.chunks[c].remove(i);
        self.len -= 1;
        self.compact(c);
        Some(value)
    }

    /// Drops chunk `c` if it is empty, else merges it with a neighbour when both
    /// fit in one chunk and it has become small.
    fn compact(&mut self, c: usize) {
        let len = self.chunks[c].len();
        if len == 0 {
            self.chunks.remove(c);
            return;
        }
        if len >= SMALL {
            return;
        }
        let fits = |other: Option<&Vec<(K, V)>>| other.is_some_and(|o| o.len() + len <= CHUNK);
        if fits(self.chunks.get(c + 1)) {
            if let Some(next) = self.chunks.remove(c + 1) {
                self.chunks[c].extend(next);
            }
        } else if c > 0 && fits(self.chunks.get(c - 1)) {
            if let Some(this) = self.chunks.remove(c) {
                self.chunks[c - 1].extend(this);
            }
        }
    }

    pub fn first_key_value(&self) -> Option<(&K, &V)> {
        self.chunks.front().and_then(|c| c.first()).map(|(k, v)| (k, v))
    }

    /// Every pair in key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &V)> + '_ {
        self.chunks.iter().flatten().map(|(k, v)| (k, v))
    }

    /// The pairs from the first key at or after `from`, in key order.
    pub fn iter_from<'a>(&'a self, from: &K) -> impl Iterator<Item = (&'a K, &'a V)> + 'a {
        let (c, i) = match self.locate(from) {
            Some((c, Ok(i) | Err(i))) => (c, i),
            None => (0, 0),
        };
        self.chunks.range(c.min(self.chunks.len())..).enumerate().flat_map(move |(n, chunk)| {
            let skip = if n == 0 { i } else { 0 };
            chunk[skip.min(chunk.len())..].iter().map(|(k, v)| (k, v))
        })
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> + '_ {
        self.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.iter().map(|(_, v)| v)
    }

    /// Bytes this map allocated (chunk capacities and the chunk list), for `MEMORY USAGE`.
    pub fn allocated_bytes(&self) -> usize {
        let pair = std::mem::size_of::<(K, V)>();
        self.chunks.iter().map(|c| c.capacity() * pair).sum::<usize>()
            + self.chunks.capacity() * std::mem::size_of::<Vec<(K, V)>>()
    }

    /// Checks the chunks' order, sizes and the length (tests).
    #[cfg(test)]
    pub fn check(&self) {
        let mut n = 0;
        let mut last: Option<&K> = None;
        for chunk in &self.chunks {
            assert!(!chunk.is_empty() && chunk.len() <= CHUNK, "chunk of {}", chunk.len());
            for (k, _) in chunk {
                assert!(last.is_none_or(|l| l < k), "keys out of order");
                last = Some(k);
                n += 1;
            }
        }
        assert_eq!(n, self.len);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// Random inserts (mostly appends, as a queue sees), removals, replaces and
    /// lookups, checked against a `BTreeMap` after every step.
    #[test]
    fn behaves_as_an_ordered_map() {
        let mut rng = crate::core::xorshift::XorShift(0x853c_49e6_748f_ea9b);
        let mut next = move |n: u64| rng.below(n);
        for round in 0..20 {
            let mut map = ChunkedMap::new();
            let mut model = BTreeMap::new();
            let mut top = 0u64;
            for step in 0..3000u64 {
                let key = match next(10) {
                    0..=4 => {
                        top += 1 + next(3);
                        top
                    }
                    5..=7 => next(top + 2),
                    _ => *model.keys().nth(next(model.len().max(1) as u64) as usize).unwrap_or(&0),
                };
                match next(7) {
                    0..=3 if round % 2 == 0 || next(2) == 0 => {
                        assert_eq!(map.insert(key, step), model.insert(key, step));
                    }
                    0..=4 => assert_eq!(map.remove(&key), model.remove(&key)),
                    5 => {
                        if let (Some(a), Some(b)) = (map.get_mut(&key), model.get_mut(&key)) {
                            *a += 1;
                            *b += 1;
                        }
                    }
                    _ => assert_eq!(map.get(&key), model.get(&key)),
                }
                assert_eq!(map.contains_key(&key), model.contains_key(&key));
                assert_eq!(map.len(), model.len());
                assert_eq!(map.first_key_value(), model.first_key_value());
                if step % 97 == 0 {
                    map.check();
                    assert!(map.iter().eq(model.iter()));
                    let from = next(top + 2);
                    assert!(map.iter_from(&from).eq(model.range(from..)), "from {from}");
                }
            }
            map.check();
            assert!(map.iter().eq(model.iter()));
            assert!(map.keys().eq(model.keys()));
            assert!(map.values().eq(model.values()));
        }
    }

    #[test]
    fn appends_fill_every_chunk() {
        let mut map = ChunkedMap::new();
        for k in 0..1000u64 {
            map.insert(k, ());
        }
        map.check();
        assert_eq!(map.chunks.len(), 1000usize.div_ceil(CHUNK));
        assert!(map.chunks.iter().rev().skip(1).all(|c| c.len() == CHUNK && c.capacity() == CHUNK));
        for k in 0..1000u64 {
            assert_eq!(map.remove(&k), Some(()));
        }
        assert!(map.is_empty() && map.chunks.is_empty());
    }
}
