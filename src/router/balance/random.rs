//! The `random` policy: every usable replica equally likely.

use super::Candidates;
use super::draw::below;

/// A uniformly random candidate, chosen by `draw` (a uniform 64-bit number).
#[inline]
pub fn random(candidates: Candidates, draw: u64) -> Option<u32> {
    let k = below(draw, u64::from(candidates.len()));
    candidates.nth(u32::try_from(k).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::balance::draw::Draws;

    #[test]
    fn empty_set_gives_nothing() {
        assert_eq!(random(Candidates::default(), 12345), None);
    }

    #[test]
    fn picks_only_candidates_and_each_about_equally() {
        let candidates = Candidates::from_positions([0, 3, 9]);
        let draws = Draws::new(3);
        let mut counts = [0u32; 10];
        for _ in 0..30_000 {
            match random(candidates, draws.next_draw()) {
                Some(position) => counts[position as usize] += 1,
                None => panic!("no pick from a non-empty set"),
            }
        }
        for (position, &count) in counts.iter().enumerate() {
            if matches!(position, 0 | 3 | 9) {
                assert!((9_000..11_000).contains(&count), "{counts:?}");
            } else {
                assert_eq!(count, 0, "{counts:?}");
            }
        }
    }

    #[test]
    fn the_extremes_of_the_draw_pick_the_first_and_last() {
        let candidates = Candidates::from_positions([2, 5, 63]);
        assert_eq!(random(candidates, 0), Some(2));
        assert_eq!(random(candidates, u64::MAX), Some(63));
    }
}
