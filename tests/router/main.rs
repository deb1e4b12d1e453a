//! The router against fake PostgreSQL nodes, one file per theme: ejection, metrics, pooling,
//! routing, the router under stress, and (ignored unless a server is named) a real PostgreSQL.
//! One test binary for all of them: each would otherwise compile the router's generic code again.

mod router_support;

mod ejection;
mod metrics;
mod pooling;
mod postgres;
mod routing;
mod stress;
