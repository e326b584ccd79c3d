//! The states of a sweep and of one of its input/output combinations, as written in
//! `summary.json`, in etcd checkpoints and on the wire (`SweepFinished.status`).

use serde::{Deserialize, Serialize};

/// Where a sweep (or one combination of it) stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// A combination not started yet.
    #[default]
    Pending,
    /// A sweep submitted to a controller, waiting for the one before it.
    Queued,
    Running,
    Done,
    /// The server stopped serving (every request of a test failed), or the sweep itself failed.
    Failed,
    /// Cancelled, interrupted (Ctrl-C) or handed over: finished tests are kept.
    Interrupted,
}

impl Status {
    /// The word written in files and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Done => "done",
            Status::Failed => "failed",
            Status::Interrupted => "interrupted",
        }
    }

    /// Still to run (a new leader queues it again).
    pub fn is_pending(self) -> bool {
        matches!(self, Status::Queued | Status::Running)
    }

    /// Parses the word written by [`Status::as_str`].
    pub fn parse(s: &str) -> Option<Status> {
        serde_json::from_value(serde_json::Value::String(s.into())).ok()
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_words_round_trip() {
        for s in [
            Status::Pending,
            Status::Queued,
            Status::Running,
            Status::Done,
            Status::Failed,
            Status::Interrupted,
        ] {
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::json!(s.as_str())
            );
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("cancelled"), None);
    }
}
