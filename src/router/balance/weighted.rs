//! The `weighted` policy: a random usable replica, each as likely as its weight says.

use super::Candidates;
use super::draw::below;

/// A random candidate, each chosen with probability `weight(position) / sum of the weights`, by `draw`
/// (a uniform 64-bit number). Candidates of weight 0 are never chosen, unless every weight is 0: then
/// each is equally likely.
#[inline]
pub fn weighted(candidates: Candidates, draw: u64, weight: impl Fn(u32) -> u32) -> Option<u32> {
    let mut total: u64 = 0;
    let mut bits = candidates.0;
    while bits != 0 {
        total += u64::from(weight(bits.trailing_zeros()));
        bits &= bits - 1;
    }
    if total == 0 {
        return super::random::random(candidates, draw);
    }
    let mut target = below(draw, total);
    let mut bits = candidates.0;
    while bits != 0 {
        let position = bits.trailing_zeros();
        bits &= bits - 1;
        let w = u64::from(weight(position));
        if target < w {
            return Some(position);
        }
        target -= w;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::balance::draw::Draws;

    fn shares(candidates: Candidates, weights: [u32; 4], decisions: u32) -> [u32; 4] {
        let draws = Draws::new(11);
        let mut counts = [0u32; 4];
        for _ in 0..decisions {
            match weighted(candidates, draws.next_draw(), |p| weights[p as usize]) {
                Some(position) => counts[position as usize] += 1,
                None => panic!("no pick from a non-empty set"),
            }
        }
        counts
    }

    #[test]
    fn empty_set_gives_nothing() {
        assert_eq!(weighted(Candidates::default(), 1, |_| 1), None);
    }

    #[test]
    fn picks_follow_the_weights() {
        let all = Candidates::from_positions([0, 1, 2, 3]);
        let counts = shares(all, [1, 2, 0, 5], 80_000);
        assert_eq!(counts[2], 0, "weight 0 is never picked: {counts:?}");
        for (position, want) in [(0, 10_000), (1, 20_000), (3, 50_000)] {
            let got = counts[position];
            assert!(got.abs_diff(want) * 20 < want, "{position}: {counts:?}");
        }
    }

    #[test]
    fn weights_of_non_candidates_do_not_count() {
        let some = Candidates::from_positions([1, 3]);
        let counts = shares(some, [100, 1, 100, 3], 40_000);
        assert_eq!((counts[0], counts[2]), (0, 0), "{counts:?}");
        assert!(counts[1].abs_diff(10_000) < 500, "{counts:?}");
    }

    #[test]
    fn all_zero_weights_fall_back_to_uniform() {
        let counts = shares(Candidates::from_positions([0, 1]), [0; 4], 20_000);
        assert!(counts[0].abs_diff(10_000) < 500, "{counts:?}");
    }

    #[test]
    fn the_extremes_of_the_draw_pick_the_first_and_last() {
        let candidates = Candidates::from_positions([4, 6]);
        assert_eq!(weighted(candidates, 0, |_| 3), Some(4));
        assert_eq!(weighted(candidates, u64::MAX, |_| 3), Some(6));
    }
}
