//! An ordered collection stored as a run of sorted chunks of at most `CHUNK`
//! values, each value carrying its own key (`Keyed`): a held message's id is
//! read from its envelope, so the queue does not store it a second time.
//!
//! A mailbox's queue grows at its end (ids only increase) and shrinks anywhere.
//! A `BTreeMap` that grows at its end leaves every node a little over half full;
//! here a chunk is filled to the last slot before the next one starts, so a held
//! message costs its value and almost nothing more.
//!
//! Finding a key is a binary search over the chunks' first keys (kept beside
//! each chunk, so this search reads no value), then one inside a chunk: O(log n).
//! Inserting past the last key and removing are O(`CHUNK`) plus, when a chunk
//! empties or two small neighbours merge, a move of the chunk list (n / `CHUNK`
//! entries). Inserting before the last key (only loads and replays of data that
//! was out of order) may split a chunk the same way.

#![forbid(unsafe_code)]

use std::collections::VecDeque;

/// Most values per chunk.
const CHUNK: usize = 64;
/// A chunk smaller than this merges with a neighbour that has room.
const SMALL: usize = CHUNK / 4;
/// A chunk growing at the end gains room for this many values at a time.
const STEP: usize = 8;
/// From this many values on, a new last chunk starts at its full size.
const LARGE: usize = 4 * CHUNK;

/// A value that knows its key. The key must not change while the value is in a map.
pub trait Keyed {
    type Key: Ord + Copy;
    fn key(&self) -> Self::Key;
}

struct Chunk<V: Keyed> {
    /// The key of `values[0]` (chunks are never empty).
    first: V::Key,
    values: Vec<V>,
}

impl<V: Keyed + Clone> Clone for Chunk<V> {
    fn clone(&self) -> Self {
        Chunk { first: self.first, values: self.values.clone() }
    }
}

impl<V: Keyed> Chunk<V> {
    fn new(values: Vec<V>) -> Option<Self> {
        Some(Chunk { first: values.first()?.key(), values })
    }

    fn search(&self, key: &V::Key) -> Result<usize, usize> {
        self.values.binary_search_by(|v| v.key().cmp(key))
    }

    /// Sets `first` again after `values[0]` changed; false when empty.
    fn refresh(&mut self) -> bool {
        match self.values.first() {
            Some(v) => {
                self.first = v.key();
                true
            }
            None => false,
        }
    }
}

pub struct ChunkedMap<V: Keyed> {
    chunks: VecDeque<Chunk<V>>,
    len: usize,
}

impl<V: Keyed + Clone> Clone for ChunkedMap<V> {
    fn clone(&self) -> Self {
        ChunkedMap { chunks: self.chunks.clone(), len: self.len }
    }
}

impl<V: Keyed + std::fmt::Debug> std::fmt::Debug for ChunkedMap<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<V: Keyed> Default for ChunkedMap<V> {
    fn default() -> Self {
        ChunkedMap { chunks: VecDeque::new(), len: 0 }
    }
}

impl<V: Keyed> ChunkedMap<V> {
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
    fn chunk_of(&self, key: &V::Key) -> usize {
        self.chunks.partition_point(|c| c.first <= *key).saturating_sub(1)
    }

    /// (chunk, position in it) of `key`: `Ok` where it is, `Err` where it would go.
    fn locate(&self, key: &V::Key) -> Option<(usize, Result<usize, usize>)> {
        let c = self.chunk_of(key);
        Some((c, self.chunks.get(c)?.search(key)))
    }

    pub fn get(&self, key: &V::Key) -> Option<&V> {
        match self.locate(key)? {
            (c, Ok(i)) => Some(&self.chunks[c].values[i]),
            _ => None,
        }
    }

    /// The value under `key`, to change anything but its key.
    pub fn get_mut(&mut self, key: &V::Key) -> Option<&mut V> {
        match self.locate(key)? {
            (c, Ok(i)) => Some(&mut self.chunks[c].values[i]),
            _ => None,
        }
    }

    pub fn contains_key(&self, key: &V::Key) -> bool {
        matches!(self.locate(key), Some((_, Ok(_))))
    }

    /// Inserts or replaces the value with the same key; returns the value replaced.
    pub fn insert(&mut self, value: V) -> Option<V> {
        let key = value.key();
        // The common case: past the last key.
        if self.chunks.back().is_none_or(|last| last.values.last().is_some_and(|v| v.key() < key)) {
            self.append(key, value);
            return None;
        }
        self.insert_inside(key, value)
    }

    /// Adds `value`, whose key the caller knows to be after every key here (a new
    /// id), without reading the last value (for a held message, its envelope: a
    /// cache miss when a topic reaches thousands of mailboxes).
    pub fn push_last(&mut self, value: V) {
        let key = value.key();
        debug_assert!(self.iter().next_back().is_none_or(|v| v.key() < key), "push_last out of order");
        self.append(key, value);
    }

    fn append(&mut self, key: V::Key, value: V) {
        if self.chunks.back().is_none_or(|last| last.values.len() >= CHUNK) {
            if self.chunks.is_empty() {
                // The chunk list too starts with room for one chunk, not four.
                self.chunks.reserve_exact(1);
            }
            // The first chunk starts with room for one value (a small mailbox stays
            // small), later ones for `STEP`, and at their full size once the map is
            // large (a chunk's empty room is then small beside the rest, and a load
            // fills chunks without growing them).
            let capacity = match self.len {
                0 => 1,
                n if n < LARGE => STEP,
                _ => CHUNK,
            };
            self.chunks.push_back(Chunk { first: key, values: Vec::with_capacity(capacity) });
        }
        if let Some(last) = self.chunks.back_mut() {
            let values = &mut last.values;
            if values.len() == values.capacity() {
                // Doubling up to `STEP`, then `STEP` more at a time: at most `STEP` - 1
                // empty slots at the end of the last chunk where doubling would leave
                // up to half of it (a topic message costs each receiver a slot here).
                let more = if values.len() < STEP { values.len().max(1) } else { STEP };
                values.reserve_exact(more.min(CHUNK - values.len()));
            }
            values.push(value);
        }
        self.len += 1;
    }

    fn insert_inside(&mut self, key: V::Key, value: V) -> Option<V> {
        let (mut c, found) = self.locate(&key)?;
        let mut at = match found {
            Ok(i) => return Some(std::mem::replace(&mut self.chunks[c].values[i], value)),
            Err(i) => i,
        };
        if self.chunks[c].values.len() >= CHUNK {
            let mut right = Vec::with_capacity(CHUNK);
            right.extend(self.chunks[c].values.drain(CHUNK / 2..));
            if let Some(right) = Chunk::new(right) {
                self.chunks.insert(c + 1, right);
            }
            if at > CHUNK / 2 {
                c += 1;
                at -= CHUNK / 2;
            }
        }
        let chunk = &mut self.chunks[c];
        chunk.values.insert(at, value);
        if at == 0 {
            chunk.refresh();
        }
        self.len += 1;
        None
    }

    pub fn remove(&mut self, key: &V::Key) -> Option<V> {
        let (c, Ok(i)) = self.locate(key)? else { return None };
        let value = self.chunks[c].values.remove(i);
        self.len -= 1;
        if self.len == 0 {
            // A drained queue keeps no room.
            self.chunks = VecDeque::new();
        } else if i == 0 && !self.chunks[c].refresh() {
            self.chunks.remove(c);
        } else {
            self.compact(c);
        }
        Some(value)
    }

    /// Merges chunk `c` with a neighbour when it has become small and both fit in one chunk.
    fn compact(&mut self, c: usize) {
        let len = self.chunks[c].values.len();
        if len >= SMALL {
            return;
        }
        let fits = |other: Option<&Chunk<V>>| other.is_some_and(|o| o.values.len() + len <= CHUNK);
        if fits(self.chunks.get(c + 1)) {
            if let Some(next) = self.chunks.remove(c + 1) {
                self.chunks[c].values.extend(next.values);
            }
        } else if c > 0 && fits(self.chunks.get(c - 1)) {
            if let Some(this) = self.chunks.remove(c) {
                self.chunks[c - 1].values.extend(this.values);
            }
        }
    }

    pub fn first(&self) -> Option<&V> {
        self.chunks.front().and_then(|c| c.values.first())
    }

    /// Every value in key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &V> + '_ {
        self.chunks.iter().flat_map(|c| c.values.iter())
    }

    /// The values from the first key at or after `from`, in key order.
    pub fn iter_from<'a>(&'a self, from: &V::Key) -> impl Iterator<Item = &'a V> + 'a {
        let (c, i) = match self.locate(from) {
            Some((c, Ok(i) | Err(i))) => (c, i),
            None => (0, 0),
        };
        self.chunks.range(c.min(self.chunks.len())..).enumerate().flat_map(move |(n, chunk)| {
            let skip = if n == 0 { i } else { 0 };
            chunk.values[skip.min(chunk.values.len())..].iter()
        })
    }

    pub fn keys(&self) -> impl Iterator<Item = V::Key> + '_ {
        self.iter().map(V::key)
    }

    /// Bytes this map allocated (chunk capacities and the chunk list), for `MEMORY USAGE`.
    pub fn allocated_bytes(&self) -> usize {
        self.chunks.iter().map(|c| c.values.capacity() * std::mem::size_of::<V>()).sum::<usize>()
            + self.chunks.capacity() * std::mem::size_of::<Chunk<V>>()
    }

    /// Checks the chunks' order, sizes, first keys and the length (tests).
    #[cfg(test)]
    pub fn check(&self) {
        let mut n = 0;
        let mut last: Option<V::Key> = None;
        for chunk in &self.chunks {
            let len = chunk.values.len();
            assert!(len != 0 && len <= CHUNK, "chunk of {len}");
            assert!(chunk.values[0].key() == chunk.first, "stale first key");
            for key in chunk.values.iter().map(V::key) {
                assert!(last.is_none_or(|l| l < key), "keys out of order");
                last = Some(key);
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

    /// A key and a value, as the model `BTreeMap` holds them.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Pair(u64, u64);

    impl Keyed for Pair {
        type Key = u64;

        fn key(&self) -> u64 {
            self.0
        }
    }

    impl Keyed for u64 {
        type Key = u64;

        fn key(&self) -> u64 {
            *self
        }
    }

    fn pairs<'a>(model: impl Iterator<Item = (&'a u64, &'a u64)>) -> Vec<Pair> {
        model.map(|(&k, &v)| Pair(k, v)).collect()
    }

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
                        let replaced = model.insert(key, step).map(|v| Pair(key, v));
                        assert_eq!(map.insert(Pair(key, step)), replaced);
                    }
                    0..=4 => assert_eq!(map.remove(&key), model.remove(&key).map(|v| Pair(key, v))),
                    5 => {
                        if let (Some(a), Some(b)) = (map.get_mut(&key), model.get_mut(&key)) {
                            a.1 += 1;
                            *b += 1;
                        }
                    }
                    _ => assert_eq!(map.get(&key).map(|p| p.1), model.get(&key).copied()),
                }
                assert_eq!(map.contains_key(&key), model.contains_key(&key));
                assert_eq!(map.len(), model.len());
                assert_eq!(map.first().copied(), model.first_key_value().map(|(&k, &v)| Pair(k, v)));
                if step % 97 == 0 {
                    map.check();
                    assert_eq!(map.iter().copied().collect::<Vec<_>>(), pairs(model.iter()));
                    let from = next(top + 2);
                    let tail: Vec<Pair> = map.iter_from(&from).copied().collect();
                    assert_eq!(tail, pairs(model.range(from..)), "from {from}");
                }
            }
            map.check();
            assert_eq!(map.iter().copied().collect::<Vec<_>>(), pairs(model.iter()));
            assert!(map.keys().eq(model.keys().copied()));
        }
    }

    #[test]
    fn appends_fill_every_chunk() {
        let mut map = ChunkedMap::new();
        for k in 0..1000u64 {
            map.insert(k);
        }
        map.check();
        assert_eq!(map.chunks.len(), 1000usize.div_ceil(CHUNK));
        assert!(map
            .chunks
            .iter()
            .rev()
            .skip(1)
            .all(|c| c.values.len() == CHUNK && c.values.capacity() == CHUNK));
        for k in 0..1000u64 {
            assert_eq!(map.remove(&k), Some(k));
        }
        assert!(map.is_empty() && map.chunks.is_empty());
    }
}
