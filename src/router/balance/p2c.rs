//! The `p2c_ewma` policy: the power of two choices over a load made of latency and requests in flight.
//!
//! Two distinct usable replicas are drawn at random and the cheaper one wins. Comparing two instead of
//! all keeps a decision O(1) and keeps a replica that looks best from taking every read at once.

use super::Candidates;
use super::draw::below;

/// The cost charged for each request in flight to a node that has no latency yet: it takes one
/// request at a time until its first answer says how fast it is.
pub const UNKNOWN_LATENCY_COST_US: f64 = 250_000.0;

/// The load of a node: its latency (EWMA, microseconds) times the requests it would have in flight
/// with this one. A node without latency yet costs nothing while idle and
/// [`UNKNOWN_LATENCY_COST_US`] per request in flight otherwise.
#[inline]
pub fn load_cost(latency_us: f64, in_flight: u64) -> f64 {
    let pending = in_flight as f64;
    if latency_us < 1.0 {
        return if in_flight == 0 {
            latency_us
        } else {
            UNKNOWN_LATENCY_COST_US + pending
        };
    }
    latency_us * (pending + 1.0)
}

/// The cheaper (by `cost(position)`) of two distinct candidates drawn with `draw`; ties go to the
/// first drawn. A single candidate is picked without a cost.
#[inline]
pub fn p2c(candidates: Candidates, draw: u64, cost: impl Fn(u32) -> f64) -> Option<u32> {
    let n = u64::from(candidates.len());
    if n <= 1 {
        return candidates.nth(0);
    }
    // Two independent halves of the draw: the high bits of each product pick the index.
    let first = below(draw, n);
    let mut second = below(draw.rotate_left(32), n - 1);
    if second >= first {
        second += 1;
    }
    let a = candidates.nth(u32::try_from(first).ok()?)?;
    let b = candidates.nth(u32::try_from(second).ok()?)?;
    Some(if cost(a) <= cost(b) { a } else { b })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::balance::draw::Draws;

    fn picks(candidates: Candidates, costs: [f64; 4], decisions: u32) -> [u32; 4] {
        let draws = Draws::new(5);
        let mut counts = [0u32; 4];
        for _ in 0..decisions {
            match p2c(candidates, draws.next_draw(), |p| costs[p as usize]) {
                Some(position) => counts[position as usize] += 1,
                None => panic!("no pick from a non-empty set"),
            }
        }
        counts
    }

    #[test]
    fn empty_and_single_sets() {
        assert_eq!(p2c(Candidates::default(), 9, |_| 0.0), None);
        let one = Candidates::from_positions([3]);
        assert_eq!(p2c(one, 9, |_| f64::MAX), Some(3));
    }

    #[test]
    fn the_two_drawn_are_distinct_so_the_costliest_never_wins() {
        let all = Candidates::from_positions([0, 1, 2]);
        let counts = picks(all, [1.0, 1.0, 20.0, 0.0], 30_000);
        assert_eq!(counts[2], 0, "{counts:?}");
        assert_eq!(counts[3], 0, "not a candidate: {counts:?}");
        // Equal costs: the first drawn wins, so the two cheap ones share evenly.
        assert!(counts[0].abs_diff(15_000) < 750, "{counts:?}");
    }

    #[test]
    fn the_cheapest_wins_every_pair_it_is_in() {
        let all = Candidates::from_positions([0, 1, 2, 3]);
        let counts = picks(all, [5.0, 1.0, 9.0, 7.0], 60_000);
        // Position 1 is in half of the pairs of 4 (3 of 6).
        assert!(counts[1].abs_diff(30_000) < 1_000, "{counts:?}");
        // Position 2, the costliest, never wins.
        assert_eq!(counts[2], 0, "{counts:?}");
        // Position 0 wins its pairs with 2 and 3: 2 of 6.
        assert!(counts[0].abs_diff(20_000) < 1_000, "{counts:?}");
    }

    #[test]
    fn load_grows_with_latency_and_requests_in_flight() {
        assert_eq!(load_cost(3_000.0, 0), 3_000.0);
        assert_eq!(load_cost(3_000.0, 3), 12_000.0);
        assert!(load_cost(3_000.0, 6) > load_cost(20_000.0, 0));
        assert!(load_cost(3_000.0, 5) < load_cost(20_000.0, 0));
        assert_eq!(load_cost(0.0, 0), 0.0, "an idle unknown node is tried");
        assert!(
            load_cost(0.0, 1) > load_cost(20_000.0, 3),
            "one request at a time"
        );
    }
}
