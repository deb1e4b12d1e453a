//! The router and the cluster tooling against real PostgreSQL servers started by the tests, one file
//! per theme: the cluster and its fault proxies, lag, promotion (by a fault and discovered by the
//! router), the router's routing and caps, TLS, transactions. One test binary for all of them: each
//! would otherwise compile the router's generic code again. Tests run two at a time, each on a
//! cluster of its own (ports and directories of its own).

mod real_support;

mod cluster;
mod lag;
mod promote;
mod promotion;
mod router;
mod tls;
mod transactions;
