//! `BenchmarkRun`: a declarative load sweep against an `InferenceService` or a URL, with
//! client latencies joined to GPU and vLLM server metrics in status.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::core::Duration;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{LocalObjectRef, default_true};
use super::schema::GoDuration;

/// Desired benchmark: what to hit, with which requests, at which load points.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "inferops.dev",
    version = "v1alpha1",
    kind = "BenchmarkRun",
    namespaced,
    status = "BenchmarkRunStatus",
    shortname = "bench",
    category = "inferops",
    doc = "A load sweep (concurrency or request rate) against an InferenceService or URL, run by in-cluster load Jobs; results joined with DCGM and vLLM metrics in status.",
    printcolumn(name = "Target", type_ = "string", json_path = ".status.target"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Step", type_ = "string", json_path = ".status.progress"),
    printcolumn(
        name = "Peak tok/s",
        type_ = "number",
        json_path = ".status.summary.peakOutputTokensPerSecond"
    ),
    printcolumn(
        name = "TTFT p95 (ms)",
        type_ = "number",
        json_path = ".status.summary.ttftP95Ms"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    validation = Rule::new("self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("metadata.name must contain only lowercase letters, digits and '-' (no '.'): it starts the hostnames of the load Job's pods")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("self == oldSelf").message("spec is immutable: a BenchmarkRun is a record of one experiment; create a new BenchmarkRun to change it"))]
#[x_kube(validation = Rule::new("!has(self.load.saturation) || !has(self.loadgen) || !has(self.loadgen.parallelism) || self.loadgen.parallelism <= 1").message("spec.loadgen.parallelism must be 1 with spec.load.saturation: a split search would judge the SLO on each pod's share instead of the merged results"))]
#[x_kube(validation = Rule::new("(has(self.scaling) ? size(self.scaling.replicas) : 1) * ((has(self.load.concurrency) ? size(self.load.concurrency) : 0) + (has(self.load.rate) ? size(self.load.rate) : 0) + (has(self.load.traceSpeedups) ? size(self.load.traceSpeedups) : 0)) <= 128").message("spec.load and spec.scaling: at most 128 steps per run (load points x replica counts), so status stays far below the object size limit; split the study into several BenchmarkRuns"))]
#[x_kube(validation = Rule::new("(has(self.workload) && has(self.workload.dataset) && has(self.workload.dataset.kind) && self.workload.dataset.kind == 'trace') == has(self.load.traceSpeedups)").message("spec: a trace dataset (spec.workload.dataset.kind trace) needs spec.load.traceSpeedups, and traceSpeedups needs a trace dataset"))]
pub struct BenchmarkRunSpec {
    /// What to load: an InferenceService in this namespace or any OpenAI-compatible URL.
    pub target: TargetSpec,
    /// The requests: API, prompts and output lengths.
    #[serde(default)]
    pub workload: WorkloadSpec,
    /// The load points to sweep and how long each lasts.
    pub load: LoadSpec,
    /// Repeat the sweep at several replica counts of the target InferenceService.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<ScalingSpec>,
    /// The in-cluster load Job.
    #[serde(default)]
    pub loadgen: LoadgenSpec,
    /// Where the load pods read GPU (DCGM) and vLLM server metrics for each step's window
    /// (asked from the first load pod after the last step; the operator never calls it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusSpec>,
    /// A step whose failed/total ratio exceeds this fails the run (default 0.01 = 1%).
    #[serde(default = "default_max_error_rate")]
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 1.0").message("spec.maxErrorRate must be in [0, 1]"))]
    pub max_error_rate: f64,
    /// Price of the GPUs, to report dollars per million output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<CostSpec>,
    /// Another BenchmarkRun in this namespace to compare against; a regression beyond the
    /// thresholds sets the `Regressed` condition so CI and GitOps pipelines can gate on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineSpec>,
    /// Capacity planning: the request rate the service must sustain; status then recommends
    /// a replica count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_request_rate: Option<f64>,
    /// Delete the load Job this long after the run finishes; the run and its results stay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_finished: Option<i64>,
}

fn default_max_error_rate() -> f64 {
    0.01
}

/// GPU pricing.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CostSpec {
    /// Price of one GPU for one hour, in your currency (e.g. `0.71` for an on-demand L4).
    #[x_kube(validation = Rule::new("self > 0.0").message("spec.cost.gpuHourlyPrice must be > 0"))]
    pub gpu_hourly_price: f64,
    /// GPUs per replica; defaults to the target InferenceService's `accelerator.count`, or 1
    /// for a URL target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub gpus_per_replica: Option<u32>,
}

/// The run to compare against and what counts as a regression.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BaselineSpec {
    /// Name of a finished BenchmarkRun in the same namespace.
    pub name: String,
    /// Regression when peak output throughput drops by more than this fraction (default 0.1).
    #[serde(default = "default_max_throughput_drop")]
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 1.0").message("spec.baseline.maxThroughputDrop must be in [0, 1]"))]
    pub max_throughput_drop: f64,
    /// Regression when TTFT p95 at the peak step grows by more than this fraction
    /// (default 0.2).
    #[serde(default = "default_max_ttft_increase")]
    #[x_kube(validation = Rule::new("self >= 0.0").message("spec.baseline.maxTtftP95Increase must be >= 0"))]
    pub max_ttft_p95_increase: f64,
}

fn default_max_throughput_drop() -> f64 {
    0.1
}
fn default_max_ttft_increase() -> f64 {
    0.2
}

/// The benchmark target. Exactly one of `inferenceServiceRef` or `url`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("has(self.inferenceServiceRef) != has(self.url)").message("spec.target: set exactly one of inferenceServiceRef or url"))]
pub struct TargetSpec {
    /// An InferenceService in the run's namespace; the run waits for it to be Ready and
    /// reads its endpoint and served model name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_service_ref: Option<LocalObjectRef>,
    /// Base URL of an OpenAI-compatible server (e.g. `http://vllm.ml.svc:8000`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://')").message("spec.target.url must start with http:// or https://"))]
    pub url: Option<String>,
    /// Model name sent in requests. Defaults to the InferenceService's served name, or for
    /// a URL to the only model `/v1/models` lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// OpenAI endpoint to call.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ApiKind {
    /// `/v1/completions` with a raw prompt.
    #[default]
    Completions,
    /// `/v1/chat/completions` with one user message.
    Chat,
}

/// Prompt source.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum DatasetKind {
    /// Synthetic prompts of `inputTokens` tokens, reproducible from `seed`.
    #[default]
    Random,
    /// A ShareGPT-format JSON file (conversations), from a ConfigMap or a path.
    Sharegpt,
    /// Groups of synthetic prompts that share a prefix (`sharedPrefix`), for prefix caching.
    #[serde(rename = "sharedPrefix")]
    SharedPrefix,
    /// A recorded trace to replay (JSONL in the Mooncake format: `{"timestamp": MS,
    /// "input_length": N, "output_length": N, "hash_ids": [..]}` per line), sent at the
    /// recorded times divided by each of `load.traceSpeedups`; equal `hash_ids` become
    /// identical `blockTokens`-token blocks of prompt text.
    Trace,
    /// Custom prompts (JSONL): `{"prompt": "..."}` or `{"messages": [...]}` per line, with
    /// an optional `max_tokens`.
    Jsonl,
}

impl DatasetKind {
    /// Whether the dataset is a file (from `path` or `configMapRef`).
    pub fn is_file(self) -> bool {
        matches!(
            self,
            DatasetKind::Sharegpt | DatasetKind::Trace | DatasetKind::Jsonl
        )
    }
}

/// A length in tokens: fixed (`tokens`), uniform (`min` and `max`), or normal (`tokens` as the
/// mean with `stddev`, clipped to `min`..`max`, by default 1..2×`tokens`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("has(self.tokens) || (has(self.min) && has(self.max))").message("a length needs tokens, or min and max"))]
#[x_kube(validation = Rule::new("!has(self.stddev) || has(self.tokens)").message("stddev needs tokens (the mean of the normal distribution)"))]
#[x_kube(validation = Rule::new("has(self.stddev) || !has(self.tokens) || (!has(self.min) && !has(self.max))").message("min/max with tokens need stddev (clipping a normal distribution); for a uniform range omit tokens"))]
#[x_kube(validation = Rule::new("!has(self.min) || !has(self.max) || self.min <= self.max").message("min must be <= max"))]
#[x_kube(validation = Rule::new("!has(self.tokens) || !has(self.min) || self.min <= self.tokens").message("min must be <= tokens"))]
#[x_kube(validation = Rule::new("!has(self.tokens) || !has(self.max) || self.tokens <= self.max").message("tokens must be <= max"))]
pub struct TokenLengthSpec {
    /// Fixed length, or the mean when `stddev` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1048576))]
    pub tokens: Option<u32>,
    /// Smallest length (uniform range, or the clip of a normal distribution).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1048576))]
    pub min: Option<u32>,
    /// Largest length (uniform range, or the clip of a normal distribution).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1048576))]
    pub max: Option<u32>,
    /// Standard deviation of a normal distribution around `tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1048576))]
    pub stddev: Option<u32>,
}

/// Prompts in groups that share a prefix: every prompt of a group starts with the group's
/// `prefixTokens` (a system prompt or a shared document), followed by its own random suffix.
/// Of all prompt tokens, about `prefixTokens × (promptsPerGroup − 1) / promptsPerGroup /
/// (prefixTokens + mean suffix)` repeat an earlier prompt's prefix and can come from a prefix
/// cache.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SharedPrefixSpec {
    /// Number of distinct prefixes.
    #[schemars(range(min = 1, max = 10000))]
    pub groups: u32,
    /// Prompts per prefix (the distinct prompts are `groups × promptsPerGroup`, sent in a
    /// seeded random order and reused round-robin).
    #[schemars(range(min = 1, max = 100000))]
    pub prompts_per_group: u32,
    /// Length of each group's shared prefix, in tokens (words ≈ tokens).
    #[schemars(range(min = 0, max = 1048576))]
    pub prefix_tokens: u32,
    /// Length of each prompt's unique suffix.
    pub suffix_tokens: TokenLengthSpec,
}

/// Where prompts come from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("!(self.kind in ['sharegpt', 'trace', 'jsonl']) || has(self.configMapRef) || has(self.path)").message("spec.workload.dataset: kind sharegpt, trace or jsonl needs configMapRef or path"))]
#[x_kube(validation = Rule::new("(self.kind == 'sharedPrefix') == has(self.sharedPrefix)").message("spec.workload.dataset: kind sharedPrefix needs sharedPrefix, and sharedPrefix needs kind sharedPrefix"))]
#[x_kube(validation = Rule::new("self.kind in ['sharegpt', 'trace', 'jsonl'] || (!has(self.configMapRef) && !has(self.path))").message("spec.workload.dataset: configMapRef and path are for file datasets (kind sharegpt, trace or jsonl)"))]
#[x_kube(validation = Rule::new("!has(self.blockTokens) || self.kind == 'trace'").message("spec.workload.dataset: blockTokens is for kind trace"))]
pub struct DatasetSpec {
    /// `random` (default), `sharegpt`, `sharedPrefix`, `trace` or `jsonl`.
    #[serde(default)]
    pub kind: DatasetKind,
    /// The groups of a `sharedPrefix` dataset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_prefix: Option<SharedPrefixSpec>,
    /// ConfigMap key holding the dataset JSON, mounted in the load pods at
    /// `/etc/inferops/dataset/<key>` (where the plan reads it). Ignored when `path` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapKeyRef>,
    /// Path of the dataset file inside the load pod image or a local file for `inferops bench`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Tokens (≈ words) per `hash_ids` block of a `trace` dataset (default 512, the
    /// Mooncake traces' block size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65536))]
    pub block_tokens: Option<u32>,
}

/// Multi-turn conversations: every session sends `turns` requests one after the other, each
/// carrying the whole history so far (the earlier user messages and the answers actually
/// received) plus a new user message, `thinkTime` after the previous answer. The first user
/// message comes from the dataset (`random`: `inputTokens`; `sharedPrefix`: a prompt of a
/// group; `jsonl`: a line); later ones are synthetic prompts of `userTokens`. A `sharegpt`
/// session replays the conversation's recorded human turns (at most `turns`). With
/// `mode: concurrency` the load points are concurrent sessions, with `mode: rate` session
/// arrivals per second; every turn is one request of the results.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("!has(self.turnsMax) || self.turnsMax >= self.turns").message("spec.workload.conversation.turnsMax must be >= turns"))]
#[x_kube(validation = Rule::new("!has(self.thinkTimeMax) || duration(self.thinkTimeMax) >= (has(self.thinkTime) ? duration(self.thinkTime) : duration('0s'))").message("spec.workload.conversation.thinkTimeMax must be >= thinkTime"))]
pub struct ConversationSpec {
    /// Turns per session (the lower bound when `turnsMax` is set).
    #[schemars(range(min = 1, max = 1000))]
    pub turns: u32,
    /// Upper bound of a uniformly drawn number of turns per session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub turns_max: Option<u32>,
    /// Length of each later user message (default: `inputTokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_tokens: Option<TokenLengthSpec>,
    /// Pause between a turn's answer and the next turn (default `0s`; the lower bound when
    /// `thinkTimeMax` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<GoDuration>")]
    pub think_time: Option<Duration>,
    /// Upper bound of a uniformly drawn think time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<GoDuration>")]
    pub think_time_max: Option<Duration>,
}

/// A key in a ConfigMap of the run's namespace.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigMapKeyRef {
    /// ConfigMap name.
    pub name: String,
    /// Key inside the ConfigMap.
    pub key: String,
}

/// The requests each load point sends.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("!has(self.inputTokensMax) || self.inputTokensMax >= self.inputTokens").message("spec.workload.inputTokensMax must be >= inputTokens"))]
#[x_kube(validation = Rule::new("!has(self.outputTokensMax) || self.outputTokensMax >= self.outputTokens").message("spec.workload.outputTokensMax must be >= outputTokens"))]
#[x_kube(validation = Rule::new("!has(self.conversation) || !has(self.dataset) || !has(self.dataset.kind) || self.dataset.kind != 'trace'").message("spec.workload.conversation: a trace replays its own requests; drop conversation or use another dataset kind"))]
pub struct WorkloadSpec {
    /// `completions` (default) or `chat`.
    #[serde(default)]
    pub api: ApiKind,
    /// Prompt source.
    #[serde(default)]
    pub dataset: DatasetSpec,
    /// Prompt length in tokens for synthetic prompts (the lower bound when
    /// `inputTokensMax` is set).
    #[serde(default = "default_input_tokens")]
    #[schemars(range(min = 1))]
    pub input_tokens: u32,
    /// Upper bound for uniformly random prompt lengths; unset for fixed length. With
    /// `inputTokensStddev`, the clip of the normal distribution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1048576))]
    pub input_tokens_max: Option<u32>,
    /// Normally distributed prompt lengths: `inputTokens` is the mean and this the standard
    /// deviation (clipped to 1..`inputTokensMax`, by default 1..2×`inputTokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1048576))]
    pub input_tokens_stddev: Option<u32>,
    /// Tokens to generate per request (`max_tokens`; the lower bound when `outputTokensMax`
    /// is set, the mean with `outputTokensStddev`).
    #[serde(default = "default_output_tokens")]
    #[schemars(range(min = 1))]
    pub output_tokens: u32,
    /// Upper bound for uniformly random output lengths (or the clip of the normal
    /// distribution with `outputTokensStddev`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1048576))]
    pub output_tokens_max: Option<u32>,
    /// Normally distributed output lengths around `outputTokens` with this standard deviation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1048576))]
    pub output_tokens_stddev: Option<u32>,
    /// Ask the server to ignore end-of-sequence so every request generates exactly
    /// `outputTokens` (vLLM's `ignore_eos`).
    #[serde(default = "default_true")]
    pub ignore_eos: bool,
    /// Seed for prompt generation and arrival times: same seed, same requests.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Stream tokens (SSE). Needed for TTFT and ITL; without it only E2E is measured.
    #[serde(default = "default_true")]
    pub stream: bool,
    /// Weighted model mix: each request goes to one of these served models or LoRA adapters
    /// (e.g. 70 base, 30 an adapter): each model gets its weight's share of the prompts, in
    /// an order drawn from `seed`; results are broken down
    /// per model as well as in total. Every name must be served by the target (checked
    /// before the load). Empty: every request goes to `spec.target`'s model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self.all(m, self.exists_one(n, n.name == m.name))").message("spec.workload.models: every model name must be listed once"))]
    pub models: Vec<ModelWeightSpec>,
    /// Client-side cancellation: a fraction of the requests is abandoned after a delay (as
    /// users closing a chat do), counted as `cancelled`, apart from errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel: Option<CancelSpec>,
    /// Multi-turn conversations instead of independent requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<ConversationSpec>,
}

/// One model of a weighted mix.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("self.weight > 0").message("spec.workload.models: every weight must be > 0"))]
pub struct ModelWeightSpec {
    /// Served model name (the base model or a LoRA adapter's name).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Relative weight: the model gets `weight / sum of weights` of the requests.
    #[schemars(range(max = 1000000))]
    pub weight: u32,
}

/// Which requests the client abandons.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("self.fraction > 0.0 && self.fraction <= 1.0").message("spec.workload.cancel.fraction must be in (0, 1]"))]
#[x_kube(validation = Rule::new("duration(self.after) > duration('0s')").message("spec.workload.cancel.after must be > 0"))]
pub struct CancelSpec {
    /// Share of the requests cancelled, in (0, 1]; each request is picked from `seed`.
    pub fraction: f64,
    /// Time after its send at which a picked request is abandoned (e.g. `2s`), unless it
    /// finished before.
    #[schemars(with = "GoDuration")]
    pub after: Duration,
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        Self {
            api: ApiKind::default(),
            dataset: DatasetSpec::default(),
            input_tokens: default_input_tokens(),
            input_tokens_max: None,
            input_tokens_stddev: None,
            output_tokens: default_output_tokens(),
            output_tokens_max: None,
            output_tokens_stddev: None,
            ignore_eos: true,
            seed: default_seed(),
            stream: true,
            models: Vec::new(),
            cancel: None,
            conversation: None,
        }
    }
}

fn default_input_tokens() -> u32 {
    256
}
fn default_output_tokens() -> u32 {
    128
}
fn default_seed() -> u64 {
    42
}

/// How load points are expressed.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LoadMode {
    /// Closed loop: N requests always in flight.
    Concurrency,
    /// Open loop: requests sent at a rate (req/s), whatever the latency.
    Rate,
}

/// Arrival process for `mode: rate`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Arrival {
    /// Exponential gaps (vLLM bench's default).
    #[default]
    Poisson,
    /// Evenly spaced sends.
    Constant,
    /// Gamma-distributed gaps with shape `burstiness` (`vllm bench serve --burstiness`).
    Gamma,
}

/// The sweep.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("self.mode != 'concurrency' || (has(self.concurrency) && size(self.concurrency) > 0) || has(self.saturation)").message("spec.load.mode is concurrency: spec.load.concurrency must list at least one load point, or set spec.load.saturation"))]
#[x_kube(validation = Rule::new("self.mode != 'rate' || (has(self.rate) && size(self.rate) > 0) || has(self.saturation) || has(self.traceSpeedups)").message("spec.load.mode is rate: spec.load.rate must list at least one load point, or set spec.load.saturation"))]
#[x_kube(validation = Rule::new("self.mode != 'rate' || !has(self.saturation) || has(self.saturation.maxRate)").message("spec.load.saturation: mode rate searches the request rate and needs maxRate"))]
#[x_kube(validation = Rule::new("self.mode != 'concurrency' || !has(self.saturation) || has(self.saturation.maxConcurrency)").message("spec.load.saturation: mode concurrency searches the concurrency and needs maxConcurrency"))]
#[x_kube(validation = Rule::new("!(has(self.requestsPerStep) && has(self.durationPerStep))").message("spec.load: set requestsPerStep or durationPerStep, not both"))]
#[x_kube(validation = Rule::new("!has(self.saturation) || !has(self.saturation.slo.minGoodputRatio) || has(self.goodputSlo)").message("spec.load.saturation.slo.minGoodputRatio needs spec.load.goodputSlo (the per-request bounds)"))]
#[x_kube(validation = Rule::new("(has(self.arrival) && self.arrival == 'gamma') == has(self.burstiness)").message("spec.load: arrival gamma needs burstiness, and burstiness needs arrival gamma"))]
#[x_kube(validation = Rule::new("!has(self.traceSpeedups) || (self.mode == 'rate' && !has(self.saturation) && !has(self.rate))").message("spec.load.traceSpeedups: a trace replay is open loop: it needs mode rate, without rate or saturation"))]
#[x_kube(validation = Rule::new("!has(self.traceSpeedups) || has(self.durationPerStep)").message("spec.load.traceSpeedups needs durationPerStep: the cap on each replay's length"))]
#[x_kube(validation = Rule::new("!has(self.ramp) || (self.mode == 'rate' && !has(self.traceSpeedups))").message("spec.load.ramp ramps an open-loop rate: it needs mode rate (and no trace replay)"))]
pub struct LoadSpec {
    /// `concurrency` (closed loop) or `rate` (open loop).
    pub mode: LoadMode,
    /// Concurrency levels for `mode: concurrency`, each > 0 (e.g. `[1, 2, 4, 8, 16, 32]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self.all(c, c > 0)").message("spec.load.concurrency: every load point must be > 0"))]
    pub concurrency: Vec<u32>,
    /// Request rates in req/s for `mode: rate`, each > 0.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self.all(r, r > 0.0)").message("spec.load.rate: every load point must be > 0 req/s"))]
    pub rate: Vec<f64>,
    /// Arrival process for `mode: rate`: `poisson` (default), `constant` or `gamma`.
    #[serde(default)]
    pub arrival: Arrival,
    /// Shape of the gamma arrivals (`arrival: gamma`): gaps are Gamma(burstiness,
    /// 1/(rate × burstiness)), so the mean rate holds; 1 is Poisson, below 1 burstier, above 1
    /// more regular (vLLM bench's `--burstiness`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0.0 && self <= 100.0").message("spec.load.burstiness must be in (0, 100]"))]
    pub burstiness: Option<f64>,
    /// Requests per load point (default 200 when neither this nor `durationPerStep` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub requests_per_step: Option<u32>,
    /// Wall-clock length of each load point (e.g. `60s`), instead of a request count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<GoDuration>")]
    pub duration_per_step: Option<Duration>,
    /// Load applied before each step's measurement window, not counted (e.g. `10s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<GoDuration>")]
    pub warmup: Option<Duration>,
    /// Per-request timeout (default `60s`); a request past it counts as a timeout error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<GoDuration>")]
    pub request_timeout: Option<Duration>,
    /// Per-request bounds (any subset) for goodput, like vLLM bench's `--goodput`: each step
    /// reports the fraction of requests that met every bound and the rate of those requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goodput_slo: Option<GoodputSloSpec>,
    /// Search the load at which the SLO breaks: grow the rate (mode `rate`) or concurrency
    /// (mode `concurrency`) by `factor` until it breaks, then bisect between the highest load
    /// that held and the lowest that broke until they are within `tolerance`. The listed
    /// `rate` / `concurrency` points are not run (the last one is the default start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saturation: Option<SaturationSpec>,
    /// Replay a `trace` dataset at these speed-ups, one step each (`[1, 2, 4]`: the trace at
    /// 1x, 2x and 4x its recorded pace). A step ends with the trace, or at `durationPerStep`
    /// (the cap) or `requestsPerStep`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self.all(s, s > 0.0)").message("spec.load.traceSpeedups: every speed-up must be > 0"))]
    pub trace_speedups: Vec<f64>,
    /// Ramp the rate up at the start of every step (the session arrival rate with
    /// conversations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp: Option<RampSpec>,
    /// Times each step (each probe of a saturation search) is run, 1 to 50 (default 1).
    /// With more than one, each step reports the spread over its trials (min, median, max
    /// and a 95% interval of throughput and latency percentiles) and the baseline comparison
    /// marks `Regressed` only when the difference is larger than the trial-to-trial noise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 50))]
    pub trials: Option<u32>,
    /// Keep per-request records (id, step, times, tokens, outcome): each load pod embeds
    /// them gzip-compressed in its results, at most `maxBytes`; `inferops report -n NS NAME`
    /// draws latency over time and TTFT against prompt length from them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<RecordsSpec>,
}

/// How a ramp rises.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum RampShape {
    /// From 10% of the step's rate to 100% in equal increments per unit of time.
    #[default]
    Linear,
    /// From 10% to 100% by the same factor per unit of time.
    Exponential,
}

/// A ramp-up of the open-loop rate at the start of every step, from 10% of the step's rate
/// to all of it over `duration`. The measured window starts after the ramp (or after the
/// warmup, whichever is later) unless `measured` is true.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RampSpec {
    /// `linear` (default) or `exponential`.
    #[serde(default)]
    pub shape: RampShape,
    /// How long the rise takes, from the step's start (e.g. `30s`).
    #[schemars(with = "GoDuration")]
    pub duration: Duration,
    /// Count the ramp's requests in the measured window (after the warmup).
    #[serde(default)]
    pub measured: bool,
}

/// Per-request records of a BenchmarkRun.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordsSpec {
    /// Keep the records (default false).
    #[serde(default)]
    pub enabled: bool,
    /// Compressed bytes of records each load pod keeps, 1024 to 393216 (default 262144);
    /// records past it are dropped and counted (`records.dropped` of the pod's results), and
    /// so are all of a pod's records when its results would outgrow their ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1024, max = 393216))]
    pub max_bytes: Option<u32>,
    /// Also keep each request's inter-token gaps (larger records).
    #[serde(default)]
    pub itl: bool,
}

/// Per-request latency bounds; a request that succeeded and met every bound set is "good".
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("has(self.ttft) || has(self.tpot) || has(self.e2e)").message("spec.load.goodputSlo: set at least one of ttft, tpot, e2e"))]
pub struct GoodputSloSpec {
    /// Highest acceptable time to first token of a request (e.g. `200ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<GoDuration>")]
    pub ttft: Option<Duration>,
    /// Highest acceptable time per output token of a request after the first (e.g. `10ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<GoDuration>")]
    pub tpot: Option<Duration>,
    /// Highest acceptable end-to-end latency of a request (e.g. `2s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<GoDuration>")]
    pub e2e: Option<Duration>,
}

/// A service level objective for the saturation search.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("has(self.ttftP95) || has(self.itlP95) || has(self.maxErrorRate) || has(self.minGoodputRatio)").message("spec.load.saturation.slo: set at least one of ttftP95, itlP95, maxErrorRate, minGoodputRatio"))]
pub struct SloSpec {
    /// Highest acceptable p95 time to first token (e.g. `500ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<GoDuration>")]
    pub ttft_p95: Option<Duration>,
    /// Highest acceptable p95 inter-token latency (e.g. `50ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<GoDuration>")]
    pub itl_p95: Option<Duration>,
    /// Highest acceptable failed/total ratio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_rate: Option<f64>,
    /// Lowest acceptable goodput / throughput: the fraction of successful requests that met
    /// every bound of `spec.load.goodputSlo` (e.g. `0.9`). Needs `goodputSlo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 1.0").message("spec.load.saturation.slo.minGoodputRatio must be in [0, 1]"))]
    pub min_goodput_ratio: Option<f64>,
}

/// Saturation search: start at `startRate` (`startConcurrency`), multiply by `factor` while
/// the SLO holds, then bisect between the highest load that held and the lowest that broke.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("!has(self.startRate) || !has(self.maxRate) || self.startRate <= self.maxRate").message("spec.load.saturation.startRate must be <= maxRate"))]
#[x_kube(validation = Rule::new("!has(self.startConcurrency) || !has(self.maxConcurrency) || self.startConcurrency <= self.maxConcurrency").message("spec.load.saturation.startConcurrency must be <= maxConcurrency"))]
pub struct SaturationSpec {
    /// The objective that defines "saturated". In mode `rate` a step whose completions fall
    /// behind its arrivals while latency grows through it is saturated too.
    pub slo: SloSpec,
    /// Mode `rate`: first rate tried, req/s (default: the last of `load.rate`, else 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0.0").message("spec.load.saturation.startRate must be > 0"))]
    pub start_rate: Option<f64>,
    /// Mode `rate`: stop here even if the SLO still holds, req/s (required in mode `rate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0.0").message("spec.load.saturation.maxRate must be > 0"))]
    pub max_rate: Option<f64>,
    /// Mode `concurrency`: first concurrency tried (default: the last of
    /// `load.concurrency`, else 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub start_concurrency: Option<u32>,
    /// Mode `concurrency`: stop here even if the SLO still holds (required in mode
    /// `concurrency`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_concurrency: Option<u32>,
    /// Load multiplier between growing attempts (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 1.0").message("spec.load.saturation.factor must be > 1"))]
    pub factor: Option<f64>,
    /// Bisect until `(lowest broken - highest held) / highest held` is at most this
    /// (default 0.05 = 5%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0.0 && self < 1.0").message("spec.load.saturation.tolerance must be in (0, 1)"))]
    pub tolerance: Option<f64>,
}

/// Replica counts for a scaling study.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScalingSpec {
    /// Run the whole sweep once at each replica count of the target (e.g. `[1, 2, 4]`);
    /// the original count is restored afterwards.
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("size(self) > 0 && self.all(r, r > 0)").message("spec.scaling.replicas must list replica counts > 0"))]
    pub replicas: Vec<i32>,
}

/// The load Job's pods.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadgenSpec {
    /// Image running `inferops loadgen`; defaults to the operator's own image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Pods sharing the load (for loads one pod cannot drive); histograms are merged.
    #[serde(default = "default_parallelism")]
    #[schemars(range(min = 1, max = 64))]
    pub parallelism: i32,
    /// Load pod resources (default requests 500m CPU / 256Mi).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Node selector for the load pods (keep them off the GPU nodes).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations for the load pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Pod restarts tolerated before the Job fails (`backoffLimit`). Pods stopped by a
    /// disruption (preemption, drain) do not count.
    #[serde(default = "default_backoff_limit")]
    #[schemars(range(min = 0))]
    pub backoff_limit: i32,
    /// Hard limit on the Job's run time in seconds (`activeDeadlineSeconds`). Default: the
    /// plan's own length (per step: warmup, then `durationPerStep` or every request at the
    /// request timeout) plus 15 minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub active_deadline_seconds: Option<i64>,
}

impl Default for LoadgenSpec {
    fn default() -> Self {
        Self {
            image: None,
            parallelism: default_parallelism(),
            resources: None,
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            backoff_limit: default_backoff_limit(),
            active_deadline_seconds: None,
        }
    }
}

fn default_parallelism() -> i32 {
    1
}
fn default_backoff_limit() -> i32 {
    2
}

/// Label conventions of the GPU metrics.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum GpuLabels {
    /// NVIDIA dcgm-exporter scraped with pod attribution: `pod`, `namespace`.
    #[default]
    DcgmExporter,
    /// GKE managed DCGM: `exported_pod`, `exported_namespace`.
    GkeManaged,
}

/// Prometheus that the load pods ask for the server-side figures of each step's window.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusSpec {
    /// Base URL, e.g. `http://prometheus-operated.monitoring.svc:9090`.
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://')").message("spec.prometheus.url must start with http:// or https://"))]
    pub url: String,
    /// Label convention of the DCGM metrics.
    #[serde(default)]
    pub gpu_labels: GpuLabels,
}

/// Lifecycle phase of a run.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Phase {
    /// Accepted, nothing started.
    #[default]
    Pending,
    /// Waiting for the target to be Ready / answer with the expected model.
    WaitingForTarget,
    /// Load Job running.
    Running,
    /// Load done; querying Prometheus.
    Collecting,
    /// Finished within the error budget.
    Succeeded,
    /// Finished with a reason in the `Ready` condition; measured steps are kept.
    Failed,
}

impl Phase {
    /// True once the run can no longer change.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }
}

/// Observed state and results of a run.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BenchmarkRunStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Lifecycle phase.
    #[serde(default)]
    pub phase: Phase,
    /// Human-readable target: `infsvc/NAME` or the URL, with the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `Ready`, `Progressing`, `Degraded`, `MetricsUnavailable` and `Regressed`, with
    /// reasons; one entry per type (a map list keyed by `type`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// When the load started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the run reached Succeeded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Steps finished so far.
    #[serde(default)]
    pub current_step: u32,
    /// Steps planned (load points x replica counts; saturation searches grow it).
    #[serde(default)]
    pub total_steps: u32,
    /// `currentStep/totalSteps`, for the printer column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// One row per finished step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepStatus>,
    /// Conclusions across steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<RunSummary>,
    /// Where the full raw per-step results (including merged histograms) are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results_ref: Option<ResultsRef>,
    /// Comparison with `spec.baseline`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<Comparison>,
    /// Scaling study bookkeeping: the replica count to restore afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<ScalingStatus>,
    /// The wait in progress (target, scale, load pods), measured from when it began so an
    /// operator restart does not reset it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<WaitStatus>,
    /// Failed checks of the target (readiness, `/v1/models`) while the load runs: the run
    /// fails only when they persist (see the `Degraded` condition for the budget).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_misses: Option<TargetMisses>,
    /// Reproducibility: engine image and args, GPU product and count, instance type,
    /// replicas, operator version.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// What a run is waiting for.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitKind {
    /// The InferenceService to exist.
    TargetFound,
    /// The InferenceService to be Ready.
    TargetReady,
    /// The InferenceService to run the sweep's replica count.
    TargetScaled,
    /// The endpoint to answer `/v1/models` with the model. Not written any more: the load
    /// pods check the endpoint themselves (kept so that older statuses stay readable).
    TargetReachable,
    /// The load pods to start (image pull, scheduling, quota).
    LoadPodsStarted,
    /// The API server to accept the load Job's objects.
    LoadObjectsApplied,
}

/// A wait in progress.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WaitStatus {
    /// What is waited for.
    pub kind: WaitKind,
    /// When this wait began.
    pub since: Time,
}

/// Consecutive failed target checks during the load.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TargetMisses {
    /// Failed checks in a row.
    pub count: u32,
    /// When the first of them failed.
    pub since: Time,
}

/// Scaling study progress.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ScalingStatus {
    /// The target's `spec.replicas` before the study; restored when it ends (also on
    /// failure and deletion).
    pub original_replicas: i32,
    /// Replica count of the sweep in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_replicas: Option<i32>,
    /// True once the original count has been restored.
    #[serde(default)]
    pub restored: bool,
}

/// This run against its baseline.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Comparison {
    /// The baseline run's name.
    pub baseline: String,
    /// Relative change of peak output throughput (e.g. -0.15 = 15% lower).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_throughput_change: Option<f64>,
    /// Relative change of TTFT p95 at the peak step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_p95_change: Option<f64>,
    /// True when a change is beyond the spec's thresholds and, with trials on both sides,
    /// larger than the trial-to-trial noise at `confidence`.
    pub regressed: bool,
    /// The comparison in words: what regressed (metric, both values, the confidence), or
    /// why a change beyond a threshold did not count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Confidence of the noise test (one-sided Mann-Whitney U on the peak step's per-trial
    /// figures), when both runs have trials; absent for a single-sample comparison.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
}

/// The ConfigMaps with raw results: one per load pod and sweep.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResultsRef {
    /// Label selector of the run's results ConfigMaps in its namespace (owned by the run),
    /// e.g. `kubectl get configmap -l inferops.dev/benchmark-run=NAME,inferops.dev/role=results`.
    pub selector: String,
    /// Their names: `NAME-results[-rN]-INDEX`, one per load pod (and sweep of a scaling
    /// study); each pod writes its key `[rN-]pod-INDEX.json` there after every step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_map_names: Vec<String>,
}

/// One load point of a sweep, written `{concurrency: 8}` (closed loop: this many requests in
/// flight) or `{rate: 10}` (open loop: this many requests per second). The one load-point
/// type of the crate: status rows, the plan and the results all use it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub enum LoadPoint {
    /// Requests in flight (closed loop).
    Concurrency(u32),
    /// Offered rate in req/s (open loop).
    Rate(f64),
}

impl LoadPoint {
    /// The concurrency of a closed-loop point.
    pub fn concurrency(self) -> Option<u32> {
        match self {
            LoadPoint::Concurrency(c) => Some(c),
            LoadPoint::Rate(_) => None,
        }
    }

    /// The offered rate of an open-loop point.
    pub fn rate(self) -> Option<f64> {
        match self {
            LoadPoint::Rate(r) => Some(r),
            LoadPoint::Concurrency(_) => None,
        }
    }

    /// The point's number on a chart's x axis (concurrency or req/s).
    pub fn value(self) -> f64 {
        match self {
            LoadPoint::Concurrency(c) => f64::from(c),
            LoadPoint::Rate(r) => r,
        }
    }
}

/// The smallest closed-loop point (so status rows can derive `Default`).
impl Default for LoadPoint {
    fn default() -> Self {
        LoadPoint::Concurrency(1)
    }
}

impl std::fmt::Display for LoadPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadPoint::Concurrency(c) => write!(f, "concurrency={c}"),
            LoadPoint::Rate(r) => write!(f, "rate={r}/s"),
        }
    }
}

impl JsonSchema for LoadPoint {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "LoadPoint".into()
    }

    // A structural schema (one object with both optional properties, exactly one present)
    // instead of schemars' `oneOf` of single-key objects, which a CRD cannot hold.
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "One load point: `{concurrency: N}` (closed loop) or `{rate: R}` (open loop, req/s).",
            "type": "object",
            "properties": {
                "concurrency": {
                    "description": "Requests in flight (closed loop).",
                    "type": "integer", "format": "uint32", "minimum": 0, "maximum": u32::MAX
                },
                "rate": {"description": "Offered rate in req/s (open loop).", "type": "number"}
            },
            "minProperties": 1,
            "maxProperties": 1
        })
    }
}

/// A measurement window.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    /// First request of the measured part of the step.
    pub start: Time,
    /// Last response of the step.
    pub end: Time,
}

/// Failed requests by class.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ErrorCounts {
    /// Past the request timeout.
    #[serde(default)]
    pub timeout: u64,
    /// Could not connect.
    #[serde(default)]
    pub connect: u64,
    /// HTTP 4xx (e.g. wrong model name, prompt too long).
    #[serde(default)]
    pub http4xx: u64,
    /// HTTP 5xx.
    #[serde(default)]
    pub http5xx: u64,
    /// Stream broken or truncated.
    #[serde(default)]
    pub stream: u64,
    /// Response body not understood.
    #[serde(default)]
    pub body: u64,
}

/// Latency distribution in milliseconds.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LatencyMs {
    /// Mean, ms.
    pub mean: f64,
    /// Median, ms.
    pub p50: f64,
    /// 90th percentile, ms.
    pub p90: f64,
    /// 95th percentile, ms.
    pub p95: f64,
    /// 99th percentile, ms.
    pub p99: f64,
}

/// What vLLM reported during the step window (from its `vllm:*` metrics).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ServerMetrics {
    /// Server-side p95 time to first token, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_p95_ms: Option<f64>,
    /// Server-side p95 inter-token latency, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub itl_p95_ms: Option<f64>,
    /// Server-side p95 time requests waited in the queue, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_time_p95_ms: Option<f64>,
    /// Peak KV cache usage, 0..1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_cache_usage_max: Option<f64>,
    /// Peak requests running (summed over replicas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_max: Option<f64>,
    /// Peak requests waiting (summed over replicas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_max: Option<f64>,
    /// Least and most loaded replica (mean running requests): shows load balance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_replica_running: Option<MinMax>,
    /// Achieved prefix-cache hit rate over the window: prompt tokens found in the cache /
    /// prompt tokens looked up (`vllm:prefix_cache_hits` / `vllm:prefix_cache_queries`), 0..1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_cache_hit_rate: Option<f64>,
}

/// A min/max pair.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MinMax {
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
}

/// What the GPUs (DCGM) reported during the step window.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GpuMetrics {
    /// Peak GPU utilisation, percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub util_max: Option<f64>,
    /// Mean GPU utilisation, percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub util_mean: Option<f64>,
    /// Peak framebuffer memory used, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fb_used_max_bytes: Option<f64>,
    /// Mean power draw, watts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_mean_watts: Option<f64>,
}

/// One finished step: client measurements joined with server and GPU metrics.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct StepStatus {
    /// The load point.
    pub load: LoadPoint,
    /// Target replicas during the step (scaling studies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// The measured wall-clock window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
    /// Requests sent in the window.
    pub requests: u64,
    /// Requests that completed.
    pub succeeded: u64,
    /// Requests that failed.
    pub failed: u64,
    /// Failures by class.
    #[serde(default)]
    pub errors: ErrorCounts,
    /// Completed requests per second.
    pub requests_per_second: f64,
    /// Generated tokens per second.
    pub output_tokens_per_second: f64,
    /// Time to first token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<LatencyMs>,
    /// Inter-token latency (every gap between streamed tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub itl_ms: Option<LatencyMs>,
    /// Time per output token after the first, per request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpot_ms: Option<LatencyMs>,
    /// End-to-end request latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2e_ms: Option<LatencyMs>,
    /// vLLM server metrics over the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerMetrics>,
    /// GPU metrics over the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuMetrics>,
    /// CPU the load pods used, as a fraction of what they may use (the busiest pod). Near 1
    /// the client limited the step: add `loadgen.parallelism` or CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cpu_util: Option<f64>,
    /// Open loop: fraction of requests the load pods sent more than 10 ms after their
    /// scheduled time (the busiest pod). Above a few percent the client, not the server,
    /// limited the offered rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_late_send_fraction: Option<f64>,
    /// Cost of a million output tokens at this step's throughput (needs `spec.cost`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_per_million_output_tokens: Option<f64>,
    /// Mode `rate`: requests that arrived per second while the step's requests arrived
    /// (its later two thirds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arrival_requests_per_second: Option<f64>,
    /// Mode `rate`: requests that finished per second over the same time; well below
    /// `arrivalRequestsPerSecond` the target did not keep up with the offered rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub achieved_requests_per_second: Option<f64>,
    /// Mode `rate`: completions fell behind arrivals by more than noise while latency grew
    /// through the step: the step is past what the target sustains.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub falling_behind: bool,
    /// With `spec.load.goodputSlo`: the requests that met every per-request bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goodput: Option<Goodput>,
    /// With `load.trials` > 1: each trial's figures and their spread (the row's other
    /// figures merge all trials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trials: Option<TrialsStatus>,
    /// The workload the step was meant to send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<StepWorkload>,
    /// Requests the client abandoned on purpose (`spec.workload.cancel`), counted apart
    /// from `succeeded` and `failed`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cancelled: u64,
    /// With `spec.workload.models`: the step broken down per model (over the step's
    /// window, so the parts add up to the step).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<ModelStepStatus>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One model's part of a step.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ModelStepStatus {
    /// Served model name.
    pub model: String,
    /// Its requests that completed.
    pub succeeded: u64,
    /// Its requests that failed.
    pub failed: u64,
    /// Its requests the client abandoned on purpose.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cancelled: u64,
    /// Its completed requests per second.
    pub requests_per_second: f64,
    /// Its generated tokens per second.
    pub output_tokens_per_second: f64,
    /// Its time to first token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<LatencyMs>,
    /// Its inter-token latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub itl_ms: Option<LatencyMs>,
    /// Its end-to-end latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2e_ms: Option<LatencyMs>,
}

/// What a step was meant to send (intended figures, from the plan or its prepared prompts).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct StepWorkload {
    /// Prompt source.
    pub dataset: DatasetKind,
    /// Mean prompt length asked for, tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_input_tokens: Option<f64>,
    /// Mean output length asked for (`max_tokens`), tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_output_tokens: Option<f64>,
    /// Intended share of prompt tokens a prefix cache can serve, 0..1 (shared-prefix
    /// datasets): the hit rate the workload aims for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_prefix_fraction: Option<f64>,
    /// The model mix and each model's intended share of the requests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<ModelShare>,
    /// Multi-turn conversations: mean turns per prepared session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_turns_per_session: Option<f64>,
    /// Multi-turn conversations: sessions that sent at least one measured turn (measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub sessions: Option<u64>,
    /// Trace replay: the step's speed-up (1 = the recorded pace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_speedup: Option<f64>,
}

/// One model of a step's model mix.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ModelShare {
    /// Served model name (a base model or a LoRA adapter).
    pub model: String,
    /// Intended fraction of the requests, 0..1.
    pub share: f64,
}

/// The trials of one step.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TrialsStatus {
    /// Trials run.
    pub count: u32,
    /// Output tokens per second of each trial, in run order.
    pub output_tokens_per_second: Vec<f64>,
    /// TTFT p95 of each trial, ms.
    pub ttft_p95_ms: Vec<f64>,
    /// ITL p95 of each trial, ms.
    pub itl_p95_ms: Vec<f64>,
    /// Spread of the output throughput over the trials.
    pub output_tokens_per_second_spread: SpreadStatus,
    /// Spread of TTFT p95 over the trials, ms.
    pub ttft_p95_ms_spread: SpreadStatus,
}

/// Spread of one figure over trials.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SpreadStatus {
    /// Smallest trial value.
    pub min: f64,
    /// Median trial value.
    pub median: f64,
    /// Largest trial value.
    pub max: f64,
    /// Lower end of the 95% confidence interval of the mean (Student's t).
    pub ci95_low: f64,
    /// Upper end of the 95% confidence interval of the mean.
    pub ci95_high: f64,
}

/// Requests of a step that met every per-request bound of `spec.load.goodputSlo`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Goodput {
    /// Successful requests that met every bound.
    pub good_requests: u64,
    /// Good requests per second.
    pub requests_per_second: f64,
    /// Output tokens per second of the good requests.
    pub output_tokens_per_second: f64,
    /// Good requests / all requests of the step (failures count as not met), 0..1.
    pub slo_attainment: f64,
}

/// What limited the target.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Bottleneck {
    /// GPU busy, ITL rising with batch size.
    Compute,
    /// KV cache full, requests preempted or waiting.
    KvCache,
    /// Requests queueing in front of the engine.
    Queueing,
    /// The load generator could not keep its schedule.
    Client,
    /// Timeouts or errors while the GPU idles: the API layer in front of the engine.
    Api,
    /// Nothing saturated within the tested load.
    None,
}

/// The saturation point.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Saturation {
    /// Highest load point that met the SLO, in req/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<f64>,
    /// The load point it was reached at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<LoadPoint>,
    /// First load point that broke the SLO.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_broken: Option<LoadPoint>,
    /// What ended the search: the SLO term that broke first (e.g. `ttftP95`,
    /// `fallingBehind`), or `throughputPlateau` without an SLO.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limited_by: Option<SaturationLimit>,
    /// `(firstBroken - at) / at`: how precisely the saturation point is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bracket_width: Option<f64>,
    /// A saturation search: every probe in run order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probes: Vec<SaturationProbe>,
}

/// One load a saturation search tried.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SaturationProbe {
    /// The load point.
    pub load: LoadPoint,
    /// True when every SLO term held.
    pub held: bool,
    /// The broken terms, with the measured values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub broken_by: Vec<String>,
    /// Requests finished per second (mode `rate`: while requests arrived).
    pub achieved_requests_per_second: f64,
}

/// One term of a saturation SLO ([`SloSpec`]), by its spec name.
#[derive(JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SloTerm {
    /// `maxErrorRate`.
    MaxErrorRate,
    /// `ttftP95`.
    TtftP95,
    /// `itlP95`.
    ItlP95,
    /// `minGoodputRatio`.
    MinGoodputRatio,
    /// An open-loop step whose completions fell behind its arrivals (always judged).
    FallingBehind,
}

impl SloTerm {
    /// The spec field name (`maxErrorRate`, `ttftP95`, `itlP95`).
    pub fn as_str(self) -> &'static str {
        match self {
            SloTerm::MaxErrorRate => "maxErrorRate",
            SloTerm::TtftP95 => "ttftP95",
            SloTerm::ItlP95 => "itlP95",
            SloTerm::MinGoodputRatio => "minGoodputRatio",
            SloTerm::FallingBehind => "fallingBehind",
        }
    }
}

impl std::fmt::Display for SloTerm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What limited a sweep's saturation point.
#[derive(JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SaturationLimit {
    /// The error rate objective broke.
    MaxErrorRate,
    /// The TTFT p95 objective broke.
    TtftP95,
    /// The ITL p95 objective broke.
    ItlP95,
    /// Too few requests met the per-request bounds (`minGoodputRatio`).
    MinGoodputRatio,
    /// An open-loop step's completions fell behind its arrivals.
    FallingBehind,
    /// No SLO: another load step added less than 10% throughput.
    ThroughputPlateau,
}

impl From<SloTerm> for SaturationLimit {
    fn from(t: SloTerm) -> Self {
        match t {
            SloTerm::MaxErrorRate => SaturationLimit::MaxErrorRate,
            SloTerm::TtftP95 => SaturationLimit::TtftP95,
            SloTerm::ItlP95 => SaturationLimit::ItlP95,
            SloTerm::MinGoodputRatio => SaturationLimit::MinGoodputRatio,
            SloTerm::FallingBehind => SaturationLimit::FallingBehind,
        }
    }
}

impl SaturationLimit {
    /// The status spelling (`ttftP95`, `throughputPlateau`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            SaturationLimit::MaxErrorRate => "maxErrorRate",
            SaturationLimit::TtftP95 => "ttftP95",
            SaturationLimit::ItlP95 => "itlP95",
            SaturationLimit::MinGoodputRatio => "minGoodputRatio",
            SaturationLimit::FallingBehind => "fallingBehind",
            SaturationLimit::ThroughputPlateau => "throughputPlateau",
        }
    }
}

impl std::fmt::Display for SaturationLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Conclusions across steps.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// Highest output tokens per second of any step.
    #[serde(default)]
    pub peak_output_tokens_per_second: f64,
    /// The trials of that peak step (with `load.trials` > 1): what the baseline comparison
    /// tests the noise on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_trials: Option<TrialsStatus>,
    /// Client TTFT p95 (ms) at the peak-throughput step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_p95_ms: Option<f64>,
    /// The saturation point, when the SLO or load points found one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saturation: Option<Saturation>,
    /// What limited throughput.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bottleneck: Option<Bottleneck>,
    /// Scaling efficiency per replica count: throughput at N / (N x throughput at 1).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scaling_efficiency: BTreeMap<String, f64>,
    /// Cost of a million output tokens at the saturation point (needs `spec.cost`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_per_million_output_tokens_at_saturation: Option<f64>,
    /// Autoscaling and capacity suggestions derived from the saturation point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommendation: Option<Recommendation>,
    /// Plain-language findings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<String>,
}

/// Suggestions from a saturation result.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Recommendation {
    /// Request rate one replica sustains within the SLO (the saturation point divided by
    /// the replicas that served it).
    pub requests_per_second_per_replica: f64,
    /// Suggested queue-depth HPA target: waiting requests per replica at the knee (at least
    /// 1), as `spec.autoscaling.target`.
    pub queue_depth_target: f64,
    /// The `spec.targetRequestRate` this plan is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_request_rate: Option<f64>,
    /// Replicas needed for `targetRequestRate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas_for_target_rate: Option<i32>,
}

impl LoadSpec {
    /// The configured load points, in order (a trace replay's are its speed-ups, as rates).
    pub fn points(&self) -> Vec<LoadPoint> {
        match self.mode {
            LoadMode::Concurrency => self
                .concurrency
                .iter()
                .map(|&c| LoadPoint::Concurrency(c))
                .collect(),
            LoadMode::Rate if !self.trace_speedups.is_empty() => self
                .trace_speedups
                .iter()
                .map(|&s| LoadPoint::Rate(s))
                .collect(),
            LoadMode::Rate => self.rate.iter().map(|&r| LoadPoint::Rate(r)).collect(),
        }
    }
}
