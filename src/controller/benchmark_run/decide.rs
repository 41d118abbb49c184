//! Decide: from a [`World`] to the next status, conditions and actions. Pure: no I/O, the
//! time is `world.now`, so every rule of the lifecycle is a unit test.
//!
//! Rules:
//! - Every wait (target found / Ready / scaled / reachable, load pods started, load objects
//!   accepted) is measured from when *that* wait began, kept in `status.wait`, so neither the
//!   run's age nor an operator restart changes it.
//! - While the load runs, a failed target check (readiness, `/v1/models`, model) counts
//!   against a retry budget (`status.targetMisses`, the `Degraded` condition): the run fails
//!   only after [`MISS_BUDGET`] misses in a row spanning at least [`MISS_WINDOW`].
//! - A failed run stops its load Job and restores a scaling study's replicas.
//! - Load pods that do not start (image pull, scheduling, quota) show their waiting reason
//!   in `Degraded` and fail the run after [`LOAD_START_TIMEOUT`].
//! - A scaling study records the target's replica count in status before it first scales,
//!   and refuses an autoscaled target.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::observe::{ResultsObject, TargetObs, World};
use super::sanitize;
use crate::analysis::{self, Cost, Options, Slo, rows};
use crate::api::{
    BenchmarkRun, BenchmarkRunStatus, ConditionType, ConditionUpdate, InferenceService, Phase,
    Reason, ResultsRef, ScalingStatus, StepStatus, TargetMisses, WaitKind, WaitStatus,
    find_condition,
};
use crate::contract::plan::{Plan, PlanPrometheus};
use crate::contract::results::{Results, StepResult, merge_results};
use crate::contract::spec as plan;
use crate::contract::target::TargetProblem;
use crate::render::benchmark_run::{Names, results_selector};
use crate::render::inference_service as render_isvc;

/// Finalizer that restores a scaling study's target replicas before the run goes away.
pub const FINALIZER: &str = "inferops.dev/restore-replicas";
/// How long a missing InferenceService is waited for.
pub const TARGET_GRACE: Duration = Duration::from_secs(300);
/// How long a target may take to become Ready or reach a study's replica count (model
/// download included).
pub const READY_TIMEOUT: Duration = Duration::from_secs(3600);
/// How long load pods may take to start (image pull, scheduling, node scale-up).
pub const LOAD_START_TIMEOUT: Duration = Duration::from_secs(600);
/// How long the API server may refuse the load Job's objects before the run fails.
pub const APPLY_TIMEOUT: Duration = Duration::from_secs(300);
/// Failed target checks in a row that fail a running run (with [`MISS_WINDOW`]).
pub const MISS_BUDGET: u32 = 6;
/// The least time failed target checks must span to fail a running run.
pub const MISS_WINDOW: Duration = Duration::from_secs(120);
/// Delay before split load pods start together (they wait on this wall-clock barrier).
pub const BARRIER_DELAY: Duration = Duration::from_secs(45);
/// Re-check interval while waiting or running.
pub const POLL: Duration = Duration::from_secs(5);
/// Re-check interval while waiting for the target.
pub const WAIT_POLL: Duration = Duration::from_secs(10);

/// What the shell must do, in order, before writing the decided status.
#[derive(Debug, Clone, PartialEq)]
pub enum Act {
    /// Add (true) or remove (false) [`FINALIZER`].
    SetFinalizer(bool),
    /// Set the target InferenceService's replicas.
    Scale(i32),
    /// Apply the load Job's objects for the sweep at `slot`.
    StartLoad {
        /// Replica count of a scaling study's sweep.
        slot: Option<i32>,
        /// The plan the pods run.
        plan: Box<Plan>,
    },
    /// Suspend the load Job (its pods are stopped; the Job stays for inspection).
    StopJob(String),
    /// Delete the run's load Jobs (TTL after the run finished).
    DeleteJobs,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The status to write (the whole status: absent fields are cleared).
    pub status: BenchmarkRunStatus,
    /// Conditions to set on it.
    pub conditions: Vec<ConditionUpdate>,
    /// Actions, in order.
    pub actions: Vec<Act>,
    /// Reconcile again after this long (`None`: on the next change).
    pub requeue: Option<Duration>,
}

impl Decision {
    /// The run is under way but not done: Ready=False and Progressing=True, one reason and
    /// message for both.
    fn in_progress(&mut self, reason: Reason, msg: String) {
        self.conditions
            .push(cond(ConditionType::Ready, false, reason, msg.clone()));
        self.conditions
            .push(cond(ConditionType::Progressing, true, reason, msg));
    }
}

fn cond(t: ConditionType, status: bool, reason: Reason, msg: impl Into<String>) -> ConditionUpdate {
    ConditionUpdate::new(t, status, reason, msg)
}

fn elapsed(since: &Time, now: Timestamp) -> Duration {
    let secs = now.as_second() - since.0.as_second();
    Duration::from_secs(secs.max(0) as u64)
}

fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// The replica counts of the study (`[None]` without scaling), in order.
pub fn slots(run: &BenchmarkRun) -> Vec<Option<i32>> {
    match &run.spec.scaling {
        Some(s) => s.replicas.iter().map(|r| Some(*r)).collect(),
        None => vec![None],
    }
}

/// The sweep in progress: the replica count being measured, else the first one without rows.
pub fn current_slot(run: &BenchmarkRun) -> Option<i32> {
    run.spec.scaling.as_ref()?;
    let status = run.status.clone().unwrap_or_default();
    status
        .scaling
        .as_ref()
        .and_then(|s| s.current_replicas)
        .or_else(|| {
            slots(run)
                .into_iter()
                .flatten()
                .find(|r| !status.steps.iter().any(|s| s.replicas == Some(*r)))
        })
}

fn base(url: &str) -> String {
    url.trim_end_matches('/')
        .trim_end_matches("/v1")
        .trim_end_matches('/')
        .to_string()
}

fn isvc_url(isvc: &InferenceService) -> String {
    let status = isvc.status.clone().unwrap_or_default();
    base(&status.endpoint.unwrap_or_else(|| {
        render_isvc::endpoint(&isvc.name_any(), &isvc.namespace().unwrap_or_default())
    }))
}

/// Ready at the sweep's replica count, or why not.
fn isvc_ready(
    isvc: &InferenceService,
    slot: Option<i32>,
) -> Result<(), (WaitKind, Reason, String)> {
    let name = isvc.name_any();
    let status = isvc.status.clone().unwrap_or_default();
    let ready = find_condition(&status.conditions, ConditionType::Ready);
    let is_ready = ready.is_some_and(|c| c.status == "True");
    // After a scale, wait until the InferenceService controller has seen the new spec and
    // the pods have converged to it (a stale status would still count the old pods).
    let observed = match (status.observed_generation, isvc.metadata.generation) {
        (Some(seen), Some(generation)) => seen >= generation,
        _ => slot.is_none(),
    };
    let enough = slot.is_none_or(|n| {
        observed && isvc.spec.replicas == n && status.ready_replicas >= n && status.replicas == n
    });
    if is_ready && enough {
        return Ok(());
    }
    let why = ready
        .map(|c| format!("{}: {}", c.reason, sanitize(&c.message)))
        .unwrap_or_else(|| "no status yet".into());
    Err(match slot {
        Some(n) => (
            WaitKind::TargetScaled,
            Reason::Scaling,
            format!(
                "waiting for InferenceService {name} to have {n} ready replicas ({} ready; {why})",
                status.ready_replicas
            ),
        ),
        None => (
            WaitKind::TargetReady,
            Reason::TargetNotReady,
            format!("waiting for InferenceService {name} to be Ready ({why})"),
        ),
    })
}

/// The outcome of checking the target.
enum Check {
    /// Ready (an InferenceService) or given by URL: the load pods check the rest. `model`
    /// is empty when the load pods are to take the only one served.
    Ok { url: String, model: String },
    /// The InferenceService does not exist.
    Missing(String),
    /// Not yet: wait (before the load) or count a miss (during it).
    NotYet(WaitKind, Reason, String),
    /// The spec names no target.
    Wrong(Reason, String),
}

fn check_target(w: &World, slot: Option<i32>) -> Check {
    let t = &w.run.spec.target;
    let ns = w.run.namespace().unwrap_or_default();
    let (url, model) = match (&w.target, &t.url) {
        (TargetObs::Missing, _) => {
            let name = t
                .inference_service_ref
                .as_ref()
                .map(|r| r.name.clone())
                .unwrap_or_default();
            return Check::Missing(format!(
                "spec.target.inferenceServiceRef: InferenceService {ns}/{name} not found"
            ));
        }
        (TargetObs::Service(isvc), _) => {
            if let Err((kind, reason, msg)) = isvc_ready(isvc, slot) {
                return Check::NotYet(kind, reason, msg);
            }
            let model = t
                .model
                .clone()
                .unwrap_or_else(|| isvc.spec.served_model_name().to_string());
            (isvc_url(isvc), Some(model))
        }
        (TargetObs::Url, Some(url)) => (base(url), t.model.clone()),
        (TargetObs::Url, None) => {
            return Check::Wrong(
                Reason::InvalidSpec,
                "spec.target: set exactly one of inferenceServiceRef or url".into(),
            );
        }
    };
    // Whether it answers and serves the model, the load pods check: from the tenant's network
    // identity, not the operator's (a refusal comes back as a marker next to the results).
    Check::Ok {
        url,
        model: model.unwrap_or_default(),
    }
}

/// What the load Job says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// Still running (or not started).
    Active,
    /// Complete.
    Succeeded,
    /// Failed, with the Job controller's message.
    Failed(String),
}

/// The outcome of a load Job from its conditions.
pub fn job_outcome(job: &Job) -> JobOutcome {
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let has = |t: &str| {
        conditions
            .iter()
            .any(|c| c.type_ == t && c.status == "True")
    };
    if has("Failed") {
        let c = conditions.iter().find(|c| c.type_ == "Failed");
        JobOutcome::Failed(sanitize(
            &c.and_then(|c| c.message.clone().or(c.reason.clone()))
                .unwrap_or_else(|| "the Job failed".into()),
        ))
    } else if has("Complete") {
        JobOutcome::Succeeded
    } else {
        JobOutcome::Active
    }
}

/// Container waiting reasons that mean a pod will not start by itself.
const STUCK: [&str; 6] = [
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// Why load pods are not running: the first stuck container or unschedulable pod.
pub fn pod_problem(pods: &[Pod]) -> Option<String> {
    for pod in pods {
        let name = pod.name_any();
        let Some(status) = &pod.status else { continue };
        for cs in status.container_statuses.iter().flatten() {
            if let Some(w) = cs.state.as_ref().and_then(|s| s.waiting.as_ref())
                && let Some(r) = w.reason.as_deref()
                && STUCK.contains(&r)
            {
                let msg = w.message.as_deref().map(sanitize).unwrap_or_default();
                return Some(
                    format!("pod {name}: {r}: {msg}")
                        .trim_end_matches(": ")
                        .to_string(),
                );
            }
        }
        for c in status.conditions.iter().flatten() {
            if c.type_ == "PodScheduled" && c.status == "False" {
                let msg = c.message.as_deref().map(sanitize).unwrap_or_default();
                return Some(format!(
                    "pod {name}: {}: {msg}",
                    c.reason.as_deref().unwrap_or("Unschedulable")
                ));
            }
        }
    }
    None
}

fn pods_started(job: &Job, pods: &[Pod], have_results: bool) -> bool {
    let s = job.status.clone().unwrap_or_default();
    have_results
        || s.ready.unwrap_or(0) > 0
        || s.succeeded.unwrap_or(0) > 0
        || s.failed.unwrap_or(0) > 0
        || pods.iter().any(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|ph| matches!(ph, "Running" | "Succeeded" | "Failed"))
        })
}

/// The results of one sweep across its ConfigMaps.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SweepResults {
    /// Per-pod results merged (only the steps every pod finished); `None` before any wrote.
    pub merged: Option<Results>,
    /// Pods whose results outgrew their ConfigMap (their markers' messages).
    pub over_budget: Vec<String>,
    /// Pods whose check of the target failed before any load: the reason and message.
    pub target_problems: Vec<(Reason, String)>,
}

/// The run's failure reason for a load pod's target problem.
fn target_reason(p: &TargetProblem) -> Reason {
    match p {
        TargetProblem::Unreachable { .. } => Reason::TargetUnreachable,
        TargetProblem::ModelNotFound { .. } | TargetProblem::ModelAmbiguous { .. } => {
            Reason::ModelNotFound
        }
    }
}

/// Read the per-pod keys of the sweep with `prefix` from its results ConfigMaps.
pub fn read_results(objects: &[ResultsObject], prefix: &str) -> Result<SweepResults, String> {
    let mut parts = Vec::new();
    let mut over_budget = Vec::new();
    let mut target_problems = Vec::new();
    for o in objects {
        for (key, text) in &o.data {
            let Some(rest) = key.strip_prefix(prefix) else {
                continue;
            };
            // Keys of other sweeps of a scaling study start with `r<N>-`.
            if !rest.starts_with("pod-") {
                continue;
            }
            if let Some(pod) = key.strip_suffix(crate::render::benchmark_run::TARGET_PROBLEM_SUFFIX)
            {
                let pod = pod.strip_suffix(".json").unwrap_or(pod);
                let pod = pod.strip_prefix(prefix).unwrap_or(pod);
                target_problems.push(match serde_json::from_str::<TargetProblem>(text) {
                    Ok(p) => (target_reason(&p), sanitize(&format!("load {pod}: {p}"))),
                    Err(_) => (
                        Reason::ResultsCorrupt,
                        format!("ConfigMap {} key {key}: not a target problem", o.name),
                    ),
                });
                continue;
            }
            if key.ends_with(crate::render::benchmark_run::OVER_BUDGET_SUFFIX) {
                over_budget.push(format!(
                    "ConfigMap {} key {key}: {}",
                    o.name,
                    sanitize(text)
                ));
                continue;
            }
            let r: Results = serde_json::from_str(text).map_err(|e| {
                format!(
                    "ConfigMap {} key {key}: {}",
                    o.name,
                    sanitize(&e.to_string())
                )
            })?;
            parts.push(r);
        }
    }
    if parts.is_empty() {
        return Ok(SweepResults {
            merged: None,
            over_budget,
            target_problems,
        });
    }
    // Only steps every pod finished are complete.
    let n = parts.iter().map(|r| r.steps.len()).min().unwrap_or(0);
    for p in &mut parts {
        p.steps.truncate(n);
    }
    let merged = merge_results(&parts).map_err(|e| sanitize(&e.to_string()))?;
    Ok(SweepResults {
        merged: Some(merged),
        over_budget,
        target_problems,
    })
}

/// Rows only grow: a fresh row replaces the same load point of this sweep (keeping server
/// metrics already collected), and rows a restarted load pod has not re-measured yet stay.
pub fn merge_rows(steps: &[StepStatus], results: &Results, slot: Option<i32>) -> Vec<StepStatus> {
    let mut merged = steps.to_vec();
    for s in &results.steps {
        let mut row = rows::step_status(s, slot);
        match merged
            .iter_mut()
            .find(|r| r.replicas == slot && r.load == row.load)
        {
            Some(old) => {
                if row.server.is_none() && row.gpu.is_none() {
                    row.server = old.server.take();
                    row.gpu = old.gpu.take();
                }
                *old = row;
            }
            None => merged.push(row),
        }
    }
    merged
}

/// Decide what to do with the run in `w`.
pub fn decide(w: &World) -> Decision {
    let mut d = decide_inner(w);
    let status = &mut d.status;
    status.observed_generation = w.run.metadata.generation;
    status.progress = Some(format!(
        "{}/{}",
        status.current_step,
        status.total_steps.max(status.current_step)
    ));
    d
}

fn isvc_of(w: &World) -> Option<&InferenceService> {
    match &w.target {
        TargetObs::Service(i) => Some(i),
        _ => None,
    }
}

/// Put a scaling study's target back to its original replica count.
fn restore(w: &World, d: &mut Decision) {
    let Some(s) = d.status.scaling.as_mut() else {
        return;
    };
    if s.restored {
        return;
    }
    if let Some(isvc) = isvc_of(w)
        && isvc.spec.replicas != s.original_replicas
    {
        d.actions.push(Act::Scale(s.original_replicas));
    }
    s.restored = true;
    s.current_replicas = None;
}

/// End the run as Failed: measured steps kept, load Job stopped, replicas restored.
fn fail(
    w: &World,
    mut d: Decision,
    reason: Reason,
    message: String,
    extra: Vec<ConditionUpdate>,
) -> Decision {
    d.status.phase = Phase::Failed;
    d.status.completion_time.get_or_insert(Time(w.now));
    d.status.wait = None;
    d.conditions
        .push(cond(ConditionType::Ready, false, reason, message.clone()));
    d.conditions.push(cond(
        ConditionType::Progressing,
        false,
        reason,
        "the run ended",
    ));
    d.conditions
        .push(cond(ConditionType::Degraded, true, reason, message));
    d.conditions.extend(extra);
    if let Some(job) = &w.job.job
        && job_outcome(job) == JobOutcome::Active
        && !job.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false)
    {
        d.actions.push(Act::StopJob(job.name_any()));
    }
    restore(w, &mut d);
    d.requeue = None;
    d
}

fn budget(kind: WaitKind) -> Duration {
    match kind {
        WaitKind::TargetFound | WaitKind::TargetReachable => TARGET_GRACE,
        WaitKind::TargetReady | WaitKind::TargetScaled => READY_TIMEOUT,
        WaitKind::LoadPodsStarted => LOAD_START_TIMEOUT,
        WaitKind::LoadObjectsApplied => APPLY_TIMEOUT,
    }
}

/// The wait of `kind`: kept from status when it is the same wait, else starting now.
fn wait_since(w: &World, kind: WaitKind) -> Time {
    w.run
        .status
        .as_ref()
        .and_then(|s| s.wait.as_ref())
        .filter(|wt| wt.kind == kind)
        .map(|wt| wt.since.clone())
        .unwrap_or(Time(w.now))
}

/// Wait for the target (before the load): fail once this wait outlasts its budget.
fn wait_for_target(
    w: &World,
    mut d: Decision,
    kind: WaitKind,
    reason: Reason,
    message: String,
) -> Decision {
    let since = wait_since(w, kind);
    let limit = budget(kind);
    if elapsed(&since, w.now) > limit {
        let msg = format!(
            "{message}; gave up after waiting {} (since {})",
            human(limit),
            since.0
        );
        return fail(w, d, Reason::TargetTimeout, msg, vec![]);
    }
    d.status.phase = Phase::WaitingForTarget;
    d.status.wait = Some(WaitStatus { kind, since });
    d.conditions
        .push(cond(ConditionType::Ready, false, reason, message.clone()));
    d.conditions
        .push(cond(ConditionType::Progressing, true, reason, message));
    d.requeue = Some(WAIT_POLL);
    d
}

/// A failed target check during the load: spend the retry budget, fail once it is spent
/// (the `bool`: the run failed).
fn miss(w: &World, mut d: Decision, message: String) -> (Decision, bool) {
    let prior = w.run.status.as_ref().and_then(|s| s.target_misses.clone());
    let count = prior.as_ref().map_or(0, |m| m.count).saturating_add(1);
    let since = prior.map(|m| m.since).unwrap_or(Time(w.now));
    let spanned = elapsed(&since, w.now);
    if count >= MISS_BUDGET && spanned >= MISS_WINDOW {
        let msg = format!(
            "the target failed {count} checks in a row over {}: {message}; measured steps are kept",
            human(spanned)
        );
        return (fail(w, d, Reason::TargetUnstable, msg, vec![]), true);
    }
    d.status.target_misses = Some(TargetMisses {
        count,
        since: since.clone(),
    });
    d.conditions.push(cond(
        ConditionType::Degraded,
        true,
        Reason::TargetUnstable,
        format!(
            "{message} ({count} failed check(s) in a row since {}; the run fails after {MISS_BUDGET} in a row over at least {})",
            since.0,
            human(MISS_WINDOW)
        ),
    ));
    (d, false)
}

fn decide_inner(w: &World) -> Decision {
    let run = &w.run;
    let stored = run.status.clone().unwrap_or_default();
    let mut d = Decision {
        status: stored.clone(),
        conditions: Vec::new(),
        actions: Vec::new(),
        requeue: None,
    };
    let has_finalizer = run.finalizers().iter().any(|f| f == FINALIZER);
    let isvc = isvc_of(w);

    if run.metadata.deletion_timestamp.is_some() {
        if has_finalizer {
            restore(w, &mut d);
            d.actions.push(Act::SetFinalizer(false));
        }
        return d;
    }
    if stored.phase.is_terminal() {
        restore(w, &mut d);
        if has_finalizer {
            d.actions.push(Act::SetFinalizer(false));
        }
        if let (Some(ttl), Some(done)) =
            (run.spec.ttl_seconds_after_finished, &stored.completion_time)
        {
            let ttl = Duration::from_secs(ttl.max(0) as u64);
            let age = elapsed(done, w.now);
            if age >= ttl {
                d.actions.push(Act::DeleteJobs);
            } else {
                d.requeue = Some(ttl - age);
            }
        }
        return d;
    }
    let name = run.name_any();
    if run.spec.scaling.is_some()
        && run.spec.target.inference_service_ref.is_some()
        && !has_finalizer
    {
        d.actions.push(Act::SetFinalizer(true));
    }
    if d.status.total_steps == 0 {
        d.status.total_steps = (run.spec.load.points().len() * slots(run).len()) as u32;
    }
    d.status.target.get_or_insert_with(|| {
        match (&run.spec.target.inference_service_ref, &run.spec.target.url) {
            (Some(r), _) => format!("infsvc/{}", r.name),
            (None, Some(u)) => sanitize(u),
            (None, None) => String::new(),
        }
    });
    let slot = current_slot(run);
    let names = Names::new(&name, slot);
    let pods = run.spec.loadgen.parallelism.max(1) as u32;
    let mut cms: Vec<String> = d
        .status
        .results_ref
        .as_ref()
        .map(|r| r.config_map_names.clone())
        .unwrap_or_default();
    for n in names.all_results(pods) {
        if !cms.contains(&n) {
            cms.push(n);
        }
    }
    d.status.results_ref = Some(ResultsRef {
        selector: results_selector(&name),
        config_map_names: cms,
    });

    // A scaling study sets spec.replicas, which an autoscaler owns.
    if run.spec.scaling.is_some()
        && let Some(isvc) = isvc
        && isvc.spec.autoscaling.is_some()
        && stored.phase != Phase::Running
        && stored.phase != Phase::Collecting
    {
        let msg = format!(
            "spec.scaling: InferenceService {} is autoscaled (spec.autoscaling), so its replica \
             count belongs to the autoscaler; benchmark it without spec.scaling, or remove \
             spec.autoscaling from it for the study",
            isvc.name_any()
        );
        return fail(w, d, Reason::TargetAutoscaled, msg, vec![]);
    }
    // Record the replica count to restore, in status, before the first scale.
    if run.spec.scaling.is_some()
        && let Some(isvc) = isvc
        && stored.scaling.is_none()
    {
        d.status.scaling = Some(ScalingStatus {
            original_replicas: isvc.spec.replicas,
            current_replicas: None,
            restored: false,
        });
        d.status.phase = Phase::WaitingForTarget;
        d.conditions.push(cond(
            ConditionType::Progressing,
            true,
            Reason::Scaling,
            format!(
                "recorded the {} replicas of InferenceService {} to restore after the study",
                isvc.spec.replicas,
                isvc.name_any()
            ),
        ));
        d.requeue = Some(Duration::from_millis(200));
        return d;
    }
    let running = matches!(stored.phase, Phase::Running | Phase::Collecting);
    if let (Some(n), Some(isvc), Some(s)) = (slot, isvc, d.status.scaling.as_mut())
        && !running
    {
        s.current_replicas = Some(n);
        if isvc.spec.replicas != n {
            d.actions.push(Act::Scale(n));
        }
    }

    // The target: wait for it before the load, count misses during it.
    let mut resolved = None;
    if stored.phase != Phase::Collecting {
        match check_target(w, slot) {
            Check::Ok { url, model } => {
                if stored.target_misses.is_some() {
                    d.status.target_misses = None;
                    d.conditions.push(cond(
                        ConditionType::Degraded,
                        false,
                        Reason::TargetStable,
                        "the target answers again",
                    ));
                }
                resolved = Some((url, model));
            }
            Check::Missing(msg) if running => {
                let msg = format!("{msg} during the run; measured steps are kept");
                return fail(w, d, Reason::TargetDeleted, msg, vec![]);
            }
            Check::Missing(msg) => {
                return wait_for_target(w, d, WaitKind::TargetFound, Reason::TargetNotFound, msg);
            }
            Check::NotYet(_, _, msg) | Check::Wrong(_, msg) if running => {
                let (next, failed) = miss(w, d, msg);
                if failed {
                    return next;
                }
                d = next;
            }
            Check::NotYet(kind, reason, msg) => {
                return wait_for_target(w, d, kind, reason, msg);
            }
            Check::Wrong(reason, msg) => return fail(w, d, reason, msg, vec![]),
        }
    }
    if d.status.metadata.is_empty()
        && let Some((url, model)) = &resolved
    {
        d.status.metadata = metadata(url, model, isvc, run);
        d.status.metadata.extend(w.node_metadata.clone());
    }

    // Rows measured so far for this sweep.
    let sweep = match read_results(&w.results, &names.key_prefix) {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("{e}; steps already in status are kept");
            return fail(w, d, Reason::ResultsCorrupt, msg, vec![]);
        }
    };
    if let Some((reason, _)) = sweep.target_problems.first() {
        let mut msgs: Vec<&str> = sweep
            .target_problems
            .iter()
            .map(|(_, m)| m.as_str())
            .collect();
        msgs.dedup();
        let msg = format!("{}; no load was sent", msgs.join("; "));
        return fail(w, d, *reason, msg, vec![]);
    }
    if !sweep.over_budget.is_empty() {
        let msg = format!(
            "{}; measured steps are kept. Run fewer load points per BenchmarkRun",
            sweep.over_budget.join("; ")
        );
        return fail(w, d, Reason::ResultsOverBudget, msg, vec![]);
    }
    if let Some(r) = &sweep.merged {
        // A URL target without spec.target.model: the model the load pods found.
        if d.status.metadata.get("model").is_none_or(|m| m.is_empty())
            && !r.metadata.model.is_empty()
        {
            d.status
                .metadata
                .insert("model".into(), r.metadata.model.clone());
        }
        d.status.steps = merge_rows(&d.status.steps, r, slot);
        d.status.current_step = d.status.steps.len() as u32;
        d.status.total_steps = d.status.total_steps.max(d.status.current_step);
    }

    let Some(job) = &w.job.job else {
        if stored.phase == Phase::Running {
            let msg = format!(
                "Job {} disappeared before it finished; measured steps are kept",
                names.job
            );
            return fail(w, d, Reason::LoadJobMissing, msg, vec![]);
        }
        if stored.phase == Phase::Collecting {
            // Collected a finished sweep whose Job was deleted since: nothing to wait for.
            let msg = format!("Job {} is gone; measured steps are kept", names.job);
            return fail(w, d, Reason::LoadJobMissing, msg, vec![]);
        }
        let Some((url, model)) = resolved else {
            return d;
        };
        return start_load(w, d, &names, slot, &url, &model, pods);
    };

    match job_outcome(job) {
        JobOutcome::Active => {
            d.status.phase = Phase::Running;
            d.requeue = Some(POLL);
            if pods_started(job, &w.job.pods, sweep.merged.is_some()) {
                if d.status
                    .wait
                    .as_ref()
                    .is_some_and(|wt| wt.kind == WaitKind::LoadPodsStarted)
                {
                    d.status.wait = None;
                }
                let msg = match slot {
                    Some(n) => format!("load Job {} running at {n} replicas", names.job),
                    None => format!("load Job {} running", names.job),
                };
                d.in_progress(Reason::LoadRunning, msg);
                if find_condition(&stored.conditions, ConditionType::Degraded)
                    .is_some_and(|c| Reason::LoadPodsNotStarting == c.reason.as_str())
                {
                    d.conditions.push(cond(
                        ConditionType::Degraded,
                        false,
                        Reason::LoadRunning,
                        "the load pods started",
                    ));
                }
                return d;
            }
            let since = wait_since(w, WaitKind::LoadPodsStarted);
            let problem = pod_problem(&w.job.pods);
            let detail = problem.clone().unwrap_or_else(|| {
                if w.job.pods.is_empty() {
                    format!(
                        "no load pod exists yet (a ResourceQuota, LimitRange or admission \
                         policy may refuse them: kubectl describe job {})",
                        names.job
                    )
                } else {
                    "pods are being scheduled and started".to_string()
                }
            });
            if elapsed(&since, w.now) > LOAD_START_TIMEOUT {
                let msg = format!(
                    "no load pod of Job {} started within {}: {detail}",
                    names.job,
                    human(LOAD_START_TIMEOUT)
                );
                return fail(w, d, Reason::LoadPodsNotStarting, msg, vec![]);
            }
            d.status.wait = Some(WaitStatus {
                kind: WaitKind::LoadPodsStarted,
                since: since.clone(),
            });
            let msg = format!(
                "waiting for the load pods of Job {} to start: {detail}",
                names.job
            );
            d.in_progress(Reason::LoadStarting, msg);
            if let Some(p) = problem {
                d.conditions.push(cond(
                    ConditionType::Degraded,
                    true,
                    Reason::LoadPodsNotStarting,
                    format!(
                        "{p} (the run fails if no load pod starts within {} of {})",
                        human(LOAD_START_TIMEOUT),
                        since.0
                    ),
                ));
            }
            d
        }
        JobOutcome::Failed(msg) => {
            let msg = format!(
                "Job {} failed: {msg}; {} measured steps are kept",
                names.job,
                d.status.steps.len()
            );
            fail(w, d, Reason::LoadJobFailed, msg, vec![])
        }
        JobOutcome::Succeeded if stored.phase != Phase::Collecting => {
            d.status.phase = Phase::Collecting;
            d.status.wait = None;
            d.conditions.push(cond(
                ConditionType::Progressing,
                true,
                Reason::Collecting,
                format!("load Job {} finished; collecting its results", names.job),
            ));
            d.requeue = Some(Duration::from_millis(500));
            d
        }
        JobOutcome::Succeeded => {
            let server_error = sweep
                .merged
                .as_ref()
                .and_then(|r| r.metadata.server_metrics_error.clone());
            let mut updates: Vec<ConditionUpdate> =
                metrics_condition(w, &d.status, server_error.as_deref())
                    .into_iter()
                    .collect();
            let merged: Vec<StepResult> = sweep.merged.map(|r| r.steps).unwrap_or_default();
            if merged.is_empty() {
                let msg = format!(
                    "Job {} completed but wrote no results to ConfigMaps {}-*",
                    names.job, names.results_base
                );
                return fail(w, d, Reason::ResultsCorrupt, msg, updates);
            }
            let next = slots(run).into_iter().flatten().find(|r| {
                Some(*r) != slot && !d.status.steps.iter().any(|s| s.replicas == Some(*r))
            });
            if let (Some(n), Some(s)) = (next, d.status.scaling.as_mut()) {
                s.current_replicas = Some(n);
                d.status.phase = Phase::WaitingForTarget;
                updates.push(cond(
                    ConditionType::Progressing,
                    true,
                    Reason::Scaling,
                    format!(
                        "sweep at {} replicas done; scaling to {n}",
                        slot.unwrap_or(1)
                    ),
                ));
                d.conditions.extend(updates);
                d.requeue = Some(Duration::from_millis(500));
                return d;
            }
            updates.extend(conclude(w, &mut d.status));
            match step_problems(&d.status.steps, &merged, run.spec.max_error_rate) {
                Some((why, msg)) => fail(w, d, why, msg, updates),
                None => {
                    d.status.phase = Phase::Succeeded;
                    d.status.completion_time.get_or_insert(Time(w.now));
                    d.status.wait = None;
                    let peak = d
                        .status
                        .summary
                        .as_ref()
                        .map(|s| s.peak_output_tokens_per_second)
                        .unwrap_or_default();
                    let msg = format!(
                        "{} steps measured; peak {peak:.0} output tok/s",
                        d.status.steps.len()
                    );
                    d.conditions.extend(updates);
                    d.conditions
                        .push(cond(ConditionType::Ready, true, Reason::Succeeded, msg));
                    d.conditions.push(cond(
                        ConditionType::Progressing,
                        false,
                        Reason::Succeeded,
                        "the run finished",
                    ));
                    d.conditions.push(cond(
                        ConditionType::Degraded,
                        false,
                        Reason::Succeeded,
                        "no problems",
                    ));
                    restore(w, &mut d);
                    d
                }
            }
        }
    }
}

/// Create the load Job of the sweep at `slot`.
fn start_load(
    w: &World,
    mut d: Decision,
    names: &Names,
    slot: Option<i32>,
    url: &str,
    model: &str,
    pods: u32,
) -> Decision {
    let start_at = (pods > 1).then(|| {
        chrono::DateTime::from_timestamp(w.now.as_second(), 0).unwrap_or_default()
            + chrono::Duration::from_std(BARRIER_DELAY).unwrap_or_default()
    });
    let mut p = match plan::plan(&w.run.spec, url, model, pods, start_at) {
        Ok(p) => p,
        Err(e) => return fail(w, d, Reason::InvalidSpec, e.to_string(), vec![]),
    };
    p.prometheus = plan_prometheus(&w.run);
    d.actions.push(Act::StartLoad {
        slot,
        plan: Box::new(p),
    });
    d.status.phase = Phase::Running;
    d.status.start_time.get_or_insert(Time(w.now));
    d.status.wait = Some(WaitStatus {
        kind: WaitKind::LoadPodsStarted,
        since: Time(w.now),
    });
    let shown = sanitize(url);
    let msg = match slot {
        Some(n) => format!(
            "load Job {} created against {shown} at {n} replicas",
            names.job
        ),
        None => format!(
            "load Job {} created against {shown} (model {})",
            names.job,
            sanitize(model)
        ),
    };
    d.in_progress(Reason::LoadStarting, msg);
    d.requeue = Some(POLL);
    d
}

/// The API server refused an object of the load Job (`what`, with its sanitized message):
/// keep waiting for a fix within [`APPLY_TIMEOUT`], then fail.
pub fn refused(w: &World, decided: Decision, what: &str, message: &str) -> Decision {
    let stored = w.run.status.clone().unwrap_or_default();
    let mut d = decided;
    d.actions.retain(|a| !matches!(a, Act::StartLoad { .. }));
    d.conditions.clear();
    d.status.phase = stored.phase;
    d.status.start_time = stored.start_time.clone();
    let msg = format!("the API server refused {what}: {}", sanitize(message));
    let since = wait_since(w, WaitKind::LoadObjectsApplied);
    if elapsed(&since, w.now) > APPLY_TIMEOUT {
        let msg = format!("{msg}; gave up after {}", human(APPLY_TIMEOUT));
        return fail(w, d, Reason::LoadJobRefused, msg, vec![]);
    }
    d.status.wait = Some(WaitStatus {
        kind: WaitKind::LoadObjectsApplied,
        since: since.clone(),
    });
    d.conditions.push(cond(
        ConditionType::Ready,
        false,
        Reason::LoadJobRefused,
        msg.clone(),
    ));
    d.conditions.push(cond(
        ConditionType::Progressing,
        true,
        Reason::LoadJobRefused,
        msg.clone(),
    ));
    d.conditions.push(cond(
        ConditionType::Degraded,
        true,
        Reason::LoadJobRefused,
        format!(
            "{msg} (retrying; the run fails if this lasts {} from {})",
            human(APPLY_TIMEOUT),
            since.0
        ),
    ));
    d.requeue = Some(Duration::from_secs(30));
    d
}

/// Attach what Prometheus answered to the rows; the condition saying how it went.
fn metrics_condition(
    w: &World,
    status: &BenchmarkRunStatus,
    error: Option<&str>,
) -> Option<ConditionUpdate> {
    w.run.spec.prometheus.as_ref()?;
    if let Some(e) = error {
        return Some(cond(
            ConditionType::MetricsUnavailable,
            true,
            Reason::PrometheusUnavailable,
            format!("{}; client results are kept", sanitize(e)),
        ));
    }
    let missing = status
        .steps
        .iter()
        .filter(|r| r.server.is_none() && r.gpu.is_none())
        .count();
    Some(if missing == 0 {
        cond(
            ConditionType::MetricsUnavailable,
            false,
            Reason::MetricsCollected,
            "GPU and vLLM metrics collected for every step window",
        )
    } else {
        cond(
            ConditionType::MetricsUnavailable,
            true,
            Reason::PrometheusUnavailable,
            format!(
                "Prometheus returned no vLLM or GPU series for {missing} of {} step windows \
                 (is the target scraped? see docs/observability.md); client results are kept",
                status.steps.len()
            ),
        )
    })
}

/// The Prometheus scope the load pods ask for server figures: the target's namespace and
/// pods for an InferenceService, anything for a URL.
fn plan_prometheus(run: &BenchmarkRun) -> Option<PlanPrometheus> {
    let spec = run.spec.prometheus.as_ref()?;
    let isvc = run.spec.target.inference_service_ref.as_ref();
    Some(PlanPrometheus {
        url: spec.url.clone(),
        namespace: isvc.map(|_| run.namespace().unwrap_or_default()),
        pod_regex: isvc.map(|r| render_isvc::pod_regex(&r.name)),
        gpu_labels: spec.gpu_labels,
        settle: crate::contract::plan::DEFAULT_PROMETHEUS_SETTLE,
    })
}

/// Reproducibility metadata from the target.
fn metadata(
    url: &str,
    model: &str,
    isvc: Option<&InferenceService>,
    run: &BenchmarkRun,
) -> BTreeMap<String, String> {
    let mut m = BTreeMap::from([
        (
            "operatorVersion".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
        ("url".to_string(), sanitize(url)),
        ("model".to_string(), model.to_string()),
        (
            "loadgenParallelism".to_string(),
            run.spec.loadgen.parallelism.to_string(),
        ),
    ]);
    if let Some(isvc) = isvc {
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

/// The first row that failed the run: no successful request, or an error rate over the
/// budget. Messages come from the merged results of the sweep when they have the step.
fn step_problems(
    rows: &[StepStatus],
    results: &[StepResult],
    max_error_rate: f64,
) -> Option<(Reason, String)> {
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
            Reason::NoSuccessfulRequests,
            format!(
                "step {} had no successful request: {}",
                at(row),
                sanitize(&detail(row))
            ),
        ));
    }
    rows.iter()
        .find(|r| analysis::error_rate(r) > max_error_rate)
        .map(|row| {
            (
                Reason::ErrorBudgetExceeded,
                format!(
                    "step {} failed {:.1}% of requests (spec.maxErrorRate {:.1}%): {}",
                    at(row),
                    analysis::error_rate(row) * 100.0,
                    max_error_rate * 100.0,
                    sanitize(&detail(row))
                ),
            )
        })
}

/// Summary, cost, recommendation and baseline comparison over all rows.
fn conclude(w: &World, status: &mut BenchmarkRunStatus) -> Vec<ConditionUpdate> {
    let run = &w.run;
    let gpus = run
        .spec
        .cost
        .as_ref()
        .and_then(|c| c.gpus_per_replica)
        .or_else(|| isvc_of(w).and_then(|i| i.spec.accelerator.as_ref().map(|a| a.count)))
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
        match (w.baseline.clone().flatten(), &status.summary) {
            (Some(base), Some(this)) => {
                let c = analysis::compare(this, &base, b);
                updates.push(cond(
                    ConditionType::Regressed,
                    c.regressed,
                    if c.regressed {
                        Reason::Regressed
                    } else {
                        Reason::NoRegression
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
                Reason::BaselineUnavailable,
                format!(
                    "spec.baseline: BenchmarkRun {} not found or not Succeeded; no comparison",
                    b.name
                ),
            )),
        }
    }
    updates
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::BenchmarkRunStatus;
    use crate::controller::benchmark_run::observe::JobObs;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    fn at(secs_ago: i64) -> Time {
        Time(Timestamp::from_second(NOW - secs_ago).unwrap())
    }

    fn run(spec: serde_json::Value, status: serde_json::Value) -> BenchmarkRun {
        let mut r: BenchmarkRun = serde_json::from_value(json!({
            "apiVersion": "inferops.dev/v1alpha1", "kind": "BenchmarkRun",
            "metadata": {"name": "r", "namespace": "ml", "uid": "u1", "generation": 1,
                         // Two hours old: no wait may be measured from here.
                         "creationTimestamp": "2027-01-15T06:00:00Z"},
            "spec": spec,
        }))
        .unwrap();
        r.metadata.creation_timestamp = Some(at(7200));
        r.status = Some(serde_json::from_value(status).unwrap());
        r
    }

    fn url_spec() -> serde_json::Value {
        json!({"target": {"url": "http://vllm:8000", "model": "qwen"},
               "load": {"mode": "concurrency", "concurrency": [1, 2]}})
    }

    fn isvc_spec() -> serde_json::Value {
        json!({"target": {"inferenceServiceRef": {"name": "qwen"}},
               "load": {"mode": "concurrency", "concurrency": [1, 2]}})
    }

    fn study_spec() -> serde_json::Value {
        json!({"target": {"inferenceServiceRef": {"name": "qwen"}},
               "load": {"mode": "concurrency", "concurrency": [1]},
               "scaling": {"replicas": [1, 2]}})
    }

    fn isvc(replicas: i32, ready: bool, ready_replicas: i32) -> InferenceService {
        serde_json::from_value(json!({
            "apiVersion": "inferops.dev/v1alpha1", "kind": "InferenceService",
            "metadata": {"name": "qwen", "namespace": "ml", "generation": 2},
            "spec": {"model": {"name": "Qwen/Qwen2.5-0.5B-Instruct", "servedName": "qwen"},
                     "engine": {"kind": "sim"}, "replicas": replicas},
            "status": {"replicas": ready_replicas, "readyReplicas": ready_replicas,
                       "observedGeneration": 2,
                       "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"},
                                       "reason": if ready {"Available"} else {"ModelDownloading"},
                                       "message": "m", "lastTransitionTime": "2027-01-15T06:00:00Z"}]}
        }))
        .unwrap()
    }

    fn job(name: &str, condition: Option<&str>, ready: i32) -> Job {
        let conditions = condition.map(|c| {
            json!([{"type": c, "status": "True", "reason": c, "message": format!("{c} message")}])
        });
        serde_json::from_value(json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": "ml"},
            "spec": {"template": {"spec": {"containers": []}}},
            "status": {"ready": ready, "conditions": conditions.unwrap_or(json!([]))}
        }))
        .unwrap()
    }

    fn pod(waiting: Option<&str>, unschedulable: bool) -> Pod {
        let mut status = json!({"phase": "Pending"});
        if let Some(r) = waiting {
            status["containerStatuses"] = json!([{"name": "loadgen", "image": "x", "imageID": "",
                "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": r, "message": format!("Back-off pulling image \"ghcr.io/x\"\n{r}")}}}]);
        }
        if unschedulable {
            status["conditions"] = json!([{"type": "PodScheduled", "status": "False",
                "reason": "Unschedulable", "message": "0/3 nodes are available: 3 Insufficient cpu."}]);
        }
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "r-load-0-x2k4q", "namespace": "ml"},
            "status": status,
        }))
        .unwrap()
    }

    fn world(run: BenchmarkRun) -> World {
        World {
            now: Timestamp::from_second(NOW).unwrap(),
            run,
            target: TargetObs::Url,
            job: JobObs::default(),
            results: Vec::new(),
            baseline: None,
            node_metadata: BTreeMap::new(),
        }
    }

    fn running(spec: serde_json::Value, extra: serde_json::Value) -> World {
        let mut status = json!({"phase": "Running", "startTime": "2027-01-15T06:00:00Z",
                                "totalSteps": 2});
        if let (Some(s), Some(e)) = (status.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        let mut w = world(run(spec, status));
        w.job.job = Some(job("r-load", None, 1));
        w
    }

    fn find(d: &Decision, t: ConditionType) -> &ConditionUpdate {
        d.conditions
            .iter()
            .rev()
            .find(|c| c.type_ == t)
            .unwrap_or_else(|| panic!("no {t:?} in {:#?}", d.conditions))
    }

    fn stops_job(d: &Decision) -> bool {
        d.actions.contains(&Act::StopJob("r-load".into()))
    }

    /// The stored status after `d` is written (conditions applied), for the next decision.
    fn stored(d: &Decision) -> BenchmarkRunStatus {
        let mut s = d.status.clone();
        for c in d.conditions.clone() {
            crate::api::set_condition(&mut s.conditions, c, Some(1), at(0));
        }
        s
    }

    /// A running run whose InferenceService is not Ready right now.
    fn running_unready(extra: serde_json::Value) -> World {
        let mut w = running(isvc_spec(), extra);
        w.target = TargetObs::Service(Box::new(isvc(1, false, 0)));
        w
    }

    #[test]
    fn one_readiness_miss_of_an_old_running_run_is_a_miss_not_a_failure() {
        let d = decide(&running_unready(json!({})));
        assert_eq!(d.status.phase, Phase::Running, "{:#?}", d.conditions);
        assert_eq!(d.status.target_misses.as_ref().unwrap().count, 1);
        let c = find(&d, ConditionType::Degraded);
        assert_eq!((c.status, c.reason), (true, Reason::TargetUnstable));
        assert!(c.message.contains("1 failed check(s)"), "{}", c.message);
        assert!(!stops_job(&d));
    }

    #[test]
    fn misses_fail_a_running_run_only_when_they_persist() {
        let w =
            running_unready(json!({"targetMisses": {"count": MISS_BUDGET - 1, "since": at(30)}}));
        // Budget reached in count, but within the window: still running.
        let d = decide(&w);
        assert_eq!(d.status.phase, Phase::Running);
        assert_eq!(d.status.target_misses.as_ref().unwrap().count, MISS_BUDGET);
        // Spanning the window too: fail, stop the Job.
        let w = running_unready(
            json!({"targetMisses": {"count": MISS_BUDGET - 1, "since": at(MISS_WINDOW.as_secs() as i64 + 1)}}),
        );
        let d = decide(&w);
        assert_eq!(d.status.phase, Phase::Failed);
        let c = find(&d, ConditionType::Ready);
        assert_eq!(c.reason, Reason::TargetUnstable);
        assert!(c.message.contains("to be Ready"), "{}", c.message);
        assert!(stops_job(&d), "{:?}", d.actions);
    }

    #[test]
    fn a_target_that_answers_again_clears_the_misses() {
        let w = running(
            url_spec(),
            json!({"targetMisses": {"count": 3, "since": at(20)}}),
        );
        let d = decide(&w);
        assert_eq!(d.status.target_misses, None);
        let c = find(&d, ConditionType::Degraded);
        assert_eq!((c.status, c.reason), (false, Reason::TargetStable));
    }

    #[test]
    fn waits_are_measured_from_when_they_began_not_from_creation() {
        // A two-hour-old run starts waiting for readiness now.
        let mut w = world(run(isvc_spec(), json!({})));
        w.target = TargetObs::Service(Box::new(isvc(1, false, 0)));
        let d = decide(&w);
        assert_eq!(d.status.phase, Phase::WaitingForTarget);
        let wait = d.status.wait.clone().unwrap();
        assert_eq!((wait.kind, wait.since), (WaitKind::TargetReady, at(0)));
        assert_eq!(
            find(&d, ConditionType::Ready).reason,
            Reason::TargetNotReady
        );
        // The same wait resumes from status (a restart keeps it) ...
        let mut w2 = w.clone();
        w2.run.status.as_mut().unwrap().wait = Some(WaitStatus {
            kind: WaitKind::TargetReady,
            since: at(3500),
        });
        let d = decide(&w2);
        assert_eq!(d.status.phase, Phase::WaitingForTarget);
        assert_eq!(d.status.wait.unwrap().since, at(3500));
        // ... and fails once it outlasts its budget.
        w2.run.status.as_mut().unwrap().wait = Some(WaitStatus {
            kind: WaitKind::TargetReady,
            since: at(READY_TIMEOUT.as_secs() as i64 + 1),
        });
        let d = decide(&w2);
        assert_eq!(d.status.phase, Phase::Failed);
        let c = find(&d, ConditionType::Ready);
        assert_eq!(c.reason, Reason::TargetTimeout);
        assert!(
            c.message.contains("gave up after waiting 1h"),
            "{}",
            c.message
        );
        // A different wait starts afresh: 10 minutes waiting for the object, then Ready.
        let mut w3 = w.clone();
        w3.run.status.as_mut().unwrap().wait = Some(WaitStatus {
            kind: WaitKind::TargetFound,
            since: at(600),
        });
        let d = decide(&w3);
        assert_eq!(d.status.phase, Phase::WaitingForTarget);
        assert_eq!(d.status.wait.unwrap().since, at(0));
    }

    #[test]
    fn the_load_pods_ask_prometheus_for_the_targets_own_pods() {
        let mut spec = isvc_spec();
        spec["prometheus"] = json!({"url": "http://prom:9090", "gpuLabels": "gke-managed"});
        let p = plan_prometheus(&run(spec, json!({}))).unwrap();
        assert_eq!(p.url, "http://prom:9090");
        assert_eq!(p.namespace.as_deref(), Some("ml"));
        assert_eq!(p.pod_regex, Some(render_isvc::pod_regex("qwen")));
        assert_eq!(p.gpu_labels, crate::api::GpuLabels::GkeManaged);
        assert!(p.settle >= Duration::from_secs(15), "{:?}", p.settle);
        // A URL target: no pod scope; no spec.prometheus: nothing asked.
        let mut spec = url_spec();
        spec["prometheus"] = json!({"url": "http://prom:9090"});
        let p = plan_prometheus(&run(spec, json!({}))).unwrap();
        assert_eq!((p.namespace, p.pod_regex), (None, None));
        assert_eq!(plan_prometheus(&run(url_spec(), json!({}))), None);
    }

    #[test]
    fn a_url_target_is_left_to_the_load_pods_to_check() {
        // The operator never calls the URL: the load Job starts at once.
        let d = decide(&world(run(url_spec(), json!({}))));
        assert!(
            d.actions.iter().any(|a| matches!(a, Act::StartLoad { .. })),
            "{:?}",
            d.actions
        );
        let wait = d.status.wait.map(|w| w.kind);
        assert_eq!(
            wait,
            Some(WaitKind::LoadPodsStarted),
            "no wait for the target"
        );
    }

    fn with_marker(mut w: World, problem: &TargetProblem) -> World {
        w.results = vec![ResultsObject {
            name: "r-results-0".into(),
            data: BTreeMap::from([(
                format!(
                    "pod-0.json{}",
                    crate::render::benchmark_run::TARGET_PROBLEM_SUFFIX
                ),
                serde_json::to_string(problem).unwrap(),
            )]),
        }];
        w
    }

    #[test]
    fn a_load_pods_target_problem_fails_the_run_with_its_reason() {
        let p = TargetProblem::ModelNotFound {
            model: "qwen2".into(),
            served: vec!["qwen".into()],
        };
        let d = decide(&with_marker(running(url_spec(), json!({})), &p));
        assert_eq!(d.status.phase, Phase::Failed);
        let c = find(&d, ConditionType::Ready);
        assert_eq!(c.reason, Reason::ModelNotFound);
        assert!(
            c.message.contains("load pod-0") && c.message.contains("\"qwen2\""),
            "{}",
            c.message
        );
        assert!(stops_job(&d), "{:?}", d.actions);
        let p = TargetProblem::Unreachable {
            error: "GET http://u:secret@vllm:8000/v1/models: connection refused".into(),
            waited: Duration::from_secs(300),
        };
        let d = decide(&with_marker(running(url_spec(), json!({})), &p));
        let c = find(&d, ConditionType::Ready);
        assert_eq!(c.reason, Reason::TargetUnreachable);
        assert!(
            c.message.contains("connection refused") && !c.message.contains("secret"),
            "{}",
            c.message
        );
    }

    #[test]
    fn an_old_scaling_study_scales_up_without_failing() {
        // Sweep at 1 done an hour and a half ago; the next sweep at 2 begins now.
        let mut w = world(run(
            study_spec(),
            json!({"phase": "WaitingForTarget",
                   "scaling": {"originalReplicas": 3, "currentReplicas": 2},
                   "steps": [{"load": {"concurrency": 1}, "replicas": 1, "requests": 8,
                              "succeeded": 8, "failed": 0, "requestsPerSecond": 1.0,
                              "outputTokensPerSecond": 10.0}]}),
        ));
        w.run.metadata.finalizers = Some(vec![FINALIZER.into()]);
        w.target = TargetObs::Service(Box::new(isvc(1, true, 1)));
        let d = decide(&w);
        assert_eq!(d.actions, vec![Act::Scale(2)]);
        assert_eq!(d.status.phase, Phase::WaitingForTarget);
        let wait = d.status.wait.clone().unwrap();
        assert_eq!((wait.kind, wait.since), (WaitKind::TargetScaled, at(0)));
        assert_eq!(find(&d, ConditionType::Ready).reason, Reason::Scaling);
    }

    #[test]
    fn a_scaling_study_records_the_original_count_before_it_scales() {
        let mut w = world(run(study_spec(), json!({})));
        w.target = TargetObs::Service(Box::new(isvc(3, true, 3)));
        let d = decide(&w);
        let s = d.status.scaling.clone().unwrap();
        assert_eq!((s.original_replicas, s.current_replicas), (3, None));
        assert!(
            !d.actions.iter().any(|a| matches!(a, Act::Scale(_))),
            "no scale before the record is stored: {:?}",
            d.actions
        );
        assert!(d.actions.contains(&Act::SetFinalizer(true)));
        // Once stored, the next decision scales to the first count.
        w.run.status = Some(stored(&d));
        w.run.metadata.finalizers = Some(vec![FINALIZER.into()]);
        let d = decide(&w);
        assert_eq!(d.actions, vec![Act::Scale(1)]);
        assert_eq!(d.status.scaling.unwrap().original_replicas, 3);
    }

    #[test]
    fn a_scaling_study_refuses_an_autoscaled_target() {
        let mut w = world(run(study_spec(), json!({})));
        let mut target = isvc(3, true, 3);
        target.spec.autoscaling =
            Some(serde_json::from_value(json!({"minReplicas": 1, "maxReplicas": 4})).unwrap());
        w.target = TargetObs::Service(Box::new(target));
        let d = decide(&w);
        assert_eq!(d.status.phase, Phase::Failed);
        let c = find(&d, ConditionType::Ready);
        assert_eq!(c.reason, Reason::TargetAutoscaled);
        assert!(c.message.contains("spec.autoscaling"), "{}", c.message);
        assert!(!d.actions.iter().any(|a| matches!(a, Act::Scale(_))));
    }

    #[test]
    fn a_failed_run_stops_its_load_job_and_restores_replicas() {
        let mut w = running(url_spec(), json!({}));
        w.results = vec![ResultsObject {
            name: "r-results-0".into(),
            data: BTreeMap::from([("pod-0.json".to_string(), "{not json".to_string())]),
        }];
        let d = decide(&w);
        assert_eq!(d.status.phase, Phase::Failed);
        assert_eq!(
            find(&d, ConditionType::Ready).reason,
            Reason::ResultsCorrupt
        );
        assert!(stops_job(&d), "{:?}", d.actions);
        // A Job that failed by itself has nothing left to stop.
        let mut w = running(url_spec(), json!({}));
        w.job.job = Some(job("r-load", Some("Failed"), 0));
        let d = decide(&w);
        assert_eq!(find(&d, ConditionType::Ready).reason, Reason::LoadJobFailed);
        assert!(!stops_job(&d));
        // A scaling study that fails mid-sweep restores the original count.
        let mut w = running(
            study_spec(),
            json!({"scaling": {"originalReplicas": 3, "currentReplicas": 1}}),
        );
        w.run.metadata.finalizers = Some(vec![FINALIZER.into()]);
        w.target = TargetObs::Service(Box::new(isvc(1, true, 1)));
        w.job.job = Some(job("r-load-r1", None, 1));
        w.results = vec![ResultsObject {
            name: "r-results-r1-0".into(),
            data: BTreeMap::from([("r1-pod-0.json".to_string(), "{".to_string())]),
        }];
        let d = decide(&w);
        assert_eq!(d.status.phase, Phase::Failed);
        assert!(d.actions.contains(&Act::StopJob("r-load-r1".into())));
        assert!(d.actions.contains(&Act::Scale(3)), "{:?}", d.actions);
        let s = d.status.scaling.unwrap();
        assert!(s.restored && s.current_replicas.is_none());
    }

    #[test]
    fn load_pods_that_never_start_show_why_and_fail_after_a_bound() {
        let mut w = running(
            url_spec(),
            json!({"wait": {"kind": "LoadPodsStarted", "since": at(120)}}),
        );
        w.job.job = Some(job("r-load", None, 0));
        w.job.pods = vec![pod(Some("ImagePullBackOff"), false)];
        let d = decide(&w);
        assert_eq!(d.status.phase, Phase::Running);
        let c = find(&d, ConditionType::Degraded);
        assert_eq!((c.status, c.reason), (true, Reason::LoadPodsNotStarting));
        assert!(
            c.message.contains("ImagePullBackOff") && !c.message.contains('\n'),
            "{}",
            c.message
        );
        assert_eq!(d.status.wait.clone().unwrap().since, at(120));
        // Unschedulable pods name the scheduler's message.
        w.job.pods = vec![pod(None, true)];
        let d = decide(&w);
        assert!(
            find(&d, ConditionType::Degraded)
                .message
                .contains("Insufficient cpu"),
            "{:#?}",
            d.conditions
        );
        // No pod at all (quota, admission): said so, and bounded as well.
        w.job.pods = vec![];
        w.run.status.as_mut().unwrap().wait = Some(WaitStatus {
            kind: WaitKind::LoadPodsStarted,
            since: at(LOAD_START_TIMEOUT.as_secs() as i64 + 1),
        });
        let d = decide(&w);
        assert_eq!(d.status.phase, Phase::Failed);
        let c = find(&d, ConditionType::Ready);
        assert_eq!(c.reason, Reason::LoadPodsNotStarting);
        assert!(c.message.contains("ResourceQuota"), "{}", c.message);
        assert!(stops_job(&d));
    }

    #[test]
    fn started_pods_end_the_start_wait() {
        let mut w = running(
            url_spec(),
            json!({"wait": {"kind": "LoadPodsStarted", "since": at(LOAD_START_TIMEOUT.as_secs() as i64 + 60)}}),
        );
        w.job.job = Some(job("r-load", None, 1));
        let d = decide(&w);
        assert_eq!(d.status.phase, Phase::Running);
        assert_eq!(d.status.wait, None);
        assert_eq!(find(&d, ConditionType::Ready).reason, Reason::LoadRunning);
    }

    #[test]
    fn a_refused_load_object_is_a_condition_with_the_message_then_a_failure() {
        let w = world(run(url_spec(), json!({})));
        let d = decide(&w);
        assert!(
            matches!(d.actions[..], [Act::StartLoad { .. }]),
            "{:?}",
            d.actions
        );
        let api_message = "roles.rbac.authorization.k8s.io \"r-loadgen\" is forbidden: user \
                           \"system:serviceaccount:inferops:inferops\" is attempting to grant \
                           RBAC permissions not currently held:\n{APIGroups:[\"\"], ...}";
        let r = refused(&w, d, "Role r-loadgen", api_message);
        assert!(r.actions.is_empty());
        assert_eq!(r.status.phase, Phase::Pending);
        let c = find(&r, ConditionType::Degraded);
        assert_eq!((c.status, c.reason), (true, Reason::LoadJobRefused));
        assert!(
            c.message.contains("Role r-loadgen") && c.message.contains("is forbidden"),
            "{}",
            c.message
        );
        assert!(!c.message.contains('\n'));
        // Still refused after the bound: the run fails with the message.
        let mut w2 = w.clone();
        w2.run.status = Some(stored(&r));
        w2.run.status.as_mut().unwrap().wait.as_mut().unwrap().since =
            at(APPLY_TIMEOUT.as_secs() as i64 + 1);
        let d = decide(&w2);
        let r = refused(&w2, d, "Role r-loadgen", api_message);
        assert_eq!(r.status.phase, Phase::Failed);
        assert_eq!(
            find(&r, ConditionType::Ready).reason,
            Reason::LoadJobRefused
        );
    }

    #[test]
    fn results_over_budget_fail_with_a_named_reason() {
        let mut w = running(url_spec(), json!({}));
        w.results = vec![ResultsObject {
            name: "r-results-0".into(),
            data: BTreeMap::from([(
                format!(
                    "pod-0.json{}",
                    crate::render::benchmark_run::OVER_BUDGET_SUFFIX
                ),
                "64 steps of results are 950 KiB, over the 900 KiB budget".to_string(),
            )]),
        }];
        let d = decide(&w);
        assert_eq!(d.status.phase, Phase::Failed);
        let c = find(&d, ConditionType::Ready);
        assert_eq!(c.reason, Reason::ResultsOverBudget);
        assert!(c.message.contains("900 KiB"), "{}", c.message);
        assert!(stops_job(&d));
    }

    #[test]
    fn a_target_deleted_during_the_load_fails_at_once() {
        let mut w = running(isvc_spec(), json!({}));
        w.target = TargetObs::Missing;
        let d = decide(&w);
        assert_eq!(d.status.phase, Phase::Failed);
        assert_eq!(find(&d, ConditionType::Ready).reason, Reason::TargetDeleted);
    }

    #[test]
    fn a_healthy_run_emits_only_normal_events() {
        let results = |steps: usize| {
            let plan = Plan::new("http://qwen.ml.svc:8000", "qwen");
            let mut r = Results {
                metadata: crate::contract::results::Metadata::new(&plan),
                steps: Vec::new(),
                summary: crate::contract::results::Summary::of(&[], 0.01),
            };
            for c in [1u32, 2].into_iter().take(steps) {
                let mut stats = crate::contract::stats::StepStats::new();
                let t = std::time::Instant::now();
                for _ in 0..10 {
                    let m = crate::contract::outcome::Metrics {
                        ttft_us: 20_000,
                        e2el_us: 150_000,
                        prompt_tokens: 64,
                        output_tokens: 16,
                        streamed: true,
                    };
                    stats.record_ok(&m, &[8000; 15], t);
                }
                let start = chrono::DateTime::from_timestamp(NOW - 60, 0).unwrap();
                r.steps.push(StepResult::from_stats(
                    crate::api::LoadPoint::Concurrency(c),
                    &stats,
                    start,
                    start + chrono::Duration::seconds(10),
                    false,
                ));
            }
            vec![ResultsObject {
                name: "r-results-0".into(),
                data: BTreeMap::from([(
                    "pod-0.json".to_string(),
                    serde_json::to_string(&r).unwrap(),
                )]),
            }]
        };
        let mut w = world(run(isvc_spec(), json!({})));
        let mut all = Vec::new();
        let mut step = |w: &mut World| {
            let d = decide(w);
            all.extend(d.conditions.clone());
            w.run.status = Some(stored(&d));
            d
        };
        // Waiting for the target to be Ready.
        w.target = TargetObs::Service(Box::new(isvc(1, false, 0)));
        assert_eq!(step(&mut w).status.phase, Phase::WaitingForTarget);
        // Ready: the Job is created, its pods start, rows arrive.
        w.target = TargetObs::Service(Box::new(isvc(1, true, 1)));
        assert_eq!(step(&mut w).status.phase, Phase::Running);
        w.job.job = Some(job("r-load", None, 0));
        w.job.pods = vec![pod(Some("ContainerCreating"), false)];
        assert_eq!(step(&mut w).status.phase, Phase::Running);
        w.job.job = Some(job("r-load", None, 1));
        w.results = results(1);
        assert_eq!(step(&mut w).status.phase, Phase::Running);
        // Done: collect, then succeed.
        w.results = results(2);
        w.job.job = Some(job("r-load", Some("Complete"), 0));
        assert_eq!(step(&mut w).status.phase, Phase::Collecting);
        let last = step(&mut w);
        assert_eq!(
            last.status.phase,
            Phase::Succeeded,
            "{:#?}",
            last.conditions
        );
        let reasons: Vec<Reason> = all.iter().map(|c| c.reason).collect();
        for r in [
            Reason::TargetNotReady,
            Reason::LoadStarting,
            Reason::LoadRunning,
            Reason::Collecting,
            Reason::Succeeded,
        ] {
            assert!(reasons.contains(&r), "{r} in {reasons:?}");
        }
        for c in &all {
            assert_eq!(
                crate::controller::apply::event_type_for(c),
                kube::runtime::events::EventType::Normal,
                "{c:?}"
            );
        }
    }
}
