//! TLS from the router to real PostgreSQL 15 servers, with certificates made at test time by the
//! `openssl` command: a root that signs a server certificate for `replisim-test.invalid`, and a
//! second root that signs nothing of the servers'. Whether a connection is encrypted is judged by
//! the server (`pg_stat_ssl`), never by the router's word. Without PostgreSQL 15 or `openssl` each
//! test prints a line and passes (under `CI=true` it fails instead). Clusters run one at a time.

// Shared with the other real-cluster tests; this file uses only part of it.
#[allow(dead_code)]
use crate::real_support;

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use real_support::{STEP_TIMEOUT, TestResult, connect, node, step, wait_for};
use replisim::real::prerequisites::{Needs, is_ci, skip_without_postgres};
use replisim::real::{Cluster, ClusterSpec, ServerSettings, ShardSpec};
use replisim::record::workload::{READ_SQL, WRITE_SQL};
use replisim::router::{
    BoxedStream, ConnectPurpose, Connector, NodeAddress, Password, ReadRequest, RootCerts, Router,
    RouterConfig, RouterError, SslMode, TcpConnector, Topology, WriteRequest,
};

/// One cluster at a time across the tests of this file.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The only name the servers' certificate carries; `.invalid` never resolves, so only
/// [`Loopback`] reaches a server by it.
const CERT_NAME: &str = "replisim-test.invalid";
/// The org every test works on.
const ORG: i64 = 7;
/// A password no error message may show (the servers trust every local connection and never ask).
const PASSWORD: &str = "tls-test-s3cret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_required_and_verified_connections_are_encrypted() -> TestResult {
    let Some(_serial) = prerequisites().await? else {
        return Ok(());
    };
    let certs = Certificates::make()?;
    let cluster = start_cluster(Some(&certs)).await?;

    // (a) verify-full, by the name in the certificate: workload and probes encrypted.
    let full = tls_config(SslMode::VerifyFull, Some(&certs.root))?;
    let router = start_router(full, named_topology(&cluster, CERT_NAME)?, Loopback).await?;
    traffic(&router).await?;
    assert_encrypted(&cluster, true).await?;
    router.shutdown();

    // require without roots checks nothing but still encrypts; verify-ca checks the chain and
    // not the name (127.0.0.1 is not in the certificate); prefer takes TLS when it is offered.
    let cases = [
        (SslMode::Require, None),
        (SslMode::VerifyCa, Some(&certs.root)),
        (SslMode::Prefer, None),
    ];
    for (mode, root) in cases {
        let router = start_router(
            tls_config(mode, root)?,
            ip_topology(&cluster)?,
            TcpConnector,
        )
        .await
        .map_err(|e| format!("{mode}: {e}"))?;
        traffic(&router).await.map_err(|e| format!("{mode}: {e}"))?;
        assert_encrypted(&cluster, true).await?;
        router.shutdown();
    }
    cluster.teardown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_certificate_checks_refuse_with_clear_errors() -> TestResult {
    let Some(_serial) = prerequisites().await? else {
        return Ok(());
    };
    let certs = Certificates::make()?;
    let cluster = start_cluster(Some(&certs)).await?;

    // (b) verify-full refuses a host the certificate does not name: an address, a name.
    for host in ["127.0.0.1", "localhost"] {
        let config = tls_config(SslMode::VerifyFull, Some(&certs.root))?;
        let error = refused(config, named_topology(&cluster, host)?).await?;
        let expected = format!("TLS: certificate not valid for name '{host}'");
        assert!(error.contains(&expected), "{host}: {error}");
    }

    // (d) a chain that leads to none of the given roots: verify-ca, and require given a root
    // (libpq's require with a root file is verify-ca).
    for mode in [SslMode::VerifyCa, SslMode::Require] {
        let config = tls_config(mode, Some(&certs.other_root))?;
        let error = refused(config, ip_topology(&cluster)?).await?;
        assert!(
            error.contains("TLS: certificate not signed by a root of sslrootcert"),
            "{mode}: {error}"
        );
    }

    // The operating system's store does not hold the test root: refused, whether the store is
    // empty (a configuration error at start) or not (an unknown issuer at the handshake).
    let mut config = tls_config(SslMode::VerifyFull, None)?;
    config.sslrootcert = Some(RootCerts::System);
    match Router::start(
        config.clone(),
        named_topology(&cluster, CERT_NAME)?,
        loopback(),
    )
    .await
    {
        Err(RouterError::InvalidConfig(message)) => {
            assert!(message.contains("sslrootcert system"), "{message}");
        }
        Err(other) => return Err(format!("unexpected start error: {other}").into()),
        Ok(router) => {
            router.shutdown();
            let error = refused(config, named_topology(&cluster, CERT_NAME)?).await?;
            assert!(error.contains("unknown issuer"), "{error}");
        }
    }

    // The cancel path uses TLS too: a statement that outlives query_timeout is cancelled on the
    // server (a plain CancelRequest under sslmode=require could not even be sent: the client
    // would ask for TLS and have none).
    let mut config = tls_config(SslMode::VerifyFull, Some(&certs.root))?;
    config.query_timeout = Duration::from_millis(300);
    let router = start_router(config, named_topology(&cluster, CERT_NAME)?, Loopback).await?;
    let request = ReadRequest {
        org: ORG,
        user: 1,
        prefer_replica: false,
    };
    let slow = tokio::time::timeout(
        STEP_TIMEOUT,
        router.read(request, "SELECT pg_sleep(30)", &[]),
    )
    .await?;
    assert!(
        matches!(slow, Err(RouterError::QueryTimeout { .. })),
        "{slow:?}"
    );
    let primary = connect(node(&cluster, "primary-1")?).await?;
    wait_for("the cancelled sleep to end", STEP_TIMEOUT, || async {
        let row = step(primary.query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'",
            &[],
        ))
        .await?;
        Ok(row.get::<_, i64>(0) == 0)
    })
    .await?;
    let cancels: u64 = router.stats().nodes.iter().map(|n| n.cancels_sent).sum();
    assert_eq!(cancels, 1, "CancelRequests delivered");
    router.shutdown();
    cluster.teardown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_against_a_server_without_tls() -> TestResult {
    let Some(_serial) = prerequisites().await? else {
        return Ok(());
    };
    let cluster = start_cluster(None).await?;

    // (c) require: refused, and the reason says so in one line.
    let mut topology = ip_topology(&cluster)?;
    topology.password = Some(Password::new(PASSWORD));
    let error = refused(tls_config(SslMode::Require, None)?, topology).await?;
    assert!(
        error.contains("TLS: server does not support TLS (sslmode=require)"),
        "{error}"
    );

    // (e) prefer: served, in plain text.
    let router = start_router(
        tls_config(SslMode::Prefer, None)?,
        ip_topology(&cluster)?,
        TcpConnector,
    )
    .await?;
    traffic(&router).await?;
    assert_encrypted(&cluster, false).await?;
    router.shutdown();
    cluster.teardown().await?;
    Ok(())
}

/// A server that says yes to TLS and then never says anything again: the handshake must fall
/// under `connect_timeout` like the rest of the connect (no PostgreSQL needed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_handshake_is_bounded_by_connect_timeout() -> TestResult {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let silent = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = [0u8; 8];
            if socket.read_exact(&mut request).await.is_ok() && socket.write_all(b"S").await.is_ok()
            {
                // Kept open and silent: the ClientHello is never answered.
                held.push(socket);
            }
        }
    });
    let limit = Duration::from_millis(300);
    let config = RouterConfig::builder()
        .sslmode(SslMode::Require)
        .connect_timeout(limit)
        .health_timeout(limit)
        .build()?;
    let topology = real_support::topology(("primary-1", port), &[]);
    let started = tokio::time::Instant::now();
    let router = start_router(config, topology, TcpConnector).await?;
    let outcome = tokio::time::timeout(
        STEP_TIMEOUT,
        router.write(
            WriteRequest { org: ORG, user: 1 },
            WRITE_SQL,
            &[&ORG, &1i64, &1i64],
        ),
    )
    .await?;
    let took = started.elapsed();
    router.shutdown();
    silent.abort();
    assert!(
        matches!(outcome, Err(RouterError::ConnectTimeout { timeout, .. }) if timeout == limit),
        "{outcome:?}"
    );
    // The first health check (health_timeout) and the write's connect (connect_timeout), with room.
    assert!(took < Duration::from_secs(3), "took {took:?}");
    Ok(())
}

/// The lock that runs one cluster at a time, or None when the test must be skipped: PostgreSQL 15
/// or `openssl` is missing on a local run (a line says so); under `CI=true` that fails instead.
async fn prerequisites() -> Result<Option<tokio::sync::MutexGuard<'static, ()>>, String> {
    if skip_without_postgres(Needs::Server) {
        return Ok(None);
    }
    let openssl = Command::new("openssl").arg("version").output();
    if !openssl.is_ok_and(|out| out.status.success()) {
        if is_ci(std::env::var("CI").ok().as_deref()) {
            return Err("the openssl command is missing (apt-get install openssl)".into());
        }
        println!("skipped: the openssl command is missing (apt-get install openssl)");
        return Ok(None);
    }
    Ok(Some(SERIAL.lock().await))
}

/// A primary and a replica, serving TLS with `certs` if given.
async fn start_cluster(
    certs: Option<&Certificates>,
) -> Result<Cluster, Box<dyn std::error::Error>> {
    let spec = ClusterSpec {
        shards: vec![ShardSpec {
            name: "s1".to_string(),
            primary: "primary-1".to_string(),
            replicas: vec!["replica-1".to_string()],
        }],
    };
    let mut settings = ServerSettings::new();
    if let Some(certs) = certs {
        settings
            .set("ssl", "on")
            .set("ssl_cert_file", path_text(&certs.server_cert)?)
            .set("ssl_key_file", path_text(&certs.server_key)?);
    }
    Ok(Cluster::start_with(&spec, &settings).await?)
}

/// The default router settings with TLS as given, and short waits.
fn tls_config(mode: SslMode, root: Option<&PathBuf>) -> Result<RouterConfig, RouterError> {
    RouterConfig::builder()
        .sslmode(mode)
        .sslrootcert(root.map(|path| RootCerts::File(path.clone())))
        .health_interval(Duration::from_millis(500))
        .health_timeout(Duration::from_secs(2))
        .connect_timeout(Duration::from_secs(2))
        .build()
}

/// The cluster's nodes by their address, 127.0.0.1.
fn ip_topology(cluster: &Cluster) -> Result<Topology, Box<dyn std::error::Error>> {
    real_support::direct_topology(cluster)
}

/// The cluster's nodes by the host name `host` (reached through [`Loopback`]).
fn named_topology(cluster: &Cluster, host: &str) -> Result<Topology, Box<dyn std::error::Error>> {
    let mut topology = ip_topology(cluster)?;
    for shard in &mut topology.shards {
        for node in std::iter::once(&mut shard.primary).chain(&mut shard.replicas) {
            node.host = host.to_string();
        }
    }
    Ok(topology)
}

async fn start_router(
    config: RouterConfig,
    topology: Topology,
    connector: impl Connector,
) -> Result<Router, Box<dyn std::error::Error>> {
    step(Router::start(config, topology, Arc::new(connector))).await
}

fn loopback() -> Arc<dyn Connector> {
    Arc::new(Loopback)
}

/// Reaches every node at 127.0.0.1, whatever host name the topology gives it: stands in for a
/// resolver, so that the name the certificate is checked against can be chosen freely.
struct Loopback;

#[async_trait::async_trait]
impl Connector for Loopback {
    async fn connect(
        &self,
        node: &NodeAddress,
        _purpose: ConnectPurpose,
    ) -> io::Result<BoxedStream> {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", node.port)).await?;
        stream.set_nodelay(true)?;
        Ok(Box::new(stream))
    }
}

/// A write and replica reads through `router`, each one answered.
async fn traffic(router: &Router) -> TestResult {
    let key = 1i64;
    let user = 1i64;
    step(router.write(
        WriteRequest { org: ORG, user },
        WRITE_SQL,
        &[&ORG, &key, &user],
    ))
    .await?;
    for _ in 0..4 {
        let request = ReadRequest {
            org: ORG,
            user,
            prefer_replica: true,
        };
        step(router.read(request, READ_SQL, &[&ORG, &key, &user])).await?;
    }
    Ok(())
}

/// The start of a router with `config` succeeds, but a write through it fails: the error's text
/// (which never shows the password).
async fn refused(
    config: RouterConfig,
    topology: Topology,
) -> Result<String, Box<dyn std::error::Error>> {
    let router = start_router(config, topology, Loopback).await?;
    let outcome = step(router.write(
        WriteRequest { org: ORG, user: 1 },
        WRITE_SQL,
        &[&ORG, &1i64, &1i64],
    ))
    .await;
    router.shutdown();
    let Err(error) = outcome else {
        return Err("a write succeeded where TLS should have refused the connection".into());
    };
    let message = error.to_string();
    println!("refused as expected: {message}");
    assert!(
        !message.contains(PASSWORD),
        "the password is in the error: {message}"
    );
    assert!(!message.contains('\n'), "not one line: {message}");
    Ok(message)
}

/// Every node sees the router's workload and probe connections, and each one's `ssl` is
/// `encrypted` (by the server's `pg_stat_ssl`).
async fn assert_encrypted(cluster: &Cluster, encrypted: bool) -> TestResult {
    for server in cluster.nodes() {
        let client = connect(server).await?;
        let rows = step(client.query(
            "SELECT a.application_name, s.ssl, count(*) \
             FROM pg_stat_activity a JOIN pg_stat_ssl s ON s.pid = a.pid \
             WHERE a.application_name IN ('replisim', 'replisim-health') \
             GROUP BY 1, 2",
            &[],
        ))
        .await?;
        for application in ["replisim", "replisim-health"] {
            let count = |ssl: bool| -> i64 {
                rows.iter()
                    .filter(|row| {
                        row.get::<_, &str>(0) == application && row.get::<_, bool>(1) == ssl
                    })
                    .map(|row| row.get::<_, i64>(2))
                    .sum()
            };
            assert!(
                count(encrypted) > 0,
                "{}: no {application} connection with ssl = {encrypted}",
                server.name
            );
            assert_eq!(
                count(!encrypted),
                0,
                "{}: {application} connections with ssl = {}",
                server.name,
                !encrypted
            );
        }
    }
    Ok(())
}

/// The certificates of one test, in a directory of their own removed when dropped.
struct Certificates {
    dir: PathBuf,
    /// The root that signed the servers' certificate.
    root: PathBuf,
    /// A root that signed nothing of the servers'.
    other_root: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

static NEXT_DIR: AtomicU32 = AtomicU32::new(0);

impl Certificates {
    /// Two roots, and a server certificate for [`CERT_NAME`] signed by the first; readable by
    /// the servers' user (the key by it alone, as PostgreSQL demands).
    fn make() -> Result<Certificates, Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!(
            "replisim-tls-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        // A directory left by an earlier process with the same pid holds nothing of ours.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir)?;
        let certs = Certificates {
            root: dir.join("root.crt"),
            other_root: dir.join("other-root.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            dir,
        };
        certs.make_root("root")?;
        certs.make_root("other-root")?;
        std::fs::write(
            certs.dir.join("server.ext"),
            format!(
                "basicConstraints = critical, CA:FALSE\n\
                 keyUsage = critical, digitalSignature, keyEncipherment\n\
                 extendedKeyUsage = serverAuth\n\
                 subjectAltName = DNS:{CERT_NAME}\n"
            ),
        )?;
        certs.openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            &format!("/CN={CERT_NAME}"),
        ])?;
        certs.openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "root.crt",
            "-CAkey",
            "root.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ])?;
        certs.hand_over()?;
        Ok(certs)
    }

    fn make_root(&self, name: &str) -> TestResult {
        self.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-subj",
            &format!("/CN=replisim test {name}"),
            "-addext",
            "basicConstraints = critical, CA:TRUE",
            "-addext",
            "keyUsage = critical, keyCertSign, cRLSign",
        ])
    }

    fn openssl(&self, args: &[&str]) -> TestResult {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()?;
        if !out.status.success() {
            return Err(format!(
                "openssl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        Ok(())
    }

    /// As root, the servers run as `postgres`: the key must be theirs and private to them.
    fn hand_over(&self) -> TestResult {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&self.server_key, std::fs::Permissions::from_mode(0o600))?;
        if id(&["-u"])? != "0" {
            return Ok(());
        }
        let uid: u32 = id(&["-u", "postgres"])?.parse()?;
        let gid: u32 = id(&["-g", "postgres"])?.parse()?;
        for path in [&self.dir, &self.server_cert, &self.server_key] {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
        }
        Ok(())
    }
}

impl Drop for Certificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The output of `id ARGS`, trimmed.
fn id(args: &[&str]) -> Result<String, Box<dyn std::error::Error>> {
    let out = Command::new("id").args(args).output()?;
    if !out.status.success() {
        return Err(format!(
            "id {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

fn path_text(path: &Path) -> Result<String, String> {
    path.to_str()
        .map(str::to_string)
        .ok_or_else(|| format!("{} is not UTF-8", path.display()))
}
