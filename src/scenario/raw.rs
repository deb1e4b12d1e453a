//! The scenario file as written: serde structs that mirror the TOML, with the source position of
//! every value a later check may complain about. Unknown keys are refused here, with their position.
//!
//! Fault and invariant tables hold the keys of every kind; which of them a given kind accepts is
//! checked during validation, where the kind is known.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::error::Issue;

/// The whole file.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScenario {
    pub(crate) name: Option<Spanned<String>>,
    pub(crate) description: Option<String>,
    pub(crate) seed: Option<u64>,
    pub(crate) duration: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) shard: Vec<Spanned<RawShard>>,
    #[serde(default)]
    pub(crate) node: BTreeMap<Spanned<String>, RawNodeModel>,
    #[serde(default)]
    pub(crate) router: RawRouter,
    #[serde(default)]
    pub(crate) workload: RawWorkload,
    #[serde(default)]
    pub(crate) fault: Vec<Spanned<RawFault>>,
    #[serde(default)]
    pub(crate) invariant: Vec<Spanned<RawInvariant>>,
    pub(crate) explore: Option<Spanned<RawExplore>>,
}

/// One `[[shard]]`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawShard {
    pub(crate) name: Option<Spanned<String>>,
    pub(crate) orgs: Option<Spanned<Vec<i64>>>,
    pub(crate) primary: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) replicas: Vec<Spanned<String>>,
    pub(crate) weights: Option<Spanned<Vec<Spanned<i64>>>>,
}

/// `[node.default]` or `[node.<name>]`.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNodeModel {
    pub(crate) query_time: Option<Spanned<String>>,
    pub(crate) replication_delay: Option<Spanned<String>>,
    pub(crate) link_latency: Option<Spanned<String>>,
}

/// `[router]`.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRouter {
    pub(crate) balance: Option<Spanned<String>>,
    pub(crate) health_interval: Option<Spanned<String>>,
    pub(crate) health_timeout: Option<Spanned<String>>,
    pub(crate) failure_threshold: Option<Spanned<u32>>,
    pub(crate) recovery_threshold: Option<Spanned<u32>>,
    pub(crate) use_read_replicas: Option<bool>,
    pub(crate) max_replica_lag: Option<Spanned<String>>,
    pub(crate) read_your_writes: Option<Spanned<bool>>,
    pub(crate) max_connections_per_node: Option<Spanned<u32>>,
    pub(crate) min_connections_per_node: Option<Spanned<u32>>,
    pub(crate) max_connections_per_user: Option<Spanned<u32>>,
    pub(crate) max_connections_per_org: Option<Spanned<u32>>,
    pub(crate) max_idle_time: Option<Spanned<String>>,
    pub(crate) max_lifetime: Option<Spanned<String>>,
    pub(crate) connect_timeout: Option<Spanned<String>>,
    pub(crate) query_timeout: Option<Spanned<String>>,
    pub(crate) read_retries: Option<Spanned<u32>>,
    pub(crate) ejection_time: Option<Spanned<String>>,
    pub(crate) ejection_time_max: Option<Spanned<String>>,
    pub(crate) slow_request_ejection: Option<Spanned<String>>,
    pub(crate) max_ejection_percent: Option<Spanned<u32>>,
    pub(crate) outlier_ejection: Option<bool>,
    pub(crate) cancel_abandoned: Option<bool>,
    pub(crate) balance_seed: Option<u64>,
    pub(crate) replica_count: Option<u32>,
    pub(crate) follow_promotion: Option<bool>,
}

/// `[workload]`.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWorkload {
    pub(crate) clients: Option<Spanned<u32>>,
    pub(crate) rate: Option<Spanned<f64>>,
    pub(crate) think_time: Option<Spanned<String>>,
    pub(crate) users: Option<Spanned<u64>>,
    pub(crate) orgs: Option<Spanned<u64>>,
    pub(crate) org_skew: Option<Spanned<f64>>,
    pub(crate) keys_per_org: Option<Spanned<u64>>,
    pub(crate) read_ratio: Option<Spanned<f64>>,
    pub(crate) primary_read_ratio: Option<Spanned<f64>>,
    pub(crate) transaction_ratio: Option<Spanned<f64>>,
}

/// One `[[fault]]`: the keys of every fault kind.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFault {
    pub(crate) at: Option<Spanned<String>>,
    pub(crate) kind: Option<Spanned<String>>,
    pub(crate) target: Option<Spanned<String>>,
    pub(crate) duration: Option<Spanned<String>>,
    pub(crate) latency: Option<Spanned<String>>,
    pub(crate) delay: Option<Spanned<String>>,
    pub(crate) factor: Option<Spanned<f64>>,
}

/// One `[[invariant]]`: the keys of every invariant kind.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInvariant {
    pub(crate) kind: Option<Spanned<String>>,
    pub(crate) max: Option<Spanned<String>>,
    pub(crate) min: Option<Spanned<f64>>,
    pub(crate) op: Option<Spanned<String>>,
    pub(crate) percentile: Option<Spanned<f64>>,
    pub(crate) max_error_rate: Option<Spanned<f64>>,
}

/// A `[min, max]` pair as written, each bound with its position.
pub(crate) type RawPair<T> = Spanned<Vec<Spanned<T>>>;

/// `[explore]`: the ranges `replisim explore` draws from. Every key is a `[min, max]` pair except
/// `kinds` and `targets`, which are lists of names.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawExplore {
    pub(crate) faults: Option<RawPair<i64>>,
    pub(crate) kinds: Option<RawPair<String>>,
    pub(crate) targets: Option<RawPair<String>>,
    pub(crate) at: Option<RawPair<String>>,
    pub(crate) fault_duration: Option<RawPair<String>>,
    pub(crate) latency: Option<RawPair<String>>,
    pub(crate) delay: Option<RawPair<String>>,
    pub(crate) factor: Option<RawPair<f64>>,
    pub(crate) query_time: Option<RawPair<String>>,
    pub(crate) replication_delay: Option<RawPair<String>>,
    pub(crate) link_latency: Option<RawPair<String>>,
    pub(crate) clients: Option<RawPair<i64>>,
    pub(crate) rate: Option<RawPair<f64>>,
    pub(crate) think_time: Option<RawPair<String>>,
    pub(crate) read_ratio: Option<RawPair<f64>>,
    pub(crate) org_skew: Option<RawPair<f64>>,
}

/// Reads the TOML text into the raw structs; syntax errors, unknown keys and wrong types keep
/// their position.
pub(crate) fn read(text: &str) -> Result<RawScenario, Issue> {
    toml::from_str(text).map_err(Issue::from)
}

/// The byte offset where the key of the value at `value_span` starts (`key = value`), so that a key
/// that does not belong is pointed at itself; falls back to the value's own offset.
pub(crate) fn key_offset(text: &str, key: &str, value_span: &Range<usize>) -> usize {
    let blanks: &[char] = &[' ', '\t'];
    let before_key = text
        .get(..value_span.start)
        .map(|before| before.trim_end_matches(blanks))
        .and_then(|before| before.strip_suffix('='))
        .map(|before| before.trim_end_matches(blanks));
    let Some(before_key) = before_key else {
        return value_span.start;
    };
    [key.to_owned(), format!("\"{key}\""), format!("'{key}'")]
        .iter()
        .find(|written| before_key.ends_with(written.as_str()))
        .map_or(value_span.start, |written| before_key.len() - written.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_offset_finds_bare_and_quoted_keys() {
        let text = "delay = \"1s\"\n  \"delay\"=\t'2s'\nx = { delay = \"3s\" }\n";
        let value = |needle: &str| {
            let start = text.find(needle).expect("needle is in the text");
            start..start + needle.len()
        };
        assert_eq!(key_offset(text, "delay", &value("\"1s\"")), 0);
        assert_eq!(key_offset(text, "delay", &value("'2s'")), 15);
        assert_eq!(
            key_offset(text, "delay", &value("\"3s\"")),
            text.find("delay = \"3s").expect("inline key")
        );
        // Not preceded by `key =`: the value's own offset.
        let span = value("x = ");
        assert_eq!(key_offset(text, "delay", &span), span.start);
    }

    #[test]
    fn unknown_keys_are_refused_with_their_position() {
        let text = "name = \"a\"\nduration = \"1s\"\n\n[router]\nbalanse = \"random\"\n";
        let issue = read(text).expect_err("unknown key");
        assert!(
            issue.message.contains("unknown field `balanse`"),
            "{issue:?}"
        );
        assert_eq!(issue.offset, text.find("balanse"));
    }
}
