//! Invariant checkers: one per file, each reading the recorded events.
