//! The router's view of a scenario's cluster: each shard's org range, and each node's name, address and
//! weight. The simulation and real mode address nodes differently; everything else is the same.

use super::model::{Node, Scenario};
use crate::router::{NodeAddress, Password, ShardConfig, Topology};

/// How the router logs in to every node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Login {
    /// Database user.
    pub user: String,
    /// Database name.
    pub dbname: String,
    /// Password, if the servers ask for one.
    pub password: Option<Password>,
}

impl Scenario {
    /// The topology the router is given: shards as declared, node `i` at the host and port
    /// `address(i, node)` returns, with the node's weight.
    pub fn router_topology(
        &self,
        address: impl Fn(usize, &Node) -> (String, u16),
        login: Login,
    ) -> Topology {
        let node_address = |idx: usize| match self.nodes.get(idx) {
            Some(node) => {
                let (host, port) = address(idx, node);
                let mut placed = NodeAddress::new(node.name.as_str(), host, port);
                placed.weight = node.weight;
                placed
            }
            // Validated scenarios only name existing nodes; an empty name fails topology validation.
            None => NodeAddress::new("", "", 0),
        };
        Topology {
            shards: self
                .shards
                .iter()
                .map(|shard| ShardConfig {
                    name: shard.name.clone(),
                    orgs: shard.orgs_start..shard.orgs_end,
                    primary: node_address(shard.primary),
                    replicas: shard.replicas.iter().map(|&r| node_address(r)).collect(),
                })
                .collect(),
            user: login.user,
            dbname: login.dbname,
            password: login.password,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::scenario::parse;

    #[test]
    fn nodes_keep_their_names_places_and_weights() {
        let text = "name = \"t\"\nduration = \"1s\"\n[[shard]]\norgs = [0, 10]\nprimary = \"p\"\n\
                    replicas = [\"r1\", \"r2\"]\nweights = [4, 1]\n[[shard]]\norgs = [10, 20]\n\
                    primary = \"q\"\n[workload]\norgs = 20\n";
        let scenario = match parse(text, "t.toml") {
            Ok(scenario) => scenario,
            Err(error) => panic!("{error}"),
        };
        let login = super::Login {
            user: "u".into(),
            dbname: "d".into(),
            password: None,
        };
        let topology =
            scenario.router_topology(|i, n| (format!("{}.host", n.name), 5000 + i as u16), login);
        let s1 = &topology.shards[0];
        assert_eq!((s1.orgs.clone(), s1.primary.port), (0..10, 5000));
        let replicas: Vec<(&str, &str, u16, u32)> = s1
            .replicas
            .iter()
            .map(|r| (r.name.as_str(), r.host.as_str(), r.port, r.weight))
            .collect();
        assert_eq!(
            replicas,
            [("r1", "r1.host", 5001, 4), ("r2", "r2.host", 5002, 1)]
        );
        assert_eq!(topology.shards[1].primary.name, "q");
        assert_eq!(
            (topology.user.as_str(), topology.dbname.as_str()),
            ("u", "d")
        );
    }
}
