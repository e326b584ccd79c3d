//! The `usage` object of a response, vLLM's shape: `prompt_tokens`, `total_tokens`,
//! `completion_tokens`, and, when the prefix cache is on, `prompt_tokens_details.cached_tokens`
//! (the prompt tokens found in the cache at the request's first admission, as vLLM reports them
//! with `--enable-prompt-tokens-details`).

use axum::body::Bytes;

/// A request's usage, rendered once its cached tokens are known (at the end of the stream).
#[derive(Clone, Debug)]
pub(crate) struct UsageEvent {
    /// `data: {"id":…,"object":…,"created":…,"model":…,`.
    pub head: String,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// `completion_tokens_details.reasoning_tokens`, with a reasoning phase.
    pub reasoning_tokens: Option<usize>,
}

impl UsageEvent {
    /// The `data:` event of the usage chunk.
    pub(crate) fn render(&self, cached_tokens: Option<u32>) -> Bytes {
        let mut usage = json_usage(self.prompt_tokens, self.completion_tokens, cached_tokens);
        if let Some(r) = self.reasoning_tokens {
            usage.pop(); // the closing brace
            usage.push_str(&format!(
                ",\"completion_tokens_details\":{{\"reasoning_tokens\":{r}}}}}"
            ));
        }
        Bytes::from(format!(
            "data: {}\"choices\":[],\"usage\":{usage}}}\n\n",
            self.head
        ))
    }
}

/// The usage object as JSON text.
pub(crate) fn json_usage(prompt: usize, completion: usize, cached: Option<u32>) -> String {
    let details = cached.map_or(String::new(), |c| {
        format!(",\"prompt_tokens_details\":{{\"cached_tokens\":{c}}}")
    });
    format!(
        "{{\"prompt_tokens\":{prompt},\"total_tokens\":{},\"completion_tokens\":{completion}{details}}}",
        prompt + completion
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_tokens_are_in_the_details_only_when_known() {
        let v: serde_json::Value = serde_json::from_str(&json_usage(10, 5, Some(8))).unwrap();
        assert_eq!(v["total_tokens"], 15);
        assert_eq!(v["prompt_tokens_details"]["cached_tokens"], 8);
        let v: serde_json::Value = serde_json::from_str(&json_usage(10, 5, None)).unwrap();
        assert!(v.get("prompt_tokens_details").is_none());
    }
}
