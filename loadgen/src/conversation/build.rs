//! Building sessions: random user messages of an exact length, or the user turns of a JSONL file
//! of ShareGPT-style conversations.

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::{Dist, Session, Turn};
use crate::dataset::{self, DatasetError, DatasetSpec, Prompt};
use crate::tokenizer::Tokenizer;

/// How to build the sessions of a test.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConversationSpec {
    /// Turns per session (`--turns`); a file's sessions keep their own.
    pub turns: Dist,
    /// Think time before each turn after the first, in nanoseconds (`--think-time`).
    pub think_time: Dist,
    /// Tokens of each new user message (random sessions).
    pub input_len: u32,
    /// `max_tokens` of each turn.
    pub output_len: u32,
    /// A JSONL file of conversations, one a line: `{"conversations": [{"from": "human",
    /// "value": "…"}, {"from": "gpt", …}, …]}` (or `role`/`content`); its user turns are sent.
    pub path: Option<PathBuf>,
}

/// Builds `n` sessions (a file's are cycled to `n`).
pub async fn build_sessions(
    spec: &ConversationSpec,
    n: usize,
    tok: &Tokenizer,
    seed: u64,
) -> Result<Vec<Session>, DatasetError> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5e55_1045);
    let user_turns: Vec<Vec<Prompt>> = match &spec.path {
        Some(path) => {
            let convs = read_conversations(path, tok, spec.output_len).await?;
            convs.iter().cycle().take(n).cloned().collect()
        }
        None => {
            let counts: Vec<usize> = (0..n)
                .map(|_| spec.turns.sample_count(&mut rng) as usize)
                .collect();
            let random = DatasetSpec::Random {
                input_len: spec.input_len,
                output_len: spec.output_len,
                range_ratio: 0.0,
                prefix_len: 0,
                prefix_groups: 1,
            };
            let mut messages = dataset::build(&random, counts.iter().sum(), tok, seed)
                .await?
                .into_iter();
            counts
                .iter()
                .map(|&c| messages.by_ref().take(c).collect())
                .collect()
        }
    };
    Ok(user_turns
        .into_iter()
        .map(|users| Session {
            turns: users
                .into_iter()
                .enumerate()
                .map(|(i, user)| Turn {
                    user,
                    think_ns: if i == 0 {
                        0
                    } else {
                        spec.think_time.sample_duration(&mut rng).as_nanos() as u64
                    },
                })
                .collect(),
        })
        .collect())
}

/// The user turns of each conversation of a JSONL file.
async fn read_conversations(
    path: &Path,
    tok: &Tokenizer,
    output_len: u32,
) -> Result<Vec<Vec<Prompt>>, DatasetError> {
    #[derive(Deserialize)]
    struct Line {
        conversations: Vec<Message>,
    }
    #[derive(Deserialize)]
    struct Message {
        #[serde(alias = "role")]
        from: String,
        #[serde(alias = "content")]
        value: String,
    }
    let text = std::fs::read_to_string(path).map_err(|e| DatasetError::File {
        path: path.into(),
        reason: e.to_string(),
    })?;
    let mut out = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let l: Line = serde_json::from_str(line).map_err(|e| DatasetError::Line {
            path: path.into(),
            line: i + 1,
            reason: format!(
                "expected {{\"conversations\": [{{\"from\": \"human\", \"value\": \"…\"}}, …]}}: {e}"
            ),
        })?;
        let mut users = Vec::new();
        for m in l
            .conversations
            .into_iter()
            .filter(|m| matches!(m.from.as_str(), "human" | "user"))
        {
            users.push(Prompt {
                prompt_tokens: tok.encode(&m.value).await?.len() as u32,
                text: m.value,
                output_len,
                offset_ns: None,
            });
        }
        if !users.is_empty() {
            out.push(users);
        }
    }
    if out.is_empty() {
        return Err(DatasetError::Empty { path: path.into() });
    }
    Ok(out)
}
