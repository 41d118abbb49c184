//! The results JSON: `{"metadata": {...}, "steps": [...], "summary": {...}}`. Step fields use
//! vLLM bench's flat names (`request_throughput`, `p99_ttft_ms`, ...) so results can be diffed
//! against `vllm bench serve --save-result`. Per-pod results merge via their histograms.

use std::collections::BTreeMap;

use anyhow::{bail, ensure};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::outcome::ErrorClass;
use super::plan::{Api, LoadPoint, Mode, Plan};
use super::stats::{
    EncodedHistograms, ErrorCounts, Histograms, Percentiles, StepStats, push_distinct,
};

/// The whole results document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// What was run, where, when.
    pub metadata: Metadata,
    /// One entry per load point, in run order.
    pub steps: Vec<StepResult>,
    /// Totals and conclusions over all steps.
    pub summary: Summary,
}

/// Run state written into `metadata.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Steps are still running (the file is rewritten after each step).
    Running,
    /// Every step ran.
    Completed,
    /// Stopped early (Ctrl-C / SIGTERM); the finished steps are kept.
    Interrupted,
}

/// `metadata` of the results document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// Always `inferops`.
    pub tool: String,
    /// inferops version.
    pub version: String,
    /// Run state.
    pub status: RunStatus,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// When the run ended (absent while running).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Target base URL.
    pub url: String,
    /// Served model name.
    pub model: String,
    /// `completions` or `chat`.
    pub api: Api,
    /// Load mode: `concurrency` or `rate`.
    pub mode: Mode,
    /// Host that ran the load (the pod name in a cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Why the steps lack server-side figures although the plan asked Prometheus for them
    /// (a short message; the client results are complete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_metrics_error: Option<String>,
    /// The plan as run.
    pub plan: Plan,
}

impl Metadata {
    /// Metadata of a run of `plan` starting now.
    pub fn new(plan: &Plan) -> Metadata {
        Metadata {
            tool: "inferops".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            status: RunStatus::Running,
            started_at: Utc::now(),
            finished_at: None,
            url: plan.target.url.clone(),
            model: plan.target.model.clone(),
            api: plan.workload.api,
            mode: plan.load.mode,
            hostname: std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()),
            server_metrics_error: None,
            plan: plan.clone(),
        }
    }
}

/// One load point's measurements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    /// Closed-loop concurrency (absent in rate mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// Open-loop offered rate, requests/s (absent in concurrency mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_rate: Option<f64>,
    /// Successful requests.
    pub completed: u64,
    /// Failed requests.
    pub failed: u64,
    /// Failed requests by class.
    pub errors: ErrorCounts,
    /// First few distinct messages per error class (`{"http4xx": ["model ... does not exist"]}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub error_messages: BTreeMap<ErrorClass, Vec<String>>,
    /// Measured seconds: `window_end - window_start`.
    pub duration: f64,
    /// Completed requests per second.
    pub request_throughput: f64,
    /// Output tokens per second.
    pub output_throughput: f64,
    /// Input plus output tokens per second.
    pub total_token_throughput: f64,
    /// Prompt tokens of completed requests.
    pub total_input_tokens: u64,
    /// Output tokens of completed requests.
    pub total_output_tokens: u64,
    /// Mean TTFT, ms.
    pub mean_ttft_ms: f64,
    /// Median TTFT, ms.
    pub median_ttft_ms: f64,
    /// p90 TTFT, ms.
    pub p90_ttft_ms: f64,
    /// p95 TTFT, ms.
    pub p95_ttft_ms: f64,
    /// p99 TTFT, ms.
    pub p99_ttft_ms: f64,
    /// Mean TPOT, ms.
    pub mean_tpot_ms: f64,
    /// Median TPOT, ms.
    pub median_tpot_ms: f64,
    /// p90 TPOT, ms.
    pub p90_tpot_ms: f64,
    /// p95 TPOT, ms.
    pub p95_tpot_ms: f64,
    /// p99 TPOT, ms.
    pub p99_tpot_ms: f64,
    /// Mean ITL, ms.
    pub mean_itl_ms: f64,
    /// Median ITL, ms.
    pub median_itl_ms: f64,
    /// p90 ITL, ms.
    pub p90_itl_ms: f64,
    /// p95 ITL, ms.
    pub p95_itl_ms: f64,
    /// p99 ITL, ms.
    pub p99_itl_ms: f64,
    /// Mean end-to-end latency, ms.
    pub mean_e2el_ms: f64,
    /// Median end-to-end latency, ms.
    pub median_e2el_ms: f64,
    /// p90 end-to-end latency, ms.
    pub p90_e2el_ms: f64,
    /// p95 end-to-end latency, ms.
    pub p95_e2el_ms: f64,
    /// p99 end-to-end latency, ms.
    pub p99_e2el_ms: f64,
    /// Start of the measured window (after warmup).
    pub window_start: DateTime<Utc>,
    /// End of the measured window (last measured request finished).
    pub window_end: DateTime<Utc>,
    /// The step was cut short (Ctrl-C).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
    /// Serialized histograms, for merging per-pod results.
    pub histograms: EncodedHistograms,
    /// CPU the load generator used during the step, as a fraction of the cores it may use
    /// (its cgroup quota or the machine's). Near 1 the client, not the server, is the limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cpu_util: Option<f64>,
    /// Open loop: fraction of requests sent more than 10 ms after their scheduled time. Above
    /// a few percent the client could not keep the offered rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_send_fraction: Option<f64>,
    /// What Prometheus reported for this window (`inferops bench --prometheus URL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<crate::contract::WindowMetrics>,
    /// Open loop: requests that arrived per second over the later two thirds of the step's
    /// arrivals (absent in a closed loop or with too few requests to judge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arrival_rate: Option<f64>,
    /// Open loop: requests that finished (ok or failed) per second over the same time. Well
    /// below `arrival_rate`, the server did not keep up with the offered rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub achieved_request_rate: Option<f64>,
    /// Open loop: mean TTFT of the last third of the step's requests over the first third's
    /// (by scheduled time); well above 1, requests queued ever longer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_growth: Option<f64>,
    /// Open loop: completions fell behind arrivals by more than noise while latency grew
    /// through the step. Such a step is saturated whatever its totals say.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub falling_behind: bool,
    /// With `load.goodputSlo`: successful requests that met every per-request bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub good_requests: Option<u64>,
    /// Output tokens of the good requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub good_output_tokens: Option<u64>,
    /// Good requests per second (vLLM bench's `request_goodput`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_goodput: Option<f64>,
    /// Output tokens per second of the good requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_goodput: Option<f64>,
    /// Good requests / all requests of the step (failed ones count as not met).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo_attainment: Option<f64>,
    /// Connections opened before the step (outside its warmup and measured window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_setup: Option<ConnectionSetup>,
    /// With `load.trials` > 1: each trial's figures and their spread. The step's other
    /// fields merge all trials (counters add, histograms merge, throughputs over the summed
    /// measured time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trials: Option<Trials>,
    /// The workload the step was meant to send (from the plan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<StepWorkload>,
    /// Requests the client abandoned on purpose (`workload.cancel`), counted apart from
    /// `completed` and `failed`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cancelled: u64,
    /// With a model mix: the step broken down per model, each measured over the step's
    /// window (so counters and throughputs add up to the step's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<ModelStepResult>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One model's part of a step: the same figures as the step (`completed`, `failed`,
/// throughputs, TTFT/TPOT/ITL/E2E percentiles, histograms) for its requests only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelStepResult {
    /// Served model name the requests named.
    pub model: String,
    /// Its figures (per-model entries carry no `models` or `workload` of their own).
    #[serde(flatten)]
    pub step: Box<StepResult>,
}

/// Prompt source of a step, as recorded in its [`StepWorkload`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadDataset {
    /// Synthetic random prompts.
    #[default]
    Random,
    /// A ShareGPT-format file.
    Sharegpt,
    /// Groups of synthetic prompts sharing a prefix.
    SharedPrefix,
    /// A replayed trace (Mooncake JSONL).
    Trace,
    /// Custom JSONL prompts.
    Jsonl,
}

/// One served model (or LoRA adapter) of a step's model mix and its share of the requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelShare {
    /// Served model name sent in the requests.
    pub model: String,
    /// Intended fraction of the requests, 0..1 (the weights normalized).
    pub share: f64,
}

/// What a step was meant to send, recorded next to what it measured, so a report can say
/// "40% of prompt tokens shared, 70/30 base/adapter". Every figure is the *intended* one
/// (from the plan or the prepared prompt set); the measured totals are in the step itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepWorkload {
    /// Prompt source.
    pub dataset: WorkloadDataset,
    /// Mean prompt length asked for, tokens (words without a tokenizer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_input_tokens: Option<f64>,
    /// Mean `max_tokens` asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_output_tokens: Option<f64>,
    /// Intended share of prompt tokens that repeat an earlier prompt's prefix and can come
    /// from a prefix cache, 0..1 (shared-prefix datasets; see
    /// [`SharedPrefix::shared_fraction`](super::plan::SharedPrefix::shared_fraction)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_prefix_fraction: Option<f64>,
    /// The model mix (empty: every request goes to `metadata.model`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<ModelShare>,
    /// Multi-turn conversations: the mean number of turns of the prepared sessions
    /// (for ShareGPT, the recorded human turns up to `turns`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_turns_per_session: Option<f64>,
    /// Multi-turn conversations: sessions that sent at least one measured turn (measured,
    /// this load pod's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<u64>,
    /// Trace replay: the speed-up of this step (1 = the recorded pace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_speedup: Option<f64>,
}

impl StepWorkload {
    /// The workload `plan` intends. `prepared_means` are the mean prompt and output lengths
    /// of the prepared request set, used where the plan alone does not say (ShareGPT).
    pub fn of(plan: &Plan, prepared_means: Option<(f64, f64)>) -> StepWorkload {
        use super::plan::Dataset;
        let w = &plan.workload;
        let r3 = |v: f64| (v * 1000.0).round() / 1000.0;
        let (dataset, input, output, shared) = match &w.dataset {
            Dataset::Random => (
                WorkloadDataset::Random,
                Some(w.input_tokens.mean()),
                Some(w.output_tokens.mean()),
                None,
            ),
            Dataset::Sharegpt { .. } => (
                WorkloadDataset::Sharegpt,
                prepared_means.map(|m| m.0),
                prepared_means.map(|m| m.1),
                None,
            ),
            Dataset::SharedPrefix(sp) => (
                WorkloadDataset::SharedPrefix,
                Some(f64::from(sp.prefix_tokens) + sp.suffix_tokens.mean()),
                Some(w.output_tokens.mean()),
                Some(sp.shared_fraction()),
            ),
            Dataset::Trace { .. } => (
                WorkloadDataset::Trace,
                prepared_means.map(|m| m.0),
                prepared_means.map(|m| m.1),
                None,
            ),
            Dataset::Jsonl { .. } => (
                WorkloadDataset::Jsonl,
                prepared_means.map(|m| m.0),
                prepared_means.map(|m| m.1),
                None,
            ),
        };
        let total: f64 = w.models.iter().map(|m| f64::from(m.weight)).sum();
        StepWorkload {
            dataset,
            mean_input_tokens: input.map(r3),
            mean_output_tokens: output.map(r3),
            shared_prefix_fraction: shared.map(r3),
            models: w
                .models
                .iter()
                .filter(|_| total > 0.0)
                .map(|m| ModelShare {
                    model: m.name.clone(),
                    share: r3(f64::from(m.weight) / total),
                })
                .collect(),
            mean_turns_per_session: None,
            sessions: None,
            trace_speedup: None,
        }
    }

    /// One phrase for headers and reports: `shared-prefix, 512 in / 128 out, 47% of prompt
    /// tokens shared, models base 70% + lora-a 30%`.
    pub fn describe(&self) -> String {
        let mut parts = vec![
            match self.dataset {
                WorkloadDataset::Random => "random",
                WorkloadDataset::Sharegpt => "sharegpt",
                WorkloadDataset::SharedPrefix => "shared-prefix",
                WorkloadDataset::Trace => "trace",
                WorkloadDataset::Jsonl => "jsonl",
            }
            .to_string(),
        ];
        if let Some(s) = self.trace_speedup {
            parts[0] = format!("trace at {s}x");
        }
        if let (Some(i), Some(o)) = (self.mean_input_tokens, self.mean_output_tokens) {
            parts.push(format!("{i:.0} in / {o:.0} out tokens (mean)"));
        }
        if let Some(f) = self.shared_prefix_fraction {
            parts.push(format!("{:.0}% of prompt tokens shared", f * 100.0));
        }
        if let Some(t) = self.mean_turns_per_session {
            parts.push(format!("{t:.1} turns per session"));
        }
        if !self.models.is_empty() {
            let mix: Vec<String> = self
                .models
                .iter()
                .map(|m| format!("{} {:.0}%", m.model, m.share * 100.0))
                .collect();
            parts.push(format!("models {}", mix.join(" + ")));
        }
        parts.join(", ")
    }
}

/// The pre-connect phase of a step: connections opened and verified before the step's
/// clock starts, so TCP handshakes (and SYNs dropped by a full accept queue, retried by the
/// kernel after 1 s and 3 s) stay out of the latencies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionSetup {
    /// Connections opened.
    pub connections: u32,
    /// Connections that could not be opened; their requests connect again, in the window.
    pub failed: u32,
    /// Wall time of the whole phase, ms.
    pub duration_ms: f64,
    /// Slowest single connection, ms. About 1,000 or 3,000 means a SYN was dropped and
    /// retransmitted: the server's listen backlog is shorter than the connection burst.
    pub slowest_ms: f64,
}

impl StepResult {
    /// Summarizes recorded stats of a step at `point` measured over the given window.
    pub fn from_stats(
        point: LoadPoint,
        stats: &StepStats,
        window_start: DateTime<Utc>,
        window_end: DateTime<Utc>,
        interrupted: bool,
    ) -> StepResult {
        let mut error_messages = BTreeMap::new();
        for c in ErrorClass::ALL {
            if !stats.messages[c.index()].is_empty() {
                error_messages.insert(c, stats.messages[c.index()].clone());
            }
        }
        let mut s = StepResult {
            max_concurrency: None,
            request_rate: None,
            completed: stats.completed,
            failed: stats.failed(),
            errors: stats.errors,
            error_messages,
            duration: 0.0,
            request_throughput: 0.0,
            output_throughput: 0.0,
            total_token_throughput: 0.0,
            total_input_tokens: stats.input_tokens,
            total_output_tokens: stats.output_tokens,
            mean_ttft_ms: 0.0,
            median_ttft_ms: 0.0,
            p90_ttft_ms: 0.0,
            p95_ttft_ms: 0.0,
            p99_ttft_ms: 0.0,
            mean_tpot_ms: 0.0,
            median_tpot_ms: 0.0,
            p90_tpot_ms: 0.0,
            p95_tpot_ms: 0.0,
            p99_tpot_ms: 0.0,
            mean_itl_ms: 0.0,
            median_itl_ms: 0.0,
            p90_itl_ms: 0.0,
            p95_itl_ms: 0.0,
            p99_itl_ms: 0.0,
            mean_e2el_ms: 0.0,
            median_e2el_ms: 0.0,
            p90_e2el_ms: 0.0,
            p95_e2el_ms: 0.0,
            p99_e2el_ms: 0.0,
            window_start,
            window_end: window_end.max(window_start),
            interrupted,
            histograms: stats.hist.encode(),
            client_cpu_util: None,
            late_send_fraction: (stats.sends > 0).then(|| {
                ((stats.late_sends as f64 / stats.sends as f64) * 1000.0).round() / 1000.0
            }),
            server: None,
            arrival_rate: None,
            achieved_request_rate: None,
            ttft_growth: None,
            falling_behind: false,
            good_requests: stats.goodput_slo.map(|_| stats.good),
            good_output_tokens: stats.goodput_slo.map(|_| stats.good_output_tokens),
            request_goodput: None,
            output_goodput: None,
            slo_attainment: None,
            connection_setup: None,
            trials: None,
            workload: None,
            cancelled: stats.cancelled,
            models: Vec::new(),
        };
        if stats.sends > 0
            && let Some((b, secs)) = stats.trend.backlog()
        {
            let r3 = |v: f64| (v * 1000.0).round() / 1000.0;
            s.arrival_rate = Some(r3(b.arrival_rate));
            s.achieved_request_rate = Some(r3(b.finish_rate));
            s.ttft_growth = b.ttft_growth.or(b.e2el_growth).map(r3);
            s.falling_behind = b.falling_behind(secs);
        }
        s.set_point(point);
        s.fill_derived(&stats.hist);
        s
    }

    /// The load point of this step.
    pub fn point(&self) -> Option<LoadPoint> {
        match (self.max_concurrency, self.request_rate) {
            (Some(c), _) => Some(LoadPoint::Concurrency(c)),
            (None, Some(r)) => Some(LoadPoint::Rate(r)),
            (None, None) => None,
        }
    }

    fn set_point(&mut self, point: LoadPoint) {
        match point {
            LoadPoint::Concurrency(c) => self.max_concurrency = Some(c),
            LoadPoint::Rate(r) => self.request_rate = Some(r),
        }
    }

    /// Recomputes duration, throughputs and percentiles from counters, window and histograms.
    fn fill_derived(&mut self, h: &Histograms) {
        let secs = (self.window_end - self.window_start)
            .to_std()
            .unwrap_or_default()
            .as_secs_f64();
        self.duration = secs;
        let per_sec = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        self.request_throughput = per_sec(self.completed);
        self.output_throughput = per_sec(self.total_output_tokens);
        self.total_token_throughput = per_sec(self.total_input_tokens + self.total_output_tokens);
        let r3 = |v: f64| (v * 1000.0).round() / 1000.0;
        self.request_goodput = self.good_requests.map(|g| r3(per_sec(g)));
        self.output_goodput = self.good_output_tokens.map(|g| r3(per_sec(g)));
        let total = self.completed + self.failed;
        self.slo_attainment = self
            .good_requests
            .filter(|_| total > 0)
            .map(|g| r3(g as f64 / total as f64));
        let t = Percentiles::of(&h.ttft);
        (
            self.mean_ttft_ms,
            self.median_ttft_ms,
            self.p90_ttft_ms,
            self.p95_ttft_ms,
            self.p99_ttft_ms,
        ) = (t.mean, t.median, t.p90, t.p95, t.p99);
        let t = Percentiles::of(&h.tpot);
        (
            self.mean_tpot_ms,
            self.median_tpot_ms,
            self.p90_tpot_ms,
            self.p95_tpot_ms,
            self.p99_tpot_ms,
        ) = (t.mean, t.median, t.p90, t.p95, t.p99);
        let t = Percentiles::of(&h.itl);
        (
            self.mean_itl_ms,
            self.median_itl_ms,
            self.p90_itl_ms,
            self.p95_itl_ms,
            self.p99_itl_ms,
        ) = (t.mean, t.median, t.p90, t.p95, t.p99);
        let t = Percentiles::of(&h.e2el);
        (
            self.mean_e2el_ms,
            self.median_e2el_ms,
            self.p90_e2el_ms,
            self.p95_e2el_ms,
            self.p99_e2el_ms,
        ) = (t.mean, t.median, t.p90, t.p95, t.p99);
    }

    /// Failed / (completed + failed); 0 when nothing ran.
    pub fn error_rate(&self) -> f64 {
        let n = self.completed + self.failed;
        if n == 0 {
            0.0
        } else {
            self.failed as f64 / n as f64
        }
    }

    /// Describes the errors: `http4xx ×40 ("model 'x' does not exist")`.
    pub fn describe_errors(&self) -> String {
        let mut parts = Vec::new();
        for c in ErrorClass::ALL {
            let n = self.errors.get(c);
            if n == 0 {
                continue;
            }
            let msgs = self
                .error_messages
                .get(&c)
                .map(|m| {
                    m.iter()
                        .map(|m| format!("{m:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            if msgs.is_empty() {
                parts.push(format!("{c} ×{n}"));
            } else {
                parts.push(format!("{c} ×{n} ({msgs})"));
            }
        }
        parts.join("; ")
    }

    /// A one-line human summary.
    pub fn one_line(&self) -> String {
        let point = self.point().map(|p| p.to_string()).unwrap_or_default();
        let mut line = format!(
            "{point}: {} ok, {} failed, {:.2} req/s, {:.0} out tok/s, TTFT p50 {:.1} ms p95 {:.1} ms, ITL p50 {:.2} ms p95 {:.2} ms, E2E p50 {:.0} ms",
            self.completed,
            self.failed,
            self.request_throughput,
            self.output_throughput,
            self.median_ttft_ms,
            self.p95_ttft_ms,
            self.median_itl_ms,
            self.p95_itl_ms,
            self.median_e2el_ms
        );
        if self.failed > 0 {
            line.push_str(&format!(" [errors: {}]", self.describe_errors()));
        }
        if self.cancelled > 0 {
            line.push_str(&format!(" [cancelled: {}]", self.cancelled));
        }
        if self.interrupted {
            line.push_str(" [interrupted]");
        }
        line
    }
}

/// Merges the same step measured by several pods: counters add, histograms merge, the window
/// spans all parts, load points add up. Percentiles are recomputed from merged histograms.
pub fn merge_steps(parts: &[StepResult]) -> anyhow::Result<StepResult> {
    let Some(first) = parts.first() else {
        bail!("no step results to merge");
    };
    let mut hist = first.histograms.decode()?;
    let mut out = first.clone();
    for p in &parts[1..] {
        ensure!(
            p.max_concurrency.is_some() == first.max_concurrency.is_some(),
            "cannot merge a concurrency step with a rate step"
        );
        hist.merge(&p.histograms.decode()?);
        out.max_concurrency = out
            .max_concurrency
            .zip(p.max_concurrency)
            .map(|(a, b)| a + b);
        out.request_rate = out.request_rate.zip(p.request_rate).map(|(a, b)| a + b);
        out.completed += p.completed;
        out.failed += p.failed;
        out.errors.merge(&p.errors);
        for (c, msgs) in &p.error_messages {
            let mine = out.error_messages.entry(*c).or_default();
            for m in msgs {
                push_distinct(mine, m);
            }
        }
        out.total_input_tokens += p.total_input_tokens;
        out.total_output_tokens += p.total_output_tokens;
        out.window_start = out.window_start.min(p.window_start);
        out.window_end = out.window_end.max(p.window_end);
        out.interrupted |= p.interrupted;
        // The busiest pod speaks for the split load.
        let max = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        out.client_cpu_util = max(out.client_cpu_util, p.client_cpu_util);
        out.late_send_fraction = max(out.late_send_fraction, p.late_send_fraction);
        let add = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        out.arrival_rate = add(out.arrival_rate, p.arrival_rate);
        out.achieved_request_rate = add(out.achieved_request_rate, p.achieved_request_rate);
        out.ttft_growth = max(out.ttft_growth, p.ttft_growth);
        // One pod falling behind means the server it shares with the others did.
        out.falling_behind |= p.falling_behind;
        let add_u = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        out.cancelled += p.cancelled;
        for pm in &p.models {
            match out.models.iter_mut().find(|m| m.model == pm.model) {
                Some(m) => *m.step = merge_steps(&[(*m.step).clone(), (*pm.step).clone()])?,
                None => out.models.push(pm.clone()),
            }
        }
        out.good_requests = add_u(out.good_requests, p.good_requests);
        out.good_output_tokens = add_u(out.good_output_tokens, p.good_output_tokens);
        out.connection_setup = match (out.connection_setup.take(), &p.connection_setup) {
            (Some(a), Some(b)) => Some(ConnectionSetup {
                connections: a.connections + b.connections,
                failed: a.failed + b.failed,
                duration_ms: a.duration_ms.max(b.duration_ms),
                slowest_ms: a.slowest_ms.max(b.slowest_ms),
            }),
            (a, b) => a.or_else(|| b.clone()),
        };
        // Each pod ran its own sessions.
        if let (Some(w), Some(pw)) = (out.workload.as_mut(), p.workload.as_ref()) {
            w.sessions = add_u(w.sessions, pw.sessions);
        }
    }
    out.histograms = hist.encode();
    out.fill_derived(&hist);
    out.trials = merge_trials_of_pods(parts);
    Ok(out)
}

/// Trial `k` of every pod is one trial of the split load: throughputs add; latency
/// percentiles are the request-weighted mean of the pods' (histograms are not kept per trial).
fn merge_trials_of_pods(parts: &[StepResult]) -> Option<Trials> {
    let all: Vec<&Trials> = parts
        .iter()
        .map(|p| p.trials.as_ref())
        .collect::<Option<_>>()?;
    let n = all.iter().map(|t| t.figures.len()).min()?;
    let figures = (0..n)
        .map(|k| {
            let f: Vec<&TrialFigures> = all.iter().map(|t| &t.figures[k]).collect();
            let weight: Vec<f64> = f.iter().map(|x| x.completed.max(1) as f64).collect();
            let total: f64 = weight.iter().sum();
            let wmean = |get: fn(&TrialFigures) -> f64| {
                f.iter().zip(&weight).map(|(x, w)| get(x) * w).sum::<f64>() / total
            };
            TrialFigures {
                completed: f.iter().map(|x| x.completed).sum(),
                failed: f.iter().map(|x| x.failed).sum(),
                request_throughput: f.iter().map(|x| x.request_throughput).sum(),
                output_throughput: f.iter().map(|x| x.output_throughput).sum(),
                p50_ttft_ms: wmean(|x| x.p50_ttft_ms),
                p95_ttft_ms: wmean(|x| x.p95_ttft_ms),
                p99_ttft_ms: wmean(|x| x.p99_ttft_ms),
                p50_itl_ms: wmean(|x| x.p50_itl_ms),
                p95_itl_ms: wmean(|x| x.p95_itl_ms),
                p99_itl_ms: wmean(|x| x.p99_itl_ms),
                p95_e2el_ms: wmean(|x| x.p95_e2el_ms),
            }
        })
        .collect();
    Some(Trials::of(figures))
}

/// Merges the trials of one step (run one after another at the same load): counters add,
/// histograms merge, throughputs are over the summed measured time, and `trials` holds each
/// trial's figures with their spread. One trial is returned as it is.
pub fn combine_trials(parts: &[StepResult]) -> anyhow::Result<StepResult> {
    let Some(first) = parts.first() else {
        bail!("no trials to combine");
    };
    if parts.len() == 1 {
        return Ok(first.clone());
    }
    let mut out = merge_steps(parts)?;
    out.max_concurrency = first.max_concurrency;
    out.request_rate = first.request_rate;
    let secs: f64 = parts.iter().map(|p| p.duration).sum();
    let per_sec = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    out.duration = secs;
    out.request_throughput = per_sec(out.completed);
    out.output_throughput = per_sec(out.total_output_tokens);
    out.total_token_throughput = per_sec(out.total_input_tokens + out.total_output_tokens);
    let r3 = |v: f64| (v * 1000.0).round() / 1000.0;
    out.request_goodput = out.good_requests.map(|g| r3(per_sec(g)));
    out.output_goodput = out.good_output_tokens.map(|g| r3(per_sec(g)));
    let mean = |get: fn(&StepResult) -> Option<f64>| {
        let v: Vec<f64> = parts.iter().filter_map(get).collect();
        (!v.is_empty()).then(|| r3(v.iter().sum::<f64>() / v.len() as f64))
    };
    out.arrival_rate = mean(|p| p.arrival_rate);
    out.achieved_request_rate = mean(|p| p.achieved_request_rate);
    out.trials = Some(Trials::of(parts.iter().map(TrialFigures::of).collect()));
    Ok(out)
}

/// One trial's headline figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialFigures {
    /// Successful requests.
    pub completed: u64,
    /// Failed requests.
    pub failed: u64,
    /// Completed requests per second.
    pub request_throughput: f64,
    /// Output tokens per second.
    pub output_throughput: f64,
    /// Median TTFT, ms.
    pub p50_ttft_ms: f64,
    /// p95 TTFT, ms.
    pub p95_ttft_ms: f64,
    /// p99 TTFT, ms.
    pub p99_ttft_ms: f64,
    /// Median ITL, ms.
    pub p50_itl_ms: f64,
    /// p95 ITL, ms.
    pub p95_itl_ms: f64,
    /// p99 ITL, ms.
    pub p99_itl_ms: f64,
    /// p95 end-to-end latency, ms.
    pub p95_e2el_ms: f64,
}

impl TrialFigures {
    /// The figures of one trial's step result.
    pub fn of(s: &StepResult) -> TrialFigures {
        TrialFigures {
            completed: s.completed,
            failed: s.failed,
            request_throughput: s.request_throughput,
            output_throughput: s.output_throughput,
            p50_ttft_ms: s.median_ttft_ms,
            p95_ttft_ms: s.p95_ttft_ms,
            p99_ttft_ms: s.p99_ttft_ms,
            p50_itl_ms: s.median_itl_ms,
            p95_itl_ms: s.p95_itl_ms,
            p99_itl_ms: s.p99_itl_ms,
            p95_e2el_ms: s.p95_e2el_ms,
        }
    }
}

/// The spread of one figure over the trials.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// Smallest trial value.
    pub min: f64,
    /// Median of the trial values.
    pub median: f64,
    /// Largest trial value.
    pub max: f64,
    /// Mean of the trial values.
    pub mean: f64,
    /// Lower end of the 95% confidence interval of the mean (Student's t over the trials).
    pub ci95_low: f64,
    /// Upper end of that interval.
    pub ci95_high: f64,
}

/// Two-sided 97.5% quantiles of Student's t for 1..=30 degrees of freedom.
const T975: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
    2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
    2.052, 2.048, 2.045, 2.042,
];

impl Spread {
    /// The spread of `values` (at least one; one value gives a zero-width interval).
    pub fn of(values: &[f64]) -> Spread {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n == 0 {
            return Spread {
                min: 0.0,
                median: 0.0,
                max: 0.0,
                mean: 0.0,
                ci95_low: 0.0,
                ci95_high: 0.0,
            };
        }
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        let mean = v.iter().sum::<f64>() / n as f64;
        let half = if n > 1 {
            let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            let t = T975.get(n - 2).copied().unwrap_or(1.96);
            t * (var / n as f64).sqrt()
        } else {
            0.0
        };
        let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
        Spread {
            min: r3(v[0]),
            median: r3(median),
            max: r3(v[n - 1]),
            mean: r3(mean),
            ci95_low: r3(mean - half),
            ci95_high: r3(mean + half),
        }
    }
}

/// The trials of one step: each trial's figures and the spread of the headline ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trials {
    /// Each trial's figures, in run order.
    pub figures: Vec<TrialFigures>,
    /// Spread of the request throughput, req/s.
    pub request_throughput: Spread,
    /// Spread of the output throughput, tok/s.
    pub output_throughput: Spread,
    /// Spread of the median TTFT, ms.
    pub p50_ttft_ms: Spread,
    /// Spread of the p95 TTFT, ms.
    pub p95_ttft_ms: Spread,
    /// Spread of the p99 TTFT, ms.
    pub p99_ttft_ms: Spread,
    /// Spread of the median ITL, ms.
    pub p50_itl_ms: Spread,
    /// Spread of the p95 ITL, ms.
    pub p95_itl_ms: Spread,
    /// Spread of the p99 ITL, ms.
    pub p99_itl_ms: Spread,
    /// Spread of the p95 end-to-end latency, ms.
    pub p95_e2el_ms: Spread,
}

impl Trials {
    /// Trials with these figures.
    pub fn of(figures: Vec<TrialFigures>) -> Trials {
        let spread = |get: fn(&TrialFigures) -> f64| {
            Spread::of(&figures.iter().map(get).collect::<Vec<_>>())
        };
        Trials {
            request_throughput: spread(|f| f.request_throughput),
            output_throughput: spread(|f| f.output_throughput),
            p50_ttft_ms: spread(|f| f.p50_ttft_ms),
            p95_ttft_ms: spread(|f| f.p95_ttft_ms),
            p99_ttft_ms: spread(|f| f.p99_ttft_ms),
            p50_itl_ms: spread(|f| f.p50_itl_ms),
            p95_itl_ms: spread(|f| f.p95_itl_ms),
            p99_itl_ms: spread(|f| f.p99_itl_ms),
            p95_e2el_ms: spread(|f| f.p95_e2el_ms),
            figures,
        }
    }
}

/// Merges per-pod results of one split run, step by step (steps are matched by position;
/// a step missing from some pod is merged from the pods that have it).
pub fn merge_results(parts: &[Results]) -> anyhow::Result<Results> {
    let Some(first) = parts.first() else {
        bail!("no results to merge");
    };
    let n = parts.iter().map(|r| r.steps.len()).max().unwrap_or(0);
    let mut steps = Vec::with_capacity(n);
    for i in 0..n {
        let same: Vec<StepResult> = parts
            .iter()
            .filter_map(|r| r.steps.get(i).cloned())
            .collect();
        steps.push(merge_steps(&same)?);
    }
    let mut metadata = first.metadata.clone();
    metadata.started_at = parts
        .iter()
        .map(|r| r.metadata.started_at)
        .min()
        .unwrap_or(metadata.started_at);
    metadata.finished_at = parts.iter().map(|r| r.metadata.finished_at).max().flatten();
    metadata.status = if parts
        .iter()
        .any(|r| r.metadata.status == RunStatus::Running)
    {
        RunStatus::Running
    } else if parts
        .iter()
        .any(|r| r.metadata.status == RunStatus::Interrupted)
    {
        RunStatus::Interrupted
    } else {
        RunStatus::Completed
    };
    metadata.hostname = None;
    metadata.plan.parallelism.index = 0;
    let mut summary = Summary::of(&steps, metadata.plan.load.max_error_rate);
    summary.saturation = first.summary.saturation.clone();
    summary.stopped_early = parts.iter().find_map(|r| r.summary.stopped_early.clone());
    Ok(Results {
        metadata,
        steps,
        summary,
    })
}

/// Outcome of a saturation search: the bracket `[highest ok, first broken]` and every probe.
/// In `rate` mode the bracket is in `highest_ok_rate` / `first_broken_rate`, in
/// `concurrency` mode in `highest_ok_concurrency` / `first_broken_concurrency`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaturationResult {
    /// Highest rate (req/s) at which every SLO held (absent if none held).
    pub highest_ok_rate: Option<f64>,
    /// Lowest rate at which an SLO broke (absent if none broke up to `maxRate`).
    pub first_broken_rate: Option<f64>,
    /// Which SLOs broke at the first broken load, e.g. `ttftP95 812.0 ms > 500.0 ms`.
    pub broken_by: Vec<String>,
    /// Concurrency mode: highest concurrency at which every SLO held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub highest_ok_concurrency: Option<u32>,
    /// Concurrency mode: lowest concurrency at which an SLO broke.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_broken_concurrency: Option<u32>,
    /// `(first broken - highest ok) / highest ok` when both are known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bracket_width: Option<f64>,
    /// The bracket width the search aimed for (`saturation.tolerance`).
    #[serde(default)]
    pub tolerance: f64,
    /// True when the bracket is within the tolerance (or, for concurrency, adjacent
    /// integers); false when the search ended at a bound, by cancellation or by its probe cap.
    #[serde(default)]
    pub converged: bool,
    /// Every probe in run order.
    #[serde(default)]
    pub probes: Vec<SaturationProbe>,
}

/// One step of a saturation search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaturationProbe {
    /// Index of the step in `steps`.
    pub step: usize,
    /// The load probed.
    pub load: LoadPoint,
    /// Why it was probed.
    pub phase: ProbePhase,
    /// Every SLO held.
    pub held: bool,
    /// The broken terms (empty when it held).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub broken_by: Vec<String>,
    /// Requests finished per second (open loop: while requests arrived; closed loop: over
    /// the step).
    pub achieved_request_rate: f64,
}

/// Why a load was probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbePhase {
    /// Growing by `stepFactor` from the start.
    Grow,
    /// Shrinking by `stepFactor` because the start already broke.
    Shrink,
    /// Halving the bracket.
    Bisect,
}

impl SaturationResult {
    /// The bracket as load points `(highest ok, first broken)`.
    pub fn bracket(&self) -> (Option<LoadPoint>, Option<LoadPoint>) {
        let pick = |c: Option<u32>, r: Option<f64>| {
            c.map(LoadPoint::Concurrency).or(r.map(LoadPoint::Rate))
        };
        (
            pick(self.highest_ok_concurrency, self.highest_ok_rate),
            pick(self.first_broken_concurrency, self.first_broken_rate),
        )
    }
}

/// `summary` of the results document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Completed requests over all steps.
    pub completed: u64,
    /// Failed requests over all steps.
    pub failed: u64,
    /// Failed requests by class over all steps.
    pub errors: ErrorCounts,
    /// Highest step output throughput, tokens/s.
    pub peak_output_throughput: f64,
    /// Highest step request throughput, req/s.
    pub peak_request_throughput: f64,
    /// Steps whose error rate exceeded `maxErrorRate`, described with classes and messages.
    pub steps_over_error_budget: Vec<String>,
    /// Saturation search outcome (rate mode with `saturation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saturation: Option<SaturationResult>,
    /// Why the sweep ended before its last step (e.g. every request of a step failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_early: Option<String>,
    /// Per-request records kept in the document (a load pod with `load.records`): size
    /// bounded, with the number dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<super::records::EmbeddedRecords>,
}

impl Summary {
    /// Totals over `steps`, flagging steps with an error rate above `max_error_rate`.
    pub fn of(steps: &[StepResult], max_error_rate: f64) -> Summary {
        let mut errors = ErrorCounts::default();
        for s in steps {
            errors.merge(&s.errors);
        }
        Summary {
            completed: steps.iter().map(|s| s.completed).sum(),
            failed: steps.iter().map(|s| s.failed).sum(),
            errors,
            peak_output_throughput: steps
                .iter()
                .map(|s| s.output_throughput)
                .fold(0.0, f64::max),
            peak_request_throughput: steps
                .iter()
                .map(|s| s.request_throughput)
                .fold(0.0, f64::max),
            steps_over_error_budget: steps
                .iter()
                .filter(|s| s.error_rate() > max_error_rate || (s.completed == 0 && s.failed > 0))
                .map(|s| {
                    format!(
                        "{}: error rate {:.1}% > {:.1}%: {}",
                        s.point().map(|p| p.to_string()).unwrap_or_default(),
                        s.error_rate() * 100.0,
                        max_error_rate * 100.0,
                        s.describe_errors()
                    )
                })
                .collect(),
            saturation: None,
            stopped_early: None,
            records: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::outcome::{Failure, Metrics};
    use std::time::{Duration, Instant};

    #[test]
    fn trials_merge_sequentially_and_report_their_spread() {
        let c = LoadPoint::Concurrency(4);
        // Three trials of 10 s: 100, 110 and 120 ms TTFT; 10, 20, 30 requests.
        let parts = [
            step(c, &[100; 10], 0, 10),
            step(c, &[110; 20], 0, 10),
            step(c, &[120; 30], 0, 10),
        ];
        let t = combine_trials(&parts).unwrap();
        assert_eq!(t.max_concurrency, Some(4), "the load point does not add up");
        assert_eq!(t.completed, 60);
        assert_eq!(t.duration, 30.0);
        assert!((t.request_throughput - 2.0).abs() < 1e-9, "60 over 30 s");
        let tr = t.trials.as_ref().unwrap();
        assert_eq!(tr.figures.len(), 3);
        assert_eq!(
            (
                tr.request_throughput.min,
                tr.request_throughput.median,
                tr.request_throughput.max
            ),
            (1.0, 2.0, 3.0)
        );
        // Mean 2, s = 1, t(0.975, 2) = 4.303: 2 ± 4.303/sqrt(3).
        let half = 4.303 / 3f64.sqrt();
        assert!((tr.request_throughput.ci95_low - (2.0 - half)).abs() < 1e-3);
        assert!((tr.request_throughput.ci95_high - (2.0 + half)).abs() < 1e-3);
        let p95 = tr.p95_ttft_ms;
        assert!(p95.min < p95.median && p95.median < p95.max, "{p95:?}");
        assert!((p95.median - 110.0).abs() < 1.0, "{p95:?}");
        // One trial is the step itself.
        assert_eq!(combine_trials(&parts[..1]).unwrap(), parts[0]);
        let one = Spread::of(&[5.0]);
        assert_eq!((one.ci95_low, one.ci95_high), (5.0, 5.0));
        // Two pods of the same trials: throughputs add per trial.
        let merged = merge_steps(&[t.clone(), t.clone()]).unwrap();
        let m = merged.trials.unwrap();
        assert_eq!(m.figures.len(), 3);
        assert!((m.request_throughput.median - 4.0).abs() < 1e-9);
        assert!((m.p95_ttft_ms.median - p95.median).abs() < 1e-9);
    }

    fn step(point: LoadPoint, ttft_ms: &[u64], fails: u64, secs: i64) -> StepResult {
        let mut s = StepStats::new();
        let t = Instant::now();
        for &v in ttft_ms {
            let m = Metrics {
                ttft_us: v * 1000,
                e2el_us: v * 1000 + 127_000,
                prompt_tokens: 256,
                output_tokens: 128,
                streamed: true,
            };
            s.record_ok(&m, &[1000; 127], t);
        }
        for _ in 0..fails {
            s.record_err(
                &Failure::new(ErrorClass::Http5xx, "overloaded"),
                t + Duration::from_secs(1),
            );
        }
        let start = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        StepResult::from_stats(
            point,
            &s,
            start,
            start + chrono::Duration::seconds(secs),
            false,
        )
    }

    #[test]
    fn step_summary_uses_vllm_names_and_rates() {
        let s = step(LoadPoint::Concurrency(4), &[10, 20, 30, 40], 1, 2);
        assert_eq!(s.request_throughput, 2.0);
        assert_eq!(s.output_throughput, 256.0);
        assert_eq!(s.total_token_throughput, 768.0);
        assert!((s.error_rate() - 0.2).abs() < 1e-9);
        let v = serde_json::to_value(&s).unwrap();
        for key in [
            "max_concurrency",
            "completed",
            "failed",
            "errors",
            "duration",
            "request_throughput",
            "output_throughput",
            "total_token_throughput",
            "total_input_tokens",
            "total_output_tokens",
            "mean_ttft_ms",
            "median_ttft_ms",
            "p90_ttft_ms",
            "p95_ttft_ms",
            "p99_ttft_ms",
            "median_tpot_ms",
            "p99_itl_ms",
            "p95_e2el_ms",
            "window_start",
            "window_end",
            "histograms",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert!(v.get("request_rate").is_none());
        assert_eq!(v["errors"]["http5xx"], 1);
        assert_eq!(v["error_messages"]["http5xx"][0], "overloaded");
        assert_eq!(v["window_start"], "2026-01-01T00:00:00Z");
        let back: StepResult = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
        assert!(
            s.one_line().contains("http5xx ×1 (\"overloaded\")"),
            "{}",
            s.one_line()
        );
    }

    #[test]
    fn workload_record_carries_the_intended_shape() {
        let mut plan = Plan::from_text(
            "target: {url: x, model: base}\nworkload: {outputTokens: {min: 64, max: 192}, \
             models: [{name: base, weight: 7}, {name: lora-a, weight: 3}], dataset: {sharedPrefix: \
             {groups: 4, promptsPerGroup: 10, prefixTokens: 300, suffixTokens: 100}}}",
        )
        .unwrap();
        let w = StepWorkload::of(&plan, Some((1.0, 1.0)));
        assert_eq!(w.dataset, WorkloadDataset::SharedPrefix);
        assert_eq!(w.mean_input_tokens, Some(400.0));
        assert_eq!(w.mean_output_tokens, Some(128.0));
        // 300 of 400 tokens shared by 9 of every 10 prompts.
        assert_eq!(w.shared_prefix_fraction, Some(0.675));
        assert_eq!(w.models.len(), 2);
        assert_eq!(
            (w.models[1].model.as_str(), w.models[1].share),
            ("lora-a", 0.3)
        );
        assert_eq!(
            w.describe(),
            "shared-prefix, 400 in / 128 out tokens (mean), 68% of prompt tokens shared, models base 70% + lora-a 30%"
        );
        let v = serde_json::to_value(&w).unwrap();
        assert_eq!(v["dataset"], "shared_prefix");
        assert_eq!(v["shared_prefix_fraction"], 0.675);
        assert_eq!(v["models"][0]["model"], "base");
        // ShareGPT lengths come from the prepared prompts; random ones from the plan.
        plan.workload.dataset = crate::contract::plan::Dataset::Sharegpt {
            path: "/d.json".into(),
            output_from_dataset: true,
        };
        plan.workload.models.clear();
        let w = StepWorkload::of(&plan, Some((212.5, 97.25)));
        assert_eq!(
            (w.mean_input_tokens, w.mean_output_tokens),
            (Some(212.5), Some(97.25))
        );
        assert_eq!(w.shared_prefix_fraction, None);
        let v = serde_json::to_value(&w).unwrap();
        assert!(v.get("models").is_none() && v.get("shared_prefix_fraction").is_none());
        let mut s = step(LoadPoint::Concurrency(1), &[10], 0, 1);
        s.workload = Some(w);
        let back: StepResult = serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn merging_pods_sums_counters_and_recomputes_percentiles() {
        let a = step(LoadPoint::Rate(5.0), &[10; 99], 0, 10);
        let b = step(LoadPoint::Rate(5.0), &[900], 2, 10);
        let m = merge_steps(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(m.request_rate, Some(10.0));
        assert_eq!((m.completed, m.failed), (100, 2));
        assert_eq!(m.request_throughput, 10.0);
        // 99 of 100 requests at 10 ms: p99 stays 10 ms, where averaging p99s would give 455.
        assert!((m.p99_ttft_ms - 10.0).abs() < 0.05, "{}", m.p99_ttft_ms);
        assert!((m.median_ttft_ms - 10.0).abs() < 0.05);
        assert!((m.mean_ttft_ms - 18.9).abs() < 0.1, "{}", m.mean_ttft_ms);
        assert!(merge_steps(&[a, step(LoadPoint::Concurrency(1), &[1], 0, 1)]).is_err());
        assert!(merge_steps(&[]).is_err());
    }

    #[test]
    fn summary_flags_steps_over_the_error_budget() {
        let steps = vec![
            step(LoadPoint::Concurrency(1), &[10; 100], 1, 1),
            step(LoadPoint::Concurrency(2), &[10; 50], 5, 1),
            step(LoadPoint::Concurrency(3), &[], 3, 1),
        ];
        let s = Summary::of(&steps, 0.02);
        assert_eq!(
            s.steps_over_error_budget.len(),
            2,
            "{:?}",
            s.steps_over_error_budget
        );
        assert!(s.steps_over_error_budget[0].starts_with("concurrency=2"));
        assert_eq!(s.failed, 9);
        assert_eq!(s.peak_request_throughput, 100.0);
        assert!(Summary::of(&steps, 1.0).steps_over_error_budget.len() == 1);
    }
}
