//! Read balancing policies: pure functions from the usable candidates (and a cursor, a random draw or
//! per-candidate load signals) to one node.
//!
//! Candidates are a bit set of positions in a shard, so filtering by health and by earlier attempts is
//! one `and`, counting them one `popcnt`, and a round-robin decision touches no memory besides the
//! cursor. The other policies live in their own modules: [`random`](mod@random),
//! [`least_outstanding`](mod@least_outstanding), [`weighted`](mod@weighted) and [`p2c`](mod@p2c)
//! (over the latency signal of [`ewma`]), with seeded draws from [`draw`];
//! `select` feeds them the router's live signals.

pub mod draw;
pub mod ewma;
pub mod least_outstanding;
pub mod p2c;
pub mod random;
pub(crate) mod select;
pub mod weighted;

pub use least_outstanding::least_outstanding;
pub use p2c::p2c;
pub use random::random;
pub use weighted::weighted;

/// A set of positions (0..64) in a shard's node list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Candidates(pub u64);

impl Candidates {
    /// The set holding `positions`; positions of 64 and above are ignored.
    #[cfg(test)]
    pub fn from_positions(positions: impl IntoIterator<Item = u32>) -> Candidates {
        Candidates(
            positions
                .into_iter()
                .filter(|&p| p < 64)
                .fold(0, |bits, p| bits | 1 << p),
        )
    }

    /// How many positions are in the set.
    #[inline]
    pub fn len(self) -> u32 {
        self.0.count_ones()
    }

    /// True if the set is empty.
    #[inline]
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The position of the `k`-th candidate (from 0, in position order), if there are more than `k`.
    #[inline]
    pub fn nth(self, k: u32) -> Option<u32> {
        let mut bits = self.0;
        for _ in 0..k {
            if bits == 0 {
                return None;
            }
            bits &= bits - 1;
        }
        (bits != 0).then(|| bits.trailing_zeros())
    }
}

/// Round robin: the first candidate at or after position `cursor`, wrapping around to the first
/// candidate, with the cursor of the next decision (just past the one picked). Fed back its own cursor,
/// it walks the candidates in position order, so each of n candidates gets every n-th decision, and a
/// candidate that drops out is simply stepped over. Two bit operations: no division, no loop.
#[inline]
pub fn round_robin(candidates: Candidates, cursor: u32) -> Option<(u32, u32)> {
    if candidates.is_empty() {
        return None;
    }
    let at_or_after = candidates.0 & u64::MAX.checked_shl(cursor).unwrap_or(0);
    let position = if at_or_after != 0 {
        at_or_after.trailing_zeros()
    } else {
        candidates.0.trailing_zeros()
    };
    Some((position, position + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(positions: &[u32]) -> Candidates {
        Candidates::from_positions(positions.iter().copied())
    }

    /// Runs `decisions` round-robin decisions over `candidates`, feeding each cursor to the next.
    fn rotate(candidates: Candidates, start: u32, decisions: usize) -> Vec<u32> {
        let mut cursor = start;
        let mut picks = Vec::new();
        for _ in 0..decisions {
            if let Some((position, next)) = round_robin(candidates, cursor) {
                picks.push(position);
                cursor = next;
            }
        }
        picks
    }

    #[test]
    fn sets_count_their_positions() {
        assert_eq!(set(&[1, 3, 63, 64]).len(), 3, "64 is out of range");
        assert!(set(&[]).is_empty());
        assert!(!set(&[0]).is_empty());
    }

    #[test]
    fn nth_counts_candidates_in_position_order() {
        let candidates = set(&[2, 5, 63]);
        let found: Vec<_> = (0..4).map(|k| candidates.nth(k)).collect();
        assert_eq!(found, vec![Some(2), Some(5), Some(63), None]);
        assert_eq!(Candidates::default().nth(0), None);
        assert_eq!(candidates.nth(u32::MAX), None);
    }

    #[test]
    fn empty_set_gives_nothing() {
        assert_eq!(round_robin(Candidates::default(), 0), None);
        assert_eq!(round_robin(Candidates::default(), 17), None);
    }

    #[test]
    fn consecutive_decisions_visit_each_candidate_in_turn() {
        assert_eq!(rotate(set(&[1, 2, 3]), 0, 7), vec![1, 2, 3, 1, 2, 3, 1]);
    }

    #[test]
    fn remaining_candidates_share_the_load_evenly() {
        let healthy = set(&[1, 2, 4]);
        let mut counts = [0usize; 5];
        for position in rotate(healthy, 0, 300) {
            counts[position as usize] += 1;
        }
        assert_eq!(counts, [0, 100, 100, 0, 100]);
    }

    #[test]
    fn cursor_past_the_last_candidate_wraps_around() {
        assert_eq!(round_robin(set(&[5, 6]), 7), Some((5, 6)));
        assert_eq!(round_robin(set(&[5, 6]), 64), Some((5, 6)));
        assert_eq!(round_robin(set(&[5, 63]), 63), Some((63, 64)));
        assert_eq!(round_robin(set(&[5, 6]), u32::MAX), Some((5, 6)));
        assert_eq!(rotate(set(&[5, 6]), 9, 3), vec![5, 6, 5]);
    }

    #[test]
    fn candidate_that_drops_out_is_stepped_over() {
        let mut cursor = 0;
        let mut pick = |candidates: Candidates| {
            let (position, next) = round_robin(candidates, cursor)?;
            cursor = next;
            Some(position)
        };
        assert_eq!(pick(set(&[1, 2, 3])), Some(1));
        // 2 drops out just as it is next.
        assert_eq!(pick(set(&[1, 3])), Some(3));
        assert_eq!(pick(set(&[1, 3])), Some(1));
        // 2 comes back and takes its turn.
        assert_eq!(pick(set(&[1, 2, 3])), Some(2));
    }

    #[test]
    fn single_candidate_always_wins() {
        for cursor in [0, 1, 2, 99] {
            assert_eq!(round_robin(set(&[42]), cursor).map(|(p, _)| p), Some(42));
        }
    }
}
