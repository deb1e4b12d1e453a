//! The `A..B` seed range (inclusive) and the `K/N` shard of a work list.

use std::fmt;
use std::str::FromStr;

/// Seeds `first..=last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeedRange {
    /// First seed.
    pub first: u64,
    /// Last seed (inclusive).
    pub last: u64,
}

/// Most seeds one command runs: far beyond a day of runs, small enough to list.
pub const SEEDS_MAX: u64 = 1_000_000;

impl SeedRange {
    /// Every seed in order.
    pub fn iter(self) -> impl Iterator<Item = u64> {
        self.first..=self.last
    }

    /// How many seeds.
    pub fn len(self) -> u64 {
        self.last - self.first + 1
    }

    /// Never true: a range holds at least one seed.
    pub fn is_empty(self) -> bool {
        false
    }
}

impl FromStr for SeedRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("seeds `{text}`: expected A..B (inclusive, A <= B), e.g. 1..100");
        let (a, b) = text.split_once("..").ok_or_else(bad)?;
        let first: u64 = a.trim().parse().map_err(|_| bad())?;
        let last: u64 = b.trim().parse().map_err(|_| bad())?;
        if first > last {
            return Err(bad());
        }
        if last - first >= SEEDS_MAX {
            return Err(format!(
                "seeds `{text}`: at most {SEEDS_MAX} seeds in one command"
            ));
        }
        Ok(SeedRange { first, last })
    }
}

impl fmt::Display for SeedRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.first, self.last)
    }
}

/// Shard `index` (1-based) of `count`: every `count`-th item starting at `index - 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// 1 <= index <= count.
    pub index: usize,
    /// How many shards split the work.
    pub count: usize,
}

impl Shard {
    /// Whether the item at `position` in the full work list is this shard's.
    pub fn owns(self, position: usize) -> bool {
        position % self.count == self.index - 1
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("shard `{text}`: expected K/N with 1 <= K <= N, e.g. 2/4");
        let (k, n) = text.split_once('/').ok_or_else(bad)?;
        let index: usize = k.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if index == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_inclusive_and_refuse_nonsense() {
        let r: SeedRange = "3..5".parse().unwrap();
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![3, 4, 5]);
        assert_eq!("7..7".parse::<SeedRange>().unwrap().len(), 1);
        for bad in ["5..3", "1-5", "a..b", "..4", "1..", "0..99999999"] {
            assert!(bad.parse::<SeedRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn shards_split_the_work_exactly_once() {
        let shards: Vec<Shard> = (1..=4).map(|k| format!("{k}/4").parse().unwrap()).collect();
        for position in 0..37 {
            assert_eq!(shards.iter().filter(|s| s.owns(position)).count(), 1);
        }
        for bad in ["0/4", "5/4", "1/0", "x/2", "2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }
}
