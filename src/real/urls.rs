//! `--url NODE=postgres://...`: servers run by someone else instead of a cluster replisim starts.
//! Every node of the scenario needs one, all with the same user, database and password (the router
//! logs in to every node the same way).
//!
//! The router reaches each server through the run's fault proxy, whose records of the statements
//! that crossed it are the run's evidence; it cannot read them inside TLS, so a URL that asks for
//! TLS (`sslmode` other than `disable`, or `sslrootcert`) is refused rather than ignored.

use std::str::FromStr;

use crate::record::events::NodeIdx;
use crate::router::Password;
use crate::scenario::Scenario;

/// The external servers of a run, by node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalNodes {
    /// `(host, port)` of every node, in scenario node order.
    pub addresses: Vec<(String, u16)>,
    /// The login user.
    pub user: String,
    /// The database.
    pub dbname: String,
    /// The password, if the URLs carry one.
    pub password: Option<Password>,
}

/// Why `--url` values cannot be used (the message names the value and what to change).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("--url {value}: {problem}")]
pub struct UrlError {
    /// The offending value (without its password).
    pub value: String,
    /// What is wrong with it.
    pub problem: String,
}

fn error(value: &str, problem: impl Into<String>) -> UrlError {
    UrlError {
        value: value.split('=').next().unwrap_or(value).to_string() + "=...",
        problem: problem.into(),
    }
}

/// Resolves `NODE=URL` values against the scenario's nodes.
pub fn parse(scenario: &Scenario, values: &[String]) -> Result<ExternalNodes, UrlError> {
    let mut found: Vec<Option<(String, u16)>> = vec![None; scenario.nodes.len()];
    let mut login: Option<(String, String, Option<String>)> = None;
    for value in values {
        let Some((node, url)) = value.split_once('=') else {
            return Err(error(value, "expected NODE=postgres://USER@HOST:PORT/DB"));
        };
        let Some(idx) = scenario.nodes.iter().position(|n| n.name == node) else {
            return Err(error(value, format!("the scenario has no node `{node}`")));
        };
        if let Some(problem) = asks_for_tls(url) {
            return Err(error(value, problem));
        }
        let config = tokio_postgres::Config::from_str(url)
            .map_err(|e| error(value, format!("not a PostgreSQL URL: {e}")))?;
        let host = match config.get_hosts() {
            [tokio_postgres::config::Host::Tcp(host)] => host.clone(),
            _ => return Err(error(value, "give exactly one TCP host")),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let this_login = (
            config.get_user().unwrap_or("postgres").to_string(),
            config.get_dbname().unwrap_or("postgres").to_string(),
            config
                .get_password()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
        );
        match &login {
            Some(first) if *first != this_login => {
                return Err(error(
                    value,
                    "every node must use the same user, database and password",
                ));
            }
            _ => login = Some(this_login),
        }
        match found.get_mut(idx) {
            Some(slot @ None) => *slot = Some((host, port)),
            _ => return Err(error(value, format!("node `{node}` is given twice"))),
        }
    }
    let mut addresses = Vec::with_capacity(found.len());
    for (idx, address) in found.into_iter().enumerate() {
        match address {
            Some(address) => addresses.push(address),
            None => return Err(missing(scenario, idx)),
        }
    }
    let (user, dbname, password) = login.unwrap_or_default();
    Ok(ExternalNodes {
        addresses,
        user,
        dbname,
        password: password.map(Password::new),
    })
}

/// Why `url` cannot be used if its query string asks for TLS.
fn asks_for_tls(url: &str) -> Option<String> {
    let (_, query) = url.split_once('?')?;
    let asked = query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" if !value.eq_ignore_ascii_case("disable") => Some(format!("sslmode={value}")),
            "sslrootcert" => Some("sslrootcert".to_string()),
            _ => None,
        }
    })?;
    Some(format!(
        "{asked}: real mode connects in plain text, because its fault proxy in front of each \
         node records the statements it judges the run by and cannot read them inside TLS (the \
         router's own TLS is DB_SSLMODE / RouterConfig::sslmode; tests/real/tls.rs tests it)"
    ))
}

fn missing(scenario: &Scenario, idx: NodeIdx) -> UrlError {
    let name = scenario.nodes.get(idx).map_or("?", |n| n.name.as_str());
    UrlError {
        value: format!("{name}=..."),
        problem: format!("node `{name}` has no --url; give one for every node or none"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::test_support::TestRun;

    fn all(scenario: &Scenario, port0: u16) -> Vec<String> {
        scenario
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| format!("{}=postgres://app@db{i}:{}/shop", n.name, port0 + i as u16))
            .collect()
    }

    #[test]
    fn every_node_gets_its_address_and_one_login() {
        let run = TestRun::new();
        let nodes =
            parse(&run.scenario, &all(&run.scenario, 6000)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(nodes.addresses.len(), run.scenario.nodes.len());
        assert_eq!(nodes.addresses[1], ("db1".to_string(), 6001));
        assert_eq!(
            (nodes.user.as_str(), nodes.dbname.as_str()),
            ("app", "shop")
        );
    }

    #[test]
    fn the_password_reaches_the_login_and_no_debug_output_or_error() {
        let run = TestRun::new();
        let with_password: Vec<String> = all(&run.scenario, 6000)
            .iter()
            .map(|v| v.replace("app@", "app:pw-s3cret@"))
            .collect();
        let nodes = parse(&run.scenario, &with_password).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            nodes.password.as_ref().map(Password::expose),
            Some("pw-s3cret")
        );
        let topology = run.scenario.router_topology(
            |i, _| nodes.addresses[i].clone(),
            crate::scenario::Login {
                user: nodes.user.clone(),
                dbname: nodes.dbname.clone(),
                password: nodes.password.clone(),
            },
        );
        for shown in [format!("{nodes:?}"), format!("{topology:#?}")] {
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(shown.contains("<redacted>"), "{shown}");
        }
        // Errors about a URL with a password name the node only.
        let mut clash = with_password.clone();
        clash[1] = clash[1].replace("pw-s3cret", "other-s3cret");
        let e = parse(&run.scenario, &clash).expect_err("two passwords");
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }

    #[test]
    fn a_url_asking_for_tls_is_refused_with_the_reason() {
        let run = TestRun::new();
        for query in [
            "?sslmode=require",
            "?sslmode=verify-full",
            "?sslrootcert=/ca.pem",
        ] {
            let mut values = all(&run.scenario, 6000);
            values[0].push_str(query);
            let refused = parse(&run.scenario, &values);
            assert!(
                refused
                    .as_ref()
                    .is_err_and(|e| e.problem.contains("plain text")),
                "{query}: {refused:?}"
            );
        }
        let mut values = all(&run.scenario, 6000);
        values[0].push_str("?sslmode=disable");
        assert!(parse(&run.scenario, &values).is_ok());
    }

    #[test]
    fn a_missing_or_unknown_node_is_an_error() {
        let run = TestRun::new();
        let mut values = all(&run.scenario, 6000);
        values.pop();
        assert!(parse(&run.scenario, &values).is_err_and(|e| e.problem.contains("has no --url")));
        let unknown = vec!["nobody=postgres://a@h/d".to_string()];
        assert!(parse(&run.scenario, &unknown).is_err_and(|e| e.problem.contains("no node")));
    }
}
