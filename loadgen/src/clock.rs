//! The one clock every timestamp comes from: `CLOCK_MONOTONIC` in nanoseconds, shared with the
//! controller and the agents (see [`cluster::clock`]).

pub use cluster::clock::*;
