//! The OpenAI-compatible wire format: request bodies per endpoint and backend, and the parse of
//! one streamed chunk.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// Which API the target speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointKind {
    /// `/v1/completions`: `prompt` in, `choices[0].text` out.
    Completions,
    /// `/v1/chat/completions`: `messages` in, `choices[0].delta.content` out.
    Chat,
}

impl EndpointKind {
    /// Guesses the kind from the endpoint path (`…/chat/completions` is chat).
    pub fn from_path(path: &str) -> EndpointKind {
        if path.trim_end_matches('/').ends_with("chat/completions") {
            EndpointKind::Chat
        } else {
            EndpointKind::Completions
        }
    }
}

/// Which server family, deciding the fields beyond the OpenAI standard that are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// Only standard OpenAI fields (strict servers answer 422 to unknown ones).
    Openai,
    /// vLLM: `ignore_eos` is accepted.
    Vllm,
    /// SGLang: `ignore_eos` is accepted.
    Sglang,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Openai => "openai",
            Backend::Vllm => "vllm",
            Backend::Sglang => "sglang",
        }
    }

    /// Whether the backend accepts `ignore_eos`.
    pub fn accepts_ignore_eos(self) -> bool {
        matches!(self, Backend::Vllm | Backend::Sglang)
    }
}

/// What every request of a run sends besides its prompt.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BodySpec {
    pub kind: EndpointKind,
    pub backend: Backend,
    /// The `model` field.
    pub model: String,
    /// Send `ignore_eos: true` (only where the backend accepts it).
    pub ignore_eos: bool,
    /// Sent as `temperature`.
    pub temperature: f64,
    /// Merged last into every body (`--extra-body`); may override anything.
    pub extra_body: Map<String, Value>,
}

impl BodySpec {
    /// The JSON body of one streamed request, serialised once before the send is stamped.
    pub fn render(&self, prompt: &str, max_tokens: u32) -> Vec<u8> {
        let messages = || json!([{"role": "user", "content": prompt}]);
        self.render_input(|| Value::String(prompt.to_owned()), messages, max_tokens)
    }

    /// The body of one turn of a conversation: `turns` alternate user and assistant, starting
    /// and ending with a user message. Chat sends them as messages; completions their
    /// concatenation as the prompt.
    pub fn render_turns(&self, turns: &[&str], max_tokens: u32) -> Vec<u8> {
        let messages = || {
            let roles = ["user", "assistant"].into_iter().cycle();
            turns
                .iter()
                .zip(roles)
                .map(|(t, role)| json!({"role": role, "content": t}))
                .collect()
        };
        self.render_input(|| Value::String(turns.concat()), messages, max_tokens)
    }

    fn render_input(
        &self,
        prompt: impl FnOnce() -> Value,
        messages: impl FnOnce() -> Value,
        max_tokens: u32,
    ) -> Vec<u8> {
        let mut body = Map::new();
        body.insert("model".into(), Value::String(self.model.clone()));
        match self.kind {
            EndpointKind::Completions => {
                body.insert("prompt".into(), prompt());
                body.insert("max_tokens".into(), max_tokens.into());
            }
            EndpointKind::Chat => {
                body.insert("messages".into(), messages());
                // vLLM and SGLang follow OpenAI's current name; others know the older one.
                let key = if self.backend == Backend::Openai {
                    "max_tokens"
                } else {
                    "max_completion_tokens"
                };
                body.insert(key.into(), max_tokens.into());
            }
        }
        body.insert("temperature".into(), json!(self.temperature));
        body.insert("stream".into(), Value::Bool(true));
        body.insert("stream_options".into(), json!({"include_usage": true}));
        if self.ignore_eos && self.backend.accepts_ignore_eos() {
            body.insert("ignore_eos".into(), Value::Bool(true));
        }
        for (k, v) in &self.extra_body {
            body.insert(k.clone(), v.clone());
        }
        serde_json::to_vec(&Value::Object(body)).expect("a JSON map always serialises")
    }
}

/// What one `data:` payload said, borrowed from the payload where possible.
#[derive(Debug, Default, PartialEq)]
pub struct ChunkInfo<'a> {
    /// The payload carried `choices` with at least one element.
    pub has_choices: bool,
    /// Visible generated text (completion `text`, chat `delta.content`).
    pub content: Cow<'a, str>,
    /// Generated text on the other channels: `delta.reasoning_content` or `delta.reasoning`,
    /// then each `delta.tool_calls[].function`'s name and arguments. Generated tokens (TTFT
    /// counts them) that are not visible output (TTFO does not).
    pub hidden: Cow<'a, str>,
    pub finish_reason: Option<Cow<'a, str>>,
    pub usage: Option<Usage>,
    /// An `error` object or string inside the stream.
    pub error: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: Option<u32>,
    #[serde(default)]
    pub completion_tokens: Option<u32>,
    /// `completion_tokens_details` (its `reasoning_tokens`), when the server sends it.
    #[serde(default)]
    pub completion_tokens_details: Option<CompletionDetails>,
    /// `prompt_tokens_details` (vLLM with `--enable-prompt-tokens-details`, SGLang, llama.cpp,
    /// OpenAI): its `cached_tokens` are the prompt tokens served from the prefix cache.
    #[serde(default)]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

/// `usage.completion_tokens_details`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct CompletionDetails {
    /// Tokens of hidden reasoning among `completion_tokens`.
    #[serde(default)]
    pub reasoning_tokens: Option<u32>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct PromptTokensDetails {
    #[serde(default)]
    pub cached_tokens: Option<u32>,
}

#[derive(Deserialize)]
struct RawChunk<'a> {
    #[serde(default, borrow)]
    choices: Option<Vec<RawChoice<'a>>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct RawChoice<'a> {
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    delta: Option<RawDelta<'a>>,
    #[serde(default, borrow)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RawDelta<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    reasoning: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tool_calls: Option<Vec<RawToolCall<'a>>>,
}

#[derive(Deserialize)]
struct RawToolCall<'a> {
    #[serde(default, borrow)]
    function: Option<RawFunction<'a>>,
}

#[derive(Deserialize)]
struct RawFunction<'a> {
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    arguments: Option<Cow<'a, str>>,
}

impl<'a> RawDelta<'a> {
    /// The text of the hidden channels, in order: reasoning, then the tool calls.
    fn hidden(&mut self) -> Cow<'a, str> {
        let reasoning = self
            .reasoning_content
            .take()
            .filter(|r| !r.is_empty())
            .or_else(|| self.reasoning.take())
            .unwrap_or(Cow::Borrowed(""));
        let Some(calls) = self.tool_calls.take() else {
            return reasoning;
        };
        let mut parts = calls
            .into_iter()
            .filter_map(|c| c.function)
            .flat_map(|f| [f.name, f.arguments])
            .flatten()
            .filter(|p| !p.is_empty());
        match (reasoning.is_empty(), parts.next()) {
            (_, None) => reasoning,
            (true, Some(first)) => parts.fold(first, |acc, p| Cow::Owned(acc.into_owned() + &p)),
            (false, Some(first)) => {
                let mut s = reasoning.into_owned() + &first;
                parts.for_each(|p| s.push_str(&p));
                Cow::Owned(s)
            }
        }
    }
}

/// Parses one `data:` payload (not `[DONE]`).
pub fn parse_chunk(payload: &[u8]) -> Result<ChunkInfo<'_>, serde_json::Error> {
    let raw: RawChunk<'_> = serde_json::from_slice(payload)?;
    let mut info = ChunkInfo {
        usage: raw.usage,
        ..Default::default()
    };
    if let Some(e) = raw.error {
        info.error = Some(crate::error::server_message(e.to_string().as_bytes()));
    }
    if let Some(choice) = raw.choices.and_then(|c| c.into_iter().next()) {
        info.has_choices = true;
        info.finish_reason = choice.finish_reason;
        match (choice.text, choice.delta) {
            (Some(t), _) => info.content = t,
            (None, Some(mut d)) => {
                info.hidden = d.hidden();
                info.content = d.content.unwrap_or(Cow::Borrowed(""));
            }
            (None, None) => {}
        }
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: EndpointKind, backend: Backend) -> BodySpec {
        BodySpec {
            kind,
            backend,
            model: "m".into(),
            ignore_eos: true,
            temperature: 0.0,
            extra_body: Map::new(),
        }
    }

    #[test]
    fn ignore_eos_only_where_accepted() {
        let v: Value =
            serde_json::from_slice(&spec(EndpointKind::Completions, Backend::Vllm).render("hi", 8))
                .unwrap();
        assert_eq!(v["ignore_eos"], true);
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["max_tokens"], 8);
        let v: Value = serde_json::from_slice(
            &spec(EndpointKind::Completions, Backend::Openai).render("hi", 8),
        )
        .unwrap();
        assert!(v.get("ignore_eos").is_none());
    }

    #[test]
    fn chat_body_and_extra_body_override() {
        let mut s = spec(EndpointKind::Chat, Backend::Sglang);
        s.extra_body.insert("temperature".into(), json!(0.7));
        s.extra_body.insert("top_k".into(), json!(5));
        let v: Value = serde_json::from_slice(&s.render("hello \"you\"", 3)).unwrap();
        assert_eq!(v["messages"][0]["content"], "hello \"you\"");
        assert_eq!(v["max_completion_tokens"], 3);
        assert_eq!(v["temperature"], 0.7);
        assert_eq!(v["top_k"], 5);
    }

    #[test]
    fn parses_completion_chat_usage_and_errors() {
        let c = parse_chunk(br#"{"choices":[{"index":0,"text":"a\nb","finish_reason":null}]}"#)
            .unwrap();
        assert!(c.has_choices);
        assert_eq!(c.content, "a\nb");
        let c =
            parse_chunk(br#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#).unwrap();
        assert!(
            c.has_choices && c.content.is_empty(),
            "role-only chunk carries no content"
        );
        let c = parse_chunk(br#"{"choices":[{"delta":{"reasoning_content":"think"}}]}"#).unwrap();
        assert_eq!((&*c.content, &*c.hidden), ("", "think"));
        let c = parse_chunk(br#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}"#).unwrap();
        assert!(!c.has_choices);
        assert_eq!(
            c.usage,
            Some(Usage {
                prompt_tokens: Some(5),
                completion_tokens: Some(7),
                ..Default::default()
            })
        );
        let c = parse_chunk(br#"{"choices":[{"text":"","finish_reason":"length"}]}"#).unwrap();
        assert_eq!(c.finish_reason.as_deref(), Some("length"));
        let c = parse_chunk(br#"{"error":{"message":"boom"}}"#).unwrap();
        assert_eq!(c.error.as_deref(), Some("boom"));
        assert!(parse_chunk(br#"{"choices": ["#).is_err());
    }

    #[test]
    fn reasoning_and_tool_calls_are_hidden_channels() {
        let c =
            parse_chunk(br#"{"choices":[{"delta":{"reasoning":"hm","content":null}}]}"#).unwrap();
        assert_eq!((&*c.content, &*c.hidden), ("", "hm"));
        let c = parse_chunk(br#"{"choices":[{"delta":{"reasoning_content":"a","content":"b"}}]}"#)
            .unwrap();
        assert_eq!((&*c.content, &*c.hidden), ("b", "a"));
        let c = parse_chunk(br#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c1","type":"function","function":{"name":"get","arguments":""}}]}}]}"#).unwrap();
        assert_eq!((&*c.content, &*c.hidden), ("", "get"));
        let c = parse_chunk(br#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"x\":"}},{"index":1,"function":{"arguments":"1"}}]}}]}"#).unwrap();
        assert_eq!(&*c.hidden, "{\"x\":1");
        let c = parse_chunk(br#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7,"completion_tokens_details":{"reasoning_tokens":4}}}"#).unwrap();
        assert_eq!(
            c.usage
                .and_then(|u| u.completion_tokens_details)
                .and_then(|d| d.reasoning_tokens),
            Some(4)
        );
    }

    #[test]
    fn parses_cached_tokens_and_tolerates_null_details() {
        let cached = |p: &[u8]| {
            parse_chunk(p)
                .unwrap()
                .usage
                .and_then(|u| u.prompt_tokens_details)
                .and_then(|d| d.cached_tokens)
        };
        let with = br#"{"choices":[],"usage":{"prompt_tokens":50,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":32}}}"#;
        assert_eq!(cached(with), Some(32));
        let null = br#"{"choices":[],"usage":{"prompt_tokens":50,"completion_tokens":3,"prompt_tokens_details":null}}"#;
        assert_eq!(cached(null), None);
    }
}
