//! `[[invariant]]`: each invariant's kind and the keys that kind takes, in range.

use toml::Spanned;

use super::error::Issue;
use super::model::{Invariant, LatencyOp};
use super::raw::{RawInvariant, key_offset};
use super::validate::{list, missing_key, positive_duration, ratio_value};

/// Every invariant kind with the keys it takes besides `kind`.
const KINDS: [(&str, &[&str]); 10] = [
    ("writes_only_primary", &[]),
    ("failover_within", &["max"]),
    ("replica_read_share", &["min"]),
    ("latency", &["op", "percentile", "max"]),
    ("no_failed_queries", &["max_error_rate"]),
    ("max_staleness", &["max"]),
    ("read_your_writes", &[]),
    ("caps_respected", &[]),
    ("org_routing", &[]),
    ("transactions_atomic", &[]),
];

/// Resolves the invariants in file order.
pub(crate) fn resolve(raw: &[Spanned<RawInvariant>], text: &str) -> Result<Vec<Invariant>, Issue> {
    raw.iter()
        .enumerate()
        .map(|(index, invariant)| {
            resolve_one(invariant, text).map_err(|i| i.within(&format!("invariant {}", index + 1)))
        })
        .collect()
}

/// One invariant.
fn resolve_one(raw: &Spanned<RawInvariant>, text: &str) -> Result<Invariant, Issue> {
    let table = raw.get_ref();
    let kind = table
        .kind
        .as_ref()
        .ok_or_else(|| missing_key(raw.span(), "kind"))?;
    let unknown = || {
        Issue::at(
            kind.span(),
            format!(
                "unknown kind \"{}\" (expected one of: {})",
                kind.get_ref(),
                list(KINDS.iter().map(|(name, _)| *name))
            ),
        )
    };
    let &(name, keys) = KINDS
        .iter()
        .find(|(name, _)| name == kind.get_ref())
        .ok_or_else(unknown)?;
    let present = [
        ("max", table.max.as_ref().map(Spanned::span)),
        ("min", table.min.as_ref().map(Spanned::span)),
        ("op", table.op.as_ref().map(Spanned::span)),
        ("percentile", table.percentile.as_ref().map(Spanned::span)),
        (
            "max_error_rate",
            table.max_error_rate.as_ref().map(Spanned::span),
        ),
    ];
    for (key, span) in present {
        if let Some(span) = span.filter(|_| !keys.contains(&key)) {
            let takes = if keys.is_empty() {
                "no other keys".to_owned()
            } else {
                list(keys.iter().copied())
            };
            let offset = key_offset(text, key, &span);
            return Err(Issue::at(
                offset..offset,
                format!("key `{key}` does not belong to kind \"{name}\" ({name} takes: {takes})"),
            ));
        }
    }
    let needs = |key: &str, example: &str| {
        Issue::at(
            raw.span(),
            format!("kind \"{name}\" needs key `{key}` (e.g. {key} = {example})"),
        )
    };
    let max = || {
        let value = table.max.as_ref().ok_or_else(|| needs("max", "\"5s\""))?;
        positive_duration(value, "max")
    };
    Ok(match name {
        "writes_only_primary" => Invariant::WritesOnlyPrimary,
        "failover_within" => Invariant::FailoverWithin { max: max()? },
        "replica_read_share" => {
            let min = table.min.as_ref().ok_or_else(|| needs("min", "0.9"))?;
            Invariant::ReplicaReadShare {
                min: ratio_value(min, "min")?,
            }
        }
        "latency" => {
            let op = table.op.as_ref().ok_or_else(|| needs("op", "\"read\""))?;
            let percentile = table
                .percentile
                .as_ref()
                .ok_or_else(|| needs("percentile", "99"))?;
            Invariant::Latency {
                op: latency_op(op)?,
                percentile: percentile_value(percentile)?,
                max: max()?,
            }
        }
        "no_failed_queries" => Invariant::NoFailedQueries {
            max_error_rate: table
                .max_error_rate
                .as_ref()
                .map_or(Ok(0.0), |value| ratio_value(value, "max_error_rate"))?,
        },
        "max_staleness" => Invariant::MaxStaleness { max: max()? },
        "read_your_writes" => Invariant::ReadYourWrites,
        "caps_respected" => Invariant::CapsRespected,
        "org_routing" => Invariant::OrgRouting,
        "transactions_atomic" => Invariant::TransactionsAtomic,
        _ => return Err(unknown()),
    })
}

/// `read`, `write` or `all`.
fn latency_op(value: &Spanned<String>) -> Result<LatencyOp, Issue> {
    match value.get_ref().as_str() {
        "read" => Ok(LatencyOp::Read),
        "write" => Ok(LatencyOp::Write),
        "all" => Ok(LatencyOp::All),
        other => Err(Issue::at(
            value.span(),
            format!("op must be \"read\", \"write\" or \"all\", got \"{other}\""),
        )),
    }
}

/// A percentile in (0, 100].
fn percentile_value(value: &Spanned<f64>) -> Result<f64, Issue> {
    let percentile = *value.get_ref();
    if !(percentile > 0.0 && percentile <= 100.0) {
        return Err(Issue::at(
            value.span(),
            format!("percentile must be in (0, 100], e.g. 99 or 99.9, got {percentile}"),
        ));
    }
    Ok(percentile)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_name_matches_the_model() {
        for (name, keys) in KINDS {
            let raw = RawInvariant {
                kind: Some(Spanned::new(0..1, name.to_owned())),
                max: keys
                    .contains(&"max")
                    .then(|| Spanned::new(0..1, "1s".to_owned())),
                min: keys.contains(&"min").then(|| Spanned::new(0..1, 0.5)),
                op: keys
                    .contains(&"op")
                    .then(|| Spanned::new(0..1, "all".to_owned())),
                percentile: keys
                    .contains(&"percentile")
                    .then(|| Spanned::new(0..1, 99.0)),
                max_error_rate: None,
            };
            let invariant = resolve_one(&Spanned::new(0..1, raw), "").expect(name);
            assert_eq!(invariant.name(), name);
        }
    }

    #[test]
    fn percentile_bounds() {
        let at = |x: f64| Spanned::new(0..1, x);
        assert!(percentile_value(&at(0.0)).is_err());
        assert!(percentile_value(&at(100.1)).is_err());
        assert!(percentile_value(&at(f64::NAN)).is_err());
        assert_eq!(percentile_value(&at(100.0)), Ok(100.0));
        assert_eq!(percentile_value(&at(99.9)), Ok(99.9));
    }
}
