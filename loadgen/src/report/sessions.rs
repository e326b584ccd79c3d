//! A conversation run's sessions: how many started and completed, and how the prompt and the
//! latency to the first token grow turn after turn.

use crate::record::RequestRecord;

/// The sessions of a conversation run (records with a `turn`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sessions {
    /// Sessions whose first turn was sent.
    pub started: usize,
    /// Sessions whose every turn completed.
    pub completed: usize,
    /// By turn index (0-based): the mean over that turn's completed requests; `None` where it
    /// has none.
    pub mean_ttft_ms_by_turn: Vec<Option<f64>>,
    pub mean_ttfo_ms_by_turn: Vec<Option<f64>>,
    /// The prompt tokens the server counted (the whole history so far).
    pub mean_prompt_tokens_by_turn: Vec<Option<f64>>,
}

impl Sessions {
    /// `None` when no record is a conversation's turn.
    pub fn of(records: &[RequestRecord]) -> Option<Sessions> {
        let mut b = Sessions::builder();
        records.iter().for_each(|r| b.add(r));
        b.finish()
    }

    /// Sessions counted one record at a time.
    pub(crate) fn builder() -> SessionsBuilder {
        SessionsBuilder::default()
    }
}

/// Per-turn sums: (ttft ms, ttfo ms, prompt tokens), each as (sum, count).
#[derive(Default)]
pub(crate) struct SessionsBuilder {
    any: bool,
    started: usize,
    completed: usize,
    sums: Vec<[(f64, usize); 3]>,
}

impl SessionsBuilder {
    pub(crate) fn add(&mut self, r: &RequestRecord) {
        let Some(t) = r.turn else {
            return;
        };
        self.any = true;
        let t = t as usize;
        if self.sums.len() <= t {
            self.sums.resize(t + 1, [(0.0, 0); 3]);
        }
        self.started += usize::from(t == 0);
        if !r.ok() {
            return;
        }
        self.completed += usize::from(r.session_turns.is_some_and(|n| t as u32 + 1 == n));
        let values = [
            r.ttft_ns().map(|v| v as f64 / 1e6),
            r.ttfo_ns().map(|v| v as f64 / 1e6),
            Some(r.prompt_tokens() as f64),
        ];
        for (sum, v) in self.sums[t].iter_mut().zip(values) {
            if let Some(v) = v {
                sum.0 += v;
                sum.1 += 1;
            }
        }
    }

    pub(crate) fn finish(self) -> Option<Sessions> {
        if !self.any {
            return None;
        }
        let mean = |k: usize| {
            self.sums
                .iter()
                .map(|s| (s[k].1 > 0).then(|| s[k].0 / s[k].1 as f64))
                .collect::<Vec<_>>()
        };
        Some(Sessions {
            started: self.started,
            completed: self.completed,
            mean_ttft_ms_by_turn: mean(0),
            mean_ttfo_ms_by_turn: mean(1),
            mean_prompt_tokens_by_turn: mean(2),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::ContentChunk;

    fn turn(t: u32, n: u32, ttft_ms: u64, prompt: u32) -> RequestRecord {
        RequestRecord {
            turn: Some(t),
            session_turns: Some(n),
            chunks: vec![ContentChunk {
                t_ns: ttft_ms * 1_000_000,
                text_end: 1,
                tokens: 1,
            }],
            first_visible_ns: Some(ttft_ms * 1_000_000),
            prompt_tokens_server: Some(prompt),
            ..Default::default()
        }
    }

    #[test]
    fn started_completed_and_growth_by_turn() {
        assert_eq!(Sessions::of(&[RequestRecord::default()]), None);
        let mut failed = turn(1, 3, 0, 0);
        failed.error = Some(crate::error::RequestError::new(
            crate::error::ErrorKind::Timeout,
            "t",
        ));
        let records = [
            turn(0, 2, 10, 100),
            turn(1, 2, 30, 300),
            turn(0, 3, 20, 200),
            failed,
        ];
        let s = Sessions::of(&records).unwrap();
        assert_eq!((s.started, s.completed), (2, 1));
        assert_eq!(s.mean_ttft_ms_by_turn, vec![Some(15.0), Some(30.0)]);
        assert_eq!(s.mean_prompt_tokens_by_turn, vec![Some(150.0), Some(300.0)]);
    }
}
