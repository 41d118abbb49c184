//! Ground truth for client accuracy tests: when the server received each request and when it
//! handed each token's chunk to the HTTP layer.
//!
//! Served at `GET /sim/trace` (JSON; `?clear=true` also empties it) and cleared with
//! `DELETE /sim/trace`. Records are kept in a ring buffer of the last `trace_capacity`
//! requests holding at most `trace_max_tokens` token times in total (8 bytes each), oldest
//! dropped first; a request is recorded when it ends (completed, failed or disconnected).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// One request's timeline.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TraceRecord {
    /// The response `id` (`cmpl-N` or `chatcmpl-N`).
    pub id: String,
    /// Replica that served it.
    pub replica: usize,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Tokens sent.
    pub completion_tokens: usize,
    /// `length` or `stop` when complete; `null` if the client went away first.
    pub finish_reason: Option<String>,
    /// When the request arrived at the HTTP handler (unix nanoseconds).
    pub arrival_unix_ns: u64,
    /// When the first token's chunk was written (unix nanoseconds).
    pub first_token_unix_ns: Option<u64>,
    /// For every token, nanoseconds from arrival until its chunk was written (index 0 is the
    /// first token, so `token_offsets_ns[0]` is the server-side TTFT).
    pub token_offsets_ns: Vec<u64>,
}

/// The trace ring buffer.
pub struct Trace {
    capacity: usize,
    max_tokens: usize,
    anchor: Instant,
    anchor_unix_ns: u64,
    records: Mutex<Records>,
}

#[derive(Default)]
struct Records {
    list: VecDeque<TraceRecord>,
    tokens: usize,
}

impl Trace {
    /// A trace keeping the last `capacity` requests and at most `max_tokens` token times.
    pub fn new(capacity: usize, max_tokens: usize) -> Trace {
        let anchor = Instant::now();
        let anchor_unix_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Trace {
            capacity,
            max_tokens,
            anchor,
            anchor_unix_ns,
            records: Mutex::new(Records::default()),
        }
    }

    /// Convert a monotonic instant to unix nanoseconds (monotonic within one server).
    pub fn unix_ns(&self, t: Instant) -> u64 {
        if t >= self.anchor {
            self.anchor_unix_ns + (t - self.anchor).as_nanos() as u64
        } else {
            self.anchor_unix_ns
                .saturating_sub((self.anchor - t).as_nanos() as u64)
        }
    }

    /// Add a finished request.
    pub fn push(&self, r: TraceRecord) {
        if self.capacity == 0 || r.token_offsets_ns.len() > self.max_tokens {
            return;
        }
        let mut g = self.records.lock().expect("trace lock");
        g.tokens += r.token_offsets_ns.len();
        g.list.push_back(r);
        while g.list.len() > self.capacity || g.tokens > self.max_tokens {
            let old = g.list.pop_front().expect("non-empty");
            g.tokens -= old.token_offsets_ns.len();
        }
    }

    /// All records, oldest first; with `clear` the buffer is emptied.
    pub fn snapshot(&self, clear: bool) -> Vec<TraceRecord> {
        let mut g = self.records.lock().expect("trace lock");
        if clear {
            g.tokens = 0;
            std::mem::take(&mut g.list).into()
        } else {
            g.list.iter().cloned().collect()
        }
    }

    /// Empty the buffer.
    pub fn clear(&self) {
        let mut g = self.records.lock().expect("trace lock");
        g.list.clear();
        g.tokens = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, tokens: usize) -> TraceRecord {
        TraceRecord {
            id: id.into(),
            replica: 0,
            prompt_tokens: 1,
            completion_tokens: tokens,
            finish_reason: None,
            arrival_unix_ns: 0,
            first_token_unix_ns: None,
            token_offsets_ns: vec![0; tokens],
        }
    }

    #[test]
    fn token_budget_drops_the_oldest() {
        let t = Trace::new(10, 5);
        t.push(rec("a", 2));
        t.push(rec("b", 2));
        t.push(rec("c", 2));
        t.push(rec("huge", 6));
        let ids: Vec<_> = t.snapshot(false).into_iter().map(|r| r.id).collect();
        assert_eq!(ids, ["b", "c"]);
    }

    #[test]
    fn ring_buffer_keeps_the_newest() {
        let t = Trace::new(2, 100);
        t.push(rec("a", 0));
        t.push(rec("b", 1));
        t.push(rec("c", 1));
        let ids: Vec<_> = t.snapshot(true).into_iter().map(|r| r.id).collect();
        assert_eq!(ids, ["b", "c"]);
        assert!(t.snapshot(false).is_empty());
    }
}
