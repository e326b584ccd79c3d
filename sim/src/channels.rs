//! The hidden channels of a chat answer: a reasoning phase (`delta.reasoning_content`, before
//! the content, like vLLM's reasoning parsers) and tool calls (`delta.tool_calls`, the answer's
//! tokens as one call's arguments instead of content).
//!
//! A content event of the engine (`tokens` generated in one step) is cut where the reasoning
//! ends: its reasoning tokens and its visible tokens become two SSE events in one frame, so
//! the first visible token is stamped in the step that generated it.

/// What a chat answer streams besides content (`--reasoning-tokens`, `--tool-calls`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Channels {
    /// The first this many generated tokens are reasoning.
    pub reasoning_tokens: usize,
    /// The tokens after the reasoning are one tool call's arguments, not content.
    pub tool_calls: bool,
}

impl Channels {
    /// Reasoning tokens of an answer of `completion` tokens.
    pub(crate) fn reasoning_of(self, completion: usize) -> usize {
        self.reasoning_tokens.min(completion)
    }
}

/// Pre-rendered pieces of the hidden channels' events of one request.
pub(crate) struct ChannelRender {
    pub channels: Channels,
    /// `data: {head}"choices":[{"index":0,"delta":{"reasoning_content":"`.
    pub reasoning_prefix: String,
    /// The first tool-call event's prefix (with the call's id, type and name), then the others'.
    pub tool_first_prefix: String,
    pub tool_prefix: String,
}

/// The events' tails after a tool call's arguments.
pub(crate) const TOOL_SUFFIX: &str = "\"}}]},\"logprobs\":null,\"finish_reason\":null}]}\n\n";
pub(crate) const TOOL_FINAL_SUFFIX: &str =
    "\"}}]},\"logprobs\":null,\"finish_reason\":\"tool_calls\",\"stop_reason\":null}]}\n\n";

impl ChannelRender {
    /// `head` is `{"id":…,"object":…,"created":…,"model":…,`.
    pub(crate) fn new(channels: Channels, head: &str) -> Self {
        let choice = "\"choices\":[{\"index\":0,\"delta\":{";
        Self {
            channels,
            reasoning_prefix: format!("data: {head}{choice}\"reasoning_content\":\""),
            tool_first_prefix: format!(
                "data: {head}{choice}\"tool_calls\":[{{\"index\":0,\"id\":\"call_sim\",\"type\":\"function\",\"function\":{{\"name\":\"sim\",\"arguments\":\""
            ),
            tool_prefix: format!(
                "data: {head}{choice}\"tool_calls\":[{{\"index\":0,\"function\":{{\"arguments\":\""
            ),
        }
    }

    /// How the `tokens` of an event split, given `before` tokens sent: (reasoning, the rest).
    pub(crate) fn split(&self, before: usize, tokens: u32) -> (u32, u32) {
        let left = self.channels.reasoning_tokens.saturating_sub(before);
        let r = (tokens as usize).min(left) as u32;
        (r, tokens - r)
    }

    /// The prefix and the two suffixes of the visible part's event, `visible_before` tokens
    /// after the reasoning; `None` for plain content.
    pub(crate) fn visible(
        &self,
        visible_before: usize,
    ) -> Option<(&str, &'static str, &'static str)> {
        if !self.channels.tool_calls {
            return None;
        }
        let prefix = if visible_before == 0 {
            &self.tool_first_prefix
        } else {
            &self.tool_prefix
        };
        Some((prefix, TOOL_SUFFIX, TOOL_FINAL_SUFFIX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_splits_where_the_reasoning_ends() {
        let r = ChannelRender::new(
            Channels {
                reasoning_tokens: 5,
                tool_calls: false,
            },
            "{",
        );
        assert_eq!(r.split(0, 4), (4, 0));
        assert_eq!(r.split(4, 4), (1, 3));
        assert_eq!(r.split(8, 4), (0, 4));
        assert!(r.visible(0).is_none());
        assert_eq!(r.channels.reasoning_of(3), 3);
    }
}
