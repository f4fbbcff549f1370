//! The bytes an abstract memory holds, by address: a sorted map like
//! `BTreeMap<u64, Byte>`, stored as shared chunks of consecutive addresses.
//!
//! The analysis keeps up to eight states per program point, made by
//! splitting one state and then writing a few bytes on each path: their
//! memories differ in a handful of chunks and share the rest. Chunks are
//! reference-counted and copied only when written, so cloning a map, and
//! comparing two maps or counting where they differ, costs per chunk and
//! skips shared chunks at once, instead of costing per byte.

use std::rc::Rc;

use crate::domain::Byte;

/// Addresses per chunk.
const CHUNK: u64 = 32;

/// The bytes held at `base .. base + CHUNK`: bit `i` of `present` says
/// whether `bytes[i]` is held (absent entries are `Byte::Unknown`, so that
/// equal chunks are equal field by field).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Chunk {
    present: u32,
    bytes: [Byte; CHUNK as usize],
}

impl Chunk {
    const EMPTY: Chunk = Chunk { present: 0, bytes: [Byte::Unknown; CHUNK as usize] };

    /// Addresses where `self` and `other` differ: held by one only, or held
    /// by both with different bytes.
    fn differences(&self, other: &Chunk) -> usize {
        let mut n = (self.present ^ other.present).count_ones() as usize;
        let mut both = self.present & other.present;
        while both != 0 {
            let i = both.trailing_zeros() as usize;
            n += self.bytes[i].join_cost(other.bytes[i]);
            both &= both - 1;
        }
        n
    }

    fn iter(&self, base: u64) -> impl Iterator<Item = (u64, Byte)> + '_ {
        let mut left = self.present;
        std::iter::from_fn(move || {
            if left == 0 {
                return None;
            }
            let i = left.trailing_zeros();
            left &= left - 1;
            Some((base + u64::from(i), self.bytes[i as usize]))
        })
    }
}

/// A map from address to byte. No chunk is ever empty, so two maps holding
/// the same bytes are equal chunk by chunk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ByteMap {
    /// By key (address / CHUNK), ascending. A sorted vector rather than a
    /// tree: the analysis walks, compares and copies maps far more often
    /// than it adds a chunk, and a vector does those in one pass over
    /// contiguous memory.
    chunks: Vec<(u64, Rc<Chunk>)>,
    len: usize,
}

fn split(address: u64) -> (u64, usize) {
    (address / CHUNK, (address % CHUNK) as usize)
}

impl ByteMap {
    /// Bytes held.
    pub fn len(&self) -> usize {
        self.len
    }

    fn find(&self, key: u64) -> Result<usize, usize> {
        self.chunks.binary_search_by_key(&key, |(k, _)| *k)
    }

    /// The positions of the chunks that hold addresses of `start..end` (empty when the range is).
    fn chunks_in(&self, start: u64, end: u64) -> std::ops::Range<usize> {
        if start >= end {
            return 0..0;
        }
        let (first, last) = (start / CHUNK, (end - 1) / CHUNK);
        self.chunks.partition_point(|(k, _)| *k < first)..self.chunks.partition_point(|(k, _)| *k <= last)
    }

    #[cfg(test)]
    pub fn get(&self, address: u64) -> Option<Byte> {
        let (key, i) = split(address);
        let chunk = &self.chunks[self.find(key).ok()?].1;
        (chunk.present & (1 << i) != 0).then(|| chunk.bytes[i])
    }

    /// What is held at each of `n` addresses from `address` on: one lookup
    /// per chunk, not per byte.
    pub fn get_run(&self, address: u64, n: usize) -> Vec<Option<Byte>> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let (key, first) = split(address + out.len() as u64);
            let count = (CHUNK as usize - first).min(n - out.len());
            match self.find(key) {
                Ok(at) => {
                    let chunk = &self.chunks[at].1;
                    out.extend((first..first + count).map(|i| (chunk.present & (1 << i) != 0).then(|| chunk.bytes[i])));
                }
                Err(_) => out.extend(std::iter::repeat_n(None, count)),
            }
        }
        out
    }

    /// Sets the bytes from `address` on: one lookup per chunk, not per byte.
    pub fn insert_run(&mut self, address: u64, bytes: &[Byte]) {
        let mut done = 0;
        while done < bytes.len() {
            let (key, first) = split(address + done as u64);
            let at = match self.find(key) {
                Ok(at) => at,
                Err(at) => {
                    self.chunks.insert(at, (key, Rc::new(Chunk::EMPTY)));
                    at
                }
            };
            let chunk = Rc::make_mut(&mut self.chunks[at].1);
            let n = (CHUNK as usize - first).min(bytes.len() - done);
            for (i, byte) in (first..first + n).zip(&bytes[done..done + n]) {
                if chunk.present & (1 << i) == 0 {
                    chunk.present |= 1 << i;
                    self.len += 1;
                }
                chunk.bytes[i] = *byte;
            }
            done += n;
        }
    }

    /// Adds a byte above every address held: what building a map in
    /// address order needs, without a search.
    pub fn push(&mut self, address: u64, byte: Byte) {
        let (key, i) = split(address);
        match self.chunks.last_mut() {
            Some((last, chunk)) if *last == key => {
                let chunk = Rc::make_mut(chunk);
                debug_assert!(chunk.present >> i == 0, "pushed in address order");
                chunk.present |= 1 << i;
                chunk.bytes[i] = byte;
            }
            last => {
                debug_assert!(last.is_none_or(|(k, _)| *k < key), "pushed in address order");
                let mut chunk = Chunk::EMPTY;
                chunk.present = 1 << i;
                chunk.bytes[i] = byte;
                self.chunks.push((key, Rc::new(chunk)));
            }
        }
        self.len += 1;
    }

    /// Whether some address in `start..end` is held.
    pub fn any_in(&self, start: u64, end: u64) -> bool {
        self.iter_in(start, end).next().is_some()
    }

    /// Drops every byte at `start..end`.
    pub fn remove_in(&mut self, start: u64, end: u64) {
        let range = self.chunks_in(start, end);
        // Backwards, so that removing a chunk moves none still to visit.
        for at in range.rev() {
            let (key, entry) = &mut self.chunks[at];
            let base = *key * CHUNK;
            // The chunk's addresses inside start..end, as a mask.
            let from = start.saturating_sub(base).min(CHUNK);
            let to = end.saturating_sub(base).min(CHUNK);
            let mask = if to - from == CHUNK { u32::MAX } else { ((1u32 << (to - from)) - 1) << from };
            let dropped = entry.present & mask;
            if dropped == 0 {
                continue;
            }
            self.len -= dropped.count_ones() as usize;
            if entry.present == dropped {
                self.chunks.remove(at);
                continue;
            }
            let chunk = Rc::make_mut(entry);
            chunk.present &= !dropped;
            let mut left = dropped;
            while left != 0 {
                chunk.bytes[left.trailing_zeros() as usize] = Byte::Unknown;
                left &= left - 1;
            }
        }
    }

    /// Drops every byte below `address`.
    pub fn remove_below(&mut self, address: u64) {
        if address == 0 {
            return;
        }
        let (key, _) = split(address);
        let below = self.chunks.partition_point(|(k, _)| *k < key);
        let dropped: usize = self.chunks.drain(..below).map(|(_, c)| c.present.count_ones() as usize).sum();
        self.len -= dropped;
        self.remove_in(key * CHUNK, address);
    }

    /// Held addresses and their bytes, in address order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, Byte)> + '_ {
        self.chunks.iter().flat_map(|(key, chunk)| chunk.iter(key * CHUNK))
    }

    /// Held addresses in `start..end` and their bytes, in address order.
    pub fn iter_in(&self, start: u64, end: u64) -> impl Iterator<Item = (u64, Byte)> + '_ {
        self.chunks[self.chunks_in(start, end)]
            .iter()
            .flat_map(|(key, chunk)| chunk.iter(key * CHUNK))
            .filter(move |(a, _)| start <= *a && *a < end)
    }

    /// Addresses where the maps differ (held by one only, or by both with
    /// different bytes), counted until `limit`: exact when below it, and
    /// some number from `limit` up otherwise.
    pub fn differences(&self, other: &ByteMap, limit: usize) -> usize {
        let (a, b) = (&self.chunks, &other.chunks);
        let (mut i, mut j, mut n) = (0, 0, 0);
        while n < limit && i < a.len() && j < b.len() {
            let ((ka, ca), (kb, cb)) = (&a[i], &b[j]);
            if ka == kb {
                if !Rc::ptr_eq(ca, cb) {
                    n += ca.differences(cb);
                }
                i += 1;
                j += 1;
            } else if ka < kb {
                n += ca.present.count_ones() as usize;
                i += 1;
            } else {
                n += cb.present.count_ones() as usize;
                j += 1;
            }
        }
        // What only one map has left.
        for (_, c) in a[i..].iter().chain(&b[j..]) {
            if n >= limit {
                break;
            }
            n += c.present.count_ones() as usize;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64, u8),
        InsertRun(u64, u8, u8),
        RemoveIn(u64, u64),
        RemoveBelow(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Addresses around a few chunk boundaries, so that ranges cut chunks.
        let address = prop_oneof![0u64..200, (u64::MAX - 100)..u64::MAX];
        prop_oneof![
            4 => (address.clone(), any::<u8>()).prop_map(|(a, b)| Op::Insert(a, b)),
            1 => ((0u64..200), 0u8..70, any::<u8>()).prop_map(|(a, n, b)| Op::InsertRun(a, n, b)),
            1 => (address.clone(), 0u64..100).prop_map(|(a, n)| Op::RemoveIn(a, a.saturating_add(n))),
            1 => address.prop_map(Op::RemoveBelow),
        ]
    }

    fn apply(map: &mut ByteMap, model: &mut BTreeMap<u64, Byte>, op: &Op) {
        match *op {
            Op::Insert(a, b) => {
                map.insert_run(a, &[Byte::Const(b)]);
                model.insert(a, Byte::Const(b));
            }
            Op::InsertRun(a, n, b) => {
                let run: Vec<Byte> = (0..n).map(|i| Byte::Const(b.wrapping_add(i))).collect();
                map.insert_run(a, &run);
                for (i, byte) in run.into_iter().enumerate() {
                    model.insert(a + i as u64, byte);
                }
            }
            Op::RemoveIn(start, end) => {
                map.remove_in(start, end);
                model.retain(|a, _| !(start <= *a && *a < end));
            }
            Op::RemoveBelow(address) => {
                map.remove_below(address);
                model.retain(|a, _| *a >= address);
            }
        }
    }

    /// What `differences` must count, from the plain maps.
    fn model_differences(a: &BTreeMap<u64, Byte>, b: &BTreeMap<u64, Byte>) -> usize {
        let keys: std::collections::BTreeSet<&u64> = a.keys().chain(b.keys()).collect();
        keys.into_iter().filter(|k| a.get(k) != b.get(k)).count()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Two maps that start shared and then take their own writes behave
        /// like two `BTreeMap`s: same contents, same equality, same count
        /// of differences (exact below the limit, at least the limit above).
        #[test]
        fn behaves_like_a_btreemap(common in prop::collection::vec(op(), 0..40), left in prop::collection::vec(op(), 0..12), right in prop::collection::vec(op(), 0..12), limit in 0usize..80) {
            let (mut map, mut model) = (ByteMap::default(), BTreeMap::new());
            for op in &common {
                apply(&mut map, &mut model, op);
            }
            let (mut map_b, mut model_b) = (map.clone(), model.clone());
            for op in &left {
                apply(&mut map, &mut model, op);
            }
            for op in &right {
                apply(&mut map_b, &mut model_b, op);
            }
            for (m, expected) in [(&map, &model), (&map_b, &model_b)] {
                prop_assert_eq!(m.iter().collect::<Vec<_>>(), expected.iter().map(|(a, b)| (*a, *b)).collect::<Vec<_>>());
                prop_assert_eq!(m.len(), expected.len());
                prop_assert!(m.chunks.iter().all(|(_, c)| c.present != 0), "no empty chunk");
                prop_assert!(m.chunks.windows(2).all(|w| w[0].0 < w[1].0), "chunks in order");
                let mut pushed = ByteMap::default();
                for (a, b) in expected {
                    pushed.push(*a, *b);
                }
                prop_assert_eq!(&pushed, m, "a map built in address order equals one built by inserts");
                for a in (0..200).chain((u64::MAX - 100)..=u64::MAX) {
                    prop_assert_eq!(m.get(a), expected.get(&a).copied());
                }
                let run: Vec<Option<Byte>> = (50..150).map(|a| expected.get(&a).copied()).collect();
                prop_assert_eq!(m.get_run(50, 100), run);
                let (s, e) = (60, 130);
                prop_assert_eq!(m.iter_in(s, e).collect::<Vec<_>>(), expected.range(s..e).map(|(a, b)| (*a, *b)).collect::<Vec<_>>());
                prop_assert_eq!(m.any_in(s, e), expected.range(s..e).next().is_some());
            }
            prop_assert_eq!(map == map_b, model == model_b);
            let exact = model_differences(&model, &model_b);
            let counted = map.differences(&map_b, limit);
            if exact < limit {
                prop_assert_eq!(counted, exact);
            } else {
                prop_assert!(counted >= limit);
            }
            prop_assert_eq!(map.differences(&map_b, usize::MAX), exact);
        }
    }
}
