//! Incremental Server-Sent Events parser: bytes in (split anywhere), `data` payloads out.
//!
//! Follows the event-stream format: lines end in `\n` or `\r\n`; `data:` lines (one optional
//! space after the colon) accumulate, joined by `\n`; a blank line dispatches the event;
//! lines starting with `:` are comments; other fields (`event`, `id`, `retry`) are ignored.
//! Buffers are reused, so a long stream does not allocate per event. A line or an event
//! longer than the parser's limit is an error ([`Oversize`]) instead of a buffer that grows
//! with whatever a (hostile or broken) server sends.

/// Default limit on one SSE line or event, and on a non-streamed body: 1 MiB.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1 << 20;

/// Buffers grown past this by one stream are released when the parser is reset.
const KEEP_CAPACITY: usize = 64 * 1024;

/// Parser state carried between chunks.
#[derive(Debug)]
pub struct SseParser {
    /// Bytes of an unfinished line from the previous chunk.
    partial: Vec<u8>,
    /// `data` of the event being assembled.
    data: Vec<u8>,
    has_data: bool,
    limit: usize,
}

impl Default for SseParser {
    fn default() -> Self {
        SseParser {
            partial: Vec::new(),
            data: Vec::new(),
            has_data: false,
            limit: DEFAULT_MAX_EVENT_BYTES,
        }
    }
}

/// A line or an event exceeded the parser's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Oversize {
    /// What was too long.
    pub what: &'static str,
    /// The limit, bytes.
    pub limit: usize,
}

impl std::fmt::Display for Oversize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} longer than the {}-byte limit", self.what, self.limit)
    }
}

impl SseParser {
    /// A parser with empty buffers.
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// Sets the longest line or event accepted, bytes (at least 1).
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit.max(1);
    }

    /// Forgets any partial state (to reuse the buffers for the next stream). Buffers a long
    /// event grew beyond 64 KiB are released.
    pub fn reset(&mut self) {
        for b in [&mut self.partial, &mut self.data] {
            b.clear();
            if b.capacity() > KEEP_CAPACITY {
                *b = Vec::new();
            }
        }
        self.has_data = false;
    }

    /// Bytes held in buffers (their capacity).
    pub fn buffered_capacity(&self) -> usize {
        self.partial.capacity() + self.data.capacity()
    }

    /// True when bytes of an unfinished line or event are pending.
    pub fn has_pending(&self) -> bool {
        !self.partial.is_empty() || self.has_data
    }

    /// Feeds one chunk; calls `on_data` with each complete event's `data`. Fails (and keeps
    /// no more than the limit buffered) when a line or an event's data exceeds the limit.
    pub fn feed(
        &mut self,
        mut input: &[u8],
        on_data: &mut impl FnMut(&[u8]),
    ) -> Result<(), Oversize> {
        let line_too_long = Oversize {
            what: "SSE line",
            limit: self.limit,
        };
        if !self.partial.is_empty() {
            match memchr::memchr(b'\n', input) {
                None => {
                    if self.partial.len() + input.len() > self.limit {
                        return Err(line_too_long);
                    }
                    self.partial.extend_from_slice(input);
                    return Ok(());
                }
                Some(i) => {
                    if self.partial.len() + i > self.limit {
                        return Err(line_too_long);
                    }
                    self.partial.extend_from_slice(&input[..i]);
                    input = &input[i + 1..];
                    let line = std::mem::take(&mut self.partial);
                    let r = self.line(&line, on_data);
                    self.partial = line;
                    self.partial.clear();
                    r?;
                }
            }
        }
        while let Some(i) = memchr::memchr(b'\n', input) {
            if i > self.limit {
                return Err(line_too_long);
            }
            self.line(&input[..i], on_data)?;
            input = &input[i + 1..];
        }
        if input.len() > self.limit {
            return Err(line_too_long);
        }
        self.partial.extend_from_slice(input);
        Ok(())
    }

    fn line(&mut self, line: &[u8], on_data: &mut impl FnMut(&[u8])) -> Result<(), Oversize> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if self.has_data {
                on_data(&self.data);
                self.data.clear();
                self.has_data = false;
            }
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        if field == b"data" {
            if self.data.len() + usize::from(self.has_data) + value.len() > self.limit {
                return Err(Oversize {
                    what: "SSE event",
                    limit: self.limit,
                });
            }
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(value);
            self.has_data = true;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_pieces(stream: &[u8], cuts: &[usize]) -> Vec<String> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        let mut last = 0;
        for &c in cuts.iter().chain(std::iter::once(&stream.len())) {
            p.feed(&stream[last..c], &mut |d: &[u8]| {
                out.push(String::from_utf8(d.to_vec()).unwrap())
            })
            .unwrap();
            last = c;
        }
        out
    }

    const STREAM: &[u8] = b": keepalive\r\n\r\ndata: {\"a\":1}\n\nevent: x\nid: 3\ndata:{\"b\":2}\r\n\r\ndata: line1\ndata: line2\n\ndata: [DONE]\n\n";

    #[test]
    fn parses_events_comments_and_multiline_data() {
        let all = parse_in_pieces(STREAM, &[]);
        assert_eq!(all, ["{\"a\":1}", "{\"b\":2}", "line1\nline2", "[DONE]"]);
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let whole = parse_in_pieces(STREAM, &[]);
        for i in 0..=STREAM.len() {
            for j in i..=STREAM.len() {
                assert_eq!(parse_in_pieces(STREAM, &[i, j]), whole, "cuts {i},{j}");
            }
        }
        let bytewise: Vec<usize> = (1..STREAM.len()).collect();
        assert_eq!(parse_in_pieces(STREAM, &bytewise), whole);
    }

    #[test]
    fn unterminated_event_is_pending_not_dispatched() {
        let mut p = SseParser::new();
        let mut n = 0;
        p.feed(b"data: {\"a\":1}\n", &mut |_| n += 1).unwrap();
        assert_eq!(n, 0);
        assert!(p.has_pending());
        p.feed(b"\n", &mut |_| n += 1).unwrap();
        assert_eq!(n, 1);
        assert!(!p.has_pending());
        p.feed(b"data: trunc", &mut |_| n += 1).unwrap();
        assert!(p.has_pending());
        p.reset();
        assert!(!p.has_pending());
    }

    #[test]
    fn lines_and_events_over_the_limit_fail_without_growing() {
        // A line arriving in pieces: refused once it passes the limit, buffer stays bounded.
        let mut p = SseParser::new();
        p.set_limit(100);
        let piece = [b'x'; 30];
        p.feed(b"data: ", &mut |_| {}).unwrap();
        let mut err = None;
        for _ in 0..10 {
            if let Err(e) = p.feed(&piece, &mut |_| {}) {
                err = Some(e);
                break;
            }
        }
        let e = err.expect("a 306-byte line passes a 100-byte limit");
        assert_eq!(e.what, "SSE line");
        assert!(p.buffered_capacity() <= 256, "{}", p.buffered_capacity());
        // In one chunk, complete or not.
        let mut p = SseParser::new();
        p.set_limit(100);
        let long = [b'y'; 200];
        assert!(p.feed(&long, &mut |_| {}).is_err());
        let mut line = b"data: ".to_vec();
        line.extend_from_slice(&long);
        line.extend_from_slice(b"\n\n");
        assert!(p.feed(&line, &mut |_| {}).is_err());
        // An event of many short data lines.
        let mut p = SseParser::new();
        p.set_limit(100);
        let r = p.feed(&b"data: 0123456789\n".repeat(20), &mut |_| {});
        assert_eq!(r.unwrap_err().what, "SSE event");
        // Within the limit, the same input parses.
        let mut p = SseParser::new();
        p.set_limit(1000);
        let mut n = 0;
        p.feed(&b"data: 0123456789\n".repeat(20), &mut |_| n += 1)
            .unwrap();
        p.feed(b"\n", &mut |_| n += 1).unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn reset_releases_buffers_a_long_event_grew() {
        let mut p = SseParser::new();
        p.feed(&[b'z'; 500_000], &mut |_| {}).unwrap();
        assert!(p.buffered_capacity() >= 500_000);
        p.reset();
        assert!(p.buffered_capacity() <= KEEP_CAPACITY);
    }
}
