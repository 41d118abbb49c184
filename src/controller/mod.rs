//! Thin async reconcilers and the `inferops operator` process around them.
//!
//! - [`inference_service`]: the `InferenceService` reconciler ([`inference_service::reconcile`]).
//! - [`apply`]: shared helpers (server-side apply with one field manager, pruning, CRD
//!   checks, condition Events, status patches) for this and future controllers (a
//!   `benchmark_run` module slots in next to `inference_service` and is started in [`run`]).
//! - [`leader`]: Lease-based leader election.
//! - [`metrics`]: the operator's Prometheus metrics and health endpoints.

pub mod apply;
pub mod benchmark_run;
pub mod inference_service;
pub mod isvc_status;
pub mod leader;
pub mod metrics;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::api::{BenchmarkRun, InferenceService};
use crate::render::{RenderContext, default_operator_image};
use metrics::{HttpState, Metrics};

/// Errors a reconcile returns (retried with backoff). Spec problems are not errors: they
/// become conditions.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The object lacks a field the API server always sets.
    #[error("object has no {0}")]
    MissingField(&'static str),
}

/// What every reconcile gets: a client, the render context, an Event recorder, metrics.
pub struct Context {
    /// The Kubernetes client (a real one, or kube-fake-client in tests).
    pub client: Client,
    /// Passed to the renderers (operator image for sim pods and loadgen Jobs).
    pub render: RenderContext,
    /// Publishes Events on condition transitions.
    pub recorder: Recorder,
    /// Reconcile counters and durations.
    pub metrics: Arc<Metrics>,
    /// Consecutive failures per object, for exponential backoff in the error policy.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// A context for `client`, reporting Events as controller `inferops`.
    pub fn new(client: Client, render: RenderContext) -> Self {
        let reporter = Reporter {
            controller: "inferops".to_string(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            render,
            metrics: Arc::new(Metrics::default()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    async fn record(&self, key: String, ok: bool) -> u32 {
        let mut f = self.failures.lock().await;
        if ok {
            f.remove(&key);
            0
        } else {
            let n = f.entry(key).or_insert(0);
            *n += 1;
            *n
        }
    }
}

/// Backoff after `failures` consecutive errors: 5 s doubling up to 5 minutes.
pub fn backoff(failures: u32) -> Duration {
    let secs = 5u64.saturating_mul(1u64 << failures.saturating_sub(1).min(6));
    Duration::from_secs(secs.min(300))
}

/// Log format of the operator.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Arguments of `inferops operator`.
#[derive(clap::Args, Debug, Clone)]
pub struct OperatorArgs {
    /// Address of `/healthz`, `/readyz` and `/metrics`.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Run controllers only while holding the leader Lease (turn off for a single local run).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "inferops-operator-leader")]
    pub lease_name: String,
    /// Namespace of the Lease (default: the pod's namespace, else the kubeconfig's).
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Lease duration in seconds (renewed every third of it).
    #[arg(long, default_value_t = 15)]
    pub lease_duration_seconds: u64,
    /// Watch one namespace only (default: all namespaces).
    #[arg(long)]
    pub watch_namespace: Option<String>,
    /// Seconds a controller's list/watch may keep failing (e.g. on an object the types cannot
    /// decode) before `/healthz` fails and the kubelet restarts the operator.
    #[arg(long, default_value_t = 300)]
    pub watcher_unhealthy_after_seconds: u64,
    /// Operator image, run by `engine.kind: sim` pods.
    #[arg(long, env = "OPERATOR_IMAGE", default_value_t = default_operator_image())]
    pub operator_image: String,
    /// Settings that change the rendered objects (PodMonitor labels, monitoring stack,
    /// image pull Secrets, engine image allow-list).
    #[command(flatten)]
    pub render: crate::render::RenderSettings,
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

async fn shutdown_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
            _ = token.cancelled() => {},
        }
    }
    #[cfg(not(unix))]
    tokio::select! {
        _ = ctrl_c => {},
        _ = token.cancelled() => {},
    }
    token.cancel();
}

/// `Kind/namespace/name`: the key of an object in metrics, logs and the backoff table.
pub fn object_key<K: kube::Resource<DynamicType = ()>>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
}

/// Run one reconcile with metrics (labelled by kind) and per-object failure bookkeeping.
/// Every controller's `run` callback wraps its reconcile function with this.
pub async fn instrumented<K, F>(obj: &K, ctx: &Context, reconcile: F) -> Result<Action, Error>
where
    K: kube::Resource<DynamicType = ()>,
    F: std::future::Future<Output = Result<Action, Error>>,
{
    let start = Instant::now();
    let result = reconcile.await;
    ctx.metrics
        .observe(&K::kind(&()), start.elapsed(), result.is_ok());
    ctx.record(object_key(obj), result.is_ok()).await;
    result
}

/// The error policy every controller shares: log, then requeue after [`backoff`] of the
/// object's consecutive failures.
pub fn error_policy<K: kube::Resource<DynamicType = ()>>(
    obj: Arc<K>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let key = object_key(obj.as_ref());
    let failures = ctx
        .failures
        .try_lock()
        .map(|f| f.get(&key).copied().unwrap_or(1))
        .unwrap_or(1);
    let wait = backoff(failures);
    tracing::warn!(object = %key, %error, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

async fn reconcile_isvc(isvc: Arc<InferenceService>, ctx: Arc<Context>) -> Result<Action, Error> {
    instrumented(
        isvc.as_ref(),
        &ctx,
        inference_service::reconcile(isvc.clone(), ctx.clone()),
    )
    .await
}

async fn reconcile_run(run: Arc<BenchmarkRun>, ctx: Arc<Context>) -> Result<Action, Error> {
    instrumented(
        run.as_ref(),
        &ctx,
        benchmark_run::reconcile(run.clone(), ctx.clone()),
    )
    .await
}

/// One item of a controller's output stream. Reconcile errors are logged by
/// [`error_policy`]; a list/watch error (e.g. a stored object the types cannot decode, which
/// stops the whole kind) is logged at error level, counted, and fails `/healthz` once it has
/// lasted longer than `--watcher-unhealthy-after`.
async fn observe_result<K, E>(
    kind: &'static str,
    metrics: &metrics::Metrics,
    res: Result<
        (kube::runtime::reflector::ObjectRef<K>, Action),
        kube::runtime::controller::Error<E, watcher::Error>,
    >,
) where
    K: kube::Resource,
    E: std::error::Error + 'static,
{
    use kube::runtime::controller::Error as CtrlError;
    match res {
        Ok((obj, _)) => {
            metrics.watcher_ok(kind);
            tracing::debug!(object = %obj, "reconciled");
        }
        Err(CtrlError::QueueError(e)) => {
            metrics.watcher_error(kind, Instant::now());
            tracing::error!(kind, error = %e, "watching failed: reconciliation of this kind is stalled until it recovers");
        }
        Err(CtrlError::ReconcilerFailed(_, obj)) => {
            metrics.watcher_ok(kind);
            tracing::debug!(object = %obj, "reconcile error (see the error policy's log)");
        }
        Err(e) => tracing::warn!(kind, error = %e, "controller"),
    }
}

/// Run every controller until `token` is cancelled.
pub async fn run_controllers(
    ctx: Arc<Context>,
    watch_namespace: Option<String>,
    token: CancellationToken,
) {
    let client = ctx.client.clone();
    let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=inferops");
    fn api<K>(client: &Client, ns: &Option<String>) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let ns = watch_namespace;
    let isvc = Controller::new(
        api::<InferenceService>(&client, &ns),
        watcher::Config::default(),
    )
    // Pod changes (scheduling, crash loops, readiness) update the status at once.
    .watches(
        api::<k8s_openapi::api::core::v1::Pod>(&client, &ns),
        owned.clone(),
        inference_service::pod_owner,
    )
    .owns(api::<Deployment>(&client, &ns), owned.clone())
    .owns(api::<Service>(&client, &ns), owned.clone())
    .owns(api::<HorizontalPodAutoscaler>(&client, &ns), owned.clone())
    .owns(api::<PodDisruptionBudget>(&client, &ns), owned.clone())
    .owns(api::<PersistentVolumeClaim>(&client, &ns), owned.clone())
    .graceful_shutdown_on(token.clone().cancelled_owned())
    .run(
        reconcile_isvc,
        error_policy::<InferenceService>,
        ctx.clone(),
    )
    .for_each(|res| observe_result("InferenceService", &ctx.metrics, res));
    let runs = Controller::new(
        api::<BenchmarkRun>(&client, &ns),
        watcher::Config::default(),
    )
    .owns(api::<Job>(&client, &ns), owned.clone())
    // Results ConfigMaps reach 1 MiB each and the reconciler reads them with `get` anyway:
    // watch their metadata only (an `Api<PartialObjectMeta<_>>` lists and watches with
    // metadata-only requests), so a list never holds their data in memory.
    .owns(api::<PartialObjectMeta<ConfigMap>>(&client, &ns), owned)
    .graceful_shutdown_on(token.clone().cancelled_owned())
    .run(reconcile_run, error_policy::<BenchmarkRun>, ctx.clone())
    .for_each(|res| observe_result("BenchmarkRun", &ctx.metrics, res));
    futures::join!(isvc, runs);
}

/// `inferops operator`: metrics/health server, leader election, controllers, graceful
/// shutdown on SIGTERM / Ctrl-C.
pub async fn run(args: OperatorArgs) -> anyhow::Result<()> {
    init_tracing(args.log_format);
    let token = CancellationToken::new();
    tokio::spawn(shutdown_signal(token.clone()));

    let client = Client::try_default().await?;
    let ctx = Arc::new(Context::new(
        client.clone(),
        args.render.apply(RenderContext {
            operator_image: args.operator_image.clone(),
            ..RenderContext::default()
        }),
    ));
    ctx.metrics
        .set_watcher_unhealthy_after(Duration::from_secs(args.watcher_unhealthy_after_seconds));
    let http = Arc::new(HttpState {
        metrics: ctx.metrics.clone(),
        ready: false.into(),
    });
    let listener = tokio::net::TcpListener::bind(args.metrics_addr).await?;
    tracing::info!(addr = %args.metrics_addr, "serving /healthz /readyz /metrics");
    let server_token = token.clone();
    let server = tokio::spawn(
        axum::serve(listener, metrics::router(http.clone()))
            .with_graceful_shutdown(async move { server_token.cancelled().await })
            .into_future(),
    );
    client.apiserver_version().await?;
    http.ready.store(true, Ordering::Relaxed);

    let elector = if args.leader_elect {
        let ns = args
            .lease_namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string());
        let identity = std::env::var("POD_NAME").unwrap_or_else(|_| {
            format!(
                "{}-{}",
                std::env::var("HOSTNAME").unwrap_or_else(|_| "inferops".into()),
                std::process::id()
            )
        });
        let elector = leader::LeaderElector::new(
            client.clone(),
            &ns,
            &args.lease_name,
            &identity,
            Duration::from_secs(args.lease_duration_seconds.max(3)),
        );
        tracing::info!(%identity, lease = %args.lease_name, %ns, "waiting for leadership");
        loop {
            if token.is_cancelled() {
                break;
            }
            match elector.try_acquire_or_renew().await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election"),
            }
            tokio::select! {
                _ = tokio::time::sleep(elector.retry_period()) => {},
                _ = token.cancelled() => {},
            }
        }
        if !token.is_cancelled() {
            tracing::info!("acquired leadership");
            tokio::spawn(elector.clone().hold(token.clone()));
        }
        Some(elector)
    } else {
        None
    };

    if !token.is_cancelled() {
        run_controllers(ctx, args.watch_namespace.clone(), token.clone()).await;
    }
    token.cancel();
    if let Some(e) = elector
        && let Err(err) = e.release().await
    {
        tracing::warn!(error = %err, "releasing the leader lease");
    }
    let _ = server.await;
    tracing::info!("stopped");
    Ok(())
}
