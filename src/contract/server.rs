//! Per-step server figures: what the engine's metrics said about a step's window, next to
//! the client's own measurements. Two sources fill them: Prometheus (range queries over the
//! window, `crate::prom`) and the target's own `GET /metrics` read at both ends of the
//! window ([`from_scrapes`]: counter and histogram deltas, exact for the window).
//!
//! Server histograms have coarse buckets (vLLM's TTFT: ..., 0.1, 0.25, 0.5 s), so each
//! quantile is also given as the bucket that holds it ([`BucketBounds`]): the interpolated
//! value inside it (what PromQL's `histogram_quantile` returns) is a guess, the bounds are
//! not.

use serde::{Deserialize, Serialize};

use super::exposition::{Buckets, Exposition};
use super::vllm_metrics as names;

/// Where a step's server figures came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerSource {
    /// Prometheus queries over the step's window (`--prometheus`, or the operator).
    Prometheus,
    /// The target's own `GET /metrics`, read at both ends of the window: the figures are
    /// deltas of the target's counters and histograms, summed over every series it exposes
    /// (several replicas behind one URL cannot be told apart).
    MetricsEndpoint,
}

/// The histogram bucket that holds a quantile: the quantile is above `lower_ms` and at
/// most `upper_ms` (`None`: above the highest finite bucket bound).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BucketBounds {
    /// Lower bound (exclusive), ms.
    pub lower_ms: f64,
    /// Upper bound (inclusive), ms; `None` for the `+Inf` bucket.
    pub upper_ms: Option<f64>,
}

impl BucketBounds {
    /// "100-250 ms", or "> 2560000 ms" for the `+Inf` bucket.
    pub fn label(&self) -> String {
        match self.upper_ms {
            Some(u) => format!("{}-{}", trim(self.lower_ms), trim(u)),
            None => format!(">{}", trim(self.lower_ms)),
        }
    }
}

fn trim(v: f64) -> String {
    if v >= 10.0 || v == v.round() {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// One cumulative bucket of a server histogram over the window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CumulativeBucket {
    /// Upper bound, ms.
    pub le_ms: f64,
    /// Observations at most `le_ms` in the window.
    pub count: f64,
}

/// A server latency histogram over one window: what its buckets support.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HistogramFigures {
    /// Observations in the window (the increase of `_count`).
    pub count: f64,
    /// Mean, ms: increase of `_sum` / increase of `_count` (exact, no bucket involved).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_ms: Option<f64>,
    /// The bucket holding the median.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_bucket: Option<BucketBounds>,
    /// The bucket holding the 95th percentile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p95_bucket: Option<BucketBounds>,
    /// The bucket holding the 99th percentile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_bucket: Option<BucketBounds>,
    /// Cumulative counts at each finite bucket bound (the `+Inf` bucket is `count`), up to
    /// the first bound that holds every observation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buckets: Vec<CumulativeBucket>,
}

/// The `q` quantile of cumulative buckets (ascending bounds, in the histogram's unit), as
/// PromQL's `histogram_quantile` interpolates it, and the bucket that holds it. `None`
/// without observations.
pub fn quantile(q: f64, cumulative: &[(f64, f64)]) -> Option<(f64, (f64, Option<f64>))> {
    let total = cumulative.last()?.1;
    if total.is_nan() || total <= 0.0 || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let rank = q * total;
    let i = cumulative.iter().position(|&(_, c)| c >= rank)?;
    let (upper, count) = cumulative[i];
    let (lower, below) = match i {
        0 => (upper.min(0.0), 0.0),
        _ => cumulative[i - 1],
    };
    if upper.is_infinite() {
        // Like histogram_quantile: the highest finite bound; the bucket has no upper bound.
        return Some((lower, (lower, None)));
    }
    let value = if count > below {
        lower + (upper - lower) * (rank - below) / (count - below)
    } else {
        upper
    };
    Some((value, (lower, Some(upper))))
}

impl HistogramFigures {
    /// Figures of `b` (a histogram in seconds, over one window); `None` without buckets.
    pub fn from_seconds(b: &Buckets) -> Option<HistogramFigures> {
        if b.cumulative.is_empty() {
            return None;
        }
        let ms = |v: f64| v * 1000.0;
        let bounds = |q| {
            quantile(q, &b.cumulative).map(|(_, (lo, up))| BucketBounds {
                lower_ms: ms(lo),
                upper_ms: up.map(ms),
            })
        };
        Some(HistogramFigures {
            count: b.count,
            mean_ms: (b.count > 0.0).then(|| ms(b.sum / b.count)),
            p50_bucket: bounds(0.5),
            p95_bucket: bounds(0.95),
            p99_bucket: bounds(0.99),
            buckets: {
                // Bounds past the first that holds every observation add nothing: none is
                // above them.
                let full = b
                    .cumulative
                    .iter()
                    .position(|&(_, c)| c >= b.count)
                    .map_or(b.cumulative.len(), |i| i + 1);
                b.cumulative[..full]
                    .iter()
                    .filter(|(le, _)| le.is_finite())
                    .map(|&(le, count)| CumulativeBucket {
                        le_ms: ms(le),
                        count,
                    })
                    .collect()
            },
        })
    }

    /// Fraction of observations above `bound_ms`, which must be one of the bucket bounds
    /// (within a microsecond) or at least the bound that holds them all: the one kind of
    /// tail figure the buckets give exactly.
    pub fn fraction_over(&self, bound_ms: f64) -> Option<f64> {
        if self.count.is_nan() || self.count <= 0.0 {
            return None;
        }
        if self
            .buckets
            .last()
            .is_some_and(|b| b.count >= self.count && bound_ms >= b.le_ms)
        {
            return Some(0.0);
        }
        let b = self
            .buckets
            .iter()
            .find(|b| (b.le_ms - bound_ms).abs() < 1e-3)?;
        Some(((self.count - b.count) / self.count).clamp(0.0, 1.0))
    }

    /// The smallest bucket bound at or above `ms` and the fraction of observations above
    /// it; `None` when no finite bound is that high.
    pub fn over_at_least(&self, ms: f64) -> Option<(f64, f64)> {
        let b = self.buckets.iter().find(|b| b.le_ms >= ms - 1e-3)?;
        Some((b.le_ms, self.fraction_over(b.le_ms)?))
    }
}

/// The increase of cumulative buckets from `begin` to `end` (bounds matched exactly; a
/// bound only in `end` started at zero). `None` when a count went down: the server
/// restarted inside the window and the delta means nothing.
pub fn bucket_delta(begin: Option<&Buckets>, end: &Buckets) -> Option<Buckets> {
    let zero = Buckets::default();
    let begin = begin.unwrap_or(&zero);
    let mut cumulative = Vec::with_capacity(end.cumulative.len());
    for &(le, c) in &end.cumulative {
        let before = begin
            .cumulative
            .iter()
            .find(|(b, _)| *b == le)
            .map_or(0.0, |b| b.1);
        if c < before {
            return None;
        }
        cumulative.push((le, c - before));
    }
    let (sum, count) = (end.sum - begin.sum, end.count - begin.count);
    if count < 0.0 {
        return None;
    }
    Some(Buckets {
        cumulative,
        sum,
        count,
    })
}

/// Minimum, maximum and mean of gauge samples.
fn min_max_mean(values: &[f64]) -> Option<(f64, f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some((min, max, values.iter().sum::<f64>() / values.len() as f64))
}

/// A counter's increase over the window, exact (a scrape's counters are integers); `None`
/// when the counter is absent at the end or went down (a restart).
fn counter_delta(begin: &Exposition, end: &Exposition, family: &str) -> Option<u64> {
    let sample = format!("{family}_total");
    let after = end.sum(&sample)?;
    let before = begin.sum(&sample).unwrap_or(0.0);
    (after >= before).then(|| (after - before).round() as u64)
}

/// The gauges of one `/metrics` read: all a read taken while the load runs needs to keep.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct GaugeRead {
    /// Running requests, summed over every series.
    pub running: Option<f64>,
    /// Waiting requests, summed over every series.
    pub waiting: Option<f64>,
    /// KV cache usage, the highest of every series (0..1).
    pub kv_cache_usage: Option<f64>,
}

impl GaugeRead {
    /// The gauges of `e` (the older KV cache name as a fallback).
    pub fn of(e: &Exposition) -> GaugeRead {
        GaugeRead {
            running: e.sum(names::NUM_REQUESTS_RUNNING),
            waiting: e.sum(names::NUM_REQUESTS_WAITING),
            kv_cache_usage: e
                .max(names::KV_CACHE_USAGE_PERC)
                .or_else(|| e.max(names::GPU_CACHE_USAGE_PERC)),
        }
    }
}

/// The server figures of one window from the target's own `/metrics`: `begin` read when
/// the window opened, `end` after its last request ended, `gauges` read while the load ran
/// (running/waiting requests and KV cache usage are gauges: their min/max/mean over those
/// reads; without any, over `begin` and `end`). Counters and histograms are the exact
/// increase from `begin` to `end`, summed over every series of the scrape.
pub fn from_scrapes(begin: &Exposition, end: &Exposition, gauges: &[GaugeRead]) -> WindowMetrics {
    let pair = [GaugeRead::of(begin), GaugeRead::of(end)];
    let reads: &[GaugeRead] = if gauges.is_empty() { &pair } else { gauges };
    let series =
        |f: fn(&GaugeRead) -> Option<f64>| -> Vec<f64> { reads.iter().filter_map(f).collect() };
    let running = min_max_mean(&series(|g| g.running));
    let waiting = min_max_mean(&series(|g| g.waiting));
    let kv = min_max_mean(&series(|g| g.kv_cache_usage));
    let hist = |families: &[&str]| {
        families.iter().find_map(|f| {
            let end = end.histogram(f)?;
            let delta = bucket_delta(begin.histogram(f).as_ref(), &end)?;
            HistogramFigures::from_seconds(&delta).map(|h| (h, delta))
        })
    };
    let p95 = |h: &Option<(HistogramFigures, Buckets)>| {
        h.as_ref()
            .and_then(|(_, d)| quantile(0.95, &d.cumulative))
            .map(|(v, _)| v * 1000.0)
    };
    let ttft = hist(&[names::TIME_TO_FIRST_TOKEN_SECONDS]);
    let itl = hist(&[
        names::INTER_TOKEN_LATENCY_SECONDS,
        names::TIME_PER_OUTPUT_TOKEN_SECONDS,
    ]);
    let queue = hist(&[names::REQUEST_QUEUE_TIME_SECONDS]);
    let e2e = hist(&[names::E2E_REQUEST_LATENCY_SECONDS]);
    let hits = counter_delta(begin, end, names::PREFIX_CACHE_HITS);
    let queries = counter_delta(begin, end, names::PREFIX_CACHE_QUERIES);
    WindowMetrics {
        source: Some(ServerSource::MetricsEndpoint),
        gauge_reads: Some(reads.len() as u32),
        kv_cache_usage_max: kv.map(|k| k.1),
        kv_cache_usage_min: kv.map(|k| k.0),
        kv_cache_usage_mean: kv.map(|k| k.2),
        num_requests_running_max: running.map(|r| r.1),
        num_requests_running_min: running.map(|r| r.0),
        num_requests_running_mean: running.map(|r| r.2),
        num_requests_waiting_max: waiting.map(|w| w.1),
        num_requests_waiting_min: waiting.map(|w| w.0),
        num_requests_waiting_mean: waiting.map(|w| w.2),
        ttft_p95_ms: p95(&ttft),
        itl_p95_ms: p95(&itl),
        queue_time_p95_ms: p95(&queue),
        ttft: ttft.map(|h| h.0),
        itl: itl.map(|h| h.0),
        queue_time: queue.map(|h| h.0),
        e2e: e2e.map(|h| h.0),
        requests_succeeded: counter_delta(begin, end, names::REQUEST_SUCCESS),
        preemptions: counter_delta(begin, end, names::NUM_PREEMPTIONS),
        prompt_tokens: counter_delta(begin, end, names::PROMPT_TOKENS),
        generation_tokens: counter_delta(begin, end, names::GENERATION_TOKENS),
        prefix_cache_hits: hits.map(|h| h as f64),
        prefix_cache_queries: queries.map(|q| q as f64),
        ..WindowMetrics::default()
    }
}

/// Server and GPU figures over one window. Field names match the `server` object of the
/// results JSON. `None` means the source had no such series in the window.
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
    /// Where these figures came from (absent in results written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ServerSource>,
    /// `/metrics` reads the gauge figures (min/max/mean) are taken over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gauge_reads: Option<u32>,
    /// Lowest KV cache usage read, 0..1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_cache_usage_min: Option<f64>,
    /// Mean KV cache usage over the reads, 0..1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_cache_usage_mean: Option<f64>,
    /// Fewest running requests read (summed over replicas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_requests_running_min: Option<f64>,
    /// Mean running requests over the reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_requests_running_mean: Option<f64>,
    /// Fewest waiting requests read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_requests_waiting_min: Option<f64>,
    /// Mean waiting requests over the reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_requests_waiting_mean: Option<f64>,
    /// Server time to first token: count, exact mean, quantile buckets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft: Option<HistogramFigures>,
    /// Server inter-token latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub itl: Option<HistogramFigures>,
    /// Server queue time (WAITING phase).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_time: Option<HistogramFigures>,
    /// Server end-to-end request latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2e: Option<HistogramFigures>,
    /// Requests the server finished in the window (`vllm:request_success`, every reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_succeeded: Option<u64>,
    /// Preemptions in the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preemptions: Option<u64>,
    /// Prompt tokens the server processed in the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u64>,
    /// Tokens the server generated in the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation_tokens: Option<u64>,
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
            "preemptions" => {
                // Prometheus' increase() extrapolates: a count is its nearest integer.
                self.preemptions = Some(value.max(0.0).round() as u64);
                return;
            }
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
        let figures = WindowMetrics {
            source: None,
            gauge_reads: None,
            ..self.clone()
        };
        figures == WindowMetrics::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(text: &str) -> Exposition {
        Exposition::parse(text).unwrap()
    }

    const BEGIN: &str = r#"
vllm:num_requests_running{model_name="m"} 0
vllm:num_requests_waiting{model_name="m"} 0
vllm:kv_cache_usage_perc{model_name="m"} 0.0
vllm:prefix_cache_queries_total{model_name="m"} 1000
vllm:prefix_cache_hits_total{model_name="m"} 100
vllm:request_success_total{finished_reason="length",model_name="m"} 7
vllm:request_success_total{finished_reason="stop",model_name="m"} 3
vllm:num_preemptions_total{model_name="m"} 2
vllm:time_to_first_token_seconds_bucket{le="0.1",model_name="m"} 10
vllm:time_to_first_token_seconds_bucket{le="0.25",model_name="m"} 10
vllm:time_to_first_token_seconds_bucket{le="0.5",model_name="m"} 10
vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="m"} 10
vllm:time_to_first_token_seconds_sum{model_name="m"} 0.5
vllm:time_to_first_token_seconds_count{model_name="m"} 10
"#;

    // 20 more requests in the window: 8 at most 100 ms, 10 in (100, 250], 2 in (250, 500];
    // their TTFTs add up to 3.0 s.
    const END: &str = r#"
vllm:num_requests_running{model_name="m"} 0
vllm:num_requests_waiting{model_name="m"} 0
vllm:kv_cache_usage_perc{model_name="m"} 0.0
vllm:prefix_cache_queries_total{model_name="m"} 5000
vllm:prefix_cache_hits_total{model_name="m"} 3100
vllm:request_success_total{finished_reason="length",model_name="m"} 25
vllm:request_success_total{finished_reason="stop",model_name="m"} 5
vllm:num_preemptions_total{model_name="m"} 2
vllm:time_to_first_token_seconds_bucket{le="0.1",model_name="m"} 18
vllm:time_to_first_token_seconds_bucket{le="0.25",model_name="m"} 28
vllm:time_to_first_token_seconds_bucket{le="0.5",model_name="m"} 30
vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="m"} 30
vllm:time_to_first_token_seconds_sum{model_name="m"} 3.5
vllm:time_to_first_token_seconds_count{model_name="m"} 30
vllm:e2e_request_latency_seconds_bucket{le="1.0",model_name="m"} 20
vllm:e2e_request_latency_seconds_bucket{le="+Inf",model_name="m"} 20
vllm:e2e_request_latency_seconds_sum{model_name="m"} 12
vllm:e2e_request_latency_seconds_count{model_name="m"} 20
"#;

    fn gauge(running: f64, waiting: f64, kv: f64) -> GaugeRead {
        GaugeRead::of(&scrape(&format!(
            "vllm:num_requests_running{{engine=\"0\"}} {}\n\
             vllm:num_requests_running{{engine=\"1\"}} 1\n\
             vllm:num_requests_waiting{{engine=\"0\"}} {waiting}\n\
             vllm:gpu_cache_usage_perc{{engine=\"0\"}} {kv}\n",
            running - 1.0
        )))
    }

    #[test]
    fn deltas_match_hand_computed_values() {
        let gauges = [
            gauge(4.0, 0.0, 0.1),
            gauge(8.0, 2.0, 0.3),
            gauge(6.0, 1.0, 0.2),
        ];
        let m = from_scrapes(&scrape(BEGIN), &scrape(END), &gauges);
        assert_eq!(m.source, Some(ServerSource::MetricsEndpoint));
        assert_eq!(m.gauge_reads, Some(3));
        assert_eq!(
            (
                m.num_requests_running_min,
                m.num_requests_running_max,
                m.num_requests_running_mean
            ),
            (Some(4.0), Some(8.0), Some(6.0))
        );
        assert_eq!(m.num_requests_waiting_mean, Some(1.0));
        assert_eq!(m.kv_cache_usage_max, Some(0.3));
        assert_eq!(m.requests_succeeded, Some(20));
        assert_eq!(m.preemptions, Some(0));
        assert_eq!(
            (m.prefix_cache_queries, m.prefix_cache_hits),
            (Some(4000.0), Some(3000.0))
        );
        assert_eq!(m.prefix_cache_hit_rate(), Some(0.75));
        let t = m.ttft.as_ref().unwrap();
        assert_eq!(t.count, 20.0);
        // (3.5 - 0.5) s / 20.
        assert!((t.mean_ms.unwrap() - 150.0).abs() < 1e-9);
        // Rank 10 of 20 is the 2nd of the 10 in (100, 250].
        let b = |lo: f64, up: f64| BucketBounds {
            lower_ms: lo,
            upper_ms: Some(up),
        };
        assert_eq!(t.p50_bucket, Some(b(100.0, 250.0)));
        // Rank 19 of 20 is in (250, 500].
        assert_eq!(t.p95_bucket, Some(b(250.0, 500.0)));
        // histogram_quantile: 250 + 250 * (19 - 18) / (20 - 18) = 375.
        assert!((m.ttft_p95_ms.unwrap() - 375.0).abs() < 1e-9);
        assert_eq!(t.fraction_over(100.0), Some(0.6));
        assert_eq!(t.fraction_over(250.0), Some(0.1));
        assert_eq!(t.fraction_over(200.0), None, "not a bucket bound");
        assert_eq!(t.over_at_least(200.0), Some((250.0, 0.1)));
        // 500 ms holds all 20: the list stops there, and nothing is above any bound past it.
        assert_eq!(t.buckets.last().map(|b| b.le_ms), Some(500.0));
        assert_eq!(t.fraction_over(2500.0), Some(0.0));
        // A family that appeared during the window counts from zero.
        let e = m.e2e.as_ref().unwrap();
        assert_eq!((e.count, e.mean_ms), (20.0, Some(600.0)));
        assert!(m.itl.is_none() && m.itl_p95_ms.is_none());
    }

    #[test]
    fn without_reads_in_between_gauges_come_from_both_ends_and_restarts_void_deltas() {
        let end = scrape(&END.replace(
            "vllm:num_requests_running{model_name=\"m\"} 0",
            "vllm:num_requests_running{model_name=\"m\"} 2",
        ));
        let m = from_scrapes(&scrape(BEGIN), &end, &[]);
        assert_eq!(m.gauge_reads, Some(2));
        assert_eq!(m.num_requests_running_mean, Some(1.0));
        // The server restarted: its counters start over, lower than at the window's start.
        let m = from_scrapes(&scrape(END), &scrape(BEGIN), &[]);
        assert!(m.ttft.is_none() && m.ttft_p95_ms.is_none());
        assert_eq!(m.requests_succeeded, None);
        assert_eq!(m.prefix_cache_hit_rate(), None);
    }

    #[test]
    fn quantile_interpolates_like_histogram_quantile_and_names_its_bucket() {
        let c = [(0.1, 5.0), (0.25, 8.0), (f64::INFINITY, 10.0)];
        // Rank 2.5 of 10 in the first bucket: 0 + 0.1 * 2.5 / 5.
        assert_eq!(quantile(0.25, &c), Some((0.05, (0.0, Some(0.1)))));
        // Rank 9.5 in +Inf: the highest finite bound, and no upper bound.
        assert_eq!(quantile(0.95, &c), Some((0.25, (0.25, None))));
        assert_eq!(quantile(0.5, &[(0.1, 0.0), (f64::INFINITY, 0.0)]), None);
        assert_eq!(quantile(0.5, &[]), None);
        let open = BucketBounds {
            lower_ms: 250.0,
            upper_ms: None,
        };
        assert_eq!(open.label(), ">250");
        let b = BucketBounds {
            lower_ms: 2.5,
            upper_ms: Some(5.0),
        };
        assert_eq!(b.label(), "2.5-5");
    }

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

    #[test]
    fn source_alone_is_still_empty() {
        let m = WindowMetrics {
            source: Some(ServerSource::Prometheus),
            ..WindowMetrics::default()
        };
        assert!(m.is_empty());
        let json = serde_json::to_value(WindowMetrics {
            source: Some(ServerSource::MetricsEndpoint),
            ..WindowMetrics::default()
        })
        .unwrap();
        assert_eq!(json["source"], "metrics_endpoint");
    }
}
