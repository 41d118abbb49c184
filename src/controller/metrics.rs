//! The operator's own Prometheus metrics and its HTTP endpoints (`/healthz`, `/readyz`,
//! `/metrics`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label set: the kind being reconciled (`InferenceService`, `BenchmarkRun`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// The custom resource kind.
    pub kind: String,
}

/// Reconcile counters and durations, per kind.
pub struct Metrics {
    registry: Registry,
    /// `inferops_reconciles_total{kind}`.
    pub reconciles: Family<KindLabel, Counter>,
    /// `inferops_reconcile_errors_total{kind}`.
    pub reconcile_errors: Family<KindLabel, Counter>,
    /// `inferops_reconcile_duration_seconds{kind}`.
    pub reconcile_duration: Family<KindLabel, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("inferops");
        let reconciles = Family::<KindLabel, Counter>::default();
        let reconcile_errors = Family::<KindLabel, Counter>::default();
        let reconcile_duration = Family::<KindLabel, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.005, 2.0, 14))) as fn() -> Histogram,
        );
        registry.register("reconciles", "Reconciliations run", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciliations that returned an error",
            reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconciliation",
            reconcile_duration.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
        }
    }
}

impl Metrics {
    /// Record one reconcile of `kind`.
    pub fn observe(&self, kind: &str, duration: Duration, ok: bool) {
        let l = KindLabel {
            kind: kind.to_string(),
        };
        self.reconciles.get_or_create(&l).inc();
        if !ok {
            self.reconcile_errors.get_or_create(&l).inc();
        }
        self.reconcile_duration
            .get_or_create(&l)
            .observe(duration.as_secs_f64());
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Shared state of the HTTP endpoints.
pub struct HttpState {
    /// Metrics to expose.
    pub metrics: Arc<Metrics>,
    /// Set once the operator reached the API server; `/readyz` answers 503 before.
    pub ready: AtomicBool,
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(s): State<Arc<HttpState>>) -> impl IntoResponse {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

async fn metrics(State(s): State<Arc<HttpState>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

/// The router serving `/healthz`, `/readyz` and `/metrics`.
pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_labelled_by_kind() {
        let m = Metrics::default();
        m.observe("InferenceService", Duration::from_millis(20), true);
        m.observe("InferenceService", Duration::from_millis(20), false);
        let text = m.encode();
        assert!(text.contains("inferops_reconciles_total{kind=\"InferenceService\"} 2"));
        assert!(text.contains("inferops_reconcile_errors_total{kind=\"InferenceService\"} 1"));
        assert!(
            text.contains("inferops_reconcile_duration_seconds_count{kind=\"InferenceService\"} 2")
        );
    }
}
