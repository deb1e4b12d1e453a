//! Parse-back checks of the exposition: a small reader of the text format that refuses anything the
//! format (0.0.4) or the router's own conventions do not allow, run over rendered snapshots.

use std::collections::BTreeSet;
use std::time::Duration;

use super::*;
use crate::router::lag::{NodeLag, ReplicaLag};
use crate::router::latency::StatementLatency;
use crate::router::route_reason::RouteCounters;

/// Label pairs in the order the text has them.
type Labels = Vec<(String, String)>;

#[derive(Debug)]
struct Sample {
    name: String,
    labels: Labels,
    value: f64,
}

impl Sample {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug)]
struct Family {
    name: String,
    kind: String,
    samples: Vec<Sample>,
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `key="value",...` up to the closing brace; returns the labels and the rest after the brace.
fn parse_labels(text: &str) -> Result<(Labels, &str), String> {
    let mut labels = Labels::new();
    let mut rest = text;
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        if !labels.is_empty() {
            rest = rest.strip_prefix(',').ok_or("labels not comma-separated")?;
        }
        let (key, after) = rest.split_once("=\"").ok_or("label without =\"")?;
        if !is_name(key) || labels.iter().any(|(k, _)| k == key) {
            return Err(format!("bad or repeated label name {key:?}"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((_, '\n')) => return Err("raw line feed in a label".into()),
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".into()),
            }
        };
        labels.push((key.to_string(), value));
        rest = &after[end + 1..];
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("sample without value")?;
    let name = &line[..name_end];
    if !is_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let (labels, rest) = match line[name_end..].strip_prefix('{') {
        Some(after) => parse_labels(after)?,
        None => (Vec::new(), &line[name_end..]),
    };
    let text = rest.strip_prefix(' ').ok_or("no space before the value")?;
    let value = match text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        _ => text
            .parse::<f64>()
            .map_err(|e| format!("value {text:?}: {e}"))?,
    };
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Reads the text and checks the rules of the format that a scraper relies on.
fn parse(text: &str) -> Result<Vec<Family>, String> {
    if !text.ends_with('\n') {
        return Err("text does not end with a line feed".into());
    }
    let mut families: Vec<Family> = Vec::new();
    let mut series = BTreeSet::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some(help) = line.strip_prefix("# HELP ") {
            let (name, _) = help.split_once(' ').ok_or("HELP without text")?;
            if families.iter().any(|f| f.name == name) {
                return Err(format!("{name} declared twice"));
            }
            let kind = lines
                .next()
                .and_then(|l| l.strip_prefix(&format!("# TYPE {name} ")))
                .ok_or(format!("HELP of {name} not followed by its TYPE"))?;
            if !["counter", "gauge", "histogram"].contains(&kind) {
                return Err(format!("{name}: unknown type {kind}"));
            }
            if !name.starts_with(PREFIX) {
                return Err(format!("{name} lacks the prefix"));
            }
            families.push(Family {
                name: name.to_string(),
                kind: kind.to_string(),
                samples: Vec::new(),
            });
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            return Err(format!("unexpected line {line:?}"));
        }
        let sample = parse_sample(line).map_err(|e| format!("{line:?}: {e}"))?;
        let family = families
            .last_mut()
            .ok_or(format!("{line:?} before any family"))?;
        let belongs = match family.kind.as_str() {
            "histogram" => ["_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| sample.name == format!("{}{suffix}", family.name)),
            _ => sample.name == family.name,
        };
        if !belongs {
            return Err(format!("{line:?} does not belong to {}", family.name));
        }
        if !series.insert(format!("{}{:?}", sample.name, sample.labels)) {
            return Err(format!("{line:?} repeats a series"));
        }
        family.samples.push(sample);
    }
    for family in families.iter().filter(|f| f.kind == "histogram") {
        check_histogram(family)?;
    }
    Ok(families)
}

/// The labels of `sample` other than `le`.
fn series_labels(sample: &Sample) -> Vec<&(String, String)> {
    sample.labels.iter().filter(|(k, _)| k != "le").collect()
}

/// Per series: buckets by rising `le` ending at +Inf, counts never falling, +Inf equal to `_count`.
fn check_histogram(family: &Family) -> Result<(), String> {
    let series: BTreeSet<_> = family.samples.iter().map(series_labels).collect();
    for labels in series {
        let of = |suffix: &str| -> Vec<&Sample> {
            let name = format!("{}{suffix}", family.name);
            family
                .samples
                .iter()
                .filter(|s| s.name == name && series_labels(s) == labels)
                .collect()
        };
        let mut previous = (f64::NEG_INFINITY, 0.0);
        for bucket in of("_bucket") {
            let le = match bucket.label("le") {
                Some("+Inf") => f64::INFINITY,
                Some(le) => le.parse::<f64>().map_err(|e| format!("le {le}: {e}"))?,
                None => return Err(format!("{labels:?}: bucket without le")),
            };
            if le <= previous.0 || bucket.value < previous.1 {
                return Err(format!("{labels:?}: bucket le={le} out of order"));
            }
            previous = (le, bucket.value);
        }
        let count = of("_count").first().map(|s| s.value);
        if previous.0 != f64::INFINITY || count != Some(previous.1) {
            return Err(format!(
                "{labels:?}: +Inf bucket {} vs _count {count:?}",
                previous.1
            ));
        }
        if of("_sum").len() != 1 {
            return Err(format!("{labels:?}: no single _sum"));
        }
    }
    Ok(())
}

fn node(name: &str, role: ServedRole, routes: &[(RouteReason, u64)], us: &[u64]) -> NodeMetrics {
    let counters = RouteCounters::default();
    for &(reason, n) in routes {
        for _ in 0..n {
            counters.count(reason);
        }
    }
    let latency = StatementLatency::default();
    for &value in us {
        latency.record(Duration::from_micros(value));
    }
    let attempts = routes
        .iter()
        .filter(|(reason, _)| reason.is_decision())
        .map(|(_, n)| n)
        .sum();
    NodeMetrics {
        stats: NodeStatsSnapshot {
            name: name.to_string(),
            shard: "s1".to_string(),
            role,
            reported_role: Some(role),
            healthy: role == ServedRole::Primary,
            attempts,
            successes: attempts.saturating_sub(1),
            errors: u64::from(attempts > 0),
            cancelled: 0,
            in_flight: 2,
            abandoned: 3,
            cancels_sent: 2,
            open_connections: 3,
            idle_connections: 1,
            max_connections: 8,
            pool_utilisation: 3.0 / 8.0,
            checks_ok: 5,
            checks_failed: 1,
        },
        routes: counters.snapshot(),
        latency: latency.snapshot(),
        lag: lag(role, us),
    }
}

/// A replica's lag record with one probe per value of `us`; a primary's is empty.
fn lag(role: ServedRole, us: &[u64]) -> LagSnapshot {
    let record = NodeLag::default();
    if role == ServedRole::Replica {
        for &value in us {
            let lag = ReplicaLag {
                bytes: value * 10,
                time: Duration::from_micros(value),
            };
            record.record(lag, None);
        }
    }
    record.snapshot()
}

fn snapshot() -> MetricsSnapshot {
    MetricsSnapshot {
        nodes: vec![
            node(
                "primary-1",
                ServedRole::Primary,
                &[
                    (RouteReason::Write, 4),
                    (RouteReason::FallbackPrimary, 2),
                    (RouteReason::CapWait, 1),
                ],
                &[700, 1_000, 3_000_000, 45_000_000],
            ),
            node(
                "replica \"a\\b\"\nx",
                ServedRole::Replica,
                &[(RouteReason::RoundRobin, 7), (RouteReason::Retry, 1)],
                &[10, 20, 2_500],
            ),
            node("replica-idle", ServedRole::Replica, &[], &[]),
        ],
        cap_timeouts: CapTimeouts { user: 3, org: 0 },
    }
}

fn families() -> Vec<Family> {
    match parse(&render_prometheus(&snapshot())) {
        Ok(families) => families,
        Err(error) => panic!("the exposition does not parse back: {error}"),
    }
}

fn value(families: &[Family], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    families
        .iter()
        .flat_map(|f| &f.samples)
        .find(|s| {
            s.name == format!("{PREFIX}{name}")
                && labels.iter().all(|(k, v)| s.label(k) == Some(*v))
        })
        .map(|s| s.value)
}

#[test]
fn the_exposition_parses_back() {
    let families = families();
    let node_labels = ["node", "shard", "role"];
    for family in &families {
        for sample in &family.samples {
            let keys: Vec<&str> = sample.labels.iter().map(|(k, _)| k.as_str()).collect();
            let allowed = match family.name.trim_start_matches(PREFIX) {
                "routes_total" => [&node_labels[..], &["reason"]].concat(),
                "statement_duration_seconds" | "replica_lag_history_seconds"
                    if sample.name.ends_with("_bucket") =>
                {
                    [&node_labels[..], &["le"]].concat()
                }
                "cap_timeouts_total" => vec!["reason"],
                _ => node_labels.to_vec(),
            };
            assert_eq!(keys, allowed, "{} labels", sample.name);
        }
    }
    assert_eq!(families.len(), NODE_FAMILIES.len() + 4);
    let odd = value(
        &families,
        "attempts_total",
        &[("node", "replica \"a\\b\"\nx")],
    );
    assert_eq!(odd, Some(8.0), "an escaped node name reads back whole");
}

#[test]
fn lag_gauges_and_history_reflect_the_last_probe_and_every_probe() {
    let families = families();
    let replica = [("node", "replica \"a\\b\"\nx")];
    assert_eq!(
        value(&families, "replica_lag_bytes", &replica),
        Some(25_000.0)
    );
    assert_eq!(
        value(&families, "replica_lag_seconds", &replica),
        Some(0.0025)
    );
    assert_eq!(
        value(&families, "replica_lag_history_seconds_count", &replica),
        Some(3.0)
    );
    let primary = [("node", "primary-1")];
    assert_eq!(value(&families, "replica_lag_seconds", &primary), Some(0.0));
    assert_eq!(
        value(&families, "replica_lag_history_seconds_count", &primary),
        Some(0.0)
    );
}

#[test]
fn counters_reflect_the_snapshot() {
    let families = families();
    let primary = [("node", "primary-1")];
    let with = |reason: &'static str| [("node", "primary-1"), ("reason", reason)];
    assert_eq!(value(&families, "attempts_total", &primary), Some(6.0));
    assert_eq!(
        value(&families, "attempts_errors_total", &primary),
        Some(1.0)
    );
    assert_eq!(value(&families, "routes_total", &with("write")), Some(4.0));
    assert_eq!(
        value(&families, "routes_total", &with("fallback_primary")),
        Some(2.0)
    );
    assert_eq!(
        value(&families, "routes_total", &with("cap_wait")),
        Some(1.0)
    );
    assert_eq!(value(&families, "routes_total", &with("retry")), Some(0.0));
    assert_eq!(
        value(&families, "pool_utilisation_ratio", &primary),
        Some(0.375)
    );
    assert_eq!(value(&families, "node_healthy", &primary), Some(1.0));
    assert_eq!(
        value(&families, "cap_timeouts_total", &[("reason", "user_cap")]),
        Some(3.0)
    );
    let bucket = |le: &'static str| {
        value(
            &families,
            "statement_duration_seconds_bucket",
            &[("node", "primary-1"), ("le", le)],
        )
    };
    assert_eq!(bucket("0.0005"), Some(0.0));
    assert_eq!(bucket("0.001"), Some(2.0), "700 us and 1 ms");
    assert_eq!(bucket("5"), Some(3.0));
    assert_eq!(bucket("30"), Some(3.0));
    assert_eq!(bucket("+Inf"), Some(4.0), "45 s is past the last bound");
    assert_eq!(
        value(&families, "statement_duration_seconds_sum", &primary),
        Some(48.0017)
    );
}

#[test]
fn the_text_is_deterministic_and_ordered() {
    let text = render_prometheus(&snapshot());
    assert_eq!(text, render_prometheus(&snapshot()));
    let families = families();
    let routes = families
        .iter()
        .find(|f| f.name == format!("{PREFIX}routes_total"));
    let Some(routes) = routes else {
        panic!("no routes_total family");
    };
    let order: Vec<(&str, &str)> = routes
        .samples
        .iter()
        .filter_map(|s| Some((s.label("node")?, s.label("reason")?)))
        .collect();
    let expected: Vec<(&str, &str)> = ["primary-1", "replica \"a\\b\"\nx", "replica-idle"]
        .into_iter()
        .flat_map(|node| RouteReason::ALL.iter().map(move |r| (node, r.label())))
        .collect();
    assert_eq!(order, expected, "topology order, then reason order");
}

#[test]
fn an_empty_router_still_renders_valid_text() {
    let empty = MetricsSnapshot {
        nodes: Vec::new(),
        cap_timeouts: CapTimeouts::default(),
    };
    let parsed = parse(&render_prometheus(&empty));
    assert!(parsed.is_ok(), "{parsed:?}");
}

#[test]
fn durations_print_as_exact_seconds() {
    let printed: Vec<String> = [0, 1, 500, 1_000_000, 2_500_000, 48_001_700]
        .into_iter()
        .map(seconds)
        .collect();
    assert_eq!(printed, ["0", "0.000001", "0.0005", "1", "2.5", "48.0017"]);
}

#[test]
fn the_reader_refuses_broken_text() {
    let text = render_prometheus(&snapshot());
    let broken = [
        // A sample of an undeclared family.
        format!("{text}replisim_router_unknown 1\n"),
        // A bucket count that falls.
        text.replacen("le=\"+Inf\"} 4", "le=\"+Inf\"} 1", 1),
        // +Inf disagreeing with _count.
        text.replacen(
            "statement_duration_seconds_count{node=\"primary-1\",shard=\"s1\",role=\"primary\"} 4",
            "statement_duration_seconds_count{node=\"primary-1\",shard=\"s1\",role=\"primary\"} 5",
            1,
        ),
        // A raw quote in a label value.
        text.replacen("node=\"primary-1\"", "node=\"prim\"ary\"", 1),
        // A family declared twice.
        format!("{text}# HELP {PREFIX}in_flight again\n# TYPE {PREFIX}in_flight gauge\n"),
    ];
    for (i, variant) in broken.iter().enumerate() {
        assert_ne!(variant, &text, "variant {i} changed nothing");
        assert!(parse(variant).is_err(), "variant {i} was accepted");
    }
}
