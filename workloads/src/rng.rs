//! A small seeded generator and a Zipf sampler in integers, so that the same
//! seed gives the same blocks on every machine.

/// SplitMix64.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`), without modulo bias worth speaking of
    /// (128-bit multiply-shift).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n.max(1))) >> 64) as u64
    }
}

/// Ranks `0..n` with probability proportional to `1 / (rank + 1)` (s = 1).
#[derive(Debug, Clone)]
pub struct Zipf {
    cumulative: Vec<u64>,
}

impl Zipf {
    pub fn new(n: usize) -> Zipf {
        const SCALE: u64 = 1 << 40;
        let mut total = 0u64;
        let cumulative = (0..n.max(1) as u64)
            .map(|rank| {
                total += SCALE / (rank + 1);
                total
            })
            .collect();
        Zipf { cumulative }
    }

    pub fn sample(&self, rng: &mut Rng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(1);
        let r = rng.below(total);
        self.cumulative.partition_point(|&c| c <= r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_rank_frequencies_fall_like_one_over_rank() {
        let zipf = Zipf::new(1000);
        let mut rng = Rng::new(7);
        let mut counts = vec![0u32; 1000];
        for _ in 0..200_000 {
            counts[zipf.sample(&mut rng)] += 1;
        }
        // H(1000) ≈ 7.485: rank 0 gets ≈ 13.4%, rank 1 half that, rank 9 a tenth.
        assert!((25_000..28_500).contains(&counts[0]), "{}", counts[0]);
        assert!((12_000..14_800).contains(&counts[1]), "{}", counts[1]);
        assert!((2_200..3_200).contains(&counts[9]), "{}", counts[9]);
    }

    #[test]
    fn same_seed_same_sequence() {
        let (mut a, mut b) = (Rng::new(3), Rng::new(3));
        assert!((0..100).all(|_| a.below(1000) == b.below(1000)));
        assert!((0..1000).all(|_| a.below(10) < 10));
    }
}
