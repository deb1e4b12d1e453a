//! Support for the node tests: a turmoil simulation with a primary, replicas and an application
//! host, a driver that applies harness actions between steps, and tokio-postgres calls.

use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use replisim::record::events::{EventLog, NodeRole, StatementEvent};
use replisim::sim::node::{NodeModel, PG_PORT, SimNode};
use tokio::time::timeout;
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls, SimpleQueryMessage, SimpleQueryRow};
use turmoil::net::TcpStream;
use turmoil::{Builder, Sim};

pub type BoxError = Box<dyn Error + Send + Sync>;

pub const QUERY_TIME: Duration = Duration::from_millis(1);
pub const DELAY: Duration = Duration::from_millis(50);
pub const LATENCY: Duration = Duration::from_millis(1);
pub const EPOCH_SECS: u64 = 1_700_000_000;
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);

pub const READ: &str =
    "SELECT version, $3::bigint AS reader FROM replisim_kv WHERE org_id = $1 AND key = $2";
pub const WRITE: &str = "INSERT INTO replisim_kv (org_id, key, version, updated_by) \
     VALUES ($1, $2, 1, $3) \
     ON CONFLICT (org_id, key) DO UPDATE \
     SET version = replisim_kv.version + 1, updated_by = $3 \
     RETURNING version";

/// Node index of the primary ("primary").
pub const PRIMARY: usize = 0;
/// Node index of the first replica ("replica"); further replicas are "replica-2", ...
pub const REPLICA: usize = 1;

pub struct Cluster {
    pub sim: Sim<'static>,
    pub log: Arc<EventLog>,
    pub nodes: Vec<Arc<SimNode>>,
}

impl Cluster {
    pub fn primary(&self) -> &Arc<SimNode> {
        &self.nodes[PRIMARY]
    }

    pub fn replica(&self) -> &Arc<SimNode> {
        &self.nodes[REPLICA]
    }
}

/// A primary and one replica.
pub fn cluster(seed: u64) -> Cluster {
    cluster_of(seed, 1)
}

/// A primary and `replicas` replicas streaming from it.
pub fn cluster_of(seed: u64, replicas: usize) -> Cluster {
    let mut sim = Builder::new()
        .rng_seed(seed)
        .epoch(UNIX_EPOCH + Duration::from_secs(EPOCH_SECS))
        .simulation_duration(Duration::from_secs(600))
        .tcp_capacity(4096)
        .min_message_latency(LATENCY)
        .max_message_latency(LATENCY)
        .build();
    let log = Arc::new(EventLog::default());
    let model = NodeModel {
        query_time: QUERY_TIME,
        replication_delay: DELAY,
    };
    let mut nodes = vec![SimNode::new(
        PRIMARY,
        "primary",
        NodeRole::Primary,
        None,
        model,
        log.clone(),
    )];
    for index in REPLICA..=replicas {
        let name = match index {
            1 => "replica".to_owned(),
            n => format!("replica-{n}"),
        };
        nodes.push(SimNode::new(
            index,
            &name,
            NodeRole::Replica,
            Some("primary".to_owned()),
            model,
            log.clone(),
        ));
    }
    for node in &nodes {
        let node = node.clone();
        let name = node.name().to_owned();
        sim.host(name.as_str(), move || node.clone().serve());
    }
    Cluster { sim, log, nodes }
}

/// Something the harness does to the simulation from outside, at a simulated time.
pub type Action = (Duration, Box<dyn FnOnce(&mut Sim<'static>)>);

/// Steps the simulation until the clients finish, doing each action once its time has come.
pub fn drive(sim: &mut Sim<'static>, mut actions: Vec<Action>) {
    actions.sort_by_key(|(at, _)| *at);
    let mut actions = actions.into_iter().peekable();
    loop {
        while actions.peek().is_some_and(|(at, _)| sim.elapsed() >= *at) {
            if let Some((_, action)) = actions.next() {
                action(sim);
            }
        }
        if sim.step().expect("simulation step") {
            return;
        }
    }
}

/// Registers the application host, running `body`.
pub fn run_client(
    sim: &mut Sim<'static>,
    body: impl Future<Output = Result<(), BoxError>> + 'static,
) {
    sim.client("app", async move {
        body.await.map_err(|e| -> Box<dyn Error> { e })
    });
}

pub async fn connect(host: &str, application: &str) -> Result<Client, BoxError> {
    let stream = timeout(IO_TIMEOUT, TcpStream::connect((host, PG_PORT))).await??;
    let mut config = Config::new();
    config
        .user("replisim")
        .dbname("replisim")
        .application_name(application)
        .ssl_mode(SslMode::Disable);
    let (client, connection) = timeout(IO_TIMEOUT, config.connect_raw(stream, NoTls)).await??;
    tokio::spawn(async move {
        // The connection ends with an error when its server crashes; that is expected here.
        let _ = connection.await;
    });
    Ok(client)
}

pub async fn write(client: &Client, org: i64, key: i64, user: i64) -> Result<i64, BoxError> {
    let row = timeout(IO_TIMEOUT, client.query_one(WRITE, &[&org, &key, &user])).await??;
    Ok(row.try_get(0)?)
}

pub async fn read(client: &Client, org: i64, key: i64, user: i64) -> Result<Option<i64>, BoxError> {
    let row = timeout(IO_TIMEOUT, client.query_opt(READ, &[&org, &key, &user])).await??;
    match row {
        Some(row) => {
            assert_eq!(row.try_get::<_, i64>("reader")?, user);
            Ok(Some(row.try_get("version")?))
        }
        None => Ok(None),
    }
}

/// The first row of a simple-protocol answer.
pub fn first_row(messages: &[SimpleQueryMessage]) -> Result<&SimpleQueryRow, BoxError> {
    messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .ok_or_else(|| format!("no row in {messages:?}").into())
}

pub fn sql_state(error: &BoxError) -> Option<SqlState> {
    error
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(|e| e.code())
        .cloned()
}

pub fn db_message(error: &BoxError) -> Option<String> {
    error
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(|e| e.as_db_error())
        .map(|e| e.message().to_owned())
}

/// Sleeps until the simulated clock reads `at`.
pub async fn sleep_until_sim(at: Duration) {
    let now = turmoil::sim_elapsed().unwrap_or_default();
    tokio::time::sleep(at.saturating_sub(now)).await;
}

pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).expect("small duration")
}

pub fn statements(log: &EventLog) -> Vec<StatementEvent> {
    log.statements.lock().expect("log lock").clone()
}
