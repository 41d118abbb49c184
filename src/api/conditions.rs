//! Kubernetes-style conditions (type, status, reason, message, lastTransitionTime,
//! observedGeneration) with typed types and reasons.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::runtime::events::EventType;

/// Condition types used by both kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionType {
    /// The object does what it is for (serving, or the run finished well).
    Ready,
    /// Work toward the desired state is under way.
    Progressing,
    /// Something is wrong that needs a person.
    Degraded,
    /// Prometheus could not be queried; client results are kept.
    MetricsUnavailable,
    /// A BenchmarkRun is worse than its baseline beyond the spec's thresholds.
    Regressed,
}

impl ConditionType {
    /// The `type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionType::Ready => "Ready",
            ConditionType::Progressing => "Progressing",
            ConditionType::Degraded => "Degraded",
            ConditionType::MetricsUnavailable => "MetricsUnavailable",
            ConditionType::Regressed => "Regressed",
        }
    }
}

/// Every condition reason of both kinds. The `reason` string is [`Reason::as_str`]; whether a
/// transition to it is bad news (a Warning Event) follows from the reason alone
/// ([`Reason::event_type`]): waiting, progress and success are Normal, problems are Warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// InferenceService Ready: at least one replica passes readiness.
    Available,
    /// InferenceService pods exist; the startup probe still waits for the engine (downloading / loading the model).
    ModelDownloading,
    /// InferenceService pods are being created, scheduled or started.
    Deploying,
    /// InferenceService replicas are 0 (by spec or autoscaler).
    ScaledToZero,
    /// InferenceService Progressing False: the rollout is complete.
    Complete,
    /// Degraded False: nothing wrong.
    AsExpected,
    /// A pod cannot be scheduled for lack of `nvidia.com/gpu`.
    InsufficientGpu,
    /// A pod cannot be scheduled for another reason (CPU, memory, node selector, taints).
    Unschedulable,
    /// The engine container is in CrashLoopBackOff.
    CrashLoop,
    /// The image cannot be pulled.
    ImagePullError,
    /// The container cannot be configured (e.g. a Secret key it references is missing).
    ContainerConfigError,
    /// `spec.model.tokenSecretRef` names a Secret or key that does not exist.
    SecretMissing,
    /// An object the operator would create exists and belongs to someone else.
    NameConflict,
    /// The spec cannot be rendered or planned (the message names the field and the fix).
    InvalidSpec,
    /// The API server rejected an apply (immutable field, RBAC, admission policy).
    ApplyFailed,
    /// `autoscaling.provider: keda` but the KEDA CRDs are not installed.
    KedaMissing,
    /// `monitoring.podMonitor` but the Prometheus Operator CRDs are not installed.
    PodMonitorCrdMissing,
    /// The PodMonitor was applied.
    PodMonitorApplied,
    /// `--monitoring-stack gmp` but GKE Managed Prometheus' PodMonitoring CRD is missing.
    PodMonitoringCrdMissing,
    /// The PodMonitoring was applied.
    PodMonitoringApplied,
    /// The operator may not read or write the scrape object (403, e.g. the chart's `rbac.podMonitors` is off).
    MonitoringForbidden,
    /// The operator may not read or write KEDA ScaledObjects (403).
    KedaForbidden,
    /// `engine.image` (or the default vLLM image) is not in the operator's allow-list.
    ImageNotAllowed,
    /// The cache PVC exists with an access mode, storage class or size the spec no longer asks for; those fields cannot change in place.
    CachePvcImmutable,
    /// The Deployment cannot create pods (`ReplicaFailure`: quota, Pod Security admission, a webhook).
    ReplicaFailure,
    /// The rollout made no progress within `progressDeadlineSeconds`.
    ProgressDeadlineExceeded,
    /// BenchmarkRun: waiting for the InferenceService to exist.
    TargetNotFound,
    /// BenchmarkRun: the InferenceService is not Ready yet.
    TargetNotReady,
    /// BenchmarkRun: the endpoint did not answer `/v1/models` to the load pods within their
    /// wait (5 minutes); no load was sent.
    TargetUnreachable,
    /// BenchmarkRun: the InferenceService target missed readiness checks during the load; the run fails when the retry budget is spent.
    TargetUnstable,
    /// BenchmarkRun: the target passed its last check during the load.
    TargetStable,
    /// BenchmarkRun: the endpoint does not serve the requested model.
    ModelNotFound,
    /// BenchmarkRun: the InferenceService went away during the run.
    TargetDeleted,
    /// BenchmarkRun: a scaling study cannot set the replicas of an autoscaled InferenceService.
    TargetAutoscaled,
    /// BenchmarkRun: scaling the target for a scaling study.
    Scaling,
    /// BenchmarkRun: the target was not found, Ready, reachable or scaled within the wait.
    TargetTimeout,
    /// BenchmarkRun: the load Job exists; its pods have not started yet.
    LoadStarting,
    /// BenchmarkRun: load pods cannot start (image pull, scheduling, quota); the run fails after a bounded wait.
    LoadPodsNotStarting,
    /// BenchmarkRun: the load Job is running.
    LoadRunning,
    /// BenchmarkRun: the load Job failed.
    LoadJobFailed,
    /// BenchmarkRun: the load Job disappeared before finishing.
    LoadJobMissing,
    /// BenchmarkRun: the API server refused an object of the load Job (RBAC, name, admission).
    LoadJobRefused,
    /// BenchmarkRun: querying Prometheus.
    Collecting,
    /// BenchmarkRun: Prometheus could not be queried; client results are kept.
    PrometheusUnavailable,
    /// BenchmarkRun: Prometheus answered for every step.
    MetricsCollected,
    /// BenchmarkRun: finished within the error budget.
    Succeeded,
    /// BenchmarkRun: a step failed more requests than `maxErrorRate` allows.
    ErrorBudgetExceeded,
    /// BenchmarkRun: a step got no successful request at all.
    NoSuccessfulRequests,
    /// BenchmarkRun: a results ConfigMap could not be read.
    ResultsCorrupt,
    /// BenchmarkRun: every results ConfigMap is within its size budget.
    ResultsWithinBudget,
    /// BenchmarkRun: a load pod's results outgrew the size budget of its ConfigMap.
    ResultsOverBudget,
    /// BenchmarkRun: worse than the baseline beyond the thresholds.
    Regressed,
    /// BenchmarkRun: within the baseline's thresholds.
    NoRegression,
    /// BenchmarkRun: the baseline run does not exist or has no results.
    BaselineUnavailable,
}

impl Reason {
    /// Every reason, for tests and docs.
    pub const ALL: &'static [Reason] = &[
        Reason::Available,
        Reason::ModelDownloading,
        Reason::Deploying,
        Reason::ScaledToZero,
        Reason::Complete,
        Reason::AsExpected,
        Reason::InsufficientGpu,
        Reason::Unschedulable,
        Reason::CrashLoop,
        Reason::ImagePullError,
        Reason::ContainerConfigError,
        Reason::SecretMissing,
        Reason::NameConflict,
        Reason::InvalidSpec,
        Reason::ApplyFailed,
        Reason::KedaMissing,
        Reason::PodMonitorCrdMissing,
        Reason::PodMonitorApplied,
        Reason::PodMonitoringCrdMissing,
        Reason::PodMonitoringApplied,
        Reason::MonitoringForbidden,
        Reason::KedaForbidden,
        Reason::ImageNotAllowed,
        Reason::CachePvcImmutable,
        Reason::ReplicaFailure,
        Reason::ProgressDeadlineExceeded,
        Reason::TargetNotFound,
        Reason::TargetNotReady,
        Reason::TargetUnreachable,
        Reason::TargetUnstable,
        Reason::TargetStable,
        Reason::ModelNotFound,
        Reason::TargetDeleted,
        Reason::TargetAutoscaled,
        Reason::Scaling,
        Reason::TargetTimeout,
        Reason::LoadStarting,
        Reason::LoadPodsNotStarting,
        Reason::LoadRunning,
        Reason::LoadJobFailed,
        Reason::LoadJobMissing,
        Reason::LoadJobRefused,
        Reason::Collecting,
        Reason::PrometheusUnavailable,
        Reason::MetricsCollected,
        Reason::Succeeded,
        Reason::ErrorBudgetExceeded,
        Reason::NoSuccessfulRequests,
        Reason::ResultsCorrupt,
        Reason::ResultsWithinBudget,
        Reason::ResultsOverBudget,
        Reason::Regressed,
        Reason::NoRegression,
        Reason::BaselineUnavailable,
    ];

    /// The CamelCase `reason` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Available => "Available",
            Reason::ModelDownloading => "ModelDownloading",
            Reason::Deploying => "Deploying",
            Reason::ScaledToZero => "ScaledToZero",
            Reason::Complete => "Complete",
            Reason::AsExpected => "AsExpected",
            Reason::InsufficientGpu => "InsufficientGPU",
            Reason::Unschedulable => "Unschedulable",
            Reason::CrashLoop => "CrashLoop",
            Reason::ImagePullError => "ImagePullError",
            Reason::ContainerConfigError => "ContainerConfigError",
            Reason::SecretMissing => "SecretMissing",
            Reason::NameConflict => "NameConflict",
            Reason::InvalidSpec => "InvalidSpec",
            Reason::ApplyFailed => "ApplyFailed",
            Reason::KedaMissing => "KEDAMissing",
            Reason::PodMonitorCrdMissing => "PodMonitorCRDMissing",
            Reason::PodMonitorApplied => "PodMonitorApplied",
            Reason::PodMonitoringCrdMissing => "PodMonitoringCRDMissing",
            Reason::PodMonitoringApplied => "PodMonitoringApplied",
            Reason::MonitoringForbidden => "MonitoringForbidden",
            Reason::KedaForbidden => "KEDAForbidden",
            Reason::ImageNotAllowed => "ImageNotAllowed",
            Reason::CachePvcImmutable => "CachePVCImmutable",
            Reason::ReplicaFailure => "ReplicaFailure",
            Reason::ProgressDeadlineExceeded => "ProgressDeadlineExceeded",
            Reason::TargetNotFound => "TargetNotFound",
            Reason::TargetNotReady => "TargetNotReady",
            Reason::TargetUnreachable => "TargetUnreachable",
            Reason::TargetUnstable => "TargetUnstable",
            Reason::TargetStable => "TargetStable",
            Reason::ModelNotFound => "ModelNotFound",
            Reason::TargetDeleted => "TargetDeleted",
            Reason::TargetAutoscaled => "TargetAutoscaled",
            Reason::Scaling => "Scaling",
            Reason::TargetTimeout => "TargetTimeout",
            Reason::LoadStarting => "LoadStarting",
            Reason::LoadPodsNotStarting => "LoadPodsNotStarting",
            Reason::LoadRunning => "LoadRunning",
            Reason::LoadJobFailed => "LoadJobFailed",
            Reason::LoadJobMissing => "LoadJobMissing",
            Reason::LoadJobRefused => "LoadJobRefused",
            Reason::Collecting => "Collecting",
            Reason::PrometheusUnavailable => "PrometheusUnavailable",
            Reason::MetricsCollected => "MetricsCollected",
            Reason::Succeeded => "Succeeded",
            Reason::ErrorBudgetExceeded => "ErrorBudgetExceeded",
            Reason::NoSuccessfulRequests => "NoSuccessfulRequests",
            Reason::ResultsCorrupt => "ResultsCorrupt",
            Reason::ResultsWithinBudget => "ResultsWithinBudget",
            Reason::ResultsOverBudget => "ResultsOverBudget",
            Reason::Regressed => "Regressed",
            Reason::NoRegression => "NoRegression",
            Reason::BaselineUnavailable => "BaselineUnavailable",
        }
    }

    /// The Event type of a condition transition to this reason: `Warning` for problems that
    /// need a person, `Normal` for progress, waiting and success.
    pub fn event_type(self) -> EventType {
        match self {
            Reason::InsufficientGpu
            | Reason::Unschedulable
            | Reason::CrashLoop
            | Reason::ImagePullError
            | Reason::ContainerConfigError
            | Reason::SecretMissing
            | Reason::NameConflict
            | Reason::InvalidSpec
            | Reason::ApplyFailed
            | Reason::KedaMissing
            | Reason::PodMonitorCrdMissing
            | Reason::PodMonitoringCrdMissing
            | Reason::MonitoringForbidden
            | Reason::KedaForbidden
            | Reason::ImageNotAllowed
            | Reason::CachePvcImmutable
            | Reason::ReplicaFailure
            | Reason::ProgressDeadlineExceeded
            | Reason::TargetUnstable
            | Reason::ModelNotFound
            | Reason::TargetDeleted
            | Reason::TargetAutoscaled
            | Reason::TargetTimeout
            | Reason::LoadPodsNotStarting
            | Reason::LoadJobFailed
            | Reason::LoadJobMissing
            | Reason::LoadJobRefused
            | Reason::PrometheusUnavailable
            | Reason::ErrorBudgetExceeded
            | Reason::NoSuccessfulRequests
            | Reason::ResultsCorrupt
            | Reason::ResultsOverBudget
            | Reason::Regressed
            | Reason::BaselineUnavailable => EventType::Warning,
            _ => EventType::Normal,
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for Reason {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Reason {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A desired condition, before timestamps are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionUpdate {
    /// Which condition.
    pub type_: ConditionType,
    /// True or false.
    pub status: bool,
    /// Machine-readable reason, e.g. [`Reason::InsufficientGpu`].
    pub reason: Reason,
    /// Sentence for people: what happened and what to do.
    pub message: String,
}

impl ConditionUpdate {
    /// A condition with the given status.
    pub fn new(
        type_: ConditionType,
        status: bool,
        reason: Reason,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

/// Find a condition by type.
pub fn find_condition(conditions: &[Condition], type_: ConditionType) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == type_.as_str())
}

/// Insert or replace a condition. `lastTransitionTime` changes only when the status flips,
/// as the Kubernetes API conventions require. Returns true when anything changed.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    update: ConditionUpdate,
    generation: Option<i64>,
    now: Time,
) -> bool {
    let status = if update.status { "True" } else { "False" };
    let existing = conditions
        .iter()
        .position(|c| c.type_ == update.type_.as_str());
    let transition = match existing {
        Some(i) if conditions[i].status == status => conditions[i].last_transition_time.clone(),
        _ => now,
    };
    let new = Condition {
        type_: update.type_.as_str().to_string(),
        status: status.to_string(),
        reason: update.reason.as_str().to_string(),
        message: update.message,
        last_transition_time: transition,
        observed_generation: generation,
    };
    match existing {
        Some(i) if conditions[i] == new => false,
        Some(i) => {
            conditions[i] = new;
            true
        }
        None => {
            conditions.push(new);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(s).unwrap())
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let mut c = Vec::new();
        let up = |status, reason| ConditionUpdate::new(ConditionType::Ready, status, reason, "m");
        assert!(set_condition(
            &mut c,
            up(false, Reason::Deploying),
            Some(1),
            t(10)
        ));
        assert!(set_condition(
            &mut c,
            up(false, Reason::ModelDownloading),
            Some(1),
            t(20)
        ));
        assert_eq!(c[0].last_transition_time, t(10));
        assert_eq!(c[0].reason, "ModelDownloading");
        assert!(!set_condition(
            &mut c,
            up(false, Reason::ModelDownloading),
            Some(1),
            t(30)
        ));
        assert!(set_condition(
            &mut c,
            up(true, Reason::Available),
            Some(2),
            t(40)
        ));
        assert_eq!(c[0].last_transition_time, t(40));
        assert_eq!(c[0].status, "True");
        assert_eq!(c[0].observed_generation, Some(2));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn reason_strings_are_unique_camel_case() {
        let mut seen = std::collections::BTreeSet::new();
        for r in Reason::ALL {
            let s = r.as_str();
            assert!(seen.insert(s), "{s} twice");
            assert!(s.starts_with(|c: char| c.is_ascii_uppercase()), "{s}");
            assert!(s.chars().all(|c| c.is_ascii_alphanumeric()), "{s}");
        }
    }

    #[test]
    fn waiting_and_progress_reasons_are_normal_problems_are_warnings() {
        for r in [
            Reason::TargetNotReady,
            Reason::TargetNotFound,
            Reason::Scaling,
            Reason::LoadRunning,
            Reason::Collecting,
            Reason::Succeeded,
            Reason::Deploying,
        ] {
            assert_eq!(r.event_type(), EventType::Normal, "{r}");
        }
        for r in [
            Reason::LoadJobFailed,
            Reason::InsufficientGpu,
            Reason::TargetTimeout,
            Reason::LoadPodsNotStarting,
        ] {
            assert_eq!(r.event_type(), EventType::Warning, "{r}");
        }
    }
}
