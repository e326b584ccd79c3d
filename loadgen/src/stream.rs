//! The body of a streamed completion, bytes to record: SSE events, then each chunk's JSON.
//!
//! Transport-independent: the HTTP/1.1 reader and the reqwest path both feed it the bytes of
//! each read together with the timestamp taken when that read returned.

use crate::error::{ErrorKind, RequestError};
use crate::openai::parse_chunk;
use crate::record::{ContentChunk, RequestRecord};
use crate::sse::{SseError, SseReader};

/// Parses one response body into its record.
#[derive(Default)]
pub struct StreamParser {
    sse: SseReader,
    failure: Option<RequestError>,
    saw_usage: bool,
}

impl StreamParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Body bytes read at `t` (monotonic ns). An error ends the request.
    pub fn feed(
        &mut self,
        rec: &mut RequestRecord,
        bytes: &[u8],
        t: u64,
    ) -> Result<(), RequestError> {
        rec.first_byte_ns.get_or_insert(t);
        let failure = &mut self.failure;
        let saw_usage = &mut self.saw_usage;
        let fed = self.sse.feed(bytes, |payload| {
            if failure.is_none() {
                on_event(rec, payload, t, failure, saw_usage);
            }
        });
        if let Err(e) = fed {
            return Err(too_long(e));
        }
        match self.failure.take() {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    /// The body ended cleanly at `t`: was the stream complete?
    pub fn finish(mut self, rec: &mut RequestRecord, t: u64) -> Result<(), RequestError> {
        let failure = &mut self.failure;
        let saw_usage = &mut self.saw_usage;
        let fed = self.sse.finish(|payload| {
            if failure.is_none() {
                on_event(rec, payload, t, failure, saw_usage);
            }
        });
        if let Err(e) = fed {
            return Err(too_long(e));
        }
        if let Some(f) = self.failure {
            return Err(f);
        }
        if !(rec.done_marker || self.saw_usage || rec.finish_reason.is_some()) {
            return Err(RequestError::new(
                ErrorKind::TruncatedStream,
                format!(
                    "the body ended after {} content chunks without a finish_reason, usage or [DONE]",
                    rec.chunks.len()
                ),
            ));
        }
        if rec.chunks.is_empty() {
            return Err(RequestError::new(
                ErrorKind::NoContent,
                "the stream completed without any generated content",
            ));
        }
        Ok(())
    }
}

fn too_long(e: SseError) -> RequestError {
    RequestError::new(ErrorKind::MalformedChunk, e.to_string())
}

/// Handles one SSE event's data, read at `t`.
fn on_event(
    rec: &mut RequestRecord,
    payload: &[u8],
    t: u64,
    failure: &mut Option<RequestError>,
    saw_usage: &mut bool,
) {
    if payload == b"[DONE]" {
        rec.done_marker = true;
        return;
    }
    let chunk = match parse_chunk(payload) {
        Ok(c) => c,
        Err(e) => {
            let shown = String::from_utf8_lossy(&payload[..payload.len().min(200)]);
            *failure = Some(RequestError::new(
                ErrorKind::MalformedChunk,
                format!(
                    "chunk {} is not valid JSON ({e}): {shown}",
                    rec.chunks.len()
                ),
            ));
            return;
        }
    };
    if let Some(msg) = chunk.error {
        *failure = Some(RequestError::new(ErrorKind::ServerError, msg));
        return;
    }
    if chunk.has_choices {
        rec.last_choice_ns = Some(t);
        let visible = !chunk.content.is_empty();
        if !chunk.hidden.is_empty() {
            let start = rec.text.len();
            rec.text.push_str(&chunk.hidden);
            rec.push_hidden(start);
        }
        if visible {
            rec.first_visible_ns.get_or_insert(t);
            rec.text.push_str(&chunk.content);
        }
        if visible || !chunk.hidden.is_empty() {
            rec.chunks.push(ContentChunk {
                t_ns: t,
                text_end: rec.text.len() as u32,
                tokens: 0,
            });
        }
        if let Some(f) = chunk.finish_reason {
            rec.finish_reason = Some(f.into_owned());
        }
    }
    if let Some(u) = chunk.usage {
        *saw_usage = true;
        if u.prompt_tokens.is_some() {
            rec.prompt_tokens_server = u.prompt_tokens;
        }
        if u.completion_tokens.is_some() {
            rec.output_tokens_server = u.completion_tokens;
        }
        if let Some(r) = u.completion_tokens_details.and_then(|d| d.reasoning_tokens) {
            rec.reasoning_tokens_server = Some(r);
        }
        if let Some(c) = u.prompt_tokens_details.and_then(|d| d.cached_tokens) {
            rec.cached_tokens_server = Some(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_split_across_reads_take_the_time_of_the_read_that_completed_them() {
        let mut rec = RequestRecord::default();
        let mut p = StreamParser::new();
        p.feed(&mut rec, b"data: {\"choices\":[{\"text\":\"he", 10)
            .unwrap();
        p.feed(
            &mut rec,
            b"llo\"}]}\n\ndata: {\"choices\":[{\"text\":\" you\"}]}\n\n",
            20,
        )
        .unwrap();
        p.feed(
            &mut rec,
            b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\n",
            30,
        )
        .unwrap();
        p.finish(&mut rec, 40).unwrap();
        assert_eq!(rec.text, "hello you");
        assert_eq!(
            rec.chunks.iter().map(|c| c.t_ns).collect::<Vec<_>>(),
            vec![20, 20]
        );
        assert_eq!(rec.first_byte_ns, Some(10));
        assert_eq!(
            (rec.prompt_tokens_server, rec.output_tokens_server),
            (Some(3), Some(2))
        );
        assert!(
            !rec.done_marker,
            "no [DONE] needed: the end of the body ends the stream"
        );
    }

    #[test]
    fn a_clean_end_without_any_sign_of_completion_is_truncation() {
        let mut rec = RequestRecord::default();
        let mut p = StreamParser::new();
        p.feed(&mut rec, b"data: {\"choices\":[{\"text\":\"a\"}]}\n\n", 1)
            .unwrap();
        assert_eq!(
            p.finish(&mut rec, 2).unwrap_err().kind,
            ErrorKind::TruncatedStream
        );
    }

    #[test]
    fn errors_in_the_stream() {
        let mut rec = RequestRecord::default();
        let e = StreamParser::new()
            .feed(&mut rec, b"data: {\"error\":{\"message\":\"oom\"}}\n\n", 1)
            .unwrap_err();
        assert_eq!(
            (e.kind, e.message.as_str()),
            (ErrorKind::ServerError, "oom")
        );
        let e = StreamParser::new()
            .feed(&mut rec, b"data: {\"choices\": [\n\n", 1)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::MalformedChunk);
        let mut rec = RequestRecord::default();
        let mut p = StreamParser::new();
        p.feed(&mut rec, b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\ndata: [DONE]\n\n", 1).unwrap();
        assert_eq!(
            p.finish(&mut rec, 2).unwrap_err().kind,
            ErrorKind::NoContent,
            "a role-only chunk is not content"
        );
    }

    #[test]
    fn reasoning_and_tool_calls_are_generated_but_not_visible() {
        let mut rec = RequestRecord::default();
        let mut p = StreamParser::new();
        let ev = |d: &str| format!("data: {{\"choices\":[{{\"delta\":{d}}}]}}\n\n");
        p.feed(
            &mut rec,
            ev(r#"{"role":"assistant","content":""}"#).as_bytes(),
            5,
        )
        .unwrap();
        p.feed(
            &mut rec,
            ev(r#"{"reasoning_content":"think "}"#).as_bytes(),
            10,
        )
        .unwrap();
        p.feed(
            &mut rec,
            ev(r#"{"reasoning_content":"more "}"#).as_bytes(),
            20,
        )
        .unwrap();
        p.feed(&mut rec, ev(r#"{"content":"answer"}"#).as_bytes(), 30)
            .unwrap();
        p.feed(
            &mut rec,
            ev(r#"{"tool_calls":[{"index":0,"function":{"name":"f","arguments":"{}"}}]}"#)
                .as_bytes(),
            40,
        )
        .unwrap();
        p.feed(&mut rec, b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,\"completion_tokens_details\":{\"reasoning_tokens\":2}}}\n\n", 50).unwrap();
        p.finish(&mut rec, 60).unwrap();
        assert_eq!(
            rec.chunks.iter().map(|c| c.t_ns).collect::<Vec<_>>(),
            vec![10, 20, 30, 40],
            "every channel's text is a generated chunk"
        );
        assert_eq!(rec.first_visible_ns, Some(30));
        assert_eq!(rec.text, "think more answerf{}");
        assert_eq!(rec.hidden_text, vec![[0, 11], [17, 20]]);
        assert_eq!(rec.visible_text(), "answer");
        assert_eq!(rec.reasoning_tokens_server, Some(2));
    }
}
