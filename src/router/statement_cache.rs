//! A connection's prepared statements by SQL text, bounded: past its capacity the least recently
//! used statement is evicted (dropping a tokio-postgres `Statement` closes it on the server). The
//! hot statements an application runs on every request therefore stay prepared however many rare
//! ones pass through.

use std::collections::BTreeMap;

/// Up to `capacity` values by SQL text, evicting the least recently used.
pub(crate) struct StatementCache<V> {
    capacity: usize,
    /// Value and the tick of its last use.
    entries: BTreeMap<String, (V, u64)>,
    tick: u64,
}

impl<V: Clone> StatementCache<V> {
    /// An empty cache holding at most `capacity` (at least 1) statements.
    pub(crate) fn new(capacity: usize) -> StatementCache<V> {
        StatementCache {
            capacity: capacity.max(1),
            entries: BTreeMap::new(),
            tick: 0,
        }
    }

    /// The statement for `sql`, marked as just used.
    pub(crate) fn get(&mut self, sql: &str) -> Option<V> {
        self.tick += 1;
        let tick = self.tick;
        self.entries.get_mut(sql).map(|(value, used)| {
            *used = tick;
            value.clone()
        })
    }

    /// Keeps `value` for `sql`, evicting the least recently used statement if the cache is full;
    /// returns what was evicted.
    pub(crate) fn insert(&mut self, sql: &str, value: V) -> Option<(String, V)> {
        self.tick += 1;
        let evicted = if self.entries.len() >= self.capacity && !self.entries.contains_key(sql) {
            // A linear scan: the capacity is small and eviction rare next to lookups.
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(sql, _)| sql.clone());
            oldest.and_then(|sql| self.entries.remove(&sql).map(|(value, _)| (sql, value)))
        } else {
            None
        };
        self.entries.insert(sql.to_string(), (value, self.tick));
        evicted
    }

    /// Forgets `sql` (the server no longer has it, or its plan is stale).
    pub(crate) fn remove(&mut self, sql: &str) {
        self.entries.remove(sql);
    }

    /// How many statements are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_statement_is_evicted_not_the_oldest_or_first_named() {
        let mut cache = StatementCache::new(3);
        for sql in ["a", "b", "c"] {
            assert_eq!(cache.insert(sql, sql.to_uppercase()), None);
        }
        // "a" was prepared first and sorts first, but is the hot one.
        assert_eq!(cache.get("a").as_deref(), Some("A"));
        assert_eq!(
            cache.insert("d", "D".into()),
            Some(("b".to_string(), "B".to_string()))
        );
        assert_eq!(cache.get("b"), None);
        assert_eq!(cache.get("c").as_deref(), Some("C"));
        assert_eq!(
            cache.insert("e", "E".into()).map(|(sql, _)| sql),
            Some("a".to_string())
        );
        assert_eq!(cache.len(), 3);
    }

    #[test]
    fn replacing_or_removing_a_statement_evicts_nothing_else() {
        let mut cache = StatementCache::new(2);
        cache.insert("a", 1);
        cache.insert("b", 2);
        assert_eq!(cache.insert("a", 3), None);
        assert_eq!(cache.get("a"), Some(3));
        cache.remove("b");
        assert_eq!(cache.insert("c", 4), None);
        assert_eq!(cache.len(), 2);
    }
}
