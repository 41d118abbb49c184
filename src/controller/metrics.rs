//! The operator's own Prometheus metrics and its HTTP endpoints (`/healthz`, `/readyz`,
//! `/metrics`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// How long a watcher may fail without a success before `/healthz` fails (default).
pub const WATCHER_UNHEALTHY_AFTER: Duration = Duration::from_secs(300);
/// Errors further apart than this are separate incidents: a failing watcher retries within
/// kube-runtime's backoff (at most 30 s apart), so a gap this long means it recovered.
pub const WATCHER_ERROR_GAP: Duration = Duration::from_secs(90);

/// A run of watcher errors without a success in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorStreak {
    /// The first error of the run.
    pub first: Instant,
    /// The latest error.
    pub last: Instant,
}

impl ErrorStreak {
    /// The streak after another error at `now` (a new one after a long gap).
    pub fn record(streak: Option<ErrorStreak>, now: Instant) -> ErrorStreak {
        match streak {
            Some(s) if now.saturating_duration_since(s.last) <= WATCHER_ERROR_GAP => ErrorStreak {
                first: s.first,
                last: now,
            },
            _ => ErrorStreak {
                first: now,
                last: now,
            },
        }
    }

    /// Whether the watcher is unhealthy at `now`: failing for at least `after` and still
    /// failing (its latest error within [`WATCHER_ERROR_GAP`]).
    pub fn unhealthy(&self, now: Instant, after: Duration) -> bool {
        now.saturating_duration_since(self.first) >= after
            && now.saturating_duration_since(self.last) <= WATCHER_ERROR_GAP
    }
}

/// Reconcile counters and durations, per kind, and the watchers' health.
pub struct Metrics {
    registry: Registry,
    /// `inferops_watcher_errors_total{kind}`: list/watch errors, e.g. an object the types
    /// cannot decode (which stops that kind's watcher).
    pub watcher_errors: Family<KindLabel, Counter>,
    watcher_streaks: Mutex<BTreeMap<String, ErrorStreak>>,
    watcher_unhealthy_after: Mutex<Duration>,
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
        let watcher_errors = Family::<KindLabel, Counter>::default();
        registry.register(
            "watcher_errors",
            "Errors of the list/watch streams (the kind's reconciliation stalls while they last)",
            watcher_errors.clone(),
        );
        Self {
            registry,
            watcher_errors,
            watcher_streaks: Mutex::new(BTreeMap::new()),
            watcher_unhealthy_after: Mutex::new(WATCHER_UNHEALTHY_AFTER),
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

    /// Record a list/watch error of `kind`'s controller.
    pub fn watcher_error(&self, kind: &str, now: Instant) {
        self.watcher_errors
            .get_or_create(&KindLabel {
                kind: kind.to_string(),
            })
            .inc();
        let mut streaks = self
            .watcher_streaks
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let next = ErrorStreak::record(streaks.get(kind).copied(), now);
        streaks.insert(kind.to_string(), next);
    }

    /// `kind`'s controller delivered an object: its watcher works.
    pub fn watcher_ok(&self, kind: &str) {
        self.watcher_streaks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(kind);
    }

    /// How long a watcher may fail before `/healthz` fails.
    pub fn set_watcher_unhealthy_after(&self, after: Duration) {
        *self
            .watcher_unhealthy_after
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = after;
    }

    /// Kinds whose watcher is unhealthy at `now`, with how long it has been failing.
    pub fn unhealthy_watchers(&self, now: Instant) -> Vec<(String, Duration)> {
        let after = *self
            .watcher_unhealthy_after
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.watcher_streaks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, s)| s.unhealthy(now, after))
            .map(|(k, s)| (k.clone(), now.saturating_duration_since(s.first)))
            .collect()
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

/// 200 `ok`, or 503 naming the watchers that have been failing for longer than allowed
/// (the kubelet then restarts the operator, and the error is in its logs and metrics).
async fn healthz(State(s): State<Arc<HttpState>>) -> impl IntoResponse {
    let unhealthy = s.metrics.unhealthy_watchers(Instant::now());
    if unhealthy.is_empty() {
        (StatusCode::OK, "ok".to_string())
    } else {
        let what: Vec<String> = unhealthy
            .iter()
            .map(|(k, d)| format!("{k} watcher failing for {}s", d.as_secs()))
            .collect();
        (StatusCode::SERVICE_UNAVAILABLE, what.join("; "))
    }
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
    fn a_watcher_is_unhealthy_only_after_failing_for_a_while() {
        let t0 = Instant::now();
        let after = Duration::from_secs(300);
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut streak = ErrorStreak::record(None, t0);
        assert!(
            !streak.unhealthy(at(10), after),
            "one error is not an outage"
        );
        for s in (30..=300).step_by(30) {
            streak = ErrorStreak::record(Some(streak), at(s));
        }
        assert_eq!(streak.first, t0);
        assert!(streak.unhealthy(at(300), after), "failing for 5 minutes");
        assert!(
            !streak.unhealthy(at(300 + 91), after),
            "no error for 91 s: recovered"
        );
        let fresh = ErrorStreak::record(Some(streak), at(600));
        assert_eq!(
            fresh.first,
            at(600),
            "an error after a long gap starts a new streak"
        );
        assert!(!fresh.unhealthy(at(601), after));
    }

    #[test]
    fn watcher_errors_are_counted_and_a_success_clears_them() {
        let m = Metrics::default();
        m.set_watcher_unhealthy_after(Duration::from_secs(60));
        let t0 = Instant::now();
        m.watcher_error("BenchmarkRun", t0);
        m.watcher_error("BenchmarkRun", t0 + Duration::from_secs(61));
        assert_eq!(
            m.unhealthy_watchers(t0 + Duration::from_secs(61)),
            [("BenchmarkRun".to_string(), Duration::from_secs(61))]
        );
        assert!(
            m.encode()
                .contains("inferops_watcher_errors_total{kind=\"BenchmarkRun\"} 2")
        );
        m.watcher_ok("BenchmarkRun");
        assert!(
            m.unhealthy_watchers(t0 + Duration::from_secs(62))
                .is_empty()
        );
    }

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
