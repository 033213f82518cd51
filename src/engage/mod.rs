//! Engaging a goal: control groups and the test versus control comparison.

pub mod stats;
