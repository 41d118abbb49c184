//! The load generator's input: a [`Plan`] says what to call, with which requests, at which
//! load points. It is what the in-cluster load Job reads from its ConfigMap (JSON or YAML,
//! camelCase field names) and what `inferops bench` builds from flags or a BenchmarkRun file.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, ensure};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use super::slo::{GoodputSlo, Slo};
pub use crate::api::LoadPoint;

/// Everything one load-generator process needs to run a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// The OpenAI-compatible endpoint under test.
    pub target: Target,
    /// Which requests to send.
    #[serde(default)]
    pub workload: Workload,
    /// How hard and for how long, at each load point.
    #[serde(default)]
    pub load: Load,
    /// This process's share of a load split over several pods.
    #[serde(default)]
    pub parallelism: Parallelism,
    /// Where the load pod reads the server-side figures of every step after the load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PlanPrometheus>,
}

/// Server-side figures from Prometheus, read by the load (pod 0 of a split load) with its own
/// network identity once the last step is done: vLLM and DCGM metrics over each step's
/// measured window, scoped to the target's pods.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanPrometheus {
    /// Base URL of the Prometheus HTTP API.
    pub url: String,
    /// Namespace of the target's pods (unset: any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Regular expression of the target's pod names (unset: any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_regex: Option<String>,
    /// Label convention of the DCGM metrics.
    #[serde(default)]
    pub gpu_labels: crate::api::GpuLabels,
    /// Wait after the last step before asking, so that the last scrape of the window has
    /// landed (default 30s, kube-prometheus-stack's scrape interval).
    #[serde(default = "default_settle", with = "duration")]
    pub settle: Duration,
}

/// The default [`PlanPrometheus::settle`].
pub const DEFAULT_PROMETHEUS_SETTLE: Duration = Duration::from_secs(30);

fn default_settle() -> Duration {
    DEFAULT_PROMETHEUS_SETTLE
}

/// The server under test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// Base URL, e.g. `http://qwen.default.svc:8000` (a trailing `/v1` is accepted).
    pub url: String,
    /// Served model name sent in every request. Empty in a plan the operator writes for a
    /// URL target without `spec.target.model`: the load pod takes the only model the target
    /// lists (see [`crate::contract::target`]).
    #[serde(default)]
    pub model: String,
    /// How long the load pod waits for the target to answer `GET /v1/models` before it gives
    /// up (default 5 minutes).
    #[serde(default = "default_target_wait", with = "duration")]
    pub wait: Duration,
}

/// How long a load pod waits for the target by default.
pub const DEFAULT_TARGET_WAIT: Duration = Duration::from_secs(300);

fn default_target_wait() -> Duration {
    DEFAULT_TARGET_WAIT
}

/// The OpenAI API flavour to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Api {
    /// `POST /v1/completions` with a `prompt`.
    #[default]
    Completions,
    /// `POST /v1/chat/completions` with one user message.
    Chat,
}

impl Api {
    /// The spelling in plans and results (`completions`, `chat`).
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Completions => "completions",
            Api::Chat => "chat",
        }
    }

    /// The request path below the base URL.
    pub fn path(self) -> &'static str {
        match self {
            Api::Completions => "/v1/completions",
            Api::Chat => "/v1/chat/completions",
        }
    }
}

/// Where prompts come from. Written as `random`, `{sharegpt: {path: ..., outputFromDataset: false}}`
/// or `{sharedPrefix: {groups: 4, promptsPerGroup: 16, prefixTokens: 512, suffixTokens: 64}}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(try_from = "DatasetRepr", into = "DatasetRepr")]
pub enum Dataset {
    /// Synthetic prompts of random common English words (one word ≈ one token).
    #[default]
    Random,
    /// A ShareGPT-format JSON file (`[{"conversations": [{"from": "human", "value": ...}, ...]}]`).
    Sharegpt {
        /// Path of the JSON file.
        path: PathBuf,
        /// Use the length (in words) of the dataset's reply as each request's output length
        /// instead of `outputTokens`.
        output_from_dataset: bool,
    },
    /// `groups` x `promptsPerGroup` synthetic prompts: every prompt of a group starts with the
    /// group's `prefixTokens` words (a system prompt or a shared document) followed by its own
    /// random suffix, so a known fraction of prompt tokens can come from a prefix cache.
    SharedPrefix(SharedPrefix),
    /// A recorded trace to replay (JSONL, the Mooncake format): one request per line,
    /// `{"timestamp": MS, "input_length": N, "output_length": N, "hash_ids": [..]}`, sent at
    /// `timestamp / speedup` after the step starts (see [`TraceReplay`]). Equal `hash_ids`
    /// become identical `blockTokens`-word blocks of prompt text, so a prefix cache sees the
    /// sharing the trace recorded.
    Trace {
        /// Path of the JSONL file.
        path: PathBuf,
        /// Tokens (words) per hash block (Mooncake: 512).
        block_tokens: u32,
    },
    /// Custom prompts (JSONL): one request per line, `{"prompt": "..."}` or
    /// `{"messages": [{"role": ..., "content": ...}, ...]}`, each with an optional
    /// `max_tokens` (else `outputTokens`).
    Jsonl {
        /// Path of the JSONL file.
        path: PathBuf,
    },
}

impl Dataset {
    /// The kind's name in results and headers (`random`, `sharegpt`, `sharedPrefix`,
    /// `trace`, `jsonl`).
    pub fn kind(&self) -> &'static str {
        match self {
            Dataset::Random => "random",
            Dataset::Sharegpt { .. } => "sharegpt",
            Dataset::SharedPrefix(_) => "sharedPrefix",
            Dataset::Trace { .. } => "trace",
            Dataset::Jsonl { .. } => "jsonl",
        }
    }
}

/// Default tokens per `hash_ids` block of a trace (the Mooncake traces' 512).
pub const TRACE_BLOCK_TOKENS: u32 = 512;

/// Shape of a [`Dataset::SharedPrefix`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SharedPrefix {
    /// Number of distinct prefixes.
    pub groups: u32,
    /// Prompts per prefix.
    pub prompts_per_group: u32,
    /// Length of each group's shared prefix (words ≈ tokens).
    pub prefix_tokens: u32,
    /// Length of each prompt's unique suffix.
    pub suffix_tokens: TokenCount,
}

impl SharedPrefix {
    /// The intended share of prompt tokens that repeat an earlier prompt's prefix: every
    /// prompt of a group but the first reuses its `prefixTokens` (mean suffix length assumed).
    pub fn shared_fraction(&self) -> f64 {
        let per = f64::from(self.prefix_tokens) + self.suffix_tokens.mean();
        let total = per * f64::from(self.groups) * f64::from(self.prompts_per_group);
        let reused = f64::from(self.prefix_tokens)
            * f64::from(self.groups)
            * f64::from(self.prompts_per_group.saturating_sub(1));
        if total > 0.0 { reused / total } else { 0.0 }
    }
}

/// Serialized form of [`Dataset`] (YAML-friendly: no enum tags).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum DatasetRepr {
    Name(String),
    Sharegpt {
        sharegpt: SharegptRepr,
    },
    #[serde(rename_all = "camelCase")]
    SharedPrefix {
        shared_prefix: SharedPrefix,
    },
    Trace {
        trace: TraceRepr,
    },
    Jsonl {
        jsonl: JsonlRepr,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TraceRepr {
    path: PathBuf,
    #[serde(default = "default_block_tokens")]
    block_tokens: u32,
}

fn default_block_tokens() -> u32 {
    TRACE_BLOCK_TOKENS
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonlRepr {
    path: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SharegptRepr {
    path: PathBuf,
    #[serde(default)]
    output_from_dataset: bool,
}

impl TryFrom<DatasetRepr> for Dataset {
    type Error = String;
    fn try_from(r: DatasetRepr) -> Result<Dataset, String> {
        match r {
            DatasetRepr::Name(n) if n == "random" => Ok(Dataset::Random),
            DatasetRepr::Name(n) => Err(format!(
                "unknown dataset {n:?}: use random, {{sharegpt: {{path: FILE}}}}, \
                 {{trace: {{path: FILE}}}} or {{jsonl: {{path: FILE}}}}"
            )),
            DatasetRepr::Sharegpt { sharegpt } => Ok(Dataset::Sharegpt {
                path: sharegpt.path,
                output_from_dataset: sharegpt.output_from_dataset,
            }),
            DatasetRepr::SharedPrefix { shared_prefix } => Ok(Dataset::SharedPrefix(shared_prefix)),
            DatasetRepr::Trace { trace } => Ok(Dataset::Trace {
                path: trace.path,
                block_tokens: trace.block_tokens,
            }),
            DatasetRepr::Jsonl { jsonl } => Ok(Dataset::Jsonl { path: jsonl.path }),
        }
    }
}

impl From<Dataset> for DatasetRepr {
    fn from(d: Dataset) -> DatasetRepr {
        match d {
            Dataset::Random => DatasetRepr::Name("random".into()),
            Dataset::Sharegpt {
                path,
                output_from_dataset,
            } => DatasetRepr::Sharegpt {
                sharegpt: SharegptRepr {
                    path,
                    output_from_dataset,
                },
            },
            Dataset::SharedPrefix(shared_prefix) => DatasetRepr::SharedPrefix { shared_prefix },
            Dataset::Trace { path, block_tokens } => DatasetRepr::Trace {
                trace: TraceRepr { path, block_tokens },
            },
            Dataset::Jsonl { path } => DatasetRepr::Jsonl {
                jsonl: JsonlRepr { path },
            },
        }
    }
}

/// A token count: a fixed number (`256`), a normal distribution
/// (`{mean: 256, stddev: 64, min: 16, max: 1024}`, clipped to `min..=max`, by default
/// `1..=2×mean`) or a uniform range (`{min: 128, max: 512}`, inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenCount {
    /// Exactly this many.
    Fixed(u32),
    /// Normally distributed, rounded and clipped.
    Normal {
        /// Mean.
        mean: u32,
        /// Standard deviation.
        stddev: u32,
        /// Smallest value kept (default 1).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<u32>,
        /// Largest value kept (default twice the mean).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<u32>,
    },
    /// Uniformly drawn from `min..=max` for each prompt.
    Range {
        /// Smallest count.
        min: u32,
        /// Largest count.
        max: u32,
    },
}

impl TokenCount {
    /// Smallest possible value.
    pub fn min(self) -> u32 {
        match self {
            TokenCount::Fixed(n) => n,
            TokenCount::Normal { min, .. } => min.unwrap_or(1),
            TokenCount::Range { min, .. } => min,
        }
    }
    /// Largest possible value.
    pub fn max(self) -> u32 {
        match self {
            TokenCount::Fixed(n) => n,
            TokenCount::Normal { mean, max, .. } => max.unwrap_or(mean.saturating_mul(2).max(1)),
            TokenCount::Range { max, .. } => max,
        }
    }
    /// Expected value (of the unclipped distribution for `Normal`).
    pub fn mean(self) -> f64 {
        match self {
            TokenCount::Fixed(n) => f64::from(n),
            TokenCount::Normal { mean, .. } => f64::from(mean),
            TokenCount::Range { min, max } => (f64::from(min) + f64::from(max)) / 2.0,
        }
    }
    /// Checks that the distribution can produce a value of at least `floor`.
    pub fn check(self, field: &str, floor: u32) -> anyhow::Result<()> {
        ensure!(
            self.min() >= floor && self.min() <= self.max(),
            "{field} must be >= {floor} and min <= max"
        );
        if let TokenCount::Normal { mean, .. } = self {
            ensure!(
                (self.min()..=self.max()).contains(&mean),
                "{field}: the mean must lie within min..max"
            );
        }
        Ok(())
    }
}

impl std::fmt::Display for TokenCount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenCount::Fixed(n) => write!(f, "{n}"),
            TokenCount::Normal { mean, stddev, .. } => write!(f, "{mean}±{stddev}"),
            TokenCount::Range { min, max } => write!(f, "{min}-{max}"),
        }
    }
}

/// The requests to send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    /// API flavour.
    #[serde(default)]
    pub api: Api,
    /// Prompt source.
    #[serde(default)]
    pub dataset: Dataset,
    /// Prompt length of synthetic prompts (in words ≈ tokens).
    #[serde(default = "default_input")]
    pub input_tokens: TokenCount,
    /// `max_tokens` of every request.
    #[serde(default = "default_output")]
    pub output_tokens: TokenCount,
    /// Send `ignore_eos: true` so every request produces exactly `max_tokens` (vLLM extension).
    #[serde(default = "yes")]
    pub ignore_eos: bool,
    /// Seed of the prompt set and of Poisson arrivals: the same seed gives the same requests.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Stream the response (SSE). Without streaming only end-to-end latency is meaningful.
    #[serde(default = "yes")]
    pub stream: bool,
    /// How many distinct prompts to prepare (they are reused round-robin). Default: the
    /// number of requests in the largest step, at most 1024.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_prompts: Option<u32>,
    /// Multi-turn conversations instead of independent requests (see [`Conversation`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<Conversation>,
    /// Weighted model mix: each request goes to one of these served models (or LoRA
    /// adapters). Every model gets its weight's share of the prepared prompts (exactly, by
    /// largest remainder), in an order drawn from the seed. Empty: every request goes to
    /// `target.model`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<ModelWeight>,
    /// Client-side cancellation: a fraction of the requests is abandoned after a delay (what
    /// closed chat tabs do to an engine). Counted as `cancelled`, apart from errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel: Option<Cancel>,
}

/// Which requests the client abandons: `{fraction: 0.1, after: 2s}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Cancel {
    /// Share of the requests cancelled, 0 < fraction <= 1 (each prepared request is picked
    /// from the seed with this probability).
    pub fraction: f64,
    /// Time after the send at which a picked request is abandoned (its connection closed),
    /// unless it finished before.
    #[serde(with = "duration")]
    pub after: Duration,
}

/// One entry of a model mix: `{name: lora-a, weight: 30}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelWeight {
    /// Served model name (a base model or a LoRA adapter).
    pub name: String,
    /// Relative weight (> 0): the model gets `weight / sum of weights` of the requests.
    pub weight: u32,
}

/// Multi-turn sessions: each session sends `turns` requests one after the other; every turn
/// carries the whole history (the earlier user messages and the answers actually received,
/// as streamed) plus a new user message, and the next turn follows `thinkTime` after the
/// answer. The first user message comes from the dataset (a synthetic prompt of
/// `inputTokens`, or a ShareGPT conversation's first human turn); later ones are synthetic
/// prompts of `userTokens`, or with ShareGPT the conversation's recorded later human turns
/// (a session then ends with its recorded turns, at most `turns`). Closed loop: the
/// concurrency is the number of sessions in progress; open loop: the rate is the session
/// arrival rate. Every turn is one request of the step's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Conversation {
    /// Turns per session (a count: fixed, uniform range or clipped normal).
    pub turns: TokenCount,
    /// Length of each later user message (default: `inputTokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_tokens: Option<TokenCount>,
    /// Pause between a turn's answer and the next turn (the lower bound with `thinkTimeMax`).
    #[serde(default, with = "duration")]
    pub think_time: Duration,
    /// Upper bound of a uniformly drawn think time.
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub think_time_max: Option<Duration>,
}

impl Conversation {
    /// The expected number of turns per session.
    pub fn mean_turns(&self) -> f64 {
        self.turns.mean()
    }
}

/// Replay of a [`Dataset::Trace`]: each step sends the trace at one speed-up factor (the
/// sweep's load points), every record at `(timestamp - first timestamp) / speedup` after the
/// step's start. A step ends when the trace ends, or earlier at `durationPerStep` (the cap)
/// or `requestsPerStep`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TraceReplay {
    /// Speed-up factors, one step each (`[1, 2, 4]`: the trace at 1x, 2x, 4x).
    pub speedups: Vec<f64>,
}

/// How the open-loop rate rises at the start of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RampShape {
    /// From 10% of the step's rate to 100% in equal increments per unit of time.
    #[default]
    Linear,
    /// From 10% to 100%, by the same factor per unit of time.
    Exponential,
}

/// A ramp-up of the open-loop rate at the start of every step (the session arrival rate for
/// conversations). Unless `measured`, the measured window starts when the ramp ends (or
/// after the warmup, whichever is later); with `measured` the ramp is part of the window
/// (after the warmup).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ramp {
    /// Shape of the rise.
    #[serde(default)]
    pub shape: RampShape,
    /// How long the rise takes (from the step's start).
    #[serde(with = "duration")]
    pub duration: Duration,
    /// Count the ramp's requests in the measured window.
    #[serde(default)]
    pub measured: bool,
}

/// The fraction of the step's rate a ramp starts at.
pub const RAMP_START_FRACTION: f64 = 0.1;

impl Ramp {
    /// The fraction (0.1..=1) of the step's rate at `t` after the step's start.
    pub fn fraction(&self, t: Duration) -> f64 {
        if self.duration.is_zero() || t >= self.duration {
            return 1.0;
        }
        let x = t.as_secs_f64() / self.duration.as_secs_f64();
        match self.shape {
            RampShape::Linear => RAMP_START_FRACTION + (1.0 - RAMP_START_FRACTION) * x,
            RampShape::Exponential => RAMP_START_FRACTION.powf(1.0 - x),
        }
    }
}

impl Workload {
    /// The output lengths, for headers: `128`, `recorded` (a trace's own).
    pub fn output_label(&self) -> String {
        match &self.dataset {
            Dataset::Trace { .. } => "recorded".into(),
            _ => self.output_tokens.to_string(),
        }
    }

    /// What the prompts are, for headers: `256`, `sharegpt`, `8x16 prompts sharing 512 + 128±32`,
    /// `256 (4-turn sessions)` (the first turn's prompt).
    pub fn input_label(&self) -> String {
        let first = match &self.dataset {
            Dataset::Random => self.input_tokens.to_string(),
            Dataset::Sharegpt { .. } => "sharegpt".into(),
            Dataset::SharedPrefix(sp) => format!(
                "{}x{} prompts sharing {} + {}",
                sp.groups, sp.prompts_per_group, sp.prefix_tokens, sp.suffix_tokens
            ),
            Dataset::Trace { .. } => "trace".into(),
            Dataset::Jsonl { .. } => "jsonl".into(),
        };
        match &self.conversation {
            Some(c) => format!("{first} ({}-turn sessions)", c.turns),
            None => first,
        }
    }
}

fn default_input() -> TokenCount {
    TokenCount::Fixed(256)
}
fn default_output() -> TokenCount {
    TokenCount::Fixed(128)
}
fn yes() -> bool {
    true
}
fn default_seed() -> u64 {
    42
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            api: Api::default(),
            dataset: Dataset::default(),
            input_tokens: default_input(),
            output_tokens: default_output(),
            ignore_eos: true,
            seed: default_seed(),
            stream: true,
            num_prompts: None,
            conversation: None,
            models: Vec::new(),
            cancel: None,
        }
    }
}

/// Closed loop (fixed number in flight) or open loop (fixed arrival rate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Mode {
    /// N requests always in flight; each finished request immediately starts the next.
    #[default]
    Concurrency,
    /// Requests arrive at a fixed rate whatever the server does.
    Rate,
}

impl Mode {
    /// The spelling in plans and results (`concurrency`, `rate`).
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Concurrency => "concurrency",
            Mode::Rate => "rate",
        }
    }
}

/// Inter-arrival distribution in open-loop mode. Written `poisson`, `constant` or
/// `{gamma: {burstiness: 0.5}}`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(try_from = "ArrivalRepr", into = "ArrivalRepr")]
pub enum Arrival {
    /// Exponential gaps (a Poisson process), like `vllm bench serve --burstiness 1`.
    #[default]
    Poisson,
    /// Evenly spaced arrivals.
    Constant,
    /// Gamma-distributed gaps with shape `burstiness` and scale `1 / (rate × burstiness)`
    /// (`vllm bench serve --burstiness`): the mean rate is unchanged, 1 is Poisson, below 1
    /// burstier, above 1 more regular.
    Gamma {
        /// Shape of the gamma distribution (> 0).
        burstiness: f64,
    },
}

/// Serialized form of [`Arrival`] (YAML-friendly: no enum tags).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum ArrivalRepr {
    Name(String),
    Gamma { gamma: GammaRepr },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GammaRepr {
    burstiness: f64,
}

impl TryFrom<ArrivalRepr> for Arrival {
    type Error = String;
    fn try_from(r: ArrivalRepr) -> Result<Arrival, String> {
        match r {
            ArrivalRepr::Name(n) if n == "poisson" => Ok(Arrival::Poisson),
            ArrivalRepr::Name(n) if n == "constant" => Ok(Arrival::Constant),
            ArrivalRepr::Name(n) => Err(format!(
                "unknown arrival {n:?}: use poisson, constant or {{gamma: {{burstiness: B}}}}"
            )),
            ArrivalRepr::Gamma { gamma } => Ok(Arrival::Gamma {
                burstiness: gamma.burstiness,
            }),
        }
    }
}

impl From<Arrival> for ArrivalRepr {
    fn from(a: Arrival) -> ArrivalRepr {
        match a {
            Arrival::Poisson => ArrivalRepr::Name("poisson".into()),
            Arrival::Constant => ArrivalRepr::Name("constant".into()),
            Arrival::Gamma { burstiness } => ArrivalRepr::Gamma {
                gamma: GammaRepr { burstiness },
            },
        }
    }
}

/// How much load, for how long.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Load {
    /// Closed or open loop.
    #[serde(default)]
    pub mode: Mode,
    /// Load points in `concurrency` mode.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub concurrency: Vec<u32>,
    /// Load points in `rate` mode (requests per second).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rate: Vec<f64>,
    /// Arrival process in `rate` mode.
    #[serde(default)]
    pub arrival: Arrival,
    /// Measured requests per step. When both this and `durationPerStep` are set, a step ends
    /// at whichever comes first. Default when neither is set: 200.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_step: Option<u64>,
    /// Measured time per step (e.g. `60s`).
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub duration_per_step: Option<Duration>,
    /// Unmeasured load before each step (e.g. `10s`).
    #[serde(default, with = "duration")]
    pub warmup: Duration,
    /// Per-request deadline, counted from the (scheduled) send time.
    #[serde(default = "default_timeout", with = "duration")]
    pub request_timeout: Duration,
    /// Upper bound of requests in flight in `rate` mode (late requests still count their
    /// latency from the scheduled time).
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: u32,
    /// A step whose error rate exceeds this fails the run (exit status, summary).
    #[serde(default = "default_max_error_rate")]
    pub max_error_rate: f64,
    /// Per-request bounds for goodput: each step reports the fraction of requests that met
    /// every bound and the rate of those requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goodput_slo: Option<GoodputSlo>,
    /// Search the load at which an SLO breaks (replaces the listed `rate` / `concurrency`
    /// points, which are not run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saturation: Option<Saturation>,
    /// Time allowed for in-flight requests to finish between steps aligned to
    /// `parallelism.startAt` (split runs with `durationPerStep`).
    #[serde(default = "default_step_slack", with = "duration")]
    pub step_slack: Duration,
    /// Replay a [`Dataset::Trace`] at these speed-ups (replaces `rate` / `concurrency`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<TraceReplay>,
    /// Ramp the open-loop rate up at the start of every step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp: Option<Ramp>,
    /// Times each step (each probe of a search) is run; with more than one the step's
    /// results merge the trials and report their spread (`trials` of each step).
    #[serde(default = "default_trials", skip_serializing_if = "is_one")]
    pub trials: u32,
    /// Keep per-request records in the results (BenchmarkRun `load.records`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<RecordsPlan>,
}

/// Per-request records a load pod embeds in its results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordsPlan {
    /// Compressed bytes kept at most.
    pub max_bytes: u32,
    /// Also keep inter-token gaps.
    #[serde(default)]
    pub itl: bool,
}

/// Default of `load.records.maxBytes`.
pub const DEFAULT_RECORDS_BYTES: u32 = 256 * 1024;

/// Most trials of a step.
pub const MAX_TRIALS: u32 = 50;

fn default_trials() -> u32 {
    1
}
fn is_one(n: &u32) -> bool {
    *n == 1
}

fn default_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_max_in_flight() -> u32 {
    10_000
}
fn default_max_error_rate() -> f64 {
    0.01
}

impl Default for Load {
    fn default() -> Self {
        Load {
            mode: Mode::Concurrency,
            concurrency: vec![1, 2, 4, 8, 16, 32],
            rate: Vec::new(),
            arrival: Arrival::Poisson,
            requests_per_step: None,
            duration_per_step: None,
            warmup: Duration::ZERO,
            request_timeout: default_timeout(),
            max_in_flight: default_max_in_flight(),
            max_error_rate: default_max_error_rate(),
            goodput_slo: None,
            saturation: None,
            step_slack: default_step_slack(),
            trace: None,
            ramp: None,
            trials: default_trials(),
            records: None,
        }
    }
}

/// Saturation search: grow the load geometrically until the SLO breaks, then bisect between
/// the last load that held and the first that broke until the bracket is within `tolerance`.
/// In `rate` mode it searches the request rate (`startRate`..`maxRate`), in `concurrency`
/// mode the number of requests in flight (`startConcurrency`..`maxConcurrency`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Saturation {
    /// The objectives that define "saturated" (p95 latencies, error rate, goodput ratio).
    /// In `rate` mode a step whose completions fall behind its arrivals is saturated too.
    #[serde(default)]
    pub slo: Slo,
    /// First rate tried (requests per second, `rate` mode).
    #[serde(default = "default_start_rate")]
    pub start_rate: f64,
    /// Highest rate tried (`rate` mode).
    #[serde(default = "default_max_rate")]
    pub max_rate: f64,
    /// Each growing step multiplies the load by this.
    #[serde(default = "default_step_factor")]
    pub step_factor: f64,
    /// Stop bisecting once `(firstBroken - highestOk) / highestOk` is at most this.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// First concurrency tried (`concurrency` mode).
    #[serde(default = "default_start_concurrency")]
    pub start_concurrency: u32,
    /// Highest concurrency tried (`concurrency` mode).
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: u32,
}

fn default_start_rate() -> f64 {
    1.0
}
fn default_max_rate() -> f64 {
    100.0
}
fn default_step_factor() -> f64 {
    2.0
}
/// Default relative width of the saturation bracket (5%).
pub fn default_tolerance() -> f64 {
    0.05
}
fn default_start_concurrency() -> u32 {
    1
}
fn default_max_concurrency() -> u32 {
    256
}

impl Default for Saturation {
    fn default() -> Self {
        Saturation {
            slo: Slo::default(),
            start_rate: default_start_rate(),
            max_rate: default_max_rate(),
            step_factor: default_step_factor(),
            tolerance: default_tolerance(),
            start_concurrency: default_start_concurrency(),
            max_concurrency: default_max_concurrency(),
        }
    }
}

/// This process's share of a split load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Parallelism {
    /// 0-based index of this pod.
    #[serde(default)]
    pub index: u32,
    /// Number of pods sharing the load.
    #[serde(default = "one")]
    pub count: u32,
    /// Wall-clock barrier: wait until this instant before the first step, so every pod's
    /// step windows line up. With `load.durationPerStep`, step `i` also starts no earlier than
    /// `startAt + i × (warmup + durationPerStep + load.stepSlack)`, keeping later steps aligned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<DateTime<Utc>>,
}

fn default_step_slack() -> Duration {
    Duration::from_secs(5)
}

fn one() -> u32 {
    1
}

impl Default for Parallelism {
    fn default() -> Self {
        Parallelism {
            index: 0,
            count: 1,
            start_at: None,
        }
    }
}

/// Splits `total` over `count` parts; part `index` gets its share (remainder to low indices).
pub fn share_u64(total: u64, index: u32, count: u32) -> u64 {
    let (index, count) = (u64::from(index), u64::from(count.max(1)));
    total / count + u64::from(index < total % count)
}

impl LoadPoint {
    /// This pod's part of the load point.
    pub fn share(self, p: &Parallelism) -> LoadPoint {
        match self {
            LoadPoint::Concurrency(c) => {
                LoadPoint::Concurrency(share_u64(u64::from(c), p.index, p.count) as u32)
            }
            LoadPoint::Rate(r) => LoadPoint::Rate(r / f64::from(p.count.max(1))),
        }
    }
}

impl Plan {
    /// A plan against `url`/`model` with every other field at its default.
    pub fn new(url: impl Into<String>, model: impl Into<String>) -> Plan {
        Plan {
            target: Target {
                url: url.into(),
                model: model.into(),
                wait: default_target_wait(),
            },
            workload: Workload::default(),
            load: Load::default(),
            parallelism: Parallelism::default(),
            prometheus: None,
        }
    }

    /// Reads a plan from JSON or YAML text (YAML is a superset of JSON).
    pub fn from_text(text: &str) -> anyhow::Result<Plan> {
        let plan: Plan = serde_yaml::from_str(text).context("parsing the plan")?;
        plan.validate()?;
        Ok(plan)
    }

    /// Checks the plan for values that cannot run.
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(!self.target.url.trim().is_empty(), "target.url is empty");
        let w = &self.workload;
        w.input_tokens.check("workload.inputTokens", 1)?;
        w.output_tokens.check("workload.outputTokens", 1)?;
        if let Dataset::SharedPrefix(sp) = &w.dataset {
            ensure!(
                sp.groups >= 1 && sp.prompts_per_group >= 1,
                "workload.dataset.sharedPrefix: groups and promptsPerGroup must be >= 1"
            );
            ensure!(
                u64::from(sp.groups) * u64::from(sp.prompts_per_group) <= 1_000_000,
                "workload.dataset.sharedPrefix: at most 1000000 prompts (groups x promptsPerGroup)"
            );
            sp.suffix_tokens
                .check("workload.dataset.sharedPrefix.suffixTokens", 0)?;
            ensure!(
                sp.prefix_tokens >= 1 || sp.suffix_tokens.min() >= 1,
                "workload.dataset.sharedPrefix: prompts must not be empty"
            );
        }
        if let Some(c) = &w.conversation {
            c.turns.check("workload.conversation.turns", 1)?;
            ensure!(
                c.turns.max() <= 1000,
                "workload.conversation.turns: at most 1000 turns per session"
            );
            if let Some(u) = c.user_tokens {
                u.check("workload.conversation.userTokens", 1)?;
            }
            ensure!(
                c.think_time_max.is_none_or(|m| m >= c.think_time),
                "workload.conversation.thinkTimeMax must be >= thinkTime"
            );
            ensure!(
                !matches!(w.dataset, Dataset::Trace { .. }),
                "workload.conversation: a trace replays its own requests; drop conversation or use another dataset"
            );
        }
        let is_trace = matches!(w.dataset, Dataset::Trace { .. });
        if let Dataset::Trace { block_tokens, .. } = w.dataset {
            ensure!(
                block_tokens >= 1,
                "workload.dataset.trace.blockTokens must be >= 1"
            );
        }
        let mut names = std::collections::BTreeSet::new();
        for m in &w.models {
            ensure!(
                !m.name.trim().is_empty(),
                "workload.models: a name is empty"
            );
            ensure!(
                m.weight > 0,
                "workload.models: weight of {:?} must be > 0",
                m.name
            );
            ensure!(
                names.insert(m.name.as_str()),
                "workload.models: {:?} is listed twice",
                m.name
            );
        }
        ensure!(
            (w.models.is_empty() && w.cancel.is_none())
                || (w.conversation.is_none()
                    && !matches!(w.dataset, Dataset::Trace { .. } | Dataset::Jsonl { .. })),
            "workload.models and workload.cancel apply to random, sharegpt and sharedPrefix \
             prompts, not yet to conversations, traces or JSONL prompts"
        );
        if let Some(c) = &w.cancel {
            ensure!(
                c.fraction.is_finite() && c.fraction > 0.0 && c.fraction <= 1.0,
                "workload.cancel.fraction must be within (0, 1]"
            );
            ensure!(!c.after.is_zero(), "workload.cancel.after must be > 0");
        }
        let l = &self.load;
        ensure!(
            is_trace == l.trace.is_some(),
            "a trace dataset needs load.trace (the speed-ups), and load.trace needs a trace dataset"
        );
        if let Some(t) = &l.trace {
            ensure!(
                !t.speedups.is_empty(),
                "load.trace.speedups: list at least one speed-up"
            );
            ensure!(
                t.speedups.iter().all(|s| s.is_finite() && *s > 0.0),
                "load.trace.speedups must be > 0"
            );
            ensure!(
                l.mode == Mode::Rate && l.saturation.is_none(),
                "load.trace: a trace replay is open loop (mode rate) without saturation search"
            );
        }
        if let Some(r) = &l.ramp {
            ensure!(!r.duration.is_zero(), "load.ramp.duration must be > 0");
            ensure!(
                l.mode == Mode::Rate && l.trace.is_none(),
                "load.ramp ramps an open-loop rate: it needs mode rate (and no trace replay)"
            );
        }
        if let Arrival::Gamma { burstiness } = l.arrival {
            ensure!(
                burstiness.is_finite() && burstiness > 0.0,
                "load.arrival.gamma.burstiness must be > 0"
            );
        }
        ensure!(
            !l.request_timeout.is_zero(),
            "load.requestTimeout must be > 0"
        );
        ensure!(
            l.requests_per_step != Some(0),
            "load.requestsPerStep must be > 0"
        );
        ensure!(
            l.duration_per_step != Some(Duration::ZERO),
            "load.durationPerStep must be > 0"
        );
        ensure!(l.max_in_flight >= 1, "load.maxInFlight must be >= 1");
        ensure!(
            (1..=MAX_TRIALS).contains(&l.trials),
            "load.trials must be within 1..{MAX_TRIALS}"
        );
        ensure!(
            l.records.is_none_or(|r| r.max_bytes >= 1024),
            "load.records.maxBytes must be at least 1024"
        );
        ensure!(
            (0.0..=1.0).contains(&l.max_error_rate),
            "load.maxErrorRate must be within 0..1"
        );
        if let Some(g) = &l.goodput_slo {
            ensure!(
                g.is_set(),
                "load.goodputSlo: set at least one of ttft, tpot, e2e"
            );
        }
        if let Some(s) = &l.saturation {
            ensure!(
                s.slo.min_goodput_ratio.is_none() || l.goodput_slo.is_some(),
                "saturation.slo.minGoodputRatio needs load.goodputSlo (the per-request bounds)"
            );
            ensure!(
                s.slo
                    .min_goodput_ratio
                    .is_none_or(|r| (0.0..=1.0).contains(&r)),
                "saturation.slo.minGoodputRatio must be within 0..1"
            );
            ensure!(s.step_factor > 1.0, "saturation.stepFactor must be > 1");
            ensure!(
                s.tolerance > 0.0 && s.tolerance < 1.0,
                "saturation.tolerance must be within (0, 1)"
            );
            ensure!(
                self.parallelism.count <= 1,
                "a saturation search cannot be split over load pods: each pod would judge the SLO on its own share (use parallelism 1)"
            );
        }
        match (l.mode, &l.saturation) {
            (Mode::Rate, Some(s)) => {
                ensure!(
                    s.start_rate > 0.0 && s.max_rate >= s.start_rate,
                    "saturation needs 0 < startRate <= maxRate"
                );
            }
            (Mode::Concurrency, Some(s)) => {
                ensure!(
                    s.start_concurrency >= 1 && s.max_concurrency >= s.start_concurrency,
                    "saturation needs 1 <= startConcurrency <= maxConcurrency"
                );
            }
            (Mode::Concurrency, None) => {
                ensure!(!l.concurrency.is_empty(), "load.concurrency is empty");
                ensure!(
                    l.concurrency.iter().all(|&c| c >= 1),
                    "load.concurrency values must be >= 1"
                );
            }
            (Mode::Rate, None) if l.trace.is_some() => {}
            (Mode::Rate, None) => {
                ensure!(!l.rate.is_empty(), "load.rate is empty");
                ensure!(
                    l.rate.iter().all(|r| r.is_finite() && *r > 0.0),
                    "load.rate values must be > 0"
                );
            }
        }
        let p = &self.parallelism;
        ensure!(
            p.count >= 1 && p.index < p.count,
            "parallelism.index must be < parallelism.count"
        );
        Ok(())
    }

    /// The fixed sweep's load points (whole-run values, before splitting). Empty for a
    /// saturation search, whose points depend on the results. A trace replay has one point
    /// per speed-up, `Rate(speedup)` here; its results record the trace's offered rate
    /// (records per second of the trace × speed-up) instead.
    pub fn points(&self) -> Vec<LoadPoint> {
        if let Some(t) = &self.load.trace {
            return t.speedups.iter().map(|&s| LoadPoint::Rate(s)).collect();
        }
        match (self.load.mode, &self.load.saturation) {
            (_, Some(_)) => Vec::new(),
            (Mode::Concurrency, None) => self
                .load
                .concurrency
                .iter()
                .map(|&c| LoadPoint::Concurrency(c))
                .collect(),
            (Mode::Rate, None) => self.load.rate.iter().map(|&r| LoadPoint::Rate(r)).collect(),
        }
    }

    /// When slot `index` may start: aligned slots after `parallelism.startAt` when steps are
    /// time-bounded, else `None` (start right away). Every trial of a step has its own slot:
    /// trial `t` of step `s` is slot `s * trials + t`.
    pub fn step_slot(&self, index: usize) -> Option<DateTime<Utc>> {
        let start = self.parallelism.start_at?;
        let duration = self.load.duration_per_step?;
        let slot = self.load.warmup + duration + self.load.step_slack;
        let offset = chrono::Duration::from_std(slot * index as u32).ok()?;
        Some(start + offset)
    }

    /// Measured requests per step for the whole run, `None` when the step is time-bounded
    /// only. Applies the default of 200 when neither bound is set.
    pub fn requests_per_step(&self) -> Option<u64> {
        if self.load.trace.is_some() {
            // A trace replay runs the whole trace unless bounded.
            return self.load.requests_per_step;
        }
        match (self.load.requests_per_step, self.load.duration_per_step) {
            (None, None) => Some(200),
            (r, _) => r,
        }
    }
}

/// Serde helpers for durations written as humantime strings ("60s", "500ms") or seconds.
pub mod duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Text(String),
        Secs(f64),
    }

    /// Parses "1m30s", "250ms", "60" (seconds) and the like.
    pub fn parse(text: &str) -> Result<Duration, String> {
        let t = text.trim();
        if let Ok(secs) = t.parse::<f64>() {
            return Duration::try_from_secs_f64(secs).map_err(|e| format!("{text:?}: {e}"));
        }
        humantime::parse_duration(t).map_err(|e| format!("{text:?}: {e}"))
    }

    /// Writes a duration as a humantime string.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    /// Reads a humantime string or a number of seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Repr::deserialize(d)? {
            Repr::Text(t) => parse(&t).map_err(serde::de::Error::custom),
            Repr::Secs(s) => Duration::try_from_secs_f64(s).map_err(serde::de::Error::custom),
        }
    }
}

/// [`duration`] for `Option<Duration>`.
pub mod opt_duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Writes `Some` as a humantime string, `None` as null.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::duration::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    /// Reads null, a humantime string or a number of seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct W(#[serde(with = "super::duration")] Duration);
        Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_serde_spelling() {
        for api in [Api::Completions, Api::Chat] {
            assert_eq!(serde_json::to_value(api).unwrap(), api.as_str());
        }
        for mode in [Mode::Concurrency, Mode::Rate] {
            assert_eq!(serde_json::to_value(mode).unwrap(), mode.as_str());
        }
    }

    #[test]
    fn minimal_yaml_gets_defaults() {
        let p = Plan::from_text("target: {url: 'http://x:8000', model: m}\n").unwrap();
        assert_eq!(p.workload.input_tokens, TokenCount::Fixed(256));
        assert_eq!(p.load.request_timeout, Duration::from_secs(60));
        assert_eq!(p.points().len(), 6);
        assert_eq!(p.requests_per_step(), Some(200));
    }

    #[test]
    fn full_yaml_round_trips_through_json() {
        let text = r#"
target: {url: "http://x", model: m}
workload: {api: chat, dataset: {sharegpt: {path: /d.json, outputFromDataset: true}},
           inputTokens: {min: 10, max: 20}, outputTokens: 64, seed: 7, stream: false}
load: {mode: rate, arrival: constant, durationPerStep: 1m30s, warmup: 500ms,
       requestTimeout: 5, saturation: {slo: {ttftP95: 500ms, itlP95: 50ms}, maxRate: 64}}
parallelism: {index: 0, count: 1, startAt: "2026-01-01T00:00:00Z"}
"#;
        let p = Plan::from_text(text).unwrap();
        assert_eq!(p.workload.api, Api::Chat);
        assert_eq!(
            p.workload.input_tokens,
            TokenCount::Range { min: 10, max: 20 }
        );
        assert_eq!(p.load.duration_per_step, Some(Duration::from_secs(90)));
        assert_eq!(p.load.warmup, Duration::from_millis(500));
        assert_eq!(p.load.request_timeout, Duration::from_secs(5));
        let s = p.load.saturation.as_ref().unwrap();
        assert_eq!(s.slo.itl_p95, Some(Duration::from_millis(50)));
        assert_eq!(s.max_rate, 64.0);
        assert!(p.points().is_empty());
        assert_eq!(p.requests_per_step(), None);
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains("\"durationPerStep\":\"1m 30s\""), "{json}");
        assert_eq!(Plan::from_text(&json).unwrap(), p);
    }

    #[test]
    fn gamma_arrivals_and_new_lengths_parse() {
        let p = Plan::from_text(
            "target: {url: x, model: m}\nload: {mode: rate, rate: [2], arrival: {gamma: {burstiness: 0.5}}}\n\
             workload: {inputTokens: {mean: 100, stddev: 10}, dataset: {sharedPrefix: \
             {groups: 2, promptsPerGroup: 3, prefixTokens: 50, suffixTokens: {min: 1, max: 4}}}}",
        )
        .unwrap();
        assert_eq!(p.load.arrival, Arrival::Gamma { burstiness: 0.5 });
        assert!(matches!(
            p.workload.input_tokens,
            TokenCount::Normal {
                mean: 100,
                stddev: 10,
                min: None,
                max: None
            }
        ));
        assert!(matches!(p.workload.dataset, Dataset::SharedPrefix(_)));
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(Plan::from_text(&json).unwrap(), p);
        assert_eq!(
            Plan::from_text("target: {url: x, model: m}\nworkload: {inputTokens: 256}")
                .unwrap()
                .workload
                .input_tokens,
            TokenCount::Fixed(256),
            "the old spellings still work"
        );
    }

    #[test]
    fn invalid_plans_are_rejected() {
        for bad in [
            "target: {url: '', model: m}",
            "target: {url: x, model: m}\nload: {concurrency: []}",
            "target: {url: x, model: m}\nload: {mode: rate}",
            "target: {url: x, model: m}\nload: {mode: rate, rate: [0]}",
            "target: {url: x, model: m}\nparallelism: {index: 2, count: 2}",
            "target: {url: x, model: m}\nload: {saturation: {startConcurrency: 0}}",
            "target: {url: x, model: m}\nload: {mode: rate, saturation: {tolerance: 0}}",
            "target: {url: x, model: m}\nload: {mode: rate, saturation: {}}\nparallelism: {count: 2}",
            "target: {url: x, model: m}\nworkload: {outputTokens: 0}",
            "target: {url: x, model: m}\nload: {requestTimeout: nonsense}",
            "target: {url: x, model: m}\nload: {arrival: {gamma: {burstiness: 0}}}",
            "target: {url: x, model: m}\nworkload: {inputTokens: {mean: 5, stddev: 1, min: 9}}",
            "target: {url: x, model: m}\nworkload: {models: [{name: a, weight: 1}, {name: a, weight: 2}]}",
            "target: {url: x, model: m}\nworkload: {models: [{name: a, weight: 0}]}",
            "target: {url: x, model: m}\nworkload: {models: [{name: '', weight: 1}]}",
            "target: {url: x, model: m}\nworkload: {cancel: {fraction: 0, after: 1s}}",
            "target: {url: x, model: m}\nworkload: {cancel: {fraction: 1.5, after: 1s}}",
            "target: {url: x, model: m}\nworkload: {cancel: {fraction: 0.5, after: 0s}}",
            "target: {url: x, model: m}\nworkload: {dataset: {sharedPrefix: {groups: 0, promptsPerGroup: 1, prefixTokens: 5, suffixTokens: 5}}}",
            "target: {url: x, model: m}\nworkload: {conversation: {turns: 0}}",
            "target: {url: x, model: m}\nworkload: {conversation: {turns: 2, thinkTime: 2s, thinkTimeMax: 1s}}",
            "target: {url: x, model: m}\nworkload: {dataset: {trace: {path: t}}}\nload: {mode: rate}",
            "target: {url: x, model: m}\nload: {mode: rate, rate: [1], trace: {speedups: [1]}}",
            "target: {url: x, model: m}\nworkload: {dataset: {trace: {path: t}}}\nload: {mode: rate, trace: {speedups: [0]}}",
            "target: {url: x, model: m}\nworkload: {dataset: {trace: {path: t}}}\nload: {mode: concurrency, trace: {speedups: [1]}}",
            "target: {url: x, model: m}\nworkload: {dataset: {trace: {path: t}}, conversation: {turns: 2}}\nload: {mode: rate, trace: {speedups: [1]}}",
            "target: {url: x, model: m}\nload: {concurrency: [1], ramp: {duration: 5s}}",
            "target: {url: x, model: m}\nload: {mode: rate, rate: [1], ramp: {duration: 0s}}",
        ] {
            assert!(Plan::from_text(bad).is_err(), "accepted: {bad}");
        }
    }

    #[test]
    fn conversation_trace_jsonl_and_ramp_plans_parse() {
        let p = Plan::from_text(
            "target: {url: x, model: m}\nworkload: {dataset: {jsonl: {path: /p.jsonl}}, \
             conversation: {turns: {min: 2, max: 4}, userTokens: 32, thinkTime: 1s, thinkTimeMax: 2s}}\n\
             load: {mode: rate, rate: [2], ramp: {shape: exponential, duration: 30s}}",
        )
        .unwrap();
        let c = p.workload.conversation.as_ref().unwrap();
        assert_eq!(c.turns, TokenCount::Range { min: 2, max: 4 });
        assert_eq!(c.mean_turns(), 3.0);
        assert_eq!(c.think_time_max, Some(Duration::from_secs(2)));
        assert_eq!(p.load.ramp.unwrap().shape, RampShape::Exponential);
        assert!(!p.load.ramp.unwrap().measured);
        assert_eq!(p.workload.dataset.kind(), "jsonl");
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(Plan::from_text(&json).unwrap(), p);
        let t = Plan::from_text(
            "target: {url: x, model: m}\nworkload: {dataset: {trace: {path: /t.jsonl}}}\n\
             load: {mode: rate, trace: {speedups: [1, 2, 4]}, durationPerStep: 10m}",
        )
        .unwrap();
        assert_eq!(
            t.workload.dataset,
            Dataset::Trace {
                path: "/t.jsonl".into(),
                block_tokens: TRACE_BLOCK_TOKENS
            }
        );
        assert_eq!(
            t.points(),
            [1.0, 2.0, 4.0].map(LoadPoint::Rate),
            "one step per speed-up"
        );
        assert_eq!(t.requests_per_step(), None);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(Plan::from_text(&json).unwrap(), t);
    }

    #[test]
    fn aligned_step_slots() {
        let mut p = Plan::new("http://x", "m");
        assert_eq!(p.step_slot(1), None);
        let t0: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        p.parallelism.start_at = Some(t0);
        assert_eq!(
            p.step_slot(1),
            None,
            "request-bounded steps are not aligned"
        );
        p.load.duration_per_step = Some(Duration::from_secs(60));
        p.load.warmup = Duration::from_secs(10);
        assert_eq!(p.step_slot(0), Some(t0));
        assert_eq!(p.step_slot(2), Some(t0 + chrono::Duration::seconds(150)));
    }

    #[test]
    fn shares_add_up() {
        for total in [0u64, 1, 7, 64] {
            for count in 1..5 {
                let sum: u64 = (0..count).map(|i| share_u64(total, i, count)).sum();
                assert_eq!(sum, total);
            }
        }
        let p = Parallelism {
            index: 0,
            count: 4,
            ..Parallelism::default()
        };
        assert_eq!(LoadPoint::Rate(10.0).share(&p), LoadPoint::Rate(2.5));
        assert_eq!(
            LoadPoint::Concurrency(6).share(&p),
            LoadPoint::Concurrency(2)
        );
    }
}
