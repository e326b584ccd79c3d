//! Why a request failed, with a stable `kind()` string for JSON and counters.

use serde::{Deserialize, Serialize};

/// The failure of one request. `kind` is stable (used as a JSON key and a counter label);
/// `message` is what the server or the transport said, for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestError {
    pub kind: ErrorKind,
    /// HTTP status, when the server answered with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub message: String,
}

/// The failure kinds a request can end in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// TCP connect failed (refused, unreachable, DNS).
    Connect,
    /// The server answered 4xx (422: a field the server rejects; 429: rate limited…).
    #[serde(rename = "http_4xx")]
    Http4xx,
    /// The server answered 5xx.
    #[serde(rename = "http_5xx")]
    Http5xx,
    /// Another non-success status (1xx/3xx).
    HttpOther,
    /// A `data:` event that is not valid JSON, or an SSE line longer than the limit.
    MalformedChunk,
    /// The body broke off (connection reset, chunked encoding not terminated), or ended cleanly
    /// before any sign of completion (`finish_reason`, usage or `[DONE]`).
    TruncatedStream,
    /// The server sent an error object inside the stream.
    ServerError,
    /// The stream completed without a single content chunk.
    NoContent,
    /// No bytes for longer than the stall timeout.
    Stall,
    /// The request did not complete within the request timeout.
    Timeout,
    /// The run was cancelled (Ctrl-C) while this request was in flight.
    Cancelled,
    /// Any other transport error.
    Request,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 12] = [
        ErrorKind::Connect,
        ErrorKind::Http4xx,
        ErrorKind::Http5xx,
        ErrorKind::HttpOther,
        ErrorKind::MalformedChunk,
        ErrorKind::TruncatedStream,
        ErrorKind::ServerError,
        ErrorKind::NoContent,
        ErrorKind::Stall,
        ErrorKind::Timeout,
        ErrorKind::Cancelled,
        ErrorKind::Request,
    ];

    /// The stable name used in JSON and counters.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Http4xx => "http_4xx",
            ErrorKind::Http5xx => "http_5xx",
            ErrorKind::HttpOther => "http_other",
            ErrorKind::MalformedChunk => "malformed_chunk",
            ErrorKind::TruncatedStream => "truncated_stream",
            ErrorKind::ServerError => "server_error",
            ErrorKind::NoContent => "no_content",
            ErrorKind::Stall => "stall",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Request => "request",
        }
    }

    /// The kind named by [`ErrorKind::as_str`], `None` for any other string.
    pub fn parse(s: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn from_status(status: u16) -> ErrorKind {
        match status {
            400..=499 => ErrorKind::Http4xx,
            500..=599 => ErrorKind::Http5xx,
            _ => ErrorKind::HttpOther,
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl RequestError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        RequestError {
            kind,
            status: None,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(s) => write!(f, "{} (HTTP {s}): {}", self.kind, self.message),
            None => write!(f, "{}: {}", self.kind, self.message),
        }
    }
}

/// The text a server put in an error body: OpenAI's `{"error":{"message"}}`, FastAPI's
/// `{"detail": …}`, or the body itself, cut to a readable length.
pub fn server_message(body: &[u8]) -> String {
    const MAX: usize = 1000;
    let text = String::from_utf8_lossy(body);
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        let found = v
            .pointer("/error/message")
            .or_else(|| v.get("message"))
            .or_else(|| v.get("detail"))
            .or_else(|| v.get("error"));
        if let Some(m) = found {
            let s = match m {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            return truncate(s, MAX);
        }
    }
    truncate(text.trim().to_string(), MAX)
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_messages_are_extracted() {
        assert_eq!(
            server_message(br#"{"error":{"message":"bad model","code":404}}"#),
            "bad model"
        );
        assert_eq!(
            server_message(br#"{"detail":"Unexpected fields in the request: ignore_eos"}"#),
            "Unexpected fields in the request: ignore_eos"
        );
        assert_eq!(server_message(b"  plain text\n"), "plain text");
        assert!(server_message(&[b'x'; 5000]).len() < 1010);
    }

    #[test]
    fn kinds_round_trip_through_json() {
        for k in ErrorKind::ALL {
            let j = serde_json::to_string(&k).unwrap();
            assert_eq!(j, format!("\"{}\"", k.as_str()));
            assert_eq!(serde_json::from_str::<ErrorKind>(&j).unwrap(), k);
            assert_eq!(ErrorKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(ErrorKind::parse("Timeout"), None);
    }
}
