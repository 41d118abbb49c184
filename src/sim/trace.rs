//! Ground truth for client accuracy tests: when the server received each request and when it
//! handed each token's chunk to the HTTP layer.
//!
//! Served at `GET /sim/trace` (JSON; `?clear=true` also empties it) and cleared with
//! `DELETE /sim/trace`. Records are kept in a ring buffer of the last `trace_capacity`
//! requests; a request is recorded when it ends (completed, failed or disconnected).

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
    anchor: Instant,
    anchor_unix_ns: u64,
    records: Mutex<VecDeque<TraceRecord>>,
}

impl Trace {
    /// A trace keeping the last `capacity` requests.
    pub fn new(capacity: usize) -> Trace {
        let anchor = Instant::now();
        let anchor_unix_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Trace {
            capacity,
            anchor,
            anchor_unix_ns,
            records: Mutex::new(VecDeque::new()),
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
        if self.capacity == 0 {
            return;
        }
        let mut g = self.records.lock().expect("trace lock");
        if g.len() >= self.capacity {
            g.pop_front();
        }
        g.push_back(r);
    }

    /// All records, oldest first; with `clear` the buffer is emptied.
    pub fn snapshot(&self, clear: bool) -> Vec<TraceRecord> {
        let mut g = self.records.lock().expect("trace lock");
        if clear {
            std::mem::take(&mut *g).into()
        } else {
            g.iter().cloned().collect()
        }
    }

    /// Empty the buffer.
    pub fn clear(&self) {
        self.records.lock().expect("trace lock").clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str) -> TraceRecord {
        TraceRecord {
            id: id.into(),
            replica: 0,
            prompt_tokens: 1,
            completion_tokens: 0,
            finish_reason: None,
            arrival_unix_ns: 0,
            first_token_unix_ns: None,
            token_offsets_ns: vec![],
        }
    }

    #[test]
    fn ring_buffer_keeps_the_newest() {
        let t = Trace::new(2);
        t.push(rec("a"));
        t.push(rec("b"));
        t.push(rec("c"));
        let ids: Vec<_> = t.snapshot(true).into_iter().map(|r| r.id).collect();
        assert_eq!(ids, ["b", "c"]);
        assert!(t.snapshot(false).is_empty());
    }
}
