//! Runs one load point: closed loop (N workers, each starting its next request as soon as
//! the last one ends) or open loop (arrivals at a rate, Poisson or constant). Open-loop
//! latency is counted from the scheduled arrival time when a request leaves late, so a slow
//! server (or a busy client) can not hide queueing: no coordinated omission.
//!
//! Before the step's clock starts, the connections it will use are opened (pre-connect,
//! [`StepSpec::preconnect`]): a closed loop of N workers opens N, an open loop one second's
//! worth of arrivals (at most `maxInFlight`). Connection storms (and the 1 s / 3 s SYN
//! retransmits of a full accept queue) thus stay out of the latencies; the phase is reported
//! apart as [`ConnectionSetup`]. Before that, the soft limit on open files is checked against
//! the connections the step needs and raised to the hard limit when it is short.
//!
//! Results are recorded into a few sharded recorders (one per runtime worker thread, roughly)
//! and merged when the step ends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Exp, Gamma};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::client::{Client, Scratch};
use super::records::{Finished, Recorder};
use super::workload::{ChatMessage, PreparedRequest, RequestSet, SessionScript};
use crate::contract::outcome::Failure;
use crate::contract::plan::{Arrival, LoadPoint, Ramp};
use crate::contract::results::{ConnectionSetup, ModelStepResult, StepResult};
use crate::contract::stats::StepStats;

/// One step to run (this process's share of the load).
#[derive(Debug, Clone)]
pub struct StepSpec {
    /// Concurrency or rate for this process.
    pub point: LoadPoint,
    /// Measured requests to send (`None`: until `duration` passes).
    pub requests: Option<u64>,
    /// Measured time (`None`: until `requests` are sent).
    pub duration: Option<Duration>,
    /// Unmeasured load before measuring.
    pub warmup: Duration,
    /// Arrival process in open loop.
    pub arrival: Arrival,
    /// Cap on requests in flight in open loop.
    pub max_in_flight: u32,
    /// Seed of the arrival gaps.
    pub seed: u64,
    /// Per-request bounds counted as goodput.
    pub goodput_slo: Option<crate::contract::GoodputSlo>,
    /// Open the step's connections before its clock starts (see the module docs).
    pub preconnect: bool,
    /// Ramp of the open-loop rate at the step's start (see [`Ramp`]).
    pub ramp: Option<Ramp>,
    /// Trace replay at this speed-up: the workload's requests are sent at their trace
    /// offsets divided by it (instead of at `point`'s rate).
    pub trace_speedup: Option<f64>,
}

/// Live counters of a running step (for progress bars).
#[derive(Debug, Default)]
pub struct StepProgress {
    /// Measured requests finished (ok or failed).
    pub done: AtomicU64,
    /// Measured requests failed.
    pub failed: AtomicU64,
    /// Multi-turn conversations: sessions that sent at least one measured turn.
    pub sessions: AtomicU64,
}

/// What a step needs besides its spec.
#[derive(Clone)]
pub struct StepContext {
    /// Shared HTTP client.
    pub client: Client,
    /// Prepared requests.
    pub workload: Arc<RequestSet>,
    /// Index of the next prompt (continues across steps so steps use different prompts).
    pub next_prompt: Arc<AtomicU64>,
    /// Stops the step; what was measured is kept.
    pub cancel: CancellationToken,
    /// Reads the server over the measured window (the step's `server` figures).
    pub probe: Option<super::probe::Probe>,
    /// Per-request records (`None`: not kept): every measured request gets an id, sent as
    /// `X-Request-Id`, and a record when it ends.
    pub records: Option<Arc<Recorder>>,
}

/// Gives the next request an id when records are kept.
fn tag(ctx: &StepContext, measured: bool, scratch: &mut Scratch) -> Option<String> {
    let rec = ctx.records.as_ref().filter(|_| measured)?;
    let id = rec.next_id();
    scratch.request_id = http::HeaderValue::from_str(&id).ok();
    Some(id)
}

/// When a request was due, sent, and what its latencies count from.
#[derive(Debug, Clone, Copy)]
struct Timing {
    scheduled: Instant,
    sent: Instant,
    t0: Instant,
}

/// A measured request ended (`None`: abandoned on purpose, `workload.cancel`): into the
/// step's statistics (and its model's), and into the records when they are kept.
#[allow(clippy::too_many_arguments)]
fn finish(
    ctx: &StepContext,
    shared: &Shared,
    shard: usize,
    req: &PreparedRequest,
    r: Option<&Result<crate::contract::outcome::Metrics, Failure>>,
    id: Option<String>,
    itl_us: &[u32],
    at: Timing,
) {
    let end = Instant::now();
    match r {
        Some(r) => shared.record(shard, req.model, r, itl_us, at.scheduled, end),
        None => shared.record_cancelled(shard, req.model, at.scheduled, end),
    }
    if let (Some(rec), Some(id)) = (&ctx.records, id) {
        let model = ctx
            .workload
            .model_names()
            .get(req.model)
            .map(String::as_str);
        let f = Finished {
            scheduled: at.scheduled,
            sent: at.sent,
            t0: at.t0,
            end,
            prompt_tokens: req.prompt_words,
            itl_us,
        };
        rec.record(id, model, r, f);
    }
}

struct Shared {
    shards: Vec<Mutex<StepStats>>,
    /// With a model mix: one recorder per model (the breakdown of the shards' totals).
    per_model: Vec<Mutex<StepStats>>,
    progress: Arc<StepProgress>,
    issued: AtomicU64,
    /// Start of the measured window: the origin of the stats' time trend.
    origin: Instant,
}

impl Shared {
    fn new(
        progress: Arc<StepProgress>,
        origin: Instant,
        goodput: Option<crate::contract::GoodputSlo>,
        models: usize,
    ) -> Shared {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        Shared {
            shards: (0..n)
                .map(|_| Mutex::new(StepStats::with_goodput(goodput)))
                .collect(),
            per_model: (0..models)
                .map(|_| Mutex::new(StepStats::with_goodput(goodput)))
                .collect(),
            progress,
            issued: AtomicU64::new(0),
            origin,
        }
    }

    /// Claims a measured request; false when the budget is used up.
    fn claim(&self, limit: Option<u64>) -> bool {
        limit.is_none_or(|l| self.issued.fetch_add(1, Ordering::Relaxed) < l)
    }

    /// Whether the budget is used up (without claiming).
    fn exhausted(&self, limit: Option<u64>) -> bool {
        limit.is_some_and(|l| self.issued.load(Ordering::Relaxed) >= l)
    }

    fn record(
        &self,
        shard: usize,
        model: usize,
        r: &Result<crate::contract::outcome::Metrics, Failure>,
        itl: &[u32],
        scheduled: Instant,
        end: Instant,
    ) {
        if let Some(m) = self.per_model.get(model) {
            let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
            match r {
                Ok(ok) => m.record_ok(ok, itl, end),
                Err(f) => m.record_err(f, end),
            }
        }
        let mut s = self.shards[shard % self.shards.len()]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let offset = |t: Instant| t.saturating_duration_since(self.origin).as_micros() as u64;
        s.trend.record(
            offset(scheduled),
            offset(end),
            r.as_ref().ok().map(|m| (m.ttft_us, m.e2el_us)),
        );
        match r {
            Ok(m) => s.record_ok(m, itl, end),
            Err(f) => {
                s.record_err(f, end);
                self.progress.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        drop(s);
        self.progress.done.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a request the client abandoned on purpose (`workload.cancel`).
    fn record_cancelled(&self, shard: usize, model: usize, scheduled: Instant, end: Instant) {
        if let Some(m) = self.per_model.get(model) {
            m.lock()
                .unwrap_or_else(|p| p.into_inner())
                .record_cancelled(end);
        }
        let mut s = self.shards[shard % self.shards.len()]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let offset = |t: Instant| t.saturating_duration_since(self.origin).as_micros() as u64;
        s.trend.record(offset(scheduled), offset(end), None);
        s.record_cancelled(end);
        drop(s);
        self.progress.done.fetch_add(1, Ordering::Relaxed);
    }

    /// Notes how late an open-loop request left.
    fn record_send(&self, shard: usize, lag: Duration) {
        self.shards[shard % self.shards.len()]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record_send(lag);
    }

    fn merged(&self) -> StepStats {
        let mut all = StepStats::with_goodput(
            self.shards[0]
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .goodput_slo,
        );
        for s in &self.shards {
            all.merge(&s.lock().unwrap_or_else(|p| p.into_inner()));
        }
        all
    }
}

/// Converts monotonic instants to wall-clock time relative to one anchor.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    instant: Instant,
    system: SystemTime,
}

impl Clock {
    /// Anchors now.
    pub fn now() -> Clock {
        Clock {
            instant: Instant::now(),
            system: SystemTime::now(),
        }
    }

    /// Unix time of `i` in nanoseconds.
    pub fn unix_ns(&self, i: Instant) -> i64 {
        self.wall(i).timestamp_nanos_opt().unwrap_or_default()
    }

    /// The wall-clock time of `i`.
    pub fn wall(&self, i: Instant) -> DateTime<Utc> {
        let t = if i >= self.instant {
            self.system + (i - self.instant)
        } else {
            self.system - (self.instant - i)
        };
        DateTime::<Utc>::from(t)
    }
}

/// Runs one step and summarizes it. Never fails: errors are counted per request.
pub async fn run_step(
    ctx: &StepContext,
    spec: &StepSpec,
    progress: Arc<StepProgress>,
) -> StepResult {
    let needed = connections_needed(spec);
    if let Some(warning) = ensure_fd_limit(needed) {
        eprintln!("warning: {warning}");
    }
    let (pool, setup) = if spec.preconnect {
        let (pool, setup) = preconnect(ctx, preconnect_count(spec)).await;
        (pool, Some(setup))
    } else {
        (Vec::new(), None)
    };
    // Without warm-up (or an unmeasured ramp) the window opens with the first request:
    // read the server before it.
    let mut server_window = match &ctx.probe {
        Some(p) if measure_delay(spec).is_zero() => Some(p.0.open().await),
        _ => None,
    };
    let clock = Clock::now();
    let start = clock.instant;
    let measure_start = start + measure_delay(spec);
    let opening = match &ctx.probe {
        Some(p) if server_window.is_none() => {
            let (open, delay) = (p.0.open(), measure_delay(spec));
            Some(tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                open.await
            }))
        }
        _ => None,
    };
    let measure_end = spec.duration.map(|d| measure_start + d);
    let shared = Arc::new(Shared::new(
        progress,
        measure_start,
        spec.goodput_slo,
        ctx.workload.model_names().len(),
    ));
    let window = Window {
        measure_start,
        measure_end,
    };
    match (spec.trace_speedup, spec.point) {
        (Some(speedup), _) => {
            let arrivals = Arrivals::Trace {
                offsets: ctx.workload.offsets().unwrap_or_default().to_vec(),
                next: 0,
                speedup,
                start,
            };
            open_loop(ctx, spec, &shared, arrivals, pool, window).await
        }
        (None, LoadPoint::Concurrency(n)) => closed_loop(ctx, spec, &shared, n, pool, window).await,
        (None, LoadPoint::Rate(r)) => {
            let arrivals = Arrivals::Rate {
                gaps: Box::new(Gaps::new(spec.arrival, r, spec.seed)),
                ramp: spec.ramp,
                start,
                at: start,
            };
            open_loop(ctx, spec, &shared, arrivals, pool, window).await
        }
    }
    let stats = shared.merged();
    let interrupted = ctx.cancel.is_cancelled();
    let window_start = clock.wall(measure_start.min(Instant::now()));
    let window_end = clock.wall(stats.last_end.unwrap_or_else(Instant::now));
    let mut result =
        StepResult::from_stats(spec.point, &stats, window_start, window_end, interrupted);
    // Each model over the step's window, so the parts add up to the step.
    result.models = ctx
        .workload
        .model_names()
        .iter()
        .zip(&shared.per_model)
        .map(|(name, m)| {
            let m = m.lock().unwrap_or_else(|p| p.into_inner());
            ModelStepResult {
                model: name.clone(),
                step: Box::new(StepResult::from_stats(
                    spec.point,
                    &m,
                    window_start,
                    window_end,
                    interrupted,
                )),
            }
        })
        .collect();
    result.connection_setup = setup.filter(|s| s.connections + s.failed > 0);
    if let Some(opening) = opening {
        server_window = opening.await.ok();
    }
    if let Some(w) = server_window {
        result.server = w.close().await;
    }
    result
}

/// Sends `req`; a request picked for cancellation (`workload.cancel`) is abandoned, its
/// connection dropped, once its delay has passed since `t0` (`None`).
async fn send_or_abandon(
    ctx: &StepContext,
    req: &PreparedRequest,
    t0: Instant,
    scratch: &mut Scratch,
) -> Option<Result<crate::contract::outcome::Metrics, Failure>> {
    let send = ctx.client.send(req, t0, scratch);
    match req.cancel_after {
        None => Some(send.await),
        Some(after) => {
            let at = tokio::time::Instant::from_std(t0 + after);
            tokio::time::timeout_at(at, send).await.ok()
        }
    }
}

/// Most connection attempts in flight at once during pre-connect: a burst of thousands of
/// SYNs overflows a server's accept queue even when the queue could hold them one by one.
const CONNECT_BURST: usize = 128;

/// Connections a step keeps open at most: its concurrency, or in open loop `maxInFlight`.
pub fn connections_needed(spec: &StepSpec) -> u64 {
    match spec.point {
        LoadPoint::Concurrency(n) => u64::from(n),
        LoadPoint::Rate(_) => u64::from(spec.max_in_flight),
    }
}

/// Connections opened before a step: one per closed-loop worker; in open loop, one second
/// of arrivals (at least 1), at most `maxInFlight`.
pub fn preconnect_count(spec: &StepSpec) -> usize {
    match spec.point {
        LoadPoint::Concurrency(n) => n as usize,
        LoadPoint::Rate(r) => {
            let per_second = if r.is_finite() {
                r.ceil().max(1.0)
            } else {
                1.0
            };
            (per_second.min(f64::from(spec.max_in_flight))) as usize
        }
    }
}

/// Opens `n` connections, at most [`CONNECT_BURST`] at a time, each in its own [`Scratch`].
/// A connection that fails is not retried here: its worker connects again on its first
/// request (inside the window, where the failure counts).
async fn preconnect(ctx: &StepContext, n: usize) -> (Vec<Scratch>, ConnectionSetup) {
    use futures::StreamExt;
    let started = Instant::now();
    let client = &ctx.client;
    let attempts = futures::stream::iter(0..n)
        .map(|_| async move {
            let mut scratch = Scratch::default();
            let t = Instant::now();
            let r = client.open_connection(&mut scratch).await;
            (scratch, r, t.elapsed())
        })
        .buffer_unordered(CONNECT_BURST)
        .collect::<Vec<_>>();
    let done = tokio::select! {
        biased;
        _ = ctx.cancel.cancelled() => Vec::new(),
        d = attempts => d,
    };
    let mut setup = ConnectionSetup {
        connections: 0,
        failed: 0,
        duration_ms: 0.0,
        slowest_ms: 0.0,
    };
    let mut pool = Vec::with_capacity(done.len());
    for (scratch, r, took) in done {
        match r {
            Ok(true) => setup.connections += 1,
            Ok(false) => {}
            Err(_) => setup.failed += 1,
        }
        setup.slowest_ms = setup.slowest_ms.max(ms3(took));
        pool.push(scratch);
    }
    setup.duration_ms = ms3(started.elapsed());
    (pool, setup)
}

fn ms3(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Descriptors kept free for everything but the step's connections (listeners, files,
/// the runtime, a Prometheus client).
const FD_HEADROOM: u64 = 64;

/// What to do about the open-file limit before a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdPlan {
    /// The soft limit is enough.
    Enough,
    /// Raise the soft limit to `to` (the hard limit covers the need).
    Raise {
        /// New soft limit.
        to: u64,
    },
    /// Even the hard limit is short: raise the soft one to it and warn.
    Short {
        /// Descriptors the step needs.
        need: u64,
        /// The hard limit.
        hard: u64,
    },
}

/// Decides, for a step keeping `connections` open, given the soft and hard `RLIMIT_NOFILE`.
pub fn fd_plan(connections: u64, soft: u64, hard: u64) -> FdPlan {
    let need = connections.saturating_add(FD_HEADROOM);
    if need <= soft {
        FdPlan::Enough
    } else if need <= hard {
        FdPlan::Raise { to: hard }
    } else {
        FdPlan::Short { need, hard }
    }
}

/// The soft and hard `RLIMIT_NOFILE` of this process (Unix).
// `rlim_t` is u64 on Linux but not on every Unix: the casts are not redundant everywhere.
#[allow(clippy::unnecessary_cast)]
pub fn fd_limits() -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we own.
        (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0)
            .then_some((lim.rlim_cur as u64, lim.rlim_max as u64))
    }
    #[cfg(not(unix))]
    None
}

/// Checks (and where needed raises) the soft open-file limit for `connections`; returns a
/// warning when the step may run out of descriptors ("Too many open files").
// `rlim_t` is u64 on Linux but not on every Unix: the casts are not redundant everywhere.
#[allow(clippy::unnecessary_cast)]
pub fn ensure_fd_limit(connections: u64) -> Option<String> {
    #[cfg(unix)]
    {
        let (soft, hard) = fd_limits()?;
        let raise = |to: u64| -> bool {
            let new = libc::rlimit {
                rlim_cur: to as libc::rlim_t,
                rlim_max: hard as libc::rlim_t,
            };
            // SAFETY: setrlimit reads the struct we own.
            unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) == 0 }
        };
        match fd_plan(connections, soft, hard) {
            FdPlan::Enough => None,
            FdPlan::Raise { to } if raise(to) => None,
            FdPlan::Raise { .. } => Some(format!(
                "{connections} connections need about {} open files but the soft limit is \
                 {soft} and could not be raised; requests may fail with \"Too many open files\" \
                 (raise `ulimit -n`)",
                connections + FD_HEADROOM
            )),
            FdPlan::Short { need, hard } => {
                raise(hard);
                Some(format!(
                    "{connections} connections need about {need} open files but the hard limit \
                     is {hard}; requests beyond it will fail with \"Too many open files\" \
                     (raise the hard limit, or split the load over more processes)"
                ))
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = connections;
        None
    }
}

/// When a step's measured window begins after its start: after the warmup, and unless the
/// ramp is measured, after the ramp too.
pub fn measure_delay(spec: &StepSpec) -> Duration {
    let ramp = spec
        .ramp
        .filter(|r| !r.measured)
        .map_or(Duration::ZERO, |r| r.duration);
    spec.warmup.max(ramp)
}

/// The instants bounding a step.
#[derive(Debug, Clone, Copy)]
struct Window {
    measure_start: Instant,
    measure_end: Option<Instant>,
}

async fn closed_loop(
    ctx: &StepContext,
    spec: &StepSpec,
    shared: &Arc<Shared>,
    workers: u32,
    mut pool: Vec<Scratch>,
    window: Window,
) {
    let Window {
        measure_start,
        measure_end,
        ..
    } = window;
    let mut set = JoinSet::new();
    for w in 0..workers as usize {
        let (ctx, shared, limit) = (ctx.clone(), shared.clone(), spec.requests);
        let mut scratch = pool.pop().unwrap_or_default();
        if ctx.workload.sessions().is_some() {
            // Each worker runs one session after the other.
            set.spawn(async move {
                scratch.answer.get_or_insert_with(String::new);
                loop {
                    let i = ctx.next_prompt.fetch_add(1, Ordering::Relaxed);
                    let Some(script) = ctx.workload.session(i) else {
                        break;
                    };
                    let go = run_session(
                        &ctx,
                        &shared,
                        script,
                        Instant::now(),
                        w,
                        &mut scratch,
                        window,
                        limit,
                    )
                    .await;
                    if !go {
                        break;
                    }
                }
            });
            continue;
        }
        set.spawn(async move {
            loop {
                let now = Instant::now();
                let measured = now >= measure_start;
                if measured && (measure_end.is_some_and(|e| now >= e) || !shared.claim(limit)) {
                    break;
                }
                let req = ctx
                    .workload
                    .get(ctx.next_prompt.fetch_add(1, Ordering::Relaxed));
                let id = tag(&ctx, measured, &mut scratch);
                let r = tokio::select! {
                    biased;
                    _ = ctx.cancel.cancelled() => break,
                    r = send_or_abandon(&ctx, req, now, &mut scratch) => r,
                };
                if measured {
                    let at = Timing {
                        scheduled: now,
                        sent: now,
                        t0: now,
                    };
                    finish(&ctx, &shared, w, req, r.as_ref(), id, &scratch.itl_us, at);
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
}

/// Sleeps until about `at` (up to 1 ms early: the timer's granularity); false if cancelled.
async fn sleep_near(cancel: &CancellationToken, at: Instant) -> bool {
    let wake =
        tokio::time::Instant::from_std(at.checked_sub(Duration::from_millis(1)).unwrap_or(at));
    tokio::select! {
        biased;
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep_until(wake) => true,
    }
}

/// Runs one multi-turn session whose first turn is due at `first_at`: each turn appends its
/// user message(s) to the history, sends the whole history, appends the answer received
/// and waits the turn's think time. A failed turn ends the session (its history would lack
/// the answer). Returns false when the step is over (budget, window end or cancel), true
/// when the session ran out of turns or failed.
#[allow(clippy::too_many_arguments)]
async fn run_session(
    ctx: &StepContext,
    shared: &Shared,
    script: &SessionScript,
    first_at: Instant,
    shard: usize,
    scratch: &mut Scratch,
    window: Window,
    limit: Option<u64>,
) -> bool {
    let mut history: Vec<ChatMessage> = Vec::new();
    let mut at = first_at;
    let mut counted = false;
    for turn in &script.turns {
        if at > Instant::now() && !sleep_near(&ctx.cancel, at).await {
            return false;
        }
        let now = Instant::now();
        let measured = at >= window.measure_start;
        if measured && (window.measure_end.is_some_and(|e| now >= e) || !shared.claim(limit)) {
            return false;
        }
        if measured && !counted {
            counted = true;
            shared.progress.sessions.fetch_add(1, Ordering::Relaxed);
        }
        history.extend(turn.messages.iter().cloned());
        let Some(req) = ctx.workload.turn(&history, turn.max_tokens) else {
            return false;
        };
        let t0 = at.min(now);
        let id = tag(ctx, measured, scratch);
        let r = tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => return false,
            r = ctx.client.send(&req, t0, scratch) => r,
        };
        if measured {
            let timing = Timing {
                scheduled: at,
                sent: now,
                t0,
            };
            finish(
                ctx,
                shared,
                shard,
                &req,
                Some(&r),
                id,
                &scratch.itl_us,
                timing,
            );
        }
        let end = Instant::now();
        if r.is_err() {
            return true;
        }
        let answer = scratch.answer.as_deref().unwrap_or_default();
        history.push(ChatMessage::assistant(answer));
        at = end + turn.think;
    }
    true
}

/// When open-loop arrivals are due.
enum Arrivals {
    /// At a rate (with gaps drawn from the arrival process), optionally ramped.
    Rate {
        gaps: Box<Gaps>,
        ramp: Option<Ramp>,
        start: Instant,
        at: Instant,
    },
    /// At a trace's offsets divided by a speed-up; request `i` is the trace's record `i`.
    Trace {
        offsets: Vec<Duration>,
        next: usize,
        speedup: f64,
        start: Instant,
    },
}

impl Arrivals {
    /// The next arrival: when, and for a trace which request; `None` when the trace ends.
    fn next(&mut self) -> Option<(Instant, Option<u64>)> {
        match self {
            Arrivals::Rate {
                gaps,
                ramp,
                start,
                at,
            } => {
                let due = *at;
                let gap = gaps.next_gap();
                let gap = match ramp {
                    Some(r) => gap.div_f64(r.fraction(due.saturating_duration_since(*start))),
                    None => gap,
                };
                *at = due + gap;
                Some((due, None))
            }
            Arrivals::Trace {
                offsets,
                next,
                speedup,
                start,
            } => {
                let off = offsets.get(*next)?;
                let i = *next as u64;
                *next += 1;
                Some((*start + off.div_f64(*speedup), Some(i)))
            }
        }
    }
}

async fn open_loop(
    ctx: &StepContext,
    spec: &StepSpec,
    shared: &Arc<Shared>,
    mut arrivals: Arrivals,
    preconnected: Vec<Scratch>,
    window: Window,
) {
    let Window {
        measure_start,
        measure_end,
        ..
    } = window;
    let sessions = ctx.workload.sessions().is_some();
    let permits = Arc::new(tokio::sync::Semaphore::new(
        spec.max_in_flight.max(1) as usize
    ));
    let pool: Arc<Mutex<Vec<Scratch>>> = Arc::new(Mutex::new(preconnected));
    let mut set = JoinSet::new();
    let mut n = 0usize;
    while let Some((at, index)) = arrivals.next() {
        let measured = at >= measure_start;
        if measure_end.is_some_and(|e| at >= e) {
            break;
        }
        // Sessions claim their turns themselves; plain requests claim here.
        if measured
            && if sessions {
                shared.exhausted(spec.requests)
            } else {
                !shared.claim(spec.requests)
            }
        {
            break;
        }
        // Wake up to 1 ms early (the timer's granularity) and measure from the earlier of the
        // scheduled and the actual send time: never late by the timer, never hiding lateness.
        if !sleep_near(&ctx.cancel, at).await {
            break;
        }
        if index.is_some() {
            // A trace's send times are the point of the replay: yield past the timer's
            // early wake-up until the recorded instant.
            while Instant::now() < at {
                tokio::task::yield_now().await;
            }
        }
        let permit = tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => break,
            p = permits.clone().acquire_owned() => p.expect("semaphore never closed"),
        };
        let (ctx2, shared2, pool2) = (ctx.clone(), shared.clone(), pool.clone());
        let scheduled = at;
        let shard = n;
        let limit = spec.requests;
        set.spawn(async move {
            let _permit = permit;
            let mut scratch = pool2
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop()
                .unwrap_or_default();
            let now = Instant::now();
            if measured {
                shared2.record_send(shard, now.saturating_duration_since(scheduled));
            }
            let i = index.unwrap_or_else(|| ctx2.next_prompt.fetch_add(1, Ordering::Relaxed));
            if let Some(script) = ctx2.workload.session(i) {
                scratch.answer.get_or_insert_with(String::new);
                run_session(
                    &ctx2,
                    &shared2,
                    script,
                    scheduled,
                    shard,
                    &mut scratch,
                    window,
                    limit,
                )
                .await;
            } else {
                let t0 = scheduled.min(now);
                let req = ctx2.workload.get(i);
                let id = tag(&ctx2, measured, &mut scratch);
                let r = send_or_abandon(&ctx2, req, t0, &mut scratch).await;
                if measured {
                    let at = Timing {
                        scheduled,
                        sent: now,
                        t0,
                    };
                    finish(
                        &ctx2,
                        &shared2,
                        shard,
                        req,
                        r.as_ref(),
                        id,
                        &scratch.itl_us,
                        at,
                    );
                }
            }
            pool2
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(scratch);
        });
        while set.try_join_next().is_some() {}
        n += 1;
    }
    tokio::select! {
        biased;
        _ = ctx.cancel.cancelled() => set.abort_all(),
        _ = async { while set.join_next().await.is_some() {} } => {}
    }
    while set.join_next().await.is_some() {}
}

/// Inter-arrival gaps of an open loop.
pub struct Gaps {
    mean: Duration,
    dist: Option<GapDist>,
    rng: StdRng,
}

enum GapDist {
    Exp(Exp<f64>),
    Gamma(Gamma<f64>),
}

impl Gaps {
    /// Gaps for `rate` requests per second (seeded).
    pub fn new(kind: Arrival, rate: f64, seed: u64) -> Gaps {
        let rate = if rate.is_finite() && rate > 0.0 {
            rate
        } else {
            1.0
        };
        let dist = match kind {
            Arrival::Poisson => Exp::new(rate).ok().map(GapDist::Exp),
            Arrival::Constant => None,
            Arrival::Gamma { burstiness } => Gamma::new(burstiness, 1.0 / (rate * burstiness))
                .ok()
                .map(GapDist::Gamma),
        };
        Gaps {
            mean: Duration::from_secs_f64(1.0 / rate),
            dist,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The next gap.
    pub fn next_gap(&mut self) -> Duration {
        let secs = match &self.dist {
            Some(GapDist::Exp(e)) => e.sample(&mut self.rng),
            Some(GapDist::Gamma(g)) => g.sample(&mut self.rng),
            None => return self.mean,
        };
        Duration::from_secs_f64(secs.clamp(0.0, 3600.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_gaps_have_the_right_mean_and_spread() {
        let mut g = Gaps::new(Arrival::Poisson, 100.0, 1);
        let xs: Vec<f64> = (0..20_000).map(|_| g.next_gap().as_secs_f64()).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!((mean - 0.01).abs() < 0.0005, "{mean}");
        // Exponential: standard deviation equals the mean.
        assert!((var.sqrt() - 0.01).abs() < 0.001, "{}", var.sqrt());
        let mut c = Gaps::new(Arrival::Constant, 4.0, 1);
        assert_eq!(c.next_gap(), Duration::from_millis(250));
        let same: Vec<Duration> = (0..5)
            .map(|_| Gaps::new(Arrival::Poisson, 3.0, 9).next_gap())
            .collect();
        assert!(same.windows(2).all(|w| w[0] == w[1]));
    }

    #[test]
    fn gamma_gaps_keep_the_mean_and_scale_the_spread_with_burstiness() {
        let stats = |b: f64| {
            let mut g = Gaps::new(Arrival::Gamma { burstiness: b }, 50.0, 3);
            let xs: Vec<f64> = (0..40_000).map(|_| g.next_gap().as_secs_f64()).collect();
            let mean = xs.iter().sum::<f64>() / xs.len() as f64;
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
            (mean, var.sqrt() / mean)
        };
        // Gamma(k, 1/(rate k)): mean 1/rate, coefficient of variation 1/sqrt(k).
        for (b, cv) in [(0.25, 2.0), (1.0, 1.0), (4.0, 0.5)] {
            let (mean, got) = stats(b);
            assert!(
                (mean - 0.02).abs() < 0.02 * 0.05,
                "burstiness {b}: mean {mean}"
            );
            assert!((got - cv).abs() < cv * 0.08, "burstiness {b}: cv {got}");
        }
    }

    #[test]
    fn clock_maps_instants_to_wall_time() {
        let c = Clock::now();
        let later = c.wall(c.instant + Duration::from_secs(2));
        let earlier = c.wall(c.instant - Duration::from_secs(1));
        assert_eq!((later - earlier).num_milliseconds(), 3000);
    }

    #[test]
    fn fd_limit_is_raised_only_when_short() {
        assert_eq!(fd_plan(100, 1024, 4096), FdPlan::Enough);
        assert_eq!(fd_plan(2000, 1024, 4096), FdPlan::Raise { to: 4096 });
        assert_eq!(
            fd_plan(5000, 1024, 4096),
            FdPlan::Short {
                need: 5064,
                hard: 4096
            }
        );
        // The headroom counts: 1000 connections do not fit a soft limit of 1024.
        assert_eq!(
            fd_plan(1000, 1024, 1024),
            FdPlan::Short {
                need: 1064,
                hard: 1024
            }
        );
        assert_eq!(
            fd_plan(u64::MAX, 1024, u64::MAX),
            FdPlan::Raise { to: u64::MAX }
        );
    }

    #[test]
    fn preconnect_covers_workers_or_a_second_of_arrivals() {
        let spec = |point, max_in_flight| StepSpec {
            point,
            requests: None,
            duration: None,
            warmup: Duration::ZERO,
            arrival: Arrival::Poisson,
            max_in_flight,
            seed: 0,
            goodput_slo: None,
            preconnect: true,
            ramp: None,
            trace_speedup: None,
        };
        assert_eq!(preconnect_count(&spec(LoadPoint::Concurrency(64), 10)), 64);
        assert_eq!(preconnect_count(&spec(LoadPoint::Rate(20.5), 1000)), 21);
        assert_eq!(preconnect_count(&spec(LoadPoint::Rate(5000.0), 300)), 300);
        assert_eq!(preconnect_count(&spec(LoadPoint::Rate(0.1), 300)), 1);
        assert_eq!(connections_needed(&spec(LoadPoint::Rate(1.0), 300)), 300);
        assert_eq!(connections_needed(&spec(LoadPoint::Concurrency(7), 300)), 7);
    }

    #[test]
    fn ramps_rise_from_a_tenth_and_delay_the_window() {
        use crate::contract::plan::RampShape;
        let r = |shape| Ramp {
            shape,
            duration: Duration::from_secs(10),
            measured: false,
        };
        let (lin, exp) = (r(RampShape::Linear), r(RampShape::Exponential));
        let at = Duration::from_secs;
        assert!((lin.fraction(at(0)) - 0.1).abs() < 1e-12);
        assert!((lin.fraction(at(5)) - 0.55).abs() < 1e-12);
        assert!((exp.fraction(at(0)) - 0.1).abs() < 1e-12);
        assert!((exp.fraction(at(5)) - 0.1f64.sqrt()).abs() < 1e-12);
        assert_eq!((lin.fraction(at(10)), exp.fraction(at(99))), (1.0, 1.0));
        // Constant arrivals at 10/s ramped linearly over 10 s: sparse at first, the full rate
        // after the ramp; about the integral of the rate in the ramp (10 × 5.5 = 55 arrivals).
        let start = Instant::now();
        let mut a = Arrivals::Rate {
            gaps: Box::new(Gaps::new(Arrival::Constant, 10.0, 1)),
            ramp: Some(lin),
            start,
            at: start,
        };
        let times: Vec<Duration> = std::iter::from_fn(|| a.next())
            .map(|(t, i)| {
                assert_eq!(i, None);
                t - start
            })
            .take_while(|t| *t < at(12))
            .collect();
        let in_ramp = times.iter().filter(|t| **t < at(10)).count();
        assert!((50..=58).contains(&in_ramp), "{in_ramp}");
        assert_eq!(times.len() - in_ramp, 20, "10/s after the ramp");
        assert!(
            times[1] - times[0] >= Duration::from_millis(900),
            "starts at 1/s"
        );
        let mut spec = StepSpec {
            point: LoadPoint::Rate(10.0),
            requests: None,
            duration: None,
            warmup: at(3),
            arrival: Arrival::Poisson,
            max_in_flight: 10,
            seed: 0,
            goodput_slo: None,
            preconnect: true,
            ramp: Some(lin),
            trace_speedup: None,
        };
        assert_eq!(measure_delay(&spec), at(10), "the ramp is left out");
        spec.ramp = Some(Ramp {
            measured: true,
            ..lin
        });
        assert_eq!(measure_delay(&spec), at(3), "only the warmup");
        spec.ramp = None;
        assert_eq!(measure_delay(&spec), at(3));
    }

    #[test]
    fn trace_arrivals_are_the_offsets_over_the_speedup() {
        let start = Instant::now();
        let mut a = Arrivals::Trace {
            offsets: [0, 100, 100, 1000].map(Duration::from_millis).to_vec(),
            next: 0,
            speedup: 4.0,
            start,
        };
        let got: Vec<(Duration, Option<u64>)> = std::iter::from_fn(|| a.next())
            .map(|(t, i)| (t - start, i))
            .collect();
        assert_eq!(
            got,
            [(0, 0), (25, 1), (25, 2), (250, 3)]
                .map(|(ms, i)| (Duration::from_millis(ms), Some(i)))
        );
    }
}
