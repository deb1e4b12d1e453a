//! Judging each fault from the recorded evidence (SPEC 6.2): for every kind, what in the servers',
//! the network wrapper's, the clients' and the WAL records shows its effect, and what would show
//! its absence. Every verdict could have come out false, and comes with a one-line account of what
//! was seen; a fault nothing could observe (no traffic towards a partitioned node, say) is judged
//! not to have taken effect rather than assumed to have.

use std::collections::{BTreeMap, BTreeSet};

use crate::record::events::{
    Events, FaultRecord, Micros, NetKind, NodeIdx, NodeRole, StatementEvent, StatementKind,
};
use crate::scenario::{FaultKind, Scenario};
use crate::sim::faults::Sighting;

/// SQLSTATE of a statement a CancelRequest ended.
const CANCELLED: &str = "57014";

/// The simulation's tick: a fault is applied within one tick of its `at`.
const TICK_US: Micros = 1_000;

/// How long after a `drop_connections` the servers' ends of the reset connections must have closed.
const DROP_CLOSE_WINDOW_US: Micros = 100_000;

/// A fault's verdict and the line of evidence behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the effect was observed.
    pub took_effect: bool,
    /// What was seen, or what was not.
    pub evidence: String,
}

impl Verdict {
    fn seen(evidence: String) -> Verdict {
        Verdict {
            took_effect: true,
            evidence,
        }
    }

    fn not_seen(evidence: String) -> Verdict {
        Verdict {
            took_effect: false,
            evidence,
        }
    }

    fn from(took_effect: bool, evidence: String) -> Verdict {
        Verdict {
            took_effect,
            evidence,
        }
    }
}

/// Sets `took_effect` and `evidence` on every record. `sightings[i]` is what applying fault i's
/// start showed the harness.
pub fn judge(
    scenario: &Scenario,
    records: &mut [FaultRecord],
    sightings: &[Sighting],
    events: &Events,
    run_end_us: Micros,
) {
    let all: Vec<FaultRecord> = records.to_vec();
    for record in records.iter_mut() {
        let Some(fault) = scenario.faults.get(record.index) else {
            continue;
        };
        let sighting = sightings.get(record.index).cloned().unwrap_or_default();
        let window = Window {
            from: record.at_us,
            to: record.until_us.unwrap_or(run_end_us).min(run_end_us),
            run_end: run_end_us,
        };
        let look = Look {
            scenario,
            events,
            node: record.target,
            window,
        };
        let verdict = match &fault.kind {
            FaultKind::Crash => look.crash(),
            FaultKind::Restart => look.served_after("restart"),
            FaultKind::Partition => look.partition(),
            FaultKind::Heal => look.served_after("heal"),
            FaultKind::DropConnections => look.drop_connections(sighting.streams_reset),
            FaultKind::Latency { latency } => look.latency(micros(*latency), &all),
            FaultKind::Lag { delay } => look.lag(micros(*delay)),
            FaultKind::PauseReplay => look.pause_replay(),
            FaultKind::ResumeReplay => look.resume_replay(&all),
            FaultKind::Slow { factor } => look.slow(*factor),
            FaultKind::Promote => look.promote(&sighting),
        };
        record.took_effect = verdict.took_effect;
        record.evidence = verdict.evidence;
    }
}

fn micros(d: std::time::Duration) -> Micros {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Microseconds as milliseconds for the evidence text (`12`, `12.5`).
fn ms(us: Micros) -> String {
    crate::check::format_ms(us)
}

/// A fault's span: `[from, to)`, `to` being its end or the end of the run.
#[derive(Clone, Copy, Debug)]
struct Window {
    from: Micros,
    to: Micros,
    run_end: Micros,
}

/// The records, seen from one fault on one node.
struct Look<'a> {
    scenario: &'a Scenario,
    events: &'a Events,
    node: NodeIdx,
    window: Window,
}

impl Look<'_> {
    /// Statements the node started in `[from, to)`.
    fn statements(&self, from: Micros, to: Micros) -> impl Iterator<Item = &StatementEvent> {
        let node = self.node;
        self.events
            .statements
            .iter()
            .filter(move |s| s.node == node && s.start_us >= from && s.start_us < to)
    }

    /// Network records of `kinds` towards the node in `[from, to)`.
    fn net(&self, kinds: &[NetKind], from: Micros, to: Micros) -> usize {
        self.events
            .net
            .iter()
            .filter(|n| n.node == self.node && n.at_us >= from && n.at_us < to)
            .filter(|n| kinds.contains(&n.kind))
            .count()
    }

    /// Server-side connection opens on the node in `[from, to)`.
    fn opens(&self, from: Micros, to: Micros) -> usize {
        self.events
            .server_conns
            .iter()
            .filter(|c| c.node == self.node && c.open && c.at_us >= from && c.at_us < to)
            .count()
    }

    /// The node's server connections open at `at` (opened at or before it, not closed before it),
    /// and how many of them closed in `[at, close_by]`.
    fn open_then_closed(&self, at: Micros, close_by: Micros) -> (usize, usize) {
        let mut open: BTreeSet<u64> = BTreeSet::new();
        for c in self
            .events
            .server_conns
            .iter()
            .filter(|c| c.node == self.node)
        {
            if c.at_us > at && c.open {
                continue;
            }
            if c.open {
                open.insert(c.conn);
            } else if c.at_us < at {
                open.remove(&c.conn);
            }
        }
        let closed: BTreeSet<u64> = self
            .events
            .server_conns
            .iter()
            .filter(|c| c.node == self.node && !c.open && c.at_us >= at && c.at_us <= close_by)
            .map(|c| c.conn)
            .filter(|conn| open.contains(conn))
            .collect();
        (open.len(), closed.len())
    }

    fn connect_timeout_us(&self) -> Micros {
        micros(self.scenario.router.connect_timeout)
    }

    fn health_interval_ms(&self) -> String {
        ms(micros(self.scenario.router.health_interval))
    }

    /// crash: every connection open at the crash was reset at that moment, a connect tried during
    /// it failed, and the node neither accepted a connection nor started a statement meanwhile.
    fn crash(&self) -> Verdict {
        let Window { from, to, .. } = self.window;
        let started = self.statements(from + 1, to).count();
        let accepted = self.opens(from + 1, to);
        if started > 0 || accepted > 0 {
            return Verdict::not_seen(format!(
                "the node started {started} statements and accepted {accepted} connections \
                 between {} ms and {} ms",
                ms(from),
                ms(to)
            ));
        }
        let (open, reset) = self.open_then_closed(from, from + TICK_US);
        let connects = self.net(&[NetKind::Connect], from, to);
        // A connect tried near the end may only give up after the router's connect timeout.
        let failed = self.net(
            &[NetKind::ConnectFailed],
            from,
            to.saturating_add(self.connect_timeout_us()),
        );
        let text = format!(
            "{reset} of {open} open connections reset at {} ms; {failed} of {connects} connects \
             during the crash failed",
            ms(from)
        );
        if open == 0 && connects == 0 {
            return Verdict::not_seen(format!(
                "nothing could show it: no connection was open at {} ms and no connect was tried \
                 until {} ms (health checks every {} ms)",
                ms(from),
                ms(to),
                self.health_interval_ms()
            ));
        }
        let all_reset = reset == open;
        let connect_refused = connects == 0 || failed > 0;
        Verdict::from(all_reset && connect_refused && reset + failed > 0, text)
    }

    /// restart, heal: the node served again afterwards (started a statement or accepted a
    /// connection at or after the fault).
    fn served_after(&self, what: &str) -> Verdict {
        let Window { from, run_end, .. } = self.window;
        let first_statement = self.statements(from, run_end).map(|s| s.start_us).min();
        let first_open = self
            .events
            .server_conns
            .iter()
            .filter(|c| c.node == self.node && c.open && c.at_us >= from && c.at_us < run_end)
            .map(|c| c.at_us)
            .min();
        match (first_statement, first_open) {
            (None, None) => Verdict::not_seen(format!(
                "the node started no statement and accepted no connection after the {what} at {} ms",
                ms(from)
            )),
            (statement, open) => {
                let mut parts = Vec::new();
                if let Some(at) = open {
                    parts.push(format!("accepted a connection at {} ms", ms(at)));
                }
                if let Some(at) = statement {
                    parts.push(format!("served a statement at {} ms", ms(at)));
                }
                Verdict::seen(format!("after the {what}: {}", parts.join(", ")))
            }
        }
    }

    /// partition: connects or statements were sent towards the node during it, and none reached
    /// the node (no statement started, no connection accepted) once messages already on the wire
    /// had time to arrive.
    fn partition(&self) -> Verdict {
        let Window { from, to, .. } = self.window;
        let attempts = self.net(
            &[
                NetKind::Connect,
                NetKind::Statement,
                NetKind::StatementFailed,
            ],
            from,
            to,
        );
        let failed = self.net(
            &[NetKind::ConnectFailed],
            from,
            to.saturating_add(self.connect_timeout_us()),
        );
        let in_flight = self
            .scenario
            .nodes
            .get(self.node)
            .map_or(0, |n| micros(n.link_latency))
            + TICK_US;
        let arrived_from = from.saturating_add(in_flight);
        // A statement sent before the partition may start after it: pipelined behind another on
        // its connection (a read and its replay-position probe go together). Only one the client
        // sent during the partition shows a breach.
        let reached = self
            .statements(arrived_from, to)
            .filter(|s| !self.sent_before(s, from))
            .count()
            + self.opens(arrived_from, to);
        if attempts == 0 {
            return Verdict::not_seen(format!(
                "nothing could show it: no connect or statement was sent towards the node between \
                 {} ms and {} ms (health checks every {} ms)",
                ms(from),
                ms(to),
                self.health_interval_ms()
            ));
        }
        Verdict::from(
            reached == 0,
            format!(
                "{attempts} connects and statements sent towards the node during the partition, \
                 {reached} reached it; {failed} connects failed"
            ),
        )
    }

    /// drop_connections: the wrapper reset open streams, and the node's ends of connections open at
    /// that moment closed right after.
    fn drop_connections(&self, streams_reset: usize) -> Verdict {
        let from = self.window.from;
        let (open, closed) = self.open_then_closed(from, from + DROP_CLOSE_WINDOW_US);
        Verdict::from(
            streams_reset > 0 && closed > 0,
            format!(
                "{streams_reset} streams reset at {} ms; {closed} of {open} server connections open \
                 then closed within {} ms",
                ms(from),
                ms(DROP_CLOSE_WINDOW_US)
            ),
        )
    }

    /// latency: the fastest operation the node served during the fault took about twice the added
    /// one-way latency longer than the fastest it served outside any latency fault.
    fn latency(&self, added_us: Micros, all: &[FaultRecord]) -> Verdict {
        let Window { from, to, run_end } = self.window;
        let durations = |inside: bool| {
            self.events
                .ops
                .iter()
                .filter(|o| o.ok && o.node == Some(self.node))
                .filter(move |o| {
                    if inside {
                        o.start_us >= from && o.end_us <= to
                    } else {
                        !all.iter().any(|f| {
                            f.kind == "latency"
                                && f.target == self.node
                                && o.end_us >= f.at_us
                                && o.start_us < f.until_us.unwrap_or(run_end)
                        })
                    }
                })
                .map(|o| o.end_us.saturating_sub(o.start_us))
                .min()
        };
        let Some(during) = durations(true) else {
            // No operation could finish inside the fault: when twice the latency outlasts the
            // fault or the router's query timeout, every one ends late or not at all. The
            // statements themselves still show it, arriving late at the node.
            return self.latency_by_arrival(added_us);
        };
        let (baseline, source) = match durations(false) {
            Some(b) => (b, "outside latency faults"),
            None => {
                let model = self.scenario.nodes.get(self.node);
                let link = model.map_or(0, |n| micros(n.link_latency));
                let query = model.map_or(0, |n| micros(n.query_time));
                (2 * link + query, "by the node's model")
            }
        };
        let expected = added_us.saturating_mul(2);
        let tolerance = (expected / 10).max(TICK_US);
        let longer = during.saturating_sub(baseline);
        Verdict::from(
            longer + tolerance >= expected,
            format!(
                "fastest operation on the node took {} ms during the fault, {} ms {source}: \
                 {} ms longer (2 x latency = {} ms)",
                ms(during),
                ms(baseline),
                ms(longer),
                ms(expected)
            ),
        )
    }

    /// latency, when no operation finished inside the fault: each statement sent towards the node
    /// during it is paired with the node's start of it, and the quickest of them must have taken
    /// the link's latency plus the added one to arrive. A connection may carry more than one
    /// statement at a time (a read pipelined with its replay-position probe, a health check sent
    /// while the last one is still out), so a statement is paired only where the pairing is
    /// certain: it was the k-th sent on its connection, the node had started exactly k before it
    /// was sent and finished them all, and so the node's next start is this statement, at its
    /// arrival. A statement sent while an earlier one was still queued or running is left out: the
    /// node's next start may be the earlier one's, or wait for it.
    fn latency_by_arrival(&self, added_us: Micros) -> Verdict {
        let Window { from, to, .. } = self.window;
        let link = self
            .scenario
            .nodes
            .get(self.node)
            .map_or(0, |n| micros(n.link_latency));
        // Every statement sent towards the node up to the fault's end, by client port, in order.
        let mut sends: BTreeMap<u64, Vec<Micros>> = BTreeMap::new();
        for e in self.events.net.iter().filter(|e| {
            e.node == self.node && e.kind == NetKind::Statement && e.stream != 0 && e.at_us < to
        }) {
            sends.entry(e.stream).or_default().push(e.at_us);
        }
        for times in sends.values_mut() {
            // The pairing below counts a connection's statements by position, so they must be in
            // time order, whatever order the events were gathered in.
            times.sort_unstable();
        }
        // The node's statements by connection, as (start, end), in the order it started them.
        let mut runs: BTreeMap<u64, Vec<(Micros, Micros)>> = BTreeMap::new();
        for s in self
            .events
            .statements
            .iter()
            .filter(|s| s.node == self.node)
        {
            runs.entry(s.conn).or_default().push((s.start_us, s.end_us));
        }
        for times in runs.values_mut() {
            times.sort_unstable();
        }
        let mut sent = 0usize;
        let mut queued = 0usize;
        let mut arrivals: Vec<Micros> = Vec::new();
        for (&stream, times) in &sends {
            for (i, &at) in times.iter().enumerate().filter(|&(_, &at)| at >= from) {
                sent += 1;
                let Some((conn, opened)) = self.connection_opened(stream, at) else {
                    continue;
                };
                let Some(run) = runs.get(&conn) else {
                    continue;
                };
                // Statements sent on this connection before this one.
                let k = i - times.partition_point(|&t| t < opened);
                let started_before = run.partition_point(|&(start, _)| start < at);
                let idle = k == 0 || run.get(k - 1).is_some_and(|&(_, end)| end <= at);
                if started_before != k || !idle {
                    queued += 1;
                    continue;
                }
                if let Some(&(start, _)) = run.get(k) {
                    arrivals.push(start - at);
                }
            }
        }
        if sent == 0 {
            return Verdict::not_seen(format!(
                "nothing could show it: no operation was served by the node between {} ms and {} \
                 ms, and no statement was sent towards it then",
                ms(from),
                ms(to)
            ));
        }
        // Left out as queued behind another statement of their connection: said, as it is why
        // fewer reached it than were sent.
        let queued_note = if queued > 0 {
            format!(" ({queued} left out: sent while their connection was busy)")
        } else {
            String::new()
        };
        let Some(&quickest) = arrivals.iter().min() else {
            return Verdict::not_seen(format!(
                "no operation was served by the node between {} ms and {} ms, and none of the {} \
                 statements sent towards it then reached it{queued_note}",
                ms(from),
                ms(to),
                sent
            ));
        };
        let expected = link.saturating_add(added_us);
        Verdict::from(
            quickest + TICK_US >= expected,
            format!(
                "no operation was served by the node between {} ms and {} ms; of {} statements \
                 sent towards it then, {} reached it{queued_note}, the quickest {} ms after it was \
                 sent (link {} ms + latency {} ms = {} ms)",
                ms(from),
                ms(to),
                sent,
                arrivals.len(),
                ms(quickest),
                ms(link),
                ms(added_us),
                ms(expected)
            ),
        )
    }

    /// Whether the client's last statement-bearing write on `statement`'s connection before the
    /// node started it was sent before `at`: the statement was on its way, or queued behind another,
    /// by then. False when the connection cannot be paired with the client's end.
    fn sent_before(&self, statement: &StatementEvent, at: Micros) -> bool {
        let Some(stream) = self
            .events
            .server_conns
            .iter()
            .find(|c| c.node == self.node && c.open && c.conn == statement.conn && c.stream != 0)
            .map(|c| c.stream)
        else {
            return false;
        };
        self.events
            .net
            .iter()
            .filter(|e| e.node == self.node && e.stream == stream && e.kind == NetKind::Statement)
            .filter(|e| e.at_us <= statement.start_us)
            .map(|e| e.at_us)
            .max()
            .is_some_and(|sent| sent < at)
    }

    /// The node's number for the connection the client knows as `stream`, open at `at_us`, and
    /// when the node opened it.
    fn connection_opened(&self, stream: u64, at_us: Micros) -> Option<(u64, Micros)> {
        self.events
            .server_conns
            .iter()
            .filter(|c| c.node == self.node && c.open && c.stream == stream && c.at_us <= at_us)
            .max_by_key(|c| c.at_us)
            .map(|c| (c.conn, c.at_us))
    }

    /// lag: a record committed during the fault was applied about `delay` after its commit.
    fn lag(&self, delay_us: Micros) -> Verdict {
        let Window { from, to, .. } = self.window;
        let delays: Vec<Micros> = self
            .events
            .wal_applies
            .iter()
            .filter(|w| w.node == self.node && w.commit_us >= from && w.commit_us < to)
            .map(|w| w.applied_us.saturating_sub(w.commit_us))
            .collect();
        let (Some(&min), Some(&max)) = (delays.iter().min(), delays.iter().max()) else {
            return Verdict::not_seen(format!(
                "the replica applied no record committed between {} ms and {} ms",
                ms(from),
                ms(to)
            ));
        };
        let tolerance = (delay_us / 10).max(2 * TICK_US);
        let about = delays.iter().any(|d| d.abs_diff(delay_us) <= tolerance);
        Verdict::from(
            about,
            format!(
                "{} records committed during the fault applied {} to {} ms after their commit \
                 (delay {} ms)",
                delays.len(),
                ms(min),
                ms(max),
                ms(delay_us)
            ),
        )
    }

    /// Writes committed on the node's shard (by whichever node was its writer) in `[from, to)`.
    fn shard_commits(&self, from: Micros, to: Micros) -> Vec<Micros> {
        let Some(shard) = self.scenario.nodes.get(self.node).map(|n| n.shard) else {
            return Vec::new();
        };
        self.events
            .statements
            .iter()
            .filter(|s| {
                s.kind == StatementKind::Write
                    && s.sqlstate.is_none()
                    && s.end_us >= from
                    && s.end_us < to
                    && self
                        .scenario
                        .nodes
                        .get(s.node)
                        .is_some_and(|n| n.shard == shard)
            })
            .map(|s| s.end_us)
            .collect()
    }

    fn applies(&self, from: Micros, to: Micros) -> usize {
        self.events
            .wal_applies
            .iter()
            .filter(|w| w.node == self.node && w.applied_us >= from && w.applied_us < to)
            .count()
    }

    /// pause_replay: the shard committed writes during the pause (WAL the replica would receive),
    /// and the replica applied nothing until it ended.
    fn pause_replay(&self) -> Verdict {
        let Window { from, to, .. } = self.window;
        let commits = self.shard_commits(from, to).len();
        let applied = self.applies(from + TICK_US, to);
        if commits == 0 {
            return Verdict::not_seen(format!(
                "nothing could show it: the shard committed no write between {} ms and {} ms",
                ms(from),
                ms(to)
            ));
        }
        Verdict::from(
            applied == 0,
            format!(
                "{commits} writes committed on the shard during the pause; the replica applied \
                 {applied} records until {} ms",
                ms(to)
            ),
        )
    }

    /// resume_replay: the replica applied nothing while paused, and applied again afterwards.
    fn resume_replay(&self, all: &[FaultRecord]) -> Verdict {
        let Window { from, run_end, .. } = self.window;
        let paused_from = all
            .iter()
            .filter(|f| f.kind == "pause_replay" && f.target == self.node)
            .filter(|f| f.until_us == Some(from))
            .map(|f| f.at_us)
            .min();
        let Some(paused_from) = paused_from else {
            return Verdict::not_seen("no pause of the replica ends here".to_string());
        };
        let held = self.applies(paused_from + TICK_US, from);
        let first = self
            .events
            .wal_applies
            .iter()
            .filter(|w| w.node == self.node && w.applied_us >= from && w.applied_us < run_end)
            .map(|w| w.applied_us)
            .min();
        match first {
            Some(at) => Verdict::from(
                held == 0,
                format!(
                    "{held} records applied while paused from {} ms; first apply after the resume \
                     at {} ms",
                    ms(paused_from),
                    ms(at)
                ),
            ),
            None => Verdict::not_seen(format!(
                "the replica applied no record after the resume at {} ms",
                ms(from)
            )),
        }
    }

    /// slow: the median service time (a cancelled statement counting as at least what it ran) of
    /// the statements the node started during the fault is nearer `factor x query_time` than
    /// `query_time`, and not beyond it.
    fn slow(&self, factor: f64) -> Verdict {
        let Window { from, to, .. } = self.window;
        let base = self
            .scenario
            .nodes
            .get(self.node)
            .map_or(0, |n| micros(n.query_time));
        let expected = (base as f64 * factor) as Micros;
        let lower = base + (expected.saturating_sub(base)) / 2;
        // A statement a CancelRequest ended (57014) ran only as long as the router waited: it says
        // the node was at least that slow. One cancelled past `lower` counts as `lower`; one
        // cancelled sooner says nothing either way.
        // A statement's service time is set when it starts: one started during the fault runs
        // slowed to its end, even past the fault's.
        let mut times: Vec<Micros> = self
            .statements(from, to)
            // Health-check and replay-position probes are slowed as much: they show a slow node
            // the router sent no workload to.
            .filter(|s| {
                matches!(
                    s.kind,
                    StatementKind::Read | StatementKind::Write | StatementKind::Probe
                )
            })
            .filter_map(|s| {
                let took = s.end_us.saturating_sub(s.start_us);
                match s.sqlstate.as_deref() {
                    Some(CANCELLED) => (took >= lower).then_some(lower),
                    _ => Some(took),
                }
            })
            .collect();
        times.sort_unstable();
        let Some(&median) = times.get(times.len() / 2) else {
            return Verdict::not_seen(format!(
                "the node ran no statement between {} ms and {} ms",
                ms(from),
                ms(to)
            ));
        };
        let upper = expected + (expected / 10).max(TICK_US);
        Verdict::from(
            median >= lower && median <= upper,
            format!(
                "median service time of {} statements {} ms during the fault \
                 ({factor} x {} ms = {} ms)",
                times.len(),
                ms(median),
                ms(base),
                ms(expected)
            ),
        )
    }

    /// promote: the target served a statement as a primary, no fenced node executed a write started
    /// after the promotion, and, if the shard has other replicas and the new primary committed
    /// writes, one of them applied a record the new primary committed.
    fn promote(&self, sighting: &Sighting) -> Verdict {
        let from = self.window.from;
        let target = self.node;
        let after = |s: &&StatementEvent| s.start_us >= from;
        let served_as_primary = self
            .events
            .statements
            .iter()
            .filter(after)
            .filter(|s| s.node == target && s.role == NodeRole::Primary)
            .map(|s| s.start_us)
            .min();
        let fence_broken = self
            .events
            .statements
            .iter()
            .filter(after)
            .filter(|s| {
                s.kind == StatementKind::Write
                    && s.sqlstate.is_none()
                    && sighting.fenced.contains(&s.node)
            })
            .count();
        let commits: BTreeSet<(u64, Micros)> = self
            .events
            .statements
            .iter()
            .filter(after)
            .filter(|s| s.node == target && s.kind == StatementKind::Write && s.sqlstate.is_none())
            .map(|s| (s.lsn, s.end_us))
            .collect();
        let shard = self.scenario.nodes.get(target).map(|n| n.shard);
        let followers: Vec<NodeIdx> = self
            .scenario
            .nodes
            .iter()
            .enumerate()
            .filter(|&(idx, n)| {
                idx != target && Some(n.shard) == shard && !sighting.fenced.contains(&idx)
            })
            .map(|(idx, _)| idx)
            .collect();
        let followed =
            followers.is_empty()
                || commits.is_empty()
                || self.events.wal_applies.iter().any(|w| {
                    followers.contains(&w.node) && commits.contains(&(w.lsn, w.commit_us))
                });
        let mut parts = vec![match served_as_primary {
            Some(at) => format!("served as primary from {} ms", ms(at)),
            None => "never served as primary".to_string(),
        }];
        parts.push(format!(
            "{fence_broken} writes on {} fenced nodes",
            sighting.fenced.len()
        ));
        parts.push(format!(
            "{} commits on it, {}",
            commits.len(),
            if followed {
                "followed by the shard's replicas"
            } else {
                "none applied by the shard's replicas"
            }
        ));
        Verdict::from(
            served_as_primary.is_some() && fence_broken == 0 && followed,
            parts.join("; "),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::check::test_support::{PRIMARY_1, REPLICA_1, REPLICA_2, TestRun, ms};
    use crate::record::events::{NetKind, OpKind, WalApplyEvent};
    use crate::scenario::Fault;

    /// Schedules `kind` on `target` at `at_ms` (for `duration_ms` if given) in `run`'s scenario.
    fn schedule(
        run: &mut TestRun,
        kind: FaultKind,
        target: NodeIdx,
        at_ms: u64,
        duration_ms: Option<u64>,
    ) {
        run.scenario.faults.push(Fault {
            at: Duration::from_millis(at_ms),
            kind,
            target,
            duration: duration_ms.map(Duration::from_millis),
        });
    }

    /// Judges every fault of `run`'s scenario; `sighting` stands for what applying each showed.
    fn verdicts(run: &TestRun, sighting: &Sighting) -> Vec<Verdict> {
        let mut records = crate::record::schedule::records(&run.scenario);
        let sightings = vec![sighting.clone(); records.len()];
        judge(
            &run.scenario,
            &mut records,
            &sightings,
            &run.events,
            run.run_end_us,
        );
        records
            .into_iter()
            .map(|r| Verdict::from(r.took_effect, r.evidence))
            .collect()
    }

    fn only(run: &TestRun) -> Verdict {
        verdict_of(run, &Sighting::default(), 0)
    }

    fn verdict_of(run: &TestRun, sighting: &Sighting, index: usize) -> Verdict {
        verdicts(run, sighting)
            .get(index)
            .cloned()
            .unwrap_or_else(|| Verdict::not_seen("no such fault".to_string()))
    }

    /// Asserts that the only fault of `run` was judged not to take effect; returns what it says.
    fn not_seen(run: &TestRun) -> String {
        let verdict = only(run);
        assert!(!verdict.took_effect, "{}", verdict.evidence);
        verdict.evidence
    }

    /// Asserts that the only fault of `run` was judged not to take effect, with evidence that says
    /// `says`.
    fn not_seen_saying(run: &TestRun, says: &str) {
        let evidence = not_seen(run);
        assert!(evidence.contains(says), "{evidence}");
    }

    /// Asserts that the only fault of `run` was judged not to take effect because nothing could
    /// show it.
    fn shows_nothing(run: &TestRun) {
        let evidence = not_seen(run);
        assert!(evidence.starts_with("nothing could show it"), "{evidence}");
    }

    fn apply(run: &mut TestRun, node: NodeIdx, commit_ms: u64, applied_ms: u64) {
        run.events.wal_applies.push(WalApplyEvent {
            node,
            lsn: commit_ms,
            commit_us: ms(commit_ms),
            applied_us: ms(applied_ms),
        });
    }

    /// A crash from 10 s to 20 s of replica-1, whose connection 1 was open since 1 s.
    fn crash_run() -> TestRun {
        let mut run = TestRun::new();
        schedule(&mut run, FaultKind::Crash, REPLICA_1, 10_000, Some(10_000));
        run.conn(REPLICA_1, 1, ms(1_000), true);
        run
    }

    #[test]
    fn a_crash_that_reset_the_open_connections_and_refused_a_connect_took_effect() {
        let mut run = crash_run();
        run.conn(REPLICA_1, 1, ms(10_000), false);
        run.net(REPLICA_1, NetKind::Connect, ms(12_000));
        run.net(REPLICA_1, NetKind::ConnectFailed, ms(12_000));
        let verdict = only(&run);
        assert!(verdict.took_effect, "{}", verdict.evidence);
        assert_eq!(
            verdict.evidence,
            "1 of 1 open connections reset at 10000 ms; 1 of 1 connects during the crash failed"
        );
    }

    #[test]
    fn a_crash_whose_open_connection_stayed_open_did_not_take_effect() {
        let mut run = crash_run();
        run.net(REPLICA_1, NetKind::Connect, ms(12_000));
        run.net(REPLICA_1, NetKind::ConnectFailed, ms(12_000));
        let verdict = only(&run);
        assert!(!verdict.took_effect);
        assert!(
            verdict
                .evidence
                .starts_with("0 of 1 open connections reset")
        );
    }

    #[test]
    fn a_crash_during_which_the_node_ran_a_statement_did_not_take_effect() {
        let mut run = crash_run();
        run.conn(REPLICA_1, 1, ms(10_000), false);
        run.statement(REPLICA_1, StatementKind::Read, ms(15_000));
        not_seen_saying(&run, "started 1 statements");
    }

    #[test]
    fn a_crash_of_a_node_nobody_talked_to_shows_nothing() {
        let mut run = TestRun::new();
        schedule(&mut run, FaultKind::Crash, REPLICA_1, 10_000, Some(10_000));
        shows_nothing(&run);
    }

    #[test]
    fn a_restart_needs_the_node_to_serve_again() {
        let mut run = TestRun::new();
        schedule(&mut run, FaultKind::Crash, REPLICA_1, 10_000, None);
        schedule(&mut run, FaultKind::Restart, REPLICA_1, 20_000, None);
        run.statement(REPLICA_1, StatementKind::Read, ms(5_000));
        assert!(!verdict_of(&run, &Sighting::default(), 1).took_effect);
        run.statement(REPLICA_1, StatementKind::Read, ms(20_014));
        let verdict = verdict_of(&run, &Sighting::default(), 1);
        assert!(verdict.took_effect);
        assert_eq!(
            verdict.evidence,
            "after the restart: served a statement at 20014 ms"
        );
    }

    /// A partition of replica-1 from 10 s, healed at 20 s.
    fn partition_run() -> TestRun {
        let mut run = TestRun::new();
        schedule(&mut run, FaultKind::Partition, REPLICA_1, 10_000, None);
        schedule(&mut run, FaultKind::Heal, REPLICA_1, 20_000, None);
        run
    }

    #[test]
    fn a_partition_that_swallowed_every_attempt_took_effect() {
        let mut run = partition_run();
        // Sent just before: it may still arrive within the link latency.
        run.statement(REPLICA_1, StatementKind::Read, ms(10_001));
        run.net(REPLICA_1, NetKind::Statement, ms(11_000));
        run.net(REPLICA_1, NetKind::Connect, ms(12_000));
        run.net(REPLICA_1, NetKind::ConnectFailed, ms(13_000));
        let verdict = only(&run);
        assert!(verdict.took_effect, "{}", verdict.evidence);
        assert_eq!(
            verdict.evidence,
            "2 connects and statements sent towards the node during the partition, 0 reached it; \
             1 connects failed"
        );
    }

    #[test]
    fn a_partition_that_let_a_statement_through_did_not_take_effect() {
        let mut run = partition_run();
        run.net(REPLICA_1, NetKind::Statement, ms(11_000));
        run.statement(REPLICA_1, StatementKind::Read, ms(11_001));
        assert!(!only(&run).took_effect);
    }

    #[test]
    fn a_partition_nothing_was_sent_across_shows_nothing() {
        let run = partition_run();
        shows_nothing(&run);
    }

    #[test]
    fn a_heal_needs_the_node_to_serve_again() {
        let mut run = partition_run();
        assert!(!verdict_of(&run, &Sighting::default(), 1).took_effect);
        run.conn(REPLICA_1, 7, ms(20_010), true);
        let verdict = verdict_of(&run, &Sighting::default(), 1);
        assert!(verdict.took_effect);
        assert_eq!(
            verdict.evidence,
            "after the heal: accepted a connection at 20010 ms"
        );
    }

    #[test]
    fn dropped_connections_must_close_at_the_node_right_away() {
        let mut run = TestRun::new();
        schedule(
            &mut run,
            FaultKind::DropConnections,
            REPLICA_1,
            10_000,
            None,
        );
        run.conn(REPLICA_1, 1, ms(1_000), true);
        let reset = Sighting {
            streams_reset: 1,
            ..Sighting::default()
        };
        run.conn(REPLICA_1, 1, ms(10_500), false);
        assert!(!verdict_of(&run, &reset, 0).took_effect, "closed too late");
        run.events.server_conns.pop();
        run.conn(REPLICA_1, 1, ms(10_001), false);
        assert!(
            !verdict_of(&run, &Sighting::default(), 0).took_effect,
            "no stream reset"
        );
        let verdict = verdict_of(&run, &reset, 0);
        assert!(verdict.took_effect, "{}", verdict.evidence);
        assert_eq!(
            verdict.evidence,
            "1 streams reset at 10000 ms; 1 of 1 server connections open then closed within 100 ms"
        );
    }

    #[test]
    fn latency_must_lengthen_the_round_trip_by_about_twice_the_added_latency() {
        let mut run = TestRun::new();
        let latency = Duration::from_millis(50);
        schedule(
            &mut run,
            FaultKind::Latency { latency },
            REPLICA_1,
            10_000,
            Some(10_000),
        );
        run.op(1, OpKind::Read, ms(5_000), ms(5_003)).node = Some(REPLICA_1);
        run.op(1, OpKind::Read, ms(12_000), ms(12_004)).node = Some(REPLICA_1);
        let verdict = only(&run);
        assert!(!verdict.took_effect, "{}", verdict.evidence);
        run.events.ops.pop();
        run.op(1, OpKind::Read, ms(12_000), ms(12_103)).node = Some(REPLICA_1);
        let verdict = only(&run);
        assert!(verdict.took_effect, "{}", verdict.evidence);
        assert_eq!(
            verdict.evidence,
            "fastest operation on the node took 103 ms during the fault, 3 ms outside latency \
             faults: 100 ms longer (2 x latency = 100 ms)"
        );
    }

    /// Connection 7 of replica-1, which the client knows as stream (port) 4321, open from 1 s.
    fn paired_connection(run: &mut TestRun) {
        run.conn(REPLICA_1, 7, ms(1_000), true).stream = 4321;
    }

    /// A statement sent on stream 4321 at `sent` ms, and the node's start of it `arrival` ms later.
    fn sent_and_started(run: &mut TestRun, sent: u64, arrival: u64) {
        run.net(REPLICA_1, NetKind::Statement, ms(sent)).stream = 4321;
        run.statement(REPLICA_1, StatementKind::Read, ms(sent + arrival))
            .conn = 7;
    }

    /// A 400 ms latency fault on replica-1 from 10 s, 300 ms long (no operation can outlast it),
    /// with the paired connection open.
    fn latency_no_operation_outlasts() -> TestRun {
        let mut run = TestRun::new();
        schedule(
            &mut run,
            FaultKind::Latency {
                latency: Duration::from_millis(400),
            },
            REPLICA_1,
            10_000,
            Some(300),
        );
        paired_connection(&mut run);
        run
    }

    #[test]
    fn latency_no_operation_outlasted_is_judged_by_when_statements_arrived() {
        let mut run = latency_no_operation_outlasts();
        let link = micros(run.scenario.nodes[REPLICA_1].link_latency);
        // No operation could finish inside 300 ms; the statement sent at 10.1 s arrived at once.
        sent_and_started(&mut run, 10_100, 1);
        let verdict = only(&run);
        assert!(!verdict.took_effect, "{}", verdict.evidence);
        assert!(
            verdict
                .evidence
                .contains("the quickest 1 ms after it was sent"),
            "{}",
            verdict.evidence
        );
        // Arrived link + 400 ms after it was sent: the latency was there.
        run.events.statements.clear();
        run.events.net.clear();
        sent_and_started(&mut run, 10_100, (link + ms(400)) / 1_000);
        let verdict = only(&run);
        assert!(verdict.took_effect, "{}", verdict.evidence);
        // A statement sent during the fault that never arrived shows nothing.
        run.events.statements.clear();
        let verdict = only(&run);
        assert!(!verdict.took_effect, "{}", verdict.evidence);
        assert!(
            verdict
                .evidence
                .contains("none of the 1 statements sent towards it then reached it"),
            "{}",
            verdict.evidence
        );
        // Nothing sent during the fault: nothing could show it.
        run.events.net.clear();
        shows_nothing(&run);
    }

    /// Two statements out on one connection at once (a health check sent while the last one is
    /// still on its way): the node's first start after the second was sent is the first's, which
    /// says nothing of when the second arrived, so only the first is judged.
    #[test]
    fn latency_judges_no_statement_sent_while_its_connection_was_busy() {
        let mut run = latency_no_operation_outlasts();
        let arrival = (micros(run.scenario.nodes[REPLICA_1].link_latency) + ms(400)) / 1_000;
        sent_and_started(&mut run, 10_100, arrival);
        sent_and_started(&mut run, 10_147, arrival);
        let verdict = only(&run);
        assert!(verdict.took_effect, "{}", verdict.evidence);
        assert!(
            verdict.evidence.contains(
                "of 2 statements sent towards it then, 1 reached it (1 left out: sent while their \
                 connection was busy)"
            ),
            "{}",
            verdict.evidence
        );
        // The second alone, behind one sent before the fault that the node had not started when
        // the second was sent: nothing can be told, and nothing passes.
        run.events.net.clear();
        run.events.statements.clear();
        run.net(REPLICA_1, NetKind::Statement, ms(9_990)).stream = 4321;
        run.net(REPLICA_1, NetKind::Statement, ms(10_147)).stream = 4321;
        run.statement(REPLICA_1, StatementKind::Read, ms(10_200))
            .conn = 7;
        let verdict = only(&run);
        assert!(!verdict.took_effect, "{}", verdict.evidence);
        assert!(
            verdict.evidence.contains("(1 left out"),
            "{}",
            verdict.evidence
        );
        // Had the node started and finished the earlier one before the second was sent, the
        // second's start would be its arrival: one that arrived at once is seen as such.
        run.events.statements.clear();
        run.statement(REPLICA_1, StatementKind::Read, ms(10_000))
            .conn = 7;
        run.statement(REPLICA_1, StatementKind::Read, ms(10_148))
            .conn = 7;
        let verdict = only(&run);
        assert!(!verdict.took_effect, "{}", verdict.evidence);
        assert!(
            verdict
                .evidence
                .contains("the quickest 1 ms after it was sent"),
            "{}",
            verdict.evidence
        );
    }

    #[test]
    fn a_statement_sent_before_a_partition_may_start_during_it() {
        let mut run = partition_run();
        paired_connection(&mut run);
        // Sent 5 ms before the partition, queued behind another statement on its connection: the
        // node starts it 20 ms into the partition. No breach.
        sent_and_started(&mut run, 9_995, 25);
        run.net(REPLICA_1, NetKind::Statement, ms(11_000));
        let verdict = only(&run);
        assert!(verdict.took_effect, "{}", verdict.evidence);
        // Sent during the partition and started: a breach.
        sent_and_started(&mut run, 12_000, 2);
        not_seen_saying(&run, "1 reached it");
    }

    #[test]
    fn slow_counts_a_statement_that_outlasts_the_fault_and_health_checks() {
        let mut run = TestRun::new();
        schedule(
            &mut run,
            FaultKind::Slow { factor: 10.0 },
            REPLICA_1,
            10_000,
            Some(15),
        );
        // Started 5 ms into a 15 ms fault, slowed to 10 ms: ends after the fault.
        run.statement(REPLICA_1, StatementKind::Probe, ms(10_005))
            .end_us = ms(10_015) + 1;
        let verdict = only(&run);
        assert!(verdict.took_effect, "{}", verdict.evidence);
        // At the normal speed it shows the fault did nothing.
        run.events.statements[0].end_us = ms(10_006);
        let verdict = only(&run);
        assert!(!verdict.took_effect, "{}", verdict.evidence);
    }

    #[test]
    fn lag_must_delay_applies_by_about_the_delay() {
        let mut run = TestRun::new();
        let delay = Duration::from_secs(2);
        schedule(
            &mut run,
            FaultKind::Lag { delay },
            REPLICA_1,
            10_000,
            Some(10_000),
        );
        apply(&mut run, REPLICA_1, 11_000, 11_005);
        assert!(!only(&run).took_effect);
        apply(&mut run, REPLICA_1, 12_000, 14_001);
        let verdict = only(&run);
        assert!(verdict.took_effect, "{}", verdict.evidence);
        assert_eq!(
            verdict.evidence,
            "2 records committed during the fault applied 5 to 2001 ms after their commit \
             (delay 2000 ms)"
        );
    }

    #[test]
    fn a_pause_must_hold_back_what_the_shard_committed() {
        let mut run = TestRun::new();
        schedule(&mut run, FaultKind::PauseReplay, REPLICA_1, 10_000, None);
        schedule(&mut run, FaultKind::ResumeReplay, REPLICA_1, 15_000, None);
        assert!(
            only(&run).evidence.starts_with("nothing could show it"),
            "no commit: nothing to hold back"
        );
        run.statement(PRIMARY_1, StatementKind::Write, ms(11_000));
        apply(&mut run, REPLICA_1, 11_001, 15_000);
        let seen = verdicts(&run, &Sighting::default());
        assert!(seen[0].took_effect, "{}", seen[0].evidence);
        assert!(seen[1].took_effect, "{}", seen[1].evidence);
        assert_eq!(
            seen[1].evidence,
            "0 records applied while paused from 10000 ms; first apply after the resume at 15000 ms"
        );
        apply(&mut run, REPLICA_1, 11_001, 12_000);
        let seen = verdicts(&run, &Sighting::default());
        assert!(!seen[0].took_effect, "applied while paused");
        assert!(!seen[1].took_effect, "nothing was stopped");
    }

    #[test]
    fn a_resume_needs_an_apply_after_it() {
        let mut run = TestRun::new();
        schedule(&mut run, FaultKind::PauseReplay, REPLICA_1, 10_000, None);
        schedule(&mut run, FaultKind::ResumeReplay, REPLICA_1, 15_000, None);
        let verdict = verdict_of(&run, &Sighting::default(), 1);
        assert!(!verdict.took_effect);
        assert_eq!(
            verdict.evidence,
            "the replica applied no record after the resume at 15000 ms"
        );
    }

    #[test]
    fn slow_must_stretch_the_service_time_by_the_factor() {
        let mut run = TestRun::new();
        schedule(
            &mut run,
            FaultKind::Slow { factor: 10.0 },
            REPLICA_1,
            10_000,
            Some(10_000),
        );
        // The test nodes' query_time is 1 ms, as is every hand-built statement.
        run.statement(REPLICA_1, StatementKind::Read, ms(11_000));
        let verdict = only(&run);
        assert!(!verdict.took_effect, "{}", verdict.evidence);
        for at in [12_000, 13_000] {
            run.statement(REPLICA_1, StatementKind::Read, ms(at)).end_us = ms(at + 10);
        }
        let verdict = only(&run);
        assert!(verdict.took_effect, "{}", verdict.evidence);
        assert_eq!(
            verdict.evidence,
            "median service time of 3 statements 10 ms during the fault (10 x 1 ms = 10 ms)"
        );
    }

    #[test]
    fn a_promotion_needs_the_target_to_serve_as_a_primary() {
        let mut run = TestRun::new();
        schedule(&mut run, FaultKind::Promote, REPLICA_1, 10_000, None);
        run.statement(REPLICA_1, StatementKind::Read, ms(11_000));
        let fenced = Sighting {
            fenced: vec![PRIMARY_1],
            ..Sighting::default()
        };
        assert!(!verdict_of(&run, &fenced, 0).took_effect);
        run.statement(REPLICA_1, StatementKind::Write, ms(12_000))
            .role = NodeRole::Primary;
        let verdict = verdict_of(&run, &fenced, 0);
        assert!(
            !verdict.took_effect,
            "replica-2 did not follow: {}",
            verdict.evidence
        );
        run.events.wal_applies.push(WalApplyEvent {
            node: REPLICA_2,
            lsn: 0,
            commit_us: ms(12_001),
            applied_us: ms(12_006),
        });
        let verdict = verdict_of(&run, &fenced, 0);
        assert!(verdict.took_effect, "{}", verdict.evidence);
        assert_eq!(
            verdict.evidence,
            "served as primary from 12000 ms; 0 writes on 1 fenced nodes; 1 commits on it, \
             followed by the shard's replicas"
        );
        run.statement(PRIMARY_1, StatementKind::Write, ms(13_000));
        let verdict = verdict_of(&run, &fenced, 0);
        assert!(
            !verdict.took_effect,
            "a fenced node wrote: {}",
            verdict.evidence
        );
    }
}
