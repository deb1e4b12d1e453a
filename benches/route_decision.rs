//! Cost of one read-routing decision next to the cheapest shared-counter update there is.
//!
//! The decision: find the org's shard among 3, filter its 3 replicas by health, pick one round robin,
//! count the attempt on the chosen node. No pool checkout, no I/O. `choose_read_node_with_reason` adds
//! what the router does next to it: count why the node was chosen. `record_latency` is the per-attempt
//! cost of the latency histogram (an uncontended mutex, an HDR record and a bucket count).
//!
//! Run: `cargo bench --bench route_decision -- --warm-up-time 1 --measurement-time 3`

mod support;

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use replisim::router::internals::NodeStats;
use replisim::router::internals::{Tried, choose_read_node};
use replisim::router::route_reason::RouteReason;
use support::{REPLICAS, SHARDS, table};

fn route_decision(c: &mut Criterion) {
    let table = table();
    // One replica down, so the health filter has something to filter.
    table.shards()[1].set_usable(2, false);
    let stats: Vec<NodeStats> = (0..SHARDS * (REPLICAS + 1))
        .map(|_| NodeStats::default())
        .collect();
    // Orgs in every shard, visited in turn so the lookup is not always the same branch.
    let orgs: [i64; 4] = [17, 1_000_042, 2_999_999, 512_000];

    let mut group = c.benchmark_group("route_decision");
    let counter = AtomicUsize::new(0);
    group.bench_function("atomic_fetch_add", |b| {
        b.iter(|| counter.fetch_add(1, Ordering::Relaxed))
    });
    let mut i = 0usize;
    group.bench_function("choose_read_node", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let shard = table.shard_for(black_box(orgs[i & 3]))?;
            let choice = choose_read_node(shard, true, Tried::default())?;
            stats
                .get(choice.node)?
                .attempts
                .fetch_add(1, Ordering::Relaxed);
            Some(choice.node)
        })
    });
    group.bench_function("choose_read_node_with_reason", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let shard = table.shard_for(black_box(orgs[i & 3]))?;
            let tried = Tried::default();
            let choice = choose_read_node(shard, true, tried)?;
            let node = stats.get(choice.node)?;
            node.routes
                .count(RouteReason::for_read(true, choice.role, tried));
            node.attempts.fetch_add(1, Ordering::Relaxed);
            Some(choice.node)
        })
    });
    let latency = NodeStats::default();
    let mut us = 0u64;
    group.bench_function("record_latency", |b| {
        b.iter(|| {
            // Values from 1 ms to ~4 ms, so the record walks more than one histogram bucket.
            us = (us + 7) & 0xfff;
            latency
                .latency
                .record(black_box(Duration::from_micros(1_000 + us)));
        })
    });
    group.finish();
}

criterion_group!(benches, route_decision);
criterion_main!(benches);
