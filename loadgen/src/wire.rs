//! loadgen's domain types ↔ the gRPC messages of a worker session, in one place.
//!
//! - [`RequestRecord`] ↔ [`proto::RequestRecord`]: lossless for every record loadgen produces
//!   (the one lossy spot: the proto has a single `status`, so a decoded error carries it only
//!   when its kind is an HTTP status kind — which is when loadgen sets it).
//! - [`Prompt`] ↔ [`proto::Prompt`].
//! - [`Target`] ↔ [`proto::RequestSpec`]: the spec travels without a base URL; a worker makes a
//!   target of it for each base URL it is given ([`target`]).
//! - [`map_times`]: moves every timestamp of a record onto another clock.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::client::Target;
use crate::dataset::Prompt;
use crate::error::{ErrorKind, RequestError};
use crate::openai::{Backend, BodySpec, EndpointKind};
use crate::record::{ContentChunk, RequestRecord};

/// A message from the other side that does not make a valid domain value.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WireError {
    #[error("RequestRecord.error_kind {0:?} is not a known error kind")]
    UnknownErrorKind(String),
    #[error(
        "RequestRecord chunk arrays differ in length: chunk_t_ns {t}, chunk_text_end {ends}, chunk_tokens {tokens}"
    )]
    ChunkArrays {
        t: usize,
        ends: usize,
        tokens: usize,
    },
    #[error("RequestRecord.hidden_text must hold start/end pairs, got {0} numbers")]
    HiddenText(usize),
    #[error("RequestRecord.status must be an HTTP status (at most 65535), got {0}")]
    Status(u32),
    #[error("RequestSpec.backend must be openai, vllm or sglang, got {0:?}")]
    Backend(String),
    #[error("RequestSpec.extra_body_json must be a JSON object: {0}")]
    ExtraBody(String),
    #[error("RequestSpec.timeout_ms must be at least 1, got 0")]
    Timeout,
    #[error("target URL {url:?} with endpoint {endpoint:?}: {reason}")]
    Url {
        url: String,
        endpoint: String,
        reason: String,
    },
}

// ------------------------------------------------------------------------------- records

impl From<&RequestRecord> for proto::RequestRecord {
    fn from(r: &RequestRecord) -> Self {
        let (error_kind, error_message) = match &r.error {
            Some(e) => (e.kind.as_str().to_string(), e.message.clone()),
            None => (String::new(), String::new()),
        };
        // The record's status, else the error's (the same number wherever loadgen sets both).
        let status = r.status.or(r.error.as_ref().and_then(|e| e.status));
        proto::RequestRecord {
            index: r.index,
            request_id: r.request_id.clone(),
            intended_ns: r.intended_ns,
            dispatch_ns: r.dispatch_ns,
            send_ns: r.send_ns,
            headers_ns: r.headers_ns.unwrap_or(0),
            first_byte_ns: r.first_byte_ns.unwrap_or(0),
            chunk_t_ns: r.chunks.iter().map(|c| c.t_ns).collect(),
            chunk_text_end: r.chunks.iter().map(|c| c.text_end).collect(),
            chunk_tokens: r.chunks.iter().map(|c| c.tokens).collect(),
            last_choice_ns: r.last_choice_ns.unwrap_or(0),
            end_ns: r.end_ns,
            prompt_tokens_target: r.prompt_tokens_target,
            prompt_tokens_server: r.prompt_tokens_server,
            cached_tokens_server: r.cached_tokens_server,
            output_tokens_target: r.output_tokens_target,
            output_tokens_server: r.output_tokens_server,
            output_tokens_client: r.output_tokens_client,
            finish_reason: r.finish_reason.clone().unwrap_or_default(),
            done_marker: r.done_marker,
            status: status.map_or(0, u32::from),
            error_kind,
            error_message,
            kernel_rx_stamps: r.kernel_rx_stamps,
            text: r.text.clone(),
            first_visible_ns: r.first_visible_ns.unwrap_or(0),
            hidden_text: r.hidden_text.iter().flatten().copied().collect(),
            reasoning_tokens_server: r.reasoning_tokens_server,
            turn: r.turn,
            session_turns: r.session_turns,
            read_lags_us: r.read_lags_us.clone(),
        }
    }
}

impl From<RequestRecord> for proto::RequestRecord {
    fn from(r: RequestRecord) -> Self {
        (&r).into()
    }
}

impl TryFrom<proto::RequestRecord> for RequestRecord {
    type Error = WireError;

    fn try_from(p: proto::RequestRecord) -> Result<Self, WireError> {
        let (t, ends, tokens) = (
            p.chunk_t_ns.len(),
            p.chunk_text_end.len(),
            p.chunk_tokens.len(),
        );
        if t != ends || t != tokens {
            return Err(WireError::ChunkArrays { t, ends, tokens });
        }
        if !p.hidden_text.len().is_multiple_of(2) {
            return Err(WireError::HiddenText(p.hidden_text.len()));
        }
        let status = match p.status {
            0 => None,
            s => Some(u16::try_from(s).map_err(|_| WireError::Status(s))?),
        };
        let error = if p.error_kind.is_empty() {
            None
        } else {
            let kind = ErrorKind::parse(&p.error_kind)
                .ok_or_else(|| WireError::UnknownErrorKind(p.error_kind.clone()))?;
            let is_status = matches!(
                kind,
                ErrorKind::Http4xx | ErrorKind::Http5xx | ErrorKind::HttpOther
            );
            Some(RequestError {
                kind,
                status: status.filter(|_| is_status),
                message: p.error_message,
            })
        };
        let nonzero = |t: u64| (t != 0).then_some(t);
        let chunks = p
            .chunk_t_ns
            .iter()
            .zip(&p.chunk_text_end)
            .zip(&p.chunk_tokens)
            .map(|((&t_ns, &text_end), &tokens)| ContentChunk {
                t_ns,
                text_end,
                tokens,
            })
            .collect();
        Ok(RequestRecord {
            index: p.index,
            request_id: p.request_id,
            intended_ns: p.intended_ns,
            dispatch_ns: p.dispatch_ns,
            send_ns: p.send_ns,
            headers_ns: nonzero(p.headers_ns),
            first_byte_ns: nonzero(p.first_byte_ns),
            chunks,
            last_choice_ns: nonzero(p.last_choice_ns),
            end_ns: p.end_ns,
            prompt_tokens_target: p.prompt_tokens_target,
            prompt_tokens_server: p.prompt_tokens_server,
            cached_tokens_server: p.cached_tokens_server,
            output_tokens_target: p.output_tokens_target,
            output_tokens_server: p.output_tokens_server,
            output_tokens_client: p.output_tokens_client,
            finish_reason: (!p.finish_reason.is_empty()).then_some(p.finish_reason),
            done_marker: p.done_marker,
            status,
            error,
            kernel_rx_stamps: p.kernel_rx_stamps,
            read_lags_us: p.read_lags_us,
            text: p.text,
            first_visible_ns: nonzero(p.first_visible_ns),
            hidden_text: p.hidden_text.chunks(2).map(|c| [c[0], c[1]]).collect(),
            reasoning_tokens_server: p.reasoning_tokens_server,
            turn: p.turn,
            session_turns: p.session_turns,
        })
    }
}

/// Applies `f` to every timestamp of `r` (the `*_ns` fields and each chunk's time), e.g. to move
/// a worker's record onto the controller's clock. A 0 ("not reached") stays 0.
pub fn map_times(r: &mut RequestRecord, f: impl Fn(u64) -> u64) {
    let g = |t: u64| if t == 0 { 0 } else { f(t) };
    for t in [
        &mut r.intended_ns,
        &mut r.dispatch_ns,
        &mut r.send_ns,
        &mut r.end_ns,
    ] {
        *t = g(*t);
    }
    for t in [
        &mut r.headers_ns,
        &mut r.first_byte_ns,
        &mut r.last_choice_ns,
        &mut r.first_visible_ns,
    ]
    .into_iter()
    .flatten()
    {
        *t = g(*t);
    }
    for c in &mut r.chunks {
        c.t_ns = g(c.t_ns);
    }
}

// ------------------------------------------------------------------------------- prompts

impl From<&Prompt> for proto::Prompt {
    fn from(p: &Prompt) -> Self {
        proto::Prompt {
            text: p.text.clone(),
            prompt_tokens: p.prompt_tokens,
            output_len: p.output_len,
            offset_ns: p.offset_ns,
        }
    }
}

impl From<Prompt> for proto::Prompt {
    fn from(p: Prompt) -> Self {
        proto::Prompt {
            text: p.text,
            prompt_tokens: p.prompt_tokens,
            output_len: p.output_len,
            offset_ns: p.offset_ns,
        }
    }
}

impl From<proto::Prompt> for Prompt {
    fn from(p: proto::Prompt) -> Self {
        Prompt {
            text: p.text,
            prompt_tokens: p.prompt_tokens,
            output_len: p.output_len,
            offset_ns: p.offset_ns,
        }
    }
}

// ------------------------------------------------------------------------------- targets

/// The request spec of `target` for the wire: what every request sends besides its prompt, its
/// limits and its key. `endpoint` is the API path (`/v1/completions`); the base URL is not part
/// of the spec (each worker gets its own list of them).
pub fn request_spec(endpoint: &str, target: &Target) -> proto::RequestSpec {
    let ms = |d: Duration| (d.as_nanos().div_ceil(1_000_000)).min(u64::MAX as u128) as u64;
    let body = &target.body;
    proto::RequestSpec {
        endpoint: endpoint.to_string(),
        backend: body.backend.as_str().to_string(),
        model: body.model.clone(),
        ignore_eos: body.ignore_eos,
        temperature: body.temperature,
        extra_body_json: if body.extra_body.is_empty() {
            String::new()
        } else {
            Value::Object(body.extra_body.clone()).to_string()
        },
        api_key: target.api_key.clone().unwrap_or_default(),
        timeout_ms: ms(target.timeout).max(1),
        stall_timeout_ms: target.stall_timeout.map_or(0, |d| ms(d).max(1)),
    }
}

/// The target of `spec` on the server at `base_url` (`http://host:port`, with or without a path
/// prefix): the endpoint is appended to it.
pub fn target(base_url: &str, spec: &proto::RequestSpec) -> Result<Target, WireError> {
    let url_err = |reason: String| WireError::Url {
        url: base_url.to_string(),
        endpoint: spec.endpoint.clone(),
        reason,
    };
    let base = reqwest::Url::parse(base_url).map_err(|e| url_err(e.to_string()))?;
    if !matches!(base.scheme(), "http" | "https") {
        return Err(url_err(format!(
            "the scheme must be http or https, got {}",
            base.scheme()
        )));
    }
    let url = reqwest::Url::parse(&format!(
        "{}/{}",
        base_url.trim_end_matches('/'),
        spec.endpoint.trim_start_matches('/')
    ))
    .map_err(|e| url_err(e.to_string()))?;
    let backend = match spec.backend.as_str() {
        "openai" => Backend::Openai,
        "vllm" => Backend::Vllm,
        "sglang" => Backend::Sglang,
        other => return Err(WireError::Backend(other.to_string())),
    };
    let extra_body = if spec.extra_body_json.trim().is_empty() {
        Map::new()
    } else {
        match serde_json::from_str::<Value>(&spec.extra_body_json) {
            Ok(Value::Object(m)) => m,
            Ok(other) => return Err(WireError::ExtraBody(format!("got {other}"))),
            Err(e) => return Err(WireError::ExtraBody(e.to_string())),
        }
    };
    if spec.timeout_ms == 0 {
        return Err(WireError::Timeout);
    }
    Ok(Target {
        url,
        api_key: (!spec.api_key.is_empty()).then(|| spec.api_key.clone()),
        body: BodySpec {
            kind: EndpointKind::from_path(&spec.endpoint),
            backend,
            model: spec.model.clone(),
            ignore_eos: spec.ignore_eos,
            temperature: spec.temperature,
            extra_body,
        },
        timeout: Duration::from_millis(spec.timeout_ms),
        stall_timeout: (spec.stall_timeout_ms > 0)
            .then(|| Duration::from_millis(spec.stall_timeout_ms)),
    })
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    use super::*;

    fn round_trip(r: &RequestRecord) -> RequestRecord {
        RequestRecord::try_from(proto::RequestRecord::from(r)).expect("decodes")
    }

    fn full() -> RequestRecord {
        RequestRecord {
            index: 7,
            request_id: "w1-job-3-7".into(),
            intended_ns: 1_000,
            dispatch_ns: 1_010,
            send_ns: 1_020,
            headers_ns: Some(1_500),
            first_byte_ns: Some(1_600),
            chunks: vec![
                ContentChunk {
                    t_ns: 1_700,
                    text_end: 3,
                    tokens: 1,
                },
                ContentChunk {
                    t_ns: 1_800,
                    text_end: 9,
                    tokens: 2,
                },
            ],
            last_choice_ns: Some(1_850),
            end_ns: 1_900,
            prompt_tokens_target: 128,
            prompt_tokens_server: Some(129),
            cached_tokens_server: Some(64),
            output_tokens_target: 3,
            output_tokens_server: Some(3),
            output_tokens_client: Some(3),
            finish_reason: Some("length".into()),
            done_marker: true,
            status: Some(200),
            error: None,
            kernel_rx_stamps: true,
            read_lags_us: vec![12, 3400],
            text: "one two three".into(),
            first_visible_ns: Some(1_800),
            hidden_text: vec![[0, 3]],
            reasoning_tokens_server: Some(1),
            turn: Some(2),
            session_turns: Some(4),
        }
    }

    #[test]
    fn a_record_with_every_field_set_round_trips() {
        let r = full();
        assert_eq!(round_trip(&r), r);
        let p = proto::RequestRecord::from(&r);
        assert_eq!(p.chunk_t_ns, vec![1_700, 1_800]);
        assert_eq!(p.chunk_text_end, vec![3, 9]);
        assert_eq!(p.chunk_tokens, vec![1, 2]);
    }

    #[test]
    fn failed_records_round_trip() {
        let http = RequestRecord {
            status: Some(503),
            error: Some(RequestError {
                kind: ErrorKind::Http5xx,
                status: Some(503),
                message: "overloaded".into(),
            }),
            chunks: vec![],
            ..full()
        };
        assert_eq!(round_trip(&http), http);
        let p = proto::RequestRecord::from(&http);
        assert_eq!(
            (p.status, p.error_kind.as_str(), p.error_message.as_str()),
            (503, "http_5xx", "overloaded")
        );
        // a stream that broke after a 200: the status stays on the record, not the error
        let broken = RequestRecord {
            error: Some(RequestError::new(ErrorKind::TruncatedStream, "reset")),
            ..full()
        };
        assert_eq!(round_trip(&broken), broken);
        for kind in ErrorKind::ALL {
            let r = RequestRecord {
                error: Some(RequestError::new(kind, "x")),
                ..Default::default()
            };
            assert_eq!(round_trip(&r), r, "{kind}");
        }
    }

    #[test]
    fn an_empty_record_round_trips() {
        let r = RequestRecord::default();
        assert_eq!(round_trip(&r), r);
        assert_eq!(
            proto::RequestRecord::from(&r),
            proto::RequestRecord::default()
        );
    }

    #[test]
    fn bad_records_are_refused() {
        let mut p = proto::RequestRecord::from(&full());
        p.chunk_tokens.pop();
        assert!(matches!(
            RequestRecord::try_from(p),
            Err(WireError::ChunkArrays { .. })
        ));
        let p = proto::RequestRecord {
            error_kind: "exploded".into(),
            ..Default::default()
        };
        assert_eq!(
            RequestRecord::try_from(p),
            Err(WireError::UnknownErrorKind("exploded".into()))
        );
        let p = proto::RequestRecord {
            status: 70_000,
            ..Default::default()
        };
        assert_eq!(RequestRecord::try_from(p), Err(WireError::Status(70_000)));
    }

    /// A random record as loadgen could produce it (timestamps non-zero where set, an error's
    /// status only on HTTP kinds).
    fn random_record(rng: &mut StdRng) -> RequestRecord {
        let maybe = |rng: &mut StdRng| rng.random_bool(0.5).then(|| rng.random_range(1..u64::MAX));
        let n_chunks = rng.random_range(0..20usize);
        let mut t = rng.random_range(1..u64::MAX / 4);
        let mut text_end = 0u32;
        let chunks = (0..n_chunks)
            .map(|_| {
                t += rng.random_range(1..1_000_000_000);
                text_end += rng.random_range(0..50);
                ContentChunk {
                    t_ns: t,
                    text_end,
                    tokens: rng.random_range(0..5),
                }
            })
            .collect();
        let status = rng.random_bool(0.7).then(|| rng.random_range(100..600u16));
        let error = rng.random_bool(0.4).then(|| {
            let kind = ErrorKind::ALL[rng.random_range(0..ErrorKind::ALL.len())];
            let is_status = matches!(
                kind,
                ErrorKind::Http4xx | ErrorKind::Http5xx | ErrorKind::HttpOther
            );
            RequestError {
                kind,
                status: status.filter(|_| is_status),
                message: format!("message {}", rng.random::<u32>()),
            }
        });
        let text: String = (0..rng.random_range(0..40))
            .map(|_| char::from_u32(rng.random_range(0x20..0x3000)).unwrap_or('?'))
            .collect();
        RequestRecord {
            index: rng.random(),
            request_id: format!("id-{}", rng.random::<u64>()),
            intended_ns: rng.random_range(1..u64::MAX),
            dispatch_ns: rng.random_range(1..u64::MAX),
            send_ns: rng.random_range(1..u64::MAX),
            headers_ns: maybe(rng),
            first_byte_ns: maybe(rng),
            chunks,
            last_choice_ns: maybe(rng),
            end_ns: rng.random_range(1..u64::MAX),
            prompt_tokens_target: rng.random(),
            prompt_tokens_server: rng.random_bool(0.5).then(|| rng.random()),
            cached_tokens_server: rng.random_bool(0.5).then(|| rng.random()),
            output_tokens_target: rng.random(),
            output_tokens_server: rng.random_bool(0.5).then(|| rng.random()),
            output_tokens_client: rng.random_bool(0.5).then(|| rng.random()),
            finish_reason: rng
                .random_bool(0.5)
                .then(|| ["stop", "length", "abort"][rng.random_range(0..3)].to_string()),
            done_marker: rng.random(),
            status,
            error,
            kernel_rx_stamps: rng.random(),
            read_lags_us: (0..rng.random_range(0..4)).map(|_| rng.random()).collect(),
            text,
            first_visible_ns: maybe(rng),
            hidden_text: (0..rng.random_range(0..3))
                .map(|_| [rng.random(), rng.random()])
                .collect(),
            reasoning_tokens_server: rng.random_bool(0.5).then(|| rng.random()),
            turn: rng.random_bool(0.5).then(|| rng.random()),
            session_turns: rng.random_bool(0.5).then(|| rng.random()),
        }
    }

    #[test]
    fn random_records_round_trip_through_protobuf_bytes() {
        use prost::Message;
        let mut rng = StdRng::seed_from_u64(0x5eed);
        for _ in 0..2_000 {
            let r = random_record(&mut rng);
            let bytes = proto::RequestRecord::from(&r).encode_to_vec();
            let back = proto::RequestRecord::decode(bytes.as_slice()).expect("decodes");
            assert_eq!(RequestRecord::try_from(back).expect("valid"), r);
        }
    }

    #[test]
    fn map_times_moves_every_timestamp_and_keeps_zeros() {
        let mut r = full();
        r.headers_ns = None;
        map_times(&mut r, |t| t - 1_000);
        assert_eq!(
            (r.intended_ns, r.dispatch_ns, r.send_ns, r.end_ns),
            (0, 10, 20, 900)
        );
        assert_eq!(r.headers_ns, None);
        assert_eq!(r.first_byte_ns, Some(600));
        assert_eq!(r.last_choice_ns, Some(850));
        assert_eq!(
            r.chunks.iter().map(|c| c.t_ns).collect::<Vec<_>>(),
            [700, 800]
        );
        let mut zero = RequestRecord::default();
        map_times(&mut zero, |t| t + 5);
        assert_eq!(zero, RequestRecord::default());
    }

    #[test]
    fn prompts_round_trip() {
        let p = Prompt {
            text: "héllo".into(),
            prompt_tokens: 2,
            output_len: 9,
            offset_ns: Some(1_500_000),
        };
        assert_eq!(Prompt::from(proto::Prompt::from(&p)), p);
    }

    fn sample_target() -> Target {
        let mut extra = Map::new();
        extra.insert("top_k".into(), 5.into());
        Target {
            url: "http://127.0.0.1:8000/v1/chat/completions".parse().unwrap(),
            api_key: Some("sk-secret".into()),
            body: BodySpec {
                kind: EndpointKind::Chat,
                backend: Backend::Sglang,
                model: "m".into(),
                ignore_eos: true,
                temperature: 0.7,
                extra_body: extra,
            },
            timeout: Duration::from_secs(30),
            stall_timeout: Some(Duration::from_millis(1500)),
        }
    }

    #[test]
    fn targets_round_trip_through_a_request_spec() {
        let t = sample_target();
        let spec = request_spec("/v1/chat/completions", &t);
        assert_eq!(spec.timeout_ms, 30_000);
        assert_eq!(spec.stall_timeout_ms, 1_500);
        let back = target("http://127.0.0.1:8000/", &spec).unwrap();
        assert_eq!(back.url, t.url);
        assert_eq!(back.api_key, t.api_key);
        assert_eq!(back.timeout, t.timeout);
        assert_eq!(back.stall_timeout, t.stall_timeout);
        assert_eq!(
            serde_json::to_value(&back.body).unwrap(),
            serde_json::to_value(&t.body).unwrap()
        );
        // another replica, with a path prefix; no key, no stall limit, no extra body
        let plain = Target {
            api_key: None,
            stall_timeout: None,
            body: BodySpec {
                extra_body: Map::new(),
                kind: EndpointKind::Completions,
                backend: Backend::Openai,
                ..t.body.clone()
            },
            ..t
        };
        let spec = request_spec("v1/completions", &plain);
        assert_eq!(
            (spec.api_key.as_str(), spec.extra_body_json.as_str()),
            ("", "")
        );
        let back = target("https://example.invalid/prefix", &spec).unwrap();
        assert_eq!(
            back.url.as_str(),
            "https://example.invalid/prefix/v1/completions"
        );
        assert_eq!((back.api_key, back.stall_timeout), (None, None));
        assert!(back.body.extra_body.is_empty());
    }

    #[test]
    fn bad_specs_are_refused() {
        let spec = request_spec("/v1/completions", &sample_target());
        assert!(matches!(
            target("not a url", &spec),
            Err(WireError::Url { .. })
        ));
        assert!(matches!(
            target("ftp://host", &spec),
            Err(WireError::Url { .. })
        ));
        let bad = proto::RequestSpec {
            backend: "tgi".into(),
            ..spec.clone()
        };
        assert_eq!(
            target("http://h", &bad).unwrap_err(),
            WireError::Backend("tgi".into())
        );
        let bad = proto::RequestSpec {
            extra_body_json: "[1]".into(),
            ..spec.clone()
        };
        assert!(matches!(
            target("http://h", &bad),
            Err(WireError::ExtraBody(_))
        ));
        let bad = proto::RequestSpec {
            timeout_ms: 0,
            ..spec
        };
        assert_eq!(target("http://h", &bad).unwrap_err(), WireError::Timeout);
    }
}
