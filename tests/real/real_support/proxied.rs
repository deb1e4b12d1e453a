//! Fault proxies in front of a cluster's nodes, with what crossed them on behalf of the workload.

use replisim::real::{Cluster, FaultProxy, ProxyRecord, ProxyRecordKind};
use replisim::router::{Topology, WORKLOAD_APPLICATION_NAME};
use tokio::time::Instant;

use super::{AnyError, topology};

/// A proxy and the instant just before it started: a record at `at` happened no earlier than
/// `base + at`.
pub struct Proxied {
    /// The node's name.
    pub name: String,
    /// The proxy.
    pub proxy: FaultProxy,
    /// An instant no later than the proxy's start.
    pub base: Instant,
}

/// One proxy per node of the cluster, in node order.
pub struct Proxies(pub Vec<Proxied>);

impl Proxies {
    /// Starts a proxy in front of every node of `cluster`.
    pub async fn start(cluster: &Cluster) -> Result<Proxies, AnyError> {
        let mut proxies = Vec::new();
        for node in cluster.nodes() {
            let base = Instant::now();
            let proxy = FaultProxy::start(node.addr()).await?;
            proxies.push(Proxied {
                name: node.name.clone(),
                proxy,
                base,
            });
        }
        Ok(Proxies(proxies))
    }

    /// The proxy of node `name`.
    pub fn get(&self, name: &str) -> Result<&Proxied, AnyError> {
        self.0
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| format!("no proxy for {name}").into())
    }

    /// The cluster as a router topology whose every address is a proxy (first node the primary).
    pub fn topology(&self) -> Result<Topology, AnyError> {
        let mut nodes = self
            .0
            .iter()
            .map(|p| (p.name.as_str(), p.proxy.local_addr().port()));
        let primary = nodes.next().ok_or("no proxy")?;
        Ok(topology(primary, &nodes.collect::<Vec<_>>()))
    }

    /// Stops every proxy.
    pub async fn shutdown(self) {
        for proxied in self.0 {
            proxied.proxy.shutdown().await;
        }
    }
}

impl Proxied {
    /// Workload statements that crossed the proxy, with their (lower-bound) instants.
    pub fn workload_statements(&self) -> Vec<(Instant, ProxyRecord)> {
        self.proxy
            .records()
            .into_iter()
            .filter(|r| r.application_name.as_deref() == Some(WORKLOAD_APPLICATION_NAME))
            .filter(|r| matches!(r.kind, ProxyRecordKind::Statement { .. }))
            .map(|r| (self.base + r.at, r))
            .collect()
    }

    /// Workload statements whose text starts with `prefix`.
    pub fn statements_like(&self, prefix: &str) -> usize {
        self.workload_statements()
            .iter()
            .filter(|(_, r)| {
                matches!(&r.kind, ProxyRecordKind::Statement { text, .. } if text.starts_with(prefix))
            })
            .count()
    }
}
