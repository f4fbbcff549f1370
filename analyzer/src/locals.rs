//! A frame's locals: a vector of values stored as shared chunks.
//!
//! States split at every branch, and each path's first instruction then
//! copies the innermost frame. rustc's functions hold tens of locals (each a
//! 72-byte value), and most instructions write one local or none, so the
//! paths' locals stay mostly alike. Chunks shared until written make copying
//! a frame cost per chunk, and let comparisons, distances and joins of the
//! states at a merge point skip shared chunks at once; before, comparing the
//! locals of paths that had split took a fifth of the AMM's analysis.

use std::rc::Rc;

use crate::domain::Value;

/// Locals per chunk.
const CHUNK: usize = 8;

/// What a chunk holds past the last local: never read, never written, the
/// same in every chunk, so that equal locals are equal chunk by chunk.
const PAD: Value = Value::Const(0);

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Locals {
    chunks: Vec<Rc<[Value; CHUNK]>>,
    len: usize,
}

impl Locals {
    pub fn new(values: impl IntoIterator<Item = Value>) -> Locals {
        let mut chunks = Vec::new();
        let mut len = 0;
        let mut chunk = [PAD; CHUNK];
        for v in values {
            chunk[len % CHUNK] = v;
            len += 1;
            if len % CHUNK == 0 {
                chunks.push(Rc::new(chunk));
                chunk = [PAD; CHUNK];
            }
        }
        if len % CHUNK != 0 {
            chunks.push(Rc::new(chunk));
        }
        Locals { chunks, len }
    }

    /// `len` copies of `value`.
    pub fn filled(value: Value, len: usize) -> Locals {
        Locals::new(std::iter::repeat_n(value, len))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn get(&self, i: usize) -> Option<Value> {
        if i >= self.len {
            return None;
        }
        Some(self.chunks[i / CHUNK][i % CHUNK])
    }

    /// Sets local `i`; `None` when there is no such local. Writing the value
    /// a local already holds leaves its chunk shared.
    pub fn set(&mut self, i: usize, v: Value) -> Option<()> {
        if i >= self.len {
            return None;
        }
        let chunk = &mut self.chunks[i / CHUNK];
        if chunk[i % CHUNK] != v {
            Rc::make_mut(chunk)[i % CHUNK] = v;
        }
        Some(())
    }

    pub fn iter(&self) -> impl Iterator<Item = &Value> {
        self.chunks.iter().flat_map(|c| c.iter()).take(self.len)
    }

    /// Replaces every local for which `f` gives a new value; chunks where
    /// nothing changes stay shared.
    pub fn replace(&mut self, f: impl Fn(&Value) -> Option<Value>) {
        let len = self.len;
        for (c, chunk) in self.chunks.iter_mut().enumerate() {
            let live = (len - c * CHUNK).min(CHUNK);
            if chunk[..live].iter().all(|v| f(v).is_none()) {
                continue;
            }
            for v in &mut Rc::make_mut(chunk)[..live] {
                if let Some(new) = f(v) {
                    *v = new;
                }
            }
        }
    }

    /// Local by local; all unknown (sound) if the lengths differ, which
    /// validated code never makes happen.
    pub fn join(&self, other: &Locals) -> Locals {
        if self.len != other.len {
            return Locals::filled(Value::Top, self.len.max(other.len));
        }
        let chunks = self
            .chunks
            .iter()
            .zip(&other.chunks)
            .map(|(a, b)| if Rc::ptr_eq(a, b) { a.clone() } else { Rc::new(std::array::from_fn(|i| a[i].join(b[i]))) })
            .collect();
        Locals { chunks, len: self.len }
    }

    /// How many locals differ (or exist in one only), counted up to `limit`:
    /// exact when below it, else some number at least `limit`.
    pub fn differences(&self, other: &Locals, limit: usize) -> usize {
        let mut n = self.len.abs_diff(other.len);
        let both = self.len.min(other.len);
        for (c, (a, b)) in self.chunks.iter().zip(&other.chunks).enumerate() {
            if n >= limit {
                return n;
            }
            if !Rc::ptr_eq(a, b) {
                let live = (both - c * CHUNK).min(CHUNK);
                n += a[..live].iter().zip(&b[..live]).filter(|(x, y)| x != y).count();
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locals(n: u64) -> Locals {
        Locals::new((0..n).map(Value::Const))
    }

    #[test]
    fn values_are_read_and_written_by_index() {
        let mut l = locals(19);
        assert_eq!(l.len(), 19);
        assert_eq!(l.iter().count(), 19, "the padding is not a local");
        assert_eq!(l.get(18), Some(Value::Const(18)));
        assert_eq!(l.get(19), None);
        assert_eq!(l.set(19, Value::Top), None);
        assert_eq!(l.set(9, Value::Top), Some(()));
        assert_eq!(l.get(9), Some(Value::Top));
        assert_eq!(l.iter().copied().collect::<Vec<_>>()[8..11], [Value::Const(8), Value::Top, Value::Const(10)]);
    }

    #[test]
    fn a_copy_shares_every_chunk_it_has_not_written() {
        let a = locals(24);
        let mut b = a.clone();
        b.set(3, Value::Const(3));
        assert!(b.chunks.iter().zip(&a.chunks).all(|(x, y)| Rc::ptr_eq(x, y)), "writing the same value copies nothing");
        b.set(3, Value::Top);
        assert!(!Rc::ptr_eq(&a.chunks[0], &b.chunks[0]));
        assert!(Rc::ptr_eq(&a.chunks[1], &b.chunks[1]) && Rc::ptr_eq(&a.chunks[2], &b.chunks[2]));
        assert_eq!(a.get(3), Some(Value::Const(3)), "the original keeps its value");
        assert_ne!(a, b);
        b.set(3, Value::Const(3));
        assert_eq!(a, b, "equal values in separate chunks are equal");
    }

    #[test]
    fn differences_count_locals_and_stop_at_the_limit() {
        let a = locals(20);
        let mut b = a.clone();
        for i in [1, 2, 17] {
            b.set(i, Value::Top);
        }
        assert_eq!(a.differences(&b, usize::MAX), 3);
        assert_eq!(a.differences(&a.clone(), usize::MAX), 0);
        assert!(a.differences(&b, 2) >= 2);
        assert_eq!(a.differences(&locals(21), usize::MAX), 1, "a local only one has counts");
    }

    #[test]
    fn join_keeps_agreement_and_shares_equal_chunks() {
        let a = locals(20);
        let mut b = a.clone();
        b.set(17, Value::Const(99));
        let j = a.join(&b);
        assert_eq!(j.get(17), Some(Value::Const(17).join(Value::Const(99))));
        assert_eq!(j.get(16), Some(Value::Const(16)));
        assert!(Rc::ptr_eq(&j.chunks[0], &a.chunks[0]));
        assert_eq!(a.join(&locals(3)).iter().copied().collect::<Vec<_>>(), vec![Value::Top; 20]);
    }

    #[test]
    fn replace_copies_only_the_chunks_it_changes() {
        let a = locals(20);
        let mut b = a.clone();
        b.replace(|v| (*v == Value::Const(12)).then_some(Value::Top));
        assert_eq!(b.get(12), Some(Value::Top));
        assert!(Rc::ptr_eq(&a.chunks[0], &b.chunks[0]) && !Rc::ptr_eq(&a.chunks[1], &b.chunks[1]));
        assert_eq!(a.get(12), Some(Value::Const(12)));
    }
}
