//! OpenAI-compatible HTTP client: `POST /v1/completions` or `/v1/chat/completions`,
//! streaming (SSE parsed incrementally, a timestamp per received chunk) or not. `http://`
//! targets use the direct transport ([`super::direct`]: one kept-alive connection per
//! worker, read and decoded in the worker's task, pieces stamped at the socket read); `https://` targets use one shared reqwest
//! (rustls) pool. Every request ends in [`Metrics`] or a classified [`Failure`] carrying the
//! server's message; nothing outlives the request deadline.
//!
//! Timing follows `vllm bench serve`: TTFT is the arrival of the first chunk with non-empty
//! text; each later content chunk adds one inter-token gap (a chunk carrying several tokens
//! counts as one gap); TPOT is `(e2el - ttft) / (output_tokens - 1)` with the server's
//! `usage.completion_tokens` when sent (we request it with `stream_options.include_usage`).

use std::sync::Arc;

use bytes::Bytes;
use std::fmt;
use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde::Deserialize;
use serde::de;

use super::direct::{DirectBody, DirectConn, DirectTarget};
use super::event::{self, Usage};
use super::sse::{DEFAULT_MAX_EVENT_BYTES, SseParser};
use super::workload::{PreparedRequest, word_count};
use crate::contract::outcome::{ErrorClass, Failure, Metrics};
use crate::contract::plan::{Api, Target};

/// The header carrying a request's id (records).
pub const X_REQUEST_ID: &str = "x-request-id";

/// Connection settings of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Base URL of the server (with or without a trailing `/v1`).
    pub base_url: String,
    /// API flavour.
    pub api: Api,
    /// Whether requests ask for a streamed response.
    pub stream: bool,
    /// Per-request deadline (used for messages and the connect timeout).
    pub timeout: Duration,
    /// Bearer token; by default from `INFEROPS_API_KEY` or `OPENAI_API_KEY`.
    pub api_key: Option<String>,
    /// Use reqwest also for `http://` (instead of the direct transport).
    pub force_reqwest: bool,
    /// Longest SSE line or event, and largest non-streamed body, accepted (bytes); a longer
    /// one fails its request (class `body`) instead of growing the client's memory.
    pub max_event_bytes: usize,
}

impl ClientConfig {
    /// Settings for `target`, reading the API key from the environment.
    pub fn new(target: &Target, api: Api, stream: bool, timeout: Duration) -> ClientConfig {
        let api_key = env_api_key();
        ClientConfig {
            base_url: target.url.clone(),
            api,
            stream,
            timeout,
            api_key,
            force_reqwest: false,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
        }
    }
}

/// The bearer token from `INFEROPS_API_KEY` or `OPENAI_API_KEY`, if set.
pub fn env_api_key() -> Option<String> {
    ["INFEROPS_API_KEY", "OPENAI_API_KEY"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
}

/// The endpoint URL for `base` and `api` (`http://h:8000/v1` and `http://h:8000` both work).
pub fn endpoint(base: &str, api: Api) -> String {
    let base = base.trim().trim_end_matches('/');
    let base = base.strip_suffix("/v1").unwrap_or(base);
    format!("{base}{}", api.path())
}

/// `GET /v1/models` under `base` (what the target check asks).
pub fn models_url(base: &str) -> String {
    let url = endpoint(base, Api::Completions);
    let prefix = url.strip_suffix(Api::Completions.path()).unwrap_or(&url);
    format!("{prefix}/v1/models")
}

/// The path of `GET /v1/models` under `base` (what verifies a pre-opened connection).
fn models_path(base: &str) -> String {
    let url = endpoint(base, Api::Completions);
    let path = reqwest::Url::parse(&url)
        .map_or_else(|_| "/v1/completions".into(), |u| u.path().to_owned());
    let prefix = path.strip_suffix(Api::Completions.path()).unwrap_or("");
    format!("{prefix}/v1/models")
}

/// A shared, cheaply clonable client.
#[derive(Clone)]
pub struct Client {
    transport: Transport,
    url: reqwest::Url,
    stream: bool,
    timeout: Duration,
    max_event_bytes: usize,
}

/// How requests travel.
#[derive(Clone)]
enum Transport {
    /// `http://`: HTTP/1.1 read straight from the socket ([`super::direct`]), one connection
    /// per worker, read in the worker's task with socket-read timestamps.
    Direct(Arc<DirectTarget>),
    /// `https://`: reqwest (rustls) with its shared pool; chunks stamped when received.
    Reqwest {
        http: reqwest::Client,
        auth: Option<HeaderValue>,
    },
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.url.as_str())
            .field("stream", &self.stream)
            .finish()
    }
}

/// Per-request capture of raw timestamps (for accuracy checks against a server trace).
#[derive(Debug, Default, Clone)]
pub struct Trace {
    /// Response `id` (the server's request id).
    pub id: String,
    /// Arrival time of every content-bearing chunk.
    pub chunk_times: Vec<Instant>,
}

/// Reusable per-worker buffers: nothing is allocated per token once they have grown.
#[derive(Debug, Default)]
pub struct Scratch {
    /// SSE parser state.
    pub parser: SseParser,
    /// Inter-token gaps (µs) of the last request.
    pub itl_us: Vec<u32>,
    /// When `Some`, raw timestamps of the last request are captured here.
    pub trace: Option<Trace>,
    /// The worker's kept-alive connection (direct `http://` transport).
    pub conn: Option<DirectConn>,
    /// When `Some`, the text of the last response (the streamed `text` / `delta.content`
    /// pieces, or the whole body's) is collected here: a conversation's next turn sends it.
    pub answer: Option<String>,
    /// Sent as `X-Request-Id` with the next request (set when records are kept).
    pub request_id: Option<HeaderValue>,
}

impl Scratch {
    /// Buffers that also capture raw timestamps.
    pub fn with_trace() -> Scratch {
        Scratch {
            trace: Some(Trace::default()),
            ..Scratch::default()
        }
    }

    fn reset(&mut self) {
        self.parser.reset();
        self.itl_us.clear();
        if let Some(t) = &mut self.trace {
            t.id.clear();
            t.chunk_times.clear();
        }
        if let Some(a) = &mut self.answer {
            a.clear();
        }
    }
}

fn micros(d: Duration) -> u64 {
    d.as_micros().min(u128::from(u64::MAX)) as u64
}

/// The error chain of `e` in one line.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let s_text = s.to_string();
        if !msg.contains(&s_text) {
            msg.push_str(": ");
            msg.push_str(&s_text);
        }
        src = s.source();
    }
    msg
}

fn transport_failure(e: &reqwest::Error) -> Failure {
    let text = error_chain(e);
    if e.is_connect() {
        Failure::new(ErrorClass::Connect, text)
    } else if e.is_timeout() {
        Failure::new(ErrorClass::Timeout, text)
    } else {
        Failure::new(
            ErrorClass::Stream,
            format!("connection failed before a response: {text}"),
        )
    }
}

/// Extracts the human message from an OpenAI/vLLM/FastAPI error body, else the text itself.
pub fn server_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        let pick = |v: &serde_json::Value| -> Option<String> {
            match v {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Null => None,
                other => Some(other.to_string()),
            }
        };
        let found = v
            .pointer("/error/message")
            .or_else(|| v.get("error").filter(|e| e.is_string()))
            .or_else(|| v.get("message"))
            .or_else(|| v.get("detail"))
            .and_then(pick);
        if let Some(m) = found {
            return m;
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "(empty body)".to_owned()
    } else {
        text.to_owned()
    }
}

impl Client {
    /// A client with its own connection pool.
    pub fn new(cfg: &ClientConfig) -> anyhow::Result<Client> {
        let url = endpoint(&cfg.base_url, cfg.api);
        let url = reqwest::Url::parse(&url).with_context(|| format!("invalid URL {url:?}"))?;
        anyhow::ensure!(
            matches!(url.scheme(), "http" | "https"),
            "URL {url} must be http or https"
        );
        let auth = match &cfg.api_key {
            Some(k) => Some(
                HeaderValue::from_str(&format!("Bearer {k}"))
                    .context("API key is not a valid header")?,
            ),
            None => None,
        };
        let connect_timeout = cfg.timeout.min(Duration::from_secs(10));
        let transport = if url.scheme() == "http" && !cfg.force_reqwest {
            let models = models_path(&cfg.base_url);
            Transport::Direct(Arc::new(
                DirectTarget::new(&url, auth, connect_timeout)?.with_verify_path(&models)?,
            ))
        } else {
            let http = reqwest::Client::builder()
                .user_agent(concat!("inferops-loadgen/", env!("CARGO_PKG_VERSION")))
                .tcp_nodelay(true)
                .no_proxy()
                .connect_timeout(connect_timeout)
                .pool_idle_timeout(Duration::from_secs(60))
                .build()
                .context("building the HTTP client")?;
            Transport::Reqwest { http, auth }
        };
        Ok(Client {
            transport,
            url,
            stream: cfg.stream,
            timeout: cfg.timeout,
            max_event_bytes: cfg.max_event_bytes.max(1),
        })
    }

    /// The endpoint this client posts to.
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    /// Opens the kept-alive connection the next request with `scratch` will use, unless it
    /// already has a usable one. Only the direct `http://` transport keeps connections per
    /// worker; with reqwest (`https://`) this does nothing and returns `Ok(false)`. Returns
    /// whether a connection was opened.
    pub async fn open_connection(&self, scratch: &mut Scratch) -> Result<bool, Failure> {
        match &self.transport {
            Transport::Direct(target) => {
                if scratch.conn.as_mut().is_some_and(|c| c.usable()) {
                    return Ok(false);
                }
                scratch.conn = Some(target.connect_verified().await?);
                Ok(true)
            }
            Transport::Reqwest { .. } => Ok(false),
        }
    }

    /// Sends one request and measures it from `t0` (the scheduled send time in open loop, the
    /// actual send time in closed loop); gives up at `t0 + timeout`. Inter-token gaps are left
    /// in `scratch.itl_us`.
    pub async fn send(
        &self,
        req: &PreparedRequest,
        t0: Instant,
        scratch: &mut Scratch,
    ) -> Result<Metrics, Failure> {
        scratch.reset();
        scratch.parser.set_limit(self.max_event_bytes);
        let deadline = tokio::time::Instant::from_std(t0 + self.timeout);
        let mut tokens_seen = 0u32;
        let result =
            tokio::time::timeout_at(deadline, self.exchange(req, t0, scratch, &mut tokens_seen))
                .await;
        match result {
            Ok(r) => r,
            Err(_) if tokens_seen == 0 => Failure::new(
                ErrorClass::Timeout,
                format!(
                    "no response within {}",
                    humantime::format_duration(self.timeout)
                ),
            )
            .into_err(),
            Err(_) => Failure::new(
                ErrorClass::Timeout,
                format!(
                    "stream not finished within {} ({tokens_seen} chunks received)",
                    humantime::format_duration(self.timeout)
                ),
            )
            .into_err(),
        }
    }

    async fn exchange(
        &self,
        req: &PreparedRequest,
        t0: Instant,
        scratch: &mut Scratch,
        tokens_seen: &mut u32,
    ) -> Result<Metrics, Failure> {
        let Scratch {
            parser,
            itl_us,
            trace,
            conn,
            answer,
            request_id,
        } = scratch;
        let request_id = request_id.take();
        let bufs = Bufs {
            parser,
            itl_us,
            trace,
            answer,
        };
        match &self.transport {
            Transport::Direct(target) => {
                let resp = target
                    .exchange(conn, &req.body, request_id.as_ref())
                    .await?;
                let is_json = is_json(&resp.headers);
                self.handle(resp.status, is_json, resp.body, req, t0, bufs, tokens_seen)
                    .await
            }
            Transport::Reqwest { http, auth } => {
                let mut rb = http
                    .post(self.url.clone())
                    .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                    .body(req.body.clone());
                if let Some(a) = auth {
                    rb = rb.header(AUTHORIZATION, a.clone());
                }
                if let Some(id) = request_id {
                    rb = rb.header(X_REQUEST_ID, id);
                }
                let resp = rb.send().await.map_err(|e| transport_failure(&e))?;
                let (status, is_json) = (resp.status(), is_json(resp.headers()));
                let body = ReqwestBody {
                    resp,
                    chunk: Bytes::new(),
                };
                self.handle(status, is_json, body, req, t0, bufs, tokens_seen)
                    .await
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn handle<C: Chunks>(
        &self,
        status: http::StatusCode,
        is_json: bool,
        mut body: C,
        req: &PreparedRequest,
        t0: Instant,
        bufs: Bufs<'_>,
        tokens_seen: &mut u32,
    ) -> Result<Metrics, Failure> {
        if !status.is_success() {
            let body = read_limited(&mut body, 64 * 1024).await;
            let class = if status.is_server_error() {
                ErrorClass::Http5xx
            } else {
                ErrorClass::Http4xx
            };
            return Failure::new(
                class,
                format!("HTTP {}: {}", status.as_u16(), server_message(&body)),
            )
            .into_err();
        }
        if self.stream && !is_json {
            read_stream(body, req, t0, bufs, tokens_seen).await
        } else {
            read_whole(
                body,
                req,
                t0,
                self.stream,
                self.max_event_bytes,
                bufs.answer,
            )
            .await
        }
    }
}

fn is_json(headers: &http::HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// The per-request buffers `handle` writes into.
struct Bufs<'a> {
    parser: &'a mut SseParser,
    itl_us: &'a mut Vec<u32>,
    trace: &'a mut Option<Trace>,
    answer: &'a mut Option<String>,
}

/// A response body read piece by piece, each with its arrival time.
trait Chunks: Send {
    fn next_chunk(
        &mut self,
    ) -> impl Future<Output = Result<Option<(&[u8], Instant)>, String>> + Send;
}

/// A reqwest response and the chunk last received from it.
struct ReqwestBody {
    resp: reqwest::Response,
    chunk: Bytes,
}

impl Chunks for ReqwestBody {
    async fn next_chunk(&mut self) -> Result<Option<(&[u8], Instant)>, String> {
        match self.resp.chunk().await {
            Ok(Some(b)) => {
                self.chunk = b;
                Ok(Some((&self.chunk, Instant::now())))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(error_chain(&e)),
        }
    }
}

impl Chunks for DirectBody<'_> {
    async fn next_chunk(&mut self) -> Result<Option<(&[u8], Instant)>, String> {
        self.next().await
    }
}

async fn read_stream<C: Chunks>(
    mut body: C,
    req: &PreparedRequest,
    t0: Instant,
    bufs: Bufs<'_>,
    tokens_seen: &mut u32,
) -> Result<Metrics, Failure> {
    let Bufs {
        parser,
        itl_us,
        trace,
        answer,
    } = bufs;
    let mut st = StreamState::default();
    loop {
        let (chunk, at) = match body.next_chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => {
                return Failure::new(
                    ErrorClass::Stream,
                    format!("stream broke after {} chunks: {e}", st.tokens),
                )
                .into_err();
            }
        };
        let fed = parser.feed(chunk, &mut |data| {
            let before = st.tokens;
            st.on_event(data, at, itl_us, trace);
            if st.tokens > before
                && let Some(a) = answer.as_mut()
            {
                append_text(a, data);
            }
        });
        *tokens_seen = st.tokens;
        if let Err(e) = fed {
            return Failure::new(
                ErrorClass::Body,
                format!(
                    "response too large: {e} (after {} chunks; raise --max-event-bytes if the \
                     server really sends such events)",
                    st.tokens
                ),
            )
            .into_err();
        }
        if let Some(f) = st.failure.take() {
            return Err(f);
        }
    }
    let end = Instant::now();
    if !st.done {
        let trunc = if parser.has_pending() {
            " (last event truncated)"
        } else {
            ""
        };
        return Failure::new(
            ErrorClass::Stream,
            format!(
                "stream ended without [DONE] after {} chunks{trunc}",
                st.tokens
            ),
        )
        .into_err();
    }
    let e2el_us = micros(end - t0);
    let ttft_us = st
        .first
        .map_or(e2el_us, |f| micros(f.saturating_duration_since(t0)));
    let (prompt_tokens, output_tokens) = match st.usage {
        Some(u) => (
            u.prompt_tokens.unwrap_or(req.prompt_words),
            u.completion_tokens.unwrap_or(st.tokens),
        ),
        None => (req.prompt_words, st.tokens),
    };
    Ok(Metrics {
        ttft_us,
        e2el_us,
        prompt_tokens,
        output_tokens,
        streamed: true,
    })
}

trait IntoErr<T> {
    fn into_err(self) -> Result<T, Failure>;
}
impl<T> IntoErr<T> for Failure {
    fn into_err(self) -> Result<T, Failure> {
        Err(self)
    }
}

async fn read_limited<C: Chunks>(body: &mut C, limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while let Ok(Some((c, _))) = body.next_chunk().await {
        out.extend_from_slice(&c[..c.len().min(limit - out.len())]);
        if out.len() >= limit {
            break;
        }
    }
    out
}

async fn read_whole<C: Chunks>(
    mut resp: C,
    req: &PreparedRequest,
    t0: Instant,
    wanted_stream: bool,
    limit: usize,
    answer: &mut Option<String>,
) -> Result<Metrics, Failure> {
    let mut body = Vec::new();
    loop {
        match resp.next_chunk().await {
            Ok(Some((c, _))) => {
                if body.len() + c.len() > limit {
                    return Failure::new(
                        ErrorClass::Body,
                        format!(
                            "response too large: body longer than the {limit}-byte limit \
                             (raise --max-event-bytes if the server really sends such bodies)"
                        ),
                    )
                    .into_err();
                }
                body.extend_from_slice(c);
            }
            Ok(None) => break,
            Err(e) => {
                return Failure::new(
                    ErrorClass::Stream,
                    format!("connection broke while reading the body: {e}"),
                )
                .into_err();
            }
        }
    }
    let end = Instant::now();
    let parsed: FullResponse = serde_json::from_slice(&body).map_err(|e| {
        Failure::new(
            ErrorClass::Body,
            format!("bad JSON body ({e}): {}", server_message(&body)),
        )
    })?;
    if parsed.error.is_some() || parsed.object.as_deref() == Some("error") {
        return Failure::new(
            ErrorClass::Body,
            format!("error body: {}", server_message(&body)),
        )
        .into_err();
    }
    if wanted_stream {
        return Failure::new(
            ErrorClass::Body,
            "asked for a stream, got a JSON body (server ignores \"stream\": true)",
        )
        .into_err();
    }
    let Some(choice) = parsed.choices.first() else {
        return Failure::new(
            ErrorClass::Body,
            format!("no choices in response: {}", server_message(&body)),
        )
        .into_err();
    };
    let text = choice
        .text
        .as_deref()
        .or(choice.message.as_ref().and_then(|m| m.content.as_deref()))
        .unwrap_or("");
    if let Some(a) = answer {
        a.push_str(text);
    }
    let e2el_us = micros(end - t0);
    let usage = parsed.usage.unwrap_or_default();
    Ok(Metrics {
        ttft_us: e2el_us,
        e2el_us,
        prompt_tokens: usage.prompt_tokens.unwrap_or(req.prompt_words),
        output_tokens: usage.completion_tokens.unwrap_or_else(|| word_count(text)),
        streamed: false,
    })
}

/// Progress through one SSE stream.
#[derive(Default)]
struct StreamState {
    first: Option<Instant>,
    last: Option<Instant>,
    tokens: u32,
    usage: Option<Usage>,
    done: bool,
    failure: Option<Failure>,
}

impl StreamState {
    fn on_event(
        &mut self,
        data: &[u8],
        now: Instant,
        itl_us: &mut Vec<u32>,
        trace: &mut Option<Trace>,
    ) {
        if self.failure.is_some() {
            return;
        }
        if data == b"[DONE]" {
            self.done = true;
            return;
        }
        let msg = match event::decode(data) {
            Ok(m) => m,
            Err(e) => {
                let snippet = String::from_utf8_lossy(&data[..data.len().min(120)]).into_owned();
                self.failure = Some(Failure::new(
                    ErrorClass::Body,
                    format!("bad JSON in stream event ({e}): {snippet}"),
                ));
                return;
            }
        };
        if msg.error {
            self.failure = Some(Failure::new(
                ErrorClass::Stream,
                format!("error event in stream: {}", server_message(data)),
            ));
            return;
        }
        if let Some(u) = msg.usage {
            self.usage = Some(u);
        }
        if msg.has_text {
            self.tokens += 1;
            match self.last {
                None => self.first = Some(now),
                Some(prev) => itl_us.push(micros(now - prev).min(u64::from(u32::MAX)) as u32),
            }
            self.last = Some(now);
            if let Some(t) = trace {
                t.chunk_times.push(now);
            }
        }
        if let (Some(t), Some(id)) = (trace, msg.id)
            && t.id.is_empty()
        {
            t.id.push_str(&id);
        }
    }
}

/// Appends the text pieces of a stream event (`choices[].text` or `choices[].delta.content`)
/// to `out`. Only called when the answer is collected (a second, allocating parse).
fn append_text(out: &mut String, data: &[u8]) {
    #[derive(Deserialize)]
    struct Ev {
        #[serde(default)]
        choices: Vec<C>,
    }
    #[derive(Deserialize)]
    struct C {
        #[serde(default)]
        text: Option<String>,
        #[serde(default)]
        delta: Option<D>,
    }
    #[derive(Deserialize)]
    struct D {
        #[serde(default)]
        content: Option<String>,
    }
    if let Ok(ev) = serde_json::from_slice::<Ev>(data) {
        for c in ev.choices {
            if let Some(t) = c.text {
                out.push_str(&t);
            }
            if let Some(t) = c.delta.and_then(|d| d.content) {
                out.push_str(&t);
            }
        }
    }
}

#[derive(Deserialize)]
struct FullResponse {
    #[serde(default)]
    choices: Vec<FullChoice>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<de::IgnoredAny>,
    #[serde(default)]
    object: Option<String>,
}

#[derive(Deserialize)]
struct FullChoice {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    message: Option<FullMessage>,
}

#[derive(Deserialize)]
struct FullMessage {
    #[serde(default)]
    content: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(stream: &[&str]) -> (StreamState, Vec<u32>, Trace) {
        let mut st = StreamState::default();
        let mut itl = Vec::new();
        let mut trace = Some(Trace::default());
        let t = Instant::now();
        for (i, e) in stream.iter().enumerate() {
            st.on_event(
                e.as_bytes(),
                t + Duration::from_millis(10 * i as u64),
                &mut itl,
                &mut trace,
            );
        }
        (st, itl, trace.unwrap())
    }

    #[test]
    fn completions_and_chat_chunks_count_content_only() {
        let (st, itl, tr) = events(&[
            r#"{"id":"cmpl-1","object":"text_completion","choices":[{"index":0,"text":"Hi","finish_reason":null}],"usage":null}"#,
            r#"{"id":"cmpl-1","choices":[{"index":0,"text":""}]}"#,
            r#"{"id":"cmpl-1","choices":[{"index":0,"delta":{"role":"assistant","content":" there\n\"q\""}}]}"#,
            r#"{"id":"cmpl-1","choices":[{"index":0,"delta":{"reasoning_content":"hmm"}}]}"#,
            r#"{"id":"cmpl-1","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}"#,
            "[DONE]",
        ]);
        assert!(st.done && st.failure.is_none());
        assert_eq!(st.tokens, 3);
        assert_eq!(itl, [20_000, 10_000]);
        assert_eq!(st.usage.unwrap().completion_tokens, Some(3));
        assert_eq!(tr.id, "cmpl-1");
        assert_eq!(tr.chunk_times.len(), 3);
    }

    #[test]
    fn error_events_and_bad_json_fail_the_stream() {
        let (st, _, _) = events(&[
            r#"{"choices":[{"text":"a"}]}"#,
            r#"{"object":"error","message":"boom"}"#,
        ]);
        let f = st.failure.unwrap();
        assert_eq!(f.class, ErrorClass::Stream);
        assert!(f.message.contains("boom"), "{}", f.message);
        let (st, _, _) = events(&[r#"{"error":{"message":"oom","code":500}}"#]);
        assert!(st.failure.unwrap().message.contains("oom"));
        let (st, _, _) = events(&[r#"{"choices":[{"text":"#]);
        assert_eq!(st.failure.unwrap().class, ErrorClass::Body);
        let (st, _, _) = events(&[r#"{"choices":[{"text":5}]}"#]);
        assert_eq!(st.failure.unwrap().class, ErrorClass::Body);
    }

    #[test]
    fn server_messages_are_extracted() {
        assert_eq!(
            server_message(
                br#"{"object":"error","message":"The model `x` does not exist.","code":404}"#
            ),
            "The model `x` does not exist."
        );
        assert_eq!(
            server_message(br#"{"error":{"message":"bad","type":"x"}}"#),
            "bad"
        );
        assert_eq!(server_message(br#"{"error":"plain"}"#), "plain");
        assert_eq!(server_message(br#"{"detail":"Not Found"}"#), "Not Found");
        assert_eq!(
            server_message(b"  upstream timed out \n"),
            "upstream timed out"
        );
        assert_eq!(server_message(b""), "(empty body)");
    }

    #[test]
    fn connections_are_verified_on_the_models_endpoint() {
        assert_eq!(models_path("http://h:8000/v1"), "/v1/models");
        assert_eq!(models_url("http://h:8000/v1/"), "http://h:8000/v1/models");
        assert_eq!(
            models_url("http://h/proxy/vllm"),
            "http://h/proxy/vllm/v1/models"
        );
        assert_eq!(models_path("http://h:8000"), "/v1/models");
        assert_eq!(
            models_path("http://h/proxy/vllm/v1/"),
            "/proxy/vllm/v1/models"
        );
    }

    #[test]
    fn endpoints_accept_v1_suffix() {
        assert_eq!(
            endpoint("http://h:8000/v1/", Api::Chat),
            "http://h:8000/v1/chat/completions"
        );
        assert_eq!(
            endpoint("http://h:8000", Api::Completions),
            "http://h:8000/v1/completions"
        );
    }

    #[test]
    fn tpot_excludes_the_first_token() {
        let m = Metrics {
            ttft_us: 100,
            e2el_us: 1100,
            prompt_tokens: 1,
            output_tokens: 11,
            streamed: true,
        };
        assert_eq!(m.tpot_us(), Some(100));
        assert_eq!(
            Metrics {
                output_tokens: 1,
                ..m
            }
            .tpot_us(),
            None
        );
        assert_eq!(
            Metrics {
                streamed: false,
                ..m
            }
            .tpot_us(),
            None
        );
    }
}
