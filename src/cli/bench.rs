//! `inferops bench` (laptop: flags or a BenchmarkRun file, built-in simulator when no URL,
//! progress bar, results table) and `inferops loadgen` (in the load Job: plan file in, results
//! file out, rewritten after every step).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::table;
use crate::contract::plan::{
    self, Api, Arrival, Conversation, Dataset, GoodputSlo, LoadPoint, Mode, Plan, PlanPrometheus,
    Ramp, RampShape, Saturation, SharedPrefix, Slo, TRACE_BLOCK_TOKENS, TokenCount, TraceReplay,
};
use crate::contract::results::{Results, RunStatus};
use crate::loadgen::run::{Observer, RunOptions, run_plan_with};
use crate::loadgen::schedule::StepProgress;

/// `N`, `MIN-MAX` (uniform) or `MEAN~STDDEV` / `MEAN~STDDEV:MIN-MAX` (normal, clipped).
fn parse_tokens(s: &str) -> Result<TokenCount, String> {
    let n = |t: &str| t.trim().parse::<u32>().map_err(|e| format!("{t:?}: {e}"));
    if let Some((mean, rest)) = s.split_once('~') {
        let (sd, clip) = match rest.split_once(':') {
            Some((sd, clip)) => (sd, Some(clip)),
            None => (rest, None),
        };
        let (min, max) = match clip.map(|c| c.split_once('-')) {
            Some(Some((a, b))) => (Some(n(a)?), Some(n(b)?)),
            Some(None) => return Err(format!("{s:?}: the clip is MIN-MAX, e.g. 256~64:16-1024")),
            None => (None, None),
        };
        return Ok(TokenCount::Normal {
            mean: n(mean)?,
            stddev: n(sd)?,
            min,
            max,
        });
    }
    match s.split_once('-') {
        Some((a, b)) => Ok(TokenCount::Range {
            min: n(a)?,
            max: n(b)?,
        }),
        None => Ok(TokenCount::Fixed(n(s)?)),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    plan::duration::parse(s)
}

/// A path as a `Box<Path>` (keeps the argument struct small).
/// `STREAMS@INTERVAL`, e.g. `1000@20ms` (a paced self-test load).
fn parse_paced(s: &str) -> Result<(u32, Duration), String> {
    let (n, itl) = s
        .split_once('@')
        .ok_or_else(|| format!("{s:?}: expected STREAMS@INTERVAL, e.g. 1000@20ms"))?;
    let n: u32 = n
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: {n:?} is not a stream count"))?;
    let itl = parse_duration(itl.trim())?;
    if n == 0 || itl.is_zero() {
        return Err(format!("{s:?}: streams and interval must be above zero"));
    }
    Ok((n, itl))
}

fn parse_path(s: &str) -> Result<Box<Path>, String> {
    Ok(PathBuf::from(s).into_boxed_path())
}

/// Boxed to keep the argument struct small.
fn parse_goodput(s: &str) -> Result<Box<GoodputSlo>, String> {
    GoodputSlo::parse(s).map(Box::new)
}

fn parse_api(s: &str) -> Result<Api, String> {
    match s {
        "completions" => Ok(Api::Completions),
        "chat" => Ok(Api::Chat),
        _ => Err(format!("{s:?}: expected completions or chat")),
    }
}

fn parse_ramp_shape(s: &str) -> Result<RampShape, String> {
    match s {
        "linear" => Ok(RampShape::Linear),
        "exponential" => Ok(RampShape::Exponential),
        _ => Err(format!("{s:?}: expected linear or exponential")),
    }
}

fn parse_arrival(s: &str) -> Result<Arrival, String> {
    match s {
        "poisson" => Ok(Arrival::Poisson),
        "constant" => Ok(Arrival::Constant),
        _ => Err(format!("{s:?}: expected poisson or constant")),
    }
}

/// Arguments of `inferops bench`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct BenchArgs {
    /// A BenchmarkRun YAML to take the workload and load from (flags override it).
    #[arg(short = 'f', long = "file", value_name = "RUN.yaml")]
    pub file: Option<PathBuf>,
    /// Base URL of an OpenAI-compatible server. Without it, the built-in simulator runs
    /// in-process.
    #[arg(long)]
    pub url: Option<String>,
    /// Served model name (default: the simulator's, or the first of the server's /v1/models).
    #[arg(long)]
    pub model: Option<String>,
    /// Simulator profile when no --url is given.
    #[arg(long, default_value = "qwen2.5-0.5b-l4")]
    pub profile: String,
    /// Closed-loop sweep: requests in flight at each step [default: 1,2,4,8,16,32].
    #[arg(long, value_delimiter = ',', conflicts_with = "rate")]
    pub concurrency: Option<Vec<u32>>,
    /// Open-loop sweep: requests per second at each step.
    #[arg(long, value_delimiter = ',')]
    pub rate: Option<Vec<f64>>,
    /// Measured requests per step [default: 64, or until --duration].
    #[arg(long)]
    pub requests: Option<u64>,
    /// Measured time per step, e.g. 30s [default: 4s, or until --requests].
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Prompt length in tokens (≈ words): N, MIN-MAX (uniform) or MEAN~STDDEV[:MIN-MAX]
    /// (normal, clipped) [default: 256].
    #[arg(long, value_parser = parse_tokens)]
    pub input_tokens: Option<TokenCount>,
    /// Output tokens per request (max_tokens with ignore_eos): N, MIN-MAX or MEAN~STDDEV
    /// [default: 128].
    #[arg(long, value_parser = parse_tokens)]
    pub output_tokens: Option<TokenCount>,
    /// Write the results JSON here (rewritten after every step).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Exit non-zero when a step's error rate exceeds this.
    #[arg(long, default_value_t = 0.01)]
    pub max_error_rate: f64,
    /// API: completions or chat [default: completions].
    #[arg(long, value_parser = parse_api)]
    pub api: Option<Api>,
    /// Seed of prompts and arrivals [default: 42].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Unmeasured load before each step, e.g. 5s [default: 0s].
    #[arg(long, value_parser = parse_duration)]
    pub warmup: Option<Duration>,
    /// Per-request timeout [default: 60s].
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Ask for non-streamed responses (only end-to-end latency is measured).
    #[arg(long)]
    pub no_stream: bool,
    /// The model's HuggingFace tokenizer.json: exact prompt lengths in tokens (default: one
    /// word ≈ one token).
    #[arg(long, env = "INFEROPS_TOKENIZER", value_name = "FILE", value_parser = parse_path)]
    pub tokenizer: Option<Box<Path>>,
    /// ShareGPT JSON dataset to take prompts from.
    #[arg(long, value_name = "PATH", value_parser = parse_path)]
    pub dataset: Option<Box<Path>>,
    /// Production-like workload shapes (shared prefixes, ...).
    #[command(flatten)]
    pub shape: Box<WorkloadArgs>,
    /// Model mix and client-side cancellation.
    #[command(flatten)]
    pub mix: Box<MixArgs>,
    /// Open-loop arrivals: poisson or constant [default: poisson].
    #[arg(long, value_parser = parse_arrival, conflicts_with = "burstiness")]
    pub arrival: Option<Arrival>,
    /// Saturation search: grow the rate (from --rate's first value, doubling, up to
    /// --max-rate) or with --concurrency the concurrency (from its first value, up to
    /// --max-concurrency) until an SLO breaks, then bisect to within --saturation-tolerance.
    #[arg(long)]
    pub saturate: bool,
    /// Relative width of the saturation bracket the search bisects to [default: 0.05].
    #[arg(long, value_name = "FRACTION")]
    pub saturation_tolerance: Option<f64>,
    /// Highest concurrency of a concurrency saturation search [default: 256].
    #[arg(long)]
    pub max_concurrency: Option<u32>,
    /// Saturation SLO on TTFT p95, e.g. 500ms.
    #[arg(long, value_parser = parse_duration)]
    pub slo_ttft_p95: Option<Duration>,
    /// Saturation SLO on ITL p95, e.g. 50ms.
    #[arg(long, value_parser = parse_duration)]
    pub slo_itl_p95: Option<Duration>,
    /// Per-request bounds for goodput, e.g. `ttft=200ms,tpot=10ms` (any of ttft, tpot, e2e;
    /// bare numbers are ms): each step reports the fraction of requests that met every bound
    /// and the rate of those requests.
    #[arg(long, value_name = "BOUNDS", value_parser = parse_goodput)]
    pub slo: Option<Box<GoodputSlo>>,
    /// Saturation SLO: goodput must stay at least this fraction of throughput (needs --slo).
    #[arg(long, value_name = "FRACTION", requires = "slo")]
    pub min_goodput_ratio: Option<f64>,
    /// Highest rate of a saturation search [default: 100].
    #[arg(long)]
    pub max_rate: Option<f64>,
    /// Measure the load generator itself (throughput per client core, memory, timing error
    /// against the simulator's ground truth) instead of running a sweep.
    #[arg(long)]
    pub self_test: bool,
    /// Self-test part to run.
    #[arg(long, value_enum, default_value_t = SelfTestPart::All)]
    pub self_test_part: SelfTestPart,
    /// Paced self-test loads, `STREAMS@INTERVAL` each (one token per stream per interval),
    /// each followed by the bare-transport floor under the same pacing.
    #[arg(long, value_delimiter = ',', value_parser = parse_paced,
          default_value = "250@20ms,1000@20ms", value_name = "STREAMS@INTERVAL")]
    pub self_test_paced: Vec<(u32, Duration)>,
    /// Prometheus scraping the target: add its vLLM and DCGM figures for each step's window
    /// (the results' `server` object and a second table).
    #[arg(long, value_name = "URL")]
    pub prometheus: Option<String>,
    /// With `--prometheus`: a regular expression of the target's pod names (label `pod`).
    #[arg(long, value_name = "REGEX")]
    pub prometheus_pods: Option<String>,
    /// Do not read the target's own `/metrics` (without `--prometheus` it is read at both
    /// ends of each step's window for the server figures).
    #[arg(long, conflicts_with = "prometheus")]
    pub no_server_metrics: bool,
    /// Where the target's metrics are [default: `/metrics` next to the --url's `/v1`].
    #[arg(long, value_name = "URL", conflicts_with_all = ["prometheus", "no_server_metrics"])]
    pub metrics_url: Option<String>,
    /// Longest SSE line or event, and largest non-streamed body, accepted from the server
    /// (bytes); a longer one fails its request (class `body`). Default 1 MiB.
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_event_bytes: Option<u64>,
    /// Do not open each step's connections before it starts (by default they are, and the
    /// set-up time is reported apart as `connection_setup`).
    #[arg(long)]
    pub no_preconnect: bool,
    /// Write one JSON line per measured request to this file as requests finish (a header
    /// line first; see docs/results.md): id (also sent as `X-Request-Id`), step, times,
    /// tokens, outcome and error class.
    #[arg(long, value_name = "FILE.jsonl")]
    pub records: Option<PathBuf>,
    /// With --records: also keep each request's inter-token gaps (`itl_ms`).
    #[arg(long, requires = "records")]
    pub records_itl: bool,
    /// Run every step (every probe of a search) this many times and report the spread of
    /// throughput and latency percentiles over the trials (BenchmarkRun `load.trials`).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::contract::plan::MAX_TRIALS)))]
    pub trials: Option<u32>,
}

/// `inferops bench` flags for workload shapes, with the meaning of the BenchmarkRun fields
/// of the same names.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct WorkloadArgs {
    /// Shared-prefix dataset: this many groups of prompts, each group sharing a prefix of
    /// --prefix-tokens (BenchmarkRun `dataset.sharedPrefix.groups`).
    #[arg(long, conflicts_with = "dataset", requires = "prefix_tokens")]
    pub groups: Option<u32>,
    /// Shared-prefix dataset: prompts per group [default: 16].
    #[arg(long, requires = "groups")]
    pub prompts_per_group: Option<u32>,
    /// Shared-prefix dataset: tokens (≈ words) of each group's prefix.
    #[arg(long, requires = "groups")]
    pub prefix_tokens: Option<u32>,
    /// Shared-prefix dataset: tokens of each prompt's own suffix, N, MIN-MAX or
    /// MEAN~STDDEV[:MIN-MAX] [default: --input-tokens].
    #[arg(long, value_parser = parse_tokens, requires = "groups")]
    pub suffix_tokens: Option<TokenCount>,
    /// Gamma arrivals with this shape (BenchmarkRun `arrival: gamma` + `burstiness`, vLLM
    /// bench's `--burstiness`): 1 is Poisson, below 1 burstier, above 1 more regular.
    #[arg(long)]
    pub burstiness: Option<f64>,
    /// Multi-turn conversations of this many turns per session, N, MIN-MAX or
    /// MEAN~STDDEV[:MIN-MAX] (BenchmarkRun `workload.conversation`): each turn sends the
    /// whole history (earlier user messages and the answers received) plus a new user
    /// message; --concurrency counts sessions, --rate is session arrivals per second. With
    /// --dataset (ShareGPT) the recorded human turns are replayed (at most this many).
    #[arg(long, value_parser = parse_tokens)]
    pub turns: Option<TokenCount>,
    /// Conversations: length of each later user message, N, MIN-MAX or MEAN~STDDEV
    /// [default: --input-tokens].
    #[arg(long, value_parser = parse_tokens, requires = "turns")]
    pub user_tokens: Option<TokenCount>,
    /// Conversations: pause between an answer and the next turn, e.g. 2s [default: 0s].
    #[arg(long, value_parser = parse_duration, requires = "turns")]
    pub think_time: Option<Duration>,
    /// Conversations: upper bound of a uniformly drawn think time (from --think-time).
    #[arg(long, value_parser = parse_duration, requires = "turns")]
    pub think_time_max: Option<Duration>,
    /// Replay a Mooncake-format JSONL trace (`{"timestamp": MS, "input_length": N,
    /// "output_length": N, "hash_ids": [..]}` per line) at the recorded times divided by
    /// --speedup (BenchmarkRun dataset kind `trace` + `load.traceSpeedups`). The whole trace
    /// runs unless --duration (the cap) or --requests is given.
    #[arg(long, value_name = "FILE", value_parser = parse_path,
          conflicts_with_all = ["dataset", "groups", "prompts", "turns", "rate", "concurrency", "ramp"])]
    pub trace: Option<Box<Path>>,
    /// Trace replay speed-ups, one step each, e.g. 1,2,4 [default: 1, or the file's].
    #[arg(long, value_delimiter = ',')]
    pub speedup: Option<Vec<f64>>,
    /// Tokens (≈ words) per `hash_ids` block of the trace [default: 512].
    #[arg(long, requires = "trace")]
    pub block_tokens: Option<u32>,
    /// Custom prompts, JSONL: `{"prompt": "..."}` or `{"messages": [...]}` per line, with an
    /// optional `max_tokens` (BenchmarkRun dataset kind `jsonl`).
    #[arg(long, value_name = "FILE", value_parser = parse_path, conflicts_with_all = ["dataset", "groups"])]
    pub prompts: Option<Box<Path>>,
    /// Ramp the open-loop rate up over this long at the start of every step, from 10% of
    /// the step's rate (BenchmarkRun `load.ramp`); the measured window starts after it.
    #[arg(long, value_parser = parse_duration)]
    pub ramp: Option<Duration>,
    /// Shape of the ramp: linear or exponential [default: linear].
    #[arg(long, value_parser = parse_ramp_shape, requires = "ramp")]
    pub ramp_shape: Option<RampShape>,
    /// Count the ramp's requests in the measured window.
    #[arg(long, requires = "ramp")]
    pub measure_ramp: bool,
}

/// `inferops bench` flags for a model mix and client-side cancellation, with the meaning of
/// the BenchmarkRun fields `workload.models` and `workload.cancel`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct MixArgs {
    /// Weighted model mix, `NAME=WEIGHT,...` (e.g. `base=70,sql-lora=30`): each request goes
    /// to one of these served models or LoRA adapters, each getting its weight's share of the
    /// prompts in an order drawn from the seed.
    /// Without --url the built-in simulator serves --model (else the first name) as its base
    /// model and every other name as a LoRA adapter.
    #[arg(long, value_name = "NAME=WEIGHT,...", value_parser = parse_model_mix)]
    pub model_mix: Option<ModelMix>,
    /// Cancel this fraction of the requests (0 < F <= 1, picked from the seed) after
    /// --cancel-after; they are counted as `cancelled`, not as errors.
    #[arg(long, value_name = "F", requires = "cancel_after")]
    pub cancel_fraction: Option<f64>,
    /// How long after its send a request picked by --cancel-fraction is abandoned.
    #[arg(long, value_parser = parse_duration, requires = "cancel_fraction")]
    pub cancel_after: Option<Duration>,
}

/// A parsed `--model-mix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelMix(pub Vec<crate::contract::plan::ModelWeight>);

/// Parses `NAME=WEIGHT,...` (weights are positive integers; names must be distinct).
pub fn parse_model_mix(s: &str) -> Result<ModelMix, String> {
    let mut out: Vec<crate::contract::plan::ModelWeight> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, weight) = part
            .rsplit_once('=')
            .ok_or_else(|| format!("{part:?}: write NAME=WEIGHT, e.g. base=70"))?;
        let name = name.trim();
        let weight: u32 = weight
            .trim()
            .parse()
            .map_err(|_| format!("{part:?}: the weight must be a positive integer"))?;
        if name.is_empty() || weight == 0 {
            return Err(format!("{part:?}: needs a model name and a weight above 0"));
        }
        if out.iter().any(|m| m.name == name) {
            return Err(format!("{name:?} is listed twice"));
        }
        out.push(crate::contract::plan::ModelWeight {
            name: name.to_string(),
            weight,
        });
    }
    if out.is_empty() {
        return Err("name at least one model, e.g. base=70,sql-lora=30".into());
    }
    Ok(ModelMix(out))
}

/// Which measurements `--self-test` runs.
#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SelfTestPart {
    /// Throughput, accuracy and paced streams.
    #[default]
    All,
    /// Only throughput against the `zero` profile.
    Throughput,
    /// Only timing accuracy against the `fixed` profile.
    Accuracy,
    /// Only the paced part (`--self-test-paced`, by default 250 and 1,000 streams at 20 ms
    /// per token) and its floor.
    Paced,
}

/// Arguments of `inferops loadgen` (the in-cluster load Job).
#[derive(clap::Args, Debug, Clone)]
pub struct LoadgenArgs {
    /// Plan file (JSON or YAML).
    #[arg(long, env = "INFEROPS_PLAN", value_name = "FILE")]
    pub plan: PathBuf,
    /// Results JSON file, rewritten atomically after every step.
    #[arg(long, env = "INFEROPS_OUT", value_name = "FILE")]
    pub out: PathBuf,
    /// The model's HuggingFace tokenizer.json for exact prompt lengths.
    #[arg(long, env = "INFEROPS_TOKENIZER", value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,
    /// This pod's index in a split load (overrides `parallelism.index`; set by Indexed Jobs).
    #[arg(long, env = "JOB_COMPLETION_INDEX")]
    pub index: Option<u32>,
    /// In a cluster: also write the results into this ConfigMap (namespace `POD_NAMESPACE`)
    /// after every step, under the key `<prefix>pod-<index>.json`.
    #[arg(long, env = "INFEROPS_RESULTS_CONFIGMAP", value_name = "NAME")]
    pub results_configmap: Option<String>,
    /// Prefix of this pod's key in the results ConfigMap (a scaling study's `r<N>-`).
    #[arg(long, default_value = "", value_name = "PREFIX")]
    pub results_key_prefix: String,
}

/// Builds the plan for `bench` from the BenchmarkRun file already read from `args.file`
/// (if any) and the flags.
pub fn bench_plan(
    args: &BenchArgs,
    file: Option<&super::run_file::FileRun>,
    url: &str,
    model: &str,
) -> anyhow::Result<Plan> {
    let mut plan = match file {
        Some(f) => f.plan.clone(),
        None => {
            let mut p = Plan::new("", "");
            p.load.requests_per_step = Some(64);
            p.load.duration_per_step = Some(Duration::from_secs(4));
            p
        }
    };
    plan.target.url = url.to_owned();
    plan.target.model = model.to_owned();
    let w = &mut plan.workload;
    if let Some(v) = args.api {
        w.api = v;
    }
    if let Some(v) = args.input_tokens {
        w.input_tokens = v;
    }
    if let Some(v) = args.output_tokens {
        w.output_tokens = v;
    }
    if let Some(v) = args.seed {
        w.seed = v;
    }
    if args.no_stream {
        w.stream = false;
    }
    if let Some(p) = &args.dataset {
        w.dataset = Dataset::Sharegpt {
            path: p.to_path_buf(),
            output_from_dataset: false,
        };
    }
    let shape = &args.shape;
    if let (Some(groups), Some(prefix_tokens)) = (shape.groups, shape.prefix_tokens) {
        w.dataset = Dataset::SharedPrefix(SharedPrefix {
            groups,
            prompts_per_group: shape.prompts_per_group.unwrap_or(16),
            prefix_tokens,
            suffix_tokens: shape.suffix_tokens.unwrap_or(w.input_tokens),
        });
    }
    if let Some(p) = &shape.prompts {
        w.dataset = Dataset::Jsonl {
            path: p.to_path_buf(),
        };
    }
    if let Some(turns) = shape.turns {
        let old = w.conversation.take();
        w.conversation = Some(Conversation {
            turns,
            user_tokens: shape
                .user_tokens
                .or(old.as_ref().and_then(|c| c.user_tokens)),
            think_time: shape
                .think_time
                .or(old.as_ref().map(|c| c.think_time))
                .unwrap_or_default(),
            think_time_max: shape
                .think_time_max
                .or(old.as_ref().and_then(|c| c.think_time_max)),
        });
    }
    let l = &mut plan.load;
    if let Some(path) = &shape.trace {
        w.dataset = Dataset::Trace {
            path: path.to_path_buf(),
            block_tokens: shape.block_tokens.unwrap_or(TRACE_BLOCK_TOKENS),
        };
        l.mode = Mode::Rate;
        l.saturation = None;
        let speedups = shape
            .speedup
            .clone()
            .or_else(|| l.trace.take().map(|t| t.speedups))
            .unwrap_or_else(|| vec![1.0]);
        l.trace = Some(TraceReplay { speedups });
        if file.is_none() {
            // The whole trace unless bounded by --requests / --duration.
            l.requests_per_step = None;
            l.duration_per_step = None;
        }
    } else if let (Some(t), Some(s)) = (&mut l.trace, &shape.speedup) {
        t.speedups = s.clone();
    }
    if args.requests.is_some() || args.duration.is_some() {
        l.requests_per_step = args.requests;
        l.duration_per_step = args.duration;
    }
    if let Some(duration) = shape.ramp {
        l.ramp = Some(Ramp {
            shape: shape.ramp_shape.unwrap_or_default(),
            duration,
            measured: shape.measure_ramp,
        });
    }
    if let Some(c) = &args.concurrency {
        l.mode = Mode::Concurrency;
        l.concurrency = c.clone();
        if !args.saturate {
            l.saturation = None;
        }
    }
    if let Some(r) = &args.rate {
        l.mode = Mode::Rate;
        l.rate = r.clone();
    }
    if let Some(v) = args.arrival {
        l.arrival = v;
    }
    if let Some(burstiness) = args.shape.burstiness {
        l.arrival = Arrival::Gamma { burstiness };
    }
    if let Some(mix) = &args.mix.model_mix {
        plan.workload.models = mix.0.clone();
    }
    if let (Some(fraction), Some(after)) = (args.mix.cancel_fraction, args.mix.cancel_after) {
        plan.workload.cancel = Some(crate::contract::plan::Cancel { fraction, after });
    }
    let l = &mut plan.load;
    if let Some(v) = args.warmup {
        l.warmup = v;
    }
    if let Some(v) = args.timeout {
        l.request_timeout = v;
    }
    l.max_error_rate = args.max_error_rate;
    if let Some(n) = args.trials {
        l.trials = n;
    }
    if let Some(g) = &args.slo {
        l.goodput_slo = Some(**g);
    }
    if args.saturate
        || args.min_goodput_ratio.is_some()
        || args.slo_ttft_p95.is_some()
        || args.slo_itl_p95.is_some()
        || args.saturation_tolerance.is_some()
    {
        if args.concurrency.is_none() && l.saturation.is_none() {
            l.mode = Mode::Rate;
        }
        let mut s = l.saturation.take().unwrap_or(Saturation {
            slo: Slo {
                max_error_rate: Some(args.max_error_rate),
                ..Slo::default()
            },
            ..Saturation::default()
        });
        if let Some(first) = args.rate.as_ref().and_then(|r| r.first()) {
            s.start_rate = *first;
        }
        if let Some(first) = args.concurrency.as_ref().and_then(|c| c.first()) {
            s.start_concurrency = *first;
        }
        if let Some(v) = args.max_rate {
            s.max_rate = v;
        }
        if let Some(v) = args.max_concurrency {
            s.max_concurrency = v;
        }
        if let Some(v) = args.saturation_tolerance {
            s.tolerance = v;
        }
        if let Some(v) = args.slo_ttft_p95 {
            s.slo.ttft_p95 = Some(v);
        }
        if let Some(v) = args.slo_itl_p95 {
            s.slo.itl_p95 = Some(v);
        }
        if let Some(v) = args.min_goodput_ratio {
            s.slo.min_goodput_ratio = Some(v);
        }
        l.saturation = Some(s);
    }
    plan.validate()?;
    Ok(plan)
}

/// Cancels `token` on Ctrl-C or SIGTERM; a second Ctrl-C exits at once.
fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
        eprintln!("\ninterrupted: stopping; finished steps are kept (Ctrl-C again to quit now)");
        token.cancel();
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    });
}

/// Writes `results` to `path` atomically (temporary file + rename).
pub fn write_results(path: &Path, results: &Results) -> anyhow::Result<()> {
    let json = serde_json::to_vec_pretty(results)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, json).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// Progress bar + per-step lines on stderr; optional results file after each step.
struct BenchObserver {
    bar: Option<(ProgressBar, JoinHandle<()>)>,
    json: Option<PathBuf>,
    steps_hint: usize,
    /// Steps already printed.
    printed: usize,
    /// The target's `/metrics` reader, whose notes are printed after each step.
    scraper: Option<crate::scrape::MetricsProbe>,
}

impl BenchObserver {
    fn close_bar(&mut self) {
        if let Some((bar, ticker)) = self.bar.take() {
            ticker.abort();
            bar.finish_and_clear();
        }
    }
}

impl Observer for BenchObserver {
    fn step_started(
        &mut self,
        index: usize,
        point: LoadPoint,
        requests: Option<u64>,
        duration: Option<Duration>,
        progress: Arc<StepProgress>,
    ) {
        self.close_bar();
        let by_time = requests.is_none();
        let len = match (requests, duration) {
            (Some(r), _) => r,
            (None, Some(d)) => d.as_millis() as u64,
            (None, None) => 0,
        };
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(len), target);
        let steps = if self.steps_hint > 0 {
            format!("{}/{}", index + 1, self.steps_hint)
        } else {
            format!("{}", index + 1)
        };
        let template = if by_time {
            "{prefix} [{bar:30}] {elapsed} {msg}"
        } else {
            "{prefix} [{bar:30}] {pos}/{len} requests {msg}"
        };
        bar.set_style(
            ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("step {steps} {point}"));
        let (b, start) = (bar.clone(), std::time::Instant::now());
        let ticker = tokio::spawn(async move {
            loop {
                let done = progress.done.load(Ordering::Relaxed);
                let failed = progress.failed.load(Ordering::Relaxed);
                b.set_position(if by_time {
                    start.elapsed().as_millis() as u64
                } else {
                    done
                });
                if failed > 0 {
                    b.set_message(format!("({failed} failed)"));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        self.bar = Some((bar, ticker));
    }

    fn step_finished(&mut self, results: &Results) {
        self.close_bar();
        if results.steps.len() == self.printed {
            // A saturation search publishing its final bracket: nothing new to print.
        } else if let Some(s) = results.steps.last() {
            eprintln!("{}", s.one_line());
        }
        self.printed = results.steps.len();
        for note in self.scraper.iter().flat_map(|s| s.take_notes()) {
            eprintln!("{note}");
        }
        if let Some(p) = &self.json
            && let Err(e) = write_results(p, results)
        {
            eprintln!("warning: {e:#}");
        }
    }
}

/// Starts the built-in simulator on an ephemeral loopback port, serving `base` (default:
/// the profile's model) and `adapters` as LoRA adapters.
async fn start_simulator(
    profile: &str,
    base: Option<&str>,
    adapters: Vec<String>,
) -> anyhow::Result<crate::sim::SimHandle> {
    let mut opts = crate::sim::SimOptions::profile(profile)?;
    if let Some(b) = base {
        opts.model = b.to_string();
    }
    opts.lora = adapters;
    opts.validate()?;
    crate::sim::spawn(opts, "127.0.0.1:0".parse()?).await
}

/// The simulator's base model and adapters for a model mix: `--model` (else the mix's first
/// name) is the base, every other name of the mix an adapter.
fn sim_models(model: Option<&str>, mix: &[String]) -> (Option<String>, Vec<String>) {
    let base = model.map(str::to_string).or_else(|| mix.first().cloned());
    let adapters = mix
        .iter()
        .filter(|m| Some(m.as_str()) != base.as_deref())
        .cloned()
        .collect();
    (base, adapters)
}

/// `inferops bench`.
pub async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    if args.self_test {
        return super::selftest::run(&args).await;
    }
    let mut sim = None;
    let file = match &args.file {
        Some(path) => Some(super::run_file::read(path)?),
        None => None,
    };
    let file_url = file.as_ref().and_then(|f| f.url.clone());
    let file_model = file.as_ref().and_then(|f| f.model.clone());
    let mix: Vec<String> = match (&args.mix.model_mix, &file) {
        (Some(m), _) => m.0.iter().map(|m| m.name.clone()).collect(),
        (None, Some(f)) => f
            .plan
            .workload
            .models
            .iter()
            .map(|m| m.name.clone())
            .collect(),
        (None, None) => Vec::new(),
    };
    let (url, model) = match args.url.as_ref().or(file_url.as_ref()) {
        Some(url) => {
            // One look before any load: a clear error instead of a sweep of failed requests.
            let wanted = args.model.as_ref().or(file_model.as_ref()).or(mix.first());
            let model = crate::loadgen::target::check(
                url,
                wanted.map(String::as_str),
                &mix,
                Duration::ZERO,
                Duration::ZERO,
            )
            .await
            .map_err(|p| anyhow::anyhow!("{url}: {p} (--model, --model-mix)"))?;
            (url.clone(), model)
        }
        None => {
            let wanted = args.model.as_ref().or(file_model.as_ref());
            let (base, adapters) = sim_models(wanted.map(String::as_str), &mix);
            let handle = start_simulator(&args.profile, base.as_deref(), adapters).await?;
            let model = handle.model().to_owned();
            let url = handle.base_url();
            eprintln!(
                "no --url: benchmarking the built-in simulator (profile {}) at {url}",
                args.profile
            );
            sim = Some(handle);
            (url, model)
        }
    };
    let plan = bench_plan(&args, file.as_ref(), &url, &model)?;
    let w = &plan.workload;
    eprintln!(
        "target {} model {:?}: {} in / {} out tokens, {}{}",
        plan.target.url,
        plan.target.model,
        w.input_label(),
        w.output_label(),
        serde_json::to_value(w.api)?.as_str().unwrap_or_default(),
        if w.stream {
            ", streaming"
        } else {
            ", not streaming"
        }
    );
    if !w.models.is_empty() || w.cancel.is_some() || matches!(w.dataset, Dataset::SharedPrefix(_)) {
        let mut line = crate::contract::results::StepWorkload::of(&plan, None).describe();
        if let Some(c) = &w.cancel {
            line.push_str(&format!(
                ", {:.0}% of requests cancelled after {}",
                c.fraction * 100.0,
                humantime::format_duration(c.after)
            ));
        }
        eprintln!("workload: {line}");
    }
    let cancel = CancellationToken::new();
    cancel_on_signals(cancel.clone());
    // Without Prometheus the server figures come from the target's own /metrics.
    let scraper = match (&args.prometheus, args.no_server_metrics) {
        (None, false) => Some(crate::scrape::MetricsProbe::new(
            &args
                .metrics_url
                .clone()
                .unwrap_or_else(|| crate::scrape::metrics_url(&plan.target.url)),
        )?),
        _ => None,
    };
    let mut observer = BenchObserver {
        bar: None,
        json: args.json.clone(),
        steps_hint: plan.points().len(),
        printed: 0,
        scraper: scraper.clone(),
    };
    let options = RunOptions {
        tokenizer: args.tokenizer.as_deref().map(Path::to_path_buf),
        resume: None,
        max_event_bytes: args
            .max_event_bytes
            .map(|b| usize::try_from(b).unwrap_or(usize::MAX)),
        no_preconnect: args.no_preconnect,
        probe: scraper.as_ref().map(crate::scrape::MetricsProbe::probe),
        records: None,
    };
    let records = match &args.records {
        Some(path) => Some((
            path,
            Arc::new(crate::loadgen::records::JsonlSink::create(path)?),
        )),
        None => None,
    };
    let options = RunOptions {
        records: records
            .as_ref()
            .map(|(_, sink)| crate::loadgen::run::RecordsTo {
                sink: sink.clone(),
                itl: args.records_itl,
            }),
        ..options
    };
    let results = run_plan_with(&plan, &options, cancel, &mut observer).await;
    observer.close_bar();
    if let Some((path, sink)) = &records {
        let n = sink
            .finish()
            .with_context(|| format!("writing records to {}", path.display()))?;
        eprintln!("{n} request records written to {}", path.display());
    }
    if let Some(s) = sim {
        s.shutdown().await;
    }
    let mut results = results?;
    if let Some(url) = &args.prometheus {
        let prom = crate::contract::plan::PlanPrometheus {
            url: url.clone(),
            namespace: None,
            pod_regex: args.prometheus_pods.clone(),
            gpu_labels: Default::default(),
            settle: Duration::ZERO,
        };
        attach_server_figures(&mut results, &prom, &plan.target.model).await;
    }
    println!();
    println!(
        "Latencies in ms. {} ({}), {} in / {} out tokens.",
        plan.target.url,
        plan.target.model,
        w.input_label(),
        w.output_label()
    );
    println!();
    print!("{}", table::render(&results));
    let trials = table::render_trials(&results);
    if !trials.is_empty() {
        println!();
        print!("{trials}");
    }
    let per_model = table::render_models(&results);
    if !per_model.is_empty() {
        println!();
        println!("Per model:");
        println!();
        print!("{per_model}");
    }
    if results.steps.iter().any(|s| s.server.is_some()) {
        println!();
        print!("{}", table::render_server(&results));
    }
    let record = crate::cli::report::from_results(&results, &plan.target.model);
    if !record.summary.findings.is_empty() {
        println!();
        for f in &record.summary.findings {
            println!("- {f}");
        }
    }
    finish(&results, args.json.as_deref(), true)
}

/// The conclusion of a saturation search in one line.
pub fn saturation_line(sat: &crate::contract::SaturationResult) -> String {
    let (ok, broke) = sat.bracket();
    let show = |p: LoadPoint| match p {
        LoadPoint::Rate(r) => format!("{r} req/s"),
        LoadPoint::Concurrency(c) => format!("concurrency {c}"),
    };
    let ok = ok.map_or("none".into(), show);
    let broke = broke.map_or("none up to the maximum".into(), |p| {
        format!("{} ({})", show(p), sat.broken_by.join("; "))
    });
    let bracket = match (sat.bracket_width, sat.converged) {
        (Some(w), true) => format!(
            "; bracket {:.1}% (within the {:.0}% tolerance) after {} probes",
            w * 100.0,
            sat.tolerance * 100.0,
            sat.probes.len()
        ),
        (Some(w), false) => format!(
            "; bracket {:.1}%, NOT within the {:.0}% tolerance after {} probes",
            w * 100.0,
            sat.tolerance * 100.0,
            sat.probes.len()
        ),
        (None, _) => format!("; {} probes", sat.probes.len()),
    };
    format!(
        "saturation: highest load meeting the SLOs: {ok}; lowest load breaking them: {broke}{bracket}"
    )
}

/// Writes the final results and turns interruptions (and, with `budget_is_error`, steps over
/// the error budget) into an error.
fn finish(results: &Results, json: Option<&Path>, budget_is_error: bool) -> anyhow::Result<()> {
    if let Some(p) = json {
        write_results(p, results)?;
        eprintln!("results written to {}", p.display());
    }
    if let Some(sat) = &results.summary.saturation {
        println!("{}", saturation_line(sat));
    }
    if let Some(why) = &results.summary.stopped_early {
        eprintln!("stopped early: {why}");
    }
    let over = &results.summary.steps_over_error_budget;
    if !over.is_empty() && !budget_is_error {
        eprintln!(
            "{} step(s) over the error budget (the operator judges the run):\n  {}",
            over.len(),
            over.join("\n  ")
        );
    } else if !over.is_empty() {
        bail!(
            "{} step(s) over the error budget:\n  {}",
            over.len(),
            over.join("\n  ")
        );
    }
    if results.metadata.status == RunStatus::Interrupted {
        bail!(
            "interrupted: {} step(s) measured and kept",
            results.steps.len()
        );
    }
    Ok(())
}

struct LoadgenObserver {
    out: PathBuf,
    steps_hint: usize,
    /// Hands results to the ConfigMap writer task (latest wins).
    sink: Option<tokio::sync::mpsc::UnboundedSender<Results>>,
    /// Per-request records (`load.records`), embedded in every results write.
    records: Option<Arc<crate::loadgen::records::GzipBudgetSink>>,
}

impl Observer for LoadgenObserver {
    fn step_finished(&mut self, results: &Results) {
        let with_records;
        let results = match &self.records {
            Some(r) => {
                let mut copy = results.clone();
                copy.summary.records = Some(r.snapshot());
                with_records = copy;
                &with_records
            }
            None => results,
        };
        if let Some(s) = results.steps.last() {
            let of = if self.steps_hint > 0 {
                format!("/{}", self.steps_hint)
            } else {
                String::new()
            };
            println!("step {}{of} {}", results.steps.len(), s.one_line());
        }
        if let Err(e) = write_results(&self.out, results) {
            eprintln!("warning: {e:#}");
        }
        if let Some(tx) = &self.sink {
            let _ = tx.send(results.clone());
        }
    }
}

/// Writes results to the ConfigMap in the background, always the latest, so a slow API
/// server never holds up the load.
fn spawn_sink_writer(
    sink: Arc<super::sink::ConfigMapSink>,
) -> (
    tokio::sync::mpsc::UnboundedSender<Results>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Results>();
    let task = tokio::spawn(async move {
        while let Some(mut latest) = rx.recv().await {
            while let Ok(newer) = rx.try_recv() {
                latest = newer;
            }
            match sink.write(&latest).await {
                Ok(super::sink::Written::Stored) => {}
                Ok(super::sink::Written::OverBudget(m)) => eprintln!("warning: {m}"),
                Err(e) => eprintln!("warning: {e:#}"),
            }
        }
    });
    (tx, task)
}

/// Server-side figures of every step from Prometheus, asked after `prom.settle` (so the last
/// scrape of the last window has landed), scoped to the target's pods and model. A failure
/// keeps the client results and says why in `metadata.serverMetricsError` (and on stderr).
pub async fn attach_server_figures(results: &mut Results, prom: &PlanPrometheus, model: &str) {
    tokio::time::sleep(prom.settle).await;
    let scope = crate::prom::Scope {
        namespace: prom.namespace.clone(),
        pod_regex: prom.pod_regex.clone(),
        model_name: Some(model.to_string()),
        gpu_labels: prom.gpu_labels.into(),
    };
    let failed = |results: &mut Results, e: String| {
        eprintln!(
            "warning: Prometheus {}: {e}; client results are kept",
            prom.url
        );
        let e: String = e.split_whitespace().collect::<Vec<_>>().join(" ");
        results.metadata.server_metrics_error = Some(e.chars().take(300).collect());
    };
    let collector = match crate::prom::Collector::new(&prom.url, scope) {
        Ok(c) => c,
        Err(e) => return failed(results, format!("{e:#}")),
    };
    for i in 0..results.steps.len() {
        let step = &results.steps[i];
        if step.server.is_some() {
            continue;
        }
        match collector.collect(step.window_start, step.window_end).await {
            Ok(m) => results.steps[i].server = Some(m),
            Err(e) => return failed(results, format!("{e:#}")),
        }
    }
}

/// A load pod's first step: the target check, from the pod (the tenant's network identity
/// and credentials, not the operator's). On success the plan carries the model to send and
/// the load may start (`true`). A target that never answers within `plan.target.wait`, or
/// lacks the model, is recorded as a marker next to the pod's results, which the operator
/// turns into the run's failure reason (`false`: end the pod cleanly); without a sink it is
/// an error.
pub async fn pod_target_check(
    plan: &mut Plan,
    sink: Option<&super::sink::ConfigMapSink>,
    every: Duration,
) -> anyhow::Result<bool> {
    let wanted = Some(plan.target.model.clone()).filter(|m| !m.trim().is_empty());
    let mix: Vec<String> = plan
        .workload
        .models
        .iter()
        .map(|m| m.name.clone())
        .collect();
    let checked = crate::loadgen::target::check(
        &plan.target.url,
        wanted.as_deref(),
        &mix,
        plan.target.wait,
        every,
    )
    .await;
    match checked {
        Ok(model) => {
            plan.target.model = model;
            Ok(true)
        }
        Err(problem) => {
            let Some(sink) = sink else {
                bail!("{problem}");
            };
            eprintln!("error: {problem}");
            sink.write_target_problem(&problem).await?;
            Ok(false)
        }
    }
}

/// `inferops loadgen`.
pub async fn loadgen(args: LoadgenArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.plan)
        .with_context(|| format!("reading plan {}", args.plan.display()))?;
    let mut plan = Plan::from_text(&text).with_context(|| format!("in {}", args.plan.display()))?;
    if let Some(i) = args.index {
        plan.parallelism.index = i;
        plan.validate()?;
    }
    let cancel = CancellationToken::new();
    cancel_on_signals(cancel.clone());
    let sink = match &args.results_configmap {
        Some(name) => {
            let index = plan.parallelism.index;
            let key = super::sink::key(&args.results_key_prefix, index);
            // One ConfigMap per pod: `{index}` in the name is this pod's index.
            let name = name.replace(
                crate::render::benchmark_run::INDEX_PLACEHOLDER,
                &index.to_string(),
            );
            Some(Arc::new(
                super::sink::ConfigMapSink::from_env(&name, key).await?,
            ))
        }
        None => None,
    };
    if !pod_target_check(&mut plan, sink.as_deref(), Duration::from_secs(2)).await? {
        return Ok(());
    }
    let writer = sink.clone().map(spawn_sink_writer);
    let mut observer = LoadgenObserver {
        out: args.out.clone(),
        steps_hint: plan.points().len(),
        sink: writer.as_ref().map(|(tx, _)| tx.clone()),
        records: plan.load.records.map(|r| {
            Arc::new(crate::loadgen::records::GzipBudgetSink::new(
                r.max_bytes as usize,
            ))
        }),
    };
    let records = observer.records.clone();
    // A restarted pod (the Job's backoff) continues after the steps it already wrote.
    let resume = match &sink {
        Some(sink) => sink.read().await.unwrap_or_else(|e| {
            eprintln!("warning: {e:#}; starting from the first step");
            None
        }),
        None => None,
    };
    if let Some(prior) = &resume {
        eprintln!(
            "found {} step(s) of an earlier attempt in the results ConfigMap",
            prior.steps.len()
        );
    }
    let options = RunOptions {
        tokenizer: args.tokenizer.clone(),
        resume,
        records: records.clone().map(|sink| crate::loadgen::run::RecordsTo {
            sink,
            itl: plan.load.records.is_some_and(|r| r.itl),
        }),
        ..Default::default()
    };
    let mut results = run_plan_with(&plan, &options, cancel, &mut observer).await?;
    drop(observer);
    // Server figures once, from the first pod (the windows are common to all pods).
    if let Some(prom) = &plan.prometheus
        && plan.parallelism.index == 0
    {
        attach_server_figures(&mut results, prom, &plan.target.model).await;
    }
    if let Some(r) = &records {
        let e = r.snapshot();
        if e.dropped > 0 {
            eprintln!(
                "warning: {} request records dropped: over load.records.maxBytes ({} bytes compressed); {} kept",
                e.dropped, e.max_bytes, e.count
            );
        }
        results.summary.records = Some(e);
    }
    if let (Some(sink), Some((tx, task))) = (&sink, writer) {
        drop(tx);
        let _ = task.await;
        // The final write must land: without it the operator has no results.
        if let super::sink::Written::OverBudget(m) = sink.write(&results).await? {
            eprintln!("warning: {m}; the operator fails the run with ResultsOverBudget");
        }
    }
    let s = &results.summary;
    println!(
        "done: {} steps, {} completed, {} failed, peak {:.0} out tok/s, {:.2} req/s",
        results.steps.len(),
        s.completed,
        s.failed,
        s.peak_output_throughput,
        s.peak_request_throughput
    );
    // Over the error budget is the operator's call (it reads the rows): exit 0 so the Job
    // does not retry a load that ran to its end.
    finish(&results, Some(&args.out), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paced_loads_parse_and_bad_ones_are_named() {
        assert_eq!(
            parse_paced("10000@200ms"),
            Ok((10_000, Duration::from_millis(200)))
        );
        assert!(
            parse_paced("1000")
                .unwrap_err()
                .contains("STREAMS@INTERVAL")
        );
        assert!(
            parse_paced("x@20ms")
                .unwrap_err()
                .contains("not a stream count")
        );
        assert!(parse_paced("0@20ms").unwrap_err().contains("above zero"));
    }
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn args(a: &[&str]) -> BenchArgs {
        Cli::try_parse_from(std::iter::once("bench").chain(a.iter().copied()))
            .unwrap()
            .bench
    }

    #[test]
    fn flags_build_a_plan() {
        let p = bench_plan(&args(&[]), None, "http://x", "m").unwrap();
        assert_eq!(p.load.concurrency, [1, 2, 4, 8, 16, 32]);
        assert_eq!(p.requests_per_step(), Some(64));
        let a = args(&[
            "--rate",
            "5,10",
            "--requests",
            "20",
            "--input-tokens",
            "100-200",
            "--api",
            "chat",
            "--no-stream",
            "--arrival",
            "constant",
            "--timeout",
            "2s",
        ]);
        let p = bench_plan(&a, None, "http://x", "m").unwrap();
        assert_eq!(p.load.mode, Mode::Rate);
        assert_eq!(p.load.rate, [5.0, 10.0]);
        assert_eq!(
            (p.load.requests_per_step, p.load.duration_per_step),
            (Some(20), None)
        );
        assert_eq!(
            p.workload.input_tokens,
            TokenCount::Range { min: 100, max: 200 }
        );
        assert!(!p.workload.stream);
        assert_eq!(p.load.request_timeout, Duration::from_secs(2));
        let p = bench_plan(
            &args(&["--saturate", "--slo-ttft-p95", "200ms", "--rate", "4"]),
            None,
            "u",
            "m",
        )
        .unwrap();
        let s = p.load.saturation.unwrap();
        assert_eq!(
            (s.start_rate, s.slo.ttft_p95),
            (4.0, Some(Duration::from_millis(200)))
        );
        let p = bench_plan(
            &args(&[
                "--saturate",
                "--concurrency",
                "2",
                "--max-concurrency",
                "40",
                "--saturation-tolerance",
                "0.1",
            ]),
            None,
            "u",
            "m",
        )
        .unwrap();
        assert_eq!(p.load.mode, Mode::Concurrency);
        let s = p.load.saturation.unwrap();
        assert_eq!((s.start_concurrency, s.max_concurrency), (2, 40));
        assert_eq!(s.tolerance, 0.1);
        let p = bench_plan(
            &args(&[
                "--slo",
                "ttft=200ms,tpot=10ms",
                "--min-goodput-ratio",
                "0.9",
            ]),
            None,
            "u",
            "m",
        )
        .unwrap();
        let g = p.load.goodput_slo.unwrap();
        assert_eq!(g.ttft, Some(Duration::from_millis(200)));
        assert_eq!(p.load.saturation.unwrap().slo.min_goodput_ratio, Some(0.9));
        assert!(Cli::try_parse_from(["bench", "--slo", "itl=5ms"]).is_err());
        assert!(Cli::try_parse_from(["bench", "--min-goodput-ratio", "0.9"]).is_err());
        assert!(Cli::try_parse_from(["bench", "--concurrency", "1", "--rate", "2"]).is_err());
        assert!(Cli::try_parse_from(["bench", "--input-tokens", "x"]).is_err());
        assert!(bench_plan(&args(&["--concurrency", "0"]), None, "u", "m").is_err());
    }

    #[test]
    fn results_are_written_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        let results = Results {
            metadata: crate::contract::results::Metadata::new(&Plan::new("http://x", "m")),
            steps: vec![],
            summary: crate::contract::results::Summary::of(&[], 0.01),
        };
        write_results(&path, &results).unwrap();
        let back: Results = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(back, results);
        assert!(!dir.path().join("r.json.tmp").exists());
    }

    #[test]
    fn a_load_pod_over_the_error_budget_exits_zero_but_bench_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        let mut results = Results {
            metadata: crate::contract::results::Metadata::new(&Plan::new("http://x", "m")),
            steps: vec![],
            summary: crate::contract::results::Summary::of(&[], 0.01),
        };
        results.summary.steps_over_error_budget = vec!["concurrency 4: 20% failed".into()];
        // `inferops loadgen` in a Job: the operator judges the rows; a non-zero exit would
        // make the Job rerun a load that ran to its end.
        assert!(finish(&results, Some(&path), false).is_ok());
        // `inferops bench` on a terminal: the exit status says it.
        let err = finish(&results, Some(&path), true).unwrap_err().to_string();
        assert!(err.contains("over the error budget"), "{err}");
    }
}
