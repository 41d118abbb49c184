//! `inferops bench --self-test`: measures the load generator itself.
//!
//! 1. Throughput: the simulator's `zero` profile (no delays) in a separate process, the client
//!    on one single-threaded runtime; server and client pinned to different cores when the
//!    machine has two or more (and `taskset` exists). Reports completed requests/s and
//!    streamed tokens/s, the client thread's CPU time (getrusage), the rates per client core,
//!    and the process's peak RSS.
//! 2. Accuracy: the simulator's `fixed` profile (20 ms to first token, 5 ms per token); each
//!    request's client-measured TTFT and inter-token gaps are compared with the simulator's
//!    own record of when it wrote each chunk (`GET /sim/trace`).
//! 3. Paced: 1,000 streams of the `fixed` profile at 20 ms per token (and 20 ms to the first),
//!    as a real engine paces them: one event per stream per step, each on its own socket at
//!    its own time (stream `s` starts `20 ms * s / 1000` late). Reports, for the simulator
//!    process and for the client thread, CPU time per token event and the timing error
//!    against the fixed schedule (server: its trace; client: the TTFT and gaps it measured).
//!    Then the floor under those figures: the same number of loopback TCP pairs under the
//!    same pacing with nothing but one `write` and one epoll `read` per event.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::bench::{BenchArgs, SelfTestPart};
use crate::contract::plan::{Arrival, LoadPoint, Plan, TokenCount};
use crate::loadgen::client::{Client, ClientConfig, Scratch};
use crate::loadgen::schedule::{StepContext, StepProgress, StepSpec, run_step};
use crate::loadgen::workload::RequestSet;

const CLIENT_CPU: usize = 0;
const SERVER_CPU: usize = 1;
const INPUT_TOKENS: u32 = 64;
const OUTPUT_TOKENS: u32 = 128;

/// A simulator in a child process (killed on drop).
struct SimProcess {
    child: Child,
    url: String,
    model: String,
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SimProcess {
    async fn start(args: &[&str], pin: bool) -> anyhow::Result<SimProcess> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let exe = std::env::current_exe().context("finding the inferops binary")?;
        let mut cmd = if pin {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(SERVER_CPU.to_string()).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.arg("sim")
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().context("starting `inferops sim`")?;
        let url = format!("http://127.0.0.1:{port}");
        let mut sim = SimProcess {
            child,
            url,
            model: String::new(),
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http.get(format!("{}/v1/models", sim.url)).send().await
                && let Ok(v) = r.json::<serde_json::Value>().await
                && let Some(m) = v.pointer("/data/0/id").and_then(|m| m.as_str())
            {
                sim.model = m.to_owned();
                return Ok(sim);
            }
            if let Ok(Some(status)) = sim.child.try_wait() {
                bail!("`inferops sim {}` exited: {status}", args.join(" "));
            }
            if Instant::now() > deadline {
                bail!("the simulator did not come up at {}", sim.url);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Pins the calling thread to `cpu` (Linux); false when not possible.
fn pin_thread(cpu: usize) -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: cpu_set_t is plain data; CPU_SET indexes within it; 0 = calling thread.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = cpu;
        false
    }
}

/// Peak resident set size of this process (MB), from /proc/self/status.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Resets the peak RSS counter (Linux >= 4.0); false if unsupported.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Runs `f` on a fresh OS thread (pinned to the client core when `pin`) with a
/// single-threaded tokio runtime; returns its output and the thread's CPU time.
async fn on_client_core<T, F, Fut>(pin: bool, f: F) -> anyhow::Result<(T, Duration)>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let handle = std::thread::spawn(move || -> anyhow::Result<(T, Duration)> {
        if pin {
            pin_thread(CLIENT_CPU);
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let before = crate::loadgen::cpu::thread_cpu();
        let out = rt.block_on(f())?;
        let cpu = crate::loadgen::cpu::thread_cpu() - before;
        Ok((out, cpu))
    });
    tokio::task::spawn_blocking(move || handle.join())
        .await?
        .map_err(|_| anyhow::anyhow!("client thread panicked"))?
}

/// One throughput measurement.
#[derive(Debug, Clone, Serialize)]
pub struct ThroughputRow {
    /// Requests in flight.
    pub concurrency: u32,
    /// SSE events the server writes per HTTP body chunk.
    pub events_per_chunk: usize,
    /// Completed requests per wall-clock second.
    pub request_throughput: f64,
    /// Streamed output tokens per wall-clock second.
    pub output_throughput: f64,
    /// Client CPU time / wall time (1.0 = one core busy).
    pub client_cpu_cores: f64,
    /// Completed requests per second of client CPU time.
    pub requests_per_client_core: f64,
    /// Output tokens per second of client CPU time.
    pub tokens_per_client_core: f64,
    /// Peak RSS of the bench process during this run, MB.
    pub peak_rss_mb: Option<f64>,
    /// Failed requests.
    pub failed: u64,
}

/// One accuracy measurement (microseconds, client minus server).
#[derive(Debug, Clone, Serialize)]
pub struct AccuracyRow {
    /// Concurrent streams.
    pub streams: u32,
    /// Requests compared.
    pub requests: usize,
    /// Median TTFT error.
    pub ttft_err_p50_us: i64,
    /// 99th percentile TTFT error.
    pub ttft_err_p99_us: i64,
    /// Median of (client arrival of the first token − server write of it), absolute clocks.
    pub first_token_delivery_p50_us: i64,
    /// 99th percentile of the same.
    pub first_token_delivery_p99_us: i64,
    /// Simulator's start of handling the request − client's send time (absolute clocks), p50
    /// and p99: the request's trip, including the wait for the simulator to read it.
    pub request_delivery_us: (i64, i64),
    /// Client CPU time / wall time during the run.
    pub client_cpu_cores: f64,
    /// Median inter-token gap error.
    pub itl_err_p50_us: i64,
    /// 99th percentile of |inter-token gap error|.
    pub itl_abs_err_p99_us: i64,
    /// Client-measured TTFT median, ms (for context).
    pub client_ttft_p50_ms: f64,
    /// Server TTFT median, ms.
    pub server_ttft_p50_ms: f64,
}

async fn throughput(
    url_model: (String, String),
    concurrency: u32,
    duration: Duration,
) -> anyhow::Result<crate::contract::results::StepResult> {
    let mut plan = Plan::new(url_model.0, url_model.1);
    plan.workload.input_tokens = TokenCount::Fixed(INPUT_TOKENS);
    plan.workload.output_tokens = TokenCount::Fixed(OUTPUT_TOKENS);
    let client = Client::new(&ClientConfig::new(
        &plan.target,
        plan.workload.api,
        true,
        Duration::from_secs(30),
    ))?;
    let ctx = StepContext {
        client,
        workload: Arc::new(RequestSet::prepare(&plan, 256)?),
        next_prompt: Arc::new(AtomicU64::new(0)),
        cancel: CancellationToken::new(),
        probe: None,
        records: None,
    };
    let spec = StepSpec {
        point: LoadPoint::Concurrency(concurrency),
        requests: None,
        duration: Some(duration),
        warmup: Duration::from_secs(1),
        arrival: Arrival::Poisson,
        max_in_flight: concurrency,
        seed: 1,
        goodput_slo: None,
        preconnect: true,
        ramp: None,
        trace_speedup: None,
    };
    Ok(run_step(&ctx, &spec, Arc::new(StepProgress::default())).await)
}

/// One compared request: id, client TTFT (µs), client inter-token gaps (µs), the client's
/// arrival time of the first token and its send time of the request (unix ns).
type Sample = (String, u64, Vec<u32>, i64, i64);

/// `streams` concurrent closed-loop streams of `per_stream` compared requests each (after one
/// that opens the connection); stream `s` starts `stagger * s / streams` late, so that with
/// a `stagger` of one token period every stream gets its tokens at its own time.
async fn accuracy_samples(
    url_model: (String, String),
    streams: u32,
    per_stream: u32,
    stagger: Duration,
) -> anyhow::Result<Vec<Sample>> {
    let mut plan = Plan::new(url_model.0, url_model.1);
    plan.workload.input_tokens = TokenCount::Fixed(INPUT_TOKENS);
    plan.workload.output_tokens = TokenCount::Fixed(OUTPUT_TOKENS);
    let client = Client::new(&ClientConfig::new(
        &plan.target,
        plan.workload.api,
        true,
        Duration::from_secs(60),
    ))?;
    let workload = Arc::new(RequestSet::prepare(&plan, streams as usize)?);
    let clock = crate::loadgen::schedule::Clock::now();
    let mut set = tokio::task::JoinSet::new();
    for s in 0..streams {
        let (client, workload) = (client.clone(), workload.clone());
        let delay = stagger * s / streams;
        set.spawn(async move {
            let mut out: Vec<Sample> = Vec::new();
            let mut scratch = Scratch::with_trace();
            // Opening the connection first keeps the stagger out of connection set-up.
            let _ = client.open_connection(&mut scratch).await;
            tokio::time::sleep(delay).await;
            // The first round opens the connections; it is not compared.
            for round in 0..=per_stream {
                let t0 = Instant::now();
                if let Ok(m) = client
                    .send(workload.get(u64::from(s)), t0, &mut scratch)
                    .await
                {
                    let Some(t) = scratch.trace.as_ref().filter(|_| round > 0) else {
                        continue;
                    };
                    let Some(first) = t.chunk_times.first() else {
                        continue;
                    };
                    let arrival = clock.unix_ns(*first);
                    let sent = clock.unix_ns(t0);
                    out.push((
                        t.id.clone(),
                        m.ttft_us,
                        scratch.itl_us.clone(),
                        arrival,
                        sent,
                    ));
                }
            }
            out
        });
    }
    let mut all = Vec::new();
    while let Some(r) = set.join_next().await {
        all.extend(r?);
    }
    Ok(all)
}

fn pct(sorted: &[i64], q: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

async fn compare_with_trace(
    sim: &SimProcess,
    streams: u32,
    samples: &[Sample],
) -> anyhow::Result<AccuracyRow> {
    let v: serde_json::Value = reqwest::get(format!("{}/sim/trace?clear=true", sim.url))
        .await?
        .json()
        .await?;
    let recs = v["requests"].as_array().context("trace has no requests")?;
    let by_id: std::collections::HashMap<&str, (Vec<i64>, i64, i64)> = recs
        .iter()
        .filter_map(|r| {
            let id = r["id"].as_str()?;
            let offs: Vec<i64> = r["token_offsets_ns"]
                .as_array()?
                .iter()
                .filter_map(|x| x.as_i64())
                .collect();
            let first = r["first_token_unix_ns"].as_i64()?;
            let arrived = r["arrival_unix_ns"].as_i64()?;
            Some((id, (offs, first, arrived)))
        })
        .collect();
    let (mut ttft, mut itl, mut client_ttft, mut server_ttft) = (vec![], vec![], vec![], vec![]);
    let (mut delivery, mut request_delivery) = (vec![], vec![]);
    for (id, ttft_us, gaps, first_unix_ns, sent_unix_ns) in samples {
        let Some((offs, server_first_ns, arrived_ns)) = by_id.get(id.as_str()) else {
            continue;
        };
        delivery.push((first_unix_ns - server_first_ns) / 1000);
        request_delivery.push((arrived_ns - sent_unix_ns) / 1000);
        if offs.is_empty() {
            continue;
        }
        let server_first = offs[0] / 1000;
        ttft.push(*ttft_us as i64 - server_first);
        client_ttft.push(*ttft_us as i64);
        server_ttft.push(server_first);
        for (k, g) in gaps.iter().enumerate() {
            if let (Some(a), Some(b)) = (offs.get(k), offs.get(k + 1)) {
                itl.push(i64::from(*g) - (b - a) / 1000);
            }
        }
    }
    anyhow::ensure!(!ttft.is_empty(), "no request matched the simulator's trace");
    let mut abs_itl: Vec<i64> = itl.iter().map(|e| e.abs()).collect();
    for v in [
        &mut ttft,
        &mut itl,
        &mut abs_itl,
        &mut client_ttft,
        &mut server_ttft,
        &mut delivery,
        &mut request_delivery,
    ] {
        v.sort_unstable();
    }
    Ok(AccuracyRow {
        streams,
        requests: ttft.len(),
        ttft_err_p50_us: pct(&ttft, 0.5),
        ttft_err_p99_us: pct(&ttft, 0.99),
        first_token_delivery_p50_us: pct(&delivery, 0.5),
        first_token_delivery_p99_us: pct(&delivery, 0.99),
        request_delivery_us: (pct(&request_delivery, 0.5), pct(&request_delivery, 0.99)),
        client_cpu_cores: 0.0,
        itl_err_p50_us: pct(&itl, 0.5),
        itl_abs_err_p99_us: pct(&abs_itl, 0.99),
        client_ttft_p50_ms: pct(&client_ttft, 0.5) as f64 / 1000.0,
        server_ttft_p50_ms: pct(&server_ttft, 0.5) as f64 / 1000.0,
    })
}

/// Everything the self-test measured.
#[derive(Debug, Clone, Serialize)]
pub struct SelfTestReport {
    /// The command line that produced it.
    pub command: String,
    /// CPU model and core count.
    pub machine: String,
    /// Whether server and client were pinned to separate cores.
    pub pinned: bool,
    /// 1-minute load average at the start and at the end.
    pub load_average: (String, String),
    /// Throughput rows.
    pub throughput: Vec<ThroughputRow>,
    /// Accuracy rows.
    pub accuracy: Vec<AccuracyRow>,
    /// Paced rows.
    pub paced: Vec<PacedRow>,
    /// The bare transport's cost under the same pacing (the floor of the paced rows).
    pub floor: Vec<FloorRow>,
}

/// One paced measurement (`fixed` profile, TTFT = ITL = `itl_ms`). Errors are measured minus
/// scheduled time, µs (positive: late).
#[derive(Debug, Clone, Serialize)]
pub struct PacedRow {
    /// Concurrent streams.
    pub streams: u32,
    /// Scheduled time to first token and between tokens, ms.
    pub itl_ms: f64,
    /// Token events streamed (server trace).
    pub token_events: u64,
    /// Failed requests.
    pub failed: u64,
    /// Simulator process CPU / wall time.
    pub server_cpu_cores: f64,
    /// Simulator CPU time per token event, µs.
    pub server_cpu_per_event_us: f64,
    /// Client thread CPU / wall time.
    pub client_cpu_cores: f64,
    /// Client CPU time per token event, µs.
    pub client_cpu_per_event_us: f64,
    /// Server: first token written minus arrival + TTFT, p50 and p99.
    pub server_ttft_err_us: (i64, i64),
    /// Server: gap between written tokens minus ITL, p50 and p99.
    pub server_itl_err_us: (i64, i64),
    /// Client: measured TTFT minus the scheduled TTFT, p50 and p99.
    pub client_ttft_err_us: (i64, i64),
    /// Client: measured gaps minus ITL, p50 and p99.
    pub client_itl_err_us: (i64, i64),
}

/// The bare transport's cost on this machine: the floor under the paced figures.
#[derive(Debug, Clone, Serialize)]
pub struct FloorRow {
    /// Loopback TCP pairs.
    pub streams: u32,
    /// Interval between one stream's messages, ms.
    pub itl_ms: f64,
    /// Bytes per message (about one SSE event in its HTTP chunk).
    pub message_bytes: usize,
    /// Messages written (and read).
    pub events: u64,
    /// Writer thread CPU / wall time.
    pub writer_cpu_cores: f64,
    /// Writer CPU time per message, µs: one `write` system call each.
    pub writer_cpu_per_event_us: f64,
    /// Reader thread CPU / wall time.
    pub reader_cpu_cores: f64,
    /// Reader CPU time per message, µs: its share of `epoll_wait` and one `read`.
    pub reader_cpu_per_event_us: f64,
}

/// Bytes of one token event as the simulator writes it (chunk header, `data: {...}`, CRLFs).
const EVENT_BYTES: usize = 220;

/// Measures the floor: `streams` loopback TCP pairs; a writer thread (on the simulator's
/// core) writes one [`EVENT_BYTES`] message per stream per `itl`, stream `s` at its own
/// offset `itl * s / streams`, waking as the simulator's timer does (late by at most its
/// coalescing window, then writing everything due); a reader thread (on the client's core)
/// reads them in one mio (epoll) loop. One `write` and one `read` per event and nothing else:
/// no HTTP, no JSON, no async runtime.
fn loopback_floor(
    streams: u32,
    itl: Duration,
    duration: Duration,
    pin: bool,
) -> anyhow::Result<FloorRow> {
    use std::io::{ErrorKind, Read, Write};
    use std::sync::atomic::{AtomicBool, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let (mut readers, mut writers) = (Vec::new(), Vec::new());
    for _ in 0..streams {
        let c = std::net::TcpStream::connect(addr)
            .context("opening loopback connections (raise `ulimit -n`)")?;
        let (w, _) = listener.accept()?;
        c.set_nodelay(true)?;
        w.set_nodelay(true)?;
        c.set_nonblocking(true)?;
        readers.push(mio::net::TcpStream::from_std(c));
        writers.push(w);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || -> std::io::Result<(Duration, u64)> {
            if pin {
                pin_thread(CLIENT_CPU);
            }
            let mut poll = mio::Poll::new()?;
            for (i, r) in readers.iter_mut().enumerate() {
                poll.registry()
                    .register(r, mio::Token(i), mio::Interest::READABLE)?;
            }
            let mut events = mio::Events::with_capacity(1024);
            let mut buf = vec![0u8; 16 * 1024];
            let mut bytes = 0u64;
            let before = crate::loadgen::cpu::thread_cpu();
            while !stop.load(Ordering::Relaxed) {
                poll.poll(&mut events, Some(Duration::from_millis(20)))?;
                for ev in events.iter() {
                    let r = &mut readers[ev.token().0];
                    loop {
                        match r.read(&mut buf) {
                            Ok(n) if n > 0 && n == buf.len() => bytes += n as u64,
                            Ok(n) => {
                                bytes += n as u64;
                                break;
                            }
                            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                            Err(e) => return Err(e),
                        }
                    }
                }
            }
            Ok((crate::loadgen::cpu::thread_cpu() - before, bytes))
        })
    };
    let writer = std::thread::spawn(move || -> std::io::Result<(Duration, u64)> {
        if pin {
            pin_thread(SERVER_CPU);
        }
        let msg = vec![b'x'; EVENT_BYTES];
        let start = Instant::now() + Duration::from_millis(10);
        let end = start + duration;
        let before = crate::loadgen::cpu::thread_cpu();
        let mut sent = 0u64;
        let mut period = start;
        while period < end {
            for (s, w) in writers.iter_mut().enumerate() {
                let due = period + itl * s as u32 / streams;
                if due > Instant::now() {
                    crate::sim::timer::sleep_until_blocking(due + crate::sim::timer::COALESCE);
                }
                w.write_all(&msg)?;
                sent += 1;
            }
            period += itl;
        }
        let cpu = crate::loadgen::cpu::thread_cpu() - before;
        Ok((cpu, sent))
    });
    let wall = Instant::now();
    let (writer_cpu, sent) = writer
        .join()
        .map_err(|_| anyhow::anyhow!("floor writer panicked"))??;
    let wall = wall.elapsed();
    // Let the reader drain what is in flight.
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let (reader_cpu, bytes) = reader
        .join()
        .map_err(|_| anyhow::anyhow!("floor reader panicked"))??;
    anyhow::ensure!(
        bytes == sent * EVENT_BYTES as u64,
        "the floor's reader got {bytes} of {} bytes",
        sent * EVENT_BYTES as u64
    );
    let per_event = |d: Duration| d.as_secs_f64() * 1e6 / sent.max(1) as f64;
    let secs = wall.as_secs_f64();
    Ok(FloorRow {
        streams,
        itl_ms: itl.as_secs_f64() * 1000.0,
        message_bytes: EVENT_BYTES,
        events: sent,
        writer_cpu_cores: writer_cpu.as_secs_f64() / secs,
        writer_cpu_per_event_us: per_event(writer_cpu),
        reader_cpu_cores: reader_cpu.as_secs_f64() / secs,
        reader_cpu_per_event_us: per_event(reader_cpu),
    })
}

/// CPU time (user + system) of process `pid` so far, from /proc (Linux).
fn process_cpu_of(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| Duration::from_secs_f64(ticks as f64 / hz as f64))
}

fn p50_p99(mut v: Vec<i64>) -> (i64, i64) {
    v.sort_unstable();
    (pct(&v, 0.5), pct(&v, 0.99))
}

/// Streams `streams` x (`rounds` + 1) requests of `OUTPUT_TOKENS` tokens against a `fixed`
/// simulator at `itl` per token and measures both sides (see the module docs).
async fn paced(pin: bool, streams: u32, itl: Duration, rounds: u32) -> anyhow::Result<PacedRow> {
    let ms = format!("{}", itl.as_secs_f64() * 1000.0);
    let sim = SimProcess::start(
        &["--profile", "fixed", "--ttft-ms", &ms, "--itl-ms", &ms],
        pin,
    )
    .await?;
    let pid = sim.child.id();
    let um = (sim.url.clone(), sim.model.clone());
    let server0 = process_cpu_of(pid);
    let wall = Instant::now();
    let (samples, client_cpu) =
        on_client_core(pin, move || accuracy_samples(um, streams, rounds, itl)).await?;
    let wall = wall.elapsed();
    let server_cpu = process_cpu_of(pid)
        .zip(server0)
        .map(|(b, a)| b.saturating_sub(a));
    let v: serde_json::Value = reqwest::get(format!("{}/sim/trace", sim.url))
        .await?
        .json()
        .await?;
    drop(sim);
    let recs = v["requests"].as_array().context("trace has no requests")?;
    let itl_us = itl.as_micros() as i64;
    let (mut s_ttft, mut s_itl) = (Vec::new(), Vec::new());
    let mut events = 0u64;
    for r in recs {
        let offs: Vec<i64> = r["token_offsets_ns"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_i64()).collect())
            .unwrap_or_default();
        events += offs.len() as u64;
        if let Some(first) = offs.first() {
            s_ttft.push(first / 1000 - itl_us);
        }
        s_itl.extend(offs.windows(2).map(|w| (w[1] - w[0]) / 1000 - itl_us));
    }
    anyhow::ensure!(events > 0, "the simulator streamed no tokens");
    let expected = u64::from(streams) * u64::from(rounds + 1);
    let c_ttft = samples.iter().map(|s| s.1 as i64 - itl_us).collect();
    let c_itl = samples
        .iter()
        .flat_map(|s| s.2.iter().map(|g| i64::from(*g) - itl_us))
        .collect();
    let secs = wall.as_secs_f64();
    let per_event = |d: Duration| d.as_secs_f64() * 1e6 / events as f64;
    Ok(PacedRow {
        streams,
        itl_ms: itl.as_secs_f64() * 1000.0,
        token_events: events,
        failed: expected.saturating_sub(
            recs.iter()
                .filter(|r| !r["finish_reason"].is_null())
                .count() as u64,
        ),
        server_cpu_cores: server_cpu.map_or(f64::NAN, |c| c.as_secs_f64() / secs),
        server_cpu_per_event_us: server_cpu.map_or(f64::NAN, per_event),
        client_cpu_cores: client_cpu.as_secs_f64() / secs,
        client_cpu_per_event_us: per_event(client_cpu),
        server_ttft_err_us: p50_p99(s_ttft),
        server_itl_err_us: p50_p99(s_itl),
        client_ttft_err_us: p50_p99(c_ttft),
        client_itl_err_us: p50_p99(c_itl),
    })
}

fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{model}, {cores} cores")
}

/// The 1-minute load average (other work on the machine skews the timing figures).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "n/a".into())
}

/// Runs the self-test and prints a Markdown report (and JSON with `--json`).
pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let duration = args.duration.unwrap_or(Duration::from_secs(10));
    let levels = args.concurrency.clone().unwrap_or_else(|| vec![64, 256]);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pin = cores >= 2
        && Command::new("taskset")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
    let command: Vec<String> = std::env::args().collect();
    let mut report = SelfTestReport {
        command: command.join(" "),
        machine: machine(),
        pinned: pin,
        load_average: (load_average(), String::new()),
        throughput: Vec::new(),
        accuracy: Vec::new(),
        paced: Vec::new(),
        floor: Vec::new(),
    };
    eprintln!(
        "self-test on {} ({}); {INPUT_TOKENS} in / {OUTPUT_TOKENS} out tokens, {}s per level",
        report.machine,
        if pin {
            "server on CPU 1, client on CPU 0"
        } else {
            "not pinned"
        },
        duration.as_secs_f64()
    );

    let part = args.self_test_part;
    // The zero profile's default (64 tokens per HTTP chunk) at every level, then one chunk per
    // SSE event (as vLLM writes them) at the highest level.
    let mut runs: Vec<(usize, u32)> = levels.iter().map(|&c| (64, c)).collect();
    runs.extend(levels.iter().max().map(|&c| (1, c)));
    let mut sim: Option<(usize, SimProcess)> = None;
    for (batch, c) in runs
        .into_iter()
        .filter(|_| matches!(part, SelfTestPart::All | SelfTestPart::Throughput))
    {
        if sim.as_ref().is_none_or(|(b, _)| *b != batch) {
            drop(sim.take());
            let b = batch.to_string();
            let args = [
                "--profile",
                "zero",
                "--trace-capacity",
                "0",
                "--zero-batch",
                &b,
            ];
            sim = Some((batch, SimProcess::start(&args, pin).await?));
        }
        let Some((_, sim)) = &sim else { continue };
        reset_peak_rss();
        let um = (sim.url.clone(), sim.model.clone());
        let wall = Instant::now();
        let (step, cpu) = on_client_core(pin, move || throughput(um, c, duration)).await?;
        let wall = wall.elapsed().as_secs_f64();
        let cpu_s = cpu.as_secs_f64();
        // The CPU time covers warmup and ramp-down too; scale it to the measured window.
        let measured_cpu = cpu_s * (step.duration / wall).min(1.0);
        let row = ThroughputRow {
            concurrency: c,
            events_per_chunk: batch,
            request_throughput: step.request_throughput,
            output_throughput: step.output_throughput,
            client_cpu_cores: cpu_s / wall,
            requests_per_client_core: if measured_cpu > 0.0 {
                step.completed as f64 / measured_cpu
            } else {
                0.0
            },
            tokens_per_client_core: if measured_cpu > 0.0 {
                step.total_output_tokens as f64 / measured_cpu
            } else {
                0.0
            },
            peak_rss_mb: peak_rss_mb(),
            failed: step.failed,
        };
        eprintln!(
            "concurrency {c}, {batch} events per chunk: {}",
            step.one_line()
        );
        report.throughput.push(row);
    }
    drop(sim);

    let sim = SimProcess::start(
        &["--profile", "fixed", "--ttft-ms", "20", "--itl-ms", "5"],
        pin,
    )
    .await?;
    let rounds: &[(u32, u32)] = if matches!(part, SelfTestPart::All | SelfTestPart::Accuracy) {
        &[(32, 8), (256, 2)]
    } else {
        &[]
    };
    for &(streams, per_stream) in rounds {
        let _ = reqwest::Client::new()
            .delete(format!("{}/sim/trace", sim.url))
            .send()
            .await;
        let um = (sim.url.clone(), sim.model.clone());
        let wall = Instant::now();
        let (samples, cpu) = on_client_core(pin, move || {
            accuracy_samples(um, streams, per_stream, Duration::ZERO)
        })
        .await?;
        let mut row = compare_with_trace(&sim, streams, &samples).await?;
        row.client_cpu_cores = cpu.as_secs_f64() / wall.elapsed().as_secs_f64();
        eprintln!("{streams} streams: {row:?}");
        report.accuracy.push(row);
    }
    drop(sim);
    if matches!(part, SelfTestPart::All | SelfTestPart::Paced) {
        for &(streams, itl) in &args.self_test_paced {
            if let Some(w) = crate::loadgen::schedule::ensure_fd_limit(2 * u64::from(streams)) {
                eprintln!("warning: {w}");
            }
            let row = paced(pin, streams, itl, 2).await?;
            eprintln!("paced: {row:?}");
            report.paced.push(row);
            // The floor holds both ends of every pair: with too few descriptors for that, it
            // keeps the event rate with fewer pairs (and a proportionally shorter interval).
            let pairs = crate::loadgen::schedule::fd_limits()
                .map_or(streams, |(soft, _)| {
                    streams.min((soft.saturating_sub(64) / 2) as u32)
                })
                .max(1);
            let floor_itl = itl * pairs / streams;
            let floor = tokio::task::spawn_blocking(move || {
                loopback_floor(pairs, floor_itl, Duration::from_secs(5).max(itl * 50), pin)
            })
            .await??;
            eprintln!("floor: {floor:?}");
            report.floor.push(floor);
        }
    }
    report.load_average.1 = load_average();

    print!("{}", render(&report));
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_vec_pretty(&report)?)?;
        eprintln!("report written to {}", p.display());
    }
    Ok(())
}

/// The report as Markdown.
pub fn render(r: &SelfTestReport) -> String {
    let mut s = format!(
        "\nLoad generator self-test: `{}`\n{} (load average {} at start, {} at end); {}; {INPUT_TOKENS} in / {OUTPUT_TOKENS} out tokens, streaming, closed loop.\n\n",
        r.command,
        r.machine,
        r.load_average.0,
        r.load_average.1,
        if r.pinned {
            "simulator pinned to CPU 1, client (one single-threaded runtime) pinned to CPU 0"
        } else {
            "not pinned"
        }
    );
    s.push_str("| concurrency | events per chunk | req/s | out tok/s | client CPU (cores) | req/s per client core | tok/s per client core | peak RSS (MB) | failed |\n");
    s.push_str("| ----------- | ---------------- | ----- | --------- | ------------------ | --------------------- | --------------------- | ------------- | ------ |\n");
    for t in &r.throughput {
        s.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} | {:.2} | {:.0} | {:.0} | {} | {} |\n",
            t.concurrency,
            t.events_per_chunk,
            t.request_throughput,
            t.output_throughput,
            t.client_cpu_cores,
            t.requests_per_client_core,
            t.tokens_per_client_core,
            t.peak_rss_mb.map_or("n/a".into(), |m| format!("{m:.1}")),
            t.failed
        ));
    }
    s.push_str("\nTiming error against the simulator's trace (`fixed`: 20 ms TTFT, 5 ms ITL), client minus server, µs:\n\n");
    s.push_str("| streams | requests | TTFT err p50 | TTFT err p99 | request delivery p50 / p99 | first-token delivery p50 | first-token delivery p99 | ITL err p50 | ITL abs err p99 | TTFT p50 client / server (ms) | client CPU (cores) |\n");
    s.push_str("| ------- | -------- | ------------ | ------------ | -------------------------- | ------------------------ | ------------------------ | ----------- | --------------- | ----------------------------- | ------------------ |\n");
    for a in &r.accuracy {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} / {} | {} | {} | {} | {} | {:.2} / {:.2} | {:.2} |\n",
            a.streams,
            a.requests,
            a.ttft_err_p50_us,
            a.ttft_err_p99_us,
            a.request_delivery_us.0,
            a.request_delivery_us.1,
            a.first_token_delivery_p50_us,
            a.first_token_delivery_p99_us,
            a.itl_err_p50_us,
            a.itl_abs_err_p99_us,
            a.client_ttft_p50_ms,
            a.server_ttft_p50_ms,
            a.client_cpu_cores
        ));
    }
    if !r.paced.is_empty() {
        s.push_str("\nPaced streams (`fixed`: TTFT = ITL, one event per stream per step): CPU per token event, and timing error against the schedule (measured minus scheduled, µs, p50 / p99):\n\n");
        s.push_str("| run | streams | ms per token | token events | failed | server CPU (cores) | server µs/event | server TTFT err | server ITL err | client CPU (cores) | client µs/event | client TTFT err | client ITL err |\n");
        s.push_str("| --- | ------- | ------------ | ------------ | ------ | ------------------ | --------------- | --------------- | -------------- | ------------------ | --------------- | --------------- | -------------- |\n");
        for (i, p) in r.paced.iter().enumerate() {
            s.push_str(&format!(
                "| inferops | {} | {} | {} | {} | {:.2} | {:.2} | {} / {} | {} / {} | {:.2} | {:.2} | {} / {} | {} / {} |\n",
                p.streams,
                p.itl_ms,
                p.token_events,
                p.failed,
                p.server_cpu_cores,
                p.server_cpu_per_event_us,
                p.server_ttft_err_us.0,
                p.server_ttft_err_us.1,
                p.server_itl_err_us.0,
                p.server_itl_err_us.1,
                p.client_cpu_cores,
                p.client_cpu_per_event_us,
                p.client_ttft_err_us.0,
                p.client_ttft_err_us.1,
                p.client_itl_err_us.0,
                p.client_itl_err_us.1,
            ));
            if let Some(f) = r.floor.get(i) {
                s.push_str(&format!(
                    "| floor | {} | {} | {} | 0 | {:.2} | {:.2} | - | - | {:.2} | {:.2} | - | - |\n",
                    f.streams,
                    f.itl_ms,
                    f.events,
                    f.writer_cpu_cores,
                    f.writer_cpu_per_event_us,
                    f.reader_cpu_cores,
                    f.reader_cpu_per_event_us,
                ));
            }
        }
        if let Some(f) = r.floor.first() {
            s.push_str(&format!(
                "\n`floor`: the bare transport under the same pacing ({}-byte messages on loopback TCP, one `write` on the server's core and one epoll `read` on the client's core per event; no HTTP, JSON or async runtime). It is what this machine's kernel charges before any work of ours. Holding both ends of every pair, it uses fewer pairs at the same event rate when open files are short.\n",
                f.message_bytes
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_reads_every_byte_it_writes() {
        let f = loopback_floor(
            8,
            Duration::from_millis(5),
            Duration::from_millis(200),
            false,
        )
        .unwrap();
        // 40 periods of 5 ms in 200 ms, one message per stream each.
        assert_eq!(f.events, 8 * 40);
        assert!(f.writer_cpu_per_event_us > 0.0 && f.reader_cpu_per_event_us > 0.0);
    }

    #[test]
    fn each_paced_row_is_followed_by_its_floor() {
        let paced = PacedRow {
            streams: 1000,
            itl_ms: 20.0,
            token_events: 384_000,
            failed: 0,
            server_cpu_cores: 0.8,
            server_cpu_per_event_us: 16.4,
            client_cpu_cores: 0.5,
            client_cpu_per_event_us: 10.7,
            server_ttft_err_us: (10, 400),
            server_itl_err_us: (0, 300),
            client_ttft_err_us: (60, 700),
            client_itl_err_us: (1, 350),
        };
        let floor = FloorRow {
            streams: 1000,
            itl_ms: 20.0,
            message_bytes: EVENT_BYTES,
            events: 250_000,
            writer_cpu_cores: 0.58,
            writer_cpu_per_event_us: 11.58,
            reader_cpu_cores: 0.42,
            reader_cpu_per_event_us: 8.5,
        };
        let report = SelfTestReport {
            command: "inferops bench --self-test".into(),
            machine: "test".into(),
            pinned: true,
            load_average: ("0.1".into(), "0.2".into()),
            throughput: vec![],
            accuracy: vec![],
            paced: vec![paced],
            floor: vec![floor],
        };
        let text = render(&report);
        let rows: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("| inferops") || l.starts_with("| floor"))
            .collect();
        assert_eq!(rows.len(), 2, "{text}");
        assert!(rows[0].contains("| 16.40 |") && rows[0].contains("| 10.70 |"));
        assert!(rows[1].contains("| 11.58 |") && rows[1].contains("| 8.50 |"));
        assert!(text.contains("220-byte messages"));
    }
}
