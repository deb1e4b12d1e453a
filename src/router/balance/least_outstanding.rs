//! The `least_outstanding` policy: the usable replica with the fewest requests in flight.

use super::Candidates;

/// The candidate with the fewest requests in flight (`in_flight(position)`). Ties go to the first in
/// rotation order from `start`: with a fresh `start` per decision, idle replicas share the load instead
/// of the lowest position taking every read.
#[inline]
pub fn least_outstanding(
    candidates: Candidates,
    start: u32,
    in_flight: impl Fn(u32) -> u64,
) -> Option<u32> {
    let from_start = u64::MAX.checked_shl(start).unwrap_or(0);
    let mut best: Option<(u64, u32)> = None;
    // Positions at or after `start` first, then the ones before it.
    for half in [candidates.0 & from_start, candidates.0 & !from_start] {
        let mut bits = half;
        while bits != 0 {
            let position = bits.trailing_zeros();
            bits &= bits - 1;
            let load = in_flight(position);
            if best.is_none_or(|(least, _)| load < least) {
                best = Some((load, position));
            }
        }
    }
    best.map(|(_, position)| position)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(positions: &[u32]) -> Candidates {
        Candidates::from_positions(positions.iter().copied())
    }

    #[test]
    fn empty_set_gives_nothing() {
        assert_eq!(least_outstanding(Candidates::default(), 0, |_| 0), None);
    }

    #[test]
    fn the_least_loaded_candidate_wins() {
        let loads = [9, 4, 7, 1, 0];
        let load = |p: u32| loads[p as usize];
        assert_eq!(least_outstanding(set(&[0, 1, 2, 3]), 0, load), Some(3));
        assert_eq!(
            least_outstanding(set(&[0, 1, 2]), 2, load),
            Some(1),
            "the start does not beat a lower load"
        );
        assert_eq!(least_outstanding(set(&[0, 1, 2, 3, 4]), 0, load), Some(4));
    }

    #[test]
    fn ties_go_to_the_first_from_the_start() {
        let idle = |_| 0;
        let candidates = set(&[1, 2, 4]);
        assert_eq!(least_outstanding(candidates, 0, idle), Some(1));
        assert_eq!(least_outstanding(candidates, 2, idle), Some(2));
        assert_eq!(least_outstanding(candidates, 3, idle), Some(4));
        assert_eq!(
            least_outstanding(candidates, 5, idle),
            Some(1),
            "wraps around"
        );
        assert_eq!(least_outstanding(candidates, 64, idle), Some(1));
    }
}
