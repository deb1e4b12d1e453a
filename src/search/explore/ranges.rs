//! Uniform draws from the closed ranges of `[explore]`, rounded to values a scenario file shows
//! plainly (whole milliseconds, two decimals) whenever the rounded value stays inside the range.

use std::time::Duration;

use rand::Rng;

use crate::scenario::DurationRange;

/// A duration in `[min, max]`: whole milliseconds when both bounds are, else whole microseconds.
pub fn duration_in(rng: &mut impl Rng, (min, max): DurationRange) -> Duration {
    if min >= max {
        return min;
    }
    let whole_ms = |d: Duration| d.as_nanos().is_multiple_of(1_000_000);
    let to_u64 = |n: u128| u64::try_from(n).unwrap_or(u64::MAX);
    if whole_ms(min) && whole_ms(max) {
        let ms = rng.random_range(to_u64(min.as_millis())..=to_u64(max.as_millis()));
        Duration::from_millis(ms)
    } else {
        let us = rng.random_range(to_u64(min.as_micros())..=to_u64(max.as_micros()));
        Duration::from_micros(us).clamp(min, max)
    }
}

/// A whole number in `[min, max]`.
pub fn whole_in(rng: &mut impl Rng, (min, max): (u32, u32)) -> u32 {
    if min >= max {
        return min;
    }
    rng.random_range(min..=max)
}

/// A number in `[min, max]`, rounded to a multiple of `step` when that stays inside the range.
pub fn number_in(rng: &mut impl Rng, (min, max): (f64, f64), step: f64) -> f64 {
    if min >= max {
        return min;
    }
    let drawn = rng.random_range(min..=max);
    let rounded = (drawn / step).round() * step;
    // `0.1 * 7` is `0.7000000000000001`: going through the shortest decimal text keeps files tidy.
    let tidy = format!("{rounded:.6}").parse::<f64>().unwrap_or(rounded);
    if (min..=max).contains(&tidy) {
        tidy
    } else {
        drawn
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn draws_stay_inside_their_ranges_and_are_rounded() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let range = (Duration::from_millis(5), Duration::from_millis(9));
        for _ in 0..200 {
            let d = duration_in(&mut rng, range);
            assert!(d >= range.0 && d <= range.1, "{d:?}");
            assert_eq!(d.subsec_nanos() % 1_000_000, 0, "{d:?}");
            let x = number_in(&mut rng, (0.25, 0.75), 0.01);
            assert!((0.25..=0.75).contains(&x), "{x}");
            assert!(format!("{x}").len() <= 4, "{x}");
            let n = whole_in(&mut rng, (3, 4));
            assert!((3..=4).contains(&n));
        }
        let narrow = (Duration::from_micros(100), Duration::from_micros(300));
        let d = duration_in(&mut rng, narrow);
        assert!(d >= narrow.0 && d <= narrow.1, "{d:?}");
        assert_eq!(number_in(&mut rng, (2.0, 2.0), 0.1), 2.0);
    }
}
