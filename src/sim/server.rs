//! HTTP layer: the axum router, shared state, replica routing, and the per-request generation
//! loop that turns token events into SSE chunks (or one JSON body).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker, ready};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::BytesMut;
use hyper::body::{Body as HttpBody, Frame};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Exp, LogNormal};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use super::api::{self, Api, ApiError, GenRequest};
use super::engine::{Engine, EngineConfig, EngineRequest};
use super::metrics::{Metrics, ReplicaMetrics};
use super::profile::{Routing, SimOptions, TimingMode};
use super::timer::PreciseTimer;
use super::trace::{Trace, TraceRecord};

/// One simulated replica (one engine, one GPU).
pub struct Replica {
    /// Index, also the `replica` / `gpu` label.
    pub index: usize,
    engine: Mutex<Option<Engine>>,
    /// Metric handles.
    pub metrics: ReplicaMetrics,
    /// Requests assigned and not yet finished (what the router balances on).
    pub active: AtomicUsize,
    /// Simulated busy time of the GPU (ns), for `DCGM_FI_DEV_GPU_UTIL`.
    pub busy_ns: Arc<AtomicU64>,
}

/// State shared by every handler.
pub struct SimState {
    /// Options the server was started with.
    pub opts: SimOptions,
    /// Replicas.
    pub replicas: Vec<Replica>,
    /// Ground truth.
    pub trace: Trace,
    /// Registry.
    pub metrics: Metrics,
    timer: PreciseTimer,
    rr: AtomicUsize,
    next_id: AtomicU64,
}

impl SimState {
    /// Build the state and start one engine per replica (engine mode only).
    pub fn new(opts: SimOptions) -> SimState {
        let metrics = Metrics::new(&opts);
        let replicas = (0..opts.replicas)
            .map(|i| {
                let m = metrics.replicas[i].clone();
                let busy_ns = Arc::new(AtomicU64::new(0));
                let engine = (opts.mode == TimingMode::Engine).then(|| {
                    Engine::start(
                        format!("sim-engine-{i}"),
                        EngineConfig::from_options(&opts, i),
                        m.clone(),
                        busy_ns.clone(),
                    )
                });
                Replica {
                    index: i,
                    engine: Mutex::new(engine),
                    metrics: m,
                    active: AtomicUsize::new(0),
                    busy_ns,
                }
            })
            .collect();
        SimState {
            trace: Trace::new(opts.trace_capacity, opts.trace_max_tokens),
            metrics,
            replicas,
            timer: PreciseTimer::start(),
            rr: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            opts,
        }
    }

    /// Stop engines and the timer thread.
    pub fn stop(&self) {
        for r in &self.replicas {
            if let Some(mut e) = r.engine.lock().expect("engine lock").take() {
                e.stop();
            }
        }
        self.timer.stop();
    }

    /// Tell engines and the timer to stop without waiting for them.
    pub fn stop_nowait(&self) {
        for r in &self.replicas {
            // Dropping an engine sends it the stop message.
            drop(r.engine.lock().expect("engine lock").take());
        }
        self.timer.stop();
    }

    /// Choose a replica for a new request.
    fn pick(&self) -> usize {
        let n = self.replicas.len();
        if n == 1 {
            return 0;
        }
        let start = self.rr.fetch_add(1, Ordering::Relaxed) % n;
        match self.opts.routing {
            Routing::RoundRobin => start,
            Routing::LeastLoaded => (0..n)
                .map(|k| (start + k) % n)
                .min_by_key(|&i| self.replicas[i].active.load(Ordering::Relaxed))
                .unwrap_or(start),
        }
    }
}

/// The axum application.
pub fn app(state: Arc<SimState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ping", get(health))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .route("/v1/models", get(models))
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat))
        .route("/sim/trace", get(trace_get).delete(trace_delete))
        .with_state(state)
}

async fn health() -> StatusCode {
    StatusCode::OK
}

async fn version() -> axum::Json<serde_json::Value> {
    axum::Json(json!({"version": format!("inferops-sim {}", env!("CARGO_PKG_VERSION"))}))
}

async fn metrics(State(st): State<Arc<SimState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.encode(),
    )
        .into_response()
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn models(State(st): State<Arc<SimState>>) -> axum::Json<serde_json::Value> {
    axum::Json(api::models_list(&st.opts, unix_secs()))
}

#[derive(Deserialize)]
struct TraceQuery {
    #[serde(default)]
    clear: bool,
}

/// Body of `GET /sim/trace`.
#[derive(serde::Serialize)]
struct TraceBody {
    requests: Vec<TraceRecord>,
}

async fn trace_get(
    State(st): State<Arc<SimState>>,
    Query(q): Query<TraceQuery>,
) -> axum::Json<TraceBody> {
    axum::Json(TraceBody {
        requests: st.trace.snapshot(q.clear),
    })
}

async fn trace_delete(State(st): State<Arc<SimState>>) -> StatusCode {
    st.trace.clear();
    StatusCode::NO_CONTENT
}

async fn completions(State(st): State<Arc<SimState>>, body: Bytes) -> Response {
    generate(st, Api::Completions, body).await
}

async fn chat(State(st): State<Arc<SimState>>, body: Bytes) -> Response {
    generate(st, Api::Chat, body).await
}

/// Output length: `max_tokens` with `ignore_eos`, otherwise an exponentially distributed
/// "natural" length with the profile's mean, clamped to `[max(min_tokens, 1), max_tokens]`.
fn output_len(req: &GenRequest, rng: &mut StdRng, eos_mean: f64) -> usize {
    if req.ignore_eos || eos_mean <= 0.0 {
        return req.max_tokens;
    }
    let natural = Exp::new(1.0 / eos_mean)
        .map(|d| d.sample(rng).ceil() as usize)
        .unwrap_or(req.max_tokens);
    natural.clamp(req.min_tokens.max(1), req.max_tokens)
}

fn request_rng(seed: u64, id: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ id.wrapping_mul(0xD6E8_FEB8_6659_FD93).rotate_left(17))
}

async fn generate(st: Arc<SimState>, api_kind: Api, body: Bytes) -> Response {
    let arrival = Instant::now();
    let req = match api::parse(api_kind, &body, &st.opts) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let id = st.next_id.fetch_add(1, Ordering::Relaxed) + 1;
    let replica = st.pick();
    let active = st.replicas[replica].active.fetch_add(1, Ordering::Relaxed) + 1;
    let mut rng = request_rng(st.opts.seed, id);
    let target = output_len(&req, &mut rng, st.opts.eos_mean_tokens);
    let kv_tokens = st.opts.num_gpu_blocks * st.opts.block_size;
    if st.opts.mode == TimingMode::Engine && req.prompt_tokens + target > kv_tokens {
        st.replicas[replica].active.fetch_sub(1, Ordering::Relaxed);
        return ApiError::bad_request(format!(
            "The request needs {} tokens of KV cache ({} prompt + {target} output) but the \
             simulated KV cache holds {kv_tokens} tokens.",
            req.prompt_tokens + target,
            req.prompt_tokens
        ))
        .into_response();
    }
    let gen_state = Gen::new(st.clone(), replica, id, &req, target, arrival);
    let source = match &st.opts.mode {
        TimingMode::Zero => Source::Zero {
            batch: st.opts.zero_batch.max(1),
        },
        TimingMode::Fixed { ttft, itl } => Source::Fixed {
            first: arrival + *ttft,
            itl: *itl,
            timer: st.timer.clone(),
            registered: None,
        },
        TimingMode::Engine => {
            let p = &st.opts.perf;
            let mut us = p.frontend_base_us * (active as f64).powf(p.frontend_exp);
            if p.frontend_jitter > 0.0
                && let Ok(d) = LogNormal::new(0.0, p.frontend_jitter)
            {
                us *= d.sample(&mut rng);
            }
            st.timer
                .sleep_until(arrival + Duration::from_nanos((us * 1000.0) as u64))
                .await;
            let (tx, rx) = unbounded_channel();
            let submitted = {
                let guard = st.replicas[replica].engine.lock().expect("engine lock");
                guard.as_ref().is_some_and(|e| {
                    e.submit(EngineRequest {
                        id,
                        prompt_tokens: req.prompt_tokens,
                        block_hashes: req.block_hashes.clone(),
                        lora: req.lora,
                        output_tokens: target,
                        submitted: Instant::now(),
                        events: tx,
                    })
                })
            };
            if !submitted {
                return ApiError::internal("the simulated engine has stopped").into_response();
            }
            Source::Engine { rx }
        }
    };
    let streamer = Streamer {
        gen_state,
        source,
        buf: BytesMut::with_capacity(4096),
        finished: false,
    };
    if req.stream {
        stream_response(streamer)
    } else {
        full_response(streamer).await
    }
}

/// Where tokens come from.
enum Source {
    Engine {
        rx: UnboundedReceiver<super::engine::TokenEvent>,
    },
    /// Up to `batch` tokens per body chunk, at once.
    Zero { batch: usize },
    Fixed {
        first: Instant,
        itl: Duration,
        timer: PreciseTimer,
        /// The waker left with the timer by the pending sleep, if any.
        registered: Option<Waker>,
    },
}

impl Source {
    /// Wait for the next token(s); returns how many are ready, or None if the engine dropped
    /// the request.
    async fn next(&mut self, g: &mut Gen) -> Option<usize> {
        std::future::poll_fn(|cx| self.poll_next(g, cx)).await
    }

    /// Polls for the next token(s) (see [`Self::next`]).
    fn poll_next(&mut self, g: &mut Gen, cx: &mut Context<'_>) -> Poll<Option<usize>> {
        let left = g.target - g.sent;
        match self {
            Source::Zero { batch } => Poll::Ready(Some(left.min(*batch))),
            Source::Fixed {
                first,
                itl,
                timer,
                registered,
            } => {
                let due = *first + *itl * g.sent as u32;
                ready!(timer.poll_until(due, registered, cx));
                let now = Instant::now();
                let mut n = 1;
                while n < left && *first + *itl * (g.sent + n) as u32 <= now {
                    n += 1;
                }
                Poll::Ready(Some(n))
            }
            Source::Engine { rx } => {
                let Some(ev) = ready!(rx.poll_recv(cx)) else {
                    return Poll::Ready(None);
                };
                if g.sent == 0 {
                    g.queue_time = ev.queue_time;
                }
                let mut n = 1;
                let mut finished = ev.finished;
                while !finished && let Ok(ev) = rx.try_recv() {
                    n += 1;
                    finished = ev.finished;
                }
                Poll::Ready(Some(n.min(left)))
            }
        }
    }
}

/// One request in flight: bookkeeping, metrics and trace (recorded on drop).
struct Gen {
    st: Arc<SimState>,
    replica: usize,
    id: u64,
    id_str: String,
    api: Api,
    include_usage: bool,
    prompt_tokens: usize,
    target: usize,
    finish_reason: &'static str,
    arrival: Instant,
    last: Option<Instant>,
    offsets: Vec<u64>,
    sent: usize,
    queue_time: Duration,
    done: bool,
    recorded: bool,
    /// `{"id":..,"object":..,"created":..,"model":..` of every chunk.
    head: String,
}

impl Gen {
    fn new(
        st: Arc<SimState>,
        replica: usize,
        id: u64,
        req: &GenRequest,
        target: usize,
        arrival: Instant,
    ) -> Gen {
        let (id_str, object) = match req.api {
            Api::Completions => (format!("cmpl-{id}"), "text_completion"),
            Api::Chat => (format!("chatcmpl-{id}"), "chat.completion.chunk"),
        };
        let head = format!(
            "{{\"id\":\"{id_str}\",\"object\":\"{object}\",\"created\":{},\"model\":{}",
            unix_secs(),
            serde_json::to_string(&st.opts.model).expect("string serializes")
        );
        if st.opts.mode != TimingMode::Engine {
            let r = &st.replicas[replica];
            r.metrics
                .running
                .set(r.active.load(Ordering::Relaxed) as i64);
        }
        Gen {
            replica,
            id,
            id_str,
            api: req.api,
            include_usage: req.include_usage,
            prompt_tokens: req.prompt_tokens,
            target,
            finish_reason: if target >= req.max_tokens {
                "length"
            } else {
                "stop"
            },
            arrival,
            last: None,
            offsets: Vec::with_capacity(target.min(4096)),
            sent: 0,
            queue_time: Duration::ZERO,
            done: false,
            recorded: false,
            head,
            st,
        }
    }

    fn metrics(&self) -> &ReplicaMetrics {
        &self.st.replicas[self.replica].metrics
    }

    /// Record that `n` more tokens were handed to the HTTP layer at `now`.
    fn record(&mut self, n: usize, now: Instant) {
        let m = &self.st.replicas[self.replica].metrics;
        let offset = now.saturating_duration_since(self.arrival).as_nanos() as u64;
        match self.last {
            None => {
                m.ttft.observe(offset as f64 / 1e9);
                m.prompt_tokens.inc_by(self.prompt_tokens as u64);
                for _ in 1..n {
                    m.itl.observe(0.0);
                }
            }
            Some(last) => {
                m.itl
                    .observe(now.saturating_duration_since(last).as_secs_f64());
                for _ in 1..n {
                    m.itl.observe(0.0);
                }
            }
        }
        m.generation_tokens.inc_by(n as u64);
        self.offsets.extend(std::iter::repeat_n(offset, n));
        self.last = Some(now);
        self.sent += n;
        if self.sent >= self.target {
            self.done = true;
        }
    }

    /// Append the SSE chunks of tokens `from..from + n` to `buf`.
    fn write_chunks(&self, buf: &mut BytesMut, from: usize, n: usize) {
        for i in from..from + n {
            let w = api::word(self.id, i, self.st.opts.seed);
            let fr: &[u8] = if i + 1 == self.target {
                if self.finish_reason == "length" {
                    b"\"length\""
                } else {
                    b"\"stop\""
                }
            } else {
                b"null"
            };
            buf.extend_from_slice(b"data: ");
            buf.extend_from_slice(self.head.as_bytes());
            match self.api {
                Api::Completions => {
                    buf.extend_from_slice(b",\"choices\":[{\"index\":0,\"text\":\"");
                    buf.extend_from_slice(w.as_bytes());
                    buf.extend_from_slice(b"\",\"logprobs\":null,\"finish_reason\":");
                    buf.extend_from_slice(fr);
                    buf.extend_from_slice(b",\"stop_reason\":null}]}\n\n");
                }
                Api::Chat => {
                    buf.extend_from_slice(b",\"choices\":[{\"index\":0,\"delta\":{");
                    if i == 0 {
                        buf.extend_from_slice(b"\"role\":\"assistant\",");
                    }
                    buf.extend_from_slice(b"\"content\":\"");
                    buf.extend_from_slice(w.as_bytes());
                    buf.extend_from_slice(b"\"},\"logprobs\":null,\"finish_reason\":");
                    buf.extend_from_slice(fr);
                    buf.extend_from_slice(b"}]}\n\n");
                }
            }
        }
    }

    fn usage(&self, completion_tokens: usize) -> serde_json::Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "total_tokens": self.prompt_tokens + completion_tokens,
            "completion_tokens": completion_tokens,
        })
    }

    /// Final SSE after `completion_tokens` tokens: optional usage chunk, then `[DONE]`.
    fn write_end(&self, buf: &mut BytesMut, completion_tokens: usize) {
        if self.include_usage {
            buf.extend_from_slice(b"data: ");
            buf.extend_from_slice(self.head.as_bytes());
            buf.extend_from_slice(b",\"choices\":[],\"usage\":");
            buf.extend_from_slice(self.usage(completion_tokens).to_string().as_bytes());
            buf.extend_from_slice(b"}\n\n");
        }
        buf.extend_from_slice(b"data: [DONE]\n\n");
    }
}

impl Drop for Gen {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Gen {
    /// Record metrics and the trace, once (on completion, or on drop if the client left).
    fn finish(&mut self) {
        if self.recorded {
            return;
        }
        self.recorded = true;
        let r = &self.st.replicas[self.replica];
        let left = r.active.fetch_sub(1, Ordering::Relaxed) - 1;
        if self.st.opts.mode != TimingMode::Engine {
            r.metrics.running.set(left as i64);
        }
        let m = self.metrics();
        if self.done {
            if let Some(last) = self.last {
                m.e2e
                    .observe(last.saturating_duration_since(self.arrival).as_secs_f64());
            }
            m.queue.observe(self.queue_time.as_secs_f64());
            if self.finish_reason == "length" {
                m.success_length.inc();
            } else {
                m.success_stop.inc();
            }
        }
        let trace = &self.st.trace;
        trace.push(TraceRecord {
            id: self.id_str.clone(),
            replica: self.replica,
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.sent,
            finish_reason: self.done.then(|| self.finish_reason.to_string()),
            arrival_unix_ns: trace.unix_ns(self.arrival),
            first_token_unix_ns: self
                .offsets
                .first()
                .map(|o| trace.unix_ns(self.arrival) + o),
            token_offsets_ns: std::mem::take(&mut self.offsets),
        });
    }
}

struct Streamer {
    gen_state: Gen,
    source: Source,
    buf: BytesMut,
    finished: bool,
}

/// The streamed body: one frame per wake-up of the source, holding the SSE chunks of every
/// token that became ready (one HTTP chunk, so one socket write, per stream per step).
impl HttpBody for Streamer {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let s = self.get_mut();
        if s.finished {
            return Poll::Ready(None);
        }
        let Some(n) = ready!(s.source.poll_next(&mut s.gen_state, cx)) else {
            // The engine dropped the request: end the body without `[DONE]`.
            s.finished = true;
            return Poll::Ready(None);
        };
        let from = s.gen_state.sent;
        s.gen_state.write_chunks(&mut s.buf, from, n);
        if from + n >= s.gen_state.target {
            s.gen_state.write_end(&mut s.buf, from + n);
            s.finished = true;
        }
        s.gen_state.record(n, Instant::now());
        if s.finished {
            s.gen_state.finish();
        }
        Poll::Ready(Some(Ok(Frame::data(s.buf.split().freeze()))))
    }

    fn is_end_stream(&self) -> bool {
        self.finished
    }
}

fn stream_response(streamer: Streamer) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::new(streamer))
        .expect("valid response")
}

async fn full_response(mut s: Streamer) -> Response {
    while s.gen_state.sent < s.gen_state.target {
        let Some(n) = s.source.next(&mut s.gen_state).await else {
            return ApiError::internal("the simulated engine dropped the request").into_response();
        };
        s.gen_state.record(n, Instant::now());
    }
    s.gen_state.finish();
    let g = &s.gen_state;
    let text: String = (0..g.sent)
        .map(|i| api::word(g.id, i, g.st.opts.seed))
        .collect();
    let body = match g.api {
        Api::Completions => json!({
            "id": g.id_str,
            "object": "text_completion",
            "created": unix_secs(),
            "model": g.st.opts.model,
            "choices": [{
                "index": 0, "text": text, "logprobs": null,
                "finish_reason": g.finish_reason, "stop_reason": null, "prompt_logprobs": null,
            }],
            "usage": g.usage(g.sent),
        }),
        Api::Chat => json!({
            "id": g.id_str,
            "object": "chat.completion",
            "created": unix_secs(),
            "model": g.st.opts.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text, "tool_calls": []},
                "logprobs": null, "finish_reason": g.finish_reason, "stop_reason": null,
            }],
            "usage": g.usage(g.sent),
        }),
    };
    axum::Json(body).into_response()
}

/// The simulator's listener for `axum::serve`: sets `TCP_NODELAY` on every accepted
/// connection and hands out [`FlatStream`]s.
pub struct SimListener(pub tokio::net::TcpListener);

/// An accepted connection that reports no vectored writes, so hyper copies each chunk's
/// size line, data and CRLF into one buffer and sends it with one plain `send` (a `writev`
/// of three pieces costs the kernel more per call than the copy of a few hundred bytes).
pub struct FlatStream(tokio::net::TcpStream);

impl axum::serve::Listener for SimListener {
    type Io = FlatStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (FlatStream, std::net::SocketAddr) {
        loop {
            match self.0.accept().await {
                Ok((tcp, addr)) => {
                    // Without TCP_NODELAY, Nagle's algorithm holds the first token's chunk
                    // until the client's delayed ACK of the headers (up to 40 ms).
                    let _ = tcp.set_nodelay(true);
                    return (FlatStream(tcp), addr);
                }
                // A connection that failed before it was accepted: take the next one.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionRefused
                            | std::io::ErrorKind::ConnectionAborted
                            | std::io::ErrorKind::ConnectionReset
                    ) => {}
                // Out of file descriptors or memory: wait a little instead of spinning.
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.local_addr()
    }
}

impl tokio::io::AsyncRead for FlatStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for FlatStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
    fn is_write_vectored(&self) -> bool {
        false
    }
}
