//! Trace replay (`--dataset mooncake --dataset-path F`): the Mooncake trace format (as AIPerf
//! and SGLang's `bench_serving` read it), one JSON object a line:
//!
//! ```json
//! {"timestamp": 27482, "input_length": 6955, "output_length": 52, "hash_ids": [46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 2353, 2354]}
//! ```
//!
//! - `timestamp`: ms from the trace's start; each request starts at
//!   `(timestamp − first) / --trace-speedup` from the measured run's start (an open loop, its
//!   dispatch lag reported). Records are replayed in timestamp order.
//! - `hash_ids`: one id per block of [`BLOCK_TOKENS`] prompt tokens (the last block partial):
//!   equal ids are equal blocks of text, across requests, so the trace's prefix sharing is
//!   reproduced and the cached tokens it asks for are known ([`expected_cached_tokens`]).
//!   Missing ids (or fewer than the blocks) are filled with ids of the record's own.
//! - `input_length`, `output_length`: the prompt's and the output's tokens (`max_tokens`).
//!
//! Prompts past the trace's end (the warm-up's, the preflight's) replay its records again with
//! blocks of their own, so they never warm the trace's blocks.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::path::Path;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Deserialize;

use super::{DatasetError, Prompt};
use crate::tokenizer::Tokenizer;

/// Tokens per hash block (Mooncake's).
pub const BLOCK_TOKENS: u32 = 512;

/// One line of a trace.
#[derive(Clone, Debug, Deserialize)]
pub struct Record {
    #[serde(default)]
    pub timestamp: f64,
    pub input_length: u32,
    pub output_length: u32,
    #[serde(default)]
    pub hash_ids: Vec<u64>,
}

impl Record {
    /// The record's block ids: its `hash_ids`, completed to cover `input_length` with ids no
    /// other record has (`fresh` salts them, so copies past the trace's end share nothing).
    fn blocks(&self, index: usize, fresh: u64) -> Vec<u64> {
        let n = self.input_length.div_ceil(BLOCK_TOKENS) as usize;
        let own = |j: usize| (1 << 63) | ((index as u64) << 20) | j as u64;
        (0..n)
            .map(|j| match (fresh, self.hash_ids.get(j)) {
                (0, Some(&h)) => h & !(1 << 63),
                (0, None) => own(j),
                (f, _) => own(j) ^ (f << 40),
            })
            .collect()
    }
}

/// The trace's records in timestamp order.
pub fn read(path: &Path) -> Result<Vec<Record>, DatasetError> {
    let text = std::fs::read_to_string(path).map_err(|e| DatasetError::File {
        path: path.into(),
        reason: e.to_string(),
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line_err = |reason: String| DatasetError::Line {
            path: path.into(),
            line: i + 1,
            reason,
        };
        let r: Record = serde_json::from_str(line).map_err(|e| {
            line_err(format!("expected {{\"timestamp\": ms, \"input_length\": N, \"output_length\": N, \"hash_ids\": [..]}}: {e}"))
        })?;
        if r.input_length == 0 || r.output_length == 0 || !r.timestamp.is_finite() {
            return Err(line_err(format!(
                "input_length and output_length must be at least 1 and timestamp a number, got {}, {}, {}",
                r.input_length, r.output_length, r.timestamp
            )));
        }
        out.push(r);
    }
    if out.is_empty() {
        return Err(DatasetError::Empty { path: path.into() });
    }
    out.sort_by(|a, b| a.timestamp.total_cmp(&b.timestamp));
    Ok(out)
}

/// `n` prompts: the trace's first `replay` records in order (with their start times), then
/// copies with blocks of their own and no start time.
pub async fn build(
    path: &Path,
    speedup: f64,
    n: usize,
    replay: usize,
    tok: &Tokenizer,
    seed: u64,
) -> Result<Vec<Prompt>, DatasetError> {
    if !(speedup.is_finite() && speedup > 0.0) {
        return Err(DatasetError::Invalid {
            flag: "--trace-speedup",
            rule: "a positive number",
            value: speedup.to_string(),
        });
    }
    let records = read(path)?;
    let first = records[0].timestamp;
    let pool = tok.id_pool().await?;
    let mut texts: HashMap<u64, String> = HashMap::new();
    let mut out = Vec::with_capacity(n);
    let replay = replay.clamp(1, records.len());
    for i in 0..n {
        // past the replayed records: copies in cycles 1, 2… with blocks of their own
        let (r, cycle) = (&records[i % replay], (i / replay) as u64);
        let blocks = r.blocks(i % replay, cycle);
        let mut text = String::new();
        for &h in &blocks {
            if let Entry::Vacant(slot) = texts.entry(h) {
                let mut rng = StdRng::seed_from_u64(seed ^ h.wrapping_mul(0x9e37_79b9_7f4a_7c15));
                let ids: Vec<u32> = (0..BLOCK_TOKENS)
                    .map(|_| pool[rng.random_range(0..pool.len())])
                    .collect();
                // exactly BLOCK_TOKENS tokens alone, so a block's tokens are the block's
                let block = super::exact_text(tok, "", ids, BLOCK_TOKENS, &pool, &mut rng).await?;
                slot.insert(block.0);
            }
            text.push_str(&texts[&h]);
        }
        // the last block is partial: cut the text to `input_length` tokens
        let mut ids = tok.encode(&text).await?;
        ids.truncate(r.input_length as usize);
        let text = tok.decode(&ids).await?;
        let prompt_tokens = tok.encode(&text).await?.len() as u32;
        let offset_ms = (r.timestamp - first) / speedup;
        out.push(Prompt {
            text,
            prompt_tokens,
            output_len: r.output_length,
            offset_ns: (cycle == 0).then(|| (offset_ms * 1e6).round() as u64),
        });
    }
    Ok(out)
}

/// The prompt tokens of the first `measured` records that repeat the leading blocks of an
/// earlier record (a block counts only after all the blocks before it matched: the prefix
/// caches' rule), capped at each record's `input_length`.
pub fn expected_cached_tokens(path: &Path, measured: usize) -> u64 {
    let Ok(records) = read(path) else {
        return 0;
    };
    let mut seen: HashSet<Vec<u64>> = HashSet::new();
    let mut total = 0u64;
    for (i, r) in records.iter().enumerate().take(measured) {
        let blocks = r.blocks(i, 0);
        let mut hit = 0u64;
        let mut chain = Vec::with_capacity(blocks.len());
        let mut matching = true;
        for &h in &blocks {
            chain.push(h);
            matching = matching && seen.contains(&chain);
            if matching {
                hit += u64::from(BLOCK_TOKENS);
            } else {
                seen.insert(chain.clone());
            }
        }
        total += hit.min(u64::from(r.input_length));
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(lines: &[&str]) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), lines.join("\n")).unwrap();
        f
    }

    #[test]
    fn records_sort_and_bad_lines_name_their_line() {
        let f = trace(&[
            r#"{"timestamp": 20, "input_length": 600, "output_length": 5, "hash_ids": [1, 2]}"#,
            r#"{"timestamp": 10, "input_length": 100, "output_length": 5, "hash_ids": [1]}"#,
        ]);
        let r = read(f.path()).unwrap();
        assert_eq!((r[0].timestamp, r[1].timestamp), (10.0, 20.0));
        let bad = trace(&[r#"{"timestamp": 1, "input_length": 0, "output_length": 5}"#]);
        let e = read(bad.path()).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("input_length"), "{e}");
    }

    #[test]
    fn expected_hits_follow_the_leading_shared_blocks() {
        let f = trace(&[
            r#"{"timestamp": 0, "input_length": 1100, "output_length": 5, "hash_ids": [1, 2, 3]}"#,
            r#"{"timestamp": 1, "input_length": 1100, "output_length": 5, "hash_ids": [1, 2, 4]}"#,
            r#"{"timestamp": 2, "input_length": 700, "output_length": 5, "hash_ids": [5, 2]}"#,
            r#"{"timestamp": 3, "input_length": 300, "output_length": 5, "hash_ids": [1]}"#,
        ]);
        // 2 blocks, none (block 2 follows another head), then 300 of block 1
        assert_eq!(expected_cached_tokens(f.path(), 4), 1024 + 300);
        assert_eq!(expected_cached_tokens(f.path(), 1), 0);
    }
}
