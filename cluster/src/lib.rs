//! benchctl's distributed mode on etcd (v3 API: KV, Watch, Lease, Txn, Election — what Debian's
//! etcd-server 3.4 offers):
//!
//! - **Membership.** Agents and load workers keep a key under a lease
//!   ([`register`]); it disappears when they stop or stop answering.
//! - **Leader election** among controllers ([`campaign`]); the elected controller's gRPC URL is
//!   the election's value.
//! - **Fenced writes** ([`Leadership::put`]): a write succeeds only while its author's leader key
//!   exists with the revision it was elected at, so a deposed leader cannot overwrite its
//!   successor's state.
//! - **Following the leader** ([`follow_leader`]): agents and workers learn the current leader's
//!   URL, and learn of every change, across etcd restarts.
//!
//! Key layout (all under `/benchctl/v1/`):
//!
//! | key | value | lease |
//! |---|---|---|
//! | `leader/<lease id>` | the leader's gRPC URL (etcd's election keys) | the controller's |
//! | `agents/<node>` | `{"version":…,"instance_id":…}` | the agent's |
//! | `workers/<name>` | `{"version":…,"max_streams":…}` | the worker's |
//! | `state/…` | controller state, written fenced | none |
//!
//! Shared by every benchctl binary besides: [`clock`] (the one monotonic clock), [`duration`]
//! (duration flags), `logging` (feature `logging`), [`process`] (`main`, signals), [`peer`] (a peer's reconnecting
//! session with the controller) and [`tls`] (mTLS flags). `testing` (feature `testing`) holds
//! test fixtures.

mod backoff;
pub mod clock;
pub mod duration;
mod election;
mod etcd;
mod fence;
mod follow;
mod keys;
mod lease;
#[cfg(feature = "logging")]
pub mod logging;
mod membership;
pub mod peer;
mod probe;
pub mod process;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;

pub use backoff::{SESSION_BACKOFF_MAX, session_backoff};
pub use election::{Leadership, campaign};
pub use etcd::EtcdArgs;
pub use fence::Fence;
pub use follow::follow_leader;
pub use keys::{ELECTION, PREFIX, agent_key, state_key, worker_key};
pub use membership::register;
pub use peer::{
    LeaderMoved, Link, Session, Target, controller_endpoint, next_controller, reconnect,
};
pub use probe::{EtcdProbe, PROBE_TIMEOUT};
pub use process::cancel_on_signal;
pub use tls::TlsArgs;
