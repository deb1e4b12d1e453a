//! The routing table both benches decide over.

use replisim::router::internals::{RouteTable, ShardRoute};

/// Shards in the bench topology.
pub const SHARDS: usize = 3;
/// Replicas per shard.
pub const REPLICAS: usize = 3;

/// `SHARDS` shards of a primary and `REPLICAS` replicas, each serving a million orgs.
pub fn table() -> RouteTable {
    let shards = (0..SHARDS)
        .map(|i| {
            let primary = i * (REPLICAS + 1);
            let start = i as i64 * 1_000_000;
            let replicas = (1..=REPLICAS).map(|r| primary + r).collect();
            ShardRoute::new(format!("s{i}"), start..start + 1_000_000, primary, replicas)
        })
        .collect();
    match RouteTable::new(shards) {
        Ok(table) => table,
        Err(message) => panic!("bench topology refused: {message}"),
    }
}
