//! `benchctl sweep`: the grid of input/output combinations × concurrencies, the thresholds a
//! test must meet, the search for the largest concurrency that meets them, the engine that runs
//! the tests, and the original scripts' result directory; in the distributed mode, the controller's queue of
//! sweeps and their checkpoints.

pub mod axis;
pub mod engine;
pub mod entry;
pub mod feed;
pub mod frontier;
pub mod grid;
pub mod plan;
pub mod progress;
pub mod remote;
pub mod results;
pub mod search;
pub mod status;
pub mod summary;
pub mod summary_files;
pub mod threshold;
pub mod verdict;
