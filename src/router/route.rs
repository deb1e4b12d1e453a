//! The routing decision: which node serves a read or a write for an org. No I/O, no locks, no
//! allocation, so it is cheap enough for every statement and benchmarked on its own.

use std::ops::Range;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::router::balance::draw::Draws;
use crate::router::balance::{self, Candidates};
use crate::router::outlier::ShardProgress;
use crate::router::promotion::ShardRoles;

/// Index of a node in the router's node list (topology order: per shard, primary then replicas).
pub type NodeIdx = usize;

/// The role of the node that served a request. Not `#[non_exhaustive]`, unlike the crate's other
/// public enums: a PostgreSQL server either takes writes or is in recovery, so applications may
/// match on it exhaustively.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServedRole {
    /// The shard's primary.
    Primary,
    /// One of the shard's replicas.
    Replica,
}

/// A routing decision: the node to try and the role it plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Choice {
    /// The node to send the statement to.
    pub node: NodeIdx,
    /// Its role in the shard.
    pub role: ServedRole,
    /// Its position in the shard (0 the primary, 1 + i replica i).
    pub position: u32,
}

/// Most replicas in one shard: positions (primary and replicas) must fit a 64-bit set.
pub const REPLICAS_PER_SHARD_MAX: usize = 63;

/// Position of a shard's configured primary; replica i is at 1 + i.
pub const PRIMARY_POSITION: u32 = 0;

/// The writer position while a shard has no known primary.
const NO_WRITER: u32 = u32::MAX;

/// One shard as the decision sees it.
#[derive(Debug)]
pub struct ShardRoute {
    /// Shard name.
    pub name: String,
    /// Half-open org-id range it serves.
    pub orgs: Range<i64>,
    /// Its configured primary (the writer until a promotion is seen).
    pub primary: NodeIdx,
    /// Its replicas, in topology order.
    pub replicas: Vec<NodeIdx>,
    /// Positions of the nodes that may take work (bit 0 the primary, bit 1 + i replica i).
    usable: AtomicU64,
    /// Positions not kept out of reads for lagging (see `lag`); the primary's bit is always set.
    fresh: AtomicU64,
    /// Round-robin cursor: the replica index the next read starts looking from.
    next_replica: AtomicU32,
    /// Random draws of the balancing policies that use them; the router seeds them.
    pub draws: Draws,
    /// Position of the node that takes writes and primary reads ([`NO_WRITER`]: none known). Set by
    /// `promotion`; the configured primary's position until a promotion is seen.
    writer: AtomicU32,
    /// Positions that take no work: former writers still out of recovery (see `promotion`).
    retired: AtomicU64,
    /// What the health checks told about the shard's roles, behind `writer` and `retired`.
    pub roles: ShardRoles,
    /// Which nodes answer, and which are out for passive reasons (see `outlier`).
    pub progress: ShardProgress,
}

impl ShardRoute {
    /// A shard route with every node usable and the rotation at its first replica.
    pub fn new(
        name: String,
        orgs: Range<i64>,
        primary: NodeIdx,
        replicas: Vec<NodeIdx>,
    ) -> ShardRoute {
        let all = ShardRoute::positions(replicas.len());
        let progress = ShardProgress::new(replicas.len() + 1);
        ShardRoute {
            name,
            orgs,
            primary,
            replicas,
            usable: AtomicU64::new(all),
            fresh: AtomicU64::new(all),
            next_replica: AtomicU32::new(0),
            draws: Draws::default(),
            writer: AtomicU32::new(PRIMARY_POSITION),
            retired: AtomicU64::new(0),
            roles: ShardRoles::new(),
            progress,
        }
    }

    /// The position of the node that takes writes now; `None` while no primary is known.
    pub fn writer_position(&self) -> Option<u32> {
        let writer = self.writer.load(Ordering::Relaxed);
        (writer != NO_WRITER).then_some(writer)
    }

    /// The node at `position` (0 the configured primary, 1 + i replica i).
    pub fn node_at(&self, position: u32) -> Option<NodeIdx> {
        match position.checked_sub(1) {
            None => Some(self.primary),
            Some(index) => self.replicas.get(index as usize).copied(),
        }
    }

    /// Publishes the writer and the retired positions (see `promotion`).
    pub(crate) fn publish_roles(&self, writer: Option<u32>, retired: u64) {
        self.retired.store(retired, Ordering::Relaxed);
        self.writer
            .store(writer.unwrap_or(NO_WRITER), Ordering::Relaxed);
    }

    /// The writer as a routing choice, if it is usable and in `eligible`.
    #[inline]
    fn writer_choice(&self, eligible: u64) -> Option<Choice> {
        let position = self.writer.load(Ordering::Relaxed);
        if eligible & 1u64.checked_shl(position).unwrap_or(0) == 0 {
            return None;
        }
        Some(Choice {
            node: self.node_at(position)?,
            role: ServedRole::Primary,
            position,
        })
    }

    /// Positions that serve replica reads (usable or not): neither the writer nor retired.
    pub fn replica_positions(&self) -> u64 {
        ShardRoute::positions(self.replicas.len()) & !self.not_replicas()
    }

    /// Positions that never serve replica reads: the writer and the retired nodes.
    #[inline]
    fn not_replicas(&self) -> u64 {
        let writer = 1u64
            .checked_shl(self.writer.load(Ordering::Relaxed))
            .unwrap_or(0);
        writer | self.retired.load(Ordering::Relaxed)
    }

    /// The set of every position of a shard with `replicas` replicas.
    fn positions(replicas: usize) -> u64 {
        let nodes = u32::try_from(replicas + 1).unwrap_or(u32::MAX);
        1u64.checked_shl(nodes).map_or(u64::MAX, |bit| bit - 1)
    }

    /// Lets work go to the node at `position`, or stops it. Positions past the shard's nodes are
    /// ignored.
    pub fn set_usable(&self, position: u32, usable: bool) {
        let bit =
            1u64.checked_shl(position).unwrap_or(0) & ShardRoute::positions(self.replicas.len());
        if usable {
            self.usable.fetch_or(bit, Ordering::Relaxed);
        } else {
            self.usable.fetch_and(!bit, Ordering::Relaxed);
        }
    }

    /// Whether work may go to the node at `position`.
    pub fn is_usable(&self, position: u32) -> bool {
        let bit = 1u64.checked_shl(position).unwrap_or(0);
        self.usable.load(Ordering::Relaxed) & bit != 0
    }

    /// Lets reads go to the replica at `position` (it is within `max_replica_lag`), or keeps them off
    /// it. The primary and positions past the shard's nodes are ignored.
    pub fn set_fresh(&self, position: u32, fresh: bool) {
        let bit = 1u64.checked_shl(position).unwrap_or(0)
            & ShardRoute::positions(self.replicas.len())
            & !1;
        if fresh {
            self.fresh.fetch_or(bit, Ordering::Relaxed);
        } else {
            self.fresh.fetch_and(!bit, Ordering::Relaxed);
        }
    }

    /// Whether reads may go to the node at `position` as far as its lag goes.
    pub fn is_fresh(&self, position: u32) -> bool {
        let bit = 1u64.checked_shl(position).unwrap_or(0);
        self.fresh.load(Ordering::Relaxed) & bit != 0
    }

    /// Positions that may take work.
    #[inline]
    fn usable(&self) -> u64 {
        self.usable.load(Ordering::Relaxed)
    }

    /// Positions a read may use: usable, and for replicas fresh.
    #[inline]
    fn readable(&self) -> u64 {
        self.usable.load(Ordering::Relaxed) & self.fresh.load(Ordering::Relaxed)
    }

    /// The position of `node` in this shard.
    pub fn position_of(&self, node: NodeIdx) -> Option<u32> {
        if node == self.primary {
            return Some(PRIMARY_POSITION);
        }
        let index = self.replicas.iter().position(|&replica| replica == node)?;
        u32::try_from(index + 1).ok()
    }

    /// Runs one round-robin decision over `candidates` (replica indexes). The cursor is read and
    /// written with a plain load and store instead of a locked read-modify-write: two racing reads may
    /// pick the same replica, which only skews the rotation by one, and the hot path stays cheap.
    #[inline]
    fn rotate(&self, candidates: Candidates) -> Option<u32> {
        let cursor = self.next_replica.load(Ordering::Relaxed);
        let (index, next) = balance::round_robin(candidates, cursor)?;
        self.next_replica.store(next, Ordering::Relaxed);
        Some(index)
    }
}

/// Up to this many shards, a lookup scans the ranges instead of bisecting them.
const LINEAR_SCAN_MAX: usize = 16;

/// Every shard, sorted by the start of its org range, with ranges known not to overlap.
#[derive(Debug)]
pub struct RouteTable {
    shards: Vec<ShardRoute>,
    /// `shards[i].orgs.start` and `.end`, packed apart so a lookup touches one or two cache lines.
    starts: Vec<i64>,
    ends: Vec<i64>,
}

impl RouteTable {
    /// A table over `shards`; fails with a message if a range is empty, two ranges overlap, or a shard
    /// has more than [`REPLICAS_PER_SHARD_MAX`] replicas.
    pub fn new(mut shards: Vec<ShardRoute>) -> Result<RouteTable, String> {
        for shard in &shards {
            if shard.orgs.start >= shard.orgs.end {
                return Err(format!(
                    "shard {} has an empty org range [{}, {})",
                    shard.name, shard.orgs.start, shard.orgs.end
                ));
            }
            if shard.replicas.len() > REPLICAS_PER_SHARD_MAX {
                return Err(format!(
                    "shard {} has {} replicas; at most {REPLICAS_PER_SHARD_MAX} are supported",
                    shard.name,
                    shard.replicas.len()
                ));
            }
        }
        shards.sort_by_key(|shard| shard.orgs.start);
        for pair in shards.windows(2) {
            if pair[0].orgs.end > pair[1].orgs.start {
                return Err(format!(
                    "shards {} [{}, {}) and {} [{}, {}) overlap",
                    pair[0].name,
                    pair[0].orgs.start,
                    pair[0].orgs.end,
                    pair[1].name,
                    pair[1].orgs.start,
                    pair[1].orgs.end
                ));
            }
        }
        let starts = shards.iter().map(|shard| shard.orgs.start).collect();
        let ends = shards.iter().map(|shard| shard.orgs.end).collect();
        Ok(RouteTable {
            shards,
            starts,
            ends,
        })
    }

    /// The shard whose range contains `org`.
    #[inline]
    pub fn shard_for(&self, org: i64) -> Option<&ShardRoute> {
        // Shards starting at or before `org`: a branch-free count for the usual handful of shards, a
        // binary search for many.
        let before = if self.starts.len() <= LINEAR_SCAN_MAX {
            self.starts.iter().filter(|&&start| start <= org).count()
        } else {
            self.starts.partition_point(|&start| start <= org)
        };
        let index = before.checked_sub(1)?;
        if org < *self.ends.get(index)? {
            self.shards.get(index)
        } else {
            None
        }
    }

    /// Every shard, by org range.
    pub fn shards(&self) -> &[ShardRoute] {
        &self.shards
    }

    /// The shard (index in [`RouteTable::shards`]) and position of `node`.
    pub fn locate(&self, node: NodeIdx) -> Option<(usize, u32)> {
        self.shards
            .iter()
            .enumerate()
            .find_map(|(index, shard)| Some((index, shard.position_of(node)?)))
    }
}

/// The positions of a shard one request has already tried, and those it may use at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tried {
    tried: u64,
    allowed: u64,
}

impl Default for Tried {
    /// Nothing tried, every position allowed.
    fn default() -> Tried {
        Tried {
            tried: 0,
            allowed: u64::MAX,
        }
    }
}

impl Tried {
    /// Restricts the request to `positions` (bit 0 the primary, bit 1 + i replica i), e.g. the
    /// replicas known to have applied a session's writes.
    pub fn restricted_to(mut self, positions: u64) -> Tried {
        self.allowed &= positions;
        self
    }

    /// Positions the request may still try (bit 0 the primary, bit 1 + i replica i).
    #[inline]
    pub fn open(self) -> u64 {
        self.allowed & !self.tried
    }

    /// Records an attempt on `choice`.
    pub fn add(&mut self, choice: Choice) {
        self.tried |= 1u64.checked_shl(choice.position).unwrap_or(0);
    }

    /// How many nodes were tried.
    pub fn count(self) -> u32 {
        self.tried.count_ones()
    }

    /// Whether the node at `position` was tried.
    pub fn contains(self, position: u32) -> bool {
        self.tried & 1u64.checked_shl(position).unwrap_or(0) != 0
    }
}

/// Chooses the node for one read attempt in `shard`.
///
/// With `prefer_replica`, the next usable replica in round-robin order; otherwise, or when no replica
/// is usable, the primary (the shard's writer) if it is usable. Nodes in `tried` (earlier attempts of
/// the same read) are skipped. A promoted replica serves as the primary, never as a replica, and
/// retired nodes serve nothing; the configured primary's position never serves replica reads.
/// `None` means no node may serve the read.
#[inline]
pub fn choose_read_node(shard: &ShardRoute, prefer_replica: bool, tried: Tried) -> Option<Choice> {
    choose_read_node_by(shard, prefer_replica, tried, |replicas| {
        shard.rotate(replicas)
    })
}

/// [`choose_read_node`] with the replica picked by `pick`, a balancing policy over the eligible
/// replica indexes (bit i is replica i), instead of round robin.
#[inline]
pub fn choose_read_node_by(
    shard: &ShardRoute,
    prefer_replica: bool,
    tried: Tried,
    pick: impl FnOnce(Candidates) -> Option<u32>,
) -> Option<Choice> {
    let open = tried.open();
    let eligible = shard.readable() & open;
    if prefer_replica {
        // Replica i sits at bit 1 + i; shifted down, bit i is replica i.
        let replicas = Candidates((eligible & !shard.not_replicas()) >> 1);
        let picked =
            pick(replicas).and_then(|index| Some((index, *shard.replicas.get(index as usize)?)));
        if let Some((index, node)) = picked {
            return Some(Choice {
                node,
                role: ServedRole::Replica,
                position: index + 1,
            });
        }
    }
    // Lag never keeps a read off the writer: a promoted replica may still be marked as lagging.
    shard.writer_choice(shard.usable() & open)
}

/// Whether some node outside `tried` could serve a read in `shard` now: what
/// [`choose_read_node`] would find, without moving the rotation.
#[inline]
pub fn can_read_elsewhere(shard: &ShardRoute, prefer_replica: bool, tried: Tried) -> bool {
    let open = tried.open();
    let eligible = shard.readable() & open;
    (prefer_replica && (eligible & !shard.not_replicas()) >> 1 != 0)
        || shard.writer_choice(shard.usable() & open).is_some()
}

/// Whether a replica read in `shard` that already `tried` some nodes passes over a usable replica
/// because it lags (what [`crate::router::route_reason::RouteReason::LagExclusion`] counts).
#[inline]
pub fn skips_lagging(shard: &ShardRoute, tried: Tried) -> bool {
    let lagging = shard.usable() & !shard.fresh.load(Ordering::Relaxed) & !shard.not_replicas();
    lagging & tried.open() != 0
}

/// Chooses the node for a write in `shard`: its writer (the primary the router follows), if one is
/// known and usable. Never any other node.
#[inline]
pub fn choose_write_node(shard: &ShardRoute) -> Option<Choice> {
    shard.writer_choice(shard.usable.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three shards of one primary and three replicas each; node ids 0..12 in topology order.
    fn table() -> RouteTable {
        let shard = |i: usize, orgs: Range<i64>| {
            let base = i * 4;
            ShardRoute::new(
                format!("s{i}"),
                orgs,
                base,
                vec![base + 1, base + 2, base + 3],
            )
        };
        // Given out of order on purpose: the table sorts by range.
        let built = RouteTable::new(vec![
            shard(2, 200..300),
            shard(0, 0..100),
            shard(1, 100..200),
        ]);
        match built {
            Ok(table) => table,
            Err(message) => panic!("valid table refused: {message}"),
        }
    }

    #[test]
    fn orgs_find_their_shard() {
        let table = table();
        let name = |org| table.shard_for(org).map(|s| s.name.as_str());
        assert_eq!(name(0), Some("s0"));
        assert_eq!(name(99), Some("s0"));
        assert_eq!(name(100), Some("s1"));
        assert_eq!(name(250), Some("s2"));
        assert_eq!(name(299), Some("s2"));
        assert_eq!(name(300), None, "ranges are half-open");
        assert_eq!(name(-1), None);
        assert_eq!(name(i64::MIN), None);
        assert_eq!(name(i64::MAX), None);
    }

    #[test]
    fn gaps_between_shards_match_nothing() {
        let built = RouteTable::new(vec![
            ShardRoute::new("a".into(), 0..10, 0, vec![]),
            ShardRoute::new("b".into(), 20..30, 1, vec![]),
        ]);
        let Ok(table) = built else {
            panic!("disjoint ranges refused");
        };
        assert!(table.shard_for(15).is_none());
        assert_eq!(table.shard_for(20).map(|s| s.primary), Some(1));
    }

    #[test]
    fn overlapping_or_empty_ranges_are_refused() {
        let overlap = RouteTable::new(vec![
            ShardRoute::new("a".into(), 0..10, 0, vec![]),
            ShardRoute::new("b".into(), 9..30, 1, vec![]),
        ]);
        assert!(matches!(overlap, Err(m) if m.contains("overlap")));
        let empty = RouteTable::new(vec![ShardRoute::new("a".into(), 5..5, 0, vec![])]);
        assert!(matches!(empty, Err(m) if m.contains("empty")));
    }

    /// The shard of `org` in `table`, or a test failure.
    fn shard_of(table: &RouteTable, org: i64) -> &ShardRoute {
        match table.shard_for(org) {
            Some(shard) => shard,
            None => panic!("org {org} has no shard"),
        }
    }

    fn tried(choices: &[Choice]) -> Tried {
        let mut tried = Tried::default();
        for choice in choices {
            tried.add(*choice);
        }
        tried
    }

    fn replica(node: NodeIdx, position: u32) -> Choice {
        Choice {
            node,
            role: ServedRole::Replica,
            position,
        }
    }

    fn primary(node: NodeIdx) -> Choice {
        Choice {
            node,
            role: ServedRole::Primary,
            position: PRIMARY_POSITION,
        }
    }

    #[test]
    fn replica_reads_rotate_over_usable_replicas() {
        let table = table();
        let shard = shard_of(&table, 150);
        let all: Vec<_> = (0..4)
            .filter_map(|_| choose_read_node(shard, true, Tried::default()))
            .map(|choice| choice.node)
            .collect();
        assert_eq!(all, vec![5, 6, 7, 5]);
        shard.set_usable(2, false);
        let without_6: Vec<_> = (0..4)
            .filter_map(|_| choose_read_node(shard, true, Tried::default()))
            .map(|choice| choice.node)
            .collect();
        assert_eq!(without_6, vec![7, 5, 7, 5]);
        assert!(!shard.is_usable(2));
        shard.set_usable(2, true);
        assert!(shard.is_usable(2));
    }

    #[test]
    fn reads_fall_back_to_the_primary() {
        let table = table();
        let shard = shard_of(&table, 0);
        let none = Tried::default();
        assert_eq!(
            choose_read_node(shard, false, none),
            Some(primary(0)),
            "primary asked for"
        );
        let all_replicas = tried(&[replica(1, 1), replica(2, 2), replica(3, 3)]);
        assert_eq!(
            choose_read_node(shard, true, all_replicas),
            Some(primary(0)),
            "all tried"
        );
        for position in 1..=3 {
            shard.set_usable(position, false);
        }
        assert_eq!(
            choose_read_node(shard, true, none),
            Some(primary(0)),
            "no usable replica"
        );
        shard.set_usable(PRIMARY_POSITION, false);
        assert_eq!(choose_read_node(shard, true, none), None, "nothing usable");
        shard.set_usable(1, true);
        assert_eq!(
            choose_read_node(shard, false, none),
            None,
            "primary-only read"
        );
        assert_eq!(choose_read_node(shard, true, none), Some(replica(1, 1)));
    }

    #[test]
    fn retries_skip_tried_nodes() {
        let table = table();
        let shard = shard_of(&table, 0);
        let after_2 = tried(&[replica(2, 2)]);
        for _ in 0..6 {
            let choice = choose_read_node(shard, true, after_2);
            assert!(
                matches!(choice, Some(Choice { node: 1 | 3, .. })),
                "{choice:?}"
            );
        }
        let after_primary = tried(&[primary(0)]);
        assert_eq!(choose_read_node(shard, false, after_primary), None);
        assert_eq!(
            (after_2.count(), after_2.contains(2), after_2.contains(1)),
            (1, true, false)
        );
    }

    #[test]
    fn a_read_can_go_elsewhere_while_an_untried_usable_node_is_left() {
        let table = table();
        let shard = shard_of(&table, 0);
        let on_1 = tried(&[replica(1, 1)]);
        assert!(can_read_elsewhere(shard, true, on_1));
        let cursor = shard.next_replica.load(Ordering::Relaxed);
        let all_replicas = tried(&[replica(1, 1), replica(2, 2), replica(3, 3)]);
        assert!(can_read_elsewhere(shard, true, all_replicas), "the primary");
        assert_eq!(
            shard.next_replica.load(Ordering::Relaxed),
            cursor,
            "the rotation did not move"
        );
        shard.set_usable(PRIMARY_POSITION, false);
        assert!(!can_read_elsewhere(shard, true, all_replicas));
        assert!(
            !can_read_elsewhere(shard, false, on_1),
            "a primary-only read may not use replica 2 or 3"
        );
        shard.set_usable(3, false);
        shard.set_usable(2, false);
        assert!(!can_read_elsewhere(shard, true, on_1));
        assert!(can_read_elsewhere(shard, true, Tried::default()));
    }

    #[test]
    fn writes_go_to_the_primary_only() {
        let table = table();
        let shard = shard_of(&table, 210);
        assert_eq!(choose_write_node(shard), Some(primary(8)));
        shard.set_usable(PRIMARY_POSITION, false);
        assert_eq!(choose_write_node(shard), None);
    }

    #[test]
    fn a_promoted_replica_takes_writes_and_primary_reads_but_no_replica_reads() {
        let table = table();
        let shard = shard_of(&table, 0);
        shard.publish_roles(Some(2), 0b0001);
        assert_eq!(
            choose_write_node(shard),
            Some(Choice {
                node: 2,
                role: ServedRole::Primary,
                position: 2
            })
        );
        let none = Tried::default();
        assert_eq!(
            choose_read_node(shard, false, none).map(|c| c.node),
            Some(2)
        );
        let reads: Vec<_> = (0..4)
            .filter_map(|_| choose_read_node(shard, true, none))
            .map(|choice| choice.node)
            .collect();
        assert_eq!(reads, vec![1, 3, 1, 3]);
        let replicas = tried(&[replica(1, 1), replica(3, 3)]);
        assert_eq!(
            choose_read_node(shard, true, replicas).map(|c| (c.node, c.role)),
            Some((2, ServedRole::Primary)),
            "the fallback is the new primary"
        );
        shard.set_usable(2, false);
        assert_eq!(choose_write_node(shard), None, "no write goes elsewhere");
        assert!(!can_read_elsewhere(shard, true, replicas));
        shard.set_usable(2, true);
        shard.publish_roles(None, 0b0001);
        assert_eq!(choose_write_node(shard), None, "no primary known");
        assert_eq!(shard.writer_position(), None);
        assert_eq!(choose_read_node(shard, false, none), None);
        // Retired replica 3 (a former writer) serves nothing.
        shard.publish_roles(Some(0), 0b1000);
        let reads: Vec<_> = (0..3)
            .filter_map(|_| choose_read_node(shard, true, none))
            .map(|choice| choice.node)
            .collect();
        assert!(!reads.contains(&3) && !reads.is_empty(), "{reads:?}");
    }

    #[test]
    fn nodes_are_located_by_index() {
        let table = table();
        assert_eq!(table.locate(0), Some((0, 0)));
        assert_eq!(table.locate(7), Some((1, 3)));
        assert_eq!(table.locate(8), Some((2, 0)));
        assert_eq!(table.locate(12), None);
    }

    #[test]
    fn only_existing_positions_are_usable() {
        let shard = ShardRoute::new("s".into(), 0..10, 0, vec![1, 2]);
        assert!(shard.is_usable(2) && !shard.is_usable(3));
        shard.set_usable(3, true);
        assert!(!shard.is_usable(3), "no node at position 3");
        let picks: Vec<_> = (0..4)
            .filter_map(|_| choose_read_node(&shard, true, Tried::default()))
            .map(|choice| choice.node)
            .collect();
        assert_eq!(picks, vec![1, 2, 1, 2]);
        let full = ShardRoute::new(
            "full".into(),
            0..10,
            0,
            (1..=REPLICAS_PER_SHARD_MAX).collect(),
        );
        assert!(full.is_usable(63));
    }

    #[test]
    fn lagging_replicas_are_left_out_of_reads_until_fresh() {
        let table = table();
        let shard = shard_of(&table, 0);
        let none = Tried::default();
        shard.set_fresh(2, false);
        assert!(skips_lagging(shard, none));
        let picks: Vec<_> = (0..4)
            .filter_map(|_| choose_read_node(shard, true, none))
            .map(|choice| choice.node)
            .collect();
        assert_eq!(picks, vec![1, 3, 1, 3], "replica 2 skipped");
        assert!(
            shard.is_usable(2) && !shard.is_fresh(2),
            "lag is not health"
        );
        shard.set_fresh(1, false);
        shard.set_fresh(3, false);
        assert_eq!(choose_read_node(shard, true, none), Some(primary(0)));
        assert!(can_read_elsewhere(shard, true, none), "the primary is left");
        shard.set_fresh(PRIMARY_POSITION, false);
        assert!(shard.is_fresh(PRIMARY_POSITION), "the primary never lags");
        shard.set_usable(2, false);
        assert!(
            !skips_lagging(shard, tried(&[replica(1, 1), replica(3, 3)])),
            "2 is out anyway"
        );
        for position in 1..=3 {
            shard.set_fresh(position, true);
        }
        assert!(!skips_lagging(shard, none));
        assert_eq!(
            choose_read_node(shard, true, none).map(|c| c.role),
            Some(ServedRole::Replica)
        );
    }

    #[test]
    fn a_restricted_read_uses_only_the_allowed_positions() {
        let table = table();
        let shard = shard_of(&table, 0);
        let only_3 = Tried::default().restricted_to(1 << 3 | 1);
        for _ in 0..3 {
            assert_eq!(choose_read_node(shard, true, only_3), Some(replica(3, 3)));
        }
        assert_eq!(only_3.count(), 0, "a restriction is not an attempt");
        let mut after_3 = only_3;
        after_3.add(replica(3, 3));
        assert_eq!(choose_read_node(shard, true, after_3), Some(primary(0)));
        assert!(!can_read_elsewhere(
            shard,
            true,
            after_3.restricted_to(1 << 3)
        ));
        shard.set_fresh(2, false);
        assert!(
            !skips_lagging(shard, only_3),
            "replica 2 was not allowed anyway"
        );
        assert!(skips_lagging(shard, Tried::default()));
    }

    #[test]
    fn too_many_replicas_are_refused() {
        let replicas = (1..=REPLICAS_PER_SHARD_MAX + 1).collect();
        let built = RouteTable::new(vec![ShardRoute::new("big".into(), 0..10, 0, replicas)]);
        assert!(matches!(built, Err(m) if m.contains("at most 63")));
    }
}
