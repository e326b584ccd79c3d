//! An incremental Server-Sent Events reader: bytes in (as they arrive), `data:` payloads out.
//!
//! The caller stamps each read before feeding it; every payload completed by that read carries
//! the read's timestamp. Memory is bounded: a line, or an event's data, longer than [`MAX_LINE`]
//! is an error.

/// Longest SSE line, and longest event data (its `data:` lines joined), accepted (a chunk of
/// JSON); longer means the stream is not what we expect.
pub const MAX_LINE: usize = 4 << 20;

#[derive(Debug, PartialEq, Eq)]
pub enum SseError {
    LineTooLong(usize),
    EventTooLong(usize),
}

impl std::fmt::Display for SseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SseError::LineTooLong(n) => write!(
                f,
                "an SSE line of {n} bytes exceeds the {MAX_LINE} byte limit"
            ),
            SseError::EventTooLong(n) => write!(
                f,
                "an SSE event of {n} bytes of data lines exceeds the {MAX_LINE} byte limit"
            ),
        }
    }
}

/// Splits a byte stream into SSE events. Per the SSE spec, consecutive `data:` lines of one event
/// are joined with `\n`, and a blank line ends the event. Comment lines (`:`) and other fields
/// (`event:`, `id:`, `retry:`) are skipped.
#[derive(Default)]
pub struct SseReader {
    line: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
}

impl SseReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes; calls `on_event` with each complete event's data.
    pub fn feed(
        &mut self,
        mut bytes: &[u8],
        mut on_event: impl FnMut(&[u8]),
    ) -> Result<(), SseError> {
        while let Some(pos) = memchr_nl(bytes) {
            let (head, rest) = bytes.split_at(pos);
            bytes = &rest[1..];
            if self.line.is_empty() {
                self.line_done(head, &mut on_event)?;
            } else {
                self.line.extend_from_slice(head);
                let line = std::mem::take(&mut self.line);
                let done = self.line_done(&line, &mut on_event);
                self.line = line;
                self.line.clear();
                done?;
            }
        }
        if !bytes.is_empty() {
            if self.line.len() + bytes.len() > MAX_LINE {
                return Err(SseError::LineTooLong(self.line.len() + bytes.len()));
            }
            self.line.extend_from_slice(bytes);
        }
        Ok(())
    }

    /// The body ended: an event without its closing blank line still counts.
    pub fn finish(&mut self, mut on_event: impl FnMut(&[u8])) -> Result<(), SseError> {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.line_done(&line, &mut on_event)?;
        }
        self.dispatch(&mut on_event);
        Ok(())
    }

    /// Bytes held that did not form a complete line yet.
    pub fn pending(&self) -> usize {
        self.line.len() + self.data.len()
    }

    fn line_done(&mut self, line: &[u8], on_event: &mut impl FnMut(&[u8])) -> Result<(), SseError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            self.dispatch(on_event);
            return Ok(());
        }
        if let Some(v) = line.strip_prefix(b"data:") {
            let v = v.strip_prefix(b" ").unwrap_or(v);
            if self.has_data {
                if self.data.len() + 1 + v.len() > MAX_LINE {
                    return Err(SseError::EventTooLong(self.data.len() + 1 + v.len()));
                }
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(v);
            self.has_data = true;
        }
        // comments (":…") and other fields are ignored
        Ok(())
    }

    fn dispatch(&mut self, on_event: &mut impl FnMut(&[u8])) {
        if self.has_data {
            on_event(&self.data);
            self.data.clear();
            self.has_data = false;
        }
    }
}

#[inline]
fn memchr_nl(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(parts: &[&[u8]]) -> Vec<String> {
        let mut r = SseReader::new();
        let mut out = Vec::new();
        for p in parts {
            r.feed(p, |d| out.push(String::from_utf8(d.to_vec()).unwrap()))
                .unwrap();
        }
        r.finish(|d| out.push(String::from_utf8(d.to_vec()).unwrap()))
            .unwrap();
        out
    }

    #[test]
    fn splits_events_across_arbitrary_reads() {
        let whole = b"data: {\"a\":1}\n\ndata: {\"b\":2}\r\n\r\n: keepalive\n\ndata: [DONE]\n\n";
        let expect = vec!["{\"a\":1}", "{\"b\":2}", "[DONE]"];
        assert_eq!(events(&[whole]), expect);
        for cut in 0..whole.len() {
            let (a, b) = whole.split_at(cut);
            assert_eq!(events(&[a, b]), expect, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = whole.chunks(1).collect();
        assert_eq!(events(&bytes), expect);
    }

    #[test]
    fn multi_line_data_and_missing_final_blank_line() {
        assert_eq!(events(&[b"data: a\ndata: b\n\ndata: c"]), vec!["a\nb", "c"]);
        assert_eq!(
            events(&[b"event: x\nid: 1\ndata:nospace\n\n"]),
            vec!["nospace"]
        );
    }

    #[test]
    fn overlong_line_is_an_error() {
        let mut r = SseReader::new();
        let big = vec![b'x'; MAX_LINE + 1];
        assert!(r.feed(&big, |_| {}).is_err());
    }

    #[test]
    fn an_event_of_endless_data_lines_is_an_error_at_the_limit() {
        let mut r = SseReader::new();
        let line = [b"data: ".as_slice(), &[b'x'; 1000], b"\n"].concat();
        let mut fed = 0;
        let err = loop {
            if let Err(e) = r.feed(&line, |_| panic!("no blank line, no event")) {
                break e;
            }
            fed += line.len();
            assert!(fed < 2 * MAX_LINE, "the data is bounded");
        };
        assert!(matches!(err, SseError::EventTooLong(n) if n > MAX_LINE));
        assert!(r.pending() <= MAX_LINE);
    }
}
