//! Slowness is relative: whether a replica whose request is slow is an outlier among its shard's
//! replicas, and the cap on how many of them passive ejection may take out at once.
//!
//! A request outstanding longer than `slow_request_ejection` says little on its own: a heavy query
//! is slow on every node, and moving it only runs it twice. What sets a broken node apart (a
//! blackhole, a wedged process) is that it answers nothing while its peers (the other replicas, and
//! the writer answering the shard's writes) do. So each shard keeps,
//! per position, the start time of the newest attempt the node answered (a result or a statement
//! error: anything the server said). A slow attempt marks its node an outlier only if the node has
//! answered nothing that started since the attempt did, while another replica has: a younger request
//! overtook it elsewhere. A query slow everywhere never is: on every node, younger requests finish
//! after older ones. A heavy report on a healthy node never is either: the node keeps answering its
//! other requests.
//!
//! The cap ([`ejection_cap`]) is Envoy's `max_ejection_percent`: at most that share of a shard's
//! replicas is out at once for a judgment (slowness, timeouts; default: all but one), so that such
//! judgments never move every replica read onto the primary. A node that says it is down (refuses
//! connections, closes them) is out regardless, as a health check would find, and counts against
//! the cap for the others. An outlier the cap keeps in is checked at once (see `node`): a failed
//! check shows it dead rather than slow, and it leaves past the cap.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

/// Per position of one shard: the start of the newest attempt each node answered.
#[derive(Debug)]
pub struct ShardProgress {
    /// Time zero of the stored microseconds.
    epoch: Instant,
    /// Per position: 0 if the node never answered, else 1 + microseconds from `epoch` to the start
    /// of the newest attempt it answered.
    newest_answered_us: Vec<AtomicU64>,
    /// Positions ejected for passive reasons (failed or outlier requests), bit 0 the primary.
    ejected: AtomicU64,
}

impl ShardProgress {
    /// No answers yet, nothing ejected, for a shard of `positions` nodes.
    pub fn new(positions: usize) -> ShardProgress {
        ShardProgress {
            epoch: Instant::now(),
            newest_answered_us: (0..positions).map(|_| AtomicU64::new(0)).collect(),
            ejected: AtomicU64::new(0),
        }
    }

    fn stamp(&self, started: Instant) -> u64 {
        let micros = started.saturating_duration_since(self.epoch).as_micros();
        u64::try_from(micros)
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    /// The node at `position` answered an attempt that started at `started`.
    pub fn answered(&self, position: u32, started: Instant) {
        if let Some(newest) = self.newest_answered_us.get(position as usize) {
            newest.fetch_max(self.stamp(started), Ordering::Relaxed);
        }
    }

    /// Whether the node at `position` answered an attempt that started at or after `started`.
    pub fn answered_since(&self, position: u32, started: Instant) -> bool {
        self.newest_answered_us
            .get(position as usize)
            .is_some_and(|newest| newest.load(Ordering::Relaxed) >= self.stamp(started))
    }

    /// Whether an attempt on `position` that started at `started` and is still unanswered makes its
    /// node an outlier: the node answered nothing that started since, and one of `peers` (a set of
    /// positions, bit i position i; `position` itself is ignored) did.
    pub fn is_outlier(&self, position: u32, started: Instant, peers: u64) -> bool {
        let peers = peers & !1u64.checked_shl(position).unwrap_or(0);
        let peer_answered = (0..64u32)
            .filter(|&peer| peers & (1u64 << peer) != 0)
            .any(|peer| self.answered_since(peer, started));
        outlier(self.answered_since(position, started), peer_answered)
    }

    /// Takes `position` out for a passive reason if fewer than `cap` positions are out already;
    /// true if it is out now (also when it already was).
    pub fn claim_ejection(&self, position: u32, cap: u32) -> bool {
        let bit = 1u64.checked_shl(position).unwrap_or(0);
        let mut current = self.ejected.load(Ordering::Relaxed);
        loop {
            if current & bit != 0 {
                return true;
            }
            if current.count_ones() >= cap {
                return false;
            }
            match self.ejected.compare_exchange_weak(
                current,
                current | bit,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    /// `position` is back (its ban ended, or it became the writer).
    pub fn release_ejection(&self, position: u32) {
        let bit = 1u64.checked_shl(position).unwrap_or(0);
        self.ejected.fetch_and(!bit, Ordering::AcqRel);
    }

    /// How many positions are out for passive reasons.
    pub fn ejected_count(&self) -> u32 {
        self.ejected.load(Ordering::Relaxed).count_ones()
    }
}

/// The rule itself: a node is an outlier when it has not answered anything as young as the slow
/// request while a peer has.
pub fn outlier(answered_since: bool, peer_answered_since: bool) -> bool {
    !answered_since && peer_answered_since
}

/// How many of a shard's `replicas` passive ejection may keep out at once: `max_ejection_percent`
/// of them (rounded down), or all but one when it is not set.
pub fn ejection_cap(replicas: usize, max_ejection_percent: Option<u32>) -> u32 {
    let replicas = u32::try_from(replicas).unwrap_or(u32::MAX);
    match max_ejection_percent {
        None => replicas.saturating_sub(1),
        Some(percent) => {
            let share = u64::from(replicas) * u64::from(percent.min(100)) / 100;
            u32::try_from(share).unwrap_or(replicas)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn a_silent_node_is_an_outlier_once_a_peer_answers_a_younger_request() {
        let progress = ShardProgress::new(4);
        let t = progress.epoch;
        let replicas = 0b1110;
        // Replica 1 took a request at 100 ms and says nothing; nobody else has answered yet.
        assert!(!progress.is_outlier(1, at(t, 100), replicas));
        // Replica 2 answers a request that started before: no evidence.
        progress.answered(2, at(t, 50));
        assert!(!progress.is_outlier(1, at(t, 100), replicas));
        // Replica 3 answers one that started after: replica 1 is the outlier.
        progress.answered(3, at(t, 150));
        assert!(progress.is_outlier(1, at(t, 100), replicas));
        // Unless replica 1 itself answered something as young.
        progress.answered(1, at(t, 120));
        assert!(!progress.is_outlier(1, at(t, 100), replicas));
        // Peers outside the set (the primary, bit 0) are no evidence.
        let fresh = ShardProgress::new(4);
        fresh.answered(0, at(t, 500));
        assert!(!fresh.is_outlier(1, at(t, 100), replicas));
        assert!(!fresh.is_outlier(1, at(t, 100), 0b0010), "itself");
    }

    #[test]
    fn a_query_slow_everywhere_marks_no_node() {
        // Every node takes 1.5 s; requests start every 100 ms, round robin over three replicas.
        let progress = ShardProgress::new(4);
        let t = progress.epoch;
        let replicas = 0b1110;
        for now_ms in (0..20_000u64).step_by(100) {
            // Answers due by now: requests that started 1.5 s ago or earlier.
            for started_ms in (0..=now_ms.saturating_sub(1500)).step_by(100) {
                let position = 1 + (started_ms / 100 % 3) as u32;
                progress.answered(position, at(t, started_ms));
            }
            // Every outstanding request that is over a second old.
            for started_ms in (now_ms.saturating_sub(1499)..=now_ms.saturating_sub(1000))
                .filter(|ms| ms % 100 == 0 && now_ms >= 1000)
            {
                let position = 1 + (started_ms / 100 % 3) as u32;
                assert!(
                    !progress.is_outlier(position, at(t, started_ms), replicas),
                    "request of {started_ms} ms on replica {position} at {now_ms} ms"
                );
            }
        }
    }

    #[test]
    fn the_cap_keeps_passive_ejections_below_the_share() {
        assert_eq!(ejection_cap(3, None), 2, "all but one");
        assert_eq!(ejection_cap(1, None), 0);
        assert_eq!(ejection_cap(0, None), 0);
        assert_eq!(ejection_cap(3, Some(100)), 3);
        assert_eq!(ejection_cap(3, Some(50)), 1);
        assert_eq!(ejection_cap(10, Some(10)), 1);
        assert_eq!(ejection_cap(3, Some(500)), 3, "more than all is all");
        let progress = ShardProgress::new(4);
        assert!(progress.claim_ejection(1, 2));
        assert!(progress.claim_ejection(1, 2), "already out");
        assert!(progress.claim_ejection(2, 2));
        assert!(!progress.claim_ejection(3, 2), "at the cap");
        assert_eq!(progress.ejected_count(), 2);
        progress.release_ejection(1);
        assert!(progress.claim_ejection(3, 2));
        assert!(!progress.claim_ejection(1, 2));
    }
}
