//! Cost of one read-routing decision under each balancing policy: the shard lookup, the health filter
//! and the pick, with the signals the router feeds the policy (requests in flight and latency EWMA
//! from each node's counters, weights, the shard's random draws). `round_robin` is the same decision
//! as `route_decision/choose_read_node`, for comparison within one run.
//!
//! Run: `cargo bench --bench balance_policies -- --warm-up-time 1 --measurement-time 3`

mod support;

use std::hint::black_box;
use std::sync::atomic::Ordering;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use replisim::router::internals::NodeStats;
use replisim::router::internals::p2c::load_cost;
use replisim::router::internals::{ShardRoute, Tried, choose_read_node, choose_read_node_by};
use replisim::router::internals::{least_outstanding, p2c, random, weighted};
use support::{REPLICAS, SHARDS, table};
use tokio::time::Instant;

fn balance_policies(c: &mut Criterion) {
    let table = table();
    table.shards()[1].set_usable(2, false);
    let nodes = SHARDS * (REPLICAS + 1);
    let stats: Vec<NodeStats> = (0..nodes).map(|_| NodeStats::default()).collect();
    let now = Instant::now();
    for (i, node) in stats.iter().enumerate() {
        node.in_flight.store((i % 4) as u64, Ordering::Relaxed);
        node.ewma
            .observe(Duration::from_micros(1_000 + 700 * (i as u64 % 5)), now);
    }
    let weights: Vec<u32> = (0..nodes).map(|i| 1 + (i % 3) as u32).collect();
    let orgs: [i64; 4] = [17, 1_000_042, 2_999_999, 512_000];
    let node_of = |shard: &ShardRoute, index: u32| shard.replicas.get(index as usize).copied();
    let in_flight = |shard: &ShardRoute, index: u32| {
        node_of(shard, index)
            .and_then(|n| stats.get(n))
            .map_or(u64::MAX, |s| s.in_flight.load(Ordering::Relaxed))
    };

    let mut group = c.benchmark_group("balance_policies");
    let mut i = 0usize;
    let mut decide = |name: &str, policy: &dyn Fn(&ShardRoute) -> Option<usize>| {
        group.bench_function(name, |b| {
            b.iter(|| {
                i = i.wrapping_add(1);
                let shard = table.shard_for(black_box(orgs[i & 3]))?;
                let node = policy(shard)?;
                stats.get(node)?.attempts.fetch_add(1, Ordering::Relaxed);
                Some(node)
            })
        });
    };
    let tried = Tried::default();
    decide("round_robin", &|shard| {
        Some(choose_read_node(shard, true, tried)?.node)
    });
    decide("random", &|shard| {
        let pick = |r| random(r, shard.draws.next_draw());
        Some(choose_read_node_by(shard, true, tried, pick)?.node)
    });
    decide("least_outstanding", &|shard| {
        let pick = |r| {
            let start = random(r, shard.draws.next_draw()).unwrap_or(0);
            least_outstanding(r, start, |index| in_flight(shard, index))
        };
        Some(choose_read_node_by(shard, true, tried, pick)?.node)
    });
    decide("weighted", &|shard| {
        let pick = |r| {
            weighted(r, shard.draws.next_draw(), |index| {
                node_of(shard, index).map_or(0, |n| weights[n])
            })
        };
        Some(choose_read_node_by(shard, true, tried, pick)?.node)
    });
    decide("p2c_ewma", &|shard| {
        let now = Instant::now();
        let pick = |r| {
            p2c(r, shard.draws.next_draw(), |index| {
                node_of(shard, index)
                    .and_then(|n| stats.get(n))
                    .map_or(f64::INFINITY, |s| {
                        load_cost(s.ewma.value_us(now), in_flight(shard, index))
                    })
            })
        };
        Some(choose_read_node_by(shard, true, tried, pick)?.node)
    });
    group.finish();
}

criterion_group!(benches, balance_policies);
criterion_main!(benches);
