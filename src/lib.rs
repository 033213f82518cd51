//! goalcast: predictive user segments over a Parquet warehouse.
//!
//! The library contains every step; the `goalcast` binary is a thin command-line layer over it.
//! See `ARCHITECTURE.md` for the codemap.

pub mod context;
pub mod error;
pub mod schema;
pub mod warehouse;

pub use error::{Error, Result};
pub mod cli;
pub mod engage;
pub mod generate;
pub mod goals;
pub mod import;
pub mod models;
pub mod nightly;
pub mod predict;
pub mod progress;
pub mod query;
pub mod report;
pub mod schedule;
pub mod segments;
