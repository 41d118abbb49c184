//! What one request produced: its latencies and token counts, or an error class with the
//! server's (or the transport's) message.

use serde::{Deserialize, Serialize};

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorClass {
    /// No complete response before the request deadline.
    Timeout,
    /// The TCP/TLS connection could not be made (refused, unreachable, DNS).
    Connect,
    /// The server answered with a 4xx status (e.g. model not found) or another non-2xx,
    /// non-5xx status.
    Http4xx,
    /// The server answered with a 5xx status.
    Http5xx,
    /// The SSE stream broke: connection closed mid-stream, no `[DONE]`, an error event.
    Stream,
    /// The response body was not the expected JSON.
    Body,
}

impl ErrorClass {
    /// All classes, in report order.
    pub const ALL: [ErrorClass; 6] = [
        ErrorClass::Timeout,
        ErrorClass::Connect,
        ErrorClass::Http4xx,
        ErrorClass::Http5xx,
        ErrorClass::Stream,
        ErrorClass::Body,
    ];

    /// Position in [`ErrorClass::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The JSON name (`timeout`, `connect`, `http4xx`, `http5xx`, `stream`, `body`).
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::Timeout => "timeout",
            ErrorClass::Connect => "connect",
            ErrorClass::Http4xx => "http4xx",
            ErrorClass::Http5xx => "http5xx",
            ErrorClass::Stream => "stream",
            ErrorClass::Body => "body",
        }
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A failed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Error class.
    pub class: ErrorClass,
    /// Human-readable cause: the server's error message when it sent one.
    pub message: String,
}

impl Failure {
    /// A failure with a message cut to a readable length.
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Failure {
        let mut message: String = message.into();
        if message.len() > 300 {
            let mut cut = 300;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        Failure { class, message }
    }
}

/// Measurements of a successful request, in microseconds. The inter-token gaps are kept
/// separately (in the caller's reusable buffer) to avoid an allocation per request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Time to first token (for non-streaming requests: the end-to-end latency).
    pub ttft_us: u64,
    /// End-to-end latency.
    pub e2el_us: u64,
    /// Prompt tokens (server `usage`, else the prompt's approximate length).
    pub prompt_tokens: u32,
    /// Output tokens (server `usage`, else the number of content-bearing chunks).
    pub output_tokens: u32,
    /// Whether the response was streamed (TPOT/ITL are only meaningful then).
    pub streamed: bool,
}

impl Metrics {
    /// Time per output token after the first: `(e2el - ttft) / (output_tokens - 1)`.
    pub fn tpot_us(&self) -> Option<u64> {
        (self.streamed && self.output_tokens > 1).then(|| {
            (self.e2el_us.saturating_sub(self.ttft_us)) / u64::from(self.output_tokens - 1)
        })
    }
}
