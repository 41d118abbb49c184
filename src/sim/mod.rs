//! `inferops sim`: a vLLM-compatible simulated engine.
//!
//! An OpenAI-compatible HTTP server (`/v1/models`, `/v1/completions`,
//! `/v1/chat/completions`, `/health`, `/metrics`, `/sim/trace`) whose timing comes from a model
//! of vLLM's continuous-batching scheduler ([`engine`]), calibrated per profile
//! ([`profile`]) against published benchmarks (see `docs/simulator.md`).
//!
//! Use [`run`] for the CLI, or [`spawn`] to start one in-process (tests, `inferops bench`):
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use inferops::sim::{SimOptions, spawn};
//! let sim = spawn(SimOptions::profile("zero")?, "127.0.0.1:0".parse()?).await?;
//! println!("serving {} at {}", sim.model(), sim.base_url());
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

pub mod api;
pub mod engine;
pub mod metrics;
pub mod prefix;
pub mod profile;
pub mod server;
pub mod timer;
pub mod trace;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use profile::{
    DEFAULT_PROFILE, GpuModel, PROFILE_NAMES, PerfModel, Routing, SimOptions, TimingMode,
};

/// Command-line arguments of `inferops sim`.
#[derive(clap::Args, Debug, Clone)]
pub struct SimArgs {
    /// Port to listen on (0 = any free port).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Profile: qwen2.5-0.5b-l4 (default), llama3.2-3b-t4, tinyllama-a10, zero, fixed.
    /// Giving --ttft-ms or --itl-ms without --profile selects `fixed`.
    #[arg(long)]
    pub profile: Option<String>,
    /// Number of simulated replicas (one engine and GPU each) behind the port.
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,
    /// How requests are spread over replicas.
    #[arg(long, value_enum, default_value_t = Routing::LeastLoaded)]
    pub routing: Routing,
    /// Also expose DCGM-exporter-style GPU gauges (labelled simulated="true").
    #[arg(long)]
    pub dcgm: bool,
    /// Served model name (default: the profile's Hugging Face model id).
    #[arg(long)]
    pub model: Option<String>,
    /// `fixed` profile: time to first token, milliseconds.
    #[arg(long)]
    pub ttft_ms: Option<f64>,
    /// `fixed` profile: inter-token latency, milliseconds.
    #[arg(long)]
    pub itl_ms: Option<f64>,
    /// Seed of every random choice.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Maximum prompt + output tokens per request.
    #[arg(long)]
    pub max_model_len: Option<usize>,
    /// Maximum running sequences per engine.
    #[arg(long)]
    pub max_num_seqs: Option<usize>,
    /// KV cache size per engine, in 16-token blocks.
    #[arg(long)]
    pub num_gpu_blocks: Option<usize>,
    /// Token budget of one engine step (chunked prefill).
    #[arg(long)]
    pub max_num_batched_tokens: Option<usize>,
    /// Turn off automatic prefix caching (on by default, as in vLLM V1).
    #[arg(long)]
    pub no_enable_prefix_caching: bool,
    /// Serve a LoRA adapter under this model name (repeatable), as vLLM's
    /// `--lora-modules NAME=PATH`: listed by `/v1/models` with `parent` the base model,
    /// served with the base model's timing plus `--lora-step-cost`, with prefix-cache blocks
    /// never shared with the base model; `vllm:lora_requests_info` shows the running and
    /// waiting adapters. Any other model name gets vLLM's 404.
    #[arg(long = "lora", value_name = "NAME")]
    pub lora: Vec<String>,
    /// Most distinct LoRA adapters in one engine batch (vLLM `--max-loras`, default 1).
    #[arg(long)]
    pub max_loras: Option<usize>,
    /// Extra engine step time per distinct adapter in the batch, as a fraction of the step
    /// (default 0.05).
    #[arg(long)]
    pub lora_step_cost: Option<f64>,
    /// Requests kept in the /sim/trace ring buffer (default 100000).
    #[arg(long)]
    pub trace_capacity: Option<usize>,
    /// Token times kept in the /sim/trace ring buffer in total (default 10000000, 80 MB).
    #[arg(long)]
    pub trace_max_tokens: Option<usize>,
    /// Accept queue of the listening socket; the kernel caps it at net.core.somaxconn.
    /// A queue shorter than the connections a client opens at once drops SYNs (retried by
    /// the client after 1 s, then 3 s).
    #[arg(long, default_value_t = profile::DEFAULT_LISTEN_BACKLOG)]
    pub listen_backlog: u32,
    /// `zero` profile: tokens written per HTTP body chunk (default 64; 1 writes one chunk per
    /// SSE event, as vLLM does).
    #[arg(long)]
    pub zero_batch: Option<usize>,
}

impl SimArgs {
    /// The options these arguments describe.
    pub fn to_options(&self) -> anyhow::Result<SimOptions> {
        let fixed_given = self.ttft_ms.is_some() || self.itl_ms.is_some();
        let name = match &self.profile {
            Some(p) => p.as_str(),
            None if fixed_given => "fixed",
            None => DEFAULT_PROFILE,
        };
        let mut o = SimOptions::profile(name)?;
        if let TimingMode::Fixed { ttft, itl } = &mut o.mode {
            if let Some(ms) = self.ttft_ms {
                *ttft = ms_duration(ms, "--ttft-ms")?;
            }
            if let Some(ms) = self.itl_ms {
                *itl = ms_duration(ms, "--itl-ms")?;
            }
        } else if fixed_given {
            anyhow::bail!("--ttft-ms and --itl-ms only apply to the `fixed` profile");
        }
        o.replicas = self.replicas;
        o.routing = self.routing;
        o.dcgm = self.dcgm;
        if let Some(m) = &self.model {
            o.model = m.clone();
        }
        if let Some(s) = self.seed {
            o.seed = s;
        }
        if let Some(v) = self.max_model_len {
            o.max_model_len = v;
        }
        if let Some(v) = self.max_num_seqs {
            o.max_num_seqs = v;
        }
        if let Some(v) = self.num_gpu_blocks {
            o.num_gpu_blocks = v;
        }
        if let Some(v) = self.max_num_batched_tokens {
            o.max_num_batched_tokens = v;
        }
        o.prefix_caching = !self.no_enable_prefix_caching;
        o.lora = self.lora.clone();
        if let Some(v) = self.max_loras {
            o.max_loras = v;
        }
        if let Some(v) = self.lora_step_cost {
            o.lora_step_cost = v;
        }
        if let Some(v) = self.trace_capacity {
            o.trace_capacity = v;
        }
        if let Some(v) = self.trace_max_tokens {
            o.trace_max_tokens = v;
        }
        o.listen_backlog = self.listen_backlog;
        if let Some(v) = self.zero_batch {
            anyhow::ensure!(v >= 1, "--zero-batch must be at least 1");
            o.zero_batch = v;
        }
        o.validate()?;
        Ok(o)
    }
}

fn ms_duration(ms: f64, flag: &str) -> anyhow::Result<Duration> {
    anyhow::ensure!(
        ms.is_finite() && ms >= 0.0,
        "{flag} must be a non-negative number"
    );
    Ok(Duration::from_secs_f64(ms / 1000.0))
}

/// A simulator running in this process.
pub struct SimHandle {
    addr: SocketAddr,
    model: String,
    state: Arc<server::SimState>,
    shutdown: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
    sampler: JoinHandle<()>,
}

impl SimHandle {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://HOST:PORT` (an unspecified bind address is reported as 127.0.0.1).
    pub fn base_url(&self) -> String {
        let ip = if self.addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            self.addr.ip().to_string()
        };
        if self.addr.is_ipv6() && ip != "127.0.0.1" {
            format!("http://[{ip}]:{}", self.addr.port())
        } else {
            format!("http://{ip}:{}", self.addr.port())
        }
    }

    /// Served model name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The options it runs with.
    pub fn options(&self) -> &SimOptions {
        &self.state.opts
    }

    /// Stop serving: in-flight requests get up to 2 s to finish, then are cut.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if tokio::time::timeout(Duration::from_secs(2), &mut self.server)
            .await
            .is_err()
        {
            self.server.abort();
        }
        self.sampler.abort();
        let state = self.state.clone();
        let _ = tokio::task::spawn_blocking(move || state.stop()).await;
    }
}

impl Drop for SimHandle {
    /// A handle dropped without [`SimHandle::shutdown`] still stops the server, its engines
    /// and timer (without waiting for them).
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
            self.server.abort();
            self.sampler.abort();
            self.state.stop_nowait();
        }
    }
}

/// Start a simulator listening on `addr` (port 0 = ephemeral). Returns once it accepts
/// connections.
pub async fn spawn(opts: SimOptions, addr: SocketAddr) -> anyhow::Result<SimHandle> {
    opts.validate()?;
    let listener =
        bind_listener(addr, opts.listen_backlog).with_context(|| format!("binding {addr}"))?;
    let addr = listener.local_addr()?;
    let model = opts.model.clone();
    let state = Arc::new(server::SimState::new(opts));
    let app = server::app(state.clone());
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        // TCP_NODELAY on every connection, one `send` per chunk (see `SimListener`).
        let listener = server::SimListener(listener);
        let res = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
        if let Err(e) = res {
            tracing::error!(error = %e, "simulator server failed");
        }
    });
    let sampler = tokio::spawn(dcgm_sampler(state.clone()));
    Ok(SimHandle {
        addr,
        model,
        state,
        shutdown: Some(tx),
        server,
        sampler,
    })
}

/// A listening socket on `addr` with an accept queue of `backlog` connections (the kernel
/// caps it at `net.core.somaxconn`). Must be called inside a tokio runtime.
pub fn bind_listener(addr: SocketAddr, backlog: u32) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // Like std's TcpListener::bind: a restarted simulator can reuse its port at once.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Update the DCGM-style gauges four times a second from each engine's busy time over the
/// last second. In `zero`/`fixed` mode, utilisation follows the number of active requests.
async fn dcgm_sampler(state: Arc<server::SimState>) {
    const WINDOW: Duration = Duration::from_secs(1);
    let mut history: Vec<std::collections::VecDeque<(Instant, u64)>> =
        vec![Default::default(); state.replicas.len()];
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let now = Instant::now();
        for (r, h) in state.replicas.iter().zip(history.iter_mut()) {
            let busy = r.busy_ns.load(Ordering::Relaxed);
            h.push_back((now, busy));
            while h.len() > 1 && now - h[0].0 > WINDOW {
                h.pop_front();
            }
            let util = if state.opts.mode == TimingMode::Engine {
                let (t0, b0) = h[0];
                let dt = (now - t0).as_nanos() as f64;
                if dt > 0.0 {
                    ((busy - b0) as f64 / dt).clamp(0.0, 1.0)
                } else {
                    0.0
                }
            } else {
                (r.active.load(Ordering::Relaxed) as f64 / 8.0).min(1.0)
            };
            let g = &state.opts.gpu;
            r.metrics.gpu_util.set((util * 100.0).round());
            let fb_used = (g.fb_used_base_mib + g.fb_used_active_mib * util).round();
            r.metrics.fb_used.set(fb_used);
            r.metrics.fb_free.set((g.fb_total_mib - fb_used).max(0.0));
            r.metrics
                .power
                .set(g.power_idle_w + (g.power_max_w - g.power_idle_w) * util);
            r.metrics
                .temp
                .set((g.temp_idle_c + (g.temp_max_c - g.temp_idle_c) * util).round());
        }
    }
}

/// `inferops sim`: serve until Ctrl-C or SIGTERM.
pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let opts = args.to_options()?;
    let addr = tokio::net::lookup_host((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("resolving --host {}", args.host))?
        .next()
        .with_context(|| format!("--host {} resolves to no address", args.host))?;
    let handle = spawn(opts.clone(), addr).await?;
    tracing::info!(
        url = %handle.base_url(),
        profile = %opts.profile,
        model = %opts.model,
        replicas = opts.replicas,
        dcgm = opts.dcgm,
        "simulated vLLM engine listening"
    );
    shutdown_signal().await;
    tracing::info!("shutting down");
    handle.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
