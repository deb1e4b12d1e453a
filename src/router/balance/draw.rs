//! Cheap seeded randomness for the balancing policies: a splitmix64 stream kept in one atomic word per
//! shard, so that the same seed and the same order of decisions give the same picks.

use std::sync::atomic::{AtomicU64, Ordering};

/// The splitmix64 increment (2^64 over the golden ratio).
const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// A stream of 64-bit draws. The state is read and written with a plain load and store, like the
/// round-robin cursor: two racing decisions may share a draw, which only makes them pick alike, and a
/// decision takes no locked instruction.
#[derive(Debug, Default)]
pub struct Draws {
    state: AtomicU64,
}

impl Draws {
    /// A stream starting from `seed`.
    pub fn new(seed: u64) -> Draws {
        Draws {
            state: AtomicU64::new(seed),
        }
    }

    /// Restarts the stream from `seed`.
    pub fn reseed(&self, seed: u64) {
        self.state.store(seed, Ordering::Relaxed);
    }

    /// The next draw.
    #[inline]
    pub fn next_draw(&self) -> u64 {
        let state = self.state.load(Ordering::Relaxed).wrapping_add(GAMMA);
        self.state.store(state, Ordering::Relaxed);
        mix(state)
    }
}

/// The splitmix64 output function: spreads every input bit over the whole word.
#[inline]
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A number in `[0, n)` from a uniform draw, by multiplying and keeping the high word (no division).
/// `n = 0` gives 0.
#[inline]
pub fn below(draw: u64, n: u64) -> u64 {
    ((u128::from(draw) * u128::from(n)) >> 64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_stream() {
        let a = Draws::new(7);
        let b = Draws::new(7);
        let c = Draws::new(8);
        let first: Vec<u64> = (0..5).map(|_| a.next_draw()).collect();
        let second: Vec<u64> = (0..5).map(|_| b.next_draw()).collect();
        let other: Vec<u64> = (0..5).map(|_| c.next_draw()).collect();
        assert_eq!(first, second);
        assert_ne!(first, other);
        a.reseed(7);
        assert_eq!(a.next_draw(), first[0], "reseeding restarts the stream");
    }

    #[test]
    fn draws_below_n_are_in_range_and_spread_evenly() {
        let draws = Draws::new(1);
        let mut counts = [0u32; 5];
        for _ in 0..50_000 {
            let i = below(draws.next_draw(), 5);
            assert!(i < 5, "{i}");
            counts[i as usize] += 1;
        }
        for count in counts {
            assert!((9_000..11_000).contains(&count), "{counts:?}");
        }
        assert_eq!(below(u64::MAX, 0), 0);
        assert_eq!(below(u64::MAX, 3), 2);
        assert_eq!(below(0, 3), 0);
    }
}
