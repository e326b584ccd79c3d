//! The key layout in etcd (all under [`PREFIX`]): see the crate's documentation.

/// The root of every key.
pub const PREFIX: &str = "/benchctl/v1/";
/// The controllers' election.
pub const ELECTION: &str = "/benchctl/v1/leader";

/// An agent's membership key (its node name).
pub fn agent_key(node: &str) -> String {
    format!("{PREFIX}agents/{node}")
}

/// A load worker's membership key (its name).
pub fn worker_key(name: &str) -> String {
    format!("{PREFIX}workers/{name}")
}

/// A key of the controller's state (written fenced).
pub fn state_key(rest: &str) -> String {
    format!("{PREFIX}state/{rest}")
}
