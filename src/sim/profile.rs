//! Simulator configuration: [`SimOptions`] and the named, calibrated profiles.
//!
//! Every number that shapes the simulated engine's behaviour lives here, so a profile is a
//! plain value that can be printed, cloned and tweaked by tests. The calibration of each
//! profile against its published source is explained in `docs/simulator.md`.

use std::time::Duration;

/// Names accepted by [`SimOptions::profile`], in display order.
pub const PROFILE_NAMES: &[&str] = &[
    "qwen2.5-0.5b-l4",
    "llama3.2-3b-t4",
    "tinyllama-a10",
    "zero",
    "fixed",
];

/// Default profile of `inferops sim` and of `inferops bench` without `--url`.
pub const DEFAULT_PROFILE: &str = "qwen2.5-0.5b-l4";

/// How request timing is produced.
#[derive(Debug, Clone, PartialEq)]
pub enum TimingMode {
    /// The continuous-batching engine model ([`PerfModel`]): one engine per replica.
    Engine,
    /// No delays at all: every token is written as fast as possible (client benchmarks).
    Zero,
    /// Exact delays regardless of load: the first token `ttft` after the request arrived and
    /// each later token `itl` after the previous one (scheduled on absolute deadlines).
    Fixed {
        /// Time to first token.
        ttft: Duration,
        /// Inter-token latency.
        itl: Duration,
    },
}

/// Cost model of one engine step and of the API-server front end, in microseconds.
///
/// One engine step runs every scheduled sequence once, and lasts
/// `(step_base + step_per_seq * decodes + step_per_prefill_token * prefill_tokens) * (1 + J)`,
/// where `J` is exponentially distributed with mean `step_jitter` (GPU and CPU
/// noise; it skews inter-token latency to the right like real measurements).
///
/// Before a request reaches the engine it spends `frontend_base * n^frontend_exp` in the
/// front end (HTTP, tokenization, and contention with the other `n - 1` streams that the API
/// server's event loop is serving on the same replica), times a log-normal factor with
/// sigma `frontend_jitter`. This is the part of TTFT that is not prefill.
#[derive(Debug, Clone, PartialEq)]
pub struct PerfModel {
    /// Fixed cost of one engine step (µs).
    pub step_base_us: f64,
    /// Cost per decoding sequence in a step (µs).
    pub step_per_seq_us: f64,
    /// Cost per prompt (prefill) token computed in a step (µs).
    pub step_per_prefill_token_us: f64,
    /// Mean of the exponential multiplicative jitter applied to each step (0 = none).
    pub step_jitter: f64,
    /// Front-end latency of a request alone on its replica (µs).
    pub frontend_base_us: f64,
    /// Exponent of the growth of front-end latency with the requests active on the replica.
    pub frontend_exp: f64,
    /// Sigma of the log-normal jitter of the front-end latency (0 = none).
    pub frontend_jitter: f64,
}

impl PerfModel {
    /// A model with no cost at all (used by the `zero` and `fixed` profiles, where the
    /// engine is bypassed).
    pub fn free() -> Self {
        PerfModel {
            step_base_us: 0.0,
            step_per_seq_us: 0.0,
            step_per_prefill_token_us: 0.0,
            step_jitter: 0.0,
            frontend_base_us: 0.0,
            frontend_exp: 0.0,
            frontend_jitter: 0.0,
        }
    }
}

/// The simulated GPU, for the DCGM-style gauges.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuModel {
    /// Marketing name, e.g. `NVIDIA L4`; exposed as `modelName="NVIDIA L4 (simulated)"`.
    pub name: String,
    /// Frame buffer in use once the engine has started (weights + KV reservation), MiB.
    pub fb_used_base_mib: f64,
    /// Extra frame buffer (activations) at full load, MiB.
    pub fb_used_active_mib: f64,
    /// Power draw when idle, W.
    pub power_idle_w: f64,
    /// Power draw at 100 % utilisation, W.
    pub power_max_w: f64,
    /// Total frame buffer, MiB (`DCGM_FI_DEV_FB_FREE` = total - used).
    pub fb_total_mib: f64,
    /// Temperature when idle, °C.
    pub temp_idle_c: f64,
    /// Temperature at 100 % utilisation, °C.
    pub temp_max_c: f64,
}

/// How requests are spread over replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Routing {
    /// Send to the replica with the fewest requests in flight (running, waiting or still in
    /// the front end; ties rotate).
    #[default]
    LeastLoaded,
    /// Strict rotation.
    RoundRobin,
}

/// Default accept queue of the simulator's listening socket (capped by the kernel).
pub const DEFAULT_LISTEN_BACKLOG: u32 = 65_535;

/// Everything configurable about a simulated server. Start from [`SimOptions::profile`] and
/// change fields as needed.
#[derive(Debug, Clone, PartialEq)]
pub struct SimOptions {
    /// Profile name this was built from.
    pub profile: String,
    /// Served model name (`model` field of requests and responses, `model_name` label).
    pub model: String,
    /// Timing mode.
    pub mode: TimingMode,
    /// Engine and front-end cost model (used in [`TimingMode::Engine`]).
    pub perf: PerfModel,
    /// Simulated GPU (DCGM gauges).
    pub gpu: GpuModel,
    /// Maximum sequences running in one engine (vLLM `--max-num-seqs`).
    pub max_num_seqs: usize,
    /// Token budget of one engine step, shared by decodes and prefill chunks
    /// (vLLM `--max-num-batched-tokens`, chunked prefill).
    pub max_num_batched_tokens: usize,
    /// KV cache size of one engine, in blocks.
    pub num_gpu_blocks: usize,
    /// Tokens per KV block (vLLM default 16).
    pub block_size: usize,
    /// Automatic prefix caching (vLLM V1's default; see [`super::prefix`]).
    pub prefix_caching: bool,
    /// LoRA adapters served besides `model`: listed by `/v1/models` (with `parent` = the base
    /// model), accepted in a request's `model`, served with the base model's timing plus
    /// [`SimOptions::lora_step_cost`]; their prefix-cache blocks are kept apart from the base
    /// model's.
    pub lora: Vec<String>,
    /// Most distinct adapters in one engine batch (vLLM `--max-loras`, default 1): a request
    /// for another adapter waits (later requests may pass it) until one of the running
    /// adapters has no request left.
    pub max_loras: usize,
    /// Extra step time per distinct adapter in the batch, as a fraction of the step (the
    /// cost of the LoRA kernels; default 0.05).
    pub lora_step_cost: f64,
    /// Maximum prompt + output tokens of a request (vLLM `--max-model-len`).
    pub max_model_len: usize,
    /// Number of replicas (engines) behind the one port.
    pub replicas: usize,
    /// Routing over replicas.
    pub routing: Routing,
    /// Expose DCGM-exporter-style GPU gauges (marked simulated).
    pub dcgm: bool,
    /// Seed of every random choice (step jitter, front-end jitter, output length, words).
    pub seed: u64,
    /// Mean natural output length (tokens) when a request does not set `ignore_eos`.
    pub eos_mean_tokens: f64,
    /// Requests kept by the ground-truth trace ring buffer.
    pub trace_capacity: usize,
    /// Token times kept by the trace in total (8 bytes each; oldest requests dropped first).
    pub trace_max_tokens: usize,
    /// Length of the listening socket's accept queue. The kernel caps it at
    /// `net.core.somaxconn` (4096 on current Linux); a queue shorter than the number of
    /// connections a load generator opens at once drops SYNs, which the client retries after
    /// 1 s (then 3 s).
    pub listen_backlog: u32,
    /// `zero` profile: tokens per HTTP body chunk (1: one chunk per SSE event, as vLLM
    /// writes them).
    pub zero_batch: usize,
}

impl SimOptions {
    /// The named profile. Valid names are [`PROFILE_NAMES`]; anything else is an error that
    /// lists them.
    pub fn profile(name: &str) -> anyhow::Result<SimOptions> {
        let base = SimOptions {
            profile: name.to_string(),
            model: String::new(),
            mode: TimingMode::Engine,
            perf: PerfModel::free(),
            gpu: GpuModel {
                name: "NVIDIA L4".into(),
                fb_used_base_mib: 14_234.0,
                fb_used_active_mib: 300.0,
                power_idle_w: 16.0,
                power_max_w: 72.0,
                fb_total_mib: 23_034.0,
                temp_idle_c: 38.0,
                temp_max_c: 72.0,
            },
            max_num_seqs: 256,
            max_num_batched_tokens: 2048,
            num_gpu_blocks: 68_000,
            block_size: 16,
            prefix_caching: true,
            lora: Vec::new(),
            max_loras: 1,
            lora_step_cost: 0.05,
            max_model_len: 8192,
            replicas: 1,
            routing: Routing::LeastLoaded,
            dcgm: false,
            seed: 42,
            eos_mean_tokens: 200.0,
            trace_capacity: 100_000,
            trace_max_tokens: 10_000_000,
            listen_backlog: DEFAULT_LISTEN_BACKLOG,
            zero_batch: 64,
        };
        let opts = match name {
            // Qwen2.5-0.5B-Instruct, vLLM V1 on one L4, 256 in / 128 out.
            "qwen2.5-0.5b-l4" => SimOptions {
                model: "Qwen/Qwen2.5-0.5B-Instruct".into(),
                perf: PerfModel {
                    step_base_us: 4_772.0,
                    step_per_seq_us: 60.0,
                    step_per_prefill_token_us: 8.0,
                    step_jitter: 0.08,
                    frontend_base_us: 19_000.0,
                    frontend_exp: 0.5,
                    frontend_jitter: 0.35,
                },
                ..base
            },
            // Llama 3.2 3B Instruct on a T4 (fp16, gpu-memory-utilization 0.9, 4096 ctx).
            "llama3.2-3b-t4" => SimOptions {
                model: "meta-llama/Llama-3.2-3B-Instruct".into(),
                perf: PerfModel {
                    step_base_us: 26_500.0,
                    step_per_seq_us: 330.0,
                    step_per_prefill_token_us: 150.0,
                    step_jitter: 0.02,
                    frontend_base_us: 8_000.0,
                    frontend_exp: 0.3,
                    frontend_jitter: 0.1,
                },
                gpu: GpuModel {
                    name: "Tesla T4".into(),
                    fb_used_base_mib: 14_000.0,
                    fb_used_active_mib: 200.0,
                    power_idle_w: 10.0,
                    power_max_w: 70.0,
                    fb_total_mib: 15_360.0,
                    temp_idle_c: 40.0,
                    temp_max_c: 78.0,
                },
                num_gpu_blocks: 3_500,
                max_model_len: 4096,
                ..base
            },
            // TinyLlama-1.1B-Chat on an A10 at ~240 active requests per replica.
            "tinyllama-a10" => SimOptions {
                model: "TinyLlama/TinyLlama-1.1B-Chat-v1.0".into(),
                perf: PerfModel {
                    step_base_us: 8_000.0,
                    step_per_seq_us: 355.0,
                    step_per_prefill_token_us: 30.0,
                    step_jitter: 0.03,
                    frontend_base_us: 15_000.0,
                    frontend_exp: 0.3,
                    frontend_jitter: 0.2,
                },
                gpu: GpuModel {
                    name: "NVIDIA A10".into(),
                    fb_used_base_mib: 20_700.0,
                    fb_used_active_mib: 500.0,
                    power_idle_w: 25.0,
                    power_max_w: 150.0,
                    fb_total_mib: 23_028.0,
                    temp_idle_c: 35.0,
                    temp_max_c: 74.0,
                },
                num_gpu_blocks: 14_000,
                max_model_len: 2048,
                eos_mean_tokens: 450.0,
                ..base
            },
            "zero" => SimOptions {
                model: "sim-zero".into(),
                mode: TimingMode::Zero,
                ..base
            },
            "fixed" => SimOptions {
                model: "sim-fixed".into(),
                mode: TimingMode::Fixed {
                    ttft: Duration::from_millis(50),
                    itl: Duration::from_millis(10),
                },
                ..base
            },
            other => anyhow::bail!(
                "unknown simulator profile `{other}`; valid profiles: {}",
                PROFILE_NAMES.join(", ")
            ),
        };
        Ok(opts)
    }

    /// The `fixed` profile with the given delays.
    pub fn fixed(ttft: Duration, itl: Duration) -> SimOptions {
        let mut o = SimOptions::profile("fixed").expect("fixed profile exists");
        o.mode = TimingMode::Fixed { ttft, itl };
        o
    }

    /// Check the options are usable.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.replicas >= 1, "replicas must be at least 1");
        anyhow::ensure!(self.max_num_seqs >= 1, "max_num_seqs must be at least 1");
        anyhow::ensure!(self.block_size >= 1, "block_size must be at least 1");
        anyhow::ensure!(
            self.num_gpu_blocks >= 1,
            "num_gpu_blocks must be at least 1"
        );
        anyhow::ensure!(
            self.max_num_batched_tokens >= 1,
            "max_num_batched_tokens must be at least 1"
        );
        anyhow::ensure!(self.max_model_len >= 2, "max_model_len must be at least 2");
        anyhow::ensure!(!self.model.is_empty(), "model name must not be empty");
        anyhow::ensure!(
            self.listen_backlog >= 1,
            "listen_backlog must be at least 1"
        );
        anyhow::ensure!(self.max_loras >= 1, "--max-loras must be at least 1");
        anyhow::ensure!(
            self.lora_step_cost.is_finite() && self.lora_step_cost >= 0.0,
            "--lora-step-cost must be a non-negative number"
        );
        for (i, l) in self.lora.iter().enumerate() {
            anyhow::ensure!(!l.trim().is_empty(), "a --lora name must not be empty");
            anyhow::ensure!(
                *l != self.model && !self.lora[..i].contains(l),
                "--lora {l}: every served model name must be distinct"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_builds_and_validates() {
        for name in PROFILE_NAMES {
            let o = SimOptions::profile(name).unwrap();
            o.validate().unwrap();
            assert_eq!(o.profile, *name);
        }
    }

    #[test]
    fn unknown_profile_lists_valid_names() {
        let err = SimOptions::profile("nope").unwrap_err().to_string();
        for name in PROFILE_NAMES {
            assert!(err.contains(name), "{err}");
        }
    }
}
