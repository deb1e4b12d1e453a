//! The finance repository of the design document on the replisim router, against a real local
//! PostgreSQL 15 cluster (a primary and two replicas) that the example starts and removes itself.
//!
//! ```text
//! cargo run --release --features examples --example finance_repository
//! ```
//!
//! Reads (`get_revenues`, `get_revenue_by_id`, `get_revenue_sum_by_date_range`) run on replicas
//! and stream their rows; `get_period_report` reads twice in one read-only transaction on a replica,
//! so both figures come from one snapshot; `update_revenue_status` locks the row with
//! `get_revenue_for_update` and updates it in one transaction on the primary, so that no other
//! writer changes the status between the check and the update. Every value travels as a statement
//! parameter.
//! Needs the PostgreSQL 15 server binaries in /usr/lib/postgresql/15/bin; when run as root the
//! servers run as the `postgres` user. Ctrl-C tears the cluster down before exiting.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use replisim::real::{Cluster, ClusterSpec, DATABASE, RealNode, ShardSpec};
use replisim::router::{
    NodeAddress, ReadRequest, Routed, Router, RouterConfig, RouterError, ServedRole, ShardConfig,
    TcpConnector, Topology, Transaction, WriteRequest,
};
use tokio_postgres::{NoTls, Row};

/// The org whose books the example reads.
const ORG: i64 = 42;
/// Another org, which must never see them.
const OTHER_ORG: i64 = 7;
/// The user on whose behalf the repository runs (counts against per-user caps).
const USER: i64 = 1001;
/// How long replicas may take to apply the sample rows.
const REPLICATION_TIMEOUT: Duration = Duration::from_secs(10);

const CREATE_REVENUES: &str = "CREATE TABLE revenues (id bigserial PRIMARY KEY, \
    org_id bigint NOT NULL, amount_cents bigint NOT NULL, status text NOT NULL, \
    occurred_on date NOT NULL)";
const CREATE_REVENUES_INDEX: &str =
    "CREATE INDEX revenues_org_date ON revenues (org_id, occurred_on)";
const INSERT_REVENUE: &str = "INSERT INTO revenues (org_id, amount_cents, status, occurred_on) \
    VALUES ($1, $2, $3, $4::text::date) RETURNING id";
// Every revenue statement returns the columns `Revenue::from_row` reads, in its order.
const GET_REVENUES: &str = "SELECT id, org_id, amount_cents, status, occurred_on::text \
    FROM revenues WHERE org_id = $1 ORDER BY occurred_on, id LIMIT $2";
const GET_REVENUE_BY_ID: &str = "SELECT id, org_id, amount_cents, status, occurred_on::text \
    FROM revenues WHERE org_id = $1 AND id = $2";
const GET_REVENUE_FOR_UPDATE: &str = "SELECT id, org_id, amount_cents, status, \
    occurred_on::text FROM revenues WHERE org_id = $1 AND id = $2 FOR UPDATE";
const UPDATE_REVENUE_STATUS: &str = "UPDATE revenues SET status = $3 \
    WHERE org_id = $1 AND id = $2 RETURNING id, org_id, amount_cents, status, occurred_on::text";
const GET_REVENUES_IN_RANGE: &str = "SELECT id, org_id, amount_cents, status, \
    occurred_on::text FROM revenues WHERE org_id = $1 AND occurred_on >= $2::text::date \
    AND occurred_on < $3::text::date ORDER BY occurred_on, id";
const SUM_REVENUES: &str = "SELECT coalesce(sum(amount_cents), 0)::bigint, count(*) \
    FROM revenues WHERE org_id = $1 AND occurred_on >= $2::text::date \
    AND occurred_on < $3::text::date";

/// One row of `revenues`.
#[derive(Debug)]
struct Revenue {
    id: i64,
    org_id: i64,
    amount_cents: i64,
    status: String,
    occurred_on: String,
}

impl Revenue {
    fn from_row(row: &Row) -> Result<Revenue, tokio_postgres::Error> {
        Ok(Revenue {
            id: row.try_get(0)?,
            org_id: row.try_get(1)?,
            amount_cents: row.try_get(2)?,
            status: row.try_get(3)?,
            occurred_on: row.try_get(4)?,
        })
    }
}

impl std::fmt::Display for Revenue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "#{} org {} {} {:>8.2} {}",
            self.id,
            self.org_id,
            self.occurred_on,
            self.amount_cents as f64 / 100.0,
            self.status
        )
    }
}

/// What can go wrong in the repository.
#[derive(Debug, thiserror::Error)]
enum RepositoryError {
    /// The router could not run the statement.
    #[error(transparent)]
    Router(#[from] RouterError),
    /// A row did not have the expected columns.
    #[error("unexpected row from revenues: {0}")]
    Row(#[from] tokio_postgres::Error),
    /// A statement that always returns a row returned none.
    #[error("{0} returned no row")]
    NoRow(&'static str),
}

/// The design document's finance repository: reads on replicas, writes and critical reads on the
/// primary, every org's rows kept to that org by its `org_id` parameter.
struct FinanceRepository {
    router: Router,
    user: i64,
}

impl FinanceRepository {
    fn replica_read(&self, org: i64) -> ReadRequest {
        ReadRequest {
            org,
            user: self.user,
            prefer_replica: true,
        }
    }

    /// Runs a read whose rows stream in, decoding each as it arrives.
    async fn stream_revenues(
        &self,
        request: ReadRequest,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Routed<Vec<Revenue>>, RepositoryError> {
        let Routed {
            value: mut stream,
            node,
            role,
            attempts,
        } = self.router.read_stream(request, sql, params).await?;
        let mut revenues = Vec::new();
        while let Some(row) = stream.next_row().await? {
            revenues.push(Revenue::from_row(&row)?);
        }
        Ok(Routed {
            value: revenues,
            node,
            role,
            attempts,
        })
    }

    /// The org's revenues, oldest first, at most `limit` (replica).
    async fn get_revenues(
        &self,
        org: i64,
        limit: i64,
    ) -> Result<Routed<Vec<Revenue>>, RepositoryError> {
        self.stream_revenues(self.replica_read(org), GET_REVENUES, &[&org, &limit])
            .await
    }

    /// One revenue of the org, if it exists (replica).
    async fn get_revenue_by_id(
        &self,
        org: i64,
        id: i64,
    ) -> Result<Routed<Option<Revenue>>, RepositoryError> {
        let routed = self
            .stream_revenues(self.replica_read(org), GET_REVENUE_BY_ID, &[&org, &id])
            .await?;
        Ok(first(routed))
    }

    /// Total and count of the org's revenues in `[from, until)`, dates as `YYYY-MM-DD` (replica).
    async fn get_revenue_sum_by_date_range(
        &self,
        org: i64,
        from: &str,
        until: &str,
    ) -> Result<Routed<(i64, i64)>, RepositoryError> {
        let Routed {
            value: mut stream,
            node,
            role,
            attempts,
        } = self
            .router
            .read_stream(self.replica_read(org), SUM_REVENUES, &[&org, &from, &until])
            .await?;
        let row = stream
            .next_row()
            .await?
            .ok_or(RepositoryError::NoRow("a sum"))?;
        // The stream must be read to its end to hand its connection back to the pool.
        while stream.next_row().await?.is_some() {}
        Ok(Routed {
            value: (row.try_get(0)?, row.try_get(1)?),
            node,
            role,
            attempts,
        })
    }

    /// The revenues of `[from, until)` and their total, both from one snapshot: a read-only
    /// `REPEATABLE READ` transaction on a replica, so a revenue written between the two reads
    /// cannot appear in one and not the other.
    async fn get_period_report(
        &self,
        org: i64,
        from: &str,
        until: &str,
    ) -> Result<Routed<(Vec<Revenue>, i64)>, RepositoryError> {
        let mut snapshot = self.router.begin_read(self.replica_read(org)).await?;
        let rows = snapshot
            .query(GET_REVENUES_IN_RANGE, &[&org, &from, &until])
            .await?;
        let revenues = rows
            .iter()
            .map(Revenue::from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let sum = snapshot.query(SUM_REVENUES, &[&org, &from, &until]).await?;
        let cents: i64 = sum
            .first()
            .ok_or(RepositoryError::NoRow("a sum"))?
            .try_get(0)?;
        let (node, role) = (snapshot.node().to_string(), snapshot.role());
        snapshot.commit().await?;
        Ok(Routed {
            value: (revenues, cents),
            node,
            role,
            attempts: 1,
        })
    }

    /// Moves a revenue from status `from` to `to` if it still has `from`, in one transaction on
    /// the primary: the row is locked (`get_revenue_for_update`) before its status is checked, so a
    /// concurrent update waits instead of being overwritten. Returns the row after the call.
    async fn update_revenue_status(
        &self,
        org: i64,
        id: i64,
        from: &str,
        to: &str,
    ) -> Result<Routed<StatusChange>, RepositoryError> {
        let request = WriteRequest {
            org,
            user: self.user,
        };
        let mut transaction = self.router.begin(request).await?;
        let locked = get_revenue_for_update(&mut transaction, org, id).await?;
        let change = match locked {
            Some(revenue) if revenue.status == from => {
                let rows = transaction
                    .query(UPDATE_REVENUE_STATUS, &[&org, &id, &to])
                    .await?;
                let row = rows.first().ok_or(RepositoryError::NoRow("an update"))?;
                StatusChange::Changed(Revenue::from_row(row)?)
            }
            Some(revenue) => StatusChange::Unchanged(revenue),
            None => StatusChange::Missing,
        };
        let (node, role) = (transaction.node().to_string(), transaction.role());
        transaction.commit().await?;
        Ok(Routed {
            value: change,
            node,
            role,
            attempts: 1,
        })
    }
}

/// What `update_revenue_status` did.
#[derive(Debug)]
enum StatusChange {
    /// The revenue had the expected status and now has the new one.
    Changed(Revenue),
    /// The revenue had another status (someone changed it first); it is left as it was.
    Unchanged(Revenue),
    /// The org has no such revenue.
    Missing,
}

impl std::fmt::Display for StatusChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StatusChange::Changed(revenue) => write!(f, "changed: {revenue}"),
            StatusChange::Unchanged(revenue) => write!(f, "left alone: {revenue}"),
            StatusChange::Missing => write!(f, "no such revenue"),
        }
    }
}

/// A revenue as the primary has it now, locked until `transaction` ends: the other writers of the
/// row wait for it.
async fn get_revenue_for_update(
    transaction: &mut Transaction,
    org: i64,
    id: i64,
) -> Result<Option<Revenue>, RepositoryError> {
    let rows = transaction
        .query(GET_REVENUE_FOR_UPDATE, &[&org, &id])
        .await?;
    Ok(rows.first().map(Revenue::from_row).transpose()?)
}

fn first(routed: Routed<Vec<Revenue>>) -> Routed<Option<Revenue>> {
    Routed {
        value: routed.value.into_iter().next(),
        node: routed.node,
        role: routed.role,
        attempts: routed.attempts,
    }
}

fn served<T>(routed: &Routed<T>) -> String {
    let role = match routed.role {
        ServedRole::Primary => "primary",
        ServedRole::Replica => "replica",
    };
    format!("[{} ({role})]", routed.node)
}

fn show(revenue: &Option<Revenue>) -> String {
    revenue
        .as_ref()
        .map_or_else(|| "none".to_string(), Revenue::to_string)
}

/// The cluster's nodes as a one-shard router topology for every org.
fn topology(cluster: &Cluster) -> anyhow::Result<Topology> {
    let address = |node: &RealNode| NodeAddress::new(node.name.as_str(), "127.0.0.1", node.port);
    let (primary, replicas) = cluster
        .nodes()
        .split_first()
        .context("the cluster has no node")?;
    Ok(Topology {
        shards: vec![ShardConfig {
            name: "s1".into(),
            orgs: 0..1_000_000,
            primary: address(primary),
            replicas: replicas.iter().map(address).collect(),
        }],
        user: "postgres".into(),
        dbname: DATABASE.into(),
        password: None,
    })
}

/// Waits until every replica has applied the primary's WAL up to `lsn`.
async fn wait_replicated(cluster: &Cluster, lsn: &str) -> anyhow::Result<()> {
    for replica in cluster.nodes().iter().skip(1) {
        let config = replica.pg_config("finance-example");
        let (client, connection) = tokio::time::timeout(REPLICATION_TIMEOUT, config.connect(NoTls))
            .await
            .with_context(|| format!("connecting to {}", replica.name))??;
        let driver = tokio::spawn(connection);
        let applied = tokio::time::timeout(REPLICATION_TIMEOUT, async {
            loop {
                let row = client
                    .query_one(
                        "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                        &[&lsn],
                    )
                    .await?;
                if row.try_get::<_, bool>(0)? {
                    return Ok::<(), tokio_postgres::Error>(());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        driver.abort();
        applied.with_context(|| format!("{} did not catch up with {lsn}", replica.name))??;
    }
    Ok(())
}

/// Creates the table, writes the sample rows through the router and returns their ids.
async fn load_sample(router: &Router, cluster: &Cluster) -> anyhow::Result<Vec<i64>> {
    let ddl = WriteRequest { org: ORG, user: 0 };
    router.write(ddl, CREATE_REVENUES, &[]).await?;
    router.write(ddl, CREATE_REVENUES_INDEX, &[]).await?;
    let sample: [(i64, i64, &str, &str); 9] = [
        (ORG, 125_000, "paid", "2025-01-05"),
        (ORG, 89_950, "paid", "2025-01-19"),
        (ORG, 240_000, "paid", "2025-02-02"),
        (ORG, 15_500, "pending", "2025-02-14"),
        (ORG, 63_275, "pending", "2025-02-27"),
        (ORG, 310_000, "pending", "2025-03-08"),
        (OTHER_ORG, 999_999, "paid", "2025-02-10"),
        (OTHER_ORG, 12_000, "pending", "2025-02-11"),
        (ORG, 47_800, "refunded", "2025-03-21"),
    ];
    let mut ids = Vec::new();
    for (org, amount_cents, status, occurred_on) in sample {
        let request = WriteRequest { org, user: 0 };
        let routed = router
            .write(
                request,
                INSERT_REVENUE,
                &[&org, &amount_cents, &status, &occurred_on],
            )
            .await?;
        let row = routed.value.first().context("an insert returned no id")?;
        if org == ORG {
            ids.push(row.try_get(0)?);
        }
    }
    let primary_read = ReadRequest {
        org: ORG,
        user: 0,
        prefer_replica: false,
    };
    let lsn = router
        .read(primary_read, "SELECT pg_current_wal_lsn()::text", &[])
        .await?;
    let lsn: String = lsn
        .value
        .first()
        .context("pg_current_wal_lsn returned no row")?
        .try_get(0)?;
    let started = tokio::time::Instant::now();
    wait_replicated(cluster, &lsn).await?;
    println!(
        "loaded {} revenues ({} of org {ORG}); replicas caught up with {lsn} in {:?}",
        sample.len(),
        ids.len(),
        started.elapsed()
    );
    Ok(ids)
}

async fn run(cluster: &Cluster) -> anyhow::Result<()> {
    let config = RouterConfig::builder()
        .health_interval(Duration::from_secs(1))
        .connect_timeout(Duration::from_secs(2))
        .query_timeout(Duration::from_secs(5))
        .build()?;
    let router = Router::start(config, topology(cluster)?, Arc::new(TcpConnector)).await?;
    let ids = load_sample(&router, cluster).await?;
    let (&first_id, &pending_id) = (
        ids.first().context("no sample row")?,
        ids.get(3).context("too few sample rows")?,
    );
    let repository = FinanceRepository {
        router: router.clone(),
        user: USER,
    };

    let revenues = repository.get_revenues(ORG, 100).await?;
    println!(
        "getRevenues(org {ORG}) {}: {} rows, streamed",
        served(&revenues),
        revenues.value.len()
    );
    for revenue in &revenues.value {
        println!("    {revenue}");
    }
    let by_id = repository.get_revenue_by_id(ORG, first_id).await?;
    println!(
        "getRevenueById(org {ORG}, #{first_id}) {}: {}",
        served(&by_id),
        show(&by_id.value)
    );
    let foreign = repository.get_revenue_by_id(OTHER_ORG, first_id).await?;
    println!(
        "getRevenueById(org {OTHER_ORG}, #{first_id}) {}: {} (another org's row stays hidden)",
        served(&foreign),
        show(&foreign.value)
    );
    let february = repository
        .get_revenue_sum_by_date_range(ORG, "2025-02-01", "2025-03-01")
        .await?;
    let (cents, count) = february.value;
    println!(
        "getRevenueSumByDateRange(org {ORG}, 2025-02-01..2025-03-01) {}: {:.2} over {count} rows",
        served(&february),
        cents as f64 / 100.0
    );
    let report = repository
        .get_period_report(ORG, "2025-02-01", "2025-03-01")
        .await?;
    let (rows, cents) = &report.value;
    println!(
        "getPeriodReport(org {ORG}, 2025-02-01..2025-03-01) {} in one read-only snapshot: {} rows, {:.2}",
        served(&report),
        rows.len(),
        *cents as f64 / 100.0
    );
    // Two updates of one revenue, as two clerks would send them: the second waits for the first's
    // lock, then finds the status already changed and leaves the row alone.
    let (first_update, second_update) = tokio::join!(
        repository.update_revenue_status(ORG, pending_id, "pending", "paid"),
        repository.update_revenue_status(ORG, pending_id, "pending", "cancelled"),
    );
    for (target, update) in [("paid", first_update?), ("cancelled", second_update?)] {
        println!(
            "updateRevenueStatus(org {ORG}, #{pending_id}, pending -> {target}) {} in one transaction \
             (getRevenueForUpdate, then UPDATE): {}",
            served(&update),
            update.value
        );
    }
    // A replica may not have applied the update yet: a read that must see it asks for the primary.
    let after = repository
        .stream_revenues(
            ReadRequest {
                org: ORG,
                user: USER,
                prefer_replica: false,
            },
            GET_REVENUE_BY_ID,
            &[&ORG, &pending_id],
        )
        .await
        .map(first)?;
    println!(
        "getRevenueById(org {ORG}, #{pending_id}), critical {}: {}",
        served(&after),
        show(&after.value)
    );

    println!("router statistics:");
    for node in router.stats().nodes {
        println!(
            "    {:<10} {:?}: {} attempts, {} succeeded, {} failed, healthy {}",
            node.name, node.role, node.attempts, node.successes, node.errors, node.healthy
        );
    }
    router.shutdown();
    Ok(())
}

/// Completes on Ctrl-C; never, if no signal handler can be installed.
async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let spec = ClusterSpec {
        shards: vec![ShardSpec {
            name: "s1".into(),
            primary: "primary-1".into(),
            replicas: vec!["replica-1".into(), "replica-2".into()],
        }],
    };
    let started = tokio::time::Instant::now();
    // Dropping a start under way tears down what it had started.
    let cluster = tokio::select! {
        biased;
        _ = ctrl_c() => anyhow::bail!("interrupted by Ctrl-C while the cluster was starting"),
        cluster = Cluster::start(&spec) => {
            cluster.context("starting a local PostgreSQL 15 cluster")?
        }
    };
    println!(
        "cluster up in {:?}: {}",
        started.elapsed(),
        cluster
            .nodes()
            .iter()
            .map(|node| format!("{} ({})", node.name, node.role().as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    // On an error the cluster is still torn down (explicitly here, or by its drop).
    let outcome = cluster.run_until_ctrl_c(run(&cluster)).await;
    cluster.teardown().await?;
    println!("cluster torn down");
    outcome?
}
