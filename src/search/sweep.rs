//! The sweep: every scenario over every seed, and its per-scenario table.
