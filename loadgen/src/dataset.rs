//! Prompts: random prompts of an exact token length, ShareGPT conversations, or a JSONL file.

use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::tokenizer::{Tokenizer, TokenizerError};

/// One prompt to send.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prompt {
    pub text: String,
    /// Tokens in `text` by the client's tokenizer (the target length for random prompts).
    pub prompt_tokens: u32,
    /// `max_tokens` to ask for.
    pub output_len: u32,
    /// When its request starts, ns from the measured run's start (a replayed trace's
    /// timestamp; [`mooncake`]); `None`: the arrival process decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset_ns: Option<u64>,
}

/// Which prompts to build.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "dataset", rename_all = "snake_case")]
pub enum DatasetSpec {
    /// Random token ids decoded to text, adjusted until the text has exactly the target length.
    Random {
        input_len: u32,
        output_len: u32,
        /// Lengths drawn uniformly from `[len·(1−r), len·(1+r)]`.
        range_ratio: f64,
        /// Tokens of a prefix shared by every prompt (on top of `input_len`).
        prefix_len: u32,
        /// Distinct prefixes of `prefix_len` tokens; each prompt draws one ([`shared_prefix`]).
        #[serde(default = "one_group")]
        prefix_groups: u32,
    },
    /// ShareGPT JSON: the first human turn is the prompt; the output length is the reply's
    /// token count unless `output_len` is given.
    Sharegpt {
        path: PathBuf,
        output_len: Option<u32>,
    },
    /// One JSON object a line: `{"prompt": "…", "output_len": N}` (`output_len` optional).
    Jsonl { path: PathBuf, output_len: u32 },
    /// A Mooncake trace replayed on its timestamps, `speedup` times faster ([`mooncake`]): its
    /// first `replay` records, then (warm-up, preflight) copies sharing none of its blocks.
    Mooncake {
        path: PathBuf,
        speedup: f64,
        replay: usize,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error("--dataset-path {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("--dataset-path {path}, line {line}: {reason}")]
    Line {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("--dataset-path {path}: no usable prompt in the file")]
    Empty { path: PathBuf },
    #[error("{flag} must be {rule}, got {value}")]
    Invalid {
        flag: &'static str,
        rule: &'static str,
        value: String,
    },
}

pub mod mooncake;
pub mod shared_prefix;

fn one_group() -> u32 {
    1
}

/// The prompt tokens a prefix cache should serve for the first `measured` of the prompts
/// `build(spec, measured + warmup, _, seed)` makes, the next `warmup` being sent first (the
/// reuse the workload asks for; 0 for datasets that ask for none).
pub fn expected_cached_tokens(
    spec: &DatasetSpec,
    seed: u64,
    measured: usize,
    warmup: usize,
) -> u64 {
    match spec {
        DatasetSpec::Random {
            prefix_len,
            prefix_groups,
            ..
        } => shared_prefix::expected_cached_tokens(
            seed,
            *prefix_len,
            *prefix_groups,
            measured,
            warmup,
        ),
        // the copies past the trace's end share no block with it
        DatasetSpec::Mooncake { path, .. } => mooncake::expected_cached_tokens(path, measured),
        _ => 0,
    }
}

/// Builds `n` prompts.
pub async fn build(
    spec: &DatasetSpec,
    n: usize,
    tok: &Tokenizer,
    seed: u64,
) -> Result<Vec<Prompt>, DatasetError> {
    let mut rng = StdRng::seed_from_u64(seed);
    match spec {
        DatasetSpec::Random {
            input_len,
            output_len,
            range_ratio,
            prefix_len,
            prefix_groups,
        } => {
            if !(0.0..1.0).contains(range_ratio) {
                return Err(DatasetError::Invalid {
                    flag: "--random-range-ratio",
                    rule: "in [0, 1)",
                    value: range_ratio.to_string(),
                });
            }
            if *output_len == 0 {
                return Err(DatasetError::Invalid {
                    flag: "--output-len",
                    rule: "at least 1",
                    value: "0".into(),
                });
            }
            let pool = tok.id_pool().await?;
            let prefixes =
                shared_prefix::prefixes(tok, *prefix_len, *prefix_groups, &pool, &mut rng).await?;
            let groups = shared_prefix::groups(seed, n, *prefix_groups);
            let mut out = Vec::with_capacity(n);
            for group in groups {
                let prefix = prefixes.get(group as usize).map_or("", String::as_str);
                let in_len = draw_len(*input_len, *range_ratio, &mut rng).max(1);
                let out_len = draw_len(*output_len, *range_ratio, &mut rng).max(1);
                let target = prefix_len + in_len;
                let ids: Vec<u32> = (0..in_len)
                    .map(|_| pool[rng.random_range(0..pool.len())])
                    .collect();
                let (text, count) = exact_text(tok, prefix, ids, target, &pool, &mut rng).await?;
                out.push(Prompt {
                    text,
                    prompt_tokens: count,
                    output_len: out_len,
                    offset_ns: None,
                });
            }
            Ok(out)
        }
        DatasetSpec::Sharegpt { path, output_len } => {
            let mut convs = read_sharegpt(path)?;
            convs.shuffle(&mut rng);
            let mut out = Vec::with_capacity(n);
            for (prompt, reply) in convs {
                if out.len() == n {
                    break;
                }
                let p = tok.encode(&prompt).await?.len() as u32;
                let o = match output_len {
                    Some(o) => *o,
                    None => tok.encode(&reply).await?.len() as u32,
                };
                // vLLM's filter: drop very short and very long conversations
                if p < 4 || o < 4 || (output_len.is_none() && (p > 1024 || p + o > 2048)) {
                    continue;
                }
                out.push(Prompt {
                    text: prompt,
                    prompt_tokens: p,
                    output_len: o,
                    offset_ns: None,
                });
            }
            cycle_to(out, n, path)
        }
        DatasetSpec::Mooncake {
            path,
            speedup,
            replay,
        } => mooncake::build(path, *speedup, n, *replay, tok, seed).await,
        DatasetSpec::Jsonl { path, output_len } => {
            let text = std::fs::read_to_string(path).map_err(|e| DatasetError::File {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            #[derive(Deserialize)]
            struct Line {
                prompt: String,
                #[serde(default)]
                output_len: Option<u32>,
            }
            let mut out = Vec::new();
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let l: Line = serde_json::from_str(line).map_err(|e| DatasetError::Line {
                    path: path.clone(),
                    line: i + 1,
                    reason: format!("expected {{\"prompt\": \"…\", \"output_len\": N}}: {e}"),
                })?;
                let p = tok.encode(&l.prompt).await?.len() as u32;
                out.push(Prompt {
                    text: l.prompt,
                    prompt_tokens: p,
                    output_len: l.output_len.unwrap_or(*output_len),
                    offset_ns: None,
                });
                if out.len() == n {
                    break;
                }
            }
            cycle_to(out, n, path)
        }
    }
}

fn draw_len(len: u32, ratio: f64, rng: &mut StdRng) -> u32 {
    if ratio == 0.0 {
        return len;
    }
    let lo = (len as f64 * (1.0 - ratio)).floor() as u32;
    let hi = (len as f64 * (1.0 + ratio)).ceil() as u32;
    rng.random_range(lo..=hi)
}

/// Decodes `ids` after `prefix` and adjusts the ids until `prefix + text` re-encodes to exactly
/// `target` tokens: too long, keep the first tokens of the re-encoding; too short, append
/// random ids. Returns the text and its real token count (the target unless it did not converge,
/// which is reported as a deviation).
async fn exact_text(
    tok: &Tokenizer,
    prefix: &str,
    mut ids: Vec<u32>,
    target: u32,
    pool: &[u32],
    rng: &mut StdRng,
) -> Result<(String, u32), DatasetError> {
    let prefix_tokens = if prefix.is_empty() {
        0
    } else {
        tok.encode(prefix).await?.len()
    };
    let mut best: Option<(String, u32)> = None;
    for _ in 0..16 {
        let text = format!("{prefix}{}", tok.decode(&ids).await?);
        let enc = tok.encode(&text).await?;
        let count = enc.len() as u32;
        if count == target {
            return Ok((text, count));
        }
        let better = best
            .as_ref()
            .is_none_or(|(_, c)| count.abs_diff(target) < c.abs_diff(target));
        if better {
            best = Some((text, count));
        }
        // Work on the suffix's own tokens: re-encoding the decoded text is what the server sees.
        let mut suffix: Vec<u32> = enc[prefix_tokens.min(enc.len())..].to_vec();
        let want = target as usize - prefix_tokens.min(target as usize);
        if suffix.len() > want {
            suffix.truncate(want);
        } else {
            while suffix.len() < want {
                suffix.push(pool[rng.random_range(0..pool.len())]);
            }
        }
        ids = suffix;
    }
    Ok(best.expect("at least one attempt was made"))
}

fn read_sharegpt(path: &Path) -> Result<Vec<(String, String)>, DatasetError> {
    let file = std::fs::File::open(path).map_err(|e| DatasetError::File {
        path: path.into(),
        reason: e.to_string(),
    })?;
    #[derive(Deserialize)]
    struct Conv {
        #[serde(default)]
        conversations: Vec<Turn>,
    }
    #[derive(Deserialize)]
    struct Turn {
        value: String,
    }
    let convs: Vec<Conv> = serde_json::from_reader(std::io::BufReader::new(file)).map_err(|e| DatasetError::File {
        path: path.into(),
        reason: format!("not ShareGPT JSON (an array of {{\"conversations\": [{{\"from\", \"value\"}}, …]}}): {e}"),
    })?;
    Ok(convs
        .into_iter()
        .filter(|c| c.conversations.len() >= 2)
        .map(|mut c| {
            let reply = c.conversations.swap_remove(1).value;
            (c.conversations.swap_remove(0).value, reply)
        })
        .collect())
}

/// Repeats the prompts until there are `n` (a small file still makes a long run).
fn cycle_to(prompts: Vec<Prompt>, n: usize, path: &Path) -> Result<Vec<Prompt>, DatasetError> {
    if prompts.is_empty() {
        return Err(DatasetError::Empty { path: path.into() });
    }
    Ok(prompts.iter().cycle().take(n).cloned().collect())
}
