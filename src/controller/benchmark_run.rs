//! The `BenchmarkRun` reconciler.
//!
//! `Pending` -> `WaitingForTarget` (the InferenceService Ready at the study's replica count;
//! the endpoint answering `/v1/models` with the model) -> `Running` (the load Job; its pods
//! write results into the run's ConfigMap after every step, and status rows follow) ->
//! `Collecting` (Prometheus over each step's window) -> `Succeeded` | `Failed`.
//!
//! Everything the reconciler needs is in the run's status, its owned objects and the results
//! ConfigMap, so an operator restart resumes where it was. Measured steps are never dropped:
//! every failure path keeps the rows already in status.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::future::BoxFuture;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PropagationPolicy};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::apply;
use super::{Context, Error};
use crate::analysis::{self, Cost, Options, Slo, rows};
use crate::api::{
    BenchmarkRun, BenchmarkRunStatus, ConditionType, ConditionUpdate, InferenceService, Phase,
    ResultsRef, ScalingStatus, StepStatus, find_condition,
};
use crate::contract::results::{Results, StepResult, merge_results};
use crate::contract::spec as plan;
use crate::prom::{Collector, Scope};
use crate::render::benchmark_run::{self as render_run, Names};
use crate::render::inference_service as render_isvc;

/// Finalizer that restores a scaling study's target replicas before the run goes away.
pub const FINALIZER: &str = "inferops.dev/restore-replicas";

/// Condition reasons of a BenchmarkRun.
pub mod reason {
    /// Waiting for the InferenceService to exist.
    pub const TARGET_NOT_FOUND: &str = "TargetNotFound";
    /// The InferenceService is not Ready yet.
    pub const TARGET_NOT_READY: &str = "TargetNotReady";
    /// The endpoint does not answer `/v1/models`.
    pub const TARGET_UNREACHABLE: &str = "TargetUnreachable";
    /// The endpoint does not serve the requested model.
    pub const MODEL_NOT_FOUND: &str = "ModelNotFound";
    /// The InferenceService went away during the run.
    pub const TARGET_DELETED: &str = "TargetDeleted";
    /// Scaling the target for a scaling study.
    pub const SCALING: &str = "Scaling";
    /// The load Job is running.
    pub const LOAD_RUNNING: &str = "LoadRunning";
    /// The load Job failed.
    pub const LOAD_JOB_FAILED: &str = "LoadJobFailed";
    /// The load Job disappeared before finishing.
    pub const LOAD_JOB_MISSING: &str = "LoadJobMissing";
    /// Querying Prometheus.
    pub const COLLECTING: &str = "Collecting";
    /// Prometheus could not be queried; client results are kept.
    pub const PROMETHEUS_UNAVAILABLE: &str = "PrometheusUnavailable";
    /// Prometheus answered for every step.
    pub const METRICS_COLLECTED: &str = "MetricsCollected";
    /// Finished within the error budget.
    pub const SUCCEEDED: &str = "Succeeded";
    /// A step failed more requests than `maxErrorRate` allows.
    pub const ERROR_BUDGET_EXCEEDED: &str = "ErrorBudgetExceeded";
    /// A step got no successful request at all.
    pub const NO_SUCCESSFUL_REQUESTS: &str = "NoSuccessfulRequests";
    /// The results ConfigMap could not be read.
    pub const RESULTS_CORRUPT: &str = "ResultsCorrupt";
    /// The spec cannot be turned into a plan.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// Worse than the baseline beyond the thresholds.
    pub const REGRESSED: &str = "Regressed";
    /// Within the baseline's thresholds.
    pub const NO_REGRESSION: &str = "NoRegression";
    /// The baseline run does not exist or has no results.
    pub const BASELINE_UNAVAILABLE: &str = "BaselineUnavailable";
}

/// How long a missing or unreachable target is waited for.
pub const TARGET_GRACE: Duration = Duration::from_secs(300);
/// How long a target may take to become Ready (model download included).
pub const READY_TIMEOUT: Duration = Duration::from_secs(3600);
/// Delay before split load pods start together (they wait on this wall-clock barrier).
pub const BARRIER_DELAY: Duration = Duration::from_secs(45);
const POLL: Duration = Duration::from_secs(5);

/// Asks an endpoint which models it serves (`GET /v1/models`). A trait so tests can run the
/// controller without a reachable in-cluster Service.
pub trait TargetProbe: Send + Sync {
    /// Model ids served at `base_url`, or why they could not be listed.
    fn models<'a>(&'a self, base_url: &'a str) -> BoxFuture<'a, Result<Vec<String>, String>>;
}

/// The real probe: HTTP with a short timeout.
pub struct HttpProbe(reqwest::Client);

impl Default for HttpProbe {
    fn default() -> Self {
        HttpProbe(
            reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("an HTTP client builds"),
        )
    }
}

impl TargetProbe for HttpProbe {
    fn models<'a>(&'a self, base_url: &'a str) -> BoxFuture<'a, Result<Vec<String>, String>> {
        Box::pin(async move {
            let url = format!("{}/v1/models", base_url.trim_end_matches('/'));
            let resp = self
                .0
                .get(&url)
                .send()
                .await
                .map_err(|e| format!("GET {url}: {:#}", anyhow::Error::new(e)))?;
            let status = resp.status();
            let body: serde_json::Value = resp
                .json()
                .await
                .map_err(|e| format!("GET {url}: status {status}, body is not JSON: {e}"))?;
            if !status.is_success() {
                return Err(format!("GET {url}: status {status}: {body}"));
            }
            Ok(body["data"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|m| m["id"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default())
        })
    }
}

/// Where the load goes, once resolved.
#[derive(Debug, Clone)]
struct Target {
    /// Base URL without `/v1`.
    url: String,
    /// Model name sent in requests.
    model: String,
    /// The InferenceService, for InferenceService targets.
    isvc: Option<InferenceService>,
}

/// What resolving the target decided.
enum Resolution {
    Ready(Box<Target>),
    Wait(ConditionUpdate),
    Fail(ConditionUpdate),
}

fn cond(
    type_: ConditionType,
    status: bool,
    reason: &'static str,
    msg: impl Into<String>,
) -> ConditionUpdate {
    ConditionUpdate::new(type_, status, reason, msg)
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

fn since(t: &Time) -> Duration {
    let secs = k8s_openapi::jiff::Timestamp::now().as_second() - t.0.as_second();
    Duration::from_secs(secs.max(0) as u64)
}

fn created(run: &BenchmarkRun) -> Duration {
    run.metadata
        .creation_timestamp
        .as_ref()
        .map(since)
        .unwrap_or_default()
}

/// The replica counts of the study (`[None]` without scaling), in order.
fn slots(run: &BenchmarkRun) -> Vec<Option<i32>> {
    match &run.spec.scaling {
        Some(s) => s.replicas.iter().map(|r| Some(*r)).collect(),
        None => vec![None],
    }
}

async fn resolve_target(
    ctx: &Context,
    run: &BenchmarkRun,
    ns: &str,
    slot: Option<i32>,
) -> Result<Resolution, Error> {
    let t = &run.spec.target;
    let waited = created(run);
    let (url, model, isvc) = match (&t.inference_service_ref, &t.url) {
        (Some(r), _) => {
            let api: Api<InferenceService> = Api::namespaced(ctx.client.clone(), ns);
            let Some(isvc) = api.get_opt(&r.name).await? else {
                let msg = format!(
                    "spec.target.inferenceServiceRef: InferenceService {ns}/{} not found",
                    r.name
                );
                let c = cond(ConditionType::Ready, false, reason::TARGET_NOT_FOUND, msg);
                return Ok(if waited > TARGET_GRACE {
                    Resolution::Fail(c)
                } else {
                    Resolution::Wait(c)
                });
            };
            let status = isvc.status.clone().unwrap_or_default();
            let ready = find_condition(&status.conditions, ConditionType::Ready)
                .is_some_and(|c| c.status == "True");
            // After a scale, wait until the InferenceService controller has seen the new
            // spec and the pods have converged to it (a stale status would still count
            // the old pods).
            let observed = match (status.observed_generation, isvc.metadata.generation) {
                (Some(seen), Some(generation)) => seen >= generation,
                _ => slot.is_none(),
            };
            let enough =
                slot.is_none_or(|n| observed && status.ready_replicas >= n && status.replicas == n);
            if !ready || !enough {
                let why = find_condition(&status.conditions, ConditionType::Ready)
                    .map(|c| format!("{}: {}", c.reason, c.message))
                    .unwrap_or_else(|| "no status yet".into());
                let msg = match slot {
                    Some(n) => format!(
                        "waiting for InferenceService {} to have {n} ready replicas ({} ready; {why})",
                        r.name, status.ready_replicas
                    ),
                    None => format!(
                        "waiting for InferenceService {} to be Ready ({why})",
                        r.name
                    ),
                };
                let reason = if slot.is_some() {
                    reason::SCALING
                } else {
                    reason::TARGET_NOT_READY
                };
                let c = cond(ConditionType::Ready, false, reason, msg);
                return Ok(if waited > READY_TIMEOUT {
                    Resolution::Fail(c)
                } else {
                    Resolution::Wait(c)
                });
            }
            let url = status
                .endpoint
                .clone()
                .unwrap_or_else(|| render_isvc::endpoint(&r.name, ns));
            let model = t
                .model
                .clone()
                .unwrap_or_else(|| isvc.spec.served_model_name().to_string());
            (
                url.trim_end_matches("/v1").to_string(),
                Some(model),
                Some(isvc),
            )
        }
        (None, Some(url)) => (
            url.trim_end_matches('/')
                .trim_end_matches("/v1")
                .to_string(),
            t.model.clone(),
            None,
        ),
        (None, None) => {
            return Ok(Resolution::Fail(cond(
                ConditionType::Ready,
                false,
                reason::INVALID_SPEC,
                "spec.target: set exactly one of inferenceServiceRef or url",
            )));
        }
    };
    let served = match ctx.probe.models(&url).await {
        Ok(m) => m,
        Err(e) => {
            let c = cond(
                ConditionType::Ready,
                false,
                reason::TARGET_UNREACHABLE,
                format!("the target does not answer: {e}"),
            );
            return Ok(if waited > TARGET_GRACE {
                Resolution::Fail(c)
            } else {
                Resolution::Wait(c)
            });
        }
    };
    let model = match model {
        Some(m) if served.iter().any(|s| s == &m) => m,
        Some(m) => {
            return Ok(Resolution::Fail(cond(
                ConditionType::Ready,
                false,
                reason::MODEL_NOT_FOUND,
                format!(
                    "model {m:?} is not served at {url} (it serves {}); fix spec.target.model",
                    served.join(", ")
                ),
            )));
        }
        None if served.len() == 1 => served[0].clone(),
        None => {
            return Ok(Resolution::Fail(cond(
                ConditionType::Ready,
                false,
                reason::MODEL_NOT_FOUND,
                format!(
                    "{url} serves {} models ({}); set spec.target.model",
                    served.len(),
                    served.join(", ")
                ),
            )));
        }
    };
    Ok(Resolution::Ready(Box::new(Target { url, model, isvc })))
}

/// Per-pod results of one Job, merged; `Ok(None)` before any pod wrote.
fn read_results(cm: Option<&ConfigMap>, prefix: &str) -> Result<Option<Results>, String> {
    let Some(data) = cm.and_then(|c| c.data.as_ref()) else {
        return Ok(None);
    };
    let mut parts = Vec::new();
    for (key, text) in data {
        let Some(rest) = key.strip_prefix(prefix) else {
            continue;
        };
        // Keys of other sweeps of a scaling study start with `r<N>-`.
        if !rest.starts_with("pod-") {
            continue;
        }
        let r: Results = serde_json::from_str(text).map_err(|e| format!("key {key}: {e}"))?;
        parts.push(r);
    }
    if parts.is_empty() {
        return Ok(None);
    }
    // Only steps every pod finished are complete.
    let n = parts.iter().map(|r| r.steps.len()).min().unwrap_or(0);
    for p in &mut parts {
        p.steps.truncate(n);
    }
    merge_results(&parts).map(Some).map_err(|e| e.to_string())
}

fn job_outcome(job: &Job) -> JobOutcome {
    let status = job.status.clone().unwrap_or_default();
    let conditions = status.conditions.unwrap_or_default();
    let has = |t: &str| {
        conditions
            .iter()
            .any(|c| c.type_ == t && c.status == "True")
    };
    if has("Failed") {
        let c = conditions.iter().find(|c| c.type_ == "Failed");
        JobOutcome::Failed(
            c.and_then(|c| c.message.clone().or(c.reason.clone()))
                .unwrap_or_else(|| "the Job failed".into()),
        )
    } else if has("Complete") {
        JobOutcome::Succeeded
    } else {
        JobOutcome::Active
    }
}

enum JobOutcome {
    Active,
    Succeeded,
    Failed(String),
}

/// Patch status and publish Events for condition transitions.
async fn write_status(
    ctx: &Context,
    run: &BenchmarkRun,
    status: &mut BenchmarkRunStatus,
    updates: Vec<ConditionUpdate>,
) -> Result<(), Error> {
    let api: Api<BenchmarkRun> =
        Api::namespaced(ctx.client.clone(), &run.namespace().unwrap_or_default());
    status.observed_generation = run.metadata.generation;
    status.progress = Some(format!(
        "{}/{}",
        status.current_step,
        status.total_steps.max(status.current_step)
    ));
    let transitions =
        apply::set_conditions(&mut status.conditions, updates, run.metadata.generation);
    if run.status.as_ref() != Some(status) {
        apply::patch_status(&api, &run.name_any(), status).await?;
    }
    if !transitions.is_empty() {
        apply::publish_transitions(&ctx.recorder, &run.object_ref(&()), &transitions).await;
    }
    Ok(())
}

fn fail(status: &mut BenchmarkRunStatus, c: ConditionUpdate) -> Vec<ConditionUpdate> {
    status.phase = Phase::Failed;
    status.completion_time.get_or_insert_with(now);
    vec![
        c.clone(),
        cond(ConditionType::Progressing, false, c.reason, "the run ended"),
        cond(ConditionType::Degraded, true, c.reason, c.message),
    ]
}

/// End the run as Failed with `c` (plus `extra` conditions): scaling restored, status
/// written, measured steps kept.
async fn end_failed(
    ctx: &Context,
    run: &BenchmarkRun,
    mut status: BenchmarkRunStatus,
    c: ConditionUpdate,
    extra: Vec<ConditionUpdate>,
) -> Result<Action, Error> {
    let mut updates = fail(&mut status, c);
    updates.extend(extra);
    restore_scaling(ctx, run, &mut status).await?;
    write_status(ctx, run, &mut status, updates).await?;
    Ok(Action::await_change())
}

async fn set_finalizer(ctx: &Context, run: &BenchmarkRun, present: bool) -> Result<(), Error> {
    let api: Api<BenchmarkRun> =
        Api::namespaced(ctx.client.clone(), &run.namespace().unwrap_or_default());
    let mut finalizers: Vec<String> = run.finalizers().to_vec();
    finalizers.retain(|f| f != FINALIZER);
    if present {
        finalizers.push(FINALIZER.to_string());
    }
    let patch = json!({"metadata": {"finalizers": finalizers}});
    api.patch(
        &run.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// Scale the target InferenceService through its scale subresource.
async fn scale_target(ctx: &Context, ns: &str, name: &str, replicas: i32) -> Result<(), Error> {
    let api: Api<InferenceService> = Api::namespaced(ctx.client.clone(), ns);
    let patch = json!({"spec": {"replicas": replicas}});
    match api
        .patch_scale(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        // An API without the scale subresource (an old CRD, a test double) answers 404/405
        // or with the object itself: patch the spec instead.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 405 => {
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            Ok(())
        }
        Err(kube::Error::SerdeError(_)) => {
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Put the study's target back to its original replica count (idempotent).
async fn restore_scaling(
    ctx: &Context,
    run: &BenchmarkRun,
    status: &mut BenchmarkRunStatus,
) -> Result<(), Error> {
    let (Some(s), Some(r)) = (
        status.scaling.as_mut(),
        &run.spec.target.inference_service_ref,
    ) else {
        return Ok(());
    };
    if s.restored {
        return Ok(());
    }
    let ns = run.namespace().unwrap_or_default();
    let api: Api<InferenceService> = Api::namespaced(ctx.client.clone(), &ns);
    if api.get_opt(&r.name).await?.is_some() {
        scale_target(ctx, &ns, &r.name, s.original_replicas).await?;
    }
    s.restored = true;
    s.current_replicas = None;
    Ok(())
}

/// Query Prometheus for rows that lack server metrics. Returns a condition when it failed.
async fn collect_metrics(
    run: &BenchmarkRun,
    target: Option<&InferenceService>,
    model: Option<&str>,
    status: &mut BenchmarkRunStatus,
) -> Option<ConditionUpdate> {
    let spec = run.spec.prometheus.as_ref()?;
    let ns = run.namespace().unwrap_or_default();
    let scope = Scope {
        namespace: target.map(|_| ns.clone()),
        pod_regex: target.map(|i| format!("{}-.*", i.name_any())),
        model_name: model.map(str::to_string),
        gpu_labels: spec.gpu_labels.into(),
    };
    let collector = match Collector::new(&spec.url, scope) {
        Ok(c) => c,
        Err(e) => {
            return Some(cond(
                ConditionType::MetricsUnavailable,
                true,
                reason::PROMETHEUS_UNAVAILABLE,
                format!("spec.prometheus.url: {e}; client results are kept"),
            ));
        }
    };
    for row in status
        .steps
        .iter_mut()
        .filter(|r| r.server.is_none() && r.gpu.is_none())
    {
        let Some(w) = &row.window else { continue };
        // Status times have whole-second precision: the true window starts within the
        // second after `start` and ends within the second after `end`, so query the part
        // surely inside it.
        let (Some(start), Some(end)) = (
            chrono::DateTime::from_timestamp(w.start.0.as_second() + 1, 0),
            chrono::DateTime::from_timestamp(w.end.0.as_second(), 0),
        ) else {
            continue;
        };
        match collector.collect(start, end).await {
            Ok(m) => rows::attach_metrics(row, &m),
            Err(e) => {
                return Some(cond(
                    ConditionType::MetricsUnavailable,
                    true,
                    reason::PROMETHEUS_UNAVAILABLE,
                    format!("{e}; client results are kept"),
                ));
            }
        }
    }
    Some(cond(
        ConditionType::MetricsUnavailable,
        false,
        reason::METRICS_COLLECTED,
        "GPU and vLLM metrics collected for every step window",
    ))
}

/// Reproducibility metadata from the target.
fn metadata(target: &Target, run: &BenchmarkRun) -> BTreeMap<String, String> {
    let mut m = BTreeMap::from([
        (
            "operatorVersion".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
        ("url".to_string(), target.url.clone()),
        ("model".to_string(), target.model.clone()),
        (
            "loadgenParallelism".to_string(),
            run.spec.loadgen.parallelism.to_string(),
        ),
    ]);
    if let Some(isvc) = &target.isvc {
        let s = &isvc.spec;
        m.insert("modelId".into(), s.model.name.clone());
        m.insert(
            "engine".into(),
            format!("{:?}", s.engine.kind).to_lowercase(),
        );
        m.insert(
            "engineImage".into(),
            s.engine
                .image
                .clone()
                .unwrap_or_else(|| render_isvc::VLLM_IMAGE.to_string()),
        );
        m.insert("engineArgs".into(), render_isvc::vllm_args(s).join(" "));
        m.insert("replicas".into(), s.replicas.to_string());
        if let Some(a) = &s.accelerator {
            m.insert(
                "accelerator".into(),
                serde_json::to_value(a.type_)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
            );
            m.insert("gpusPerReplica".into(), a.count.to_string());
            m.insert(
                "platform".into(),
                format!("{:?}", a.platform).to_lowercase(),
            );
        }
    }
    m
}

/// Node labels that describe the hardware: instance type, GPU product and count.
const NODE_LABELS: [&str; 5] = [
    "node.kubernetes.io/instance-type",
    "nvidia.com/gpu.product",
    "nvidia.com/gpu.count",
    "cloud.google.com/gke-accelerator",
    "karpenter.k8s.aws/instance-gpu-name",
];

/// Hardware facts from the node of the target's first pod (best effort: without the RBAC
/// to read nodes, or before pods are scheduled, nothing is added).
async fn node_metadata(ctx: &Context, ns: &str, isvc: &str) -> BTreeMap<String, String> {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(ctx.client.clone(), ns);
    let selector = render_isvc::selector_string(isvc);
    let node = match pods.list(&ListParams::default().labels(&selector)).await {
        Ok(list) => list
            .items
            .into_iter()
            .find_map(|p| p.spec.and_then(|s| s.node_name)),
        Err(e) => {
            tracing::debug!(error = %e, "listing target pods for metadata");
            None
        }
    };
    let Some(node) = node else {
        return BTreeMap::new();
    };
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(ctx.client.clone());
    match nodes.get_opt(&node).await {
        Ok(Some(n)) => {
            let labels = n.metadata.labels.unwrap_or_default();
            NODE_LABELS
                .iter()
                .filter_map(|k| labels.get(*k).map(|v| (format!("node:{k}"), v.clone())))
                .collect()
        }
        Ok(None) => BTreeMap::new(),
        Err(e) => {
            tracing::debug!(error = %e, "reading the target's node for metadata");
            BTreeMap::new()
        }
    }
}

/// Rows for one sweep from merged results, at `replicas`.
fn rows_of(results: &Results, replicas: Option<i32>) -> Vec<StepStatus> {
    results
        .steps
        .iter()
        .map(|s| rows::step_status(s, replicas))
        .collect()
}

/// The first row that failed the run: no successful request, or an error rate over the
/// budget. Messages come from the merged results of the sweep when they have the step.
fn step_problems(
    rows: &[StepStatus],
    results: &[StepResult],
    max_error_rate: f64,
) -> Option<(&'static str, String)> {
    let detail = |row: &StepStatus| {
        results
            .iter()
            .find(|s| s.point() == Some(row.load))
            .map(|s| s.describe_errors())
            .unwrap_or_else(|| analysis::error_classes(std::slice::from_ref(row)))
    };
    let at = |row: &StepStatus| match row.replicas {
        Some(n) => format!("{} at {n} replicas", analysis::describe(&row.load)),
        None => analysis::describe(&row.load),
    };
    if let Some(row) = rows.iter().find(|r| r.succeeded == 0) {
        return Some((
            reason::NO_SUCCESSFUL_REQUESTS,
            format!(
                "step {} had no successful request: {}",
                at(row),
                detail(row)
            ),
        ));
    }
    rows.iter()
        .find(|r| analysis::error_rate(r) > max_error_rate)
        .map(|row| {
            (
                reason::ERROR_BUDGET_EXCEEDED,
                format!(
                    "step {} failed {:.1}% of requests (spec.maxErrorRate {:.1}%): {}",
                    at(row),
                    analysis::error_rate(row) * 100.0,
                    max_error_rate * 100.0,
                    detail(row)
                ),
            )
        })
}

/// Summary, cost, recommendation and baseline comparison over all rows.
async fn conclude(
    ctx: &Context,
    run: &BenchmarkRun,
    target: Option<&Target>,
    status: &mut BenchmarkRunStatus,
) -> Result<Vec<ConditionUpdate>, Error> {
    let gpus = run
        .spec
        .cost
        .as_ref()
        .and_then(|c| c.gpus_per_replica)
        .or_else(|| {
            target.and_then(|t| t.isvc.as_ref()?.spec.accelerator.as_ref().map(|a| a.count))
        })
        .unwrap_or(1);
    if let Some(c) = &run.spec.cost {
        analysis::price_steps(
            &mut status.steps,
            &Cost {
                gpu_hourly_price: c.gpu_hourly_price,
                gpus_per_replica: gpus,
            },
        );
    }
    let slo = run
        .spec
        .load
        .saturation
        .as_ref()
        .map(|s| Slo::from_spec(&s.slo, None))
        .unwrap_or_default();
    status.summary = Some(analysis::summarize(
        &status.steps,
        &Options {
            slo,
            target_request_rate: run.spec.target_request_rate,
            search: run.spec.load.saturation.is_some(),
        },
    ));
    let mut updates = Vec::new();
    if let Some(b) = &run.spec.baseline {
        let api: Api<BenchmarkRun> =
            Api::namespaced(ctx.client.clone(), &run.namespace().unwrap_or_default());
        let base = api
            .get_opt(&b.name)
            .await?
            .and_then(|r| r.status)
            .filter(|s| s.phase == Phase::Succeeded)
            .and_then(|s| s.summary);
        match (base, &status.summary) {
            (Some(base), Some(this)) => {
                let c = analysis::compare(this, &base, b);
                updates.push(cond(
                    ConditionType::Regressed,
                    c.regressed,
                    if c.regressed {
                        reason::REGRESSED
                    } else {
                        reason::NO_REGRESSION
                    },
                    c.message
                        .clone()
                        .unwrap_or_else(|| format!("within the thresholds of baseline {}", b.name)),
                ));
                status.comparison = Some(c);
            }
            _ => updates.push(cond(
                ConditionType::Regressed,
                false,
                reason::BASELINE_UNAVAILABLE,
                format!(
                    "spec.baseline: BenchmarkRun {} not found or not Succeeded; no comparison",
                    b.name
                ),
            )),
        }
    }
    Ok(updates)
}

/// TTL: delete the load Jobs (results stay in status and the ConfigMap).
async fn expire(
    ctx: &Context,
    run: &BenchmarkRun,
    status: &BenchmarkRunStatus,
) -> Result<Action, Error> {
    let (Some(ttl), Some(done)) = (run.spec.ttl_seconds_after_finished, &status.completion_time)
    else {
        return Ok(Action::await_change());
    };
    let ttl = Duration::from_secs(ttl.max(0) as u64);
    let age = since(done);
    if age < ttl {
        return Ok(Action::requeue(ttl - age));
    }
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &run.namespace().unwrap_or_default());
    let selector = format!("{}={}", render_run::RUN_LABEL, run.name_any());
    for job in api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
    {
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        match api.delete(&job.name_any(), &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Action::await_change())
}

/// Reconcile one `BenchmarkRun`. A plain async function so tests drive it directly.
pub async fn reconcile(run: Arc<BenchmarkRun>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = run
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = run.name_any();
    let mut status = run.status.clone().unwrap_or_default();
    let has_finalizer = run.finalizers().iter().any(|f| f == FINALIZER);

    if run.meta().deletion_timestamp.is_some() {
        if has_finalizer {
            restore_scaling(&ctx, &run, &mut status).await?;
            set_finalizer(&ctx, &run, false).await?;
        }
        return Ok(Action::await_change());
    }
    if status.phase.is_terminal() {
        if status.scaling.as_ref().is_some_and(|s| !s.restored) {
            restore_scaling(&ctx, &run, &mut status).await?;
            write_status(&ctx, &run, &mut status, vec![]).await?;
        }
        if has_finalizer && status.scaling.as_ref().is_none_or(|s| s.restored) {
            set_finalizer(&ctx, &run, false).await?;
        }
        return expire(&ctx, &run, &status).await;
    }
    if run.spec.scaling.is_some()
        && run.spec.target.inference_service_ref.is_some()
        && !has_finalizer
    {
        set_finalizer(&ctx, &run, true).await?;
    }
    if status.total_steps == 0 {
        status.total_steps = (run.spec.load.points().len() * slots(&run).len()) as u32;
    }
    status.target.get_or_insert_with(|| {
        match (&run.spec.target.inference_service_ref, &run.spec.target.url) {
            (Some(r), _) => format!("infsvc/{}", r.name),
            (None, Some(u)) => u.clone(),
            (None, None) => String::new(),
        }
    });
    status.results_ref.get_or_insert_with(|| ResultsRef {
        config_map_name: Names::new(&name, None).results,
    });

    // The sweep in progress: the first replica count whose Job has not been collected.
    let done: Vec<Option<i32>> = status.steps.iter().map(|s| s.replicas).collect();
    let all = slots(&run);
    let current = status.scaling.as_ref().and_then(|s| s.current_replicas);
    let slot = if run.spec.scaling.is_some() {
        current.or_else(|| {
            all.iter()
                .flatten()
                .copied()
                .find(|r| !done.contains(&Some(*r)))
        })
    } else {
        None
    };

    // A scaling study first records and then sets the target's replica count.
    if let (Some(n), Some(r)) = (slot, &run.spec.target.inference_service_ref)
        && status.phase != Phase::Running
        && status.phase != Phase::Collecting
    {
        let api: Api<InferenceService> = Api::namespaced(ctx.client.clone(), &ns);
        if let Some(isvc) = api.get_opt(&r.name).await? {
            let s = status.scaling.get_or_insert_with(|| ScalingStatus {
                original_replicas: isvc.spec.replicas,
                ..ScalingStatus::default()
            });
            if s.current_replicas != Some(n) || isvc.spec.replicas != n {
                s.current_replicas = Some(n);
                if isvc.spec.replicas != n {
                    scale_target(&ctx, &ns, &r.name, n).await?;
                }
            }
        }
    }

    let resolution = resolve_target(&ctx, &run, &ns, slot).await?;
    let target = match resolution {
        Resolution::Ready(t) => *t,
        Resolution::Wait(c) => {
            if matches!(status.phase, Phase::Running | Phase::Collecting)
                && c.reason == reason::TARGET_NOT_FOUND
            {
                // The target vanished mid-run: keep what was measured.
                let c = cond(
                    ConditionType::Ready,
                    false,
                    reason::TARGET_DELETED,
                    format!("{} during the run; measured steps are kept", c.message),
                );
                return end_failed(&ctx, &run, status, c, vec![]).await;
            }
            if !matches!(status.phase, Phase::Running | Phase::Collecting) {
                status.phase = Phase::WaitingForTarget;
                let p = cond(
                    ConditionType::Progressing,
                    true,
                    c.reason,
                    c.message.clone(),
                );
                write_status(&ctx, &run, &mut status, vec![c, p]).await?;
                return Ok(Action::requeue(Duration::from_secs(10)));
            }
            // Running: a flapping target does not stop the Job; keep watching it.
            return Ok(Action::requeue(POLL));
        }
        Resolution::Fail(c) => {
            return end_failed(&ctx, &run, status, c, vec![]).await;
        }
    };
    if status.metadata.is_empty() {
        status.metadata = metadata(&target, &run);
        if let Some(isvc) = &target.isvc {
            status
                .metadata
                .extend(node_metadata(&ctx, &ns, &isvc.name_any()).await);
        }
    }

    let names = Names::new(&name, slot);
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    let job = jobs.get_opt(&names.job).await?;

    // Rows measured so far for this sweep.
    let results = match read_results(
        cms.get_opt(&names.results).await?.as_ref(),
        &names.key_prefix,
    ) {
        Ok(r) => r,
        Err(e) => {
            let c = cond(
                ConditionType::Ready,
                false,
                reason::RESULTS_CORRUPT,
                format!(
                    "ConfigMap {}: {e}; steps already in status are kept",
                    names.results
                ),
            );
            return end_failed(&ctx, &run, status, c, vec![]).await;
        }
    };
    if let Some(r) = &results {
        // Rows only grow: a fresh row replaces the same load point of this sweep (keeping
        // server metrics already collected), and rows a restarted load pod has not
        // re-measured yet stay.
        let mut merged = status.steps.clone();
        for mut row in rows_of(r, slot) {
            match merged
                .iter_mut()
                .find(|s| s.replicas == slot && s.load == row.load)
            {
                Some(old) => {
                    row.server = old.server.take();
                    row.gpu = old.gpu.take();
                    *old = row;
                }
                None => merged.push(row),
            }
        }
        status.steps = merged;
        status.current_step = status.steps.len() as u32;
        status.total_steps = status.total_steps.max(status.current_step);
    }

    let Some(job) = job else {
        if status.phase == Phase::Running {
            let c = cond(
                ConditionType::Ready,
                false,
                reason::LOAD_JOB_MISSING,
                format!(
                    "Job {} disappeared before it finished; measured steps are kept",
                    names.job
                ),
            );
            return end_failed(&ctx, &run, status, c, vec![]).await;
        }
        // Start the load.
        let pods = run.spec.loadgen.parallelism.max(1) as u32;
        let start_at = (pods > 1)
            .then(|| Utc::now() + chrono::Duration::from_std(BARRIER_DELAY).unwrap_or_default());
        let p = match plan::plan(&run.spec, &target.url, &target.model, pods, start_at) {
            Ok(p) => p,
            Err(e) => {
                let updates = fail(
                    &mut status,
                    cond(
                        ConditionType::Ready,
                        false,
                        reason::INVALID_SPEC,
                        e.to_string(),
                    ),
                );
                write_status(&ctx, &run, &mut status, updates).await?;
                return Ok(Action::await_change());
            }
        };
        let rendered = render_run::render(&run, &p, slot, &ctx.render);
        apply::apply(&ctx.client, &rendered.service_account).await?;
        apply::apply(&ctx.client, &rendered.role).await?;
        apply::apply(&ctx.client, &rendered.role_binding).await?;
        apply::apply(&ctx.client, &rendered.plan).await?;
        apply::apply(&ctx.client, &rendered.results).await?;
        apply::apply(&ctx.client, &rendered.job).await?;
        status.phase = Phase::Running;
        status.start_time.get_or_insert_with(now);
        let msg = match slot {
            Some(n) => format!(
                "load Job {} running against {} at {n} replicas",
                names.job, target.url
            ),
            None => format!(
                "load Job {} running against {} (model {})",
                names.job, target.url, target.model
            ),
        };
        let updates = vec![
            cond(
                ConditionType::Ready,
                false,
                reason::LOAD_RUNNING,
                msg.clone(),
            ),
            cond(ConditionType::Progressing, true, reason::LOAD_RUNNING, msg),
        ];
        write_status(&ctx, &run, &mut status, updates).await?;
        return Ok(Action::requeue(POLL));
    };

    match job_outcome(&job) {
        JobOutcome::Active => {
            status.phase = Phase::Running;
            write_status(&ctx, &run, &mut status, vec![]).await?;
            Ok(Action::requeue(POLL))
        }
        JobOutcome::Failed(msg) => {
            let metrics =
                collect_metrics(&run, target.isvc.as_ref(), Some(&target.model), &mut status).await;
            let c = cond(
                ConditionType::Ready,
                false,
                reason::LOAD_JOB_FAILED,
                format!(
                    "Job {} failed: {msg}; {} measured steps are kept",
                    names.job,
                    status.steps.len()
                ),
            );
            end_failed(&ctx, &run, status, c, metrics.into_iter().collect()).await
        }
        JobOutcome::Succeeded if status.phase != Phase::Collecting => {
            status.phase = Phase::Collecting;
            let updates = vec![cond(
                ConditionType::Progressing,
                true,
                reason::COLLECTING,
                format!("load Job {} finished; collecting metrics", names.job),
            )];
            write_status(&ctx, &run, &mut status, updates).await?;
            Ok(Action::requeue(Duration::from_millis(500)))
        }
        JobOutcome::Succeeded => {
            let mut updates: Vec<ConditionUpdate> =
                collect_metrics(&run, target.isvc.as_ref(), Some(&target.model), &mut status)
                    .await
                    .into_iter()
                    .collect();
            let merged: Vec<StepResult> = results.map(|r| r.steps).unwrap_or_default();
            if merged.is_empty() {
                let c = cond(
                    ConditionType::Ready,
                    false,
                    reason::RESULTS_CORRUPT,
                    format!(
                        "Job {} completed but wrote no results to ConfigMap {}",
                        names.job, names.results
                    ),
                );
                return end_failed(&ctx, &run, status, c, updates).await;
            }
            let next =
                all.iter().flatten().copied().find(|r| {
                    Some(*r) != slot && !status.steps.iter().any(|s| s.replicas == Some(*r))
                });
            if let (Some(n), Some(s)) = (next, status.scaling.as_mut()) {
                // On to the next replica count.
                s.current_replicas = Some(n);
                status.phase = Phase::WaitingForTarget;
                updates.push(cond(
                    ConditionType::Progressing,
                    true,
                    reason::SCALING,
                    format!(
                        "sweep at {} replicas done; scaling to {n}",
                        slot.unwrap_or(1)
                    ),
                ));
                write_status(&ctx, &run, &mut status, updates).await?;
                return Ok(Action::requeue(Duration::from_millis(500)));
            }
            updates.extend(conclude(&ctx, &run, Some(&target), &mut status).await?);
            match step_problems(&status.steps, &merged, run.spec.max_error_rate) {
                Some((why, msg)) => updates.extend(fail(
                    &mut status,
                    cond(ConditionType::Ready, false, why, msg),
                )),
                None => {
                    status.phase = Phase::Succeeded;
                    status.completion_time.get_or_insert_with(now);
                    let peak = status
                        .summary
                        .as_ref()
                        .map(|s| s.peak_output_tokens_per_second)
                        .unwrap_or_default();
                    let msg = format!(
                        "{} steps measured; peak {peak:.0} output tok/s",
                        status.steps.len()
                    );
                    updates.push(cond(ConditionType::Ready, true, reason::SUCCEEDED, msg));
                    updates.push(cond(
                        ConditionType::Progressing,
                        false,
                        reason::SUCCEEDED,
                        "the run finished",
                    ));
                    updates.push(cond(
                        ConditionType::Degraded,
                        false,
                        reason::SUCCEEDED,
                        "no problems",
                    ));
                }
            }
            restore_scaling(&ctx, &run, &mut status).await?;
            write_status(&ctx, &run, &mut status, updates).await?;
            Ok(Action::await_change())
        }
    }
}
