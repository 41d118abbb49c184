//! Incremental Server-Sent Events parser: bytes in (split anywhere), `data` payloads out.
//!
//! Follows the event-stream format: lines end in `\n` or `\r\n`; `data:` lines (one optional
//! space after the colon) accumulate, joined by `\n`; a blank line dispatches the event;
//! lines starting with `:` are comments; other fields (`event`, `id`, `retry`) are ignored.
//! Buffers are reused, so a long stream does not allocate per event.

/// Parser state carried between chunks.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of an unfinished line from the previous chunk.
    partial: Vec<u8>,
    /// `data` of the event being assembled.
    data: Vec<u8>,
    has_data: bool,
}

impl SseParser {
    /// A parser with empty buffers.
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// Forgets any partial state (to reuse the buffers for the next stream).
    pub fn reset(&mut self) {
        self.partial.clear();
        self.data.clear();
        self.has_data = false;
    }

    /// True when bytes of an unfinished line or event are pending.
    pub fn has_pending(&self) -> bool {
        !self.partial.is_empty() || self.has_data
    }

    /// Feeds one chunk; calls `on_data` with each complete event's `data`.
    pub fn feed(&mut self, mut input: &[u8], on_data: &mut impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            match memchr::memchr(b'\n', input) {
                None => {
                    self.partial.extend_from_slice(input);
                    return;
                }
                Some(i) => {
                    self.partial.extend_from_slice(&input[..i]);
                    input = &input[i + 1..];
                    let line = std::mem::take(&mut self.partial);
                    self.line(&line, on_data);
                    self.partial = line;
                    self.partial.clear();
                }
            }
        }
        while let Some(i) = memchr::memchr(b'\n', input) {
            self.line(&input[..i], on_data);
            input = &input[i + 1..];
        }
        self.partial.extend_from_slice(input);
    }

    fn line(&mut self, line: &[u8], on_data: &mut impl FnMut(&[u8])) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if self.has_data {
                on_data(&self.data);
                self.data.clear();
                self.has_data = false;
            }
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        if field == b"data" {
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(value);
            self.has_data = true;
        }
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
            });
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
        p.feed(b"data: {\"a\":1}\n", &mut |_| n += 1);
        assert_eq!(n, 0);
        assert!(p.has_pending());
        p.feed(b"\n", &mut |_| n += 1);
        assert_eq!(n, 1);
        assert!(!p.has_pending());
        p.feed(b"data: trunc", &mut |_| n += 1);
        assert!(p.has_pending());
        p.reset();
        assert!(!p.has_pending());
    }
}
