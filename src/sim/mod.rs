//! The deterministic simulation harness around the router.

pub mod events;
