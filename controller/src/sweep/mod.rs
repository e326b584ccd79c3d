//! `benchctl sweep`: the grid of input/output combinations × concurrencies, the thresholds a
//! test must meet, the search for the largest concurrency that meets them, and the seed's result
//! directory.

pub mod feed;
pub mod grid;
pub mod plan;
pub mod remote;
pub mod remote_cli;
pub mod results;
pub mod run;
pub mod search;
pub mod status;
pub mod threshold;

pub use plan::SweepArgs;
