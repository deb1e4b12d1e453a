//! The cluster the router serves: shards (org ranges), their nodes, and the connection settings.

use std::collections::BTreeSet;
use std::ops::Range;

use crate::router::connector::NodeAddress;
use crate::router::error::RouterError;
use crate::router::route::{NodeIdx, RouteTable, ServedRole, ShardRoute};
use crate::router::secret::Password;

/// The whole cluster and how to log in to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// Shards; their org ranges must not overlap.
    pub shards: Vec<ShardConfig>,
    /// PostgreSQL user for every connection.
    pub user: String,
    /// Database name for every connection.
    pub dbname: String,
    /// Password, if the servers ask for one.
    pub password: Option<Password>,
}

/// One shard: an org range served by one primary and its replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardConfig {
    /// Shard name, used in error messages.
    pub name: String,
    /// Half-open org-id range `[start, end)`.
    pub orgs: Range<i64>,
    /// The node that takes writes.
    pub primary: NodeAddress,
    /// Nodes that serve reads; may be empty.
    pub replicas: Vec<NodeAddress>,
}

/// A node of a validated topology, with its place in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacedNode {
    /// Where it listens.
    pub address: NodeAddress,
    /// Name of its shard.
    pub shard: String,
    /// Its role in the shard.
    pub role: ServedRole,
}

impl Topology {
    /// Every node in topology order (per shard, primary then replicas); `NodeIdx` indexes this list.
    pub fn nodes(&self) -> Vec<PlacedNode> {
        let mut nodes = Vec::new();
        for shard in &self.shards {
            let placed = |address: &NodeAddress, role| PlacedNode {
                address: address.clone(),
                shard: shard.name.clone(),
                role,
            };
            nodes.push(placed(&shard.primary, ServedRole::Primary));
            nodes.extend(
                shard
                    .replicas
                    .iter()
                    .map(|r| placed(r, ServedRole::Replica)),
            );
        }
        nodes
    }

    /// Checks the topology (at least one shard, no overlapping or empty org ranges, unique non-empty
    /// shard and node names, a host and a port for every node, a user and a database) and builds the
    /// routing table over the node indexes of [`Topology::nodes`].
    pub fn validate(&self) -> Result<RouteTable, RouterError> {
        let invalid = |message: String| RouterError::InvalidConfig(format!("topology: {message}"));
        if self.shards.is_empty() {
            return Err(invalid("no shard: at least one is needed".to_string()));
        }
        if self.user.is_empty() {
            return Err(invalid("user is empty".to_string()));
        }
        if self.dbname.is_empty() {
            return Err(invalid("dbname is empty".to_string()));
        }
        let mut shard_names = BTreeSet::new();
        let mut node_names = BTreeSet::new();
        let mut routes = Vec::with_capacity(self.shards.len());
        let mut next: NodeIdx = 0;
        for shard in &self.shards {
            if shard.name.is_empty() {
                return Err(invalid("a shard has an empty name".to_string()));
            }
            if !shard_names.insert(shard.name.as_str()) {
                return Err(invalid(format!("shard name {} is used twice", shard.name)));
            }
            for node in std::iter::once(&shard.primary).chain(&shard.replicas) {
                if node.name.is_empty() {
                    return Err(invalid(format!(
                        "shard {} has a node with an empty name",
                        shard.name
                    )));
                }
                if !node_names.insert(node.name.as_str()) {
                    return Err(invalid(format!("node name {} is used twice", node.name)));
                }
                if node.weight == 0 {
                    return Err(invalid(format!(
                        "node {} has weight 0: weights start at 1",
                        node.name
                    )));
                }
                if node.host.is_empty() || node.port == 0 {
                    return Err(invalid(format!(
                        "node {} needs a host and a port above 0 (got {:?}:{})",
                        node.name, node.host, node.port
                    )));
                }
            }
            let primary = next;
            let replicas: Vec<NodeIdx> = (primary + 1..=primary + shard.replicas.len()).collect();
            next = primary + 1 + shard.replicas.len();
            routes.push(ShardRoute::new(
                shard.name.clone(),
                shard.orgs.clone(),
                primary,
                replicas,
            ));
        }
        RouteTable::new(routes).map_err(invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, port: u16) -> NodeAddress {
        NodeAddress::new(name, "127.0.0.1", port)
    }

    fn sample() -> Topology {
        Topology {
            shards: vec![
                ShardConfig {
                    name: "s1".into(),
                    orgs: 0..1_000_000,
                    primary: node("primary-1", 5432),
                    replicas: vec![node("replica-1", 5433), node("replica-2", 5434)],
                },
                ShardConfig {
                    name: "s2".into(),
                    orgs: 1_000_000..2_000_000,
                    primary: node("primary-2", 5435),
                    replicas: vec![],
                },
            ],
            user: "app".into(),
            dbname: "app".into(),
            password: None,
        }
    }

    fn error_of(topology: &Topology) -> String {
        match topology.validate() {
            Ok(table) => panic!("invalid topology accepted: {table:?}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn valid_topology_maps_orgs_to_node_indexes() {
        let topology = sample();
        let table = topology.validate().map_err(|e| e.to_string());
        let Ok(table) = table else {
            panic!("valid topology refused: {table:?}");
        };
        let names: Vec<_> = topology
            .nodes()
            .into_iter()
            .map(|n| n.address.name)
            .collect();
        assert_eq!(names, ["primary-1", "replica-1", "replica-2", "primary-2"]);
        let first = table
            .shard_for(999_999)
            .map(|s| (s.primary, s.replicas.clone()));
        assert_eq!(first, Some((0, vec![1, 2])));
        let second = table
            .shard_for(1_000_000)
            .map(|s| (s.primary, s.replicas.clone()));
        assert_eq!(second, Some((3, vec![])));
        assert!(table.shard_for(2_000_000).is_none());
    }

    #[test]
    fn roles_follow_the_topology() {
        let roles: Vec<_> = sample()
            .nodes()
            .into_iter()
            .map(|n| (n.shard, n.role))
            .collect();
        assert_eq!(roles[0], ("s1".to_string(), ServedRole::Primary));
        assert_eq!(roles[2], ("s1".to_string(), ServedRole::Replica));
        assert_eq!(roles[3], ("s2".to_string(), ServedRole::Primary));
    }

    #[test]
    fn empty_topology_is_refused() {
        let mut topology = sample();
        topology.shards.clear();
        assert!(error_of(&topology).contains("no shard"));
    }

    #[test]
    fn overlapping_ranges_are_refused() {
        let mut topology = sample();
        topology.shards[1].orgs = 999_999..2_000_000;
        assert!(error_of(&topology).contains("overlap"));
    }

    #[test]
    fn duplicate_node_names_are_refused() {
        let mut topology = sample();
        topology.shards[1].replicas.push(node("replica-1", 6000));
        assert!(error_of(&topology).contains("node name replica-1 is used twice"));
    }

    #[test]
    fn duplicate_shard_names_are_refused() {
        let mut topology = sample();
        topology.shards[1].name = "s1".into();
        assert!(error_of(&topology).contains("shard name s1"));
    }

    #[test]
    fn nodes_need_an_address() {
        let mut topology = sample();
        topology.shards[0].replicas[1].port = 0;
        assert!(error_of(&topology).contains("replica-2"));
        let mut topology = sample();
        topology.shards[0].primary.host.clear();
        assert!(error_of(&topology).contains("primary-1"));
    }

    #[test]
    fn weights_start_at_one() {
        let mut topology = sample();
        assert_eq!(topology.shards[0].replicas[0].weight, 1, "the default");
        topology.shards[0].replicas[0].weight = 0;
        assert!(error_of(&topology).contains("replica-1 has weight 0"));
        topology.shards[0].replicas[0].weight = 5;
        assert!(topology.validate().is_ok());
    }

    #[test]
    fn empty_range_is_refused() {
        let mut topology = sample();
        topology.shards[0].orgs = 10..10;
        assert!(error_of(&topology).contains("empty org range"));
    }
}
