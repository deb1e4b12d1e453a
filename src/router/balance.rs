//! Read balancing policies: pure functions from the usable candidates (and a cursor) to one node.
//!
//! Candidates are a bit set of positions in a shard, so filtering by health and by earlier attempts is
//! one `and`, counting them one `popcnt`, and a decision touches no memory besides the cursor.

/// A set of positions (0..64) in a shard's node list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Candidates(pub u64);

impl Candidates {
    /// The set holding `positions`; positions of 64 and above are ignored.
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

    /// The `n`-th smallest position in the set (from 0), if there are more than `n`.
    #[inline]
    pub fn nth(self, n: u32) -> Option<u32> {
        let mut bits = self.0;
        for _ in 0..n {
            bits &= bits.wrapping_sub(1);
        }
        (bits != 0).then(|| bits.trailing_zeros())
    }
}

/// Round robin: the candidate at `cursor` in position order (the first one if `cursor` is past the
/// end), with the cursor of the next decision. Fed back its own cursor, it gives each of n candidates
/// every n-th decision; when the set shrinks under the cursor the rotation restarts at the first
/// candidate, which keeps the decision free of a division.
#[inline]
pub fn round_robin(candidates: Candidates, cursor: usize) -> Option<(u32, usize)> {
    let count = candidates.len() as usize;
    let index = if cursor < count { cursor } else { 0 };
    let position = candidates.nth(index as u32)?;
    Some((position, index + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(positions: &[u32]) -> Candidates {
        Candidates::from_positions(positions.iter().copied())
    }

    /// Runs `decisions` round-robin decisions over `candidates`, feeding each cursor to the next.
    fn rotate(candidates: Candidates, start: usize, decisions: usize) -> Vec<u32> {
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
    fn sets_count_and_index_their_positions() {
        let candidates = set(&[1, 3, 63, 64]);
        assert_eq!(candidates.len(), 3, "64 is out of range");
        assert_eq!(candidates.nth(0), Some(1));
        assert_eq!(candidates.nth(1), Some(3));
        assert_eq!(candidates.nth(2), Some(63));
        assert_eq!(candidates.nth(3), None);
        assert!(set(&[]).is_empty());
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
    fn cursor_past_the_end_restarts_the_rotation() {
        assert_eq!(round_robin(set(&[5, 6]), 2), Some((5, 1)));
        assert_eq!(round_robin(set(&[5, 6]), usize::MAX), Some((5, 1)));
        assert_eq!(rotate(set(&[5, 6]), 9, 3), vec![5, 6, 5]);
    }

    #[test]
    fn shrinking_set_keeps_rotating() {
        // Cursor 2 pointed at the third replica, which then went away.
        assert_eq!(rotate(set(&[1, 2]), 2, 3), vec![1, 2, 1]);
    }

    #[test]
    fn single_candidate_always_wins() {
        for cursor in [0, 1, 2, 99] {
            assert_eq!(round_robin(set(&[42]), cursor).map(|(p, _)| p), Some(42));
        }
    }
}
