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
        let turns = records.iter().filter_map(|r| r.turn).max()? as usize + 1;
        let mut s = Sessions {
            started: records.iter().filter(|r| r.turn == Some(0)).count(),
            completed: records
                .iter()
                .filter(|r| r.ok() && r.turn.zip(r.session_turns).is_some_and(|(t, n)| t + 1 == n))
                .count(),
            ..Default::default()
        };
        let mean_by_turn = |f: &dyn Fn(&RequestRecord) -> Option<f64>| {
            let mut sums = vec![(0.0, 0usize); turns];
            for r in records.iter().filter(|r| r.ok()) {
                if let (Some(t), Some(v)) = (r.turn, f(r)) {
                    sums[t as usize].0 += v;
                    sums[t as usize].1 += 1;
                }
            }
            sums.into_iter()
                .map(|(sum, n)| (n > 0).then(|| sum / n as f64))
                .collect::<Vec<_>>()
        };
        s.mean_ttft_ms_by_turn = mean_by_turn(&|r| r.ttft_ns().map(|v| v as f64 / 1e6));
        s.mean_ttfo_ms_by_turn = mean_by_turn(&|r| r.ttfo_ns().map(|v| v as f64 / 1e6));
        s.mean_prompt_tokens_by_turn = mean_by_turn(&|r| Some(r.prompt_tokens() as f64));
        Some(s)
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
