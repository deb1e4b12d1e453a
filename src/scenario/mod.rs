//! Scenario files: parsing, validation, and the validated model.

pub mod model;

pub use model::*;
