//! The production read/write replica router.

pub mod config;

pub use config::{Balance, RouterConfig};
