//! The validated [`Scenario`] written back as scenario TOML, for runs built in code (a lighter
//! variant, a failing seed found by exploring) that must be replayable with `replisim run FILE`.
//!
//! The text round-trips: `parse(&scenario.to_toml()?, ..)` gives back an equal `Scenario` for every
//! scenario `parse` produced, and for any scenario built from one within the limits. Keys at their
//! default are left out, so a written file reads like a hand-written one.

use std::fmt::Write as _;
use std::time::Duration;

use super::duration::format_duration;
use super::model::{
    DurationRange, ExploreSpec, Fault, FaultKind, Invariant, LatencyOp, Node, Scenario, Shard,
    Workload,
};
use super::router_section::balance_name;
use super::topology::{
    LINK_LATENCY_DEFAULT, QUERY_TIME_DEFAULT, REPLICATION_DELAY_DEFAULT, WEIGHT_DEFAULT,
};
use crate::router::RouterConfig;

/// A value the scenario format cannot hold (only possible for scenarios built in code).
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error("cannot write {key} as scenario TOML: {reason}")]
pub struct WriteError {
    /// The key, e.g. `seed` or `workload.rate`.
    pub key: String,
    /// Why not.
    pub reason: String,
}

impl Scenario {
    /// This scenario as scenario-file text that parses back to an equal `Scenario`.
    pub fn to_toml(&self) -> Result<String, WriteError> {
        // Destructured in full so that a field added to the model does not compile until it is
        // written here too.
        let Scenario {
            name,
            description,
            seed,
            duration,
            shards,
            nodes,
            router,
            workload,
            faults,
            invariants,
            explore,
        } = self;
        let mut out = Text::default();
        out.line("name", string(name));
        if !description.is_empty() {
            out.line("description", string(description));
        }
        out.line("seed", integer(*seed));
        out.line("duration", duration_text(*duration));
        for shard in shards {
            write_shard(&mut out, shard, nodes)?;
        }
        write_nodes(&mut out, nodes);
        write_router(&mut out, router)?;
        write_workload(&mut out, workload)?;
        for fault in faults {
            write_fault(&mut out, fault, nodes)?;
        }
        for invariant in invariants {
            write_invariant(&mut out, invariant)?;
        }
        if let Some(explore) = explore {
            write_explore(&mut out, explore, nodes)?;
        }
        Ok(out.0)
    }
}

/// The text being written, section by section.
#[derive(Default)]
struct Text(String);

impl Text {
    fn table(&mut self, header: &str) {
        let _ = write!(self.0, "\n{header}\n");
    }

    fn line(&mut self, key: &str, value: String) {
        let _ = writeln!(self.0, "{key} = {value}");
    }
}

fn write_shard(out: &mut Text, shard: &Shard, nodes: &[Node]) -> Result<(), WriteError> {
    let Shard {
        name,
        orgs_start,
        orgs_end,
        primary,
        replicas,
    } = shard;
    let node_name = |index: usize| {
        nodes
            .get(index)
            .map(|n| string(&n.name))
            .ok_or_else(|| WriteError {
                key: format!("shard {name}"),
                reason: format!("node index {index} is not a node"),
            })
    };
    out.table("[[shard]]");
    out.line("name", string(name));
    out.line("orgs", format!("[{orgs_start}, {orgs_end}]"));
    out.line("primary", node_name(*primary)?);
    let names = replicas
        .iter()
        .map(|&r| node_name(r))
        .collect::<Result<Vec<_>, _>>()?;
    out.line("replicas", format!("[{}]", names.join(", ")));
    let weights: Vec<u32> = replicas
        .iter()
        .filter_map(|&r| nodes.get(r).map(|n| n.weight))
        .collect();
    if weights.iter().any(|&w| w != WEIGHT_DEFAULT) {
        let listed: Vec<String> = weights.iter().map(u32::to_string).collect();
        out.line("weights", format!("[{}]", listed.join(", ")));
    }
    Ok(())
}

/// One `[node."<name>"]` table per node whose model differs from the defaults, with only the keys
/// that differ. (Names, roles, shards and weights come from the shards.)
fn write_nodes(out: &mut Text, nodes: &[Node]) {
    for node in nodes {
        let Node {
            name,
            shard: _,
            initial_role: _,
            query_time,
            replication_delay,
            link_latency,
            weight: _,
        } = node;
        let keys = [
            ("query_time", *query_time, QUERY_TIME_DEFAULT),
            (
                "replication_delay",
                *replication_delay,
                REPLICATION_DELAY_DEFAULT,
            ),
            ("link_latency", *link_latency, LINK_LATENCY_DEFAULT),
        ];
        if keys.iter().all(|(_, value, default)| value == default) {
            continue;
        }
        out.table(&format!("[node.{}]", string(name)));
        for (key, value, default) in keys {
            if value != default {
                out.line(key, duration_text(value));
            }
        }
    }
}

fn write_router(out: &mut Text, router: &RouterConfig) -> Result<(), WriteError> {
    let RouterConfig {
        balance,
        balance_seed,
        health_interval,
        health_timeout,
        failure_threshold,
        recovery_threshold,
        use_read_replicas,
        max_replica_lag,
        read_your_writes,
        max_connections_per_node,
        min_connections_per_node,
        max_connections_per_user,
        max_connections_per_org,
        max_idle_time,
        max_lifetime,
        connect_timeout,
        query_timeout,
        read_retries,
        ejection_time,
        ejection_time_max,
        slow_request_ejection,
        max_ejection_percent,
        outlier_ejection,
        cancel_abandoned,
        replica_count,
        follow_promotion,
        // TLS is not simulated: a scenario never sets it.
        sslmode: _,
        sslrootcert: _,
    } = router;
    let d = RouterConfig::default();
    let mut lines: Vec<(&str, String)> = Vec::new();
    let mut set = |key, differs: bool, value: String| {
        if differs {
            lines.push((key, value));
        }
    };
    set(
        "balance",
        *balance != d.balance,
        string(balance_name(*balance)),
    );
    set(
        "balance_seed",
        balance_seed.is_some(),
        integer(balance_seed.unwrap_or(0)),
    );
    let durations = [
        ("health_interval", *health_interval, d.health_interval),
        ("health_timeout", *health_timeout, d.health_timeout),
        ("max_idle_time", *max_idle_time, d.max_idle_time),
        ("max_lifetime", *max_lifetime, d.max_lifetime),
        ("connect_timeout", *connect_timeout, d.connect_timeout),
        ("query_timeout", *query_timeout, d.query_timeout),
        ("ejection_time", *ejection_time, d.ejection_time),
        ("ejection_time_max", *ejection_time_max, d.ejection_time_max),
        (
            "slow_request_ejection",
            *slow_request_ejection,
            d.slow_request_ejection,
        ),
    ];
    for (key, value, default) in durations {
        set(key, value != default, duration_text(value));
    }
    if let Some(lag) = max_replica_lag {
        set("max_replica_lag", true, duration_text(*lag));
    }
    let numbers = [
        ("failure_threshold", *failure_threshold, d.failure_threshold),
        (
            "recovery_threshold",
            *recovery_threshold,
            d.recovery_threshold,
        ),
        (
            "max_connections_per_node",
            *max_connections_per_node,
            d.max_connections_per_node,
        ),
        // Left out, the idle minimum is the default lowered to the maximum (see `router_section`).
        (
            "min_connections_per_node",
            *min_connections_per_node,
            d.min_connections_per_node.min(*max_connections_per_node),
        ),
        (
            "max_connections_per_user",
            *max_connections_per_user,
            d.max_connections_per_user,
        ),
        (
            "max_connections_per_org",
            *max_connections_per_org,
            d.max_connections_per_org,
        ),
        ("read_retries", *read_retries, d.read_retries),
    ];
    for (key, value, default) in numbers {
        set(key, value != default, value.to_string());
    }
    if let Some(percent) = max_ejection_percent {
        set("max_ejection_percent", true, percent.to_string());
    }
    if let Some(count) = replica_count {
        set("replica_count", true, count.to_string());
    }
    let flags = [
        ("use_read_replicas", *use_read_replicas, d.use_read_replicas),
        ("read_your_writes", *read_your_writes, d.read_your_writes),
        ("follow_promotion", *follow_promotion, d.follow_promotion),
        ("outlier_ejection", *outlier_ejection, d.outlier_ejection),
        ("cancel_abandoned", *cancel_abandoned, d.cancel_abandoned),
    ];
    for (key, value, default) in flags {
        set(key, value != default, value.to_string());
    }
    if !lines.is_empty() {
        out.table("[router]");
        for (key, value) in lines {
            out.line(key, value);
        }
    }
    Ok(())
}

fn write_workload(out: &mut Text, workload: &Workload) -> Result<(), WriteError> {
    let Workload {
        clients,
        rate,
        think_time,
        users,
        orgs,
        org_skew,
        keys_per_org,
        read_ratio,
        primary_read_ratio,
        transaction_ratio,
    } = workload;
    let d = Workload::default();
    let mut lines: Vec<(&str, String)> = Vec::new();
    if *clients != d.clients {
        lines.push(("clients", clients.to_string()));
    }
    if let Some(rate) = rate {
        lines.push(("rate", float(*rate, "workload.rate")?));
    }
    if *think_time != d.think_time {
        lines.push(("think_time", duration_text(*think_time)));
    }
    let counts = [
        ("users", *users, d.users),
        ("orgs", *orgs, d.orgs),
        ("keys_per_org", *keys_per_org, d.keys_per_org),
    ];
    for (key, value, default) in counts {
        if value != default {
            lines.push((key, integer(value)));
        }
    }
    let shares = [
        ("org_skew", *org_skew, d.org_skew),
        ("read_ratio", *read_ratio, d.read_ratio),
        (
            "primary_read_ratio",
            *primary_read_ratio,
            d.primary_read_ratio,
        ),
        ("transaction_ratio", *transaction_ratio, d.transaction_ratio),
    ];
    for (key, value, default) in shares {
        if value.to_bits() != default.to_bits() {
            lines.push((key, float(value, &format!("workload.{key}"))?));
        }
    }
    if !lines.is_empty() {
        out.table("[workload]");
        for (key, value) in lines {
            out.line(key, value);
        }
    }
    Ok(())
}

fn write_fault(out: &mut Text, fault: &Fault, nodes: &[Node]) -> Result<(), WriteError> {
    let Fault {
        at,
        kind,
        target,
        duration,
    } = fault;
    let target = nodes.get(*target).ok_or_else(|| WriteError {
        key: "fault target".to_owned(),
        reason: format!("node index {target} is not a node"),
    })?;
    out.table("[[fault]]");
    out.line("at", duration_text(*at));
    out.line("kind", string(kind.name()));
    out.line("target", string(&target.name));
    if let Some(duration) = duration {
        out.line("duration", duration_text(*duration));
    }
    match kind {
        FaultKind::Latency { latency } => out.line("latency", duration_text(*latency)),
        FaultKind::Lag { delay } => out.line("delay", duration_text(*delay)),
        FaultKind::Slow { factor } => out.line("factor", float(*factor, "fault factor")?),
        FaultKind::Crash
        | FaultKind::Restart
        | FaultKind::Partition
        | FaultKind::Heal
        | FaultKind::DropConnections
        | FaultKind::PauseReplay
        | FaultKind::ResumeReplay
        | FaultKind::Promote => {}
    }
    Ok(())
}

fn write_invariant(out: &mut Text, invariant: &Invariant) -> Result<(), WriteError> {
    out.table("[[invariant]]");
    out.line("kind", string(invariant.name()));
    match invariant {
        Invariant::FailoverWithin { max } | Invariant::MaxStaleness { max } => {
            out.line("max", duration_text(*max));
        }
        Invariant::ReplicaReadShare { min } => out.line("min", float(*min, "invariant min")?),
        Invariant::Latency {
            op,
            percentile,
            max,
        } => {
            let op = match op {
                LatencyOp::Read => "read",
                LatencyOp::Write => "write",
                LatencyOp::All => "all",
            };
            out.line("op", string(op));
            out.line("percentile", float(*percentile, "invariant percentile")?);
            out.line("max", duration_text(*max));
        }
        Invariant::NoFailedQueries { max_error_rate } => {
            out.line(
                "max_error_rate",
                float(*max_error_rate, "invariant max_error_rate")?,
            );
        }
        Invariant::WritesOnlyPrimary
        | Invariant::ReadYourWrites
        | Invariant::CapsRespected
        | Invariant::OrgRouting
        | Invariant::TransactionsAtomic => {}
    }
    Ok(())
}

/// `[explore]` with the keys that were given; a table with none is still written, so that a file
/// that had one keeps it.
fn write_explore(out: &mut Text, explore: &ExploreSpec, nodes: &[Node]) -> Result<(), WriteError> {
    let ExploreSpec {
        faults,
        kinds,
        targets,
        at,
        fault_duration,
        latency,
        delay,
        factor,
        query_time,
        replication_delay,
        link_latency,
        clients,
        rate,
        think_time,
        read_ratio,
        org_skew,
    } = explore;
    out.table("[explore]");
    let whole = |(min, max): (u32, u32)| format!("[{min}, {max}]");
    let durations =
        |(min, max): DurationRange| format!("[{}, {}]", duration_text(min), duration_text(max));
    let numbers = |(min, max): (f64, f64), key: &str| -> Result<String, WriteError> {
        let key = format!("explore.{key}");
        Ok(format!("[{}, {}]", float(min, &key)?, float(max, &key)?))
    };
    if let Some(pair) = faults {
        out.line("faults", whole(*pair));
    }
    if let Some(kinds) = kinds {
        let names: Vec<String> = kinds.iter().map(|k| string(k.name())).collect();
        out.line("kinds", format!("[{}]", names.join(", ")));
    }
    if let Some(targets) = targets {
        let names = targets
            .iter()
            .map(|&t| {
                nodes
                    .get(t)
                    .map(|n| string(&n.name))
                    .ok_or_else(|| WriteError {
                        key: "explore.targets".to_owned(),
                        reason: format!("node index {t} is not a node"),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.line("targets", format!("[{}]", names.join(", ")));
    }
    let duration_keys = [
        ("at", at),
        ("fault_duration", fault_duration),
        ("latency", latency),
        ("delay", delay),
    ];
    for (key, pair) in duration_keys {
        if let Some(pair) = pair {
            out.line(key, durations(*pair));
        }
    }
    if let Some(pair) = factor {
        out.line("factor", numbers(*pair, "factor")?);
    }
    let node_keys = [
        ("query_time", query_time),
        ("replication_delay", replication_delay),
        ("link_latency", link_latency),
    ];
    for (key, pair) in node_keys {
        if let Some(pair) = pair {
            out.line(key, durations(*pair));
        }
    }
    if let Some(pair) = clients {
        out.line("clients", whole(*pair));
    }
    if let Some(pair) = rate {
        out.line("rate", numbers(*pair, "rate")?);
    }
    if let Some(pair) = think_time {
        out.line("think_time", durations(*pair));
    }
    if let Some(pair) = read_ratio {
        out.line("read_ratio", numbers(*pair, "read_ratio")?);
    }
    if let Some(pair) = org_skew {
        out.line("org_skew", numbers(*pair, "org_skew")?);
    }
    Ok(())
}

/// A TOML basic string: quotes, backslashes and control characters escaped.
fn string(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\t' => quoted.push_str("\\t"),
            '\r' => quoted.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(quoted, "\\u{:04X}", u32::from(c));
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// An integer. The TOML parser the scenario files go through reads the whole `u64` range (TOML
/// itself promises only `i64`), so a seed above `i64::MAX` is written as it is.
fn integer(value: u64) -> String {
    value.to_string()
}

/// A TOML float that reads back as exactly `value`: Rust's `Debug` is the shortest text that
/// round-trips, and always has a `.` or an exponent (`1.0`, `1e300`), so TOML reads a float.
fn float(value: f64, key: &str) -> Result<String, WriteError> {
    if !value.is_finite() {
        return Err(WriteError {
            key: key.to_owned(),
            reason: format!("{value} is not a finite number"),
        });
    }
    Ok(format!("{value:?}"))
}

/// A duration string; whole hours are written in minutes (`"120m"`), a unit every scenario tool
/// reads.
fn duration_text(duration: Duration) -> String {
    let text = format_duration(duration);
    match text
        .strip_suffix('h')
        .and_then(|hours| hours.parse::<u64>().ok())
    {
        Some(hours) => format!("\"{}m\"", hours.saturating_mul(60)),
        None => format!("\"{text}\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_escape_what_toml_needs() {
        assert_eq!(string("a\"b\\c\nd\u{1}é"), "\"a\\\"b\\\\c\\nd\\u0001é\"");
    }

    #[test]
    fn floats_always_read_back_as_floats() {
        assert_eq!(float(1.0, "k"), Ok("1.0".to_owned()));
        assert_eq!(float(1e300, "k"), Ok("1e300".to_owned()));
        assert_eq!(float(0.8, "k"), Ok("0.8".to_owned()));
        assert!(float(f64::NAN, "k").is_err());
    }

    #[test]
    fn whole_hours_are_written_in_minutes() {
        assert_eq!(duration_text(Duration::from_secs(7200)), "\"120m\"");
        assert_eq!(duration_text(Duration::from_millis(1500)), "\"1.5s\"");
        assert_eq!(duration_text(Duration::from_secs(5400)), "\"90m\"");
    }
}
