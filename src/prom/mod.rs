//! What the GPUs (DCGM) and vLLM reported during a step's wall-clock window, queried from
//! Prometheus. Query building is pure ([`queries`]); [`Collector`] runs them.

use chrono::{DateTime, Utc};
use prometheus_http_query::Client;
use prometheus_http_query::response::Data;

use crate::contract::WindowMetrics;

/// Label convention of the DCGM metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GpuLabelStyle {
    /// dcgm-exporter with pod attribution: `namespace`, `pod`.
    #[default]
    DcgmExporter,
    /// GKE managed DCGM: `exported_namespace`, `exported_pod`.
    GkeManaged,
}

impl From<crate::api::GpuLabels> for GpuLabelStyle {
    fn from(l: crate::api::GpuLabels) -> Self {
        match l {
            crate::api::GpuLabels::DcgmExporter => GpuLabelStyle::DcgmExporter,
            crate::api::GpuLabels::GkeManaged => GpuLabelStyle::GkeManaged,
        }
    }
}

/// Which series belong to the target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Namespace of the target's pods.
    pub namespace: Option<String>,
    /// Regular expression matching the target's pod names (e.g. `qwen-.*`).
    pub pod_regex: Option<String>,
    /// vLLM `model_name` label value.
    pub model_name: Option<String>,
    /// Label convention of the GPU metrics.
    pub gpu_labels: GpuLabelStyle,
}

impl Scope {
    fn matchers(&self, ns_label: &str, pod_label: &str, model: bool) -> String {
        let mut m = Vec::new();
        if let Some(ns) = &self.namespace {
            m.push(format!("{ns_label}=\"{}\"", escape(ns)));
        }
        if let Some(pods) = &self.pod_regex {
            m.push(format!("{pod_label}=~\"{}\"", escape(pods)));
        }
        if model && let Some(name) = &self.model_name {
            m.push(format!("model_name=\"{}\"", escape(name)));
        }
        format!("{{{}}}", m.join(","))
    }

    /// Label matchers for `vllm:*` series.
    pub fn vllm(&self) -> String {
        self.matchers("namespace", "pod", true)
    }

    /// Label matchers for `DCGM_*` series.
    pub fn gpu(&self) -> String {
        match self.gpu_labels {
            GpuLabelStyle::DcgmExporter => self.matchers("namespace", "pod", false),
            GpuLabelStyle::GkeManaged => self.matchers("exported_namespace", "exported_pod", false),
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// How a query's vector result becomes one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduce {
    /// The single value (the query aggregates itself).
    Single,
    /// Smallest series value.
    Min,
    /// Largest series value.
    Max,
}

/// One named query: the field it fills, PromQL alternatives tried in order (newer vLLM
/// names first), a scale factor and how to reduce the vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// `WindowMetrics` field name.
    pub field: &'static str,
    /// PromQL, first one with data wins.
    pub promql: Vec<String>,
    /// Multiplier applied to the result (unit conversion).
    pub scale: f64,
    /// Reduction over the result vector.
    pub reduce: Reduce,
}

/// Every query for a window of `seconds` length, evaluated at the window's end.
/// `resolution` is the subquery step for peaks of sums.
pub fn queries(scope: &Scope, seconds: u64, resolution: u64) -> Vec<Query> {
    let (v, g) = (scope.vllm(), scope.gpu());
    let w = format!("{}s", seconds.max(1));
    let sub = format!("[{w}:{}s]", resolution.max(1));
    let q = |field, promql: Vec<String>, scale, reduce| Query {
        field,
        promql,
        scale,
        reduce,
    };
    let p95 = |metrics: &[&str]| -> Vec<String> {
        metrics
            .iter()
            .map(|m| {
                format!("histogram_quantile(0.95, sum by (le) (increase({m}_bucket{v}[{w}])))")
            })
            .collect()
    };
    vec![
        q(
            "gpu_util_max",
            vec![format!("max(max_over_time(DCGM_FI_DEV_GPU_UTIL{g}[{w}]))")],
            1.0,
            Reduce::Single,
        ),
        q(
            "gpu_util_mean",
            vec![format!("avg(avg_over_time(DCGM_FI_DEV_GPU_UTIL{g}[{w}]))")],
            1.0,
            Reduce::Single,
        ),
        q(
            "gpu_fb_used_max_bytes",
            vec![format!("max(max_over_time(DCGM_FI_DEV_FB_USED{g}[{w}]))")],
            1024.0 * 1024.0,
            Reduce::Single,
        ),
        q(
            "gpu_power_mean_watts",
            vec![format!(
                "avg(avg_over_time(DCGM_FI_DEV_POWER_USAGE{g}[{w}]))"
            )],
            1.0,
            Reduce::Single,
        ),
        q(
            "kv_cache_usage_max",
            ["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"]
                .iter()
                .map(|m| format!("max(max_over_time({m}{v}[{w}]))"))
                .collect(),
            1.0,
            Reduce::Single,
        ),
        q(
            "num_requests_running_max",
            vec![format!(
                "max_over_time(sum(vllm:num_requests_running{v}){sub})"
            )],
            1.0,
            Reduce::Single,
        ),
        q(
            "num_requests_waiting_max",
            vec![format!(
                "max_over_time(sum(vllm:num_requests_waiting{v}){sub})"
            )],
            1.0,
            Reduce::Single,
        ),
        q(
            "ttft_p95_ms",
            p95(&["vllm:time_to_first_token_seconds"]),
            1000.0,
            Reduce::Single,
        ),
        q(
            "itl_p95_ms",
            p95(&[
                "vllm:inter_token_latency_seconds",
                "vllm:time_per_output_token_seconds",
            ]),
            1000.0,
            Reduce::Single,
        ),
        q(
            "queue_time_p95_ms",
            p95(&["vllm:request_queue_time_seconds"]),
            1000.0,
            Reduce::Single,
        ),
        q(
            "per_replica_running_min",
            vec![format!("avg_over_time(vllm:num_requests_running{v}[{w}])")],
            1.0,
            Reduce::Min,
        ),
        q(
            "per_replica_running_max",
            vec![format!("avg_over_time(vllm:num_requests_running{v}[{w}])")],
            1.0,
            Reduce::Max,
        ),
        q(
            "prefix_cache_queries",
            vec![format!(
                "sum(increase(vllm:prefix_cache_queries_total{v}[{w}]))"
            )],
            1.0,
            Reduce::Single,
        ),
        q(
            "prefix_cache_hits",
            vec![format!(
                "sum(increase(vllm:prefix_cache_hits_total{v}[{w}]))"
            )],
            1.0,
            Reduce::Single,
        ),
    ]
}

/// Why metrics could not be collected.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// The URL is not a usable Prometheus address.
    #[error("Prometheus URL {url:?} is invalid: {message}")]
    BadUrl {
        /// The configured URL.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// Prometheus did not answer or rejected a query.
    #[error("Prometheus at {url} failed: {message}")]
    Unavailable {
        /// The configured URL.
        url: String,
        /// The error.
        message: String,
    },
}

/// Runs the window queries against one Prometheus.
pub struct Collector {
    client: Client,
    url: String,
    scope: Scope,
}

impl Collector {
    /// A collector for `url` scoped to the target's series.
    pub fn new(url: &str, scope: Scope) -> Result<Self, CollectError> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(15))
            .build()
            .map_err(|e| CollectError::BadUrl {
                url: url.to_string(),
                message: e.to_string(),
            })?;
        let client = Client::from(http, url).map_err(|e| CollectError::BadUrl {
            url: url.to_string(),
            message: e.to_string(),
        })?;
        Ok(Self {
            client,
            url: url.to_string(),
            scope,
        })
    }

    /// Query every figure for the window `[start, end]` (whole seconds inside it; a window
    /// shorter than the scrape interval may find no samples, and its figures stay `None`).
    pub async fn collect(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<WindowMetrics, CollectError> {
        // Only samples strictly inside the window count: adjacent steps of a sweep must not
        // bleed into each other. Evaluate at the last whole second before `end`, over the
        // whole seconds after `start`.
        let at = end.timestamp();
        let first = start.timestamp() + i64::from(start.timestamp_subsec_nanos() > 0);
        let seconds = (at - first).max(1) as u64;
        let end = DateTime::from_timestamp(at, 0).unwrap_or(end);
        let resolution = if seconds <= 120 { 1 } else { 5 };
        let mut out = WindowMetrics::default();
        for query in queries(&self.scope, seconds, resolution) {
            for promql in &query.promql {
                if let Some(v) = self.instant(promql, end, query.reduce).await? {
                    out.set(query.field, v * query.scale);
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Evaluate one PromQL expression at `at`; `None` when it has no finite value.
    async fn instant(
        &self,
        promql: &str,
        at: DateTime<Utc>,
        reduce: Reduce,
    ) -> Result<Option<f64>, CollectError> {
        let result = self
            .client
            .query(promql)
            .at(at.timestamp())
            .get()
            .await
            .map_err(|e| CollectError::Unavailable {
                url: self.url.clone(),
                message: e.to_string(),
            })?;
        let values: Vec<f64> = match result.data() {
            Data::Vector(v) => v.iter().map(|s| s.sample().value()).collect(),
            Data::Scalar(s) => vec![s.value()],
            Data::Matrix(_) => Vec::new(),
        };
        let values: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
        Ok(match reduce {
            Reduce::Single => values.first().copied(),
            Reduce::Min => values.iter().copied().reduce(f64::min),
            Reduce::Max => values.iter().copied().reduce(f64::max),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_builds_label_matchers_per_convention() {
        let mut s = Scope {
            namespace: Some("ml".into()),
            pod_regex: Some("qwen-.*".into()),
            model_name: Some("qwen".into()),
            gpu_labels: GpuLabelStyle::DcgmExporter,
        };
        assert_eq!(
            s.vllm(),
            r#"{namespace="ml",pod=~"qwen-.*",model_name="qwen"}"#
        );
        assert_eq!(s.gpu(), r#"{namespace="ml",pod=~"qwen-.*"}"#);
        s.gpu_labels = GpuLabelStyle::GkeManaged;
        assert_eq!(
            s.gpu(),
            r#"{exported_namespace="ml",exported_pod=~"qwen-.*"}"#
        );
        assert_eq!(Scope::default().vllm(), "{}");
        let tricky = Scope {
            model_name: Some(r#"a"b"#.into()),
            ..Scope::default()
        };
        assert_eq!(tricky.vllm(), r#"{model_name="a\"b"}"#);
    }

    #[test]
    fn queries_cover_every_field_with_fallbacks() {
        let qs = queries(&Scope::default(), 30, 1);
        let kv = qs.iter().find(|q| q.field == "kv_cache_usage_max").unwrap();
        assert!(kv.promql[0].contains("vllm:kv_cache_usage_perc"));
        assert!(kv.promql[1].contains("vllm:gpu_cache_usage_perc"));
        let itl = qs.iter().find(|q| q.field == "itl_p95_ms").unwrap();
        assert!(itl.promql[1].contains("vllm:time_per_output_token_seconds_bucket"));
        assert!(itl.promql[0].contains("[30s]"));
        let mut m = WindowMetrics::default();
        for q in &qs {
            m.set(q.field, 1.0);
        }
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json.as_object().unwrap().len(), qs.len());
    }
}
