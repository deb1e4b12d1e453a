//! Free TCP ports for the servers, picked below the kernel's ephemeral range so that no outgoing
//! connection can take a crashed server's port before it restarts.

use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::real::error::ClusterError;

/// First port scanned.
pub(crate) const PORT_FIRST: u16 = 20_000;
/// Last port scanned (Linux's ephemeral range starts at 32768).
pub(crate) const PORT_LAST: u16 = 32_000;

/// Offset of the next candidate in the range, process-wide, so that two clusters of one process
/// never receive the same port while neither has bound it yet.
static CURSOR: AtomicU32 = AtomicU32::new(u32::MAX);

/// Picks `count` distinct ports that are free on 127.0.0.1 right now.
pub(crate) fn pick_free_ports(count: usize) -> Result<Vec<u16>, ClusterError> {
    let span = u32::from(PORT_LAST - PORT_FIRST) + 1;
    // Different processes start at different places (by pid) so that parallel runs rarely race.
    let start = std::process::id().wrapping_mul(7919) % span;
    let _ = CURSOR.compare_exchange(u32::MAX, start, Ordering::Relaxed, Ordering::Relaxed);
    // Probes stay bound until all are chosen, so a port is never chosen twice.
    let mut probes = Vec::with_capacity(count);
    let mut ports = Vec::with_capacity(count);
    for _ in 0..span {
        if ports.len() == count {
            break;
        }
        let offset = CURSOR.fetch_add(1, Ordering::Relaxed) % span;
        let Ok(port) = u16::try_from(u32::from(PORT_FIRST) + offset) else {
            continue;
        };
        if let Ok(probe) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            probes.push(probe);
            ports.push(port);
        }
    }
    if ports.len() < count {
        return Err(ClusterError::NoFreePort {
            first: PORT_FIRST,
            last: PORT_LAST,
        });
    }
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Mutex, MutexGuard};

    /// The tests share the process-wide cursor: run in parallel, one could occupy the very port
    /// the other has just picked and checks it can bind.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

    fn one_at_a_time() -> MutexGuard<'static, ()> {
        ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[test]
    fn picks_distinct_free_ports_in_range() -> Result<(), ClusterError> {
        let _alone = one_at_a_time();
        let ports = pick_free_ports(5)?;
        assert_eq!(ports.len(), 5);
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 5, "duplicates in {ports:?}");
        for port in &ports {
            assert!((PORT_FIRST..=PORT_LAST).contains(port));
            assert!(TcpListener::bind((Ipv4Addr::LOCALHOST, *port)).is_ok());
        }
        Ok(())
    }

    #[test]
    fn skips_a_port_in_use() -> Result<(), ClusterError> {
        let _alone = one_at_a_time();
        let first = pick_free_ports(1)?[0];
        // The cursor moves on from `first`: occupy the next candidate.
        let held_port = first.saturating_add(1);
        let held = TcpListener::bind((Ipv4Addr::LOCALHOST, held_port));
        let next = pick_free_ports(1)?[0];
        assert_ne!(next, first);
        if held.is_ok() {
            assert_ne!(next, held_port, "a port in use was handed out");
        }
        Ok(())
    }
}
