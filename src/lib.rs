//! replisim: a PostgreSQL read/write replica router, and a deterministic simulation harness that runs
//! that same router against simulated PostgreSQL servers and checks what they executed.
//!
//! Map of the modules:
//! - [`router`]: the production router (tokio-postgres). Knows nothing of simulation.
//!   - `router::config`: [`RouterConfig`] and its defaults, `from_env`.
//!   - `router::connector`: the one seam between real and simulated: a trait that opens a stream to a node.
//! - [`scenario`]: scenario files: raw TOML -> validated [`scenario::Scenario`], with file:line:col errors.
//! - [`record`]: what a run records, in either mode, and the workload both modes run.
//!   - `record::events`: the ground truth every checker reads (statements, connections, network,
//!     client ops); `record::workload`: the client loops; `record::schedule`: the fault schedule.
//! - [`sim`]: the harness.
//!   - `sim::node`: a simulated PostgreSQL server (pgwire) with a WAL stream to its replicas.
//!   - `sim::harness`: builds the turmoil simulation, runs the workload, applies the faults.
//!   - `sim::fault_evidence`: judges from the records whether each fault took effect, and why.
//! - [`check`]: one invariant checker per file, each reading [`record::events::Events`].
//! - [`report`]: the JSON and Markdown reports, the SVG charts (`report::charts`), and the printed
//!   summary.
//! - [`search`]: many runs at once: `sweep`, `explore` (drawn fault schedules), `shrink`.
//! - [`cli`]: every `replisim` command, one file each, mapped to exit codes.
//! - [`real`]: a local PostgreSQL 15 replication cluster the crate runs itself, and a TCP fault proxy.
//!
//! Cargo features (all on by default): `sim` (every module above but `router`, `real` and `cli`),
//! `real` and `cli`. With `default-features = false` only [`router`] is built, with its own
//! dependencies, and without `--cfg tokio_unstable`.
#![forbid(unsafe_code)]

#[cfg(feature = "sim")]
pub mod check;
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "real")]
pub mod real;
#[cfg(feature = "sim")]
pub mod record;
#[cfg(feature = "sim")]
pub mod report;
pub mod router;
#[cfg(feature = "sim")]
pub mod scenario;
#[cfg(feature = "sim")]
pub mod search;
#[cfg(feature = "sim")]
pub mod sim;

pub use router::RouterConfig;
