//! Runs the configured balancing policy over a shard's eligible replicas with the router's live
//! signals: requests in flight and the latency EWMA from each node's counters, weights from the
//! topology, random draws from the shard.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::time::Instant;

use super::draw::mix;
use super::p2c::load_cost;
use super::{Candidates, least_outstanding, p2c, random, weighted};
use crate::router::config::Balance;
use crate::router::node::Node;
use crate::router::route::{self, Choice, RouteTable, ShardRoute, Tried};

/// Seeds the draws of every shard from `seed`, each shard with its own stream.
pub(crate) fn seed_shards(table: &RouteTable, seed: u64) {
    for (index, shard) in (0u64..).zip(table.shards()) {
        shard.draws.reseed(mix(seed ^ mix(index)));
    }
}

/// [`route::choose_read_node`] with the replica picked by `policy`; `nodes` is the router's node list
/// (indexed by [`crate::router::route::NodeIdx`]).
#[inline]
pub(crate) fn choose_read_node(
    policy: Balance,
    shard: &ShardRoute,
    nodes: &[Arc<Node>],
    prefer_replica: bool,
    tried: Tried,
) -> Option<Choice> {
    let replica = |index: u32| {
        shard
            .replicas
            .get(index as usize)
            .and_then(|&node| nodes.get(node))
    };
    let in_flight = |index: u32| {
        replica(index).map_or(u64::MAX, |node| {
            node.stats.in_flight.load(Ordering::Relaxed)
        })
    };
    let by = |pick: &dyn Fn(Candidates) -> Option<u32>| {
        route::choose_read_node_by(shard, prefer_replica, tried, pick)
    };
    match policy {
        Balance::RoundRobin => route::choose_read_node(shard, prefer_replica, tried),
        Balance::Random => by(&|replicas| random(replicas, shard.draws.next_draw())),
        Balance::LeastOutstanding => by(&|replicas| {
            // Ties start from a random candidate, so idle replicas share the reads.
            let start = random(replicas, shard.draws.next_draw()).unwrap_or(0);
            least_outstanding(replicas, start, in_flight)
        }),
        Balance::Weighted => by(&|replicas| {
            weighted(replicas, shard.draws.next_draw(), |index| {
                replica(index).map_or(0, |node| node.placed.address.weight)
            })
        }),
        Balance::P2cEwma => {
            let now = Instant::now();
            by(&|replicas| {
                p2c(replicas, shard.draws.next_draw(), |index| {
                    replica(index).map_or(f64::INFINITY, |node| {
                        let latency_us = node.stats.ewma.value_us(now);
                        load_cost(latency_us, in_flight(index))
                    })
                })
            })
        }
    }
}
