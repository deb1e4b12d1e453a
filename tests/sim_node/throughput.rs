//! A load for measuring how many statements per wall-second the simulated servers sustain.

use std::time::Duration;

use super::cluster::{BoxError, READ, WRITE, cluster, connect, run_client};

/// Run with `cargo test --release --test sim_node -- --ignored --nocapture throughput` and time
/// the test binary: the simulation itself never reads a wall clock.
#[test]
#[ignore = "a measurement, not a check"]
fn throughput_with_100_concurrent_clients() {
    const CLIENTS: i64 = 100;
    const RUN: Duration = Duration::from_secs(20);
    let mut c = cluster(11);
    run_client(&mut c.sim, async {
        let mut tasks = Vec::new();
        for client_id in 0..CLIENTS {
            tasks.push(tokio::spawn(async move {
                let host = if client_id % 5 == 0 {
                    "primary"
                } else {
                    "replica"
                };
                let writer = connect("primary", "replisim").await?;
                let reader = connect(host, "replisim").await?;
                let write_statement = writer.prepare(WRITE).await?;
                let read_statement = reader.prepare(READ).await?;
                let mut op: i64 = 0;
                while turmoil::sim_elapsed().unwrap_or_default() < RUN {
                    op += 1;
                    let (org, key) = (op % 1000, (op * 7 + client_id) % 100);
                    if op % 5 == 0 {
                        writer
                            .query_one(&write_statement, &[&org, &key, &client_id])
                            .await?;
                    } else {
                        reader
                            .query_opt(&read_statement, &[&org, &key, &client_id])
                            .await?;
                    }
                }
                Ok::<i64, BoxError>(op)
            }));
        }
        let mut total = 0;
        for task in tasks {
            total += task.await??;
        }
        println!("client operations: {total}");
        Ok(())
    });
    c.sim.run().expect("simulation");
    let executed = c.log.statements.lock().expect("log lock").len();
    println!(
        "statements executed: {executed} in {:?} simulated",
        c.sim.elapsed()
    );
}
