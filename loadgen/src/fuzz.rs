//! Property tests of the body's decoders (proptest): the HTTP/1.1 chunked decoder, the SSE
//! splitter, the OpenAI chunk parser and the whole response path, on arbitrary bytes split at
//! arbitrary read boundaries, against simple whole-input reference decoders where one exists.
//! Each test prints how many cases it ran. CI runs proptest's default (256 cases each); a long
//! run: `PROPTEST_CASES=1000000 cargo test -p loadgen --release --lib fuzz_ -- --nocapture`.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::http1::{Chunked, Progress, Response};
use crate::openai::parse_chunk;
use crate::record::RequestRecord;
use crate::sse::SseReader;
use crate::stream::StreamParser;

/// Runs `test` over `strategy`'s cases (`PROPTEST_CASES`, default 256); prints the count.
fn check<S: Strategy>(
    name: &str,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let config = Config {
        failure_persistence: None,
        ..Config::default()
    };
    let cases = config.cases;
    let mut runner = TestRunner::new(config);
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{name}: {e}");
    }
    eprintln!("{name}: {cases} cases passed");
}

/// `bytes` cut into reads of the given sizes (cycled); one read when `sizes` is empty.
fn reads<'a>(bytes: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let (mut i, mut k) = (0, 0);
    while i < bytes.len() {
        let n = sizes
            .get(k % sizes.len().max(1))
            .copied()
            .unwrap_or(bytes.len());
        let end = (i + n.max(1)).min(bytes.len());
        out.push(&bytes[i..end]);
        i = end;
        k += 1;
    }
    out
}

fn read_sizes() -> impl Strategy<Value = Vec<usize>> {
    vec(1usize..40, 0..12)
}

/// Bytes drawn mostly from `parts` (the grammar's tokens), sometimes any byte.
fn soup(parts: &'static [&'static [u8]], max: usize) -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        4 => prop::sample::select(parts).prop_map(|p| p.to_vec()),
        1 => any::<u8>().prop_map(|b| vec![b]),
    ];
    vec(piece, 0..max).prop_map(|v| v.concat())
}

// ---- chunked ----

/// What the incremental decoder made of `reads`: the data, then done / an error.
fn chunked_incremental(reads: &[&[u8]]) -> (Vec<u8>, Result<bool, &'static str>) {
    let mut c = Chunked::default();
    let mut data = Vec::new();
    for r in reads {
        match c.decode(r, |d| data.extend_from_slice(d)) {
            Ok(true) => return (data, Ok(true)),
            Ok(false) => {}
            Err(e) => return (data, Err(e)),
        }
    }
    (data, Ok(false))
}

/// The strict grammar (RFC 9112 §7.1, CRLF only), whole input: the data when a complete body
/// is a prefix of `b`, `None` otherwise.
fn chunked_reference(mut b: &[u8]) -> Option<Vec<u8>> {
    fn line(b: &[u8]) -> Option<(&[u8], &[u8])> {
        let end = b.windows(2).position(|w| w == b"\r\n")?;
        let l = &b[..end];
        (!l.contains(&b'\r') && !l.contains(&b'\n')).then_some((l, &b[end + 2..]))
    }
    let mut out = Vec::new();
    loop {
        let (l, rest) = line(b)?;
        let hex = l.split(|&c| c == b';').next()?;
        if hex.is_empty() || !hex.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        let size = u64::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()? as usize;
        b = rest;
        if size == 0 {
            loop {
                let (t, rest) = line(b)?;
                if t.is_empty() {
                    return Some(out);
                }
                b = rest;
            }
        }
        if b.len() < size.checked_add(2)? || &b[size..size + 2] != b"\r\n" {
            return None;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

fn encode_chunked(chunks: &[Vec<u8>], ext: bool, trailers: usize) -> Vec<u8> {
    let mut w = Vec::new();
    for c in chunks.iter().filter(|c| !c.is_empty()) {
        w.extend_from_slice(format!("{:X}", c.len()).as_bytes());
        if ext {
            w.extend_from_slice(b";name=\"v\"");
        }
        w.extend_from_slice(b"\r\n");
        w.extend_from_slice(c);
        w.extend_from_slice(b"\r\n");
    }
    w.extend_from_slice(b"0\r\n");
    for i in 0..trailers {
        w.extend_from_slice(format!("X-T{i}: v\r\n").as_bytes());
    }
    w.extend_from_slice(b"\r\n");
    w
}

#[test]
fn fuzz_chunked_round_trip_at_any_read_boundaries() {
    let s = (
        vec(vec(any::<u8>(), 0..300), 0..8),
        any::<bool>(),
        0usize..3,
        vec(any::<u8>(), 0..20),
        read_sizes(),
    );
    check(
        "fuzz_chunked_round_trip",
        s,
        |(chunks, ext, trailers, after, sizes)| {
            let mut wire = encode_chunked(&chunks, ext, trailers);
            let end = wire.len();
            wire.extend_from_slice(&after); // the next response's bytes: never body data
            let (data, done) = chunked_incremental(&reads(&wire, &sizes));
            prop_assert_eq!(done, Ok(true));
            prop_assert_eq!(&data, &chunks.concat());
            prop_assert_eq!(chunked_reference(&wire[..end]), Some(data));
            Ok(())
        },
    );
}

#[test]
fn fuzz_chunked_arbitrary_bytes_agree_with_the_reference_at_any_split() {
    const PARTS: &[&[u8]] = &[
        b"0", b"1", b"5", b"a", b"F", b"\r\n", b"\r", b"\n", b";x=1", b" ", b"hello", b"X-T: v",
    ];
    // grammar soup, and valid bodies with a few bytes replaced, inserted or deleted
    let mutated = (
        vec(vec(any::<u8>(), 0..40), 0..5),
        any::<bool>(),
        vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..3),
    )
        .prop_map(|(chunks, ext, edits)| {
            let mut w = encode_chunked(&chunks, ext, 1);
            for (at, b, op) in edits {
                let i = at.index(w.len() + 1);
                match op {
                    0 if i < w.len() => w[i] = b,
                    1 => w.insert(i, b),
                    _ if i < w.len() => {
                        w.remove(i);
                    }
                    _ => {}
                }
            }
            w
        });
    let s = (prop_oneof![soup(PARTS, 40), mutated], read_sizes());
    check("fuzz_chunked_arbitrary", s, |(wire, sizes)| {
        let whole = chunked_incremental(&[&wire]);
        let split = chunked_incremental(&reads(&wire, &sizes));
        prop_assert_eq!(&whole, &split, "the read boundaries change nothing");
        if let Some(data) = chunked_reference(&wire) {
            prop_assert_eq!(whole, (data, Ok(true)), "what the strict grammar accepts");
        }
        Ok(())
    });
}

// ---- SSE ----

/// The SSE rules (WHATWG, the `data` field only) over the whole input at once.
fn sse_reference(input: &[u8]) -> Vec<Vec<u8>> {
    let mut events = Vec::new();
    let mut data: Option<Vec<u8>> = None;
    let mut on_line = |line: &[u8], data: &mut Option<Vec<u8>>| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            events.extend(data.take());
        } else if let Some(v) = line.strip_prefix(b"data:") {
            let v = v.strip_prefix(b" ").unwrap_or(v);
            match data {
                Some(d) => {
                    d.push(b'\n');
                    d.extend_from_slice(v);
                }
                None => *data = Some(v.to_vec()),
            }
        }
    };
    let lines: Vec<&[u8]> = input.split(|&c| c == b'\n').collect();
    let (last, complete) = lines.split_last().expect("split yields at least one");
    for l in complete {
        on_line(l, &mut data);
    }
    if !last.is_empty() {
        on_line(last, &mut data);
    }
    events.extend(data.take());
    events
}

#[test]
fn fuzz_sse_agrees_with_the_reference_at_any_split() {
    const PARTS: &[&[u8]] = &[
        b"data:",
        b"data: ",
        b"\n",
        b"\r\n",
        b"\r",
        b":",
        b"event: x",
        b"id: 1",
        b"{\"a\":1}",
        "é".as_bytes(),
        b"[DONE]",
        b" ",
    ];
    let s = (soup(PARTS, 60), read_sizes());
    check("fuzz_sse", s, |(input, sizes)| {
        let mut r = SseReader::new();
        let mut events = Vec::new();
        for read in reads(&input, &sizes) {
            r.feed(read, |d| events.push(d.to_vec())).unwrap();
        }
        r.finish(|d| events.push(d.to_vec())).unwrap();
        prop_assert_eq!(events, sse_reference(&input));
        Ok(())
    });
}

// ---- OpenAI chunks ----

#[test]
fn fuzz_openai_chunk_parser_never_panics_and_reads_any_text() {
    let s = (vec(any::<u8>(), 0..200), any::<String>(), any::<bool>());
    check("fuzz_openai_chunk", s, |(bytes, text, chat)| {
        if parse_chunk(&bytes).is_ok() {
            prop_assert!(serde_json::from_slice::<serde_json::Value>(&bytes).is_ok());
        }
        let json = serde_json::to_string(&text).unwrap();
        let payload = match chat {
            true => format!(r#"{{"choices":[{{"index":0,"delta":{{"content":{json}}}}}]}}"#),
            false => format!(r#"{{"choices":[{{"index":0,"text":{json}}}]}}"#),
        };
        let c = parse_chunk(payload.as_bytes()).unwrap();
        prop_assert!(c.has_choices);
        prop_assert_eq!(c.content.as_ref(), text.as_str());
        Ok(())
    });
}

/// One event of a generated stream.
#[derive(Clone, Debug)]
enum Ev {
    Text(String),
    Finish,
    Usage(u32),
    Done,
    /// Arbitrary bytes as a `data:` payload (usually malformed).
    Junk(Vec<u8>),
}

fn ev() -> impl Strategy<Value = Ev> {
    prop_oneof![
        8 => any::<String>().prop_map(Ev::Text),
        1 => Just(Ev::Finish),
        1 => (0u32..100_000).prop_map(Ev::Usage),
        1 => Just(Ev::Done),
        1 => vec(any::<u8>().prop_map(|b| if b == b'\n' || b == b'\r' { b' ' } else { b }), 0..30)
            .prop_map(Ev::Junk),
    ]
}

fn payload(e: &Ev) -> Vec<u8> {
    match e {
        Ev::Text(t) => {
            let j = serde_json::to_string(t).unwrap();
            format!(r#"{{"choices":[{{"index":0,"text":{j},"finish_reason":null}}]}}"#).into()
        }
        Ev::Finish => br#"{"choices":[{"index":0,"text":"","finish_reason":"length"}]}"#.to_vec(),
        Ev::Usage(n) => {
            format!(r#"{{"choices":[],"usage":{{"prompt_tokens":1,"completion_tokens":{n}}}}}"#)
                .into()
        }
        Ev::Done => b"[DONE]".to_vec(),
        Ev::Junk(b) => b.clone(),
    }
}

fn sse_event(e: &Ev) -> Vec<u8> {
    [b"data: ".as_slice(), &payload(e), b"\n\n"].concat()
}

/// What a parse left in a record, timestamps aside.
fn outcome(rec: &RequestRecord, r: &Result<(), crate::RequestError>) -> String {
    format!(
        "{:?} {:?} {} {:?} {:?} {:?}",
        r.as_ref().map_err(|e| (e.kind, &e.message)),
        rec.text,
        rec.chunks.len(),
        rec.finish_reason,
        rec.output_tokens_server,
        rec.done_marker
    )
}

fn parse_body(reads: &[&[u8]]) -> (RequestRecord, Result<(), crate::RequestError>) {
    let mut rec = RequestRecord::default();
    let mut p = StreamParser::new();
    for (i, r) in reads.iter().enumerate() {
        if let Err(e) = p.feed(&mut rec, r, i as u64) {
            return (rec, Err(e));
        }
    }
    let r = p.finish(&mut rec, reads.len() as u64);
    (rec, r)
}

#[test]
fn fuzz_stream_parser_is_independent_of_read_boundaries() {
    let s = (vec(ev(), 0..12), read_sizes());
    check("fuzz_stream_parser", s, |(events, sizes)| {
        let body: Vec<u8> = events.iter().flat_map(sse_event).collect();
        let (whole, rw) = parse_body(&[&body]);
        let (split, rs) = parse_body(&reads(&body, &sizes));
        prop_assert_eq!(outcome(&whole, &rw), outcome(&split, &rs));
        if !events.iter().any(|e| matches!(e, Ev::Junk(_))) {
            let texts: Vec<&String> = events
                .iter()
                .filter_map(|e| match e {
                    Ev::Text(t) if !t.is_empty() => Some(t),
                    _ => None,
                })
                .collect();
            prop_assert_eq!(
                &split.text,
                &texts.iter().map(|t| t.as_str()).collect::<String>()
            );
            prop_assert_eq!(split.chunks.len(), texts.len());
        }
        Ok(())
    });
}

/// The whole response path: head, chunked body (one event per chunk), SSE, JSON, cut into
/// arbitrary reads; each content chunk is stamped with the read that held its event's last byte.
#[test]
fn fuzz_response_stamps_each_chunk_with_the_read_that_completed_it() {
    // non-empty without a filter (a filter's rejects abort a million-case run)
    let text = (any::<char>(), any::<String>()).prop_map(|(c, t)| format!("{c}{t}"));
    let texts = vec(text, 1..10);
    let s = (texts, read_sizes());
    check("fuzz_response", s, |(texts, sizes)| {
        let mut wire =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec();
        let mut ends = Vec::new(); // wire offset of each content event's last byte
        for e in texts
            .iter()
            .cloned()
            .map(Ev::Text)
            .chain([Ev::Finish, Ev::Done])
        {
            let ev = sse_event(&e);
            wire.extend_from_slice(format!("{:x}\r\n", ev.len()).as_bytes());
            wire.extend_from_slice(&ev);
            if matches!(e, Ev::Text(_)) {
                ends.push(wire.len() - 1);
            }
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"0\r\n\r\n");
        let pieces = reads(&wire, &sizes);
        let mut rec = RequestRecord::default();
        let mut resp = Response::default();
        let mut offset = 0;
        let mut read_of = Vec::new(); // the read holding each byte
        let mut complete = false;
        for (i, r) in pieces.iter().enumerate() {
            read_of.extend(std::iter::repeat_n(i as u64, r.len()));
            offset += r.len();
            match resp.feed(&mut rec, r, i as u64) {
                Ok(Progress::More) => {}
                Ok(Progress::Complete { reusable }) => {
                    prop_assert!(reusable);
                    complete = true;
                    break;
                }
                Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
            }
        }
        prop_assert!(complete && offset == wire.len());
        prop_assert_eq!(rec.text, texts.concat());
        let stamps: Vec<u64> = rec.chunks.iter().map(|c| c.t_ns).collect();
        let want: Vec<u64> = ends.iter().map(|&e| read_of[e]).collect();
        prop_assert_eq!(stamps, want);
        Ok(())
    });
}
