//! Read-your-writes scopes: which part of a shard an operation is about, and the causal tokens a
//! [`Session`](crate::router::Session) keeps per scope.
//!
//! One token per shard makes every read wait for the session's newest write anywhere in the shard:
//! while replicas lag, a session that keeps writing reads from the primary. An application that
//! knows what a request touches (a row, a document, a user's data) names it as a [`Scope::Key`],
//! and a read then waits only for what the session did in that scope. The shard-wide token stays
//! the newest of all, so a [`Scope::Shard`] read still sees everything the session did.
//!
//! Memory is bounded: at most `capacity` scoped tokens per shard. When full, the scope updated
//! least recently is folded into the shard's floor, a token every scope's reads honour; a scope
//! whose token is no newer than the floor is dropped, since it restricts nothing more.

use std::collections::BTreeMap;

use crate::router::causal::CausalToken;

/// Scoped tokens a session keeps per shard unless told otherwise.
pub const SCOPE_CAPACITY_DEFAULT: usize = 1024;

/// What part of a shard a read or write is about, as the application names it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Scope {
    /// The whole shard: a read sees everything the session did in the shard; a write is seen by
    /// every later read of the session in the shard.
    #[default]
    Shard,
    /// One application key (any number the application chooses, e.g. a row's identity): a read
    /// sees the session's writes and reads in the same key, and shard-scoped ones.
    Key(u64),
}

impl Scope {
    /// The scope of the row `(org, key)`. Two rows may share a scope (the mix is not injective);
    /// that only makes their reads wait for each other's writes.
    pub fn row(org: i64, key: i64) -> Scope {
        // Fixed constants (no per-process seed) so that the same row is the same scope everywhere.
        let mixed = (org as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29)
            ^ (key as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
        Scope::Key(mixed)
    }
}

/// One scope's token and when it last changed (for eviction, oldest first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    token: CausalToken,
    stamp: u64,
}

/// The tokens of one shard: the shard-wide newest, a floor for every scope, and up to `capacity`
/// scoped tokens newer than the floor.
#[derive(Clone, Debug)]
pub struct ShardTokens {
    /// The newest token of any operation in the shard: what a shard-scoped read waits for.
    newest: CausalToken,
    /// What every scope's reads wait for at least: shard-scoped operations and evicted scopes.
    floor: CausalToken,
    scoped: BTreeMap<u64, Entry>,
    /// stamp -> key, to find the scope updated least recently.
    by_age: BTreeMap<u64, u64>,
    next_stamp: u64,
    capacity: usize,
}

impl ShardTokens {
    /// Nothing seen yet; at most `capacity` scoped tokens (0: every scope shares the floor).
    pub fn new(capacity: usize) -> ShardTokens {
        ShardTokens {
            newest: CausalToken::default(),
            floor: CausalToken::default(),
            scoped: BTreeMap::new(),
            by_age: BTreeMap::new(),
            next_stamp: 0,
            capacity,
        }
    }

    /// The token a read in `scope` must wait for.
    pub fn token(&self, scope: Scope) -> CausalToken {
        match scope {
            Scope::Shard => self.newest,
            Scope::Key(key) => self
                .scoped
                .get(&key)
                .map_or(self.floor, |entry| entry.token.max(self.floor)),
        }
    }

    /// Makes later reads in `scope` (and shard-scoped ones) wait for `token`.
    pub fn observe(&mut self, scope: Scope, token: CausalToken) {
        self.newest = self.newest.max(token);
        match scope {
            Scope::Shard => self.raise_floor(token),
            Scope::Key(key) => self.observe_key(key, token),
        }
    }

    /// How many scoped tokens are kept.
    pub fn scoped_len(&self) -> usize {
        self.scoped.len()
    }

    /// Whether a new scope would evict one into the floor.
    pub fn is_full(&self) -> bool {
        self.scoped.len() >= self.capacity
    }

    /// The token every scope's reads wait for at least.
    pub fn floor(&self) -> CausalToken {
        self.floor
    }

    /// Drops scoped tokens that every replica of the shard is known to have replayed: they no
    /// longer keep a read off any replica. Returns how many were dropped.
    pub fn forget_replayed(&mut self, replayed_everywhere: CausalToken) -> usize {
        let stale: Vec<u64> = self
            .scoped
            .iter()
            .filter(|(_, entry)| entry.token <= replayed_everywhere)
            .map(|(&key, _)| key)
            .collect();
        for key in &stale {
            self.remove(*key);
        }
        stale.len()
    }

    fn observe_key(&mut self, key: u64, token: CausalToken) {
        if token <= self.floor {
            // The floor already holds every read in this scope to at least this.
            return;
        }
        let kept = match self.scoped.get(&key) {
            Some(entry) => entry.token.max(token),
            None => {
                if self.scoped.len() >= self.capacity {
                    self.evict_oldest();
                }
                if self.capacity == 0 {
                    self.raise_floor(token);
                    return;
                }
                token
            }
        };
        self.remove(key);
        let stamp = self.next_stamp;
        self.next_stamp = self.next_stamp.wrapping_add(1);
        self.scoped.insert(key, Entry { token: kept, stamp });
        self.by_age.insert(stamp, key);
    }

    /// Folds the scope updated least recently into the floor: conservative, since every scope not
    /// kept then waits for it.
    fn evict_oldest(&mut self) {
        let Some((_, key)) = self.by_age.first_key_value().map(|(&s, &k)| (s, k)) else {
            return;
        };
        if let Some(entry) = self.remove(key) {
            self.raise_floor(entry.token);
        }
    }

    fn raise_floor(&mut self, token: CausalToken) {
        if token <= self.floor {
            return;
        }
        self.floor = token;
        self.forget_replayed(token);
    }

    fn remove(&mut self, key: u64) -> Option<Entry> {
        let entry = self.scoped.remove(&key)?;
        self.by_age.remove(&entry.stamp);
        Some(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::lsn::Lsn;

    fn t(lsn: u64) -> CausalToken {
        CausalToken(Lsn(lsn))
    }

    #[test]
    fn a_key_read_waits_only_for_its_own_scope_and_a_shard_read_for_everything() {
        let mut tokens = ShardTokens::new(8);
        tokens.observe(Scope::Key(1), t(100));
        tokens.observe(Scope::Key(2), t(300));
        tokens.observe(Scope::Key(1), t(50));
        assert_eq!(
            tokens.token(Scope::Key(1)),
            t(100),
            "tokens only move forward"
        );
        assert_eq!(tokens.token(Scope::Key(2)), t(300));
        assert_eq!(
            tokens.token(Scope::Key(3)),
            t(0),
            "an untouched scope waits for nothing"
        );
        assert_eq!(
            tokens.token(Scope::Shard),
            t(300),
            "the shard token is the max"
        );
    }

    #[test]
    fn a_shard_scoped_operation_is_a_floor_for_every_scope() {
        let mut tokens = ShardTokens::new(8);
        tokens.observe(Scope::Key(1), t(100));
        tokens.observe(Scope::Key(2), t(500));
        tokens.observe(Scope::Shard, t(200));
        assert_eq!(tokens.floor(), t(200));
        assert_eq!(tokens.token(Scope::Key(1)), t(200));
        assert_eq!(tokens.token(Scope::Key(7)), t(200));
        assert_eq!(tokens.token(Scope::Key(2)), t(500));
        assert_eq!(tokens.token(Scope::Shard), t(500));
        assert_eq!(
            tokens.scoped_len(),
            1,
            "key 1 restricts nothing beyond the floor"
        );
        tokens.observe(Scope::Key(3), t(150));
        assert_eq!(
            tokens.scoped_len(),
            1,
            "a token under the floor is not kept"
        );
    }

    #[test]
    fn a_full_shard_evicts_the_scope_updated_least_recently_into_the_floor() {
        let mut tokens = ShardTokens::new(2);
        tokens.observe(Scope::Key(1), t(400));
        tokens.observe(Scope::Key(2), t(100));
        // Key 1 is updated again, so key 2 is now the oldest.
        tokens.observe(Scope::Key(1), t(450));
        assert!(tokens.is_full());
        tokens.observe(Scope::Key(3), t(300));
        assert_eq!(tokens.scoped_len(), 2);
        assert_eq!(tokens.floor(), t(100), "key 2 was evicted into the floor");
        assert_eq!(
            tokens.token(Scope::Key(2)),
            t(100),
            "still honoured, as the floor"
        );
        assert_eq!(
            tokens.token(Scope::Key(9)),
            t(100),
            "conservatively, for every scope"
        );
        assert_eq!(tokens.token(Scope::Key(1)), t(450));
        assert_eq!(tokens.token(Scope::Key(3)), t(300));
        tokens.observe(Scope::Key(4), t(350));
        assert_eq!(tokens.floor(), t(450), "key 1 was the oldest then");
        assert_eq!(tokens.token(Scope::Key(3)), t(450));
        assert_eq!(tokens.token(Scope::Key(4)), t(450));
        assert!(tokens.scoped_len() <= 2);
        assert_eq!(tokens.token(Scope::Shard), t(450));
    }

    #[test]
    fn without_room_for_scopes_every_scope_behaves_like_the_shard() {
        let mut tokens = ShardTokens::new(0);
        tokens.observe(Scope::Key(1), t(100));
        tokens.observe(Scope::Key(2), t(80));
        assert_eq!(tokens.scoped_len(), 0);
        assert_eq!(tokens.token(Scope::Key(2)), t(100));
        assert_eq!(tokens.token(Scope::Key(5)), t(100));
        assert_eq!(tokens.token(Scope::Shard), t(100));
    }

    #[test]
    fn no_scope_ever_waits_for_less_than_a_model_that_keeps_every_token() {
        // Model: every token of every scope, unbounded. The bounded store may wait for more
        // (evictions are conservative) but never for less, and the shard token is always the max.
        let mut tokens = ShardTokens::new(3);
        let mut model: BTreeMap<u64, CausalToken> = BTreeMap::new();
        let mut floor = t(0);
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for step in 0..2_000u64 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let token = t(step * 10 + state % 40);
            let scope = if state.is_multiple_of(11) {
                floor = floor.max(token);
                Scope::Shard
            } else {
                let key = state % 7;
                let kept = model.entry(key).or_default();
                *kept = (*kept).max(token);
                Scope::Key(key)
            };
            tokens.observe(scope, token);
            assert!(tokens.scoped_len() <= 3);
            for key in 0..8 {
                let needed = model.get(&key).copied().unwrap_or_default().max(floor);
                assert!(
                    tokens.token(Scope::Key(key)) >= needed,
                    "step {step} key {key}"
                );
            }
            let newest = model.values().copied().max().unwrap_or_default().max(floor);
            assert_eq!(tokens.token(Scope::Shard), newest, "step {step}");
        }
    }

    #[test]
    fn tokens_every_replica_replayed_are_dropped() {
        let mut tokens = ShardTokens::new(8);
        tokens.observe(Scope::Key(1), t(100));
        tokens.observe(Scope::Key(2), t(300));
        assert_eq!(tokens.forget_replayed(t(200)), 1);
        assert_eq!(tokens.token(Scope::Key(1)), t(0));
        assert_eq!(tokens.token(Scope::Key(2)), t(300));
        assert_eq!(tokens.token(Scope::Shard), t(300));
    }

    #[test]
    fn rows_map_to_key_scopes_deterministically() {
        assert_eq!(Scope::row(3, 4), Scope::row(3, 4));
        assert_ne!(Scope::row(3, 4), Scope::row(4, 3));
        assert_ne!(Scope::row(0, 1), Scope::row(1, 0));
        assert_ne!(Scope::row(0, 0), Scope::Shard);
    }
}
