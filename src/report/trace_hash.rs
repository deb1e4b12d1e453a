//! A stable 64-bit fingerprint of a run's ordered event trace.
//!
//! FNV-1a with its published offset and prime: no per-process keys, the same on every machine.
//! Only simulated values are hashed (times, nodes, statement kinds, orgs, keys, versions, outcomes),
//! never process-global ones such as tokio-postgres statement names.

use crate::record::events::{Events, OpKind, Purpose, StatementKind};

const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

struct Fnv(u64);

impl Fnv {
    fn bytes(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(PRIME);
        }
    }

    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }

    fn i64(&mut self, v: i64) {
        self.bytes(&v.to_le_bytes());
    }
}

/// The hash of the statement trace and the client trace, as 16 lowercase hex digits.
pub fn trace_hash(events: &Events) -> String {
    let mut h = Fnv(OFFSET);
    for s in &events.statements {
        h.u64(s.start_us);
        h.u64(s.end_us);
        h.u64(s.node as u64);
        h.u64(match s.kind {
            StatementKind::Read => 1,
            StatementKind::Write => 2,
            StatementKind::Probe => 3,
            StatementKind::Unsupported => 4,
            StatementKind::Begin => 5,
            StatementKind::Commit => 6,
            StatementKind::Rollback => 7,
            StatementKind::LockingRead => 8,
        });
        h.u64(match s.purpose {
            Purpose::Workload => 1,
            Purpose::Check => 2,
        });
        h.i64(s.org);
        h.i64(s.key);
        h.i64(s.user);
        h.i64(s.version);
        h.bytes(s.sqlstate.as_deref().unwrap_or("").as_bytes());
        h.bytes(&[0xff]);
    }
    for o in &events.ops {
        h.u64(u64::from(o.client));
        h.u64(match o.kind {
            OpKind::Read => 1,
            OpKind::Write => 2,
        });
        h.i64(o.org);
        h.i64(o.key);
        h.u64(o.start_us);
        h.u64(o.end_us);
        h.u64(u64::from(o.ok));
        h.i64(o.version);
    }
    format!("{:016x}", h.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::events::{NodeRole, StatementEvent};

    fn statement(org: i64) -> StatementEvent {
        StatementEvent {
            node: 1,
            conn: 1,
            purpose: Purpose::Workload,
            kind: StatementKind::Read,
            role: NodeRole::Replica,
            org,
            key: 2,
            user: 3,
            start_us: 10,
            end_us: 20,
            version: 4,
            sqlstate: None,
            lsn: 0,
        }
    }

    #[test]
    fn fnv_matches_its_published_test_vector() {
        let mut h = Fnv(OFFSET);
        h.bytes(b"a");
        assert_eq!(h.0, 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn the_hash_changes_with_any_statement_field() {
        let a = Events {
            statements: vec![statement(1)],
            ..Events::default()
        };
        let b = Events {
            statements: vec![statement(2)],
            ..Events::default()
        };
        assert_eq!(trace_hash(&a), trace_hash(&a.clone()));
        assert_ne!(trace_hash(&a), trace_hash(&b));
        assert_eq!(trace_hash(&a).len(), 16);
    }
}
