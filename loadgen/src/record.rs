//! One request's timings and counts: the raw material every metric is computed from.
//!
//! All times are `CLOCK_MONOTONIC` nanoseconds ([`crate::clock::mono_ns`]), taken when the bytes
//! were read from the connection, before they were parsed.

use serde::{Deserialize, Serialize};

use crate::error::RequestError;

/// A chunk of the stream that carried generated content (text, or reasoning text).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentChunk {
    /// When the bytes holding this chunk were read.
    pub t_ns: u64,
    /// End offset (bytes) of this chunk's text in the generated text.
    pub text_end: u32,
    /// Tokens this chunk carried, filled in after the run (tokenizer offsets, or the server's
    /// count when it equals the number of chunks). 0 until then.
    pub tokens: u32,
}

/// One request, from its intended start to its end.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Index of the request in the run (0-based; warm-up requests are not recorded).
    pub index: u64,
    /// Sent as `X-Request-Id` so a server log can be joined with this record.
    pub request_id: String,
    /// When the arrival schedule wanted this request to start.
    pub intended_ns: u64,
    /// When the scheduler actually released it (open loop: `dispatch - intended` is the lag).
    pub dispatch_ns: u64,
    /// When it had a concurrency slot and the request was handed to the HTTP client
    /// (`send - dispatch` is the client queue time).
    pub send_ns: u64,
    /// When the response headers were read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers_ns: Option<u64>,
    /// When the first body bytes were read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_byte_ns: Option<u64>,
    /// Content chunks in arrival order: every chunk that carried generated text on any channel
    /// (visible content, reasoning, tool calls).
    pub chunks: Vec<ContentChunk>,
    /// When the first chunk with visible output (`text`, `delta.content`) was read: TTFO ends
    /// here. `None` when the answer had none (all reasoning or tool calls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_visible_ns: Option<u64>,
    /// Byte ranges `[start, end)` of `text` that came on hidden channels (reasoning, tool
    /// calls), in order; empty when all of it was visible.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hidden_text: Vec<[u32; 2]>,
    /// The last chunk that carried `choices` (content or the finishing chunk): E2EL ends here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_choice_ns: Option<u64>,
    /// When the body ended (or the request failed).
    pub end_ns: u64,
    /// Prompt tokens the prompt was built to have.
    pub prompt_tokens_target: u32,
    /// Prompt tokens the server counted (`usage.prompt_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_server: Option<u32>,
    /// Prompt tokens the server served from its prefix cache
    /// (`usage.prompt_tokens_details.cached_tokens`; absent when it did not say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_tokens_server: Option<u32>,
    /// `max_tokens` asked for.
    pub output_tokens_target: u32,
    /// Output tokens the server counted (`usage.completion_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens_server: Option<u32>,
    /// Reasoning tokens among them (`usage.completion_tokens_details.reasoning_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens_server: Option<u32>,
    /// Output tokens the client's tokenizer counted in the generated text (after the run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens_client: Option<u32>,
    /// `finish_reason` of the last choice, when the server gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    /// Whether `data: [DONE]` was seen.
    pub done_marker: bool,
    /// HTTP status of the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Set when the request failed; a failed request takes no part in latency metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RequestError>,
    /// Every read of this request was stamped with the kernel's receive time (`SO_TIMESTAMPING`)
    /// rather than the time the read returned. False until the request is sent.
    #[serde(default)]
    pub kernel_rx_stamps: bool,
    /// A conversation's turn: its index in the session (0-based).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn: Option<u32>,
    /// A conversation's turn: how many turns its session has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_turns: Option<u32>,
    /// Each kernel-stamped read's lag: the moment the read returned minus the kernel's receive
    /// stamp of its last byte, in µs (saturating). Long lags mean the bytes waited in the socket
    /// for the client, and chunks read together share one stamp. Empty without kernel stamps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read_lags_us: Vec<u32>,
    /// The generated text (kept for token counting; written to the JSONL only on request).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
}

impl RequestRecord {
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }

    /// Output tokens: the server's count, else the client tokenizer's, else the content chunks.
    pub fn output_tokens(&self) -> u32 {
        self.output_tokens_server
            .or(self.output_tokens_client)
            .unwrap_or(self.chunks.len() as u32)
    }

    /// Prompt tokens: the server's count, else the target.
    pub fn prompt_tokens(&self) -> u32 {
        self.prompt_tokens_server
            .unwrap_or(self.prompt_tokens_target)
    }

    /// Time to first token in ns: the first content chunk minus the send time.
    pub fn ttft_ns(&self) -> Option<u64> {
        self.chunks
            .first()
            .map(|c| c.t_ns.saturating_sub(self.send_ns))
    }

    /// Time to first visible output in ns: the first chunk with visible content minus the send
    /// time (reasoning and tool-call chunks do not count).
    pub fn ttfo_ns(&self) -> Option<u64> {
        self.first_visible_ns
            .map(|t| t.saturating_sub(self.send_ns))
    }

    /// The visible part of the generated text: `text` without its hidden ranges.
    pub fn visible_text(&self) -> String {
        let mut out = String::with_capacity(self.text.len());
        let mut at = 0usize;
        for &[s, e] in &self.hidden_text {
            out.push_str(self.text.get(at..s as usize).unwrap_or(""));
            at = e as usize;
        }
        out.push_str(self.text.get(at..).unwrap_or(""));
        out
    }

    /// Notes that `text[start..]`, just appended, came on a hidden channel.
    pub(crate) fn push_hidden(&mut self, start: usize) {
        let (s, e) = (start as u32, self.text.len() as u32);
        match self.hidden_text.last_mut() {
            Some(last) if last[1] == s => last[1] = e,
            _ => self.hidden_text.push([s, e]),
        }
    }

    /// End-to-end latency in ns: the last chunk carrying choices minus the send time.
    pub fn e2el_ns(&self) -> Option<u64> {
        self.last_choice_ns
            .or(self.chunks.last().map(|c| c.t_ns))
            .map(|t| t.saturating_sub(self.send_ns))
    }

    /// Time per output token after the first, in ns; `None` with one output token or fewer.
    pub fn tpot_ns(&self) -> Option<f64> {
        let n = self.output_tokens();
        if n <= 1 {
            return None;
        }
        let (ttft, e2el) = (self.ttft_ns()?, self.e2el_ns()?);
        Some(e2el.saturating_sub(ttft) as f64 / (n - 1) as f64)
    }

    /// Gaps between consecutive content chunks, in ns.
    pub fn itl_ns(&self) -> impl Iterator<Item = u64> + '_ {
        self.chunks
            .windows(2)
            .map(|w| w[1].t_ns.saturating_sub(w[0].t_ns))
    }

    /// Per-token inter-token latency: the time since the previous content chunk, spread over
    /// the tokens this chunk carried (a chunk of n tokens after a gap g counts as n gaps of g/n).
    /// A chunk that carried no whole token passes its gap on to the next one. Needs the per-chunk
    /// token counts ([`ContentChunk::tokens`]).
    pub fn itl_per_token_ns(&self) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.chunks.len());
        let mut pending = 0u64;
        for w in self.chunks.windows(2) {
            pending += w[1].t_ns.saturating_sub(w[0].t_ns);
            let n = w[1].tokens;
            if n > 0 {
                out.extend(std::iter::repeat_n(pending as f64 / n as f64, n as usize));
                pending = 0;
            }
        }
        out
    }

    /// Time waiting for a concurrency slot, in ns.
    pub fn queue_ns(&self) -> u64 {
        self.send_ns.saturating_sub(self.dispatch_ns)
    }

    /// How late the scheduler released the request against its intended time, in ns.
    pub fn dispatch_lag_ns(&self) -> u64 {
        self.dispatch_ns.saturating_sub(self.intended_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(send: u64, chunks: &[(u64, u32)], out: u32) -> RequestRecord {
        RequestRecord {
            send_ns: send,
            chunks: chunks
                .iter()
                .map(|&(t, tokens)| ContentChunk {
                    t_ns: t,
                    text_end: 0,
                    tokens,
                })
                .collect(),
            last_choice_ns: chunks.last().map(|c| c.0),
            output_tokens_server: Some(out),
            ..Default::default()
        }
    }

    #[test]
    fn vllm_definitions() {
        // sent at 1000; chunks at 1500, 1600, 1800; 3 output tokens
        let r = rec(1000, &[(1500, 1), (1600, 1), (1800, 1)], 3);
        assert_eq!(r.ttft_ns(), Some(500));
        assert_eq!(r.e2el_ns(), Some(800));
        assert_eq!(r.tpot_ns(), Some(150.0)); // (800-500)/(3-1)
        assert_eq!(r.itl_ns().collect::<Vec<_>>(), vec![100, 200]);
    }

    #[test]
    fn one_token_has_no_tpot() {
        let r = rec(0, &[(10, 1)], 1);
        assert_eq!(r.tpot_ns(), None);
        assert_eq!(r.itl_ns().count(), 0);
    }

    #[test]
    fn per_token_itl_splits_multi_token_chunks() {
        let r = rec(0, &[(100, 1), (400, 3), (500, 1)], 5);
        let v: Vec<f64> = r.itl_per_token_ns();
        assert_eq!(v, vec![100.0, 100.0, 100.0, 100.0]);
        // the chunk-level ITL sees one 300 ns gap where 3 tokens arrived
        assert_eq!(r.itl_ns().collect::<Vec<_>>(), vec![300, 100]);
        // a chunk holding only part of a token hands its gap to the next chunk
        let r = rec(0, &[(100, 1), (150, 0), (300, 2)], 3);
        assert_eq!(r.itl_per_token_ns(), vec![100.0, 100.0]);
    }

    #[test]
    fn e2el_includes_a_finishing_chunk_without_content() {
        let mut r = rec(0, &[(100, 1), (200, 1)], 2);
        r.last_choice_ns = Some(250);
        assert_eq!(r.e2el_ns(), Some(250));
    }
}
