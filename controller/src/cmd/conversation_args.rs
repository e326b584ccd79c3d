//! The flags of the conversation workload (`--dataset conversations`), shared by `bench` and
//! `sweep`.

use std::path::PathBuf;

use clap::Args;
use loadgen::conversation::{ConversationSpec, Dist};

/// `--turns` and `--think-time`.
#[derive(Clone, Debug, Args)]
pub struct ConversationArgs {
    /// Conversations: turns per session, fixed (`4`) or drawn (`uniform:2:6`, `exp:4`)
    /// [default: 4].
    #[arg(long, env = "BENCHCTL_TURNS")]
    pub turns: Option<String>,
    /// Conversations: the user's think time between an answer and the next turn, fixed (`2s`)
    /// or drawn (`uniform:1s:3s`, `exp:2s`) [default: 0s].
    #[arg(long, env = "BENCHCTL_THINK_TIME")]
    pub think_time: Option<String>,
}

impl ConversationArgs {
    /// The conversation spec: new user messages of `input_len` tokens (or the user turns of
    /// `path`), `output_len` tokens asked for each turn. Errors name the flag and value.
    pub fn spec(
        &self,
        input_len: u32,
        output_len: u32,
        path: Option<PathBuf>,
    ) -> anyhow::Result<ConversationSpec> {
        Ok(ConversationSpec {
            turns: Dist::parse_turns(self.turns.as_deref().unwrap_or("4"))
                .map_err(anyhow::Error::msg)?,
            think_time: Dist::parse_duration(
                "--think-time",
                self.think_time.as_deref().unwrap_or("0s"),
            )
            .map_err(anyhow::Error::msg)?,
            input_len,
            output_len,
            path,
        })
    }
}
