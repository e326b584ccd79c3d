//! SSE rendering of the simulator's responses (vLLM's wire format) and the
//! output-text generator.
//!
//! The per-token path is kept cheap: the JSON around the text is pre-rendered
//! once per request, the text of every sampleable token is JSON-escaped once
//! per process, and a content event costs one buffer allocation.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::Stream;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::channels::{ChannelRender, Channels};
use super::emission::{EmissionLog, Event, Kind};
use super::engine::Emit;
use super::faults::{Fault, mix, splitmix64};
pub(crate) use super::json::json_escape;
use super::usage::UsageEvent;

/// The broken event that the malformed fault sends instead of the 2nd content chunk.
pub(crate) const MALFORMED_EVENT: &[u8] = b"data: {\"choices\": [\n\n";
const DONE_EVENT: &[u8] = b"data: [DONE]\n\n";

/// The tokens the simulator samples from: every non-special token whose
/// standalone decode is valid UTF-8, so that the decode of a chunk of ids is
/// exactly the concatenation of the decodes of its ids.
pub(crate) struct Vocab {
    pub ids: Vec<u32>,
    pub raw: Vec<Box<str>>,
    pub escaped: Vec<Box<str>>,
}

pub(crate) fn vocab() -> &'static Vocab {
    static VOCAB: OnceLock<Vocab> = OnceLock::new();
    VOCAB.get_or_init(|| {
        let tok = super::tokenizer();
        let mut v = Vocab {
            ids: Vec::new(),
            raw: Vec::new(),
            escaped: Vec::new(),
        };
        for id in 3..tok.get_vocab_size(true) as u32 {
            let Ok(s) = tok.decode(&[id], false) else {
                continue;
            };
            if s.is_empty() || s.contains('\u{FFFD}') {
                continue;
            }
            v.ids.push(id);
            v.escaped.push(json_escape(&s).into());
            v.raw.push(s.into());
        }
        assert!(
            !v.ids.is_empty(),
            "embedded tokenizer has no sampleable tokens"
        );
        v
    })
}

/// The deterministic token sampler of one request: seeded by the server seed
/// combined with the request's arrival index.
#[derive(Clone, Debug)]
pub(crate) struct TokenRng(u64);

impl TokenRng {
    pub(crate) fn new(seed: u64, arrival_index: u64) -> Self {
        Self(mix(seed, arrival_index))
    }

    /// The index (into [`Vocab`]'s vectors) of the next token.
    #[inline]
    pub(crate) fn next_index(&mut self, n: usize) -> usize {
        ((splitmix64(&mut self.0) as u128 * n as u128) >> 64) as usize
    }
}

/// Pre-rendered pieces of one request's events.
pub(crate) struct Render {
    /// `data: {"id":…,"choices":[{"index":0,"text":"` (or `"delta":{"content":"`).
    pub content_prefix: String,
    pub suffix: &'static str,
    pub final_suffix: &'static str,
    pub role_event: Option<Bytes>,
    pub usage_event: Option<UsageEvent>,
    pub done_event: bool,
    /// Reasoning and tool calls (chat only; `None` for plain content).
    pub channels: Option<ChannelRender>,
}

impl Render {
    /// `head` is `{"id":…,"object":…,"created":…,"model":…,`.
    pub(crate) fn new(
        chat: bool,
        head: &str,
        usage: Option<(usize, usize)>,
        done_event: bool,
        channels: Channels,
    ) -> Self {
        let channels =
            (chat && channels != Channels::default()).then(|| ChannelRender::new(channels, head));
        let (body, suffix, final_suffix) = if chat {
            (
                "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"",
                "\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
                "\"},\"logprobs\":null,\"finish_reason\":\"length\",\"stop_reason\":null}]}\n\n",
            )
        } else {
            (
                "\"choices\":[{\"index\":0,\"text\":\"",
                "\",\"logprobs\":null,\"finish_reason\":null,\"stop_reason\":null}]}\n\n",
                "\",\"logprobs\":null,\"finish_reason\":\"length\",\"stop_reason\":null}]}\n\n",
            )
        };
        let role_event = chat.then(|| {
            Bytes::from(format!(
                "data: {head}\"choices\":[{{\"index\":0,\"delta\":{{\"role\":\"assistant\",\"content\":\"\"}},\"logprobs\":null,\"finish_reason\":null}}]}}\n\n"
            ))
        });
        let usage_event = usage.map(|(prompt_tokens, completion_tokens)| UsageEvent {
            head: head.to_owned(),
            prompt_tokens,
            completion_tokens,
            reasoning_tokens: channels
                .as_ref()
                .map(|ch| ch.channels.reasoning_of(completion_tokens)),
        });
        Self {
            content_prefix: format!("data: {head}{body}"),
            suffix,
            final_suffix,
            role_event,
            usage_event,
            done_event,
            channels,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Role,
    Content,
    Tail,
    Stalled,
    /// Return `Pending` once (so hyper flushes), then abort.
    TruncateSoon,
    Truncating,
    Ended,
}

/// The body stream of one streaming response.
pub(crate) struct SseBody {
    rx: Option<mpsc::UnboundedReceiver<Emit>>,
    render: Render,
    rng: TokenRng,
    fault: Fault,
    max_tokens: usize,
    sent_tokens: usize,
    /// The prompt tokens the prefix cache held at admission (from the scheduler's emits).
    cached_tokens: Option<u32>,
    seq: u32,
    phase: Phase,
    malformed_tail: bool,
    cancel: CancellationToken,
    stall: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    log: Option<(EmissionLog, Arc<str>)>,
}

impl SseBody {
    pub(crate) fn new(
        rx: mpsc::UnboundedReceiver<Emit>,
        render: Render,
        rng: TokenRng,
        fault: Fault,
        max_tokens: usize,
        cancel: CancellationToken,
        log: Option<(EmissionLog, Arc<str>)>,
    ) -> Self {
        let phase = if render.role_event.is_some() {
            Phase::Role
        } else {
            Phase::Content
        };
        Self {
            rx: Some(rx),
            render,
            rng,
            fault,
            max_tokens,
            sent_tokens: 0,
            cached_tokens: None,
            seq: 0,
            phase,
            malformed_tail: false,
            cancel,
            stall: None,
            log,
        }
    }

    /// The event(s) of `tokens` tokens generated in one step, `before` tokens after the
    /// answer's start: reasoning, then content (or a tool call), cut where the reasoning ends.
    fn render_content(&mut self, before: usize, tokens: u32, finished: bool) -> Bytes {
        let render = &self.render;
        let rng = &mut self.rng;
        let ending = |last: bool| {
            if finished && last {
                render.final_suffix
            } else {
                render.suffix
            }
        };
        let mut buf = BytesMut::with_capacity(
            render.content_prefix.len() + render.suffix.len() + 8 * tokens as usize,
        );
        let Some(ch) = &render.channels else {
            put_event(rng, &mut buf, &render.content_prefix, tokens, ending(true));
            return buf.freeze();
        };
        let (reasoning, visible) = ch.split(before, tokens);
        if reasoning > 0 {
            put_event(
                rng,
                &mut buf,
                &ch.reasoning_prefix,
                reasoning,
                ending(visible == 0),
            );
        }
        if visible > 0 {
            let after_reasoning = before + reasoning as usize - ch.channels.reasoning_tokens;
            match ch.visible(after_reasoning) {
                Some((prefix, suffix, final_suffix)) => {
                    let suffix = if finished { final_suffix } else { suffix };
                    put_event(rng, &mut buf, prefix, visible, suffix);
                }
                None => put_event(rng, &mut buf, &render.content_prefix, visible, ending(true)),
            }
        }
        buf.freeze()
    }

    /// Stamps the emission log right as the frame is handed to hyper.
    fn emit(
        &self,
        bytes: Bytes,
        kind: Kind,
        seq: u32,
        tokens: u32,
    ) -> Poll<Option<io::Result<Bytes>>> {
        if let Some((log, id)) = &self.log {
            log.record(Event {
                request_id: id.clone(),
                seq,
                kind,
                tokens,
                t_mono_ns: super::emission::mono_ns(),
            });
        }
        Poll::Ready(Some(Ok(bytes)))
    }
}

/// Appends one SSE event of `tokens` sampled tokens between `prefix` and `suffix`.
fn put_event(rng: &mut TokenRng, buf: &mut BytesMut, prefix: &str, tokens: u32, suffix: &str) {
    let v = vocab();
    buf.put_slice(prefix.as_bytes());
    for _ in 0..tokens {
        let i = rng.next_index(v.ids.len());
        buf.put_slice(v.escaped[i].as_bytes());
    }
    buf.put_slice(suffix.as_bytes());
}

fn aborted(msg: &'static str) -> Poll<Option<io::Result<Bytes>>> {
    Poll::Ready(Some(Err(io::Error::other(msg))))
}

impl Stream for SseBody {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            match this.phase {
                Phase::Role => {
                    this.phase = Phase::Content;
                    let b = this
                        .render
                        .role_event
                        .clone()
                        .expect("chat has a role event");
                    return this.emit(b, Kind::Role, 0, 0);
                }
                Phase::Content => {
                    let Some(rx) = this.rx.as_mut() else {
                        this.phase = Phase::Ended;
                        continue;
                    };
                    let e = match rx.poll_recv(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(None) => {
                            this.phase = Phase::Ended;
                            return aborted("benchctl sim: scheduler stopped (shutdown)");
                        }
                        Poll::Ready(Some(e)) => e,
                    };
                    if this.fault == Fault::Truncate && this.sent_tokens >= this.max_tokens / 2 {
                        // Let hyper flush what it has buffered before the abort:
                        // an error in the same poll would discard it.
                        this.rx = None;
                        this.phase = Phase::Truncating;
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    this.cached_tokens = e.cached_tokens;
                    let seq = this.seq;
                    this.seq += 1;
                    let before = this.sent_tokens;
                    this.sent_tokens += e.tokens as usize;
                    let content = this.render_content(before, e.tokens, e.finished);
                    if e.finished {
                        this.phase = if this.fault == Fault::Truncate {
                            Phase::TruncateSoon
                        } else {
                            Phase::Tail
                        };
                        this.malformed_tail = this.fault == Fault::Malformed && seq == 0;
                    }
                    if this.fault == Fault::Stall {
                        this.rx = None;
                        this.phase = Phase::Stalled;
                    }
                    if this.fault == Fault::Malformed && seq == 1 {
                        return this.emit(
                            Bytes::from_static(MALFORMED_EVENT),
                            Kind::Malformed,
                            seq,
                            0,
                        );
                    }
                    return this.emit(content, Kind::Content, seq, e.tokens);
                }
                Phase::Tail => {
                    if std::mem::take(&mut this.malformed_tail) {
                        return this.emit(
                            Bytes::from_static(MALFORMED_EVENT),
                            Kind::Malformed,
                            this.seq,
                            0,
                        );
                    }
                    if let Some(u) = this.render.usage_event.take() {
                        return this.emit(u.render(this.cached_tokens), Kind::Usage, this.seq, 0);
                    }
                    if std::mem::take(&mut this.render.done_event) {
                        return this.emit(Bytes::from_static(DONE_EVENT), Kind::Done, this.seq, 0);
                    }
                    this.phase = Phase::Ended;
                }
                Phase::Stalled => {
                    let fut = this
                        .stall
                        .get_or_insert_with(|| Box::pin(this.cancel.clone().cancelled_owned()));
                    return match fut.as_mut().poll(cx) {
                        Poll::Pending => Poll::Pending,
                        Poll::Ready(()) => {
                            this.phase = Phase::Ended;
                            aborted("benchctl sim: stalled stream ended by shutdown")
                        }
                    };
                }
                Phase::TruncateSoon => {
                    this.phase = Phase::Truncating;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Phase::Truncating => {
                    this.phase = Phase::Ended;
                    return aborted("benchctl sim: simulated truncation (fault injection)");
                }
                Phase::Ended => return Poll::Ready(None),
            }
        }
    }
}

/// The full text of `tokens` tokens drawn from `rng` (for non-streaming responses).
pub(crate) fn generate_text(rng: &mut TokenRng, tokens: usize) -> String {
    let v = vocab();
    let mut s = String::with_capacity(tokens * 4);
    for _ in 0..tokens {
        s.push_str(&v.raw[rng.next_index(v.ids.len())]);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_text_equals_decode_of_its_ids() {
        let v = vocab();
        assert!(v.ids.len() > 1000, "{}", v.ids.len());
        let mut rng = TokenRng::new(1, 2);
        for _ in 0..200 {
            let idx: Vec<usize> = (0..5).map(|_| rng.next_index(v.ids.len())).collect();
            let ids: Vec<u32> = idx.iter().map(|&i| v.ids[i]).collect();
            let concat: String = idx.iter().map(|&i| &*v.raw[i]).collect();
            assert_eq!(
                super::super::tokenizer().decode(&ids, false).unwrap(),
                concat
            );
        }
        assert!(v.ids.iter().all(|&id| id > 2));
    }

    #[test]
    fn escape_matches_serde() {
        for s in ["a\"b\\c\n\t\u{1}é\u{2028}", "plain", ""] {
            let q = serde_json::to_string(s).unwrap();
            let back: String = serde_json::from_str(&format!("\"{}\"", json_escape(s))).unwrap();
            assert_eq!(back, s, "{q}");
        }
    }
}
