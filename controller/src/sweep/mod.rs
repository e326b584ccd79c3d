//! `benchctl sweep` building blocks: the thresholds a test must meet and the search for the
//! largest concurrency that meets them. (The sweep command itself comes with its issue.)

pub mod grid;
pub mod search;
pub mod threshold;
