//! The one table of vLLM metric names the project uses: the renderer (HPA metric, KEDA
//! query), the simulator, the Prometheus collector, and the chart's dashboards, alerts and
//! Prometheus-adapter rules. Names are those of vLLM's V1 engine in the release the
//! renderer defaults to (`render::inference_service::VLLM_IMAGE`); [`DEPRECATED`]
//! lists the older names still queried as fallbacks for older engines.
//!
//! Names here are metric *families*, as vLLM registers them. On the wire (and in PromQL),
//! a counter family `F` is the sample `F_total`, and a histogram family `F` the samples
//! `F_bucket`, `F_sum` and `F_count`: see [`sample_names`].
//!
//! `tests/it/vllm_metrics.rs` checks that every `vllm:*` name in the chart
//! (`charts/inferops/files/`, `charts/inferops/templates/`, `values.yaml`), in the
//! simulator's exposition and in the collector's queries is one of these.

/// Kind of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A value that goes up and down.
    Gauge,
    /// A monotonic count, exposed with a `_total` suffix.
    Counter,
    /// A histogram, exposed as `_bucket`, `_sum` and `_count`.
    Histogram,
}

/// Requests in the running batch (gauge).
pub const NUM_REQUESTS_RUNNING: &str = "vllm:num_requests_running";
/// Requests waiting for a batch slot (gauge): the queue-depth autoscaling metric.
pub const NUM_REQUESTS_WAITING: &str = "vllm:num_requests_waiting";
/// KV cache usage, 0..1 (gauge).
pub const KV_CACHE_USAGE_PERC: &str = "vllm:kv_cache_usage_perc";
/// Preempted requests (counter).
pub const NUM_PREEMPTIONS: &str = "vllm:num_preemptions";
/// Prompt tokens processed (counter).
pub const PROMPT_TOKENS: &str = "vllm:prompt_tokens";
/// Generated tokens (counter).
pub const GENERATION_TOKENS: &str = "vllm:generation_tokens";
/// Finished requests, by `finished_reason` (counter).
pub const REQUEST_SUCCESS: &str = "vllm:request_success";
/// Prefix-cache lookups in tokens (counter).
pub const PREFIX_CACHE_QUERIES: &str = "vllm:prefix_cache_queries";
/// Prefix-cache hits in tokens (counter).
pub const PREFIX_CACHE_HITS: &str = "vllm:prefix_cache_hits";
/// Time to first token (histogram, seconds).
pub const TIME_TO_FIRST_TOKEN_SECONDS: &str = "vllm:time_to_first_token_seconds";
/// Inter-token latency (histogram, seconds).
pub const INTER_TOKEN_LATENCY_SECONDS: &str = "vllm:inter_token_latency_seconds";
/// End-to-end request latency (histogram, seconds).
pub const E2E_REQUEST_LATENCY_SECONDS: &str = "vllm:e2e_request_latency_seconds";
/// Time in the WAITING phase (histogram, seconds).
pub const REQUEST_QUEUE_TIME_SECONDS: &str = "vllm:request_queue_time_seconds";
/// Time in the RUNNING phase (histogram, seconds).
pub const REQUEST_INFERENCE_TIME_SECONDS: &str = "vllm:request_inference_time_seconds";
/// Time in prefill (histogram, seconds).
pub const REQUEST_PREFILL_TIME_SECONDS: &str = "vllm:request_prefill_time_seconds";
/// Time in decode (histogram, seconds).
pub const REQUEST_DECODE_TIME_SECONDS: &str = "vllm:request_decode_time_seconds";
/// Cache configuration as labels (gauge, always 1).
pub const CACHE_CONFIG_INFO: &str = "vllm:cache_config_info";
/// LoRA adapters with running and waiting requests, as labels (gauge; the value is the time
/// of the last change). Only with LoRA enabled.
pub const LORA_REQUESTS_INFO: &str = "vllm:lora_requests_info";

/// Older name of [`KV_CACHE_USAGE_PERC`] (vLLM before the V1 rename).
pub const GPU_CACHE_USAGE_PERC: &str = "vllm:gpu_cache_usage_perc";
/// Older name of [`INTER_TOKEN_LATENCY_SECONDS`].
pub const TIME_PER_OUTPUT_TOKEN_SECONDS: &str = "vllm:time_per_output_token_seconds";

/// Every current family and its kind.
pub const CURRENT: &[(&str, Kind)] = &[
    (NUM_REQUESTS_RUNNING, Kind::Gauge),
    (NUM_REQUESTS_WAITING, Kind::Gauge),
    (KV_CACHE_USAGE_PERC, Kind::Gauge),
    (NUM_PREEMPTIONS, Kind::Counter),
    (PROMPT_TOKENS, Kind::Counter),
    (GENERATION_TOKENS, Kind::Counter),
    (REQUEST_SUCCESS, Kind::Counter),
    (PREFIX_CACHE_QUERIES, Kind::Counter),
    (PREFIX_CACHE_HITS, Kind::Counter),
    (TIME_TO_FIRST_TOKEN_SECONDS, Kind::Histogram),
    (INTER_TOKEN_LATENCY_SECONDS, Kind::Histogram),
    (E2E_REQUEST_LATENCY_SECONDS, Kind::Histogram),
    (REQUEST_QUEUE_TIME_SECONDS, Kind::Histogram),
    (REQUEST_INFERENCE_TIME_SECONDS, Kind::Histogram),
    (REQUEST_PREFILL_TIME_SECONDS, Kind::Histogram),
    (REQUEST_DECODE_TIME_SECONDS, Kind::Histogram),
    (CACHE_CONFIG_INFO, Kind::Gauge),
    (LORA_REQUESTS_INFO, Kind::Gauge),
];

/// Older families, each with the current family that replaces it: queried only as a
/// fallback (`A or B`, or a second PromQL alternative) after the current name.
pub const DEPRECATED: &[(&str, Kind, &str)] = &[
    (GPU_CACHE_USAGE_PERC, Kind::Gauge, KV_CACHE_USAGE_PERC),
    (
        TIME_PER_OUTPUT_TOKEN_SECONDS,
        Kind::Histogram,
        INTER_TOKEN_LATENCY_SECONDS,
    ),
];

fn samples(family: &str, kind: Kind) -> Vec<String> {
    match kind {
        Kind::Gauge => vec![family.to_string()],
        Kind::Counter => vec![format!("{family}_total")],
        Kind::Histogram => ["_bucket", "_sum", "_count"]
            .iter()
            .map(|s| format!("{family}{s}"))
            .collect(),
    }
}

/// Every name that may appear in PromQL or an exposition: families (as `# TYPE` lines
/// name them) and their samples, current and deprecated.
pub fn sample_names() -> Vec<String> {
    let mut out = Vec::new();
    let all = CURRENT
        .iter()
        .map(|(f, k)| (*f, *k))
        .chain(DEPRECATED.iter().map(|(f, k, _)| (*f, *k)));
    for (family, kind) in all {
        out.push(family.to_string());
        out.extend(samples(family, kind));
    }
    out
}

/// Whether `name` (a family or sample) is in the table.
pub fn is_known(name: &str) -> bool {
    sample_names().iter().any(|n| n == name)
}

/// The custom-metrics API name the chart's Prometheus-adapter rules give a family
/// (`vllm:num_requests_waiting` -> `vllm_num_requests_waiting`).
pub fn adapter_name(family: &str) -> String {
    family.replacen("vllm:", "vllm_", 1)
}

/// Whether `name` is the Prometheus-adapter name of a family in the table.
pub fn is_known_adapter_name(name: &str) -> bool {
    CURRENT
        .iter()
        .map(|(f, _)| *f)
        .chain(DEPRECATED.iter().map(|(f, _, _)| *f))
        .any(|f| adapter_name(f) == name)
}

/// Every `vllm:NAME` and `vllm_NAME` token in `text` (recording-rule style
/// `vllm:a:b` tokens yield `vllm:a`).
pub fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for prefix in ["vllm:", "vllm_"] {
        let mut rest = text;
        while let Some(i) = rest.find(prefix) {
            let before_ok = rest[..i]
                .chars()
                .last()
                .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
            let tail = &rest[i + prefix.len()..];
            let len = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            if before_ok && len > 0 {
                out.push(format!("{prefix}{}", &tail[..len]));
            }
            rest = &tail[len..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_found() {
        assert_eq!(
            tokens("sum(rate(vllm:e2e_request_latency_seconds_bucket[5m])) / vllm_x"),
            ["vllm:e2e_request_latency_seconds_bucket", "vllm_x"]
        );
        assert_eq!(
            tokens("vllm:num_requests_waiting:deriv"),
            ["vllm:num_requests_waiting"]
        );
        assert!(tokens("vllmServing: true, my_vllm_x").is_empty());
        assert!(!is_known("vllm:gpu_cache_usage"));
        assert!(is_known("vllm:request_success_total"));
        assert!(is_known_adapter_name("vllm_kv_cache_usage_perc"));
    }

    #[test]
    fn deprecated_names_point_at_current_ones() {
        for (_, _, current) in DEPRECATED {
            assert!(CURRENT.iter().any(|(f, _)| f == current));
        }
    }
}
