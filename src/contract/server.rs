//! Per-step server figures: what the engine's metrics (through Prometheus) said about a
//! step's window, next to the client's own measurements.

use serde::{Deserialize, Serialize};

/// Server and GPU figures over one window. Field names match the `server` object of the
/// results JSON. `None` means Prometheus had no such series in the window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowMetrics {
    /// Peak GPU utilisation, percent (`DCGM_FI_DEV_GPU_UTIL`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_util_max: Option<f64>,
    /// Mean GPU utilisation, percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_util_mean: Option<f64>,
    /// Peak framebuffer used, bytes (`DCGM_FI_DEV_FB_USED` is MiB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_fb_used_max_bytes: Option<f64>,
    /// Mean power draw per GPU, watts (`DCGM_FI_DEV_POWER_USAGE`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_power_mean_watts: Option<f64>,
    /// Peak KV cache usage, 0..1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kv_cache_usage_max: Option<f64>,
    /// Peak running requests, summed over replicas.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_requests_running_max: Option<f64>,
    /// Peak waiting requests, summed over replicas.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_requests_waiting_max: Option<f64>,
    /// Server-side p95 time to first token, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttft_p95_ms: Option<f64>,
    /// Server-side p95 inter-token latency, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub itl_p95_ms: Option<f64>,
    /// Server-side p95 queue time, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_time_p95_ms: Option<f64>,
    /// Mean running requests of the least loaded replica.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_replica_running_min: Option<f64>,
    /// Mean running requests of the most loaded replica.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_replica_running_max: Option<f64>,
    /// Prompt tokens looked up in the prefix cache during the window, summed over replicas
    /// (increase of `vllm:prefix_cache_queries`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_cache_queries: Option<f64>,
    /// Prompt tokens found in the prefix cache during the window (increase of
    /// `vllm:prefix_cache_hits`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_cache_hits: Option<f64>,
}

impl WindowMetrics {
    /// Sets the field named `field` (a [`WindowMetrics`] field name, as the collector's
    /// queries name them).
    pub fn set(&mut self, field: &str, value: f64) {
        let slot = match field {
            "gpu_util_max" => &mut self.gpu_util_max,
            "gpu_util_mean" => &mut self.gpu_util_mean,
            "gpu_fb_used_max_bytes" => &mut self.gpu_fb_used_max_bytes,
            "gpu_power_mean_watts" => &mut self.gpu_power_mean_watts,
            "kv_cache_usage_max" => &mut self.kv_cache_usage_max,
            "num_requests_running_max" => &mut self.num_requests_running_max,
            "num_requests_waiting_max" => &mut self.num_requests_waiting_max,
            "ttft_p95_ms" => &mut self.ttft_p95_ms,
            "itl_p95_ms" => &mut self.itl_p95_ms,
            "queue_time_p95_ms" => &mut self.queue_time_p95_ms,
            "per_replica_running_min" => &mut self.per_replica_running_min,
            "per_replica_running_max" => &mut self.per_replica_running_max,
            "prefix_cache_queries" => &mut self.prefix_cache_queries,
            "prefix_cache_hits" => &mut self.prefix_cache_hits,
            other => unreachable!("query for unknown field {other}"),
        };
        *slot = Some(value);
    }

    /// Achieved prefix-cache hit rate over the window: hits / queries, 0..1 (`None` without
    /// both counters or without any lookup).
    pub fn prefix_cache_hit_rate(&self) -> Option<f64> {
        let (q, h) = (self.prefix_cache_queries?, self.prefix_cache_hits?);
        (q > 0.0).then(|| (h / q).clamp(0.0, 1.0))
    }

    /// True when no series at all matched: usually a wrong scope or missing scrape config.
    pub fn is_empty(&self) -> bool {
        self == &WindowMetrics::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_rate_is_hits_over_queries_of_the_window() {
        let mut m = WindowMetrics::default();
        assert_eq!(m.prefix_cache_hit_rate(), None);
        m.set("prefix_cache_queries", 4000.0);
        assert_eq!(m.prefix_cache_hit_rate(), None, "needs both counters");
        m.set("prefix_cache_hits", 1000.0);
        assert_eq!(m.prefix_cache_hit_rate(), Some(0.25));
        m.set("prefix_cache_queries", 0.0);
        assert_eq!(m.prefix_cache_hit_rate(), None, "no lookups, no rate");
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["prefix_cache_hits"], 1000.0);
    }
}
