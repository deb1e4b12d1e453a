//! Runs independent jobs on a few threads and hands each result back in input order.
//!
//! Each simulation builds its own turmoil world and runtimes on the thread that runs it, so
//! simulations on different threads never share state: a seed's report is the same whichever
//! thread ran it and whatever ran beside it. Only the order of completion varies, which is why
//! results come back indexed and are reported in input order.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

/// Runs `work` on every item with at most `jobs` threads at once. `on_done(index, &result)` is
/// called on the calling thread as each job finishes (for progress); the results are returned in
/// the order of `items`.
pub fn run_parallel<T, R, W, D>(jobs: usize, items: &[T], work: W, mut on_done: D) -> Vec<R>
where
    T: Sync,
    R: Send,
    W: Fn(&T) -> R + Sync,
    D: FnMut(usize, &R),
{
    let jobs = jobs.clamp(1, items.len().max(1));
    let next = AtomicUsize::new(0);
    let mut results: Vec<Option<R>> = items.iter().map(|_| None).collect();
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<(usize, R)>();
        for _ in 0..jobs {
            let tx = tx.clone();
            let (next, work) = (&next, &work);
            scope.spawn(move || {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(index) else { break };
                    if tx.send((index, work(item))).is_err() {
                        break;
                    }
                }
            });
        }
        // Only the workers hold senders now: the loop ends when the last one finishes.
        drop(tx);
        for (index, result) in rx {
            on_done(index, &result);
            results[index] = Some(result);
        }
    });
    // A worker that panicked has already ended the scope with its panic, so every slot is filled.
    results.into_iter().flatten().collect()
}

/// Releases items handed over in any order as an in-order sequence: what a parallel search
/// prints per seed, so that its output does not depend on which thread finished first.
pub struct InOrder<T> {
    next: usize,
    pending: std::collections::BTreeMap<usize, T>,
}

impl<T> InOrder<T> {
    /// Nothing received yet; index 0 comes first.
    pub fn new() -> InOrder<T> {
        InOrder {
            next: 0,
            pending: std::collections::BTreeMap::new(),
        }
    }

    /// Takes item `index` and returns every item now ready, in order.
    pub fn push(&mut self, index: usize, item: T) -> Vec<T> {
        self.pending.insert(index, item);
        let mut ready = Vec::new();
        while let Some(item) = self.pending.remove(&self.next) {
            ready.push(item);
            self.next += 1;
        }
        ready
    }
}

impl<T> Default for InOrder<T> {
    fn default() -> Self {
        InOrder::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_input_order_whatever_the_completion_order() {
        let items: Vec<u64> = (0..40).collect();
        let mut seen = Vec::new();
        let results = run_parallel(
            3,
            &items,
            |&i| {
                // Later items finish first.
                std::thread::sleep(std::time::Duration::from_micros(400 - i * 10));
                i * i
            },
            |index, result| seen.push((index, *result)),
        );
        assert_eq!(results, items.iter().map(|i| i * i).collect::<Vec<_>>());
        seen.sort_unstable();
        assert_eq!(seen.len(), 40);
        assert_eq!(seen[7], (7, 49));
    }

    #[test]
    fn in_order_holds_items_back_until_their_turn() {
        let mut order = InOrder::new();
        assert!(order.push(1, "b").is_empty());
        assert!(order.push(2, "c").is_empty());
        assert_eq!(order.push(0, "a"), vec!["a", "b", "c"]);
        assert_eq!(order.push(3, "d"), vec!["d"]);
    }

    #[test]
    fn an_empty_list_runs_nothing() {
        let results: Vec<u8> = run_parallel(4, &[] as &[u8], |_| 1, |_, _| panic!("no job"));
        assert!(results.is_empty());
    }
}
