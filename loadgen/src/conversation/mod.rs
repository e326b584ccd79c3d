//! Conversations (`--dataset conversations`): sessions of several turns. Each turn sends the
//! whole history so far (the earlier user messages and the server's actual answers) and a new
//! user message; a think time separates a turn from the previous answer. The session is the
//! unit of concurrency and of arrivals; one session runs on one worker.

mod build;
mod dist;
mod run;

pub use build::{ConversationSpec, build_sessions};
pub use dist::Dist;
pub use run::measure_sessions;

use serde::{Deserialize, Serialize};

use crate::dataset::Prompt;

/// One session: its turns in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub turns: Vec<Turn>,
}

/// One turn: the new user message (its text, its tokens, the turn's `max_tokens`) and the think
/// time before it is sent (after the previous answer; 0 for the first turn).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    pub user: Prompt,
    pub think_ns: u64,
}

impl Session {
    /// The first turn as a single prompt (the warm-up's and the preflight's).
    pub fn first_prompt(&self) -> Option<&Prompt> {
        self.turns.first().map(|t| &t.user)
    }
}

// ------------------------------------------------------------------------------- wire

impl From<&Session> for proto::Session {
    fn from(s: &Session) -> Self {
        proto::Session {
            turns: s
                .turns
                .iter()
                .map(|t| proto::Turn {
                    user: Some(proto::Prompt::from(&t.user)),
                    think_ns: t.think_ns,
                })
                .collect(),
        }
    }
}

impl From<proto::Session> for Session {
    fn from(s: proto::Session) -> Self {
        Session {
            turns: s
                .turns
                .into_iter()
                .map(|t| Turn {
                    user: t.user.map(Prompt::from).unwrap_or(Prompt {
                        text: String::new(),
                        prompt_tokens: 0,
                        output_len: 1,
                        offset_ns: None,
                    }),
                    think_ns: t.think_ns,
                })
                .collect(),
        }
    }
}
