//! Shards and nodes: org ranges, node names, and each node's model (`[node.default]` overridden key by
//! key by `[node.<name>]`).

use std::collections::BTreeMap;
use std::time::Duration;

use toml::Spanned;

use super::error::Issue;
use super::limits::{NODES_MAX, REPLICAS_PER_SHARD_MAX};
use super::model::{Node, Shard};
use super::raw::{RawNodeModel, RawShard};
use super::validate::{duration_value, list, missing_key};
use crate::record::events::NodeRole;

/// Server-side service time of one statement when the file names none.
pub(crate) const QUERY_TIME_DEFAULT: Duration = Duration::from_millis(1);
/// Replicas' apply delay when the file names none.
pub(crate) const REPLICATION_DELAY_DEFAULT: Duration = Duration::from_millis(5);
/// One-way latency application host <-> node when the file names none.
pub(crate) const LINK_LATENCY_DEFAULT: Duration = Duration::from_millis(1);
/// A node's weight (`balance = "weighted"`) when the file names none.
pub(crate) const WEIGHT_DEFAULT: u32 = 1;

/// The table name that holds the model of every node, so no node may be called that.
const DEFAULT_MODEL: &str = "default";

/// Resolves the `[[shard]]` list and the `[node.*]` tables into shards and nodes; nodes are ordered
/// shard by shard, primary then replicas.
pub(crate) fn resolve(
    raw_shards: &[Spanned<RawShard>],
    models: &BTreeMap<Spanned<String>, RawNodeModel>,
) -> Result<(Vec<Shard>, Vec<Node>), Issue> {
    if raw_shards.is_empty() {
        return Err(Issue::nowhere(
            "at least one [[shard]] is required (with orgs = [start, end] and a primary)",
        ));
    }
    let mut shards: Vec<Shard> = Vec::with_capacity(raw_shards.len());
    let mut nodes: Vec<Node> = Vec::new();
    for (index, raw) in raw_shards.iter().enumerate() {
        let context = format!("shard {}", index + 1);
        let shard =
            resolve_shard(index, raw, &shards, &mut nodes).map_err(|i| i.within(&context))?;
        shards.push(shard);
    }
    check_ranges_disjoint(raw_shards, &shards)?;
    apply_models(models, &mut nodes)?;
    Ok((shards, nodes))
}

/// One shard; its nodes are appended to `nodes`.
fn resolve_shard(
    index: usize,
    raw: &Spanned<RawShard>,
    earlier: &[Shard],
    nodes: &mut Vec<Node>,
) -> Result<Shard, Issue> {
    let table = raw.get_ref();
    let name = match &table.name {
        Some(name) => {
            if name.get_ref().is_empty() {
                return Err(Issue::at(name.span(), "shard name is empty"));
            }
            if earlier.iter().any(|shard| shard.name == *name.get_ref()) {
                return Err(Issue::at(
                    name.span(),
                    format!("shard name \"{}\" is used twice", name.get_ref()),
                ));
            }
            name.get_ref().clone()
        }
        None => format!("s{}", index + 1),
    };
    let orgs = table
        .orgs
        .as_ref()
        .ok_or_else(|| missing_key(raw.span(), "orgs"))?;
    let (orgs_start, orgs_end) = org_range(orgs)?;
    let primary = table
        .primary
        .as_ref()
        .ok_or_else(|| missing_key(raw.span(), "primary"))?;
    if table.replicas.len() > REPLICAS_PER_SHARD_MAX {
        return Err(Issue::at(
            table.replicas[REPLICAS_PER_SHARD_MAX].span(),
            format!(
                "{} replicas is above the limit of {REPLICAS_PER_SHARD_MAX} per shard",
                table.replicas.len()
            ),
        ));
    }
    let primary_idx = add_node(nodes, primary, index, NodeRole::Primary)?;
    let replicas = table
        .replicas
        .iter()
        .map(|replica| add_node(nodes, replica, index, NodeRole::Replica))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(weights) = &table.weights {
        for (&replica, weight) in replicas
            .iter()
            .zip(replica_weights(weights, replicas.len())?)
        {
            nodes[replica].weight = weight;
        }
    }
    Ok(Shard {
        name,
        orgs_start,
        orgs_end,
        primary: primary_idx,
        replicas,
    })
}

/// `[start, end]`, read as the half-open range `[start, end)` with `0 <= start < end`.
fn org_range(orgs: &Spanned<Vec<i64>>) -> Result<(i64, i64), Issue> {
    let &[start, end] = orgs.get_ref().as_slice() else {
        return Err(Issue::at(
            orgs.span(),
            format!(
                "orgs must be [start, end] (two integers, end exclusive), got {} values",
                orgs.get_ref().len()
            ),
        ));
    };
    if start < 0 {
        return Err(Issue::at(
            orgs.span(),
            format!("orgs [{start}, {end}): org ids start at 0"),
        ));
    }
    if start >= end {
        return Err(Issue::at(
            orgs.span(),
            format!("orgs [{start}, {end}) is empty: start must be below end (end is exclusive)"),
        ));
    }
    Ok((start, end))
}

/// Appends a node with the default model after checking its name; returns its index.
fn add_node(
    nodes: &mut Vec<Node>,
    name: &Spanned<String>,
    shard: usize,
    initial_role: NodeRole,
) -> Result<usize, Issue> {
    let text = name.get_ref();
    if nodes.len() >= NODES_MAX {
        return Err(Issue::at(
            name.span(),
            format!("node \"{text}\" is one node more than the limit of {NODES_MAX} nodes"),
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let problem = if text.is_empty() {
        Some("node name is empty".to_owned())
    } else if !text.chars().all(allowed) {
        Some(format!(
            "node name \"{text}\" may only use letters, digits, '-', '_' and '.' (it is a host name)"
        ))
    } else if text == DEFAULT_MODEL {
        Some(
            "node name \"default\" is reserved for [node.default], the model of every node"
                .to_owned(),
        )
    } else {
        nodes.iter().find(|node| node.name == *text).map(|node| {
            format!(
                "node \"{text}\" is named twice (already in shard {}): node names must be unique",
                node.shard + 1
            )
        })
    };
    if let Some(message) = problem {
        return Err(Issue::at(name.span(), message));
    }
    nodes.push(Node {
        name: text.clone(),
        shard,
        initial_role,
        query_time: QUERY_TIME_DEFAULT,
        replication_delay: REPLICATION_DELAY_DEFAULT,
        link_latency: LINK_LATENCY_DEFAULT,
        weight: WEIGHT_DEFAULT,
    });
    Ok(nodes.len() - 1)
}

/// No org id may belong to two shards.
fn check_ranges_disjoint(raw_shards: &[Spanned<RawShard>], shards: &[Shard]) -> Result<(), Issue> {
    let mut by_start: Vec<usize> = (0..shards.len()).collect();
    by_start.sort_by_key(|&i| (shards[i].orgs_start, i));
    for pair in by_start.windows(2) {
        let (first, second) = (&shards[pair[0]], &shards[pair[1]]);
        if first.orgs_end > second.orgs_start {
            // Point at whichever of the two comes later in the file.
            let (earlier, later) = (pair[0].min(pair[1]), pair[0].max(pair[1]));
            let span = raw_shards[later]
                .get_ref()
                .orgs
                .as_ref()
                .map_or_else(|| raw_shards[later].span(), Spanned::span);
            return Err(Issue::at(
                span,
                format!(
                    "shard {}: orgs [{}, {}) overlap shard {}'s [{}, {}): shards must not share org ids",
                    later + 1,
                    shards[later].orgs_start,
                    shards[later].orgs_end,
                    earlier + 1,
                    shards[earlier].orgs_start,
                    shards[earlier].orgs_end
                ),
            ));
        }
    }
    Ok(())
}

/// Applies `[node.default]` to every node, then each `[node.<name>]` to its node.
fn apply_models(
    models: &BTreeMap<Spanned<String>, RawNodeModel>,
    nodes: &mut [Node],
) -> Result<(), Issue> {
    let default = models.get(DEFAULT_MODEL);
    for node in nodes.iter_mut() {
        if let Some(model) = default {
            apply_model(model, DEFAULT_MODEL, node)?;
        }
    }
    for (name, model) in models {
        if name.get_ref() == DEFAULT_MODEL {
            continue;
        }
        let Some(node) = nodes.iter_mut().find(|node| node.name == *name.get_ref()) else {
            return Err(Issue::at(
                name.span(),
                format!(
                    "[node.{0}]: \"{0}\" is not a node (nodes: {1})",
                    name.get_ref(),
                    list(nodes.iter().map(|node| node.name.as_str()))
                ),
            ));
        };
        apply_model(model, name.get_ref(), node)?;
    }
    Ok(())
}

/// Overrides the keys `model` sets on `node`.
fn apply_model(model: &RawNodeModel, table: &str, node: &mut Node) -> Result<(), Issue> {
    let keys = [
        (&model.query_time, "query_time", &mut node.query_time),
        (
            &model.replication_delay,
            "replication_delay",
            &mut node.replication_delay,
        ),
        (&model.link_latency, "link_latency", &mut node.link_latency),
    ];
    for (value, key, field) in keys {
        if let Some(value) = value {
            *field = duration_value(value, &format!("node.{table}.{key}"))?;
        }
    }
    Ok(())
}

/// A shard's `weights`: one whole number from 1 to `u32::MAX` per replica, in the order of `replicas`.
fn replica_weights(
    weights: &Spanned<Vec<Spanned<i64>>>,
    replicas: usize,
) -> Result<Vec<u32>, Issue> {
    if weights.get_ref().len() != replicas {
        return Err(Issue::at(
            weights.span(),
            format!(
                "weights lists {} values for {replicas} replicas: give one per replica, in the order of replicas",
                weights.get_ref().len()
            ),
        ));
    }
    weights
        .get_ref()
        .iter()
        .map(|weight| {
            u32::try_from(*weight.get_ref())
                .ok()
                .filter(|&w| w >= 1)
                .ok_or_else(|| {
                    Issue::at(
                        weight.span(),
                        format!(
                            "weights: each must be a whole number from 1 to {}, got {}",
                            u32::MAX,
                            weight.get_ref()
                        ),
                    )
                })
        })
        .collect()
}
